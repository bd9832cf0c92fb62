fn main() {
    std::process::exit(flowc::cli::main());
}
