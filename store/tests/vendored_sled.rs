//! The two fixes in `vendor/sled` (vendor/README.md), tested through sled's
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

fn value(round: u8, key: u8) -> Vec<u8> {
    vec![round ^ key; 100 * 1024]
}

/// A database whose early segments sled has freed: every key rewritten
/// until the segments of the first rounds hold nothing live.
fn database_with_free_segments(path: &std::path::Path) {
    let db = sled::Config::new().path(path).open().unwrap();
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
        drop(sled::Config::new().path(&path).open().unwrap());
    }
    let zeroed = zeroed_segments(&path);
    assert!(zeroed >= 4, "the set-up must leave free segments, zeroed: {zeroed}");

    let before = written_by_this_thread();
    let db = sled::Config::new().path(&path).open().unwrap();
    let written = written_by_this_thread() - before;
    // The opening still writes its page-table snapshot and zeroes the tail
    // of the segment it will write to next: less than half of what the
    // zeroed segments would take again.
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
    let db = sled::Config::new().path(&path).open().unwrap();
    drop(db);
    assert!(zeroed_segments(&path) > before, "the freed segments were zeroed ({before} before)");
    let db = sled::Config::new().path(&path).open().unwrap();
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
                let db = sled::Config::new().path(&path).open().unwrap();
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
