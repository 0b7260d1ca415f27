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

    /// Saves a state; a snapshot already at that seq is replaced.
    pub(crate) fn save(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        match self {
            Snapshots::Memory(map) => {
                map.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((name.to_owned(), snapshot.seq), snapshot.state);
                Ok(())
            }
            Snapshots::Dir(root) => {
                let dir = root.join(hex(name));
                let io = |source| StoreError::Io { path: dir.clone(), source };
                std::fs::create_dir_all(&dir).map_err(io)?;
                // Written aside, then renamed: a reader never sees half a file.
                static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = dir.join(format!(".{}.{}.{n}.tmp", snapshot.seq, std::process::id()));
                std::fs::write(&tmp, &snapshot.state).map_err(io)?;
                std::fs::rename(&tmp, dir.join(file_name(snapshot.seq))).map_err(io)
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

    #[test]
    fn the_newest_at_or_before_a_seq_is_found_on_disk_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        check(&Snapshots::beside(dir.path()));
        check(&Snapshots::Memory(Mutex::default()));
    }
}
