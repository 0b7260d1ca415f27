//! Rule IDs of `shared/RULES.md`, and the two ways a command can be turned down.

use std::fmt;

/// A rule of `shared/RULES.md`, by its ID. Rejections and tests cite these.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Rule {
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    D10,
    E1,
    E2,
    E3,
    E4,
    E5,
    S1,
    S1_1,
    S1_2,
    S1_3,
    S1_4,
    S2,
    S2_1,
    S2_2,
    S2_3,
    S2_4,
    S3,
    S4,
    S5,
    S6,
    S6_1,
    S6_2,
    S6_3,
    S6_4,
    S6_5,
    S7,
    S8,
    S9,
    A1,
    A2,
    A3,
    A4,
    A5,
    A6,
    P1,
    P2,
    T1,
    T1_1,
    T1_2,
    T1_3,
    T1_4,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    O1,
    O2,
    O3,
    L1,
    L2,
    L3,
    L4,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `S1_1` is written `S1.1` in RULES.md.
        f.write_str(&format!("{self:?}").replace('_', "."))
    }
}

/// A command that a rule forbids: exit 1, and one failure audit record (L1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that forbids it.
    pub rule: Rule,
    /// Why, in one line, naming what was asked.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected ({}): {}", self.rule, self.reason)
    }
}

/// Why `decide` returned no events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Bad input (unknown user, SKU or group; malformed value): exit 2, nothing appended.
    Invalid(String),
    /// A rule forbids the command: exit 1, one failure audit record.
    Refused(Refusal),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Invalid(reason) => f.write_str(reason),
            Rejection::Refused(refusal) => refusal.fmt(f),
        }
    }
}

/// Shorthand for a rule's refusal, for guard clauses: `return refuse(Rule::D4, ...)`.
pub fn refuse<T>(rule: Rule, reason: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::Refused(Refusal { rule, reason: reason.into() }))
}

/// Shorthand for bad input.
pub fn invalid<T>(reason: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::Invalid(reason.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_print_as_in_rules_md() {
        assert_eq!(Rule::S6_3.to_string(), "S6.3");
        assert_eq!(Rule::D10.to_string(), "D10");
        let refusal = Refusal {
            rule: Rule::A3,
            reason: "environment 'Sales' already has 7 non-interactive users".into(),
        };
        assert_eq!(
            refusal.to_string(),
            "rejected (A3): environment 'Sales' already has 7 non-interactive users"
        );
        assert_eq!(Rejection::Refused(refusal.clone()).to_string(), refusal.to_string());
        assert_eq!(Rejection::Invalid("unknown user bob".into()).to_string(), "unknown user bob");
    }
}
