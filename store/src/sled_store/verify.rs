//! `verify`: the chain walked forward, every index entry checked against it.

use std::collections::HashMap;

use super::archive::archived_part;
use super::index::Heads;
use super::witness::Witnessed;
use super::{engine, Inner};
use crate::keys::{self, be_u64, Run};
use crate::record::{check_record, Record, GENESIS_HASH};
use crate::{Problem, StoreError, VerifyReport};

impl Inner {
    /// Walks the chain and checks every index entry, then the log against
    /// its witness; reports the first problem, and records it in the
    /// witness, which keeps the log closed to appends from then on. An
    /// index that is not the records' is no such problem: it is rebuilt,
    /// and named by [`Inner::index_misses`].
    pub(super) fn verify(&self) -> Result<VerifyReport, StoreError> {
        let report = self.trusting(|s| s.walk())?;
        if let Some(problem) = &report.problem {
            self.record_finding(problem)?;
        }
        Ok(report)
    }

    /// The first break of the chain over records `from..=to`, checked as
    /// the walk checks each record against the one before it.
    pub(super) fn chain_break(&self, from: u64, to: u64) -> Result<Option<Problem>, StoreError> {
        let (mut prev_hash, mut prev_nanos) = (GENESIS_HASH, i64::MIN);
        let mut found = None;
        self.scan(from.saturating_sub(1).max(1)..=to, |seq, bytes| {
            found = match Record::peek(bytes) {
                Err(e) => Some(Problem { seq, what: e.to_string() }),
                Ok(record) if seq < from => {
                    (prev_hash, prev_nanos) = (record.hash, record.nanos);
                    None
                }
                Ok(record) => check_record(bytes, &record, seq, prev_hash, prev_nanos).or_else(|| {
                    (prev_hash, prev_nanos) = (record.hash, record.nanos);
                    None
                }),
            };
            Ok(found.is_none())
        })?;
        Ok(found)
    }

    /// Keeps a finding in the witness (unless it holds one already) and
    /// closes this handle to appends.
    fn record_finding(&self, problem: &Problem) -> Result<(), StoreError> {
        let mut pending = self.lock();
        if pending.damaged.is_none() {
            pending.damaged = Some(super::verify_found(problem));
        }
        let Some(witness) = &self.witness else { return Ok(()) };
        let mut witness = witness.lock().unwrap_or_else(|p| p.into_inner());
        let held = witness.holds.clone();
        if held.as_ref().is_some_and(|h| h.finding.is_some()) {
            return Ok(());
        }
        // The committed head stays what it was: only the finding is added.
        let (seq, hash) = held.map_or((0, GENESIS_HASH), |h| (h.seq, h.hash));
        witness
            .write(Witnessed { seq, hash, finding: Some(problem.clone()) })
            .map_err(|source| self.io(source))
    }

    /// The chain walked forward and every index entry checked against it.
    fn walk(&self) -> Result<VerifyReport, StoreError> {
        // Everything into the blocks first, so that they are what is checked;
        // appends wait until the walk is done, so it sees one state.
        let mut pending = self.lock();
        self.write_index(&mut pending)?;
        let mut walked = 0;
        let found = (|| -> Result<Option<Problem>, StoreError> {
            let mut prev_hash = GENESIS_HASH;
            let mut prev_nanos = i64::MIN;
            // Per stream: an index, and its version so far.
            let mut streams: HashMap<String, (u32, u64)> = HashMap::new();
            // Per record: its stream's index and its version; where each id is.
            let mut placed: Vec<(u32, u64)> = Vec::new();
            let mut ids: HashMap<uuid::Uuid, u64> = HashMap::new();
            for entry in self.chunks(0, u64::MAX)? {
                let (key, chunk) = entry.map_err(engine)?;
                let expected = walked + 1;
                if keys::chunk_first(&key) != Some(expected) {
                    let at = keys::chunk_first(&key).map_or("an unreadable key".into(), |s| s.to_string());
                    return bad(expected, format!("missing: the log jumps to {at}"));
                }
                let chunk = match keys::Chunk::of(chunk) {
                    Ok(chunk) => chunk,
                    Err(e) => return bad(expected, e),
                };
                for bytes in chunk.records() {
                    let seq = walked + 1;
                    let bytes = match bytes {
                        Ok(b) => b,
                        Err(e) => return bad(seq, e),
                    };
                    let record = match Record::peek(bytes) {
                        Ok(r) => r,
                        Err(e) => return bad(seq, e),
                    };
                    if let Some(problem) = check_record(bytes, &record, seq, prev_hash, prev_nanos) {
                        return Ok(Some(problem));
                    }
                    let next = streams.len() as u32;
                    let (index, version) = streams.entry(record.stream.to_string()).or_insert((next, 0));
                    if record.version != *version + 1 {
                        return bad(
                            seq,
                            format!(
                                "stream '{}' version {} follows {}",
                                record.stream, record.version, version
                            ),
                        );
                    }
                    *version = record.version;
                    placed.push((*index, record.version));
                    if ids.insert(record.event_id, seq).is_some() {
                        return bad(seq, format!("event id {} is in the log twice", record.event_id));
                    }
                    prev_hash = record.hash;
                    prev_nanos = record.nanos;
                    walked = seq;
                }
            }
            // The chain is whole as far as it goes. A loss the witness shows
            // comes next: it explains what the indexes would say of the
            // records gone.
            if let Some(problem) = self.witness_problem.get() {
                return Ok(Some(problem.clone()));
            }
            // The index is a cache of the records: one that is not theirs is
            // a miss, rebuilt (by `trusting`) and named, not the log's damage.
            let problem = match check_heads(walked, &pending.heads, &streams, &placed) {
                Some(problem) => Some(problem),
                None => self.check_indexes(walked, &streams, &placed, &ids)?,
            };
            match problem {
                Some(Problem { seq, what }) => Err(self.miss(format!("record {seq}: {what}"))),
                None => Ok(None),
            }
        })();
        // Stored bytes that cannot be read (the archive's sled files damaged,
        // say) are a finding like any other: named, and kept in the witness.
        let found = match found {
            // An index that is not the log's is a miss: rebuilt, then walked again.
            Err(e) if self.has_missed() => return Err(e),
            Err(StoreError::Corrupt(what)) => Some(Problem { seq: walked + 1, what }),
            other => other?,
        };
        Ok(VerifyReport { records: walked, problem: found })
    }

    /// Every record has its event id entry and is covered by one run of its
    /// stream; no entry points elsewhere or past the log; blocks are keyed by
    /// their first entry and sorted; nothing is of a kind this store does not write.
    fn check_indexes(
        &self,
        last: u64,
        streams: &HashMap<String, (u32, u64)>,
        placed: &[(u32, u64)],
        ids: &HashMap<uuid::Uuid, u64>,
    ) -> Result<Option<Problem>, StoreError> {
        let mut covered = vec![false; placed.len()];
        let mut event_entries = 0u64;
        let stray = |seq: u64, what: String| Ok(Some(Problem { seq: seq.clamp(1, last.max(1)), what }));
        let slot =
            |seq: u64| usize::try_from(seq.wrapping_sub(1)).ok().filter(|&i| seq > 0 && i < placed.len());
        // The live database's entries, then the archive's up to its mark
        // (past it, an interrupted seal's copies of live entries).
        let upto = self.sealed.upto;
        let archive = if upto > 0 { Some(self.archive()?) } else { None };
        let trees = std::iter::once((&self.events, false)).chain(archive.map(|a| (a, true)));
        for (tree, archived) in trees {
            let mut last_id: Option<Vec<u8>> = None;
            for entry in tree.iter() {
                let (key, value) = entry.map_err(engine)?;
                let opened =
                    |layout| self.index_key.open_block(layout, &key, &value).map_err(|e| self.block_error(e));
                match key.first().copied() {
                    Some(keys::TAG_META | keys::TAG_CHUNK) => {}
                    Some(keys::TAG_EVENT) => {
                        let block = opened(keys::EVENT_LAYOUT)?;
                        for entry in block.chunks_exact(keys::EVENT_LAYOUT.entry) {
                            let seq = be_u64(&entry[16..]).unwrap_or(0);
                            if last_id.as_deref().is_some_and(|prev| prev >= &entry[..16]) {
                                return stray(seq, "event id index entries are out of order".into());
                            }
                            last_id = Some(entry[..16].to_vec());
                            if archived && seq > upto {
                                continue;
                            }
                            event_entries += 1;
                            let id = uuid::Uuid::from_slice(&entry[..16]).unwrap_or_default();
                            match ids.get(&id) {
                                Some(&at) if at == seq => {}
                                Some(&at) => {
                                    return stray(at, "event id index entry is missing or wrong".into())
                                }
                                None => {
                                    return stray(
                                        seq,
                                        "event id index entry names no record of the log".into(),
                                    )
                                }
                            }
                        }
                    }
                    Some(keys::TAG_STREAM) => {
                        let Some((stream, first_version)) = keys::stream_of_key(&key) else {
                            return stray(last, "a stream index key is malformed".into());
                        };
                        let Some(&(index, _)) = streams.get(stream) else {
                            return stray(
                                last,
                                format!("stream index names '{stream}', which has no record"),
                            );
                        };
                        let block = opened(keys::RUN_LAYOUT)?;
                        let runs: Option<Vec<Run>> =
                            block.chunks_exact(keys::RUN_LAYOUT.entry).map(Run::of).collect();
                        let runs = runs.filter(|r| r.first().map(|r| r.version) == Some(first_version));
                        let Some(runs) = runs else {
                            return stray(last, format!("stream index block of '{stream}' is malformed"));
                        };
                        let runs = runs.into_iter().filter_map(|r| {
                            if archived {
                                archived_part(r, upto)
                            } else {
                                Some(r)
                            }
                        });
                        for run in runs {
                            for k in 0..u64::from(run.count) {
                                let seq = run.seq + k;
                                match slot(seq) {
                                    Some(i) if placed[i] == (index, run.version + k) && !covered[i] => {
                                        covered[i] = true
                                    }
                                    Some(_) => {
                                        return stray(
                                            seq,
                                            format!("stream index entry of '{stream}' is wrong here"),
                                        )
                                    }
                                    None => {
                                        return stray(
                                            seq,
                                            "stream index entry points past the end of the log".into(),
                                        )
                                    }
                                }
                            }
                        }
                    }
                    _ => return stray(last, "an index entry of an unknown kind".into()),
                }
            }
        }
        if let Some(i) = covered.iter().position(|c| !c) {
            return stray(i as u64 + 1, "stream index entry is missing".into());
        }
        if event_entries != last {
            return stray(last, format!("{event_entries} event id entries for {last} records"));
        }
        Ok(None)
    }
}

/// A verify finding, in the shape the walk returns.
fn bad(seq: u64, what: impl Into<String>) -> Result<Option<Problem>, StoreError> {
    Ok(Some(Problem { seq, what: what.into() }))
}

/// The authenticated stream heads (`mindexed`) are the log's: each stream's
/// last version and its seq, as the walk found them (`placed`, by seq).
fn check_heads(
    last: u64,
    heads: &Heads,
    streams: &HashMap<String, (u32, u64)>,
    placed: &[(u32, u64)],
) -> Option<Problem> {
    let mut seqs = vec![0; streams.len()];
    for (seq, &(index, _)) in (1..).zip(placed) {
        seqs[index as usize] = seq;
    }
    let found: Heads = streams
        .iter()
        .map(|(stream, &(index, version))| (stream.clone(), (version, seqs[index as usize])))
        .collect();
    (found != *heads)
        .then(|| Problem { seq: last.max(1), what: "the index mark's stream heads are not the log's".into() })
}
