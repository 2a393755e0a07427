//! `steward-step-guard __step-guard PARENT-PID PROGRAM [ARGS...]`: the step guard of
//! `steward::exec::guard`, without the rest of `steward`, so that starting one per step is
//! cheap. A member finds it next to its own binary.

fn main() -> std::process::ExitCode {
    steward::exec::guard::run_if_requested().unwrap_or_else(|| {
        eprintln!("steward-step-guard is started by steward for each job step; it is not for direct use");
        std::process::ExitCode::from(2)
    })
}
