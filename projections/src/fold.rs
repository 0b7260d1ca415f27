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

/// Replaying more records than this saves a snapshot for next time.
pub const SNAPSHOT_AFTER: usize = 256;

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
    let base = snapshot.as_ref().and_then(|s| {
        bincode::serde::decode_from_slice::<Snapshotted<A>, _>(&s.state, snapshot_config()).ok()
    });
    let (mut state, mut version) = match base {
        Some((s, _)) => (s.state, s.version),
        None => (A::default(), 0),
    };
    let records = store.read_stream_until(stream, version + 1, upto).await?;
    let mut replayed = 0;
    let mut last_seq = 0;
    for record in &records {
        state.fold(event_of(record)?, stamp_of(record));
        version = record.version;
        last_seq = record.seq;
        replayed += 1;
    }
    if snapshots == Snapshots::Use && replayed >= SNAPSHOT_AFTER {
        let saved = Snapshotted { version, state };
        let bytes = bincode::serde::encode_to_vec(&saved, bincode::config::standard())
            .map_err(|e| Error::Corrupt(format!("cannot encode a snapshot: {e}")))?;
        store.save_snapshot(&name, Snapshot { seq: last_seq, state: bytes }).await?;
        return Ok((saved.state, version));
    }
    Ok((state, version))
}
