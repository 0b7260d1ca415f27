//! The directory's maps, kept in parts that a command loads only when it
//! reaches them.
//!
//! A command at the head touches a handful of users, yet a directory of
//! 300k users is some 100 MB of snapshot: read, authenticated and decoded
//! whole, it cost a `user update` ten times what the same command costs on
//! 2k users (BENCHMARKS.md, target 8g). A snapshot therefore keeps each
//! map's entries in parts by a hash of the key, apart from its head, each
//! part checked on its own (`store`'s parted snapshots); loading the head
//! leaves every part *absent*.
//!
//! Reaching an entry of an absent part records a *miss* and answers as if
//! there were no such entry. Whatever was computed while a miss was recorded
//! is void: the caller loads the missed parts and computes again from the
//! start ([`Parted::take_misses`]; `projections::fold` and the shell do, so
//! that a decision never rests on a part not read). Iterating a map with an
//! absent part misses them all. The domain stays pure: it never reads a
//! part, it only says which it lacked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A key a [`Parted`] map spreads over its parts.
pub trait PartKey: Ord + Clone + Serialize + DeserializeOwned {
    /// The bytes the part is chosen by.
    fn part_bytes(&self) -> &[u8];
}

impl PartKey for Uuid {
    fn part_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartKey for String {
    fn part_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// The part of `parts` that holds `key`: FNV-1a, which no build or platform
/// changes, since the parts it chose are stored.
fn part_of(key: &impl PartKey, parts: u32) -> u32 {
    let hash = key.part_bytes().iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(parts.max(1))) as u32
}

/// One part as a snapshot stores it: encoded anew, or left as the
/// snapshot it was loaded from holds it (the part at that index there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The part's entries, encoded.
    Encoded(Vec<u8>),
    /// Unread and unchanged since it was loaded: the source snapshot's part.
    Kept(u32),
}

/// Why a part's bytes were not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("part {part} of the {what}: {why}")]
pub struct PartError {
    /// The map's name (`users`).
    pub what: &'static str,
    /// The part's index.
    pub part: u32,
    /// What is wrong.
    pub why: String,
}

/// A map whose entries a snapshot keeps in parts of about `PER_PART`
/// entries each; loaded from one, each part is absent until it is filled.
pub struct Parted<K, V, const PER_PART: usize> {
    /// The entries of the parts present.
    entries: BTreeMap<K, V>,
    /// How many entries there are, absent parts' included.
    len: usize,
    /// How many parts the snapshot it was loaded from had (0: not loaded from one).
    source_parts: u32,
    /// The parts not read yet.
    absent: BTreeSet<u32>,
    /// Absent parts reached since the last [`Parted::take_misses`].
    misses: Mutex<BTreeSet<u32>>,
}

impl<K: PartKey, V, const PER_PART: usize> Parted<K, V, PER_PART> {
    /// How many entries (those of absent parts too).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key`'s part is present; an absent one is recorded as missed.
    fn reach(&self, key: &K) -> bool {
        if self.absent.is_empty() {
            return true;
        }
        let part = part_of(key, self.source_parts);
        let present = !self.absent.contains(&part);
        if !present {
            self.misses.lock().unwrap_or_else(|p| p.into_inner()).insert(part);
        }
        present
    }

    /// Records every absent part as missed: a walk over all entries needs them all.
    fn reach_all(&self) {
        if !self.absent.is_empty() {
            self.misses.lock().unwrap_or_else(|p| p.into_inner()).extend(self.absent.iter().copied());
        }
    }

    /// The entry with this key.
    pub fn get(&self, key: &K) -> Option<&V> {
        if self.reach(key) {
            self.entries.get(key)
        } else {
            None
        }
    }

    /// The entry with this key, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.reach(key) {
            self.entries.get_mut(key)
        } else {
            None
        }
    }

    /// Adds an entry, or replaces the one with its key and returns it. Into
    /// an absent part, it is a miss, and nothing changes.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if !self.reach(&key) {
            return None;
        }
        let replaced = self.entries.insert(key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Every entry with its key, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.reach_all();
        self.entries.iter()
    }

    /// Every entry, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    /// Whether every part is present.
    pub fn is_whole(&self) -> bool {
        self.absent.is_empty()
    }

    /// How many parts the snapshot it was loaded from had (0: none).
    pub fn source_parts(&self) -> u32 {
        self.source_parts
    }

    /// Takes the layout a snapshot of it now has as its source's: once saved,
    /// the new snapshot is where its absent parts are read.
    pub fn saved(&mut self) {
        self.source_parts = self.layout();
    }

    /// The absent parts.
    pub fn absent(&self) -> impl Iterator<Item = u32> + '_ {
        self.absent.iter().copied()
    }

    /// The absent parts reached since the last call, forgotten as they are
    /// returned: a result computed meanwhile is void.
    pub fn take_misses(&self) -> BTreeSet<u32> {
        std::mem::take(&mut *self.misses.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How many parts a snapshot of this map has: a map with absent parts
    /// keeps its source's, so that they are kept as they are; a whole one
    /// gets about `PER_PART` entries a part.
    fn layout(&self) -> u32 {
        if self.absent.is_empty() {
            u32::try_from(self.len.div_ceil(PER_PART).max(1)).unwrap_or(u32::MAX)
        } else {
            self.source_parts
        }
    }
}

impl<K: PartKey, V: Serialize + DeserializeOwned, const PER_PART: usize> Parted<K, V, PER_PART> {
    /// The parts a snapshot stores, in order: absent ones kept, the others encoded.
    pub fn parts(&self) -> Result<Vec<Part>, String> {
        let layout = self.layout();
        let mut grouped: Vec<Vec<(&K, &V)>> = (0..layout).map(|_| Vec::new()).collect();
        for (key, value) in &self.entries {
            grouped[part_of(key, layout) as usize].push((key, value));
        }
        (0..layout)
            .zip(grouped)
            .map(|(part, entries)| {
                if self.absent.contains(&part) {
                    return Ok(Part::Kept(part));
                }
                bincode::serde::encode_to_vec(&entries, bincode::config::standard())
                    .map(Part::Encoded)
                    .map_err(|e| format!("cannot encode part {part}: {e}"))
            })
            .collect()
    }

    /// Reads an absent part from the bytes [`Parted::parts`] encoded.
    pub fn fill(&mut self, what: &'static str, part: u32, bytes: &[u8]) -> Result<(), PartError> {
        let error = |why: String| PartError { what, part, why };
        if !self.absent.contains(&part) {
            return Err(error("is not absent".into()));
        }
        let config = bincode::config::standard().with_limit::<{ 1 << 30 }>();
        let entries: Vec<(K, V)> = match bincode::serde::decode_from_slice(bytes, config) {
            Ok((entries, read)) if read == bytes.len() => entries,
            Ok(_) => return Err(error("has bytes left over".into())),
            Err(e) => return Err(error(format!("does not decode: {e}"))),
        };
        if entries.iter().any(|(key, _)| part_of(key, self.source_parts) != part) {
            return Err(error("holds a key of another part".into()));
        }
        self.entries.extend(entries);
        self.absent.remove(&part);
        if self.absent.is_empty() && self.entries.len() != self.len {
            return Err(error(format!(
                "leaves {} entries where the head counts {}",
                self.entries.len(),
                self.len
            )));
        }
        Ok(())
    }
}

impl<K, V, const PER_PART: usize> Default for Parted<K, V, PER_PART> {
    fn default() -> Self {
        Parted {
            entries: BTreeMap::new(),
            len: 0,
            source_parts: 0,
            absent: BTreeSet::new(),
            misses: Mutex::default(),
        }
    }
}

impl<K: Clone, V: Clone, const PER_PART: usize> Clone for Parted<K, V, PER_PART> {
    fn clone(&self) -> Self {
        Parted {
            entries: self.entries.clone(),
            len: self.len,
            source_parts: self.source_parts,
            absent: self.absent.clone(),
            misses: Mutex::new(self.misses.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        }
    }
}

impl<K: PartKey, V, const PER_PART: usize> std::ops::Index<&K> for Parted<K, V, PER_PART> {
    type Output = V;

    /// The entry with this key; panics if there is none, as a map does.
    fn index(&self, key: &K) -> &V {
        self.get(key).unwrap_or_else(|| panic!("no entry for this key"))
    }
}

impl<K: PartKey, V, const PER_PART: usize> FromIterator<(K, V)> for Parted<K, V, PER_PART> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let entries: BTreeMap<K, V> = entries.into_iter().collect();
        Parted { len: entries.len(), entries, ..Parted::default() }
    }
}

impl<K: PartialEq, V: PartialEq, const PER_PART: usize> PartialEq for Parted<K, V, PER_PART> {
    /// The same entries (and count): meaningful between whole maps.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.absent == other.absent && self.entries == other.entries
    }
}

impl<K: Eq, V: Eq, const PER_PART: usize> Eq for Parted<K, V, PER_PART> {}

impl<K: fmt::Debug, V: fmt::Debug, const PER_PART: usize> fmt::Debug for Parted<K, V, PER_PART> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

impl<K: PartKey, V, const PER_PART: usize> Serialize for Parted<K, V, PER_PART> {
    /// The head's share: how many entries and parts; [`Parted::parts`] holds the entries.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.len as u64, self.layout()).serialize(serializer)
    }
}

impl<'de, K, V, const PER_PART: usize> Deserialize<'de> for Parted<K, V, PER_PART> {
    /// A map whose every part is absent.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (len, parts) = <(u64, u32)>::deserialize(deserializer)?;
        let len = usize::try_from(len).map_err(serde::de::Error::custom)?;
        Ok(Parted { len, source_parts: parts, absent: (0..parts).collect(), ..Parted::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = Parted<Uuid, String, 4>;

    fn whole(n: u128) -> Map {
        (0..n).map(|i| (Uuid::from_u128(i), format!("v{i}"))).collect()
    }

    /// What a snapshot would give back: the head, and every part's bytes.
    fn saved(map: &Map) -> (Map, Vec<Vec<u8>>) {
        let head = bincode::serde::encode_to_vec(map, bincode::config::standard()).unwrap();
        let (back, _) = bincode::serde::decode_from_slice(&head, bincode::config::standard()).unwrap();
        let parts = map.parts().unwrap();
        let bytes = parts.into_iter().map(|p| match p {
            Part::Encoded(bytes) => bytes,
            Part::Kept(_) => panic!("a whole map keeps nothing"),
        });
        (back, bytes.collect())
    }

    #[test]
    fn an_entry_of_an_absent_part_is_a_miss_until_its_part_is_filled() {
        let original = whole(40);
        let (mut back, parts) = saved(&original);
        assert_eq!((back.len(), back.source_parts(), back.absent().count()), (40, 10, 10));
        let key = Uuid::from_u128(7);
        assert_eq!(back.get(&key), None, "absent, so not there");
        let missed = back.take_misses();
        assert_eq!(missed.len(), 1);
        assert!(back.take_misses().is_empty(), "taken");
        let part = *missed.first().unwrap();
        back.fill("test", part, &parts[part as usize]).unwrap();
        assert_eq!(back.get(&key), Some(&"v7".to_owned()));
        assert!(back.take_misses().is_empty());
        assert!(back.fill("test", part, &parts[part as usize]).is_err(), "a part is filled once");
    }

    #[test]
    fn a_walk_misses_every_absent_part_and_a_change_into_one_changes_nothing() {
        let (mut back, parts) = saved(&whole(40));
        assert_eq!(back.values().count(), 0);
        assert_eq!(back.take_misses().len(), 10);
        assert_eq!(back.insert(Uuid::from_u128(1000), "new".into()), None);
        assert_eq!(back.len(), 40, "the insert into an absent part did nothing");
        assert_eq!(back.take_misses().len(), 1);
        for part in 0..10 {
            back.fill("test", part, &parts[part as usize]).unwrap();
        }
        assert!(back.is_whole());
        assert_eq!(back, whole(40));
    }

    #[test]
    fn a_partly_read_map_keeps_its_unread_parts_and_encodes_the_others_anew() {
        let (mut back, parts) = saved(&whole(40));
        let key = Uuid::from_u128(3);
        back.get(&key);
        let part = *back.take_misses().first().unwrap();
        back.fill("test", part, &parts[part as usize]).unwrap();
        *back.get_mut(&key).unwrap() = "changed".into();
        let again = back.parts().unwrap();
        assert_eq!(again.len(), 10, "the source's layout");
        for (i, p) in again.iter().enumerate() {
            match p {
                Part::Kept(kept) => assert!(*kept == i as u32 && *kept != part),
                Part::Encoded(bytes) => assert!(i as u32 == part && *bytes != parts[i]),
            }
        }
    }

    #[test]
    fn bytes_of_another_part_or_count_are_refused() {
        let (mut back, parts) = saved(&whole(40));
        let other = (1..10).find(|&i| parts[i].len() > 1).unwrap();
        assert!(back.fill("test", 0, &parts[other]).unwrap_err().why.contains("another part"));
        assert!(back.fill("test", 0, &[0xff]).unwrap_err().why.contains("does not decode"));
        let (mut short, _) = saved(&whole(4));
        let (_, other) = saved(&whole(3));
        // One part, counted as four entries, given three.
        assert_eq!(short.source_parts(), 1);
        let err = short.fill("test", 0, &other[0]).unwrap_err();
        assert!(err.why.contains("where the head counts 4"), "{err}");
    }
}
