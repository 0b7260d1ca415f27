//! Separate `usertrail` processes on one PostgreSQL log (issue 33): racing
//! for A3's last seat, appending at once, killed in the middle of a command,
//! and cut off by a server restart. Each waits on conditions it polls (a
//! lock the server shows as waited for), never on a sleep, and gives a
//! command minutes before calling it hung, for a loaded 2-core machine.

// Shared with the other test crates; this one needs only some of it.
#[allow(dead_code)]
#[path = "../../tests/pg_server.rs"]
mod pg_server;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use store::{EventStore, PgStore, Record};

const BIN: &str = env!("CARGO_BIN_EXE_usertrail");
/// How long a command or a condition may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(180);
const ADMIN: &str = "admin@contoso.onmicrosoft.com";

fn svc(i: usize) -> String {
    format!("svc{i}@contoso.onmicrosoft.com")
}

/// A log of its own on a server, and a directory for its cache keys and files.
struct Log {
    server: String,
    url: String,
    schema: String,
    dir: tempfile::TempDir,
}

impl Log {
    /// A new log on the cluster at `server`, made by `init`.
    fn new(server: &str) -> Log {
        let (url, schema) = pg_server::new_schema_on(server);
        let log = Log { server: server.to_owned(), url, schema, dir: tempfile::tempdir().unwrap() };
        log.ok(&["init", "--tenant", "contoso.onmicrosoft.com", "--admin", ADMIN, "--name", "Contoso"]);
        log
    }

    /// The binary on this log, on the machine's clock.
    fn command(&self, args: &[impl AsRef<OsStr>]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--db")
            .arg(&self.url)
            .env("USERTRAIL_KEY_DIR", self.dir.path().join("keys"))
            .env_remove("USERTRAIL_AS")
            .env_remove("USERTRAIL_NOW")
            .env_remove("USERTRAIL_DB")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn spawn(&self, args: &[impl AsRef<OsStr>]) -> Child {
        self.command(args).spawn().expect("the binary runs")
    }

    fn ok(&self, args: &[impl AsRef<OsStr> + std::fmt::Debug]) -> String {
        let out = finish(self.spawn(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["--json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    /// `verify` passes, over this many records.
    fn verified(&self) -> u64 {
        let report = self.json(&["verify"]);
        assert_eq!(report["ok"], true, "{report}");
        report["records"].as_u64().unwrap()
    }

    fn upns(&self) -> Vec<String> {
        let users = self.json(&["user", "list"]);
        users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every record, read as a command reads them.
    fn records(&self) -> Vec<Record> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let keys = store::CacheKeys::Dir(self.dir.path().join("keys"));
        runtime.block_on(async {
            let store = PgStore::open(&self.url, &keys).await.expect("the log opens");
            store.read_log(1, u64::MAX, usize::MAX).await.expect("the log reads")
        })
    }

    /// Contoso with environment Sales, `seated` of `users` licensed users
    /// non-interactive there.
    fn sales(&self, seated: usize, users: usize) {
        self.ok(&["sku", "add", "--sku", "DYN365_SALES", "--kind", "d365", "--seats", "50"]);
        self.ok(&["env", "create", "--name", "Sales", "--type", "production"]);
        for i in 0..users {
            let upn = svc(i);
            self.ok(&[
                "user",
                "create",
                "--upn",
                &upn,
                "--first",
                "Svc",
                "--last",
                "Tester",
                "--license",
                "DYN365_SALES",
            ]);
        }
        self.ok(&["sync"]);
        for i in 0..seated {
            self.ok(&set_non_interactive(i));
        }
    }
}

fn set_non_interactive(i: usize) -> [String; 8] {
    ["user", "set-access-mode", "--env", "Sales", "--upn", &svc(i), "--mode", "non-interactive"]
        .map(str::to_owned)
}

/// Waits for a child's output, for at most [`DEADLINE`].
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("the binary runs"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child this test spawned.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("process {pid} still ran after {DEADLINE:?}")
        }
    }
}

/// Polls `condition` until it holds, for at most [`DEADLINE`].
fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "still not {what} after {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session of the server's superuser that holds the log's records table
/// locked against inserts: an append then waits inside its transaction,
/// holding the log's lock, until the session ends.
struct TableLock {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    table: String,
}

impl TableLock {
    fn take(log: &Log) -> TableLock {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&log.server, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        });
        let table = format!("\"{}\".records", log.schema);
        let lock = format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE");
        runtime.block_on(client.batch_execute(&lock)).unwrap();
        TableLock { runtime, client, table }
    }

    /// How many sessions wait for a lock: on the records table, or (with
    /// `any`) on anything (the log's advisory lock).
    fn waiting(&self, any: bool) -> i64 {
        let query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND ($1 OR relation = to_regclass($2))";
        let row = self.runtime.block_on(self.client.query_one(query, &[&any, &self.table.as_str()]));
        row.expect("pg_locks reads").get(0)
    }
}

/// Each command's records (by correlation id) after seq `after`, as (first event type, count).
fn commands_after(records: &[Record], after: u64) -> BTreeMap<uuid::Uuid, (String, usize)> {
    let mut commands: BTreeMap<uuid::Uuid, (String, usize)> = BTreeMap::new();
    let mut last: Option<uuid::Uuid> = None;
    for r in records.iter().filter(|r| r.seq > after) {
        let entry = commands.entry(r.correlation_id).or_insert_with(|| (r.event_type.clone(), 0));
        // A command's records are one run: no other command's come between them.
        assert!(
            entry.1 == 0 || last == Some(r.correlation_id),
            "command {} interleaved at seq {}",
            r.correlation_id,
            r.seq
        );
        entry.1 += 1;
        last = Some(r.correlation_id);
    }
    commands
}

#[test]
fn a3_ten_processes_racing_for_the_7th_seat_leave_exactly_seven() {
    let log = Log::new(pg_server::server());
    log.sales(6, 16);
    let before = log.verified();
    let racers: Vec<Child> = (6..16).map(|i| log.spawn(&set_non_interactive(i))).collect();
    let (mut won, mut refused, mut conflicts) = (0, 0, 0);
    for out in racers.into_iter().map(finish) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => won += 1,
            Some(1) => {
                assert!(stderr.contains("rejected (A3)"), "a loser names A3: {stderr}");
                refused += 1;
            }
            Some(3) => conflicts += 1,
            other => panic!("exit {other:?}: {stderr}"),
        }
        if out.status.code() != Some(0) {
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        }
    }
    assert_eq!(won, 1, "one seat was free ({refused} refused, {conflicts} conflicts)");
    let table = log.json(&["systemusers", "--env", "Sales"]);
    let seated =
        table.as_array().unwrap().iter().filter(|r| r["accessmode"] == 4 && r["kind"] == "user").count();
    assert_eq!(seated, 7, "A3: at most 7 non-interactive users");
    // The winner's command whole, and one refusal record for each A3 loser.
    let commands = commands_after(&log.records(), before);
    let rejections = commands.values().filter(|(first, n)| first == "CommandRejected" && *n == 1).count();
    assert_eq!((commands.len(), rejections), (1 + refused, refused), "{commands:?}");
    log.verified();
}

#[test]
fn ten_processes_appending_at_once_lose_nothing_and_leave_gapless_seqs() {
    let log = std::sync::Arc::new(Log::new(pg_server::server()));
    let before = log.verified();
    let writers: Vec<_> = (0..10)
        .map(|p| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for c in 0..3 {
                    let upn = format!("p{p}c{c}@contoso.onmicrosoft.com");
                    log.ok(&["user", "create", "--upn", &upn, "--first", "P", "--last", "Tester"]);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("every command of every process exits 0");
    }
    let upns = log.upns();
    for (p, c) in (0..10).flat_map(|p| (0..3).map(move |c| (p, c))) {
        let upn = format!("p{p}c{c}@contoso.onmicrosoft.com");
        assert_eq!(upns.iter().filter(|u| **u == upn).count(), 1, "{upn} once");
    }
    let records = log.records();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>(), "gapless seqs");
    let commands = commands_after(&records, before);
    assert_eq!(commands.len(), 30, "thirty commands, each one run of records");
    assert_eq!(log.verified(), records.len() as u64);
}

/// A Graph export of the admin and `n` users.
fn export(log: &Log, n: usize) -> PathBuf {
    let user = |i: usize, upn: String| {
        json!({
            "id": format!("0b8c1a2e-0000-4000-8000-{i:012}"),
            "userPrincipalName": upn,
            "givenName": "Imported",
            "surname": format!("User {i}"),
            "displayName": format!("Imported User {i}"),
            "accountEnabled": true,
            "userType": "Member",
            "assignedLicenses": []
        })
    };
    let mut users = vec![user(0, ADMIN.to_owned())];
    users.extend((1..=n).map(|i| user(i, format!("imported{i}@contoso.onmicrosoft.com"))));
    let path = log.dir.path().join("users.json");
    std::fs::write(&path, json!({ "value": users }).to_string()).unwrap();
    path
}

#[test]
fn sigkill_of_an_import_in_flight_leaves_all_of_it_or_none_and_the_next_one_lands() {
    const N: usize = 400;
    let mut none_landed = 0;
    for trial in 0..4u64 {
        let log = Log::new(pg_server::server());
        let before = log.verified();
        let file = export(&log, N);
        let import = ["import", "graph", "--users", file.to_str().unwrap()];
        // Even trials: killed inside its transaction, waiting to insert
        // (the server shows the wait); odd ones: at a moment of its run.
        let lock = (trial % 2 == 0).then(|| TableLock::take(&log));
        let mut child = log.spawn(&import);
        match &lock {
            Some(lock) => until("waiting to insert", || lock.waiting(false) > 0),
            None => std::thread::sleep(Duration::from_millis(100 * trial)),
        }
        child.kill().unwrap();
        finish(child);
        drop(lock);
        let landed = log.upns().len() - 1;
        assert!(landed == 0 || landed == N, "trial {trial}: {landed} of {N} users landed");
        if trial % 2 == 0 {
            assert_eq!(landed, 0, "a transaction cut off before its commit writes nothing");
        }
        none_landed += usize::from(landed == 0);
        log.verified();
        log.ok(&import);
        assert_eq!(log.upns().len(), N + 1, "the next import lands");
        // One command a user, each whole: all of the same size.
        let commands = commands_after(&log.records(), before);
        let created: Vec<usize> = commands
            .values()
            .filter(|(first, _)| first == "UserCreatedV2" || first == "UserCreated")
            .map(|c| c.1)
            .collect();
        assert_eq!(created.len(), N, "{commands:?}");
        assert!(created.iter().all(|n| *n == created[0]), "{created:?}");
        log.verified();
    }
    assert!(none_landed >= 2, "the kills cut imports off before they landed");
}

#[test]
fn a_server_restart_cuts_off_the_commands_in_flight_with_exit_3_and_the_next_ones_land() {
    // A cluster of this test's own: restarting the shared one would cut off other tests.
    let cluster = pg_server::Cluster::start();
    let log = Log::new(&cluster.url);
    log.sales(0, 2);
    let before = log.verified();
    let lock = TableLock::take(&log);
    let create = |i: usize| {
        let upn = format!("late{i}@contoso.onmicrosoft.com");
        ["user", "create", "--upn", &upn, "--first", "Late", "--last", "Tester"].map(str::to_owned)
    };
    let in_flight: Vec<Child> = (0..4).map(|i| log.spawn(&create(i))).collect();
    // One waits to insert, holding the log's lock; the others wait for that lock.
    until("four commands in flight", || lock.waiting(true) == 4);
    cluster.restart();
    for out in in_flight.into_iter().map(finish) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "cut off: exit 3, not {:?}: {stderr}", out.status.code());
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: PostgreSQL at host "), "names the server: {stderr}");
    }
    drop(lock);
    assert_eq!(log.verified(), before, "none of them half written");
    for i in 0..4 {
        log.ok(&create(i));
    }
    assert_eq!(log.upns().len(), 1 + 2 + 4);
    assert_eq!(commands_after(&log.records(), before).len(), 4);
    log.verified();
}

/// `demo` on a server: the sample tenant lands in an empty log there (made
/// if missing), its report in the current directory, and the tour's
/// commands name the URL without its password; on a log that holds
/// records, it is refused and writes nothing.
#[test]
fn demo_fills_an_empty_log_on_the_server_and_leaves_a_full_one_alone() {
    let (plain, _) = pg_server::new_schema_on(pg_server::server());
    // The test cluster trusts its socket: the password is there to be hidden.
    let url = plain.replacen("user=postgres", "user=postgres&password=s3cret", 1);
    let log = Log {
        server: pg_server::server().to_owned(),
        url,
        schema: String::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let out = log.command(&["demo", "--users", "40"]).current_dir(log.dir.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"), "{stdout}");
    assert!(stdout.contains(&format!("usertrail --db {plain} verify --report")), "{stdout}");
    assert!(
        log.dir.path().join("usertrail-demo-report.html").is_file(),
        "the report, in the current directory"
    );
    let records = log.verified();
    assert!(records > 100, "{records} records");
    let again = log.command(&["demo", "--users", "40"]).current_dir(log.dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(log.verified(), records, "nothing written by the refused demo");
}
