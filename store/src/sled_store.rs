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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod archive;
#[cfg(test)]
mod fixtures;
mod index;
mod pending;
mod read;
mod staged;
mod upgrade;
mod verify;
mod witness;

pub use archive::Archiving;
use pending::Pending;
pub use pending::INDEX_EVERY;

use crate::blocks::IndexKey;
use crate::cache_key::{self, CacheKeys};
use crate::keys;
use crate::record::{Hash, Record, Sealed};
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

/// The lock file of earlier versions, which locked a file in the directory
/// (one that anybody could remove while it was held): still ours if found.
pub const LOCK_FILE: &str = "usertrail.lock";

/// Our lock on a log's directory, held while a log is open. It is the
/// directory itself that is locked: a seal replaces the live database's
/// directory, so sled's lock on that database's files cannot keep a second
/// opener out, and a lock file could be removed while held.
pub struct DirLock {
    _held: std::fs::File,
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

/// A non-empty directory without a witness or sled's own files in any of
/// our places: never ours to write into. (An earlier version's lock file
/// alone is left by an open that failed before sled's start; a witness
/// without sled's files is a log that lost them, which the open names.)
fn is_foreign_directory(path: &Path) -> bool {
    let Ok(mut entries) = std::fs::read_dir(path) else {
        return false;
    };
    let non_empty = entries.any(|e| e.is_ok_and(|e| e.file_name() != LOCK_FILE));
    non_empty && !path.join(witness::FILE).is_file() && !archive::holds_a_database(path)
}

/// Why sled's files that hold no log are refused.
const NO_LOG: &str = "it holds sled's files but no usertrail log (an `init` cut short leaves this too: remove the directory and run init again)";

/// Whether the sled database in `dir` holds a log: a format mark, where
/// format 1 kept it (`index`) or where later ones do (`events`).
fn holds_a_log(dir: &Path, path: &Path, timeout: Duration, started: Instant) -> Result<bool, StoreError> {
    let db = open_sled(dir, path, timeout, started)?;
    let names = db.tree_names();
    for tree in ["index", "events"] {
        if names.iter().any(|n| &n[..] == tree.as_bytes())
            && db.open_tree(tree).and_then(|t| t.contains_key(keys::META_FORMAT)).map_err(engine)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Takes our lock on the log's directory (created, private, if it is not
/// there), waiting up to `timeout` for another process to release it.
pub fn lock_dir(path: &Path, timeout: Duration) -> Result<DirLock, StoreError> {
    let started = Instant::now();
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io)?;
    let dir = std::fs::File::open(path).map_err(io)?;
    loop {
        match fs2::FileExt::try_lock_exclusive(&dir) {
            Ok(()) => return Ok(DirLock { _held: dir }),
            Err(e) if e.kind() == fs2::lock_contended_error().kind() && started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(25))
            }
            Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
                return Err(StoreError::Locked { path: path.to_path_buf(), waited: started.elapsed() })
            }
            Err(source) => return Err(io(source)),
        }
    }
}

/// Refuses a log whose directory holds a symbolic link anywhere (usertrail
/// writes only files of its own, never through a link put in their place),
/// and with `private`, makes what it holds private (the directory 0700, its
/// files 0600): the log holds personal data.
fn walk_own(root: &Path, private: bool) -> Result<(), StoreError> {
    let io = |path: &Path, source| StoreError::Io { path: path.to_path_buf(), source };
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
            if meta.file_type().is_symlink() {
                return Err(StoreError::Symlink { path });
            }
            // A FIFO, socket or device would make an open wait or read forever.
            if !meta.is_file() && !meta.is_dir() {
                return Err(StoreError::NotOurs {
                    path,
                    reason: "it is neither a file nor a directory".into(),
                });
            }
            if private {
                only_owner(&path, &meta, if meta.is_dir() { 0o700 } else { 0o600 })
                    .map_err(|e| io(&path, e))?;
            }
            if meta.is_dir() {
                dirs.push(path);
            }
        }
    }
    let meta = std::fs::metadata(root).map_err(|e| io(root, e))?;
    match private {
        true => only_owner(root, &meta, 0o700).map_err(|e| io(root, e)),
        false => Ok(()),
    }
}

/// Takes group and other permissions away from `path`, if it has any.
fn only_owner(path: &Path, meta: &std::fs::Metadata, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode(meta.permissions().mode() & mode),
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta, mode);
    Ok(())
}

/// Opens the sled database in `dir` of the log at `path`. sled's own lock
/// may outlive a handle of this process for a moment, so a refusal is retried.
fn open_sled(dir: &Path, path: &Path, timeout: Duration, started: Instant) -> Result<sled::Db, StoreError> {
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= timeout {
                    return Err(StoreError::Locked { path: path.to_path_buf(), waited: started.elapsed() });
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(sled::Error::Io(source)) => return Err(StoreError::Io { path: path.to_path_buf(), source }),
            Err(sled::Error::Corruption { .. }) if remove_unfinished_snapshots(dir) => {}
            Err(sled::Error::Corruption { .. }) => {
                return Err(StoreError::Corrupt(format!(
                    "{} cannot be opened: its storage files are damaged or not sled's",
                    path.display()
                )))
            }
            // A log's databases are all made by this sled with its defaults:
            // a configuration sled calls unsupported is a damaged one.
            Err(sled::Error::Unsupported(why)) => {
                return Err(StoreError::Corrupt(format!(
                    "{} cannot be opened: its storage configuration is damaged ({why})",
                    path.display()
                )))
            }
            Err(e) => return Err(engine(e)),
        }
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
    /// Opens (or creates) the log at `path`, waiting up to the lock timeout
    /// for another process to release it.
    pub fn open(path: impl AsRef<Path>, options: OpenOptions) -> Result<SledStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if path.is_file() {
            return Err(StoreError::NotOurs {
                path,
                reason: "it is a file; a database is a directory".into(),
            });
        }
        if is_foreign_directory(&path) {
            return Err(StoreError::NotOurs {
                path,
                reason:
                    "it is a directory that holds other files; point --db at a new or a usertrail directory"
                        .into(),
            });
        }
        let started = Instant::now();
        let lock = lock_dir(&path, options.lock_timeout)?;
        walk_own(&path, false)?;
        let io = |source| StoreError::Io { path: path.clone(), source };
        archive::finish_swap(&path).map_err(io)?;
        archive::settle(&path, || holds_a_log(&path, &path, options.lock_timeout, started))?;
        let witness = witness::Witness::open(&path).map_err(io)?;
        let live = archive::live_dir(&path);
        let sled_files = archive::has_sled_files(&live);
        let db = open_sled(&live, &path, options.lock_timeout, started)?;
        // The key is found once the log is known to be ours: its id is a
        // file in the database's directory.
        let snapshots = Snapshots::beside(&path, Err("not read yet".into()));
        let archive = archive::Archive::new(Some(path.clone()), options.lock_timeout);
        let witness = Some((witness.0, witness.1, sled_files));
        let store = SledStore::over(db, path, options, snapshots, archive, Some(lock), witness)?;
        // Only once the log is known to be ours: another program's files keep their modes.
        walk_own(store.path(), true)?;
        Ok(store)
    }

    /// Whether `path` holds a log's database, in any layout an open reads.
    pub fn exists(path: &Path) -> bool {
        archive::holds_a_database(path)
    }

    /// Opens a throwaway log that lives in memory only (tests, whatif).
    pub fn temporary() -> Result<SledStore, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(engine)?;
        let snapshots = Snapshots::in_memory(cache_key::process_key());
        let options = OpenOptions { durability: Durability::Batched, ..OpenOptions::default() };
        let archive = archive::Archive::new(None, options.lock_timeout);
        SledStore::over(db, PathBuf::from("(temporary)"), options, snapshots, archive, None, None)
    }

    fn over(
        db: sled::Db,
        path: PathBuf,
        options: OpenOptions,
        snapshots: Snapshots,
        archive: archive::Archive,
        lock: Option<DirLock>,
        witness: Option<(witness::Witness, witness::Found, bool)>,
    ) -> Result<SledStore, StoreError> {
        let (witness, found) = witness.map(|(w, found, sled_files)| (w, (found, sled_files))).unzip();
        let events = db.open_tree("events").map_err(engine)?;
        let mut inner = Inner {
            events,
            snapshots,
            db,
            path,
            index: Mutex::new(Pending::default()),
            index_key: IndexKey([0; 32]),
            missed: Mutex::default(),
            misses: Mutex::default(),
            durability: options.durability,
            archive,
            sealed: archive::Sealed::default(),
            archiving: options.archiving,
            appended: Default::default(),
            // Nothing to do at drop until the log is known to be ours
            // and of our format: a close may rewrite the live database.
            closed: true,
            witness: witness.map(Mutex::new),
            witness_problem: Default::default(),
            swap: None,
            _lock: lock,
        };
        let format = inner.check_format()?;
        if format.is_none() && matches!(found, Some((witness::Found::Missing, true))) {
            return Err(inner.not_ours(NO_LOG));
        }
        // The key is found once the log is known to be ours: its id is a
        // file in the database's directory.
        let (key, new) = match &options.cache_keys {
            CacheKeys::Dir(dir) if inner._lock.is_some() => cache_key::database_key(&inner.path, dir)
                .map_err(|source| StoreError::Io { path: inner.path.clone(), source })?,
            _ => (cache_key::process_key(), false),
        };
        inner.index_key =
            IndexKey(key.clone().or_else(|_| cache_key::process_key()).map_err(StoreError::Engine)?);
        inner.snapshots.key = key;
        // Under a new key no cache written before can be checked again.
        if new {
            inner.snapshots.clear()?;
        }
        let checked = match archive::Sealed::read(&inner.events, &inner.index_key)? {
            archive::Mark::Checked(sealed) => {
                inner.sealed = sealed;
                true
            }
            archive::Mark::Unchecked(upto) => {
                inner.sealed.upto = upto;
                false
            }
        };
        inner.check_archive_mark()?;
        if let Some(sealed) = inner.catch_up(checked)? {
            inner.sealed = sealed;
        }
        inner.attest(format, found.map(|(found, _)| found))?;
        inner.closed = false;
        Ok(SledStore { inner: Arc::new(inner) })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the log, reporting what a drop would swallow: writing the
    /// index, and moving older records into the archive as the options say
    /// (the new live database swapped in once the databases are closed,
    /// still under the lock). Returns how many records moved. Fails if
    /// another clone is still open.
    pub fn close(self) -> Result<u64, StoreError> {
        let mut inner = Arc::try_unwrap(self.inner)
            .map_err(|_| StoreError::Engine("the log is still open elsewhere in this process".into()))?;
        let moved = inner.close()?;
        let (swap, lock, path) = (inner.swap.take(), inner._lock.take(), inner.path.clone());
        drop(inner);
        let swapped = swap.map_or(Ok(()), archive::Swap::finish);
        drop(lock);
        swapped.map_err(|source| StoreError::Io { path, source })?;
        Ok(moved)
    }

    /// [`SledStore::close`] when this is the last handle; otherwise drops
    /// this one and leaves the close to the last.
    pub fn close_if_last(self) -> Result<u64, StoreError> {
        match Arc::strong_count(&self.inner) {
            1 => self.close(),
            _ => Ok(0),
        }
    }

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
    /// The log's format (`None`: a new database), once it is one this code
    /// reads as it is: a format 1 log is upgraded first; anything else must
    /// carry the mark. The new mark is written by [`Inner::attest`].
    fn check_format(&self) -> Result<Option<u32>, StoreError> {
        match self.events.get(keys::META_FORMAT).map_err(engine)? {
            Some(v) => {
                let found = self.parse_mark(&v)?;
                if found > LOG_FORMAT {
                    return Err(StoreError::NewerFormat {
                        path: self.path.clone(),
                        found,
                        supported: LOG_FORMAT,
                    });
                }
                // An upgrade cut short after its mark landed leaves the old trees.
                self.drop_format_1_trees()?;
                Ok(Some(found))
            }
            None if self.has_tree(b"index") => {
                self.upgrade_format_1()?;
                Ok(Some(LAST_UNWITNESSED_FORMAT))
            }
            None => {
                let foreign_tree = self
                    .db
                    .tree_names()
                    .iter()
                    .any(|name| !matches!(&name[..], b"__sled__default" | b"events" | b"snapshots"));
                let legacy_snapshots = self.has_tree(b"snapshots")
                    && !self.db.open_tree("snapshots").map_err(engine)?.is_empty();
                if foreign_tree || legacy_snapshots || !self.db.is_empty() || !self.events.is_empty() {
                    return Err(self.not_ours("it holds data but no usertrail format mark"));
                }
                Ok(None)
            }
        }
    }

    /// Checks the log against its witness: a log that reaches less far, or
    /// holds another record at the witness's seq, has lost records, and a
    /// finding that `verify` recorded stands. Either closes the log to
    /// appends (it can still be read and verified). A new log, or one from
    /// before the witness, gets its witness here, then the format mark that
    /// says it has one.
    /// `found`: what the witness's place held.
    fn attest(&self, format: Option<u32>, found: Option<witness::Found>) -> Result<(), StoreError> {
        let mut pending = self.lock();
        if let (Some(witness), Some(found)) = (&self.witness, found) {
            let last = self.last_seq()?;
            let cannot_tell = |what| Problem {
                seq: last,
                what: format!("the witness file is {what}, so whether records were lost cannot be told"),
            };
            let problem = match found {
                witness::Found::Damaged => Some(cannot_tell("damaged")),
                witness::Found::Missing if format >= Some(FIRST_WITNESSED_FORMAT) => {
                    Some(cannot_tell("missing"))
                }
                witness::Found::Missing => None,
                witness::Found::Holds(held) => match held.finding {
                    Some(finding) => {
                        pending.damaged = Some(verify_found(&finding));
                        let _ = self.witness_problem.set(finding);
                        return Ok(());
                    }
                    None => self.departs(&held, last),
                },
            };
            if let Some(problem) = problem {
                pending.damaged = Some(format!("{}; see usertrail verify", problem.what));
                let _ = self.witness_problem.set(problem);
                return Ok(());
            }
            if format >= Some(LOG_FORMAT) || pending.damaged.is_some() {
                return Ok(());
            }
            // The witness never leads what is durable: records a crash left
            // only in the page cache are flushed before it names them.
            self.db.flush().map_err(engine)?;
            let tip = self.tip()?;
            let mut witness = witness.lock().unwrap_or_else(|p| p.into_inner());
            witness.attest(tip.seq, tip.hash).map_err(|source| self.io(source))?;
        } else if format >= Some(LOG_FORMAT) {
            return Ok(());
        }
        self.events.insert(keys::META_FORMAT, mark(LOG_FORMAT)).map_err(engine)?;
        self.db.flush().map_err(engine)?;
        Ok(())
    }

    /// How the log, which ends at `last`, departs from what its witness
    /// says was committed, if it does.
    fn departs(&self, held: &witness::Witnessed, last: u64) -> Option<Problem> {
        let (seq, hash) = (held.seq, witness::hex(&held.hash));
        if seq > last {
            let from = last + 1;
            let missing =
                if from == seq { format!("record {seq} is") } else { format!("records {from}-{seq} are") };
            let what = format!(
                "the log ends at record {last} but record {seq} was committed (hash {hash}): {missing} missing"
            );
            return Some(Problem { seq: from, what });
        }
        if seq == 0 {
            return None;
        }
        let mut found = None;
        let read = self.scan(seq..=seq, |_, bytes| {
            found = Some(Record::peek(bytes).map(|r| r.hash).map_err(|e| e.to_string()));
            Ok(false)
        });
        let what = match (read, found) {
            (_, Some(Ok(stored))) if stored == held.hash => return None,
            (_, Some(Ok(stored))) => {
                format!("the record committed here had hash {hash}; this one has {}", witness::hex(&stored))
            }
            (_, Some(Err(e))) => format!("the last committed record is unreadable: {e}"),
            (Err(e), None) => format!("the last committed record is unreadable: {e}"),
            (Ok(()), None) => format!("the last committed record (hash {hash}) is missing"),
        };
        Some(Problem { seq, what })
    }

    /// Records that the log is whole up to its tip, once that is durable.
    fn witness_tip(&self, seq: u64, hash: Hash) -> Result<(), StoreError> {
        match &self.witness {
            Some(witness) => witness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .attest(seq, hash)
                .map_err(|source| self.io(source)),
            None => Ok(()),
        }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }

    fn parse_mark(&self, v: &[u8]) -> Result<u32, StoreError> {
        let Some(version) = v.strip_prefix(FORMAT_MAGIC) else {
            return Err(self.not_ours("its format mark is not usertrail's"));
        };
        version.try_into().map(u32::from_be_bytes).map_err(|_| self.not_ours("its format mark is malformed"))
    }

    fn has_tree(&self, name: &[u8]) -> bool {
        self.db.tree_names().iter().any(|n| &n[..] == name)
    }

    fn not_ours(&self, reason: &str) -> StoreError {
        StoreError::NotOurs { path: self.path.clone(), reason: reason.into() }
    }

    /// What a close does: the index written, older records archived.
    fn close(&mut self) -> Result<u64, StoreError> {
        self.closed = true;
        if self.durability == Durability::Batched && *self.appended.get_mut() > 0 {
            self.flush()?;
        }
        let mut pending = std::mem::take(self.pending_mut());
        let written = self.write_index(&mut pending);
        *self.pending_mut() = pending;
        written?;
        self.archive_on_close()
    }

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

/// Works around sled 0.34 issues #1527 and #1533: a process killed while
/// writing a page-cache snapshot leaves `snap.<lsn>.generating`, which sled
/// then reads as the newest snapshot and reports as corruption. The file is
/// unfinished by construction (sled renames it to `snap.<lsn>` only once it
/// is whole and synced), and sled rebuilds from its log without it. Called
/// only after sled, holding the lock, refused to open; returns whether it
/// removed anything, so the open is retried once per file at most.
fn remove_unfinished_snapshots(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else { return false };
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            removed |= std::fs::remove_file(entry.path()).is_ok();
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::fixtures::{append_to, event, meta};
    use super::*;
    use crate::record::GENESIS_HASH;
    use crate::{ExpectedVersion, NewEvent};
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

    /// Records 1..=n of one stream, sealed and chained, as stored bytes.
    fn sealed(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let (hash, bytes) = Record::seal(seq, "tenant", seq, &event(seq), &meta(seq), prev).unwrap();
                prev = hash;
                bytes
            })
            .collect()
    }

    #[test]
    fn a_format_2_log_of_plain_chunks_reads_as_it_is_and_goes_on_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let originals = sealed(60);
        {
            let db = sled::Config::new().path(&path).open().unwrap();
            let events = db.open_tree("events").unwrap();
            events.insert(keys::META_FORMAT, mark(2)).unwrap();
            for (first, records) in (1u64..).step_by(20).zip(originals.chunks(20)) {
                let mut chunk = Vec::new();
                records.iter().for_each(|r| keys::push_record(&mut chunk, r));
                events.insert(keys::chunk_key(first), chunk).unwrap();
            }
            db.flush().unwrap();
        }
        let store = SledStore::open(&path, OpenOptions::default()).unwrap();
        let format = store.inner.events.get(keys::META_FORMAT).unwrap().unwrap();
        assert_eq!(store.inner.parse_mark(&format).unwrap(), LOG_FORMAT, "older versions are kept out");
        for (seq, bytes) in (1..).zip(&originals) {
            assert_eq!(store.raw_record(seq).unwrap().as_ref(), Some(bytes), "record {seq}");
        }
        let events: Vec<NewEvent> = (61..=160).map(event).collect();
        let append = append_to("tenant", ExpectedVersion::Exactly(60), events, 61);
        store.append_all_blocking(&[append]).unwrap().unwrap();
        let new_chunk = store.inner.events.get(keys::chunk_key(61)).unwrap().unwrap();
        assert!(matches!(keys::unpack(&new_chunk), Ok(std::borrow::Cow::Owned(_))), "stored compressed");
        let seqs: Vec<u64> = store.inner.read_stream("tenant", 55).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (55..=160).collect::<Vec<_>>());
        assert_eq!(store.inner.verify().unwrap(), VerifyReport { records: 160, problem: None });
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
