//! Names users type: user principal names, checked once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user principal name (`alice@contoso.onmicrosoft.com`): the sign-in name.
/// Kept as typed; compared case-insensitively (D1) through [`Upn::key`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upn(String);

impl Upn {
    /// Parses a UPN, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Upn, String> {
        let text = text.trim();
        // Quoted in part: the text may be a 100 MB line.
        let bad = |why: &str| Err(format!("malformed UPN '{}': {why}", crate::limits::quote(text)));
        if text.len() > 113 {
            return bad("longer than 113 characters");
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return bad("expected name@domain");
        };
        if local.is_empty() || local.len() > 64 {
            return bad("the part before @ must have 1 to 64 characters");
        }
        let local_ok = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
        if !local.chars().all(local_ok) {
            return bad("the part before @ has a character a UPN cannot hold");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return bad("the part before @ cannot start or end with a dot, or hold two in a row");
        }
        if let Err(why) = check_domain(domain) {
            return bad(&why);
        }
        Ok(Upn(text.to_owned()))
    }

    /// The UPN as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The comparison key: lower case.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// The domain part, lower case.
    pub fn domain(&self) -> String {
        self.0.rsplit_once('@').map_or_else(String::new, |(_, d)| d.to_lowercase())
    }
}

/// Checks a DNS domain name (`contoso.onmicrosoft.com`).
pub fn check_domain(domain: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("domain '{domain}' needs at least two labels"));
    }
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("domain '{domain}' has an invalid label '{label}'"));
        }
    }
    Ok(())
}

/// A stable id derived from names: the same parts always give the same id.
/// The domain has no randomness, so records it creates on its own (SystemUser
/// records of a sync pass, default roles) get ids this way, which also makes
/// a repeated pass idempotent.
pub fn derive_id(parts: &[&[u8]]) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

impl PartialEq for Upn {
    fn eq(&self, other: &Upn) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Upn {}

impl fmt::Display for Upn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d1_upns_compare_case_insensitively() {
        let a = Upn::parse("Alice@Contoso.onmicrosoft.com").unwrap();
        let b = Upn::parse("alice@contoso.ONMICROSOFT.com").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Upn::parse("bob@contoso.onmicrosoft.com").unwrap());
        assert_eq!(a.key(), b.key());
        assert_eq!(a.as_str(), "Alice@Contoso.onmicrosoft.com", "kept as typed");
        assert_eq!(a.domain(), "contoso.onmicrosoft.com");
    }

    #[test]
    fn malformed_upns_say_what_is_wrong() {
        for (text, why) in [
            ("alice", "expected name@domain"),
            ("@contoso.com", "1 to 64"),
            ("alice@contoso", "two labels"),
            ("al ice@contoso.com", "cannot hold"),
            (".alice@contoso.com", "dot"),
            ("alice@-contoso.com", "invalid label"),
            ("alice@contoso..com", "invalid label"),
        ] {
            let err = Upn::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.starts_with("malformed UPN"), "{err}");
        }
        assert!(Upn::parse(&format!("{}@contoso.com", "a".repeat(65))).is_err());
    }

    /// Issue 34 (boundary mutants of `parse` and `check_domain`): each
    /// limit takes its own length and refuses one more.
    #[test]
    fn d1_upn_limits_hold_at_their_edges() {
        let upn = |local: &str, label: &str| Upn::parse(&format!("{local}@{label}.com"));
        let fits = format!("{}@{}.com", "a".repeat(64), "b".repeat(44));
        assert_eq!(fits.len(), 113);
        assert!(Upn::parse(&fits).is_ok(), "64 before @, 113 in all");
        assert!(Upn::parse(&format!("b{fits}")).unwrap_err().contains("longer than 113"));
        assert!(upn("a", &"b".repeat(63)).is_ok());
        assert!(upn("a", "con-toso").is_ok(), "a hyphen inside a label");
        assert!(upn("a", &"b".repeat(64)).unwrap_err().contains("invalid label"));
        for (local, label) in [("alice.", "contoso"), ("al..ice", "contoso"), ("alice", "contoso-")] {
            assert!(upn(local, label).is_err(), "{local}@{label}.com");
        }
    }

    /// Each part is length-prefixed: parts that join to the same bytes are different ids.
    #[test]
    fn derived_ids_tell_their_parts_apart() {
        assert_eq!(derive_id(&[b"ab", b"c"]), derive_id(&[b"ab", b"c"]));
        assert_ne!(derive_id(&[b"ab", b"c"]), derive_id(&[b"a", b"bc"]));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = Upn::parse(&text);
        }
    }
}
