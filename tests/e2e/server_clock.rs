//! Time on a shared PostgreSQL log (issue 33): without `--now`, the server's
//! clock stamps each record inside the serialized append, so writers whose
//! clocks disagree never make time go backwards; `--now` stays exact.

use chrono::{DateTime, Duration, DurationRound, Utc};
use store::{EventStore, PgStore};
use tests::pg_server;

/// Runs a line on `db` from a machine whose clock reads `clock`; its exit code and stderr.
fn run_on(db: &str, keys: &std::path::Path, clock: DateTime<Utc>, line: &str) -> (i32, String) {
    let mut args = vec!["usertrail".to_owned(), "--db".to_owned(), db.to_owned()];
    args.extend(tests::split(line));
    let machine = cli::machine::Machine::Fixed { clock, account: "ops", host: "h", allow_future: false };
    let options = cli::RunOptions {
        machine,
        cache_keys: store::CacheKeys::Dir(keys.to_path_buf()),
        ..Default::default()
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = cli::run_with(args, &mut stdout, &mut stderr, options);
    (code, String::from_utf8_lossy(&stderr).into_owned())
}

#[test]
fn l4_a_machine_whose_clock_is_behind_appends_after_one_ahead_and_time_never_goes_back() {
    let keys = tempfile::tempdir().unwrap();
    let (url, _) = pg_server::new_schema();
    let real = Utc::now();
    let (ahead, behind) = (real + Duration::hours(3), real - Duration::hours(3));
    let init = "init --tenant contoso.onmicrosoft.com --admin admin@contoso.onmicrosoft.com";
    assert_eq!(run_on(&url, keys.path(), ahead, init), (0, String::new()));
    let (code, stderr) = run_on(&url, keys.path(), behind, "group create --name Late");
    assert_eq!(code, 0, "the machine behind is not refused: {stderr}");
    // --now is exact, whatever the server's clock says.
    let chosen = (real + Duration::days(1)).duration_trunc(Duration::milliseconds(1)).unwrap();
    let line = format!("group create --name Chosen --now {}", chosen.to_rfc3339());
    assert_eq!(run_on(&url, keys.path(), chosen, &line).0, 0);

    let times: Vec<DateTime<Utc>> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let log = PgStore::open(&url, &store::CacheKeys::Dir(keys.path().to_path_buf())).await.unwrap();
        log.read_log(1, u64::MAX, usize::MAX).await.unwrap().iter().map(|r| r.recorded_at).collect()
    });
    assert!(times.len() >= 3, "{times:?}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "never backwards: {times:?}");
    let (stamped, last) = (&times[..times.len() - 1], times[times.len() - 1]);
    assert_eq!(last, chosen, "--now exact");
    // The server runs on this machine: its clock is the real one, neither
    // machine's (to the millisecond, taken after `real`).
    let after = Utc::now();
    for t in stamped {
        assert!(
            *t >= real - Duration::milliseconds(1) && *t <= after,
            "{t} is the server's time, not {ahead} or {behind}"
        );
    }
}
