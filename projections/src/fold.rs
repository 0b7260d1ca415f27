//! Folding streams into states, checkpointed: a state as of any log position
//! is the nearest snapshot at or before it, plus the stream's records after
//! it. Snapshots are caches; a fold without them gives the same state.
//!
//! Each stream has one series of snapshots (`aggregate/<stream>`), spaced
//! so that a read anywhere in the past replays at most about half a
//! snapshot's bytes. Its newest may be a *sliding tip*: a read at the log's
//! head that replayed an eighth of a spacing saves one, so that a command,
//! which always reads at the head, replays a few records rather than up to
//! a spacing's worth; while the tip is less than one spacing past the
//! snapshot before it, the next such save replaces it.
//!
//! The directory's snapshot keeps its users, UPN index and groups in parts
//! ([`domain::parted`]) beside a small head. A command's load
//! ([`load_parted`]) reads the head and only the parts that folding the
//! records after it reaches; the shell reads more as its decision reaches
//! them ([`read_parts`]). A fold that reached a part it lacked is void, and
//! folds again once the part is read: no state is ever built on a part not read.

use std::collections::BTreeSet;

use domain::environment::Environment;
use domain::events::{self, Event, Stamp};
use domain::parted::{Part, PartError};
use domain::tenant::Tenant;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store::{EventStore, Holder, PartEntry, Record, Snapshot, SnapshotPart, StagedSnapshot};

use crate::Error;

/// A writer that appended this many records to a stream saves its state.
pub const SNAPSHOT_AFTER: usize = 256;

/// Snapshots kept in the series are at least this many records apart...
const MIN_REPLAY: u64 = 64;
/// ...and about half as many bytes of records as the snapshot: replaying
/// stays within a small factor of decoding a snapshot, and snapshots take
/// no more room than the records between them.
const REPLAY_PER_SNAPSHOT_BYTE: f64 = 0.5;
/// A read at the head saves a tip once it replayed this fraction of a spacing.
const TIPS_PER_SPACING: u64 = 8;
/// What a record costs to replay beyond its payload, in bytes.
const RECORD_OVERHEAD: usize = 100;

/// A state folded from one stream: the tenant, or an environment.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + 'static {
    /// Folds one decoded record into the state.
    fn fold(&mut self, event: Event, stamp: Stamp);

    /// About how many bytes the state's snapshot head takes, erring high: a
    /// buffer grown from empty would be copied some twenty times over on
    /// the way to tens of megabytes.
    fn snapshot_size_hint(&self) -> usize;

    /// The parts its snapshot keeps apart from the head, in order.
    fn parts(&self) -> Result<Vec<Part>, String> {
        Ok(Vec::new())
    }

    /// The parts of the snapshot it was loaded from that are not read yet.
    fn absent_parts(&self) -> Vec<u32> {
        Vec::new()
    }

    /// The absent parts reached since the last call: what was folded or
    /// decided meanwhile is void.
    fn take_misses(&self) -> BTreeSet<u32> {
        BTreeSet::new()
    }

    /// Reads part `index` of the snapshot it was loaded from.
    fn fill(&mut self, index: u32, _bytes: &[u8]) -> Result<(), PartError> {
        Err(PartError { what: "state", part: index, why: "has no parts".into() })
    }

    /// Takes the snapshot just saved of it as the one its absent parts are read from.
    fn saved(&mut self) {}
}

impl Aggregate for Tenant {
    fn fold(&mut self, event: Event, stamp: Stamp) {
        if let Event::Tenant(e) = event {
            self.apply(&e, stamp);
        }
    }

    fn snapshot_size_hint(&self) -> usize {
        // The users, UPNs and groups are parts: the head is SKUs, environment
        // names, seat counts and invitations.
        4096 + self.skus.len() * 128 + self.environments().count() * 64
    }

    fn parts(&self) -> Result<Vec<Part>, String> {
        Tenant::parts(self)
    }

    fn absent_parts(&self) -> Vec<u32> {
        Tenant::absent_parts(self)
    }

    fn take_misses(&self) -> BTreeSet<u32> {
        Tenant::take_misses(self)
    }

    fn fill(&mut self, index: u32, bytes: &[u8]) -> Result<(), PartError> {
        Tenant::fill(self, index, bytes)
    }

    fn saved(&mut self) {
        Tenant::saved(self)
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

/// A snapshot's head; a tip's encoding goes on with [`Replayed`], how far
/// it is past the snapshot before it.
#[derive(Serialize, Deserialize)]
struct Snapshotted<A> {
    version: u64,
    /// The bytes of its parts, which the spacing counts with the head's.
    parts_bytes: u64,
    state: A,
}

/// Records replayed: how many, and their bytes (with [`RECORD_OVERHEAD`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Replayed {
    records: u64,
    bytes: u64,
}

impl Replayed {
    /// Whether this much replay is `1 / per_spacing` of a spacing, for a
    /// snapshot of `snapshot_bytes`.
    fn spans(self, snapshot_bytes: usize, per_spacing: u64) -> bool {
        self.records.saturating_mul(per_spacing) >= MIN_REPLAY
            && self.bytes as f64 * per_spacing as f64 >= snapshot_bytes as f64 * REPLAY_PER_SNAPSHOT_BYTE
    }
}

impl std::ops::Add for Replayed {
    type Output = Replayed;
    fn add(self, other: Replayed) -> Replayed {
        // Saturating: a tip's trailer is a cache's bytes.
        Replayed {
            records: self.records.saturating_add(other.records),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// Where a load starts from.
struct Start<A> {
    state: A,
    version: u64,
    /// The snapshot's size, its parts' included (0: none).
    bytes: usize,
    /// For a tip, how far it is past the snapshot before it.
    tip: Option<Replayed>,
    /// The snapshot's seq, whose absent parts the state may read.
    source: Option<u64>,
}

impl<A: Default> Start<A> {
    fn empty() -> Start<A> {
        Start { state: A::default(), version: 0, bytes: 0, tip: None, source: None }
    }
}

fn series_name(stream: &str) -> String {
    format!("aggregate/{stream}")
}

/// Snapshots are caches of our own making, but a damaged one must not ask
/// for an impossible allocation.
fn snapshot_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

/// What a snapshot's state starts with, then a [`Snapshotted`] state: the
/// tag names the encoding, so that a snapshot of another one is a cache
/// miss. The store hands out only the bytes it wrote (bound to the log and
/// authenticated, `store::snapshots`), which is what lets a directory's
/// users be decoded later, when first reached. `uts3`: users no longer hold
/// a password hash (D2), so `uts2` users would not decode. `uts4`: SKUs
/// hold their Graph `skuId`, so a `uts3` tenant would not decode. `uts5`:
/// environments hold their observed SystemUser table (issue 32), and a
/// `uts4` one would read a tip's bytes as it. `uts6`: groups are stored each
/// as its own encoding, decoded when first reached. `uts7`: the directory's
/// users, UPN index and groups are parts (`domain::parted`), and the head
/// counts their bytes.
const FRAME_TAG: [u8; 4] = *b"uts7";
/// The tag.
const FRAME_HEADER: usize = 4;

/// Decodes a record's payload, or names the record that cannot be read.
pub fn event_of(record: &Record) -> Result<Event, Error> {
    events::decode(record.schema_version, &record.payload)
        .map_err(|e| Error::Corrupt(format!("record {}: {e}", record.seq)))
}

/// Where and when a record landed.
pub fn stamp_of(record: &Record) -> Stamp {
    Stamp { seq: record.seq, at: record.recorded_at }
}

/// Decodes a snapshot's head, its parts left absent; `None` if it cannot
/// be (a cache miss).
fn decode<A: Aggregate>(snapshot: &Snapshot) -> Option<Start<A>> {
    let framed = &snapshot.state;
    let bytes = (framed.get(..FRAME_HEADER)? == FRAME_TAG).then(|| &framed[FRAME_HEADER..])?;
    let (Snapshotted { version, parts_bytes, state }, read) =
        bincode::serde::decode_from_slice(bytes, snapshot_config()).ok()?;
    let tip = match bytes.get(read..)? {
        [] => None,
        rest => match bincode::serde::decode_from_slice(rest, snapshot_config()).ok()? {
            (tip, read) if read == rest.len() => Some(tip),
            _ => return None,
        },
    };
    let size = framed.len().saturating_add(usize::try_from(parts_bytes).unwrap_or(usize::MAX));
    Some(Start { state, version, bytes: size, tip, source: Some(snapshot.seq) })
}

/// A state folded to a point, with what it needs to read its absent parts.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state; with absent parts, read by [`read_parts`] as they are reached.
    pub state: A,
    /// The stream's version at that point.
    pub version: u64,
    /// The seq of the snapshot it was loaded from (`None`: folded from the first record).
    pub source: Option<u64>,
}

/// Reads parts `which` of the snapshot of `stream` at `source` into
/// `state`. `false`: they cannot be read (the snapshot is gone, replaced
/// or damaged since): the state must be loaded again.
pub async fn read_parts<A, S>(
    store: &S,
    stream: &str,
    source: Option<u64>,
    state: &mut A,
    which: &BTreeSet<u32>,
) -> Result<bool, Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    if which.is_empty() {
        return Ok(true);
    }
    let Some(seq) = source else { return Ok(false) };
    let which: Vec<u32> = which.iter().copied().collect();
    let Some(parts) = store.snapshot_parts(&series_name(stream), seq, &which).await? else {
        return Ok(false);
    };
    Ok(which.iter().zip(&parts).all(|(&index, bytes)| state.fill(index, bytes).is_ok()))
}

/// Reads parts `which` into `loaded`; if one cannot be read (its snapshot
/// gone or damaged since it was loaded), folds the stream whole from the
/// log instead, to the head: a lost cache costs time, never a decision.
pub async fn read_or_refold<A, S>(
    store: &S,
    stream: &str,
    loaded: &mut Loaded<A>,
    which: &BTreeSet<u32>,
) -> Result<(), Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    if !read_parts(store, stream, loaded.source, &mut loaded.state, which).await? {
        let (state, version) = load(store, stream, u64::MAX, Snapshots::Ignore).await?;
        *loaded = Loaded { state, version, source: None };
    }
    Ok(())
}

/// A stream's state as of log position `upto`, whole, and the stream's version then.
pub async fn load<A, S>(store: &S, stream: &str, upto: u64, snapshots: Snapshots) -> Result<(A, u64), Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    let loaded = load_with(store, stream, upto, snapshots, true).await?;
    Ok((loaded.state, loaded.version))
}

/// A stream's state as of log position `upto`, with only the parts of its
/// snapshot that folding the records after it reached: for a command,
/// which reads more of them through [`read_parts`] as it reaches them.
pub async fn load_parted<A, S>(store: &S, stream: &str, upto: u64) -> Result<Loaded<A>, Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    load_with(store, stream, upto, Snapshots::Use, false).await
}

async fn load_with<A, S>(
    store: &S,
    stream: &str,
    upto: u64,
    snapshots: Snapshots,
    whole: bool,
) -> Result<Loaded<A>, Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    // A part that cannot be read makes its snapshot a miss: another writer
    // may have just replaced that tip, so once more, then from the first record.
    let tries = if snapshots == Snapshots::Use { 2 } else { 1 };
    for _ in 0..tries {
        if let Some(loaded) = try_load(store, stream, upto, snapshots, whole).await? {
            return Ok(loaded);
        }
    }
    match try_load(store, stream, upto, Snapshots::Ignore, whole).await? {
        Some(loaded) => Ok(loaded),
        None => Err(Error::Corrupt(format!("stream {stream} folded from its first record reached a part"))),
    }
}

/// [`load_with`] from the nearest snapshot; `None`: one of its parts could not be read.
async fn try_load<A, S>(
    store: &S,
    stream: &str,
    upto: u64,
    snapshots: Snapshots,
    whole: bool,
) -> Result<Option<Loaded<A>>, Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    let name = series_name(stream);
    let loaded = match snapshots {
        Snapshots::Use => store.load_snapshot(&name, upto).await?,
        Snapshots::Ignore => None,
    };
    let start = loaded.as_ref().and_then(decode::<A>).unwrap_or_else(Start::empty);
    let Start { state: mut base, version: base_version, bytes: base_bytes, tip, source } = start;
    let all = base_parts(&base);
    if whole && !read_parts(store, stream, source, &mut base, &all).await? {
        return Ok(None);
    }
    // A load in part from a snapshot of the series notes the head first: if
    // no record of the stream follows the snapshot, the state is the
    // stream's as of that head too.
    let stale = !whole && snapshots == Snapshots::Use && tip.is_none() && source.is_some();
    let head_before = if stale { store.head().await?.map(|head| head.seq) } else { None };
    // A damaged snapshot may claim any version.
    let records = store.read_stream_until(stream, base_version.saturating_add(1), upto).await?;
    // A fold that reached an absent part is void: the part is read into the
    // base and the records are folded again. The first fold goes into a
    // copy of the head, which costs little; the second into the base
    // itself, and a miss then (the parts read led it elsewhere) loads again.
    let mut tail_parts = 0;
    let mut first_round = true;
    let state = loop {
        let copy = first_round && !base.absent_parts().is_empty();
        let mut state = if copy { base.clone() } else { std::mem::take(&mut base) };
        for record in &records {
            state.fold(event_of(record)?, stamp_of(record));
        }
        let missed = state.take_misses();
        if missed.is_empty() {
            break state;
        }
        if !copy {
            return Ok(None);
        }
        first_round = false;
        tail_parts += missed.len();
        if !read_parts(store, stream, source, &mut base, &missed).await? {
            return Ok(None);
        }
    };
    let version = records.last().map_or(base_version, |r| r.version);
    let mut loaded = Loaded { state, version, source };
    if snapshots == Snapshots::Ignore {
        return Ok(Some(loaded));
    }
    // Where a snapshot would be saved: after the records folded, or, for a
    // load in part that folded none, at the head the log moved on to since
    // its snapshot of the series, whose record may have gone to the archive
    // (opening it to check that snapshot's binding costs a command 10-20 ms).
    let (first, last) = match (records.first(), records.last()) {
        (Some(first), Some(last)) => (Some(first.seq), last.seq),
        _ => match head_before.filter(|head| Some(*head) > source) {
            Some(head) if upto >= head => (None, head),
            _ => return Ok(Some(loaded)),
        },
    };
    let replayed = records.iter().fold(Replayed::default(), |sum, record| {
        sum + Replayed { records: 1, bytes: (record.payload.len() + RECORD_OVERHEAD) as u64 }
    });
    // What lies between this state and the snapshot before the tip, if it started from one.
    let since = tip.map_or(replayed, |tip| tip + replayed);
    let spaced = since.spans(base_bytes, 1);
    // A tip of a state read in part costs the parts it read, and points at
    // the others: it is worth saving once the records after its snapshot
    // made a load read a few parts, which every command would read again;
    // or any, after a snapshot of the series (see above).
    let worth_a_tip = first.is_none() || tail_parts >= TAIL_PARTS || (tail_parts > 0 && tip.is_none());
    if spaced
        || (replayed.spans(base_bytes, TIPS_PER_SPACING) || worth_a_tip)
            && store.head().await?.is_none_or(|head| upto >= head.seq)
    {
        // The records folded since the snapshot it started from must be the
        // log's: a cache of an altered record would outlive its repair.
        // From the first record folded: the records between the snapshot
        // and it are other streams', and a sparse stream's gap may be most
        // of the log.
        if let Some(first) = first {
            if store.chain_break(first, last).await?.is_some() {
                return Ok(Some(loaded));
            }
        }
        let from = source.unwrap_or(0);
        let tip_since = (!spaced).then_some(since);
        let Some(snapshot) = snapshot_with(store, stream, &loaded, tip_since, last).await? else {
            return Ok(Some(loaded));
        };
        let apart = apart_holders(&snapshot);
        store.save_snapshot(&name, snapshot).await?;
        // The snapshot it started from may go below: what it has not read
        // is read from this one, which holds or points at the same parts.
        loaded.state.saved();
        loaded.source = Some(last);
        // The tip it started from goes, and so does any newer snapshot it
        // was passed over for (a miss).
        let replaced = if tip.is_some() { from } else { from + 1 };
        store.remove_snapshots(&name, replaced..last).await?;
        // Parts held apart for the snapshots it replaces, but for those it
        // points at; those of a newer tip another writer saved meanwhile stay.
        // So do those at or below the newest snapshot below the one it
        // started from: a snapshot points at no holder newer than itself,
        // and one left below (a tip a writer was killed before removing, or
        // one an import's snapshot passed) may point at any older one.
        let below = store.snapshot_names().await?.into_iter().filter(|(n, seq)| *n == name && *seq < from);
        let stay = below.map(|(_, seq)| seq + 1).max().unwrap_or(0);
        let holder = store::parts_holder(&name);
        let mut gap = stay;
        for kept in apart.into_iter().filter(|seq| (stay..=from).contains(seq)).chain([from + 1]) {
            store.remove_snapshots(&holder, gap..kept).await?;
            gap = kept + 1;
        }
        // An earlier usertrail kept its newest head snapshot apart.
        store.remove_snapshots(&format!("aggregate-head/{stream}"), 0..u64::MAX).await?;
    }
    Ok(Some(loaded))
}

/// A tip is saved once the records after its snapshot made a load read this many parts.
const TAIL_PARTS: usize = 4;

/// Every part of `state` not read yet.
fn base_parts<A: Aggregate>(state: &A) -> BTreeSet<u32> {
    state.absent_parts().into_iter().collect()
}

/// The seqs of the holders apart ([`store::parts_holder`]) whose parts `snapshot` points at.
fn apart_holders(snapshot: &Snapshot) -> BTreeSet<u64> {
    let held = snapshot.parts.iter().filter_map(|part| match part {
        SnapshotPart::Held(PartEntry { held_by: Some(Holder { seq, apart: true, .. }), .. }) => Some(*seq),
        _ => None,
    });
    held.collect()
}

/// A loaded state as a snapshot at `seq`; `None` if a part it needs cannot
/// be read.
///
/// A snapshot of the series holds every part: those not read are copied
/// from the snapshot it was loaded from. A tip (`tip`, how far it is past
/// the series' snapshot before it) points instead: at the snapshot or holder
/// that holds each part it did not read, and at a holder of its own
/// ([`store::parts_holder`], at `seq`) for those it read; so that it costs
/// what it read, not the directory.
async fn snapshot_with<A, S>(
    store: &S,
    stream: &str,
    loaded: &Loaded<A>,
    tip: Option<Replayed>,
    seq: u64,
) -> Result<Option<Snapshot>, Error>
where
    A: Aggregate,
    S: EventStore + ?Sized,
{
    let name = series_name(stream);
    let parts = loaded.state.parts().map_err(Error::Corrupt)?;
    let kept: Vec<u32> =
        parts.iter().filter_map(|p| if let Part::Kept(i) = p { Some(*i) } else { None }).collect();
    let encoded =
        || parts.iter().filter_map(|p| if let Part::Encoded(b) = p { Some(b.clone()) } else { None });
    // Where the parts not read are: copied for the series, pointed at by a tip.
    let mut from_source: std::collections::BTreeMap<u32, SnapshotPart> = Default::default();
    if let (false, Some(source)) = (kept.is_empty(), loaded.source) {
        if tip.is_none() {
            let Some(copied) = store.snapshot_parts(&name, source, &kept).await? else { return Ok(None) };
            from_source.extend(kept.iter().copied().zip(copied.into_iter().map(SnapshotPart::Bytes)));
        } else {
            let Some(table) = store.snapshot_table(&name, source).await? else { return Ok(None) };
            for &index in &kept {
                let Some(entry) = table.get(index as usize) else { return Ok(None) };
                let here = Holder { seq: source, index, apart: false };
                let held_by = Some(entry.held_by.unwrap_or(here));
                from_source.insert(index, SnapshotPart::Held(PartEntry { held_by, ..entry.clone() }));
            }
        }
    }
    // A tip's parts read go to its holder, whose table gives their digests.
    let own: Vec<SnapshotPart> = if tip.is_some() && parts.iter().any(|p| matches!(p, Part::Encoded(_))) {
        let holder = store::parts_holder(&name);
        let held = Snapshot { seq, state: Vec::new(), parts: encoded().map(SnapshotPart::Bytes).collect() };
        store.save_snapshot(&holder, held).await?;
        let Some(table) = store.snapshot_table(&holder, seq).await? else { return Ok(None) };
        let at = |index| Some(Holder { seq, index, apart: true });
        (0u32..)
            .zip(table)
            .map(|(index, entry)| SnapshotPart::Held(PartEntry { held_by: at(index), ..entry }))
            .collect()
    } else {
        encoded().map(SnapshotPart::Bytes).collect()
    };
    let mut own = own.into_iter();
    let mut resolved = Vec::with_capacity(parts.len());
    for part in &parts {
        let part = match part {
            Part::Encoded(_) => own.next(),
            Part::Kept(index) => from_source.remove(index),
        };
        let Some(part) = part else { return Ok(None) };
        resolved.push(part);
    }
    let parts_bytes = resolved
        .iter()
        .map(|part| match part {
            SnapshotPart::Bytes(bytes) => bytes.len() as u64,
            SnapshotPart::Held(entry) => entry.len,
        })
        .sum();
    let state = encode(&loaded.state, loaded.version, parts_bytes, tip)?;
    Ok(Some(Snapshot { seq, state, parts: resolved }))
}

/// Saves a snapshot of `stream` that [`snapshot_of`] encoded at log
/// position `seq`. For writers that have just folded what they appended:
/// the next reader starts from it instead of replaying. A tip before it
/// stays, a snapshot of the series like the others.
pub async fn save_encoded<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    snapshot: Snapshot,
) -> Result<(), Error> {
    Ok(store.save_snapshot(&series_name(stream), snapshot).await?)
}

/// A whole state as [`save_encoded`] stores it at `seq`: CPU work a writer may do
/// on another thread while it finishes.
pub fn snapshot_of<A: Aggregate>(state: &A, version: u64, seq: u64) -> Result<Snapshot, Error> {
    let parts = state.parts().map_err(Error::Corrupt)?;
    let parts: Vec<SnapshotPart> = parts
        .into_iter()
        .map(|part| match part {
            Part::Encoded(bytes) => Ok(SnapshotPart::Bytes(bytes)),
            Part::Kept(i) => {
                Err(Error::Corrupt(format!("part {i} was never read: only a whole state is saved so")))
            }
        })
        .collect::<Result<_, _>>()?;
    let parts_bytes =
        parts.iter().map(|p| if let SnapshotPart::Bytes(b) = p { b.len() as u64 } else { 0 }).sum();
    let state = encode(state, version, parts_bytes, None)?;
    Ok(Snapshot { seq, state, parts })
}

/// Encodes a snapshot's head, framed, and for a tip how far it is past the
/// one before it.
fn encode<A: Aggregate>(
    state: &A,
    version: u64,
    parts_bytes: u64,
    tip: Option<Replayed>,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(FRAME_HEADER + state.snapshot_size_hint());
    bytes.extend_from_slice(&FRAME_TAG);
    let config = bincode::config::standard();
    bincode::serde::encode_into_std_write(Snapshotted { version, parts_bytes, state }, &mut bytes, config)
        .and_then(|_| tip.map_or(Ok(0), |tip| bincode::serde::encode_into_std_write(tip, &mut bytes, config)))
        .map_err(|e| Error::Corrupt(format!("cannot encode a snapshot: {e}")))?;
    Ok(bytes)
}

/// Writes what [`snapshot_of`] encoded as the snapshot of `stream`, where
/// no reader looks yet: for a writer whose records are still committing.
/// [`publish`] then stores it as [`save_encoded`] would have.
pub async fn stage<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    snapshot: Snapshot,
) -> Result<StagedSnapshot, Error> {
    Ok(store.stage_snapshot(&series_name(stream), snapshot).await?)
}

/// Stores a snapshot that [`stage`] wrote, as [`save_encoded`] does.
pub async fn publish<S: EventStore + ?Sized>(store: &S, staged: StagedSnapshot) -> Result<(), Error> {
    Ok(store.publish_snapshot(staged).await?)
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
    /// The cache's name (`aggregate/<stream>`, `sync/<stream>`).
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
    let mut streams: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    let mut findings: Vec<CacheFinding> = (store.index_misses().into_iter())
        .map(|(seq, what)| CacheFinding {
            name: "index".into(),
            seq,
            what: format!("was not the log's ({what}); it was rebuilt from the records"),
            trusted: false,
        })
        .collect();
    for (name, seq) in store.snapshot_names().await? {
        match name.strip_prefix("aggregate/") {
            Some(stream) => streams.entry(stream.to_owned()).or_default().push((seq, name)),
            // Not a fold (a sync mark): authentic and bound is all there is to check.
            None => {
                if let Some(Err(miss)) = store.check_snapshot(&name, seq).await? {
                    findings.push(CacheFinding { name, seq, what: miss.to_string(), trusted: false });
                }
            }
        }
    }
    for (stream, mut caches) in streams {
        caches.sort();
        if stream == domain::tenant::STREAM {
            check_stream::<Tenant, S>(store, &stream, caches, &mut findings).await?;
        } else if stream.starts_with(domain::environment::STREAM_PREFIX) {
            check_stream::<Environment, S>(store, &stream, caches, &mut findings).await?;
        } else {
            let what = "is of no stream usertrail folds";
            findings.extend(caches.into_iter().map(|(seq, name)| CacheFinding {
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
    caches: Vec<(u64, String)>,
    findings: &mut Vec<CacheFinding>,
) -> Result<(), Error>
where
    A: Aggregate + PartialEq,
    S: EventStore + ?Sized,
{
    let (mut state, mut version) = (A::default(), 0);
    for (seq, name) in caches {
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
        let what = match decode::<A>(&snapshot) {
            None => "cannot be decoded",
            Some(mut start) => {
                let parts = base_parts(&start.state);
                if !read_parts(store, stream, Some(seq), &mut start.state, &parts).await? {
                    "has a part that cannot be read"
                } else if start.version != version || start.state != state {
                    "differs from the log"
                } else {
                    continue;
                }
            }
        };
        findings.push(CacheFinding { name, seq, what: what.to_owned(), trusted: true });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `state` saved as a writer saves what it folded.
    async fn save<A: Aggregate, S: EventStore + ?Sized>(
        store: &S,
        stream: &str,
        state: &A,
        version: u64,
        seq: u64,
    ) -> Result<(), Error> {
        save_encoded(store, stream, snapshot_of(state, version, seq)?).await
    }
    use domain::events::{SkuKind, TenantEvent};
    use store::{Append, Causation, ExpectedVersion, Metadata, NewEvent, SledStore};

    /// What the tests' appends are stamped with.
    fn test_meta() -> Metadata {
        Metadata {
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            actor: "admin".into(),
            correlation_id: uuid::Uuid::nil(),
            causation: Causation::Command { name: "test".into() },
            origin: None,
        }
    }

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
                meta: test_meta(),
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

        /// The seqs of the tenant's snapshots.
        fn series(&self) -> Vec<u64> {
            let names = self.rt.block_on(self.store.snapshot_names()).unwrap();
            names.into_iter().filter(|(name, _)| name == "aggregate/tenant").map(|(_, seq)| seq).collect()
        }
    }

    #[test]
    fn a_directory_of_imported_users_keeps_them_in_parts_and_its_head_within_its_size_hint() {
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
        let snapshot = snapshot_of(&tenant, seq, seq).unwrap();
        let (size, hint) = (snapshot.state.len(), tenant.snapshot_size_hint());
        assert!(size <= hint, "{size} bytes encoded, {hint} hinted: the buffer would grow");
        assert!(size < 512, "the head holds no user: {size} bytes");
        // Some 300 bytes a user, in parts of a few hundred users.
        let lens: Vec<usize> = snapshot
            .parts
            .iter()
            .map(|p| match p {
                SnapshotPart::Bytes(bytes) => bytes.len(),
                SnapshotPart::Held(_) => panic!("a whole state holds its parts"),
            })
            .collect();
        let parts: usize = lens.iter().sum();
        assert!((500_000..800_000).contains(&parts), "{parts} bytes of parts");
        assert!(lens.len() >= 8 && lens.iter().all(|len| *len < 200_000), "{lens:?}");
    }

    /// `log` with `n` users more, its directory's snapshot saved whole at the head.
    fn directory_of(mut log: Log, n: u128) -> (Log, u64) {
        use domain::events::{Profile, UserType};
        for i in 0..n {
            log.append(TenantEvent::UserCreatedV2 {
                id: uuid::Uuid::from_u128(1000 + i),
                upn: format!("user{i}@contoso.onmicrosoft.com"),
                user_type: UserType::Member,
                profile: Profile::default(),
                home_licenses: vec![],
                temporary_password: false,
            });
        }
        let (tenant, _) =
            log.rt.block_on(load::<Tenant, _>(&log.store, "tenant", u64::MAX, Snapshots::Ignore)).unwrap();
        let seq = log.rt.block_on(log.store.head()).unwrap().unwrap().seq;
        log.rt.block_on(save(&log.store, "tenant", &tenant, log.version, seq)).unwrap();
        (log, seq)
    }

    /// Issue 29 (8g): a command's load reads the directory's head and the
    /// parts the records after it reach, not the others; read whole, it is
    /// the fold of the log.
    #[test]
    fn a_load_in_part_reads_only_the_parts_its_records_reach_and_whole_is_the_fold() {
        let (mut log, seq) = directory_of(Log::new(), 1_200);
        let id = uuid::Uuid::from_u128(1000 + 7);
        log.append(TenantEvent::UserBlocked { id });
        let mut loaded: Loaded<Tenant> =
            log.rt.block_on(load_parted(&log.store, "tenant", u64::MAX)).unwrap();
        // It read a part after a snapshot of the series: it left a tip there,
        // whence it reads the rest.
        assert_eq!(log.series(), [seq, seq + 1]);
        assert_eq!(loaded.source, Some(seq + 1));
        let absent = base_parts(&loaded.state);
        let total = loaded.state.parts().unwrap().len();
        assert!(
            total >= 7 && absent.len() == total - 1,
            "the blocked user's part alone was read: {absent:?}"
        );
        assert!(!loaded.state.users.get(&id).unwrap().can_sign_in(), "folded into the part it read");
        assert!(log
            .rt
            .block_on(read_parts(&log.store, "tenant", loaded.source, &mut loaded.state, &absent))
            .unwrap());
        assert_eq!(loaded.state, log.load(u64::MAX));
    }

    /// Issue 29: commands at the head, each reaching other users, leave tips
    /// that hold apart the parts they read and point at the rest; every
    /// load is the fold, the caches left are the log's, and holders no tip
    /// points at go.
    #[test]
    fn tips_of_loads_in_part_hold_what_they_read_and_stay_the_fold() {
        let (mut log, seq) = directory_of(Log::new(), 2_000);
        for n in 0..40u128 {
            log.append(TenantEvent::UserBlocked { id: uuid::Uuid::from_u128(1000 + n * 37 % 2000) });
            let mut loaded: Loaded<Tenant> =
                log.rt.block_on(load_parted(&log.store, "tenant", u64::MAX)).unwrap();
            let absent: BTreeSet<u32> = loaded.state.absent_parts().into_iter().collect();
            assert!(!absent.is_empty(), "a load in part after {n} blocks read every part");
            // What it did not read is still there to read, though the tip it
            // started from may have gone for the one it left.
            let source = loaded.source;
            let read = read_parts(&log.store, "tenant", source, &mut loaded.state, &absent);
            assert!(log.rt.block_on(read).unwrap(), "after {n} blocks, from {source:?}");
            assert_eq!(loaded.state, log.load(u64::MAX));
        }
        let names = log.rt.block_on(log.store.snapshot_names()).unwrap();
        let tips: Vec<u64> =
            names.iter().filter(|(n, s)| n == "aggregate/tenant" && *s > seq).map(|(_, s)| *s).collect();
        let holders = names.iter().filter(|(n, _)| n == "parts/aggregate/tenant").count();
        assert_eq!(tips.len(), 1, "one sliding tip: {names:?}");
        assert!((1..=10).contains(&holders), "holders a tip points at, not one a load: {names:?}");
        let table = log.rt.block_on(log.store.snapshot_table("aggregate/tenant", tips[0])).unwrap().unwrap();
        assert!(table.iter().all(|entry| entry.held_by.is_some()), "a tip holds no part itself");
        assert_eq!(
            log.load(u64::MAX),
            log.rt.block_on(load(&log.store, "tenant", u64::MAX, Snapshots::Ignore)).unwrap().0
        );
        assert_eq!(log.rt.block_on(check_caches(&log.store)).unwrap(), Vec::new());
    }

    /// A part a command reaches after its load, damaged on disk since: the
    /// state is folded from the log instead, whole and at the head.
    #[test]
    fn a_part_that_cannot_be_read_after_the_load_makes_the_state_the_logs_fold() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("db"), store::OpenOptions::default()).unwrap();
        let (mut log, seq) = directory_of(Log::over(store), 600);
        let mut loaded: Loaded<Tenant> =
            log.rt.block_on(load_parted(&log.store, "tenant", u64::MAX)).unwrap();
        assert_eq!(loaded.source, Some(seq));
        let file = dir.path().join(format!("db/snapshots/6167677265676174652f74656e616e74/{seq:020}"));
        let mut bytes = std::fs::read(&file).unwrap();
        let end = bytes.len() - 64;
        let length = u64::from_le_bytes(bytes[end - 8..end].try_into().unwrap()) as usize;
        bytes[4..end - 8 - length].fill(0);
        std::fs::write(&file, &bytes).unwrap();
        log.append(TenantEvent::UserBlocked { id: uuid::Uuid::from_u128(1000) });
        let id = uuid::Uuid::from_u128(1005);
        assert_eq!(loaded.state.users.get(&id), None, "not read yet");
        let missed = loaded.state.take_misses();
        log.rt.block_on(read_or_refold(&log.store, "tenant", &mut loaded, &missed)).unwrap();
        assert_eq!((loaded.source, loaded.version), (None, log.version), "the log's fold, to the head");
        assert!(loaded.state.users.is_whole() && loaded.state.users.get(&id).is_some());
        assert!(!loaded.state.users.get(&uuid::Uuid::from_u128(1000)).unwrap().can_sign_in());
    }

    /// Issue 29: after a snapshot of the series, records of other streams
    /// only (a sync pass): a load in part leaves a tip at the head, pointing
    /// at the series' parts, so that the next command checks a binding at the
    /// head rather than one the archive may hold.
    #[test]
    fn a_load_in_part_with_nothing_to_fold_leaves_a_tip_at_the_head_the_log_moved_on_to() {
        let (log, seq) = directory_of(Log::new(), 600);
        let other = Append {
            stream: "env/x".into(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_id: uuid::Uuid::from_u128(u128::MAX),
                event_type: "Other".into(),
                schema_version: domain::SCHEMA_VERSION,
                payload: vec![0],
            }],
            meta: test_meta(),
        };
        let head = log.rt.block_on(log.store.append(other)).unwrap().unwrap().last_seq;
        let first: Loaded<Tenant> = log.rt.block_on(load_parted(&log.store, "tenant", u64::MAX)).unwrap();
        assert_eq!(first.source, Some(head), "it reads what it has not read from the tip it left");
        assert_eq!(log.series(), [seq, head], "a tip at the head");
        let table = log.rt.block_on(log.store.snapshot_table("aggregate/tenant", head)).unwrap().unwrap();
        assert!(
            table.iter().all(|e| e.held_by.is_some_and(|h| h.seq == seq && !h.apart)),
            "pointing at the series"
        );
        let next: Loaded<Tenant> = log.rt.block_on(load_parted(&log.store, "tenant", u64::MAX)).unwrap();
        assert_eq!(next.source, Some(head));
        assert_eq!(log.series(), [seq, head], "and no other");
        assert_eq!(
            log.load(u64::MAX),
            log.rt.block_on(load(&log.store, "tenant", u64::MAX, Snapshots::Ignore)).unwrap().0
        );
    }

    /// A part of the directory's snapshot changed on disk: a load that
    /// reaches it cannot read it and folds the log instead, and the check of
    /// the caches names it.
    #[test]
    fn a_changed_part_is_not_read_and_the_load_folds_the_log_instead() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("db"), store::OpenOptions::default()).unwrap();
        let (mut log, seq) = directory_of(Log::over(store), 600);
        let file = dir.path().join(format!("db/snapshots/6167677265676174652f74656e616e74/{seq:020}"));
        let mut bytes = std::fs::read(&file).unwrap();
        // Every part's first bytes: whichever part a load reaches is changed.
        assert_eq!(&bytes[..4], b"utc2");
        bytes[4 + 2] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        for i in 0..600 {
            log.append(TenantEvent::UserBlocked { id: uuid::Uuid::from_u128(1000 + i) });
        }
        let tenant = log.load(u64::MAX);
        assert!(tenant.users.values().all(|u| !u.can_sign_in() || u.id.as_u128() < 1000));
        let found = log.rt.block_on(check_caches(&log.store)).unwrap();
        let named = found.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert!(
            named.contains(&format!("cache aggregate/tenant at record {seq} has a part that cannot be read")),
            "{named:?}"
        );
    }

    #[test]
    fn a_read_at_the_head_leaves_a_sliding_tip_and_the_series_still_grows() {
        let mut log = Log::new();
        // An earlier usertrail's head snapshot goes with the first save.
        let legacy = Snapshot { seq: 1, state: FRAME_TAG.to_vec(), parts: Vec::new() };
        log.rt.block_on(log.store.save_snapshot("aggregate-head/tenant", legacy)).unwrap();
        log.seat_changes(99);
        log.load(u64::MAX);
        assert_eq!(log.series(), [100], "a long first replay is a spacing");
        assert_eq!(log.rt.block_on(log.store.snapshot_names()).unwrap(), [("aggregate/tenant".into(), 100)]);

        // Too short a replay for a spacing, long enough for a tip.
        log.seat_changes(20);
        log.load(u64::MAX);
        assert_eq!(log.series(), [100, 120]);
        log.seat_changes(20);
        log.load(u64::MAX);
        assert_eq!(log.series(), [100, 140], "the tip slides");
        log.seat_changes(20);
        log.load(u64::MAX);
        assert_eq!(log.series(), [100, 160]);

        // A spacing past the last one kept, the tip stays in the series.
        log.seat_changes(20);
        log.load(u64::MAX);
        log.seat_changes(10);
        log.load(u64::MAX);
        assert_eq!(log.series(), [100, 180, 190]);
        log.seat_changes(5);
        log.load(u64::MAX);
        assert_eq!(log.series(), [100, 180, 190], "a replay of 5 is no tip");
    }

    #[test]
    fn a_read_of_the_past_leaves_no_tip_and_keeps_the_newer_one() {
        let mut log = Log::new();
        log.seat_changes(99);
        log.load(u64::MAX);
        log.seat_changes(40);
        log.load(130);
        assert_eq!(log.series(), [100], "seq 130 is not the head");
        log.load(u64::MAX);
        assert_eq!(log.series(), [100, 140]);
        // A long replay of the past saves a spacing before the tip, which stays.
        log.load(90);
        assert_eq!(log.series(), [90, 100, 140]);
        assert_eq!(log.load(u64::MAX).skus["dyn365_sales"].seats, 140);
    }

    #[test]
    fn a_snapshot_that_does_not_decode_is_a_cache_miss() {
        let (mut log, marked) = marked_series_snapshot();
        log.seat_changes(20);
        // Tagged and saved by the store, so that only the decoding fails:
        // a state cut short, a tip's trailer with bytes to spare, no state.
        let cut = marked[..marked.len() - 3].to_vec();
        let spare = [&marked[..], &[1, 1, 7]].concat();
        for (n, state) in [cut, spare, FRAME_TAG.to_vec(), vec![0xff; 3]].into_iter().enumerate() {
            log.rt
                .block_on(
                    log.store
                        .save_snapshot("aggregate/tenant", Snapshot { seq: 110, state, parts: Vec::new() }),
                )
                .unwrap();
            let from_zero = load_now(&log);
            assert!(!from_zero.skus.contains_key("marker"), "{n}: from the first record");
            assert_eq!(from_zero.skus["dyn365_sales"].seats, 120);
            log.rt.block_on(log.store.remove_snapshots("aggregate/tenant", 101..u64::MAX)).unwrap();
        }
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
        assert_eq!(log.series(), [100, 120]);
        assert_eq!(check(&log), Vec::<String>::new(), "the caches the fold left are the log's");
        // Authentic (written through the store) but not the fold: named.
        let (mut state, version) =
            log.rt.block_on(load::<Tenant, _>(&log.store, "tenant", 100, Snapshots::Ignore)).unwrap();
        state.skus.insert("marker".into(), state.skus["dyn365_sales"].clone());
        log.rt.block_on(save(&log.store, "tenant", &state, version, 100)).unwrap();
        let bad = Snapshot { seq: 120, state: FRAME_TAG.to_vec(), parts: Vec::new() };
        log.rt.block_on(log.store.save_snapshot("aggregate/tenant", bad)).unwrap();
        assert_eq!(
            check(&log),
            [
                "cache aggregate/tenant at record 100 differs from the log",
                "cache aggregate/tenant at record 120 cannot be decoded",
            ]
        );
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
            .block_on(
                log.store.save_snapshot(
                    "aggregate/tenant",
                    Snapshot { seq: 100, state: unframed, parts: Vec::new() },
                ),
            )
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
        // A snapshot keeps its users in parts, authenticated by the store and
        // decoded when first reached: bytes of an older encoding would pass the check
        // and fail there (a miss, costing a fold from zero), so a change to User's encoding needs a new
        // FRAME_TAG (which turns every older snapshot into a cache miss), and
        // then this constant.
        assert_eq!(hex, USER_ENCODING, "User's encoding changed: change FRAME_TAG, then USER_ENCODING");
        assert_eq!(&FRAME_TAG, b"uts7", "a new tag: then set USER_ENCODING to the new encoding");
    }
}
