use clap::Parser;

fn main() -> std::process::ExitCode {
    jepsen::run::main(jepsen::cli::Opts::parse())
}
