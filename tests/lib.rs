//! The harness of the end-to-end tests: a scratch database, and usertrail
//! command lines run against it in-process, as a script would type them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub mod pg_server;

/// What one command line did.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// The operating-system account that sandbox commands run as.
pub const SANDBOX_ACCOUNT: &str = "tester";

/// The host name that sandbox commands run on.
pub const SANDBOX_HOST: &str = "sandbox";

/// A scratch database with a clock: each command is stamped one minute after
/// the previous one unless the line says `--now`.
pub struct Sandbox {
    dir: tempfile::TempDir,
    clock: chrono::DateTime<chrono::Utc>,
    archiving: Option<store::Archiving>,
    /// The PostgreSQL log its commands use, instead of the sled database.
    postgres: Option<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// An empty sandbox on the backend of the run (see [`on_postgres_by_default`]);
    /// its clock starts at 2026-01-05T09:00:00Z.
    pub fn new() -> Sandbox {
        if on_postgres_by_default() {
            Sandbox::on_postgres()
        } else {
            Sandbox::on_sled()
        }
    }

    /// An empty sandbox whose log is a sled database in its directory.
    pub fn on_sled() -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z").expect("a time").to_utc();
        Sandbox { dir, clock, archiving: None, postgres: None }
    }

    /// An empty sandbox whose log is a schema of its own on the test
    /// cluster (`pg_server`) rather than a sled database.
    pub fn on_postgres() -> Sandbox {
        Sandbox { postgres: Some(pg_server::new_schema().0), ..Sandbox::on_sled() }
    }

    /// Has each command's close archive all but the newest `keep` to
    /// `2 keep` records, as a log of millions does with the default `keep`.
    pub fn archiving(mut self, keep: u64) -> Sandbox {
        self.archiving = Some(store::Archiving { keep, ..store::Archiving::default() });
        self
    }

    /// A sandbox with Contoso initialized by admin@contoso.onmicrosoft.com.
    pub fn contoso() -> Sandbox {
        let mut sb = Sandbox::new();
        sb.ok("init --tenant contoso.onmicrosoft.com --admin admin@contoso.onmicrosoft.com --name Contoso");
        sb
    }

    /// Contoso with a Sales environment gated by Sales-SG, whose group team
    /// holds Salesperson; alice and bob hold DYN365_SALES (of `seats`), alice
    /// is in the group, and a sync has run.
    pub fn sales_team(seats: u32) -> Sandbox {
        let mut sb = Sandbox::contoso();
        sb.ok(&format!("sku add --sku DYN365_SALES --kind d365 --seats {seats}"));
        sb.ok("group create --name Sales-SG");
        sb.ok("env create --name Sales --type production --security-group Sales-SG --app sales");
        sb.ok("team create --env Sales --name 'Sales team' --group Sales-SG");
        sb.ok("team role assign --env Sales --team 'Sales team' --role Salesperson");
        for (who, first) in [("alice", "Alice"), ("bob", "Bob")] {
            sb.ok(&format!(
                "user create --upn {who}@contoso.onmicrosoft.com --first {first} --last Tester --license DYN365_SALES"
            ));
        }
        sb.ok("group add-member --group Sales-SG --upn alice@contoso.onmicrosoft.com");
        sb.ok("sync");
        sb
    }

    /// The sled database's directory. A test that looks into it is
    /// sled-specific: [`SLED_ONLY`] must name it.
    pub fn db(&self) -> PathBuf {
        assert!(self.postgres.is_none(), "a test that reads sled's files belongs in tests::SLED_ONLY");
        self.dir.path().join("usertrail.db")
    }

    /// Whether the log is on the PostgreSQL server.
    pub fn on_server(&self) -> bool {
        self.postgres.is_some()
    }

    /// What its commands are given as `--db`: the sled database's path or the PostgreSQL URL.
    pub fn db_arg(&self) -> String {
        self.postgres.clone().unwrap_or_else(|| self.db().display().to_string())
    }

    /// A shell on the sandbox's log, as a command opens it, for tests that
    /// drive the core in-process.
    pub async fn shell(&self, now: Option<chrono::DateTime<chrono::Utc>>) -> cli::shell::Shell {
        match &self.postgres {
            Some(url) => {
                let keys = store::CacheKeys::Dir(self.key_dir());
                cli::shell::Shell::new(
                    Arc::new(store::PgStore::open(url, &keys).await.expect("the log opens")),
                    now,
                )
            }
            None => {
                let store =
                    store::SledStore::open(self.db(), self.open_options()).expect("the database opens");
                cli::shell::Shell::new(Arc::new(store), now)
            }
        }
    }

    /// Every record of the sandbox's log, on either backend.
    pub fn read_log(&self) -> Vec<store::Record> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let shell = self.shell(None).await;
            shell.store.read_log(1, u64::MAX, usize::MAX).await.expect("the log reads")
        })
    }

    /// How a test opens the sandbox's database itself: with its cache key,
    /// as its commands do (a key of the test's own would write caches the
    /// commands and `verify` take for forged).
    pub fn open_options(&self) -> store::OpenOptions {
        store::OpenOptions {
            cache_keys: store::CacheKeys::Dir(self.key_dir()),
            ..store::OpenOptions::default()
        }
    }

    /// Where the sandbox keeps the keys of its databases' caches.
    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The scratch directory (for files a test writes next to the database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Moves the clock forward.
    pub fn advance_days(&mut self, days: i64) {
        self.clock += chrono::Duration::days(days);
    }

    /// The time the next command will be stamped with.
    pub fn now(&self) -> String {
        (self.clock + chrono::Duration::minutes(1)).to_rfc3339()
    }

    /// Runs one command line (without the leading `usertrail`).
    pub fn run(&mut self, line: &str) -> Run {
        let mut args = vec!["usertrail".to_owned()];
        args.extend(split(line));
        if !args.iter().any(|a| a == "--db") {
            args.extend(["--db".to_owned(), self.db_arg()]);
        }
        if !args.iter().any(|a| a == "--now") {
            self.clock += chrono::Duration::minutes(1);
            args.extend(["--now".to_owned(), self.clock.to_rfc3339()]);
        }
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        // The machine runs on the sandbox's clock, so `--now` is bounded by
        // it as by the real clock outside, and the envelope's account, host
        // and machine time are the same from run to run.
        let machine = cli::machine::Machine::Fixed {
            clock: self.clock,
            account: SANDBOX_ACCOUNT,
            host: SANDBOX_HOST,
            allow_future: false,
        };
        // Seeded ids: the same script writes the same log, so outputs can be snapshotted.
        let code = cli::run_with(
            args,
            &mut stdout,
            &mut stderr,
            cli::RunOptions {
                id_seed: Some(42),
                archiving: self.archiving,
                machine,
                // The sandbox's own key directory: never the user's home.
                cache_keys: store::CacheKeys::Dir(self.key_dir()),
                ..cli::RunOptions::default()
            },
        );
        Run {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Runs a line that must succeed; returns its stdout.
    pub fn ok(&mut self, line: &str) -> String {
        let run = self.run(line);
        assert_eq!(run.code, 0, "`{line}` failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a line with `--json` that must succeed; returns the document.
    pub fn json(&mut self, line: &str) -> Value {
        let out = self.ok(&format!("{line} --json"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`{line}` printed no JSON ({e}): {out}"))
    }

    /// Runs a line that must fail with `code`; returns its stderr, which must be one line.
    pub fn fails(&mut self, line: &str, code: i32) -> String {
        let run = self.run(line);
        assert_eq!(
            run.code, code,
            "`{line}`: expected exit {code}; stdout {} stderr {}",
            run.stdout, run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "one line on stderr: {:?}", run.stderr);
        run.stderr.trim_end().to_owned()
    }

    /// How many records the log holds.
    pub fn records(&mut self) -> u64 {
        self.json("verify")["records"].as_u64().unwrap_or(0)
    }
}

/// The tests that look into sled's files, keys or raw records (and so run on
/// sled whatever the run's backend): prefixes of test names, module paths
/// as libtest prints them. Each line of `sled_only.txt`, which `.ci/run`
/// also reads to skip them in the PostgreSQL pass.
pub const SLED_ONLY: &str = include_str!("sled_only.txt");

/// Whether [`Sandbox::new`] gives a PostgreSQL log: when the run says so
/// (`USERTRAIL_TEST_BACKEND=postgres`) and the test, whose name libtest
/// gives its thread, is not in [`SLED_ONLY`].
pub fn on_postgres_by_default() -> bool {
    let sled_only = |test: &str| {
        SLED_ONLY.lines().map(str::trim).any(|p| !p.is_empty() && !p.starts_with('#') && test.starts_with(p))
    };
    std::env::var("USERTRAIL_TEST_BACKEND").is_ok_and(|b| b == "postgres")
        && !std::thread::current().name().is_some_and(sled_only)
}

/// Splits a command line on blanks; single quotes group words ('' is empty).
pub fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_handles_quotes_and_empty_values() {
        assert_eq!(
            super::split("user update --title '' --city 'New York'"),
            ["user", "update", "--title", "", "--city", "New York"]
        );
    }
}
