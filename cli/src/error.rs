//! Every way a command can fail, and the exit code each one gets.

use domain::Refusal;
use store::StoreError;

/// A failed command. `main` prints it on one line and exits with [`CliError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A rule forbids the command: exit 1; one failure audit record was appended.
    #[error("{0}")]
    Rejected(Refusal),
    /// A rule refused a line of a `whatif` script: exit 1 (the real log
    /// is untouched; the message is the line's own refusal).
    #[error("{0}")]
    RefusedLine(String),
    /// Bad usage or input: exit 2; nothing was appended.
    #[error("error: {0}")]
    Usage(String),
    /// The store failed (locked, corrupt, I/O): exit 3; nothing was appended.
    #[error("error: {0}")]
    Store(#[from] StoreError),
    /// The log holds something this usertrail cannot read: exit 3.
    #[error("error: database is corrupt: {0}")]
    Corrupt(String),
    /// The log does not hold what a digest or an export says it held, or an
    /// export's line disagrees with its own bytes: exit 3.
    #[error("error: {0}")]
    Disproved(String),
    /// The operating system failed us outside the store (no randomness): exit 3.
    #[error("error: {0}")]
    System(String),
    /// Whoever read our output went away (`usertrail ... | head`): stop quietly.
    #[error("")]
    OutputClosed,
}

impl From<projections::Error> for CliError {
    fn from(e: projections::Error) -> CliError {
        match e {
            projections::Error::Store(e) => CliError::Store(e),
            projections::Error::Corrupt(what) => CliError::Corrupt(what),
        }
    }
}

impl CliError {
    /// The documented exit code (README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Rejected(_) | CliError::RefusedLine(_) => 1,
            CliError::Usage(_) => 2,
            // A log never made is a usage error on every backend, as a
            // missing sled directory is.
            CliError::Store(StoreError::NoLog { .. }) => 2,
            CliError::Store(_) | CliError::Corrupt(_) | CliError::Disproved(_) | CliError::System(_) => 3,
            CliError::OutputClosed => 0,
        }
    }
}

/// Shorthand for bad input.
pub fn usage<T>(message: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Usage(message.into()))
}
