//! The log's promises kept alike by both backends, sled and PostgreSQL
//! (issue 33): one suite, run against each; then what only the server has
//! (its schema, roles, errors) and records moved between the two.
//!
//! The PostgreSQL tests run on the cluster of `tests/pg_server.rs`; each
//! test has a schema of its own.

// Shared with the other test crates; this one needs only some of it.
#[allow(dead_code)]
#[path = "../../tests/pg_server.rs"]
mod pg_server;

mod backends {
    pub mod conformance;
    pub mod fixture;
    pub mod postgres;
}
