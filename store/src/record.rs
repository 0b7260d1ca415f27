//! The record: one event as the log keeps it, its byte form, and its hash.
//!
//! A stored value is `FORMAT byte ++ bincode(body) ++ sha256(body)`; the body
//! carries the previous record's hash, so the stored hash covers the record
//! and its predecessor (L3). The format byte lets a later version of the
//! record be read next to this one: format 1 is the body alone; format 2
//! appends the [`Origin`] (the machine's clock, account and host) to it.
//! Records of format 1 are never rewritten: they read with no origin.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::StoreError;

/// A SHA-256 hash of a record body.
pub type Hash = [u8; 32];

/// The hash that the first record chains to.
pub const GENESIS_HASH: Hash = [0; 32];

const RECORD_FORMAT_V1: u8 = 1;
/// Format 1's body followed by the [`Origin`].
const RECORD_FORMAT_V2: u8 = 2;

/// What caused an append: a user's command, or a background process such as
/// the sync pass (with the log record that triggered it, where one did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Causation {
    /// A command typed by an actor, named as on the command line (`user create`).
    Command { name: String },
    /// A process acting on its own (`sync`), and the record that set it off.
    Process { name: String, trigger: Option<u64> },
}

/// Metadata shared by every event of one append (L2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// When the events happened; never earlier than the last record's time.
    pub recorded_at: DateTime<Utc>,
    /// Who did it: a UPN, or a process name.
    pub actor: String,
    /// Shared by all the events of one command.
    pub correlation_id: Uuid,
    /// What caused the events.
    pub causation: Causation,
    /// Where they were written from (`None`: sealed in format 1, as before).
    pub origin: Option<Origin>,
}

/// Where a record was written from, as the writing machine saw it: its own
/// clock beside the stamped time (which `--now` may set), and the
/// operating-system account and host that ran the command. The store only
/// carries these; the command line fills them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The machine's clock when the record was made.
    pub written_at: DateTime<Utc>,
    /// The operating-system account that ran the command.
    pub account: String,
    /// The host name of the machine that ran it.
    pub host: String,
}

/// One event handed to the log: its identity, its type and its opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique forever; appending an id already in the log is an idempotent retry.
    pub event_id: Uuid,
    /// The payload's type name, for readers that skip what they do not know.
    pub event_type: String,
    /// The payload's schema version, so old payloads can be upcast.
    pub schema_version: u16,
    /// The encoded event; the store never looks inside.
    pub payload: Vec<u8>,
}

/// One event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Global position: gapless, from 1.
    pub seq: u64,
    /// The event's unique id.
    pub event_id: Uuid,
    /// The stream (aggregate) the event belongs to.
    pub stream: String,
    /// Position within the stream: gapless, from 1.
    pub version: u64,
    /// When it happened.
    pub recorded_at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// Shared by the events of one command.
    pub correlation_id: Uuid,
    /// What caused it.
    pub causation: Causation,
    /// Where it was written from; `None` for records of format 1, which
    /// recorded none.
    pub origin: Option<Origin>,
    /// The payload's type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u16,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// The hash of the record before this one ([`GENESIS_HASH`] for seq 1).
    pub prev_hash: Hash,
    /// The hash of this record, chained to `prev_hash`.
    pub hash: Hash,
}

/// The hashed part of a stored record. Times are nanoseconds since the Unix
/// epoch: compact, and exact in both directions. Written through serde;
/// read by bincode's own decoder, which reads the same bytes (bincode
/// writes a struct as its fields in order either way) but takes a `[u8; N]`
/// whole where serde takes it a byte at a time, and borrows texts and bytes
/// from the stored record.
#[derive(Serialize, Deserialize, bincode::BorrowDecode)]
struct Body<'a> {
    seq: u64,
    event_id: [u8; 16],
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    version: u64,
    recorded_at_nanos: i64,
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
    correlation_id: [u8; 16],
    #[bincode(with_serde)]
    causation: std::borrow::Cow<'a, Causation>,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    schema_version: u16,
    #[serde(borrow, with = "serde_bytes_compat")]
    payload: std::borrow::Cow<'a, [u8]>,
    prev_hash: Hash,
}

/// The hashed part of a format 2 record: format 1's body, then the origin.
/// bincode writes a nested struct as its fields in order, so the first part
/// is byte for byte a format 1 body.
#[derive(Serialize, Deserialize, bincode::BorrowDecode)]
struct BodyV2<'a> {
    #[serde(borrow)]
    body: Body<'a>,
    written_at_nanos: i64,
    #[serde(borrow)]
    account: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    host: std::borrow::Cow<'a, str>,
}

/// Bytes as one length-prefixed run rather than a sequence of u8 values.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};
    use std::borrow::Cow;

    // serde's `with` hands us the field's own type.
    #[allow(clippy::ptr_arg)]
    pub fn serialize<S: Serializer>(v: &Cow<'_, [u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, [u8]>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cow<'de, [u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// What [`Record::peek`] reads of a stored record.
pub(crate) struct Peek<'a> {
    pub seq: u64,
    pub event_id: Uuid,
    pub stream: std::borrow::Cow<'a, str>,
    pub version: u64,
    pub nanos: i64,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// The origin as a format 2 body holds it.
struct StoredOrigin<'a> {
    written_at_nanos: i64,
    account: std::borrow::Cow<'a, str>,
    host: std::borrow::Cow<'a, str>,
}

/// Splits stored bytes into their decoded body, its origin (format 2) and
/// the stored hash.
#[allow(clippy::type_complexity)]
fn decode_body(bytes: &[u8]) -> Result<(Body<'_>, Option<StoredOrigin<'_>>, Hash), String> {
    let (&format, rest) = bytes.split_first().ok_or("empty record")?;
    if format != RECORD_FORMAT_V1 && format != RECORD_FORMAT_V2 {
        return Err(format!("unknown record format {format}"));
    }
    if rest.len() < 32 {
        return Err("record shorter than its hash".into());
    }
    let (body_bytes, hash) = rest.split_at(rest.len() - 32);
    decode_parts(format, body_bytes, hash)
}

/// A stored record's body and hash decoded, from its parts: the format
/// byte, the hashed body and the hash (as a server's row keeps them).
fn decode_parts<'a>(
    format: u8,
    body_bytes: &'a [u8],
    hash: &[u8],
) -> Result<(Body<'a>, Option<StoredOrigin<'a>>, Hash), String> {
    if format != RECORD_FORMAT_V1 && format != RECORD_FORMAT_V2 {
        return Err(format!("unknown record format {format}"));
    }
    let stored_hash: Hash = hash.try_into().map_err(|_| format!("a hash of {} bytes", hash.len()))?;
    let undecodable = |e: bincode::error::DecodeError| format!("undecodable record: {e}");
    let (body, origin, used) = if format == RECORD_FORMAT_V1 {
        let (body, used): (Body<'_>, usize) =
            bincode::borrow_decode_from_slice(body_bytes, config()).map_err(undecodable)?;
        (body, None, used)
    } else {
        let (v2, used): (BodyV2<'_>, usize) =
            bincode::borrow_decode_from_slice(body_bytes, config()).map_err(undecodable)?;
        let origin =
            StoredOrigin { written_at_nanos: v2.written_at_nanos, account: v2.account, host: v2.host };
        (v2.body, Some(origin), used)
    };
    if used != body_bytes.len() {
        return Err("trailing bytes after the record body".into());
    }
    Ok((body, origin, stored_hash))
}

/// The largest record body we read or write. A limit also keeps a corrupt
/// length prefix from asking for an impossible allocation.
const MAX_RECORD: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD>()
}

/// Nanoseconds since the epoch, or an error for times chrono cannot count so.
pub(crate) fn to_nanos(t: DateTime<Utc>) -> Result<i64, StoreError> {
    t.timestamp_nanos_opt().ok_or(StoreError::TimeOutOfRange(t))
}

pub(crate) fn from_nanos(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

/// An upper bound of a sealed record's size.
fn sealed_capacity(stream: &str, event: &NewEvent, meta: &Metadata) -> usize {
    let causation = match &meta.causation {
        Causation::Command { name } | Causation::Process { name, .. } => name.len(),
    };
    // The format byte, the fixed-size fields, the integers as varints at their
    // widest and the length prefixes take at most 155 bytes.
    // An origin adds its time (at most 10 bytes) and two strings with
    // their length prefixes (at most 9 bytes each).
    let origin = meta.origin.as_ref().map_or(0, |o| 28 + o.account.len() + o.host.len());
    160 + event.payload.len()
        + stream.len()
        + meta.actor.len()
        + event.event_type.len()
        + causation
        + origin
        + std::mem::size_of::<Hash>()
}

impl Record {
    /// The stored bytes of the record at `seq`, chained to `prev_hash`, and its hash.
    pub(crate) fn seal(
        seq: u64,
        stream: &str,
        version: u64,
        event: &NewEvent,
        meta: &Metadata,
        prev_hash: Hash,
    ) -> Result<(Hash, Vec<u8>), StoreError> {
        let body = Body {
            seq,
            event_id: *event.event_id.as_bytes(),
            stream: stream.into(),
            version,
            recorded_at_nanos: to_nanos(meta.recorded_at)?,
            actor: meta.actor.as_str().into(),
            correlation_id: *meta.correlation_id.as_bytes(),
            causation: std::borrow::Cow::Borrowed(&meta.causation),
            event_type: event.event_type.as_str().into(),
            schema_version: event.schema_version,
            payload: std::borrow::Cow::Borrowed(&event.payload),
            prev_hash,
        };
        // Room for everything, the hash included: growing the buffer mid-way
        // would copy the record once more.
        let mut bytes = Vec::with_capacity(sealed_capacity(stream, event, meta));
        let encoded = match &meta.origin {
            // Without an origin, the record is sealed as before: format 1.
            None => {
                bytes.push(RECORD_FORMAT_V1);
                bincode::serde::encode_into_std_write(&body, &mut bytes, config())
            }
            Some(origin) => {
                bytes.push(RECORD_FORMAT_V2);
                let v2 = BodyV2 {
                    body,
                    written_at_nanos: to_nanos(origin.written_at)?,
                    account: origin.account.as_str().into(),
                    host: origin.host.as_str().into(),
                };
                bincode::serde::encode_into_std_write(&v2, &mut bytes, config())
            }
        };
        encoded.map_err(|e| StoreError::Encode(e.to_string()))?;
        // bincode's limit binds decoding only: a record past it could be
        // written but never read back.
        if bytes.len() > MAX_RECORD {
            return Err(StoreError::Encode(format!(
                "a record of {} bytes (at most {MAX_RECORD} are stored)",
                bytes.len()
            )));
        }
        let hash: Hash = Sha256::digest(&bytes[1..]).into();
        bytes.extend_from_slice(&hash);
        Ok((hash, bytes))
    }

    /// Decodes stored bytes. `Ok` also for a record whose hash does not match
    /// its body: [`Record::hash_is_intact`] tells, so `verify` can name it.
    pub(crate) fn open(bytes: &[u8]) -> Result<Record, String> {
        decode_body(bytes).map(Record::of)
    }

    /// A record from its stored parts (format byte, body, hash), as a
    /// server's row holds them: no buffer of the three is built.
    pub(crate) fn from_parts(format: u8, body: &[u8], hash: &[u8]) -> Result<Record, String> {
        decode_parts(format, body, hash).map(Record::of)
    }

    fn of((body, origin, stored_hash): (Body<'_>, Option<StoredOrigin<'_>>, Hash)) -> Record {
        let origin = origin.map(|o| Origin {
            written_at: from_nanos(o.written_at_nanos),
            account: o.account.into_owned(),
            host: o.host.into_owned(),
        });
        Record {
            seq: body.seq,
            event_id: Uuid::from_bytes(body.event_id),
            stream: body.stream.into_owned(),
            version: body.version,
            recorded_at: from_nanos(body.recorded_at_nanos),
            actor: body.actor.into_owned(),
            correlation_id: Uuid::from_bytes(body.correlation_id),
            causation: body.causation.into_owned(),
            origin,
            event_type: body.event_type.into_owned(),
            schema_version: body.schema_version,
            payload: body.payload.into_owned(),
            prev_hash: body.prev_hash,
            hash: stored_hash,
        }
    }

    /// The fields the store's own bookkeeping needs, read without copying.
    pub(crate) fn peek(bytes: &[u8]) -> Result<Peek<'_>, String> {
        let (body, _, hash) = decode_body(bytes)?;
        Ok(Peek {
            seq: body.seq,
            event_id: Uuid::from_bytes(body.event_id),
            stream: body.stream,
            version: body.version,
            nanos: body.recorded_at_nanos,
            prev_hash: body.prev_hash,
            hash,
        })
    }

    /// Whether the stored hash is the hash of the stored body.
    pub(crate) fn hash_is_intact(bytes: &[u8]) -> bool {
        bytes.len() > 33 && {
            let (body, hash) = bytes[1..].split_at(bytes.len() - 33);
            Sha256::digest(body).as_slice() == hash
        }
    }
}

/// What every backend checks of an append before it gives it seqs: a
/// stream name it can store, event ids new to the call (`new_id` says
/// whether one is, and remembers it), and a time `at` not before the last
/// record's. Returns `at` in nanoseconds.
pub(crate) fn check_append(
    append: &crate::Append,
    at: DateTime<Utc>,
    last_nanos: i64,
    mut new_id: impl FnMut(Uuid) -> bool,
) -> crate::AppendResult<i64> {
    if append.stream.len() > usize::from(u16::MAX) {
        return Err(StoreError::Encode(format!(
            "a stream name of {} bytes (at most {} are stored)",
            append.stream.len(),
            u16::MAX
        )));
    }
    if let Some(event) = append.events.iter().find(|event| !new_id(event.event_id)) {
        return Ok(Err(crate::AppendRejection::PartialRetry { event_id: event.event_id }));
    }
    let nanos = to_nanos(at)?;
    if nanos < last_nanos {
        return Ok(Err(crate::AppendRejection::TimeWentBackwards {
            last: from_nanos(last_nanos),
            given: at,
        }));
    }
    Ok(Ok(nanos))
}

/// Seals an append's events as the records after `seq`, its stream at
/// `version` and the chain at `prev_hash`, handing each record's seq,
/// version, event id and stored bytes to `sink`. Returns where the append
/// landed, and the new seq and chain's hash: the log's and the stream's
/// positions advance one record at a time, in both stores alike.
pub(crate) fn seal_all(
    append: &crate::Append,
    meta: &Metadata,
    (mut seq, version, mut prev_hash): (u64, u64, Hash),
    mut sink: impl FnMut(u64, u64, Uuid, &[u8]),
) -> Result<(crate::Appended, u64, Hash), StoreError> {
    let first_seq = seq + 1;
    let mut stream_version = version;
    for event in &append.events {
        seq += 1;
        stream_version += 1;
        let (hash, bytes) = Record::seal(seq, &append.stream, stream_version, event, meta, prev_hash)?;
        sink(seq, stream_version, event.event_id, &bytes);
        prev_hash = hash;
    }
    let appended = crate::Appended { first_seq, last_seq: seq, stream_version, was_retry: false };
    Ok((appended, seq, prev_hash))
}

/// The checks of one record against the one before it: hash, place, chain, time.
pub(crate) fn check_record(
    bytes: &[u8],
    record: &Peek<'_>,
    seq: u64,
    prev_hash: Hash,
    prev_nanos: i64,
) -> Option<crate::Problem> {
    let what = if !Record::hash_is_intact(bytes) {
        "stored hash does not match its content (altered)".to_owned()
    } else if record.seq != seq {
        format!("stored as {seq} but says it is {} (removed, reordered or altered)", record.seq)
    } else if record.prev_hash != prev_hash {
        "does not chain to the record before it (removed or reordered)".to_owned()
    } else if record.nanos < prev_nanos {
        "is stamped earlier than the record before it".to_owned()
    } else {
        return None;
    };
    Some(crate::Problem { seq, what })
}

/// A record in the form the log stores it (`format byte ++ body ++
/// sha256(body)`), with what it decodes to: how records leave the log
/// byte for byte (an export) and come back into another one (a restore)
/// with the same hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    bytes: Vec<u8>,
    record: Record,
}

impl Sealed {
    /// Stored bytes as the log holds them; the stored hash is kept as it is,
    /// intact or not ([`Sealed::hash_is_intact`] tells).
    pub(crate) fn from_stored(bytes: Vec<u8>) -> Result<Sealed, String> {
        let record = Record::open(&bytes)?;
        Ok(Sealed { bytes, record })
    }

    /// The record whose hashed part is `hashed` (what an export's `bytes`
    /// carry), sealed as the log would store it, its hash computed here.
    /// The format byte is not hashed, so it is found from the body: a
    /// format 2 body is a format 1 body followed by the origin, so exactly
    /// one of the two reads it whole.
    pub fn from_hashed(hashed: &[u8]) -> Result<Sealed, String> {
        let hash = Sha256::digest(hashed);
        let mut first_error = None;
        for format in [RECORD_FORMAT_V1, RECORD_FORMAT_V2] {
            let mut bytes = Vec::with_capacity(hashed.len() + 33);
            bytes.push(format);
            bytes.extend_from_slice(hashed);
            bytes.extend_from_slice(&hash);
            match Record::open(&bytes) {
                Ok(record) => return Ok(Sealed { bytes, record }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_default())
    }

    /// The decoded record (its `hash` is the stored one).
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The decoded record, taken.
    pub fn into_record(self) -> Record {
        self.record
    }

    /// Exactly the bytes the record's hash covers: the encoded body.
    pub fn hashed(&self) -> &[u8] {
        &self.bytes[1..self.bytes.len() - 32]
    }

    /// Whether the stored hash is the hash of the stored body.
    pub fn hash_is_intact(&self) -> bool {
        Record::hash_is_intact(&self.bytes)
    }

    /// The bytes as stored: format byte, body, hash.
    pub(crate) fn stored(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: Vec<u8>) -> (NewEvent, Metadata) {
        let event = NewEvent {
            event_id: Uuid::from_u128(7),
            event_type: "UserCreated".into(),
            schema_version: 1,
            payload,
        };
        let meta = Metadata {
            recorded_at: DateTime::from_timestamp(1_700_000_000, 123).unwrap(),
            actor: "admin@contoso.onmicrosoft.com".into(),
            correlation_id: Uuid::from_u128(9),
            causation: Causation::Process { name: "sync".into(), trigger: Some(4) },
            origin: None,
        };
        (event, meta)
    }

    fn origin() -> Origin {
        Origin {
            written_at: DateTime::from_timestamp(1_700_000_060, 5).unwrap(),
            account: "alice".into(),
            host: "build-01.contoso.local".into(),
        }
    }

    proptest::proptest! {
        /// The reader (bincode's own decoder) reads exactly what the writer
        /// (serde) wrote, field for field, as serde itself reads it back, and
        /// refuses the same truncations.
        #[test]
        fn the_reader_reads_what_serde_wrote(
            seq in proptest::prelude::any::<u64>(),
            version in proptest::prelude::any::<u64>(),
            nanos in proptest::prelude::any::<i64>(),
            texts in proptest::collection::vec(".{0,300}", 4),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            trigger in proptest::option::of(proptest::prelude::any::<u64>()),
            ids in proptest::prelude::any::<(u128, u128, [u8; 32])>(),
            command in proptest::prelude::any::<bool>(),
            with_origin in proptest::prelude::any::<bool>(),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let (mut event, mut meta) = sample(payload);
            event.event_id = Uuid::from_u128(ids.0);
            event.event_type = texts[0].clone();
            event.schema_version = (seq % 65_536) as u16;
            meta.correlation_id = Uuid::from_u128(ids.1);
            meta.recorded_at = DateTime::from_timestamp_nanos(nanos);
            meta.actor = texts[1].clone();
            meta.causation = match command {
                true => Causation::Command { name: texts[2].clone() },
                false => Causation::Process { name: texts[2].clone(), trigger },
            };
            meta.origin = with_origin.then(|| Origin { account: texts[3].clone(), ..origin() });
            let (_, bytes) = Record::seal(seq, &texts[3], version, &event, &meta, ids.2).unwrap();
            let record = Record::open(&bytes).unwrap();
            let (format, body) = (bytes[0], &bytes[1..bytes.len() - 32]);
            let by_serde = match format {
                RECORD_FORMAT_V1 => {
                    let (b, used): (Body<'_>, usize) = bincode::serde::borrow_decode_from_slice(body, config()).unwrap();
                    proptest::prop_assert_eq!(used, body.len());
                    Record::of((b, None, record.hash))
                }
                _ => {
                    let (v2, used): (BodyV2<'_>, usize) = bincode::serde::borrow_decode_from_slice(body, config()).unwrap();
                    proptest::prop_assert_eq!(used, body.len());
                    let origin = StoredOrigin { written_at_nanos: v2.written_at_nanos, account: v2.account, host: v2.host };
                    Record::of((v2.body, Some(origin), record.hash))
                }
            };
            proptest::prop_assert_eq!(&record, &by_serde);
            proptest::prop_assert_eq!((record.seq, record.version, &record.stream), (seq, version, &texts[3]));
            proptest::prop_assert_eq!(&record.causation, &meta.causation);
            let short = &body[..cut.index(body.len())];
            proptest::prop_assert!(decode_parts(format, short, &record.hash).is_err());
        }
    }

    #[test]
    fn a_sealed_record_fits_the_buffer_sized_for_it_whatever_its_fields() {
        for payload in [0, 1, 300, 70_000] {
            let (mut event, mut meta) = sample(vec![7; payload]);
            event.event_type = "E".repeat(300);
            meta.causation = Causation::Process { name: "x".repeat(300), trigger: Some(u64::MAX) };
            meta.actor = "a".repeat(200);
            meta.recorded_at = DateTime::from_timestamp_nanos(i64::MIN);
            let stream = "s".repeat(500);
            for origin in [
                None,
                Some(Origin {
                    written_at: meta.recorded_at,
                    account: "u".repeat(300),
                    host: "h".repeat(70_000),
                }),
            ] {
                meta.origin = origin;
                let (_, bytes) = Record::seal(u64::MAX, &stream, u64::MAX, &event, &meta, [255; 32]).unwrap();
                let room = sealed_capacity(&stream, &event, &meta);
                assert!(bytes.len() <= room, "{} bytes sealed in a buffer of {room}", bytes.len());
                assert!(room - bytes.len() < 200, "no more than a little slack: {} of {room}", bytes.len());
            }
        }
    }

    #[test]
    fn a_record_past_the_cap_is_refused_at_sealing_not_lost_at_reading() {
        let (event, meta) = sample(vec![7; MAX_RECORD]);
        let err = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap_err();
        assert!(matches!(err, StoreError::Encode(ref m) if m.contains("at most")), "{err}");
        let (event, meta) = sample(vec![7; MAX_RECORD - 1024]);
        let (_, bytes) = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap();
        assert_eq!(Record::open(&bytes).unwrap().payload.len(), MAX_RECORD - 1024);
        // Sealed at exactly the cap (hash aside), it is still stored.
        let (event, meta) = sample(vec![7; MAX_RECORD - 1024 + MAX_RECORD - (bytes.len() - 32)]);
        let (_, bytes) = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap();
        assert_eq!(bytes.len() - 32, MAX_RECORD);
        assert_eq!(MAX_RECORD, 64 << 20, "records up to 64 MiB were written: a lower cap would lose them");
    }

    /// Issue 34 (the length checks of `decode_body` and `hash_is_intact`):
    /// bytes too short for a hash are refused as such, and a hash with no
    /// body is undecodable and not intact.
    #[test]
    fn a_record_shorter_than_its_hash_is_refused_as_such() {
        assert_eq!(Record::open(&[RECORD_FORMAT_V1; 10]).unwrap_err(), "record shorter than its hash");
        let bare_hash = [[RECORD_FORMAT_V1].as_slice(), &[0; 32]].concat();
        let refused = Record::open(&bare_hash).unwrap_err();
        assert!(refused.starts_with("undecodable record"), "{refused}");
        let empty_body_hashed = [[RECORD_FORMAT_V1].as_slice(), Sha256::digest(b"").as_slice()].concat();
        assert!(!Record::hash_is_intact(&empty_body_hashed), "no body, no intact record");
    }

    #[test]
    fn a_sealed_record_opens_to_itself() {
        let (event, meta) = sample(vec![1, 2, 3, 255]);
        let (hash, bytes) = Record::seal(5, "env/x", 2, &event, &meta, [3; 32]).unwrap();
        assert!(Record::hash_is_intact(&bytes));
        let record = Record {
            seq: 5,
            event_id: event.event_id,
            stream: "env/x".into(),
            version: 2,
            recorded_at: meta.recorded_at,
            actor: meta.actor,
            correlation_id: meta.correlation_id,
            causation: meta.causation,
            origin: None,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
            prev_hash: [3; 32],
            hash,
        };
        assert_eq!(bytes[0], RECORD_FORMAT_V1, "no origin: sealed as before");
        assert_eq!(Record::open(&bytes).unwrap(), record);
    }

    #[test]
    fn a_record_with_an_origin_is_format_2_and_opens_to_itself() {
        let (event, mut meta) = sample(vec![1, 2, 3, 255]);
        meta.origin = Some(origin());
        let (hash, bytes) = Record::seal(5, "env/x", 2, &event, &meta, [3; 32]).unwrap();
        assert_eq!(bytes[0], RECORD_FORMAT_V2);
        assert!(Record::hash_is_intact(&bytes));
        let opened = Record::open(&bytes).unwrap();
        assert_eq!(opened.origin, Some(origin()));
        assert_eq!((opened.seq, opened.hash, opened.prev_hash), (5, hash, [3; 32]));
        assert_eq!(opened.payload, event.payload);
        let peek = Record::peek(&bytes).unwrap();
        assert_eq!((peek.seq, peek.version, peek.hash), (5, 2, hash));
    }

    /// A format 1 record as sealed before format 2 existed, byte for byte:
    /// it must open, with no origin, and keep its hash (the chain covers
    /// these bytes, so they can never be rewritten).
    #[test]
    fn a_format_1_record_from_before_reads_and_verifies_as_it_did() {
        let (event, meta) = sample(b"payload".to_vec());
        let (_, sealed) = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap();
        let bytes = hex(FORMAT_1_RECORD);
        assert_eq!(sealed, bytes, "format 1 sealing still writes the same bytes");
        assert!(Record::hash_is_intact(&bytes));
        let record = Record::open(&bytes).unwrap();
        assert_eq!(record.origin, None, "none recorded");
        assert_eq!(record.actor, "admin@contoso.onmicrosoft.com");
        assert_eq!(record.payload, b"payload");
        assert_eq!(record.hash.as_slice(), &bytes[bytes.len() - 32..]);
    }

    /// The format byte sits outside the hash: changing it must still be
    /// caught, by the decoding.
    #[test]
    fn a_record_read_as_the_other_format_does_not_open() {
        let (event, mut meta) = sample(b"payload".to_vec());
        let (_, mut v1) = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap();
        meta.origin = Some(origin());
        let (_, mut v2) = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap();
        v1[0] = RECORD_FORMAT_V2;
        v2[0] = RECORD_FORMAT_V1;
        assert!(Record::open(&v1).is_err(), "a format 1 body read as format 2");
        assert!(Record::open(&v2).is_err(), "a format 2 body read as format 1");
        v2[0] = 3;
        assert!(Record::open(&v2).unwrap_err().contains("unknown record format 3"));
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// Sealed by the code before format 2 (at f26671e) from `sample(b"payload")`.
    const FORMAT_1_RECORD: &str = concat!(
        "0101000000000000000000000000000000070674656e616e7401fdf600546cfc",
        "392f2f1d61646d696e40636f6e746f736f2e6f6e6d6963726f736f66742e636f",
        "6d00000000000000000000000000000009010473796e6301040b557365724372",
        "656174656401077061796c6f6164000000000000000000000000000000000000",
        "00000000000000000000000000006a1f5903a3cf6a65486797769a371ad7027f",
        "ea3dac782ca100fa4c1d0534517a",
    );

    #[test]
    fn any_flipped_byte_breaks_the_hash_or_the_decoding() {
        for origin in [None, Some(origin())] {
            let (event, mut meta) = sample(b"payload".to_vec());
            meta.origin = origin;
            let (_, bytes) = Record::seal(1, "tenant", 1, &event, &meta, GENESIS_HASH).unwrap();
            let mut bad_hash = bytes.clone();
            *bad_hash.last_mut().unwrap() ^= 1;
            assert!(Sealed::from_stored(bytes.clone()).unwrap().hash_is_intact());
            assert!(
                !Sealed::from_stored(bad_hash).unwrap().hash_is_intact(),
                "it opens, and says its hash is broken"
            );
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x40;
                assert!(
                    !Record::hash_is_intact(&bad) || Record::open(&bad).is_err(),
                    "flipping byte {i} went unnoticed"
                );
            }
        }
    }

    /// Issue 34 (the byte fields' visitor): a value of another shape is
    /// refused, naming what was expected; lent bytes are copied.
    #[test]
    fn a_byte_field_of_another_shape_is_refused_naming_bytes() {
        use serde::de::value::{BytesDeserializer, Error, U32Deserializer};
        let refused = serde_bytes_compat::deserialize(U32Deserializer::<Error>::new(1)).unwrap_err();
        assert!(refused.to_string().ends_with("expected bytes"), "{refused}");
        // Bytes a decoder lends only for the call are copied.
        let copied = serde_bytes_compat::deserialize(BytesDeserializer::<Error>::new(b"ab")).unwrap();
        assert_eq!(copied, std::borrow::Cow::<[u8]>::Owned(b"ab".to_vec()));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Record::open(&bytes);
            let _ = Record::hash_is_intact(&bytes);
        }
    }
}
