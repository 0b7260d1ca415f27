//! Bit rot has a voice: single bits flipped at random offsets of every file
//! of a real database (records, indexes, archive, snapshots, witness), and
//! files cut short at random lengths. For each trial, either `verify` exits 3
//! (and then every write exits 3 too: nothing lands on top of damage), or
//! every record and view reads exactly as before. Never a panic, never a hang.
//!
//! `USERTRAIL_BITROT_TRIALS` sets the number of trials (default 500) and
//! `USERTRAIL_BITROT_SEED` the seed; the seed is printed, so that a failure
//! can be run again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin@contoso.onmicrosoft.com";
/// The binary's cache keys, never in the home: one place for every copy of
/// the database in the test's temporary directory (a copy keeps its id, so
/// its caches stay good, as a user's do).
fn key_dir(db: &Path) -> std::path::PathBuf {
    let root =
        db.ancestors().find(|a| a.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp")));
    root.unwrap_or(db).join("keys")
}

/// A command that takes longer than this has hung.
const HANG: Duration = Duration::from_secs(120);

/// SplitMix64: a test needs reproducible randomness, not a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// What a process did: its exit code (`None`: killed by a signal) and output.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn usertrail(db: &Path, args: &[&str]) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_usertrail"))
        .args(args)
        .arg("--db")
        .arg(db)
        .env("USERTRAIL_LOCK_TIMEOUT_MS", "2000")
        .env("USERTRAIL_KEY_DIR", key_dir(db))
        .env("NO_COLOR", "1")
        .env_remove("USERTRAIL_AS")
        .env_remove("USERTRAIL_NOW")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Read the pipes on threads, so that a full pipe never looks like a hang.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reading = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let errs = std::thread::spawn(move || std::io::Read::read_to_end(&mut err, &mut e).map(|_| e));
        let _ = std::io::Read::read_to_end(&mut out, &mut o);
        (o, errs.join().ok().and_then(Result::ok).unwrap_or_default())
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break Some(status);
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (o, e) = reading.join().expect("pipes read");
    let mut stderr = String::from_utf8_lossy(&e).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n(hung: killed after {} s)", HANG.as_secs()));
    }
    Ran { code: status.and_then(|s| s.code()), stdout: String::from_utf8_lossy(&o).into_owned(), stderr }
}

/// The database every trial starts from: a directory and two environments
/// synced twice, with an archive (a small `keep`) and snapshots.
fn build(db: &Path) {
    build_with(db, store::Archiving { keep: 24, ..store::Archiving::default() })
}

fn build_with(db: &Path, archiving: store::Archiving) {
    let mut minute = 0;
    let mut run = |line: String| {
        minute += 1;
        let now = format!("2026-01-01T{:02}:{:02}:00Z", minute / 60, minute % 60);
        let args: Vec<String> = ["usertrail"]
            .into_iter()
            .map(str::to_owned)
            .chain(line.split_whitespace().map(str::to_owned))
            .chain(["--db".into(), db.display().to_string(), "--now".into(), now])
            .collect();
        let options = cli::RunOptions {
            id_seed: Some(26),
            archiving: Some(archiving),
            // The key the binary finds later, so that its caches are good.
            cache_keys: store::CacheKeys::Dir(key_dir(db)),
            ..cli::RunOptions::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = cli::run_with(args, &mut out, &mut err, options);
        assert_eq!(code, 0, "{line}: {}", String::from_utf8_lossy(&err));
    };
    run(format!("init --tenant contoso.onmicrosoft.com --admin {ADMIN} --name Contoso"));
    run("sku add --sku DYN365_SALES --kind d365 --seats 50".into());
    run("group create --name Sellers".into());
    run("env create --name Sales --type production".into());
    run("env create --name Ops --type sandbox --security-group Sellers".into());
    for i in 0..16 {
        run(format!("user create --upn user{i}@contoso.onmicrosoft.com --first User --last Surname{i} --license DYN365_SALES"));
        if i % 2 == 0 {
            run(format!("group add-member --group Sellers --upn user{i}@contoso.onmicrosoft.com"));
        }
    }
    run("sync".into());
    run("user license remove --upn user3@contoso.onmicrosoft.com --sku DYN365_SALES".into());
    run("user update --upn user4@contoso.onmicrosoft.com --title Boss".into());
    run("group remove-member --group Sellers --upn user6@contoso.onmicrosoft.com".into());
    run("sync".into());
}

/// Every view the trials compare, as a command line.
const VIEWS: &[&[&str]] = &[
    &["history", "--json"],
    &["user", "list", "--json"],
    &["systemusers", "--env", "Sales", "--json"],
    &["systemusers", "--env", "Ops", "--json"],
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            all.extend(files(&path));
        } else {
            all.push(path);
        }
    }
    all.sort();
    all
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("created");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copied");
        }
    }
}

/// One trial's damage, and what to say of it.
fn damage(db: &Path, rng: &mut Rng) -> String {
    let all = files(db);
    let file = &all[rng.below(all.len() as u64) as usize];
    let mut bytes = std::fs::read(file).expect("readable");
    let name = file.strip_prefix(db).unwrap_or(file).display().to_string();
    if rng.below(5) == 0 {
        let len = rng.below(bytes.len() as u64) as usize;
        bytes.truncate(len);
        std::fs::write(file, &bytes).expect("written");
        format!("{name} cut to {len} bytes")
    } else if bytes.is_empty() {
        format!("{name} is empty: left as it is")
    } else {
        // Half the flips land on a byte that holds something: sled's files
        // are mostly zeroes, and a flip there rarely reaches a record.
        let held: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] != 0).collect();
        let at = match rng.below(2) == 0 && !held.is_empty() {
            true => held[rng.below(held.len() as u64) as usize],
            false => rng.below(bytes.len() as u64) as usize,
        };
        let bit = rng.below(8);
        bytes[at] ^= 1 << bit;
        std::fs::write(file, &bytes).expect("written");
        format!("{name}: bit {bit} of byte {at} flipped")
    }
}

/// What a trial's damage did, when it went right.
enum Outcome {
    /// `verify` named it, and a write was refused.
    Named,
    /// Every record and view reads as before.
    Harmless,
}

/// Runs one trial on a fresh copy; returns what went wrong, if anything.
fn trial(pristine: &Path, scratch: &Path, baseline: &[String], rng: &mut Rng) -> Result<Outcome, String> {
    let db = scratch.join("db");
    if db.exists() {
        std::fs::remove_dir_all(&db).expect("removed");
    }
    copy(pristine, &db);
    let what = damage(&db, rng);
    let verify = usertrail(&db, &["verify"]);
    // A damaged cache is named, and is a miss: the log is intact, so the
    // views answer as before (and writes go on).
    let cache_named = verify.code == Some(3) && verify.stderr.contains("caches that are not the log's");
    match verify.code {
        _ if verify.code == Some(0) || cache_named => {
            for (view, expected) in VIEWS.iter().zip(baseline) {
                let ran = usertrail(&db, view);
                if ran.code != Some(0) || ran.stdout != *expected {
                    return Err(format!(
                        "{what}: verify passed but `{}` exited {:?} ({}) and {} as before",
                        view.join(" "),
                        ran.code,
                        ran.stderr.trim(),
                        if ran.stdout == *expected { "printed the same" } else { "did NOT print the same" }
                    ));
                }
            }
            Ok(if cache_named { Outcome::Named } else { Outcome::Harmless })
        }
        Some(3) => {
            let write =
                usertrail(&db, &["user", "update", "--upn", "user5@contoso.onmicrosoft.com", "--title", "X"]);
            let read = usertrail(&db, &["user", "list", "--json"]);
            let read_ok = match read.code {
                Some(0) => read.stderr.starts_with("warning: the log is damaged: "),
                Some(3) => read.stderr.trim().lines().count() == 1,
                _ => false,
            };
            if !read_ok {
                return Err(format!(
                    "{what}: verify exited 3 ({}) but a read exited {:?} without saying the log is damaged: {}",
                    verify.stderr.trim(),
                    read.code,
                    read.stderr.trim()
                ));
            }
            match write.code {
                Some(3) => Ok(Outcome::Named),
                code => Err(format!(
                    "{what}: verify exited 3 ({}) but a write then exited {code:?} ({})",
                    verify.stderr.trim(),
                    write.stderr.trim()
                )),
            }
        }
        code => Err(format!("{what}: verify exited {code:?}: {}", verify.stderr.trim())),
    }
}

#[test]
fn l3_every_flipped_bit_or_cut_file_is_named_by_verify_or_changes_nothing() {
    let trials: u64 =
        std::env::var("USERTRAIL_BITROT_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let seed: u64 =
        std::env::var("USERTRAIL_BITROT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(26, |d| d.as_nanos() as u64)
        });
    println!("bit rot: {trials} trials, USERTRAIL_BITROT_SEED={seed}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let pristine = dir.path().join("pristine");
    build(&pristine);
    assert!(pristine.join("archive").is_dir(), "the database has an archive");
    assert!(pristine.join("snapshots").is_dir(), "the database has snapshots");
    // The baseline, from a copy: even a read may move sled's own files.
    let reference = dir.path().join("reference");
    copy(&pristine, &reference);
    let verify = usertrail(&reference, &["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    let baseline: Vec<String> = VIEWS
        .iter()
        .map(|view| {
            let ran = usertrail(&reference, view);
            assert_eq!(ran.code, Some(0), "{}: {}", view.join(" "), ran.stderr);
            ran.stdout
        })
        .collect();

    // Two workers, each with its own stream of trials from the seed.
    let workers = 2;
    let outcomes: Vec<Result<Outcome, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (pristine, baseline) = (&pristine, &baseline);
                let scratch = dir.path().join(format!("worker{w}"));
                scope.spawn(move || {
                    let trials = (w..trials).step_by(workers as usize);
                    let run = |t: u64| {
                        let mut rng = Rng(seed ^ t.wrapping_mul(0x2545_f491_4f6c_dd1d));
                        trial(pristine, &scratch, baseline, &mut rng).map_err(|e| format!("trial {t}: {e}"))
                    };
                    trials.map(run).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a worker ends")).collect()
    });
    let named = outcomes.iter().filter(|o| matches!(o, Ok(Outcome::Named))).count();
    let harmless = outcomes.iter().filter(|o| matches!(o, Ok(Outcome::Harmless))).count();
    println!("bit rot: {named} named by verify, {harmless} harmless");
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "USERTRAIL_BITROT_SEED={seed}: {} of {trials} trials went wrong:\n{}",
        failures.len(),
        failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn l3_a_surname_changed_in_every_file_of_a_copy_is_named_and_nothing_lands_on_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (original, copied) = (dir.path().join("original"), dir.path().join("copy"));
    build_with(&original, store::Archiving::OFF);
    copy(&original, &copied);
    let (from, to) = (b"Surname7".as_slice(), b"Surnane7".as_slice());
    let mut changed = 0;
    for file in files(&copied) {
        let mut bytes = std::fs::read(&file).expect("readable");
        let mut hit = false;
        for i in 0..bytes.len().saturating_sub(from.len() - 1) {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
                hit = true;
            }
        }
        if hit {
            std::fs::write(&file, &bytes).expect("written");
            changed += 1;
        }
    }
    assert!(changed > 0, "the surname is stored in the clear somewhere");

    let verify = usertrail(&copied, &["verify"]);
    assert_eq!(verify.code, Some(3), "{} {}", verify.stdout, verify.stderr);
    // Named: a record that fails its hash, records lost, or sled's own files
    // that sled refuses to open.
    assert!(verify.stderr.starts_with("error: database is corrupt: "), "{}", verify.stderr);
    assert_eq!(verify.stderr.trim().lines().count(), 1, "{}", verify.stderr);
    let write =
        usertrail(&copied, &["user", "update", "--upn", "user5@contoso.onmicrosoft.com", "--title", "X"]);
    assert_eq!(write.code, Some(3), "{}", write.stderr);
    assert!(write.stderr.starts_with("error: database is corrupt: "), "{}", write.stderr);
    assert_eq!(write.stderr.trim().lines().count(), 1, "{}", write.stderr);
    // A read answers and says the log is damaged, or (sled itself refusing
    // to open what it cannot read) exits 3 with one line.
    read_says_so(&copied);
    // The original is untouched and takes writes.
    assert_eq!(usertrail(&original, &["verify"]).code, Some(0));
}

/// A read of a damaged log answers and warns, or exits 3 with one line.
fn read_says_so(db: &Path) {
    let read = usertrail(db, &["user", "list", "--json"]);
    match read.code {
        Some(0) => assert!(read.stderr.starts_with("warning: the log is damaged: "), "{}", read.stderr),
        Some(3) => assert_eq!(read.stderr.trim().lines().count(), 1, "{}", read.stderr),
        other => panic!("a read of a damaged log exited {other:?}: {}", read.stderr),
    }
}
