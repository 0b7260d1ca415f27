//! Key layout of the `events` and `snapshots` trees.
//!
//! Every number is big-endian so that sled's byte order is numeric order.
//! Records and their indexes share the one `events` tree, told apart by a
//! one-byte tag, so that an append is one atomic `apply_batch` on one tree:
//!
//! | tag | key                                          | value                          |
//! |-----|----------------------------------------------|--------------------------------|
//! | `m` | `m` ++ name                                  | store metadata (format mark)   |
//! | `r` | `r` ++ seq of its first record               | a chunk: consecutive records   |
//! | `e` | `e` ++ event id (16 bytes)                   | seq                            |
//! | `s` | `s` ++ len(stream) u16 ++ stream ++ version  | run: first seq u64, count u32  |
//!
//! What each index holds, and why no more:
//! - A chunk packs the records of one append call up to about
//!   [`CHUNK_BYTES`], so a batch writes a few large values rather than one
//!   entry per record (sled's cost is per entry).
//! - A stream entry is a *run*: the events of one append to one stream have
//!   consecutive seqs and versions, so one entry covers them all.
//! - The event id entry is the one per-event entry: it makes ids unique and
//!   retries idempotent. New ids are time-ordered (UUID v7), so these entries
//!   land at the right edge of the tree rather than all over it.
//! - No head or time entries: the head is the last record of the last chunk,
//!   a stream's version is the end of its last run, and since time never goes
//!   backwards along the log, "the last record at or before T" is a binary
//!   search over seqs.

/// A chunk is closed once it holds this many bytes. Small enough that a sled
/// leaf of 16 chunks stays far below sled's blob threshold (segment / 4).
pub(crate) const CHUNK_BYTES: usize = 4 * 1024;

pub(crate) const META_FORMAT: &[u8] = b"mformat";

pub(crate) const TAG_META: u8 = b'm';
pub(crate) const TAG_CHUNK: u8 = b'r';
pub(crate) const TAG_EVENT: u8 = b'e';
pub(crate) const TAG_STREAM: u8 = b's';

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

/// The prefix shared by every run key of one stream.
pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let len = u16::try_from(stream.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(3 + stream.len() + 8);
    k.push(TAG_STREAM);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    k
}

/// The key of the run of `stream` that starts at `version`.
pub(crate) fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The stream and first version a run key names.
pub(crate) fn stream_of_key(key: &[u8]) -> Option<(&str, u64)> {
    let rest = key.strip_prefix(&[TAG_STREAM])?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    let version = rest.get(2 + len..).filter(|v| v.len() == 8).and_then(be_u64)?;
    Some((name, version))
}

/// A run's value: the seq of its first event and how many there are.
pub(crate) fn run_value(first_seq: u64, count: u32) -> [u8; 12] {
    let mut v = [0; 12];
    v[..8].copy_from_slice(&first_seq.to_be_bytes());
    v[8..].copy_from_slice(&count.to_be_bytes());
    v
}

/// Reads a run's value back: first seq and count (at least one).
pub(crate) fn run_of(value: &[u8]) -> Option<(u64, u32)> {
    if value.len() != 12 {
        return None;
    }
    let count = u32::from_be_bytes(value[8..].try_into().ok()?);
    Some((be_u64(value)?, count)).filter(|_| count > 0)
}

pub(crate) fn event_key(id: &uuid::Uuid) -> [u8; 17] {
    let mut k = [TAG_EVENT; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

pub(crate) fn snapshot_prefix(name: &str) -> Vec<u8> {
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + name.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn snapshot_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = snapshot_prefix(name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
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
        assert!(!stream_key("env/ab", 1).starts_with(&stream_prefix("env/a")));
    }

    #[test]
    fn keys_read_back() {
        assert_eq!(chunk_first(&chunk_key(42)), Some(42));
        assert_eq!(stream_of_key(&stream_key("env/x", 7)), Some(("env/x", 7)));
        assert_eq!(run_of(&run_value(9, 3)), Some((9, 3)));
        assert_eq!(run_of(&run_value(9, 0)), None);
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
