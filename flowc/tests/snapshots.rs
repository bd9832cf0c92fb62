//! Golden tests: the derivation of every item of the snapshot corpus (`snapshots/*.flow`),
//! in text and JSON form. Accept changes with `cargo insta review` after reading the diff.

use std::path::Path;

fn corpus() -> (String, flowc::derive::Derivation) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots/corpus.flow");
    let src = std::fs::read_to_string(&path).unwrap();
    let (_, _, d) = flowc::cli::load_str("corpus.flow", &src).unwrap_or_else(|f| panic!("{}", f.message));
    (src, d)
}

#[test]
fn derivations_of_the_corpus() {
    let (_, d) = corpus();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/derive");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for b in d.bijectors.iter().filter(|b| b.spline.is_none()) {
            insta::assert_snapshot!(format!("bijector_{}", b.name), flowc::report::bijector_text(b, false));
        }
        for f in &d.flows {
            insta::assert_snapshot!(format!("flow_{}", f.name), flowc::report::flow_text(&d, f));
        }
    });
}

#[test]
fn json_of_one_flow() {
    let (_, d) = corpus();
    let mut v = flowc::report::json(&d, Some("sas2"));
    v["millis"] = serde_json::json!(0);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/derive");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("json_flow_sas2", serde_json::to_string_pretty(&v).unwrap()));
}

#[test]
fn every_corpus_bijector_has_a_closed_form_inverse_unless_marked() {
    let (src, d) = corpus();
    for b in d.bijectors.iter().filter(|b| b.spline.is_none()) {
        let marked = src.contains(&format!("bijector {}(", b.name)) && {
            let start = src.find(&format!("bijector {}(", b.name)).unwrap();
            let end = start + src[start..].find(';').unwrap();
            src[start..end].contains("where inverse = numeric")
        };
        assert_eq!(b.inverse.is_closed_form(), !marked, "{}", b.name);
    }
}

#[test]
fn json_of_manifold_flows_carries_the_lemmas() {
    let (_, d) = corpus();
    for (name, space) in [("directions", "sphere"), ("calibrated", "simplex")] {
        let v = flowc::report::json(&d, Some(name));
        let f = &v["flows"][0];
        assert_eq!(f["space"], space);
        for layer in f["layers"].as_array().unwrap().iter().filter(|l| l["kind"] != "permute") {
            let der = &layer["derivation"];
            assert_eq!(der["lemma"], "stated", "{name}: {layer}");
            assert!(der["max_relative_difference"].as_f64().unwrap() < 1e-12, "{name}: {layer}");
            assert!(der["ratio_steps"].as_array().unwrap().len() >= 5, "{name}: {layer}");
        }
    }
}
