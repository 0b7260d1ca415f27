//! The archive: older records move into a second database on close, and
//! every read answers as it did before; a command at the head does not open
//! the archive; a seal killed after any step is finished and leaves nothing
//! twice; a log of the earlier layout is moved into place.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use store::{
    Append, Archiving, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, OpenOptions, SledStore,
};
use uuid::Uuid;

const STREAMS: [&str; 3] = ["tenant", "env/a", "env/b"];

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

/// Call `n` of a history: one to three events on one of the streams.
fn call(n: u64) -> Append {
    let stream = STREAMS[(n % 3) as usize];
    let events = (0..1 + n % 3)
        .map(|k| NewEvent {
            event_id: Uuid::from_u128(u128::from(n) * 4 + u128::from(k) + 1),
            event_type: "Test".into(),
            schema_version: 1,
            payload: vec![(n % 251) as u8; 40 + (n % 7) as usize * 60],
        })
        .collect();
    Append {
        stream: stream.into(),
        expected: ExpectedVersion::Any,
        events,
        meta: Metadata {
            recorded_at: at(n as i64),
            actor: "admin@contoso.onmicrosoft.com".into(),
            correlation_id: Uuid::from_u128(u128::from(n) + 1_000_000),
            causation: Causation::Command { name: "test".into() },
            origin: None,
        },
    }
}

fn open(path: &std::path::Path, archiving: Archiving) -> SledStore {
    SledStore::open(path, OpenOptions { archiving, ..OpenOptions::default() }).unwrap()
}

/// Archiving as `archiving` says, but keeping every record live: for a
/// writer whose close must leave the moving to the next handle.
fn never(archiving: Archiving) -> Archiving {
    Archiving { keep: u64::MAX, ..archiving }
}

/// A log in a scratch directory at `path` in it, with `calls` written by
/// the handle returned (still open), which archives nothing on its close.
fn log_with(
    archiving: Archiving,
    calls: std::ops::Range<u64>,
) -> (tempfile::TempDir, std::path::PathBuf, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = open(&path, never(archiving));
    write(&store, calls);
    (dir, path, store)
}

/// Appends calls `from..to`, each as its own append.
fn write(store: &SledStore, calls: std::ops::Range<u64>) {
    for n in calls {
        store.append_all_blocking(&[call(n)]).unwrap().unwrap();
    }
}

/// Everything a reader can ask, in one comparable value.
async fn answers(store: &SledStore) -> Vec<String> {
    let mut out = Vec::new();
    let all = store.read_log(1, u64::MAX, usize::MAX).await.unwrap();
    out.push(format!("log {:?}", all.iter().map(|r| (r.seq, r.event_id, r.hash)).collect::<Vec<_>>()));
    out.push(format!("head {:?}", store.head().await.unwrap().map(|h| (h.seq, h.hash))));
    for stream in STREAMS {
        let version = store.stream_version(stream).await.unwrap();
        out.push(format!("{stream} at {version}"));
        for from in [1, 2, version / 3, version / 2, version.saturating_sub(5), version, version + 1] {
            let seqs: Vec<u64> =
                store.read_stream(stream, from).await.unwrap().iter().map(|r| r.seq).collect();
            out.push(format!("{stream} from {from}: {seqs:?}"));
            let cut = all.len() as u64 / 2;
            let seqs: Vec<u64> =
                store.read_stream_until(stream, from, cut).await.unwrap().iter().map(|r| r.seq).collect();
            out.push(format!("{stream} from {from} to {cut}: {seqs:?}"));
        }
    }
    for secs in [-1, 0, 1, 50, 333, 599, 600, 10_000] {
        out.push(format!("at {secs}: {}", store.seq_at(at(secs)).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn a_close_archives_old_records_and_every_read_answers_as_before() {
    archives_and_answers_as_before(Archiving { keep: 100, ..Archiving::default() }).await
}

/// A seal writes its chunks into the archive in batches of bounded size:
/// here one chunk a batch.
#[tokio::test]
async fn a_seal_in_many_batches_answers_as_one_does() {
    archives_and_answers_as_before(Archiving { keep: 100, batch_bytes: 1 }).await
}

async fn archives_and_answers_as_before(archiving: Archiving) {
    let (_dir, path, store) = log_with(archiving, 0..600);
    let head = store.head().await.unwrap().unwrap().seq;
    assert_eq!(store.close().unwrap(), 0, "a handle that keeps every record live moves none");
    assert!(!path.join("archive").exists());

    let moved = open(&path, archiving).close().unwrap();
    assert!(path.join("archive").join("db").is_file(), "the older records are in archive/ now");
    let store = open(&path, archiving);
    let upto = store.archived_upto();
    assert_eq!(moved, upto);
    assert!(
        upto > head - 2 * 100 && upto <= head - 100,
        "keeps the newest 100 to 200 records: {upto} of {head}"
    );
    // A command at the head: the stream's version, its newest records, an append.
    let tenant = store.stream_version("tenant").await.unwrap();
    assert_eq!(store.read_stream("tenant", tenant - 3).await.unwrap().len(), 4);
    store.append_all_blocking(&[call(600)]).unwrap().unwrap();
    assert!(!store.archive_is_open(), "nothing at the head needs the archive");
    // A retry of an archived append is known, and lands nowhere new.
    let retried = store.append_all_blocking(&[call(3)]).unwrap().unwrap();
    assert!(retried[0].was_retry && retried[0].last_seq <= upto, "{retried:?}");
    assert!(store.archive_is_open());
    let verified = store.verify().await.unwrap();
    assert_eq!((verified.records, verified.problem), (head + 1, None), "call 600 is one record");
    // The same calls in a log that never archived answer alike.
    let fresh = SledStore::temporary().unwrap();
    write(&fresh, 0..601);
    assert_eq!(answers(&store).await, answers(&fresh).await);
    drop(store);

    // Later seals move the live records into the archive, the rest into a
    // fresh live database; the answers stay the same throughout.
    for round in 0..3 {
        let store = open(&path, archiving);
        write(&store, 601 + round * 60..661 + round * 60);
        drop(store);
        let store = open(&path, archiving);
        let before = store.archived_upto();
        let moved = store.close().unwrap();
        let store = open(&path, archiving);
        assert_eq!(store.archived_upto(), before + moved);
        assert!(store.head().await.unwrap().unwrap().seq - store.archived_upto() <= 200);
        write(&fresh, 601 + round * 60..661 + round * 60);
        assert_eq!(answers(&store).await, answers(&fresh).await, "round {round}");
        assert_eq!(store.verify().await.unwrap().problem, None);
        // Each seal merged this round's event ids into the archive's: a
        // retry of the round's first call is known there.
        let retried = store.append_all_blocking(&[call(601 + round * 60)]).unwrap().unwrap();
        assert!(retried[0].was_retry && retried[0].last_seq <= store.archived_upto(), "{retried:?}");
    }
    assert!(!path.join("live.next").exists() && !path.join("live.old").exists());
}

/// Copies the directory `from` into `to`, which must not exist.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A seal killed after each of its steps. The state a kill leaves is put
/// together from copies of the log before and after a whole seal: the
/// archive (written first, by a later seal), then the new live database in
/// `live.next`, then `live` renamed away (to `archive` by the first seal, to
/// `live.old` by a later one), then `live.next` renamed into its place.
#[tokio::test]
async fn a_seal_killed_after_any_step_reads_as_before_and_a_later_close_seals_again() {
    let archiving = Archiving { keep: 60, ..Archiving::default() };
    for earlier_seals in [0, 1] {
        for step in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let (before, after, cut) =
                (dir.path().join("before"), dir.path().join("after"), dir.path().join("cut"));
            let fresh = SledStore::temporary().unwrap();
            for round in 0..=earlier_seals {
                let calls = round * 200..round * 200 + 200;
                write(&open(&before, Archiving::OFF), calls.clone());
                write(&fresh, calls);
                if round < earlier_seals {
                    assert!(open(&before, archiving).close().unwrap() > 0);
                }
            }
            copy_dir(&before, &after);
            assert!(open(&after, archiving).close().unwrap() > 0);
            let first = earlier_seals == 0;
            let aside = if first { "archive" } else { "live.old" };
            copy_dir(&before, &cut);
            if !first {
                std::fs::remove_dir_all(cut.join("archive")).unwrap();
                copy_dir(&after.join("archive"), &cut.join("archive"));
            }
            copy_dir(&after.join("live"), &cut.join("live.next"));
            if step >= 1 {
                std::fs::rename(cut.join("live"), cut.join(aside)).unwrap();
            }
            if step == 2 {
                std::fs::rename(cut.join("live.next"), cut.join("live")).unwrap();
            }

            let want = answers(&fresh).await;
            let store = open(&cut, Archiving::OFF);
            let what =
                format!("{} seal, killed after step {step}", if first { "a first" } else { "a later" });
            assert!(!cut.join("live.next").exists() && !cut.join("live.old").exists(), "{what}");
            assert_eq!(answers(&store).await, want, "{what}");
            assert_eq!(store.verify().await.unwrap().problem, None, "{what}");
            let (was, sealed) =
                (open(&before, Archiving::OFF).archived_upto(), open(&after, Archiving::OFF).archived_upto());
            let upto = store.archived_upto();
            assert_eq!(
                upto,
                if step == 0 { was } else { sealed },
                "{what}: the mark moves with the new live database"
            );
            drop(store);
            assert_eq!(open(&cut, archiving).close().unwrap() > 0, step == 0, "{what}: sealed again");
            let store = open(&cut, archiving);
            assert_eq!(store.archived_upto(), sealed, "{what}");
            assert_eq!(answers(&store).await, want, "{what}");
            assert_eq!(store.verify().await.unwrap().problem, None, "{what}");
        }
    }
}

/// A later seal killed between its batches: the archive holds every chunk
/// the seal moved and the first half of the event id blocks it wrote (each
/// batch lands whole), its runs and its mark as they were, and the live
/// database is not swapped. Reads, retries and `verify` answer as before
/// (the archive's entries past its mark are not read); the next close seals
/// again, over what the killed one left.
#[tokio::test]
async fn a_later_seal_killed_between_its_batches_reads_as_before_and_seals_again() {
    let archiving = Archiving { keep: 60, batch_bytes: 1 };
    let dir = tempfile::tempdir().unwrap();
    let (before, after, cut) = (dir.path().join("before"), dir.path().join("after"), dir.path().join("cut"));
    let fresh = SledStore::temporary().unwrap();
    // Enough records in the later seal for some blocks of ids.
    for (round, calls) in [0..200, 200..900].into_iter().enumerate() {
        write(&open(&before, Archiving::OFF), calls.clone());
        write(&fresh, calls);
        if round == 0 {
            assert!(open(&before, archiving).close().unwrap() > 0);
        }
    }
    copy_dir(&before, &after);
    assert!(open(&after, archiving).close().unwrap() > 0);
    copy_dir(&before, &cut);
    {
        let tree = |path: &Path| sled::open(path.join("archive")).unwrap().open_tree("events").unwrap();
        let (was, sealed, killed) = (tree(&before), tree(&after), tree(&cut));
        let written: Vec<(sled::IVec, sled::IVec)> = sealed
            .iter()
            .map(Result::unwrap)
            .filter(|(k, v)| was.get(k).unwrap().as_ref() != Some(v))
            .collect();
        let is = |tag: u8| move |(k, _): &&(sled::IVec, sled::IVec)| k[0] == tag;
        let ids: Vec<_> = written.iter().filter(is(b'e')).collect();
        assert!(ids.len() >= 4, "the seal rewrote or added {} id blocks", ids.len());
        for (k, v) in written.iter().filter(is(b'r')).chain(ids[..ids.len() / 2].iter().copied()) {
            killed.insert(k, v).unwrap();
        }
        killed.flush().unwrap();
    }

    let want = answers(&fresh).await;
    let store = open(&cut, Archiving::OFF);
    let upto = open(&before, Archiving::OFF).archived_upto();
    assert_eq!(store.archived_upto(), upto, "the mark is the one before the killed seal");
    assert_eq!(answers(&store).await, want);
    assert_eq!(store.verify().await.unwrap().problem, None);
    assert_eq!(store.index_misses(), [], "the archive's ids past its mark are no miss");
    // A call the killed seal had copied: still the live database's record.
    let retried = store.append_all_blocking(&[call(250)]).unwrap().unwrap();
    let original = fresh.append_all_blocking(&[call(250)]).unwrap().unwrap();
    assert!(retried[0].was_retry && retried[0].last_seq > upto, "{retried:?}");
    assert_eq!((retried[0].first_seq, retried[0].last_seq), (original[0].first_seq, original[0].last_seq));
    drop(store);
    assert!(open(&cut, archiving).close().unwrap() > 0, "sealed again");
    let store = open(&cut, archiving);
    assert_eq!(store.archived_upto(), open(&after, Archiving::OFF).archived_upto());
    assert_eq!(answers(&store).await, want);
    assert_eq!(store.verify().await.unwrap().problem, None);
    assert_eq!(store.index_misses(), []);
    let retried = store.append_all_blocking(&[call(250)]).unwrap().unwrap();
    assert!(retried[0].was_retry && retried[0].last_seq <= store.archived_upto(), "{retried:?}");
}

/// The files of a sled database in `dir`.
fn sled_files(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| {
            n.to_str().is_some_and(|n| ["conf", "db", "blobs"].contains(&n) || n.starts_with("snap."))
        })
        .collect();
    files.sort();
    files
}

/// A log of the layout before `live/` and `archive/`, whose directory was
/// itself a sled database: the live one, or after a seal the archive beside
/// `live/`. An open moves it into place once; a kill at any point of the
/// move (the files go one by one into `moving/`, which then takes its
/// place) leaves a log that the next open finishes moving, every record kept.
#[tokio::test]
async fn an_older_layout_is_moved_into_place_and_a_move_killed_at_any_point_is_finished() {
    let archiving = Archiving { keep: 60, ..Archiving::default() };
    for sealed in [false, true] {
        let (dir, path, store) = log_with(archiving, 0..200);
        drop(store);
        if sealed {
            assert!(open(&path, archiving).close().unwrap() > 0);
        }
        let want = answers(&open(&path, Archiving::OFF)).await;
        // Back to the earlier layout: the database's files in the directory itself.
        let place = if sealed { "archive" } else { "live" };
        for name in std::fs::read_dir(path.join(place)).unwrap() {
            let name = name.unwrap().file_name();
            std::fs::rename(path.join(place).join(&name), path.join(&name)).unwrap();
        }
        std::fs::remove_dir(path.join(place)).unwrap();
        let files = sled_files(&path);
        assert!(files.len() >= 2, "{files:?}");
        // `None`: killed before the move began.
        for moved in std::iter::once(None).chain((0..=files.len()).map(Some)) {
            let trial = dir.path().join(format!("trial-{sealed}-{moved:?}"));
            copy_dir(&path, &trial);
            if let Some(moved) = moved {
                std::fs::create_dir(trial.join("moving")).unwrap();
                for name in &files[..moved] {
                    std::fs::rename(trial.join(name), trial.join("moving").join(name)).unwrap();
                }
            }
            let store = open(&trial, Archiving::OFF);
            let what = format!("sealed {sealed}, killed with {moved:?} files moved");
            assert_eq!(answers(&store).await, want, "{what}");
            assert_eq!(store.verify().await.unwrap().problem, None, "{what}");
            assert!(sled_files(&trial).is_empty() && !trial.join("moving").exists(), "{what}");
            assert_eq!(sled_files(&trial.join(place)), files, "{what}");
            drop(store);
            assert_eq!(answers(&open(&trial, Archiving::OFF)).await, want, "{what}: reopened");
        }
    }
}

#[tokio::test]
async fn verify_finds_a_record_altered_in_the_archive() {
    let archiving = Archiving { keep: 20, ..Archiving::default() };
    let (_dir, path, store) = log_with(archiving, 0..100);
    store.close().unwrap();
    open(&path, archiving).close().unwrap();
    let store = open(&path, archiving);
    let victim = store.archived_upto() / 2;
    let mut bytes = store.raw_record(victim).unwrap().unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 0x55;
    store.raw_set_record(victim, Some(&bytes)).unwrap();
    let report = store.verify().await.unwrap();
    assert_eq!(report.problem.map(|p| p.seq), Some(victim));
}

#[test]
fn a_log_of_a_newer_format_is_refused_and_never_archived() {
    let archiving = Archiving { keep: 2, ..Archiving::default() };
    let (_dir, path, store) = log_with(archiving, 0..40);
    let tree = store.raw_tree();
    let mut mark = b"usertrail-log".to_vec();
    mark.extend_from_slice(&99u32.to_be_bytes());
    tree.insert("mformat", mark).unwrap();
    drop(tree);
    assert_eq!(store.close().unwrap(), 0, "its writer kept every record live");
    let err = SledStore::open(&path, OpenOptions { archiving, ..OpenOptions::default() }).err().unwrap();
    assert!(matches!(err, store::StoreError::NewerFormat { found: 99, .. }), "{err}");
    assert!(
        !path.join("archive").exists() && !path.join("live.next").exists(),
        "nothing rewritten in its place"
    );
}

#[tokio::test]
async fn a_live_database_renamed_away_and_never_replaced_is_restored_not_passed_over() {
    let archiving = Archiving { keep: 20, ..Archiving::default() };
    let (_dir, path, store) = log_with(archiving, 0..100);
    store.close().unwrap();
    open(&path, archiving).close().unwrap();
    let store = open(&path, archiving);
    let want = answers(&store).await;
    assert!(store.archived_upto() > 0);
    drop(store);
    // A swap stopped after `live` went to `live.old`, and `live.next` lost.
    std::fs::rename(path.join("live"), path.join("live.old")).unwrap();
    let store = open(&path, Archiving::OFF);
    assert!(path.join("live").is_dir() && !path.join("live.old").exists());
    assert_eq!(answers(&store).await, want);
    assert_eq!(store.verify().await.unwrap().problem, None);
}

#[tokio::test]
async fn a_swap_that_fails_is_reported_by_the_close_and_undone_by_the_next_open() {
    let archiving = Archiving { keep: 20, ..Archiving::default() };
    let (_dir, path, store) = log_with(archiving, 0..100);
    store.close().unwrap();
    open(&path, archiving).close().unwrap();
    let store = open(&path, never(archiving));
    write(&store, 100..160);
    drop(store);
    let store = open(&path, archiving);
    let want = answers(&store).await;
    // Something in the swap's way: `live` cannot be renamed onto a full directory.
    std::fs::create_dir_all(path.join("live.old").join("in-the-way")).unwrap();
    let err = store.close().expect_err("the failed swap is reported");
    assert!(matches!(err, store::StoreError::Io { .. }), "{err}");
    let store = open(&path, Archiving::OFF);
    assert!(!path.join("live.next").exists() && !path.join("live.old").exists());
    assert_eq!(answers(&store).await, want);
    assert_eq!(store.verify().await.unwrap().problem, None);
}

/// A log at `path` sealed twice (`keep` 60), the same calls written to a
/// temporary log that never archived; returns that one.
async fn sealed_twice(path: &std::path::Path, options: impl Fn() -> OpenOptions) -> SledStore {
    let fresh = SledStore::temporary().unwrap();
    for calls in [0..200, 200..400] {
        let store = SledStore::open(path, options()).unwrap();
        write(&store, calls.clone());
        write(&fresh, calls);
        assert!(store.close().unwrap() > 0, "the writer's close seals what it wrote");
    }
    fresh
}

fn with_keep(keys: Option<&std::path::Path>) -> OpenOptions {
    let cache_keys = keys.map_or(store::CacheKeys::Process, |k| store::CacheKeys::Dir(k.to_path_buf()));
    OpenOptions {
        archiving: Archiving { keep: 60, ..Archiving::default() },
        cache_keys,
        ..OpenOptions::default()
    }
}

/// The live database's `events` tree, opened behind the store's back.
fn live_tree(path: &std::path::Path) -> (sled::Db, sled::Tree) {
    let db = sled::Config::new().path(path.join("live")).open().unwrap();
    let tree = db.open_tree("events").unwrap();
    (db, tree)
}

/// Finding 2: `marchive` says which records the archive holds, so it is no
/// cache: rolled back to the one an earlier seal wrote (authentic), removed,
/// or forged, it is named at open, never passed over.
#[tokio::test]
async fn an_archive_mark_rolled_back_removed_or_forged_is_named_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let fresh = SledStore::temporary().unwrap();
    let grow = |calls: std::ops::Range<u64>| {
        let store = SledStore::open(&path, with_keep(None)).unwrap();
        write(&store, calls.clone());
        write(&fresh, calls);
        drop(store);
        SledStore::open(&path, with_keep(None)).unwrap().close().unwrap();
    };
    grow(0..200);
    let first = live_tree(&path).1.get(b"marchive").unwrap().unwrap();
    grow(200..400);
    let truth = live_tree(&path).1.get(b"marchive").unwrap().unwrap();
    let mut forged = truth.to_vec();
    let at = forged.len() - 40;
    forged[at] ^= 1;
    let cases: [(Option<&[u8]>, &str); 3] = [
        (Some(&first), "are archived, but the live database starts at record"),
        (None, "says records up to 0 are archived, but the live database starts at record"),
        (Some(&forged), "fails its MAC"),
    ];
    for (value, named) in cases {
        let (db, tree) = live_tree(&path);
        match value {
            Some(v) => tree.insert(b"marchive", v).map(drop),
            None => tree.remove(b"marchive").map(drop),
        }
        .unwrap();
        tree.flush().unwrap();
        drop((tree, db));
        let err = SledStore::open(&path, with_keep(None)).err().expect("named").to_string();
        assert!(err.contains("marchive") && err.contains(named), "{err}");
    }
    let (db, tree) = live_tree(&path);
    tree.insert(b"marchive", truth).unwrap();
    tree.flush().unwrap();
    drop((tree, db));
    let store = SledStore::open(&path, with_keep(None)).unwrap();
    assert_eq!(answers(&store).await, answers(&fresh).await, "the true mark back: as before");
}

/// Finding 2: without its key (lost, or another machine's), a log's index
/// and archive mark are under a key it does not have: the open rebuilds
/// both databases' index and the mark from the records, under the new key,
/// and every answer is as before; the next open trusts them again.
#[tokio::test]
async fn without_its_key_the_index_and_archive_mark_are_rebuilt_and_answer_as_before() {
    let (dir, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = dir.path().join("db");
    let fresh = sealed_twice(&path, || with_keep(Some(keys.path()))).await;
    let want = answers(&fresh).await;
    for entry in std::fs::read_dir(keys.path()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let store = SledStore::open(&path, with_keep(Some(keys.path()))).unwrap();
    assert!(store.archive_is_open(), "the archive's index was rebuilt too");
    assert_eq!(answers(&store).await, want);
    assert_eq!(store.verify().await.unwrap().problem, None);
    assert_eq!(store.index_misses(), [], "another key is no finding");
    drop(store);
    let store = SledStore::open(&path, with_keep(Some(keys.path()))).unwrap();
    assert!(!store.archive_is_open(), "nothing rebuilt: the new key authenticates them");
    assert_eq!(answers(&store).await, want);
}

/// A format 5 log (its blocks and marks without MACs, `mindexed` a seq
/// alone, `marchive` without its record's hash) opens: its index and archive
/// mark are rebuilt with MACs, and it goes on as a format 6 log.
#[tokio::test]
async fn a_format_5_log_gets_its_index_and_archive_mark_authenticated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let fresh = sealed_twice(&path, || with_keep(None)).await;
    let indexed = {
        let store = SledStore::open(&path, with_keep(None)).unwrap();
        store.head().await.unwrap().unwrap().seq
    };
    for dir in [path.join("archive"), path.join("live")] {
        let db = sled::Config::new().path(dir).open().unwrap();
        let tree = db.open_tree("events").unwrap();
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            let old = match &key[..] {
                [b'e' | b's', ..] => value[..value.len() - 32].to_vec(),
                b"mformat" => [&b"usertrail-log"[..], &5u32.to_be_bytes()].concat(),
                b"mindexed" => indexed.to_be_bytes().to_vec(),
                // Format 5's mark: the seq, versions and newest id, no hash, no MAC.
                b"marchive" => value[..value.len() - 64].to_vec(),
                _ => continue,
            };
            tree.insert(key, old).unwrap();
        }
        db.flush().unwrap();
    }
    let store = SledStore::open(&path, with_keep(None)).unwrap();
    assert_eq!(answers(&store).await, answers(&fresh).await);
    assert_eq!(store.verify().await.unwrap().problem, None);
    let format = store.raw_tree().get(b"mformat").unwrap().unwrap();
    assert_eq!(format[format.len() - 4..], 6u32.to_be_bytes());
}
