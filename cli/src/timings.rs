//! `USERTRAIL_TIMINGS=1`: when each phase of a command ended (opening the
//! database, loading the tenant, an import's reading, planning, deciding and
//! appending) and the process's resident memory then, one line each on
//! stderr. For finding where the time goes (BENCHMARKS.md) without a profiler.

use std::sync::OnceLock;
use std::time::Instant;

/// When the first phase was noted, if timings are on.
fn start() -> Option<Instant> {
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    *START.get_or_init(|| std::env::var_os("USERTRAIL_TIMINGS").is_some_and(|v| v == "1").then(Instant::now))
}

/// Prints the time since the first call and the memory in use, labelled
/// `phase` (what has just ended, or begins); nothing unless
/// `USERTRAIL_TIMINGS=1`. Only on the main thread: `usertrail` holds
/// stderr's lock for the whole run, so another thread would wait for ever.
pub fn phase(phase: &str) {
    let Some(start) = start() else { return };
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned())));
    eprintln!(
        "timing: {phase:<22} {:>9.4} s  rss {}",
        start.elapsed().as_secs_f64(),
        rss.as_deref().unwrap_or("?")
    );
}
