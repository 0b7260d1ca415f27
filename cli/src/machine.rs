//! The machine a command runs on: its clock, which bounds `--now` (anyone
//! may type any time, and a time far ahead would stop every later command
//! on the clock), and the operating-system account and host name that each
//! record's envelope keeps beside the `--as` actor, which anyone may type too.

use chrono::{DateTime, Duration, Utc};

use crate::error::{usage, CliError};

/// The environment variable that lets `--now` run ahead of the machine's clock.
pub const ALLOW_FUTURE: &str = "USERTRAIL_ALLOW_FUTURE";

/// How far ahead of the machine's clock `--now` may be without [`ALLOW_FUTURE`].
pub fn future_limit() -> Duration {
    Duration::minutes(5)
}

/// The machine a run reports and whose clock bounds `--now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Machine {
    /// This machine: its clock, its account and host, and
    /// `USERTRAIL_ALLOW_FUTURE` read from the environment.
    #[default]
    Real,
    /// A stand-in for in-process tests, whose scripts run on a clock of
    /// their own: everything the real machine would answer, fixed.
    Fixed {
        /// The machine's clock.
        clock: DateTime<Utc>,
        /// The operating-system account.
        account: &'static str,
        /// The host name.
        host: &'static str,
        /// Whether `USERTRAIL_ALLOW_FUTURE=1` is taken as set.
        allow_future: bool,
    },
}

/// Who ran a command on this machine: the envelope's account and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// The operating-system account.
    pub account: String,
    /// The host name.
    pub host: String,
}

impl Machine {
    /// The machine's clock now.
    pub fn clock(&self) -> DateTime<Utc> {
        match self {
            Machine::Real => Utc::now(),
            Machine::Fixed { clock, .. } => *clock,
        }
    }

    fn allows_future(&self) -> bool {
        match self {
            Machine::Real => std::env::var_os(ALLOW_FUTURE).is_some_and(|v| v == "1"),
            Machine::Fixed { allow_future, .. } => *allow_future,
        }
    }

    /// Refuses a `--now` more than [`future_limit`] ahead of the clock:
    /// once stamped, a future time would hold every later command on the
    /// clock back until then (time never goes backwards).
    pub fn check_now(&self, now: DateTime<Utc>) -> Result<(), CliError> {
        let clock = self.clock();
        if now - clock <= future_limit() || self.allows_future() {
            return Ok(());
        }
        usage(format!(
            "--now {} is more than {} minutes ahead of this machine's clock ({}); set {ALLOW_FUTURE}=1 to write history ahead",
            now.to_rfc3339(),
            future_limit().num_minutes(),
            clock.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ))
    }

    /// The account and host this run is made by.
    pub fn runner(&self) -> Runner {
        match self {
            Machine::Real => Runner { account: os::account(), host: os::host() },
            Machine::Fixed { account, host, .. } => {
                Runner { account: (*account).to_owned(), host: (*host).to_owned() }
            }
        }
    }
}

#[cfg(unix)]
mod os {
    /// The name of the real user id's account, or `uid N` when the system
    /// has no name for it. Not `$USER`: a variable is as easy to type as `--as`.
    pub fn account() -> String {
        // SAFETY: getuid cannot fail and touches no memory of ours.
        let uid = unsafe { libc::getuid() };
        name_of(uid).unwrap_or_else(|| format!("uid {uid}"))
    }

    fn name_of(uid: libc::uid_t) -> Option<String> {
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: every pointer is to memory we own and outlives the call;
            // buf's length is what we pass; the result points into pwd and buf.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let code =
                unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
            if code == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if code != 0 || found.is_null() || pwd.pw_name.is_null() {
                return None;
            }
            // SAFETY: getpwuid_r succeeded: pw_name is a NUL-terminated string in buf.
            let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
            return Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty());
        }
    }

    /// The host name, as `hostname` prints it, or `unknown`.
    pub fn host() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: buf is ours and its length is what we pass.
        let code = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = (code == 0).then(|| String::from_utf8_lossy(&buf[..end]).into_owned());
        name.filter(|n| !n.is_empty()).unwrap_or_else(|| "unknown".to_owned())
    }
}

#[cfg(not(unix))]
mod os {
    /// The account named by the environment, or `unknown`.
    pub fn account() -> String {
        std::env::var("USERNAME").unwrap_or_else(|_| "unknown".to_owned())
    }

    /// The host name named by the environment, or `unknown`.
    pub fn host() -> String {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn fixed(allow_future: bool) -> Machine {
        Machine::Fixed { clock: at("2026-03-01T09:00:00Z"), account: "ops", host: "h1", allow_future }
    }

    #[test]
    fn a_now_up_to_five_minutes_ahead_passes_and_past_it_is_bad_input() {
        let machine = fixed(false);
        assert!(machine.check_now(at("2020-01-01T00:00:00Z")).is_ok(), "the past is for the log to judge");
        assert!(machine.check_now(at("2026-03-01T09:05:00Z")).is_ok());
        let err = machine.check_now(at("2026-03-01T09:05:01Z")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("--now") && text.contains("5 minutes") && text.contains(ALLOW_FUTURE),
            "{text}"
        );
        assert!(fixed(true).check_now(at("2099-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn the_real_machine_names_an_account_and_a_host() {
        let runner = Machine::Real.runner();
        assert!(!runner.account.is_empty() && !runner.host.is_empty(), "{runner:?}");
        assert_eq!(fixed(false).runner(), Runner { account: "ops".into(), host: "h1".into() });
    }
}
