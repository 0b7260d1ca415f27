//! [`SledStore`]: the log on sled, in three trees (`log`, `index`, `snapshots`).
//!
//! One append is one sled transaction over `log` and `index`; the chain head
//! lives in `index` too, so concurrent appends conflict on it and serialize.
//! Within a process a writer mutex keeps sled from retrying those conflicts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::keys::{self, be_u64};
use crate::record::{from_nanos, to_nanos, Hash, Record, GENESIS_HASH};
use crate::{
    Append, AppendRejection, AppendResult, Appended, EventStore, ExpectedVersion, Head, Problem, Snapshot,
    StoreError, VerifyReport,
};

/// The log format this code writes and reads.
pub const LOG_FORMAT: u32 = 1;
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
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { lock_timeout: Duration::from_secs(10), durability: Durability::Immediate }
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
    log: sled::Tree,
    index: sled::Tree,
    snapshots: sled::Tree,
    writer: Mutex<()>,
    durability: Durability,
}

/// Why a transaction stopped: a refusal for the caller, or a store failure.
enum Abort {
    Reject(AppendRejection),
    Fail(StoreError),
}

impl From<StoreError> for ConflictableTransactionError<Abort> {
    fn from(e: StoreError) -> Self {
        ConflictableTransactionError::Abort(Abort::Fail(e))
    }
}

fn engine(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { at, .. } => {
            StoreError::Corrupt(format!("sled found corrupt data at {at:?}"))
        }
        other => StoreError::Engine(other.to_string()),
    }
}

fn reject<T>(r: AppendRejection) -> Result<T, ConflictableTransactionError<Abort>> {
    Err(ConflictableTransactionError::Abort(Abort::Reject(r)))
}

/// The chain head as kept under `mhead`: seq, time, hash.
fn encode_head(seq: u64, nanos: i64, hash: &Hash) -> [u8; 48] {
    let mut v = [0; 48];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..16].copy_from_slice(&nanos.to_be_bytes());
    v[16..].copy_from_slice(hash);
    v
}

fn decode_head(v: &[u8]) -> Result<(u64, i64, Hash), StoreError> {
    if v.len() != 48 {
        return Err(StoreError::Corrupt(format!("log head entry has {} bytes, not 48", v.len())));
    }
    let seq = be_u64(v).unwrap_or_default();
    let nanos = i64::from_be_bytes(v[8..16].try_into().unwrap_or_default());
    let mut hash = [0; 32];
    hash.copy_from_slice(&v[16..]);
    Ok((seq, nanos, hash))
}

/// A verify finding, in the shape the walk returns.
fn bad(seq: u64, what: impl Into<String>) -> Result<Option<Problem>, StoreError> {
    Ok(Some(Problem { seq, what: what.into() }))
}

/// A non-empty directory without sled's own files: never ours to write into.
fn is_foreign_directory(path: &Path) -> bool {
    let Ok(mut entries) = std::fs::read_dir(path) else {
        return false;
    };
    let non_empty = entries.next().is_some();
    non_empty && !path.join("conf").is_file() && !path.join("db").is_file()
}

fn corrupt_seq(seq: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("record {seq}: {what}"))
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
        let db = loop {
            match sled::Config::new().path(&path).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if started.elapsed() >= options.lock_timeout {
                        return Err(StoreError::Locked { path, waited: started.elapsed() });
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(sled::Error::Io(source)) => return Err(StoreError::Io { path, source }),
                Err(sled::Error::Corruption { .. }) if remove_unfinished_snapshots(&path) => {}
                Err(sled::Error::Corruption { .. }) => {
                    return Err(StoreError::Corrupt(format!(
                        "{} cannot be opened: its storage files are damaged or not sled's",
                        path.display()
                    )))
                }
                Err(e) => return Err(engine(e)),
            }
        };
        let store = SledStore {
            inner: Arc::new(Inner {
                log: db.open_tree("log").map_err(engine)?,
                index: db.open_tree("index").map_err(engine)?,
                snapshots: db.open_tree("snapshots").map_err(engine)?,
                db,
                path,
                writer: Mutex::new(()),
                durability: options.durability,
            }),
        };
        store.inner.check_format()?;
        Ok(store)
    }

    /// Opens a throwaway log that lives in memory only (tests, whatif).
    pub fn temporary() -> Result<SledStore, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(engine)?;
        let store = SledStore {
            inner: Arc::new(Inner {
                log: db.open_tree("log").map_err(engine)?,
                index: db.open_tree("index").map_err(engine)?,
                snapshots: db.open_tree("snapshots").map_err(engine)?,
                db,
                path: PathBuf::from("(temporary)"),
                writer: Mutex::new(()),
                durability: Durability::Batched,
            }),
        };
        store.inner.check_format()?;
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The blocking form of [`EventStore::append_all`], for callers off the runtime.
    pub fn append_all_blocking(&self, appends: &[Append]) -> AppendResult<Vec<Appended>> {
        self.inner.append_all(appends)
    }

    /// The blocking form of [`EventStore::read_log`].
    pub fn read_log_blocking(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.read_log(from, to, limit)
    }

    /// Raw access to the trees, for tests that tamper with stored bytes.
    #[doc(hidden)]
    pub fn raw_trees(&self) -> (sled::Tree, sled::Tree) {
        (self.inner.log.clone(), self.inner.index.clone())
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
    /// A fresh database gets our format mark; anything else must carry it.
    fn check_format(&self) -> Result<(), StoreError> {
        match self.index.get(keys::META_FORMAT).map_err(engine)? {
            Some(v) => {
                let Some(version) = v.strip_prefix(FORMAT_MAGIC) else {
                    return Err(self.not_ours("its format mark is not usertrail's"));
                };
                let found = version
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| self.not_ours("its format mark is malformed"))?;
                if found > LOG_FORMAT {
                    return Err(StoreError::NewerFormat {
                        path: self.path.clone(),
                        found,
                        supported: LOG_FORMAT,
                    });
                }
                Ok(())
            }
            None => {
                let foreign_tree =
                    self.db.tree_names().iter().any(|name| {
                        !matches!(&name[..], b"__sled__default" | b"log" | b"index" | b"snapshots")
                    });
                if foreign_tree || !self.db.is_empty() || !self.log.is_empty() || !self.index.is_empty() {
                    return Err(self.not_ours("it holds data but no usertrail format mark"));
                }
                let mut mark = FORMAT_MAGIC.to_vec();
                mark.extend_from_slice(&LOG_FORMAT.to_be_bytes());
                self.index.insert(keys::META_FORMAT, mark).map_err(engine)?;
                self.db.flush().map_err(engine)?;
                Ok(())
            }
        }
    }

    fn not_ours(&self, reason: &str) -> StoreError {
        StoreError::NotOurs { path: self.path.clone(), reason: reason.into() }
    }

    fn append_all(&self, appends: &[Append]) -> AppendResult<Vec<Appended>> {
        // A poisoned lock only means another append panicked; the log itself
        // is guarded by the transaction, so carry on.
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let outcome =
            (&self.log, &self.index).transaction(|(log, index)| append_in_transaction(log, index, appends));
        let appended = match outcome {
            Ok(appended) => appended,
            Err(TransactionError::Abort(Abort::Reject(r))) => return Ok(Err(r)),
            Err(TransactionError::Abort(Abort::Fail(e))) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(engine(e)),
        };
        if self.durability == Durability::Immediate && appended.iter().any(|a| !a.was_retry) {
            self.flush()?;
        }
        Ok(Ok(appended))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(engine)
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        let Some(v) = self.index.get(keys::META_HEAD).map_err(engine)? else {
            return Ok(None);
        };
        let (seq, nanos, hash) = decode_head(&v)?;
        Ok(Some(Head { seq, recorded_at: from_nanos(nanos), hash }))
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        match self.index.get(keys::head_key(stream)).map_err(engine)? {
            Some(v) => be_u64(&v)
                .ok_or_else(|| StoreError::Corrupt(format!("head of stream '{stream}' is malformed"))),
            None => Ok(0),
        }
    }

    fn record(&self, seq: u64) -> Result<Record, StoreError> {
        let bytes = self
            .log
            .get(keys::seq_key(seq))
            .map_err(engine)?
            .ok_or_else(|| corrupt_seq(seq, "indexed but missing from the log"))?;
        Record::open(&bytes).map_err(|e| corrupt_seq(seq, e))
    }

    fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Record>, StoreError> {
        self.read_stream_until(stream, from_version, u64::MAX)
    }

    /// A stream's records from a version on, up to a log position. Seqs grow
    /// with versions, so the walk stops at the first one past `max_seq`
    /// before reading its record.
    fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let start = keys::stream_key(stream, from_version.max(1));
        let end = keys::stream_key(stream, u64::MAX);
        let mut records = Vec::new();
        for entry in self.index.range(start..=end) {
            let (_, seq) = entry.map_err(engine)?;
            let seq = be_u64(&seq)
                .ok_or_else(|| StoreError::Corrupt(format!("stream index of '{stream}' is malformed")))?;
            if seq > max_seq {
                break;
            }
            records.push(self.record(seq)?);
        }
        Ok(records)
    }

    fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        self.log
            .range(keys::seq_key(from)..=keys::seq_key(to))
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry.map_err(engine)?;
                let seq = be_u64(&key).unwrap_or_default();
                Record::open(&bytes).map_err(|e| corrupt_seq(seq, e))
            })
            .collect()
    }

    fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        let Ok(nanos) = to_nanos(time) else {
            // Beyond what the log can hold: before everything, or after it.
            return Ok(if time.timestamp() < 0 { 0 } else { self.head()?.map_or(0, |h| h.seq) });
        };
        let first = keys::time_key(i64::MIN);
        match self.index.range(first..=keys::time_key(nanos)).next_back() {
            Some(entry) => {
                let (_, seq) = entry.map_err(engine)?;
                be_u64(&seq).ok_or_else(|| StoreError::Corrupt("time index entry is malformed".into()))
            }
            None => Ok(0),
        }
    }

    fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.snapshots.insert(keys::snapshot_key(name, snapshot.seq), snapshot.state).map_err(engine)?;
        Ok(())
    }

    fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        let range = keys::snapshot_key(name, 0)..=keys::snapshot_key(name, max_seq);
        match self.snapshots.range(range).next_back() {
            Some(entry) => {
                let (key, state) = entry.map_err(engine)?;
                let seq =
                    key.len().checked_sub(8).and_then(|at| be_u64(&key[at..])).ok_or_else(|| {
                        StoreError::Corrupt(format!("snapshot key of '{name}' is malformed"))
                    })?;
                Ok(Some(Snapshot { seq, state: state.to_vec() }))
            }
            None => Ok(None),
        }
    }

    fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut walked = 0;
        let found = (|| -> Result<Option<Problem>, StoreError> {
            let mut prev_hash = GENESIS_HASH;
            let mut prev_nanos = i64::MIN;
            let mut run: Option<(i64, u64)> = None; // the current time and its last seq
            let mut versions: HashMap<String, u64> = HashMap::new();
            for entry in self.log.iter() {
                let (key, bytes) = entry.map_err(engine)?;
                let expected = walked + 1;
                let Some(seq) = be_u64(&key).filter(|_| key.len() == 8) else {
                    return bad(expected, "log key is not a sequence number");
                };
                if seq != expected {
                    return bad(expected, format!("missing: the log jumps to {seq}"));
                }
                let record = match Record::open(&bytes) {
                    Ok(r) => r,
                    Err(e) => return bad(seq, e),
                };
                if !Record::hash_is_intact(&bytes) {
                    return bad(seq, "stored hash does not match its content (altered)");
                }
                if record.seq != seq {
                    return bad(seq, format!("stored under {seq} but says it is {}", record.seq));
                }
                if record.prev_hash != prev_hash {
                    return bad(seq, "does not chain to the record before it (removed or reordered)");
                }
                let nanos = to_nanos(record.recorded_at)?;
                if nanos < prev_nanos {
                    return bad(seq, "is stamped earlier than the record before it");
                }
                let version = versions.entry(record.stream.clone()).or_default();
                if record.version != *version + 1 {
                    return bad(
                        seq,
                        format!("stream '{}' version {} follows {}", record.stream, record.version, version),
                    );
                }
                *version = record.version;
                let indexed = |key: &[u8]| -> Result<Option<u64>, StoreError> {
                    Ok(self.index.get(key).map_err(engine)?.and_then(|v| be_u64(&v)))
                };
                if indexed(&keys::stream_key(&record.stream, record.version))? != Some(seq) {
                    return bad(seq, "stream index entry is missing or wrong");
                }
                if indexed(&keys::event_key(&record.event_id))? != Some(seq) {
                    return bad(seq, "event id index entry is missing or wrong");
                }
                if let Some((t, last)) = run.filter(|(t, _)| *t != nanos) {
                    if indexed(&keys::time_key(t))? != Some(last) {
                        return bad(last, "time index entry is missing or wrong");
                    }
                }
                run = Some((nanos, seq));
                prev_hash = record.hash;
                prev_nanos = nanos;
                walked = seq;
            }
            if let Some((t, last)) = run {
                if self.index.get(keys::time_key(t)).map_err(engine)?.and_then(|v| be_u64(&v)) != Some(last) {
                    return bad(last, "time index entry is missing or wrong");
                }
            }
            match self.index.get(keys::META_HEAD).map_err(engine)? {
                Some(v) => {
                    let (seq, _, hash) = decode_head(&v)?;
                    if seq != walked || hash != prev_hash {
                        return bad(
                            walked.max(1),
                            format!("log head says record {seq}, the log ends at {walked}"),
                        );
                    }
                }
                None if walked > 0 => return bad(walked, "log head entry is missing"),
                None => {}
            }
            self.stray_index_entries(walked, &versions)
        })()?;
        Ok(VerifyReport { records: walked, problem: found })
    }

    /// Index entries that no record accounts for (the forward walk checked
    /// that every record has its entries; this checks the converse).
    fn stray_index_entries(
        &self,
        last: u64,
        versions: &HashMap<String, u64>,
    ) -> Result<Option<Problem>, StoreError> {
        let mut counts: HashMap<u8, u64> = HashMap::new();
        let mut times = HashSet::new();
        for entry in self.index.iter() {
            let (key, value) = entry.map_err(engine)?;
            let tag = key.first().copied().unwrap_or_default();
            *counts.entry(tag).or_default() += 1;
            let pointed = be_u64(&value).unwrap_or(0);
            let stray = |what: &str| Ok(Some(Problem { seq: pointed.min(last.max(1)), what: what.into() }));
            match tag {
                keys::TAG_HEAD => {
                    let stream = String::from_utf8_lossy(&key[1..]);
                    if versions.get(stream.as_ref()) != Some(&pointed) {
                        return stray(&format!("stream '{stream}' head says version {pointed}"));
                    }
                }
                keys::TAG_STREAM | keys::TAG_EVENT if pointed == 0 || pointed > last => {
                    return stray("index entry points past the end of the log");
                }
                keys::TAG_TIME => {
                    let t = keys::time_from_key(&key).unwrap_or(i64::MIN);
                    if pointed == 0 || pointed > last || to_nanos(self.record(pointed)?.recorded_at)? != t {
                        return stray("time index entry points to a record of another time");
                    }
                    times.insert(t);
                }
                _ => {}
            }
        }
        let count = |tag| counts.get(&tag).copied().unwrap_or(0);
        if count(keys::TAG_HEAD) != versions.len() as u64 {
            return Ok(Some(Problem {
                seq: last.max(1),
                what: format!("{} stream heads for {} streams", count(keys::TAG_HEAD), versions.len()),
            }));
        }
        if count(keys::TAG_STREAM) != last || count(keys::TAG_EVENT) != last {
            return Ok(Some(Problem {
                seq: last.max(1),
                what: format!(
                    "{} stream entries and {} event entries for {last} records",
                    count(keys::TAG_STREAM),
                    count(keys::TAG_EVENT)
                ),
            }));
        }
        Ok(None)
    }
}

/// The body of an append's transaction. sled may run it more than once, so it
/// only reads and writes through the transactional trees.
fn append_in_transaction(
    log: &TransactionalTree,
    index: &TransactionalTree,
    appends: &[Append],
) -> Result<Vec<Appended>, ConflictableTransactionError<Abort>> {
    let (mut seq, mut last_nanos, mut prev_hash) = match index.get(keys::META_HEAD)? {
        Some(v) => decode_head(&v)?,
        None => (0, i64::MIN, GENESIS_HASH),
    };
    let mut results = Vec::with_capacity(appends.len());
    let mut seen_ids = HashSet::new();
    for append in appends {
        if let Some(retry) = earlier_append(log, index, append)? {
            results.push(retry);
            continue;
        }
        for event in &append.events {
            if !seen_ids.insert(event.event_id) {
                return reject(AppendRejection::PartialRetry { event_id: event.event_id });
            }
        }
        let nanos = to_nanos(append.meta.recorded_at)?;
        if nanos < last_nanos {
            return reject(AppendRejection::TimeWentBackwards {
                last: from_nanos(last_nanos),
                given: append.meta.recorded_at,
            });
        }
        let head_key = keys::head_key(&append.stream);
        let current = index.get(&head_key)?.and_then(|v| be_u64(&v)).unwrap_or(0);
        if let ExpectedVersion::Exactly(expected) = append.expected {
            if expected != current {
                return reject(AppendRejection::Conflict {
                    stream: append.stream.clone(),
                    expected,
                    actual: current,
                });
            }
        }
        let first_seq = seq + 1;
        let mut version = current;
        for event in &append.events {
            seq += 1;
            version += 1;
            let (record, bytes) = Record::seal(seq, &append.stream, version, event, &append.meta, prev_hash)?;
            let seq_bytes = keys::seq_key(seq);
            log.insert(&seq_bytes[..], bytes)?;
            index.insert(keys::stream_key(&append.stream, version), &seq_bytes[..])?;
            index.insert(&keys::event_key(&event.event_id)[..], &seq_bytes[..])?;
            prev_hash = record.hash;
        }
        if !append.events.is_empty() {
            index.insert(&keys::time_key(nanos)[..], &keys::seq_key(seq)[..])?;
            index.insert(head_key, &version.to_be_bytes()[..])?;
            last_nanos = nanos;
        }
        results.push(Appended { first_seq, last_seq: seq, stream_version: version, was_retry: false });
    }
    index.insert(keys::META_HEAD, &encode_head(seq, last_nanos, &prev_hash)[..])?;
    Ok(results)
}

/// If the append's events are all in the log already, where they landed.
/// Some known and some new, in any order, is not a retry but a mistake.
fn earlier_append(
    log: &TransactionalTree,
    index: &TransactionalTree,
    append: &Append,
) -> Result<Option<Appended>, ConflictableTransactionError<Abort>> {
    let mut known = Vec::with_capacity(append.events.len());
    let mut any_new = false;
    for event in &append.events {
        match index.get(keys::event_key(&event.event_id))? {
            Some(seq) => known.push((event.event_id, be_u64(&seq).unwrap_or_default())),
            None => any_new = true,
        }
    }
    let (Some(&(first_id, first_seq)), Some(&(_, last_seq))) = (known.first(), known.last()) else {
        return Ok(None);
    };
    if any_new {
        return reject(AppendRejection::PartialRetry { event_id: first_id });
    }
    // The stream's version right after the original append, not now.
    let stream_version = match log.get(keys::seq_key(last_seq))? {
        Some(bytes) => Record::open(&bytes).map_err(|e| corrupt_seq(last_seq, e))?.version,
        None => return Err(corrupt_seq(last_seq, "indexed but missing from the log").into()),
    };
    Ok(Some(Appended { first_seq, last_seq, stream_version, was_retry: true }))
}

#[async_trait]
impl EventStore for SledStore {
    async fn append(&self, append: Append) -> AppendResult<Appended> {
        let outcome = self.append_all(vec![append]).await?;
        Ok(outcome.map(|mut v| v.remove(0)))
    }

    async fn append_all(&self, appends: Vec<Append>) -> AppendResult<Vec<Appended>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.append_all(&appends))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
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
        self.blocking(move |s| s.read_stream(&stream, from_version)).await
    }

    async fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.read_stream_until(&stream, from_version, max_seq)).await
    }

    async fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.blocking(move |s| s.read_log(from, to, limit)).await
    }

    async fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        self.blocking(move |s| s.seq_at(time)).await
    }

    async fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.save_snapshot(&name, snapshot)).await
    }

    async fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.load_snapshot(&name, max_seq)).await
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
