//! Appends on PostgreSQL. An append call is one SQL transaction holding the
//! log's advisory lock from its first statement, so that the head it reads
//! is the head it commits after. Appends are checked as the sled store
//! checks them (a retry by event id, the stream version, time), with the
//! ids and stream versions a bunch needs fetched in one query each, then
//! sealed and inserted; the commit lands them all.
//!
//! A [`Transaction`] runs on a connection of its own and stages without the
//! lock, so that a long import holds no other writer off; at its commit it
//! takes the lock and, as the sled store's does, refuses the whole call if
//! any record landed since `begin` (what it read is then still the log's).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{big, count, PgStore, Target};
use crate::record::{check_append, from_nanos, to_nanos, Hash, Metadata, Record, Sealed, GENESIS_HASH};
use crate::{Append, AppendRejection, AppendResult, Appended, ExpectedVersion, StoreError, Transaction};

/// Records checked and sealed, not yet inserted, as the columns of one
/// `INSERT ... SELECT FROM unnest(...)`.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    stream: Vec<String>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    nanos: Vec<i64>,
    format: Vec<i16>,
    body: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl Rows {
    /// Adds a record as stored (`format ++ body ++ hash`).
    fn push(&mut self, seq: u64, stream: &str, version: u64, event_id: Uuid, nanos: i64, stored: &[u8]) {
        let (format, rest) = stored.split_first().unwrap_or((&0, &[]));
        let (body, hash) = rest.split_at(rest.len().saturating_sub(32));
        self.seq.push(big(seq));
        self.stream.push(stream.to_owned());
        self.version.push(big(version));
        self.event_id.push(event_id);
        self.nanos.push(nanos);
        self.format.push(i16::from(*format));
        self.body.push(body.to_vec());
        self.hash.push(hash.to_vec());
    }
}

/// What one append call lands: appends to check and seal, or records sealed elsewhere.
enum Input<'a> {
    Appends(&'a [Append]),
    Sealed(&'a [Sealed]),
}

/// One append call in progress: its records checked and sealed, until inserted.
pub(super) struct Staging<'a> {
    target: &'a Target,
    seq: u64,
    last_nanos: i64,
    /// The server's clock when the call began, if appends are stamped with it.
    clock: Option<i64>,
    prev_hash: Hash,
    /// Each stream this call has met, and its version so far.
    versions: HashMap<String, u64>,
    /// The event ids this call appends.
    new_ids: HashSet<Uuid>,
    rows: Rows,
    results: Vec<Appended>,
}

impl<'a> Staging<'a> {
    /// Starts a call at the log's head, taking the lock first unless
    /// `began` (a transaction's, begun at that head, which must still be
    /// the head).
    async fn start(
        target: &'a Target,
        client: &impl GenericClient,
        began: Option<u64>,
    ) -> AppendResult<Staging<'a>> {
        if began.is_none() {
            lock(target, client).await?;
        }
        let (tip, last_nanos, prev_hash, clock) = tip(target, client).await?;
        let clock = target.server_clock.load(Ordering::Relaxed).then_some(clock);
        if let Some(began) = began.filter(|&b| b != tip) {
            return Ok(Err(AppendRejection::Moved { began, now: tip }));
        }
        Ok(Ok(Staging {
            target,
            seq: tip,
            last_nanos,
            clock,
            prev_hash,
            versions: HashMap::new(),
            new_ids: HashSet::new(),
            rows: Rows::default(),
            results: Vec::new(),
        }))
    }

    /// Checks and seals a bunch of appends ([`Staging::insert`] inserts them).
    async fn add_all(&mut self, client: &impl GenericClient, appends: &[Append]) -> AppendResult<()> {
        let ids = appends.iter().flat_map(|a| a.events.iter().map(|e| e.event_id)).collect();
        let known = self.known(client, ids, appends.iter().map(|a| a.stream.as_str()).collect()).await?;
        for append in appends {
            if let Err(rejection) = self.add(append, &known)? {
                return Ok(Err(rejection));
            }
        }
        Ok(Ok(()))
    }

    /// Checks and stages records sealed elsewhere, byte for byte: each
    /// must be the log's next record.
    async fn add_sealed(&mut self, tx: &impl GenericClient, records: &[Sealed]) -> AppendResult<()> {
        let ids = records.iter().map(|s| s.record().event_id).collect();
        let known = self.known(tx, ids, records.iter().map(|s| s.record().stream.as_str()).collect()).await?;
        for sealed in records {
            let record = sealed.record();
            let seq = self.seq + 1;
            let not_next = |what: String| Ok(Err(AppendRejection::NotNext { seq: record.seq, what }));
            let nanos = to_nanos(record.recorded_at)?;
            let current = self.versions.get(&record.stream).copied().unwrap_or(0);
            if !sealed.hash_is_intact() {
                return not_next("its hash is not the hash of its body".into());
            } else if record.seq != seq {
                return not_next(format!("the next record is {seq}"));
            } else if record.prev_hash != self.prev_hash {
                return not_next(format!("it does not chain to record {}'s hash", self.seq));
            } else if nanos < self.last_nanos {
                return not_next("it is stamped before the record it follows".into());
            } else if known.contains_key(&record.event_id) || !self.new_ids.insert(record.event_id) {
                return not_next(format!("event id {} is in the log already", record.event_id));
            } else if record.stream.len() > usize::from(u16::MAX) {
                return not_next(format!("a stream name of {} bytes", record.stream.len()));
            } else if record.version != current + 1 {
                return not_next(format!("stream '{}' is at version {current}", record.stream));
            }
            self.rows.push(seq, &record.stream, record.version, record.event_id, nanos, sealed.stored());
            (self.seq, self.prev_hash, self.last_nanos) = (seq, record.hash, nanos);
            self.versions.insert(record.stream.clone(), record.version);
        }
        Ok(Ok(()))
    }

    /// Where each of `ids` already is in the log (seq and version), and the
    /// version of each of `streams` this call has not met yet.
    async fn known(
        &mut self,
        tx: &impl GenericClient,
        ids: Vec<Uuid>,
        mut streams: Vec<&str>,
    ) -> Result<HashMap<Uuid, (u64, u64)>, StoreError> {
        let server = |e| self.target.server(e);
        streams.retain(|s| !self.versions.contains_key(*s));
        streams.sort_unstable();
        streams.dedup();
        let by_id = "SELECT event_id, seq, version FROM records WHERE event_id = ANY($1)";
        let by_stream = "SELECT s, (SELECT coalesce(max(version), 0) FROM records WHERE stream = s) \
                         FROM unnest($1::text[]) s";
        // Both sent at once (tokio-postgres pipelines them).
        let (id_params, stream_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
            ([&ids], [&streams]);
        let (ids, versions) =
            tokio::try_join!(tx.query(by_id, &id_params), tx.query(by_stream, &stream_params))
                .map_err(server)?;
        let mut known = HashMap::new();
        for row in ids {
            let (seq, version) = (row.try_get(1).map_err(server)?, row.try_get(2).map_err(server)?);
            known.insert(row.try_get(0).map_err(server)?, (count(seq, "seq")?, count(version, "version")?));
        }
        for row in versions {
            let version = count(row.try_get(1).map_err(server)?, "version")?;
            self.versions.insert(row.try_get(0).map_err(server)?, version);
        }
        Ok(known)
    }

    /// Checks one append against the log and what this call staged before
    /// it (as the sled store's `Staged::check` does, in the same order),
    /// and seals its records. A rejection ends the call.
    fn add(&mut self, append: &Append, known: &HashMap<Uuid, (u64, u64)>) -> AppendResult<()> {
        // A retry: every id in the log already, none new; some of each is a mistake.
        let (mut first, mut last, mut any_new) = (None, None, false);
        for event in &append.events {
            if self.new_ids.contains(&event.event_id) {
                return Ok(Err(AppendRejection::PartialRetry { event_id: event.event_id }));
            }
            match known.get(&event.event_id) {
                Some(&(seq, version)) => {
                    first.get_or_insert((event.event_id, seq));
                    last = Some((seq, version));
                }
                None => any_new = true,
            }
        }
        if let (Some((first_id, first_seq)), Some((last_seq, stream_version))) = (first, last) {
            if any_new {
                return Ok(Err(AppendRejection::PartialRetry { event_id: first_id }));
            }
            self.results.push(Appended { first_seq, last_seq, stream_version, was_retry: true });
            return Ok(Ok(()));
        }
        let stamped;
        let meta = match self.clock {
            Some(clock) => {
                let recorded_at = from_nanos(clock.max(self.last_nanos));
                stamped = Metadata { recorded_at, ..append.meta.clone() };
                &stamped
            }
            None => &append.meta,
        };
        let nanos =
            match check_append(append, meta.recorded_at, self.last_nanos, |id| self.new_ids.insert(id))? {
                Ok(nanos) => nanos,
                Err(rejection) => return Ok(Err(rejection)),
            };
        let current = self.versions.get(&append.stream).copied().unwrap_or(0);
        if let ExpectedVersion::Exactly(expected) = append.expected {
            if expected != current {
                return Ok(Err(AppendRejection::Conflict {
                    stream: append.stream.clone(),
                    expected,
                    actual: current,
                }));
            }
        }
        let first_seq = self.seq + 1;
        let mut version = current;
        for event in &append.events {
            self.seq += 1;
            version += 1;
            let (hash, bytes) = Record::seal(self.seq, &append.stream, version, event, meta, self.prev_hash)?;
            self.rows.push(self.seq, &append.stream, version, event.event_id, nanos, &bytes);
            self.prev_hash = hash;
        }
        if !append.events.is_empty() {
            self.versions.insert(append.stream.clone(), version);
            self.last_nanos = nanos;
        }
        self.results.push(Appended {
            first_seq,
            last_seq: self.seq,
            stream_version: version,
            was_retry: false,
        });
        Ok(Ok(()))
    }

    /// Inserts the records staged, a few thousand a statement.
    async fn insert(&mut self, tx: &impl GenericClient) -> Result<(), StoreError> {
        const AT_ONCE: usize = 4096;
        let Rows { seq, stream, version, event_id, nanos, format, body, hash } =
            std::mem::take(&mut self.rows);
        let sql = "INSERT INTO records (seq, stream, version, event_id, recorded_at_ns, format, body, hash) \
                   SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::bigint[], \
                   $6::smallint[], $7::bytea[], $8::bytea[])";
        for at in (0..seq.len()).step_by(AT_ONCE) {
            let part = at..(at + AT_ONCE).min(seq.len());
            let columns: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &&seq[part.clone()],
                &&stream[part.clone()],
                &&version[part.clone()],
                &&event_id[part.clone()],
                &&nanos[part.clone()],
                &&format[part.clone()],
                &&body[part.clone()],
                &&hash[part],
            ];
            tx.execute(sql, &columns).await.map_err(|e| self.target.server(e))?;
        }
        Ok(())
    }
}

/// Takes the log's lock until the end of the SQL transaction.
async fn lock(target: &Target, tx: &impl GenericClient) -> Result<(), StoreError> {
    let locked = tx.execute("SELECT pg_advisory_xact_lock($1)", &[&target.lock_key]).await;
    locked.map(drop).map_err(|e| target.server(e))
}

/// The head's seq, time and hash (for an empty log: 0, the earliest time,
/// the genesis hash), and the server's clock to the millisecond (as the
/// command line reads the machine's: a time printed is one `--at` takes back).
async fn tip(target: &Target, client: &impl GenericClient) -> Result<(u64, i64, Hash, i64), StoreError> {
    let server = |e| target.server(e);
    let sql = "SELECT r.seq, r.recorded_at_ns, r.hash, \
               floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000000 \
               FROM (SELECT 1) one LEFT JOIN \
               (SELECT seq, recorded_at_ns, hash FROM records ORDER BY seq DESC LIMIT 1) r ON true";
    let row = client.query_one(sql, &[]).await.map_err(server)?;
    let clock = row.try_get(3).map_err(server)?;
    Ok(match row.try_get::<_, Option<i64>>(0).map_err(server)? {
        None => (0, i64::MIN, GENESIS_HASH, clock),
        Some(seq) => {
            let seq = count(seq, "seq")?;
            let hash: &[u8] = row.try_get(2).map_err(server)?;
            (seq, row.try_get(1).map_err(server)?, super::read::hash_of(seq, hash)?, clock)
        }
    })
}

impl PgStore {
    /// Appends every append of `appends`, or none: one SQL transaction.
    pub(super) async fn append_call(&self, appends: &[Append]) -> AppendResult<Vec<Appended>> {
        Ok(self.one_call(Input::Appends(appends)).await?.map(|staging| staging.results))
    }

    /// Appends records sealed elsewhere, each the log's next, all or none.
    pub(super) async fn append_sealed_call(&self, records: &[Sealed]) -> AppendResult<u64> {
        Ok(self.one_call(Input::Sealed(records)).await?.map(|staging| staging.seq))
    }

    /// Stages `input` under the log's lock and commits it, in one SQL
    /// transaction; a rejection drops the transaction, which rolls back.
    async fn one_call(&self, input: Input<'_>) -> AppendResult<Staging<'_>> {
        self.open_to_appends()?;
        let target = &*self.shared.target;
        let server = |e| target.server(e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(server)?;
        let mut staging = match Staging::start(target, &tx, None).await? {
            Ok(staging) => staging,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let staged = match input {
            Input::Appends(appends) => staging.add_all(&tx, appends).await?,
            Input::Sealed(records) => staging.add_sealed(&tx, records).await?,
        };
        if let Err(rejection) = staged {
            return Ok(Err(rejection));
        }
        staging.insert(&tx).await?;
        tx.commit().await.map_err(server)?;
        Ok(Ok(staging))
    }

    /// A [`Transaction`] begun at head `began`, on a connection of its own.
    pub(super) async fn transaction(&self) -> Result<Transaction, StoreError> {
        self.open_to_appends()?;
        let target = Arc::clone(&self.shared.target);
        let began = self.head_seq().await?;
        let client = target.connect().await?;
        let runtime = tokio::runtime::Handle::current();
        Ok(Transaction::spawn(move |appends, commit| {
            runtime.block_on(stream(&target, client, began, appends, commit))
        }))
    }
}

/// Stages the appends a transaction receives until its producer is done;
/// if `commit` was set by then, inserts them under the lock unless the log
/// moved since `began`.
async fn stream(
    target: &Target,
    mut client: tokio_postgres::Client,
    began: u64,
    mut appends: tokio::sync::mpsc::Receiver<Vec<Append>>,
    commit: &AtomicBool,
) -> AppendResult<Vec<Appended>> {
    let server = |e| target.server(e);
    let mut staging = match Staging::start(target, &client, Some(began)).await? {
        Ok(staging) => staging,
        Err(rejection) => return Ok(Err(rejection)),
    };
    while let Some(bunch) = appends.recv().await {
        if let Err(rejection) = staging.add_all(&client, &bunch).await? {
            return Ok(Err(rejection));
        }
    }
    if !commit.load(Ordering::Acquire) {
        // Dropped before its commit: nothing is written, and nobody waits
        // for this outcome.
        return Ok(Ok(Vec::new()));
    }
    if staging.seq == began {
        return Ok(Ok(staging.results));
    }
    let tx = client.transaction().await.map_err(server)?;
    lock(target, &tx).await?;
    let (now, ..) = tip(target, &tx).await?;
    if now != began {
        return Ok(Err(AppendRejection::Moved { began, now }));
    }
    staging.insert(&tx).await?;
    tx.commit().await.map_err(server)?;
    Ok(Ok(staging.results))
}
