//! The README's example is real: its flow parses and derives, and the lines it shows are
//! in `flowc derive`'s output.

#[test]
fn readme_example_derives_as_shown() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let blocks: Vec<&str> = readme.split("```").skip(1).step_by(2).collect();
    let (src, shown) = (blocks[0], blocks[1]);
    let (_, _, d) = flowc::cli::load_str("README.md", src).unwrap_or_else(|f| panic!("{}", f.message));
    let text = flowc::report::text(&d, None, false);
    for line in shown.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(text.lines().any(|t| t.trim() == line), "README shows a line flowc derive does not print:\n{line}\n---\n{text}");
    }
}

#[test]
fn readme_user_maps_derive_and_check() {
    // the indented items of "Maps you write yourself"
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("    /// An affine map of the sphere").expect("README lost the user maps");
    let end = start + readme[start..].find("affine_s; }\n").expect("the flow") + 12;
    let src: String = readme[start..end].lines().map(|l| l.strip_prefix("    ").unwrap_or(l).to_string() + "\n").collect();
    let (_, m, d) = flowc::cli::load_str("README.md", &src).unwrap_or_else(|f| panic!("{src}\n{}", f.message));
    assert_eq!((m.maps.len(), d.flows.len()), (2, 1));
    let report = flowc::check::check(&d, Some("mine"));
    assert!(report.passed(), "{}", report.render());
}

#[test]
fn readme_manifold_flows_derive() {
    // the indented flows of "Flows on the sphere" and "Flows on the simplex"
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for head in ["    flow directions(x: sphere(3)) {", "    flow calibrated(x: simplex(3)) {"] {
        let start = readme.find(head).unwrap_or_else(|| panic!("README lost `{head}`"));
        let end = start + readme[start..].find("\n    }\n").expect("the flow's closing brace") + 7;
        let src: String = readme[start..end].lines().map(|l| l.strip_prefix("    ").unwrap_or(l).to_string() + "\n").collect();
        let (_, _, d) = flowc::cli::load_str("README.md", &src).unwrap_or_else(|f| panic!("{src}\n{}", f.message));
        assert_eq!(d.flows.len(), 1);
        let report = flowc::check::check(&d, Some(&d.flows[0].name));
        assert!(report.passed(), "{}", report.render());
    }
}
