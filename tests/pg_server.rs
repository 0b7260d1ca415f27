//! The PostgreSQL cluster tests run on (issue 33), shared by the store's
//! tests and the scenarios (`#[path]`-included by `store/tests/backends.rs`):
//! `USERTRAIL_TEST_PG` when set (`.ci/run` starts one with `.ci/pg`), else
//! one this process starts with `.ci/pg` in a temporary directory, which
//! stops once the process ends; and a [`Cluster`] of a test's own, which it
//! may restart. No test touches a server it did not start.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The URL of the test cluster, started on first use.
pub fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("USERTRAIL_TEST_PG") {
            return url;
        }
        // `.ci/pg stop` removes it, once this process has ended.
        let cluster = Cluster::start();
        let url = cluster.url.clone();
        std::mem::forget(cluster);
        url
    })
}

/// A cluster of one test's own, which it may restart: stopped when dropped
/// (or, if the test process is killed, once it has ended).
pub struct Cluster {
    dir: PathBuf,
    /// Its URL (the `postgres` database, as the superuser).
    pub url: String,
}

impl Cluster {
    /// Starts a new cluster in a temporary directory (`.ci/pg start`).
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Starts a new cluster that also listens on a TCP port of 127.0.0.1,
    /// where it takes TLS connections only; its URL is the TCP one
    /// (`localhost`), its CA certificate [`Cluster::tls_file`]`("ca.crt")`.
    #[allow(dead_code)]
    pub fn start_tls() -> Cluster {
        let free =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        Cluster::start_with(&[("USERTRAIL_PG_TLS_PORT", free.port().to_string())])
    }

    /// A file of the TLS cluster's certificates (`ca.crt`, `other.crt`: a CA that signed nothing).
    #[allow(dead_code)]
    pub fn tls_file(&self, name: &str) -> String {
        self.dir.join("tls").join(name).display().to_string()
    }

    fn start_with(env: &[(&str, String)]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("usertrail-pg.").tempdir().expect("a temporary directory");
        let dir = dir.keep();
        let started = pg(&["start"], &dir, env);
        assert!(
            started.status.success(),
            "no PostgreSQL cluster for the tests: `.ci/pg start DIR` failed (apt-get install postgresql?): {}",
            String::from_utf8_lossy(&started.stderr)
        );
        Cluster { url: String::from_utf8_lossy(&started.stdout).trim().to_owned(), dir }
    }

    /// Restarts the server, cutting off every session (`pg_ctl restart -m fast`).
    pub fn restart(&self) {
        let restarted = pg(&["restart"], &self.dir, &[]);
        assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        pg(&["stop"], &self.dir, &[]);
    }
}

/// Runs `.ci/pg COMMAND DIR`, its watcher waiting for this process.
fn pg(command: &[&str], dir: &Path, env: &[(&str, String)]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/pg");
    std::process::Command::new("bash")
        .arg(script)
        .args(command)
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("USERTRAIL_PG_WATCH", std::process::id().to_string())
        .output()
        .expect("bash runs .ci/pg")
}

/// `url` with `name=value` added to its parameters.
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let joint = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joint}{name}={value}")
}

/// A URL naming a schema of its own on the test cluster (nothing made in it yet), and its name.
pub fn new_schema() -> (String, String) {
    new_schema_on(server())
}

/// A URL naming a schema of its own on the cluster at `server`, and its name.
pub fn new_schema_on(server: &str) -> (String, String) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = format!("t{}_{nanos}_{n}", std::process::id());
    (with_param(server, "schema", &name), name)
}
