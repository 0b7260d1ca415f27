//! The index blocks as a cache of the records, bound to the log and
//! authenticated (issue 25, finding 2): every block carries a MAC under the
//! database's key (`blocks::IndexKey`), and `mindexed` names the seq the
//! blocks cover, that record's hash and each stream's head there, under a
//! MAC of its own. A mark that fails its MAC or its binding (another key,
//! another history, a forgery) makes the whole index a miss, rebuilt from
//! the records at open. A block that fails its MAC, or a stream whose runs
//! do not reach its authenticated head (a block rolled back), is met by a
//! read: the index is rebuilt, the read runs again, and `verify` names it.

use std::collections::BTreeMap;

use super::archive::Sealed;
use super::{corrupt_seq, engine, Inner, Pending, INDEX_EVERY};
use crate::blocks::{BlockError, Blocks, IndexKey, MAC_BYTES};
use crate::keys::{self, be_u64, Run};
use crate::record::{Hash, Record, GENESIS_HASH};
use crate::StoreError;

/// Each stream's head: its last version and that record's seq.
pub(super) type Heads = BTreeMap<String, (u64, u64)>;

/// What `mindexed`'s MAC covers starts with this.
const MARK_LABEL: &[u8] = b"usertrail index mark 1\0";

/// `mindexed`: the blocks cover every record up to `seq`, whose hash is
/// `hash`, and each stream's head as of it is in `heads`.
pub(super) struct Mark {
    pub seq: u64,
    pub hash: Hash,
    pub heads: Heads,
}

impl Mark {
    /// `seq ++ hash ++ count ++ (len u16 ++ stream ++ version ++ seq)* ++ mac`.
    pub(super) fn encode(&self, key: &IndexKey) -> Vec<u8> {
        let mut body = Vec::with_capacity(44 + self.heads.len() * 40);
        body.extend_from_slice(&self.seq.to_be_bytes());
        body.extend_from_slice(&self.hash);
        body.extend_from_slice(&(self.heads.len() as u32).to_be_bytes());
        for (stream, (version, seq)) in &self.heads {
            // Stream names are capped at u16::MAX bytes by every append.
            body.extend_from_slice(&(stream.len() as u16).to_be_bytes());
            body.extend_from_slice(stream.as_bytes());
            body.extend_from_slice(&version.to_be_bytes());
            body.extend_from_slice(&seq.to_be_bytes());
        }
        key.seal(MARK_LABEL, &[&body])
    }

    /// The mark, if `key` made it (older formats' 8-byte marks are not).
    pub(super) fn decode(bytes: &[u8], key: &IndexKey) -> Option<Mark> {
        let (body, mac) = bytes.split_at(bytes.len().checked_sub(MAC_BYTES)?);
        if !key.checks(MARK_LABEL, &[body], mac) {
            return None;
        }
        let seq = be_u64(body)?;
        let hash = body.get(8..40)?.try_into().ok()?;
        let count = u32::from_be_bytes(body.get(40..44)?.try_into().ok()?);
        let (mut heads, mut rest) = (Heads::new(), body.get(44..)?);
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
            let stream = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
            let tail = rest.get(2 + len..)?;
            heads.insert(stream.to_owned(), (be_u64(tail)?, be_u64(tail.get(8..)?)?));
            rest = tail.get(16..)?;
        }
        rest.is_empty().then_some(Mark { seq, hash, heads })
    }
}

/// What `mindexed` says, as an open finds it.
enum Found {
    /// Authentic and bound to the log's record at its seq.
    Good(Mark),
    /// Authentic, but past the log's end: records were lost.
    Ahead(u64),
    /// Missing, of an older format, under another key, or of another
    /// history: the index is a miss.
    Miss,
}

/// Adds a stream's last run to `heads`.
fn head_of(heads: &mut Heads, stream: &str, runs: &[Run]) {
    if let Some(last) = runs.last() {
        heads.insert(stream.to_owned(), (last.end() - 1, last.seq + u64::from(last.count) - 1));
    }
}

impl Pending {
    /// The stream's version: the end of its last pending run, or its
    /// authenticated head.
    pub(super) fn version(&self, stream: &str) -> u64 {
        match self.runs.get(stream).and_then(|r| r.last()) {
            Some(run) => run.end() - 1,
            None => self.heads.get(stream).map_or(0, |&(version, _)| version),
        }
    }
}

impl Inner {
    /// The event id index of `tree`.
    pub(super) fn event_blocks<'a>(&'a self, tree: &'a sled::Tree) -> Blocks<'a> {
        Blocks { tree, prefix: keys::EVENT_PREFIX, layout: keys::EVENT_LAYOUT, key: &self.index_key }
    }

    /// One stream's run index in `tree`, its blocks' prefix given.
    pub(super) fn run_blocks<'a>(&'a self, tree: &'a sled::Tree, prefix: &'a [u8]) -> Blocks<'a> {
        Blocks { tree, prefix, layout: keys::RUN_LAYOUT, key: &self.index_key }
    }

    /// The error for a block that could not be used. One that fails its MAC
    /// is a miss: noted, so that [`Inner::trusting`] rebuilds the index.
    pub(super) fn block_error(&self, e: BlockError) -> StoreError {
        match e {
            BlockError::Engine(e) => engine(e),
            BlockError::Clash(key) => {
                StoreError::Corrupt(format!("index entry {key:02x?} is in the index with another value"))
            }
            BlockError::Forged(key) => self.miss(format!("{} fails its MAC", block_name(&key))),
        }
    }

    /// Notes that the index is a miss, and why; the error stops the read.
    pub(super) fn miss(&self, what: String) -> StoreError {
        let error = StoreError::Corrupt(format!("the index is not the log's: {what}"));
        *self.missed.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
        error
    }

    /// Whether a miss met by the call in flight waits for a rebuild.
    pub(super) fn has_missed(&self) -> bool {
        self.missed.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Runs `f`; if it met an index that is not the log's, rebuilds the
    /// index from the records and runs `f` once more.
    pub(super) fn trusting<T>(&self, f: impl Fn(&Inner) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let first = f(self);
        if first.is_ok() {
            return first;
        }
        let Some(what) = self.missed.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return first;
        };
        let mut pending = self.lock();
        self.rebuild(&mut pending, false)?;
        self.misses.lock().unwrap_or_else(|p| p.into_inner()).push((pending.indexed, what));
        drop(pending);
        f(self)
    }

    /// What `mindexed` says, checked against the key and the log.
    fn found_mark(&self, last: u64) -> Result<Found, StoreError> {
        let Some(bytes) = self.events.get(keys::META_INDEXED).map_err(engine)? else {
            return Ok(Found::Miss);
        };
        let Some(mark) = Mark::decode(&bytes, &self.index_key) else { return Ok(Found::Miss) };
        if mark.seq > last {
            return Ok(Found::Ahead(mark.seq));
        }
        // A record that does not read is damage the rebuild names.
        let bound = match mark.seq {
            0 => mark.hash == GENESIS_HASH,
            seq => matches!(self.hash_at(seq), Ok(Some(hash)) if hash == mark.hash),
        };
        Ok(if bound { Found::Good(mark) } else { Found::Miss })
    }

    /// At open: reads into memory the index entries of the records that the
    /// blocks do not cover yet (written since the last index write, or
    /// after a crash), or, when the blocks are not the log's, rebuilds them.
    /// `archive_checked`: whether `marchive` passed its MAC; if it did not,
    /// an authentic `mindexed` makes that a forgery, named, and a miss
    /// rebuilds it too. Returns the archive mark rebuilt, if it was.
    pub(super) fn catch_up(&self, archive_checked: bool) -> Result<Option<Sealed>, StoreError> {
        let mut pending = self.lock();
        let last = self.last_seq()?;
        let mark = match self.found_mark(last)? {
            // Nothing to index, and nothing written before the log is known to be ours.
            Found::Miss if last == 0 && archive_checked => return Ok(None),
            Found::Miss => return self.rebuild(&mut pending, !archive_checked),
            _ if !archive_checked => {
                return Err(StoreError::Corrupt(format!(
                    "the archive mark (marchive in {}) fails its MAC: it says which records the archive holds, so the log cannot be read; restore it from a backup",
                    self.path.display()
                )))
            }
            Found::Ahead(indexed) => {
                *pending = Pending { indexed, upto: indexed, ..Pending::default() };
                pending.damaged =
                    Some(format!("the index covers records up to {indexed} but the log ends at {last}"));
                return Ok(None);
            }
            Found::Good(mark) => mark,
        };
        *pending = Pending {
            indexed: mark.seq,
            upto: mark.seq,
            heads: mark.heads,
            tip_hash: mark.hash,
            ..Pending::default()
        };
        let mut damaged = None;
        let scanned = self.scan(mark.seq + 1..=last, |seq, bytes| match Record::peek(bytes) {
            Ok(record) => {
                pending.note(&record.stream, record.version, seq, record.event_id);
                pending.tip_hash = record.hash;
                Ok(true)
            }
            Err(e) => {
                damaged = Some(corrupt_seq(seq, e).to_string());
                Ok(false)
            }
        });
        pending.damaged = damaged.or(scanned.err().map(|e| e.to_string()));
        if pending.len() >= INDEX_EVERY {
            self.write_index(&mut pending)?;
        }
        Ok(None)
    }

    /// Rebuilds every index block from the records, the archive's (up to
    /// its mark) and the live database's, under this store's key, with a
    /// new `mindexed`; and with `archive_mark`, `marchive` too (its seq is
    /// trusted as far as the live database's first chunk confirms it, at
    /// open). Returns the archive mark written, if one was.
    pub(super) fn rebuild(
        &self,
        pending: &mut Pending,
        archive_mark: bool,
    ) -> Result<Option<Sealed>, StoreError> {
        let upto = self.sealed.upto;
        let last = self.last_seq()?;
        let (mut archived, mut live) = (Pending::default(), Pending::default());
        let (mut upto_hash, mut damaged) = (GENESIS_HASH, None);
        let scanned = self.scan(1..=last, |seq, bytes| {
            let record = match Record::peek(bytes) {
                Ok(record) => record,
                Err(e) => {
                    damaged = Some(corrupt_seq(seq, e));
                    return Ok(false);
                }
            };
            let side = if seq <= upto { &mut archived } else { &mut live };
            side.note(&record.stream, record.version, seq, record.event_id);
            side.tip_hash = record.hash;
            if seq == upto {
                upto_hash = record.hash;
            }
            Ok(true)
        });
        let damaged = match (damaged, scanned) {
            (Some(e), _) | (None, Err(e)) => Some(e),
            (None, Ok(())) => None,
        };
        // The archive's records must all be read to index them.
        if let Some(e) = damaged.as_ref().filter(|_| archived.upto < upto) {
            return Err(StoreError::Corrupt(format!("the index cannot be rebuilt: {e}")));
        }
        let sealed = (upto > 0).then(|| Sealed {
            upto,
            versions: archived
                .runs
                .iter()
                .filter_map(|(s, r)| Some((s.clone(), r.last()?.end() - 1)))
                .collect(),
            newest_id: archived.events.keys().next_back().map(|id| *id.as_bytes()),
            hash: upto_hash,
        });
        if upto > 0 {
            let archive = self.archive()?;
            let mut batch = self.cleared(archive)?;
            self.pack(archive, &archived, &mut batch);
            archive.apply_batch(batch).map_err(engine)?;
            archive.flush().map_err(engine)?;
        }
        let mut heads = Heads::new();
        for (stream, runs) in archived.runs.iter().chain(&live.runs) {
            head_of(&mut heads, stream, runs);
        }
        let (seq, hash) = match live.upto.max(archived.upto) {
            0 => (0, GENESIS_HASH),
            seq if seq > upto => (seq, live.tip_hash),
            seq => (seq, archived.tip_hash),
        };
        let mut batch = self.cleared(&self.events)?;
        self.pack(&self.events, &live, &mut batch);
        let mark = Mark { seq, hash, heads };
        batch.insert(keys::META_INDEXED, mark.encode(&self.index_key));
        let written = match (archive_mark, sealed) {
            (true, Some(sealed)) => {
                batch.insert(keys::META_ARCHIVE, sealed.encode(&self.index_key)?);
                Some(sealed)
            }
            _ => None,
        };
        self.events.apply_batch(batch).map_err(engine)?;
        *pending = Pending {
            indexed: seq,
            upto: seq,
            heads: mark.heads,
            tip_hash: hash,
            damaged: damaged.map(|e| e.to_string()),
            ..Pending::default()
        };
        Ok(written)
    }

    /// A batch that removes every index block of `tree`.
    fn cleared(&self, tree: &sled::Tree) -> Result<sled::Batch, StoreError> {
        let mut batch = sled::Batch::default();
        for tag in [keys::TAG_EVENT, keys::TAG_STREAM] {
            for key in tree.scan_prefix([tag]).keys() {
                batch.remove(key.map_err(engine)?);
            }
        }
        Ok(batch)
    }

    /// Puts the blocks of `noted`'s entries into `batch`, for a tree whose
    /// old blocks it removes.
    fn pack(&self, tree: &sled::Tree, noted: &Pending, batch: &mut sled::Batch) {
        let ids: Vec<u8> = noted.events.iter().flat_map(|(id, &seq)| keys::event_entry(id, seq)).collect();
        self.event_blocks(tree).pack(&ids, batch);
        for (stream, runs) in &noted.runs {
            let prefix = keys::stream_prefix(stream);
            let entries: Vec<u8> = runs.iter().flat_map(|r| r.entry()).collect();
            self.run_blocks(tree, &prefix).pack(&entries, batch);
        }
    }

    /// Writes the pending index entries into the blocks, with the mark of
    /// how far they go, in one atomic batch. A block in the way that is not
    /// the log's is a miss: the whole index is rebuilt instead.
    pub(super) fn write_index(&self, pending: &mut Pending) -> Result<(), StoreError> {
        if pending.upto == pending.indexed {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let merged = (|| {
            let entries: Vec<u8> =
                pending.events.iter().flat_map(|(id, &seq)| keys::event_entry(id, seq)).collect();
            self.event_blocks(&self.events).merge(&entries, &mut batch)?;
            for (stream, runs) in &pending.runs {
                let entries: Vec<u8> = runs.iter().flat_map(|r| r.entry()).collect();
                let prefix = keys::stream_prefix(stream);
                self.run_blocks(&self.events, &prefix).merge(&entries, &mut batch)?;
            }
            Ok(())
        })();
        match merged {
            Ok(()) => {}
            Err(BlockError::Forged(key)) => {
                self.rebuild(pending, false)?;
                let what = format!("{} fails its MAC", block_name(&key));
                self.misses.lock().unwrap_or_else(|p| p.into_inner()).push((pending.indexed, what));
                return Ok(());
            }
            Err(e) => return Err(self.block_error(e)),
        }
        let mut heads = pending.heads.clone();
        for (stream, runs) in &pending.runs {
            head_of(&mut heads, stream, runs);
        }
        let mark = Mark { seq: pending.upto, hash: pending.tip_hash, heads };
        batch.insert(keys::META_INDEXED, mark.encode(&self.index_key));
        self.events.apply_batch(batch).map_err(engine)?;
        // The damage past `upto` is still there once its index is written.
        let damaged = pending.damaged.take();
        *pending = Pending {
            indexed: mark.seq,
            upto: mark.seq,
            heads: mark.heads,
            tip_hash: mark.hash,
            damaged,
            ..Pending::default()
        };
        Ok(())
    }

    /// The index misses this handle met and rebuilt, with the seq the
    /// rebuilt index reached: `verify` names them.
    pub(super) fn index_misses(&self) -> Vec<(u64, String)> {
        self.misses.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Checks that `runs` (a stream's, in order, those ending after
/// `from_version`) cover its versions from `from_version` on without a gap
/// or an overlap: up to the first run past the read's end (`beyond`), or
/// else up to `head`, its authenticated version. A block rolled back to an
/// older one of its own leaves a gap, or hides the tail.
pub(super) fn runs_cover(runs: &[Run], from_version: u64, beyond: bool, head: u64) -> Result<(), String> {
    let mut next = from_version;
    for (i, run) in runs.iter().enumerate() {
        if run.version > next || (i > 0 && run.version != next) {
            return Err(format!("its runs jump from version {next} to {}", run.version));
        }
        next = run.end();
    }
    if !beyond && next != from_version.max(head + 1) {
        return Err(format!("its runs end at version {} but its head is version {head}", next - 1));
    }
    Ok(())
}

/// A block's sled key in words.
fn block_name(key: &[u8]) -> String {
    match keys::stream_of_key(key) {
        Some((stream, version)) => format!("the stream index block of '{stream}' from version {version}"),
        None if key.first() == Some(&keys::TAG_EVENT) => "an event id index block".to_owned(),
        None => format!("index block {key:02x?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::fixtures::{event, meta};
    use crate::{Append, ExpectedVersion, SledStore, VerifyReport};

    #[test]
    fn a_log_damaged_past_its_index_stays_closed_to_appends_after_a_flush() {
        let store = SledStore::temporary().unwrap();
        let append = |n: u64| Append {
            stream: "tenant".into(),
            expected: ExpectedVersion::Any,
            events: vec![event(n)],
            meta: meta(n),
        };
        store.append_all_blocking(&(1..=10).map(append).collect::<Vec<_>>()).unwrap().unwrap();
        store.raw_set_record(10, Some(b"not a record")).unwrap();
        // As an open finds it: the blocks cover nothing, record 10 is unreadable.
        *store.inner.lock() = Pending::default();
        store.inner.catch_up(true).unwrap();
        let refused = |store: &SledStore| match store.append_all_blocking(&[append(11)]) {
            Err(StoreError::Corrupt(why)) => why.contains("cannot be appended to"),
            _ => false,
        };
        assert!(refused(&store));
        // Writing the index of records 1..=9 does not make the damage go away.
        store.inner.flush().unwrap();
        assert!(refused(&store), "a flush reopened a damaged log to appends");
    }

    #[test]
    fn index_entries_lost_with_a_crash_are_rebuilt_from_the_records() {
        let store = SledStore::temporary().unwrap();
        let append = |n: u64, stream: &str| Append {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events: vec![event(n)],
            meta: meta(n),
        };
        let first: Vec<Append> =
            (1..=300).map(|n| append(n, if n % 2 == 0 { "env/a" } else { "tenant" })).collect();
        store.append_all_blocking(&first).unwrap().unwrap();
        store.inner.flush().unwrap();
        let more: Vec<Append> = (301..=400).map(|n| append(n, "env/a")).collect();
        store.append_all_blocking(&more).unwrap().unwrap();
        // A crash loses what was only in memory: the entries of 301..=400;
        // an open finds the blocks' mark at 300 and catches up from there.
        *store.inner.lock() = Pending::default();
        store.inner.catch_up(true).unwrap();
        assert_eq!(store.inner.lock().indexed, 300, "the blocks' mark");
        assert_eq!(store.inner.stream_version("env/a").unwrap(), 250);
        let seqs: Vec<u64> = store.inner.read_stream("env/a", 149).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [298, 300].into_iter().chain(301..=400).collect::<Vec<_>>());
        // A retry of an event past the blocks is still a retry, not a duplicate.
        assert!(store.append_all_blocking(&[append(350, "env/a")]).unwrap().unwrap()[0].was_retry);
        assert_eq!(store.inner.verify().unwrap(), VerifyReport { records: 400, problem: None });
    }
}
