//! Temporary passwords as the log keeps them: a salted hash, never the text (D2).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A salted SHA-256 of a temporary password. The salt comes from the caller,
/// since the domain has no randomness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash {
    /// Random bytes chosen when the password was set.
    pub salt: [u8; 16],
    /// SHA-256 of salt ++ password.
    pub digest: [u8; 32],
}

impl PasswordHash {
    /// Hashes `password` with `salt`.
    pub fn new(salt: [u8; 16], password: &str) -> PasswordHash {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(password.as_bytes());
        PasswordHash { salt, digest: hasher.finalize().into() }
    }

    /// Whether `password` is the one hashed here.
    pub fn matches(&self, password: &str) -> bool {
        PasswordHash::new(self.salt, password) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d2_a_hash_matches_its_password_only() {
        let hash = PasswordHash::new([7; 16], "Tmp#Pass-1234");
        assert!(hash.matches("Tmp#Pass-1234"));
        assert!(!hash.matches("Tmp#Pass-1235"));
        assert_ne!(PasswordHash::new([8; 16], "Tmp#Pass-1234"), hash, "the salt matters");
    }
}
