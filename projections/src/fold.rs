//! Folding streams into states, checkpointed: a state as of any log position
//! is the nearest snapshot at or before it, plus the stream's records after
//! it. Snapshots are caches; a fold without them gives the same state.
//!
//! Each stream has two kinds. The *series* (`aggregate/<stream>`) is spaced
//! so that a read anywhere in the past replays at most about half a
//! snapshot's bytes. The *head snapshot* (`aggregate-head/<stream>`, only the
//! newest kept) is left by a read at the log's head that replayed a
//! sixteenth of that, so that a command, which always reads at the head,
//! replays a few records rather than up to half a snapshot's worth.

use domain::environment::Environment;
use domain::events::{self, Event, Stamp};
use domain::tenant::Tenant;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store::{EventStore, Record, Snapshot, StagedSnapshot};

use crate::Error;

/// A writer that appended this many records to a stream saves its state.
pub const SNAPSHOT_AFTER: usize = 256;

/// A read saves a snapshot once it replayed at least this many records...
const MIN_REPLAY: u64 = 64;
/// ...and about half as many bytes of records as the snapshot it started
/// from: replaying stays within a small factor of decoding a snapshot, and
/// snapshots take no more room than the records between them.
const REPLAY_PER_SNAPSHOT_BYTE: f64 = 0.5;
/// A read at the log's head that replayed at least this many records...
const MIN_HEAD_REPLAY: u64 = 16;
/// ...and a sixteenth of its snapshot's bytes leaves a *head snapshot*: the
/// next command (which starts from the head) then replays a few records, not
/// up to half a snapshot's worth. Only the newest head snapshot is kept, so
/// they cost one snapshot's room per stream, not one per sixteenth.
const HEAD_REPLAY_PER_SNAPSHOT_BYTE: f64 = 1.0 / 16.0;
/// What a record costs to replay beyond its payload, in bytes.
const RECORD_OVERHEAD: usize = 100;

/// A state folded from one stream: the tenant, or an environment.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + 'static {
    /// Folds one decoded record into the state.
    fn fold(&mut self, event: Event, stamp: Stamp);

    /// About how many bytes the state's snapshot takes, erring high: a
    /// buffer grown from empty would be copied some twenty times over on
    /// the way to a large directory's tens of megabytes.
    fn snapshot_size_hint(&self) -> usize;
}

impl Aggregate for Tenant {
    fn fold(&mut self, event: Event, stamp: Stamp) {
        if let Event::Tenant(e) = event {
            self.apply(&e, stamp);
        }
    }

    fn snapshot_size_hint(&self) -> usize {
        // A directory of 100k imported users encodes to 327 bytes a user.
        4096 + self.users.len() * 384
    }
}

impl Aggregate for Environment {
    fn fold(&mut self, event: Event, stamp: Stamp) {
        if let Event::Environment(e) = event {
            self.apply(&e, stamp);
        }
    }

    fn snapshot_size_hint(&self) -> usize {
        4096 + self.users.len() * 384
    }
}

/// Whether to read and write snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshots {
    /// Start from the nearest snapshot; save one after a long replay.
    Use,
    /// Replay from the first record (the rebuild that checks the snapshots).
    Ignore,
}

#[derive(Serialize, Deserialize)]
struct Snapshotted<A> {
    version: u64,
    state: A,
}

/// A head snapshot: a state, and what lies between it and the newest
/// snapshot of the series, so that the series still gets its next snapshot
/// when reads start from head snapshots.
#[derive(Serialize, Deserialize)]
struct HeadSnapshotted<A> {
    version: u64,
    since_series: Replayed,
    state: A,
}

/// Records replayed: how many, and their bytes (with [`RECORD_OVERHEAD`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Replayed {
    records: u64,
    bytes: u64,
}

impl Replayed {
    /// Whether this much replay is worth a snapshot of `snapshot_bytes`
    /// saved to spare it, at `per_byte` of the snapshot's bytes.
    fn at_least(self, min_records: u64, snapshot_bytes: usize, per_byte: f64) -> bool {
        self.records >= min_records && self.bytes as f64 >= snapshot_bytes as f64 * per_byte
    }
}

/// Where a load starts from.
struct Start<A> {
    state: A,
    version: u64,
    /// The size of the snapshot it was decoded from (0: none).
    bytes: usize,
    /// What was replayed since the series' newest snapshot, when starting
    /// from a head snapshot.
    since_series: Replayed,
}

impl<A: Default> Start<A> {
    fn empty() -> Start<A> {
        Start { state: A::default(), version: 0, bytes: 0, since_series: Replayed::default() }
    }
}

fn series_name(stream: &str) -> String {
    format!("aggregate/{stream}")
}

fn head_name(stream: &str) -> String {
    format!("aggregate-head/{stream}")
}

/// Snapshots are caches of our own making, but a damaged one must not ask
/// for an impossible allocation.
fn snapshot_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

/// What a snapshot's state starts with, then a [`Snapshotted`] or
/// [`HeadSnapshotted`] state: the tag names the encoding, so that a snapshot
/// of another one is a cache miss. The store hands out only the bytes it
/// wrote (bound to the log and authenticated, `store::snapshots`), which is
/// what lets a directory's users be decoded later, when first reached.
/// `uts3`: users no longer hold a password hash (D2), so `uts2` users would
/// not decode.
const FRAME_TAG: [u8; 4] = *b"uts3";
/// The tag.
const FRAME_HEADER: usize = 4;

/// The state in a snapshot's bytes, if they are of this encoding.
fn framed(bytes: &[u8]) -> Option<&[u8]> {
    (bytes.get(..FRAME_HEADER)? == FRAME_TAG).then(|| &bytes[FRAME_HEADER..])
}

/// Decodes a record's payload, or names the record that cannot be read.
pub fn event_of(record: &Record) -> Result<Event, Error> {
    events::decode(record.schema_version, &record.payload)
        .map_err(|e| Error::Corrupt(format!("record {}: {e}", record.seq)))
}

/// Where and when a record landed.
pub fn stamp_of(record: &Record) -> Stamp {
    Stamp { seq: record.seq, at: record.recorded_at }
}

/// Decodes a head snapshot; `None` if it cannot be (a cache miss).
fn decode_head<A: Aggregate>(snapshot: &Snapshot) -> Option<Start<A>> {
    let (head, _) = bincode::serde::decode_from_slice(framed(&snapshot.state)?, snapshot_config()).ok()?;
    let HeadSnapshotted { version, since_series, state } = head;
    Some(Start { state, version, bytes: snapshot.state.len(), since_series })
}

/// A stream's state as of log position `upto`, and the stream's version then.
pub async fn load<A, S>(store: &S, stream: &str, upto: u64, snapshots: Snapshots) -> Result<(A, u64), Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    let mut starting = match snapshots {
        Snapshots::Use => start::<A, S>(store, stream, upto, Kind::Head).await?,
        Snapshots::Ignore => Starting::Ready(Start::empty()),
    };
    // The records after the snapshot are read while it is decoded.
    let (start, records) = loop {
        // A damaged snapshot may claim any version.
        let records = store.read_stream_until(stream, starting.version().saturating_add(1), upto).await?;
        match starting.finish().await {
            Ok(start) => break (start, records),
            // A snapshot that cannot be decoded is a cache miss: the next
            // kind is tried (a head snapshot's is the series), then none.
            Err(Kind::Head) => starting = start(store, stream, upto, Kind::Series).await?,
            Err(Kind::Series) => starting = Starting::Ready(Start::empty()),
        }
    };
    let Start { mut state, mut version, bytes: base_bytes, since_series } = start;
    let mut replayed = Replayed::default();
    let mut last_seq = 0;
    for record in &records {
        state.fold(event_of(record)?, stamp_of(record));
        version = record.version;
        last_seq = record.seq;
        replayed.records += 1;
        replayed.bytes += (record.payload.len() + RECORD_OVERHEAD) as u64;
    }
    if snapshots == Snapshots::Ignore || replayed.records == 0 {
        return Ok((state, version));
    }
    let since_series = Replayed {
        records: since_series.records + replayed.records,
        bytes: since_series.bytes + replayed.bytes,
    };
    // A replay that began in the archive leaves a head snapshot however
    // short it was: else every command on this stream would open the archive.
    let from_archive = records.first().is_some_and(|r| r.seq <= store.archived_upto());
    if since_series.at_least(MIN_REPLAY, base_bytes, REPLAY_PER_SNAPSHOT_BYTE) {
        save(store, stream, &state, version, last_seq).await?;
    } else if (from_archive || replayed.at_least(MIN_HEAD_REPLAY, base_bytes, HEAD_REPLAY_PER_SNAPSHOT_BYTE))
        && store.head().await?.is_none_or(|head| upto >= head.seq)
    {
        let head = HeadSnapshotted { version, since_series, state: &state };
        let bytes = encode(head, state.snapshot_size_hint())?;
        let name = head_name(stream);
        store.save_snapshot(&name, Snapshot { seq: last_seq, state: bytes }).await?;
        store.remove_snapshots(&name, last_seq).await?;
    }
    Ok((state, version))
}

/// The two kinds of snapshot of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Head,
    Series,
}

/// Where a load starts: a state at hand, or a snapshot whose version is
/// known and whose state is being decoded on another thread meanwhile.
enum Starting<A> {
    Ready(Start<A>),
    Decoding { version: u64, kind: Kind, task: tokio::task::JoinHandle<Option<Start<A>>> },
}

impl<A: Aggregate> Starting<A> {
    /// The stream's version at the snapshot.
    fn version(&self) -> u64 {
        match self {
            Starting::Ready(start) => start.version,
            Starting::Decoding { version, .. } => *version,
        }
    }

    /// The decoded start, or the kind of the snapshot that could not be decoded.
    async fn finish(self) -> Result<Start<A>, Kind> {
        match self {
            Starting::Ready(start) => Ok(start),
            Starting::Decoding { kind, task, .. } => task.await.ok().flatten().ok_or(kind),
        }
    }

    /// Starts decoding a snapshot of `kind` on a blocking thread, once its
    /// version (the first field of both kinds) reads; `None` if it does not.
    fn decoding(snapshot: Snapshot, kind: Kind) -> Option<Starting<A>> {
        #[derive(Deserialize)]
        struct VersionOf {
            version: u64,
        }
        let (VersionOf { version }, _) =
            bincode::serde::decode_from_slice(framed(&snapshot.state)?, snapshot_config()).ok()?;
        let task = tokio::task::spawn_blocking(move || match kind {
            Kind::Head => decode_head(&snapshot),
            Kind::Series => decode_series(&snapshot),
        });
        Some(Starting::Decoding { version, kind, task })
    }
}

/// The newest snapshot at or before `upto`, from `kind` on. A head
/// snapshot, when there is one, is newer than the whole series: it is only
/// saved at the log's head, from the newest snapshot there was, and saving
/// into the series removes those not newer. One that cannot be decoded is
/// a cache miss.
async fn start<A, S>(store: &S, stream: &str, upto: u64, kind: Kind) -> Result<Starting<A>, Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    if kind == Kind::Head {
        let head = store.load_snapshot(&head_name(stream), upto).await?;
        if let Some(starting) = head.and_then(|s| Starting::decoding(s, Kind::Head)) {
            return Ok(starting);
        }
    }
    let series = store.load_snapshot(&series_name(stream), upto).await?;
    Ok(series.and_then(|s| Starting::decoding(s, Kind::Series)).unwrap_or(Starting::Ready(Start::empty())))
}

/// Decodes a snapshot of the series; `None` if it cannot be (a cache miss).
fn decode_series<A: Aggregate>(snapshot: &Snapshot) -> Option<Start<A>> {
    let (s, _) =
        bincode::serde::decode_from_slice::<Snapshotted<A>, _>(framed(&snapshot.state)?, snapshot_config())
            .ok()?;
    Some(Start {
        state: s.state,
        version: s.version,
        bytes: snapshot.state.len(),
        since_series: Replayed::default(),
    })
}

/// Saves `state` as the snapshot of `stream` at log position `seq`, where
/// the stream was at `version`. For writers that have just folded what
/// they appended: the next reader starts from it instead of replaying.
pub async fn save<A, S>(store: &S, stream: &str, state: &A, version: u64, seq: u64) -> Result<(), Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    let bytes = snapshot_bytes(state, version)?;
    save_bytes(store, stream, bytes, seq).await
}

/// A state encoded as [`save`] stores it: CPU work a writer may do on
/// another thread while it finishes.
pub fn snapshot_bytes<A: Aggregate>(state: &A, version: u64) -> Result<Vec<u8>, Error> {
    encode(Snapshotted { version, state }, state.snapshot_size_hint())
}

/// Encodes a snapshot of either kind, framed, into a buffer of `size_hint`
/// bytes.
fn encode(snapshot: impl Serialize, size_hint: usize) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(FRAME_HEADER + size_hint);
    bytes.extend_from_slice(&FRAME_TAG);
    bincode::serde::encode_into_std_write(snapshot, &mut bytes, bincode::config::standard())
        .map_err(|e| Error::Corrupt(format!("cannot encode a snapshot: {e}")))?;
    Ok(bytes)
}

/// Stores what [`snapshot_bytes`] encoded as the snapshot of `stream` at
/// `seq`. Head snapshots not newer go first: none may be older than the
/// series (a crash in between loses a cache, nothing more).
pub async fn save_bytes<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    bytes: Vec<u8>,
    seq: u64,
) -> Result<(), Error> {
    let staged = stage(store, stream, bytes, seq).await?;
    publish(store, stream, staged).await
}

/// Writes what [`snapshot_bytes`] encoded as the snapshot of `stream` at
/// `seq`, where no reader looks yet: for a writer whose records are still
/// committing. [`publish`] then stores it as [`save_bytes`] would have.
pub async fn stage<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    bytes: Vec<u8>,
    seq: u64,
) -> Result<StagedSnapshot, Error> {
    Ok(store.stage_snapshot(&series_name(stream), Snapshot { seq, state: bytes }).await?)
}

/// Stores a snapshot of `stream` that [`stage`] wrote, as [`save_bytes`]
/// does.
pub async fn publish<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    staged: StagedSnapshot,
) -> Result<(), Error> {
    store.remove_snapshots(&head_name(stream), staged.seq().saturating_add(1)).await?;
    store.publish_snapshot(staged).await?;
    Ok(())
}

/// Every aggregate as of `upto`, folded from the first record, and the
/// version each stream had then.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// The directory and the tenant stream's version.
    pub tenant: (Tenant, u64),
    /// Each environment by stream name, with its version.
    pub environments: std::collections::BTreeMap<String, (Environment, u64)>,
    /// How many records were read.
    pub records: u64,
}

/// Records read per page of a rebuild.
const REBUILD_PAGE: usize = 8_192;

/// Rebuilds every aggregate from zero in one pass over the log, ignoring
/// snapshots: what checks them, and what a lost snapshot costs. The next
/// page is read while the current one is folded, so the store's decoding
/// and the fold run side by side.
pub async fn rebuild_all<S: EventStore + ?Sized>(store: &S, upto: u64) -> Result<Rebuilt, Error> {
    let mut rebuilt = Rebuilt::default();
    let mut page = store.read_log(1, upto, REBUILD_PAGE).await?;
    while let Some(last) = page.last() {
        let from = last.seq + 1;
        let (next, folded) =
            tokio::join!(store.read_log(from, upto, REBUILD_PAGE), async { rebuilt.fold_page(&page) });
        folded?;
        page = next?;
    }
    Ok(rebuilt)
}

impl Rebuilt {
    fn fold_page(&mut self, page: &[Record]) -> Result<(), Error> {
        for record in page {
            self.records += 1;
            if record.stream == domain::tenant::STREAM {
                self.tenant.0.fold(event_of(record)?, stamp_of(record));
                self.tenant.1 = record.version;
            } else if record.stream.starts_with(domain::environment::STREAM_PREFIX) {
                if !self.environments.contains_key(&record.stream) {
                    self.environments.insert(record.stream.clone(), Default::default());
                }
                if let Some((env, version)) = self.environments.get_mut(&record.stream) {
                    env.fold(event_of(record)?, stamp_of(record));
                    *version = record.version;
                }
            }
        }
        Ok(())
    }
}

/// A cache that is not the log's: named by `verify`, never used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFinding {
    /// The cache's name (`aggregate/<stream>`, `aggregate-head/<stream>`, `sync/<stream>`).
    pub name: String,
    /// The record it says it was folded to.
    pub seq: u64,
    /// What is wrong with it.
    pub what: String,
    /// The store vouches for it (authentic and bound), so a load would
    /// use it: only a key that leaked, or a fold that changed, makes one.
    pub trusted: bool,
}

impl std::fmt::Display for CacheFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cache {} at record {} {}", self.name, self.seq, self.what)
    }
}

/// Checks every cache against the log: the index blocks the store found
/// not the log's (and rebuilt), the store's check of each other cache
/// (authentic, and bound to the record at its seq), then, for a snapshot, that its state is
/// the fold of its stream up to that seq. Each stream is folded once, from
/// its first record forward through its snapshots.
pub async fn check_caches<S: EventStore + ?Sized>(store: &S) -> Result<Vec<CacheFinding>, Error> {
    let mut streams: std::collections::BTreeMap<String, Vec<(u64, String, Kind)>> = Default::default();
    let mut findings: Vec<CacheFinding> = (store.index_misses().into_iter())
        .map(|(seq, what)| CacheFinding {
            name: "index".into(),
            seq,
            what: format!("was not the log's ({what}); it was rebuilt from the records"),
            trusted: false,
        })
        .collect();
    for (name, seq) in store.snapshot_names().await? {
        let kind_stream = match name.split_once('/') {
            Some(("aggregate", stream)) => Some((Kind::Series, stream)),
            Some(("aggregate-head", stream)) => Some((Kind::Head, stream)),
            _ => None,
        };
        match kind_stream {
            Some((kind, stream)) => streams.entry(stream.to_owned()).or_default().push((seq, name, kind)),
            // Not a fold (a sync mark): authentic and bound is all there is to check.
            None => {
                if let Some(Err(miss)) = store.check_snapshot(&name, seq).await? {
                    findings.push(CacheFinding { name, seq, what: miss.to_string(), trusted: false });
                }
            }
        }
    }
    for (stream, mut caches) in streams {
        caches.sort_by_key(|(seq, _, _)| *seq);
        if stream == domain::tenant::STREAM {
            check_stream::<Tenant, S>(store, &stream, caches, &mut findings).await?;
        } else if stream.starts_with(domain::environment::STREAM_PREFIX) {
            check_stream::<Environment, S>(store, &stream, caches, &mut findings).await?;
        } else {
            let what = "is of no stream usertrail folds";
            findings.extend(caches.into_iter().map(|(seq, name, _)| CacheFinding {
                name,
                seq,
                what: what.to_owned(),
                trusted: false,
            }));
        }
    }
    Ok(findings)
}

/// Folds `stream` forward through its `caches` (sorted by seq), comparing each.
async fn check_stream<A, S>(
    store: &S,
    stream: &str,
    caches: Vec<(u64, String, Kind)>,
    findings: &mut Vec<CacheFinding>,
) -> Result<(), Error>
where
    A: Aggregate + PartialEq,
    S: EventStore + ?Sized,
{
    let (mut state, mut version) = (A::default(), 0);
    for (seq, name, kind) in caches {
        for record in store.read_stream_until(stream, version + 1, seq).await? {
            state.fold(event_of(&record)?, stamp_of(&record));
            version = record.version;
        }
        let snapshot = match store.check_snapshot(&name, seq).await? {
            None => continue,
            Some(Ok(snapshot)) => snapshot,
            Some(Err(miss)) => {
                findings.push(CacheFinding { name, seq, what: miss.to_string(), trusted: false });
                continue;
            }
        };
        let decoded = match kind {
            Kind::Head => decode_head::<A>(&snapshot),
            Kind::Series => decode_series::<A>(&snapshot),
        };
        let what = match decoded {
            None => "cannot be decoded",
            Some(start) if start.version != version || start.state != state => "differs from the log",
            Some(_) => continue,
        };
        findings.push(CacheFinding { name, seq, what: what.to_owned(), trusted: true });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::events::{SkuKind, TenantEvent};
    use store::{Append, Causation, ExpectedVersion, Metadata, NewEvent, SledStore};

    /// A store whose tenant stream holds one SKU and `changes` seat changes,
    /// one append each, and the runtime that drives it.
    struct Log {
        store: SledStore,
        rt: tokio::runtime::Runtime,
        version: u64,
    }

    impl Log {
        fn new() -> Log {
            Log::over(SledStore::temporary().unwrap())
        }

        fn over(store: SledStore) -> Log {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut log = Log { store, rt, version: 0 };
            log.append(TenantEvent::SkuAdded { sku: "DYN365_SALES".into(), kind: SkuKind::D365, seats: 1 });
            log
        }

        fn append(&mut self, event: TenantEvent) {
            let event = Event::Tenant(event);
            let append = Append {
                stream: domain::tenant::STREAM.into(),
                expected: ExpectedVersion::Exactly(self.version),
                events: vec![NewEvent {
                    event_id: uuid::Uuid::from_u128(u128::from(self.version) + 1),
                    event_type: event.type_name().into(),
                    schema_version: domain::SCHEMA_VERSION,
                    payload: events::encode(&event).unwrap(),
                }],
                meta: Metadata {
                    recorded_at: chrono::DateTime::UNIX_EPOCH,
                    actor: "admin".into(),
                    correlation_id: uuid::Uuid::nil(),
                    causation: Causation::Command { name: "test".into() },
                    origin: None,
                },
            };
            self.rt.block_on(self.store.append(append)).unwrap().unwrap();
            self.version += 1;
        }

        fn seat_changes(&mut self, n: u32) {
            for _ in 0..n {
                let seats = self.version as u32;
                self.append(TenantEvent::SkuSeatsChanged {
                    sku: "DYN365_SALES".into(),
                    old: seats,
                    new: seats + 1,
                });
            }
        }

        /// Loads with snapshots, checks the state against a full fold, and
        /// returns it.
        fn load(&self, upto: u64) -> Tenant {
            let used: (Tenant, u64) =
                self.rt.block_on(load(&self.store, "tenant", upto, Snapshots::Use)).unwrap();
            let full = self.rt.block_on(load(&self.store, "tenant", upto, Snapshots::Ignore)).unwrap();
            assert_eq!(used, full, "as of seq {upto}");
            used.0
        }

        /// The seq of the newest snapshot of `name` for the tenant.
        fn newest(&self, name: &str) -> Option<u64> {
            self.newest_at(name, u64::MAX)
        }

        /// The seq of the newest snapshot of `name` for the tenant at or before `upto`.
        fn newest_at(&self, name: &str, upto: u64) -> Option<u64> {
            let snapshot = self.rt.block_on(self.store.load_snapshot(&format!("{name}/tenant"), upto));
            snapshot.unwrap().map(|s| s.seq)
        }

        fn head_snapshots(&self) -> Vec<u64> {
            (1..=self.version)
                .filter(|&seq| {
                    let at =
                        self.rt.block_on(self.store.load_snapshot("aggregate-head/tenant", seq)).unwrap();
                    at.is_some_and(|s| s.seq == seq)
                })
                .collect()
        }
    }

    #[test]
    fn a_replay_that_began_in_the_archive_leaves_a_head_snapshot_so_the_next_one_stays_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let open = || {
            let archiving = store::Archiving { keep: 2 };
            SledStore::open(&path, store::OpenOptions { archiving, ..store::OpenOptions::default() }).unwrap()
        };
        let mut log = Log::over(open());
        log.seat_changes(69);
        log.load(u64::MAX);
        assert_eq!(log.newest("aggregate"), Some(70));
        log.seat_changes(5);
        let Log { store, rt, version } = log;
        drop(store);
        // The next close archives all but the newest two or three records.
        open().close().unwrap();
        let head_load = |store: &SledStore| -> Tenant {
            rt.block_on(load(store, "tenant", u64::MAX, Snapshots::Use)).unwrap().0
        };
        let store = open();
        assert!((70..75).contains(&store.archived_upto()), "{}", store.archived_upto());
        let tenant = head_load(&store);
        assert!(store.archive_is_open(), "records 71.. were in the archive");
        let log = Log { store, rt, version };
        assert_eq!(log.newest("aggregate-head"), Some(75), "a replay of 5 leaves a head snapshot");
        let Log { store, rt, .. } = log;
        drop(store);
        let store = open();
        let again: (Tenant, u64) = rt.block_on(load(&store, "tenant", u64::MAX, Snapshots::Use)).unwrap();
        assert_eq!(again.0, tenant);
        assert!(!store.archive_is_open(), "the next command starts from the head snapshot");
    }

    #[test]
    fn a_directory_of_imported_users_encodes_within_its_size_hint_without_much_slack() {
        use domain::events::{Profile, ProfileField, Stamp, UserType};
        let mut tenant = Tenant::default();
        let mut seq = 0;
        let mut apply = |tenant: &mut Tenant, event: TenantEvent| {
            seq += 1;
            tenant.apply(&event, Stamp { seq, at: chrono::DateTime::UNIX_EPOCH });
        };
        for part in ["DYN365_ENTERPRISE_SALES", "ENTERPRISEPACK"] {
            apply(&mut tenant, TenantEvent::SkuAdded { sku: part.into(), kind: SkuKind::D365, seats: 5000 });
        }
        // Shaped as the bench's Graph export shapes its users.
        for i in 0..2000u32 {
            let id = uuid::Uuid::from_u128(u128::from(i) + 1);
            let profile = Profile::from_iter([
                (ProfileField::GivenName, "User".to_owned()),
                (ProfileField::Surname, format!("Number {i}")),
                (ProfileField::DisplayName, format!("User Number {i}")),
                (ProfileField::JobTitle, "Account Manager".to_owned()),
                (ProfileField::Department, "Service".to_owned()),
                (ProfileField::OfficePhone, "+1 555 0100".to_owned()),
                (ProfileField::City, "Seattle".to_owned()),
                (ProfileField::Country, "FR".to_owned()),
            ]);
            apply(
                &mut tenant,
                TenantEvent::UserCreatedV2 {
                    id,
                    upn: format!("user{i}@contoso.onmicrosoft.com"),
                    user_type: UserType::Member,
                    profile,
                    home_licenses: vec![],
                    temporary_password: false,
                },
            );
            apply(&mut tenant, TenantEvent::LicenseAssigned { id, sku: "ENTERPRISEPACK".into() });
            if i % 3 == 0 {
                apply(
                    &mut tenant,
                    TenantEvent::LicenseAssigned { id, sku: "DYN365_ENTERPRISE_SALES".into() },
                );
            }
        }
        let (size, hint) = (snapshot_bytes(&tenant, seq).unwrap().len(), tenant.snapshot_size_hint());
        assert!(size <= hint, "{size} bytes encoded, {hint} hinted: the buffer would grow");
        assert!(size * 3 >= hint * 2, "{size} bytes encoded, {hint} hinted: too much room asked for");
    }

    #[test]
    fn a_read_at_the_head_leaves_one_head_snapshot_and_the_series_still_grows() {
        let mut log = Log::new();
        log.seat_changes(99);
        log.load(u64::MAX);
        assert_eq!(log.newest("aggregate"), Some(100), "a long first replay saves into the series");
        assert_eq!(log.newest("aggregate-head"), None);

        // Too short a replay for the series, long enough for a head snapshot.
        log.seat_changes(20);
        log.load(u64::MAX);
        assert_eq!((log.newest("aggregate"), log.head_snapshots()), (Some(100), vec![120]));
        log.seat_changes(20);
        log.load(u64::MAX);
        assert_eq!(log.head_snapshots(), vec![140], "only the newest head snapshot is kept");

        // The series gets its next snapshot from what the head snapshots
        // replayed between them, and the head snapshot it overtakes goes.
        log.seat_changes(20);
        log.load(u64::MAX);
        log.seat_changes(20);
        log.load(u64::MAX);
        assert_eq!((log.newest("aggregate"), log.head_snapshots()), (Some(180), vec![]));
    }

    #[test]
    fn a_read_of_the_past_leaves_no_head_snapshot_and_keeps_the_newer_one() {
        let mut log = Log::new();
        log.seat_changes(99);
        log.load(u64::MAX);
        log.seat_changes(40);
        log.load(130);
        assert_eq!(log.head_snapshots(), Vec::<u64>::new(), "seq 130 is not the head");
        log.load(u64::MAX);
        assert_eq!(log.head_snapshots(), vec![140]);
        // A long replay of the past saves into the series, before the head
        // snapshot, which stays.
        log.load(90);
        assert_eq!((log.newest_at("aggregate", 99), log.head_snapshots()), (Some(90), vec![140]));
        assert_eq!(log.load(u64::MAX).skus["dyn365_sales"].seats, 140);
    }

    #[test]
    fn a_snapshot_whose_version_reads_but_whose_state_does_not_is_a_cache_miss() {
        let (mut log, _) = marked_series_snapshot();
        log.seat_changes(20);
        // The records after it are read from the version its first field
        // gives, while the rest is decoded: when that fails, they are read
        // again from the next kind of snapshot, or from the first record.
        let damaged = |seq: u64| {
            // Tagged and saved by the store, so that only the decoding fails.
            let mut bytes = FRAME_TAG.to_vec();
            bytes.extend_from_slice(&[seq as u8, 0xff, 0xff, 0xff]);
            Snapshot { seq, state: bytes }
        };
        log.rt.block_on(log.store.save_snapshot("aggregate-head/tenant", damaged(110))).unwrap();
        let from_series = load_now(&log);
        assert!(from_series.skus.contains_key("marker"), "a damaged head snapshot: the series is next");
        assert_eq!(from_series.skus["dyn365_sales"].seats, 120);

        log.rt.block_on(log.store.remove_snapshots("aggregate-head/tenant", u64::MAX)).unwrap();
        log.rt.block_on(log.store.save_snapshot("aggregate/tenant", damaged(100))).unwrap();
        let from_zero = load_now(&log);
        assert!(!from_zero.skus.contains_key("marker"), "a damaged series snapshot: from the first record");
        assert_eq!(from_zero.skus["dyn365_sales"].seats, 120);
    }

    #[test]
    fn check_caches_names_a_snapshot_that_differs_from_the_fold_and_passes_the_others() {
        let mut log = Log::new();
        log.seat_changes(99);
        log.load(u64::MAX);
        log.seat_changes(20);
        log.load(u64::MAX);
        let check = |log: &Log| {
            let found = log.rt.block_on(check_caches(&log.store)).unwrap();
            found.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!((log.newest("aggregate"), log.head_snapshots()), (Some(100), vec![120]));
        assert_eq!(check(&log), Vec::<String>::new(), "the caches the fold left are the log's");
        // Authentic (written through the store) but not the fold: named.
        let (mut state, version) =
            log.rt.block_on(load::<Tenant, _>(&log.store, "tenant", 100, Snapshots::Ignore)).unwrap();
        state.skus.insert("marker".into(), state.skus["dyn365_sales"].clone());
        log.rt.block_on(save(&log.store, "tenant", &state, version, 100)).unwrap();
        let bad = Snapshot { seq: 120, state: FRAME_TAG.to_vec() };
        log.rt.block_on(log.store.save_snapshot("aggregate-head/tenant", bad)).unwrap();
        assert_eq!(
            check(&log),
            [
                "cache aggregate/tenant at record 100 differs from the log",
                "cache aggregate-head/tenant at record 120 cannot be decoded",
            ]
        );
    }

    #[test]
    fn a_head_snapshot_that_cannot_be_decoded_is_a_cache_miss() {
        let mut log = Log::new();
        log.seat_changes(99);
        log.load(u64::MAX);
        log.seat_changes(20);
        let snapshot = Snapshot { seq: 120, state: vec![0xff; 3] };
        log.rt.block_on(log.store.save_snapshot("aggregate-head/tenant", snapshot)).unwrap();
        assert_eq!(log.load(u64::MAX).skus["dyn365_sales"].seats, 120);
    }

    /// A log of 99 seat changes whose series snapshot at 100 carries a
    /// marker SKU, so that a load tells whether it started from it; and the
    /// snapshot's bytes.
    fn marked_series_snapshot() -> (Log, Vec<u8>) {
        let mut log = Log::new();
        log.seat_changes(99);
        let (mut state, version) =
            log.rt.block_on(load::<Tenant, _>(&log.store, "tenant", 100, Snapshots::Ignore)).unwrap();
        let sku = state.skus["dyn365_sales"].clone();
        state.skus.insert("marker".into(), sku);
        log.rt.block_on(save(&log.store, "tenant", &state, version, 100)).unwrap();
        let saved = log.rt.block_on(log.store.load_snapshot("aggregate/tenant", 100)).unwrap().unwrap();
        assert!(load_now(&log).skus.contains_key("marker"), "the load starts from it");
        (log, saved.state)
    }

    /// The directory now, from the snapshots as they are.
    fn load_now(log: &Log) -> Tenant {
        let load = load::<Tenant, _>(&log.store, "tenant", u64::MAX, Snapshots::Use);
        log.rt.block_on(load).unwrap().0
    }

    #[test]
    fn a_snapshot_file_with_a_byte_changed_is_a_cache_miss() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::over(SledStore::open(dir.path().join("db"), store::OpenOptions::default()).unwrap());
        let mut log = log;
        log.seat_changes(99);
        let (mut state, version) =
            log.rt.block_on(load::<Tenant, _>(&log.store, "tenant", 100, Snapshots::Ignore)).unwrap();
        state.skus.insert("marker".into(), state.skus["dyn365_sales"].clone());
        log.rt.block_on(save(&log.store, "tenant", &state, version, 100)).unwrap();
        assert!(load_now(&log).skus.contains_key("marker"), "the load starts from it");
        let file = dir.path().join("db/snapshots/6167677265676174652f74656e616e74/00000000000000000100");
        let bytes = std::fs::read(&file).unwrap();
        // Anywhere in the state: a byte in a user's encoding would otherwise
        // surface only when that user is first reached.
        for at in [0, 4 + FRAME_HEADER, bytes.len() / 2, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[at] ^= 0x01;
            std::fs::write(&file, &changed).unwrap();
            let state = load_now(&log);
            assert!(!state.skus.contains_key("marker"), "byte {at} changed: replayed from the first record");
            assert_eq!(state.skus["dyn365_sales"].seats, 100);
        }
    }

    #[test]
    fn a_snapshot_written_before_the_frame_is_a_cache_miss() {
        let (log, bytes) = marked_series_snapshot();
        // What an earlier usertrail wrote: the state alone, users inline.
        let unframed = bytes[FRAME_HEADER..].to_vec();
        log.rt
            .block_on(log.store.save_snapshot("aggregate/tenant", Snapshot { seq: 100, state: unframed }))
            .unwrap();
        let state = load_now(&log);
        assert!(!state.skus.contains_key("marker"));
        assert_eq!(state.skus["dyn365_sales"].seats, 100);
    }

    /// A user as a snapshot holds it, with every field of [`domain::tenant::User`] set.
    const USER_ENCODING: &str = concat!(
        "100123456789abcdef0123456789abcdef2f67756573745f66616272696b616d2e636f6d234558542340636f6e746f73",
        "6f2e6f6e6d6963726f736f66742e636f6d010200044761696c0a044c796f6e00010e454e54455250524953455041434b",
        "01065350455f453501010114323032362d30312d30395430303a30303a30305a0114323032362d30312d30385430303a",
        "30303a30305a01010e454e54455250524953455041434b14323032362d30312d31355430303a30303a30305a01020805",
        "010e454e54455250524953455041434b04010106",
    );

    #[test]
    fn a_user_encodes_as_the_frame_tag_says() {
        use domain::events::{AdminRole, FieldChange, Profile, ProfileField, Stamp, UserType};
        use domain::password::PasswordHash;
        let mut tenant = Tenant::default();
        let at =
            |day: u32| chrono::DateTime::from_timestamp(1_767_225_600 + i64::from(day) * 86_400, 0).unwrap();
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let events = [
            TenantEvent::SkuAdded { sku: "ENTERPRISEPACK".into(), kind: SkuKind::M365Dataverse, seats: 10 },
            TenantEvent::UserCreated {
                id,
                upn: "guest_fabrikam.com#EXT#@contoso.onmicrosoft.com".into(),
                user_type: UserType::Guest,
                profile: Profile::from_iter([(ProfileField::GivenName, "Gail".to_owned())]),
                // A landed event's hash folds into nothing (D2).
                password: PasswordHash { salt: [7; 16], digest: [8; 32] },
                home_licenses: vec!["SPE_E5".into()],
            },
            TenantEvent::InvitationIssued { id, sku: Some("ENTERPRISEPACK".into()), expires_at: at(14) },
            TenantEvent::InvitationAccepted { id, sku: Some("ENTERPRISEPACK".into()) },
            TenantEvent::UserUpdated {
                id,
                changes: vec![FieldChange { field: ProfileField::City, old: None, new: Some("Lyon".into()) }],
            },
            TenantEvent::AdminRoleAdded { id, role: AdminRole::PowerPlatform },
            TenantEvent::UserBlocked { id },
            TenantEvent::UserDeleted { id },
            TenantEvent::PasswordReset { id, password: PasswordHash { salt: [9; 16], digest: [9; 32] } },
            TenantEvent::PasswordResetV2 { id },
        ];
        for (seq, event) in (1..).zip(&events) {
            tenant.apply(event, Stamp { seq, at: at(u32::try_from(seq).unwrap()) });
        }
        let user = tenant.users.get(&id).unwrap();
        let bytes = bincode::serde::encode_to_vec(user, bincode::config::standard()).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // A snapshot keeps its users' bytes, authenticated by the store and
        // decoded when first reached: bytes of an older encoding would pass the check
        // and fail there, so a change to User's encoding needs a new
        // FRAME_TAG (which turns every older snapshot into a cache miss), and
        // then this constant.
        assert_eq!(hex, USER_ENCODING, "User's encoding changed: change FRAME_TAG, then USER_ENCODING");
        assert_eq!(&FRAME_TAG, b"uts3", "a new tag: then set USER_ENCODING to the new encoding");
    }
}
