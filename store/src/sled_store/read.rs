//! Reads: where the log ends, a stream's records through its index, the
//! chunks walked in seq order across the archive and the live database,
//! and `seq_at`'s binary search over time.

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};

use super::{archive, corrupt_seq, engine, index, malformed_runs, Inner};
use crate::keys::{self, Run};
use crate::record::{from_nanos, to_nanos, Hash, Record, Sealed, GENESIS_HASH};
use crate::{Head, StoreError};

/// A stream read walks past the chunks between two of its records up to
/// this many records apart, and seeks beyond.
const SEEK_GAP: u64 = 512;

/// Where the log ends: the last record's seq, time and hash.
#[derive(Clone, Copy)]
pub(super) struct Tip {
    pub(super) seq: u64,
    pub(super) nanos: i64,
    pub(super) hash: Hash,
}

impl Tip {
    const EMPTY: Tip = Tip { seq: 0, nanos: i64::MIN, hash: GENESIS_HASH };
}

impl Inner {
    /// The seq of the last record, from the chunks' layout alone: a log
    /// whose last record is damaged still opens, to be read and verified
    /// (a last chunk that does not decompress counts as its first record).
    pub(super) fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.last_stored_chunk()? {
            None => 0,
            Some((first, stored)) => match keys::Chunk::of(stored) {
                Ok(chunk) => first + chunk.records().count() as u64 - 1,
                Err(_) => first,
            },
        })
    }

    /// The last chunk's first seq and stored value, if the log has any record.
    fn last_stored_chunk(&self) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let upto = self.sealed.upto;
        let mut last = self.events.range(keys::chunk_key(upto + 1)..=keys::chunk_key(u64::MAX)).next_back();
        if last.is_none() && upto > 0 {
            last = self.archive()?.range(keys::chunk_key(0)..=keys::chunk_key(upto)).next_back();
        }
        match last {
            None => Ok(None),
            Some(entry) => {
                let (key, chunk) = entry.map_err(engine)?;
                let first = keys::chunk_first(&key)
                    .ok_or_else(|| StoreError::Corrupt("a chunk key is malformed".into()))?;
                Ok(Some((first, chunk)))
            }
        }
    }

    pub(super) fn tip(&self) -> Result<Tip, StoreError> {
        let Some((first, stored)) = self.last_stored_chunk()? else {
            return Ok(Tip::EMPTY);
        };
        let chunk = keys::Chunk::of(stored).map_err(|e| corrupt_seq(first, e))?;
        let last = chunk
            .records()
            .last()
            .ok_or_else(|| corrupt_seq(first, "its chunk is empty"))?
            .map_err(|e| corrupt_seq(first, e))?;
        let peek = Record::peek(last).map_err(|e| corrupt_seq(first, e))?;
        Ok(Tip { seq: peek.seq, nanos: peek.nanos, hash: peek.hash })
    }

    pub(super) fn head(&self) -> Result<Option<Head>, StoreError> {
        let tip = self.tip()?;
        Ok((tip.seq > 0).then(|| Head { seq: tip.seq, recorded_at: from_nanos(tip.nanos), hash: tip.hash }))
    }

    pub(super) fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self.lock().version(stream))
    }

    /// The seqs of a stream's records with version `>= from_version` and
    /// seq `<= max_seq`, in order. The runs that give them must cover the
    /// stream from `from_version` to its authenticated head (or to the
    /// first run past `max_seq`): a block rolled back is a miss.
    fn stream_seqs(&self, stream: &str, from_version: u64, max_seq: u64) -> Result<Vec<u64>, StoreError> {
        let pending = self.lock();
        let mut runs = Vec::new();
        let prefix = keys::stream_prefix(stream);
        let from_key = from_version.to_be_bytes();
        let blocked = |e| self.block_error(e);
        // Seqs grow with versions: past the first run beyond `max_seq`, the
        // blocks (and the pending runs, all later) hold nothing wanted. The
        // archive's runs come first, cut at its mark.
        let upto = self.sealed.upto;
        let archived = self.sealed.versions.get(stream).is_some_and(|&v| v >= from_version);
        let mut beyond = false;
        if archived {
            let blocks = self.run_blocks(self.archive()?, &prefix);
            'archive: for block in blocks.from(&from_key).map_err(blocked)? {
                let (_, block) = block.map_err(blocked)?;
                for entry in block.chunks_exact(keys::RUN_LAYOUT.entry) {
                    let run = Run::of(entry).ok_or_else(|| malformed_runs(stream))?;
                    let Some(run) = archive::archived_part(run, upto) else { break 'archive };
                    if run.seq > max_seq {
                        beyond = true;
                        break 'archive;
                    }
                    runs.push(run);
                }
            }
        }
        'blocks: for block in self.run_blocks(&self.events, &prefix).from(&from_key).map_err(blocked)? {
            if beyond {
                break;
            }
            let (_, block) = block.map_err(blocked)?;
            for entry in block.chunks_exact(keys::RUN_LAYOUT.entry) {
                let run = Run::of(entry).ok_or_else(|| malformed_runs(stream))?;
                if run.seq > max_seq {
                    beyond = true;
                    break 'blocks;
                }
                runs.push(run);
            }
        }
        if !beyond {
            runs.extend(pending.runs.get(stream).into_iter().flatten().copied());
        }
        runs.retain(|r| r.end() > from_version);
        let head = pending.version(stream);
        drop(pending);
        if let Err(why) = index::runs_cover(&runs, from_version, beyond, head) {
            return Err(self.miss(format!("the stream index of '{stream}': {why}")));
        }
        let mut seqs = Vec::new();
        for run in runs {
            let skip = from_version.saturating_sub(run.version);
            for k in skip..u64::from(run.count) {
                let seq = run.seq + k;
                if seq > max_seq {
                    return Ok(seqs);
                }
                seqs.push(seq);
            }
        }
        Ok(seqs)
    }

    /// The first seq of the chunk holding `seq` (or `seq` itself when no
    /// chunk starts at or before it).
    pub(super) fn chunk_start(&self, seq: u64) -> Result<u64, StoreError> {
        let upto = self.sealed.upto;
        let found = if seq <= upto && upto > 0 {
            self.archive()?.range(keys::chunk_key(0)..=keys::chunk_key(seq)).next_back()
        } else {
            self.events.range(keys::chunk_key(upto + 1)..=keys::chunk_key(seq)).next_back()
        };
        match found {
            None => Ok(seq),
            Some(entry) => {
                let (key, _) = entry.map_err(engine)?;
                keys::chunk_first(&key).ok_or_else(|| StoreError::Corrupt("a chunk key is malformed".into()))
            }
        }
    }

    /// The stored chunks from the one starting at `start` to the one holding
    /// `to`, in order: the archive's (up to its mark), then the live ones.
    pub(super) fn chunks(
        &self,
        start: u64,
        to: u64,
    ) -> Result<impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + '_, StoreError> {
        let upto = self.sealed.upto;
        let archived = match upto > 0 && start <= to.min(upto) {
            true => Some(self.archive()?.range(keys::chunk_key(start)..=keys::chunk_key(to.min(upto)))),
            false => None,
        };
        let from_live = start.max(upto + 1);
        let live =
            (from_live <= to).then(|| self.events.range(keys::chunk_key(from_live)..=keys::chunk_key(to)));
        Ok(archived.into_iter().flatten().chain(live.into_iter().flatten()))
    }

    /// Calls `f` with the seq and stored bytes of each record in `seqs`, in
    /// order, until it returns `false`.
    pub(super) fn scan(
        &self,
        seqs: RangeInclusive<u64>,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (from, to) = (*seqs.start(), *seqs.end());
        if from > to {
            return Ok(());
        }
        let start = self.chunk_start(from)?;
        for entry in self.chunks(start, to)? {
            let (key, chunk) = entry.map_err(engine)?;
            let first = keys::chunk_first(&key)
                .ok_or_else(|| StoreError::Corrupt("a chunk key is malformed".into()))?;
            let chunk = keys::Chunk::of(chunk).map_err(|e| corrupt_seq(first, e))?;
            for (seq, bytes) in (first..).zip(chunk.records()) {
                let bytes = bytes.map_err(|e| corrupt_seq(seq, e))?;
                if seq > to {
                    return Ok(());
                }
                if seq >= from && !f(seq, bytes)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(super) fn record(&self, seq: u64) -> Result<Record, StoreError> {
        let mut found = None;
        self.scan(seq..=seq, |_, bytes| {
            found = Some(Record::open(bytes).map_err(|e| corrupt_seq(seq, e))?);
            Ok(false)
        })?;
        found.ok_or_else(|| corrupt_seq(seq, "indexed but missing from the log"))
    }

    pub(super) fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Record>, StoreError> {
        self.read_stream_until(stream, from_version, u64::MAX)
    }

    /// A stream's records from a version on, up to a log position. Seqs grow
    /// with versions, so nothing past `max_seq` is read.
    pub(super) fn read_stream_until(
        &self,
        stream: &str,
        from_version: u64,
        max_seq: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let seqs = self.stream_seqs(stream, from_version.max(1), max_seq)?;
        let mut records = Vec::with_capacity(seqs.len());
        // The index says where a stream's records are; the records say
        // whose they are and in what order. A fold decides on what this
        // returns, so an index that skips or borrows records (damaged, or
        // forged) is named here, not folded.
        let mut version = from_version.max(1);
        self.read_seqs(&seqs, |seq, bytes| {
            let record = Record::open(bytes).map_err(|e| corrupt_seq(seq, e))?;
            if record.seq != seq {
                return Err(corrupt_seq(seq, format!("its place in the log holds record {}", record.seq)));
            }
            if record.stream != stream || record.version != version {
                return Err(corrupt_seq(
                    seq,
                    format!(
                        "the index gives it as version {version} of stream '{stream}', but it is version {} of '{}'",
                        record.version, record.stream
                    ),
                ));
            }
            version += 1;
            records.push(record);
            Ok(())
        })?;
        Ok(records)
    }

    /// Calls `f` with the stored bytes of each record in `seqs` (ascending),
    /// walking the chunks forward. A stream's records are spread over the
    /// chunks of every stream, and stepping to the next chunk is cheap in a
    /// sled iterator, where finding one's chunk anew (`chunk_start`, a
    /// reverse range) costs a tree descent and a copy of the leaf; so it
    /// seeks anew only across a gap of more than [`SEEK_GAP`] records.
    fn read_seqs(
        &self,
        seqs: &[u64],
        mut f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let missing = |seq| corrupt_seq(seq, "indexed but missing from the log");
        let mut want = seqs.iter().copied().peekable();
        // The first seq of the last chunk walked: a seek that lands on it
        // again means the chunks holding what is wanted are gone.
        let mut walked = None;
        'seek: while let Some(&next) = want.peek() {
            let start = self.chunk_start(next)?;
            if walked.is_some_and(|w| start <= w) {
                return Err(missing(next));
            }
            for entry in self.chunks(start, u64::MAX)? {
                let (key, chunk) = entry.map_err(engine)?;
                let first = keys::chunk_first(&key)
                    .ok_or_else(|| StoreError::Corrupt("a chunk key is malformed".into()))?;
                let chunk = keys::Chunk::of(chunk).map_err(|e| corrupt_seq(first, e))?;
                walked = Some(first);
                let mut seq = first;
                for bytes in chunk.records() {
                    let Some(&wanted) = want.peek() else { return Ok(()) };
                    if wanted < first {
                        return Err(missing(wanted));
                    }
                    if wanted == seq {
                        f(seq, bytes.map_err(|e| corrupt_seq(seq, e))?)?;
                        want.next();
                    }
                    seq += 1;
                }
                match want.peek() {
                    None => return Ok(()),
                    Some(&wanted) if wanted < seq => return Err(missing(wanted)),
                    Some(&wanted) if wanted - seq > SEEK_GAP => continue 'seek,
                    Some(_) => {}
                }
            }
            return Err(missing(next));
        }
        Ok(())
    }

    pub(super) fn read_log(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        if limit == 0 {
            return Ok(records);
        }
        self.scan(from.max(1)..=to, |seq, bytes| {
            records.push(Record::open(bytes).map_err(|e| corrupt_seq(seq, e))?);
            Ok(records.len() < limit)
        })?;
        Ok(records)
    }

    pub(super) fn read_sealed(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Sealed>, StoreError> {
        let mut records = Vec::new();
        if limit == 0 {
            return Ok(records);
        }
        self.scan(from.max(1)..=to, |seq, bytes| {
            records.push(Sealed::from_stored(bytes.to_vec()).map_err(|e| corrupt_seq(seq, e))?);
            Ok(records.len() < limit)
        })?;
        Ok(records)
    }

    /// Time never goes backwards along the log, so the last record at or
    /// before `time` is found by a binary search over seqs.
    pub(super) fn seq_at(&self, time: DateTime<Utc>) -> Result<u64, StoreError> {
        let head = self.tip()?.seq;
        let Ok(nanos) = to_nanos(time) else {
            // Beyond what the log can hold: before everything, or after it.
            return Ok(if time.timestamp() < 0 { 0 } else { head });
        };
        let mut cursor = Cursor::default();
        let (mut lo, mut hi) = (0, head);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if cursor.nanos(self, mid)? <= nanos {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// The hash of the record at `seq`, if the log reaches that far. A
    /// record missing below the head is the log's damage, not a cache's.
    pub(super) fn hash_at(&self, seq: u64) -> Result<Option<Hash>, StoreError> {
        match self.read_log(seq, seq, 1)?.first() {
            Some(record) => Ok(Some(record.hash)),
            None if seq <= self.tip()?.seq => Err(corrupt_seq(seq, "missing from the log")),
            None => Ok(None),
        }
    }
}

/// Reads records by seq, keeping the last chunk read: the probes of a
/// search often share chunks.
#[derive(Default)]
struct Cursor {
    chunk: Option<(u64, keys::Chunk)>,
}

impl Cursor {
    fn bytes(&mut self, store: &Inner, seq: u64) -> Result<&[u8], StoreError> {
        let holds = |(first, chunk): &(u64, keys::Chunk)| {
            seq >= *first && chunk.records().nth((seq - first) as usize).is_some()
        };
        if !self.chunk.as_ref().is_some_and(holds) {
            let first = store.chunk_start(seq)?;
            self.chunk = match store.chunk_tree(first)?.get(keys::chunk_key(first)).map_err(engine)? {
                Some(stored) => Some((first, keys::Chunk::of(stored).map_err(|e| corrupt_seq(first, e))?)),
                None => None,
            };
        }
        let missing = || corrupt_seq(seq, "indexed but missing from the log");
        let (first, chunk) = self.chunk.as_ref().ok_or_else(missing)?;
        let at = usize::try_from(seq.checked_sub(*first).ok_or_else(missing)?).map_err(|_| missing())?;
        match chunk.records().nth(at) {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(corrupt_seq(seq, e)),
            None => Err(missing()),
        }
    }

    fn nanos(&mut self, store: &Inner, seq: u64) -> Result<i64, StoreError> {
        Ok(Record::peek(self.bytes(store, seq)?).map_err(|e| corrupt_seq(seq, e))?.nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_store::fixtures::{append_to, event, meta};
    use crate::{Append, ExpectedVersion, NewEvent, OpenOptions, SledStore};

    #[test]
    fn a_compressed_chunk_that_does_not_decompress_is_named_and_closes_the_log_to_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let events: Vec<NewEvent> = (1..=100).map(event).collect();
        {
            let store = SledStore::open(&path, OpenOptions::default()).unwrap();
            let append = append_to("tenant", ExpectedVersion::Exactly(0), events, 1);
            store.append_all_blocking(&[append]).unwrap().unwrap();
            // The last chunk's compressed block, cut short.
            let first = store.inner.chunk_start(100).unwrap();
            let stored = store.inner.events.get(keys::chunk_key(first)).unwrap().unwrap();
            store.inner.events.insert(keys::chunk_key(first), &stored[..stored.len() - 8]).unwrap();
            // Flushed as a disk's fault would be: behind the store's back.
            store.inner.write_index(&mut store.inner.lock()).unwrap();
            store.inner.flush_db().unwrap();
        }
        let store =
            SledStore::open(&path, OpenOptions::default()).expect("a damaged log opens, to be verified");
        let first = store.inner.chunk_start(100).unwrap();
        let report = store.inner.verify().unwrap();
        let problem = report.problem.expect("named");
        assert_eq!(problem.seq, first);
        assert!(problem.what.contains("does not decompress"), "{}", problem.what);
        let err = store.inner.read_log(first, first, 1).unwrap_err().to_string();
        assert!(err.contains("does not decompress"), "{err}");
        let next = append_to("tenant", ExpectedVersion::Any, vec![event(101)], 101);
        assert!(store.append_all_blocking(&[next]).is_err(), "no appends after an unreadable chunk");
    }

    #[test]
    fn a_large_append_spans_chunks_and_reads_back_whole() {
        let store = SledStore::temporary().unwrap();
        let events: Vec<NewEvent> = (1..=200).map(event).collect();
        let append = append_to("tenant", ExpectedVersion::Exactly(0), events, 1);
        store.append_all_blocking(&[append]).unwrap().unwrap();
        let chunks = store.inner.events.scan_prefix([keys::TAG_CHUNK]).count();
        assert!(chunks > 2, "200 records of ~200 bytes fill several 8 KiB chunks, got {chunks}");
        let seqs: Vec<u64> =
            store.inner.read_stream_until("tenant", 50, 150).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (50..=150).collect::<Vec<_>>());
        assert_eq!(store.inner.read_log(99, 120, 5).unwrap().len(), 5);
        assert_eq!(store.inner.verify().unwrap().problem, None);
        // A record cut out of the middle of a chunk is named.
        store.raw_set_record(100, None).unwrap();
        assert_eq!(store.inner.verify().unwrap().problem.map(|p| p.seq), Some(100));
    }

    #[test]
    fn a_stream_read_finds_its_records_across_near_and_far_gaps_in_blocks_and_pending() {
        // Stream "a" in runs with gaps of other streams' records shorter
        // and longer than SEEK_GAP; its first half indexed in blocks, the
        // rest pending.
        let gap = SEEK_GAP;
        let a_seqs: Vec<u64> =
            [1, 2, 3, 9, 10, gap + 20, gap + 21, 3 * gap, 3 * gap + 4, 3 * gap + 5, 5 * gap]
                .into_iter()
                .chain(5 * gap + 2..5 * gap + 40)
                .chain([8 * gap, 8 * gap + 1])
                .collect();
        let store = SledStore::temporary().unwrap();
        let append = |seq: u64| Append {
            stream: if a_seqs.contains(&seq) { "a" } else { "b" }.into(),
            expected: ExpectedVersion::Any,
            events: vec![event(seq)],
            meta: meta(seq),
        };
        let half = 4 * gap;
        store.append_all_blocking(&(1..=half).map(append).collect::<Vec<_>>()).unwrap().unwrap();
        store.inner.flush().unwrap();
        store
            .append_all_blocking(&(half + 1..=8 * gap + 1).map(append).collect::<Vec<_>>())
            .unwrap()
            .unwrap();
        assert!(store.inner.lock().indexed == half && store.inner.lock().upto > half);

        let everything = store.inner.read_log(1, u64::MAX, usize::MAX).unwrap();
        for from_version in [1, 2, 5, 6, 12, 40, 52, 53] {
            for max_seq in [1, 3, 10, gap + 20, 3 * gap + 4, half, 5 * gap + 10, 8 * gap, u64::MAX] {
                let got: Vec<(u64, u64)> = store
                    .inner
                    .read_stream_until("a", from_version, max_seq)
                    .unwrap()
                    .iter()
                    .map(|r| (r.seq, r.version))
                    .collect();
                let expected: Vec<(u64, u64)> = everything
                    .iter()
                    .filter(|r| r.stream == "a" && r.version >= from_version && r.seq <= max_seq)
                    .map(|r| (r.seq, r.version))
                    .collect();
                assert_eq!(got, expected, "from version {from_version} up to seq {max_seq}");
            }
        }

        // Chunks gone beyond a far gap (the index still lists their records):
        // named, not sought for ever.
        let copy = SledStore::temporary().unwrap();
        copy.append_all_blocking(&(1..=8 * gap + 1).map(append).collect::<Vec<_>>()).unwrap().unwrap();
        let last_before_gap = copy.inner.chunk_start(3 * gap + 5).unwrap();
        for entry in copy.inner.events.range(keys::chunk_key(last_before_gap + 1)..=keys::chunk_key(u64::MAX))
        {
            copy.inner.events.remove(entry.unwrap().0).unwrap();
        }
        let err = copy.inner.read_stream_until("a", 1, u64::MAX).unwrap_err().to_string();
        assert!(err.contains(&format!("record {}: indexed but missing", 5 * gap)), "{err}");

        // A record gone from its chunk shifts the ones after it: a read names
        // the place that holds another record rather than return it.
        store.raw_set_record(3 * gap + 3, None).unwrap();
        let err = store.inner.read_stream_until("a", 1, u64::MAX).unwrap_err().to_string();
        assert!(err.contains(&format!("record {}", 3 * gap + 4)), "{err}");
    }
}
