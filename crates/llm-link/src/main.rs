fn main() -> std::process::ExitCode {
    llm_link::cli::run()
}
