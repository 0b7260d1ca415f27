//! The functional core of usertrail: commands, events, aggregates and rules.
//!
//! # Layout
//! - [`events`]: every event of the log, the versioned schema, encode/decode.
//! - [`rules`]: the rule IDs of `RULES.md`, refusals and rejections.
//! - [`ids`]: user principal names, checked once at the edge.
//! - [`password`]: the salted hash landed events carry (D2); new ones keep none.
//! - [`tenant`]: the tenant aggregate (D1-D10): `decide` and `evolve`.
//! - [`parted`]: the directory's maps, read from a snapshot a part at a time, when first reached.
//! - [`environment`]: an environment's state and its starting state (E1-E5).
//! - [`eligibility`]: the one function that decides who is entitled (S1-S3, D10).
//! - [`sync`]: what a sync pass or an on-demand add writes (S1-S8).
//! - [`envcmd`]: the environment commands (E, S5, S9, A, P, T, R, O).
//! - [`security`]: effective privileges (R3, A5) and no elevation (R6).
//! - [`import`]: a directory export's difference from the tenant, as commands.
//!
//! Pure: no I/O, no clock, no randomness. Time and new ids come in as
//! arguments; what comes out is events or a rejection.

pub mod bulk;
pub mod eligibility;
pub mod envcmd;
pub mod environment;
pub mod events;
pub mod ids;
pub mod import;
pub mod limits;
pub mod parted;
pub mod password;
pub mod reality;
pub mod rules;
pub mod security;
pub mod sync;
pub mod tenant;

pub use events::{Event, SCHEMA_VERSION};
pub use ids::Upn;
pub use rules::{Refusal, Rejection, Rule};
