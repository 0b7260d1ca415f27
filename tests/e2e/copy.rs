//! `copy` between backends (issue 33): sled to PostgreSQL and back keeps
//! every record byte for byte, and every view; a damaged source copies
//! nothing; the destination must be empty.

use store::{EventStore, PgStore, Sealed, SledStore};
use tests::{pg_server, Sandbox};

const ALICE: &str = "alice@contoso.onmicrosoft.com";

/// Every record of the log at `db` (a directory or a URL), as stored.
fn sealed(sb: &Sandbox, db: &str) -> Vec<Sealed> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store: Box<dyn EventStore> = match db.starts_with("postgres") {
            true => Box::new(PgStore::open(db, &store::CacheKeys::Dir(sb.key_dir())).await.unwrap()),
            false => Box::new(SledStore::open(db, sb.open_options()).unwrap()),
        };
        store.read_sealed(1, u64::MAX, usize::MAX).await.unwrap()
    })
}

/// The answers that must not depend on where the log is.
fn views(sb: &mut Sandbox, db: &str) -> Vec<String> {
    ["systemusers --env Sales --json", "review --json", "history --json", "digest --json"]
        .iter()
        .map(|line| sb.ok(&format!("{line} --db {db}")))
        .collect()
}

/// Sales with alice in and out, a refusal, and a profile in Lyon (record `lyon`).
fn history() -> (Sandbox, u64) {
    let mut sb = Sandbox::sales_team(2);
    sb.ok(&format!("user access --env Sales --upn {ALICE}"));
    sb.ok(&format!("user update --upn {ALICE} --city Lyon"));
    let lyon = sb.records();
    sb.fails(&format!("user create --upn {ALICE} --first A --last B"), 1);
    sb.ok(&format!("group remove-member --group Sales-SG --upn {ALICE}"));
    sb.ok("sync");
    (sb, lyon)
}

#[test]
fn l3_sled_to_postgres_and_back_keeps_every_byte_and_every_view() {
    let (mut sb, _) = history();
    let sled = sb.db().display().to_string();
    let (pg, _) = pg_server::new_schema();
    let back = sb.dir().join("back.db").display().to_string();
    let before = views(&mut sb, &sled);
    let original = sealed(&sb, &sled);

    let said = sb.ok(&format!("copy --from {sled} --to {pg}"));
    assert!(said.starts_with(&format!("copied {} records", original.len())), "{said}");
    assert!(!said.contains("postgres://") && said.contains("schema t"), "names where, not the URL: {said}");
    let copied = sb.json(&format!("copy --from {pg} --to {back}"));
    assert_eq!(copied["records"], original.len() as u64);

    for db in [&pg, &back] {
        assert_eq!(sealed(&sb, db), original, "{db}: every record byte for byte");
        assert!(sb.ok(&format!("verify --db {db}")).contains("intact"), "{db}");
        assert_eq!(views(&mut sb, db), before, "{db}: views, digest and history as on the original");
    }
    // A copy goes into an empty log only, and leaves a full one as it was.
    for (to, flag) in [(&pg, "--to"), (&back, "--to")] {
        let err = sb.fails(&format!("copy --from {sled} --to {to}"), 2);
        assert!(err.contains(flag) && err.contains("not empty"), "{err}");
        assert_eq!(sealed(&sb, to), original);
    }
    let err = sb.fails(&format!("copy --from {sled} --to {sled}"), 2);
    assert!(err.contains("same log"), "{err}");
}

/// Changes `Lyon` to `Nice` in record `seq` of a sled log, behind its back.
fn alter_sled(sb: &Sandbox, seq: u64) {
    let store = SledStore::open(sb.db(), sb.open_options()).unwrap();
    let mut bytes = store.raw_record(seq).unwrap().unwrap();
    let at = bytes.windows(4).position(|w| w == b"Lyon").expect("the city is in the record");
    bytes[at..at + 4].copy_from_slice(b"Nice");
    store.raw_set_record(seq, Some(&bytes)).unwrap();
}

/// The same on a PostgreSQL log, as its owner would, the trigger dropped first.
fn alter_postgres(schema: &str, seq: u64) {
    let (base, query) = pg_server::server().split_once('?').unwrap();
    let sql = format!(
        "ALTER TABLE \"{schema}\".records DISABLE TRIGGER append_only; \
         UPDATE \"{schema}\".records SET body = overlay(body PLACING 'Nice'::bytea \
         FROM position('Lyon'::bytea IN body)) WHERE seq = {seq};"
    );
    let ran = std::process::Command::new("psql")
        .args([&format!("{base}?{query}"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
        .output()
        .expect("psql runs");
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
}

#[test]
fn l3_a_record_altered_in_the_source_is_refused_by_seq_and_nothing_is_written() {
    let (mut sb, lyon) = history();
    let sled = sb.db().display().to_string();
    let (pg, schema) = pg_server::new_schema();
    sb.ok(&format!("copy --from {sled} --to {pg}"));
    alter_postgres(&schema, lyon);
    let back = sb.dir().join("back.db");
    let err = sb.fails(&format!("copy --from {pg} --to {}", back.display()), 3);
    assert!(err.contains(&format!("record {lyon} of")) && err.contains("hash"), "{err}");
    assert!(!back.exists(), "nothing left behind");

    alter_sled(&sb, lyon);
    let (empty, _) = pg_server::new_schema();
    let err = sb.fails(&format!("copy --from {sled} --to {empty}"), 3);
    assert!(err.contains(&format!("record {lyon} of {sled}")), "{err}");
    assert!(sealed(&sb, &empty).is_empty(), "not one record written");
}

#[test]
fn restore_checks_a_whole_export_before_a_postgres_log_takes_a_record() {
    let (mut sb, _) = history();
    // More records than one page of appends, so a bad last line comes
    // after a page that a single pass would have written.
    let csv = sb.dir().join("stubs.csv");
    let rows: String = (0..1100).map(|i| format!("stub{i}@contoso.com,Stub,{i}\n")).collect();
    std::fs::write(&csv, format!("domainname,firstname,lastname\n{rows}")).unwrap();
    sb.ok(&format!("import stub-users --env Sales --file {}", csv.display()));
    let sled = sb.db().display().to_string();
    let original = sealed(&sb, &sled);
    assert!(original.len() > 1100, "{}", original.len());
    let text = sb.ok("export log");
    let file = sb.dir().join("log.jsonl");

    let cut = text.trim_end().rsplit_once('\n').unwrap().0;
    std::fs::write(&file, format!("{cut}\n{{\"not\": \"a record\"}}\n")).unwrap();
    let (pg, _) = pg_server::new_schema();
    let err = sb.fails(&format!("restore --from {} --db {pg}", file.display()), 2);
    assert!(err.contains(&format!("line {} of", original.len())), "{err}");
    assert!(sealed(&sb, &pg).is_empty(), "not one record written");

    std::fs::write(&file, &text).unwrap();
    let said = sb.ok(&format!("restore --from {} --db {pg}", file.display()));
    assert!(said.starts_with(&format!("restored {} records into host ", original.len())), "{said}");
    assert_eq!(sealed(&sb, &pg), original);
    let err = sb.fails(&format!("restore --from {} --db {pg}", file.display()), 2);
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn whatif_runs_on_a_copy_of_a_postgres_log_and_leaves_it_as_it_was() {
    let (mut sb, _) = history();
    let sled = sb.db().display().to_string();
    let (pg, _) = pg_server::new_schema();
    sb.ok(&format!("copy --from {sled} --to {pg}"));
    let script = sb.dir().join("plan.txt");
    std::fs::write(
        &script,
        format!("group add-member --group Sales-SG --upn {ALICE}\nsync\nuser block --upn bob@contoso.onmicrosoft.com\nsync\n"),
    )
    .unwrap();
    let line = format!("whatif --file {} --env Sales --json", script.display());
    let on_sled = sb.ok(&format!("{line} --db {sled}"));
    let on_pg = sb.ok(&format!("{line} --db {pg}"));
    assert_eq!(on_pg, on_sled);
    assert!(on_pg.contains(ALICE), "the plan changes something: {on_pg}");
    assert_eq!(sealed(&sb, &pg), sealed(&sb, &sled), "the log itself untouched");
    let said = sb.ok(&format!("whatif --file {} --db {pg}", script.display()));
    assert!(said.contains("scratch copy of host ") && !said.contains("postgres://"), "{said}");

    let err = sb.fails(&format!("demo --db {pg}"), 2);
    assert!(err.contains("is not empty") && err.contains("demo writes into an empty log only"), "{err}");
}
