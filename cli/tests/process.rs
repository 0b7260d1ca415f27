//! The real `usertrail` binary as a process: exit codes, help, and waiting
//! for a database that another process holds.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The binary's cache keys go beside the database, never into the home.
fn key_dir(db: &std::path::Path) -> std::path::PathBuf {
    db.with_file_name("keys")
}

fn usertrail(db: &std::path::Path, args: &[&str], lock_wait_ms: u64) -> Output {
    Command::new(env!("CARGO_BIN_EXE_usertrail"))
        .env_remove("NO_COLOR")
        .args(args)
        .arg("--db")
        .arg(db)
        .env("USERTRAIL_LOCK_TIMEOUT_MS", lock_wait_ms.to_string())
        .env("USERTRAIL_KEY_DIR", key_dir(db))
        .env_remove("USERTRAIL_AS")
        .env_remove("USERTRAIL_NOW")
        .env_remove("USERTRAIL_ALLOW_FUTURE")
        .output()
        .expect("the binary runs")
}

fn init(db: &std::path::Path) {
    let out = usertrail(
        db,
        &[
            "init",
            "--tenant",
            "contoso.onmicrosoft.com",
            "--admin",
            "admin@contoso.onmicrosoft.com",
            "--now",
            "2026-01-01T00:00:00Z",
        ],
        1000,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn exit_codes_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let refused = usertrail(
        &db,
        &[
            "user",
            "admin-role",
            "remove",
            "--upn",
            "admin@contoso.onmicrosoft.com",
            "--role",
            "global",
            "--now",
            "2026-01-02T00:00:00Z",
        ],
        1000,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("rejected (D8)"));
    assert!(!refused.stderr.contains(&0x1b), "no colour codes when stderr is not a terminal");
    let bad = usertrail(&db, &["user", "block", "--upn", "not-a-upn"], 1000);
    assert_eq!(bad.status.code(), Some(2));
    let help = usertrail(&db, &["user", "license", "assign", "--help"], 1000);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Example:"));
}

#[test]
fn a_held_database_waits_then_exits_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let holder = store::SledStore::open(&db, store::OpenOptions::default()).unwrap();
    let started = Instant::now();
    let out = usertrail(&db, &["user", "list"], 300);
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is locked by another process"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
    // Released while the next one waits: it goes through.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(holder);
    });
    let out = usertrail(&db, &["user", "list"], 10_000);
    release.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Two processes started together queue on the directory lock: the second
/// waits for the first to close, then decides on the log it left.
#[test]
fn two_processes_at_once_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let spawn = |who: &str| {
        Command::new(env!("CARGO_BIN_EXE_usertrail"))
            .args([
                "user",
                "create",
                "--upn",
                &format!("{who}@contoso.onmicrosoft.com"),
                "--first",
                who,
                "--last",
                "X",
            ])
            .arg("--db")
            .arg(&db)
            .env("USERTRAIL_LOCK_TIMEOUT_MS", "20000")
            .env("USERTRAIL_KEY_DIR", key_dir(&db))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("ann"), spawn("ben"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let list = usertrail(&db, &["user", "list", "--json"], 5000);
    let users: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users.as_array().map(Vec::len), Some(3));
    let verify = usertrail(&db, &["verify"], 5000);
    assert!(verify.status.success());
}

/// A3 across processes: they queue on the directory lock rather than race
/// (the optimistic races are in process, `tests/e2e/concurrency.rs`), so
/// the first to take the lock gets the seat and the others see it taken.
#[test]
fn a3_three_processes_racing_for_the_last_non_interactive_seat() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let run = |line: &str| {
        let args: Vec<&str> = line.split(' ').collect();
        let out = usertrail(&db, &args, 10_000);
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("sku add --sku DYN365_SALES --kind d365 --seats 20");
    run("env create --name Sales --type production");
    for i in 0..9 {
        run(&format!(
            "user create --upn svc{i}@contoso.onmicrosoft.com --first Svc --last N{i} --license DYN365_SALES"
        ));
    }
    run("sync");
    for i in 0..6 {
        run(&format!(
            "user set-access-mode --env Sales --upn svc{i}@contoso.onmicrosoft.com --mode non-interactive"
        ));
    }
    let children: Vec<_> = (6..9)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_usertrail"))
                .args([
                    "user",
                    "set-access-mode",
                    "--env",
                    "Sales",
                    "--upn",
                    &format!("svc{i}@contoso.onmicrosoft.com"),
                ])
                .args(["--mode", "non-interactive", "--db"])
                .arg(&db)
                .env("USERTRAIL_LOCK_TIMEOUT_MS", "20000")
                .env("USERTRAIL_KEY_DIR", key_dir(&db))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let winners = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "one process gets the 7th seat");
    for loser in outcomes.iter().filter(|o| !o.status.success()) {
        assert_eq!(loser.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert_eq!(stderr.trim(), "rejected (A3): environment 'Sales' already has 7 non-interactive users");
    }
    let table = usertrail(&db, &["systemusers", "--env", "Sales", "--json"], 5000);
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    let count =
        table.as_array().unwrap().iter().filter(|r| r["accessmode"] == 4 && r["kind"] == "user").count();
    assert_eq!(count, 7);
}

/// Issue 25 finding 4, in the binary on the real clock: a `--now` more than
/// five minutes ahead is refused (exit 2, nothing appended) unless
/// `USERTRAIL_ALLOW_FUTURE=1`; the record keeps the machine's clock, account
/// and host beside the stamped time.
#[test]
fn a_now_ahead_of_the_clock_needs_allow_future_and_the_record_keeps_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let create = ["user", "create", "--upn", "bob@contoso.onmicrosoft.com", "--first", "B", "--last", "S"];
    let args: Vec<&str> = create.iter().copied().chain(["--now", ahead.as_str()]).collect();
    let refused = usertrail(&db, &args, 1000);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--now") && stderr.contains("5 minutes"), "{stderr}");
    let history = |db: &std::path::Path| -> serde_json::Value {
        let out = usertrail(db, &["history", "--json"], 1000);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(history(&db).as_array().unwrap().len(), 1, "only init: nothing appended");

    let allowed = Command::new(env!("CARGO_BIN_EXE_usertrail"))
        .args(&args)
        .arg("--db")
        .arg(&db)
        .env_remove("USERTRAIL_NOW")
        .env("USERTRAIL_KEY_DIR", key_dir(&db))
        .env("USERTRAIL_ALLOW_FUTURE", "1")
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    let newest = history(&db)[0].clone();
    let stamped = chrono::DateTime::parse_from_rfc3339(newest["activityDateTime"].as_str().unwrap()).unwrap();
    let written = chrono::DateTime::parse_from_rfc3339(newest["writtenAt"].as_str().unwrap()).unwrap();
    assert!(stamped - written > chrono::Duration::minutes(55), "{newest}");
    let run_by = &newest["initiatedBy"]["user"]["runBy"];
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let account = run_by["account"].as_str().unwrap();
    assert!(!account.is_empty(), "{run_by}");
    if uid == 0 {
        assert_eq!(account, "root");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !host.trim().is_empty() {
        assert_eq!(run_by["host"], host.trim());
    }
}

/// On the real clock, new records are stamped to the millisecond: JSON
/// prints no more digits than that, a time it prints given back to `--at`
/// includes its record, and tables print times to the second.
#[test]
fn times_on_the_clock_are_stamped_to_the_millisecond_and_read_back_by_at() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let run = |args: &[&str]| usertrail(&db, args, 1000);
    let out =
        run(&["init", "--tenant", "contoso.onmicrosoft.com", "--admin", "admin@contoso.onmicrosoft.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let upn = "alice@contoso.onmicrosoft.com";
    assert!(run(&["user", "create", "--upn", upn, "--first", "Alice", "--last", "Smith"]).status.success());
    let history: serde_json::Value = serde_json::from_slice(&run(&["history", "--json"]).stdout).unwrap();
    let newest = history[0]["activityDateTime"].as_str().unwrap().to_owned();
    let fraction = newest.split_once('.').map_or("", |(_, f)| f.trim_end_matches('Z'));
    assert!(fraction.len() <= 3, "{newest}: to the millisecond");
    let users: serde_json::Value =
        serde_json::from_slice(&run(&["user", "list", "--json", "--at", &newest]).stdout).unwrap();
    assert!(users.to_string().contains(upn), "--at {newest} includes the user created then: {users}");
    let table = String::from_utf8(run(&["history"]).stdout).unwrap();
    let seconds = &newest[..19];
    assert!(table.contains(&format!("{seconds}Z")) && !table.contains(&format!("{seconds}.")), "{table}");
}

/// Completions for each shell and the manual page come from the parser's own
/// types: they name every command, need no database, and bash reads its
/// script without an error.
#[test]
fn completions_for_every_shell_and_the_man_page_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = usertrail(&db, &["completions", shell], 1000);
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).unwrap();
        for command in ["verify", "systemusers", "whatif", "admin-role"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    assert!(!db.exists(), "no database is made for them");
    let bash = usertrail(&db, &["completions", "bash"], 1000).stdout;
    let script = dir.path().join("usertrail.bash");
    std::fs::write(&script, bash).unwrap();
    let checked =
        Command::new("bash").arg("-n").arg(&script).output().expect("bash runs (it is on every CI machine)");
    assert!(checked.status.success(), "bash -n: {}", String::from_utf8_lossy(&checked.stderr));
    let man = usertrail(&db, &["man"], 1000);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH usertrail"), "{}", &page[..page.len().min(200)]);
    for command in ["verify", "systemusers", "history"] {
        assert!(page.contains(command), "the man page lists {command}");
    }
    let bad = usertrail(&db, &["completions", "tcsh"], 1000);
    assert_eq!(bad.status.code(), Some(2));
}

/// Issue 25, finding 5: `whatif` copies the whole database; a SIGTERM left
/// the copy behind (217 after a nested whatif). Its scratch directory is
/// now private (0700) and removed when the process is told to end.
#[cfg(unix)]
#[test]
fn a_whatif_ended_by_sigterm_leaves_no_scratch_copy() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let script = dir.path().join("script.txt");
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("user create --upn u{i}@contoso.onmicrosoft.com --first U --last N{i}"))
        .collect();
    std::fs::write(&script, lines.join("\n")).unwrap();
    let scratch = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect()
    };
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_usertrail"))
            .args(["whatif", "--file"])
            .arg(&script)
            .arg("--db")
            .arg(&db)
            .env("TMPDIR", &tmp)
            .env("USERTRAIL_KEY_DIR", key_dir(&db))
            .env_remove("USERTRAIL_AS")
            .env_remove("USERTRAIL_NOW")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Once the copy is made and a few lines have run on it.
        let started = Instant::now();
        while !scratch().iter().any(|d| d.join("usertrail.db").join("live").join("db").is_file()) {
            assert!(started.elapsed() < Duration::from_secs(30), "no scratch copy appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        let made = scratch();
        assert_eq!(made.len(), 1);
        let mode = std::fs::metadata(&made[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the copy's directory is private");
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "still running when signalled");
        // SAFETY: sends a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal), "ends as the signal would have");
        assert_eq!(scratch(), Vec::<std::path::PathBuf>::new(), "no scratch copy is left");
    }
}

#[test]
fn demo_draws_no_progress_bar_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = usertrail(&db, &["demo", "--users", "15", "--now", "2026-06-01T00:00:00Z"], 1000);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "a pipe gets no bar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(['\r', '\x1b']), "no bar on stdout either:\n{stdout}");
    assert!(stdout.contains("hash chain and indexes intact (L3)\n"), "{stdout}");
    // The tour ends with the auditor's report, beside the database (issue 31).
    let report = dir.path().join("usertrail-demo-report.html");
    assert!(stdout.ends_with(&format!("verify --report {}\n", report.display())), "{stdout}");
    assert!(std::fs::read_to_string(&report).unwrap().contains("<h2>Summary</h2>"));
}

/// Issue 33: a PostgreSQL URL in `USERTRAIL_DB` may hold a password; the
/// help never shows it, and a server that cannot be reached is named by
/// host, port and database, on one line, exit 3.
#[test]
fn a_password_in_the_database_url_is_never_printed() {
    let url = "postgres://alice:s3cr3t-pw@127.0.0.1:1/trail?connect_timeout=5";
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_usertrail"))
            .args(args)
            .env("USERTRAIL_DB", url)
            .env("USERTRAIL_KEY_DIR", std::env::temp_dir().join("usertrail-no-keys"))
            .output()
            .expect("the binary runs")
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(!String::from_utf8_lossy(&help.stdout).contains("s3cr3t"), "the help shows no password");
    let verify = run(&["verify"]);
    let said = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(verify.status.code(), Some(3), "{said}");
    assert!(said.contains("host 127.0.0.1 port 1 database trail") && !said.contains("s3cr3t"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
}
