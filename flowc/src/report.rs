//! Text, LaTeX and JSON forms of a [`Derivation`] (what `flowc derive` prints).
//!
//! The JSON form is documented in the README; its field names are stable.

use crate::derive::stability::{Choice, Error};
use crate::derive::{BijectorDerivation, Derivation, FlowDerivation, Inverse, LayerDerivation, LayerKind, Monotone, Proof};
use crate::ir::expr::{bind, to_infix, to_latex, Expr};
use egg::Symbol;
use serde_json::{json, Value};

/// Output format of `flowc derive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Latex,
    Json,
}

fn params_sig(b: &BijectorDerivation) -> String {
    let ps: Vec<String> = b.params.iter().map(|p| format!("{}: {}", p.name, p.kind.name())).collect();
    if ps.is_empty() {
        "x".into()
    } else {
        format!("x; {}", ps.join(", "))
    }
}

fn err_text(e: &Error) -> String {
    let ulps = if e.max_ulps.is_infinite() {
        "inf".to_string()
    } else if e.max_ulps >= 1e6 {
        format!("{:.3e}", e.max_ulps)
    } else {
        format!("{:.3}", e.max_ulps)
    };
    let bound = if e.max_ratio.is_infinite() { "inf".to_string() } else { format!("{:.3}", e.max_ratio / crate::derive::stability::BOUND) };
    let fail = if e.failing > 0 {
        format!(", {} of {} points over the bound (worst at {:e})", e.failing, e.points, e.worst_u)
    } else {
        String::new()
    };
    format!("max {ulps} ulp, mean {:.2} bits, {bound} of bound{fail}", e.mean_bits)
}

fn stability_text(what: &str, c: &Choice) -> String {
    if c.rewritten() {
        format!(
            "    {what:<8} naive   {}\n             {}\n             chosen  {}\n             {}\n",
            to_infix(&c.naive.expr),
            err_text(&c.naive.error),
            to_infix(&c.chosen.expr),
            err_text(&c.chosen.error)
        )
    } else {
        format!("    {what:<8} kept    {}\n             {}\n", to_infix(&c.chosen.expr), err_text(&c.chosen.error))
    }
}

/// The text form of one bijector's derivation.
pub fn bijector_text(b: &BijectorDerivation, timings: bool) -> String {
    let mut s = format!("bijector {}({})\n", b.name, params_sig(b));
    if !b.doc.is_empty() {
        for line in b.doc.lines() {
            s.push_str(&format!("  /// {line}\n"));
        }
    }
    s.push_str(&format!("  domain       x in {}\n", b.domain));
    s.push_str(&format!("  range        y in {}\n", b.range));
    s.push_str(&format!("  forward      y = {}\n", to_infix(&b.forward.chosen.expr)));
    s.push_str(&format!("  derivative   f'(x) = {}\n", to_infix(&b.derivative)));
    let how = if b.monotone_proven { "proven by interval analysis of f'" } else { "sampled: the sign of f' at every check point" };
    let dir = match b.monotone {
        Monotone::Increasing => "increasing",
        Monotone::Decreasing => "decreasing",
    };
    s.push_str(&format!("  monotone     {dir} ({how})\n"));
    match &b.inverse {
        Inverse::Closed(c) => s.push_str(&format!("  inverse      x = {}   [closed form]\n", to_infix(&c.chosen.expr))),
        Inverse::User(c, p) => {
            let proof = match p {
                Proof::Symbolic => "given; proven equal to the solution of y = f(x)".to_string(),
                Proof::Numeric(n) => format!("given; verified numerically at {n} points"),
            };
            s.push_str(&format!("  inverse      x = {}   [{proof}]\n", to_infix(&c.chosen.expr)))
        }
        Inverse::Numeric => s.push_str("  inverse      x = solve(y = f(x))   [numeric: bracketed Newton-bisection to full precision]\n"),
    }
    s.push_str(&format!("  log|f'(x)|   {}\n", to_infix(&b.log_det.chosen.expr)));
    if let Some(c) = &b.log_det_y {
        s.push_str(&format!("  at x = g(y)  log|f'(x)| = {}   [-log|g'(y)|, used after the inverse]\n", to_infix(&c.chosen.expr)));
    }
    s.push_str("  stability (measured against the high-precision reference)\n");
    s.push_str(&stability_text("forward", &b.forward));
    if let Some(c) = b.inverse.choice() {
        s.push_str(&stability_text("inverse", c));
    }
    s.push_str(&stability_text("log-det", &b.log_det));
    if let Some(c) = &b.log_det_y {
        s.push_str(&stability_text("log-det in y", c));
    }
    let limited: Vec<String> = b.runs.iter().filter(|r| r.hit_limit()).map(|r| format!("{} ({})", r.purpose, r.stop)).collect();
    if !limited.is_empty() {
        s.push_str(&format!("  e-graph      stopped at a limit in: {}; the best forms found are used\n", limited.join(", ")));
    }
    if timings {
        let runs: Vec<String> =
            b.runs.iter().map(|r| format!("{} {} it/{} nodes/{} {:.1} ms", r.purpose, r.iterations, r.nodes, r.stop, r.millis)).collect();
        s.push_str(&format!("  e-graph      {}\n", runs.join("; ")));
        s.push_str(&format!("  time         {:.1} ms\n", b.millis));
    }
    s
}

fn layer_env(l: &LayerDerivation) -> Vec<(Symbol, f64)> {
    l.bound.iter().map(|(n, v)| (Symbol::from(n.as_str()), *v)).collect()
}

/// A layer's formula with its bound constants substituted.
pub fn bound_formula(e: &Expr, l: &LayerDerivation) -> Expr {
    bind(e, &layer_env(l))
}

fn bijector_term(d: &Derivation, l: &LayerDerivation) -> String {
    let b = &d.bijectors[l.bijector.expect("a layer with a bijector")];
    if l.bound.is_empty() {
        b.name.clone()
    } else {
        let binds: Vec<String> = l.bound.iter().map(|(n, v)| format!("{n} = {v}")).collect();
        format!("{}({})", b.name, binds.join(", "))
    }
}

fn net_term(net: &crate::ir::Net) -> String {
    let h: Vec<String> = net.hidden.iter().map(|n| n.to_string()).collect();
    format!("{}([{}], {})", if net.made { "made" } else { "mlp" }, h.join(", "), net.act.name())
}

fn layer_name(d: &Derivation, l: &LayerDerivation) -> String {
    match &l.kind {
        LayerKind::Elementwise if d.bijectors[l.bijector.expect("elementwise")].doc == crate::ir::layer::ACTNORM_DOC => "actnorm".into(),
        LayerKind::Elementwise => format!("elementwise({})", bijector_term(d, l)),
        LayerKind::Coupling { mask, net } => {
            let m: Vec<String> = mask.iter().map(|k| if *k { "1" } else { "0" }.to_string()).collect();
            format!("coupling(mask = [{}], bijector = {}, net = {})", m.join(", "), bijector_term(d, l), net_term(net))
        }
        LayerKind::Autoregressive { net, inverse } => format!(
            "{}(bijector = {}, net = {})",
            if *inverse { "inverse_autoregressive" } else { "autoregressive" },
            bijector_term(d, l),
            net_term(net)
        ),
        LayerKind::LinearLu => "linear(lu)".into(),
        LayerKind::Permute { perm } => {
            if perm.iter().enumerate().all(|(i, j)| i + j + 1 == perm.len()) {
                "reverse".into()
            } else {
                let p: Vec<String> = perm.iter().map(|j| j.to_string()).collect();
                format!("permute: y_i = x_perm(i), perm = [{}]", p.join(", "))
            }
        }
        LayerKind::Planar => "planar".into(),
        LayerKind::Radial => "radial".into(),
        LayerKind::Normalized(n) => n.name().into(),
        LayerKind::Calibration(c) => c.name().into(),
        LayerKind::Map(m) => format!("map {}", m.name),
    }
}

/// Lines describing a structural (non-elementwise) layer: its Jacobian's structure and the
/// log-determinant that follows.
fn structure_text(d: &Derivation, f: &FlowDerivation, k: usize, l: &LayerDerivation) -> String {
    let mut s = String::new();
    let tensors: Vec<String> = l.tensors(k, f.dim).iter().map(|(n, sh)| format!("{n} {sh:?}")).collect();
    if !tensors.is_empty() {
        s.push_str(&format!("    parameters {}\n", tensors.join(", ")));
    }
    let scalar = |s: &mut String, what: &str, idx: &str| {
        let b = &d.bijectors[l.bijector.expect("a layer with a bijector")];
        if let Some(sp) = b.spline {
            s.push_str(&format!(
                "    {what:<10} y_{idx} = spline(x_{idx})   (rational-quadratic, {} bins on [-{b}, {b}], identity outside; {} values per coordinate from the network: widths, heights (softmax), inner derivatives (softplus))\n",
                sp.bins,
                runtime::spline::raw_len(sp.bins),
                b = sp.bound
            ));
            s.push_str(&format!(
                "    inverse    x_{idx}: in its bin, the root in [0, 1] of a xi^2 + b xi + c = 0 as 2c/(-b - sqrt(b^2 - 4ac))   [no cancellation]\n"
            ));
            return (false, format!("log spline'(x_{idx})"));
        }
        let free: Vec<&str> = l.free.iter().map(|p| p.name.as_str()).collect();
        s.push_str(&format!(
            "    {what:<10} y_{idx} = {}   ({} from the network)\n",
            to_infix(&bound_formula(&b.forward.chosen.expr, l)),
            free.join(", ")
        ));
        match b.inverse.formula() {
            Some(g) => s.push_str(&format!("    inverse    x_{idx} = {}\n", to_infix(&bound_formula(g, l)))),
            None => s.push_str(&format!("    inverse    x_{idx} = solve(y_{idx} = f(x_{idx}))   [numeric]\n")),
        }
        let ld = bound_formula(&b.log_det.chosen.expr, l);
        let zero = matches!(ld.as_ref(), [crate::ir::Math::Num(c)] if c.get() == 0.0);
        (zero, to_infix(&ld))
    };
    match &l.kind {
        LayerKind::Elementwise => {}
        LayerKind::Coupling { mask, net } => {
            let kept: Vec<String> = (0..f.dim).filter(|i| mask[*i]).map(|i| format!("x_{i}")).collect();
            let moved: Vec<String> = (0..f.dim).filter(|i| !mask[*i]).map(|i| format!("x_{i}")).collect();
            let outs = moved.len() * l.free.len();
            let mut sizes = vec![kept.len().to_string()];
            sizes.extend(net.hidden.iter().map(|h| h.to_string()));
            sizes.push(outs.to_string());
            s.push_str(&format!("    kept       {} (copied; the network's input)\n", kept.join(", ")));
            s.push_str(&format!("    network    {} ({} between layers); outputs param-major\n", sizes.join(" -> "), net.act.name()));
            let (zero, ld) = scalar(&mut s, "transform", "i");
            if zero {
                s.push_str("    log|det J| = 0   [additive coupling: triangular Jacobian with unit diagonal; volume preserving]\n");
            } else {
                s.push_str(&format!(
                    "    log|det J| = sum over i in {{{}}} of {ld}   [coupling: triangular Jacobian, the kept block is the identity]\n",
                    moved.join(", ")
                ));
            }
        }
        LayerKind::Autoregressive { net, inverse } => {
            let mut sizes = vec![f.dim.to_string()];
            sizes.extend(net.hidden.iter().map(|h| h.to_string()));
            sizes.push((f.dim * l.free.len()).to_string());
            s.push_str(&format!(
                "    network    MADE {} ({}); output i sees x_<i only (masked weights are structural zeros, never read)\n",
                sizes.join(" -> "),
                net.act.name()
            ));
            let (_, ld) = scalar(&mut s, "transform", "i");
            s.push_str(&format!("    log|det J| = sum_i {ld}   [autoregressive: triangular Jacobian]\n"));
            let macs: usize = net.shapes(f.dim, f.dim * l.free.len()).iter().map(|(_, o, i)| o * i).sum();
            let how = if macs <= crate::lower::MAX_UNIT_BY_UNIT {
                "each hidden unit computed once"
            } else {
                "the network evaluated whole at each step"
            };
            let (par, seq) = if *inverse { ("sampling", "density") } else { ("density", "sampling") };
            s.push_str(&format!("    order      {par} in parallel; {seq} sequential (x_i needs x_<i), {how}\n"));
        }
        LayerKind::LinearLu => {
            s.push_str(
                "    forward    y = L U x   (L unit lower triangular from `lower`, U upper from `upper` with diagonal exp(log_diag))\n",
            );
            s.push_str("    inverse    x = U^-1 L^-1 y   (forward then back substitution)\n");
            s.push_str(&format!("    log|det J| = sum_i log|u_ii| = sum_i layers.{k}.log_diag_i   [det L = 1]\n"));
        }
        LayerKind::Permute { .. } => s.push_str("    log|det J| = 0   [a permutation]\n"),
        LayerKind::Radial => {
            s.push_str("    forward    y = z + β h(r) (z - z0),  r = ‖z - z0‖,  h(r) = 1/(α + r),  α = softplus(alpha) > 0,  β = -α + softplus(beta) > -α\n");
            let first = match f.dim - 1 {
                0 => String::new(),
                1 => "log1p(β/(α + r)) + ".to_string(),
                m => format!("{m} log1p(β/(α + r)) + "),
            };
            s.push_str(&format!(
                "    log|det J| = (n - 1) log|1 + β h(r)| + log|1 + β h(r) + β h'(r) r| = {first}log1p(β α/(α + r)^2)   [rank-one update of a scaled identity]\n"
            ));
            s.push_str("    inverse    ρ = ‖y - z0‖ = r (1 + β/(α + r)): r is the positive root of r^2 + (α + β - ρ) r - α ρ = 0 (the cancellation-free form);  z = z0 + (y - z0)/(1 + β/(α + r))\n");
        }
        LayerKind::Calibration(c) => {
            if let Some(sd) = d.simplex.iter().find(|sd| sd.kind == *c && sd.dim == f.dim) {
                s.push_str(&crate::derive::simplex::text(sd));
            }
        }
        LayerKind::Normalized(n) => {
            if let Some(sd) = d.sphere.iter().find(|sd| sd.kind == *n && sd.dim == f.dim) {
                s.push_str(&crate::derive::sphere::text(sd, f.dim));
            }
        }
        LayerKind::Map(m) => {
            if let Some(md) = d.map(&m.name, f.dim) {
                s.push_str(&md.text(m));
            }
        }
        LayerKind::Planar => {
            let sub = |e: &crate::ir::expr::Expr, a: &str| {
                let mut bld = crate::ir::expr::Builder::new();
                let to = bld.sym(a);
                let r = bld.substitute(e, crate::ir::expr::root(e), egg::Symbol::from(crate::ir::X), to);
                to_infix(&bld.finish(r))
            };
            s.push_str("    forward    y = z + û h(a),  a = wᵀz + b,  û = u + (m - wᵀu) w/‖w‖²,  m = -1 + softplus(wᵀu) = ûᵀw > -1\n");
            if let Some(p) = &d.planar {
                s.push_str(&format!("               h(a) = {}\n", sub(&p.h, "a")));
                s.push_str(&format!(
                    "    log|det J| = log|1 + ûᵀw h'(a)| = log|1 + m h'(a)| = {}   [matrix determinant lemma]\n",
                    sub(&p.log_det.chosen.expr, "a")
                ));
                s.push_str(&format!(
                    "    inverse    α = solve(wᵀy + b = {}), derivative {} > 0   [root-find along w];  z = y - û h(α)\n",
                    sub(&p.g, "α"),
                    sub(&p.dg, "α")
                ));
                s.push_str(&format!(
                    "    kernels    the determinant 1 + m h'(a) = {} joins the kernel's one logarithm of a product (in a sum of logarithms its error counts in absolute terms: an ulp of 1)\n",
                    sub(&p.dg, "a")
                ));
            }
        }
    }
    s
}

/// The text form of a flow's derivation.
pub fn flow_text(d: &Derivation, f: &FlowDerivation) -> String {
    let mut s = format!("flow {}(x: {})\n", f.name, f.space.spelled(f.dim));
    if !f.doc.is_empty() {
        for line in f.doc.lines() {
            s.push_str(&format!("  /// {line}\n"));
        }
    }
    match &f.base {
        crate::ir::Base::Normal => s.push_str("  base         normal: log p0(z) = sum_i (-z_i^2/2 - log(2 pi)/2)\n"),
        crate::ir::Base::Vmf(kappa) => s.push_str(&format!(
            "  base         vmf({kappa}) on S^{}: log p0(z) = log C_n(κ) + κ z_{}, log C_n(κ) = {}   [von Mises–Fisher about the last axis; surface measure; C_n(κ) = κ^(n/2-1)/((2π)^(n/2) I_(n/2-1)(κ))]\n",
            f.dim - 1,
            f.dim - 1,
            runtime::base::vmf_log_norm(f.dim, *kappa)
        )),
        crate::ir::Base::Dirichlet(alpha) => {
            let a: Vec<String> = alpha.iter().map(|v| format!("{v}")).collect();
            s.push_str(&format!(
                "  base         dirichlet([{}]): log p0(z) = log Γ(Σα) - Σ log Γ(α_i) - log(n)/2 + Σ (α_i - 1) log z_i, constant {}   [surface measure of the simplex: the usual density over √n]\n",
                a.join(", "),
                runtime::base::dirichlet_log_norm(alpha)
            ))
        }
        crate::ir::Base::Uniform => s.push_str(&format!(
            "  base         uniform on S^{}: log p0(z) = -log|S^{}| = {}   [surface measure; log p(x) = log p0(z) - sum_k log R_k, R the volume ratio]\n",
            f.dim - 1,
            f.dim - 1,
            runtime::base::sphere_uniform_log_pdf(f.dim)
        )),
    }
    for (k, l) in f.layers.iter().enumerate() {
        s.push_str(&format!("  layer {k}      {}\n", layer_name(d, l)));
        if l.kind != LayerKind::Elementwise {
            s.push_str(&structure_text(d, f, k, l));
            continue;
        }
        let b = &d.bijectors[l.bijector.expect("elementwise")];
        if !l.free.is_empty() {
            let fr: Vec<String> = l.free.iter().map(|p| format!("layers.{k}.{} [{}] ({})", p.name, f.dim, p.kind.name())).collect();
            s.push_str(&format!("    parameters {}\n", fr.join(", ")));
        }
        s.push_str(&format!("    forward    y_i = {}\n", to_infix(&bound_formula(&b.forward.chosen.expr, l))));
        match b.inverse.formula() {
            Some(g) => s.push_str(&format!("    inverse    x_i = {}\n", to_infix(&bound_formula(g, l)))),
            None => s.push_str("    inverse    x_i = solve(y_i = f(x_i))   [numeric]\n"),
        }
        s.push_str(&format!("    log|det J| = sum_i {}\n", to_infix(&bound_formula(&b.log_det.chosen.expr, l))));
        if let Some(c) = &b.log_det_y {
            s.push_str(&format!(
                "      in y     = sum_i {}   [at x = f^-1(y), used after the inverse]\n",
                to_infix(&bound_formula(&c.chosen.expr, l))
            ));
        }
    }
    for r in &f.fused {
        let b = &r.derivation;
        s.push_str(&format!(
            "  fused        layers {}..{} as one map per coordinate (cost {:.0} vs {:.0} layer by layer)\n",
            r.start,
            r.end - 1,
            r.cost,
            r.unfused_cost
        ));
        s.push_str(&format!("    chain      y_i = {}\n", to_infix(&r.composite)));
        s.push_str(&format!("    simplified y_i = {}\n", to_infix(&r.simplified)));
        for (n, def) in &r.defs {
            s.push_str(&format!("    where      {n} = {}   [per coordinate, computed once per call]\n", to_infix(def)));
        }
        s.push_str(&format!("    forward    y_i = {}\n", to_infix(&b.forward.chosen.expr)));
        match b.inverse.formula() {
            Some(g) => s.push_str(&format!("    inverse    x_i = {}\n", to_infix(g))),
            None => s.push_str("    inverse    x_i = solve(y_i = f(x_i))   [numeric]\n"),
        }
        s.push_str(&format!("    log|det J| = sum_i {}\n", to_infix(&b.log_det.chosen.expr)));
        if let Some(c) = &b.log_det_y {
            s.push_str(&format!("      in y     = sum_i {}   [at x = f^-1(y), used after the inverse]\n", to_infix(&c.chosen.expr)));
        }
        s.push_str(&stability_text("forward", &b.forward).replace("\n    ", "\n      ").replacen("    ", "      ", 1));
        if let Some(c) = b.inverse.choice() {
            s.push_str(&stability_text("inverse", c).replace("\n    ", "\n      ").replacen("    ", "      ", 1));
        }
        s.push_str(&stability_text("log-det", &b.log_det).replace("\n    ", "\n      ").replacen("    ", "      ", 1));
    }
    for n in &f.fusion_notes {
        s.push_str(&format!("  not fused    {n}\n"));
    }
    s.push_str(&format!(
        "  log p(x)     log p0(z) - sum over {} layers of {}, z = layers inverted in reverse order\n",
        f.layers.len(),
        match f.space {
            crate::ir::Space::Real => "log|det J_k|",
            crate::ir::Space::Sphere => "log R_k (x projected onto the sphere first: x/‖x‖)",
            crate::ir::Space::Simplex => "log R_k (x projected onto the simplex first: x/Σx)",
        }
    ));
    s
}

/// Text for the whole derivation, or one flow or bijector.
pub fn text(d: &Derivation, name: Option<&str>, timings: bool) -> String {
    let mut out = Vec::new();
    for f in &d.flows {
        if name.is_none() || name == Some(f.name.as_str()) {
            out.push(flow_text(d, f));
        }
    }
    // built-in splines have no formulas of their own (their layers describe them)
    for b in d.bijectors.iter().filter(|b| b.spline.is_none()) {
        if name.is_none() || name == Some(b.name.as_str()) {
            out.push(bijector_text(b, timings));
        }
    }
    if timings {
        out.push(format!("derived {} bijectors and {} flows in {:.1} ms\n", d.bijectors.len(), d.flows.len(), d.millis));
    }
    out.join("\n")
}

/// LaTeX (an `align*` block per item).
pub fn latex(d: &Derivation, name: Option<&str>) -> String {
    let mut out = String::new();
    for b in d.bijectors.iter().filter(|b| b.spline.is_none()) {
        if name.is_some() && name != Some(b.name.as_str()) {
            continue;
        }
        out.push_str(&format!("% bijector {}\n\\begin{{align*}}\n", b.name));
        out.push_str(&format!("  y &= {} \\\\\n", to_latex(&b.forward.chosen.expr)));
        match b.inverse.formula() {
            Some(g) => out.push_str(&format!("  x &= {} \\\\\n", to_latex(g))),
            None => out.push_str("  x &= f^{-1}(y) \\quad\\text{(numeric)} \\\\\n"),
        }
        out.push_str(&format!("  \\log\\left|f'(x)\\right| &= {}\n", to_latex(&b.log_det.chosen.expr)));
        out.push_str("\\end{align*}\n");
    }
    for f in &d.flows {
        if name.is_some() && name != Some(f.name.as_str()) {
            continue;
        }
        out.push_str(&format!("% flow {}\n\\begin{{align*}}\n", f.name));
        for (k, l) in f.layers.iter().enumerate() {
            let Some(bi) = l.bijector else {
                out.push_str(&format!("  y^{{({k})}} &= \\text{{{}}} \\\\\n", layer_name(d, l)));
                continue;
            };
            let b = &d.bijectors[bi];
            out.push_str(&format!("  y^{{({k})}}_i &= {} \\\\\n", to_latex(&bound_formula(&b.forward.chosen.expr, l))));
        }
        out.push_str("\\end{align*}\n");
    }
    out
}

fn error_json(e: &Error) -> Value {
    let f = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
    json!({ "max_ulps": f(e.max_ulps), "mean_bits": f(e.mean_bits), "max_bound_ratio": f(e.max_ratio / crate::derive::stability::BOUND),
            "points": e.points, "failing": e.failing, "worst_at": f(e.worst_u) })
}

fn choice_json(c: &Choice) -> Value {
    json!({
        "formula": to_infix(&c.chosen.expr),
        "naive": to_infix(&c.naive.expr),
        "rewritten": c.rewritten(),
        "error": error_json(&c.chosen.error),
        "naive_error": error_json(&c.naive.error),
        "candidates": c.candidates.len(),
    })
}

/// The JSON value of one bijector.
pub fn bijector_json(b: &BijectorDerivation) -> Value {
    let inverse = match &b.inverse {
        Inverse::Closed(c) => {
            let mut v = choice_json(c);
            v["kind"] = json!("closed");
            v["closed_form"] = json!(true);
            v
        }
        Inverse::User(c, p) => {
            let mut v = choice_json(c);
            v["kind"] = json!("given");
            v["closed_form"] = json!(true);
            v["proof"] = match p {
                Proof::Symbolic => json!("symbolic"),
                Proof::Numeric(n) => json!(format!("numeric ({n} points)")),
            };
            v
        }
        Inverse::Numeric => json!({ "kind": "numeric", "closed_form": false, "formula": null }),
    };
    json!({
        "name": b.name,
        "doc": b.doc,
        "params": b.params,
        "domain": b.domain.to_string(),
        "range": b.range.to_string(),
        "monotone": b.monotone,
        "monotone_proven": b.monotone_proven,
        "forward": choice_json(&b.forward),
        "derivative": to_infix(&b.derivative),
        "inverse": inverse,
        "log_det": choice_json(&b.log_det),
        "egraph_runs": b.runs,
        "millis": b.millis,
    })
}

/// The JSON value of one flow.
pub fn flow_json(d: &Derivation, f: &FlowDerivation) -> Value {
    let layers: Vec<Value> = f
        .layers
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let kind = match &l.kind {
                LayerKind::Elementwise => "elementwise",
                LayerKind::Coupling { .. } => "coupling",
                LayerKind::Autoregressive { inverse: false, .. } => "autoregressive",
                LayerKind::Autoregressive { inverse: true, .. } => "inverse_autoregressive",
                LayerKind::LinearLu => "linear_lu",
                LayerKind::Permute { .. } => "permute",
                LayerKind::Planar => "planar",
                LayerKind::Radial => "radial",
                LayerKind::Normalized(n) => n.name(),
                LayerKind::Calibration(c) => c.name(),
                LayerKind::Map(_) => "map",
            };
            let Some(bi) = l.bijector else {
                // a manifold map: its ratio's derivation (a stated lemma) and the check of it
                let lemma = |l: &crate::derive::dual::Lemma| {
                    let steps: Vec<Value> = l.steps.iter().map(|(f, why)| json!({ "formula": f, "why": why })).collect();
                    json!({ "ratio_steps": steps, "inverse": l.inverse, "lemma": "stated", "checked_points": l.points, "max_relative_difference": l.max_rel })
                };
                let derivation = match &l.kind {
                    LayerKind::Normalized(n) => d.sphere.iter().find(|s| s.kind == *n && s.dim == f.dim).map(|s| lemma(&s.lemma)),
                    LayerKind::Calibration(c) => d.simplex.iter().find(|s| s.kind == *c && s.dim == f.dim).map(|s| lemma(&s.lemma)),
                    LayerKind::Map(m) => d.map(&m.name, f.dim).map(|md| {
                        json!({
                            "map": m.name,
                            "forward": m.text(),
                            "ratio": "generic: |det(F_x P + n_y n_xᵀ)|, F_x by forward mode",
                            "inverse": m.inverse_text().unwrap_or_else(|| "numeric (Newton in the tangent space)".into()),
                            "checked_points": md.points,
                            "max_off_manifold": md.off_manifold,
                            "max_round_trip": md.round_trip,
                        })
                    }),
                    _ => None,
                };
                return match derivation {
                    Some(v) => json!({ "kind": kind, "layer": layer_name(d, l), "parameters": l.tensors(k, f.dim), "derivation": v }),
                    None => json!({ "kind": kind, "layer": layer_name(d, l), "parameters": l.tensors(k, f.dim) }),
                };
            };
            let b = &d.bijectors[bi];
            json!({
                "kind": kind,
                "layer": layer_name(d, l),
                "parameters": l.tensors(k, f.dim),
                "bijector": b.name,
                "bound": l.bound.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<String, Value>>(),
                "free_params": l.free,
                "forward": to_infix(&bound_formula(&b.forward.chosen.expr, l)),
                "inverse": b.inverse.formula().map(|g| to_infix(&bound_formula(g, l))),
                "inverse_closed_form": b.inverse.is_closed_form(),
                "log_det": to_infix(&bound_formula(&b.log_det.chosen.expr, l)),
            })
        })
        .collect();
    json!({ "name": f.name, "doc": f.doc, "dim": f.dim, "space": f.space, "base": f.base, "layers": layers })
}

/// JSON for the whole derivation, or one flow or bijector.
pub fn json(d: &Derivation, name: Option<&str>) -> Value {
    let bijectors: Vec<Value> =
        d.bijectors.iter().filter(|b| b.spline.is_none() && (name.is_none() || name == Some(b.name.as_str()))).map(bijector_json).collect();
    let flows: Vec<Value> = d.flows.iter().filter(|f| name.is_none() || name == Some(f.name.as_str())).map(|f| flow_json(d, f)).collect();
    json!({ "flowc": env!("CARGO_PKG_VERSION"), "bijectors": bijectors, "flows": flows, "millis": d.millis })
}
