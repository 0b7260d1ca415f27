//! `copy --from SRC --to DST` (issue 33): a log moved between backends (a
//! sled directory, a PostgreSQL URL) byte for byte, a page at a time, every
//! record's hash and chain checked; caches are not copied (they rebuild).
//! [`Destination`] is the new log that `copy`, `restore` and a PostgreSQL
//! log's `whatif` write into.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use store::{AppendRejection, Durability, EventStore, Hash, PgStore, Sealed, GENESIS_HASH};

use crate::error::{usage, CliError};
use crate::output::Out;
use crate::proof::hex;
use crate::RunOptions;

/// Records read, checked and written at a time: memory stays flat
/// whatever the log's size.
const PAGE: usize = 1024;

/// A new log being written: an empty PostgreSQL log, or a sled directory
/// made for it, which goes again if the writing fails.
pub struct Destination {
    /// The log.
    pub store: Arc<dyn EventStore>,
    /// Where it is, for messages: a path, or host, port, database and schema (never a password).
    pub name: String,
    /// The sled directory made, and whether it was there (empty) before.
    made: Option<(PathBuf, bool)>,
}

impl Destination {
    /// Opens `db` as a new log: a PostgreSQL log must hold no record (its
    /// tables are made if missing, as `init` makes them), a sled directory
    /// must be absent or empty (`flag` and `command` name it in the refusal).
    pub async fn new(
        db: &Path,
        flag: &str,
        command: &str,
        options: &RunOptions,
    ) -> Result<Destination, CliError> {
        let Some(url) = crate::postgres_url(db) else {
            let existed = crate::proof::new_database(db, flag, command)?;
            let archiving = options.archiving.unwrap_or_default();
            // Batched: flushed once at the end, and removed whole if cut short.
            let store = crate::open_with(db, Durability::Batched, archiving, options.cache_keys.clone())?;
            let name = db.display().to_string();
            return Ok(Destination { store: Arc::new(store), name, made: Some((db.to_path_buf(), existed)) });
        };
        let store = match PgStore::open(url, &options.cache_keys).await {
            Ok(store) => store,
            // Most likely no log there yet; if something else is wrong, init or the open after it says so.
            Err(_) => {
                PgStore::init(url).await?;
                PgStore::open(url, &options.cache_keys).await?
            }
        };
        let name = store.describe().to_owned();
        if let Some(head) = store.head().await? {
            return usage(format!(
                "{flag} {name} is not empty: it holds {} records; {command} writes into an empty log only",
                head.seq
            ));
        }
        Ok(Destination { store: Arc::new(store), name, made: None })
    }

    /// Whether records written before a failure stay (PostgreSQL's are
    /// never deleted): then the input is checked whole before any is written.
    pub fn keeps_a_failure(&self) -> bool {
        self.made.is_none()
    }

    /// Ends the writing: on success, flushed, verified and closed; on a
    /// failure, a sled directory made goes (an empty one stays, empty), and
    /// a PostgreSQL log says what it kept.
    pub async fn finish<T>(self, written: Result<T, CliError>) -> Result<T, CliError> {
        let Destination { store, name, made } = self;
        let result = match written {
            Ok(t) => sound(&*store, &name).await.map(|()| t),
            Err(e) => Err(e),
        };
        let kept = match (&result, &made) {
            (Err(_), None) => store.head().await.ok().flatten().map(|h| h.seq),
            _ => None,
        };
        // The handle goes first: its lock and files live in the directory.
        let closed = store.release().map_err(CliError::from);
        let result = result.and_then(|t| closed.map(|_| t));
        let Err(e) = result else { return result };
        let Some((path, existed)) = made else {
            return Err(match kept {
                Some(n) => CliError::System(format!(
                    "{}; {name} keeps the {n} records written before it: drop its schema (as its owner) before trying again",
                    e.to_string().trim_start_matches("error: ")
                )),
                None => e,
            });
        };
        let removed = std::fs::remove_dir_all(&path).and_then(|()| match existed {
            true => std::fs::create_dir(&path),
            false => Ok(()),
        });
        match removed {
            Ok(()) => Err(e),
            Err(io) => Err(CliError::System(format!(
                "{}; and the partial database {} could not be removed: {io}",
                e.to_string().trim_start_matches("error: "),
                path.display()
            ))),
        }
    }
}

/// Flushes a new log, then checks it as `verify` does.
async fn sound(store: &dyn EventStore, name: &str) -> Result<(), CliError> {
    store.flush().await?;
    match store.verify().await?.problem {
        None => Ok(()),
        Some(p) => {
            Err(CliError::Disproved(format!("the new log {name} fails verify: record {}: {}", p.seq, p.what)))
        }
    }
}

/// Opens the log `db` names to read it: a sled database that exists, or a PostgreSQL log.
pub async fn open_source(db: &Path, options: &RunOptions) -> Result<(Arc<dyn EventStore>, String), CliError> {
    if let Some(url) = crate::postgres_url(db) {
        let store = PgStore::open(url, &options.cache_keys).await?;
        let name = store.describe().to_owned();
        return Ok((Arc::new(store), name));
    }
    if !store::SledStore::exists(db) {
        return usage(format!("no usertrail database at {}", db.display()));
    }
    let archiving = options.archiving.unwrap_or_default();
    let store = crate::open_with(db, Durability::Immediate, archiving, options.cache_keys.clone())?;
    Ok((Arc::new(store), db.display().to_string()))
}

/// `usertrail copy --from SRC --to DST`.
pub async fn copy(from: &Path, to: &Path, options: &RunOptions, out: &mut Out<'_>) -> Result<(), CliError> {
    if from == to {
        return usage("--from and --to name the same log");
    }
    let (source, name) = open_source(from, options).await?;
    let result = copy_opened(&*source, &name, to, options, out).await;
    let closed = source.release().map_err(CliError::from);
    result.and(closed.map(drop))
}

async fn copy_opened(
    source: &dyn EventStore,
    name: &str,
    to: &Path,
    options: &RunOptions,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (records, head, dest) = copy_log(source, name, to, "--to", "copy", options).await?;
    if out.json {
        return out.json(&json!({ "records": records, "hash": hex(&head), "from": name, "to": dest }));
    }
    out.line(format!(
        "copied {records} records from {name} to {dest}: every hash checked; head record {records}, hash {}",
        hex(&head)
    ))
}

/// Copies every record of `source` into the new log `to`: the number of
/// records, the head's hash, and where the copy is (never a password).
pub async fn copy_log(
    source: &dyn EventStore,
    name: &str,
    to: &Path,
    flag: &str,
    command: &str,
    options: &RunOptions,
) -> Result<(u64, Hash, String), CliError> {
    if let Some(why) = source.damage() {
        return Err(CliError::Corrupt(format!("{name} cannot be copied: {why}")));
    }
    let Some(head) = source.head().await? else {
        return usage(format!("{name} holds no records: there is nothing to {command}"));
    };
    let dest = Destination::new(to, flag, command, options).await?;
    let dest_name = dest.name.clone();
    let bar = crate::shell::progress_bar(options.progress, head.seq, "copy [{bar:30}] {pos}/{len}");
    let written = async {
        if dest.keeps_a_failure() {
            let mut check = Pages::new(source, name, head.seq);
            while check.next().await?.is_some() {}
        }
        let mut pages = Pages::new(source, name, head.seq);
        while let Some(page) = pages.next().await? {
            bar.inc(page.len() as u64);
            match dest.store.append_sealed(page).await? {
                Ok(_) => {}
                Err(AppendRejection::NotNext { seq, what }) => {
                    return Err(CliError::Disproved(format!("record {seq} of {name} is refused: {what}")))
                }
                Err(other) => return Err(CliError::Disproved(format!("{name} is refused: {other}"))),
            }
        }
        match pages.prev == head.hash {
            true => Ok((head.seq, head.hash, dest_name)),
            false => Err(CliError::Disproved(format!("{name}'s head record changed while it was copied"))),
        }
    }
    .await;
    bar.finish_and_clear();
    dest.finish(written).await
}

/// Records 1 to `last` of a log, a page at a time, each checked (its seq,
/// its hash, its chain) before its page is handed out.
struct Pages<'a> {
    source: &'a dyn EventStore,
    name: &'a str,
    last: u64,
    next: u64,
    /// The hash of the last record handed out.
    prev: Hash,
}

impl<'a> Pages<'a> {
    fn new(source: &'a dyn EventStore, name: &'a str, last: u64) -> Pages<'a> {
        Pages { source, name, last, next: 1, prev: GENESIS_HASH }
    }

    /// The next page, or `None` past `last`.
    async fn next(&mut self) -> Result<Option<Vec<Sealed>>, CliError> {
        if self.next > self.last {
            return Ok(None);
        }
        let page = self.source.read_sealed(self.next, self.last, PAGE).await?;
        if page.is_empty() {
            return Err(self.refused("is missing"));
        }
        for sealed in &page {
            let r = sealed.record();
            if r.seq != self.next {
                return Err(self.refused("is missing"));
            } else if !sealed.hash_is_intact() {
                return Err(self.refused("is damaged: its hash is not the hash of its body"));
            } else if r.prev_hash != self.prev {
                return Err(self.refused(&format!("does not chain to record {}", self.next - 1)));
            }
            (self.next, self.prev) = (self.next + 1, r.hash);
        }
        Ok(Some(page))
    }

    /// The record due next, refused.
    fn refused(&self, what: &str) -> CliError {
        CliError::Disproved(format!(
            "record {} of {} {what}: nothing is copied from a damaged log",
            self.next, self.name
        ))
    }
}
