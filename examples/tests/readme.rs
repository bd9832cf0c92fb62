//! The README's `flow!` example is `examples/quickstart.rs`, word for word, and it runs.

#[allow(dead_code)]
mod quickstart {
    include!("../examples/quickstart.rs");
    pub fn run() {
        main()
    }
}

#[test]
fn readme_example_is_the_quickstart_example() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```rust\n").expect("the README has a Rust example") + "```rust\n".len();
    let end = start + readme[start..].find("```").unwrap();
    assert_eq!(&readme[start..end], include_str!("../examples/quickstart.rs"), "copy examples/quickstart.rs into the README");
}

#[test]
fn quickstart_runs() {
    quickstart::run();
}
