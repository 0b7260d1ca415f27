//! Appends on PostgreSQL. An append call is one SQL transaction holding the
//! log's advisory lock from its first statement, so that the head it reads
//! is the head it commits after. Appends are checked as the sled store
//! checks them (a retry by event id, the stream version, time), then sealed
//! and inserted; the commit lands them all.
//!
//! A call is two round trips to the server: `BEGIN`, the lock, the head and
//! the lookups of the call's ids and streams go together, then the inserts
//! and `COMMIT`. The statements are prepared once per connection
//! ([`Statements`]) and sent in order (`biased` joins: tokio-postgres sends
//! a query when first polled, and the server runs them as they come), so
//! nothing reads before the lock.
//!
//! A call that follows the connection's own last one is checked and sealed
//! as if the log were still where that call left it, and goes as one
//! statement ([`FOLLOW`]); if the log has moved, the server's constraints
//! refuse it and the call goes the way above, which alone turns a call down.
//!
//! A [`Transaction`] runs on a connection of its own and stages without the
//! lock, so that a long import holds no other writer off; at its commit it
//! takes the lock and, as the sled store's does, refuses the whole call if
//! any record landed since `begin` (what it read is then still the log's).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use super::{big, count, Connection, PgStore, Target};
use crate::record::{check_append, from_nanos, seal_all, to_nanos, Hash, Metadata, Sealed, GENESIS_HASH};
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
    /// Inserts rows `part` by `insert`, given its parameters after the columns; how many went in.
    async fn insert(
        &self,
        client: &Client,
        insert: &Statement,
        part: std::ops::Range<usize>,
        after: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let Rows { seq, stream, version, event_id, nanos, format, body, hash } = self;
        let columns: [&(dyn ToSql + Sync); 8] = [
            &&seq[part.clone()],
            &&stream[part.clone()],
            &&version[part.clone()],
            &&event_id[part.clone()],
            &&nanos[part.clone()],
            &&format[part.clone()],
            &&body[part.clone()],
            &&hash[part],
        ];
        client.execute(insert, &[&columns[..], after].concat()).await
    }

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

impl Input<'_> {
    /// Checks and seals the call's records in `staging`, given what the log holds of their ids and streams.
    fn stage(&self, staging: &mut Staging, lookup: Lookup) -> AppendResult<()> {
        match self {
            Input::Appends(appends) => staging.add_all(appends, lookup),
            Input::Sealed(records) => staging.add_sealed(records, lookup),
        }
    }

    /// Whether every append of the call lands a record (a record sealed elsewhere always does).
    fn every_append_lands(&self) -> bool {
        match self {
            Input::Appends(appends) => appends.iter().all(|a| !a.events.is_empty()),
            Input::Sealed(_) => true,
        }
    }

    /// The event ids and streams the call's checks look up.
    fn keys(&self) -> (Vec<Uuid>, Vec<&str>) {
        match self {
            Input::Appends(appends) => keys(appends),
            Input::Sealed(records) => (
                records.iter().map(|s| s.record().event_id).collect(),
                distinct(records.iter().map(|s| s.record().stream.as_str())),
            ),
        }
    }
}

/// The event ids and streams a bunch of appends' checks look up.
fn keys(appends: &[Append]) -> (Vec<Uuid>, Vec<&str>) {
    let ids = appends.iter().flat_map(|a| a.events.iter().map(|e| e.event_id)).collect();
    (ids, distinct(appends.iter().map(|a| a.stream.as_str())))
}

/// Each stream once.
fn distinct<'s>(streams: impl Iterator<Item = &'s str>) -> Vec<&'s str> {
    let mut streams: Vec<&str> = streams.collect();
    streams.sort_unstable();
    streams.dedup();
    streams
}

/// Takes the log's lock until the end of the SQL transaction.
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
/// The head's seq, time and hash (none for an empty log), and the server's
/// clock to the millisecond (as the command line reads the machine's: a
/// time printed is one `--at` takes back).
const TIP: &str = "SELECT r.seq, r.recorded_at_ns, r.hash, \
                   floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000000 \
                   FROM (SELECT 1) one LEFT JOIN \
                   (SELECT seq, recorded_at_ns, hash FROM records ORDER BY seq DESC LIMIT 1) r ON true";
/// Where each of some event ids already is in the log.
const BY_ID: &str = "SELECT event_id, seq, version FROM records WHERE event_id = ANY($1)";
/// The version of each of some streams.
const BY_STREAM: &str = "SELECT s, (SELECT coalesce(max(version), 0) FROM records WHERE stream = s) \
                         FROM unnest($1::text[]) s";
/// Rows staged by [`Rows`], column by column.
const INSERT: &str =
    "INSERT INTO records (seq, stream, version, event_id, recorded_at_ns, format, body, hash) \
                      SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::bigint[], \
                      $6::smallint[], $7::bytea[], $8::bytea[])";
/// [`INSERT`] in a statement of its own (one transaction), holding the
/// lock before any row goes in, and only if record `$10` (0: none) is still
/// the head's hash `$11` where the connection's last call left it. If the
/// log has moved since, seq `$10 + 1` is taken: the primary key refuses the
/// insert, as the unique event id refuses a retry and (stream, version) a
/// stream that has moved.
const FOLLOW: &str = "INSERT INTO records (seq, stream, version, event_id, recorded_at_ns, format, body, hash) \
                      SELECT u.* FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::bigint[], \
                      $6::smallint[], $7::bytea[], $8::bytea[]) u \
                      CROSS JOIN (SELECT pg_advisory_xact_lock($9)) locked \
                      WHERE $10 = 0 OR EXISTS (SELECT 1 FROM records WHERE seq = $10 AND hash = $11)";
/// Records inserted by one statement.
const AT_ONCE: usize = 4096;
/// Streams a connection remembers the versions of ([`Last`]).
const STREAMS_KEPT: usize = 4096;

/// The log's head as an append finds it: seq, time, hash, and the server's clock.
type Tip = (u64, i64, Hash, i64);

/// An append's statements, prepared on a connection: parsed and planned
/// once, not at every append.
pub(super) struct Statements {
    lock: Statement,
    tip: Statement,
    by_id: Statement,
    by_stream: Statement,
    insert: Statement,
    follow: Statement,
}

impl Statements {
    /// Prepares them on `client`, all in one round trip.
    pub(super) async fn prepare(target: &Target, client: &Client) -> Result<Statements, StoreError> {
        use Type as T;
        let columns = [
            T::INT8_ARRAY,
            T::TEXT_ARRAY,
            T::INT8_ARRAY,
            T::UUID_ARRAY,
            T::INT8_ARRAY,
            T::INT2_ARRAY,
            T::BYTEA_ARRAY,
            T::BYTEA_ARRAY,
        ];
        let after = [&columns[..], &[T::INT8, T::INT8, T::BYTEA]].concat();
        let (lock, tip, by_id, by_stream, insert, follow) = tokio::try_join!(
            client.prepare_typed(LOCK, &[T::INT8]),
            client.prepare_typed(TIP, &[]),
            client.prepare_typed(BY_ID, &[T::UUID_ARRAY]),
            client.prepare_typed(BY_STREAM, &[T::TEXT_ARRAY]),
            client.prepare_typed(INSERT, &columns),
            client.prepare_typed(FOLLOW, &after),
        )
        .map_err(|e| target.server(e))?;
        Ok(Statements { lock, tip, by_id, by_stream, insert, follow })
    }
}

/// An SQL transaction begun on a connection; unless it ends by
/// [`Open::commit`] or [`Open::rollback`] (an error, or a call dropped
/// midway), the connection is marked failed, so the next call connects anew
/// and the server rolls back what this one left open.
struct Open<'c> {
    target: &'c Target,
    client: &'c Client,
    statements: &'c Statements,
    ended: bool,
}

impl<'c> Open<'c> {
    /// `BEGIN`, the lock, the head, and the lookups of `ids` and `streams`, sent together.
    async fn begin(
        target: &'c Target,
        (client, statements): (&'c Client, &'c Statements),
        ids: &[Uuid],
        streams: &[&str],
    ) -> Result<(Open<'c>, Tip, Lookup), StoreError> {
        let open = Open { target, client, statements, ended: false };
        let (_, _, tip, lookup) = tokio::try_join!(
            biased;
            async { client.batch_execute("BEGIN").await.map_err(|e| target.server(e)) },
            async {
                let locked = client.query(&statements.lock, &[&target.lock_key]).await;
                locked.map_err(|e| target.server(e))
            },
            tip(target, (client, statements)),
            lookup(target, (client, statements), ids, streams),
        )?;
        Ok((open, tip, lookup))
    }

    /// Inserts `rows` and commits: the last insert goes with `COMMIT`.
    async fn commit(mut self, rows: Rows) -> Result<(), StoreError> {
        let (client, target, insert) = (self.client, self.target, &self.statements.insert);
        let server = |e| target.server(e);
        let mut parts = (0..rows.seq.len()).step_by(AT_ONCE).map(|at| at..(at + AT_ONCE).min(rows.seq.len()));
        let last = parts.next_back();
        for part in parts {
            rows.insert(client, insert, part, &[]).await.map_err(server)?;
        }
        tokio::try_join!(
            biased;
            async {
                match last {
                    Some(part) => rows.insert(client, insert, part, &[]).await.map(drop),
                    None => Ok(()),
                }
            },
            client.batch_execute("COMMIT"),
        )
        .map_err(server)?;
        self.ended = true;
        target.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rolls back: a rejection writes nothing.
    async fn rollback(mut self) -> Result<(), StoreError> {
        self.client.batch_execute("ROLLBACK").await.map_err(|e| self.target.server(e))?;
        self.ended = true;
        Ok(())
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.target.failed.store(true, Ordering::Relaxed);
        }
    }
}

/// What the log holds of some ids and streams: where each id is (seq and
/// version), and each stream's version.
struct Lookup {
    known: HashMap<Uuid, (u64, u64)>,
    versions: Vec<(String, u64)>,
}

/// Looks `ids` and `streams` up, both queries sent together.
async fn lookup(
    target: &Target,
    (client, statements): (&Client, &Statements),
    ids: &[Uuid],
    streams: &[&str],
) -> Result<Lookup, StoreError> {
    let server = |e| target.server(e);
    let (by_id, by_stream): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&ids], [&streams]);
    let (ids, versions) = tokio::try_join!(
        biased;
        client.query(&statements.by_id, &by_id),
        client.query(&statements.by_stream, &by_stream),
    )
    .map_err(server)?;
    let mut known = HashMap::new();
    for row in ids {
        let (seq, version) = (row.try_get(1).map_err(server)?, row.try_get(2).map_err(server)?);
        known.insert(row.try_get(0).map_err(server)?, (count(seq, "seq")?, count(version, "version")?));
    }
    let versions = versions
        .iter()
        .map(|row| Ok((row.try_get(0).map_err(server)?, count(row.try_get(1).map_err(server)?, "version")?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(Lookup { known, versions })
}

/// One append call in progress: its records checked and sealed, until inserted.
struct Staging {
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

impl Staging {
    /// Starts a call at the log's head `tip`.
    fn new(target: &Target, tip: Tip) -> Staging {
        let (seq, last_nanos, prev_hash, clock) = tip;
        Staging {
            seq,
            last_nanos,
            clock: target.server_clock.load(Ordering::Relaxed).then_some(clock),
            prev_hash,
            versions: HashMap::new(),
            new_ids: HashSet::new(),
            rows: Rows::default(),
            results: Vec::new(),
        }
    }

    /// Takes in what the log holds of the streams this call has not met yet.
    fn learn(&mut self, versions: Vec<(String, u64)>) {
        for (stream, version) in versions {
            self.versions.entry(stream).or_insert(version);
        }
    }

    /// Checks and seals a bunch of appends, given what the log holds of
    /// their ids and streams.
    fn add_all(&mut self, appends: &[Append], lookup: Lookup) -> AppendResult<()> {
        self.learn(lookup.versions);
        for append in appends {
            if let Err(rejection) = self.add(append, &lookup.known)? {
                return Ok(Err(rejection));
            }
        }
        Ok(Ok(()))
    }

    /// Checks and stages records sealed elsewhere, byte for byte: each
    /// must be the log's next record.
    fn add_sealed(&mut self, records: &[Sealed], lookup: Lookup) -> AppendResult<()> {
        self.learn(lookup.versions);
        let known = lookup.known;
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
        let rows = &mut self.rows;
        let (appended, seq, prev_hash) =
            seal_all(append, meta, (self.seq, current, self.prev_hash), |seq, version, id, bytes| {
                rows.push(seq, &append.stream, version, id, nanos, bytes)
            })?;
        (self.seq, self.prev_hash) = (seq, prev_hash);
        if !append.events.is_empty() {
            self.versions.insert(append.stream.clone(), appended.stream_version);
            self.last_nanos = nanos;
        }
        self.results.push(appended);
        Ok(Ok(()))
    }
}

/// The head's seq, time and hash (for an empty log: 0, the earliest time,
/// the genesis hash), and the server's clock ([`TIP`]).
async fn tip(target: &Target, (client, statements): (&Client, &Statements)) -> Result<Tip, StoreError> {
    let server = |e| target.server(e);
    let row = client.query(&statements.tip, &[]).await.map_err(server)?;
    let row = row.first().ok_or_else(|| target.schema_error("the head's query returned no row"))?;
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

/// Where a connection's last call left the log: its head, and the version
/// of each stream its calls met. A guess once another writer has appended,
/// which [`FOLLOW`] lands only while it is still true.
pub(super) struct Last {
    tip: Tip,
    versions: HashMap<String, u64>,
}

impl Last {
    /// Remembers where `staging`, just committed, left the log.
    fn remember(last: &mut Option<Last>, staging: &Staging) {
        let mut versions = last.take().map(|l| l.versions).unwrap_or_default();
        if versions.len() + staging.versions.len() > STREAMS_KEPT {
            versions.clear();
        }
        versions.extend(staging.versions.iter().map(|(stream, &version)| (stream.clone(), version)));
        let tip = (staging.seq, staging.last_nanos, staging.prev_hash, 0);
        *last = Some(Last { tip, versions });
    }
}

impl Connection {
    /// Lands `input` in one statement if the log is still where this
    /// connection's last call left it; `None` when it cannot tell, or the
    /// log has moved, or the guess turns the call down: the locked call then
    /// decides from the log itself. Not for appends stamped with the
    /// server's clock, which is read under the lock.
    async fn follow(&mut self, target: &Target, input: &Input<'_>) -> Result<Option<Staging>, StoreError> {
        let Some(last) = &self.last else { return Ok(None) };
        if target.server_clock.load(Ordering::Relaxed) || !input.every_append_lands() {
            return Ok(None);
        }
        let versions =
            input.keys().1.into_iter().map(|s| Some((s.to_owned(), *last.versions.get(s)?))).collect();
        let Some(versions) = versions else { return Ok(None) };
        let tip = last.tip;
        let mut staging = Staging::new(target, tip);
        let lookup = Lookup { known: HashMap::new(), versions };
        if input.stage(&mut staging, lookup)?.is_err() || staging.rows.seq.len() > AT_ONCE {
            return Ok(None);
        }
        let (client, statements) = self.prepared(target).await?;
        let (head, hash) = (big(tip.0), tip.2.as_slice());
        let rows = &staging.rows;
        let after: [&(dyn ToSql + Sync); 3] = [&target.lock_key, &head, &hash];
        match rows.insert(client, &statements.follow, 0..rows.seq.len(), &after).await {
            Ok(n) if n == rows.seq.len() as u64 => {
                target.commits.fetch_add(1, Ordering::Relaxed);
                staging.rows = Rows::default();
                Last::remember(&mut self.last, &staging);
                Ok(Some(staging))
            }
            // Record `head` is not what this connection left: the log is not the one it wrote to.
            Ok(_) => Ok(None),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
            Err(e) => Err(target.server(e)),
        }
    }
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
    /// transaction; a rejection rolls it back.
    async fn one_call(&self, input: Input<'_>) -> AppendResult<Staging> {
        self.open_to_appends()?;
        let target = &*self.shared.target;
        let mut connection = self.client().await?;
        if let Some(staging) = connection.follow(target, &input).await? {
            return Ok(Ok(staging));
        }
        let (ids, streams) = input.keys();
        let (open, tip, lookup) =
            Open::begin(target, connection.prepared(target).await?, &ids, &streams).await?;
        let mut staging = Staging::new(target, tip);
        match input.stage(&mut staging, lookup)? {
            Ok(()) => {
                open.commit(std::mem::take(&mut staging.rows)).await?;
                Last::remember(&mut connection.last, &staging);
                Ok(Ok(staging))
            }
            Err(rejection) => {
                open.rollback().await?;
                Ok(Err(rejection))
            }
        }
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
    client: Client,
    began: u64,
    mut appends: tokio::sync::mpsc::Receiver<Vec<Append>>,
    commit: &AtomicBool,
) -> AppendResult<Vec<Appended>> {
    let statements = Statements::prepare(target, &client).await?;
    let prepared = (&client, &statements);
    let tip = tip(target, prepared).await?;
    if tip.0 != began {
        return Ok(Err(AppendRejection::Moved { began, now: tip.0 }));
    }
    let mut staging = Staging::new(target, tip);
    while let Some(bunch) = appends.recv().await {
        let (ids, mut streams) = keys(&bunch);
        streams.retain(|s| !staging.versions.contains_key(*s));
        let lookup = lookup(target, prepared, &ids, &streams).await?;
        if let Err(rejection) = staging.add_all(&bunch, lookup)? {
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
    let (open, (now, ..), _) = Open::begin(target, prepared, &[], &[]).await?;
    if now != began {
        open.rollback().await?;
        return Ok(Err(AppendRejection::Moved { began, now }));
    }
    open.commit(staging.rows).await?;
    Ok(Ok(staging.results))
}
