//! Model test: random appends, conflicts, retries and reopens against a
//! plain `Vec` of what should be in the log.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use store::{Append, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, OpenOptions, SledStore};
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` events to stream `s`, with the right expected version or a stale one.
    Append { s: u8, n: u8, stale: bool },
    /// Retry the most recent successful append verbatim.
    Retry,
    /// Close and reopen the database.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u8, 0..4u8, proptest::bool::weighted(0.2)).prop_map(|(s, n, stale)| Op::Append { s, n, stale }),
        1 => Just(Op::Retry),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn the_log_matches_a_vec_model(ops in proptest::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut store = SledStore::open(&path, OpenOptions::default()).unwrap();
        let mut model: Vec<(String, Uuid)> = Vec::new();
        let mut last_ok: Option<Append> = None;
        let mut next_id = 0u128;
        for op in ops {
            match op {
                Op::Append { s, n, stale } => {
                    let stream = format!("env/{s}");
                    let version = model.iter().filter(|(st, _)| *st == stream).count() as u64;
                    let expected = if stale { version + 1 } else { version };
                    let events: Vec<NewEvent> = (0..n).map(|_| {
                        next_id += 1;
                        NewEvent { event_id: Uuid::from_u128(next_id), event_type: "T".into(), schema_version: 1, payload: vec![s; 3] }
                    }).collect();
                    let append = Append {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exactly(expected),
                        events: events.clone(),
                        meta: Metadata {
                            recorded_at: Utc.timestamp_opt(1_750_000_000 + model.len() as i64, 0).unwrap(),
                            actor: "model".into(),
                            correlation_id: Uuid::from_u128(next_id),
                            causation: Causation::Command { name: "model".into() },
                        },
                    };
                    let outcome = rt.block_on(store.append(append.clone())).unwrap();
                    prop_assert_eq!(outcome.is_ok(), !stale);
                    if !stale {
                        model.extend(events.iter().map(|e| (stream.clone(), e.event_id)));
                        last_ok = Some(append);
                    }
                }
                Op::Retry => {
                    if let Some(append) = last_ok.clone() {
                        let outcome = rt.block_on(store.append(append)).unwrap().unwrap();
                        prop_assert!(outcome.was_retry || outcome.first_seq > outcome.last_seq);
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = SledStore::open(&path, OpenOptions::default()).unwrap();
                }
            }
            let log = rt.block_on(store.read_log(1, u64::MAX, usize::MAX)).unwrap();
            let seen: Vec<(String, Uuid)> = log.iter().map(|r| (r.stream.clone(), r.event_id)).collect();
            prop_assert_eq!(&seen, &model);
        }
        let report = rt.block_on(store.verify()).unwrap();
        prop_assert_eq!(report.problem, None);
        prop_assert_eq!(report.records, model.len() as u64);
    }
}
