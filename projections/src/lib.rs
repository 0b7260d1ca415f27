//! Read models built from the log: the SystemUser table, the audit history,
//! diagnostics and timelines. Each is a pure function of folded states and
//! decoded records, so every view can be asked as of any past point (L4).
//!
//! # Layout
//! - [`fold`]: states as of any log position, from the nearest snapshot (checkpointed).
//! - [`systemusers`]: the SystemUser table with Dataverse logical names.
//! - [`audit`]: one audit record per command, shaped like Graph's directoryAudit (L1, L2).
//! - [`diagnose`]: Run diagnostics: every check with its evidence, and advice.
//! - [`timeline`]: a user's access intervals in an environment, each with its cause.
//! - [`compare`]: the "golden user" comparison of two users.
//! - [`changes`]: drift between two points, each change with its cause.
//! - [`reconcile`]: the SystemUser table the rules predict beside the one an export showed.
//! - [`review`]: access review findings with rule, severity, evidence and advice.
//! - [`activity`]: display names and categories of commands and processes.

pub mod activity;
pub mod audit;
pub mod changes;
pub mod compare;
pub mod diagnose;
pub mod fold;
pub mod reconcile;
pub mod review;
pub mod systemusers;
pub mod timeline;

/// Why a view could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The log holds a record this usertrail cannot read.
    #[error("database is corrupt: {0}")]
    Corrupt(String),
}

/// RFC 3339 with seconds and a Z, as every view prints times.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
