//! Saved states, as files beside the sled database: `snapshots/<hex name>/<seq>`.
//!
//! They are caches (a state is always the fold of the log), and large: kept
//! inside sled, each would be a blob that sled rereads when it recovers its
//! log on open, and a leaf of them a multi-megabyte rewrite. As files, a save
//! is one write and a rename, and a load one read.
//!
//! Every cache goes through one framing here (issue 25, finding 2):
//! `TAG ++ state ++ hash ++ mac`, where `hash` is the hash of the record at
//! the cache's seq (binding it to the log: a cache folded from another
//! history is a miss) and `mac` the HMAC-SHA256, under the database's key
//! (`cache_key`), of the name, the seq, the state and the hash. Someone who
//! can write the database's directory but not read the key cannot make a
//! cache that is used: it fails its MAC, and is a miss.
//!
//! A state may come with *parts* ([`Snapshot::parts`]: a large directory's
//! users, a few hundred each), read one at a time rather than with the
//! state (`utc2`): `TAG2 ++ parts ++ state ++ table ++ count ++ length ++
//! hash ++ mac`, where the table holds each part's length and SHA-256, the
//! length is that of the state, table and count, and the MAC covers them
//! with it (and the hash). Loading reads the end of the file only; a part
//! read later is checked against the table of an authentic, bound cache.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::cache_key::Key;
use crate::record::Hash;
use crate::{Holder, PartEntry, Snapshot, SnapshotPart, StoreError};

/// What a cache's bytes start with: the framing's version.
const TAG: [u8; 4] = *b"utc1";
/// What a cache with parts starts with.
const PARTED_TAG: [u8; 4] = *b"utc2";
/// A part's entry in the table: its length (u64), SHA-256, and where it is
/// held: the seq (u64) and index (u32) there, and a kind (u8: 0 this cache,
/// 1 the snapshot of the same name at that seq, 2 its [`parts_holder`]).
const PART_ENTRY: usize = 53;
/// What follows a parted cache's state and table: their count (u32) and
/// length (u64), then the trailer.
const PARTED_END: usize = 12;
/// The largest cache file read: far above any state (a 300k-user
/// directory is some hundreds of MiB), far below what would exhaust memory.
const MAX_CACHE_BYTES: u64 = 4 << 30;
/// What follows the state: the bound record's hash, then the MAC.
const TRAILER: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a cache is not used: it is a miss, and `verify` names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheMiss {
    /// The database has no usable key: no cache can be checked.
    #[error("cannot be checked: {0}")]
    NoKey(String),
    /// The bytes are not a cache this usertrail writes, or fail the MAC.
    #[error("fails its MAC (changed, or written under another key)")]
    Forged,
    /// Authentic, but the log holds another record at its seq (or none).
    #[error("was folded from another history than this log's")]
    OtherHistory,
}

/// Where snapshots live, and the key that authenticates them.
pub(crate) struct Snapshots {
    place: Place,
    pub(crate) key: Key,
}

enum Place {
    /// In a directory of the database.
    Dir(PathBuf),
    /// In memory, for temporary stores.
    Memory(Mutex<BTreeMap<(String, u64), Vec<u8>>>),
}

/// The MAC of a cache named `name` at `seq`, fed its tag: the state and
/// the record's hash follow. The name's length comes first, so that no
/// other name and state give the same input.
fn mac_for(key: &[u8; 32], name: &str, seq: u64, tag: [u8; 4]) -> HmacSha256 {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name.as_bytes());
    mac.update(&seq.to_le_bytes());
    mac.update(&tag);
    mac
}

/// A snapshot as the bytes to write before the trailer: its tag, the parts
/// it holds (`utc2`) and what the MAC covers (the state, and for `utc2` the
/// table, count and length).
fn body(snapshot: Snapshot) -> ([u8; 4], Vec<Vec<u8>>, Vec<u8>) {
    let Snapshot { state, parts, .. } = snapshot;
    if parts.is_empty() {
        return (TAG, Vec::new(), state);
    }
    let mut covered = state;
    let mut held = Vec::new();
    let count = parts.len() as u32;
    for part in parts {
        let (entry, bytes) = match part {
            SnapshotPart::Bytes(bytes) => {
                let digest = Sha256::digest(&bytes).into();
                (PartEntry { len: bytes.len() as u64, digest, held_by: None }, Some(bytes))
            }
            SnapshotPart::Held(entry) => (entry, None),
        };
        let (seq, index, kind) = match entry.held_by {
            None => (0, 0, 0u8),
            Some(Holder { seq, index, apart: false }) => (seq, index, 1),
            Some(Holder { seq, index, apart: true }) => (seq, index, 2),
        };
        covered.extend_from_slice(&entry.len.to_le_bytes());
        covered.extend_from_slice(&entry.digest);
        covered.extend_from_slice(&seq.to_le_bytes());
        covered.extend_from_slice(&index.to_le_bytes());
        covered.push(kind);
        held.extend(bytes);
    }
    covered.extend_from_slice(&count.to_le_bytes());
    let length = covered.len() as u64;
    covered.extend_from_slice(&length.to_le_bytes());
    (PARTED_TAG, held, covered)
}

/// A parted cache's table, and where each part it holds lies after its tag.
struct PartTable {
    entries: Vec<PartEntry>,
    offsets: Vec<u64>,
}

/// The state of the `utc2` cache whose end (its covered bytes and trailer)
/// `rest` ends with, the hash it is bound to and its table, if the MAC holds.
/// Without a key (`None`), the MAC is not checked: for a holder, whose parts
/// the digests of an authentic table check.
fn unframe_parted(
    key: Option<&[u8; 32]>,
    name: &str,
    seq: u64,
    rest: &[u8],
) -> Result<(Vec<u8>, Hash, PartTable), CacheMiss> {
    let end = rest.len().checked_sub(TRAILER).ok_or(CacheMiss::Forged)?;
    let length_at = end.checked_sub(8).ok_or(CacheMiss::Forged)?;
    let length = u64::from_le_bytes(rest[length_at..end].try_into().map_err(|_| CacheMiss::Forged)?);
    let start =
        usize::try_from(length).ok().and_then(|l| length_at.checked_sub(l)).ok_or(CacheMiss::Forged)?;
    let (hash, tail) = rest[end..].split_at(32);
    if let Some(key) = key {
        let mut mac = mac_for(key, name, seq, PARTED_TAG);
        mac.update(&rest[start..end]);
        mac.update(hash);
        mac.verify_slice(tail).map_err(|_| CacheMiss::Forged)?;
    }
    // Authentic from here on (or, for a holder, checked part by part).
    let covered = &rest[start..length_at];
    let count_at = covered.len().checked_sub(4).ok_or(CacheMiss::Forged)?;
    let count = u32::from_le_bytes(covered[count_at..].try_into().map_err(|_| CacheMiss::Forged)?) as usize;
    let table_at =
        count.checked_mul(PART_ENTRY).and_then(|t| count_at.checked_sub(t)).ok_or(CacheMiss::Forged)?;
    let mut table = PartTable { entries: Vec::with_capacity(count), offsets: Vec::with_capacity(count) };
    let mut at = 0u64;
    for entry in covered[table_at..count_at].chunks_exact(PART_ENTRY) {
        let number = |range: std::ops::Range<usize>| {
            entry[range].iter().rev().fold(0u64, |n, byte| n << 8 | u64::from(*byte))
        };
        let len = number(0..8);
        let held_by = match entry[52] {
            0 => None,
            kind => Some(Holder { seq: number(40..48), index: number(48..52) as u32, apart: kind == 2 }),
        };
        table.offsets.push(at);
        if held_by.is_none() {
            at = at.saturating_add(len);
        }
        table.entries.push(PartEntry { len, digest: entry[8..40].try_into().unwrap_or_default(), held_by });
    }
    let mut bound = [0; 32];
    bound.copy_from_slice(hash);
    Ok((covered[..table_at].to_vec(), bound, table))
}

/// A cache's bytes, read in pieces: a file's, or bytes kept whole.
trait Source {
    /// How many bytes there are.
    fn len(&self) -> u64;
    /// `len` bytes from `at`.
    fn read_at(&mut self, at: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&mut self, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
        usize::try_from(at)
            .ok()
            .and_then(|at| self.get(at..at.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    }
}

impl Source for Opened {
    fn len(&self) -> u64 {
        match self {
            Opened::Bad => 0,
            Opened::Bytes(bytes) => bytes.len() as u64,
            Opened::File(_, _, len) => *len,
        }
    }

    fn read_at(&mut self, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Seek;
        match self {
            Opened::Bad => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            Opened::Bytes(bytes) => bytes.as_slice().read_at(at, len),
            Opened::File(_, file, _) => {
                let mut bytes = vec![0; len];
                file.seek(std::io::SeekFrom::Start(at))?;
                file.read_exact(&mut bytes)?;
                Ok(bytes)
            }
        }
    }
}

/// A cache's tag, and the bytes after it that [`unframe`] reads.
type Framed = ([u8; 4], Vec<u8>);

/// A cache's tag and what follows it: all of it for `utc1`; for `utc2`, its
/// end only (the covered bytes and the trailer), not its parts. `None`: too
/// short to be a cache.
fn read_framed(source: &mut impl Source) -> std::io::Result<Option<Framed>> {
    let total = source.len();
    if total < 4 {
        return Ok(None);
    }
    let tag: [u8; 4] = source.read_at(0, 4)?.try_into().unwrap_or_default();
    let from = match tag {
        PARTED_TAG => {
            let end_len = (PARTED_END - 4 + TRAILER) as u64;
            let Some(at) = total.checked_sub(end_len).filter(|at| *at >= 4) else { return Ok(None) };
            let length = u64::from_le_bytes(source.read_at(at, 8)?.try_into().unwrap_or_default());
            match at.checked_sub(length).filter(|from| *from >= 4) {
                Some(from) => from,
                None => return Ok(None),
            }
        }
        _ => 4,
    };
    let len = usize::try_from(total - from).map_err(std::io::Error::other)?;
    Ok(Some((tag, source.read_at(from, len)?)))
}

/// Why a read of parts stopped: the store failed, or a cache is a miss.
enum Stop {
    Store(StoreError),
    Miss,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Store(e)
    }
}

/// The table of the parted cache of `name` at `seq` in `source`, if it is
/// authentic and bound to the record the log holds at `seq` (`hash_at`).
/// `key` `None` reads the table of a holder: its MAC and binding go
/// unchecked (a binding older than the live log's records would open the
/// archive), since every part read from it is checked against the digest
/// in the authentic table that points at it.
fn table_in(
    key: Option<&[u8; 32]>,
    name: &str,
    seq: u64,
    source: &mut Opened,
    hash_at: &mut impl FnMut(u64) -> Result<Option<Hash>, StoreError>,
) -> Result<PartTable, Stop> {
    let read = match read_framed(source) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
        Err(e) => return Err(Stop::Store(source.io(e))),
    };
    let Some((PARTED_TAG, rest)) = read else { return Err(Stop::Miss) };
    let (_, hash, table) = unframe_parted(key, name, seq, &rest).map_err(|_| Stop::Miss)?;
    if key.is_some() && hash_at(seq)? != Some(hash) {
        return Err(Stop::Miss);
    }
    Ok(table)
}

/// The bytes of a part `entry` places at `at` in `source`, if they hash to its digest.
fn part_at(source: &mut Opened, at: u64, entry: &PartEntry) -> Result<Vec<u8>, Stop> {
    let len = usize::try_from(entry.len).map_err(|_| Stop::Miss)?;
    let bytes = match source.read_at(4 + at, len) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Stop::Miss),
        Err(e) => return Err(Stop::Store(source.io(e))),
    };
    if Sha256::digest(&bytes)[..] != entry.digest {
        return Err(Stop::Miss);
    }
    Ok(bytes)
}

/// Where the parts that snapshots of `name` hold apart are kept, each
/// under the seq of the snapshot that wrote them.
pub fn parts_holder(name: &str) -> String {
    format!("parts/{name}")
}

/// Parts `which` of the parted cache of `name` at `seq`: each from the
/// cache that holds it (`open(name, seq)`), checked against the digest in
/// the table of the one asked for, every cache read authentic and bound to
/// the log (`hash_at`). `None`: a miss.
fn read_parts(
    key: &Key,
    name: &str,
    seq: u64,
    which: &[u32],
    mut open: impl FnMut(&str, u64) -> Result<Option<Opened>, StoreError>,
    mut hash_at: impl FnMut(u64) -> Result<Option<Hash>, StoreError>,
) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
    let Ok(key) = key else { return Ok(None) };
    let holder_name = parts_holder(name);
    let mut read = || -> Result<Vec<Vec<u8>>, Stop> {
        let mut source = open(name, seq)?.ok_or(Stop::Miss)?;
        let table = table_in(Some(key), name, seq, &mut source, &mut hash_at)?;
        let mut holders: BTreeMap<(bool, u64), (Opened, PartTable)> = BTreeMap::new();
        let mut parts = Vec::with_capacity(which.len());
        for &part in which {
            let entry = table.entries.get(part as usize).ok_or(Stop::Miss)?;
            let bytes = match entry.held_by {
                None => part_at(&mut source, table.offsets[part as usize], entry)?,
                Some(Holder { seq: holder, index, apart }) => {
                    let (opened, table) = match holders.entry((apart, holder)) {
                        std::collections::btree_map::Entry::Occupied(held) => held.into_mut(),
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            let which_name = if apart { holder_name.as_str() } else { name };
                            let mut opened = open(which_name, holder)?.ok_or(Stop::Miss)?;
                            let table = table_in(None, which_name, holder, &mut opened, &mut hash_at)?;
                            slot.insert((opened, table))
                        }
                    };
                    // Held where it was written: a part held by another is not followed further.
                    match table.entries.get(index as usize) {
                        Some(held) if held.held_by.is_none() => {}
                        _ => return Err(Stop::Miss),
                    }
                    part_at(opened, table.offsets[index as usize], entry)?
                }
            };
            parts.push(bytes);
        }
        Ok(parts)
    };
    match read() {
        Ok(parts) => Ok(Some(parts)),
        Err(Stop::Miss) => Ok(None),
        Err(Stop::Store(e)) => Err(e),
    }
}

/// The table of the parted cache of `name` at `seq` in `source`; `None`: a
/// miss, or a cache without parts.
fn read_table(
    key: &Key,
    name: &str,
    seq: u64,
    source: Option<Opened>,
    mut hash_at: impl FnMut(u64) -> Result<Option<Hash>, StoreError>,
) -> Result<Option<Vec<PartEntry>>, StoreError> {
    let (Ok(key), Some(mut source)) = (key, source) else { return Ok(None) };
    match table_in(Some(key), name, seq, &mut source, &mut hash_at) {
        Ok(table) => Ok(Some(table.entries)),
        Err(Stop::Miss) => Ok(None),
        Err(Stop::Store(e)) => Err(e),
    }
}

/// Caches held as bytes (a table's rows), by name and seq, with the log's
/// hash at that seq.
pub(crate) type Rows = BTreeMap<(String, u64), (Vec<u8>, Option<Hash>)>;

/// [`Snapshots::parts`] over caches held as bytes.
pub(crate) fn parts_in(
    key: &Key,
    name: &str,
    seq: u64,
    rows: &Rows,
    which: &[u32],
) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
    let hashes: BTreeMap<u64, Option<Hash>> =
        rows.iter().map(|((_, seq), (_, hash))| (*seq, *hash)).collect();
    let open = |name: &str, seq| {
        Ok(rows.get(&(name.to_owned(), seq)).map(|(bytes, _)| Opened::Bytes(bytes.clone())))
    };
    read_parts(key, name, seq, which, open, |seq| Ok(hashes.get(&seq).copied().flatten()))
}

/// [`Snapshots::table`] over a cache held as bytes, bound to `hash`.
pub(crate) fn table_of(
    key: &Key,
    name: &str,
    seq: u64,
    framed: Vec<u8>,
    hash: Option<Hash>,
) -> Result<Option<Vec<PartEntry>>, StoreError> {
    read_table(key, name, seq, Some(Opened::Bytes(framed)), |_| Ok(hash))
}

/// What names the caches made under `key` among those of other machines
/// sharing one log: a MAC of a fixed name, which says nothing of the key.
/// Empty without a key (no cache is then authentic anyway).
pub(crate) fn key_id(key: &Key) -> Vec<u8> {
    key.as_ref().map_or_else(
        |_| Vec::new(),
        |key| mac_for(key, "usertrail cache key id", 0, TAG).finalize().into_bytes()[..16].to_vec(),
    )
}

impl Snapshots {
    /// The snapshots of the database at `db`, under `key`.
    pub(crate) fn beside(db: &Path, key: Key) -> Snapshots {
        Snapshots { place: Place::Dir(db.join("snapshots")), key }
    }

    /// Snapshots in memory, under `key`.
    pub(crate) fn in_memory(key: Key) -> Snapshots {
        Snapshots { place: Place::Memory(Mutex::default()), key }
    }

    /// Whether they are files (which a batched store flushes before publishing).
    pub(crate) fn on_disk(&self) -> bool {
        matches!(self.place, Place::Dir(_))
    }

    /// Saves a state bound to the test log's hash at its seq; a snapshot already at that seq is replaced. (The store stages and
    /// publishes itself, flushing sled in between.)
    #[cfg(test)]
    pub(crate) fn save(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        let hash = tests::bound(snapshot.seq);
        self.publish(self.stage(name, snapshot)?, hash)
    }

    /// Writes a state where no reader looks yet: [`Snapshots::publish`]
    /// binds it to its record and makes it the snapshot of `name` at its
    /// seq. Without a key, nothing is written: a cache nobody could check
    /// would never be used.
    pub(crate) fn stage(&self, name: &str, snapshot: Snapshot) -> Result<StagedSnapshot, StoreError> {
        let (Place::Dir(root), Ok(key)) = (&self.place, &self.key) else {
            return Ok(stage_bytes(&self.key, name, snapshot));
        };
        let seq = snapshot.seq;
        let (tag, parts, covered) = body(snapshot);
        let mut mac = mac_for(key, name, seq, tag);
        mac.update(&covered);
        let staged = |held| StagedSnapshot { name: name.to_owned(), seq, held, mac: Some(mac) };
        let dir = root.join(hex(name));
        let io = |source| StoreError::Io { path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Written aside, then renamed: a reader never sees half a file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let aside = dir.join(format!(".{seq}.{}.{n}.tmp", std::process::id()));
        // A new file, never one (or a link) someone put in its place,
        // private whatever the umask; written and published through
        // this handle, never opened again by name.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&aside).map_err(io)?;
        // On failure, dropping `staged` removes what was written.
        let mut staged = staged(Held::File { aside, path: dir.join(file_name(seq)), file: None });
        let mut writer = std::io::BufWriter::new(&mut file);
        let written =
            (writer.write_all(&tag).and_then(|()| parts.iter().try_for_each(|part| writer.write_all(part))))
                .and_then(|()| writer.write_all(&covered))
                .and_then(|()| writer.flush());
        drop(writer);
        written.map_err(io)?;
        if let Held::File { file: held, .. } = &mut staged.held {
            *held = Some(file);
        }
        Ok(staged)
    }

    /// Binds a staged state to `hash`, the hash of the record at its seq,
    /// and makes it the snapshot of its name at its seq, replacing one
    /// already there.
    pub(crate) fn publish(&self, mut staged: StagedSnapshot, hash: Hash) -> Result<(), StoreError> {
        if let (Place::Memory(map), Held::Bytes(_)) = (&self.place, &staged.held) {
            if let Some((name, seq, bytes)) = framed(staged, hash)? {
                map.lock().unwrap_or_else(|p| p.into_inner()).insert((name, seq), bytes);
            }
            return Ok(());
        }
        let Some(mut mac) = staged.mac.take() else { return Ok(()) };
        mac.update(&hash);
        let mut trailer = hash.to_vec();
        trailer.extend_from_slice(&mac.finalize().into_bytes());
        match (&self.place, std::mem::replace(&mut staged.held, Held::Published)) {
            (Place::Dir(_), Held::File { aside, path, file }) => {
                let written = file
                    .ok_or_else(|| std::io::Error::other("the staged file was not written"))
                    .and_then(|mut file| file.write_all(&trailer))
                    .and_then(|()| std::fs::rename(&aside, &path));
                written.map_err(|source| {
                    let _ = std::fs::remove_file(&aside);
                    StoreError::Io { path, source }
                })
            }
            // Only a snapshot staged by another store gets here; dropping
            // it (the file's, if any, restored first) discards it.
            (_, held) => {
                staged.held = held;
                Err(StoreError::Task("a snapshot staged by another store cannot be published here".into()))
            }
        }
    }

    /// Removes the snapshots of `name` taken at the seqs in `range`.
    pub(crate) fn remove(&self, name: &str, range: std::ops::Range<u64>) -> Result<(), StoreError> {
        match &self.place {
            Place::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|(n, seq), _| n != name || !range.contains(seq));
                Ok(())
            }
            Place::Dir(root) => {
                let dir = root.join(hex(name));
                for seq in seqs(&dir)?.into_iter().filter(|seq| range.contains(seq)) {
                    let path = dir.join(file_name(seq));
                    match std::fs::remove_file(&path) {
                        // Removed meanwhile: what was asked for.
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(StoreError::Io { path, source: e })
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
        }
    }

    /// Removes every snapshot: for a new key, under which none written
    /// before could be checked again.
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        for (name, _) in self.all()? {
            self.remove(&name, 0..u64::MAX)?;
        }
        Ok(())
    }

    /// Every snapshot, by name and seq.
    pub(crate) fn all(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match &self.place {
            Place::Memory(map) => Ok(map.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()),
            Place::Dir(root) => {
                let entries = match std::fs::read_dir(root) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(source) => return Err(StoreError::Io { path: root.clone(), source }),
                };
                let mut all = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|source| StoreError::Io { path: root.clone(), source })?;
                    // A directory whose name no name maps to is nothing of ours.
                    let Some(name) = entry.file_name().to_str().and_then(unhex) else { continue };
                    all.extend(seqs(&entry.path())?.into_iter().map(|seq| (name.clone(), seq)));
                }
                all.sort();
                Ok(all)
            }
        }
    }

    /// The seq of the newest snapshot of `name` taken at or before
    /// `max_seq`, without reading it.
    pub(crate) fn newest_seq(&self, name: &str, max_seq: u64) -> Result<Option<u64>, StoreError> {
        match &self.place {
            Place::Memory(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                let range = (name.to_owned(), 0)..=(name.to_owned(), max_seq);
                Ok(map.range(range).next_back().map(|((_, seq), _)| *seq))
            }
            Place::Dir(root) => {
                Ok(seqs(&root.join(hex(name)))?.into_iter().filter(|&seq| seq <= max_seq).max())
            }
        }
    }

    /// The newest snapshot of `name` taken at or before `max_seq` that is
    /// authentic and bound to this log (`hash_at` gives the hash of the
    /// record at a seq). A newer one that is a miss (planted, or of
    /// another history) passes the turn to the next older, a few times:
    /// one planted file must not make every command fold from zero.
    pub(crate) fn load(
        &self,
        name: &str,
        max_seq: u64,
        mut hash_at: impl FnMut(u64) -> Result<Option<Hash>, StoreError>,
    ) -> Result<Option<Snapshot>, StoreError> {
        let mut below = max_seq;
        for _ in 0..LOAD_TRIES {
            let Some(seq) = self.newest_seq(name, below)? else { return Ok(None) };
            match self.check(name, seq, &mut hash_at)? {
                Some(Ok(snapshot)) => return Ok(Some(snapshot)),
                _ if seq == 0 => return Ok(None),
                _ => below = seq - 1,
            }
        }
        Ok(None)
    }

    /// The snapshot of `name` at `seq` (`None`: there is none), or why it
    /// is a miss.
    pub(crate) fn check(
        &self,
        name: &str,
        seq: u64,
        hash_at: impl FnOnce(u64) -> Result<Option<Hash>, StoreError>,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        if let Err(why) = &self.key {
            return Ok(Some(Err(CacheMiss::NoKey(why.clone()))));
        }
        let Some((tag, state)) = self.read(name, seq)? else { return Ok(None) };
        Ok(Some(match unframe(&self.key, name, seq, tag, state) {
            Ok((state, hash)) => bound(Snapshot { seq, state, parts: Vec::new() }, hash, hash_at(seq)?),
            Err(miss) => Err(miss),
        }))
    }

    /// The tag and the rest of a snapshot's bytes, as stored (of a parted
    /// one, its end only): `None`, there is none; an empty tag, it is no
    /// cache of ours.
    fn read(&self, name: &str, seq: u64) -> Result<Option<Framed>, StoreError> {
        let unreadable = Some(([0; 4], Vec::new()));
        Ok(match self.open(name, seq)? {
            None => None,
            Some(Opened::Bad) => unreadable,
            Some(Opened::Bytes(bytes)) => read_framed(&mut bytes.as_slice()).ok().flatten().or(unreadable),
            Some(mut file) => match read_framed(&mut file) {
                Ok(read) => read.or(unreadable),
                // Cut short meanwhile: no cache of ours.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => unreadable,
                Err(e) => return Err(file.io(e)),
            },
        })
    }

    /// Parts `which` of the snapshot of `name` at `seq`, each read from the
    /// cache that holds it and checked against the table of the one asked
    /// for, every one authentic and bound to the log (`hash_at`); `None`: a
    /// miss (gone, replaced, changed, or no key).
    pub(crate) fn parts(
        &self,
        name: &str,
        seq: u64,
        which: &[u32],
        hash_at: impl FnMut(u64) -> Result<Option<Hash>, StoreError>,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        read_parts(&self.key, name, seq, which, |name, seq| self.open(name, seq), hash_at)
    }

    /// The table of the snapshot of `name` at `seq`: where each part is held.
    pub(crate) fn table(
        &self,
        name: &str,
        seq: u64,
        hash_at: impl FnMut(u64) -> Result<Option<Hash>, StoreError>,
    ) -> Result<Option<Vec<PartEntry>>, StoreError> {
        read_table(&self.key, name, seq, self.open(name, seq)?, hash_at)
    }

    /// The snapshot of `name` at `seq`, opened to read.
    fn open(&self, name: &str, seq: u64) -> Result<Option<Opened>, StoreError> {
        match &self.place {
            Place::Memory(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                Ok(map.get(&(name.to_owned(), seq)).cloned().map(Opened::Bytes))
            }
            Place::Dir(root) => {
                let path = root.join(hex(name)).join(file_name(seq));
                let io = |source| StoreError::Io { path: path.clone(), source };
                // Opening a FIFO would wait for a writer, and a link leads
                // elsewhere: anything but a regular file is a miss.
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if !meta.is_file() => return Ok(Some(Opened::Bad)),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io(e)),
                }
                let file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    // Removed meanwhile: a cache miss, not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io(e)),
                };
                let meta = file.metadata().map_err(io)?;
                // Only a regular file of a size a state can have: a planted
                // FIFO or a huge sparse file is a miss, not a hang or an abort.
                if !meta.is_file() || meta.len() > MAX_CACHE_BYTES {
                    return Ok(Some(Opened::Bad));
                }
                let len = meta.len();
                Ok(Some(Opened::File(path, file, len)))
            }
        }
    }
}

/// A snapshot opened to read.
enum Opened {
    /// Not a regular file of a size a cache can have.
    Bad,
    /// Kept as bytes.
    Bytes(Vec<u8>),
    /// A file, with its length.
    File(PathBuf, std::fs::File, u64),
}

impl Opened {
    /// A failure to read it, named.
    fn io(&self, source: std::io::Error) -> StoreError {
        match self {
            Opened::File(path, ..) => StoreError::Io { path: path.clone(), source },
            _ => StoreError::Task(format!("reading a cache: {source}")),
        }
    }
}

/// A state staged in memory under `key`, for a store that keeps its caches
/// as bytes (in memory, or in a table of its own): [`framed`] then gives
/// what to keep. Without a key it holds nothing, and nothing is kept.
pub(crate) fn stage_bytes(key: &Key, name: &str, snapshot: Snapshot) -> StagedSnapshot {
    let seq = snapshot.seq;
    let Ok(key) = key else {
        return StagedSnapshot { name: name.to_owned(), seq, held: Held::Published, mac: None };
    };
    let (tag, parts, covered) = body(snapshot);
    let mut mac = mac_for(key, name, seq, tag);
    mac.update(&covered);
    let size = tag.len() + parts.iter().map(Vec::len).sum::<usize>() + covered.len() + TRAILER;
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&tag);
    parts.iter().for_each(|part| bytes.extend_from_slice(part));
    bytes.extend_from_slice(&covered);
    StagedSnapshot { name: name.to_owned(), seq, held: Held::Bytes(bytes), mac: Some(mac) }
}

/// A state staged by [`stage_bytes`], bound to `hash` (the hash of the
/// record at its seq) and framed: its name, seq and the bytes to keep.
/// `None`: there was no key, and nothing is to be kept.
pub(crate) fn framed(
    mut staged: StagedSnapshot,
    hash: Hash,
) -> Result<Option<(String, u64, Vec<u8>)>, StoreError> {
    let Some(mut mac) = staged.mac.take() else { return Ok(None) };
    let Held::Bytes(mut bytes) = std::mem::replace(&mut staged.held, Held::Published) else {
        // Staged as a file by another store: dropping it removes the file.
        return Err(StoreError::Task("a snapshot staged by another store cannot be published here".into()));
    };
    mac.update(&hash);
    bytes.extend_from_slice(&hash);
    bytes.extend_from_slice(&mac.finalize().into_bytes());
    Ok(Some((std::mem::take(&mut staged.name), staged.seq, bytes)))
}

/// The state framed in `tag ++ rest`, and the hash of the record it is
/// bound to, if it is a cache of `name` at `seq` authentic under `key`.
pub(crate) fn unframe(
    key: &Key,
    name: &str,
    seq: u64,
    tag: [u8; 4],
    mut rest: Vec<u8>,
) -> Result<(Vec<u8>, Hash), CacheMiss> {
    let key = key.as_ref().map_err(|why| CacheMiss::NoKey(why.clone()))?;
    if tag == PARTED_TAG {
        let (state, hash, _) = unframe_parted(Some(key), name, seq, &rest)?;
        return Ok((state, hash));
    }
    let at = rest.len().checked_sub(TRAILER).filter(|_| tag == TAG).ok_or(CacheMiss::Forged)?;
    let trailer = rest.split_off(at);
    let (hash, tail) = trailer.split_at(32);
    let mut mac = mac_for(key, name, seq, TAG);
    mac.update(&rest);
    mac.update(hash);
    mac.verify_slice(tail).map_err(|_| CacheMiss::Forged)?;
    let mut bound = [0; 32];
    bound.copy_from_slice(hash);
    Ok((rest, bound))
}

/// An authentic snapshot bound to `hash`, if `found` (the log's hash at
/// its seq) is that hash.
pub(crate) fn bound(snapshot: Snapshot, hash: Hash, found: Option<Hash>) -> Result<Snapshot, CacheMiss> {
    if found == Some(hash) {
        Ok(snapshot)
    } else {
        Err(CacheMiss::OtherHistory)
    }
}

/// How many snapshots of a name a load tries, newest first, before it
/// folds from the start.
pub(crate) const LOAD_TRIES: usize = 3;

/// A state written by [`EventStore::stage_snapshot`](crate::EventStore::stage_snapshot)
/// where no reader looks yet; dropped unpublished, it is discarded.
pub struct StagedSnapshot {
    name: String,
    seq: u64,
    held: Held,
    /// The MAC so far (of the name, the seq and the state); `None`: the
    /// store has no key, and publishing does nothing.
    mac: Option<HmacSha256>,
}

impl std::fmt::Debug for StagedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedSnapshot").field("name", &self.name).field("seq", &self.seq).finish()
    }
}

impl StagedSnapshot {
    /// The log position the staged state reflects.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Where a staged state waits.
#[derive(Debug)]
enum Held {
    /// In memory, for a store that keeps its snapshots there.
    Bytes(Vec<u8>),
    /// In a file of the snapshot's directory whose name is not a seq, so
    /// that no reader takes it for a snapshot, until it is renamed to `path`.
    File { aside: PathBuf, path: PathBuf, file: Option<std::fs::File> },
    /// Gone where it belongs (what `publish` leaves behind).
    Published,
}

impl Drop for StagedSnapshot {
    fn drop(&mut self) {
        if let Held::File { aside, .. } = &self.held {
            let _ = std::fs::remove_file(aside);
        }
    }
}

/// The seqs of the snapshots in `dir` (none if it does not exist). Files
/// that are not named by a seq (a save's temporary file) are not snapshots.
fn seqs(dir: &Path) -> Result<Vec<u64>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            Ok(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok()).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StoreError::Io { path: dir.to_path_buf(), source }),
    }
}

/// A name as a file name: hex, so any name maps to one file name and back.
fn hex(name: &str) -> String {
    hex::encode(name)
}

/// The name a directory's hex name stands for, if any.
fn unhex(text: &str) -> Option<String> {
    String::from_utf8(hex::decode(text).ok()?).ok()
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::process_key;

    /// The hash of record `seq` in the tests' log.
    pub(super) fn bound(seq: u64) -> Hash {
        [seq as u8; 32]
    }

    /// The tests' log, which holds records up to 100.
    fn log(seq: u64) -> Result<Option<Hash>, StoreError> {
        Ok((seq <= 100).then(|| bound(seq)))
    }

    /// Runs `check` with each byte of the file at `path` flipped in turn;
    /// returns the file's bytes, as it leaves it.
    fn each_byte_flipped(path: &Path, mut check: impl FnMut(usize)) -> Vec<u8> {
        let bytes = std::fs::read(path).unwrap();
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x01;
            std::fs::write(path, &changed).unwrap();
            check(at);
        }
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    fn miss(snapshots: &Snapshots, name: &str, seq: u64) -> Option<CacheMiss> {
        snapshots.check(name, seq, log).unwrap().and_then(Result::err)
    }

    #[test]
    fn a_cache_with_a_byte_changed_or_of_another_history_or_without_a_key_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::beside(dir.path(), process_key());
        let name = "aggregate/tenant";
        snapshots.save(name, Snapshot { seq: 7, state: vec![1, 2, 3], parts: Vec::new() }).unwrap();
        assert_eq!(miss(&snapshots, name, 7), None);
        let path = dir.path().join("snapshots").join(hex(name)).join(file_name(7));
        let bytes = each_byte_flipped(&path, |at| {
            assert_eq!(miss(&snapshots, name, 7), Some(CacheMiss::Forged), "byte {at}");
            assert_eq!(snapshots.load(name, u64::MAX, log).unwrap(), None);
        });
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(miss(&snapshots, name, 7), Some(CacheMiss::Forged), "cut short");
        std::fs::write(&path, &bytes).unwrap();
        // Under another name, or at another seq: the MAC covers both.
        let other = dir.path().join("snapshots").join(hex("aggregate-head/tenant"));
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(file_name(7)), &bytes).unwrap();
        assert_eq!(miss(&snapshots, "aggregate-head/tenant", 7), Some(CacheMiss::Forged));
        std::fs::rename(&path, path.with_file_name(file_name(8))).unwrap();
        assert_eq!(miss(&snapshots, name, 8), Some(CacheMiss::Forged));
        // Authentic, but the log holds another record there.
        let another = |_| Ok(Some([0xee; 32]));
        snapshots.save(name, Snapshot { seq: 9, state: vec![9], parts: Vec::new() }).unwrap();
        let found = snapshots.check(name, 9, another).unwrap().and_then(Result::err);
        assert_eq!(found, Some(CacheMiss::OtherHistory));
        assert_eq!(snapshots.load(name, 9, another).unwrap(), None);
        snapshots.save(name, Snapshot { seq: 101, state: vec![9], parts: Vec::new() }).unwrap();
        assert_eq!(miss(&snapshots, name, 101), Some(CacheMiss::OtherHistory), "a record the log lacks");
        // Under another key (a copy from another database): a miss.
        let theirs = Snapshots::beside(dir.path(), Ok([7; 32]));
        assert_eq!(miss(&theirs, name, 9), Some(CacheMiss::Forged));
        // Without a key, nothing is written and nothing is used.
        let keyless = Snapshots::beside(dir.path(), Err("lost".into()));
        assert_eq!(miss(&keyless, name, 9), Some(CacheMiss::NoKey("lost".into())));
        keyless.save(name, Snapshot { seq: 50, state: vec![5], parts: Vec::new() }).unwrap();
        assert_eq!(snapshots.newest_seq(name, u64::MAX).unwrap(), Some(101), "nothing written at 50");
        assert_eq!(
            snapshots.all().unwrap(),
            [
                ("aggregate-head/tenant".to_owned(), 7),
                (name.to_owned(), 8),
                (name.to_owned(), 9),
                (name.to_owned(), 101)
            ]
        );
        snapshots.clear().unwrap();
        assert_eq!(snapshots.all().unwrap(), []);
    }

    /// Issue 29: every byte of a parted cache is covered: flipped, either
    /// the cache is a miss or the part it lies in is.
    #[test]
    fn a_parted_cache_with_any_byte_changed_is_a_miss_or_its_part_is() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::beside(dir.path(), process_key());
        let name = "aggregate/tenant";
        let parts = vec![vec![1; 30], Vec::new(), vec![3; 20]];
        let saved = parts.iter().cloned().map(SnapshotPart::Bytes).collect();
        snapshots.save(name, Snapshot { seq: 7, state: vec![9, 9], parts: saved }).unwrap();
        let all = [0, 1, 2];
        assert_eq!(snapshots.parts(name, 7, &all, log).unwrap(), Some(parts));
        assert_eq!(snapshots.load(name, u64::MAX, log).unwrap().map(|s| s.state), Some(vec![9, 9]));
        let path = dir.path().join("snapshots").join(hex(name)).join(file_name(7));
        let bytes = each_byte_flipped(&path, |at| {
            let missed =
                miss(&snapshots, name, 7).is_some() || snapshots.parts(name, 7, &all, log).unwrap().is_none();
            assert!(missed, "byte {at}");
        });
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(miss(&snapshots, name, 7), Some(CacheMiss::Forged), "cut short");
    }

    #[test]
    fn a_planted_newer_cache_passes_the_turn_to_the_older_authentic_one() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::beside(dir.path(), process_key());
        let name = "aggregate/tenant";
        snapshots.save(name, Snapshot { seq: 20, state: vec![20], parts: Vec::new() }).unwrap();
        let planted = dir.path().join("snapshots").join(hex(name)).join(file_name(90));
        std::fs::write(&planted, b"utc1 not a state of ours").unwrap();
        let found = snapshots.load(name, u64::MAX, log).unwrap().map(|s| (s.seq, s.state));
        assert_eq!(found, Some((20, vec![20])), "the replay starts at 20, not from zero");
    }

    fn check(snapshots: &Snapshots) {
        assert_eq!(snapshots.load("aggregate/tenant", 100, log).unwrap(), None);
        for seq in [10, 30, 20] {
            snapshots
                .save("aggregate/tenant", Snapshot { seq, state: vec![seq as u8], parts: Vec::new() })
                .unwrap();
        }
        snapshots.save("aggregate/env/x", Snapshot { seq: 25, state: vec![1], parts: Vec::new() }).unwrap();
        let at = |max| snapshots.load("aggregate/tenant", max, log).unwrap().map(|s| (s.seq, s.state));
        assert_eq!(at(9), None);
        assert_eq!(at(25), Some((20, vec![20])));
        assert_eq!(at(u64::MAX), Some((30, vec![30])));
        assert_eq!(snapshots.newest_seq("aggregate/tenant", 25).unwrap(), Some(20));
        assert_eq!(snapshots.newest_seq("aggregate/tenant", 9).unwrap(), None);
        snapshots.remove("aggregate/tenant", 0..30).unwrap();
        assert_eq!(at(25), None, "the older ones are gone");
        assert_eq!(at(u64::MAX), Some((30, vec![30])), "the one at the bound stays");
        assert_eq!(
            snapshots.load("aggregate/env/x", u64::MAX, log).unwrap().map(|s| s.seq),
            Some(25),
            "other names keep theirs"
        );
        snapshots.remove("aggregate/none", 0..u64::MAX).unwrap();
    }

    fn staging(snapshots: &Snapshots) {
        let name = "aggregate/tenant";
        snapshots.save(name, Snapshot { seq: 5, state: vec![5], parts: Vec::new() }).unwrap();
        let staged = snapshots.stage(name, Snapshot { seq: 9, state: vec![9], parts: Vec::new() }).unwrap();
        assert_eq!(staged.seq(), 9);
        assert_eq!(snapshots.newest_seq(name, u64::MAX).unwrap(), Some(5), "staged is not visible");
        drop(staged);
        assert_eq!(snapshots.newest_seq(name, u64::MAX).unwrap(), Some(5), "dropped is discarded");
        let staged =
            snapshots.stage(name, Snapshot { seq: 9, state: vec![9, 9], parts: Vec::new() }).unwrap();
        snapshots.publish(staged, bound(9)).unwrap();
        let published = snapshots.load(name, u64::MAX, log).unwrap().map(|s| (s.seq, s.state));
        assert_eq!(published, Some((9, vec![9, 9])));
    }

    #[test]
    fn a_snapshot_staged_by_another_kind_of_store_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, memory) =
            (Snapshots::beside(dir.path(), process_key()), Snapshots::in_memory(process_key()));
        let staged =
            disk.stage("aggregate/tenant", Snapshot { seq: 3, state: vec![3], parts: Vec::new() }).unwrap();
        assert!(memory.publish(staged, bound(3)).is_err());
        assert_eq!(memory.newest_seq("aggregate/tenant", u64::MAX).unwrap(), None);
        let files = std::fs::read_dir(dir.path().join("snapshots").join(hex("aggregate/tenant"))).unwrap();
        assert_eq!(files.count(), 0, "the refused file is removed");
        let staged =
            memory.stage("aggregate/tenant", Snapshot { seq: 3, state: vec![3], parts: Vec::new() }).unwrap();
        assert!(disk.publish(staged, bound(3)).is_err());
        assert_eq!(disk.newest_seq("aggregate/tenant", u64::MAX).unwrap(), None);
    }

    #[test]
    fn a_staged_snapshot_is_seen_once_published_and_leaves_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        staging(&Snapshots::beside(dir.path(), process_key()));
        staging(&Snapshots::in_memory(process_key()));
        let files = std::fs::read_dir(dir.path().join("snapshots").join(hex("aggregate/tenant")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(files, [file_name(5), file_name(9)].into(), "no staged file is left behind");
    }

    #[test]
    fn the_newest_at_or_before_a_seq_is_found_on_disk_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        check(&Snapshots::beside(dir.path(), process_key()));
        check(&Snapshots::in_memory(process_key()));
    }
}
