//! [`SledStore`]: the log on sled (one tree, `events`), and snapshots beside it.
//!
//! The `events` tree holds the records, in chunks, and their indexes (see
//! `keys`). One append call writes its records as one sled insert (or one
//! atomic batch when they fill several chunks): that write is the commit.
//! The index entries of new records are kept in memory (`Pending`) and
//! written as blocks every [`INDEX_EVERY`] records, on `flush`, and when the
//! store closes; opening a log rebuilds from the records whatever the index
//! blocks do not cover yet. Our lock on the log's directory keeps other
//! processes out while a log is open, and the index mutex orders appends
//! within the process: an append call reads the head and the stream versions, checks,
//! and writes with nobody in between; a transaction checks each append
//! under the mutex as it comes and, at its commit, that the head has not
//! moved since it began (`sled_store/staged.rs`).

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod archive;
#[cfg(test)]
mod fixtures;
mod index;
mod open;
mod pending;
mod read;
mod staged;
mod upgrade;
mod verify;
mod witness;

pub use archive::Archiving;
pub use open::{lock_dir, DirLock, LOCK_FILE};
use pending::Pending;
pub use pending::INDEX_EVERY;

use crate::blocks::IndexKey;
use crate::cache_key::CacheKeys;
use crate::keys;
use crate::record::{Record, Sealed};
use crate::snapshots::{CacheMiss, Snapshots, StagedSnapshot};
use crate::{
    Append, AppendResult, Appended, EventStore, Head, Problem, Snapshot, StoreError, Transaction,
    VerifyReport,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The log format this code writes and reads. Format 4 may keep its older
/// records in the archive (`sled_store::archive`), which format 3 code would
/// not see; a format 3 or 2 log (no archive yet; format 2's chunks all plain,
/// which this code reads too) only has its mark moved on at open. Format 1
/// (records and indexes in two trees, one entry per record) is upgraded in
/// place on open.
/// Format 5 carries a witness of its head (`sled_store::witness`). Format 6
/// authenticates the index and the archive mark (`sled_store::index`): an
/// older log's are a miss, rebuilt with MACs at its first open.
pub const LOG_FORMAT: u32 = 6;
/// The last format without a witness: what an upgrade from format 1 leaves
/// until the witness is written, so that a crash in between is no loss.
const LAST_UNWITNESSED_FORMAT: u32 = 4;
/// The first format with a witness: one missing from a log of this format
/// or later was lost.
const FIRST_WITNESSED_FORMAT: u32 = 5;
const FORMAT_MAGIC: &[u8] = b"usertrail-log";

/// When an append's data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every append returns only after its data is flushed to disk.
    Immediate,
    /// Appends are flushed by sled in the background or by [`EventStore::flush`];
    /// for imports and benchmarks that flush once at their end.
    Batched,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for another process to release the database.
    pub lock_timeout: Duration,
    /// When appends are made durable.
    pub durability: Durability,
    /// When a close moves older records into the archive.
    pub archiving: Archiving,
    /// Where the key that authenticates the caches (snapshots, sync marks,
    /// the index) is kept.
    pub cache_keys: CacheKeys,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            lock_timeout: Duration::from_secs(10),
            durability: Durability::Immediate,
            archiving: Archiving::default(),
            cache_keys: CacheKeys::Process,
        }
    }
}

/// The event log on sled. Cheap to clone: clones share one database.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    events: sled::Tree,
    snapshots: Snapshots,
    /// Index entries not in the blocks yet; its lock orders appends.
    index: Mutex<Pending>,
    /// Authenticates the index blocks and marks: the caches' key, or with
    /// none, the process's (the index is then rebuilt at every open).
    index_key: IndexKey,
    /// Why the index met by the call in flight is not the log's (`index`).
    missed: Mutex<Option<String>>,
    /// The index misses met and rebuilt, with the seq the rebuilt index
    /// reached, for `verify` to name.
    misses: Mutex<Vec<(u64, String)>>,
    durability: Durability,
    /// The older records' database, opened by the first read that needs it.
    archive: archive::Archive,
    /// What the archive holds. Only a seal changes it, and a seal needs the
    /// handle alone (it runs as the last clone closes), so readers take it unlocked.
    sealed: archive::Sealed,
    archiving: Archiving,
    /// Records this handle appended: a bulk writer does not archive on close.
    appended: std::sync::atomic::AtomicU64,
    /// Whether `close` did what a drop would.
    closed: bool,
    /// The witness of the head (`None` for a temporary log); locked after
    /// `index` when both are.
    witness: Option<Mutex<witness::Witness>>,
    /// How the log departs from its witness, as the open found it.
    witness_problem: std::sync::OnceLock<crate::Problem>,
    // The last two, dropped in this order after the databases: a seal's
    // swap of the live database's directory, then the lock.
    /// What a seal leaves to do once the databases are closed.
    swap: Option<archive::Swap>,
    /// Our lock on the log's directory (`None` for a temporary log), held
    /// until the handle is gone.
    _lock: Option<DirLock>,
}

fn engine(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { at, .. } => {
            StoreError::Corrupt(format!("sled found corrupt data at {at:?}"))
        }
        // sled's own text is the io::Error's Debug form, and an error its
        // I/O buffers kept reaches us as a copy holding only that text and
        // the kind: the kind says it in words, unless it is one of the
        // catch-alls (EIO is "uncategorized"), where the copy's text says more.
        sled::Error::Io(source) if source.raw_os_error().is_some() => {
            StoreError::Engine(format!("I/O error: {source}"))
        }
        sled::Error::Io(source) => {
            let kind = source.kind().to_string();
            let said = if matches!(kind.as_str(), "other error" | "uncategorized error") {
                source.to_string()
            } else {
                kind
            };
            StoreError::Engine(format!("I/O error: {said}"))
        }
        other => StoreError::Engine(other.to_string()),
    }
}

/// Why a log is closed to appends once `verify` found `problem`.
fn verify_found(problem: &Problem) -> String {
    format!("verify found a problem at record {}: {}; restore the log", problem.seq, problem.what)
}

fn corrupt_seq(seq: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("record {seq}: {what}"))
}

impl Drop for Inner {
    /// Leaves the index blocks covering the whole log, so that the next
    /// open has nothing to catch up. Best effort: if it fails, that open
    /// rebuilds the entries from the records.
    fn drop(&mut self) {
        if !self.closed {
            // Best effort too: a seal cut short is finished by a later close.
            let _ = self.close();
        }
    }
}

/// Builds the chunks of one append call: consecutive records, closed at
/// about [`keys::CHUNK_BYTES`].
struct Chunker {
    first: u64,
    bytes: Vec<u8>,
    closed: usize,
}

impl Chunker {
    fn new(first: u64) -> Chunker {
        Chunker { first, bytes: Vec::with_capacity(keys::CHUNK_BYTES + 1024), closed: 0 }
    }

    /// Adds record `seq` (the one after the last added).
    fn push(&mut self, seq: u64, record: &[u8], batch: &mut sled::Batch) {
        if self.bytes.is_empty() {
            self.first = seq;
        }
        keys::push_record(&mut self.bytes, record);
        if self.bytes.len() >= keys::CHUNK_BYTES {
            self.close(batch);
        }
    }

    fn close(&mut self, batch: &mut sled::Batch) {
        if !self.bytes.is_empty() {
            batch.insert(&keys::chunk_key(self.first)[..], keys::pack(self.take()));
            self.closed += 1;
        }
    }

    /// The one chunk of an append call that filled only one.
    fn single(&mut self) -> Option<([u8; 9], Vec<u8>)> {
        (self.closed == 0 && !self.bytes.is_empty())
            .then(|| (keys::chunk_key(self.first), keys::pack(self.take())))
    }

    /// The records gathered, leaving room for the next chunk's.
    fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.bytes, Vec::with_capacity(keys::CHUNK_BYTES + 1024))
    }
}

impl SledStore {
    /// Whether this handle has opened the archive (tests of what a command reads).
    #[doc(hidden)]
    pub fn archive_is_open(&self) -> bool {
        self.inner.archive.is_open()
    }

    /// Up to which seq the records are in the archive (0: none are), for
    /// tests of a seal.
    #[doc(hidden)]
    pub fn archived_upto(&self) -> u64 {
        self.inner.sealed.upto
    }

    /// The blocking form of [`EventStore::append_all`], for callers off the runtime.
    pub fn append_all_blocking(&self, appends: &[Append]) -> AppendResult<Vec<Appended>> {
        self.inner.trusting(|s| s.append_all(appends))
    }

    /// The blocking form of [`EventStore::read_log`].
    pub fn read_log_blocking(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.read_log(from, to, limit)
    }

    /// At most `limit` records with `from <= seq <= to`, in order, as
    /// stored: what each hash covers, for an export that others check
    /// without usertrail. A record whose hash does not match is returned
    /// as it is ([`Sealed::hash_is_intact`]).
    pub async fn read_sealed(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Sealed>, StoreError> {
        self.blocking(move |s| s.read_sealed(from, to, limit)).await
    }

    /// Appends records sealed elsewhere (a restore from an export) byte
    /// for byte, so they keep their hashes: all or none, each the log's
    /// next record, else [`AppendRejection::NotNext`]. Returns the new
    /// head's seq.
    pub async fn append_sealed(&self, records: Vec<Sealed>) -> AppendResult<u64> {
        self.blocking(move |s| s.trusting(|s| s.append_sealed(&records))).await
    }

    /// The stored bytes of record `seq`, for tests that tamper with them.
    #[doc(hidden)]
    pub fn raw_record(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut found = None;
        self.inner.scan(seq..=seq, |_, bytes| {
            found = Some(bytes.to_vec());
            Ok(false)
        })?;
        Ok(found)
    }

    /// The stored bytes of the records in `seqs`, for raw-sled references in
    /// benchmarks.
    #[doc(hidden)]
    pub fn raw_records(&self, seqs: RangeInclusive<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut all = Vec::new();
        self.inner.scan(seqs, |_, bytes| {
            all.push(bytes.to_vec());
            Ok(true)
        })?;
        Ok(all)
    }

    /// Replaces (or, with `None`, removes) the stored bytes of record `seq`
    /// in its chunk, behind the store's back, as a disk fault or an attacker
    /// would: for tests of `verify` and of readers.
    #[doc(hidden)]
    pub fn raw_set_record(&self, seq: u64, bytes: Option<&[u8]>) -> Result<(), StoreError> {
        let first = self.inner.chunk_start(seq)?;
        let key = keys::chunk_key(first);
        let tree = self.inner.chunk_tree(first)?;
        let stored = tree.get(key).map_err(engine)?.unwrap_or_default();
        let chunk = keys::Chunk::of(stored).map_err(|e| corrupt_seq(first, e))?;
        let mut rebuilt = Vec::with_capacity(chunk.len());
        for (i, record) in chunk.records().enumerate() {
            let record = record.map_err(|e| corrupt_seq(first + i as u64, e))?;
            match (first + i as u64 == seq, bytes) {
                (false, _) => keys::push_record(&mut rebuilt, record),
                (true, Some(new)) => keys::push_record(&mut rebuilt, new),
                (true, None) => {}
            }
        }
        tree.insert(key, rebuilt).map_err(engine)?;
        tree.flush().map_err(engine)?;
        Ok(())
    }

    /// Sets an event id index entry behind the store's back, sealed under
    /// the store's key as a bug (or a key leaked) would (tests of `verify`).
    #[doc(hidden)]
    pub fn raw_index_event(&self, id: uuid::Uuid, seq: u64) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.write_index(&mut inner.lock())?;
        let blocks = inner.event_blocks(&inner.events);
        let found = blocks.block_at(id.as_bytes()).map_err(|e| inner.block_error(e))?;
        let (old_key, block) = match found {
            Some((k, b)) => (Some(k), b.to_vec()),
            None => (None, Vec::new()),
        };
        let mut entries: Vec<[u8; 24]> = block
            .chunks_exact(24)
            .filter(|e| e[..16] != id.as_bytes()[..])
            .filter_map(|e| e.try_into().ok())
            .collect();
        entries.push(keys::event_entry(&id, seq));
        entries.sort();
        let mut batch = sled::Batch::default();
        if let Some(k) = old_key {
            batch.remove(k);
        }
        blocks.pack(&entries.concat(), &mut batch);
        inner.events.apply_batch(batch).map_err(engine)?;
        inner.events.flush().map_err(engine)?;
        Ok(())
    }

    /// Removes a stream's index blocks behind the store's back (tests of `verify`).
    #[doc(hidden)]
    pub fn raw_remove_stream_index(&self, stream: &str) -> Result<(), StoreError> {
        self.inner.write_index(&mut self.inner.lock())?;
        for entry in self.inner.events.scan_prefix(keys::stream_prefix(stream)) {
            let (key, _) = entry.map_err(engine)?;
            self.inner.events.remove(key).map_err(engine)?;
        }
        self.inner.events.flush().map_err(engine)?;
        Ok(())
    }

    /// The tree of records and indexes, for tests that tamper with index entries.
    #[doc(hidden)]
    pub fn raw_tree(&self) -> sled::Tree {
        self.inner.events.clone()
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl Inner {
    fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.publish_snapshot(self.snapshots.stage(name, snapshot)?)
    }

    fn publish_snapshot(&self, staged: StagedSnapshot) -> Result<(), StoreError> {
        // A snapshot file must never outlive the records it reflects: in the
        // batched mode they may not be on disk yet.
        if self.durability == Durability::Batched && self.snapshots.on_disk() {
            self.flush_db()?;
        }
        // Bound to the record it was folded to, which must be in the log.
        let hash = self.hash_at(staged.seq())?.ok_or_else(|| {
            StoreError::Task(format!("a snapshot at record {} is past the log's head", staged.seq()))
        })?;
        self.snapshots.publish(staged, hash)
    }

    fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        self.snapshots.load(name, max_seq, |seq| self.hash_at(seq))
    }

    fn check_snapshot(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        self.snapshots.check(name, seq, |seq| self.hash_at(seq))
    }

    fn remove_snapshots(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        self.snapshots.remove(name, seqs)
    }
}

fn malformed_runs(stream: &str) -> StoreError {
    StoreError::Corrupt(format!("stream index of '{stream}' is malformed"))
}

/// The format mark: our magic, then the format number.
fn mark(format: u32) -> Vec<u8> {
    let mut mark = FORMAT_MAGIC.to_vec();
    mark.extend_from_slice(&format.to_be_bytes());
    mark
}

#[async_trait]
impl EventStore for SledStore {
    async fn append(&self, append: Append) -> AppendResult<Appended> {
        let outcome = self.append_all(vec![append]).await?;
        Ok(outcome.map(|mut v| v.remove(0)))
    }

    async fn append_all(&self, appends: Vec<Append>) -> AppendResult<Vec<Appended>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.trusting(|s| s.append_all(&appends)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn begin(&self) -> Result<Transaction, StoreError> {
        // The index a transaction will look ids up in, checked before it
        // starts: a miss met once it runs cannot run it again.
        let began =
            self.blocking(|s| s.trusting(|s| s.newest_indexed_id().and_then(|_| s.tip_seq()))).await?;
        let inner = Arc::clone(&self.inner);
        Ok(Transaction::spawn(move |appends, commit| inner.append_stream(began, appends, commit)))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.flush()).await
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.blocking(|s| s.head()).await
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.stream_version(&stream)).await
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Record>, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.trusting(|s| s.read_stream(&stream, from_version))).await
    }

    async fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.trusting(|s| s.read_stream_until(&stream, from_version, max_seq))).await
    }

    async fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.blocking(move |s| s.read_log(from, to, limit)).await
    }

    async fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        self.blocking(move |s| s.seq_at(time)).await
    }

    fn damage(&self) -> Option<String> {
        self.inner.lock().damaged.clone()
    }

    async fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.save_snapshot(&name, snapshot)).await
    }

    async fn stage_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<StagedSnapshot, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.snapshots.stage(&name, snapshot)).await
    }

    async fn publish_snapshot(&self, staged: StagedSnapshot) -> Result<(), StoreError> {
        self.blocking(move |s| s.publish_snapshot(staged)).await
    }

    async fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.load_snapshot(&name, max_seq)).await
    }

    async fn remove_snapshots(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.remove_snapshots(&name, seqs)).await
    }

    async fn snapshot_names(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.blocking(|s| s.snapshots.all()).await
    }

    async fn check_snapshot(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.check_snapshot(&name, seq)).await
    }

    fn index_misses(&self) -> Vec<(u64, String)> {
        self.inner.index_misses()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.blocking(|s| s.verify()).await
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{append_to, event, meta};
    use super::*;
    use crate::record::GENESIS_HASH;
    use crate::ExpectedVersion;
    use std::collections::HashMap;

    #[test]
    fn a_format_1_log_is_upgraded_in_place_with_its_records_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut originals = Vec::new();
        {
            // The format 1 layout: records keyed by seq in `log`, the mark in `index`.
            let db = sled::Config::new().path(&path).open().unwrap();
            let log = db.open_tree("log").unwrap();
            let index = db.open_tree("index").unwrap();
            index.insert(keys::META_FORMAT, mark(1)).unwrap();
            let (mut prev, mut versions) = (GENESIS_HASH, HashMap::new());
            for seq in 1..=25u64 {
                let stream = if seq % 3 == 0 { "env/a" } else { "tenant" };
                let version = versions.entry(stream).and_modify(|v| *v += 1).or_insert(1u64);
                let (hash, bytes) =
                    Record::seal(seq, stream, *version, &event(seq), &meta(seq), prev).unwrap();
                log.insert(seq.to_be_bytes(), bytes.clone()).unwrap();
                originals.push(bytes);
                prev = hash;
            }
            db.flush().unwrap();
        }
        let store = SledStore::open(&path, OpenOptions::default()).unwrap();
        assert!(!store.inner.has_tree(b"log") && !store.inner.has_tree(b"index"), "old trees dropped");
        let report = store.inner.verify().unwrap();
        assert_eq!((report.records, report.problem), (25, None));
        for (seq, bytes) in (1..).zip(&originals) {
            assert_eq!(store.raw_record(seq).unwrap().as_ref(), Some(bytes), "record {seq} kept as it was");
        }
        assert_eq!(store.inner.stream_version("env/a").unwrap(), 8);
        assert_eq!(store.inner.stream_version("tenant").unwrap(), 17);
        let env: Vec<u64> = store.inner.read_stream("env/a", 3).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(env, vec![9, 12, 15, 18, 21, 24]);
        // It goes on as a format 3 log, and a retry of an old event is still known.
        let next = append_to("env/a", ExpectedVersion::Exactly(8), vec![event(26)], 26);
        let landed = store.append_all_blocking(&[next]).unwrap().unwrap();
        assert_eq!((landed[0].first_seq, landed[0].stream_version), (26, 9));
        let old = append_to("tenant", ExpectedVersion::Any, vec![event(4)], 27);
        assert!(store.append_all_blocking(&[old]).unwrap().unwrap()[0].was_retry);
        drop(store);
        let reopened = SledStore::open(&path, OpenOptions::default()).unwrap();
        assert_eq!(reopened.inner.verify().unwrap().records, 26);
    }

    #[test]
    fn a_log_damaged_past_its_index_stays_closed_to_appends_after_a_flush() {
        let store = SledStore::temporary().unwrap();
        let append = |n: u64| Append {
            stream: "tenant".into(),
            expected: ExpectedVersion::Any,
            events: vec![event(n)],
            meta: meta(n),
        };
        store.append_all_blocking(&(1..=10).map(append).collect::<Vec<_>>()).unwrap().unwrap();
        store.raw_set_record(10, Some(b"not a record")).unwrap();
        // As an open finds it: the blocks cover nothing, record 10 is unreadable.
        *store.inner.lock() = Pending::default();
        store.inner.catch_up(true).unwrap();
        let refused = |store: &SledStore| match store.append_all_blocking(&[append(11)]) {
            Err(StoreError::Corrupt(why)) => why.contains("cannot be appended to"),
            _ => false,
        };
        assert!(refused(&store));
        // Writing the index of records 1..=9 does not make the damage go away.
        store.inner.flush().unwrap();
        assert!(refused(&store), "a flush reopened a damaged log to appends");
    }

    #[test]
    fn index_entries_lost_with_a_crash_are_rebuilt_from_the_records() {
        let store = SledStore::temporary().unwrap();
        let append = |n: u64, stream: &str| Append {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events: vec![event(n)],
            meta: meta(n),
        };
        let first: Vec<Append> =
            (1..=300).map(|n| append(n, if n % 2 == 0 { "env/a" } else { "tenant" })).collect();
        store.append_all_blocking(&first).unwrap().unwrap();
        store.inner.flush().unwrap();
        let more: Vec<Append> = (301..=400).map(|n| append(n, "env/a")).collect();
        store.append_all_blocking(&more).unwrap().unwrap();
        // A crash loses what was only in memory: the entries of 301..=400;
        // an open finds the blocks' mark at 300 and catches up from there.
        *store.inner.lock() = Pending::default();
        store.inner.catch_up(true).unwrap();
        assert_eq!(store.inner.lock().indexed, 300, "the blocks' mark");
        assert_eq!(store.inner.stream_version("env/a").unwrap(), 250);
        let seqs: Vec<u64> = store.inner.read_stream("env/a", 149).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [298, 300].into_iter().chain(301..=400).collect::<Vec<_>>());
        // A retry of an event past the blocks is still a retry, not a duplicate.
        assert!(store.append_all_blocking(&[append(350, "env/a")]).unwrap().unwrap()[0].was_retry);
        assert_eq!(store.inner.verify().unwrap(), VerifyReport { records: 400, problem: None });
    }
}
