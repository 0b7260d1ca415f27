//! Reading a large map or set the way it was written: in key order, built
//! in one pass.
//!
//! serde builds a `BTreeMap` by inserting each entry, a search from the root
//! every time. A directory's snapshot holds thousands of UPNs and group
//! members, always written in key order (a B-tree serializes in order), and
//! `BTreeMap::from_iter` builds from sorted entries without a search. Entries
//! out of order or repeated (bytes we did not write) come out as inserting
//! them would have left them: sorted, the last of a repeated key kept.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The most entries a length prefix may reserve room for: damaged bytes
/// must not size an allocation.
pub(crate) const MAX_RESERVE: usize = 1 << 16;

/// Deserializes a `BTreeMap` from a map, built from its entries at once.
pub fn map<'de, D, K, V>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    struct Entries<K, V>(PhantomData<(K, V)>);
    impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(MAX_RESERVE));
            while let Some(entry) = access.next_entry()? {
                entries.push(entry);
            }
            // A stable sort (none is needed for what we wrote) keeps the last
            // of a repeated key last, and `from_iter` keeps the last.
            Ok(entries.into_iter().collect())
        }
    }
    deserializer.deserialize_map(Entries(PhantomData))
}

/// Deserializes a `BTreeSet` from a sequence, built from its items at once
/// (serde's `Vec` reserves cautiously for a damaged length).
pub fn set<'de, D, T>(deserializer: D) -> Result<BTreeSet<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord,
{
    Ok(Vec::<T>::deserialize(deserializer)?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Bulk {
        #[serde(deserialize_with = "map")]
        map: BTreeMap<String, u64>,
        #[serde(deserialize_with = "set")]
        set: BTreeSet<u16>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        map: BTreeMap<String, u64>,
        set: BTreeSet<u16>,
    }

    /// The same shape written from vectors, in any order and with repeats:
    /// bytes a B-tree never writes, which bincode lays out as it lays out maps.
    #[derive(Serialize)]
    struct Raw {
        map: Vec<(String, u64)>,
        set: Vec<u16>,
    }

    fn bytes(value: &impl Serialize) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).unwrap().0
    }

    proptest! {
        /// Whatever the order and repeats of the entries, built at once they
        /// make what serde's entry-by-entry inserts make.
        #[test]
        fn built_at_once_is_what_inserting_each_entry_builds(
            map in prop::collection::vec(("[a-d]{0,2}", any::<u64>()), 0..60),
            set in prop::collection::vec(0..40_u16, 0..60),
        ) {
            let raw = bytes(&Raw { map, set });
            let bulk: Bulk = decode(&raw);
            let plain: Plain = decode(&raw);
            prop_assert_eq!(&bulk.map, &plain.map);
            prop_assert_eq!(&bulk.set, &plain.set);
            // And what it builds writes the same bytes back.
            prop_assert_eq!(bytes(&bulk), bytes(&plain));
        }
    }

    #[test]
    fn a_length_prefix_from_damaged_bytes_reserves_no_more_than_the_cap() {
        // A map claiming 2^40 entries, then nothing: an error, not an
        // allocation of that size.
        let mut damaged = bytes(&Raw { map: Vec::new(), set: Vec::new() });
        damaged[0] = 0xfd; // bincode's varint tag for a u64 follows
        damaged.splice(1..1, (1_u64 << 40).to_le_bytes());
        let result: Result<(Bulk, usize), _> =
            bincode::serde::decode_from_slice(&damaged, bincode::config::standard());
        assert!(result.is_err());
    }
}
