//! The functional core of usertrail: commands, events, aggregates and rules.
//!
//! # Layout
//! - [`events`]: every event of the log, the versioned schema, encode/decode.
//! - [`rules`]: the rule IDs of `RULES.md`, refusals and rejections.
//! - [`ids`]: user principal names, checked once at the edge.
//! - [`password`]: temporary passwords as salted hashes (D2).
//! - [`tenant`]: the tenant aggregate (D1-D10): `decide` and `evolve`.
//!
//! Pure: no I/O, no clock, no randomness. Time and new ids come in as
//! arguments; what comes out is events or a rejection.

pub mod events;
pub mod ids;
pub mod password;
pub mod rules;
pub mod tenant;

pub use events::{Event, SCHEMA_VERSION};
pub use ids::Upn;
pub use rules::{Refusal, Rejection, Rule};
