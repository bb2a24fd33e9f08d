//! The `privatelink` binary: the daemon and the CLI, all in the library's `cli`.
fn main() -> std::process::ExitCode {
    privatelink::cli::main()
}
