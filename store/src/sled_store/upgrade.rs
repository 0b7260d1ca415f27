//! The upgrade of a format 1 log (records keyed by seq in a `log` tree,
//! indexes in an `index` tree) to this layout.

use super::{corrupt_seq, engine, mark, Chunker, Inner, LAST_UNWITNESSED_FORMAT};
use crate::keys::{self, be_u64};
use crate::record::Record;
use crate::StoreError;

impl Inner {
    /// Rewrites a format 1 log (a `log` tree of records keyed by seq, and an
    /// `index` tree) into this layout. The record bytes are kept as they are,
    /// so the hash chain is untouched. The format mark goes in with the last
    /// batch: an upgrade cut short leaves no mark and starts over.
    pub(super) fn upgrade_format_1(&self) -> Result<(), StoreError> {
        let index = self.db.open_tree("index").map_err(engine)?;
        match index.get(keys::META_FORMAT).map_err(engine)? {
            Some(v) if self.parse_mark(&v)? == 1 => {}
            Some(_) => return Err(self.not_ours("its old-layout format mark is not format 1")),
            None => return Err(self.not_ours("it holds data but no usertrail format mark")),
        }
        self.events.clear().map_err(engine)?;
        let log = self.db.open_tree("log").map_err(engine)?;
        let mut batch = sled::Batch::default();
        let mut chunker = Chunker::new(1);
        for (expected, entry) in (1u64..).zip(log.iter()) {
            let (key, bytes) = entry.map_err(engine)?;
            let seq = be_u64(&key).filter(|&s| s == expected && key.len() == 8).ok_or_else(|| {
                StoreError::Corrupt(format!("format 1 log: record {expected} is missing or misplaced"))
            })?;
            Record::peek(&bytes).map_err(|e| corrupt_seq(seq, e))?;
            chunker.push(seq, &bytes, &mut batch);
            if seq % 10_000 == 0 {
                chunker.close(&mut batch);
                self.events.apply_batch(std::mem::take(&mut batch)).map_err(engine)?;
            }
        }
        chunker.close(&mut batch);
        // The indexes are built from the records by `catch_up`, like after a crash.
        // The format without a witness: `attest` writes the witness, then the mark.
        batch.insert(keys::META_FORMAT, mark(LAST_UNWITNESSED_FORMAT));
        self.events.apply_batch(batch).map_err(engine)?;
        self.db.flush().map_err(engine)?;
        self.drop_format_1_trees()
    }

    /// Drops the trees of earlier layouts: format 1's records and index, and
    /// the snapshots kept in sled before they moved to files (caches).
    pub(super) fn drop_format_1_trees(&self) -> Result<(), StoreError> {
        for name in ["log", "index", "snapshots"] {
            if self.has_tree(name.as_bytes()) {
                self.db.drop_tree(name).map_err(engine)?;
            }
        }
        Ok(())
    }
}
