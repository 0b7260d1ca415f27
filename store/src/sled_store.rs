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
//!
//! # Layout
//!
//! This file holds [`SledStore`], `Inner` (one open log), [`OpenOptions`],
//! the format mark and the errors its modules share.
//! - `open`: the directory (refused if foreign, locked, private, no links),
//!   sled's database, the format mark, the witness check; and closing.
//! - `pending`: index entries not yet in blocks, whose lock orders appends;
//!   event ids looked up (retries); `flush`.
//! - `index`: the authenticated index blocks and marks, caught up or rebuilt.
//! - `read`: the tip, stream reads through the index, chunks in seq order,
//!   `seq_at`.
//! - `staged`: an append call or transaction, checked and sealed into one
//!   batch; the chunks it builds.
//! - `event_store`: the async `EventStore` and its blocking forms;
//!   snapshots bound to their record.
//! - `archive`: older records in a database of their own; the seal.
//! - `witness`: the head's seq and hash in a file beside the log.
//! - `verify`: the chain and every index entry checked; `upgrade`: format 1
//!   rewritten.
//! - `raw`: hooks for tests that read or tamper behind the store's back.
//! - `fixtures`: events and appends for the unit tests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod archive;
mod event_store;
#[cfg(test)]
mod fixtures;
mod index;
mod open;
mod pending;
mod raw;
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
use crate::snapshots::Snapshots;
use crate::{Problem, StoreError};

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
    /// Appends are flushed by sled in the background or by
    /// [`EventStore::flush`](crate::EventStore::flush); for imports and
    /// benchmarks that flush once at their end.
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
    /// Records this handle appended, which a batched close flushes.
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

fn malformed_runs(stream: &str) -> StoreError {
    StoreError::Corrupt(format!("stream index of '{stream}' is malformed"))
}

/// The format mark: our magic, then the format number.
fn mark(format: u32) -> Vec<u8> {
    let mut mark = FORMAT_MAGIC.to_vec();
    mark.extend_from_slice(&format.to_be_bytes());
    mark
}
