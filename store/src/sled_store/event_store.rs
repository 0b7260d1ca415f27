//! The async [`EventStore`] for [`SledStore`], and its other entry points:
//! each runs a call of `Inner` on a blocking thread; snapshots are bound to
//! the record they were folded to.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Durability, Inner, SledStore};
use crate::record::{Record, Sealed};
use crate::snapshots::{CacheMiss, StagedSnapshot};
use crate::{
    Append, AppendResult, Appended, EventStore, Head, PartEntry, Problem, Snapshot, StoreError, Transaction,
    VerifyReport,
};

impl SledStore {
    /// The blocking form of [`EventStore::append_all`], for callers off the runtime.
    pub fn append_all_blocking(&self, appends: &[Append]) -> AppendResult<Vec<Appended>> {
        self.inner.trusting(|s| s.append_all(appends))
    }

    /// The blocking form of [`EventStore::read_log`].
    pub fn read_log_blocking(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.read_log(from, to, limit)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl Inner {
    fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.publish_snapshot(self.snapshots.stage(name, snapshot)?)
    }

    fn publish_snapshot(&self, staged: StagedSnapshot) -> Result<(), StoreError> {
        // A snapshot file must never outlive the records it reflects: in the
        // batched mode they may not be on disk yet.
        if self.durability == Durability::Batched && self.snapshots.on_disk() {
            self.flush_db()?;
        }
        // Bound to the record it was folded to, which must be in the log.
        let hash = self.hash_at(staged.seq())?.ok_or_else(|| {
            StoreError::Task(format!("a snapshot at record {} is past the log's head", staged.seq()))
        })?;
        self.snapshots.publish(staged, hash)
    }

    fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        self.snapshots.load(name, max_seq, |seq| self.hash_at(seq))
    }

    fn check_snapshot(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        self.snapshots.check(name, seq, |seq| self.hash_at(seq))
    }

    fn remove_snapshots(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        self.snapshots.remove(name, seqs)
    }
}

#[async_trait]
impl EventStore for SledStore {
    async fn append(&self, append: Append) -> AppendResult<Appended> {
        let outcome = self.append_all(vec![append]).await?;
        Ok(outcome.map(|mut v| v.remove(0)))
    }

    async fn append_all(&self, appends: Vec<Append>) -> AppendResult<Vec<Appended>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.trusting(|s| s.append_all(&appends)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn begin(&self) -> Result<Transaction, StoreError> {
        // The index a transaction will look ids up in, checked before it
        // starts: a miss met once it runs cannot run it again.
        let began =
            self.blocking(|s| s.trusting(|s| s.newest_indexed_id().and_then(|_| s.tip_seq()))).await?;
        let inner = Arc::clone(&self.inner);
        Ok(Transaction::spawn(move |appends, commit| inner.append_stream(began, appends, commit)))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.flush()).await
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.blocking(|s| s.head()).await
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.stream_version(&stream)).await
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Record>, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.trusting(|s| s.read_stream(&stream, from_version))).await
    }

    async fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let stream = stream.to_owned();
        self.blocking(move |s| s.trusting(|s| s.read_stream_until(&stream, from_version, max_seq))).await
    }

    async fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.blocking(move |s| s.read_log(from, to, limit)).await
    }

    async fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        self.blocking(move |s| s.seq_at(time)).await
    }

    async fn read_sealed(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Sealed>, StoreError> {
        self.blocking(move |s| s.read_sealed(from, to, limit)).await
    }

    async fn append_sealed(&self, records: Vec<Sealed>) -> AppendResult<u64> {
        self.blocking(move |s| s.trusting(|s| s.append_sealed(&records))).await
    }

    fn release(self: Arc<Self>) -> Result<u64, StoreError> {
        // Another holder of this handle closes it, or its drop does.
        Arc::try_unwrap(self).map_or(Ok(0), SledStore::close_if_last)
    }

    fn damage(&self) -> Option<String> {
        self.inner.lock().damaged.clone()
    }

    async fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.save_snapshot(&name, snapshot)).await
    }

    async fn stage_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<StagedSnapshot, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.snapshots.stage(&name, snapshot)).await
    }

    async fn publish_snapshot(&self, staged: StagedSnapshot) -> Result<(), StoreError> {
        self.blocking(move |s| s.publish_snapshot(staged)).await
    }

    async fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.load_snapshot(&name, max_seq)).await
    }

    async fn remove_snapshots(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.remove_snapshots(&name, seqs)).await
    }

    async fn snapshot_parts(
        &self,
        name: &str,
        seq: u64,
        which: &[u32],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let (name, which) = (name.to_owned(), which.to_vec());
        self.blocking(move |s| s.snapshots.parts(&name, seq, &which, |seq| s.hash_at(seq))).await
    }

    async fn snapshot_table(&self, name: &str, seq: u64) -> Result<Option<Vec<PartEntry>>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.snapshots.table(&name, seq, |seq| s.hash_at(seq))).await
    }

    async fn snapshot_names(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.blocking(|s| s.snapshots.all()).await
    }

    async fn check_snapshot(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| s.check_snapshot(&name, seq)).await
    }

    fn index_misses(&self) -> Vec<(u64, String)> {
        self.inner.index_misses()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.blocking(|s| s.verify()).await
    }

    async fn chain_break(&self, from: u64, to: u64) -> Result<Option<Problem>, StoreError> {
        self.blocking(move |s| s.chain_break(from, to)).await
    }
}
