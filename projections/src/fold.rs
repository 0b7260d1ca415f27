//! Folding streams into states, checkpointed: a state as of any log position
//! is the nearest snapshot at or before it, plus the stream's records after
//! it. Snapshots are caches; a fold without them gives the same state.

use domain::environment::Environment;
use domain::events::{self, Event, Stamp};
use domain::tenant::Tenant;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store::{EventStore, Record, Snapshot};

use crate::Error;

/// A writer that appended this many records to a stream saves its state.
pub const SNAPSHOT_AFTER: usize = 256;

/// A read saves a snapshot once it replayed at least this many records...
const MIN_REPLAY: usize = 64;
/// ...and about half as many bytes of records as the snapshot it started
/// from: replaying stays within a small factor of decoding a snapshot, and
/// snapshots take no more room than the records between them.
const REPLAY_PER_SNAPSHOT_BYTE: f64 = 0.5;
/// What a record costs to replay beyond its payload, in bytes.
const RECORD_OVERHEAD: usize = 100;

/// A state folded from one stream: the tenant, or an environment.
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    /// Folds one decoded record into the state.
    fn fold(&mut self, event: Event, stamp: Stamp);
}

impl Aggregate for Tenant {
    fn fold(&mut self, event: Event, stamp: Stamp) {
        if let Event::Tenant(e) = event {
            self.apply(&e, stamp);
        }
    }
}

impl Aggregate for Environment {
    fn fold(&mut self, event: Event, stamp: Stamp) {
        if let Event::Environment(e) = event {
            self.apply(&e, stamp);
        }
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

/// Snapshots are caches of our own making, but a damaged one must not ask
/// for an impossible allocation.
fn snapshot_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
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

/// A stream's state as of log position `upto`, and the stream's version then.
pub async fn load<A, S>(store: &S, stream: &str, upto: u64, snapshots: Snapshots) -> Result<(A, u64), Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    let name = format!("aggregate/{stream}");
    let snapshot = match snapshots {
        Snapshots::Use => store.load_snapshot(&name, upto).await?,
        Snapshots::Ignore => None,
    };
    let base_bytes = snapshot.as_ref().map_or(0, |s| s.state.len());
    let base = snapshot.as_ref().and_then(|s| {
        bincode::serde::decode_from_slice::<Snapshotted<A>, _>(&s.state, snapshot_config()).ok()
    });
    let (mut state, mut version) = match base {
        Some((s, _)) => (s.state, s.version),
        None => (A::default(), 0),
    };
    let records = store.read_stream_until(stream, version + 1, upto).await?;
    let mut replayed_bytes = 0;
    let mut last_seq = 0;
    for record in &records {
        state.fold(event_of(record)?, stamp_of(record));
        version = record.version;
        last_seq = record.seq;
        replayed_bytes += record.payload.len() + RECORD_OVERHEAD;
    }
    let worth_it =
        records.len() >= MIN_REPLAY && replayed_bytes as f64 >= base_bytes as f64 * REPLAY_PER_SNAPSHOT_BYTE;
    if snapshots == Snapshots::Use && worth_it {
        save(store, stream, &state, version, last_seq).await?;
    }
    Ok((state, version))
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
    bincode::serde::encode_to_vec(Snapshotted { version, state }, bincode::config::standard())
        .map_err(|e| Error::Corrupt(format!("cannot encode a snapshot: {e}")))
}

/// Stores what [`snapshot_bytes`] encoded as the snapshot of `stream` at `seq`.
pub async fn save_bytes<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    bytes: Vec<u8>,
    seq: u64,
) -> Result<(), Error> {
    store.save_snapshot(&format!("aggregate/{stream}"), Snapshot { seq, state: bytes }).await?;
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
