//! The upgrade of a format 1 log (records keyed by seq in a `log` tree,
//! indexes in an `index` tree) to this layout.

use super::staged::Chunker;
use super::{corrupt_seq, engine, mark, Inner, LAST_UNWITNESSED_FORMAT};
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::record::GENESIS_HASH;
    use crate::sled_store::fixtures::{append_to, event, meta};
    use crate::{ExpectedVersion, OpenOptions, SledStore};

    #[test]
    fn a_format_1_log_is_upgraded_in_place_with_its_records_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut originals = Vec::new();
        {
            // The format 1 layout: records keyed by seq in `log`, the mark in `index`.
            let db = sled::Config::new().path(&path).open().unwrap();
            let log = db.open_tree("log").unwrap();
            let index = db.open_tree("index").unwrap();
            index.insert(keys::META_FORMAT, mark(1)).unwrap();
            let (mut prev, mut versions) = (GENESIS_HASH, HashMap::new());
            for seq in 1..=25u64 {
                let stream = if seq % 3 == 0 { "env/a" } else { "tenant" };
                let version = versions.entry(stream).and_modify(|v| *v += 1).or_insert(1u64);
                let (hash, bytes) =
                    Record::seal(seq, stream, *version, &event(seq), &meta(seq), prev).unwrap();
                log.insert(seq.to_be_bytes(), bytes.clone()).unwrap();
                originals.push(bytes);
                prev = hash;
            }
            db.flush().unwrap();
        }
        let store = SledStore::open(&path, OpenOptions::default()).unwrap();
        assert!(!store.inner.has_tree(b"log") && !store.inner.has_tree(b"index"), "old trees dropped");
        let report = store.inner.verify().unwrap();
        assert_eq!((report.records, report.problem), (25, None));
        for (seq, bytes) in (1..).zip(&originals) {
            assert_eq!(store.raw_record(seq).unwrap().as_ref(), Some(bytes), "record {seq} kept as it was");
        }
        assert_eq!(store.inner.stream_version("env/a").unwrap(), 8);
        assert_eq!(store.inner.stream_version("tenant").unwrap(), 17);
        let env: Vec<u64> = store.inner.read_stream("env/a", 3).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(env, vec![9, 12, 15, 18, 21, 24]);
        // It goes on as a format 3 log, and a retry of an old event is still known.
        let next = append_to("env/a", ExpectedVersion::Exactly(8), vec![event(26)], 26);
        let landed = store.append_all_blocking(&[next]).unwrap().unwrap();
        assert_eq!((landed[0].first_seq, landed[0].stream_version), (26, 9));
        let old = append_to("tenant", ExpectedVersion::Any, vec![event(4)], 27);
        assert!(store.append_all_blocking(&[old]).unwrap().unwrap()[0].was_retry);
        drop(store);
        let reopened = SledStore::open(&path, OpenOptions::default()).unwrap();
        assert_eq!(reopened.inner.verify().unwrap().records, 26);
    }
}
