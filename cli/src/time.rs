//! Parsing `--now TIME` and `--at WHEN`.

use chrono::{DateTime, Utc};

use crate::error::{usage, CliError};

/// A point of the log to answer as of (L4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Right after the last record stamped at or before this time.
    Time(DateTime<Utc>),
    /// Right after record N.
    Seq(u64),
}

/// Parses an RFC 3339 time (`2026-03-01T09:00:00Z`).
pub fn parse_time(text: &str, flag: &str) -> Result<DateTime<Utc>, CliError> {
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) if t.timestamp_nanos_opt().is_some() => Ok(t.with_timezone(&Utc)),
        Ok(_) => usage(format!("bad {flag} '{text}': the log stores years 1677 to 2262 only")),
        Err(e) => usage(format!("bad {flag} '{text}': {e}; expected RFC 3339, like 2026-03-01T09:00:00Z")),
    }
}

/// Parses `--at WHEN`: an RFC 3339 time or `seq:N`.
pub fn parse_at(text: &str) -> Result<At, CliError> {
    match text.trim().strip_prefix("seq:") {
        Some(n) => match n.parse::<u64>() {
            Ok(seq) => Ok(At::Seq(seq)),
            Err(_) => usage(format!("bad --at '{text}': seq:N needs a whole number N >= 0")),
        },
        None => match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => Ok(At::Time(t.with_timezone(&Utc))),
            Err(e) => {
                usage(format!("bad --at '{text}': {e}; expected RFC 3339 (2026-03-01T09:00:00Z) or seq:N"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l4_at_takes_a_time_or_a_sequence_number() {
        assert_eq!(parse_at("seq:12").unwrap(), At::Seq(12));
        let t = parse_at("2026-03-01T10:00:00+01:00").unwrap();
        assert_eq!(
            t,
            At::Time(DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().with_timezone(&Utc))
        );
        for bad in ["seq:", "seq:-1", "yesterday", "2026-13-01T00:00:00Z", ""] {
            let err = parse_at(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("bad --at"), "{err}");
        }
    }

    #[test]
    fn now_outside_the_storable_range_is_bad_input() {
        assert!(parse_time("2300-01-01T00:00:00Z", "--now").is_err());
        assert!(parse_time("2026-01-01T00:00:00Z", "--now").is_ok());
        assert!(parse_time("2026-01-01", "--now").unwrap_err().to_string().contains("RFC 3339"));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,40}") {
            let _ = parse_at(&text);
            let _ = parse_time(&text, "--now");
        }
    }
}
