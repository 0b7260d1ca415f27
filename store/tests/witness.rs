//! The witness of the head: a log that lost records, or holds another
//! history, says so at open, takes no more appends, and `verify` names it
//! and keeps the finding; a witness that lags after a crash is no loss.

use chrono::{DateTime, TimeZone, Utc};
use store::{
    Append, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, OpenOptions, SledStore, StoreError,
};
use uuid::Uuid;

fn append(n: u64) -> Append {
    let at: DateTime<Utc> = Utc.timestamp_opt(1_750_000_000 + n as i64, 0).unwrap();
    Append {
        stream: "tenant".into(),
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
            origin: None,
        },
    }
}

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path().join("db"), OpenOptions::default()).unwrap()
}

/// A log of `n` records, one append (so one chunk) each.
fn log_of(dir: &tempfile::TempDir, n: u64) {
    let store = open(dir);
    for i in 1..=n {
        store.append_all_blocking(&[append(i)]).unwrap().unwrap();
    }
}

fn chunk_key(first: u64) -> Vec<u8> {
    let mut key = vec![b'r'];
    key.extend_from_slice(&first.to_be_bytes());
    key
}

/// Removes records `from..` as sled's recovery does when it takes a
/// damaged message for the end of its log: the rest opens as if it were all.
fn lose_tail(dir: &tempfile::TempDir, from: u64, to: u64) {
    let db = raw_sled(dir);
    let events = db.open_tree("events").unwrap();
    for seq in from..=to {
        events.remove(chunk_key(seq)).unwrap();
    }
    db.flush().unwrap();
}

/// The log's sled database, opened behind the store's back. sled's file
/// lock may outlive a closed handle of this process for a moment.
fn raw_sled(dir: &tempfile::TempDir) -> sled::Db {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir.path().join("db").join("live")).open() {
            Ok(db) => return db,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(5) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("sled did not open: {e}"),
        }
    }
}

fn refused(store: &SledStore, n: u64) -> String {
    match store.append_all_blocking(&[append(n)]) {
        Err(StoreError::Corrupt(why)) => why,
        other => panic!("an append on a damaged log must be refused, got {other:?}"),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn l3_a_lost_tail_closes_the_log_to_appends_and_verify_names_the_missing_range() {
    let dir = tempfile::tempdir().unwrap();
    log_of(&dir, 35);
    lose_tail(&dir, 6, 35);

    let store = open(&dir);
    let why = refused(&store, 36);
    assert!(
        why.contains("the log ends at record 5 but record 35 was committed")
            && why.contains("records 6-35 are missing")
            && why.contains("see usertrail verify"),
        "{why}"
    );
    assert_eq!(store.damage().as_deref().map(|d| d.contains("records 6-35")), Some(true));
    // Reads still answer what is there.
    assert_eq!(block_on(store.read_log(1, u64::MAX, usize::MAX)).unwrap().len(), 5);
    let report = block_on(store.verify()).unwrap();
    assert_eq!(report.records, 5);
    let problem = report.problem.expect("the loss is a finding, not `verified 5 records`");
    assert_eq!(problem.seq, 6);
    assert!(problem.what.contains("records 6-35 are missing"), "{}", problem.what);
    drop(store);

    // The finding is kept: nothing is written on top of the loss, ever.
    let store = open(&dir);
    let why = refused(&store, 36);
    assert!(why.contains("verify found a problem at record 6"), "{why}");
    assert_eq!(block_on(store.head()).unwrap().map(|h| h.seq), Some(5));
    assert_eq!(block_on(store.verify()).unwrap().problem.map(|p| p.seq), Some(6));
}

#[test]
fn l3_a_finding_of_verify_is_kept_beside_the_log_and_closes_it_to_appends() {
    let dir = tempfile::tempdir().unwrap();
    log_of(&dir, 10);
    {
        let store = open(&dir);
        let mut bytes = store.raw_record(4).unwrap().unwrap();
        let at = bytes.windows(7).position(|w| w == b"surname").unwrap();
        bytes[at] = b'S';
        store.raw_set_record(4, Some(&bytes)).unwrap();
        // Appends go on until the damage is found...
        store.append_all_blocking(&[append(11)]).unwrap().unwrap();
        assert_eq!(block_on(store.verify()).unwrap().problem.map(|p| p.seq), Some(4));
        // ...and stop once it is, in this handle and every later one.
        assert!(refused(&store, 12).contains("verify found a problem at record 4"));
    }
    let store = open(&dir);
    assert!(refused(&store, 12).contains("record 4"));
    assert!(store.damage().is_some());
}

#[test]
fn l3_another_history_of_the_same_length_is_caught_at_open() {
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    log_of(&dir, 8);
    {
        // Another log of the same length whose last record differs.
        let store = open(&other);
        for i in 1..=8 {
            store.append_all_blocking(&[append(if i == 8 { 80 } else { i })]).unwrap().unwrap();
        }
    }
    // Its database's files put in place of ours, our witness kept.
    let (ours, theirs) = (dir.path().join("db").join("live"), other.path().join("db").join("live"));
    std::fs::remove_dir_all(&ours).unwrap();
    std::fs::create_dir(&ours).unwrap();
    for entry in std::fs::read_dir(&theirs).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, ours.join(path.file_name().unwrap())).unwrap();
        }
    }
    let store = open(&dir);
    let why = refused(&store, 9);
    assert!(why.contains("the record committed here had hash"), "{why}");
    assert_eq!(block_on(store.verify()).unwrap().problem.map(|p| p.seq), Some(8));
}

#[test]
fn l3_a_missing_or_damaged_witness_is_named_never_taken_for_nothing_to_check() {
    for damage in ["missing", "damaged"] {
        let dir = tempfile::tempdir().unwrap();
        log_of(&dir, 3);
        let witness = dir.path().join("db").join("witness");
        match damage {
            "missing" => std::fs::remove_file(&witness).unwrap(),
            _ => std::fs::write(&witness, vec![0x5a; 1024]).unwrap(),
        }
        let store = open(&dir);
        let why = refused(&store, 4);
        assert!(why.contains(&format!("the witness file is {damage}")), "{why}");
        let problem = block_on(store.verify()).unwrap().problem.expect("named by verify");
        assert!(problem.what.contains(&format!("witness file is {damage}")), "{}", problem.what);
    }
}

#[test]
fn a_witness_behind_the_log_after_a_crash_is_normal() {
    let (dir, behind) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    log_of(&behind, 3);
    log_of(&dir, 3);
    // Same records (same ids and times), so the witness of 3 fits this log.
    std::fs::copy(behind.path().join("db").join("witness"), dir.path().join("db").join("witness.3")).unwrap();
    {
        let store = open(&dir);
        for i in 4..=6 {
            store.append_all_blocking(&[append(i)]).unwrap().unwrap();
        }
    }
    // As if the witness's writes after record 3 never reached the disk.
    std::fs::rename(dir.path().join("db").join("witness.3"), dir.path().join("db").join("witness")).unwrap();
    let store = open(&dir);
    assert_eq!(store.damage(), None);
    store.append_all_blocking(&[append(7)]).unwrap().unwrap();
    assert_eq!(block_on(store.verify()).unwrap().problem, None);
}

#[test]
fn a_log_whose_sled_files_are_gone_is_a_loss_not_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    log_of(&dir, 4);
    for entry in std::fs::read_dir(dir.path().join("db")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "witness") {
            match path.is_dir() {
                true => std::fs::remove_dir_all(&path).unwrap(),
                false => std::fs::remove_file(&path).unwrap(),
            }
        }
    }
    let store = open(&dir);
    assert!(refused(&store, 1).contains("the log ends at record 0 but record 4 was committed"));
    assert_eq!(block_on(store.verify()).unwrap().problem.map(|p| p.seq), Some(1));
}

#[test]
fn a_log_from_before_the_witness_gets_one_at_its_first_open() {
    let dir = tempfile::tempdir().unwrap();
    log_of(&dir, 5);
    let witness = dir.path().join("db").join("witness");
    std::fs::remove_file(&witness).unwrap();
    {
        // The format mark of the last format without a witness.
        let db = raw_sled(&dir);
        let mut mark = b"usertrail-log".to_vec();
        mark.extend_from_slice(&4u32.to_be_bytes());
        db.open_tree("events").unwrap().insert("mformat", mark).unwrap();
        db.flush().unwrap();
    }
    drop(open(&dir));
    assert!(witness.is_file(), "the first open writes the witness");
    // From now on the log is held to it.
    lose_tail(&dir, 5, 5);
    let store = open(&dir);
    assert!(refused(&store, 6).contains("record 5 is missing"));
}

#[test]
fn a_huge_file_in_the_witness_place_is_read_no_further() {
    let dir = tempfile::tempdir().unwrap();
    log_of(&dir, 2);
    let path = dir.path().join("db").join("witness");
    // Sparse: 64 GiB that reading whole would exhaust memory. Its slots
    // come first, whole: the witness still holds.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(64 << 30).unwrap();
    let store = open(&dir);
    assert_eq!(store.damage(), None);
    store.append_all_blocking(&[append(3)]).unwrap().unwrap();
    drop(store);
    // The same size in zeroes: no whole slot, so damage, named.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    file.set_len(64 << 30).unwrap();
    drop(file);
    let store = open(&dir);
    assert!(store.damage().is_some_and(|d| d.contains("witness file is damaged")), "{:?}", store.damage());
}
