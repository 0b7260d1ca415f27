//! The fixes in `vendor/sled` (vendor/README.md), tested through sled's
//! public API as the store uses it.

use std::sync::{Arc, Barrier};

/// sled's default segment size: the unit it frees and zeroes.
const SEGMENT: usize = 512 * 1024;

/// Bytes this thread has handed to write calls so far (Linux's per-thread I/O
/// accounting); sled zeroes free segments on the thread that opens.
#[cfg(target_os = "linux")]
fn written_by_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("per-thread I/O accounting");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a wchar line")
}

/// How many whole segments of sled's file hold nothing but zeroes.
fn zeroed_segments(db: &std::path::Path) -> usize {
    let bytes = std::fs::read(db.join("db")).expect("sled's file");
    bytes.chunks_exact(SEGMENT).filter(|segment| segment.iter().all(|&b| b == 0)).count()
}

/// Opens the database at `path`, waiting while the one dropped just before
/// still holds its lock: sled's flusher thread lets go of the file a moment
/// after the `Db` is dropped.
fn open(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other.expect("the database opens"),
        }
    }
}

fn value(round: u8, key: u8) -> Vec<u8> {
    vec![round ^ key; 100 * 1024]
}

/// A database whose early segments sled has freed: every key rewritten
/// until the segments of the first rounds hold nothing live.
fn database_with_free_segments(path: &std::path::Path) {
    let db = open(path);
    for round in 0..6 {
        for key in 0..40 {
            db.insert([key], value(round, key)).unwrap();
        }
        db.flush().unwrap();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn opening_again_leaves_free_segments_that_are_already_zeroed_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    database_with_free_segments(&path);
    // The first openings after they were freed zero them.
    for _ in 0..2 {
        drop(open(&path));
    }
    let zeroed = zeroed_segments(&path);
    assert!(zeroed >= 4, "the set-up must leave free segments, zeroed: {zeroed}");

    let before = written_by_this_thread();
    let db = open(&path);
    let written = written_by_this_thread() - before;
    // Less than half of what the zeroed segments would take again.
    assert!(
        written < (zeroed * SEGMENT / 2) as u64,
        "opening wrote {written} bytes: {zeroed} zeroed segment(s) were written again"
    );
    for key in 0..40 {
        assert_eq!(db.get([key]).unwrap().as_deref(), Some(&value(5, key)[..]), "key {key}");
    }
}

#[test]
fn a_segment_freed_with_data_in_it_is_zeroed_when_the_database_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    database_with_free_segments(&path);
    // Nothing has zeroed the freed segments yet: the first open must.
    let before = zeroed_segments(&path);
    let db = open(&path);
    drop(db);
    assert!(zeroed_segments(&path) > before, "the freed segments were zeroed ({before} before)");
    let db = open(&path);
    for key in 0..40 {
        assert_eq!(db.get([key]).unwrap().as_deref(), Some(&value(5, key)[..]), "key {key}");
    }
}

#[test]
fn threads_that_open_databases_at_once_all_get_them() {
    // sled's threadpool starts on the first open; its lazily built queue is
    // what the threads below wait on together. This checks that parking
    // waiters lose nothing and deadlock nowhere; that they no longer spin
    // shows only in time (vendor/README.md), which no test asserts.
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = Arc::new(Barrier::new(dirs.len()));
    let handles: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let path = dir.path().join("db");
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let db = open(&path);
                db.insert(b"k", vec![u8::try_from(i).unwrap(); 10]).unwrap();
                db.flush().unwrap();
                db.get(b"k").unwrap().map(|v| v.to_vec())
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), Some(vec![u8::try_from(i).unwrap(); 10]));
    }
}

/// The names of sled's page-table snapshot files (`snap.<lsn in hex>`).
fn snapshot_files(db: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(db)
        .expect("sled's directory")
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snap."))
        .collect();
    names.sort();
    names
}

/// Opens the database, checks that it holds `keys` small values, adds one
/// more and flushes.
fn reopen_check_and_add(path: &std::path::Path, keys: &mut Vec<u32>) {
    let db = open(path);
    for key in keys.iter() {
        assert_eq!(db.get(key.to_be_bytes()).unwrap().as_deref(), Some(&key.to_le_bytes()[..]), "key {key}");
    }
    let key = u32::try_from(keys.len()).unwrap();
    db.insert(key.to_be_bytes(), &key.to_le_bytes()).unwrap();
    db.flush().unwrap();
    keys.push(key);
}

/// A database written, then reopened and written once more: sled's first
/// snapshot is on disk. Its directory, path, keys and snapshot files.
fn reopened_once() -> (tempfile::TempDir, std::path::PathBuf, Vec<u32>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut keys = Vec::new();
    reopen_check_and_add(&path, &mut keys);
    reopen_check_and_add(&path, &mut keys);
    let snapshots = snapshot_files(&path);
    assert_eq!(snapshots.len(), 1, "one snapshot after the first reopening: {snapshots:?}");
    (dir, path, keys, snapshots)
}

#[test]
fn an_opening_that_replays_little_log_leaves_the_snapshot_on_disk_as_it_was() {
    let (_dir, path, mut keys, first) = reopened_once();
    // Each later opening replays a few small writes past it: the published
    // sled wrote a new snapshot at each of them.
    for _ in 0..20 {
        reopen_check_and_add(&path, &mut keys);
        assert_eq!(snapshot_files(&path), first);
    }
    // And what those openings replayed is all there, from the old snapshot.
    let db = open(&path);
    assert_eq!(db.len(), keys.len());
}

#[test]
fn an_opening_that_replays_into_another_segment_writes_a_new_snapshot() {
    let (_dir, path, mut keys, first) = reopened_once();
    {
        // 1.2 MB: the log moves on by two segments at least.
        let db = open(&path);
        for key in 0..12_u8 {
            db.insert([0xff, key], value(0, key)).unwrap();
        }
        db.flush().unwrap();
    }
    reopen_check_and_add(&path, &mut keys);
    let second = snapshot_files(&path);
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(second > first, "the log moved on by segments past {first:?}, yet the snapshot is {second:?}");
    let db = open(&path);
    for key in 0..12_u8 {
        assert_eq!(db.get([0xff, key]).unwrap().as_deref(), Some(&value(0, key)[..]), "key {key}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn an_opening_leaves_the_tail_of_the_segment_it_writes_next_unwritten_when_it_is_zeroed_already() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut keys = Vec::new();
    reopen_check_and_add(&path, &mut keys);
    // This opening shreds the tail after the write above, and writes the
    // first snapshot.
    drop(open(&path));

    let before = written_by_this_thread();
    let db = open(&path);
    let written = written_by_this_thread() - before;
    // The published sled wrote the rest of the segment again: most of its
    // 512 KiB.
    assert!(written < (SEGMENT / 8) as u64, "opening wrote {written} bytes");
    assert_eq!(db.get(0_u32.to_be_bytes()).unwrap().as_deref(), Some(&0_u32.to_le_bytes()[..]));
}
