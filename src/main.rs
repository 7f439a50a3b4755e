fn main() -> std::process::ExitCode {
    drillbook::cli::main()
}
