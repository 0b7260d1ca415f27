//! Records leave a log byte for byte (`read_sealed`, what each hash covers)
//! and come into another one with the same hashes (`append_sealed`), only
//! as the next record of its chain.

use chrono::{DateTime, TimeZone, Utc};
use store::{
    Append, AppendRejection, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, OpenOptions, Origin,
    Sealed, SledStore,
};
use uuid::Uuid;

fn append(n: u64) -> Append {
    let at: DateTime<Utc> = Utc.timestamp_opt(1_750_000_000 + n as i64, 0).unwrap();
    // Every other record has an origin: formats 1 and 2 side by side.
    let origin =
        (n % 2 == 0).then(|| Origin { written_at: at, account: "alice".into(), host: "pc-7".into() });
    Append {
        stream: if n % 3 == 0 { "audit".into() } else { "tenant".into() },
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: Uuid::from_u128(u128::from(n)),
            event_type: "Test".into(),
            schema_version: 1,
            payload: format!("surname {n}").into_bytes(),
        }],
        meta: Metadata {
            recorded_at: at,
            actor: "admin@contoso.onmicrosoft.com".into(),
            correlation_id: Uuid::from_u128(u128::from(n)),
            causation: Causation::Command { name: "test".into() },
            origin,
        },
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap().block_on(f)
}

fn log_of(n: u64) -> SledStore {
    let store = SledStore::temporary().unwrap();
    for i in 1..=n {
        store.append_all_blocking(&[append(i)]).unwrap().unwrap();
    }
    store
}

/// The records of `store` as an export carries them: the hashed bytes.
fn exported(store: &SledStore) -> Vec<Vec<u8>> {
    let sealed = block_on(store.read_sealed(1, u64::MAX, usize::MAX)).unwrap();
    sealed.iter().map(|s| s.hashed().to_vec()).collect()
}

#[test]
fn l3_records_copied_through_their_hashed_bytes_keep_their_hashes_and_chain() {
    let original = log_of(12);
    let hashed = exported(&original);
    assert_eq!(hashed.len(), 12);
    let sealed: Vec<Sealed> = hashed.iter().map(|h| Sealed::from_hashed(h).unwrap()).collect();
    // Both formats come back as they were, origin and all.
    let records = block_on(original.read_log(1, u64::MAX, usize::MAX)).unwrap();
    for (s, r) in sealed.iter().zip(&records) {
        assert_eq!(s.record(), r);
        assert!(s.hash_is_intact());
    }
    assert!(records.iter().any(|r| r.origin.is_some()) && records.iter().any(|r| r.origin.is_none()));

    let dir = tempfile::tempdir().unwrap();
    let copy = SledStore::open(dir.path().join("db"), OpenOptions::default()).unwrap();
    // In two calls, as a restore pages through an export.
    let rest = sealed[5..].to_vec();
    assert_eq!(block_on(copy.append_sealed(sealed[..5].to_vec())).unwrap(), Ok(5));
    assert_eq!(block_on(copy.append_sealed(rest)).unwrap(), Ok(12));
    assert_eq!(block_on(copy.head()).unwrap(), block_on(original.head()).unwrap());
    assert_eq!(block_on(copy.read_log(1, u64::MAX, usize::MAX)).unwrap(), records);
    assert_eq!(block_on(copy.stream_version("audit")).unwrap(), 4);
    assert_eq!(block_on(copy.read_stream("tenant", 1)).unwrap().len(), 8);
    let report = block_on(copy.verify()).unwrap();
    assert_eq!((report.records, report.problem), (12, None));
    // The copy takes ordinary appends after the restored records.
    copy.append_all_blocking(&[append(13)]).unwrap().unwrap();
    assert_eq!(block_on(copy.verify()).unwrap().problem, None);
}

#[test]
fn l3_a_sealed_record_that_is_not_the_next_one_is_refused_and_nothing_is_written() {
    let original = log_of(6);
    let sealed: Vec<Sealed> = exported(&original).iter().map(|h| Sealed::from_hashed(h).unwrap()).collect();
    // Another history: its record 2 follows another record 1.
    let another = SledStore::temporary().unwrap();
    let mut first = append(1);
    first.events[0].payload = b"another surname".to_vec();
    another.append_all_blocking(&[first, append(2)]).unwrap().unwrap();
    let other: Vec<Sealed> = exported(&another).iter().map(|h| Sealed::from_hashed(h).unwrap()).collect();
    let cases: Vec<(&str, Vec<Sealed>, &str)> = vec![
        ("a gap", vec![sealed[0].clone(), sealed[2].clone()], "the next record is 2"),
        ("not from the start", vec![sealed[1].clone()], "the next record is 1"),
        ("a repeat", vec![sealed[0].clone(), sealed[0].clone()], "the next record is 2"),
    ];
    for (case, records, expected) in cases {
        let copy = SledStore::temporary().unwrap();
        let refused = block_on(copy.append_sealed(records)).unwrap();
        match refused {
            Err(AppendRejection::NotNext { what, .. }) => assert!(what.contains(expected), "{case}: {what}"),
            other => panic!("{case}: expected a refusal, got {other:?}"),
        }
        assert_eq!(block_on(copy.head()).unwrap(), None, "{case}: nothing written");
    }
    // Another log's record 2 at seq 2 does not chain to this record 1.
    let copy = SledStore::temporary().unwrap();
    block_on(copy.append_sealed(vec![sealed[0].clone()])).unwrap().unwrap();
    match block_on(copy.append_sealed(vec![other[1].clone()])).unwrap() {
        Err(AppendRejection::NotNext { seq: 2, what }) => assert!(what.contains("does not chain"), "{what}"),
        other => panic!("expected a chain refusal, got {other:?}"),
    }
    assert_eq!(block_on(copy.head()).unwrap().map(|h| h.seq), Some(1));
}

#[test]
fn bytes_that_are_no_record_body_are_named_not_sealed() {
    let hashed = exported(&log_of(1)).remove(0);
    for bad in [Vec::new(), hashed[..hashed.len() - 1].to_vec(), [hashed.clone(), vec![0]].concat()] {
        assert!(Sealed::from_hashed(&bad).is_err(), "{bad:?}");
    }
    // A changed byte still decodes, but to another record with another hash.
    let mut changed = hashed.clone();
    let at = changed.windows(7).position(|w| w == b"surname").unwrap();
    changed[at] = b'S';
    let (a, b) = (Sealed::from_hashed(&hashed).unwrap(), Sealed::from_hashed(&changed).unwrap());
    assert_ne!(a.record().hash, b.record().hash);
}
