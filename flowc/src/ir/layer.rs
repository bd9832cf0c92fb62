//! Layers of a flow: what each computes, and building them from the syntax tree.
//!
//! Every layer maps R^n to R^n. Elementwise layers apply a scalar bijector to each coordinate;
//! coupling and autoregressive layers apply one to some coordinates with parameters computed
//! by a conditioner network from other coordinates (so the Jacobian is triangular);
//! `linear(lu)` multiplies by an invertible matrix in LU form; `reverse` and `permute` reorder.

use super::{suggest, Bijector};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::dsl::{self, Arg, Term};

/// Activation of a conditioner network's hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
    Sigmoid,
    Softplus,
}

impl Activation {
    pub const ALL: [(&'static str, Activation); 4] =
        [("tanh", Activation::Tanh), ("relu", Activation::Relu), ("sigmoid", Activation::Sigmoid), ("softplus", Activation::Softplus)];
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map(|(n, _)| *n).expect("listed")
    }
    /// f64 value (the reference).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => runtime::math::sigmoid(x),
            Activation::Softplus => runtime::math::softplus(x),
        }
    }
}

/// A conditioner network: dense layers with `act` between them, PyTorch `nn.Sequential`
/// naming (`net.0`, `net.2`, ... are the linear layers; weights are [out, in]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Net {
    /// MADE: weights masked so that output i depends only on inputs before i.
    pub made: bool,
    pub hidden: Vec<usize>,
    pub act: Activation,
}

impl Net {
    /// (name suffix, [out, in]) of each linear layer, for `inputs` → `outputs`.
    pub fn shapes(&self, inputs: usize, outputs: usize) -> Vec<(usize, usize, usize)> {
        let mut sizes = vec![inputs];
        sizes.extend(&self.hidden);
        sizes.push(outputs);
        (0..sizes.len() - 1).map(|j| (2 * j, sizes[j + 1], sizes[j])).collect()
    }
}

/// MADE degrees and connectivity (`runtime::made`, shared with generated code).
pub use runtime::made::{connected as made_connected, degree_hidden as made_degree_hidden};

/// A layer of a flow, in the generative direction (base → data).
#[derive(Debug, Clone)]
pub enum Layer {
    /// The same scalar bijector on every coordinate; bound parameters are constants,
    /// the others are per-coordinate learnable vectors.
    Elementwise { bijector: usize, bound: Vec<(String, f64)>, span: Span },
    /// Coordinates with `mask[i]` kept; the others transformed by the bijector, whose free
    /// parameters are the outputs of `net` applied to the kept coordinates.
    Coupling { mask: Vec<bool>, bijector: usize, bound: Vec<(String, f64)>, net: Net, span: Span },
    /// x_i = B(u_i; θ_i(x_<i)) (MAF, `inverse = false`: density in parallel, sampling
    /// sequential) or y_i = B(x_i; θ_i(x_<i)) (IAF, `inverse = true`: the reverse), θ from a MADE.
    Autoregressive { bijector: usize, bound: Vec<(String, f64)>, net: Net, inverse: bool, span: Span },
    /// y = L U x, L unit lower triangular, U upper triangular with diagonal exp(log_diag).
    LinearLu { span: Span },
    /// y_i = x_perm[i]
    Permute { perm: Vec<usize>, span: Span },
    /// Planar flow y = z + û·tanh(wᵀz + b), û = u + (m(wᵀu) − wᵀu)·w/‖w‖²,
    /// m(a) = −1 + softplus(a) (so ûᵀw > −1 and the map is invertible).
    Planar { span: Span },
    /// Radial flow y = z + β·h(r)·(z − z0), r = ‖z − z0‖, h = 1/(α + r),
    /// α = softplus(alpha) > 0, β = −α + softplus(beta) > −α (invertible).
    Radial { span: Span },
    /// A map of the unit sphere S^(n−1) (see [`Normalized`]).
    Normalized { kind: Normalized, span: Span },
    /// A map of the simplex (see [`Calibration`]).
    Calibration { kind: Calibration, span: Span },
    /// A user-written map of the sphere or the simplex (index into [`super::Module::maps`]).
    Map { map: usize, span: Span },
}

/// The calibration maps of the simplex: y = softmax(a·log x + b) (`calibration`, a > 0 from
/// the stored `log_scale`) and y = softmax(A·log x + b) with A·1 = 1 (`generalized_calibration`:
/// A = Q B Qᵀ + 11ᵀ/n, Q an orthonormal basis of 1^⊥ (Helmert's), B = L U stored as
/// `linear(lu)` stores it, n − 1 square); both act on the log-ratio coordinates linearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Calibration {
    Scalar,
    Generalized,
}

impl Calibration {
    pub fn name(self) -> &'static str {
        match self {
            Calibration::Scalar => "calibration",
            Calibration::Generalized => "generalized_calibration",
        }
    }
}

/// The layers of flows on the simplex.
pub const SIMPLEX_LAYERS: &[&str] = &["calibration", "generalized_calibration"];

/// The normalized maps of the sphere: x ↦ (x + m)/‖x + m‖ (translation, ‖m‖ < 1 with
/// m = v/√(1 + ‖v‖²) from the stored `shift` v), x ↦ Mx/‖Mx‖ (linear, M = L·U stored as
/// `linear(lu)` stores it) and their composition (Mx + b)/‖Mx + b‖ with b = M·m (affine: a
/// bijection because ‖M⁻¹b‖ = ‖m‖ < 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalized {
    Translation,
    Linear,
    Affine,
}

impl Normalized {
    pub fn name(self) -> &'static str {
        match self {
            Normalized::Translation => "normalized_translation",
            Normalized::Linear => "normalized_linear",
            Normalized::Affine => "normalized_affine",
        }
    }
    pub fn translates(self) -> bool {
        self != Normalized::Linear
    }
    pub fn multiplies(self) -> bool {
        self != Normalized::Translation
    }
}

/// The layers of flows on the sphere.
pub const SPHERE_LAYERS: &[&str] = &["normalized_translation", "normalized_linear", "normalized_affine"];

/// Builds a layer of a sphere or simplex flow.
pub fn build_manifold(name: &dsl::Ident, args: &[Arg], span: Span, diags: &mut Diagnostics) -> Option<Layer> {
    if SIMPLEX_LAYERS.contains(&name.name.as_str()) {
        let kind = if name.is("calibration") { Calibration::Scalar } else { Calibration::Generalized };
        if !args.is_empty() {
            let what = match kind {
                Calibration::Scalar => "y = softmax(a·log x + b), with parameters `log_scale` (a = exp(log_scale)) and `bias`",
                Calibration::Generalized => {
                    "y = softmax(A·log x + b), A = Q B Qᵀ + 11ᵀ/n, with parameters `lower`, `upper`, `log_diag` (B = L U) and `bias`"
                }
            };
            diags.push(
                Diagnostic::at(name.span, format!("`{}` takes no arguments", kind.name()))
                    .help(format!("write `{};`: {what}", kind.name())),
            );
            return None;
        }
        return Some(Layer::Calibration { kind, span });
    }
    let kind = match name.name.as_str() {
        "normalized_translation" => Normalized::Translation,
        "normalized_linear" => Normalized::Linear,
        _ => Normalized::Affine,
    };
    if !args.is_empty() {
        let what = match kind {
            Normalized::Translation => "y = (x + m)/‖x + m‖, with parameter `shift`",
            Normalized::Linear => "y = Mx/‖Mx‖, M = L U with parameters `lower`, `upper`, `log_diag`",
            Normalized::Affine => "y = (Mx + b)/‖Mx + b‖, with parameters `lower`, `upper`, `log_diag`, `shift`",
        };
        diags.push(
            Diagnostic::at(name.span, format!("`{}` takes no arguments", kind.name())).help(format!("write `{};`: {what}", kind.name())),
        );
        return None;
    }
    Some(Layer::Normalized { kind, span })
}

impl Layer {
    pub fn bijector(&self) -> Option<usize> {
        match self {
            Layer::Elementwise { bijector, .. } | Layer::Coupling { bijector, .. } | Layer::Autoregressive { bijector, .. } => {
                Some(*bijector)
            }
            _ => None,
        }
    }
}

/// The layer names of the language, for messages.
pub const LAYER_NAMES: &[&str] =
    &["elementwise", "coupling", "autoregressive", "inverse_autoregressive", "actnorm", "linear", "reverse", "permute", "planar", "radial"];

/// The built-in monotone rational-quadratic spline of coupling and autoregressive layers:
/// `bins` bins on [−bound, bound], identity outside (`runtime::spline`); its 3·bins − 1
/// parameters per coordinate (w0.., h0.., d1..) come from the conditioner.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spline {
    pub bins: usize,
    pub bound: f64,
}

/// The doc line of a built-in spline bijector.
pub const SPLINE_DOC: &str = "Built-in: monotone rational-quadratic spline, identity outside [-bound, bound].";

/// `spline(bins = K, bound = B)`.
pub fn spline(args: &[Arg], span: proc_macro2::Span, diags: &mut Diagnostics) -> Option<Spline> {
    if !check_args("spline", args, &["bins", "bound"], diags) {
        return None;
    }
    let (Some(b), Some(r)) = (arg(args, "bins"), arg(args, "bound")) else {
        diags.push(Diagnostic::at(span, "`spline` needs a number of bins and a bound").help("write `spline(bins = 8, bound = 3)`"));
        return None;
    };
    let bins = integer(&b.value, "the number of bins", diags)?;
    if bins == 0 || bins > runtime::spline::MAX_BINS {
        diags.push(Diagnostic::at(b.value.span(), format!("a spline has 1 to {} bins", runtime::spline::MAX_BINS)));
        return None;
    }
    let bound = match &r.value {
        Term::Expr(dsl::Expr::Num(v, _)) if *v > 0.0 && v.is_finite() => *v,
        other => {
            diags.push(
                Diagnostic::at(other.span(), "the bound must be a positive number").help("e.g. `bound = 3`: the spline acts on [-3, 3]"),
            );
            return None;
        }
    };
    Some(Spline { bins, bound })
}

/// The built-in bijector of a spline: named after it, with its 3·bins − 1 real parameters.
pub fn spline_bijector(sp: Spline, span: Span) -> Bijector {
    let k = sp.bins;
    let names = (0..k).map(|i| format!("w{i}")).chain((0..k).map(|i| format!("h{i}"))).chain((1..k).map(|i| format!("d{i}")));
    Bijector {
        name: format!("spline(bins = {}, bound = {})", sp.bins, sp.bound),
        doc: SPLINE_DOC.to_string(),
        span,
        body_span: span,
        domain: super::Interval::REAL,
        params: names.map(|name| super::Param { name, kind: super::ParamKind::Real }).collect(),
        forward: "x".parse().expect("a symbol"),
        inverse: super::InverseHint::Numeric,
        spline: Some(sp),
    }
}

/// The built-in bijector behind `actnorm` (added to the module when a flow uses it).
pub const ACTNORM: &str = "bijector actnorm(x; log_scale: real, shift: real) = x * exp(log_scale) + shift;";
/// Its doc line (which also marks it as the built-in).
pub const ACTNORM_DOC: &str = "Built-in: the bijector of `actnorm` layers (a scale and a shift per coordinate).";

/// A deterministic permutation of 0..n from a seed (xorshift64, Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = (s % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

fn arg<'a>(args: &'a [Arg], name: &str) -> Option<&'a Arg> {
    args.iter().find(|a| a.name.as_ref().map(|n| n.is(name)).unwrap_or(false))
}

fn check_args(layer: &str, args: &[Arg], allowed: &[&str], diags: &mut Diagnostics) -> bool {
    let mut ok = true;
    for a in args {
        match &a.name {
            None => {
                diags.push(
                    Diagnostic::error(Span::of(a.value.span()), format!("`{layer}` takes named arguments"))
                        .help(format!("write {}", allowed.iter().map(|n| format!("`{n} = ...`")).collect::<Vec<_>>().join(", "))),
                );
                ok = false;
            }
            Some(n) if !allowed.contains(&n.name.as_str()) => {
                let mut d = Diagnostic::at(n.span, format!("`{layer}` has no argument `{}`", n.name));
                d = match suggest(&n.name, allowed.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("its arguments are: {}", allowed.join(", "))),
                };
                diags.push(d);
                ok = false;
            }
            _ => {}
        }
    }
    ok
}

fn integer(t: &Term, what: &str, diags: &mut Diagnostics) -> Option<usize> {
    if let Term::Expr(dsl::Expr::Num(v, _)) = t {
        if *v >= 0.0 && v.fract() == 0.0 && *v < 1e9 {
            return Some(*v as usize);
        }
    }
    diags.push(Diagnostic::at(t.span(), format!("{what} must be a non-negative integer")));
    None
}

/// `mlp([64, 64], tanh)` or `made([128, 128], relu)`.
fn net(t: &Term, made: bool, diags: &mut Diagnostics) -> Option<Net> {
    let want = if made { "made" } else { "mlp" };
    let example = format!("`net = {want}([64, 64], tanh)`");
    let Term::Call { name, args, span } = t else {
        diags.push(Diagnostic::at(t.span(), format!("expected a network such as {example}")));
        return None;
    };
    if !name.is(want) {
        diags.push(Diagnostic::at(name.span, format!("unknown network `{}` here", name.name)).help(format!("write {example}")));
        return None;
    }
    if args.len() != 2 || args.iter().any(|a| a.name.is_some()) {
        diags.push(Diagnostic::at(*span, format!("`{want}` takes the hidden sizes and an activation")).help(format!("write {example}")));
        return None;
    }
    let Term::List(items, _) = &args[0].value else {
        diags.push(Diagnostic::at(args[0].value.span(), "expected a list of hidden layer sizes").help(format!("write {example}")));
        return None;
    };
    let mut hidden = Vec::new();
    for it in items {
        let n = integer(it, "a hidden layer size", diags)?;
        if n == 0 {
            diags.push(Diagnostic::at(it.span(), "a hidden layer needs at least one unit"));
            return None;
        }
        hidden.push(n);
    }
    let act = match &args[1].value {
        Term::Call { name, args, .. } if args.is_empty() => match Activation::ALL.iter().find(|(n, _)| name.is(n)) {
            Some((_, a)) => *a,
            None => {
                let mut d = Diagnostic::at(name.span, format!("unknown activation `{}`", name.name));
                let names: Vec<&str> = Activation::ALL.iter().map(|(n, _)| *n).collect();
                d = match suggest(&name.name, names.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("the activations are: {}", names.join(", "))),
                };
                diags.push(d);
                return None;
            }
        },
        other => {
            diags.push(Diagnostic::at(other.span(), "expected an activation such as `tanh`"));
            return None;
        }
    };
    Some(Net { made, hidden, act })
}

/// `bijector = NAME` or `bijector = NAME(p = 0.5)`: index and bound parameters.
pub type BijectorRef = (usize, Vec<(String, f64)>);

/// Builds a layer other than `elementwise` (which `ir` builds). `bijector_ref` resolves
/// a bijector term; `dim` is the flow's dimension.
pub fn build(
    name: &dsl::Ident,
    args: &[Arg],
    span: Span,
    dim: usize,
    bijectors: &[Bijector],
    bijector_ref: &mut dyn FnMut(&Term, &mut Diagnostics) -> Option<BijectorRef>,
    diags: &mut Diagnostics,
) -> Option<Layer> {
    let layer = name.name.as_str();
    match layer {
        "reverse" => {
            if !args.is_empty() {
                diags.push(Diagnostic::at(name.span, format!("`{layer}` takes no arguments")).help(format!("write `{layer};`")));
                return None;
            }
            Some(Layer::Permute { perm: (0..dim).rev().collect(), span })
        }
        "planar" | "radial" => {
            if !args.is_empty() {
                let help = if layer == "planar" {
                    "write `planar;`: y = z + û tanh(wᵀz + b), with parameters u, w and b"
                } else {
                    "write `radial;`: y = z + β (z − z0)/(α + ‖z − z0‖), with parameters z0, alpha and beta"
                };
                diags.push(Diagnostic::at(name.span, format!("`{layer}` takes no arguments")).help(help));
                return None;
            }
            Some(if layer == "planar" { Layer::Planar { span } } else { Layer::Radial { span } })
        }
        "permute" => {
            if !check_args(layer, args, &["seed"], diags) {
                return None;
            }
            let seed = match arg(args, "seed") {
                Some(a) => integer(&a.value, "the seed", diags)? as u64,
                None => {
                    diags.push(Diagnostic::at(name.span, "`permute` needs a seed").help("write `permute(seed = 1)`"));
                    return None;
                }
            };
            Some(Layer::Permute { perm: permutation(dim, seed), span })
        }
        "linear" => {
            let ok = args.len() == 1
                && args[0].name.is_none()
                && matches!(&args[0].value, Term::Call { name, args, .. } if name.is("lu") && args.is_empty());
            if !ok {
                diags.push(
                    Diagnostic::at(name.span, "`linear` takes its parametrization")
                        .help("write `linear(lu)`: y = L U x with L unit lower, U upper triangular"),
                );
                return None;
            }
            Some(Layer::LinearLu { span })
        }
        "coupling" => {
            if !check_args(layer, args, &["mask", "bijector", "net"], diags) {
                return None;
            }
            let (Some(m), Some(b), Some(n)) = (arg(args, "mask"), arg(args, "bijector"), arg(args, "net")) else {
                diags.push(
                    Diagnostic::at(name.span, "`coupling` needs a mask, a bijector and a network")
                        .help("write `coupling(mask = [1, 0], bijector = affine, net = mlp([64, 64], tanh))`"),
                );
                return None;
            };
            let Term::List(items, mspan) = &m.value else {
                diags.push(Diagnostic::at(m.value.span(), "the mask is a list of 0 and 1").help("e.g. `mask = [1, 0, 1, 0]`"));
                return None;
            };
            let mut mask = Vec::new();
            for it in items {
                match integer(it, "a mask entry", diags)? {
                    0 => mask.push(false),
                    1 => mask.push(true),
                    _ => {
                        diags.push(Diagnostic::at(it.span(), "a mask entry is 0 (transformed) or 1 (kept, conditions the others)"));
                        return None;
                    }
                }
            }
            if mask.len() != dim {
                diags.push(Diagnostic::at(*mspan, format!("the mask has {} entries but the flow is on R^{dim}", mask.len())));
                return None;
            }
            if mask.iter().all(|k| *k) || mask.iter().all(|k| !*k) {
                diags.push(
                    Diagnostic::at(*mspan, "the mask must keep some coordinates (1) and transform others (0)").help("e.g. `mask = [1, 0]`"),
                );
                return None;
            }
            let (bijector, bound) = bijector_ref(&b.value, diags)?;
            let net = net(&n.value, false, diags)?;
            if bijector < bijectors.len() {
                no_free_check(bijectors, bijector, &bound, &b.value, diags)?;
            }
            Some(Layer::Coupling { mask, bijector, bound, net, span })
        }
        "autoregressive" | "inverse_autoregressive" => {
            if !check_args(layer, args, &["bijector", "net"], diags) {
                return None;
            }
            let (Some(b), Some(n)) = (arg(args, "bijector"), arg(args, "net")) else {
                diags.push(
                    Diagnostic::at(name.span, format!("`{layer}` needs a bijector and a network"))
                        .help(format!("write `{layer}(bijector = affine, net = made([64, 64], relu))`")),
                );
                return None;
            };
            if dim < 2 {
                diags.push(Diagnostic::at(name.span, format!("`{layer}` needs at least 2 dimensions")));
                return None;
            }
            let (bijector, bound) = bijector_ref(&b.value, diags)?;
            let net = net(&n.value, true, diags)?;
            if bijector < bijectors.len() {
                no_free_check(bijectors, bijector, &bound, &b.value, diags)?;
            }
            Some(Layer::Autoregressive { bijector, bound, net, inverse: layer == "inverse_autoregressive", span })
        }
        _ => None,
    }
}

/// A conditioned bijector needs at least one free parameter.
fn no_free_check(bijectors: &[Bijector], b: usize, bound: &[(String, f64)], t: &Term, diags: &mut Diagnostics) -> Option<()> {
    let free = bijectors[b].params.iter().filter(|p| !bound.iter().any(|(n, _)| *n == p.name)).count();
    if free == 0 {
        diags.push(
            Diagnostic::at(t.span(), format!("bijector `{}` has no free parameter for the network to set", bijectors[b].name))
                .help("use a bijector with parameters, e.g. `affine(x; shift: real, log_scale: real)`"),
        );
        return None;
    }
    Some(())
}
