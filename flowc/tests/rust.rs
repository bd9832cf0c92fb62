//! The Rust backend and the macro expansion, on `proc_macro2` tokens: golden files of the
//! generated Rust for the corpus (`snapshots/rust/`, pretty-printed), and errors as
//! `compile_error!`s at the user's tokens, all of them at once.

use proc_macro2::TokenStream;

fn corpus_src() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/corpus.flow")).unwrap()
}

#[test]
fn generated_rust_of_the_corpus() {
    let (_, _, d) = flowc::cli::load_str("corpus.flow", &corpus_src()).unwrap_or_else(|f| panic!("{}", f.message));
    let p = flowc::lower::lower(&d).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/rust");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for f in &d.flows {
            let code = flowc::codegen::rust::emit_item(&d, &p, &f.name, &Default::default()).unwrap();
            insta::assert_snapshot!(format!("flow_{}", f.name), flowc::codegen::rust::pretty(code));
        }
        // a bijector with parameters, one without, and one inverted numerically
        for b in ["sinh_arcsinh", "logit_map", "residual"] {
            let code = flowc::codegen::rust::emit_item(&d, &p, b, &Default::default()).unwrap();
            insta::assert_snapshot!(format!("bijector_{b}"), flowc::codegen::rust::pretty(code));
        }
    });
}

#[test]
fn the_whole_corpus_expands_to_a_rust_file() {
    let tokens: TokenStream = corpus_src().parse().unwrap();
    let code = flowc::expand(tokens);
    let file: syn::File = syn::parse2(code).expect("a Rust file");
    let structs = file.items.iter().filter(|i| matches!(i, syn::Item::Struct(_))).count();
    assert_eq!(structs, 37, "31 bijectors and 6 flows");
}

/// The `compile_error!` messages of an expansion, with the line and column each points at.
fn errors(src: &str) -> Vec<(String, usize, usize)> {
    let code = flowc::expand(src.parse().unwrap());
    let mut out = Vec::new();
    let mut tokens = code.into_iter().peekable();
    while let Some(tt) = tokens.next() {
        if let proc_macro2::TokenTree::Ident(i) = &tt {
            if i == "compile_error" {
                // `compile_error ! ( "..." )`
                tokens.next();
                if let Some(proc_macro2::TokenTree::Group(g)) = tokens.next() {
                    let lit: syn::LitStr = syn::parse2(g.stream()).unwrap();
                    let at = i.span().start();
                    out.push((lit.value(), at.line, at.column));
                }
            }
        }
    }
    out
}

#[test]
fn every_error_is_reported_at_its_token() {
    let src = "bijector f(x) = foo(x);\nbijector g(x; a: reel) = x + a;\nbijector h(x) = x + q;\n";
    let e = errors(src);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].0.starts_with("unknown function `foo`") && (e[0].1, e[0].2) == (1, 16), "{e:?}");
    assert!(e[1].0.contains("did you mean `real`?") && (e[1].1, e[1].2) == (2, 17), "{e:?}");
    assert!(e[2].0.starts_with("unknown name `q`") && (e[2].1, e[2].2) == (3, 20), "{e:?}");
}

#[test]
fn derivation_errors_are_mapped_back_to_tokens() {
    // the derive stage keeps lines and columns only; the expansion finds the token there
    let e = errors("bijector ok(x) = exp(x);\nbijector sq(x) = x * x;\nbijector w(x) = sin(x) where inverse = numeric;");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].0.starts_with("cannot prove that `sq` is invertible") && (e[0].1, e[0].2) == (2, 17), "{e:?}");
    assert!(e[1].0.starts_with("`w` is not monotone") && (e[1].1, e[1].2) == (3, 16), "{e:?}");
}

#[test]
fn syntax_errors_recover_at_items() {
    let e = errors("bijector f(x) = exp(x)\nbijector g(x) = x ^ 2;\nbijector h(x) = x + 1;");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].0.starts_with("expected `;` at the end of the bijector"), "{e:?}");
    assert!(e[1].0.contains("write `pow(base, exponent)`"), "{e:?}");
}

#[test]
fn names_that_cannot_be_rust_types() {
    let e = errors("bijector a_b(x) = x + 1;\nbijector a__b(x) = x + 2;");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].0.contains("both become the Rust type `AB`"), "{e:?}");
}

#[test]
fn generated_items_carry_the_users_spans() {
    let code = flowc::expand("bijector f(x) = x + 1;\n  flow my_flow(x: R^2) { base normal; elementwise(f); }".parse().unwrap());
    let file: syn::File = syn::parse2(code).unwrap();
    let s = file
        .items
        .iter()
        .find_map(|i| match i {
            syn::Item::Struct(s) if s.ident == "MyFlow" => Some(s),
            _ => None,
        })
        .unwrap();
    let at = s.ident.span().start();
    assert_eq!((at.line, at.column), (2, 7));
}

#[test]
fn flow_files_expand_and_report_rendered_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.flow"), "bijector f(x) = x + 1;").unwrap();
    std::fs::write(dir.path().join("bad.flow"), "bijector f(x) = x;\nbijector g(x) = foo(x);\n").unwrap();
    let ok = flowc::expand::expand_file_in("\"ok.flow\"".parse().unwrap(), dir.path()).to_string();
    assert!(ok.contains("include_str !") && ok.contains("pub struct F"), "{ok}");
    let bad = flowc::expand::expand_file_in("\"bad.flow\"".parse().unwrap(), dir.path()).to_string();
    assert!(bad.contains("unknown function `foo`") && bad.contains("bad.flow:2:17"), "{bad}");
    let missing = flowc::expand::expand_file_in("\"nope.flow\"".parse().unwrap(), dir.path()).to_string();
    assert!(missing.contains("cannot read"), "{missing}");
    let not_a_path = flowc::expand::expand_file_in("42".parse().unwrap(), dir.path()).to_string();
    assert!(not_a_path.contains("expected the path of a `.flow` file"), "{not_a_path}");
}

#[test]
fn constants_are_printed_to_round_trip() {
    let src = "bijector f(x) = x * 0.1 + 1e-300 + 3.0000000000000004 + 123456789012345680000;";
    let code = flowc::expand(src.parse().unwrap()).to_string();
    for lit in ["0.1", "1e-300", "3.0000000000000004", "1.2345678901234568e20"] {
        assert!(code.contains(lit), "{lit} missing in {code}");
        let v: f64 = lit.parse().unwrap();
        assert_eq!(format!("{v:?}"), lit);
    }
}
