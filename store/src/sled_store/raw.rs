//! Hooks for tests and benchmarks, hidden from the docs: what a handle has
//! opened, and the stored bytes read or tampered with behind the store's back.

use std::ops::RangeInclusive;

use super::{corrupt_seq, engine, SledStore};
use crate::keys;
use crate::StoreError;

impl SledStore {
    /// Whether this handle has opened the archive (tests of what a command reads).
    #[doc(hidden)]
    pub fn archive_is_open(&self) -> bool {
        self.inner.archive.is_open()
    }

    /// Up to which seq the records are in the archive (0: none are), for
    /// tests of a seal.
    #[doc(hidden)]
    pub fn archived_upto(&self) -> u64 {
        self.inner.sealed.upto
    }

    /// The stored bytes of record `seq`, for tests that tamper with them.
    #[doc(hidden)]
    pub fn raw_record(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut found = None;
        self.inner.scan(seq..=seq, |_, bytes| {
            found = Some(bytes.to_vec());
            Ok(false)
        })?;
        Ok(found)
    }

    /// The stored bytes of the records in `seqs`, for raw-sled references in
    /// benchmarks.
    #[doc(hidden)]
    pub fn raw_records(&self, seqs: RangeInclusive<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut all = Vec::new();
        self.inner.scan(seqs, |_, bytes| {
            all.push(bytes.to_vec());
            Ok(true)
        })?;
        Ok(all)
    }

    /// Replaces (or, with `None`, removes) the stored bytes of record `seq`
    /// in its chunk, behind the store's back, as a disk fault or an attacker
    /// would: for tests of `verify` and of readers.
    #[doc(hidden)]
    pub fn raw_set_record(&self, seq: u64, bytes: Option<&[u8]>) -> Result<(), StoreError> {
        let first = self.inner.chunk_start(seq)?;
        let key = keys::chunk_key(first);
        let tree = self.inner.chunk_tree(first)?;
        let stored = tree.get(key).map_err(engine)?.unwrap_or_default();
        let chunk = keys::Chunk::of(stored).map_err(|e| corrupt_seq(first, e))?;
        let mut rebuilt = Vec::with_capacity(chunk.len());
        for (i, record) in chunk.records().enumerate() {
            let record = record.map_err(|e| corrupt_seq(first + i as u64, e))?;
            match (first + i as u64 == seq, bytes) {
                (false, _) => keys::push_record(&mut rebuilt, record),
                (true, Some(new)) => keys::push_record(&mut rebuilt, new),
                (true, None) => {}
            }
        }
        tree.insert(key, rebuilt).map_err(engine)?;
        tree.flush().map_err(engine)?;
        Ok(())
    }

    /// Sets an event id index entry behind the store's back, sealed under
    /// the store's key as a bug (or a key leaked) would (tests of `verify`).
    #[doc(hidden)]
    pub fn raw_index_event(&self, id: uuid::Uuid, seq: u64) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.write_index(&mut inner.lock())?;
        let blocks = inner.event_blocks(&inner.events);
        let found = blocks.block_at(id.as_bytes()).map_err(|e| inner.block_error(e))?;
        let (old_key, block) = match found {
            Some((k, b)) => (Some(k), b.to_vec()),
            None => (None, Vec::new()),
        };
        let mut entries: Vec<[u8; 24]> = block
            .chunks_exact(24)
            .filter(|e| e[..16] != id.as_bytes()[..])
            .filter_map(|e| e.try_into().ok())
            .collect();
        entries.push(keys::event_entry(&id, seq));
        entries.sort();
        let mut batch = sled::Batch::default();
        if let Some(k) = old_key {
            batch.remove(k);
        }
        blocks.pack(&entries.concat(), &mut batch);
        inner.events.apply_batch(batch).map_err(engine)?;
        inner.events.flush().map_err(engine)?;
        Ok(())
    }

    /// Removes a stream's index blocks behind the store's back (tests of `verify`).
    #[doc(hidden)]
    pub fn raw_remove_stream_index(&self, stream: &str) -> Result<(), StoreError> {
        self.inner.write_index(&mut self.inner.lock())?;
        for entry in self.inner.events.scan_prefix(keys::stream_prefix(stream)) {
            let (key, _) = entry.map_err(engine)?;
            self.inner.events.remove(key).map_err(engine)?;
        }
        self.inner.events.flush().map_err(engine)?;
        Ok(())
    }

    /// The tree of records and indexes, for tests that tamper with index entries.
    #[doc(hidden)]
    pub fn raw_tree(&self) -> sled::Tree {
        self.inner.events.clone()
    }
}
