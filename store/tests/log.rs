//! The log's promises, one test each: atomic appends, optimistic concurrency,
//! idempotent retries, durability across reopen, time travel reads,
//! snapshots, tamper evidence (L3) and clear errors on foreign databases.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use store::{
    Append, AppendRejection, Causation, Durability, EventStore, ExpectedVersion, Metadata, NewEvent,
    OpenOptions, SledStore, Snapshot, StoreError,
};
use uuid::Uuid;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

fn event(n: u128, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(n),
        event_type: "Test".into(),
        schema_version: 1,
        payload: payload.to_vec(),
    }
}

fn append(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>, time: DateTime<Utc>) -> Append {
    Append {
        stream: stream.into(),
        expected,
        events,
        meta: Metadata {
            recorded_at: time,
            actor: "admin@contoso.onmicrosoft.com".into(),
            correlation_id: Uuid::new_v4(),
            causation: Causation::Command { name: "test".into() },
            origin: None,
        },
    }
}

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path().join("db"), OpenOptions::default()).unwrap()
}

async fn everything(store: &SledStore) -> Vec<store::Record> {
    store.read_log(1, u64::MAX, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn sequence_numbers_are_gapless_from_one_and_streams_versioned() {
    let store = SledStore::temporary().unwrap();
    let a = store
        .append(append("tenant", ExpectedVersion::Exactly(0), vec![event(1, b"a"), event(2, b"b")], at(0)))
        .await
        .unwrap()
        .unwrap();
    let b = store
        .append(append("env/x", ExpectedVersion::Exactly(0), vec![event(3, b"c")], at(1)))
        .await
        .unwrap()
        .unwrap();
    let c = store
        .append(append("tenant", ExpectedVersion::Exactly(2), vec![event(4, b"d")], at(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.first_seq, a.last_seq, a.stream_version), (1, 2, 2));
    assert_eq!((b.first_seq, b.last_seq, b.stream_version), (3, 3, 1));
    assert_eq!((c.first_seq, c.last_seq, c.stream_version), (4, 4, 3));
    let all = everything(&store).await;
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let tenant = store.read_stream("tenant", 1).await.unwrap();
    assert_eq!(tenant.iter().map(|r| (r.seq, r.version)).collect::<Vec<_>>(), vec![(1, 1), (2, 2), (4, 3)]);
    assert_eq!(store.read_stream("tenant", 3).await.unwrap().len(), 1);
    assert_eq!(store.stream_version("env/x").await.unwrap(), 1);
    assert_eq!(store.stream_version("env/none").await.unwrap(), 0);
    // Records chain: each carries the hash of the one before.
    assert_eq!(all[0].prev_hash, store::GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
}

#[tokio::test]
async fn a_wrong_expected_version_names_both_versions_and_writes_nothing() {
    let store = SledStore::temporary().unwrap();
    store
        .append(append("tenant", ExpectedVersion::Exactly(0), vec![event(1, b"a")], at(0)))
        .await
        .unwrap()
        .unwrap();
    let refused = store
        .append(append("tenant", ExpectedVersion::Exactly(0), vec![event(2, b"b")], at(1)))
        .await
        .unwrap();
    let err = refused.unwrap_err();
    assert_eq!(err, AppendRejection::Conflict { stream: "tenant".into(), expected: 0, actual: 1 });
    assert_eq!(err.to_string(), "concurrency conflict on stream 'tenant': expected version 0, found 1");
    assert_eq!(everything(&store).await.len(), 1);
}

#[tokio::test]
async fn an_append_that_fails_half_way_leaves_nothing_behind() {
    let store = SledStore::temporary().unwrap();
    store
        .append(append("env/b", ExpectedVersion::Exactly(0), vec![event(1, b"x")], at(0)))
        .await
        .unwrap()
        .unwrap();
    let head_before = store.head().await.unwrap();
    // The first append of the batch is fine; the second conflicts.
    let batch = vec![
        append("env/a", ExpectedVersion::Exactly(0), vec![event(10, b"1"), event(11, b"2")], at(1)),
        append("env/b", ExpectedVersion::Exactly(5), vec![event(12, b"3")], at(1)),
    ];
    let refused = store.append_all(batch).await.unwrap();
    assert!(matches!(refused, Err(AppendRejection::Conflict { .. })));
    // A failure of the store itself half-way (a time it cannot encode) is the same.
    let far = Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap();
    let batch = vec![
        append("env/a", ExpectedVersion::Exactly(0), vec![event(20, b"1")], at(2)),
        append("env/c", ExpectedVersion::Any, vec![event(21, b"2")], far),
    ];
    assert!(matches!(store.append_all(batch).await, Err(StoreError::TimeOutOfRange(_))));
    assert_eq!(store.head().await.unwrap(), head_before);
    assert_eq!(everything(&store).await.len(), 1);
    assert_eq!(store.stream_version("env/a").await.unwrap(), 0);
    assert_eq!(store.verify().await.unwrap().problem, None);
    // And the ids of the refused events are still free.
    let ok = store
        .append(append("env/a", ExpectedVersion::Exactly(0), vec![event(10, b"1")], at(3)))
        .await
        .unwrap();
    assert_eq!(ok.unwrap().first_seq, 2);
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_original_positions() {
    let store = SledStore::temporary().unwrap();
    let first = append("tenant", ExpectedVersion::Exactly(0), vec![event(1, b"a"), event(2, b"b")], at(0));
    let landed = store.append(first.clone()).await.unwrap().unwrap();
    store
        .append(append("tenant", ExpectedVersion::Exactly(2), vec![event(3, b"c")], at(1)))
        .await
        .unwrap()
        .unwrap();
    // The retry's expected version is stale by now: it still answers as before.
    let retried = store.append(first).await.unwrap().unwrap();
    assert!(retried.was_retry);
    assert_eq!((retried.first_seq, retried.last_seq), (landed.first_seq, landed.last_seq));
    assert_eq!(everything(&store).await.len(), 3);
    // A mix of known and new ids is not a retry.
    let mixed = append("tenant", ExpectedVersion::Any, vec![event(3, b"c"), event(4, b"d")], at(2));
    assert_eq!(
        store.append(mixed).await.unwrap(),
        Err(AppendRejection::PartialRetry { event_id: Uuid::from_u128(3) })
    );
    // In any order: a new id before a known one is refused too, and nothing is written twice.
    let mixed = append("tenant", ExpectedVersion::Any, vec![event(5, b"e"), event(1, b"a")], at(2));
    assert_eq!(
        store.append(mixed).await.unwrap(),
        Err(AppendRejection::PartialRetry { event_id: Uuid::from_u128(1) })
    );
    assert_eq!(everything(&store).await.len(), 3);
    assert_eq!(store.verify().await.unwrap().problem, None);
}

#[tokio::test]
async fn a_retry_reports_the_stream_version_right_after_the_original_append() {
    let store = SledStore::temporary().unwrap();
    let first = append("tenant", ExpectedVersion::Exactly(0), vec![event(1, b"a")], at(0));
    store.append(first.clone()).await.unwrap().unwrap();
    store
        .append(append("tenant", ExpectedVersion::Exactly(1), vec![event(2, b"b")], at(1)))
        .await
        .unwrap()
        .unwrap();
    let retried = store.append(first).await.unwrap().unwrap();
    assert_eq!((retried.last_seq, retried.stream_version), (1, 1));
}

#[tokio::test]
async fn time_never_goes_backwards() {
    let store = SledStore::temporary().unwrap();
    store
        .append(append("tenant", ExpectedVersion::Any, vec![event(1, b"a")], at(10)))
        .await
        .unwrap()
        .unwrap();
    let refused =
        store.append(append("tenant", ExpectedVersion::Any, vec![event(2, b"b")], at(9))).await.unwrap();
    assert_eq!(refused, Err(AppendRejection::TimeWentBackwards { last: at(10), given: at(9) }));
    // The same time is fine: one command's events share it.
    store
        .append(append("tenant", ExpectedVersion::Any, vec![event(3, b"c")], at(10)))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_with_one_expected_version_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append(append("env/race", ExpectedVersion::Exactly(0), vec![event(1, b"seed")], at(0)))
        .await
        .unwrap()
        .unwrap();
    let tasks: Vec<_> = (0..16u128)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(append(
                        "env/race",
                        ExpectedVersion::Exactly(1),
                        vec![event(100 + i, b"x")],
                        at(1),
                    ))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Ok(appended) => {
                wins += 1;
                assert_eq!(appended.stream_version, 2);
            }
            Err(AppendRejection::Conflict { expected: 1, actual: 2, .. }) => {}
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.stream_version("env/race").await.unwrap(), 2);
    assert_eq!(store.verify().await.unwrap().problem, None);
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let store = open(&dir);
        for i in 0..50u128 {
            let stream = format!("env/{}", i % 3);
            store
                .append(append(&stream, ExpectedVersion::Any, vec![event(i, &[i as u8; 40])], at(i as i64)))
                .await
                .unwrap()
                .unwrap();
        }
        everything(&store).await
    };
    let store = open(&dir);
    assert_eq!(everything(&store).await, written);
    let head = store.head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.recorded_at), (50, at(49)));
    assert_eq!(store.stream_version("env/1").await.unwrap(), 17);
    assert_eq!(store.verify().await.unwrap().problem, None);
    // Appends continue the same chain after a reopen.
    let next = store
        .append(append("env/1", ExpectedVersion::Exactly(17), vec![event(999, b"z")], at(60)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.first_seq, 51);
    assert_eq!(store.verify().await.unwrap().records, 51);
}

#[tokio::test]
async fn batched_durability_keeps_everything_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let options = OpenOptions { durability: Durability::Batched, ..OpenOptions::default() };
        let store = SledStore::open(dir.path().join("db"), options).unwrap();
        for i in 0..20u128 {
            store
                .append(append("tenant", ExpectedVersion::Exactly(i as u64), vec![event(i, b"b")], at(0)))
                .await
                .unwrap()
                .unwrap();
        }
        store.flush().await.unwrap();
    }
    assert_eq!(everything(&open(&dir)).await.len(), 20);
}

#[tokio::test]
async fn reads_by_time_include_records_at_the_time_and_none_after() {
    let store = SledStore::temporary().unwrap();
    assert_eq!(store.seq_at(at(0)).await.unwrap(), 0);
    // Records 1-2 at t=10, 3 at t=20, 4-6 at t=30.
    store
        .append(append("a", ExpectedVersion::Any, vec![event(1, b""), event(2, b"")], at(10)))
        .await
        .unwrap()
        .unwrap();
    store.append(append("b", ExpectedVersion::Any, vec![event(3, b"")], at(20))).await.unwrap().unwrap();
    store
        .append(append("a", ExpectedVersion::Any, vec![event(4, b""), event(5, b"")], at(30)))
        .await
        .unwrap()
        .unwrap();
    store.append(append("c", ExpectedVersion::Any, vec![event(6, b"")], at(30))).await.unwrap().unwrap();
    let cases = [(9, 0), (10, 2), (15, 2), (20, 3), (29, 3), (30, 6), (1000, 6)];
    for (secs, seq) in cases {
        assert_eq!(store.seq_at(at(secs)).await.unwrap(), seq, "as of t={secs}");
    }
    // Sub-second precision holds: one nanosecond before t=20 is still record 2.
    let just_before = at(20) - chrono::Duration::nanoseconds(1);
    assert_eq!(store.seq_at(just_before).await.unwrap(), 2);
    // Beyond the storable range: everything, or nothing.
    assert_eq!(store.seq_at(Utc.with_ymd_and_hms(2400, 1, 1, 0, 0, 0).unwrap()).await.unwrap(), 6);
    assert_eq!(store.seq_at(Utc.with_ymd_and_hms(1600, 1, 1, 0, 0, 0).unwrap()).await.unwrap(), 0);
    // Everything up to a time is the log read up to that seq.
    let upto = store.seq_at(at(25)).await.unwrap();
    let past = store.read_log(1, upto, usize::MAX).await.unwrap();
    assert!(past.iter().all(|r| r.recorded_at <= at(25)));
    assert_eq!(past.len(), 3);
}

/// A stand-in for an aggregate or view: folds payload bytes into a sum.
fn fold(state: u64, records: &[store::Record]) -> u64 {
    records
        .iter()
        .fold(state, |s, r| s.wrapping_mul(31).wrapping_add(r.payload.iter().map(|&b| b as u64).sum()))
}

#[tokio::test]
async fn a_snapshot_plus_the_records_after_it_equals_a_full_replay() {
    let store = SledStore::temporary().unwrap();
    for i in 0..100u128 {
        store
            .append(append("s", ExpectedVersion::Any, vec![event(i, &[i as u8, 7])], at(i as i64)))
            .await
            .unwrap()
            .unwrap();
        let seq = i as u64 + 1;
        if seq.is_multiple_of(25) {
            let state = fold(0, &store.read_log(1, seq, usize::MAX).await.unwrap());
            store
                .save_snapshot(
                    "sum",
                    Snapshot { seq, state: state.to_be_bytes().to_vec(), parts: Vec::new() },
                )
                .await
                .unwrap();
        }
    }
    for target in [0u64, 1, 24, 25, 26, 60, 99, 100] {
        let full = fold(0, &store.read_log(1, target, usize::MAX).await.unwrap());
        let (from, base) = match store.load_snapshot("sum", target).await.unwrap() {
            Some(s) => (s.seq, u64::from_be_bytes(s.state.try_into().unwrap())),
            None => (0, 0),
        };
        assert!(target < 25 || from >= target - target % 25, "the nearest snapshot is used");
        let tail = store.read_log(from + 1, target, usize::MAX).await.unwrap();
        assert!(tail.len() < 25, "only the records after the snapshot are replayed");
        assert_eq!(fold(base, &tail), full, "state at seq {target}");
    }
    assert_eq!(store.load_snapshot("other", 100).await.unwrap(), None);
}

fn tampered_db_with(dir: &tempfile::TempDir, tamper: impl FnOnce(&SledStore)) -> SledStore {
    {
        let store = open(dir);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for i in 0..10u128 {
                store
                    .append(append("tenant", ExpectedVersion::Any, vec![event(i, b"payload")], at(i as i64)))
                    .await
                    .unwrap()
                    .unwrap();
            }
            assert_eq!(store.verify().await.unwrap().problem, None);
        });
        tamper(&store);
        store.raw_tree().flush().unwrap();
    }
    open(dir)
}

#[test]
fn l3_verify_names_a_record_rewritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        let mut bytes = store.raw_record(6).unwrap().unwrap();
        // Rewrite the payload "payload" -> "pAyload": same length, same shape.
        let at = bytes.windows(7).position(|w| w == b"payload").unwrap();
        bytes[at + 1] = b'A';
        store.raw_set_record(6, Some(&bytes)).unwrap();
    });
    let report = tokio::runtime::Runtime::new().unwrap().block_on(store.verify()).unwrap();
    let problem = report.problem.expect("tampering is caught");
    assert_eq!(problem.seq, 6);
    assert!(problem.what.contains("altered"), "{}", problem.what);
}

#[test]
fn l3_verify_names_a_removed_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        store.raw_set_record(4, None).unwrap();
    });
    let report = tokio::runtime::Runtime::new().unwrap().block_on(store.verify()).unwrap();
    assert_eq!(report.problem.unwrap().seq, 4);
}

#[test]
fn l3_verify_names_swapped_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        let a = store.raw_record(3).unwrap().unwrap();
        let b = store.raw_record(8).unwrap().unwrap();
        store.raw_set_record(3, Some(&b)).unwrap();
        store.raw_set_record(8, Some(&a)).unwrap();
    });
    let report = tokio::runtime::Runtime::new().unwrap().block_on(store.verify()).unwrap();
    assert_eq!(report.problem.unwrap().seq, 3);
}

/// `verify` of a log whose index is not its records': no problem with the
/// log (the index is a cache, rebuilt), and the one miss it names.
fn index_miss_named_by_verify(store: &SledStore) -> String {
    let report = tokio::runtime::Runtime::new().unwrap().block_on(store.verify()).unwrap();
    assert_eq!((report.records, report.problem), (10, None), "the log itself is intact");
    let misses = store.index_misses();
    assert_eq!(misses.len(), 1, "{misses:?}");
    let again = tokio::runtime::Runtime::new().unwrap().block_on(store.verify()).unwrap();
    assert_eq!((again.problem, store.index_misses().len()), (None, 1), "rebuilt: nothing more to name");
    misses[0].1.clone()
}

#[test]
fn l3_verify_names_a_wrong_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        // Point event 5's id entry at record 2.
        store.raw_index_event(Uuid::from_u128(4), 2).unwrap();
    });
    let what = index_miss_named_by_verify(&store);
    assert!(what.starts_with("record 5: event id index"), "{what}");
}

#[test]
fn l3_verify_finds_a_stray_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        store.raw_index_event(Uuid::from_u128(12345), 7).unwrap();
    });
    // Named: the position the stray entry claims, and what is wrong with it
    // (not some other problem that happens to be found first).
    let what = index_miss_named_by_verify(&store);
    assert_eq!(what, "record 7: event id index entry names no record of the log");
}

#[test]
fn l3_verify_names_a_missing_stream_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        store.raw_remove_stream_index("tenant").unwrap();
    });
    let what = index_miss_named_by_verify(&store);
    assert!(what.starts_with("record 1: stream index entry is missing"), "{what}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(store.read_stream("tenant", 1)).unwrap().len(), 10, "rebuilt");
}

#[test]
fn a_huge_length_in_a_stored_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = tampered_db_with(&dir, |store| {
        // Format byte, then seq 1, then a 16-byte event id, then a string
        // length prefix of u64::MAX (varint marker 253 + 8 bytes).
        let mut bytes = vec![1u8, 1];
        bytes.extend_from_slice(&[0; 16]);
        bytes.push(253);
        bytes.extend_from_slice(&[0xff; 8]);
        bytes.extend_from_slice(&[0; 32]);
        store.raw_set_record(3, Some(&bytes)).unwrap();
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(store.verify()).unwrap();
    assert_eq!(report.problem.unwrap().seq, 3);
    assert!(matches!(rt.block_on(store.read_log(1, 10, 10)), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_directory_of_other_files_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = SledStore::open(dir.path(), OpenOptions::default()).err().unwrap();
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")], "nothing was written");
}

#[test]
fn a_directory_holding_only_our_lock_file_is_ours() {
    // An open that failed after taking the lock, before sled's start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(store::sled_store::LOCK_FILE), "").unwrap();
    let store = SledStore::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(store.read_log_blocking(1, u64::MAX, 10).unwrap().len(), 0);
}

#[test]
fn a_database_held_by_another_opener_waits_then_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _holder = open(&dir);
    let started = Instant::now();
    let options = OpenOptions { lock_timeout: Duration::from_millis(300), ..OpenOptions::default() };
    let err = SledStore::open(dir.path().join("db"), options).err().expect("the second open fails");
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited the timeout");
    assert!(matches!(err, StoreError::Locked { .. }));
    assert!(err.to_string().contains("is locked by another process"), "{err}");
}

#[test]
fn a_database_released_while_waiting_opens() {
    let dir = tempfile::tempdir().unwrap();
    let holder = open(&dir);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(holder);
    });
    let options = OpenOptions { lock_timeout: Duration::from_secs(10), ..OpenOptions::default() };
    assert!(SledStore::open(dir.path().join("db"), options).is_ok());
    release.join().unwrap();
}

#[test]
fn a_foreign_sled_database_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.insert("hello", "world").unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path().join("db"), OpenOptions::default()).err().unwrap();
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
    assert!(!dir.path().join("db").join(store::sled_store::LOCK_FILE).exists(), "nothing of ours left in it");
}

#[test]
fn a_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "not a database").unwrap();
    let err = SledStore::open(&file, OpenOptions::default()).err().unwrap();
    assert!(err.to_string().contains("is not a usertrail database"), "{err}");
}

#[test]
fn a_newer_log_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        let tree = store.raw_tree();
        let mut mark = b"usertrail-log".to_vec();
        mark.extend_from_slice(&99u32.to_be_bytes());
        tree.insert("mformat", mark).unwrap();
        tree.flush().unwrap();
    }
    let err = SledStore::open(dir.path().join("db"), OpenOptions::default()).err().unwrap();
    assert!(matches!(err, StoreError::NewerFormat { found: 99, .. }), "{err}");
}

#[test]
fn damaged_storage_files_give_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    // Overwrite every storage file with garbage.
    for entry in walk(&dir.path().join("db")) {
        std::fs::write(entry, vec![0xA5; 4096]).unwrap();
    }
    let outcome = std::panic::catch_unwind(|| SledStore::open(dir.path().join("db"), OpenOptions::default()));
    let outcome = outcome.expect("opening a damaged database must not panic");
    assert!(outcome.is_err(), "a damaged database must not open as if it were fine");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn an_unfinished_sled_snapshot_left_by_a_kill_does_not_make_the_log_unreadable() {
    // sled 0.34 (#1527, #1533) reads `snap.<lsn>.generating` as its newest
    // snapshot; a process killed while writing one left the database unopenable.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store
            .append(append("tenant", ExpectedVersion::Exactly(0), vec![event(1, b"a")], at(0)))
            .await
            .unwrap()
            .unwrap();
    }
    let unfinished = dir.path().join("db").join("live").join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&unfinished, b"half a snapshot").unwrap();
    let raw = sled::Config::new().path(dir.path().join("db").join("live")).open();
    assert!(matches!(raw, Err(sled::Error::Corruption { .. })), "sled alone refuses it");
    drop(raw);
    let store = open(&dir);
    assert_eq!(everything(&store).await.len(), 1);
    assert_eq!(store.verify().await.unwrap().problem, None);
    assert!(!unfinished.exists());
}

#[test]
fn a_stream_name_too_long_to_index_is_refused_and_changes_nothing() {
    let store = SledStore::temporary().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let long = "a".repeat(70_000);
    let err = rt.block_on(store.append(append(&long, ExpectedVersion::Any, vec![event(1, b"x")], at(1))));
    assert!(matches!(err, Err(StoreError::Encode(ref why)) if why.contains("70000 bytes")), "{err:?}");
    let longest = "b".repeat(usize::from(u16::MAX));
    rt.block_on(store.append(append(&longest, ExpectedVersion::Any, vec![event(2, b"x")], at(2))))
        .unwrap()
        .unwrap();
    assert_eq!(rt.block_on(store.read_stream(&longest, 1)).unwrap().len(), 1);
    assert_eq!(rt.block_on(store.verify()).unwrap(), store::VerifyReport { records: 1, problem: None });
}

/// `verify` beside appends of the same process sees one state: a healthy
/// log is never reported damaged because records landed during the walk.
#[test]
fn verify_beside_appends_finds_no_problem_in_a_healthy_log() {
    let store = SledStore::temporary().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let one = |n: u128| {
        append(if n % 2 == 0 { "a" } else { "b" }, ExpectedVersion::Any, vec![event(n, b"p")], at(n as i64))
    };
    let batch: Vec<Append> = (1..=5_000u128).map(one).collect();
    store.append_all_blocking(&batch).unwrap().unwrap();
    let writer = store.clone();
    let appending = std::thread::spawn(move || {
        for n in 5_001..=8_000u128 {
            writer.append_all_blocking(&[one(n)]).unwrap().unwrap();
        }
    });
    let mut walks = 0;
    while !appending.is_finished() || walks == 0 {
        let report = rt.block_on(store.verify()).unwrap();
        assert_eq!(report.problem, None, "after {} records", report.records);
        walks += 1;
    }
    appending.join().unwrap();
    assert_eq!(rt.block_on(store.verify()).unwrap().records, 8_000);
}

/// `n` one-event appends to `tenant`, from stream version `from`.
fn tenant_appends(from: u64, n: u64, first_id: u128) -> Vec<Append> {
    (0..n)
        .map(|i| {
            let e = event(first_id + u128::from(i), format!("e{i}").as_bytes());
            append("tenant", ExpectedVersion::Exactly(from + i), vec![e], at(1))
        })
        .collect()
}

#[tokio::test]
async fn a_transaction_lands_what_append_all_lands_and_the_same_bytes() {
    // More appends than one bunch hands over, so several reach the worker.
    let (via_all, via_transaction) = (SledStore::temporary().unwrap(), SledStore::temporary().unwrap());
    let appends = tenant_appends(0, 700, 1);
    let expected = via_all.append_all(appends.clone()).await.unwrap().unwrap();
    let mut transaction = via_transaction.begin().await.unwrap();
    for a in appends {
        assert!(transaction.send(a).await);
    }
    let landed = transaction.commit().await.unwrap().unwrap();
    assert_eq!(landed, expected);
    let (a, b) = (everything(&via_all).await, everything(&via_transaction).await);
    assert_eq!(a.len(), 700);
    assert_eq!(a, b, "the same records, hashes and all");
    assert!(via_transaction.verify().await.unwrap().problem.is_none());
}

#[tokio::test]
async fn a_transaction_fed_from_a_blocking_thread_lands_the_same_and_ends_at_a_conflict() {
    let (via_all, via_blocking) = (SledStore::temporary().unwrap(), SledStore::temporary().unwrap());
    let appends = tenant_appends(0, 700, 1);
    let expected = via_all.append_all(appends.clone()).await.unwrap().unwrap();
    let mut transaction = via_blocking.begin().await.unwrap();
    let transaction = tokio::task::spawn_blocking(move || {
        for a in appends {
            assert!(transaction.blocking_send(a));
        }
        transaction
    })
    .await
    .unwrap();
    assert_eq!(transaction.commit().await.unwrap().unwrap(), expected);
    assert_eq!(everything(&via_all).await, everything(&via_blocking).await);

    // A conflict ends the transaction, and nothing lands. (Whether a send
    // sees the end first depends on how far ahead the producer is.)
    let store = SledStore::temporary().unwrap();
    let mut appends = tenant_appends(0, 2_000, 1);
    appends[300].expected = ExpectedVersion::Exactly(7);
    let mut transaction = store.begin().await.unwrap();
    let transaction = tokio::task::spawn_blocking(move || {
        for a in appends {
            if !transaction.blocking_send(a) {
                break;
            }
        }
        transaction
    })
    .await
    .unwrap();
    let refused = transaction.commit().await.unwrap().unwrap_err();
    assert_eq!(refused, AppendRejection::Conflict { stream: "tenant".into(), expected: 7, actual: 300 });
    assert!(store.head().await.unwrap().is_none());
}

#[tokio::test]
async fn a_dropped_transaction_writes_nothing_and_holds_nothing() {
    let store = SledStore::temporary().unwrap();
    let mut transaction = store.begin().await.unwrap();
    for a in tenant_appends(0, 300, 1) {
        assert!(transaction.send(a).await);
    }
    drop(transaction);
    assert!(store.head().await.unwrap().is_none());
    // The next append is not kept waiting, and starts at seq 1.
    let next = store.append_all(tenant_appends(0, 1, 1_000)).await.unwrap().unwrap();
    assert_eq!(next[0].first_seq, 1);
}

#[tokio::test]
async fn a_conflict_in_a_transaction_ends_it_with_nothing_written() {
    let store = SledStore::temporary().unwrap();
    let mut appends = tenant_appends(0, 600, 1);
    appends[400].expected = ExpectedVersion::Exactly(7);
    let mut transaction = store.begin().await.unwrap();
    for a in appends {
        if !transaction.send(a).await {
            break;
        }
    }
    let refused = transaction.commit().await.unwrap().unwrap_err();
    assert_eq!(refused, AppendRejection::Conflict { stream: "tenant".into(), expected: 7, actual: 400 });
    assert!(store.head().await.unwrap().is_none());
}

#[tokio::test]
async fn a_transaction_overtaken_by_another_append_is_refused_whole() {
    let store = SledStore::temporary().unwrap();
    let mut transaction = store.begin().await.unwrap();
    for a in tenant_appends(0, 10, 1) {
        assert!(transaction.send(a).await);
    }
    // Another writer of this process gets in while it is open: reads and
    // appends are not held up by it.
    let other = append("env/x", ExpectedVersion::Exactly(0), vec![event(500, b"x")], at(1));
    store.append(other).await.unwrap().unwrap();
    assert_eq!(store.stream_version("env/x").await.unwrap(), 1);
    let refused = transaction.commit().await.unwrap().unwrap_err();
    assert_eq!(refused, AppendRejection::Moved { began: 0, now: 1 });
    let all = everything(&store).await;
    assert_eq!(all.len(), 1, "only the other writer's record");
    assert_eq!(all[0].stream, "env/x");
}

#[cfg(unix)]
#[test]
fn a_symlink_inside_the_database_is_refused_and_nothing_is_written_through_it() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, b"not yours").unwrap();
    for name in ["db", "snapshots", "witness", "live"] {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir));
        let path = dir.path().join("db");
        let link = path.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&link).unwrap(),
            Ok(_) => std::fs::remove_file(&link).unwrap(),
            Err(_) => {}
        }
        let target =
            if name == "snapshots" || name == "live" { outside.path().to_path_buf() } else { victim.clone() };
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = SledStore::open(&path, OpenOptions::default()).err().expect("refused");
        assert!(matches!(err, StoreError::Symlink { .. }), "{name}: {err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"not yours", "{name}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1, "{name}: nothing written outside");
    }
}

#[test]
fn sled_files_that_hold_no_usertrail_log_are_never_initialised_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Someone else's sled database, empty: nothing in it says it is a log.
    drop(sled::Config::new().path(&path).open().unwrap());
    let keys =
        OpenOptions { cache_keys: store::CacheKeys::Dir(dir.path().join("keys")), ..OpenOptions::default() };
    let err = SledStore::open(&path, keys).err().expect("refused");
    assert!(err.to_string().contains("no usertrail log"), "{err}");
    // Nothing of ours was left in it: no mark, no witness, no cache id.
    assert!(!path.join("witness").exists() && !path.join(store::CACHE_ID_FILE).exists());
    let raw = sled::Config::new().path(&path).open();
    if let Ok(raw) = raw {
        assert!(raw.open_tree("events").unwrap().is_empty(), "no format mark written");
    }
}

#[cfg(unix)]
#[test]
fn the_database_is_private_whatever_the_modes_it_was_given() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append_all_blocking(&[append("tenant", ExpectedVersion::Any, vec![event(1, b"a")], at(0))])
        .unwrap()
        .unwrap();
    drop(store);
    let path = dir.path().join("db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let everything = |path: &std::path::Path| {
        let mut all = vec![path.to_path_buf()];
        let mut i = 0;
        while i < all.len() {
            if all[i].is_dir() {
                let more: Vec<_> = std::fs::read_dir(&all[i]).unwrap().map(|e| e.unwrap().path()).collect();
                all.extend(more);
            }
            i += 1;
        }
        all
    };
    // As an earlier version (or a loose umask) left them.
    for p in everything(&path) {
        let loose = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(loose)).unwrap();
    }
    drop(open(&dir));
    for p in everything(&path) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p) & !want, 0, "{} is {:o}", p.display(), mode(&p));
    }
    // A new log's directory is private from the start.
    let fresh = tempfile::tempdir().unwrap();
    let new = fresh.path().join("new");
    drop(SledStore::open(&new, OpenOptions::default()).unwrap());
    assert_eq!(mode(&new), 0o700);
}

/// A log written before records kept their origin goes on with records that
/// do: both formats chain to each other, read back as written, and verify;
/// a changed account in a format 2 record is caught like any other byte.
#[tokio::test]
async fn records_with_and_without_an_origin_chain_read_and_verify_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append(append("tenant", ExpectedVersion::Exactly(0), vec![event(1, b"old")], at(0)))
        .await
        .unwrap()
        .unwrap();
    let origin = store::Origin { written_at: at(7), account: "alice".into(), host: "ops-01".into() };
    let mut new = append("tenant", ExpectedVersion::Exactly(1), vec![event(2, b"new")], at(1));
    new.meta.origin = Some(origin.clone());
    store.append(new).await.unwrap().unwrap();
    let old_bytes = store.raw_record(1).unwrap().unwrap();
    drop(store);
    let store = open(&dir);
    let all = everything(&store).await;
    assert_eq!(all[0].origin, None, "the older record says it recorded none");
    assert_eq!(all[1].origin, Some(origin));
    assert_eq!(all[1].prev_hash, all[0].hash);
    assert_eq!(store.raw_record(1).unwrap().unwrap(), old_bytes, "the older record's bytes untouched");
    assert_eq!(store.verify().await.unwrap().problem, None);
    let mut bytes = store.raw_record(2).unwrap().unwrap();
    let at_account = bytes.windows(5).position(|w| w == b"alice").unwrap();
    bytes[at_account] = b'm';
    store.raw_set_record(2, Some(&bytes)).unwrap();
    assert_eq!(store.verify().await.unwrap().problem.map(|p| p.seq), Some(2));
}

/// The tenant's and env/x's records, alternating, six in all, flushed into
/// the index blocks; and the sled key of the tenant's (one) run block.
async fn alternating(store: &SledStore) -> Vec<u8> {
    for i in 0..6u128 {
        let stream = if i % 2 == 0 { "tenant" } else { "env/x" };
        store
            .append(append(stream, ExpectedVersion::Any, vec![event(i, b"e")], at(i as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    store.flush().await.unwrap();
    let mut prefix = vec![b's'];
    prefix.extend_from_slice(&(6u16).to_be_bytes());
    prefix.extend_from_slice(b"tenant");
    let (key, _) = store.raw_tree().scan_prefix(&prefix).next().unwrap().unwrap();
    key.to_vec()
}

async fn seqs(store: &SledStore, stream: &str, from: u64) -> Vec<u64> {
    store.read_stream(stream, from).await.unwrap().iter().map(|r| r.seq).collect()
}

/// Issue 25, finding 2: a fold decides on what a stream read returns. A run
/// block forged to skip a record (to hide a role's removal), its MAC left
/// as it was, fails it: a miss, and the read gives the log's records from
/// the index rebuilt; `verify` names it.
#[tokio::test]
async fn a_run_block_forged_to_skip_a_record_is_a_miss_and_the_read_is_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = alternating(&store).await;
    let tree = store.raw_tree();
    // The tenant's runs: (v1, seq 1), (v2, seq 3), (v3, seq 5), then the MAC; drop the second.
    let block = tree.get(&key).unwrap().unwrap();
    assert_eq!(block.len(), 3 * 20 + 32);
    tree.insert(&key, [&block[..20], &block[40..]].concat()).unwrap();
    assert_eq!(seqs(&store, "tenant", 1).await, [1, 3, 5]);
    let misses = store.index_misses();
    assert_eq!(misses.len(), 1, "{misses:?}");
    assert!(
        misses[0].1.contains("stream index block of 'tenant' from version 1 fails its MAC"),
        "{misses:?}"
    );
    assert_eq!(store.verify().await.unwrap().problem, None);
}

/// Finding 2, the tail hidden: the tenant's run block rolled back to the one
/// a copy of the database holds from before its last record (authentic: it
/// passes its MAC). A read finds its runs short of the stream's head, which
/// the authenticated `mindexed` names: a miss, at every upto; the expected
/// version of an append is the head's, never the old block's.
#[tokio::test]
async fn a_run_block_rolled_back_to_an_older_copy_is_a_miss_and_appends_see_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = alternating(&store).await;
    let old = store.raw_tree().get(&key).unwrap().unwrap();
    // The removal the attacker hides: version 4, record 7.
    store
        .append(append("tenant", ExpectedVersion::Exactly(3), vec![event(6, b"removed")], at(6)))
        .await
        .unwrap()
        .unwrap();
    drop(store);
    let store = open(&dir);
    let tree = store.raw_tree();
    assert_ne!(tree.get(&key).unwrap().unwrap(), old, "the close rewrote the block");
    for (from, upto) in [(1, u64::MAX), (1, 6), (4, u64::MAX), (2, 5)] {
        tree.insert(&key, &old).unwrap();
        let want: Vec<u64> =
            [1, 3, 5, 7].into_iter().skip(from as usize - 1).filter(|&s| s <= upto).collect();
        let got: Vec<u64> =
            store.read_stream_until("tenant", from, upto).await.unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(got, want, "from version {from} up to record {upto}");
    }
    assert!(
        store
            .index_misses()
            .iter()
            .all(|(_, what)| what.contains("runs end at version 3 but its head is version 4")),
        "{:?}",
        store.index_misses()
    );
    tree.insert(&key, &old).unwrap();
    assert_eq!(store.stream_version("tenant").await.unwrap(), 4);
    let stale = append("tenant", ExpectedVersion::Exactly(3), vec![event(7, b"x")], at(7));
    match store.append(stale).await.unwrap() {
        Err(AppendRejection::Conflict { expected: 3, actual: 4, .. }) => {}
        other => panic!("decided on the old block: {other:?}"),
    }
    assert_eq!(seqs(&store, "tenant", 1).await, [1, 3, 5, 7]);
}

/// Finding 2: a new event's id planted in an event id block, its MAC left as
/// it was, would make the new event look like a retry of record 1 (and
/// write nothing); the block fails its MAC, and the event lands.
#[tokio::test]
async fn an_event_id_block_forged_to_fake_a_retry_is_a_miss_and_the_event_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    alternating(&store).await;
    let tree = store.raw_tree();
    let (key, block) = tree.scan_prefix([b'e']).next().unwrap().unwrap();
    let mut forged = block.to_vec();
    forged[..16].copy_from_slice(Uuid::from_u128(100).as_bytes());
    forged[16..24].copy_from_slice(&1u64.to_be_bytes());
    tree.insert(&key, forged).unwrap();
    let landed = store
        .append(append("tenant", ExpectedVersion::Any, vec![event(100, b"new")], at(9)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((landed.first_seq, landed.was_retry), (7, false));
    assert_eq!(store.index_misses().len(), 1);
}

/// Finding 2: an index copied in from another database (another key) is a
/// miss: a run block fails its MAC at the first read; the whole index,
/// `mindexed` with it, fails at open and is rebuilt there, silently (as
/// under any other key), answering with this log's records.
#[tokio::test]
async fn an_index_copied_from_another_database_is_a_miss() {
    let keys = tempfile::tempdir().unwrap();
    let options = || OpenOptions {
        cache_keys: store::CacheKeys::Dir(keys.path().to_path_buf()),
        ..OpenOptions::default()
    };
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = SledStore::open(ours.path().join("db"), options()).unwrap();
    let key = alternating(&store).await;
    let other = SledStore::open(theirs.path().join("db"), options()).unwrap();
    // Their tenant: versions 1-3 at records 1-3 (ours are at 1, 3 and 5).
    for i in 0..3u128 {
        other
            .append(append("tenant", ExpectedVersion::Any, vec![event(50 + i, b"t")], at(i as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    other.flush().await.unwrap();
    let index: Vec<(sled::IVec, sled::IVec)> = other
        .raw_tree()
        .iter()
        .map(Result::unwrap)
        .filter(|(k, _)| matches!(k[0], b'e' | b's') || &k[..] == b"mindexed")
        .collect();
    drop(other);
    store.raw_tree().insert(&key, &index.iter().find(|(k, _)| k[..] == key[..]).unwrap().1).unwrap();
    assert_eq!(seqs(&store, "tenant", 1).await, [1, 3, 5]);
    assert_eq!(store.index_misses().len(), 1);
    for (k, v) in &index {
        store.raw_tree().insert(k, v).unwrap();
    }
    store.raw_tree().flush().unwrap();
    drop(store);
    let store = SledStore::open(ours.path().join("db"), options()).unwrap();
    assert_eq!(seqs(&store, "tenant", 1).await, [1, 3, 5]);
    assert_eq!(seqs(&store, "env/x", 1).await, [2, 4, 6]);
    assert_eq!(store.stream_version("tenant").await.unwrap(), 3);
    assert_eq!(store.verify().await.unwrap().problem, None);
    assert_eq!(store.index_misses(), [], "a mark under another key is a miss at open, not a finding");
}

/// A FIFO planted in the database directory would make an open wait for a
/// writer for ever: it is refused at open, named, never opened.
#[cfg(unix)]
#[test]
fn a_fifo_inside_the_database_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let fifo = dir.path().join("db").join("cache-id");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let err = SledStore::open(dir.path().join("db"), OpenOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("neither a file nor a directory"), "{err}");
}
