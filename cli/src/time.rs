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
    /// This long before the clock (or `--now`): `N{m,h,d} ago`.
    Ago(chrono::Duration),
}

/// The forms `--at` takes, for its error messages.
const AT_FORMS: &str =
    "expected an RFC 3339 time (2026-03-01T09:00:00Z), a date (2026-03-01: the end of that day, UTC), N{m,h,d} ago (90m ago, 2d ago) or seq:N";

/// Parses an RFC 3339 time (`2026-03-01T09:00:00Z`).
pub fn parse_time(text: &str, flag: &str) -> Result<DateTime<Utc>, CliError> {
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) if t.timestamp_nanos_opt().is_some() => Ok(t.with_timezone(&Utc)),
        Ok(_) => usage(format!("bad {flag} '{text}': the log stores years 1677 to 2262 only")),
        Err(e) => usage(format!("bad {flag} '{text}': {e}; expected RFC 3339, like 2026-03-01T09:00:00Z")),
    }
}

/// Parses `--at WHEN`: an RFC 3339 time, a date (the end of that day,
/// UTC), `N{m,h,d} ago`, or `seq:N`.
pub fn parse_at(text: &str) -> Result<At, CliError> {
    let trimmed = text.trim();
    if let Some(n) = trimmed.strip_prefix("seq:") {
        return match n.parse::<u64>() {
            Ok(seq) => Ok(At::Seq(seq)),
            Err(_) => usage(format!("bad --at '{text}': seq:N needs a whole number N >= 0")),
        };
    }
    if let Some(ago) = trimmed.strip_suffix(" ago") {
        let (n, unit) = ago.trim().split_at(ago.trim().len().saturating_sub(1));
        let minutes = match unit {
            "m" => 1,
            "h" => 60,
            "d" => 24 * 60,
            _ => return usage(format!("bad --at '{text}': {AT_FORMS}")),
        };
        let duration = n
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(minutes))
            .and_then(chrono::Duration::try_minutes);
        return match duration {
            Some(d) if d >= chrono::Duration::zero() => Ok(At::Ago(d)),
            _ => usage(format!("bad --at '{text}': N in N{{m,h,d}} ago must be a whole number N >= 0")),
        };
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        let end = day.and_hms_nano_opt(23, 59, 59, 999_999_999).map(|t| t.and_utc());
        return match end {
            Some(t) if t.timestamp_nanos_opt().is_some() => Ok(At::Time(t)),
            _ => usage(format!("bad --at '{text}': the log stores years 1677 to 2262 only")),
        };
    }
    match DateTime::parse_from_rfc3339(trimmed) {
        Ok(t) => Ok(At::Time(t.with_timezone(&Utc))),
        Err(e) => usage(format!("bad --at '{text}': {e}; {AT_FORMS}")),
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
        for bad in
            ["seq:", "seq:-1", "yesterday", "2026-13-01T00:00:00Z", "", "2026-02-30", "3x ago", "-2d ago"]
        {
            let err = parse_at(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("bad --at"), "{err}");
        }
        let err = parse_at("yesterday").unwrap_err().to_string();
        assert!(err.contains("a date (2026-03-01") && err.contains("ago") && err.contains("seq:N"), "{err}");
    }

    #[test]
    fn l4_at_takes_a_date_as_the_end_of_that_day_and_n_units_ago() {
        let end = DateTime::parse_from_rfc3339("2026-08-01T23:59:59.999999999Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_at("2026-08-01").unwrap(), At::Time(end));
        assert_eq!(parse_at("90m ago").unwrap(), At::Ago(chrono::Duration::minutes(90)));
        assert_eq!(parse_at("3h ago").unwrap(), At::Ago(chrono::Duration::hours(3)));
        assert_eq!(parse_at(" 2d ago ").unwrap(), At::Ago(chrono::Duration::days(2)));
        assert!(parse_at("99999999999999d ago").is_err(), "overflow is bad input, not a panic");
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
