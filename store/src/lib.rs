//! usertrail's append-only event log, on sled or PostgreSQL.
//!
//! # Layout
//! - [`record`]: one event as the log keeps it, its bytes and its hash chain.
//! - `keys`, `blocks`: how records and their indexes are keyed and packed in
//!   sled, each index block authenticated.
//! - [`sled_store`]: [`SledStore`], the log on sled: append, read, verify, and
//!   the witness of its head.
//! - [`pg`]: [`PgStore`], the same log on a PostgreSQL server, one schema each.
//! - `snapshots`, `cache_key`: caches beside the log (snapshots, sync marks),
//!   each bound to a record's hash and authenticated under a key kept outside it.
//! - This file: the [`EventStore`] trait that the rest of usertrail uses, and
//!   the errors.
//!
//! The store knows nothing of what events mean: payloads are opaque bytes.

pub mod pg;
pub mod record;
pub mod sled_store;

mod blocks;
mod cache_key;
mod keys;
mod snapshots;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use cache_key::{CacheKeys, ID_FILE as CACHE_ID_FILE};
pub use pg::PgStore;
pub use record::{Causation, Hash, Metadata, NewEvent, Origin, Record, Sealed, GENESIS_HASH};
pub use sled_store::{lock_dir, Archiving, DirLock, Durability, OpenOptions, SledStore};
pub use snapshots::{parts_holder, CacheMiss, StagedSnapshot};

/// The version a writer expects a stream to be at before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version (audit records, for example).
    Any,
    /// The stream must hold exactly this many events (0: it must not exist yet).
    Exactly(u64),
}

/// One append: events for one stream, with the metadata they share.
#[derive(Debug, Clone)]
pub struct Append {
    /// The stream the events go to (`tenant`, `env/<uuid>`, ...).
    pub stream: String,
    /// Optimistic concurrency: the stream version the events were decided on.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
    /// Who, when, why: shared by every event of this append.
    pub meta: Metadata,
}

/// Where an append's events landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The seq of the first event (for an empty append, the seq after the head).
    pub first_seq: u64,
    /// The seq of the last event (for an empty append, the head's seq).
    pub last_seq: u64,
    /// The stream's version after the append.
    pub stream_version: u64,
    /// True when every event id was already in the log: nothing was written.
    pub was_retry: bool,
}

/// Appends fed one at a time into one transaction: the store checks and
/// seals each as it arrives, on its own thread, while the producer decides
/// the next; [`Transaction::commit`] writes them all, and dropping the
/// transaction instead writes none of them.
pub struct Transaction {
    /// Appends not yet handed over: they go in bunches, since waking the
    /// worker for each one would cost more than sealing it.
    bunch: Vec<Append>,
    appends: tokio::sync::mpsc::Sender<Vec<Append>>,
    commit: std::sync::Arc<std::sync::atomic::AtomicBool>,
    outcome: tokio::task::JoinHandle<AppendResult<Vec<Appended>>>,
}

impl Transaction {
    /// Appends handed over at a time.
    const BUNCH: usize = 256;
    /// Bunches the worker may hold before the producer waits for it.
    const IN_FLIGHT: usize = 16;

    /// Starts a transaction whose appends `work` receives, in bunches, on a
    /// blocking thread, with whether to commit them once the appends end.
    /// For stores to implement [`EventStore::begin`]; it must be called
    /// within a Tokio runtime (it spawns a blocking task).
    pub fn spawn<F>(work: F) -> Transaction
    where
        F: FnOnce(
                tokio::sync::mpsc::Receiver<Vec<Append>>,
                &std::sync::atomic::AtomicBool,
            ) -> AppendResult<Vec<Appended>>
            + Send
            + 'static,
    {
        let (appends, received) = tokio::sync::mpsc::channel(Self::IN_FLIGHT);
        let commit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&commit);
        let outcome = tokio::task::spawn_blocking(move || work(received, &flag));
        Transaction { bunch: Vec::with_capacity(Self::BUNCH), appends, commit, outcome }
    }

    /// Adds an append. `false`: the transaction has already ended (a
    /// rejection or an error, which [`Transaction::commit`] returns).
    pub async fn send(&mut self, append: Append) -> bool {
        match self.bunched(append) {
            Some(bunch) => self.appends.send(bunch).await.is_ok(),
            None => true,
        }
    }

    /// [`Transaction::send`], for a producer on a thread outside the
    /// runtime (a blocking task): it waits there while the worker is behind.
    pub fn blocking_send(&mut self, append: Append) -> bool {
        match self.bunched(append) {
            Some(bunch) => self.appends.blocking_send(bunch).is_ok(),
            None => true,
        }
    }

    /// Adds `append` to the bunch, and takes the bunch once it is full.
    fn bunched(&mut self, append: Append) -> Option<Vec<Append>> {
        self.bunch.push(append);
        (self.bunch.len() >= Self::BUNCH)
            .then(|| std::mem::replace(&mut self.bunch, Vec::with_capacity(Self::BUNCH)))
    }

    /// Writes every append sent, all or none, and says where they landed.
    pub async fn commit(self) -> AppendResult<Vec<Appended>> {
        let Transaction { bunch, appends, commit, outcome } = self;
        // A failed send means the worker has ended: its outcome says why.
        if bunch.is_empty() || appends.send(bunch).await.is_ok() {
            // Set before the channel closes, which is what the worker waits for.
            commit.store(true, std::sync::atomic::Ordering::Release);
        }
        drop(appends);
        outcome.await.map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// The newest record of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number: the number of records in the log.
    pub seq: u64,
    /// Its time.
    pub recorded_at: DateTime<Utc>,
    /// Its hash.
    pub hash: Hash,
}

/// A saved state and the log position it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The state includes every record up to and including this seq.
    pub seq: u64,
    /// The serialized state, opaque to the store.
    pub state: Vec<u8>,
    /// Parts kept apart from the state, each read on its own
    /// ([`EventStore::snapshot_parts`]): a load returns none of them.
    pub parts: Vec<SnapshotPart>,
}

/// A part of a snapshot to save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotPart {
    /// Its bytes, which the snapshot holds.
    Bytes(Vec<u8>),
    /// A part another cache holds, as a table ([`EventStore::snapshot_table`])
    /// says: saved without its bytes.
    Held(PartEntry),
}

/// Where a snapshot's part is held, and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub digest: [u8; 32],
    /// The cache that holds it; `None`: the snapshot whose table this is.
    pub held_by: Option<Holder>,
}

/// A cache holding a part for snapshots of one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    /// Its seq.
    pub seq: u64,
    /// The part's index in its table.
    pub index: u32,
    /// In the name's [`parts_holder`], not a snapshot of the name itself.
    pub apart: bool,
}

/// The result of walking the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many records were walked.
    pub records: u64,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
}

/// A record (or index entry) that is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The sequence number of the record concerned.
    pub seq: u64,
    /// What is wrong with it.
    pub what: String,
}

/// Why an append was refused while the store itself is fine. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRejection {
    /// Another writer appended to the stream first.
    #[error("concurrency conflict on stream '{stream}': expected version {expected}, found {actual}")]
    Conflict { stream: String, expected: u64, actual: u64 },
    /// The events are stamped earlier than the newest record.
    #[error("time {given} is earlier than the last record's time {last}")]
    TimeWentBackwards { last: DateTime<Utc>, given: DateTime<Utc> },
    /// Some of the event ids are in the log and some are not: not a clean retry.
    #[error("event {event_id} is already in the log but others of its append are not")]
    PartialRetry { event_id: uuid::Uuid },
    /// Another append landed while a [`Transaction`] was open: decide again.
    #[error("the log moved from record {began} to {now} while the transaction was open")]
    Moved { began: u64, now: u64 },
    /// A record sealed elsewhere ([`SledStore::append_sealed`]) is not the
    /// log's next one: its seq, chain, stream version, time or event id.
    #[error("record {seq} cannot follow the log's last record: {what}")]
    NotNext { seq: u64, what: String },
}

/// A failure of the store itself: I/O, locking, corruption. Fail-stop.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database.
    #[error("database {} is locked by another process (waited {} ms); try again when it is done", path.display(), waited.as_millis())]
    Locked { path: PathBuf, waited: Duration },
    /// The path holds something that is not a usertrail log.
    #[error("{} is not a usertrail database: {reason}", path.display())]
    NotOurs { path: PathBuf, reason: String },
    /// A symbolic link inside the database's directory.
    #[error("{} is a symbolic link: usertrail follows no link inside its database", path.display())]
    Symlink { path: PathBuf },
    /// The log was written by a newer usertrail.
    #[error("database {} has log format {found}; this usertrail reads format {supported} (upgrade usertrail)", path.display())]
    NewerFormat { path: PathBuf, found: u32, supported: u32 },
    /// Stored bytes that cannot be what we wrote.
    #[error("database is corrupt: {0}")]
    Corrupt(String),
    /// The file system failed.
    #[error("I/O error on database {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// sled reported a problem of its own.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A time that the log cannot represent (outside 1677-2262).
    #[error("time {0} is outside the range the log can store (years 1677 to 2262)")]
    TimeOutOfRange(DateTime<Utc>),
    /// A record could not be encoded.
    #[error("could not encode a record: {0}")]
    Encode(String),
    /// A PostgreSQL server unreached, lost, or failing a statement (a
    /// timeout, a missing grant), or a schema that is not a log this
    /// usertrail reads: where (never the password), and what.
    /// No log where one was named: `init` makes one.
    #[error("no usertrail log at {at}: run `usertrail init` first, or pass --db")]
    NoLog { at: String },
    #[error("PostgreSQL at {at}: {what}")]
    Server { at: String, what: String },
    /// The blocking task running a store call died.
    #[error("store task failed: {0}")]
    Task(String),
}

/// The outcome of an append: the outer error is the store failing, the inner
/// one a refusal the caller can act on (retry after a conflict, for example).
pub type AppendResult<T> = Result<Result<T, AppendRejection>, StoreError>;

/// The event log as usertrail sees it. Async so that a networked backend can
/// implement it too; [`SledStore`] runs sled's blocking calls off the runtime.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends one stream's events atomically: all of them or none.
    async fn append(&self, append: Append) -> AppendResult<Appended>;
    /// Appends several streams' events in one transaction: all or none.
    async fn append_all(&self, appends: Vec<Append>) -> AppendResult<Vec<Appended>>;
    /// Starts a transaction fed one append at a time (a long batch is
    /// sealed while it is still being decided).
    async fn begin(&self) -> Result<Transaction, StoreError>;
    /// Makes every append so far durable (for the batched mode).
    async fn flush(&self) -> Result<(), StoreError>;
    /// The newest record, or `None` for an empty log.
    async fn head(&self) -> Result<Option<Head>, StoreError>;
    /// The stream's current version (0: no such stream).
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;
    /// The stream's records with version `>= from_version`, in order.
    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Record>, StoreError>;
    /// The stream's records with version `>= from_version` and seq `<= max_seq`,
    /// in order: a fold as of a past point reads nothing after it.
    async fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let mut records = self.read_stream(stream, from_version).await?;
        records.retain(|r| r.seq <= max_seq);
        Ok(records)
    }
    /// At most `limit` records with `from <= seq <= to`, in order.
    async fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError>;
    /// At most `limit` records with `from <= seq <= to`, in order, as
    /// stored: what each hash covers, for an export that others check
    /// without usertrail, or a copy into another log. A record whose hash
    /// does not match is returned as it is ([`Sealed::hash_is_intact`]).
    async fn read_sealed(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Sealed>, StoreError>;
    /// Appends records sealed elsewhere (a restore from an export, a copy
    /// from another log) byte for byte, so they keep their hashes: all or
    /// none, each the log's next record, else [`AppendRejection::NotNext`].
    /// Returns the new head's seq.
    async fn append_sealed(&self, records: Vec<Sealed>) -> AppendResult<u64>;
    /// The seq of the last record stamped at or before `time` (0: none).
    async fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Saves a state that reflects the log up to `snapshot.seq`.
    async fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError>;
    /// Writes a snapshot where no reader looks yet, for a writer to do
    /// while its records commit: [`EventStore::publish_snapshot`] then
    /// makes it visible at little cost, and dropping it discards it.
    async fn stage_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<StagedSnapshot, StoreError>;
    /// Makes a staged snapshot the one of its name at its seq, as
    /// [`EventStore::save_snapshot`] would have.
    async fn publish_snapshot(&self, staged: StagedSnapshot) -> Result<(), StoreError>;
    /// Removes the snapshots of `name` taken at the seqs in `seqs`.
    async fn remove_snapshots(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError>;
    /// The newest snapshot of `name` taken at or before `max_seq`, if it is
    /// authentic and bound to this log (any other is a miss).
    async fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError>;
    /// Parts `which` of the snapshot of `name` at `seq` (saved with
    /// [`Snapshot::parts`]), each checked against that snapshot, authentic
    /// and bound to the log; `None`: a miss (gone, replaced or changed).
    async fn snapshot_parts(
        &self,
        name: &str,
        seq: u64,
        which: &[u32],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError>;
    /// The table of the snapshot of `name` at `seq`: each part's length,
    /// digest and holder, for a newer snapshot to point at instead of
    /// copying; `None`: a miss, or a snapshot without parts.
    async fn snapshot_table(&self, name: &str, seq: u64) -> Result<Option<Vec<PartEntry>>, StoreError>;
    /// Every snapshot by name and seq, whether it would be used or not (for `verify`).
    async fn snapshot_names(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// The snapshot of `name` at `seq` (`None`: there is none), or why it
    /// is a miss.
    async fn check_snapshot(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError>;
    /// Walks the chain and every index; reports the first bad record.
    async fn verify(&self) -> Result<VerifyReport, StoreError>;
    /// The first break of the chain over records `from..=to` (a record
    /// altered, misplaced, not linked to the one before it, or stamped
    /// earlier), as `verify` would find it there. Reads trust a record that
    /// decodes; a cache folded from one must not outlive its restoration.
    async fn chain_break(&self, from: u64, to: u64) -> Result<Option<Problem>, StoreError>;
    /// Closes the log if this is its last handle, reporting what a drop
    /// would swallow (the sled store's index and archive; how many records
    /// moved); otherwise only lets go of this handle.
    fn release(self: std::sync::Arc<Self>) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Why the log is closed to appends, if it is: records found lost or
    /// damaged at open or by `verify`. Reads still answer, and say so.
    fn damage(&self) -> Option<String> {
        None
    }
    /// The index misses this handle met (blocks failing their MAC, or a
    /// stream's not reaching its head) and rebuilt from the records, each
    /// with the seq the rebuilt index reached: `verify` names them as caches
    /// that were not the log's.
    fn index_misses(&self) -> Vec<(u64, String)> {
        Vec::new()
    }
}
