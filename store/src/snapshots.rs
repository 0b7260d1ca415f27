//! Saved states, as files beside the sled database: `snapshots/<hex name>/<seq>`.
//!
//! They are caches (a state is always the fold of the log), and large: kept
//! inside sled, each would be a blob that sled rereads when it recovers its
//! log on open, and a leaf of them a multi-megabyte rewrite. As files, a save
//! is one write and a rename, and a load one read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Snapshot, StoreError};

/// Where snapshots live.
pub(crate) enum Snapshots {
    /// In a directory of the database.
    Dir(PathBuf),
    /// In memory, for temporary stores.
    Memory(Mutex<BTreeMap<(String, u64), Vec<u8>>>),
}

impl Snapshots {
    /// The snapshots of the database at `db`.
    pub(crate) fn beside(db: &Path) -> Snapshots {
        Snapshots::Dir(db.join("snapshots"))
    }

    /// Saves a state; a snapshot already at that seq is replaced. (The
    /// store stages and publishes itself, flushing sled in between.)
    #[cfg(test)]
    pub(crate) fn save(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.publish(self.stage(name, snapshot)?)
    }

    /// Writes a state where no reader looks yet: [`Snapshots::publish`]
    /// makes it the snapshot of `name` at its seq.
    pub(crate) fn stage(&self, name: &str, snapshot: Snapshot) -> Result<StagedSnapshot, StoreError> {
        let Snapshot { seq, state } = snapshot;
        let staged = |held| StagedSnapshot { name: name.to_owned(), seq, held };
        match self {
            Snapshots::Memory(_) => Ok(staged(Held::Bytes(state))),
            Snapshots::Dir(root) => {
                let dir = root.join(hex(name));
                let io = |source| StoreError::Io { path: dir.clone(), source };
                std::fs::create_dir_all(&dir).map_err(io)?;
                // Written aside, then renamed: a reader never sees half a file.
                static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let aside = dir.join(format!(".{seq}.{}.{n}.tmp", std::process::id()));
                let staged = staged(Held::File { aside: aside.clone(), path: dir.join(file_name(seq)) });
                // On failure, dropping `staged` removes what was written.
                std::fs::write(&aside, &state).map_err(io)?;
                Ok(staged)
            }
        }
    }

    /// Makes a staged state the snapshot of its name at its seq, replacing
    /// one already there.
    pub(crate) fn publish(&self, mut staged: StagedSnapshot) -> Result<(), StoreError> {
        match (self, std::mem::replace(&mut staged.held, Held::Published)) {
            (Snapshots::Memory(map), Held::Bytes(state)) => {
                let key = (std::mem::take(&mut staged.name), staged.seq);
                map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, state);
                Ok(())
            }
            (Snapshots::Dir(_), Held::File { aside, path }) => {
                std::fs::rename(&aside, &path).map_err(|source| {
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

    /// Removes the snapshots of `name` taken before `below`.
    pub(crate) fn remove_before(&self, name: &str, below: u64) -> Result<(), StoreError> {
        match self {
            Snapshots::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|(n, seq), _| n != name || *seq >= below);
                Ok(())
            }
            Snapshots::Dir(root) => {
                let dir = root.join(hex(name));
                for seq in seqs(&dir)?.into_iter().filter(|&seq| seq < below) {
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

    /// The seq of the newest snapshot of `name` taken at or before
    /// `max_seq`, without reading it.
    pub(crate) fn newest_seq(&self, name: &str, max_seq: u64) -> Result<Option<u64>, StoreError> {
        match self {
            Snapshots::Memory(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                let range = (name.to_owned(), 0)..=(name.to_owned(), max_seq);
                Ok(map.range(range).next_back().map(|((_, seq), _)| *seq))
            }
            Snapshots::Dir(root) => {
                Ok(seqs(&root.join(hex(name)))?.into_iter().filter(|&seq| seq <= max_seq).max())
            }
        }
    }

    /// The newest snapshot of `name` taken at or before `max_seq`.
    pub(crate) fn load(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        let Some(seq) = self.newest_seq(name, max_seq)? else { return Ok(None) };
        match self {
            Snapshots::Memory(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                Ok(map.get(&(name.to_owned(), seq)).map(|state| Snapshot { seq, state: state.clone() }))
            }
            Snapshots::Dir(root) => {
                let path = root.join(hex(name)).join(file_name(seq));
                match std::fs::read(&path) {
                    Ok(state) => Ok(Some(Snapshot { seq, state })),
                    // Removed meanwhile: a cache miss, not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(StoreError::Io { path, source }),
                }
            }
        }
    }
}

/// A state written by [`EventStore::stage_snapshot`](crate::EventStore::stage_snapshot)
/// where no reader looks yet; dropped unpublished, it is discarded.
#[derive(Debug)]
pub struct StagedSnapshot {
    name: String,
    seq: u64,
    held: Held,
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
    File { aside: PathBuf, path: PathBuf },
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
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(snapshots: &Snapshots) {
        assert_eq!(snapshots.load("aggregate/tenant", 100).unwrap(), None);
        for seq in [10, 30, 20] {
            snapshots.save("aggregate/tenant", Snapshot { seq, state: vec![seq as u8] }).unwrap();
        }
        snapshots.save("aggregate/env/x", Snapshot { seq: 25, state: vec![1] }).unwrap();
        let at = |max| snapshots.load("aggregate/tenant", max).unwrap().map(|s| (s.seq, s.state));
        assert_eq!(at(9), None);
        assert_eq!(at(25), Some((20, vec![20])));
        assert_eq!(at(u64::MAX), Some((30, vec![30])));
        assert_eq!(snapshots.newest_seq("aggregate/tenant", 25).unwrap(), Some(20));
        assert_eq!(snapshots.newest_seq("aggregate/tenant", 9).unwrap(), None);
        snapshots.remove_before("aggregate/tenant", 30).unwrap();
        assert_eq!(at(25), None, "the older ones are gone");
        assert_eq!(at(u64::MAX), Some((30, vec![30])), "the one at the bound stays");
        assert_eq!(
            snapshots.load("aggregate/env/x", u64::MAX).unwrap().map(|s| s.seq),
            Some(25),
            "other names keep theirs"
        );
        snapshots.remove_before("aggregate/none", u64::MAX).unwrap();
    }

    fn staging(snapshots: &Snapshots) {
        let name = "aggregate/tenant";
        snapshots.save(name, Snapshot { seq: 5, state: vec![5] }).unwrap();
        let staged = snapshots.stage(name, Snapshot { seq: 9, state: vec![9] }).unwrap();
        assert_eq!(staged.seq(), 9);
        assert_eq!(snapshots.newest_seq(name, u64::MAX).unwrap(), Some(5), "staged is not visible");
        drop(staged);
        assert_eq!(snapshots.newest_seq(name, u64::MAX).unwrap(), Some(5), "dropped is discarded");
        let staged = snapshots.stage(name, Snapshot { seq: 9, state: vec![9, 9] }).unwrap();
        snapshots.publish(staged).unwrap();
        let published = snapshots.load(name, u64::MAX).unwrap().map(|s| (s.seq, s.state));
        assert_eq!(published, Some((9, vec![9, 9])));
    }

    #[test]
    fn a_snapshot_staged_by_another_kind_of_store_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, memory) = (Snapshots::beside(dir.path()), Snapshots::Memory(Mutex::default()));
        let staged = disk.stage("aggregate/tenant", Snapshot { seq: 3, state: vec![3] }).unwrap();
        assert!(memory.publish(staged).is_err());
        assert_eq!(memory.newest_seq("aggregate/tenant", u64::MAX).unwrap(), None);
        let files = std::fs::read_dir(dir.path().join("snapshots").join(hex("aggregate/tenant"))).unwrap();
        assert_eq!(files.count(), 0, "the refused file is removed");
        let staged = memory.stage("aggregate/tenant", Snapshot { seq: 3, state: vec![3] }).unwrap();
        assert!(disk.publish(staged).is_err());
        assert_eq!(disk.newest_seq("aggregate/tenant", u64::MAX).unwrap(), None);
    }

    #[test]
    fn a_staged_snapshot_is_seen_once_published_and_leaves_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        staging(&Snapshots::beside(dir.path()));
        staging(&Snapshots::Memory(Mutex::default()));
        let files = std::fs::read_dir(dir.path().join("snapshots").join(hex("aggregate/tenant")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(files, [file_name(5), file_name(9)].into(), "no staged file is left behind");
    }

    #[test]
    fn the_newest_at_or_before_a_seq_is_found_on_disk_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        check(&Snapshots::beside(dir.path()));
        check(&Snapshots::Memory(Mutex::default()));
    }
}
