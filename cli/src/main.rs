//! The `usertrail` binary: runs [`cli::run`] on the process's arguments.

use std::process::ExitCode;

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
