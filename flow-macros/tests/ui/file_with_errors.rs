// the path is relative to the crate trybuild builds, in target/tests/trybuild/flow-macros
flow_macros::flow_file!("../../../../flow-macros/tests/ui/bad.flow");

fn main() {}
