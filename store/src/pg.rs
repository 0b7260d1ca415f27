//! [`PgStore`]: the log on a PostgreSQL server, one schema per log (issue 33).
//!
//! The records are the sled store's, byte for byte: a row holds a record's
//! hashed bytes (`body`), its format byte and its stored hash, beside the
//! columns that index it (seq, stream and version, event id, time). An
//! append call is one SQL transaction that first takes an advisory lock
//! derived from the schema, so appends to one log run one at a time across
//! every client and machine: it reads the head, checks and seals, inserts,
//! commits. Reads take no lock: each sees one committed state. Caches
//! (snapshots, sync marks) are rows of `caches`, framed and authenticated as
//! the sled store's files are (`snapshots`), under the key named by the
//! log's id in `meta`.
//!
//! # Layout
//! - This file: [`PgStore`], the URL and its schema, connecting, errors.
//! - `passfile`: the password from `PGPASSWORD` or libpq's password file.
//! - `schema`: the tables, [`PgStore::init`] and the version check at open.
//! - `append`: an append call or transaction, checked and sealed, then inserted.
//! - `read`: reads, `verify`'s walk, and the caches.

mod append;
mod passfile;
mod read;
mod schema;
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio_postgres::config::Host;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::cache_key::{self, CacheKeys, Key};
use crate::record::{Record, Sealed};
use crate::snapshots::{self, CacheMiss, StagedSnapshot};
use crate::{
    Append, AppendResult, Appended, EventStore, Head, Problem, Snapshot, StoreError, Transaction,
    VerifyReport,
};

pub use schema::PG_SCHEMA_VERSION;

/// The schema a URL names when it names none.
pub const DEFAULT_SCHEMA: &str = "usertrail";

/// The event log in a schema of a PostgreSQL database. Cheap to clone:
/// clones share one connection.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
}

struct Shared {
    target: Arc<Target>,
    /// The connection reads and appends share; once lost, the next call
    /// connects anew.
    client: tokio::sync::Mutex<Connection>,
    /// The key that authenticates the caches.
    key: Key,
    /// Which rows of `caches` are this machine's: each machine keeps its
    /// own, under its own key, instead of replacing another's that it
    /// cannot authenticate.
    key_id: Vec<u8>,
    /// What `verify` found: the log takes no appends through this handle.
    damaged: Mutex<Option<String>>,
    /// The next page of a read of the log in pages, fetched ahead.
    ahead: Mutex<Option<read::Ahead>>,
    /// The connection pages are fetched ahead on, made when first needed.
    reader: tokio::sync::Mutex<Option<Client>>,
}

/// A connection, and the append's statements once prepared on it.
pub(crate) struct Connection {
    client: Client,
    appends: Option<append::Statements>,
    /// Where this connection's last append call left the log.
    last: Option<append::Last>,
}

impl Connection {
    /// The client, with the append's statements, prepared on first use.
    async fn prepared(&mut self, target: &Target) -> Result<(&Client, &append::Statements), StoreError> {
        let statements = match self.appends.take() {
            Some(statements) => statements,
            None => append::Statements::prepare(target, &self.client).await?,
        };
        Ok((&self.client, self.appends.insert(statements)))
    }
}

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// A server and schema, as a URL names them.
pub(crate) struct Target {
    config: Config,
    /// The schema's name.
    name: String,
    /// The schema's name, quoted as an SQL identifier.
    schema: String,
    /// The key of the advisory lock that orders appends to this log.
    lock_key: i64,
    /// Host, port, database and schema, for messages: never the password.
    at: String,
    /// Set when a call failed: the shared connection may be lost without
    /// knowing it yet, so the next call connects anew.
    failed: AtomicBool,
    /// Appends are stamped with the server's clock ([`PgStore::stamp_with_server_clock`]).
    server_clock: AtomicBool,
    /// Commits through this handle so far: a page fetched ahead before the
    /// last of them is not served (a read sees its own writes).
    commits: std::sync::atomic::AtomicU64,
    /// TLS as `sslmode` asks, for TCP hosts (`None`: plain text).
    tls: Option<MakeRustlsConnect>,
    /// Why the password file was left unread, said if connecting fails.
    unread_passfile: Option<String>,
}

impl Target {
    /// Parses `postgres://user@host/dbname?...&schema=NAME`: every parameter
    /// but `schema` is the client's (libpq's names).
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = DEFAULT_SCHEMA.to_owned();
        let mut rest = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.strip_prefix("schema=") {
                Some(name) => schema = name.to_owned(),
                None => rest.push(param),
            }
        }
        let bad = |what: String| StoreError::Server { at: "the URL given".into(), what };
        let tls = tls::Settings::take(&mut rest).map_err(bad)?;
        let client_url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let mut config: Config = client_url.parse().map_err(|e| bad(format!("not a PostgreSQL URL: {e}")))?;
        let (mode, tls) = tls.connector().map_err(bad)?;
        let unix = config.get_hosts().iter().filter(|h| matches!(h, Host::Unix(_))).count();
        // As libpq does, a Unix socket never carries TLS (it never leaves the machine).
        let tls = match unix {
            0 => tls,
            n if n == config.get_hosts().len() || mode == SslMode::Disable => None,
            _ => return Err(bad("TLS to a list of hosts mixing Unix sockets and TCP: list one kind".into())),
        };
        config.ssl_mode(if tls.is_some() { mode } else { SslMode::Disable });
        let mut unread_passfile = None;
        if config.get_password().is_none() {
            match passfile::password(&config) {
                Ok(Some(password)) => {
                    config.password(password);
                }
                Ok(None) => {}
                Err(why) => unread_passfile = Some(why),
            }
        }
        // Plain names only: they are quoted anyway, but a name that needs
        // quoting is more likely a typo than a wish.
        let plain = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            return Err(bad(format!(
                "schema '{schema}' is not a plain name (lower-case letters, digits and _, at most 63)"
            )));
        }
        let lock: [u8; 8] =
            Sha256::digest(format!("usertrail log {schema}")).as_slice()[..8].try_into().unwrap_or_default();
        let at = describe(&config, &schema);
        let quoted = format!("\"{schema}\"");
        let lock_key = i64::from_be_bytes(lock);
        let (failed, server_clock) = (AtomicBool::new(false), AtomicBool::new(false));
        Ok(Target {
            config,
            name: schema,
            schema: quoted,
            lock_key,
            at,
            failed,
            server_clock,
            commits: std::sync::atomic::AtomicU64::new(0),
            tls,
            unread_passfile,
        })
    }

    /// A new connection, its search path the log's schema alone (and the
    /// catalog, which PostgreSQL always searches first).
    pub(crate) async fn connect(&self) -> Result<Client, StoreError> {
        // The connection's I/O runs on its own task until the client is dropped.
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(|e| self.refused(e))?;
                tokio::spawn(connection);
                client
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.refused(e))?;
                tokio::spawn(connection);
                client
            }
        };
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await
            .map_err(|e| self.server(e))?;
        Ok(client)
    }

    /// A server's or connection's failure, naming where.
    pub(crate) fn server(&self, e: tokio_postgres::Error) -> StoreError {
        self.failed.store(true, Ordering::Relaxed);
        let what = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => {
                // The client's text is the kind ("error connecting to
                // server"); its sources say why.
                let mut what = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    what = format!("{what}: {cause}");
                    source = cause.source();
                }
                what
            }
        };
        StoreError::Server { at: self.at.clone(), what }
    }

    /// A connection refused, with the password file left unread if one was.
    fn refused(&self, e: tokio_postgres::Error) -> StoreError {
        match (self.server(e), &self.unread_passfile) {
            (StoreError::Server { at, what }, Some(why)) => {
                StoreError::Server { at, what: format!("{what}; {why}") }
            }
            (e, _) => e,
        }
    }

    /// A finding about the schema, naming where.
    pub(crate) fn schema_error(&self, what: impl Into<String>) -> StoreError {
        StoreError::Server { at: self.at.clone(), what: what.into() }
    }
}

/// `host H port P database D schema S`: where a log is, for a message.
fn describe(config: &Config, schema: &str) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") };
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let ports = if ports.is_empty() { "5432".to_owned() } else { ports.join(",") };
    // libpq's default database is the user's name.
    let database = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("host {hosts} port {ports} database {database} schema {schema}")
}

impl PgStore {
    /// Opens the log in the schema `url` names (`?schema=NAME`, default
    /// [`DEFAULT_SCHEMA`]), which [`PgStore::init`] made; caches are
    /// authenticated under the key `keys` finds for the log's id.
    pub async fn open(url: &str, keys: &CacheKeys) -> Result<PgStore, StoreError> {
        let target = Arc::new(Target::parse(url)?);
        let client = target.connect().await?;
        let id = schema::check(&target, &client).await?;
        let key = match keys {
            CacheKeys::Process => cache_key::process_key(),
            CacheKeys::Dir(dir) if cache_key::is_id(&id) => cache_key::key_named(&id, dir).0,
            CacheKeys::Dir(_) => Err(format!("the log's id '{id}' is not one usertrail makes")),
        };
        let key_id = crate::snapshots::key_id(&key);
        // What verify found before, through any handle: the log stays closed to appends.
        let found = client.query_typed_opt("SELECT what FROM findings ORDER BY found_at LIMIT 1", &[]).await;
        let damaged = found.map_err(|e| target.server(e))?.map(|row| row.try_get(0)).transpose();
        let damaged = Mutex::new(damaged.map_err(|e| target.server(e))?);
        let client = tokio::sync::Mutex::new(Connection { client, appends: None, last: None });
        let (ahead, reader) = (Mutex::new(None), tokio::sync::Mutex::new(None));
        let shared = Shared { target, client, key, key_id, damaged, ahead, reader };
        Ok(PgStore { shared: Arc::new(shared) })
    }

    /// From now on, stamps each append with the server's clock, read inside
    /// the serialized append (never earlier than the last record's time),
    /// instead of the time its metadata carries: writers whose clocks
    /// disagree never make time go backwards. A [`Transaction`] reads it
    /// when it begins staging, and lands only if the log has not moved since.
    pub fn stamp_with_server_clock(&self) {
        self.shared.target.server_clock.store(true, Ordering::Relaxed);
    }

    /// Where the log is: host, port, database and schema (never the password).
    pub fn describe(&self) -> &str {
        &self.shared.target.at
    }

    /// The shared connection, made anew if the last one was lost or a call failed.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Connection>, StoreError> {
        let mut connection = self.shared.client.lock().await;
        if self.shared.target.failed.swap(false, Ordering::Relaxed) || connection.is_closed() {
            *connection =
                Connection { client: self.shared.target.connect().await?, appends: None, last: None };
        }
        Ok(connection)
    }

    fn server(&self, e: tokio_postgres::Error) -> StoreError {
        self.shared.target.server(e)
    }

    /// Refuses appends once `verify` has found a problem.
    fn open_to_appends(&self) -> Result<(), StoreError> {
        match &*self.shared.damaged.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(StoreError::Corrupt(format!("the log cannot be appended to: {why}"))),
            None => Ok(()),
        }
    }
}

/// A seq or version as PostgreSQL's bigint (beyond it: its largest).
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A bigint read back as a seq or version: one below zero is damage.
fn count(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("a {what} of {n} in the table")))
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(&self, append: Append) -> AppendResult<Appended> {
        let outcome = self.append_call(std::slice::from_ref(&append)).await?;
        Ok(outcome.map(|mut v| v.remove(0)))
    }

    async fn append_all(&self, appends: Vec<Append>) -> AppendResult<Vec<Appended>> {
        self.append_call(&appends).await
    }

    async fn begin(&self) -> Result<Transaction, StoreError> {
        self.transaction().await
    }

    /// Every commit is durable already (as the server's settings make it).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.head_row().await
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.version_of(stream).await
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Record>, StoreError> {
        self.stream_records(stream, from_version, u64::MAX).await
    }

    async fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        self.stream_records(stream, from_version, max_seq).await
    }

    async fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.record_rows(from, to, limit).await
    }

    async fn read_sealed(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Sealed>, StoreError> {
        self.sealed_rows(from, to, limit).await
    }

    async fn append_sealed(&self, records: Vec<Sealed>) -> AppendResult<u64> {
        self.append_sealed_call(&records).await
    }

    async fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        self.seq_at_time(time).await
    }

    async fn save_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.publish(snapshots::stage_bytes(&self.shared.key, name, snapshot)).await
    }

    /// Staged in memory: publishing is one insert.
    async fn stage_snapshot(&self, name: &str, snapshot: Snapshot) -> Result<StagedSnapshot, StoreError> {
        Ok(snapshots::stage_bytes(&self.shared.key, name, snapshot))
    }

    async fn publish_snapshot(&self, staged: StagedSnapshot) -> Result<(), StoreError> {
        self.publish(staged).await
    }

    async fn remove_snapshots(&self, name: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        self.remove(name, seqs).await
    }

    async fn load_snapshot(&self, name: &str, max_seq: u64) -> Result<Option<Snapshot>, StoreError> {
        self.load(name, max_seq).await
    }

    async fn snapshot_parts(
        &self,
        name: &str,
        seq: u64,
        which: &[u32],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.parts(name, seq, which).await
    }

    async fn snapshot_table(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Vec<crate::PartEntry>>, StoreError> {
        self.table(name, seq).await
    }

    async fn snapshot_names(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.names().await
    }

    async fn check_snapshot(
        &self,
        name: &str,
        seq: u64,
    ) -> Result<Option<Result<Snapshot, CacheMiss>>, StoreError> {
        self.check(name, seq).await
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_walk().await
    }

    async fn chain_break(&self, from: u64, to: u64) -> Result<Option<Problem>, StoreError> {
        self.chain_break_walk(from, to).await
    }

    fn damage(&self) -> Option<String> {
        self.shared.damaged.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
