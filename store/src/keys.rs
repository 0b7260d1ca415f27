//! Key layout of the `events` tree.
//!
//! Every number is big-endian so that sled's byte order is numeric order.
//! Records and their indexes share the one `events` tree, told apart by a
//! one-byte tag (snapshots are files beside it, see `snapshots`):
//!
//! | tag | key                                        | value                                   |
//! |-----|--------------------------------------------|-----------------------------------------|
//! | `m` | `m` ++ name                                | store metadata: format, indexed-up-to   |
//! | `r` | `r` ++ seq of its first record             | a chunk: consecutive records            |
//! | `e` | `e` ++ first event id of the block         | block of (event id, seq), sorted        |
//! | `s` | `s` ++ len(stream) u16 ++ stream ++ version | block of runs (version, seq, count)     |
//!
//! What each holds, and why no more (sled's open time and write cost grow
//! with its number of entries, not with their size):
//! - The records are the truth; the `e` and `s` indexes can be rebuilt from
//!   them, and `mindexed` says up to which seq they have been. A chunk packs
//!   the records of one append call up to about [`CHUNK_BYTES`], so one
//!   command is one sled insert.
//! - Index entries are packed into blocks (see `blocks`). A stream entry is a
//!   *run*: consecutive events of one stream at consecutive seqs.
//! - New event ids are time-ordered (UUID v7), so new `e` entries land in the
//!   last block rather than all over the index.
//! - No head or time entries: the head is the last record of the last chunk,
//!   and since time never goes backwards along the log, "the last record at
//!   or before T" is a binary search over seqs.

use crate::blocks::Layout;

/// A chunk is closed once it holds this many bytes. Small enough that a sled
/// leaf of 16 chunks stays far below sled's blob threshold (segment / 4).
pub(crate) const CHUNK_BYTES: usize = 4 * 1024;

pub(crate) const META_FORMAT: &[u8] = b"mformat";
/// The seq up to which the index blocks cover the records.
pub(crate) const META_INDEXED: &[u8] = b"mindexed";

pub(crate) const TAG_META: u8 = b'm';
pub(crate) const TAG_CHUNK: u8 = b'r';
pub(crate) const TAG_EVENT: u8 = b'e';
pub(crate) const TAG_STREAM: u8 = b's';

/// The prefix of the event id index's blocks.
pub(crate) const EVENT_PREFIX: &[u8] = &[TAG_EVENT];
/// Event id index entries: id (16), seq (8).
pub(crate) const EVENT_LAYOUT: Layout = Layout { key: 16, entry: 24 };
/// Stream index entries: first version (8), first seq (8), count (4).
pub(crate) const RUN_LAYOUT: Layout = Layout { key: 8, entry: 20 };

/// The key of the chunk whose first record is `seq`.
pub(crate) fn chunk_key(seq: u64) -> [u8; 9] {
    let mut k = [TAG_CHUNK; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The seq of a chunk's first record, from its key.
pub(crate) fn chunk_first(key: &[u8]) -> Option<u64> {
    match key {
        [TAG_CHUNK, rest @ ..] if rest.len() == 8 => be_u64(rest),
        _ => None,
    }
}

/// The prefix of one stream's run blocks.
pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let len = u16::try_from(stream.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(3 + stream.len() + 8);
    k.push(TAG_STREAM);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    k
}

/// The stream and first version a run block's key names.
pub(crate) fn stream_of_key(key: &[u8]) -> Option<(&str, u64)> {
    let rest = key.strip_prefix(&[TAG_STREAM])?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    let version = rest.get(2 + len..).filter(|v| v.len() == 8).and_then(be_u64)?;
    Some((name, version))
}

/// One run: `count` events of a stream from `version` on, at seqs from `seq` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub version: u64,
    pub seq: u64,
    pub count: u32,
}

impl Run {
    /// The stored entry.
    pub(crate) fn entry(self) -> [u8; 20] {
        let mut v = [0; 20];
        v[..8].copy_from_slice(&self.version.to_be_bytes());
        v[8..16].copy_from_slice(&self.seq.to_be_bytes());
        v[16..].copy_from_slice(&self.count.to_be_bytes());
        v
    }

    /// Reads an entry back; a run covers at least one event from version 1 on.
    pub(crate) fn of(entry: &[u8]) -> Option<Run> {
        let count = u32::from_be_bytes(entry.get(16..20)?.try_into().ok()?);
        let run = Run { version: be_u64(entry)?, seq: be_u64(entry.get(8..)?)?, count };
        (entry.len() == 20 && count > 0 && run.version > 0 && run.seq > 0).then_some(run)
    }

    /// The version after its last event.
    pub(crate) fn end(self) -> u64 {
        self.version + u64::from(self.count)
    }
}

/// An event id index entry.
pub(crate) fn event_entry(id: &uuid::Uuid, seq: u64) -> [u8; 24] {
    let mut e = [0; 24];
    e[..16].copy_from_slice(id.as_bytes());
    e[16..].copy_from_slice(&seq.to_be_bytes());
    e
}

/// Reads a big-endian u64 from the start of a value.
pub(crate) fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Appends one record to a chunk being built: its length, then its bytes.
pub(crate) fn push_record(chunk: &mut Vec<u8>, record: &[u8]) {
    // Records are capped far below 4 GiB (`record::MAX_RECORD`).
    chunk.extend_from_slice(&(record.len() as u32).to_be_bytes());
    chunk.extend_from_slice(record);
}

/// The records of a chunk, in order, as byte slices.
pub(crate) fn chunk_records(chunk: &[u8]) -> ChunkRecords<'_> {
    ChunkRecords { rest: chunk }
}

/// Iterator over a chunk's records; yields an error once for a truncated chunk.
pub(crate) struct ChunkRecords<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ChunkRecords<'a> {
    type Item = Result<&'a [u8], &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err("chunk ends inside a record length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            self.rest = &[];
            return Some(Err("chunk ends inside a record"));
        }
        let (record, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Ok(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_prefix_never_covers_another_stream() {
        // Without the length, "env/a" would be a prefix of "env/ab"'s keys.
        let mut key = stream_prefix("env/ab");
        key.extend_from_slice(&1u64.to_be_bytes());
        assert!(!key.starts_with(&stream_prefix("env/a")));
        assert_eq!(stream_of_key(&key), Some(("env/ab", 1)));
    }

    #[test]
    fn keys_and_entries_read_back() {
        assert_eq!(chunk_first(&chunk_key(42)), Some(42));
        let run = Run { version: 3, seq: 9, count: 2 };
        assert_eq!(Run::of(&run.entry()), Some(run));
        assert_eq!(Run::of(&Run { count: 0, ..run }.entry()), None);
        assert!(chunk_key(u64::MAX) > chunk_key(1) && chunk_key(256) > chunk_key(255));
    }

    #[test]
    fn a_chunk_gives_back_its_records_and_names_a_truncation() {
        let mut chunk = Vec::new();
        push_record(&mut chunk, b"one");
        push_record(&mut chunk, b"");
        push_record(&mut chunk, b"three");
        let got: Vec<_> = chunk_records(&chunk).collect();
        assert_eq!(got, vec![Ok(&b"one"[..]), Ok(&b""[..]), Ok(&b"three"[..])]);
        let cut = &chunk[..chunk.len() - 2];
        assert!(chunk_records(cut).last().unwrap().is_err());
        assert_eq!(
            chunk_records(&chunk[..2]).collect::<Vec<_>>(),
            vec![Err("chunk ends inside a record length")]
        );
    }
}
