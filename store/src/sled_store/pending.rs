//! The `Pending` overlay: the index entries of the records past the
//! blocks, whose lock orders appends; an event id looked up through it, the
//! blocks and the archive (how a retry is known); and `flush`, which writes
//! it out.

use std::collections::{BTreeMap, HashMap};

use super::{engine, index, Inner};
use crate::keys::{self, be_u64, Run};
use crate::record::Hash;
use crate::{Append, AppendRejection, AppendResult, Appended, StoreError};

/// Index entries are written as blocks once this many records are pending.
pub const INDEX_EVERY: usize = 16_384;

/// [`Pending::note_all`] merges a call's ids into the pending ones when
/// there are fewer than this many pending per new id; otherwise it inserts
/// them one by one. An insert costs a search of some 14 comparisons, a merge
/// a step over every pending id.
const MERGE_WHEN_PENDING_PER_NEW: usize = 16;

/// The index entries of the records past what the blocks cover.
#[derive(Default)]
pub(super) struct Pending {
    /// The blocks cover every record up to this seq.
    pub(super) indexed: u64,
    /// Each stream's head as of `indexed`, as the authenticated mark says.
    pub(super) heads: index::Heads,
    /// The last record this holds (or `indexed` when it holds none).
    pub(super) upto: u64,
    /// The hash of record `upto`.
    pub(super) tip_hash: Hash,
    /// Event id to seq.
    pub(super) events: BTreeMap<uuid::Uuid, u64>,
    /// Each stream's runs, in version order.
    pub(super) runs: HashMap<String, Vec<Run>>,
    /// Why the records past `upto` could not be read at open: the log is
    /// damaged there, so it can be read and verified but not appended to.
    pub(super) damaged: Option<String>,
}

impl Pending {
    /// Notes one record.
    pub(super) fn note(&mut self, stream: &str, version: u64, seq: u64, event_id: uuid::Uuid) {
        self.events.insert(event_id, seq);
        self.note_run(stream, version, seq);
    }

    /// Notes records just committed, `(stream, version, seq, id)` in seq
    /// order, as [`Pending::note`] on each would. A large batch's ids are
    /// sorted and merged in at once: inserted one by one at random places,
    /// they cost a few times more. A few ids are inserted one by one, since
    /// a merge rebuilds the whole map: with up to [`INDEX_EVERY`] ids
    /// pending, that made every durable command pay for all the commands
    /// before it (BENCHMARKS.md, target 1b).
    pub(super) fn note_all<'a>(
        &mut self,
        records: impl Iterator<Item = (&'a str, u64, u64, uuid::Uuid)> + Clone,
    ) {
        let count = records.clone().count();
        if count.saturating_mul(MERGE_WHEN_PENDING_PER_NEW) < self.events.len() {
            for (_, _, seq, id) in records.clone() {
                self.events.insert(id, seq);
            }
        } else {
            let mut ids: BTreeMap<uuid::Uuid, u64> =
                records.clone().map(|(_, _, seq, id)| (id, seq)).collect();
            self.events.append(&mut ids);
        }
        for (stream, version, seq, _) in records {
            self.note_run(stream, version, seq);
        }
    }

    /// Notes that `stream`'s record `version` is at `seq`.
    fn note_run(&mut self, stream: &str, version: u64, seq: u64) {
        self.upto = seq;
        let runs = match self.runs.get_mut(stream) {
            Some(runs) => runs,
            None => self.runs.entry(stream.to_owned()).or_default(),
        };
        match runs.last_mut() {
            Some(run)
                if run.end() == version && run.seq + u64::from(run.count) == seq && run.count < u32::MAX =>
            {
                run.count += 1
            }
            _ => runs.push(Run { version, seq, count: 1 }),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.events.len()
    }
}

impl Inner {
    pub(super) fn pending_mut(&mut self) -> &mut Pending {
        self.index.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A poisoned lock only means an append panicked; the records are the
        // truth and nothing of that append was committed unless whole.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The largest event id in the index blocks: new ids are time-ordered,
    /// so those past it need no lookup.
    pub(super) fn newest_indexed_id(&self) -> Result<Option<[u8; 16]>, StoreError> {
        let last = self.event_blocks(&self.events).block_at(&[0xff; 16]).map_err(|e| self.block_error(e))?;
        let live = last.and_then(|(_, block)| {
            let entry = block.chunks_exact(keys::EVENT_LAYOUT.entry).last()?;
            entry[..16].try_into().ok()
        });
        Ok(live.max(self.sealed.newest_id))
    }

    /// The seq of the record with this event id, if the log has one.
    /// `newest` is [`Inner::newest_indexed_id`], read once per append call.
    pub(super) fn event_seq(
        &self,
        pending: &Pending,
        newest: Option<[u8; 16]>,
        id: &uuid::Uuid,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(&seq) = pending.events.get(id) {
            return Ok(Some(seq));
        }
        if newest.is_none_or(|newest| id.as_bytes() > &newest) {
            return Ok(None);
        }
        let entry = self.event_blocks(&self.events).lookup(id.as_bytes()).map_err(|e| self.block_error(e))?;
        if let Some(seq) = entry.and_then(|e| be_u64(&e[16..])) {
            return Ok(Some(seq));
        }
        if self.sealed.newest_id.is_none_or(|newest| id.as_bytes() > &newest) {
            return Ok(None);
        }
        let entry =
            self.event_blocks(self.archive()?).lookup(id.as_bytes()).map_err(|e| self.block_error(e))?;
        // Past the mark, an interrupted seal's copy: the live blocks answered.
        Ok(entry.and_then(|e| be_u64(&e[16..])).filter(|&seq| seq <= self.sealed.upto))
    }

    /// If the append's events are all in the log already, where they landed.
    /// Some known and some new, in any order, is not a retry but a mistake;
    /// so is an id that an earlier append of the same call carries.
    pub(super) fn earlier_append(
        &self,
        pending: &Pending,
        newest: Option<[u8; 16]>,
        append: &Append,
        new_ids: &rustc_hash::FxHashSet<uuid::Uuid>,
    ) -> AppendResult<Option<Appended>> {
        let mut known = Vec::with_capacity(append.events.len());
        let mut any_new = false;
        for event in &append.events {
            if new_ids.contains(&event.event_id) {
                return Ok(Err(AppendRejection::PartialRetry { event_id: event.event_id }));
            }
            match self.event_seq(pending, newest, &event.event_id)? {
                Some(seq) => known.push((event.event_id, seq)),
                None => any_new = true,
            }
        }
        let (Some(&(first_id, first_seq)), Some(&(_, last_seq))) = (known.first(), known.last()) else {
            return Ok(Ok(None));
        };
        if any_new {
            return Ok(Err(AppendRejection::PartialRetry { event_id: first_id }));
        }
        // The stream's version right after the original append, not now.
        let stream_version = self.record(last_seq)?.version;
        Ok(Ok(Some(Appended { first_seq, last_seq, stream_version, was_retry: true })))
    }

    /// Makes every append durable, writes the pending index entries, and
    /// witnesses the tip. Holds the append lock throughout, so that the tip
    /// witnessed is one the flush made durable.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let mut pending = self.lock();
        self.write_index(&mut pending)?;
        self.flush_db()?;
        if pending.damaged.is_none() {
            let tip = self.tip()?;
            self.witness_tip(tip.seq, tip.hash)?;
        }
        Ok(())
    }

    pub(super) fn flush_db(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// Notes, as `note_all` does after a commit, one call of `calls`
    /// records each, on a `Pending` that already holds `before`; and the
    /// same with `note` on each record.
    fn noted_both_ways(before: u64, calls: &[u64]) -> (Pending, Pending) {
        let id = |seq: u64| Uuid::from_u128(u128::from(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let stream = |seq: u64| if seq % 3 == 0 { "env/a" } else { "tenant" };
        let (mut all, mut one) = (Pending::default(), Pending::default());
        let mut versions = HashMap::<&str, u64>::new();
        let mut record = |seq: u64| {
            let version = versions.entry(stream(seq)).or_default();
            *version += 1;
            (stream(seq), *version, seq, id(seq))
        };
        let mut seq = 0;
        for _ in 0..before {
            seq += 1;
            let r = record(seq);
            all.note(r.0, r.1, r.2, r.3);
            one.note(r.0, r.1, r.2, r.3);
        }
        for &count in calls {
            let records: Vec<_> = (0..count)
                .map(|_| {
                    seq += 1;
                    record(seq)
                })
                .collect();
            all.note_all(records.iter().copied());
            for r in records {
                one.note(r.0, r.1, r.2, r.3);
            }
        }
        (all, one)
    }

    #[test]
    fn noting_a_call_notes_what_noting_each_record_would_whether_merged_or_inserted() {
        // Few new ids among many pending are inserted; many are merged.
        for (before, calls) in
            [(1_000, vec![1, 2, 3]), (1_000, vec![500]), (0, vec![1, 40, 1]), (5, vec![200])]
        {
            let (all, one) = noted_both_ways(before, &calls);
            assert_eq!(all.events, one.events, "{before} pending, calls of {calls:?}");
            assert_eq!(all.runs, one.runs, "{before} pending, calls of {calls:?}");
            assert_eq!(all.upto, one.upto);
        }
    }
}
