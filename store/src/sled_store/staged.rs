//! One append call in progress: its appends checked and sealed into a sled
//! batch as they come, committed together or not at all. `append_all`
//! stages a slice holding the append lock throughout; a
//! [`crate::Transaction`] stages appends as its producer decides them
//! (sealing overlaps deciding), taking the lock only while it checks and
//! seals each bunch it receives (about a millisecond), since holding it
//! throughout would stall the process's reads, and at its commit refuses the
//! whole call if any record landed since `begin`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

use rustc_hash::FxHashSet;

use super::{engine, Inner, Pending, INDEX_EVERY};
use crate::keys;
use crate::record::{check_append, seal_all, to_nanos, Hash, Sealed};
use crate::{Append, AppendRejection, AppendResult, Appended, Durability, ExpectedVersion, StoreError};

/// Appends checked and sealed, not yet written.
pub(super) struct Staged<'a> {
    inner: &'a Inner,
    /// The append lock, when held: from the start (`append_all`), or while a
    /// transaction checks one bunch.
    held: Option<MutexGuard<'a, Pending>>,
    tip_seq: u64,
    seq: u64,
    last_nanos: i64,
    prev_hash: Hash,
    /// The newest event id in the index blocks, as of `indexed`: a flush
    /// while a transaction stages moves ids from `Pending` into the blocks.
    newest: Option<[u8; 16]>,
    indexed: u64,
    batch: sled::Batch,
    chunker: Chunker,
    /// Each stream this call appends to, and its version after the call.
    streams: Vec<(String, u64)>,
    /// Where each stream is in `streams`.
    stream_at: HashMap<String, usize>,
    new_ids: FxHashSet<uuid::Uuid>,
    /// What the index learns once committed: (stream, version, seq, id).
    noted: Vec<(usize, u64, u64, uuid::Uuid)>,
    results: Vec<Appended>,
}

impl Inner {
    /// Starts a call at the log's tip, holding the append lock throughout
    /// if `hold`. `began`: the tip a transaction's `begin` saw, which must
    /// still be the tip.
    fn stage(&self, hold: bool, began: Option<u64>) -> AppendResult<Staged<'_>> {
        let pending = self.lock();
        if let Some(why) = &pending.damaged {
            return Err(StoreError::Corrupt(format!("the log cannot be appended to: {why}")));
        }
        let tip = self.tip()?;
        if let Some(began) = began.filter(|&b| b != tip.seq) {
            return Ok(Err(AppendRejection::Moved { began, now: tip.seq }));
        }
        let newest = self.newest_indexed_id()?;
        let indexed = pending.indexed;
        Ok(Ok(Staged {
            inner: self,
            held: hold.then_some(pending),
            tip_seq: tip.seq,
            seq: tip.seq,
            last_nanos: tip.nanos,
            prev_hash: tip.hash,
            newest,
            indexed,
            batch: sled::Batch::default(),
            chunker: Chunker::new(tip.seq + 1),
            streams: Vec::new(),
            stream_at: HashMap::new(),
            new_ids: FxHashSet::default(),
            noted: Vec::new(),
            results: Vec::new(),
        }))
    }

    /// The tip a transaction starts from.
    pub(super) fn tip_seq(&self) -> Result<u64, StoreError> {
        Ok(self.tip()?.seq)
    }

    /// Appends every append of the slice, or none.
    pub(super) fn append_all(&self, appends: &[Append]) -> AppendResult<Vec<Appended>> {
        let mut staged = match self.stage(true, None)? {
            Ok(staged) => staged,
            Err(rejection) => return Ok(Err(rejection)),
        };
        staged.results.reserve(appends.len());
        for append in appends {
            if let Err(rejection) = staged.add(append)? {
                return Ok(Err(rejection));
            }
        }
        staged.commit()
    }

    /// Stages the appends a transaction begun at tip `began` receives until
    /// its producer is done; commits them if `commit` was set by then, else
    /// writes nothing.
    pub(super) fn append_stream(
        &self,
        began: u64,
        mut appends: tokio::sync::mpsc::Receiver<Vec<Append>>,
        commit: &AtomicBool,
    ) -> AppendResult<Vec<Appended>> {
        let mut staged = match self.stage(false, Some(began))? {
            Ok(staged) => staged,
            Err(rejection) => return Ok(Err(rejection)),
        };
        while let Some(bunch) = appends.blocking_recv() {
            // Locked once a bunch, not once an append: a bunch of 256 is
            // checked and sealed in about a millisecond, and locking per
            // append cost more than the checks.
            staged.held = Some(self.lock());
            for append in &bunch {
                if let Err(rejection) = staged.add(append)? {
                    return Ok(Err(rejection));
                }
            }
            staged.held = None;
        }
        if !commit.load(Ordering::Acquire) {
            // Dropped before its commit: nothing is written, and nobody waits
            // for this outcome.
            return Ok(Ok(Vec::new()));
        }
        staged.commit()
    }
}

impl Inner {
    /// Appends records sealed elsewhere, byte for byte, all or none: each
    /// must be the log's next record (seq, chain, stream version, time, a
    /// new event id) with its hash intact. Returns the new tip's seq.
    pub(super) fn append_sealed(&self, records: &[Sealed]) -> AppendResult<u64> {
        let mut staged = match self.stage(true, None)? {
            Ok(staged) => staged,
            Err(rejection) => return Ok(Err(rejection)),
        };
        for sealed in records {
            if let Err(rejection) = staged.add_sealed(sealed)? {
                return Ok(Err(rejection));
            }
        }
        let tip = staged.seq;
        Ok(staged.commit()?.map(|_| tip))
    }
}

impl Staged<'_> {
    /// Checks that a sealed record is the next one after what is staged,
    /// and stages its bytes as they are.
    fn add_sealed(&mut self, sealed: &Sealed) -> AppendResult<()> {
        let record = sealed.record();
        let seq = self.seq + 1;
        let not_next = |what: String| Ok(Err(AppendRejection::NotNext { seq: record.seq, what }));
        if !sealed.hash_is_intact() {
            return not_next("its hash is not the hash of its body".into());
        }
        if record.seq != seq {
            return not_next(format!("the next record is {seq}"));
        }
        if record.prev_hash != self.prev_hash {
            return not_next(format!("it does not chain to record {}'s hash", self.seq));
        }
        let nanos = to_nanos(record.recorded_at)?;
        if nanos < self.last_nanos {
            return not_next("it is stamped before the record it follows".into());
        }
        let inner = self.inner;
        let Some(pending) = self.held.as_ref() else {
            return Err(StoreError::Engine("a sealed append runs under the append lock".into()));
        };
        if pending.indexed != self.indexed {
            self.newest = inner.newest_indexed_id()?;
            self.indexed = pending.indexed;
        }
        if !self.new_ids.insert(record.event_id)
            || inner.event_seq(pending, self.newest, &record.event_id)?.is_some()
        {
            return not_next(format!("event id {} is in the log already", record.event_id));
        }
        if record.stream.len() > usize::from(u16::MAX) {
            return not_next(format!("a stream name of {} bytes", record.stream.len()));
        }
        let stream = match self.stream_at.get(record.stream.as_str()) {
            Some(&i) => i,
            None => {
                let version = pending.version(&record.stream);
                self.stream_at.insert(record.stream.clone(), self.streams.len());
                self.streams.push((record.stream.clone(), version));
                self.streams.len() - 1
            }
        };
        let current = self.streams[stream].1;
        if record.version != current + 1 {
            return not_next(format!("stream '{}' is at version {current}", record.stream));
        }
        self.seq = seq;
        self.chunker.push(seq, sealed.stored(), &mut self.batch);
        self.noted.push((stream, record.version, seq, record.event_id));
        self.prev_hash = record.hash;
        self.streams[stream].1 = record.version;
        self.last_nanos = nanos;
        Ok(Ok(()))
    }

    /// Checks one append against the log and what this call staged before
    /// it, and seals its records. A rejection ends the call.
    fn add(&mut self, append: &Append) -> AppendResult<()> {
        let (stream, current, nanos) = match self.check(append)? {
            Err(rejection) => return Ok(Err(rejection)),
            Ok(None) => return Ok(Ok(())),
            Ok(Some(checked)) => checked,
        };
        let (chunker, batch, noted) = (&mut self.chunker, &mut self.batch, &mut self.noted);
        let (appended, seq, prev_hash) = seal_all(
            append,
            &append.meta,
            (self.seq, current, self.prev_hash),
            |seq, version, id, bytes| {
                chunker.push(seq, bytes, batch);
                noted.push((stream, version, seq, id));
            },
        )?;
        (self.seq, self.prev_hash) = (seq, prev_hash);
        if !append.events.is_empty() {
            self.streams[stream].1 = appended.stream_version;
            self.last_nanos = nanos;
        }
        self.results.push(appended);
        Ok(Ok(()))
    }

    /// The checks of [`Staged::add`] that need the index, under the append
    /// lock: the append's stream (its place in `streams`), version and time,
    /// or `None` for a clean retry (its original positions are noted).
    fn check(&mut self, append: &Append) -> AppendResult<Option<(usize, u64, i64)>> {
        let inner = self.inner;
        let mut locked = None;
        let pending: &Pending = match &self.held {
            Some(held) => held,
            None => locked.insert(inner.lock()),
        };
        if pending.indexed != self.indexed {
            self.newest = inner.newest_indexed_id()?;
            self.indexed = pending.indexed;
        }
        match inner.earlier_append(pending, self.newest, append, &self.new_ids)? {
            Err(rejection) => return Ok(Err(rejection)),
            Ok(Some(retry)) => {
                self.results.push(retry);
                return Ok(Ok(None));
            }
            Ok(None) => {}
        }
        let checked =
            check_append(append, append.meta.recorded_at, self.last_nanos, |id| self.new_ids.insert(id));
        let nanos = match checked? {
            Ok(nanos) => nanos,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let stream = match self.stream_at.get(append.stream.as_str()) {
            Some(&i) => i,
            None => {
                let version = pending.version(&append.stream);
                self.stream_at.insert(append.stream.clone(), self.streams.len());
                self.streams.push((append.stream.clone(), version));
                self.streams.len() - 1
            }
        };
        let current = self.streams[stream].1;
        if let ExpectedVersion::Exactly(expected) = append.expected {
            if expected != current {
                return Ok(Err(AppendRejection::Conflict {
                    stream: append.stream.clone(),
                    expected,
                    actual: current,
                }));
            }
        }
        Ok(Ok(Some((stream, current, nanos))))
    }

    /// Writes everything staged: one sled insert for one chunk, an atomic
    /// batch for several.
    fn commit(mut self) -> AppendResult<Vec<Appended>> {
        let inner = self.inner;
        if self.seq == self.tip_seq {
            return Ok(Ok(self.results));
        }
        let mut pending = match self.held.take() {
            Some(held) => held,
            None => {
                let pending = inner.lock();
                if let Some(why) = &pending.damaged {
                    return Err(StoreError::Corrupt(format!("the log cannot be appended to: {why}")));
                }
                let tip = inner.tip()?.seq;
                if tip != self.tip_seq {
                    return Ok(Err(AppendRejection::Moved { began: self.tip_seq, now: tip }));
                }
                pending
            }
        };
        match self.chunker.single() {
            Some((key, chunk)) => inner.events.insert(key, chunk).map(drop),
            None => {
                self.chunker.close(&mut self.batch);
                inner.events.apply_batch(std::mem::take(&mut self.batch))
            }
        }
        .map_err(engine)?;
        inner.appended.fetch_add(self.seq - self.tip_seq, std::sync::atomic::Ordering::Relaxed);
        // Committed: the index must know these records whatever happens next.
        let pending = &mut *pending;
        let streams = &self.streams;
        pending.note_all(
            self.noted
                .iter()
                .map(|&(stream, version, seq, id)| (streams[stream].0.as_str(), version, seq, id)),
        );
        pending.tip_hash = self.prev_hash;
        let mut unwitnessed = None;
        let after_commit = (|| {
            if inner.durability == Durability::Immediate {
                inner.flush_db()?;
                unwitnessed = inner.witness_tip(self.seq, self.prev_hash).err();
            }
            if pending.len() >= INDEX_EVERY {
                inner.write_index(pending)?;
            }
            Ok(())
        })();
        if let Err(e) = after_commit {
            // Whether the records are durable is unknown: no further appends
            // in this process; reopening finds out from the records.
            pending.damaged = Some(format!("a write after record {} failed: {e}", self.seq));
            return Err(e);
        }
        if let Some(e) = unwitnessed {
            // The records are durable and reported as landed; only their
            // witness lags. Named, and nothing more is appended here.
            pending.damaged =
                Some(format!("the witness could not be written after record {}: {e}", self.seq));
        }
        Ok(Ok(self.results))
    }
}

/// Builds the chunks of one append call: consecutive records, closed at
/// about [`keys::CHUNK_BYTES`].
pub(super) struct Chunker {
    first: u64,
    bytes: Vec<u8>,
    closed: usize,
}

impl Chunker {
    pub(super) fn new(first: u64) -> Chunker {
        Chunker { first, bytes: Vec::with_capacity(keys::CHUNK_BYTES + 1024), closed: 0 }
    }

    /// Adds record `seq` (the one after the last added).
    pub(super) fn push(&mut self, seq: u64, record: &[u8], batch: &mut sled::Batch) {
        if self.bytes.is_empty() {
            self.first = seq;
        }
        keys::push_record(&mut self.bytes, record);
        if self.bytes.len() >= keys::CHUNK_BYTES {
            self.close(batch);
        }
    }

    pub(super) fn close(&mut self, batch: &mut sled::Batch) {
        if !self.bytes.is_empty() {
            batch.insert(&keys::chunk_key(self.first)[..], keys::pack(self.take()));
            self.closed += 1;
        }
    }

    /// The one chunk of an append call that filled only one.
    fn single(&mut self) -> Option<([u8; 9], Vec<u8>)> {
        (self.closed == 0 && !self.bytes.is_empty())
            .then(|| (keys::chunk_key(self.first), keys::pack(self.take())))
    }

    /// The records gathered, leaving room for the next chunk's.
    fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.bytes, Vec::with_capacity(keys::CHUNK_BYTES + 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Causation, Metadata, NewEvent, SledStore};

    fn append(id: u128, expected: u64) -> Append {
        Append {
            stream: "tenant".into(),
            expected: ExpectedVersion::Exactly(expected),
            events: vec![NewEvent {
                event_id: uuid::Uuid::from_u128(id),
                event_type: "T".into(),
                schema_version: 1,
                payload: vec![7; 40],
            }],
            meta: Metadata {
                recorded_at: chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default(),
                actor: "admin".into(),
                correlation_id: uuid::Uuid::from_u128(id),
                causation: Causation::Command { name: "test".into() },
                origin: None,
            },
        }
    }

    #[test]
    fn a_retry_staged_after_a_flush_moved_its_id_into_the_blocks_is_still_a_retry() {
        let store = SledStore::temporary().unwrap();
        let inner = &store.inner;
        let first = inner.append_all(&[append(1, 0)]).unwrap().unwrap();
        // A transaction starts while the id is only in memory...
        let mut staged = inner.stage(false, Some(1)).unwrap().unwrap();
        // ...and a flush writes it into the index blocks before it is retried.
        inner.flush().unwrap();
        staged.add(&append(1, 0)).unwrap().unwrap();
        let landed = staged.commit().unwrap().unwrap();
        assert_eq!(landed, vec![Appended { was_retry: true, ..first[0].clone() }]);
        assert_eq!(inner.tip_seq().unwrap(), 1, "written once");
        inner.flush().unwrap();
        assert!(inner.verify().unwrap().problem.is_none());
    }

    #[test]
    fn a_transaction_whose_log_moved_before_its_first_staging_is_refused_whole() {
        let store = SledStore::temporary().unwrap();
        let inner = &store.inner;
        // `begin` saw an empty log; an append lands before the worker starts.
        inner.append_all(&[append(1, 0)]).unwrap().unwrap();
        let refused = inner.stage(false, Some(0)).unwrap().err();
        assert_eq!(refused, Some(AppendRejection::Moved { began: 0, now: 1 }));
    }
}
