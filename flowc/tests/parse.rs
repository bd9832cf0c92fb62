//! The one parser: files and macro tokens alike, literals in every Rust spelling, clauses.

use flowc::ir::expr::to_infix;

fn build(src: &str) -> flowc::ir::Module {
    flowc::ir::build(&flowc::dsl::parse(src).unwrap()).unwrap()
}

#[test]
fn numeric_literals_in_rust_spellings() {
    let m = build("bijector f(x) = x * 1_000 + 0x10 + 0b11 + 1e-3 + 2.5f64 + 7u32 + 0o7 + 1E2;");
    assert_eq!(to_infix(&m.bijectors[0].forward), "x * 1000 + 16 + 3 + 0.001 + 2.5 + 7 + 7 + 100");
}

#[test]
fn precedence_and_unary_minus() {
    let m = build("bijector f(x; a: real) = -x * a - -(x / 2) + a * (x - 1);");
    assert_eq!(to_infix(&m.bijectors[0].forward), "-x * a - -(x / 2) + a * (x - 1)");
}

#[test]
fn macro_tokens_and_text_parse_the_same() {
    let text = "/// doc\nbijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);\nflow f(x: R^2) { base normal; elementwise(sas(eps = 0.3, delta = 1.5)); }";
    let tokens: proc_macro2::TokenStream = quote::quote! {
        /// doc
        bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
        flow f(x: R^2) { base normal; elementwise(sas(eps = 0.3, delta = 1.5)); }
    };
    let a = flowc::ir::build(&flowc::dsl::parse(text).unwrap()).unwrap();
    let b = flowc::ir::build(&flowc::dsl::parse_tokens(tokens).unwrap()).unwrap();
    assert_eq!(to_infix(&a.bijectors[0].forward), to_infix(&b.bijectors[0].forward));
    assert_eq!(a.bijectors[0].doc, "doc");
    assert_eq!(b.bijectors[0].doc, "doc");
    assert_eq!(a.flows[0].dim, 2);
    let flowc::ir::Layer::Elementwise { bound: ba, bijector: ia, .. } = &a.flows[0].layers[0] else { panic!("elementwise") };
    let flowc::ir::Layer::Elementwise { bound: bb, bijector: ib, .. } = &b.flows[0].layers[0] else { panic!("elementwise") };
    assert_eq!((ba, ia), (bb, ib));
    assert_eq!(bb, &vec![("eps".to_string(), 0.3), ("delta".to_string(), 1.5)]);
}

#[test]
fn where_clauses_and_domains() {
    let m = build(
        "bijector r(x) = x + 0.5 * tanh(x) where inverse = numeric;
         bijector s(x; t: real) = x + t where inverse = y - t;
         bijector k(x: (0, 1); a: positive) = pow(x, a);
         bijector p(x: positive) = log(x);
         bijector h(x: (-inf, 0)) = -x;",
    );
    assert!(matches!(m.bijectors[0].inverse, flowc::ir::InverseHint::Numeric));
    assert!(matches!(&m.bijectors[1].inverse, flowc::ir::InverseHint::Given(e, _) if to_infix(e) == "y - t"));
    assert_eq!(m.bijectors[2].domain.to_string(), "(0, 1)");
    assert_eq!(m.bijectors[3].domain.to_string(), "(0, inf)");
    assert_eq!(m.bijectors[4].domain.to_string(), "(-inf, 0)");
}

#[test]
fn comments_are_rust_comments() {
    let m = build("// line\n/* block */ bijector f(x) = exp(x); // trailing");
    assert_eq!(m.bijectors.len(), 1);
}

#[test]
fn user_inverse_is_verified_symbolically_or_numerically() {
    let (_, _, d) = flowc::cli::load_str("t.flow", "bijector s(x; t: real) = x + t where inverse = y - t;").unwrap();
    assert!(matches!(&d.bijectors[0].inverse, flowc::derive::Inverse::User(_, flowc::derive::Proof::Symbolic)));
    // an inverse egg cannot show equal but that is right: checked numerically
    let (_, _, d) = flowc::cli::load_str("t.flow", "bijector e(x) = exp(x) where inverse = 2 * log(sqrt(y));").unwrap();
    assert!(matches!(&d.bijectors[0].inverse, flowc::derive::Inverse::User(..)));
}
