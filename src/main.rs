//! The `steward` command. Everything lives in the library; see `steward::cli`.

// glibc's malloc, free and realloc took about a fifth of the CPU samples under write load (per-thread arenas,
// consolidation); mimalloc's thread-local free lists cost a fraction of that (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    steward::cli::main()
}
