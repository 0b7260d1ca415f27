//! The logs the tests run on: a sled log in a temporary directory, or a
//! schema of its own on the test cluster; and what each test needs of a
//! backend beyond the trait (another handle, tampering behind its back).

use std::ops::Deref;

use chrono::{DateTime, TimeZone, Utc};
use store::{
    Append, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, OpenOptions, Origin, PgStore,
    SledStore,
};
use uuid::Uuid;

pub use crate::pg_server::{new_schema, server, with_param};

/// A new log of `init` on the test cluster, and its URL.
pub async fn new_pg_log() -> (PgStore, String) {
    let (url, _) = new_schema();
    PgStore::init(&url).await.expect("init");
    (PgStore::open(&url, &store::CacheKeys::Process).await.expect("open"), url)
}

/// A connection to the test cluster as its superuser (the owner of every
/// test schema), its search path the schema of `url`.
pub async fn superuser(url: &str) -> tokio_postgres::Client {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let schema = query.split('&').find_map(|p| p.strip_prefix("schema=")).unwrap_or("public");
    let rest: Vec<&str> = query.split('&').filter(|p| !p.starts_with("schema=")).collect();
    let (client, connection) =
        tokio_postgres::connect(&format!("{base}?{}", rest.join("&")), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("SET search_path TO \"{schema}\"")).await.unwrap();
    client
}

/// A log on a backend, and what keeps it: its directory, or its URL.
pub struct Log<S> {
    pub store: S,
    pub dir: Option<tempfile::TempDir>,
    pub url: String,
}

impl<S> Deref for Log<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.store
    }
}

/// What the suite needs of a backend beyond [`EventStore`].
pub trait Backend: EventStore + Sized + Clone + 'static {
    /// A new, empty log.
    async fn fresh() -> Log<Self>;
    /// Another handle on the same log: a connection of its own on a server.
    async fn another(log: &Log<Self>) -> Self;
    /// Edits the hashed bytes of record `seq` behind the store's back, as
    /// whoever can write its storage could.
    async fn alter_body(log: &Log<Self>, seq: u64, edit: impl FnOnce(&mut Vec<u8>));
    /// Edits the stored bytes of the cache `name` at `seq` behind the store's back.
    async fn alter_cache(log: &Log<Self>, name: &str, seq: u64, edit: impl FnOnce(&mut Vec<u8>));
}

impl Backend for SledStore {
    async fn fresh() -> Log<Self> {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("db"), OpenOptions::default()).unwrap();
        Log { store, url: dir.path().join("db").display().to_string(), dir: Some(dir) }
    }

    async fn another(log: &Log<Self>) -> Self {
        // One process holds a sled log: its handles share it.
        log.store.clone()
    }

    async fn alter_body(log: &Log<Self>, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        let stored = log.raw_record(seq).unwrap().unwrap();
        let mut body = stored[1..stored.len() - 32].to_vec();
        edit(&mut body);
        let altered = [&stored[..1], &body, &stored[stored.len() - 32..]].concat();
        log.raw_set_record(seq, Some(&altered)).unwrap();
    }

    async fn alter_cache(log: &Log<Self>, name: &str, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        let dir = log.dir.as_ref().unwrap().path();
        let path = dir.join("db/snapshots").join(hex::encode(name)).join(format!("{seq:020}"));
        let mut bytes = std::fs::read(&path).unwrap();
        edit(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
    }
}

impl Backend for PgStore {
    async fn fresh() -> Log<Self> {
        let (store, url) = new_pg_log().await;
        Log { store, dir: None, url }
    }

    async fn another(log: &Log<Self>) -> Self {
        PgStore::open(&log.url, &store::CacheKeys::Process).await.unwrap()
    }

    async fn alter_body(log: &Log<Self>, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        let owner = superuser(&log.url).await;
        let row = owner.query_one("SELECT body FROM records WHERE seq = $1", &[&(seq as i64)]).await.unwrap();
        let mut body: Vec<u8> = row.get(0);
        edit(&mut body);
        // The owner can, once it turns the trigger off.
        owner.batch_execute("ALTER TABLE records DISABLE TRIGGER append_only").await.unwrap();
        owner.execute("UPDATE records SET body = $2 WHERE seq = $1", &[&(seq as i64), &body]).await.unwrap();
        owner.batch_execute("ALTER TABLE records ENABLE TRIGGER append_only").await.unwrap();
    }

    async fn alter_cache(log: &Log<Self>, name: &str, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        let owner = superuser(&log.url).await;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&name, &(seq as i64)];
        let row =
            owner.query_one("SELECT bytes FROM caches WHERE name = $1 AND seq = $2", &key).await.unwrap();
        let mut bytes: Vec<u8> = row.get(0);
        edit(&mut bytes);
        owner
            .execute(
                "UPDATE caches SET bytes = $3 WHERE name = $1 AND seq = $2",
                &[&name, &(seq as i64), &bytes],
            )
            .await
            .unwrap();
    }
}

/// A time of the tests' log: `secs` after a fixed start.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

/// Event `n`, with a payload naming it.
pub fn event(n: u128) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(n),
        event_type: "Test".into(),
        schema_version: 1,
        payload: format!("payload {n}").into_bytes(),
    }
}

/// An append of `events` to `stream` at `time`; every other one with an
/// origin, so that both record formats are in every log.
pub fn append(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>, time: DateTime<Utc>) -> Append {
    let origin = (events.first().is_some_and(|e| e.event_id.as_u128() % 2 == 0)).then(|| Origin {
        written_at: time,
        account: "alice".into(),
        host: "pc-7".into(),
    });
    Append {
        stream: stream.into(),
        expected,
        events,
        meta: Metadata {
            recorded_at: time,
            actor: "admin@contoso.onmicrosoft.com".into(),
            correlation_id: Uuid::new_v4(),
            causation: Causation::Command { name: "test".into() },
            origin,
        },
    }
}
