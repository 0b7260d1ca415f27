//! Opening a log: the directory (refused if foreign, locked, made private,
//! no symbolic links), sled's database in it, the format mark, and the
//! log checked against its witness; and closing it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    archive, engine, mark, verify_found, witness, Durability, Inner, OpenOptions, Pending, SledStore,
};
use super::{FIRST_WITNESSED_FORMAT, FORMAT_MAGIC, LAST_UNWITNESSED_FORMAT, LOG_FORMAT};
use crate::blocks::IndexKey;
use crate::cache_key::{self, CacheKeys};
use crate::keys;
use crate::record::{Hash, Record};
use crate::snapshots::Snapshots;
use crate::{Problem, StoreError};

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
pub(super) const NO_LOG: &str = "it holds sled's files but no usertrail log (an `init` cut short leaves this too: remove the directory and run init again)";

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

/// sled's page cache, for every database of a log. Its default, 1 GiB,
/// filled as a sync pass wrote: a first pass over 30k users and 40
/// environments peaked at 537 MiB of RSS with it and 276 MiB with this, no
/// slower; the bench's replays and views moved less than between two runs
/// (BENCHMARKS.md, issue 29).
pub(super) const SLED_CACHE_BYTES: u64 = 64 << 20;

/// Opens the sled database in `dir` of the log at `path`. sled's own lock
/// may outlive a handle of this process for a moment, so a refusal is retried.
pub(super) fn open_sled(
    dir: &Path,
    path: &Path,
    timeout: Duration,
    started: Instant,
) -> Result<sled::Db, StoreError> {
    loop {
        match sled::Config::new().path(dir).cache_capacity(SLED_CACHE_BYTES).open() {
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
    pub(super) fn witness_tip(&self, seq: u64, hash: Hash) -> Result<(), StoreError> {
        match &self.witness {
            Some(witness) => witness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .attest(seq, hash)
                .map_err(|source| self.io(source)),
            None => Ok(()),
        }
    }

    pub(super) fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }

    pub(super) fn parse_mark(&self, v: &[u8]) -> Result<u32, StoreError> {
        let Some(version) = v.strip_prefix(FORMAT_MAGIC) else {
            return Err(self.not_ours("its format mark is not usertrail's"));
        };
        version.try_into().map(u32::from_be_bytes).map_err(|_| self.not_ours("its format mark is malformed"))
    }

    pub(super) fn has_tree(&self, name: &[u8]) -> bool {
        self.db.tree_names().iter().any(|n| &n[..] == name)
    }

    pub(super) fn not_ours(&self, reason: &str) -> StoreError {
        StoreError::NotOurs { path: self.path.clone(), reason: reason.into() }
    }

    /// What a close does: the index written, older records archived.
    pub(super) fn close(&mut self) -> Result<u64, StoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::GENESIS_HASH;
    use crate::sled_store::fixtures::{append_to, event, meta};
    use crate::{ExpectedVersion, NewEvent, VerifyReport};

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
}
