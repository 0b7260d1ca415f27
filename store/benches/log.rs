//! criterion benches of the log: appends through the store next to raw sled
//! inserts of the same bytes, and a full read next to a raw scan. Payloads
//! are opaque bytes of the size of a real event (~100 B); the ratio binary
//! (`cargo run --release -p tests --bin usertrail-bench`) measures the same
//! things over real domain events and prints the ratios against the targets.
//!
//! `cargo bench -p store --bench log`; `cargo test -p store --benches` runs
//! each once (CI).

use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use store::{Append, Causation, Durability, ExpectedVersion, Metadata, NewEvent, OpenOptions, SledStore};
use uuid::Uuid;

const BATCH: usize = 1_000;

fn open(dir: &tempfile::TempDir, durability: Durability) -> SledStore {
    SledStore::open(
        dir.path().join("db"),
        OpenOptions { lock_timeout: Duration::from_secs(5), durability, ..OpenOptions::default() },
    )
    .unwrap()
}

/// One command of one event, on one of 50 streams.
fn command(n: u64, at: DateTime<Utc>) -> Append {
    Append {
        stream: format!("env/{:08}", n % 50),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "SystemUserUpdated".into(),
            schema_version: 1,
            payload: (0..100u8).map(|i| i.wrapping_mul(n as u8)).collect(),
        }],
        meta: Metadata {
            recorded_at: at,
            actor: "admin@contoso.onmicrosoft.com".into(),
            correlation_id: Uuid::new_v4(),
            causation: Causation::Command { name: "user update".into() },
            origin: None,
        },
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Stored record bytes, as the store writes them, for the raw references.
fn record_bytes(count: usize) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Durability::Batched);
    let appends: Vec<Append> = (0..count as u64).map(|n| command(n, now())).collect();
    store.append_all_blocking(&appends).unwrap().unwrap();
    store.raw_records(1..=u64::MAX).unwrap()
}

fn append(c: &mut Criterion) {
    let bytes = record_bytes(BATCH);
    let mut g = c.benchmark_group("append_batched_1000");
    g.throughput(Throughput::Elements(BATCH as u64)).sample_size(10);
    {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let mut n = 0;
        g.bench_function("store", |b| {
            b.iter_batched(
                || {
                    n += BATCH as u64;
                    (0..BATCH as u64).map(|i| command(n + i, now())).collect::<Vec<_>>()
                },
                |appends| store.append_all_blocking(&appends).unwrap().unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("raw")).unwrap();
        let tree = db.open_tree("log").unwrap();
        let mut seq = 0u64;
        g.bench_function("raw_sled_batch", |b| {
            b.iter(|| {
                let mut batch = sled::Batch::default();
                for v in &bytes {
                    seq += 1;
                    batch.insert(&seq.to_be_bytes()[..], &v[..]);
                }
                tree.apply_batch(batch).unwrap();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("append_durable_1");
    g.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(3));
    {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Immediate);
        let mut n = 0;
        g.bench_function("store", |b| {
            b.iter(|| {
                n += 1;
                store.append_all_blocking(&[command(n, now())]).unwrap().unwrap()
            })
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("raw")).unwrap();
        let tree = db.open_tree("log").unwrap();
        let mut seq = 0u64;
        g.bench_function("raw_sled_insert_flush", |b| {
            b.iter(|| {
                seq += 1;
                tree.insert(seq.to_be_bytes(), &bytes[(seq as usize - 1) % bytes.len()][..]).unwrap();
                db.flush().unwrap();
            })
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    const RECORDS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Durability::Batched);
    for chunk in 0..RECORDS / BATCH {
        let appends: Vec<Append> =
            (0..BATCH as u64).map(|i| command((chunk * BATCH) as u64 + i, now())).collect();
        store.append_all_blocking(&appends).unwrap().unwrap();
    }
    let mut g = c.benchmark_group("replay_20k");
    g.throughput(Throughput::Elements(RECORDS as u64)).sample_size(10);
    g.bench_function("store_read_log", |b| {
        b.iter(|| {
            let mut from = 1;
            loop {
                let page = store.read_log_blocking(from, u64::MAX, 10_000).unwrap();
                match page.last() {
                    Some(r) => from = r.seq + 1,
                    None => break,
                }
            }
        })
    });
    // The reference: the same record bytes, one sled entry per record.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = sled::Config::new().path(raw_dir.path()).open().unwrap();
    let log = raw.open_tree("log").unwrap();
    for (seq, bytes) in (1u64..).zip(store.raw_records(1..=u64::MAX).unwrap()) {
        log.insert(seq.to_be_bytes(), bytes).unwrap();
    }
    g.bench_function("raw_sled_iter", |b| {
        b.iter(|| log.iter().values().map(|v| v.unwrap().len()).sum::<usize>())
    });
    g.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
