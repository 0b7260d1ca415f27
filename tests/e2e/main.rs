//! End-to-end tests: usertrail command lines against scratch databases.

/// A log whose older records moved into the archive answers as one that never archived.
mod archive;
/// Many writers at once on one store: invariants hold, nothing is lost (A3).
mod concurrency;
/// copy between backends: byte for byte, views equal, a damaged source refused (issue 33).
mod copy;
/// The common admin flows of the tenant directory, and its rules via the CLI.
mod directory;
/// Environments, sync and the SystemUser lifecycle (E, S, A, P, T rules).
mod environments;
/// Bad input, refused commands and store faults: exit codes, one line, nothing half-written.
mod failures;
/// Faults the reliability tests found: no elevation through app users and teams, no hang on a refused write.
mod fault_regressions;
/// import graph: Microsoft Graph exports appended as their difference.
mod graph;
/// A local attacker's input (issue 25): oversized fields and files, nested whatif, control characters.
mod hostile;
/// A local attacker (issue 25): each attack reproduced, and shown to do no harm.
mod local_attacker;
/// The same command lines on a PostgreSQL log: the same answers, the same digest (issue 33).
mod postgres;
/// Digests, the verifiable export of the log, and restore (issue 27).
mod proof;
/// Random command sequences keep the rules' invariants; fuzzed parsers and decoders never panic.
mod properties;
/// compare, changes, review: the questions no other tool answers.
mod questions;
/// Reality check (issue 32): environment listings and SystemUser exports reconciled with the rules.
mod reality;
/// The auditor's HTML report of a period, and verify --report (issue 31).
mod report;
/// Regressions found in review: import edge cases, causes, timelines.
mod review_regressions;
/// Business units, roles, teams, no elevation, mailboxes, unified routing (R, O).
mod security;
/// Time on a shared PostgreSQL log: the server's clock without --now (issue 33).
mod server_clock;
/// The seeds' workflows pinned by insta snapshots, in JSON and as tables.
mod snapshots;
/// The project's own habits: module docs, and what each crate may depend on.
mod tidy;
/// The views as of any point (L4), rebuilt from zero, and the audit history (L1, L2).
mod views;
/// whatif on a scratch copy, and exports.
mod whatif;

use domain::Event;
use store::Record;

/// Every record of the sandbox's log, decoded.
pub fn log(sb: &tests::Sandbox) -> Vec<(Record, Event)> {
    sb.read_log()
        .into_iter()
        .map(|r| {
            let event = domain::events::decode(r.schema_version, &r.payload).expect("every record decodes");
            (r, event)
        })
        .collect()
}
