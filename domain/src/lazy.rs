//! Maps of the directory's users and groups, each entry decoded from a
//! snapshot only when a command or a view first reaches it.
//!
//! A command reads the whole directory at the log's head, from its newest
//! snapshot, yet most commands look at a handful of users and groups:
//! decoding every one of 100k users took 150 ms of each `user create`, and
//! a 2,000-member group's sets were a third of a 2,000-user directory's
//! decoding (BENCHMARKS.md, target 4). A snapshot holds each entry as its
//! own encoding (`bincode`); loading one copies those bytes into one buffer
//! and keeps, per entry, where its bytes lie. [`Lazy::get`] decodes an entry
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

/// Appends the bytes of one entry to the buffer being filled and says where
/// they went.
struct Append<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = Range<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Range<usize>, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for Append<'_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry's encoding")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Range<usize>, E> {
        let start = self.0.len();
        self.0.extend_from_slice(bytes);
        Ok(start..self.0.len())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Range<usize>, E> {
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
                // Room for all of them at once: regrown, a 100k-user buffer
                // was copied five times over, each time into pages the
                // kernel had to hand out. Untouched room costs nothing.
                let mut bytes =
                    Vec::with_capacity(count.saturating_mul(V::BYTES_HINT).min(MAX_RESERVE_BYTES));
                let mut slots = Vec::with_capacity(count.min(MAX_RESERVE));
                while let Some(id) = access.next_key::<Uuid>()? {
                    let at = access.next_value_seed(Append(&mut bytes))?;
                    slots.push((id, Slot { at: Some(at), value: OnceLock::new() }));
                }
                // Written in id order, so built without a search from the
                // root per entry; bytes we did not write come out as
                // inserting them would have left them (the last of an id kept).
                Ok(Lazy { bytes: Arc::new(bytes), slots: slots.into_iter().collect() })
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
