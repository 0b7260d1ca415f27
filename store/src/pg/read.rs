//! Reads on PostgreSQL, `verify`'s walk, and the caches. A record read is
//! its row's bytes opened as the sled store opens its own, and checked
//! against the columns that found it; `verify` walks every row in seq
//! order inside one snapshot of the database, checking the chain as the
//! sled store does and each row's columns against its body.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Row};
use uuid::Uuid;

use super::{big, count, PgStore, Target};
use crate::record::{check_record, to_nanos, Hash, Record, Sealed, GENESIS_HASH};
use crate::snapshots::{self, CacheMiss, StagedSnapshot, LOAD_TRIES};
use crate::PartEntry;
use crate::{Head, Problem, Snapshot, StoreError, VerifyReport};

/// A record's columns, in the order [`Stored::of`] reads them: `verify`'s
/// walk checks the index columns against the body.
const COLUMNS: &str = "seq, stream, version, event_id, recorded_at_ns, format, body, hash";
/// What a read needs of a row, in the order [`sealed_of`] reads them: the
/// body says the rest, and where a record should be is checked against its
/// body (a replay selecting all eight columns read at 0.45x a plain scan of
/// the bodies, BENCHMARKS.md target 9c).
const READ_COLUMNS: &str = "format, body, hash";

/// Rows read at a time by a walk.
const PAGE: i64 = 4096;

/// A page of a read of the log: from, to, at most how many records.
type Page = (u64, u64, usize);

/// The next page of a read of the log in pages, asked for on a connection
/// of its own as the page before it was served: the server sends it while
/// the caller decodes (BENCHMARKS.md, 9c).
pub(super) struct Ahead {
    page: Page,
    /// Commits through the handle when it was asked for.
    commits: u64,
    rows: tokio::task::JoinHandle<Result<Vec<Row>, StoreError>>,
}

/// The rows of `page`, in seq order.
async fn page_rows(
    client: &Client,
    target: &Target,
    (from, to, limit): Page,
) -> Result<Vec<Row>, StoreError> {
    let sql = format!("SELECT {READ_COLUMNS} FROM records WHERE seq BETWEEN $1 AND $2 ORDER BY seq LIMIT $3");
    let page = (big(from), big(to), i64::try_from(limit).unwrap_or(i64::MAX));
    let params = [(&page.0 as &(dyn ToSql + Sync), Type::INT8), (&page.1, Type::INT8), (&page.2, Type::INT8)];
    client.query_typed(&sql, &params).await.map_err(|e| target.server(e))
}

/// A hash as the table holds it: exactly 32 bytes, else damage.
pub(super) fn hash_of(seq: u64, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("record {seq}: a hash of {} bytes", bytes.len())))
}

/// A row of `records`: its index columns, and the record as the sled
/// store stores it (`format ++ body ++ hash`).
struct Stored {
    seq: u64,
    stream: String,
    version: u64,
    event_id: Uuid,
    nanos: i64,
    bytes: Vec<u8>,
}

impl Stored {
    fn of(target: &Target, row: &tokio_postgres::Row) -> Result<Stored, StoreError> {
        let server = |e| target.server(e);
        let bytes = stored(row, 5).map_err(|e| target.server(e))?;
        Ok(Stored {
            seq: count(row.try_get(0).map_err(server)?, "seq")?,
            stream: row.try_get(1).map_err(server)?,
            version: count(row.try_get(2).map_err(server)?, "version")?,
            event_id: row.try_get(3).map_err(server)?,
            nanos: row.try_get(4).map_err(server)?,
            bytes,
        })
    }
}

/// The record as the sled store stores it (`format ++ body ++ hash`), from
/// the row's columns `format, body, hash` starting at column `at`.
fn stored(row: &tokio_postgres::Row, at: usize) -> Result<Vec<u8>, tokio_postgres::Error> {
    let format: i16 = row.try_get(at)?;
    let body: &[u8] = row.try_get(at + 1)?;
    let hash: &[u8] = row.try_get(at + 2)?;
    let mut bytes = Vec::with_capacity(1 + body.len() + hash.len());
    bytes.push(u8::try_from(format).unwrap_or(u8::MAX));
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(hash);
    Ok(bytes)
}

/// The record a row of [`READ_COLUMNS`] holds, as stored.
fn sealed_of(row: &Row) -> Result<Sealed, String> {
    Sealed::from_stored(stored(row, 0).map_err(|e| e.to_string())?)
}

/// The record a row of [`READ_COLUMNS`] holds, decoded from the row's own bytes.
fn record_of(row: &Row) -> Result<Record, String> {
    let column = |e: tokio_postgres::Error| e.to_string();
    let format: i16 = row.try_get(0).map_err(column)?;
    let (body, hash): (&[u8], &[u8]) = (row.try_get(1).map_err(column)?, row.try_get(2).map_err(column)?);
    Record::from_parts(u8::try_from(format).unwrap_or(u8::MAX), body, hash)
}

fn corrupt_seq(seq: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("record {seq}: {what}"))
}

/// The chain walked forward, as far as it has gone.
struct Walk {
    walked: u64,
    prev_hash: Hash,
    prev_nanos: i64,
    /// Each stream's version so far, and every event id met (a full walk only).
    versions: HashMap<String, u64>,
    ids: HashSet<Uuid>,
}

impl Walk {
    fn new(walked: u64) -> Walk {
        Walk {
            walked,
            prev_hash: GENESIS_HASH,
            prev_nanos: i64::MIN,
            versions: HashMap::new(),
            ids: HashSet::new(),
        }
    }

    /// Checks the next row: its place, its body, the chain, and its
    /// columns against its body; with `whole`, its stream's version and
    /// its event id against every row before it too.
    fn step(&mut self, row: &Stored, whole: bool) -> Option<Problem> {
        let seq = self.walked + 1;
        let bad = |what: String| Some(Problem { seq, what });
        if row.seq != seq {
            return bad(format!("missing: the log jumps to {}", row.seq));
        }
        let record = match Record::peek(&row.bytes) {
            Ok(record) => record,
            Err(e) => return bad(e),
        };
        if let Some(problem) = check_record(&row.bytes, &record, seq, self.prev_hash, self.prev_nanos) {
            return Some(problem);
        }
        if (record.stream.as_ref(), record.version, record.event_id, record.nanos)
            != (row.stream.as_str(), row.version, row.event_id, row.nanos)
        {
            return bad("its row's index columns are not its body's (altered)".into());
        }
        if whole {
            let version = self.versions.entry(row.stream.clone()).or_default();
            if row.version != *version + 1 {
                return bad(format!("stream '{}' version {} follows {version}", row.stream, row.version));
            }
            *version = row.version;
            if !self.ids.insert(row.event_id) {
                return bad(format!("event id {} is in the log twice", row.event_id));
            }
        }
        (self.walked, self.prev_hash, self.prev_nanos) = (seq, record.hash, record.nanos);
        None
    }
}

impl PgStore {
    /// The seq of the head (0: an empty log).
    pub(super) async fn head_seq(&self) -> Result<u64, StoreError> {
        Ok(self.head_row().await?.map_or(0, |head| head.seq))
    }

    /// The rows `sql` selects, on the shared connection. Parameters are
    /// typed, so that a statement is one round trip, with no prepare first.
    async fn rows(&self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        client.query_typed(sql, params).await.map_err(|e| self.server(e))
    }

    /// Column `i` of `row`.
    fn col<'a, T: FromSql<'a>>(&self, row: &'a Row, i: usize) -> Result<T, StoreError> {
        row.try_get(i).map_err(|e| self.server(e))
    }

    pub(super) async fn head_row(&self) -> Result<Option<Head>, StoreError> {
        let sql = "SELECT seq, recorded_at_ns, hash FROM records ORDER BY seq DESC LIMIT 1";
        let Some(row) = self.rows(sql, &[]).await?.into_iter().next() else { return Ok(None) };
        let seq = count(self.col(&row, 0)?, "seq")?;
        let recorded_at = DateTime::from_timestamp_nanos(self.col(&row, 1)?);
        Ok(Some(Head { seq, recorded_at, hash: hash_of(seq, self.col(&row, 2)?)? }))
    }

    pub(super) async fn version_of(&self, stream: &str) -> Result<u64, StoreError> {
        let sql = "SELECT coalesce(max(version), 0) FROM records WHERE stream = $1";
        let rows = self.rows(sql, &[(&stream, Type::TEXT)]).await?;
        rows.first().map_or(Ok(0), |row| count(self.col(row, 0)?, "version"))
    }

    /// Rows of `records`, in the order `sql` (selecting [`READ_COLUMNS`])
    /// gives, each opened by `open`, given how many came before it.
    async fn records<T>(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        mut open: impl FnMut(u64, &Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.rows(sql, params).await?;
        (0..).zip(&rows).map(|(before, row)| open(before, row)).collect()
    }

    /// At most `limit` records with `from <= seq <= to`, in order.
    pub(super) async fn record_rows(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.log_rows(from, to, limit, record_of, |r| r.seq).await
    }

    /// At most `limit` records with `from <= seq <= to`, in order, as stored.
    pub(super) async fn sealed_rows(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Sealed>, StoreError> {
        self.log_rows(from, to, limit, sealed_of, |s| s.record().seq).await
    }

    /// At most `limit` rows with `from <= seq <= to`, in order, each opened
    /// by `open`, which must be the record at its place (`seq_of` says
    /// which it is): the log has no gap, and a body is where its seq says.
    /// A full page has the next one fetched ahead.
    async fn log_rows<T>(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        open: fn(&Row) -> Result<T, String>,
        seq_of: fn(&T) -> u64,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.log_page((from, to, limit)).await?;
        let next = from.saturating_add(rows.len() as u64);
        if rows.len() == limit && next <= to {
            self.fetch_ahead((next, to, limit));
        }
        (from..)
            .zip(&rows)
            .map(|(seq, row)| {
                let record = open(row).map_err(|e| corrupt_seq(seq, e))?;
                match seq_of(&record) {
                    found if found == seq => Ok(record),
                    found => Err(corrupt_seq(seq, format!("the log holds record {found} in its place"))),
                }
            })
            .collect()
    }

    /// The rows of `page`: fetched ahead if they were (and nothing was
    /// committed through this handle since), else asked for now.
    async fn log_page(&self, page: Page) -> Result<Vec<Row>, StoreError> {
        let ahead = self.shared.ahead.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(ahead) = ahead {
            let current = ahead.commits == self.shared.target.commits.load(Ordering::Relaxed);
            match (ahead.page == page && current, ahead.rows) {
                // A fetch that failed is asked for again below, where its failure is said.
                (true, rows) => {
                    if let Ok(Ok(rows)) = rows.await {
                        return Ok(rows);
                    }
                }
                (false, rows) => rows.abort(),
            }
        }
        let connection = self.client().await?;
        page_rows(&connection, &self.shared.target, page).await
    }

    /// Asks for `page` on the reader connection, while the caller decodes
    /// the page before it.
    fn fetch_ahead(&self, page: Page) {
        let store = self.clone();
        let commits = self.shared.target.commits.load(Ordering::Relaxed);
        let rows = tokio::spawn(async move {
            let target = &store.shared.target;
            let mut reader = store.shared.reader.lock().await;
            let client = match reader.take().filter(|client| !client.is_closed()) {
                Some(client) => client,
                None => target.connect().await?,
            };
            let rows = page_rows(&client, target, page).await;
            *reader = Some(client);
            rows
        });
        *self.shared.ahead.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ahead { page, commits, rows });
    }

    pub(super) async fn stream_records(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let sql = format!(
            "SELECT {READ_COLUMNS} FROM records WHERE stream = $1 AND version >= $2 AND seq <= $3 ORDER BY version"
        );
        let from_version = from_version.max(1);
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&stream, Type::TEXT), (&big(from_version), Type::INT8), (&big(max_seq), Type::INT8)];
        // The columns say where a stream's records are; the records say
        // whose they are, in what order, and that none is past `max_seq`.
        self.records(&sql, &params, |before, row| {
            let version = from_version.saturating_add(before);
            let place = || format!("version {version} of stream '{stream}'");
            let record = record_of(row).map_err(|e| StoreError::Corrupt(format!("{}: {e}", place())))?;
            if record.stream != stream || record.version != version || record.seq > max_seq {
                return Err(corrupt_seq(
                    record.seq,
                    format!(
                        "the table gives it as {} (at most record {max_seq}), but it is version {} of '{}'",
                        place(),
                        record.version,
                        record.stream
                    ),
                ));
            }
            Ok(record)
        })
        .await
    }

    /// Time never goes backwards along the log: the last record at or
    /// before `time` is the one with the greatest seq among those stamped so.
    pub(super) async fn seq_at_time(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        let Ok(nanos) = to_nanos(time) else {
            // Beyond what the log can hold: before everything, or after it.
            return if time.timestamp() < 0 { Ok(0) } else { self.head_seq().await };
        };
        let sql = "SELECT seq FROM records WHERE recorded_at_ns <= $1 ORDER BY recorded_at_ns DESC, seq DESC LIMIT 1";
        let rows = self.rows(sql, &[(&nanos, Type::INT8)]).await?;
        rows.first().map_or(Ok(0), |row| count(self.col(row, 0)?, "seq"))
    }

    /// The hash of the record at `seq`, if the log reaches that far. A
    /// record missing below the head is the log's damage, not a cache's.
    async fn hash_at(&self, seq: u64) -> Result<Option<Hash>, StoreError> {
        match self.rows("SELECT hash FROM records WHERE seq = $1", &[(&big(seq), Type::INT8)]).await?.first()
        {
            Some(row) => Ok(Some(hash_of(seq, self.col(row, 0)?)?)),
            None if seq <= self.head_seq().await? => Err(corrupt_seq(seq, "missing from the log")),
            None => Ok(None),
        }
    }

    /// Walks the rows of `first..=last` in seq order within one snapshot
    /// of the database, each checked as [`Walk::step`] does from `from` on
    /// (those before only set the chain's start); the first problem found.
    async fn walk(
        &self,
        first: u64,
        from: u64,
        last: u64,
        whole: bool,
    ) -> Result<(u64, Option<Problem>), StoreError> {
        let target = &*self.shared.target;
        let server = |e| target.server(e);
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(server)?;
        let sql =
            format!("SELECT {COLUMNS} FROM records WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3");
        let mut walk = Walk::new(first.saturating_sub(1));
        let mut next = first;
        loop {
            let page = [
                (&big(next) as &(dyn ToSql + Sync), Type::INT8),
                (&big(last), Type::INT8),
                (&PAGE, Type::INT8),
            ];
            let rows = tx.query_typed(&sql, &page).await.map_err(server)?;
            for row in &rows {
                let row = Stored::of(target, row)?;
                next = row.seq.saturating_add(1);
                let problem = if row.seq < from {
                    // Before the range: only the chain's start is taken from it.
                    Record::peek(&row.bytes)
                        .map(|r| (walk.walked, walk.prev_hash, walk.prev_nanos) = (row.seq, r.hash, r.nanos))
                        .err()
                        .map(|what| Problem { seq: row.seq, what })
                } else {
                    walk.step(&row, whole)
                };
                if problem.is_some() {
                    return Ok((walk.walked, problem));
                }
            }
            if rows.len() < PAGE as usize {
                return Ok((walk.walked, None));
            }
        }
    }

    pub(super) async fn verify_walk(&self) -> Result<VerifyReport, StoreError> {
        let (records, problem) = self.walk(1, 1, u64::MAX, true).await?;
        if let Some(problem) = &problem {
            let what = format!(
                "verify found a problem at record {}: {}; restore the log",
                problem.seq, problem.what
            );
            self.rows("INSERT INTO findings (what) VALUES ($1)", &[(&what, Type::TEXT)]).await?;
            self.shared.damaged.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(what);
        }
        Ok(VerifyReport { records, problem })
    }

    pub(super) async fn chain_break_walk(&self, from: u64, to: u64) -> Result<Option<Problem>, StoreError> {
        Ok(self.walk(from.saturating_sub(1).max(1), from, to, false).await?.1)
    }

    pub(super) async fn publish(&self, staged: StagedSnapshot) -> Result<(), StoreError> {
        // Bound to the record it was folded to, which must be in the log.
        let hash = self.hash_at(staged.seq()).await?.ok_or_else(|| {
            StoreError::Task(format!("a snapshot at record {} is past the log's head", staged.seq()))
        })?;
        let Some((name, seq, bytes)) = snapshots::framed(staged, hash)? else { return Ok(()) };
        let sql = "INSERT INTO caches VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (key_id, name, seq) DO UPDATE SET bytes = excluded.bytes";
        let key_id = &self.shared.key_id;
        let params: [(&(dyn ToSql + Sync), Type); 4] =
            [(key_id, Type::BYTEA), (&name, Type::TEXT), (&big(seq), Type::INT8), (&bytes, Type::BYTEA)];
        self.rows(sql, &params).await.map(drop)
    }

    /// The cache `bytes` of `name` at `seq`, if authentic and bound to this log.
    async fn authentic(
        &self,
        name: &str,
        seq: u64,
        mut bytes: Vec<u8>,
    ) -> Result<Result<Snapshot, CacheMiss>, StoreError> {
        let rest = bytes.split_off(bytes.len().min(4));
        let tag = bytes.try_into().unwrap_or_default();
        Ok(match snapshots::unframe(&self.shared.key, name, seq, tag, rest) {
            Ok((state, hash)) => {
                snapshots::bound(Snapshot { seq, state, parts: Vec::new() }, hash, self.hash_at(seq).await?)
            }
            Err(miss) => Err(miss),
        })
    }

    pub(super) async fn load(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        let sql = "SELECT seq, bytes FROM caches WHERE key_id = $1 AND name = $2 AND seq <= $3 \
                   ORDER BY seq DESC LIMIT $4";
        // A newer one that is a miss passes the turn to the next older, a
        // few times, as the sled store's do.
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&self.shared.key_id, Type::BYTEA),
            (&name, Type::TEXT),
            (&big(max_seq), Type::INT8),
            (&(LOAD_TRIES as i64), Type::INT8),
        ];
        for row in self.rows(sql, &params).await? {
            let seq = count(self.col(&row, 0)?, "seq")?;
            if let Ok(snapshot) = self.authentic(name, seq, self.col(&row, 1)?).await? {
                return Ok(Some(snapshot));
            }
        }
        Ok(None)
    }

    pub(super) async fn check(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        if let Err(why) = &self.shared.key {
            return Ok(Some(Err(CacheMiss::NoKey(why.clone()))));
        }
        let sql = "SELECT bytes FROM caches WHERE key_id = $1 AND name = $2 AND seq = $3";
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&self.shared.key_id, Type::BYTEA), (&name, Type::TEXT), (&big(seq), Type::INT8)];
        match self.rows(sql, &params).await?.first() {
            Some(row) => Ok(Some(self.authentic(name, seq, self.col(row, 0)?).await?)),
            None => Ok(None),
        }
    }

    /// The cache row of `name` at `seq`, and the log's hash at that seq.
    async fn row(&self, name: &str, seq: u64) -> Result<Option<(Vec<u8>, Option<Hash>)>, StoreError> {
        let sql = "SELECT bytes FROM caches WHERE key_id = $1 AND name = $2 AND seq = $3";
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&self.shared.key_id, Type::BYTEA), (&name, Type::TEXT), (&big(seq), Type::INT8)];
        let Some(row) = self.rows(sql, &params).await?.into_iter().next() else { return Ok(None) };
        Ok(Some((self.col(&row, 0)?, self.hash_at(seq).await?)))
    }

    /// Parts of the cache of `name` at `seq`, read from the rows that hold
    /// them, whole, and checked as the sled store's files are.
    pub(super) async fn parts(
        &self,
        name: &str,
        seq: u64,
        which: &[u32],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let Some((bytes, hash)) = self.row(name, seq).await? else { return Ok(None) };
        let Some(table) = snapshots::table_of(&self.shared.key, name, seq, bytes.clone(), hash)? else {
            return Ok(None);
        };
        let mut rows = snapshots::Rows::from([((name.to_owned(), seq), (bytes, hash))]);
        let holders: std::collections::BTreeSet<(bool, u64)> =
            which.iter().filter_map(|&i| table.get(i as usize)?.held_by).map(|h| (h.apart, h.seq)).collect();
        for (apart, holder) in holders {
            let holder_name = if apart { crate::parts_holder(name) } else { name.to_owned() };
            if let Some(row) = self.row(&holder_name, holder).await? {
                rows.insert((holder_name, holder), row);
            }
        }
        snapshots::parts_in(&self.shared.key, name, seq, &rows, which)
    }

    /// The table of the cache of `name` at `seq`.
    pub(super) async fn table(&self, name: &str, seq: u64) -> Result<Option<Vec<PartEntry>>, StoreError> {
        let Some((bytes, hash)) = self.row(name, seq).await? else { return Ok(None) };
        snapshots::table_of(&self.shared.key, name, seq, bytes, hash)
    }

    pub(super) async fn remove(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        let sql = "DELETE FROM caches WHERE key_id = $1 AND name = $2 AND seq >= $3 AND seq < $4";
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&self.shared.key_id, Type::BYTEA),
            (&name, Type::TEXT),
            (&big(seqs.start), Type::INT8),
            (&big(seqs.end), Type::INT8),
        ];
        self.rows(sql, &params).await.map(drop)
    }

    pub(super) async fn names(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let sql = "SELECT name, seq FROM caches WHERE key_id = $1 ORDER BY name, seq";
        let rows = self.rows(sql, &[(&self.shared.key_id, Type::BYTEA)]).await?;
        rows.iter().map(|row| Ok((self.col(row, 0)?, count(self.col(row, 1)?, "seq")?))).collect()
    }
}
