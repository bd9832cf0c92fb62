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
