//! Credentials for a PostgreSQL log (issue 33), against the test cluster
//! with one role of this test's own that must give a password
//! (scram-sha-256: a line for that role alone is put first in the
//! cluster's pg_hba.conf). The password comes from the URL, `PGPASSWORD`,
//! or libpq's password file, in that order, and is never printed.

#[path = "../../tests/pg_server.rs"]
#[allow(dead_code)]
mod pg_server;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs SQL on the test cluster as its superuser; what it printed.
fn psql(sql: &str) -> String {
    let ran = Command::new("psql")
        .args([pg_server::server(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(ran.status.success(), "{sql}: {}", String::from_utf8_lossy(&ran.stderr));
    String::from_utf8_lossy(&ran.stdout).trim().to_owned()
}

/// A role that may log in only with `password`, and may make a schema.
fn role_with_password(role: &str, password: &str) {
    psql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT CREATE ON DATABASE postgres TO {role}"
    ));
    let hba = psql("SHOW hba_file");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("local all {role} scram-sha-256\n{rules}")).unwrap();
    psql("SELECT pg_reload_conf()");
    // The reload is a signal: wait until the role is asked for its password.
    let url = pg_server::with_param(pg_server::server(), "user", role);
    for _ in 0..100 {
        let tried = Command::new("psql").args([&url, "-X", "-w", "-c", "SELECT 1"]).output().unwrap();
        if !tried.status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the cluster never asked {role} for a password");
}

/// `usertrail ARGS --db URL` with only the credentials `env` names.
fn usertrail(home: &Path, url: &str, env: &[(&str, &str)], args: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_usertrail"));
    command
        .args(args.split(' '))
        .args(["--db", url])
        .env("HOME", home)
        .env("USERTRAIL_KEY_DIR", home.join("keys"))
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("USERTRAIL_DB");
    command.envs(env.iter().copied()).output().unwrap()
}

#[test]
fn the_password_comes_from_the_url_pgpassword_or_the_password_file_and_is_never_printed() {
    let role = format!("pw_{}", std::process::id());
    let secret = format!("s3cret-{role}");
    role_with_password(&role, &secret);
    let home = tempfile::tempdir().unwrap();
    let url =
        pg_server::with_param(&pg_server::with_param(pg_server::server(), "user", &role), "schema", &role);
    let socket_dir =
        url.split(['?', '&']).find_map(|p| p.strip_prefix("host=")).expect("the cluster's socket").to_owned();
    let fails = |env: &[(&str, &str)], url: &str, why: &str| {
        let run = usertrail(home.path(), url, env, "verify");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(3), "{why}: {stderr}");
        assert!(stderr.contains("password") && stderr.contains(&format!("database postgres schema {role}")));
        assert!(!stderr.contains("s3cret") && !stderr.contains("wrong-pw"), "{why}: never printed: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    };
    fails(&[], &url, "no password anywhere");

    // The password file: ignored unless only its owner may read it.
    let file = home.path().join("passwords");
    let line = format!("{}:5432:postgres:{role}:{secret}\n", socket_dir.replace(':', "\\:"));
    std::fs::write(&file, format!("# other logs\n*:*:*:someone_else:x\n{line}")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let passfile = [("PGPASSFILE", file.to_str().unwrap())];
    fails(&passfile, &url, "a password file others may read");
    let unread = usertrail(home.path(), &url, &passfile, "verify");
    let said = String::from_utf8_lossy(&unread.stderr);
    let why = format!(
        "the password file {} was not read: group or others may read it (chmod 600 it)",
        file.display()
    );
    assert!(said.contains(&why), "the refusal says why the file was not used: {said}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let init = usertrail(
        home.path(),
        &url,
        &passfile,
        "init --tenant contoso.onmicrosoft.com --admin admin@contoso.onmicrosoft.com",
    );
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    // ~/.pgpass when PGPASSFILE is not set; PGPASSWORD before either; the URL's before all.
    std::fs::rename(&file, home.path().join(".pgpass")).unwrap();
    assert!(usertrail(home.path(), &url, &[], "verify").status.success(), "~/.pgpass");
    fails(&[("PGPASSWORD", "wrong-pw")], &url, "PGPASSWORD comes before the file");
    assert!(usertrail(home.path(), &url, &[("PGPASSWORD", &secret)], "verify").status.success());
    let in_url = url.replacen(&format!("user={role}"), &format!("user={role}&password=wrong-pw"), 1);
    fails(&[("PGPASSWORD", &secret)], &in_url, "the URL's password comes first");
}
