//! What only the PostgreSQL store has: its schema (made, versioned,
//! refused when not ours), its two roles and the trigger that keeps records
//! append-only, its errors naming where and never the password, and records
//! moved between it and sled.

use store::{CacheKeys, EventStore, ExpectedVersion, PgStore, SledStore, StoreError};
use uuid::Uuid;

use super::fixture::{append, at, event, new_pg_log, new_schema, server, superuser, with_param};

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// `url` connecting as `user` (the test cluster's URLs name theirs as a parameter).
fn as_user(url: &str, user: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let rest: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("user=")).collect();
    with_param(&format!("{base}?{}", rest.join("&")), "user", user)
}

fn message(error: StoreError) -> String {
    assert!(matches!(error, StoreError::Server { .. }), "{error:?}");
    error.to_string()
}

#[tokio::test]
async fn init_is_idempotent_and_a_newer_foreign_or_empty_schema_is_refused() {
    let (store, url) = new_pg_log().await;
    store.append(append("tenant", ExpectedVersion::Any, vec![event(1)], at(0))).await.unwrap().unwrap();
    PgStore::init(&url).await.unwrap();
    assert_eq!(store.head().await.unwrap().map(|h| h.seq), Some(1), "a second init changes nothing");
    // A newer usertrail's schema.
    let owner = superuser(&url).await;
    owner.execute("UPDATE meta SET value = '2' WHERE key = 'usertrail-schema'", &[]).await.unwrap();
    let refused = message(PgStore::open(&url, &CacheKeys::Process).await.err().unwrap());
    assert!(
        refused.contains("schema version 2 is newer than this usertrail's 1 (upgrade usertrail)"),
        "{refused}"
    );
    assert!(refused.contains("database postgres"), "{refused}");
    assert!(PgStore::init(&url).await.is_err(), "init refuses it too");
    // Another program's tables.
    let (url, name) = new_schema();
    let owner = superuser(&url).await;
    owner.batch_execute(&format!("CREATE SCHEMA {name}; CREATE TABLE {name}.orders (id int)")).await.unwrap();
    for refused in [PgStore::init(&url).await.err(), PgStore::open(&url, &CacheKeys::Process).await.err()] {
        let refused = message(refused.unwrap());
        assert!(refused.contains("not a usertrail log"), "{refused}");
    }
    let tables =
        owner.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = $1", &[&name]).await.unwrap();
    assert_eq!(tables.get::<_, i64>(0), 1, "init made nothing beside them");
    // Nothing at all.
    let (url, _) = new_schema();
    let refused = PgStore::open(&url, &CacheKeys::Process).await.err().unwrap();
    assert!(matches!(refused, StoreError::NoLog { .. }), "{refused:?}");
    assert!(refused.to_string().contains("run `usertrail init` first"), "{refused}");
}

/// Runs `store/sql/roles.sql` with psql, as the test cluster's superuser.
fn grant_roles(url: &str, owner: &str, writer: &str, schema: &str) {
    let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/roles.sql");
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let rest: Vec<&str> = query.split('&').filter(|p| !p.starts_with("schema=")).collect();
    let ran = std::process::Command::new("psql")
        .arg(format!("{base}?{}", rest.join("&")))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-v",
            &format!("owner={owner}"),
            "-v",
            &format!("writer={writer}"),
            "-v",
            &format!("schema={schema}"),
        ])
        .arg("-f")
        .arg(sql)
        .output()
        .expect("psql runs");
    assert!(ran.status.success(), "roles.sql: {}", String::from_utf8_lossy(&ran.stderr));
}

#[tokio::test]
async fn the_writer_appends_and_reads_but_no_role_changes_or_removes_a_record() {
    let (url, schema) = new_schema();
    let (owner, writer) = (unique("owner_"), unique("writer_"));
    grant_roles(server(), &owner, &writer, &schema);
    PgStore::init(&as_user(&url, &owner)).await.unwrap();
    grant_roles(server(), &owner, &writer, &schema);
    // Everything a command does, with the writer's rights.
    let log = PgStore::open(&as_user(&url, &writer), &CacheKeys::Process).await.unwrap();
    for i in 1..=3u128 {
        log.append(append("tenant", ExpectedVersion::Any, vec![event(i)], at(0))).await.unwrap().unwrap();
    }
    let mut tx = log.begin().await.unwrap();
    assert!(tx.send(append("tenant", ExpectedVersion::Exactly(3), vec![event(4)], at(1))).await);
    tx.commit().await.unwrap().unwrap();
    assert_eq!(log.read_stream("tenant", 1).await.unwrap().len(), 4);
    for state in [vec![1], vec![2]] {
        log.save_snapshot("aggregate/tenant", store::Snapshot { seq: 4, state, parts: Vec::new() })
            .await
            .unwrap();
    }
    assert_eq!(log.load_snapshot("aggregate/tenant", 4).await.unwrap().map(|s| s.state), Some(vec![2]));
    log.remove_snapshots("aggregate/tenant", 0..5).await.unwrap();
    assert_eq!(log.verify().await.unwrap().problem, None);
    // The writer may not change or remove a record, nor the log's metadata.
    let as_writer = superuser(&as_user(&url, &writer)).await;
    for sql in [
        "UPDATE records SET stream = 'x' WHERE seq = 1",
        "DELETE FROM records WHERE seq = 4",
        "TRUNCATE records",
        "UPDATE meta SET value = '9'",
    ] {
        let refused = as_writer.batch_execute(sql).await.unwrap_err();
        let code = refused.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {refused:?}");
    }
    // Nor may the owner, as long as the trigger stands.
    let as_owner = superuser(&as_user(&url, &owner)).await;
    for sql in [
        "UPDATE records SET stream = 'x' WHERE seq = 1",
        "DELETE FROM records WHERE seq = 4",
        "TRUNCATE records",
    ] {
        let refused = as_owner.batch_execute(sql).await.unwrap_err();
        let said = refused.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(said.starts_with("usertrail records are append-only"), "{sql}: {refused:?}");
    }
    assert_eq!(log.head().await.unwrap().map(|h| h.seq), Some(4));
    assert_eq!(log.verify().await.unwrap().problem, None);
}

/// Reads check each record against its place, not the row's columns: a
/// record missing from the log (deleted by an owner who dropped the
/// trigger) or a body moved to another row is named, never skipped.
#[tokio::test]
async fn a_read_names_a_record_missing_from_its_place_or_moved_to_another_row() {
    let (log, url) = new_pg_log().await;
    for n in 1..=4 {
        let stream = if n % 2 == 0 { "even" } else { "odd" };
        log.append(append(stream, ExpectedVersion::Any, vec![event(n)], at(n as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    let owner = superuser(&url).await;
    owner.batch_execute("ALTER TABLE records DISABLE TRIGGER append_only").await.unwrap();
    // Record 3's body in record 1's row (odd's version 1).
    owner
        .batch_execute("UPDATE records SET body = (SELECT body FROM records WHERE seq = 3) WHERE seq = 1")
        .await
        .unwrap();
    let moved = log.read_stream("odd", 1).await.unwrap_err().to_string();
    assert!(moved.contains("record 3") && moved.contains("version 1 of stream 'odd'"), "{moved}");
    let moved = log.read_log(1, u64::MAX, 10).await.unwrap_err().to_string();
    assert!(moved.contains("record 1: the log holds record 3 in its place"), "{moved}");
    owner.batch_execute("DELETE FROM records WHERE seq = 1").await.unwrap();
    let missing = log.read_log(1, u64::MAX, 10).await.unwrap_err().to_string();
    assert!(missing.contains("record 1: the log holds record 2 in its place"), "{missing}");
    owner.batch_execute("ALTER TABLE records ENABLE TRIGGER append_only").await.unwrap();
}

/// A page fetched ahead before the handle appended is not served: the
/// read after the append sees it. The page is seen fetched (the reader
/// connection idle after its query) before the append, so that the stale
/// page is there to be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_fetched_ahead_before_the_handles_own_append_is_not_served() {
    let (_, url) = new_pg_log().await;
    // Its connections named, to be told apart from other tests' on the server.
    let name = unique("ahead");
    let log = PgStore::open(&with_param(&url, "application_name", &name), &CacheKeys::Process).await.unwrap();
    let events = (1..=10).map(event).collect();
    log.append(append("tenant", ExpectedVersion::Any, events, at(0))).await.unwrap().unwrap();
    assert_eq!(log.read_log(1, u64::MAX, 10).await.unwrap().len(), 10, "a full page: the next fetched ahead");
    let owner = superuser(&url).await;
    let fetched = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle' \
                   AND query LIKE 'SELECT format, body, hash FROM records WHERE seq BETWEEN%'";
    let started = std::time::Instant::now();
    // The handle's connection and its reader, each idle after a page.
    while owner.query_one(fetched, &[&name]).await.unwrap().get::<_, i64>(0) < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the page ahead was never fetched");
        tokio::task::yield_now().await;
    }
    log.append(append("tenant", ExpectedVersion::Any, vec![event(11)], at(1))).await.unwrap().unwrap();
    let after = log.read_log(11, u64::MAX, 10).await.unwrap();
    let seqs: Vec<u64> = after.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![11], "the append, not the page fetched before it");
}

#[tokio::test]
async fn a_server_refusing_connections_is_named_by_host_port_and_database_never_the_password() {
    // A port on this machine that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://alice:s3cr3t-pw@127.0.0.1:{port}/trail?schema=contoso&connect_timeout=5");
    let error = PgStore::open(&url, &CacheKeys::Process).await.err().unwrap();
    let (shown, debug) = (error.to_string(), format!("{error:?}"));
    let named = ["host 127.0.0.1", &format!("port {port}"), "database trail", "schema contoso", "refused"];
    for part in named {
        assert!(shown.contains(part), "{part}: {shown}");
    }
    assert!(!shown.contains("s3cr3t") && !debug.contains("s3cr3t"), "{debug}");
    assert_eq!(shown.lines().count(), 1, "one line: {shown}");
    let bad = PgStore::open("postgres://alice:s3cr3t-pw@/db?port=notaport", &CacheKeys::Process).await;
    let bad = message(bad.err().unwrap());
    assert!(!bad.contains("s3cr3t"), "{bad}");
}

#[tokio::test]
async fn a_statement_timeout_is_named_and_the_command_run_again_lands_once() {
    let (_, url) = new_pg_log().await;
    // A password the server (trusting its socket) never asks for, but holds.
    let timed =
        with_param(&with_param(&url, "options", "-c%20statement_timeout%3D300"), "password", "s3cr3t-pw");
    let log = PgStore::open(&timed, &CacheKeys::Process).await.unwrap();
    let command = append("tenant", ExpectedVersion::Exactly(0), vec![event(1), event(2)], at(0));
    // Another session holds the table: the append waits, then is cancelled.
    let mut owner = superuser(&url).await;
    let holding = owner.transaction().await.unwrap();
    holding.batch_execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let error = message(log.append(command.clone()).await.err().unwrap());
    assert!(error.contains("statement timeout") && error.contains("database postgres"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
    holding.rollback().await.unwrap();
    let landed = log.append(command).await.unwrap().unwrap();
    assert_eq!((landed.first_seq, landed.last_seq, landed.was_retry), (1, 2, false), "nothing half written");
}

#[tokio::test]
async fn a_connection_lost_mid_command_is_named_and_the_command_run_again_lands_once() {
    let (_, url) = new_pg_log().await;
    let app = unique("usertrail_");
    let url_held = with_param(&with_param(&url, "application_name", &app), "password", "s3cr3t-pw");
    let log = PgStore::open(&url_held, &CacheKeys::Process).await.unwrap();
    let command = append("tenant", ExpectedVersion::Exactly(0), vec![event(1), event(2)], at(0));
    let mut owner = superuser(&url).await;
    let holding = owner.transaction().await.unwrap();
    holding.batch_execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let pending = tokio::spawn({
        let (log, command) = (log.clone(), command.clone());
        async move { log.append(command).await }
    });
    // Once the append waits on the lock, its server process is ended.
    let waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'";
    let killer = superuser(&url).await;
    let mut waited = false;
    for _ in 0..400 {
        waited = !killer.query(waiting, &[&app]).await.unwrap().is_empty();
        if waited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(waited, "the append never waited on the lock");
    let ended = killer
        .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .await
        .unwrap();
    assert_eq!(ended.len(), 1);
    let error = message(pending.await.unwrap().err().unwrap());
    assert!(error.contains("database postgres") && error.contains("port 5432"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
    holding.rollback().await.unwrap();
    // The same handle connects anew; the command lands once.
    let landed = log.append(command).await.unwrap().unwrap();
    assert_eq!((landed.first_seq, landed.last_seq, landed.was_retry), (1, 2, false));
    assert_eq!(log.verify().await.unwrap().records, 2);
}

#[tokio::test]
async fn l3_records_moved_sled_to_postgres_to_sled_are_byte_for_byte_the_originals() {
    let original = SledStore::temporary().unwrap();
    for i in 1..=20u128 {
        let stream = if i % 3 == 0 { "audit" } else { "tenant" };
        original
            .append(append(stream, ExpectedVersion::Any, vec![event(i)], at(i as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    let sealed = original.read_sealed(1, u64::MAX, usize::MAX).await.unwrap();
    let (pg, url) = new_pg_log().await;
    assert_eq!(pg.append_sealed(sealed.clone()).await.unwrap(), Ok(20));
    let through_pg = pg.read_sealed(1, u64::MAX, usize::MAX).await.unwrap();
    assert_eq!(through_pg, sealed);
    // An auditor's check in SQL alone: each body hashes to its hash.
    let owner = superuser(&url).await;
    let row = owner.query_one("SELECT count(*) FROM records WHERE sha256(body) = hash", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 20);
    let back = SledStore::temporary().unwrap();
    assert_eq!(back.append_sealed(through_pg).await.unwrap(), Ok(20));
    let round_trip = back.read_sealed(1, u64::MAX, usize::MAX).await.unwrap();
    assert_eq!(round_trip, sealed);
    assert_eq!(back.verify().await.unwrap().problem, None);
    assert_eq!(back.head().await.unwrap(), original.head().await.unwrap());
}

/// TLS as libpq's `sslmode` asks, against a cluster that takes only TLS
/// over TCP: a connection the server accepts was encrypted, and a check
/// the certificate fails is refused, naming the certificate.
#[tokio::test]
async fn tls_is_used_and_checked_as_sslmode_asks() {
    let cluster = crate::pg_server::Cluster::start_tls();
    let (ca, other) = (cluster.tls_file("ca.crt"), cluster.tls_file("other.crt"));
    let url = |mode: &str, root: Option<&str>, host: &str| {
        let url = with_param(&cluster.url.replace("localhost", host), "schema", "tls");
        let url = if mode.is_empty() { url } else { with_param(&url, "sslmode", mode) };
        root.map_or(url.clone(), |root| with_param(&url, "sslrootcert", root))
    };
    let full = url("verify-full", Some(&ca), "localhost");
    PgStore::init(&full).await.unwrap();
    let store = PgStore::open(&full, &CacheKeys::Process).await.unwrap();
    store.append(append("tenant", ExpectedVersion::Any, vec![event(1)], at(0))).await.unwrap().unwrap();
    let opens = |url: String| async move {
        match PgStore::open(&url, &CacheKeys::Process).await {
            Ok(store) => Ok(store.head().await.unwrap().map(|h| h.seq)),
            Err(e) => Err(message(e)),
        }
    };
    // Encrypted: the server refuses plain text over TCP.
    for (mode, root, host) in [
        ("verify-full", Some(ca.as_str()), "localhost"),
        ("verify-ca", Some(ca.as_str()), "127.0.0.1"),
        ("require", None, "127.0.0.1"),
        ("require", Some(ca.as_str()), "localhost"),
        ("prefer", None, "localhost"),
        // No sslmode is libpq's `prefer`: TLS when the server offers it.
        ("", None, "localhost"),
    ] {
        assert_eq!(
            opens(url(mode, root, host)).await,
            Ok(Some(1)),
            "sslmode={mode} root {root:?} host {host}"
        );
    }
    let plain = opens(url("disable", None, "localhost")).await.unwrap_err();
    assert!(plain.contains("no encryption") && plain.contains("host localhost port"), "{plain}");
    // Refused by the check, each naming why.
    for (mode, root, host, why) in [
        ("verify-full", Some(other.as_str()), "localhost", "UnknownIssuer"),
        ("verify-ca", Some(other.as_str()), "localhost", "UnknownIssuer"),
        // libpq's rule: given a root certificate, `require` checks the chain.
        ("require", Some(other.as_str()), "localhost", "UnknownIssuer"),
        // Issued for localhost, not for the address.
        ("verify-full", Some(ca.as_str()), "127.0.0.1", "not valid for name \"127.0.0.1\""),
    ] {
        let refused = opens(url(mode, root, host)).await.unwrap_err();
        assert!(refused.contains("certificate") && refused.contains(why), "sslmode={mode}: {refused}");
    }
    // What the URL asks that usertrail cannot do, refused before connecting.
    let missing = opens(url("verify-full", Some("/nonexistent/root.crt"), "localhost")).await.unwrap_err();
    assert!(missing.contains("sslrootcert /nonexistent/root.crt"), "{missing}");
    let home = std::env::var("HOME").unwrap_or_default();
    if !std::path::Path::new(&home).join(".postgresql/root.crt").exists() {
        let no_root = opens(url("verify-full", None, "localhost")).await.unwrap_err();
        assert!(no_root.contains("needs the server's root certificate"), "{no_root}");
    }
    let bogus = opens(url("verify", None, "localhost")).await.unwrap_err();
    assert!(bogus.contains("sslmode=verify: not one of"), "{bogus}");
    let client_cert = opens(with_param(&full, "sslcert", "client.crt")).await.unwrap_err();
    assert!(client_cert.contains("client certificates are not supported"), "{client_cert}");
}

/// Two admins' machines on one log, each with its own cache key: each keeps
/// and finds its own snapshots, and neither replaces the other's with one
/// it cannot authenticate (a shared table would make every command of one
/// a miss after a command of the other).
#[tokio::test]
async fn each_machine_keeps_its_own_caches_on_a_shared_log() {
    let (first, url) = new_pg_log().await;
    first.append(append("tenant", ExpectedVersion::Any, vec![event(1)], at(0))).await.unwrap().unwrap();
    let keys = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let [alice, bob] = keys.map(|k| CacheKeys::Dir(k.path().to_path_buf()));
    let (alice, bob) = (PgStore::open(&url, &alice).await.unwrap(), PgStore::open(&url, &bob).await.unwrap());
    let state = |s: &str| store::Snapshot { seq: 1, state: s.as_bytes().to_vec(), parts: Vec::new() };
    alice.save_snapshot("aggregate/tenant", state("alice's")).await.unwrap();
    assert_eq!(bob.load_snapshot("aggregate/tenant", 1).await.unwrap(), None, "bob sees none of alice's");
    assert!(bob.snapshot_names().await.unwrap().is_empty());
    bob.save_snapshot("aggregate/tenant", state("bob's")).await.unwrap();
    for (machine, want) in [(&alice, "alice's"), (&bob, "bob's")] {
        let found = machine.load_snapshot("aggregate/tenant", 1).await.unwrap().map(|s| s.state);
        assert_eq!(found.as_deref(), Some(want.as_bytes()));
    }
    bob.remove_snapshots("aggregate/tenant", 0..u64::MAX).await.unwrap();
    assert!(alice.load_snapshot("aggregate/tenant", 1).await.unwrap().is_some(), "bob removes only his own");
    let owner = superuser(&url).await;
    let rows = owner.query_one("SELECT count(DISTINCT key_id) FROM caches", &[]).await.unwrap();
    assert_eq!(rows.get::<_, i64>(0), 1);
}
