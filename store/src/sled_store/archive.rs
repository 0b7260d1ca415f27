//! The archive: the older records in a database of their own, so that
//! the live one a command opens stays small.
//!
//! sled's open reads back a slot per page and a header per segment, so its
//! cost grows with the database; a command that only reads the newest
//! records should not pay for a million old ones. Deleting the old records
//! from the live database does not help: sled keeps the freed space, and
//! the file and its open cost stay as they were (37 ms after a million
//! records moved out, where the whole database opened in 4). So a seal
//! writes a *fresh* live database instead.
//!
//! The layout: the live database is `live/`, the archive `archive/`. A seal
//! writes the newest records into `live.next/` and swaps it in: the first
//! renames `live/` whole to `archive/` (what it holds past the cut,
//! `Sealed::upto`, is ignored), a later one first moves the live records up
//! to its cut into the archive and sets `live/` aside as `live.old/`. A
//! close seals when the live database holds more than twice
//! [`Archiving::keep`] records, and keeps the newest `keep` to `2 keep`
//! live, whoever appended them: a sync pass's close seals what it wrote.
//!
//! Crash-safe without a journal: the archive is written and flushed before
//! the new live database, which is whole and flushed before `live/` is
//! renamed away, and the mark that moves readers to the archive lives in
//! that new live database. Open finishes a swap cut between its renames and
//! removes a `live.next` that was never renamed; anything a seal cut short
//! wrote into the archive lies past the mark, ignored, and is written again
//! the same (chunks and ids) or rewritten (the runs past the mark) by the
//! next seal. Our lock on the directory keeps other openers out through the
//! swap, which sled's lock on the replaced files cannot.
//!
//! Before these fixed places the log's directory was itself a sled
//! database: the live one, or after a seal the archive beside `live/`.
//! Open moves such a log into place once ([`settle`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::open::{open_sled, NO_LOG};
use super::{engine, mark, Inner, LOG_FORMAT};
use crate::blocks::{BlockError, IndexKey, MAC_BYTES};
use crate::keys::{self, be_u64, Run};
use crate::record::{Hash, Record};
use crate::StoreError;

const LIVE: &str = "live";
const NEXT: &str = "live.next";
const OLD: &str = "live.old";
const ARCHIVE: &str = "archive";
/// Where an earlier layout's sled files gather on their way into place.
const MOVING: &str = "moving";

/// When a close moves older records into the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archiving {
    /// The newest records a close leaves in the live database: it archives
    /// once that holds more than twice this many, down to this many (or a
    /// few more: the cut falls between chunks).
    pub keep: u64,
    /// The most bytes of chunks, or of event id entries, a seal writes into
    /// the archive in one batch. 1 MiB: a seal after a first pass over 30k
    /// users and 96 environments peaked at 650-670 MiB with it, 700 with
    /// 4 MiB and 835-865 with 16, no faster (BENCHMARKS.md, issue 29).
    pub batch_bytes: usize,
}

impl Archiving {
    /// Never archives.
    pub const OFF: Archiving = Archiving { keep: u64::MAX / 4, batch_bytes: 1 << 20 };
}

impl Default for Archiving {
    /// 8,192: a live database of 8k to 16k records opens about as fast as an
    /// empty one (1.0-1.4 ms against 0.9-1.3 for sled alone; 32k to 64k
    /// took 1.5-2.6 ms), and a seal every 8k records costs tens of ms.
    fn default() -> Self {
        Archiving { keep: 8_192, ..Archiving::OFF }
    }
}

/// What the archive holds, as the live database records it (`marchive`).
/// It is not a cache: it says where records live. So it is bound to the
/// record at `upto` and carries a MAC under the index's key; one that fails
/// while `mindexed` passes is named, never passed over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Sealed {
    /// Every record up to this seq (its chunk and index entries) is read
    /// from the archive, and nothing of it is in the live database.
    pub upto: u64,
    /// Each stream's version at `upto` (streams with a record in the archive).
    pub versions: BTreeMap<String, u64>,
    /// The largest event id in the archive up to `upto`.
    pub newest_id: Option<[u8; 16]>,
    /// The hash of record `upto` (zeros: not known yet, while it is rebuilt).
    pub hash: Hash,
}

/// What `marchive`'s MAC covers starts with this.
const MARK_LABEL: &[u8] = b"usertrail archive mark 1\0";

/// `marchive` as an open finds it.
pub(super) enum Mark {
    /// Passed its MAC (or is absent: nothing is archived).
    Checked(Sealed),
    /// Failed it (another key, an older format, or a forgery): only the
    /// seq it names, which the live database's first chunk must confirm.
    Unchecked(u64),
}

impl Sealed {
    pub(super) fn read(live: &sled::Tree, key: &IndexKey) -> Result<Mark, StoreError> {
        let Some(v) = live.get(keys::META_ARCHIVE).map_err(engine)? else {
            return Ok(Mark::Checked(Sealed::default()));
        };
        let config = bincode::config::standard();
        if let Some(at) = v.len().checked_sub(MAC_BYTES) {
            let (body, mac) = v.split_at(at);
            if key.checks(MARK_LABEL, &[body], mac) {
                if let Ok((sealed, _)) = bincode::serde::decode_from_slice(body, config) {
                    return Ok(Mark::Checked(sealed));
                }
            }
        }
        // Every format's mark starts with `upto`.
        bincode::serde::decode_from_slice::<u64, _>(&v, config)
            .map(|(upto, _)| Mark::Unchecked(upto))
            .map_err(|_| StoreError::Corrupt("the archive mark is malformed".into()))
    }

    pub(super) fn encode(&self, key: &IndexKey) -> Result<Vec<u8>, StoreError> {
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| StoreError::Engine(format!("encoding the archive mark: {e}")))?;
        Ok(key.seal(MARK_LABEL, &[&body]))
    }
}

/// The live database's directory in the log at `root`.
pub(super) fn live_dir(root: &Path) -> PathBuf {
    root.join(LIVE)
}

/// Whether `dir` holds a sled database's files.
pub(super) fn has_sled_files(dir: &Path) -> bool {
    dir.join("conf").is_file() || dir.join("db").is_file()
}

/// Whether the log at `root` holds a sled database in any place of ours.
pub(super) fn holds_a_database(root: &Path) -> bool {
    ["", LIVE, NEXT, OLD, ARCHIVE, MOVING].iter().any(|place| has_sled_files(&root.join(place)))
}

/// At open, under the lock: finishes a swap cut between its renames, and
/// removes what a seal cut short left.
pub(super) fn finish_swap(root: &Path) -> std::io::Result<()> {
    let [live, next, old, archive] = [LIVE, NEXT, OLD, ARCHIVE].map(|place| root.join(place));
    if next.exists() {
        // Once `live` is renamed away (to `live.old`, or by a first seal to
        // `archive`), the new one is whole.
        if !live.exists() && (old.exists() || archive.exists()) {
            std::fs::rename(&next, &live)?;
            sync_dir(root)?;
        } else {
            std::fs::remove_dir_all(&next)?;
        }
    }
    if old.exists() && live.exists() {
        std::fs::remove_dir_all(&old)?;
    } else if old.exists() {
        // Renamed away and never replaced: the old one is the live database
        // still, never to be passed over for the archive.
        std::fs::rename(&old, &live)?;
        sync_dir(root)?;
    }
    Ok(())
}

/// At open, under the lock, once the swap is finished: moves a log whose
/// directory is itself a sled database into place, `live/` (or `archive/`,
/// when `live/` is there already). Its files gather in `moving/`, renamed
/// one by one, which then takes its place: a kill at any point leaves the
/// database's files between the directory and `moving/`, and the next open
/// goes on. `ours` says whether the directory's database holds a log: no
/// other is ever moved.
pub(super) fn settle(root: &Path, ours: impl FnOnce() -> Result<bool, StoreError>) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: root.to_path_buf(), source };
    let moving = root.join(MOVING);
    if !moving.exists() {
        if !has_sled_files(root) {
            return Ok(());
        }
        if !ours()? {
            return Err(StoreError::NotOurs { path: root.to_path_buf(), reason: NO_LOG.into() });
        }
        std::fs::create_dir(&moving).map_err(io)?;
    }
    for entry in std::fs::read_dir(root).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let sled_file =
            name.to_str().is_some_and(|n| ["conf", "db", "blobs"].contains(&n) || n.starts_with("snap."));
        if sled_file {
            std::fs::rename(root.join(&name), moving.join(&name)).map_err(io)?;
        }
    }
    sync_dir(&moving).map_err(io)?;
    let place = if root.join(LIVE).exists() { ARCHIVE } else { LIVE };
    std::fs::rename(&moving, root.join(place)).map_err(io)?;
    sync_dir(root).map_err(io)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The swap a seal leaves for after the live database is closed.
pub(super) struct Swap {
    root: PathBuf,
    /// Whether this is the log's first seal, which keeps `live/` whole as the archive.
    first: bool,
    /// Whether [`Swap::finish`] ran it, reporting how it went.
    done: bool,
}

impl Drop for Swap {
    /// Best effort, like the rest of a drop: an open finishes what this does not.
    fn drop(&mut self) {
        if !self.done {
            let _ = self.run();
        }
    }
}

impl Swap {
    /// Runs the swap and says how it went (a close that reports its errors).
    pub(super) fn finish(mut self) -> std::io::Result<()> {
        self.done = true;
        self.run()
    }

    fn run(&self) -> std::io::Result<()> {
        let [live, next, old, archive] = [LIVE, NEXT, OLD, ARCHIVE].map(|place| self.root.join(place));
        std::fs::rename(&live, if self.first { &archive } else { &old })?;
        std::fs::rename(&next, &live)?;
        sync_dir(&self.root)?;
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        Ok(())
    }
}

/// The archive's database, opened on first use.
pub(super) struct Archive {
    /// The log's directory; `None` for a temporary log, which never archives.
    root: Option<PathBuf>,
    lock_timeout: Duration,
    db: OnceLock<(sled::Db, sled::Tree)>,
    opening: Mutex<()>,
}

impl Archive {
    pub(super) fn new(root: Option<PathBuf>, lock_timeout: Duration) -> Archive {
        Archive { root, lock_timeout, db: OnceLock::new(), opening: Mutex::new(()) }
    }

    /// Whether this handle has opened the archive (tests of what a command reads).
    pub(super) fn is_open(&self) -> bool {
        self.db.get().is_some()
    }
}

impl Inner {
    /// The archive's tree, opened now if it is not yet.
    pub(super) fn archive(&self) -> Result<&sled::Tree, StoreError> {
        if let Some((_, tree)) = self.archive.db.get() {
            return Ok(tree);
        }
        let _opening = self.archive.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, tree)) = self.archive.db.get() {
            return Ok(tree);
        }
        let dir = self.archive.root.as_ref().map(|root| root.join(ARCHIVE)).filter(|dir| dir.is_dir());
        let dir = dir.ok_or_else(|| {
            StoreError::Corrupt("the archive mark is set but the log has no archive".into())
        })?;
        let db = open_sled(&dir, &self.path, self.archive.lock_timeout, Instant::now())?;
        let tree = db.open_tree("events").map_err(engine)?;
        self.bound_to(&tree)?;
        Ok(&self.archive.db.get_or_init(|| (db, tree)).1)
    }

    /// Checks that the archive holds the record `marchive` is bound to.
    fn bound_to(&self, archive: &sled::Tree) -> Result<(), StoreError> {
        let Sealed { upto, hash, .. } = self.sealed;
        if hash == Hash::default() {
            return Ok(());
        }
        let chunk = archive.range(keys::chunk_key(0)..=keys::chunk_key(upto)).next_back().transpose();
        let held = chunk.map_err(engine)?.and_then(|(key, stored)| {
            let first = keys::chunk_first(&key)?;
            let chunk = keys::Chunk::of(stored).ok()?;
            let bytes = chunk.records().nth(usize::try_from(upto.checked_sub(first)?).ok()?)?.ok()?;
            Record::peek(bytes).ok().map(|r| r.hash)
        });
        if held == Some(hash) {
            return Ok(());
        }
        Err(StoreError::Corrupt(format!(
            "the archive mark (marchive in {}) is bound to record {upto} with hash {}, which the archive does not hold",
            self.path.display(),
            hex::encode(hash)
        )))
    }

    /// At open: the live database must start right after the records
    /// `marchive` says the archive holds (a seal writes it so), and there
    /// is an archive if it says any are.
    pub(super) fn check_archive_mark(&self) -> Result<(), StoreError> {
        let upto = self.sealed.upto;
        let first = self.events.range(keys::chunk_key(0)..=keys::chunk_key(u64::MAX)).next();
        let first = match first.transpose().map_err(engine)? {
            Some((key, _)) => keys::chunk_first(&key),
            None => None,
        };
        // Records missing from the live database are the witness's to name.
        let Some(first) = first.filter(|&first| first != upto + 1) else {
            return Ok(());
        };
        Err(StoreError::Corrupt(format!(
            "the archive mark (marchive in {}) says records up to {upto} are archived, but the live database starts at record {first}",
            self.path.display(),
        )))
    }

    /// The tree holding the chunk that starts at `first`.
    pub(super) fn chunk_tree(&self, first: u64) -> Result<&sled::Tree, StoreError> {
        if first <= self.sealed.upto && self.sealed.upto > 0 {
            self.archive()
        } else {
            Ok(&self.events)
        }
    }

    /// On close: seals if the policy says so. Returns how many records moved.
    pub(super) fn archive_on_close(&mut self) -> Result<u64, StoreError> {
        let keep = self.archiving.keep;
        // A damaged log stays as it is, to be read and verified.
        if self.archive.root.is_none() || self.pending_mut().damaged.is_some() {
            return Ok(0);
        }
        let tip = self.tip()?.seq;
        if tip.saturating_sub(self.sealed.upto) <= keep.saturating_mul(2) {
            return Ok(0);
        }
        self.seal(tip - keep)
    }

    /// Moves the whole chunks up to `target`, with their index entries, into
    /// the archive, and writes the rest into a new live database that the
    /// drop swaps in. Needs the handle alone: readers take `sealed` unlocked.
    pub(super) fn seal(&mut self, target: u64) -> Result<u64, StoreError> {
        let Some(root) = self.archive.root.clone() else { return Ok(0) };
        let mut pending = std::mem::take(self.pending_mut());
        let written = self.write_index(&mut pending);
        *self.pending_mut() = pending;
        written?;
        let from = self.sealed.upto;
        // The cut falls between chunks: before the one holding `target + 1`.
        let cut = self.chunk_start(target.saturating_add(1))?.saturating_sub(1);
        if cut <= from {
            return Ok(0);
        }
        let (kept_ids, runs, sealed) = self.trusting(|s| s.move_index(from, cut))?;
        // Still the mark of the whole index: the records it names stay.
        let pending = self.pending_mut();
        let indexed =
            super::index::Mark { seq: pending.indexed, hash: pending.tip_hash, heads: pending.heads.clone() };
        let live = &self.events;

        // The new live database: the rest, and the marks.
        let next_dir = root.join(NEXT);
        if next_dir.exists() {
            std::fs::remove_dir_all(&next_dir)
                .map_err(|source| StoreError::Io { path: next_dir.clone(), source })?;
        }
        let next = sled::Config::new().path(&next_dir).cache_capacity(super::open::SLED_CACHE_BYTES).open();
        let next = next.map_err(engine)?;
        let tree = next.open_tree("events").map_err(engine)?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::META_FORMAT, mark(LOG_FORMAT));
        batch.insert(keys::META_INDEXED, indexed.encode(&self.index_key));
        batch.insert(keys::META_ARCHIVE, sealed.encode(&self.index_key)?);
        for entry in live.range(keys::chunk_key(cut + 1)..=keys::chunk_key(u64::MAX)) {
            let (key, chunk) = entry.map_err(engine)?;
            batch.insert(key, chunk);
        }
        self.event_blocks(&tree).pack(&kept_ids, &mut batch);
        for (stream, (_, kept)) in &runs {
            self.run_blocks(&tree, &keys::stream_prefix(stream)).pack(kept, &mut batch);
        }
        tree.apply_batch(batch).map_err(engine)?;
        next.flush().map_err(engine)?;
        drop((tree, next));
        self.swap = Some(Swap { root, first: from == 0, done: false });
        self.sealed = sealed;
        Ok(cut - from)
    }

    /// The live index split at `cut` (a run across it in two), its part up
    /// to the cut written into the archive (once there is one: the first
    /// seal keeps the live database, which holds it all, as it is). Returns
    /// the event id entries and each stream's runs (moved, kept) after the
    /// cut, and the new archive mark.
    ///
    /// Everything goes over in batches of bounded size: sled holds what one
    /// batch writes until it ends, and the seal after a first sync pass of
    /// 2.9M records, its id entries in one batch, peaked at 1.6 GiB.
    /// A seal cut short leaves chunks and id entries past the archive's
    /// mark, as one cut between its batches and the swap always could: reads
    /// stop at the mark, and the next seal writes them again.
    fn move_index(&self, from: u64, cut: u64) -> Result<(Vec<u8>, SplitRuns, Sealed), StoreError> {
        let live = &self.events;
        let archive = if from > 0 { Some(self.archive()?) } else { None };
        if let Some(archive) = archive {
            let (mut batch, mut held) = (sled::Batch::default(), 0);
            for entry in live.range(keys::chunk_key(from + 1)..=keys::chunk_key(cut)) {
                let (key, chunk) = entry.map_err(engine)?;
                held += key.len() + chunk.len();
                batch.insert(key, chunk);
                if held >= self.archiving.batch_bytes {
                    archive.apply_batch(std::mem::take(&mut batch)).map_err(engine)?;
                    held = 0;
                }
            }
            archive.apply_batch(batch).map_err(engine)?;
        }
        let (mut moved_ids, mut kept_ids) = (Vec::new(), Vec::new());
        let mut newest_id = self.sealed.newest_id;
        for block in live.scan_prefix(keys::EVENT_PREFIX) {
            let (key, block) = block.map_err(engine)?;
            let block = self
                .index_key
                .open_block(keys::EVENT_LAYOUT, &key, &block)
                .map_err(|e| self.block_error(e))?;
            for entry in block.chunks_exact(keys::EVENT_LAYOUT.entry) {
                if be_u64(&entry[16..]).unwrap_or(0) > cut {
                    kept_ids.extend_from_slice(entry);
                    continue;
                }
                let id: [u8; 16] =
                    entry[..16].try_into().map_err(|_| StoreError::Corrupt("an event id is short".into()))?;
                newest_id = newest_id.max(Some(id));
                if archive.is_some() {
                    moved_ids.extend_from_slice(entry);
                }
            }
            // The blocks come in id order, so each slice merges as the whole would.
            if let Some(archive) = archive.filter(|_| moved_ids.len() >= self.archiving.batch_bytes) {
                self.merge_ids(archive, &moved_ids)?;
                moved_ids.clear();
            }
        }
        if let Some(archive) = archive.filter(|_| !moved_ids.is_empty()) {
            self.merge_ids(archive, &moved_ids)?;
        }
        let mut runs = SplitRuns::new();
        for block in live.scan_prefix([keys::TAG_STREAM]) {
            let (key, block) = block.map_err(engine)?;
            let block =
                self.index_key.open_block(keys::RUN_LAYOUT, &key, &block).map_err(|e| self.block_error(e))?;
            let stream = keys::stream_of_key(&key)
                .ok_or_else(|| StoreError::Corrupt("a stream index key is malformed".into()))?
                .0
                .to_owned();
            let (moved, kept) = runs.entry(stream.clone()).or_default();
            for entry in block.chunks_exact(keys::RUN_LAYOUT.entry) {
                let run = Run::of(entry).ok_or_else(|| super::malformed_runs(&stream))?;
                let (before, after) = split_run(run, cut);
                moved.extend(before.iter().flat_map(|r| r.entry()));
                kept.extend(after.iter().flat_map(|r| r.entry()));
            }
        }
        let hash = self.hash_at(cut)?.ok_or_else(|| super::corrupt_seq(cut, "missing from the log"))?;
        let mut sealed = Sealed { upto: cut, hash, newest_id, ..self.sealed.clone() };
        for (stream, (moved, _)) in &runs {
            if let Some(last) = moved.chunks_exact(keys::RUN_LAYOUT.entry).last().and_then(Run::of) {
                sealed.versions.insert(stream.clone(), last.end() - 1);
            }
        }
        if let Some(archive) = archive {
            let mut batch = sled::Batch::default();
            for (stream, (moved, _)) in &runs {
                if !moved.is_empty() {
                    let since = self.sealed.versions.get(stream).copied().unwrap_or(0) + 1;
                    self.replace_archived_runs(archive, stream, since, moved, &mut batch)?;
                }
            }
            archive.apply_batch(batch).map_err(engine)?;
            archive.flush().map_err(engine)?;
        }
        Ok((kept_ids, runs, sealed))
    }

    /// Merges sorted id entries into the archive's blocks, in one batch.
    fn merge_ids(&self, archive: &sled::Tree, entries: &[u8]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        self.event_blocks(archive).merge(entries, &mut batch).map_err(|e| match e {
            BlockError::Clash(key) => {
                StoreError::Corrupt(format!("archive event id entry {key:02x?} is there with another seq"))
            }
            e => self.block_error(e),
        })?;
        archive.apply_batch(batch).map_err(engine)
    }

    /// Rewrites a stream's archived runs from version `since` on: what is
    /// there past the mark is a seal's cut short (or, after the first seal,
    /// the archive's own runs past its cut), so it goes, and `moved` takes its place.
    fn replace_archived_runs(
        &self,
        archive: &sled::Tree,
        stream: &str,
        since: u64,
        moved: &[u8],
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        let prefix = keys::stream_prefix(stream);
        let blocks = self.run_blocks(archive, &prefix);
        let mut entries = Vec::new();
        for block in blocks.from(&since.to_be_bytes()).map_err(|e| self.block_error(e))? {
            let (key, block) = block.map_err(|e| self.block_error(e))?;
            batch.remove(key);
            for entry in block.chunks_exact(keys::RUN_LAYOUT.entry) {
                let run = Run::of(entry).ok_or_else(|| super::malformed_runs(stream))?;
                if run.version < since {
                    entries.extend(archived_part(run, self.sealed.upto).iter().flat_map(|r| r.entry()));
                }
            }
        }
        entries.extend_from_slice(moved);
        blocks.pack(&entries, batch);
        Ok(())
    }
}

/// Each stream's run entries split at a seal's cut: those moved, those kept.
type SplitRuns = BTreeMap<String, (Vec<u8>, Vec<u8>)>;

/// A run's part up to `cut` and its part after.
fn split_run(run: Run, cut: u64) -> (Option<Run>, Option<Run>) {
    let last = run.seq + u64::from(run.count) - 1;
    if last <= cut {
        (Some(run), None)
    } else if run.seq > cut {
        (None, Some(run))
    } else {
        let before = (cut - run.seq + 1) as u32;
        (
            Some(Run { count: before, ..run }),
            Some(Run { version: run.version + u64::from(before), seq: cut + 1, count: run.count - before }),
        )
    }
}

/// The part of an archived run up to the archive's mark: an interrupted seal
/// may have left entries past it, which the live database still holds.
pub(super) fn archived_part(run: Run, upto: u64) -> Option<Run> {
    split_run(run, upto).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_split_at_the_cut_into_two_that_cover_it_once() {
        let run = Run { version: 10, seq: 100, count: 5 };
        assert_eq!(split_run(run, 99), (None, Some(run)));
        assert_eq!(split_run(run, 104), (Some(run), None));
        assert_eq!(
            split_run(run, 101),
            (Some(Run { version: 10, seq: 100, count: 2 }), Some(Run { version: 12, seq: 102, count: 3 }))
        );
    }
}
