//! Process faults of the real `usertrail` binary: SIGKILL at random moments
//! while commands append (README, "Durability"), and a database whose files
//! cannot be written.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use store::{Causation, OpenOptions, Record, SledStore};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_usertrail");
const SKU: &str = "CRASH_SKU";

/// The binary's cache keys go beside the database, never into the home.
fn key_dir(db: &std::path::Path) -> std::path::PathBuf {
    db.with_file_name("keys")
}

/// A small xorshift generator: `rand` is not a dependency. The seed is
/// printed, and `USERTRAIL_CRASH_SEED` replays one.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> XorShift {
        let seed =
            std::env::var("USERTRAIL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            });
        println!("seed {seed} (replay with USERTRAIL_CRASH_SEED={seed})");
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn usertrail(db: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("USERTRAIL_LOCK_TIMEOUT_MS", "20000")
        .env("USERTRAIL_KEY_DIR", key_dir(db))
        .env_remove("USERTRAIL_AS")
        .env_remove("USERTRAIL_NOW")
        .output()
        .expect("the binary runs")
}

fn ok(db: &Path, args: &[&str]) -> String {
    let out = usertrail(db, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn init(db: &Path) {
    ok(
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
    );
    ok(
        db,
        &[
            "sku",
            "add",
            "--sku",
            SKU,
            "--kind",
            "d365",
            "--seats",
            "1000000",
            "--now",
            "2026-01-01T00:01:00Z",
        ],
    );
}

/// Every record of the log, read in-process (the database must reopen).
fn read_log(db: &Path) -> Vec<Record> {
    let store =
        SledStore::open(db, OpenOptions { lock_timeout: Duration::from_secs(20), ..Default::default() })
            .unwrap_or_else(|e| panic!("the database reopens: {e}"));
    store.read_log_blocking(1, u64::MAX, usize::MAX).unwrap_or_else(|e| panic!("the log reads: {e}"))
}

/// How many events each command of this test appends, by its name in the log.
fn events_of(command: &str) -> usize {
    match command {
        "init" => 3,          // TenantInitialized, UserCreated, AdminRoleAdded
        "sku add" => 1,       // SkuAdded
        "user create" => 3,   // UserCreated, LicenseAssigned, AdminRoleAdded
        "sku set-seats" => 1, // SkuSeatsChanged
        other => panic!("the log holds a command this test never ran: {other}"),
    }
}

/// The log's commands: correlation id -> (command name, seqs of its events).
fn commands(log: &[Record]) -> BTreeMap<Uuid, (String, Vec<u64>)> {
    let mut groups: BTreeMap<Uuid, (String, Vec<u64>)> = BTreeMap::new();
    for r in log {
        let Causation::Command { name } = &r.causation else {
            panic!("record {} was not caused by a command: {:?}", r.seq, r.causation);
        };
        let group = groups.entry(r.correlation_id).or_insert_with(|| (name.clone(), Vec::new()));
        assert_eq!(&group.0, name, "one correlation id, one command");
        group.1.push(r.seq);
    }
    groups
}

/// A shell loop that appends commands through the binary, each stamped one
/// second after the one before, on `day`: `user create` (three events) three
/// times in four, `sku set-seats` with growing numbers otherwise. Each prints
/// its `--json` report (with its correlation id) only after its append was
/// flushed.
fn writer_script(child: usize, day: &str) -> String {
    format!(
        r#"i=0
while :; do
  t=$(printf '%02d:%02d:%02d' $((i / 3600)) $((i / 60 % 60)) $((i % 60)))
  if [ $((i % 4)) -eq 3 ]; then
    "$BIN" sku set-seats --sku {SKU} --seats $((2000000 + {child} * 100000 + i)) --json --db "$DB" --now "{day}T${{t}}Z" || {{ echo "set-seats $i exited $?" >&2; exit 1; }}
  else
    "$BIN" user create --upn "u{child}x$i@contoso.onmicrosoft.com" --first U --last X --license {SKU} --admin-role user-admin --json --db "$DB" --now "{day}T${{t}}Z" || {{ echo "user create $i exited $?" >&2; exit 1; }}
  fi
  i=$((i + 1))
done
"#
    )
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The complete JSON reports a child printed before it was killed; a report
/// cut short by the kill is not a printed success line.
fn printed_reports(stdout: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(stdout).into_iter::<Value>().map_while(Result::ok).collect()
}

/// README, "Durability": a command that printed success survives a crash, and
/// every command is appended all or nothing. Children loop over commands
/// through the real binary and are killed with SIGKILL (the whole process
/// group: the shell and the usertrail process it runs) at random moments.
#[test]
fn sigkill_at_random_moments_loses_no_printed_command_and_leaves_no_half_command() {
    // Counted, not timed: a slow or loaded machine takes longer and still
    // makes every kill (issue 34: a 40 s ceiling could be missed).
    const KILLS: usize = 60;
    // Only against a hang: about 15 s on two cores.
    const HANG_GUARD: Duration = Duration::from_secs(600);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let mut rng = XorShift::seeded();
    let started = Instant::now();
    let first_day = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
    let mut previous: Vec<Record> = read_log(&db);
    let (mut kills, mut printed_total, mut mid_command) = (0, 0, 0);
    while kills < KILLS {
        assert!(started.elapsed() < HANG_GUARD, "a hang: {kills} kills in {:?}", started.elapsed());
        let day = (first_day + chrono::Days::new(kills as u64)).format("%Y-%m-%d").to_string();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(writer_script(kills, &day))
            .env("BIN", BIN)
            .env("DB", &db)
            .env("USERTRAIL_LOCK_TIMEOUT_MS", "20000")
            .env("USERTRAIL_KEY_DIR", key_dir(&db))
            .env_remove("USERTRAIL_AS")
            .env_remove("USERTRAIL_NOW")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh runs");
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        std::thread::sleep(Duration::from_millis(1 + rng.below(300)));
        if child.try_wait().unwrap().is_some() {
            // Its group is gone too: say why it stopped, not that the kill failed.
            panic!(
                "writer {kills} stopped on its own before the kill: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        // SAFETY: kill(2) on the process group we created; no memory is involved.
        let sent = unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        assert_eq!(sent, 0, "SIGKILL was delivered");
        child.wait().unwrap();
        let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
        assert!(stderr.is_empty(), "a command failed: {}", String::from_utf8_lossy(&stderr));
        kills += 1;

        // The database reopens and verifies.
        let verify = usertrail(&db, &["verify"]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "verify after kill {kills}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let log = read_log(&db);
        // Nothing committed before this child was lost or changed.
        assert!(log.len() >= previous.len(), "the log shrank from {} to {}", previous.len(), log.len());
        assert_eq!(&log[..previous.len()], &previous[..], "earlier records changed after kill {kills}");
        // No command is half there: each correlation id has all its events, in a row.
        let groups = commands(&log);
        for (id, (name, seqs)) in &groups {
            assert_eq!(seqs.len(), events_of(name), "command {name} ({id}) is half there: records {seqs:?}");
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{name} ({id}) is not contiguous: {seqs:?}");
        }
        // Every command whose success report was printed is in the log, where it said.
        let reports = printed_reports(&stdout);
        for report in &reports {
            assert_eq!(report["result"], "success", "{report}");
            let id: Uuid = report["correlationId"].as_str().and_then(|s| s.parse().ok()).expect("an id");
            let (name, seqs) = groups.get(&id).unwrap_or_else(|| panic!("printed but lost: {report}"));
            assert_eq!(report["command"].as_str(), Some(name.as_str()));
            assert_eq!(report["events"].as_array().map(Vec::len), Some(seqs.len()), "{report}");
            assert_eq!(report["firstSeq"].as_u64(), seqs.first().copied(), "{report}");
            assert_eq!(report["lastSeq"].as_u64(), seqs.last().copied(), "{report}");
        }
        let printed: HashSet<Uuid> =
            reports.iter().filter_map(|r| r["correlationId"].as_str()?.parse().ok()).collect();
        let new_commands = commands(&log[previous.len()..]).len();
        // At most one command can have landed without its report: the one killed
        // between its flush and its print.
        assert!(new_commands <= printed.len() + 1, "{new_commands} new commands, {} printed", printed.len());
        mid_command += new_commands - printed.len().min(new_commands);
        printed_total += reports.len();
        previous = log;
    }
    println!(
        "{kills} kills in {:?}; {printed_total} printed commands, {mid_command} landed unprinted, {} records",
        started.elapsed(),
        previous.len()
    );
    assert_eq!(kills, KILLS);
    assert!(printed_total > 0, "the writers got commands through between kills");
    // The database is still usable after all that.
    ok(
        &db,
        &[
            "user",
            "create",
            "--upn",
            "last@contoso.onmicrosoft.com",
            "--first",
            "L",
            "--last",
            "X",
            "--now",
            // After every writer's day, and in the machine's past (a --now
            // more than five minutes ahead is refused).
            "2026-06-01T00:00:00Z",
        ],
    );
    assert!(ok(&db, &["verify"]).contains("intact"));
}

/// A file system that refuses to grow the database's files, the way a full
/// disk does (RLIMIT_FSIZE: no root and no special mount needed; SIGXFSZ is
/// ignored so that the write fails with EFBIG instead of killing the
/// process): one clear line, exit 3, nothing changed, and usable once space
/// is back. The limit is one byte, so the first write the command makes is
/// refused, wherever it falls: here sled's opening's, which zeroes the rest
/// of the segment it writes next (tests/e2e/fault_regressions.rs,
/// `a_write_refused_by_the_file_system_exits_3_instead_of_hanging`, is the
/// same refusal in an append, for a blob file).
#[test]
fn a_file_system_that_refuses_to_grow_the_database_exits_3_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    init(&db);
    let log_before = read_log(&db);
    let files_before = files(&db);
    let mut write = Command::new(BIN);
    write
        .args(["user", "create", "--upn", "bob@contoso.onmicrosoft.com", "--first", "B", "--last", "S"])
        .args(["--now", "2026-01-03T00:00:00Z"])
        .arg("--db")
        .arg(&db)
        .env("USERTRAIL_LOCK_TIMEOUT_MS", "2000")
        .env("USERTRAIL_KEY_DIR", key_dir(&db))
        .env_remove("USERTRAIL_AS")
        .env_remove("USERTRAIL_NOW");
    // SAFETY: between fork and exec the closure calls only setrlimit(2) and
    // signal(2), which are async-signal-safe, and allocates nothing.
    unsafe {
        write.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1, rlim_max: 1 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = write.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stdout {} stderr {stderr}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.to_lowercase().contains("file too large"), "it says why: {stderr}");
    assert!(out.stdout.is_empty(), "no success line");
    assert_eq!(files(&db), files_before, "a refused write changes no byte of the database");
    assert!(ok(&db, &["verify"]).contains("intact"));
    assert_eq!(read_log(&db), log_before);
    ok(
        &db,
        &[
            "user",
            "create",
            "--upn",
            "bob@contoso.onmicrosoft.com",
            "--first",
            "B",
            "--last",
            "S",
            "--now",
            "2026-01-04T00:00:00Z",
        ],
    );
    assert_eq!(read_log(&db).len(), log_before.len() + 1);
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    found
}

/// Sets the mode of `dir`, every directory under it and every file in them.
fn chmod_tree(dir: &Path, dir_mode: u32, file_mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chmod_tree(&path, dir_mode, file_mode);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chown_tree(&path, uid, gid);
        } else {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }
}

/// A write command on a database whose directory and files are read-only:
/// one clear line, exit 3, nothing changed; writable again, it works.
///
/// Root ignores file permissions, so when the test runs as root it gives the
/// database to an unprivileged user (uid 65534) and runs the binary as that
/// user: the permissions then bind exactly as for an owner running usertrail
/// on its own read-only database. If this system cannot switch users, the
/// test fails: it never passes without having run the refused write.
#[test]
fn a_read_only_database_exits_3_with_one_line_and_is_intact_once_writable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("db");
    init(&db);
    ok(
        &db,
        &[
            "user",
            "create",
            "--upn",
            "alice@contoso.onmicrosoft.com",
            "--first",
            "A",
            "--last",
            "S",
            "--now",
            "2026-01-02T00:00:00Z",
        ],
    );
    let log_before = read_log(&db);
    let files_before = files(&db);

    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let unprivileged = 65534;
    // A copy of the binary that the unprivileged user can reach and run.
    let bin = dir.path().join("usertrail");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    if root {
        chown_tree(&db, unprivileged, unprivileged);
    }
    chmod_tree(&db, 0o555, 0o444);
    let mut write = Command::new(&bin);
    write
        .args(["user", "create", "--upn", "bob@contoso.onmicrosoft.com", "--first", "B", "--last", "S"])
        .args(["--now", "2026-01-03T00:00:00Z"])
        .arg("--db")
        .arg(&db)
        .env("USERTRAIL_LOCK_TIMEOUT_MS", "2000")
        .env("USERTRAIL_KEY_DIR", key_dir(&db))
        .env_remove("USERTRAIL_AS")
        .env_remove("USERTRAIL_NOW");
    if root {
        write.uid(unprivileged).gid(unprivileged);
    }
    match write.output() {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(3),
                "stdout {} stderr {stderr}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert!(stderr.contains(&db.display().to_string()), "it names the database: {stderr}");
            assert!(stderr.to_lowercase().contains("permission denied"), "it says why: {stderr}");
            assert!(out.stdout.is_empty(), "no success line");
        }
        // Never skipped: where root cannot run a process as another user,
        // the read-only refusal is unproven, and that is a failure to see.
        Err(e) if root => panic!(
            "running as root, the binary cannot be run as uid {unprivileged} here ({e}): \
             file permissions would not bind, so the read-only refusal is not shown"
        ),
        Err(e) => panic!("the binary runs: {e}"),
    }
    assert_eq!(files(&db), files_before, "a refused write changes no byte of the database");

    // Writable again (and back to its owner): intact and usable.
    chmod_tree(&db, 0o755, 0o644);
    if root {
        chown_tree(&db, 0, 0);
    }
    assert!(ok(&db, &["verify"]).contains("intact"));
    assert_eq!(read_log(&db), log_before, "nothing was appended or lost");
    ok(
        &db,
        &[
            "user",
            "create",
            "--upn",
            "bob@contoso.onmicrosoft.com",
            "--first",
            "B",
            "--last",
            "S",
            "--now",
            "2026-01-04T00:00:00Z",
        ],
    );
    assert!(ok(&db, &["verify"]).contains("intact"));
    assert_eq!(read_log(&db).len(), log_before.len() + 1);
}
