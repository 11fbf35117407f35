//! The `auditrelay` binary; everything lives in [`auditrelay::cli`].

fn main() -> std::process::ExitCode {
    auditrelay::cli::main()
}
