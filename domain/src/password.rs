//! The salted password hash that landed events carry (D2).
//!
//! Events written before passwords left the log (`UserCreated`,
//! `PasswordReset`) hold one; new events keep none (`UserCreatedV2`,
//! `PasswordResetV2`). Nothing verifies a temporary password, so this is a
//! shape to decode old records with, and nothing computes it any more.

use serde::{Deserialize, Serialize};

/// A salted SHA-256 of a temporary password, as landed events hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash {
    /// Random bytes chosen when the password was set.
    pub salt: [u8; 16],
    /// SHA-256 of salt ++ password.
    pub digest: [u8; 32],
}
