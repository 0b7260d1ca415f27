//! The directory's users, each decoded from a snapshot only when a command
//! or a view first reaches it.
//!
//! A command reads the whole directory at the log's head, from its newest
//! snapshot, yet most commands look at a handful of users: decoding every
//! one of 100k took 150 ms of each `user create` (BENCHMARKS.md, target 4).
//! A snapshot holds each user as its own encoding (`bincode` of [`User`]);
//! loading one copies those bytes into one buffer and keeps, per user, where
//! its bytes lie. [`Users::get`] decodes a user once, on first use, and
//! keeps it; [`Users::get_mut`] also forgets the bytes, since they no longer
//! say what the user is. Saving writes the bytes kept as they are and
//! encodes the others.
//!
//! The bytes a snapshot hands over have passed its checksum and were written
//! by this encoding (the snapshot frame, `projections::fold`, says which):
//! a user that then fails to decode, or leaves bytes unread, is a bug, not
//! bad input, and panics with its id. The bug to fear is a change to
//! [`User`]'s fields without a new frame tag: a test pins the encoding
//! (`projections::fold`, `a_user_encodes_as_the_frame_tag_says`).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::ser::{self, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::bulk::MAX_RESERVE;
use crate::tenant::User;

/// About what a user's encoding takes, erring high (a directory of 100k
/// imported users encodes to 327 bytes a user).
const BYTES_PER_USER: usize = 400;
/// The most bytes a length prefix may reserve room for.
const MAX_RESERVE_BYTES: usize = 256 << 20;

/// The encoding of one user inside a snapshot.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

/// Every user of the directory, by object id.
#[derive(Clone, Default)]
pub struct Users {
    /// The encoded users of the snapshot this was loaded from.
    bytes: Arc<Vec<u8>>,
    slots: BTreeMap<Uuid, Slot>,
}

/// One user: decoded, or where its bytes lie, or both.
#[derive(Clone)]
struct Slot {
    /// Its encoding in [`Users::bytes`], while that still says what it is.
    at: Option<Range<usize>>,
    user: OnceLock<Box<User>>,
}

impl Slot {
    fn decoded(user: Box<User>) -> Slot {
        Slot { at: None, user: OnceLock::from(user) }
    }

    fn user(&self, id: &Uuid, bytes: &[u8]) -> &User {
        self.user.get_or_init(|| {
            let encoded = &bytes[self.at.clone().unwrap_or_default()];
            match bincode::serde::decode_from_slice::<User, _>(encoded, config()) {
                Ok((user, read)) if read == encoded.len() => Box::new(user),
                Ok((_, read)) => panic!(
                    "user {id} of a checked directory snapshot leaves {} of its {} bytes unread: \
                     a change to User's encoding needs a new snapshot frame tag",
                    encoded.len() - read,
                    encoded.len()
                ),
                Err(e) => panic!("user {id} of a checked directory snapshot does not decode: {e}"),
            }
        })
    }

    fn user_mut(&mut self, id: &Uuid, bytes: &[u8]) -> &mut User {
        self.user(id, bytes);
        self.at = None;
        self.user.get_mut().expect("decoded just above")
    }

    fn into_user(self, id: &Uuid, bytes: &[u8]) -> Box<User> {
        self.user(id, bytes);
        self.user.into_inner().expect("decoded just above")
    }
}

impl Users {
    /// How many users, purged ones included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The user with this object id.
    pub fn get(&self, id: &Uuid) -> Option<&User> {
        self.slots.get(id).map(|slot| slot.user(id, &self.bytes))
    }

    /// The user with this object id, to change.
    pub fn get_mut(&mut self, id: &Uuid) -> Option<&mut User> {
        let bytes = &self.bytes;
        self.slots.get_mut(id).map(|slot| slot.user_mut(id, bytes))
    }

    /// Adds a user, or replaces the one with its id and returns it.
    pub fn insert(&mut self, id: Uuid, user: Box<User>) -> Option<Box<User>> {
        let replaced = self.slots.insert(id, Slot::decoded(user))?;
        Some(replaced.into_user(&id, &self.bytes))
    }

    /// Every user with its id, in id order (decoding those not decoded yet).
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &User)> {
        self.slots.iter().map(|(id, slot)| (id, slot.user(id, &self.bytes)))
    }

    /// Every user, in id order (decoding those not decoded yet).
    pub fn values(&self) -> impl Iterator<Item = &User> {
        self.iter().map(|(_, user)| user)
    }

    /// How many users are decoded so far.
    #[cfg(test)]
    pub(crate) fn decoded(&self) -> usize {
        self.slots.values().filter(|slot| slot.user.get().is_some()).count()
    }
}

impl std::ops::Index<&Uuid> for Users {
    type Output = User;

    /// The user with this object id; panics if there is none, as a map does.
    fn index(&self, id: &Uuid) -> &User {
        self.get(id).unwrap_or_else(|| panic!("no user {id}"))
    }
}

impl FromIterator<(Uuid, Box<User>)> for Users {
    fn from_iter<I: IntoIterator<Item = (Uuid, Box<User>)>>(users: I) -> Users {
        let slots = users.into_iter().map(|(id, user)| (id, Slot::decoded(user))).collect();
        Users { bytes: Arc::default(), slots }
    }
}

impl PartialEq for Users {
    fn eq(&self, other: &Users) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Users {}

impl fmt::Debug for Users {
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

impl Serialize for Users {
    /// A map of object id to the user's own encoding.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.slots.len()))?;
        let mut scratch = Vec::new();
        for (id, slot) in &self.slots {
            map.serialize_key(id)?;
            match (&slot.at, slot.user.get()) {
                (Some(at), _) => map.serialize_value(&Bytes(&self.bytes[at.clone()]))?,
                (None, Some(user)) => {
                    scratch.clear();
                    bincode::serde::encode_into_std_write(user, &mut scratch, config())
                        .map_err(ser::Error::custom)?;
                    map.serialize_value(&Bytes(&scratch))?;
                }
                (None, None) => {
                    return Err(ser::Error::custom(format!("user {id} has neither bytes nor a value")))
                }
            }
        }
        map.end()
    }
}

/// Appends the bytes of one user to the buffer being filled and says where
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
        f.write_str("a user's encoding")
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

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Users, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Users;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of users")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Users, A::Error> {
                let count = access.size_hint().unwrap_or(0);
                // Room for all of them at once: regrown, a 100k-user buffer
                // was copied five times over, each time into pages the
                // kernel had to hand out. Untouched room costs nothing.
                let mut bytes =
                    Vec::with_capacity(count.saturating_mul(BYTES_PER_USER).min(MAX_RESERVE_BYTES));
                let mut slots = Vec::with_capacity(count.min(MAX_RESERVE));
                while let Some(id) = access.next_key::<Uuid>()? {
                    let at = access.next_value_seed(Append(&mut bytes))?;
                    slots.push((id, Slot { at: Some(at), user: OnceLock::new() }));
                }
                // Written in id order, so built without a search from the
                // root per user; bytes we did not write come out as
                // inserting them would have left them (the last of an id kept).
                Ok(Users { bytes: Arc::new(bytes), slots: slots.into_iter().collect() })
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::value::{Error, MapDeserializer, U32Deserializer};

    use super::*;

    /// Issue 34 (the decoders' `expecting`): input of another shape is
    /// refused, naming what was expected.
    #[test]
    fn users_of_another_shape_are_refused_naming_what_was_expected() {
        let not_a_map = Users::deserialize(U32Deserializer::<Error>::new(1)).unwrap_err();
        assert!(not_a_map.to_string().ends_with("expected a map of users"), "{not_a_map}");
        let entries = MapDeserializer::<_, Error>::new([(Uuid::nil().to_string(), 1u32)].into_iter());
        let not_bytes = Users::deserialize(entries).unwrap_err();
        assert!(not_bytes.to_string().ends_with("expected a user's encoding"), "{not_bytes}");
    }
}
