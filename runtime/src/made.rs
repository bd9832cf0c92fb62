//! MADE connectivity (DESIGN §9, W3): which weights of a masked autoregressive network are
//! connections. Input i has degree i + 1, hidden unit k degree (k mod (dim − 1)) + 1, output
//! o degree (o mod dim) + 1. Unit k of a hidden layer sees unit j of the layer before when
//! deg(k) ≥ deg(j); output o sees hidden unit k when deg(o) > deg(k).
//!
//! ```
//! use runtime::made::connected;
//! // one hidden layer on 3 inputs: output 0 (degree 1) sees nothing, output 2 sees unit 1
//! assert!(!connected(1, 2, 0, 0, 3));
//! assert!(connected(1, 2, 2, 1, 3));
//! ```

/// Degree of hidden unit `k` of a MADE on `dim` inputs.
pub fn degree_hidden(k: usize, dim: usize) -> usize {
    (k % (dim - 1).max(1)) + 1
}

/// Whether weight [out, inp] of linear layer `j` (of `layers`) is a connection, for a MADE
/// on `dim` inputs.
pub fn connected(j: usize, layers: usize, out: usize, inp: usize, dim: usize) -> bool {
    let in_deg = if j == 0 { inp + 1 } else { degree_hidden(inp, dim) };
    if j + 1 == layers {
        (out % dim) + 1 > in_deg
    } else {
        degree_hidden(out, dim) >= in_deg
    }
}
