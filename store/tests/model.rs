//! Model test: random appends, conflicts, retries and reopens against a
//! plain `Vec` of what should be in the log, on both backends (issue 33).

// Shared with the other test crates; this one needs only some of it.
#[allow(dead_code)]
#[path = "../../tests/pg_server.rs"]
mod pg_server;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use store::{
    Append, Archiving, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, OpenOptions, PgStore,
    SledStore,
};
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` events to stream `s`, with the right expected version
    /// (`stale` 0) or one `stale` behind (negative) or ahead (positive).
    Append { s: u8, n: u8, stale: i8 },
    /// Several appends in one call, with payloads large enough to span chunks.
    Batch { parts: Vec<(u8, u8)>, payload: u16 },
    /// Retry the most recent successful append verbatim.
    Retry,
    /// Close and reopen the database.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u8, 0..4u8, prop_oneof![8 => Just(0i8), 1 => -3..0i8, 1 => 1..4i8])
            .prop_map(|(s, n, stale)| Op::Append { s, n, stale }),
        2 => (proptest::collection::vec((0..3u8, 1..5u8), 1..6), 1..3000u16)
            .prop_map(|(parts, payload)| Op::Batch { parts, payload }),
        1 => Just(Op::Retry),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn the_log_matches_a_vec_model(
        ops in proptest::collection::vec(op(), 1..30),
        // Tiny thresholds, so that reopens archive (and reads span both databases).
        archiving in prop_oneof![
            Just(Archiving::default()),
            (0..6u64, 1..4096usize).prop_map(|(keep, batch_bytes)| Archiving { keep, batch_bytes }),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let options = OpenOptions { archiving, ..OpenOptions::default() };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let open = || -> Box<dyn EventStore> { Box::new(SledStore::open(&path, options.clone()).unwrap()) };
        matches_the_model(ops, &rt, open)?;
    }

    #[test]
    fn the_log_on_postgres_matches_a_vec_model(ops in proptest::collection::vec(op(), 1..30)) {
        let (url, _) = pg_server::new_schema();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(PgStore::init(&url)).unwrap();
        let keys = store::CacheKeys::Process;
        let open = || -> Box<dyn EventStore> { Box::new(rt.block_on(PgStore::open(&url, &keys)).unwrap()) };
        matches_the_model(ops, &rt, open)?;
    }
}

/// Runs `ops` on the log `open` opens (again at each [`Op::Reopen`]),
/// checking it against the model after each.
fn matches_the_model(
    ops: Vec<Op>,
    rt: &tokio::runtime::Runtime,
    open: impl Fn() -> Box<dyn EventStore>,
) -> Result<(), TestCaseError> {
    let mut store = open();
    let mut model: Vec<(String, Uuid)> = Vec::new();
    // The last successful append and where it landed.
    let mut last_ok: Option<(Append, store::Appended)> = None;
    let mut next_id = 0u128;
    for op in ops {
        match op {
            Op::Append { s, n, stale } => {
                let stream = format!("env/{s}");
                let version = model.iter().filter(|(st, _)| *st == stream).count() as u64;
                // Behind a stream at version 0 there is nothing: ahead instead.
                let expected = match version.checked_add_signed(i64::from(stale)) {
                    Some(v) => v,
                    None => version + stale.unsigned_abs() as u64,
                };
                let events: Vec<NewEvent> = (0..n)
                    .map(|_| {
                        next_id += 1;
                        NewEvent {
                            event_id: Uuid::from_u128(next_id),
                            event_type: "T".into(),
                            schema_version: 1,
                            payload: vec![s; 3],
                        }
                    })
                    .collect();
                let append = Append {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exactly(expected),
                    events: events.clone(),
                    meta: Metadata {
                        recorded_at: Utc.timestamp_opt(1_750_000_000 + model.len() as i64, 0).unwrap(),
                        actor: "model".into(),
                        correlation_id: Uuid::from_u128(next_id),
                        causation: Causation::Command { name: "model".into() },
                        origin: None,
                    },
                };
                let outcome = rt.block_on(store.append(append.clone())).unwrap();
                if expected == version {
                    let landed = outcome.expect("the right version lands");
                    prop_assert_eq!(landed.first_seq, model.len() as u64 + 1);
                    model.extend(events.iter().map(|e| (stream.clone(), e.event_id)));
                    prop_assert_eq!(landed.last_seq, model.len() as u64);
                    last_ok = Some((append, landed));
                } else {
                    // Refused whichever side it is stale on, naming both versions.
                    prop_assert_eq!(
                        outcome,
                        Err(store::AppendRejection::Conflict { stream, expected, actual: version })
                    );
                }
            }
            Op::Batch { parts, payload } => {
                let mut appends = Vec::new();
                let mut planned = Vec::new();
                for (s, n) in parts {
                    let stream = format!("env/{s}");
                    let events: Vec<NewEvent> = (0..n)
                        .map(|_| {
                            next_id += 1;
                            NewEvent {
                                event_id: Uuid::from_u128(next_id),
                                event_type: "T".into(),
                                schema_version: 1,
                                payload: vec![s; usize::from(payload)],
                            }
                        })
                        .collect();
                    planned.extend(events.iter().map(|e| (stream.clone(), e.event_id)));
                    appends.push(Append {
                        stream,
                        expected: ExpectedVersion::Any,
                        events,
                        meta: Metadata {
                            recorded_at: Utc.timestamp_opt(1_750_000_000 + model.len() as i64, 0).unwrap(),
                            actor: "model".into(),
                            correlation_id: Uuid::from_u128(next_id),
                            causation: Causation::Command { name: "model".into() },
                            origin: None,
                        },
                    });
                }
                let landed = rt.block_on(store.append_all(appends)).unwrap().unwrap();
                prop_assert_eq!(landed.first().map(|a| a.first_seq), Some(model.len() as u64 + 1));
                model.extend(planned);
                // An empty append retried after this one would now be stale.
                last_ok = None;
                prop_assert_eq!(landed.last().map(|a| a.last_seq), Some(model.len() as u64));
            }
            Op::Retry => {
                if let Some((append, original)) = last_ok.clone() {
                    let empty = append.events.is_empty();
                    let outcome = rt.block_on(store.append(append)).unwrap().unwrap();
                    if empty {
                        // Nothing to recognise: an empty append at the head again.
                        prop_assert!(outcome.first_seq > outcome.last_seq);
                    } else {
                        // A retry answers where the original landed, writing nothing.
                        prop_assert!(outcome.was_retry);
                        prop_assert_eq!(
                            (outcome.first_seq, outcome.last_seq, outcome.stream_version),
                            (original.first_seq, original.last_seq, original.stream_version)
                        );
                    }
                }
            }
            Op::Reopen => {
                drop(store);
                store = open();
            }
        }
        let log = rt.block_on(store.read_log(1, u64::MAX, usize::MAX)).unwrap();
        let seen: Vec<(String, Uuid)> = log.iter().map(|r| (r.stream.clone(), r.event_id)).collect();
        prop_assert_eq!(&seen, &model);
        // Each stream read from every version, whole and cut at every seq.
        for s in 0..3u8 {
            let stream = format!("env/{s}");
            let mine: Vec<(u64, u64)> = model
                .iter()
                .enumerate()
                .filter(|(_, (st, _))| *st == stream)
                .enumerate()
                .map(|(v, (i, _))| (v as u64 + 1, i as u64 + 1))
                .collect();
            prop_assert_eq!(rt.block_on(store.stream_version(&stream)).unwrap(), mine.len() as u64);
            for from in 1..=mine.len() as u64 + 1 {
                let max_seq = mine.get(from as usize).map_or(u64::MAX, |&(_, seq)| seq);
                let got: Vec<(u64, u64)> = rt
                    .block_on(store.read_stream_until(&stream, from, max_seq))
                    .unwrap()
                    .iter()
                    .map(|r| (r.version, r.seq))
                    .collect();
                let want: Vec<(u64, u64)> =
                    mine.iter().copied().filter(|&(v, seq)| v >= from && seq <= max_seq).collect();
                prop_assert_eq!(got, want);
            }
        }
        // The last record at or before each time the model has stamped.
        let t = Utc.timestamp_opt(1_750_000_000 + model.len() as i64 / 2, 0).unwrap();
        let want = log.iter().filter(|r| r.recorded_at <= t).map(|r| r.seq).max().unwrap_or(0);
        prop_assert_eq!(rt.block_on(store.seq_at(t)).unwrap(), want);
    }
    let report = rt.block_on(store.verify()).unwrap();
    prop_assert_eq!(report.problem, None);
    prop_assert_eq!(report.records, model.len() as u64);
    let report = rt.block_on(store.verify()).unwrap();
    prop_assert_eq!(report.problem, None);
    prop_assert_eq!(report.records, model.len() as u64);
    Ok(())
}

#[test]
fn the_generator_tries_stale_versions_behind_and_ahead() {
    // The property is only as good as its steps: both sides must come up.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut behind, mut ahead) = (0, 0);
    for _ in 0..2000 {
        if let Op::Append { stale, .. } = op().new_tree(&mut runner).unwrap().current() {
            behind += usize::from(stale < 0);
            ahead += usize::from(stale > 0);
        }
    }
    assert!(behind > 50 && ahead > 50, "behind {behind}, ahead {ahead}");
}
