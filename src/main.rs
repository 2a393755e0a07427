//! The `steward` command. Everything lives in the library; see `steward::cli`.

fn main() -> std::process::ExitCode {
    steward::cli::main()
}
