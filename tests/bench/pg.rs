//! Target 9 (issue 33): the PostgreSQL store beside raw PostgreSQL on one
//! cluster the bench starts itself with PostgreSQL's default durability
//! (fsync and synchronous commit on), each pair on the same rows, and the
//! sled store's figure for each row from the same run, through the code
//! paths of targets 1, 4 and 7. The raw table has the store's indexes:
//! seq primary key, unique event id, unique (stream, version), and
//! (time, seq); its `body` is a record's stored bytes, decoded as target 2's
//! raw scan decodes them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use store::{Append, Durability, EventStore, PgStore, SledStore};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::{
    batches_of, child, commands_of, dir_size, empty, gen, head_of, median, open, raw_decode, secs,
    settle_disk, sled_batched, sled_durable, user_create, Config, Row, DURABLE_ROUNDS,
};

/// The raw reference's table, in a schema of its own.
const RAW_TABLE: &str = "
CREATE TABLE raw (
    seq bigint PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    stream text NOT NULL,
    version bigint NOT NULL,
    recorded_at_ns bigint NOT NULL,
    body bytea NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX raw_by_time ON raw (recorded_at_ns, seq);
";

/// Rows a page of the copies and of the replays.
const PAGE: usize = 10_000;
/// Commands each side appends before the other takes its turn (9b): one,
/// so that each command of one side has one of the other beside it. In
/// turns of 20 the ratio still ranged 0.67-0.86 over six runs of one day,
/// the disk's flush cost changing within a fraction of a second.
const DURABLE_TURN: usize = 1;

/// A cluster for the target: the one `.ci/run` started (smoke only), or one
/// started here and stopped on drop unless kept (`--keep`).
struct Cluster {
    url: String,
    dir: Option<PathBuf>,
    keep: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match &self.dir {
            Some(dir) if self.keep => {
                println!("kept the cluster at {} (stop: .ci/pg stop {})", self.url, dir.display())
            }
            Some(dir) => drop(Command::new("bash").arg(script()).arg("stop").arg(dir).status()),
            None => {}
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/pg")
}

/// Starts a durable cluster beside the scratch directory (whose mode may
/// keep the cluster's owner out), or takes `USERTRAIL_TEST_PG` in a smoke run.
fn cluster(cfg: &Config, keep: bool) -> Result<Cluster, String> {
    if let (true, Ok(url)) = (cfg.smoke, std::env::var("USERTRAIL_TEST_PG")) {
        return Ok(Cluster { url, dir: None, keep });
    }
    let parent = cfg.dir.parent().unwrap_or(&cfg.dir);
    let dir = tempfile::Builder::new().prefix("usertrail-bench-pg.").tempdir_in(parent).unwrap().keep();
    let mut start = Command::new("bash");
    start.arg(script()).arg("start").arg(&dir).env("USERTRAIL_PG_DURABLE", "1");
    if !keep {
        start.env("USERTRAIL_PG_WATCH", std::process::id().to_string());
    }
    let out = start.output().map_err(|e| e.to_string())?;
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let cluster = Cluster { url, dir: Some(dir), keep };
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(cluster)
}

/// A record as the raw table holds it.
struct RawRow {
    seq: i64,
    event_id: Uuid,
    stream: String,
    version: i64,
    nanos: i64,
    body: Vec<u8>,
}

/// Records `from..=to` of a sled log as raw rows.
fn raw_rows(sled: &SledStore, from: u64, to: u64) -> Vec<RawRow> {
    let records = sled.read_log_blocking(from, to, usize::MAX).unwrap();
    let bytes = sled.raw_records(from..=to).unwrap();
    records
        .into_iter()
        .zip(bytes)
        .map(|(r, body)| RawRow {
            seq: r.seq as i64,
            event_id: r.event_id,
            stream: r.stream,
            version: r.version as i64,
            nanos: r.recorded_at.timestamp_nanos_opt().unwrap(),
            body,
        })
        .collect()
}

/// The connections and schemas of one run of the target.
struct Pg {
    url: String,
    /// A prefix for this run's schemas: a smoke run may share its cluster.
    prefix: String,
    schemas: Vec<String>,
}

impl Pg {
    /// A new schema's name and the store URL naming it.
    fn schema(&mut self, name: &str) -> (String, String) {
        let schema = format!("{}{name}", self.prefix);
        self.schemas.push(schema.clone());
        let joint = if self.url.contains('?') { '&' } else { '?' };
        (format!("{}{joint}schema={schema}", self.url), schema)
    }

    async fn connect(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// A new PgStore log.
    async fn store(&mut self, name: &str) -> (PgStore, String) {
        let (url, schema) = self.schema(name);
        PgStore::init(&url).await.unwrap();
        (PgStore::open(&url, &gen::cache_keys()).await.unwrap(), schema)
    }

    /// A new raw table, and a client whose search path is its schema.
    async fn raw(&mut self, name: &str) -> (Client, String) {
        let (_, schema) = self.schema(name);
        let client = self.connect().await;
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}; SET search_path TO {schema}; {RAW_TABLE}"))
            .await
            .unwrap();
        (client, schema)
    }
}

/// `COPY ... FROM STDIN BINARY` of `rows` into the raw table: one statement, one transaction.
async fn copy_in(client: &Client, rows: &[RawRow]) {
    let sink = client
        .copy_in("COPY raw (seq, event_id, stream, version, recorded_at_ns, body) FROM STDIN BINARY")
        .await
        .unwrap();
    let types = [Type::INT8, Type::UUID, Type::TEXT, Type::INT8, Type::INT8, Type::BYTEA];
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for r in rows {
        writer
            .as_mut()
            .write(&[&r.seq, &r.event_id, &r.stream, &r.version, &r.nanos, &r.body])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
}

/// Every record of `store`, read in pages and decoded; how many.
async fn replay(store: &impl EventStore) -> u64 {
    let (mut from, mut n) = (1, 0);
    loop {
        let page = store.read_log(from, u64::MAX, PAGE).await.unwrap();
        let Some(last) = page.last() else { return n };
        from = last.seq + 1;
        n += page.len() as u64;
        std::hint::black_box(page);
    }
}

/// The raw table's rows in seq order through a portal, decoded; how many.
async fn raw_replay(client: &mut Client) -> u64 {
    let config = bincode::config::standard();
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare("SELECT body FROM raw ORDER BY seq").await.unwrap();
    let portal = tx.bind(&statement, &[]).await.unwrap();
    let mut n = 0;
    loop {
        let rows = tx.query_portal(&portal, PAGE as i32).await.unwrap();
        if rows.is_empty() {
            return n;
        }
        for row in &rows {
            std::hint::black_box(raw_decode(row.get(0), config));
        }
        n += rows.len() as u64;
    }
}

/// Each stream's last ten records, `picks` (stream, first version) reads in all; reads/s.
async fn stream_reads(store: &impl EventStore, picks: &[(String, u64)]) -> f64 {
    let t = Instant::now();
    for (stream, from) in picks {
        let records = store.read_stream(stream, *from).await.unwrap();
        assert_eq!(records.len(), 10, "{stream} from {from}");
        std::hint::black_box(records);
    }
    picks.len() as f64 / secs(t.elapsed())
}

async fn raw_stream_reads(client: &Client, picks: &[(String, u64)]) -> f64 {
    let config = bincode::config::standard();
    let statement = client
        .prepare("SELECT body FROM raw WHERE stream = $1 AND version >= $2 ORDER BY version")
        .await
        .unwrap();
    let t = Instant::now();
    for (stream, from) in picks {
        let rows = client.query(&statement, &[stream, &(*from as i64)]).await.unwrap();
        assert_eq!(rows.len(), 10, "{stream} from {from}");
        for row in &rows {
            std::hint::black_box(raw_decode(row.get(0), config));
        }
    }
    picks.len() as f64 / secs(t.elapsed())
}

/// A sled log's records (and each cache's newest snapshot) into a new PgStore log,
/// as they are (`append_sealed`); the store and the time the records took.
async fn copy_log(pg: &mut Pg, name: &str, sled: &SledStore) -> (PgStore, String, f64) {
    let (store, schema) = pg.store(name).await;
    let t = Instant::now();
    let mut from = 1;
    loop {
        let page = sled.read_sealed(from, u64::MAX, PAGE).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.record().seq + 1;
        store.append_sealed(page).await.unwrap().unwrap();
    }
    let took = secs(t.elapsed());
    let mut newest = std::collections::BTreeMap::new();
    for (name, seq) in sled.snapshot_names().await.unwrap() {
        let at = newest.entry(name).or_insert(seq);
        *at = (*at).max(seq);
    }
    for (name, seq) in newest {
        if let Some(snapshot) = sled.load_snapshot(&name, seq).await.unwrap() {
            store.save_snapshot(&name, snapshot).await.unwrap();
        }
    }
    (store, schema, took)
}

/// Bytes of a table with its indexes and TOAST, after VACUUM and a checkpoint.
async fn table_size(client: &Client, table: &str) -> u64 {
    client.batch_execute(&format!("VACUUM ANALYZE {table}")).await.unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
    let row = client.query_one("SELECT pg_total_relation_size($1::text::regclass)", &[&table]).await.unwrap();
    row.get::<_, i64>(0) as u64
}

/// Bytes of every table of a schema, with indexes and TOAST.
async fn schema_size(client: &Client, schema: &str) -> u64 {
    let sql = "SELECT coalesce(sum(pg_total_relation_size(format('%I.%I', schemaname, tablename)::regclass)), 0)::bigint \
               FROM pg_tables WHERE schemaname = $1";
    client.query_one(sql, &[&schema]).await.unwrap().get::<_, i64>(0) as u64
}

/// One figure of each: sled store, PostgreSQL store, raw PostgreSQL.
struct Three {
    what: String,
    unit: &'static str,
    sled: f64,
    store: f64,
    raw: f64,
    /// Lower is better (disk).
    lower: bool,
}

impl Three {
    /// The store / raw ratio, and whether it meets its floor.
    fn judge(&self) -> (f64, bool) {
        let ratio = self.store / self.raw;
        (ratio, if self.lower { ratio <= 1.3 } else { ratio >= 0.7 })
    }
}

/// Target 9. `big_db` is target 1's log, whose first commands are 1a's and
/// 1b's. With `keep`, the cluster and its schemas are left for profiling.
pub fn target_9(cfg: &Config, big_db: &Path, keep: bool, rows: &mut Vec<Row>) {
    // Target 4's commands may have grown the log since it was generated.
    let big_head = head_of(big_db);
    let cluster = match cluster(cfg, keep) {
        Ok(cluster) => cluster,
        Err(why) => {
            rows.push(Row {
                target: "9",
                what: "PostgreSQL store vs raw PostgreSQL".into(),
                ratio: f64::NAN,
                goal: ">= 0.7x".into(),
                pass: true,
                detail: format!("no PostgreSQL cluster: {}", why.lines().next().unwrap_or_default()),
            });
            return;
        }
    };
    // The CLI's runtime (one worker), so that round trips cost what they cost a command.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut pg =
        Pg { url: cluster.url.clone(), prefix: format!("bench{}_", std::process::id()), schemas: Vec::new() };
    let mut three = Vec::new();

    // The same rows as target 1: its commands, and the records they make.
    let commands = commands_of(big_db, cfg.append_commands);
    let batches = batches_of(&commands);
    let events: usize = commands.iter().map(|a| a.events.len()).sum();
    let sled = open(big_db, Durability::Batched);
    let first = raw_rows(&sled, 1, events as u64);

    // 9a: ~1000 events a transaction.
    let (mut s, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        s.push(sled_batched(cfg, &batches, round, false).0);
        let owned: Vec<Vec<Append>> = batches.iter().map(|b| b.to_vec()).collect();
        p.push(rt.block_on(async {
            let (store, _) = pg.store(&format!("batched_store{round}")).await;
            let t = Instant::now();
            for batch in owned {
                store.append_all(batch).await.unwrap().unwrap();
            }
            events as f64 / secs(t.elapsed())
        }));
        r.push(rt.block_on(async {
            let (client, _) = pg.raw(&format!("batched_raw{round}")).await;
            let t = Instant::now();
            let mut at = 0;
            for batch in &batches {
                let n: usize = batch.iter().map(|a| a.events.len()).sum();
                copy_in(&client, &first[at..at + n]).await;
                at += n;
            }
            events as f64 / secs(t.elapsed())
        }));
    }
    three.push(Three {
        what: format!("append, batched (~1000 events a transaction; {events} events, median of 3): append_all vs COPY BINARY"),
        unit: "ev/s",
        sled: median(s),
        store: median(p),
        raw: median(r),
        lower: false,
    });

    // 9b: one command a transaction, durable. The sides take turns, so that
    // both meet the same moods of the disk: a commit's flush cost 0.1 ms in
    // one second and 0.3 ms in the next, and whole runs of each side apart
    // measured the disk more than the sides.
    let durable = &commands[..cfg.durable_commands.min(commands.len())];
    let (mut s, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..DURABLE_ROUNDS {
        settle_disk();
        let (on_store, on_raw) = rt.block_on(async {
            let (store, _) = pg.store(&format!("durable_store{round}")).await;
            let (client, _) = pg.raw(&format!("durable_raw{round}")).await;
            let insert = client
                .prepare(
                    "INSERT INTO raw SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[])",
                )
                .await
                .unwrap();
            let (mut on_store, mut on_raw, mut at) = (Duration::ZERO, Duration::ZERO, 0);
            for (turn, block) in durable.chunks(DURABLE_TURN).enumerate() {
                let owned: Vec<Append> = block.to_vec();
                let store_turn = async {
                    let t = Instant::now();
                    for a in owned {
                        store.append(a).await.unwrap().unwrap();
                    }
                    t.elapsed()
                };
                let parts: Vec<&[RawRow]> = block
                    .iter()
                    .map(|a| {
                        at += a.events.len();
                        &first[at - a.events.len()..at]
                    })
                    .collect();
                let raw_turn = async {
                    let t = Instant::now();
                    for part in parts {
                        let seq: Vec<i64> = part.iter().map(|r| r.seq).collect();
                        let id: Vec<Uuid> = part.iter().map(|r| r.event_id).collect();
                        let stream: Vec<&str> = part.iter().map(|r| r.stream.as_str()).collect();
                        let version: Vec<i64> = part.iter().map(|r| r.version).collect();
                        let nanos: Vec<i64> = part.iter().map(|r| r.nanos).collect();
                        let body: Vec<&[u8]> = part.iter().map(|r| r.body.as_slice()).collect();
                        client.execute(&insert, &[&seq, &id, &stream, &version, &nanos, &body]).await.unwrap();
                    }
                    t.elapsed()
                };
                // Who goes first changes every turn, as in 1b.
                if (round + turn) % 2 == 0 {
                    on_store += store_turn.await;
                    on_raw += raw_turn.await;
                } else {
                    on_raw += raw_turn.await;
                    on_store += store_turn.await;
                }
            }
            (on_store, on_raw)
        });
        p.push(durable.len() as f64 / secs(on_store));
        r.push(durable.len() as f64 / secs(on_raw));
        s.push(sled_durable(cfg, durable, round));
    }
    three.push(Three {
        what: format!(
            "append, durable, one command a transaction ({} commands, median of {DURABLE_ROUNDS}, the sides taking turns every {DURABLE_TURN}): append vs autocommit INSERT",
            durable.len()
        ),
        unit: "cmd/s",
        sled: median(s),
        store: median(p),
        raw: median(r),
        lower: false,
    });

    // The big log on both sides: the store's copy record for record, the raw table by COPY.
    let (store, store_schema, load) = rt.block_on(copy_log(&mut pg, "big", &sled));
    let (mut raw, raw_schema) = rt.block_on(pg.raw("big_raw"));
    let t = Instant::now();
    let mut from = 1;
    while from <= big_head {
        let to = (from + PAGE as u64 - 1).min(big_head);
        rt.block_on(copy_in(&raw, &raw_rows(&sled, from, to)));
        from = to + 1;
    }
    let raw_load = secs(t.elapsed());
    // Both tables vacuumed and analyzed before any read: the plans must not
    // hang on whether autovacuum has got round to a table yet (the replays
    // ran at 0.06x in a run where it had not).
    let (records, whole, raw_size) = rt.block_on(async {
        let records = table_size(&raw, &format!("{store_schema}.records")).await;
        let raw_size = table_size(&raw, &format!("{raw_schema}.raw")).await;
        (records, schema_size(&raw, &store_schema).await, raw_size)
    });
    let loads = format!(
        "loading {big_head} events: append_sealed {:.0} ev/s, COPY {:.0} ev/s",
        big_head as f64 / load,
        big_head as f64 / raw_load
    );

    // 9c: full replay + decode, the sides taking turns.
    let (mut s, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let timed = |f: &mut dyn FnMut() -> u64| {
            let t = Instant::now();
            let n = f();
            assert_eq!(n, big_head);
            n as f64 / secs(t.elapsed())
        };
        let mut sides: [(&mut Vec<f64>, &mut dyn FnMut() -> u64); 3] = [
            (&mut s, &mut || rt.block_on(replay(&sled))),
            (&mut p, &mut || rt.block_on(replay(&store))),
            (&mut r, &mut || rt.block_on(raw_replay(&mut raw))),
        ];
        sides.rotate_left(round);
        for (rates, f) in sides {
            rates.push(timed(f));
        }
    }
    three.push(Three {
        what: format!("full replay + decode, {big_head} events (median of 3): read_log pages vs portal, 10k rows a fetch"),
        unit: "ev/s",
        sled: median(s),
        store: median(p),
        raw: median(r),
        lower: false,
    });

    // 9d: the last ten records of a stream, every stream in turn.
    let heads = rt
        .block_on(
            raw.query("SELECT stream, max(version) FROM raw GROUP BY stream HAVING max(version) >= 10", &[]),
        )
        .unwrap();
    let tails: Vec<(String, u64)> =
        heads.iter().map(|row| (row.get(0), row.get::<_, i64>(1) as u64 - 9)).collect();
    let reads = if cfg.smoke { 50 } else { 3_000 };
    let picks: Vec<(String, u64)> = tails.iter().cycle().take(reads).cloned().collect();
    let (mut s, mut p, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let mut sides: [(&mut Vec<f64>, &mut dyn FnMut() -> f64); 3] = [
            (&mut s, &mut || rt.block_on(stream_reads(&sled, &picks))),
            (&mut p, &mut || rt.block_on(stream_reads(&store, &picks))),
            (&mut r, &mut || rt.block_on(raw_stream_reads(&raw, &picks))),
        ];
        sides.rotate_left(round);
        for (rates, f) in sides {
            rates.push(f());
        }
    }
    three.push(Three {
        what: format!(
            "one stream's last 10 records ({reads} reads over {} streams, median of 3): read_stream vs SELECT by stream",
            tails.len()
        ),
        unit: "reads/s",
        sled: median(s),
        store: median(p),
        raw: median(r),
        lower: false,
    });

    // 9e: disk per event, measured after the load.
    let per = |bytes: u64| bytes as f64 / big_head as f64;
    three.push(Three {
        what: format!(
            "disk per event, {big_head} events (sled: the database directory; PostgreSQL: the table with its indexes after VACUUM; the store's whole schema, with its caches: {:.0} B)",
            per(whole)
        ),
        unit: "B",
        sled: per(dir_size(big_db)),
        store: per(records),
        raw: per(raw_size),
        lower: true,
    });
    drop((sled, store));

    // 9f: one command on the big log and on an empty one, each in a process of its own.
    let empty_db = cfg.dir.join("pg-empty.db");
    empty(&empty_db);
    let empty_sled = open(&empty_db, Durability::Batched);
    let (empty_store, _, _) = rt.block_on(copy_log(&mut pg, "empty", &empty_sled));
    drop((empty_sled, empty_store));
    let (big_url, empty_url) = (pg.schema("big").0, pg.schema("empty").0);
    let run = |url: &str, i: usize| {
        // Past target 4's names, which the big log may hold already.
        let a = user_create(Path::new(url), 1_000 + i);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        child(&refs)[0].parse::<f64>().unwrap()
    };
    let reps = if cfg.smoke { 3 } else { 7 };
    let (big_first, _) = (run(&big_url, 0), run(&empty_url, 0));
    let (mut on_big, mut on_empty) = (Vec::new(), Vec::new());
    for i in 1..=reps {
        on_big.push(run(&big_url, i));
        on_empty.push(run(&empty_url, i));
    }
    let (on_big, on_empty) = (median(on_big), median(on_empty));

    println!("\ntarget 9: sled store | PostgreSQL store | raw PostgreSQL (one cluster, fsync and synchronous_commit on)\n");
    println!("| measure | sled store | PostgreSQL store | raw PostgreSQL | store / raw | floor | result |");
    println!("|---|---:|---:|---:|---:|---|---|");
    for (t, id) in three.iter().zip(["9a", "9b", "9c", "9d", "9e"]) {
        let (ratio, pass) = t.judge();
        let floor = if t.lower { "<= 1.3x" } else { ">= 0.7x" };
        println!(
            "| {id} {} | {:.0} {u} | {:.0} {u} | {:.0} {u} | {ratio:.2} | {floor} | {} |",
            t.what,
            t.sled,
            t.store,
            t.raw,
            if pass { "PASS" } else { "MISS" },
            u = t.unit
        );
        rows.push(Row {
            target: id,
            what: format!("PostgreSQL store / raw PostgreSQL: {}", t.what),
            ratio,
            goal: floor.into(),
            pass,
            detail: format!(
                "sled store {:.0}, PostgreSQL store {:.0}, raw PostgreSQL {:.0} {}",
                t.sled, t.store, t.raw, t.unit
            ),
        });
    }
    rows.push(Row {
        target: "9f",
        what: format!("user create on a {big_head}-event PostgreSQL log / on an empty one"),
        ratio: on_big / on_empty,
        goal: "report".into(),
        pass: true,
        detail: format!(
            "{:.1} ms vs {:.1} ms (median of {reps}, logs taking turns; the first on the big log {:.1} ms); {loads}",
            on_big * 1e3,
            on_empty * 1e3,
            big_first * 1e3
        ),
    });
    if keep {
        return;
    }
    rt.block_on(async {
        let client = pg.connect().await;
        for schema in &pg.schemas {
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
        }
    });
}
