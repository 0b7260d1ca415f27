//! Key layout of the `events` tree.
//!
//! Every number is big-endian so that sled's byte order is numeric order.
//! Records and their indexes share the one `events` tree, told apart by a
//! one-byte tag (snapshots are files beside it, see `snapshots`):
//!
//! | tag | key                                        | value                                   |
//! |-----|--------------------------------------------|-----------------------------------------|
//! | `m` | `m` ++ name                                | store metadata: format, index mark, archive mark |
//! | `r` | `r` ++ seq of its first record             | a chunk: consecutive records (LZ4 when that saves) |
//! | `e` | `e` ++ first event id of the block         | block of (event id, seq), sorted, ++ MAC |
//! | `s` | `s` ++ len(stream) u16 ++ stream ++ version | block of runs (version, seq, count) ++ MAC |
//!
//! What each holds, and why no more (sled's open time and write cost grow
//! with its number of entries, not with their size):
//! - The records are the truth; the `e` and `s` indexes are caches of them,
//!   authenticated and bound to the log (`sled_store::index`): `mindexed`
//!   says up to which seq they have been built, with that record's hash and
//!   each stream's head there. A chunk packs
//!   the records of one append call up to about [`CHUNK_BYTES`], so one
//!   command is one sled insert.
//! - Index entries are packed into blocks (see `blocks`). A stream entry is a
//!   *run*: consecutive events of one stream at consecutive seqs.
//! - New event ids are time-ordered (UUID v7), so new `e` entries land in the
//!   last block rather than all over the index.
//! - No head or time entries: the head is the last record of the last chunk,
//!   and since time never goes backwards along the log, "the last record at
//!   or before T" is a binary search over seqs.
//! - The archive (`archive/`, see `sled_store::archive`) has the same
//!   `r`, `e` and `s` entries for the older records, and no `m` ones: the
//!   live tree's `marchive` says up to which seq it holds them.

use std::borrow::Cow;

use crate::blocks::Layout;

/// A chunk is closed once its records take this many bytes. Stored
/// compressed, it takes about half (the hashes and ids in each record do not
/// compress, the rest repeats): a sled leaf of 16 such chunks stays far
/// below sled's blob threshold (segment / 4). Records that do not compress
/// are stored plain, and 16 plain chunks reach that threshold: sled then
/// keeps the leaf as a blob, slower to open but as sound.
pub(crate) const CHUNK_BYTES: usize = 8 * 1024;

/// The first byte of a compressed chunk. A plain one (format 2, or one that
/// compression would not shrink) starts with its first record's length,
/// whose first byte is at most 0x04: records are capped at 64 MiB.
const PACKED: u8 = 0xC4;

/// The most a chunk's records can take: one record at the cap, after others.
const MAX_CHUNK: usize = 64 * 1024 * 1024 + 2 * CHUNK_BYTES;

pub(crate) const META_FORMAT: &[u8] = b"mformat";
/// The seq up to which the index blocks cover the records, its record's
/// hash, and each stream's head there (`sled_store::index::Mark`).
pub(crate) const META_INDEXED: &[u8] = b"mindexed";
/// What the archive holds (`sled_store::archive::Sealed`).
pub(crate) const META_ARCHIVE: &[u8] = b"marchive";

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

/// The stored form of a chunk's records: `PACKED`, their length, and their
/// LZ4 block; or the records as they are when that would not save an eighth.
pub(crate) fn pack(records: Vec<u8>) -> Vec<u8> {
    let bound = lz4_flex::block::get_maximum_output_size(records.len());
    let mut packed = vec![0; 5 + bound];
    packed[0] = PACKED;
    packed[1..5].copy_from_slice(&(records.len() as u32).to_be_bytes());
    match lz4_flex::block::compress_into(&records, &mut packed[5..]) {
        Ok(n) if 5 + n <= records.len() - records.len() / 8 => {
            packed.truncate(5 + n);
            packed
        }
        _ => records,
    }
}

/// A chunk's records from its stored form: borrowed when stored plain.
pub(crate) fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, &'static str> {
    let Some((&PACKED, rest)) = stored.split_first() else {
        return Ok(Cow::Borrowed(stored));
    };
    let (len, block) = rest.split_first_chunk::<4>().ok_or("compressed chunk ends inside its length")?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_CHUNK {
        return Err("compressed chunk claims more bytes than a chunk holds");
    }
    let mut records = vec![0; len];
    match lz4_flex::block::decompress_into(block, &mut records) {
        Ok(n) if n == len => Ok(Cow::Owned(records)),
        _ => Err("compressed chunk does not decompress"),
    }
}

/// A chunk read from sled, its records at hand: the stored value itself
/// when plain, else decompressed.
pub(crate) enum Chunk {
    Plain(sled::IVec),
    Unpacked(Vec<u8>),
}

impl Chunk {
    /// Unpacks a stored chunk.
    pub(crate) fn of(stored: sled::IVec) -> Result<Chunk, &'static str> {
        Ok(match unpack(&stored)? {
            Cow::Borrowed(_) => Chunk::Plain(stored),
            Cow::Owned(records) => Chunk::Unpacked(records),
        })
    }

    /// Its records, in order.
    pub(crate) fn records(&self) -> ChunkRecords<'_> {
        chunk_records(self)
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Plain(stored) => stored,
            Chunk::Unpacked(records) => records,
        }
    }
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
    fn a_key_or_entry_of_another_shape_reads_as_nothing() {
        let mut long = chunk_key(42).to_vec();
        long.push(0);
        assert_eq!(chunk_first(&long), None);
        let run = Run { version: 3, seq: 9, count: 2 };
        assert_eq!(run.end(), 5);
        assert_eq!(Run::of(&Run { version: 0, ..run }.entry()), None);
        assert_eq!(Run::of(&Run { seq: 0, ..run }.entry()), None);
        let mut longer = run.entry().to_vec();
        longer.push(0);
        assert_eq!(Run::of(&longer), None);
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

    #[test]
    fn a_chunk_is_stored_compressed_when_that_saves_and_plain_when_not() {
        let mut records = Vec::new();
        for n in 0..40u8 {
            push_record(&mut records, format!("record {n} by admin@contoso.onmicrosoft.com").as_bytes());
        }
        let packed = pack(records.clone());
        assert_eq!(packed[0], PACKED);
        assert!(packed.len() < records.len() / 2, "{} of {}", packed.len(), records.len());
        assert_eq!(unpack(&packed).unwrap(), records);

        // Noise does not compress: stored as it is, read as it is.
        let mut noise = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let bytes: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        push_record(&mut noise, &bytes);
        assert_eq!(pack(noise.clone()), noise);
        assert!(matches!(unpack(&noise), Ok(Cow::Borrowed(_))));

        // Saving less than an eighth is not worth a decompression: stored plain.
        push_record(&mut noise, &[0; 200]);
        let saved = noise.len() - lz4_flex::block::compress(&noise).len();
        assert!(saved > 12 && saved < noise.len() / 8, "saved {saved} of {}", noise.len());
        assert_eq!(pack(noise.clone()), noise);
    }

    #[test]
    fn a_compressed_chunk_may_claim_one_record_at_the_cap_after_others_and_no_more() {
        let claim = |len: usize| {
            let mut stored = vec![PACKED];
            stored.extend_from_slice(&(len as u32).to_be_bytes());
            stored.extend_from_slice(&lz4_flex::block::compress(b"short"));
            unpack(&stored).map(|_| ())
        };
        let most = 64 * 1024 * 1024 + 16 * 1024;
        assert_eq!(claim(most), Err("compressed chunk does not decompress"));
        assert_eq!(claim(most + 1), Err("compressed chunk claims more bytes than a chunk holds"));
    }

    #[test]
    fn a_damaged_compressed_chunk_is_named_not_trusted() {
        let mut records = Vec::new();
        for _ in 0..50 {
            push_record(&mut records, b"the same record, again and again");
        }
        let packed = pack(records);
        assert_eq!(unpack(&packed[..3]), Err("compressed chunk ends inside its length"));
        assert_eq!(unpack(&packed[..packed.len() - 3]), Err("compressed chunk does not decompress"));
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(unpack(&huge), Err("compressed chunk claims more bytes than a chunk holds"));
        let mut longer = packed;
        longer[4] = longer[4].wrapping_add(1);
        assert!(unpack(&longer).is_err(), "a length that is not the records' is damage");
    }

    proptest::proptest! {
        #[test]
        fn records_read_back_through_a_stored_chunk(
            records in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..300), 1..40)
        ) {
            let mut raw = Vec::new();
            for r in &records {
                push_record(&mut raw, r);
            }
            let stored = pack(raw);
            let back: Vec<Vec<u8>> = chunk_records(&unpack(&stored).unwrap()).map(|r| r.unwrap().to_vec()).collect();
            proptest::prop_assert_eq!(back, records);
        }

        #[test]
        fn any_stored_bytes_unpack_or_fail_without_panicking(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Some(first) = bytes.first_mut() {
                *first = PACKED;
            }
            let _ = unpack(&bytes);
        }
    }
}
