//! The log's tables in its schema: made by [`PgStore::init`], versioned in
//! `meta`, and checked by every open (a newer schema is refused, as is a
//! schema another program keeps). `store/sql/roles.sql` grants them to the
//! owner and writer roles.

use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient};

use super::{PgStore, Target};
use crate::cache_key;
use crate::StoreError;

/// The schema version this code makes and reads.
pub const PG_SCHEMA_VERSION: u32 = 1;

/// `meta`'s rows: the schema version, and the log's id, which names the
/// key of its caches (`cache_key`) as a sled log's `cache-id` does.
const VERSION_KEY: &str = "usertrail-schema";
const ID_KEY: &str = "log-id";

/// Version 1. `findings` keeps what `verify` found, as a sled log's witness
/// does, so that every writer refuses appends to a damaged log, not only the
/// handle that found it. `body` is exactly what a record's hash covers, so that
/// `sha256(body) = hash` holds for every intact row; the other columns
/// index it, and `verify` checks each against the body. Times are
/// nanoseconds since the epoch, as in the body (a timestamp keeps
/// microseconds only). No role may change or remove a record: the
/// triggers refuse even the owner, who must drop them to tamper.
const TABLES: &str = "
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE records (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    stream text NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    event_id uuid NOT NULL UNIQUE,
    recorded_at_ns bigint NOT NULL,
    format smallint NOT NULL,
    body bytea NOT NULL,
    hash bytea NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX records_by_time ON records (recorded_at_ns, seq);
CREATE TABLE caches (
    key_id bytea NOT NULL,
    name text NOT NULL,
    seq bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (key_id, name, seq)
);
CREATE TABLE findings (found_at timestamptz NOT NULL DEFAULT now(), what text NOT NULL);
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usertrail records are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER findings_stay BEFORE UPDATE OR DELETE ON findings
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER findings_stay_truncate BEFORE TRUNCATE ON findings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
";

/// What a schema holds.
enum Found {
    /// Nothing (or no such schema).
    Empty,
    /// A usertrail log: its schema version and id.
    Log { version: u32, id: String },
    /// Tables that are not a usertrail log's.
    Foreign,
}

impl PgStore {
    /// Makes the log's tables in the schema `url` names (`?schema=NAME`),
    /// the schema too if it does not exist; a log already at this version
    /// is left as it is, a newer one refused. Run it as the role that is to
    /// own the log (`store/sql/roles.sql`).
    pub async fn init(url: &str) -> Result<(), StoreError> {
        let target = Target::parse(url)?;
        let mut client = target.connect().await?;
        let server = |e| target.server(e);
        let tx = client.transaction().await.map_err(server)?;
        // Two inits at once: the second waits, then finds the first's tables.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&target.lock_key]).await.map_err(server)?;
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", target.schema)).await.map_err(server)?;
        match found(&target, &tx).await? {
            Found::Log { version, .. } => {
                supported(&target, version)?;
                return Ok(());
            }
            Found::Foreign => return Err(foreign(&target)),
            Found::Empty => {}
        }
        tx.batch_execute(TABLES).await.map_err(server)?;
        let id = cache_key::new_id().map_err(|e| target.schema_error(format!("no id for the log: {e}")))?;
        let version = PG_SCHEMA_VERSION.to_string();
        tx.execute("INSERT INTO meta VALUES ($1, $2), ($3, $4)", &[&VERSION_KEY, &version, &ID_KEY, &id])
            .await
            .map_err(server)?;
        tx.commit().await.map_err(server)
    }
}

/// Checks that the schema holds a log this code reads; returns its id.
pub(super) async fn check(target: &Target, client: &Client) -> Result<String, StoreError> {
    match found(target, client).await? {
        Found::Log { version, id } => supported(target, version).map(|()| id),
        Found::Empty => Err(StoreError::NoLog { at: target.at.clone() }),
        Found::Foreign => Err(foreign(target)),
    }
}

fn supported(target: &Target, version: u32) -> Result<(), StoreError> {
    if version > PG_SCHEMA_VERSION {
        return Err(target.schema_error(format!(
            "schema version {version} is newer than this usertrail's {PG_SCHEMA_VERSION} (upgrade usertrail)"
        )));
    }
    // Version 1 is the first: there is nothing older to migrate yet.
    Ok(())
}

fn foreign(target: &Target) -> StoreError {
    target.schema_error("holds tables that are not a usertrail log's")
}

async fn found(target: &Target, client: &impl GenericClient) -> Result<Found, StoreError> {
    let server = |e| target.server(e);
    let row = client
        .query_typed_one(
            "SELECT count(*), count(*) FILTER (WHERE tablename = 'meta') FROM pg_tables WHERE schemaname = $1",
            &[(&target.name, Type::TEXT)],
        )
        .await
        .map_err(server)?;
    let (tables, meta): (i64, i64) = (row.try_get(0).map_err(server)?, row.try_get(1).map_err(server)?);
    if tables == 0 {
        return Ok(Found::Empty);
    }
    if meta == 0 {
        return Ok(Found::Foreign);
    }
    let rows = client
        .query_typed(
            "SELECT key, value FROM meta WHERE key IN ($1, $2)",
            &[(&VERSION_KEY, Type::TEXT), (&ID_KEY, Type::TEXT)],
        )
        .await
        .map_err(server)?;
    let (mut version, mut id) = (None, None);
    for row in rows {
        let (key, value): (String, String) =
            (row.try_get(0).map_err(server)?, row.try_get(1).map_err(server)?);
        if key == VERSION_KEY {
            version = value.parse::<u32>().ok();
        } else {
            id = Some(value);
        }
    }
    Ok(match (version, id) {
        (Some(version), Some(id)) => Found::Log { version, id },
        _ => Found::Foreign,
    })
}
