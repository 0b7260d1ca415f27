//! The log's promises kept alike by both backends, sled and PostgreSQL
//! (issue 33): one suite, run against each; then what only the server has
//! (its schema, roles, errors) and records moved between the two.
//!
//! The PostgreSQL tests run on a cluster this process starts with `.ci/pg`
//! (stopped once it ends), or on the one `USERTRAIL_TEST_PG` names, which
//! `.ci/run` starts the same way; each test has a schema of its own.

mod backends {
    pub mod conformance;
    pub mod fixture;
    pub mod postgres;
}
