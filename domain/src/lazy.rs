//! Maps of the directory's users and groups, each entry decoded from a
//! snapshot only when a command or a view first reaches it.
//!
//! A command reads the whole directory at the log's head, from its newest
//! snapshot, yet most commands look at a handful of users and groups:
//! decoding every one of 100k users took 150 ms of each `user create`, and
//! a 2,000-member group's sets were a third of a 2,000-user directory's
//! decoding (BENCHMARKS.md, target 4). A snapshot holds each entry as its
//! own encoding (`bincode`); loading one keeps the snapshot's buffer
//! ([`decode_in_place`]) and, per entry, where its bytes lie in it. [`Lazy::get`] decodes an entry
//! once, on first use, and keeps it; [`Lazy::get_mut`] also forgets the
//! bytes, since they no longer say what the entry is. Saving writes the
//! bytes kept as they are and encodes the others.
//!
//! The bytes a snapshot hands over have passed its checksum and were written
//! by this encoding (the snapshot frame, `projections::fold`, says which):
//! an entry that then fails to decode, or leaves bytes unread, is a bug, not
//! bad input, and panics with its id. The bug to fear is a change to an
//! entry's fields without a new frame tag: a test pins the encoding
//! (`projections::fold`, `a_user_encodes_as_the_frame_tag_says`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::ser::{self, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::bulk::MAX_RESERVE;

/// What a [`Lazy`] map holds: an entry that a snapshot stores as its own encoding.
pub trait Entry: Serialize + DeserializeOwned {
    /// What the entry is, in a panic's message (`user`).
    const KIND: &'static str;
    /// About what one entry's encoding takes, erring high: the room a
    /// snapshot's count reserves at once.
    const BYTES_HINT: usize;
}

/// The most bytes a length prefix may reserve room for.
const MAX_RESERVE_BYTES: usize = 256 << 20;

thread_local! {
    /// The buffer [`decode_in_place`] is decoding, which [`Lazy`] maps keep
    /// rather than copy the entries' bytes out of it.
    static BACKING: RefCell<Option<Arc<Vec<u8>>>> = const { RefCell::new(None) };
}

/// Runs `decode` over `bytes`, letting each [`Lazy`] map it decodes keep
/// `bytes` itself instead of a copy of its entries' part: a 100k-user
/// directory's 33 MB are then neither copied nor held twice.
pub fn decode_in_place<T>(bytes: Arc<Vec<u8>>, decode: impl FnOnce(&[u8]) -> T) -> T {
    let outer = BACKING.replace(Some(Arc::clone(&bytes)));
    let decoded = decode(&bytes);
    BACKING.set(outer);
    decoded
}

/// Where `part` lies in `whole`, if it lies there.
fn range_in(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The encoding of one entry inside a snapshot.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

/// Entries by object id, each decoded when first reached.
#[derive(Clone)]
pub struct Lazy<V> {
    /// The encoded entries of the snapshot this was loaded from.
    bytes: Arc<Vec<u8>>,
    slots: BTreeMap<Uuid, Slot<V>>,
}

/// One entry: decoded, or where its bytes lie, or both.
#[derive(Clone)]
struct Slot<V> {
    /// Its encoding in [`Lazy::bytes`], while that still says what it is.
    at: Option<Range<usize>>,
    value: OnceLock<Box<V>>,
}

impl<V: Entry> Slot<V> {
    fn decoded(value: Box<V>) -> Slot<V> {
        Slot { at: None, value: OnceLock::from(value) }
    }

    fn get(&self, id: &Uuid, bytes: &[u8]) -> &V {
        self.value.get_or_init(|| {
            let encoded = &bytes[self.at.clone().unwrap_or_default()];
            let kind = V::KIND;
            match bincode::serde::decode_from_slice::<V, _>(encoded, config()) {
                Ok((value, read)) if read == encoded.len() => Box::new(value),
                Ok((_, read)) => panic!(
                    "{kind} {id} of a checked directory snapshot leaves {} of its {} bytes unread: \
                     a change to its encoding needs a new snapshot frame tag",
                    encoded.len() - read,
                    encoded.len()
                ),
                Err(e) => panic!("{kind} {id} of a checked directory snapshot does not decode: {e}"),
            }
        })
    }

    fn get_mut(&mut self, id: &Uuid, bytes: &[u8]) -> &mut V {
        self.get(id, bytes);
        self.at = None;
        self.value.get_mut().expect("decoded just above")
    }

    fn into_value(self, id: &Uuid, bytes: &[u8]) -> Box<V> {
        self.get(id, bytes);
        self.value.into_inner().expect("decoded just above")
    }
}

impl<V> Default for Lazy<V> {
    fn default() -> Lazy<V> {
        Lazy { bytes: Arc::default(), slots: BTreeMap::new() }
    }
}

impl<V: Entry> Lazy<V> {
    /// How many entries (purged users included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The entry with this object id.
    pub fn get(&self, id: &Uuid) -> Option<&V> {
        self.slots.get(id).map(|slot| slot.get(id, &self.bytes))
    }

    /// The entry with this object id, to change.
    pub fn get_mut(&mut self, id: &Uuid) -> Option<&mut V> {
        let bytes = &self.bytes;
        self.slots.get_mut(id).map(|slot| slot.get_mut(id, bytes))
    }

    /// Adds an entry, or replaces the one with its id and returns it.
    pub fn insert(&mut self, id: Uuid, value: Box<V>) -> Option<Box<V>> {
        let replaced = self.slots.insert(id, Slot::decoded(value))?;
        Some(replaced.into_value(&id, &self.bytes))
    }

    /// Every entry with its id, in id order (decoding those not decoded yet).
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &V)> {
        self.slots.iter().map(|(id, slot)| (id, slot.get(id, &self.bytes)))
    }

    /// Every entry, in id order (decoding those not decoded yet).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    /// Whether the entries' bytes are those of `buffer` itself, not a copy.
    #[cfg(test)]
    pub(crate) fn points_into(&self, buffer: &Arc<Vec<u8>>) -> bool {
        Arc::ptr_eq(&self.bytes, buffer)
    }

    /// How many entries are decoded so far.
    #[cfg(test)]
    pub(crate) fn decoded(&self) -> usize {
        self.slots.values().filter(|slot| slot.value.get().is_some()).count()
    }
}

impl<V: Entry> std::ops::Index<&Uuid> for Lazy<V> {
    type Output = V;

    /// The entry with this object id; panics if there is none, as a map does.
    fn index(&self, id: &Uuid) -> &V {
        self.get(id).unwrap_or_else(|| panic!("no {} {id}", V::KIND))
    }
}

impl<V: Entry> FromIterator<(Uuid, Box<V>)> for Lazy<V> {
    fn from_iter<I: IntoIterator<Item = (Uuid, Box<V>)>>(entries: I) -> Lazy<V> {
        let slots = entries.into_iter().map(|(id, value)| (id, Slot::decoded(value))).collect();
        Lazy { bytes: Arc::default(), slots }
    }
}

impl<V: Entry + PartialEq> PartialEq for Lazy<V> {
    fn eq(&self, other: &Lazy<V>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<V: Entry + Eq> Eq for Lazy<V> {}

impl<V: Entry + fmt::Debug> fmt::Debug for Lazy<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Bytes, serialized as bytes (serde would write a `&[u8]` as a sequence).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<V: Entry> Serialize for Lazy<V> {
    /// A map of object id to the entry's own encoding.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.slots.len()))?;
        let mut scratch = Vec::new();
        for (id, slot) in &self.slots {
            map.serialize_key(id)?;
            match (&slot.at, slot.value.get()) {
                (Some(at), _) => map.serialize_value(&Bytes(&self.bytes[at.clone()]))?,
                (None, Some(value)) => {
                    scratch.clear();
                    bincode::serde::encode_into_std_write(value, &mut scratch, config())
                        .map_err(ser::Error::custom)?;
                    map.serialize_value(&Bytes(&scratch))?;
                }
                (None, None) => {
                    return Err(ser::Error::custom(format!("{} {id} has neither bytes nor a value", V::KIND)))
                }
            }
        }
        map.end()
    }
}

/// Where one entry's bytes went: left in the buffer being decoded, or
/// appended to a buffer of the map's own.
enum At {
    InPlace(Range<usize>),
    Copied(Range<usize>),
}

/// Reads one entry's bytes: where they lie in `backing` when the decoder
/// lends them from it, else copied to the end of `own`.
struct Append<'b> {
    backing: Option<&'b [u8]>,
    own: &'b mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = At;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<At, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for Append<'_> {
    type Value = At;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry's encoding")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<At, E> {
        match self.backing.and_then(|backing| range_in(backing, bytes)) {
            Some(at) => Ok(At::InPlace(at)),
            None => self.visit_bytes(bytes),
        }
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<At, E> {
        let start = self.own.len();
        self.own.extend_from_slice(bytes);
        Ok(At::Copied(start..self.own.len()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<At, E> {
        self.visit_bytes(&bytes)
    }
}

impl<'de, V: Entry> Deserialize<'de> for Lazy<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Lazy<V>, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);
        impl<'de, V: Entry> Visitor<'de> for Entries<V> {
            type Value = Lazy<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a map of {}s", V::KIND)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Lazy<V>, A::Error> {
                let count = access.size_hint().unwrap_or(0);
                let backing = BACKING.with_borrow(Clone::clone);
                // Without a buffer to point into, room for all the copies at
                // once: regrown, a 100k-user buffer was copied five times over.
                let room = if backing.is_some() { 0 } else { count.saturating_mul(V::BYTES_HINT) };
                let mut own = Vec::with_capacity(room.min(MAX_RESERVE_BYTES));
                let mut slots = Vec::with_capacity(count.min(MAX_RESERVE));
                while let Some(id) = access.next_key::<Uuid>()? {
                    let append = Append { backing: backing.as_deref().map(Vec::as_slice), own: &mut own };
                    slots.push((id, access.next_value_seed(append)?));
                }
                let bytes = match backing {
                    Some(backing)
                        if !slots.is_empty() && slots.iter().all(|(_, at)| matches!(at, At::InPlace(_))) =>
                    {
                        backing
                    }
                    // Some were copied: the others join them, so one buffer holds all.
                    backing => {
                        let backing = backing.as_deref().map_or(&[][..], Vec::as_slice);
                        for (_, at) in &mut slots {
                            if let At::InPlace(range) = at {
                                let start = own.len();
                                own.extend_from_slice(&backing[range.clone()]);
                                *at = At::Copied(start..own.len());
                            }
                        }
                        Arc::new(own)
                    }
                };
                // Written in id order, so built without a search from the
                // root per entry; bytes we did not write come out as
                // inserting them would have left them (the last of an id kept).
                let slots = slots.into_iter().map(|(id, At::InPlace(at) | At::Copied(at))| {
                    (id, Slot { at: Some(at), value: OnceLock::new() })
                });
                Ok(Lazy { bytes, slots: slots.collect() })
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde::de::value::{Error, MapDeserializer, U32Deserializer};

    use super::*;
    use crate::tenant::Users;

    /// Issue 34 (the decoders' `expecting`): input of another shape is
    /// refused, naming what was expected.
    #[test]
    fn users_of_another_shape_are_refused_naming_what_was_expected() {
        let not_a_map = Users::deserialize(U32Deserializer::<Error>::new(1)).unwrap_err();
        assert!(not_a_map.to_string().ends_with("expected a map of users"), "{not_a_map}");
        let entries = MapDeserializer::<_, Error>::new([(Uuid::nil().to_string(), 1u32)].into_iter());
        let not_bytes = Users::deserialize(entries).unwrap_err();
        assert!(not_bytes.to_string().ends_with("expected an entry's encoding"), "{not_bytes}");
    }
}
