//! The archive: a second sled database (`archive/` inside the log's
//! directory) that holds the older records, so that the live one stays small.
//!
//! sled's open reads back a slot per page and a header per segment, so its
//! cost grows with the database; a command that only reads the newest
//! records should not pay for a million old ones. Off by default (see
//! [`Archiving::OFF`]); when on, a close that finds more
//! than twice [`Archiving::keep`] records in the live database moves the
//! oldest whole chunks (at most [`Archiving::most`] records' worth), with
//! their index entries, into the archive. The archive is opened only by a
//! read that reaches past [`Sealed::upto`]: a stream replayed from an old
//! snapshot, time travel, `verify`, a retry of an old append.
//!
//! A seal is crash-safe without a journal: it first notes its cut in the
//! live database (`sealing`), then writes and flushes the archive, then in
//! one atomic batch removes what moved from the live database and moves the
//! mark. Until that batch lands, the live database still holds everything
//! and readers ignore the archive past the mark; the next close redoes the
//! same cut, and replaying the same entries into the archive changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{engine, Inner};
use crate::blocks;
use crate::keys::{self, be_u64, Run};
use crate::StoreError;

/// When a close moves older records into the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archiving {
    /// The newest records a close leaves in the live database; it archives
    /// once the live database holds more than twice this many.
    pub keep: u64,
    /// The most records one close moves (0: it moves none, nor finishes a
    /// seal cut short). A handle that itself appended more (an import, a
    /// sync pass) leaves the archiving to later closes.
    pub most: u64,
}

impl Archiving {
    /// Never archives. The default: moving records out of the live database
    /// deletes them there, and sled does not give the freed space back, so
    /// the live file keeps its size and its open its cost (BENCHMARKS.md,
    /// "tried and dropped"); archiving waits for a live database rewritten
    /// fresh at each seal.
    pub const OFF: Archiving = Archiving { keep: u64::MAX, most: 0 };
}

impl Default for Archiving {
    fn default() -> Self {
        Archiving::OFF
    }
}

/// What the archive holds, as the live database records it (`marchive`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Sealed {
    /// Every record up to this seq (its chunk and index entries) is in the
    /// archive, and nothing of it in the live database.
    pub upto: u64,
    /// The cut of a seal that began and did not finish: the next one makes
    /// the same cut, so what it wrote into the archive is written again unchanged.
    pub sealing: Option<u64>,
    /// Each stream's version at `upto` (streams with a record in the archive).
    pub versions: BTreeMap<String, u64>,
    /// The largest event id in the archive.
    pub newest_id: Option<[u8; 16]>,
}

impl Sealed {
    pub(super) fn read(live: &sled::Tree) -> Result<Sealed, StoreError> {
        match live.get(keys::META_ARCHIVE).map_err(engine)? {
            None => Ok(Sealed::default()),
            Some(v) => bincode::serde::decode_from_slice(&v, bincode::config::standard())
                .map(|(sealed, _)| sealed)
                .map_err(|_| StoreError::Corrupt("the archive mark is malformed".into())),
        }
    }

    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| StoreError::Engine(format!("encoding the archive mark: {e}")))
    }
}

/// The archive's database, opened on first use.
pub(super) struct Archive {
    /// Its directory; `None` for a temporary log, which never archives: it
    /// ends with its handle.
    pub dir: Option<std::path::PathBuf>,
    pub db: std::sync::OnceLock<(sled::Db, sled::Tree)>,
    pub opening: std::sync::Mutex<()>,
}

impl Archive {
    pub(super) fn new(dir: Option<std::path::PathBuf>) -> Archive {
        Archive { dir, db: std::sync::OnceLock::new(), opening: std::sync::Mutex::new(()) }
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
        let config = match &self.archive.dir {
            Some(dir) => sled::Config::new().path(dir),
            None => sled::Config::new().temporary(true),
        };
        let db = config.open().map_err(|e| match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(format!(
                "the archive of {} cannot be opened: its storage files are damaged",
                self.path.display()
            )),
            e => engine(e),
        })?;
        let tree = db.open_tree("events").map_err(engine)?;
        Ok(&self.archive.db.get_or_init(|| (db, tree)).1)
    }

    /// The tree holding the chunk that starts at `first`.
    pub(super) fn chunk_tree(&self, first: u64) -> Result<&sled::Tree, StoreError> {
        if first <= self.sealed.upto && self.sealed.upto > 0 {
            self.archive()
        } else {
            Ok(&self.events)
        }
    }

    /// On close: moves old records into the archive if the policy says so.
    /// Returns how many moved.
    pub(super) fn archive_on_close(&mut self) -> Result<u64, StoreError> {
        // A damaged log stays as it is, to be read and verified.
        if self.archive.dir.is_none()
            || self.archiving.most == 0
            || *self.appended.get_mut() > self.archiving.most
            || self.pending_mut().damaged.is_some()
        {
            return Ok(0);
        }
        let tip = self.tip()?.seq;
        let live = tip.saturating_sub(self.sealed.upto);
        let target = match self.sealed.sealing {
            Some(cut) => cut,
            None if live > self.archiving.keep.saturating_mul(2) => {
                (tip - self.archiving.keep).min(self.sealed.upto.saturating_add(self.archiving.most))
            }
            None => return Ok(0),
        };
        self.seal(target, false)
    }

    /// Moves the whole chunks up to `target` (and their index entries) into
    /// the archive. Needs the handle alone: readers take `sealed` unlocked.
    /// `halt` stops it where a crash could, once the archive is written
    /// (tests of a seal cut short).
    pub(super) fn seal(&mut self, target: u64, halt: bool) -> Result<u64, StoreError> {
        let mut pending = std::mem::take(self.pending_mut());
        let written = self.write_index(&mut pending);
        *self.pending_mut() = pending;
        written?;
        let from = self.sealed.upto;
        // The cut falls between chunks: before the one holding `target + 1`.
        let cut = match self.sealed.sealing {
            Some(cut) => cut,
            None => self.chunk_start(target.saturating_add(1))?.saturating_sub(1),
        };
        if cut <= from {
            return Ok(0);
        }
        let mut intent = self.sealed.clone();
        intent.sealing = Some(cut);
        self.events.insert(keys::META_ARCHIVE, intent.encode()?).map_err(engine)?;
        self.flush_db()?;

        let live = &self.events;
        let mut live_batch = sled::Batch::default();
        let mut archive_batch = sled::Batch::default();
        for entry in live.range(keys::chunk_key(from + 1)..=keys::chunk_key(cut)) {
            let (key, chunk) = entry.map_err(engine)?;
            live_batch.remove(key.clone());
            archive_batch.insert(key, chunk);
        }

        // Event ids: the archive takes those up to the cut, the live blocks
        // are written anew with the rest.
        let (mut moved_ids, mut kept_ids) = (Vec::new(), Vec::new());
        for block in live.scan_prefix(keys::EVENT_PREFIX) {
            let (key, block) = block.map_err(engine)?;
            live_batch.remove(key);
            for entry in block.chunks_exact(keys::EVENT_LAYOUT.entry) {
                let seq = be_u64(&entry[16..]).unwrap_or(0);
                let side = if seq <= cut { &mut moved_ids } else { &mut kept_ids };
                side.extend_from_slice(entry);
            }
        }
        // Runs: a run across the cut is split there.
        let mut runs: BTreeMap<String, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
        for block in live.scan_prefix([keys::TAG_STREAM]) {
            let (key, block) = block.map_err(engine)?;
            let stream = keys::stream_of_key(&key)
                .ok_or_else(|| StoreError::Corrupt("a stream index key is malformed".into()))?
                .0
                .to_owned();
            live_batch.remove(key);
            let (moved, kept) = runs.entry(stream.clone()).or_default();
            for entry in block.chunks_exact(keys::RUN_LAYOUT.entry) {
                let run = Run::of(entry).ok_or_else(|| super::malformed_runs(&stream))?;
                let (before, after) = split_run(run, cut);
                moved.extend(before.iter().flat_map(|r| r.entry()));
                kept.extend(after.iter().flat_map(|r| r.entry()));
            }
        }

        let archive = self.archive()?;
        let merge_error = |e| match e {
            blocks::MergeError::Engine(e) => engine(e),
            blocks::MergeError::Clash(key) => {
                StoreError::Corrupt(format!("archive index entry {key:02x?} is there with another value"))
            }
        };
        blocks::merge(archive, keys::EVENT_PREFIX, keys::EVENT_LAYOUT, &moved_ids, &mut archive_batch)
            .map_err(merge_error)?;
        blocks::pack(keys::EVENT_PREFIX, keys::EVENT_LAYOUT, &kept_ids, &mut live_batch);
        let mut sealed = Sealed { upto: cut, sealing: None, ..self.sealed.clone() };
        for (stream, (moved, kept)) in &runs {
            let prefix = keys::stream_prefix(stream);
            blocks::merge(archive, &prefix, keys::RUN_LAYOUT, moved, &mut archive_batch)
                .map_err(merge_error)?;
            blocks::pack(&prefix, keys::RUN_LAYOUT, kept, &mut live_batch);
            if let Some(last) = moved.chunks_exact(keys::RUN_LAYOUT.entry).last().and_then(Run::of) {
                sealed.versions.insert(stream.clone(), last.end() - 1);
            }
        }
        if let Some(newest) = moved_ids.chunks_exact(keys::EVENT_LAYOUT.entry).map(|e| &e[..16]).max() {
            let newest: [u8; 16] =
                newest.try_into().map_err(|_| StoreError::Corrupt("an event id is short".into()))?;
            sealed.newest_id = sealed.newest_id.max(Some(newest));
        }
        archive.apply_batch(archive_batch).map_err(engine)?;
        archive.flush().map_err(engine)?;
        if halt {
            return Ok(0);
        }

        live_batch.insert(keys::META_ARCHIVE, sealed.encode()?);
        live.apply_batch(live_batch).map_err(engine)?;
        self.flush_db()?;
        self.sealed = sealed;
        Ok(cut - from)
    }
}

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
