//! The `usertrail` binary: runs [`cli::run`] on the process's arguments.

use std::process::ExitCode;

// glibc's allocator spent a quarter of a large import in its own
// bookkeeping (arena consolidation across the parsing threads); see
// BENCHMARKS.md, target 6.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = cli::RunOptions::for_terminal();
    let code = cli::run_with(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        options,
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
