flow_macros::flow_file!("tests/ui/no_such_file.flow");

fn main() {}
