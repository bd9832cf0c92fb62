//! The Rust translator: the kernels of [`crate::lower`] as Rust source, compiled by rustc
//! (what `flow! { ... }` expands to, and `flowc emit --target rust` prints).
//!
//! Each flow becomes a struct generic over its scalar (`f32` or `f64`, default `f64`)
//! holding its flat parameter buffer and the values that depend on parameters alone
//! (computed once, when the parameters are set). Each of its three kernels becomes one body
//! generic over the value it computes with ([`runtime::Block`]): a scalar for one row
//! (`log_prob`, `forward`, `inverse`) and [`runtime::Lanes`] of 256 bits of rows for the
//! batch functions, so that LLVM vectorizes the arithmetic across rows. Each `ifpos` branch
//! is a method generic over the value too: a block whose rows agree computes one branch as a
//! block, one whose rows disagree computes each row's own branch alone
//! ([`runtime::real::ifpos_split`]). A numeric inverse calls [`runtime::rootfind`] per row,
//! exactly as the interpreter does. Each bijector becomes a small type with `forward`,
//! `inverse` and `log_det`. Generated code depends only on the `runtime` crate.
//!
//! ```
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^2) { base normal; elementwise(affine(log_scale = 0)); }";
//! let (_, _, d) = flowc::cli::load_str("f.flow", src).unwrap();
//! let p = flowc::lower::lower(&d).unwrap();
//! let code = flowc::codegen::rust::emit(&d, &p, &Default::default()).unwrap();
//! let text = flowc::codegen::rust::pretty(code);
//! assert!(text.contains("pub struct F<T: ::runtime::Real = f64>"));
//! assert!(text.contains("pub fn log_prob_batch(&self, xs: &[T], out: &mut [T])"));
//! ```

use crate::derive::{BijectorDerivation, Derivation, FlowDerivation, Inverse};
use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::expr::{to_infix, Expr};
use crate::ir::{Math, ParamKind};
use crate::lower::{self, branch_sets, Inst, Kernel, Kind, Program};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use std::collections::HashMap;

/// Where the user wrote each name, so that generated items carry the user's spans: item
/// names (`sas2`) and bijector parameters (`sinh_arcsinh.eps`). Missing names get the
/// call site.
#[derive(Debug, Clone, Default)]
pub struct Spans(pub HashMap<String, Span>);

impl Spans {
    fn get(&self, key: &str) -> Span {
        self.0.get(key).copied().unwrap_or_else(Span::call_site)
    }
}

/// Rust source for every bijector and flow of the derivation (`p` holds the flows' kernels).
pub fn emit(d: &Derivation, p: &Program, spans: &Spans) -> Result<TokenStream, Diagnostics> {
    emit_with_source(d, p, spans, None)
}

/// The source the items were compiled from, for the generated `jit()` methods.
#[derive(Debug, Clone)]
pub enum Source {
    /// A `.flow` file's text.
    Text(String),
    /// The tokens of a `flow!` block, as text.
    Tokens(String),
}

/// [`emit`], and with `source` a `jit()` method per flow behind the user crate's feature
/// `jit`: the same flow and parameters on flowc's JIT (`flowc::jit_flow::JitFlow`).
pub fn emit_with_source(d: &Derivation, p: &Program, spans: &Spans, source: Option<Source>) -> Result<TokenStream, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    // built-in splines become no type of their own (`runtime::spline` computes them)
    let names = d.bijectors.iter().filter(|b| b.spline.is_none()).map(|b| b.name.as_str()).chain(d.flows.iter().map(|f| f.name.as_str()));
    for name in names {
        match type_name(name, spans.get(name)) {
            Ok(t) => {
                if let Some(other) = seen.insert(t.to_string(), name.to_string()) {
                    diags.push(
                        Diagnostic::at(spans.get(name), format!("`{name}` and `{other}` both become the Rust type `{t}`"))
                            .help("rename one of them"),
                    );
                }
            }
            Err(e) => diags.push(e),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    let mut out = TokenStream::new();
    for b in d.bijectors.iter().filter(|b| b.spline.is_none()) {
        match bijector_item(d, b, spans) {
            Ok(t) => out.extend(t),
            Err(e) => diags.extend(e),
        }
    }
    for f in &d.flows {
        match flow_item(d, p, f, spans) {
            Ok(t) => out.extend(t),
            Err(e) => diags.extend(e),
        }
        if let (Some(src), Ok(ty)) = (&source, type_name(&f.name, spans.get(&f.name))) {
            let (variant, text) = match src {
                Source::Text(t) => (quote!(Text), t),
                Source::Tokens(t) => (quote!(Tokens), t),
            };
            let name = &f.name;
            // (inside an unnamed const so that crates without the feature get no warning)
            out.extend(quote! {
                #[allow(unexpected_cfgs)]
                const _: () = {
                    #[cfg(feature = "jit")]
                    impl<T: ::runtime::Real> #ty<T> {
                        /// The same flow with the same parameters on flowc's JIT (this crate's
                        /// feature `jit`, which depends on `flowc`), compiled at run time from
                        /// this flow's source.
                        pub fn jit(&self) -> Result<::flowc::jit_flow::JitFlow, String> {
                            let p: Vec<f64> = self.params().iter().map(|v| ::runtime::Real::to_f64(*v)).collect();
                            ::flowc::jit_flow::JitFlow::new(::flowc::jit_flow::FlowSource::#variant(#text), #name, &p)
                        }
                    }
                };
            });
        }
    }
    diags.into_result(out)
}

/// Rust source for one flow or bijector, by name.
pub fn emit_item(d: &Derivation, p: &Program, name: &str, spans: &Spans) -> Result<TokenStream, Diagnostics> {
    if let Some(f) = d.flow(name) {
        type_name(name, spans.get(name))?;
        return flow_item(d, p, f, spans);
    }
    if let Some(b) = d.bijector(name) {
        type_name(name, spans.get(name))?;
        return bijector_item(d, b, spans);
    }
    Err(Diagnostic::unlocated(format!("no flow or bijector named `{name}`")).into())
}

/// Formats generated code as a Rust file (prettyplease).
pub fn pretty(code: TokenStream) -> String {
    match syn::parse2::<syn::File>(code.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => code.to_string(),
    }
}

/// `sinh_arcsinh` → `SinhArcsinh`, with the user's span.
fn type_name(name: &str, span: Span) -> Result<Ident, Diagnostic> {
    let bare = name.strip_prefix("r#").unwrap_or(name);
    let mut s = String::new();
    for part in bare.split('_').filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            s.extend(c.to_uppercase());
            s.push_str(cs.as_str());
        }
    }
    if s.is_empty() || s == "Self" || syn::parse_str::<syn::Ident>(&s).is_err() {
        return Err(Diagnostic::at(span, format!("`{name}` cannot name a Rust type (it would be `{s}`)")).help("choose another name"));
    }
    Ok(Ident::new(&s, span))
}

/// A field or local name: raw when it is a keyword.
fn field_name(name: &str, span: Span) -> Result<Ident, Diagnostic> {
    let bare = name.strip_prefix("r#").unwrap_or(name);
    if syn::parse_str::<syn::Ident>(bare).is_ok() {
        return Ok(Ident::new(bare, span));
    }
    if ["self", "Self", "super", "crate", "_"].contains(&bare) || syn::parse_str::<syn::Ident>(&format!("r#{bare}")).is_err() {
        return Err(Diagnostic::at(span, format!("`{bare}` cannot name a parameter in Rust")).help("choose another name"));
    }
    Ok(Ident::new_raw(bare, span))
}

/// A float constant that reads back to exactly the same `f64`.
fn lit(c: f64) -> TokenStream {
    if c.is_nan() {
        quote!(f64::NAN)
    } else if c == f64::INFINITY {
        quote!(f64::INFINITY)
    } else if c == f64::NEG_INFINITY {
        quote!(f64::NEG_INFINITY)
    } else {
        format!("{c:?}").parse().expect("a float literal")
    }
}

fn doc_attrs(doc: &str) -> TokenStream {
    let lines = doc.lines().map(|l| format!(" {l}"));
    quote!(#(#[doc = #lines])*)
}

/// An unsuffixed integer literal (`3`, not `3usize`).
fn n(x: usize) -> proc_macro2::Literal {
    proc_macro2::Literal::usize_unsuffixed(x)
}

fn v(prefix: char, i: usize) -> Ident {
    format_ident!("{}{}", prefix, i)
}

/// How a body reads inputs, parameters and parameter-only values.
struct Access<'a> {
    /// The value type: `V` (a block) or `T` (a scalar).
    ty: TokenStream,
    /// Local names are `{prefix}{index}`.
    prefix: char,
    input: &'a dyn Fn(usize) -> TokenStream,
    param: &'a dyn Fn(usize) -> TokenStream,
    /// A constant of the value type.
    constant: &'a dyn Fn(f64) -> TokenStream,
    /// Parameter-only values computed once: instruction → its place in `self.pre`.
    pre: Option<&'a [Option<usize>]>,
    /// Parameters of root-find sub-bodies (scalars).
    scalar_param: &'a dyn Fn(usize) -> TokenStream,
    /// Block bodies (flow kernels): `ifpos` branches become methods generic over the value,
    /// named `{kernel}_ifpos{i}_{side}`, collected here, so that a block whose rows disagree
    /// computes each row's branch alone (see `runtime::real::ifpos_split`).
    branches: Option<(&'a str, &'a std::cell::RefCell<TokenStream>)>,
}

/// Dense layers with more weights than this are emitted as loops, smaller ones written out.
const DENSE_WRITTEN_OUT: usize = 256;

/// The Rust expression of one op on arguments `a` of the value type `ty` (`T` or `V`,
/// implementing [`runtime::Ops`]): an operator or an `Ops` function; `Err` for the
/// derivation-only ops.
pub fn op_expr(m: &Math, a: &[TokenStream], ty: &TokenStream) -> Result<TokenStream, String> {
    let (x, y) = (a.first(), a.get(1));
    let un = |f: &str| {
        let f = format_ident!("{}", f);
        quote!(#ty::#f(#x))
    };
    let bin = |f: &str| {
        let f = format_ident!("{}", f);
        quote!(#ty::#f(#x, #y))
    };
    Ok(match m {
        Math::Add(_) => quote!(#x + #y),
        Math::Sub(_) => quote!(#x - #y),
        Math::Mul(_) => quote!(#x * #y),
        Math::Div(_) => quote!(#x / #y),
        Math::Neg(_) => quote!(-#x),
        Math::Pow(_) => bin("pow"),
        Math::Hypot(_) => bin("hypot"),
        Math::PowRecip(_) => bin("powrecip"),
        Math::Sqrt(_) => un("sqrt"),
        Math::Cbrt(_) => un("cbrt"),
        Math::Exp(_) => un("exp"),
        Math::Expm1(_) => un("expm1"),
        Math::Log(_) => un("log"),
        Math::Log1p(_) => un("log1p"),
        Math::Sin(_) => un("sin"),
        Math::Cos(_) => un("cos"),
        Math::Tan(_) => un("tan"),
        Math::Atan(_) => un("atan"),
        Math::Sinh(_) => un("sinh"),
        Math::Cosh(_) => un("cosh"),
        Math::Tanh(_) => un("tanh"),
        Math::Asinh(_) => un("asinh"),
        Math::Acosh(_) => un("acosh"),
        Math::Atanh(_) => un("atanh"),
        Math::Sigmoid(_) => un("sigmoid"),
        Math::Logit(_) => un("logit"),
        Math::Softplus(_) => un("softplus"),
        Math::Abs(_) => un("abs"),
        Math::Sign(_) => un("sign"),
        Math::LogCosh(_) => un("logcosh"),
        Math::IfPos(_) => {
            let z = &a[2];
            quote!(#ty::ifpos(#x, || #y, || #z))
        }
        Math::Solve(_) | Math::Num(_) | Math::Sym(_) => return Err(format!("no Rust code for `{m}`")),
    })
}

/// Which instructions are needed to compute `roots`.
fn reachable(insts: &[Inst], roots: &[usize]) -> Vec<bool> {
    let mut live = vec![false; insts.len()];
    for r in roots {
        live[*r] = true;
    }
    for i in (0..insts.len()).rev() {
        if live[i] {
            for a in insts[i].args() {
                live[a] = true;
            }
        }
    }
    live
}

/// A straight-line body: `let` statements for the instructions needed by `roots`, in order;
/// `ifpos` branches used by nothing else are computed inside the branch (only when taken).
fn body(insts: &[Inst], roots: &[usize], deferred: &[Option<(usize, bool)>], acc: &Access) -> Result<TokenStream, String> {
    let live = reachable(insts, roots);
    // values needed by the row (not only by parameter-only values computed once)
    let mut needed = vec![false; insts.len()];
    let invariant = |i: usize| acc.pre.map(|p| p[i].is_some() || matches!(insts[i], Inst::Param(_) | Inst::Const(_))).unwrap_or(false);
    for r in roots {
        needed[*r] = true;
    }
    for i in (0..insts.len()).rev() {
        if live[i] && needed[i] && !invariant(i) {
            for a in insts[i].args() {
                needed[a] = true;
            }
        }
    }
    let mut out = TokenStream::new();
    for i in 0..insts.len() {
        if needed[i] && deferred[i].is_none() {
            out.extend(stmt(insts, i, &needed, deferred, acc)?);
        }
    }
    Ok(out)
}

fn stmt(insts: &[Inst], i: usize, needed: &[bool], deferred: &[Option<(usize, bool)>], acc: &Access) -> Result<TokenStream, String> {
    let name = v(acc.prefix, i);
    let ty = &acc.ty;
    let val = |j: usize| {
        let n = v(acc.prefix, j);
        quote!(#n)
    };
    let rhs = match &insts[i] {
        Inst::Seed | Inst::DenseT { .. } | Inst::AccumDense { .. } | Inst::Accum { .. } => {
            return Err("gradient kernels are compiled by the JIT, not emitted as Rust".into())
        }
        Inst::LogAbsDet { .. } => return Err("generic volume-ratio kernels are compiled by the JIT, not emitted as Rust".into()),
        Inst::Detach(_) => return Err("user maps of the sphere and the simplex are compiled by the JIT, not emitted as Rust".into()),
        Inst::LogProd { terms, scale } => {
            // the sum of logarithms as written (the JIT takes one logarithm of a product)
            let parts: Vec<TokenStream> = terms
                .iter()
                .map(|(v, p)| {
                    let c = (acc.constant)(*scale * *p as f64);
                    let x = val(*v);
                    quote!(#c * #ty::log(#x))
                })
                .collect();
            quote!(#(#parts)+*)
        }
        Inst::Input(j) => (acc.input)(*j),
        Inst::Param(j) => (acc.param)(*j),
        Inst::Const(c) => (acc.constant)(*c),
        Inst::Op(_, _) if acc.pre.and_then(|p| p[i]).is_some() => {
            let slot = n(acc.pre.and_then(|p| p[i]).expect("checked"));
            quote!(#ty::splat(self.pre[#slot]))
        }
        Inst::Op(Math::IfPos(_), args) if acc.branches.is_some() => {
            let (kernel, methods) = acc.branches.expect("checked");
            let mut parts = Vec::new();
            for (side, root) in [(true, args[1]), (false, args[2])] {
                let members: Vec<usize> = (0..i).filter(|j| needed[*j] && deferred[*j] == Some((i, side))).collect();
                // the values the branch reads from outside it, in order
                let mut free: Vec<usize> = members.iter().flat_map(|j| insts[*j].args()).filter(|a| !members.contains(a)).collect();
                if !members.contains(&root) {
                    free.push(root);
                }
                free.sort_unstable();
                free.dedup();
                let mut inner = TokenStream::new();
                for j in &members {
                    inner.extend(stmt(insts, *j, needed, deferred, acc)?);
                }
                let method = format_ident!("{}_ifpos{}_{}", kernel, i, if side { "then" } else { "else" });
                let names: Vec<TokenStream> = free.iter().map(|j| val(*j)).collect();
                let k = n(free.len());
                let r = val(root);
                methods.borrow_mut().extend(quote! {
                    #[inline(always)]
                    fn #method<V: ::runtime::Block<T>>(&self, [#(#names),*]: [V; #k]) -> V {
                        #inner
                        #r
                    }
                });
                parts.push(quote!([#(#names),*], |a| self.#method(a), |a| self.#method(a)));
            }
            let (c, t, e) = (val(args[0]), &parts[0], &parts[1]);
            quote!(::runtime::real::ifpos_split(#c, #t, #e))
        }
        Inst::Op(Math::IfPos(_), args) => {
            let mut branches = Vec::new();
            for (side, root) in [(true, args[1]), (false, args[2])] {
                let mut inner = TokenStream::new();
                for j in 0..i {
                    if needed[j] && deferred[j] == Some((i, side)) {
                        inner.extend(stmt(insts, j, needed, deferred, acc)?);
                    }
                }
                let r = val(root);
                branches.push(if inner.is_empty() { quote!(|| #r) } else { quote!(|| { #inner #r }) });
            }
            let (c, t, e) = (val(args[0]), &branches[0], &branches[1]);
            quote!(#ty::ifpos(#c, #t, #e))
        }
        Inst::Op(m, args) => {
            let a: Vec<TokenStream> = args.iter().map(|j| val(*j)).collect();
            op_expr(m, &a, ty)?
        }
        Inst::Dense { inputs, weight, outputs, mask, rows } if inputs.len() * outputs > DENSE_WRITTEN_OUT => {
            // a loop over the weight rows (`runtime::flow::dense`)
            let xs: Vec<TokenStream> = inputs.iter().map(|j| val(*j)).collect();
            let (k, o) = (n(inputs.len()), n(*outputs));
            let made = match mask {
                Some(m) => {
                    let (a, b, c) = (n(m.layer), n(m.layers), n(m.dim));
                    quote!(Some((#a, #b, #c)))
                }
                None => quote!(None),
            };
            if *rows == lower::Rows::ALL {
                let (w0, w1) = (n(*weight), n(weight + inputs.len() * outputs));
                quote!(::runtime::flow::dense::<T, #ty, #k, #o>(&self.params[#w0..#w1], [#(#xs),*], #made))
            } else {
                let (w0, first, step) = (n(*weight), n(rows.first), n(rows.step));
                quote!(::runtime::flow::dense_rows::<T, #ty, #k, #o>(&self.params[#w0..], #first, #step, [#(#xs),*], #made))
            }
        }
        Inst::Dense { inputs, weight, outputs, mask, rows: sel } => {
            // W·x written out (masked entries skipped): one sum per output
            let k = inputs.len();
            let mut rows = Vec::with_capacity(*outputs);
            for o in 0..*outputs {
                let r = sel.row(o);
                let mut terms: Vec<TokenStream> = Vec::new();
                for (c, x) in inputs.iter().enumerate() {
                    if mask.map(|m| m.connected(r, c)).unwrap_or(true) {
                        let w = (acc.param)(weight + r * k + c);
                        let xv = val(*x);
                        terms.push(quote!(#w * #xv));
                    }
                }
                rows.push(if terms.is_empty() { (acc.constant)(0.0) } else { quote!(#(#terms)+*) });
            }
            quote!([#(#rows),*])
        }
        Inst::Part(d, j) => {
            let dv = val(*d);
            let j = n(*j);
            quote!(#dv[#j])
        }
        Inst::Spline { x, raw, bins, bound, inverse, log_det } => {
            let xv = val(*x);
            let rv: Vec<TokenStream> = raw.iter().map(|r| val(*r)).collect();
            let bins = n(*bins);
            let bound = lit(*bound);
            quote!(::runtime::spline::lanes::<T, #ty, _>(#xv, [#(#rv),*], #bins, #bound, #inverse, #log_det))
        }
        Inst::RootFind { y, f, df, domain, increasing } => {
            let sub = |sb: &lower::SubBody, prefix: char| -> Result<TokenStream, String> {
                let input = |_: usize| quote!(x);
                let constant = |c: f64| {
                    let c = lit(c);
                    quote!(T::from_f64(#c))
                };
                let sacc = Access {
                    ty: quote!(T),
                    prefix,
                    input: &input,
                    param: acc.scalar_param,
                    constant: &constant,
                    pre: None,
                    scalar_param: acc.scalar_param,
                    branches: None,
                };
                let none = vec![None; sb.insts.len()];
                let stmts = body(&sb.insts, &[sb.result], &none, &sacc)?;
                let r = v(prefix, sb.result);
                let uses_x = reachable(&sb.insts, &[sb.result]).iter().zip(&sb.insts).any(|(l, i)| *l && matches!(i, Inst::Input(_)));
                let arg = if uses_x { quote!(x) } else { quote!(_) };
                Ok(quote!(&|#arg: T| { #stmts #r }))
            };
            let (fb, dfb) = (sub(f, 'f')?, sub(df, 'd')?);
            let (lo, hi) = (lit(domain.lo), lit(domain.hi));
            let yv = val(*y);
            if acc.pre.is_none() {
                // a scalar body
                quote!(::runtime::rootfind::solve_real(#fb, #dfb, #yv, #lo, #hi, #increasing))
            } else {
                // a block: one root-find per row
                quote!(<#ty as ::runtime::Block<T>>::map(#yv, |y| ::runtime::rootfind::solve_real(#fb, #dfb, y, #lo, #hi, #increasing)))
            }
        }
    };
    Ok(quote!(let #name = #rhs;))
}

/// Parameter-only values of a flow's kernels, computed once per parameter setting.
#[derive(Default)]
struct Prepared {
    /// statements computing `a{n}`
    stmts: TokenStream,
    /// key → local index
    memo: HashMap<String, usize>,
    locals: usize,
    /// the locals stored in `pre`, in order
    slots: Vec<usize>,
    reads_params: bool,
}

impl Prepared {
    /// The local holding instruction `i` of `insts` (computed from parameters alone).
    fn local(&mut self, insts: &[Inst], i: usize, keys: &mut HashMap<usize, String>) -> Result<usize, String> {
        let key = match &insts[i] {
            Inst::Param(j) => format!("p{j}"),
            Inst::Const(c) => format!("c{:x}", c.to_bits()),
            Inst::Op(m, args) => {
                let mut ks = Vec::new();
                for a in args {
                    self.local(insts, *a, keys)?;
                    ks.push(keys[a].clone());
                }
                format!("{m}({})", ks.join(","))
            }
            other => return Err(format!("`{other:?}` is not a parameter-only value")),
        };
        keys.insert(i, key.clone());
        if let Some(n) = self.memo.get(&key) {
            return Ok(*n);
        }
        let rhs = match &insts[i] {
            Inst::Param(j) => {
                self.reads_params = true;
                let j = n(*j);
                quote!(p[#j])
            }
            Inst::Const(c) => {
                let c = lit(*c);
                quote!(T::from_f64(#c))
            }
            Inst::Op(m, args) => {
                let a: Vec<TokenStream> = args
                    .iter()
                    .map(|a| {
                        let n = v('a', self.memo[&keys[a]]);
                        quote!(#n)
                    })
                    .collect();
                op_expr(m, &a, &quote!(T))?
            }
            _ => unreachable!("checked above"),
        };
        let n = self.locals;
        self.locals += 1;
        let name = v('a', n);
        self.stmts.extend(quote!(let #name = #rhs;));
        self.memo.insert(key, n);
        Ok(n)
    }
}

/// Whether each instruction depends on parameters and constants alone.
fn invariants(k: &Kernel) -> Vec<bool> {
    let mut inv = vec![false; k.body.insts.len()];
    for (i, inst) in k.body.insts.iter().enumerate() {
        inv[i] = match inst {
            Inst::Param(_) | Inst::Const(_) => true,
            Inst::Op(_, args) => args.iter().all(|a| inv[*a]),
            _ => false,
        };
    }
    inv
}

fn internal(what: &str, e: String) -> Diagnostics {
    Diagnostic::unlocated(format!("internal: cannot emit Rust for {what}: {e}")).into()
}

/// The text of each stage: (what, forward, inverse, log-det).
fn stage_texts(d: &Derivation, f: &FlowDerivation) -> Vec<[String; 4]> {
    let inv_text = |b: &BijectorDerivation, bind: &dyn Fn(&Expr) -> String| match &b.inverse {
        Inverse::Numeric => "solve(y = f(x)) (numeric: bracketed Newton-bisection)".to_string(),
        other => bind(other.formula().expect("closed or given")),
    };
    let mut out = Vec::new();
    let mut k = 0;
    while k < f.layers.len() {
        if let Some(r) = f.fused_at(k) {
            let b = &r.derivation;
            let defs: Vec<String> = r.defs.iter().map(|(n, e)| format!("{n} = {}", to_infix(e))).collect();
            let what = if defs.is_empty() {
                format!("layers {}..{} fused", r.start, r.end)
            } else {
                format!("layers {}..{} fused, where {}", r.start, r.end, defs.join(", "))
            };
            let plain = |e: &Expr| to_infix(e);
            out.push([what, to_infix(&b.forward.chosen.expr), inv_text(b, &plain), to_infix(&b.log_det.chosen.expr)]);
            k = r.end;
        } else {
            let l = &f.layers[k];
            let Some(bi) = l.bijector.filter(|_| l.kind == crate::derive::LayerKind::Elementwise) else {
                let text = crate::report::flow_text(d, f);
                let line = text.lines().find(|t| t.trim_start().starts_with(&format!("layer {k} "))).unwrap_or("").trim().to_string();
                out.push([line, String::new(), String::new(), String::new()]);
                k += 1;
                continue;
            };
            let b = &d.bijectors[bi];
            let bind = |e: &Expr| to_infix(&crate::report::bound_formula(e, l));
            let args: Vec<String> = l.bound.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            let what = if args.is_empty() {
                format!("layer {k}: elementwise({})", b.name)
            } else {
                format!("layer {k}: elementwise({}({}))", b.name, args.join(", "))
            };
            out.push([what, bind(&b.forward.chosen.expr), inv_text(b, &bind), bind(&b.log_det.chosen.expr)]);
            k += 1;
        }
    }
    out
}

fn kind_tokens(k: ParamKind) -> TokenStream {
    match k {
        ParamKind::Real => quote!(::runtime::Kind::Real),
        ParamKind::Positive => quote!(::runtime::Kind::Positive),
        ParamKind::Unit => quote!(::runtime::Kind::Unit),
    }
}

fn flow_item(d: &Derivation, p: &Program, f: &FlowDerivation, spans: &Spans) -> Result<TokenStream, Diagnostics> {
    let span = spans.get(&f.name);
    let ty = type_name(&f.name, span)?;
    let kernel =
        |kind: Kind| p.kernel(&f.name, kind).ok_or_else(|| internal(&format!("`{}`", f.name), format!("no {} kernel", kind.name())));
    let ks = [kernel(Kind::Forward)?, kernel(Kind::Inverse)?, kernel(Kind::LogProb)?];
    let slots = lower::param_slots(f);
    let np = ks[0].param_len();
    let dim = f.dim;

    // parameter-only values, shared by the three kernels
    let mut prep = Prepared::default();
    let mut pre_maps: Vec<Vec<Option<usize>>> = Vec::new();
    for k in &ks {
        let inv = invariants(k);
        let mut keys = HashMap::new();
        let mut map = vec![None; k.body.insts.len()];
        // parameter-only ops read by the row (params and constants are read directly)
        let mut row_reads = vec![false; k.body.insts.len()];
        for (i, inst) in k.body.insts.iter().enumerate() {
            if !inv[i] {
                for a in inst.args() {
                    row_reads[a] = true;
                }
            }
        }
        for o in &k.outputs {
            row_reads[*o] = true;
        }
        for i in 0..k.body.insts.len() {
            if inv[i] && row_reads[i] && matches!(k.body.insts[i], Inst::Op(..)) {
                let n = prep.local(&k.body.insts, i, &mut keys).map_err(|e| internal(&format!("`{}`", f.name), e))?;
                let slot = match prep.slots.iter().position(|s| *s == n) {
                    Some(s) => s,
                    None => {
                        prep.slots.push(n);
                        prep.slots.len() - 1
                    }
                };
                map[i] = Some(slot);
            }
        }
        pre_maps.push(map);
    }
    let npre = prep.slots.len();

    let input = |j: usize| {
        let j = n(j);
        quote!(x[#j])
    };
    let param = |j: usize| {
        let j = n(j);
        quote!(V::splat(self.params[#j]))
    };
    let scalar_param = |j: usize| {
        let j = n(j);
        quote!(self.params[#j])
    };
    let constant = |c: f64| {
        let c = lit(c);
        quote!(V::c(#c))
    };
    let mut kernels = TokenStream::new();
    for (k, map) in ks.iter().zip(&pre_maps) {
        let helpers = std::cell::RefCell::new(TokenStream::new());
        let acc = Access {
            ty: quote!(V),
            prefix: 'v',
            input: &input,
            param: &param,
            constant: &constant,
            pre: Some(map),
            scalar_param: &scalar_param,
            branches: Some((k.kind.name(), &helpers)),
        };
        let inv: Vec<bool> = invariants(k);
        let deferred = branch_sets(k, &inv);
        let stmts = body(&k.body.insts, &k.outputs, &deferred, &acc).map_err(|e| internal(&format!("`{}`", f.name), e))?;
        let outs = k.outputs.iter().map(|o| v('v', *o));
        let nout = n(k.outputs.len());
        let dim_n = n(dim);
        let fname = format_ident!("{}_kernel", k.kind.name());
        let doc = format!(" The `{}` kernel on one row (`V = T`) or a block of rows (`V = T::Block`).", k.kind.name());
        kernels.extend(quote! {
            #[doc = #doc]
            #[inline]
            fn #fname<V: ::runtime::Block<T>>(&self, x: [V; #dim_n]) -> [V; #nout] {
                #stmts
                [#(#outs),*]
            }
        });
        kernels.extend(helpers.into_inner());
    }
    let pre_stmts = &prep.stmts;
    let pre_vals = prep.slots.iter().map(|n| v('a', *n));
    let p_arg = if prep.reads_params { quote!(p) } else { quote!(_p) };

    let slot_rows = slots.iter().map(|s| {
        let (name, offset, len) = (&s.name, n(s.offset), n(s.len));
        let (k, pname) = s.name.strip_prefix("layers.").and_then(|r| r.split_once('.')).expect("layers.K.NAME");
        let k: usize = k.parse().expect("layer index");
        let kind = f.layers[k].free.iter().find(|q| q.name == pname).map(|q| q.kind).unwrap_or(ParamKind::Real);
        let kind = kind_tokens(kind);
        quote!(::runtime::Slot { name: #name, offset: #offset, len: #len, kind: #kind })
    });
    let texts = stage_texts(d, f);
    let nstages = texts.len();
    let col = |c: usize| texts.iter().map(move |t| t[c].clone()).collect::<Vec<_>>();
    let (what, fwd, inv, ld) = (col(0), col(1), col(2), col(3));
    let name = &f.name;
    let mut doc = String::new();
    if !f.doc.is_empty() {
        doc.push_str(&f.doc);
        doc.push_str("\n\n");
    }
    doc.push_str(&format!(
        "Compiled from `flow {name}(x: {})`: {} layer{} in {nstages} stage{}, {}, {np} parameter value{}.\n\
         Generic over the scalar (`f32` or `f64`); see [`Self::STAGES`] for the derived formulas.",
        f.space.spelled(dim),
        f.layers.len(),
        if f.layers.len() == 1 { "" } else { "s" },
        if nstages == 1 { "" } else { "s" },
        match f.base {
            crate::ir::Base::Normal => "standard normal base",
            crate::ir::Base::Uniform => "uniform base on the sphere (kernels project their input rows onto it: x/‖x‖)",
            crate::ir::Base::Dirichlet(_) => "Dirichlet base on the simplex (kernels project their input rows onto it: x/Σx)",
            crate::ir::Base::Vmf(_) => "von Mises–Fisher base on the sphere (kernels project their input rows onto it: x/‖x‖)",
        },
        if np == 1 { "" } else { "s" },
    ));
    let docs = doc_attrs(&doc);
    let sample_doc = match f.base {
        crate::ir::Base::Normal => " A point drawn from the flow: a standard normal z pushed forward.",
        crate::ir::Base::Uniform => {
            " A point drawn from the flow: a standard normal z pushed forward (the forward kernel projects it onto the sphere, z/‖z‖, which is uniform there)."
        }
        crate::ir::Base::Dirichlet(_) => " A point drawn from the flow: a Dirichlet z pushed forward.",
        crate::ir::Base::Vmf(_) => " A point drawn from the flow: a von Mises–Fisher z pushed forward.",
    };
    // the base points of `sample` (and of the trait's `sample_rows`)
    let (fill_base, fill_base_fn) = match &f.base {
        crate::ir::Base::Dirichlet(alpha) => (
            quote!(rng.fill_dirichlet(&[#(#alpha),*], &mut z);),
            quote! {
                fn fill_base(rng: &mut ::runtime::Rng, z: &mut [T]) {
                    for row in z.chunks_mut(#dim) {
                        rng.fill_dirichlet(&[#(#alpha),*], row);
                    }
                }
            },
        ),
        crate::ir::Base::Vmf(kappa) => (
            quote!(rng.fill_vmf(#kappa, &mut z);),
            quote! {
                fn fill_base(rng: &mut ::runtime::Rng, z: &mut [T]) {
                    for row in z.chunks_mut(#dim) {
                        rng.fill_vmf(#kappa, row);
                    }
                }
            },
        ),
        _ => (quote!(rng.fill_normal(&mut z);), quote!()),
    };
    let outs_fwd: Vec<TokenStream> = (0..dim)
        .map(|i| {
            let i = n(i);
            quote!(o[#i])
        })
        .collect();
    let outs_inv = outs_fwd.clone();
    let (dim, d1, np, npre, nstages) = (n(dim), n(dim + 1), n(np), n(npre), n(nstages));

    // the definition carries the user's span: a clash with another item points at the name
    let def = quote_spanned! {span=>
        #docs
        #[derive(Clone, Debug, PartialEq)]
        pub struct #ty<T: ::runtime::Real = f64> {
            params: [T; #np],
            pre: [T; #npre],
        }
    };
    Ok(quote! {
        #def

        #[allow(clippy::all, unused_parens)]
        impl<T: ::runtime::Real> #ty<T> {
            /// The flow's name in the flow language.
            pub const NAME: &'static str = #name;
            /// Dimension of a point.
            pub const DIM: usize = #dim;
            /// Length of the flat parameter buffer.
            pub const PARAM_LEN: usize = #np;
            /// The parameter vectors (`layers.K.NAME`) and their places in the flat buffer.
            pub const PARAMS: &'static [::runtime::Slot] = &[#(#slot_rows),*];
            /// The stages, base first: a layer, or a run of layers fused into one map.
            pub const STAGES: [&'static str; #nstages] = [#(#what),*];
            /// Forward map y = f(x) of each stage, per coordinate.
            pub const FORWARD: [&'static str; #nstages] = [#(#fwd),*];
            /// Derived inverse x = f^-1(y) of each stage, per coordinate.
            pub const INVERSE: [&'static str; #nstages] = [#(#inv),*];
            /// Derived log|f'(x)| of each stage, per coordinate (summed over coordinates).
            pub const LOG_DET: [&'static str; #nstages] = [#(#ld),*];

            /// The flow with these parameters (flat layout, see [`Self::PARAMS`]); every value
            /// is checked against its kind.
            pub fn new(params: [T; #np]) -> Result<Self, ::runtime::ParamError> {
                ::runtime::params::check(Self::PARAMS, &params)?;
                Ok(Self::build(params))
            }

            /// [`Self::new`] from a slice (its length is checked).
            pub fn from_slice(params: &[T]) -> Result<Self, ::runtime::ParamError> {
                ::runtime::params::check(Self::PARAMS, params)?;
                let mut p = [T::ZERO; #np];
                p.copy_from_slice(params);
                Ok(Self::build(p))
            }

            /// The flow from `(name, values)` pairs naming every parameter vector once
            /// (`layers.K.NAME`, as `flowc params` lists them).
            pub fn from_named(named: &[(&str, &[T])]) -> Result<Self, ::runtime::ParamError> {
                let mut p = [T::ZERO; #np];
                ::runtime::params::from_named(Self::PARAMS, &mut p, named)?;
                Ok(Self::build(p))
            }

            /// The flow with parameters from a safetensors file (the names of
            /// [`Self::PARAMS`], as `flowc params` lists them and `flowc train` writes them).
            pub fn from_file(path: impl AsRef<::std::path::Path>) -> Result<Self, ::runtime::ParamError> {
                let mut p = [T::ZERO; #np];
                ::runtime::params::from_file(Self::PARAMS, &mut p, path.as_ref())?;
                Ok(Self::build(p))
            }

            /// The flat parameter buffer.
            pub fn params(&self) -> &[T; #np] {
                &self.params
            }

            /// One parameter vector by name.
            pub fn param(&self, name: &str) -> Option<&[T]> {
                ::runtime::params::get(Self::PARAMS, &self.params, name)
            }

            /// Sets one parameter vector by name (checked).
            pub fn set_param(&mut self, name: &str, values: &[T]) -> Result<(), ::runtime::ParamError> {
                ::runtime::params::set(Self::PARAMS, &mut self.params, name, values)?;
                self.pre = Self::prepare(&self.params);
                Ok(())
            }

            /// log p(x).
            pub fn log_prob(&self, x: &[T; #dim]) -> T {
                self.log_prob_kernel::<T>(*x)[0]
            }

            /// log p(x) of every row of `xs` (row-major, `DIM` values each) into `out`.
            ///
            /// # Panics
            /// When `xs` is not whole rows or `out` does not have one value per row.
            pub fn log_prob_batch(&self, xs: &[T], out: &mut [T]) {
                ::runtime::flow::run_blocks::<T, #dim, 1>(xs, out, |x| self.log_prob_kernel(x), |x| self.log_prob_kernel(x))
            }

            /// Base point to data point: x = f(z) and Σ log|det J| of the layers.
            pub fn forward(&self, z: &[T; #dim]) -> ([T; #dim], T) {
                let o = self.forward_kernel::<T>(*z);
                ([#(#outs_fwd),*], o[#dim])
            }

            /// [`Self::forward`] of every row of `zs` into `out` (`DIM + 1` values per row:
            /// x, then log|det J|).
            pub fn forward_batch(&self, zs: &[T], out: &mut [T]) {
                ::runtime::flow::run_blocks::<T, #dim, #d1>(zs, out, |x| self.forward_kernel(x), |x| self.forward_kernel(x))
            }

            /// Data point to base point: z = f^-1(x) and Σ log|det J| of the forward layers at
            /// the recovered points (log p(x) = log N(z) minus it).
            pub fn inverse(&self, x: &[T; #dim]) -> ([T; #dim], T) {
                let o = self.inverse_kernel::<T>(*x);
                ([#(#outs_inv),*], o[#dim])
            }

            /// [`Self::inverse`] of every row of `xs` into `out` (`DIM + 1` values per row).
            pub fn inverse_batch(&self, xs: &[T], out: &mut [T]) {
                ::runtime::flow::run_blocks::<T, #dim, #d1>(xs, out, |x| self.inverse_kernel(x), |x| self.inverse_kernel(x))
            }

            #[doc = #sample_doc]
            pub fn sample(&self, rng: &mut ::runtime::Rng) -> [T; #dim] {
                let mut z = [T::ZERO; #dim];
                #fill_base
                self.forward(&z).0
            }

            fn build(params: [T; #np]) -> Self {
                Self { pre: Self::prepare(&params), params }
            }

            /// The values that depend on parameters alone.
            fn prepare(#p_arg: &[T; #np]) -> [T; #npre] {
                #pre_stmts
                [#(#pre_vals),*]
            }

            #kernels
        }

        impl<T: ::runtime::Real> Default for #ty<T> {
            /// Every parameter at its identity-like default (real 0, positive 1, unit 0.5).
            fn default() -> Self {
                let mut p = [T::ZERO; #np];
                ::runtime::params::set_defaults(Self::PARAMS, &mut p);
                Self::build(p)
            }
        }

        impl<T: ::runtime::Real> ::runtime::Flow<T> for #ty<T> {
            const NAME: &'static str = #name;
            const DIM: usize = #dim;
            const PARAMS: &'static [::runtime::Slot] = <#ty<T>>::PARAMS;
            fn from_flat(params: &[T]) -> Result<Self, ::runtime::ParamError> {
                Self::from_slice(params)
            }
            fn flat(&self) -> &[T] {
                &self.params
            }
            fn log_prob_rows(&self, xs: &[T], out: &mut [T]) {
                self.log_prob_batch(xs, out)
            }
            fn forward_rows(&self, zs: &[T], out: &mut [T]) {
                self.forward_batch(zs, out)
            }
            fn inverse_rows(&self, xs: &[T], out: &mut [T]) {
                self.inverse_batch(xs, out)
            }
            #fill_base_fn
        }
    })
}

fn bijector_item(d: &Derivation, b: &BijectorDerivation, spans: &Spans) -> Result<TokenStream, Diagnostics> {
    let span = spans.get(&b.name);
    let ty = type_name(&b.name, span)?;
    let [fk, ik] = lower::lower_bijector(d, &b.name)?;
    let mut diags = Diagnostics::new();
    let fields: Vec<Ident> = b
        .params
        .iter()
        .filter_map(|p| field_name(&p.name, spans.get(&format!("{}.{}", b.name, p.name))).map_err(|e| diags.push(e)).ok())
        .collect();
    if diags.has_errors() {
        return Err(diags);
    }
    let has_params = !fields.is_empty();
    let param = |j: usize| {
        let f = &fields[j];
        quote!(self.#f)
    };
    let constant = |c: f64| {
        let c = lit(c);
        quote!(T::from_f64(#c))
    };
    let method = |k: &Kernel, out: usize, var: &str| -> Result<TokenStream, Diagnostics> {
        let var = format_ident!("{}", var);
        let input = |_: usize| quote!(#var);
        let acc = Access {
            ty: quote!(T),
            prefix: 'v',
            input: &input,
            param: &param,
            constant: &constant,
            pre: None,
            scalar_param: &param,
            branches: None,
        };
        let none = vec![false; k.body.insts.len()];
        let deferred = branch_sets(k, &none);
        let stmts = body(&k.body.insts, &[k.outputs[out]], &deferred, &acc).map_err(|e| internal(&format!("`{}`", b.name), e))?;
        let r = v('v', k.outputs[out]);
        Ok(quote!({ #stmts #r }))
    };
    let (fwd, ld, inv) = (method(&fk, 0, "x")?, method(&fk, 1, "x")?, method(&ik, 0, "y")?);
    let name = &b.name;
    let domain = b.domain.to_string();
    let forward_text = to_infix(&b.forward.chosen.expr);
    let inverse_text = match b.inverse.formula() {
        Some(e) => to_infix(e),
        None => "solve(y = f(x)) (numeric: bracketed Newton-bisection)".to_string(),
    };
    let ld_text = to_infix(&b.log_det.chosen.expr);
    let mut doc = String::new();
    if !b.doc.is_empty() {
        doc.push_str(&b.doc);
        doc.push_str("\n\n");
    }
    let sig: Vec<String> = b.params.iter().map(|p| format!("{}: {}", p.name, p.kind.name())).collect();
    doc.push_str(&format!(
        "Compiled from `bijector {name}(x{}{})`: y = {forward_text}, on {domain}.",
        if sig.is_empty() { "" } else { "; " },
        sig.join(", ")
    ));
    let docs = doc_attrs(&doc);
    let consts = quote! {
        /// The bijector's name in the flow language.
        pub const NAME: &'static str = #name;
        /// The domain of x.
        pub const DOMAIN: &'static str = #domain;
        /// The forward map, y = f(x).
        pub const FORWARD: &'static str = #forward_text;
        /// The derived inverse, x = f^-1(y).
        pub const INVERSE: &'static str = #inverse_text;
        /// The derived log|f'(x)|.
        pub const LOG_DET: &'static str = #ld_text;
    };
    let methods = quote! {
        /// y = f(x).
        pub fn forward(&self, x: T) -> T #fwd
        /// x = f^-1(y) (NaN outside the range).
        pub fn inverse(&self, y: T) -> T #inv
        /// log|f'(x)|.
        pub fn log_det(&self, x: T) -> T #ld
    };
    let slot_rows = b
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (pname, i, kind) = (&p.name, n(i), kind_tokens(p.kind));
            quote!(::runtime::Slot { name: #pname, offset: #i, len: 1, kind: #kind })
        })
        .collect::<Vec<_>>();
    let idx: Vec<proc_macro2::Literal> = (0..fields.len()).map(n).collect();
    let trait_impl = |generics: TokenStream, ctor: TokenStream| {
        quote! {
            impl<T: ::runtime::Real> ::runtime::Bijector<T> for #ty #generics {
                const NAME: &'static str = #name;
                const PARAMS: &'static [::runtime::Slot] = &[#(#slot_rows),*];
                fn from_params(params: &[T]) -> Result<Self, ::runtime::ParamError> {
                    ::runtime::params::check(<Self as ::runtime::Bijector<T>>::PARAMS, params)?;
                    Ok(#ctor)
                }
                fn forward(&self, x: T) -> T {
                    #ty::forward(self, x)
                }
                fn inverse(&self, y: T) -> T {
                    #ty::inverse(self, y)
                }
                fn log_det(&self, x: T) -> T {
                    #ty::log_det(self, x)
                }
            }
        }
    };
    if has_params {
        let tr = trait_impl(quote!(<T>), quote!(Self { #(#fields: params[#idx]),* }));
        let kinds = b.params.iter().map(|p| format!(" `{}`: {}", p.name, p.kind.name()));
        let def = quote_spanned! {span=>
            #docs
            #[derive(Clone, Copy, Debug, PartialEq)]
            pub struct #ty<T: ::runtime::Real = f64> {
                #(#[doc = #kinds] pub #fields: T,)*
            }
        };
        Ok(quote! {
            #def
            #[allow(clippy::all, unused_parens)]
            impl<T: ::runtime::Real> #ty<T> {
                #consts
                /// The bijector with these parameters.
                pub fn new(#(#fields: T),*) -> Self {
                    Self { #(#fields),* }
                }
                #methods
            }
            #tr
        })
    } else {
        let tr = trait_impl(quote!(), quote!(Self));
        let def = quote_spanned! {span=>
            #docs
            #[derive(Clone, Copy, Debug, Default, PartialEq)]
            pub struct #ty;
        };
        Ok(quote! {
            #def
            #[allow(clippy::all, unused_parens)]
            impl #ty {
                #consts
                /// y = f(x).
                pub fn forward<T: ::runtime::Real>(&self, x: T) -> T #fwd
                /// x = f^-1(y) (NaN outside the range).
                pub fn inverse<T: ::runtime::Real>(&self, y: T) -> T #inv
                /// log|f'(x)|.
                pub fn log_det<T: ::runtime::Real>(&self, x: T) -> T #ld
            }
            #tr
        })
    }
}
