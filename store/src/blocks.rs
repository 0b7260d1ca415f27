//! Sorted fixed-size entries packed into blocks of about 4 KiB, one sled
//! value per block, keyed `prefix ++ first entry's key`, each ending with
//! its MAC: a block that fails it is a miss, never read.
//!
//! sled's costs grow with its number of entries: each is a page-table slot
//! that every open reads back, and each insert is a tree walk and a log
//! write. An index of a million entries kept this way is a few thousand sled
//! entries, and appending to it rewrites one block.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sled::IVec;

/// The key that authenticates the index (issue 25, finding 2): the
/// database's cache key (`cache_key`). Every block ends with an HMAC-SHA256
/// of its sled key and entries, and the marks (`mindexed`, `marchive`) with
/// one of their own bytes; each under a label of its own, so that no MAC of
/// one kind (nor a snapshot's, which starts with a name's length) passes
/// for another.
#[derive(Clone)]
pub(crate) struct IndexKey(pub [u8; 32]);

/// What a block's MAC covers starts with this.
const BLOCK_LABEL: &[u8] = b"usertrail index block 1\0";
/// Bytes of the MAC at the end of a block or a mark.
pub(crate) const MAC_BYTES: usize = 32;

impl IndexKey {
    fn hmac(&self, label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(label);
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    /// `parts` (each after its length), under `label`, followed by their MAC.
    pub(crate) fn seal(&self, label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut sealed = parts.concat();
        sealed.extend_from_slice(&self.hmac(label, parts).finalize().into_bytes());
        sealed
    }

    /// Whether `mac` is the MAC of `parts` under `label`.
    pub(crate) fn checks(&self, label: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
        self.hmac(label, parts).verify_slice(mac).is_ok()
    }

    /// A block's stored value: its entries and their MAC.
    fn seal_block(&self, sled_key: &[u8], entries: &[u8]) -> Vec<u8> {
        let mut value = entries.to_vec();
        value.extend_from_slice(&self.hmac(BLOCK_LABEL, &[sled_key, entries]).finalize().into_bytes());
        value
    }

    /// A stored block's entries, if it is one this key sealed under this
    /// sled key, of whole entries of `layout`, keyed by its first entry.
    pub(crate) fn open_block(
        &self,
        layout: Layout,
        sled_key: &[u8],
        value: &IVec,
    ) -> Result<IVec, BlockError> {
        let forged = || BlockError::Forged(sled_key.to_vec());
        let len = value.len().checked_sub(MAC_BYTES).filter(|&n| n > 0 && n % layout.entry == 0);
        let len = len.ok_or_else(forged)?;
        let (entries, mac) = value.split_at(len);
        let keyed = sled_key.len() >= layout.key && sled_key.ends_with(&entries[..layout.key]);
        if !keyed || self.hmac(BLOCK_LABEL, &[sled_key, entries]).verify_slice(mac).is_err() {
            return Err(forged());
        }
        Ok(value.subslice(0, len))
    }
}

/// The shape of one index's entries: each starts with its key.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    /// Bytes of the key at the start of each entry.
    pub key: usize,
    /// Bytes of a whole entry.
    pub entry: usize,
}

impl Layout {
    /// How many entries a block holds at most.
    fn per_block(self) -> usize {
        ((BLOCK_BYTES - MAC_BYTES) / self.entry).max(1)
    }
}

/// A block is split once it would hold more than this many bytes.
pub(crate) const BLOCK_BYTES: usize = 4096;

/// Why blocks could not be read or written.
#[derive(Debug)]
pub(crate) enum BlockError {
    /// sled failed.
    Engine(sled::Error),
    /// The block under this sled key fails its MAC or is malformed: a miss.
    Forged(Vec<u8>),
    /// An entry with this key is there already, with another value.
    Clash(Vec<u8>),
}

impl From<sled::Error> for BlockError {
    fn from(e: sled::Error) -> Self {
        BlockError::Engine(e)
    }
}

/// One index of a tree: its blocks' prefix and layout, and the key that
/// authenticates them. Every block it hands out has passed its MAC.
#[derive(Clone, Copy)]
pub(crate) struct Blocks<'a> {
    pub tree: &'a sled::Tree,
    pub prefix: &'a [u8],
    pub layout: Layout,
    pub key: &'a IndexKey,
}

impl<'a> Blocks<'a> {
    /// The block whose range holds `key` (the last one starting at or
    /// before it), as its sled key and entries.
    pub(crate) fn block_at(&self, key: &[u8]) -> Result<Option<(IVec, IVec)>, BlockError> {
        let mut at = self.prefix.to_vec();
        at.extend_from_slice(key);
        match self.tree.range(self.prefix.to_vec()..=at).next_back().transpose()? {
            Some((k, v)) => Ok(Some((k.clone(), self.key.open_block(self.layout, &k, &v)?))),
            None => Ok(None),
        }
    }

    /// The entry with `key`, if any.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BlockError> {
        let Some((_, block)) = self.block_at(key)? else {
            return Ok(None);
        };
        let entries: Vec<&[u8]> = block.chunks_exact(self.layout.entry).collect();
        let found = entries.binary_search_by(|e| e[..self.layout.key].cmp(key)).ok();
        Ok(found.map(|i| entries[i].to_vec()))
    }

    /// Blocks from the one holding `key` on, in key order, as their sled
    /// keys and entries.
    pub(crate) fn from(
        self,
        key: &[u8],
    ) -> Result<impl Iterator<Item = Result<(IVec, IVec), BlockError>> + 'a, BlockError> {
        let start = match self.block_at(key)? {
            Some((k, _)) => k.to_vec(),
            None => self.prefix.to_vec(),
        };
        let prefix = self.prefix.to_vec();
        Ok(self
            .tree
            .range(start..)
            .take_while(move |entry| match entry {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            })
            .map(move |entry| {
                let (k, v) = entry?;
                let entries = self.key.open_block(self.layout, &k, &v)?;
                Ok((k, entries))
            }))
    }

    /// Adds `new` entries (sorted by key, keys unique) to the blocks and
    /// puts the rewritten blocks in `batch`. An entry already there
    /// unchanged is skipped, so replaying a merge is harmless.
    pub(crate) fn merge(&self, new: &[u8], batch: &mut sled::Batch) -> Result<(), BlockError> {
        let (prefix, layout) = (self.prefix, self.layout);
        let mut rest: Vec<&[u8]> = new.chunks_exact(layout.entry).collect();
        while let Some(first) = rest.first() {
            // The block this entry belongs to, or else the first block (the
            // entry sorts before every block).
            let target = match self.block_at(&first[..layout.key])? {
                Some(found) => Some(found),
                None => match self.tree.scan_prefix(prefix).next().transpose()? {
                    Some((k, v)) => Some((k.clone(), self.key.open_block(layout, &k, &v)?)),
                    None => None,
                },
            };
            // What the target covers ends where the next block starts.
            let next = match &target {
                Some((k, _)) => {
                    let after = std::ops::Bound::Excluded(k.to_vec());
                    self.tree
                        .range::<Vec<u8>, _>((after, std::ops::Bound::Unbounded))
                        .next()
                        .transpose()?
                        .map(|(k, _)| k)
                        .filter(|k| k.starts_with(prefix))
                }
                None => None,
            };
            let taken = match &next {
                Some(n) => rest.iter().take_while(|e| e[..layout.key] < n[prefix.len()..]).count(),
                None => rest.len(),
            }
            .max(1);
            let (mine, later) = rest.split_at(taken);
            let old: Vec<&[u8]> =
                target.as_ref().map(|(_, b)| b.chunks_exact(layout.entry).collect()).unwrap_or_default();
            let merged = sorted_union(&old, mine, layout)?;
            if let Some((k, _)) = &target {
                batch.remove(k.clone());
            }
            for piece in merged.chunks(layout.per_block()) {
                let mut key = prefix.to_vec();
                key.extend_from_slice(&piece[0][..layout.key]);
                let value = self.key.seal_block(&key, &piece.concat());
                batch.insert(key, value);
            }
            rest = later.to_vec();
        }
        Ok(())
    }

    /// Writes `entries` (sorted by key, keys unique) as new blocks, for a
    /// prefix whose old blocks the same batch removes.
    pub(crate) fn pack(&self, entries: &[u8], batch: &mut sled::Batch) {
        for piece in entries.chunks(self.layout.per_block() * self.layout.entry) {
            let mut key = self.prefix.to_vec();
            key.extend_from_slice(&piece[..self.layout.key]);
            let value = self.key.seal_block(&key, piece);
            batch.insert(key, value);
        }
    }
}

/// Two sorted runs of entries as one; the same key twice must be the same entry.
fn sorted_union<'a>(old: &[&'a [u8]], new: &[&'a [u8]], layout: Layout) -> Result<Vec<&'a [u8]>, BlockError> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let pick_old = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => match a[..layout.key].cmp(&b[..layout.key]) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal if a == b => {
                    j += 1;
                    true
                }
                std::cmp::Ordering::Equal => return Err(BlockError::Clash(a[..layout.key].to_vec())),
            },
            (Some(_), None) => true,
            _ => false,
        };
        if pick_old {
            out.push(old[i]);
            i += 1;
        } else {
            out.push(new[j]);
            j += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Layout = Layout { key: 4, entry: 6 };
    const K: IndexKey = IndexKey([3; 32]);

    fn entry(k: u32) -> Vec<u8> {
        let mut e = k.to_be_bytes().to_vec();
        e.extend_from_slice(&(k as u16).wrapping_mul(7).to_be_bytes());
        e
    }

    fn blocks(tree: &sled::Tree) -> Blocks<'_> {
        Blocks { tree, prefix: b"x", layout: L, key: &K }
    }

    fn all(tree: &sled::Tree) -> Vec<u32> {
        blocks(tree)
            .from(&[])
            .unwrap()
            .flat_map(|b| {
                b.unwrap()
                    .1
                    .chunks_exact(L.entry)
                    .map(|e| u32::from_be_bytes(e[..4].try_into().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn merged_blocks_hold_every_key_once_in_order_and_find_them(
            rounds in proptest::collection::vec(proptest::collection::btree_set(0..5_000u32, 0..900), 1..5)
        ) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let tree = db.open_tree("t").unwrap();
            let mut want = std::collections::BTreeSet::new();
            for keys in rounds {
                let new: Vec<u8> = keys.iter().flat_map(|&k| entry(k)).collect();
                let mut batch = sled::Batch::default();
                blocks(&tree).merge(&new, &mut batch).unwrap();
                tree.apply_batch(batch).unwrap();
                want.extend(keys);
                prop_assert_eq!(all(&tree), want.iter().copied().collect::<Vec<_>>());
                for block in tree.scan_prefix(b"x") {
                    let (k, v) = block.unwrap();
                    prop_assert!(v.len() <= BLOCK_BYTES && v.len() > MAC_BYTES);
                    prop_assert_eq!(&k[1..], &v[..4], "a block is keyed by its first entry");
                }
            }
            for k in [0u32, 17, 999, 4_999] {
                let found = blocks(&tree).lookup(&k.to_be_bytes()).unwrap();
                prop_assert_eq!(found, want.contains(&k).then(|| entry(k)));
            }
        }
    }

    #[test]
    fn a_replayed_merge_changes_nothing_and_a_clash_is_refused() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let new: Vec<u8> = (0..1_000).flat_map(entry).collect();
        for _ in 0..2 {
            let mut batch = sled::Batch::default();
            blocks(&tree).merge(&new, &mut batch).unwrap();
            tree.apply_batch(batch).unwrap();
        }
        assert_eq!(all(&tree), (0..1_000).collect::<Vec<_>>());
        let mut clash = entry(5);
        clash[5] ^= 1;
        let mut batch = sled::Batch::default();
        assert!(matches!(blocks(&tree).merge(&clash, &mut batch), Err(BlockError::Clash(_))));
    }

    #[test]
    fn blocks_are_filled_to_their_size_by_pack_and_by_merge() {
        let per = (BLOCK_BYTES - MAC_BYTES) / L.entry;
        let want = vec![per * L.entry + MAC_BYTES, (1_000 - per) * L.entry + MAC_BYTES];
        let entries: Vec<u8> = (0..1_000).flat_map(entry).collect();
        for packing in [true, false] {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let tree = db.open_tree("t").unwrap();
            let mut batch = sled::Batch::default();
            match packing {
                true => blocks(&tree).pack(&entries, &mut batch),
                false => blocks(&tree).merge(&entries, &mut batch).unwrap(),
            }
            tree.apply_batch(batch).unwrap();
            let lens: Vec<usize> = tree.scan_prefix(b"x").map(|b| b.unwrap().1.len()).collect();
            assert_eq!(lens, want, "packing: {packing}");
            assert_eq!(all(&tree), (0..1_000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_merge_of_entries_in_two_blocks_leaves_each_block_whole() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut batch = sled::Batch::default();
        blocks(&tree).merge(&(0..1_000).flat_map(entry).collect::<Vec<_>>(), &mut batch).unwrap();
        tree.apply_batch(batch).unwrap();
        // 677 starts the second block: it is that block's, not the first's.
        let mut batch = sled::Batch::default();
        blocks(&tree).merge(&[entry(5), entry(677)].concat(), &mut batch).unwrap();
        tree.apply_batch(batch).unwrap();
        assert_eq!(all(&tree), (0..1_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_block_of_no_entry_part_of_one_or_keyed_by_another_is_forged_even_when_sealed() {
        let forged =
            |k: &[u8], v: Vec<u8>| matches!(K.open_block(L, k, &IVec::from(v)), Err(BlockError::Forged(_)));
        let e = entry(3);
        assert!(forged(b"x\0\0\0\x03", K.seal_block(b"x\0\0\0\x03", &[])), "no entry");
        assert!(
            forged(b"x\0\0\0\x03", K.seal_block(b"x\0\0\0\x03", &[&e[..], &e[..1]].concat())),
            "part of one"
        );
        assert!(forged(b"x\0\0\0\x09", K.seal_block(b"x\0\0\0\x09", &e)), "keyed by another");
        // A sled key of the entry's key alone (an index with no prefix) is keyed by it.
        assert!(K.open_block(L, &e[..4], &IVec::from(K.seal_block(&e[..4], &e))).is_ok());
    }

    #[test]
    fn a_mark_checks_under_its_own_label_and_parts_only() {
        let sealed = K.seal(b"mark", &[b"ab", b"c"]);
        let (bytes, mac) = sealed.split_at(sealed.len() - MAC_BYTES);
        assert_eq!(bytes, b"abc");
        assert!(K.checks(b"mark", &[b"ab", b"c"], mac));
        assert!(!K.checks(b"mark", &[b"a", b"bc"], mac), "the parts' lengths are covered");
        assert!(!K.checks(b"other", &[b"ab", b"c"], mac));
    }

    #[test]
    fn a_block_changed_moved_cut_or_sealed_under_another_key_is_forged() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut batch = sled::Batch::default();
        blocks(&tree).pack(&(0..10).flat_map(entry).collect::<Vec<_>>(), &mut batch);
        tree.apply_batch(batch).unwrap();
        let (key, value) = tree.scan_prefix(b"x").next().unwrap().unwrap();
        assert!(K.open_block(L, &key, &value).is_ok());
        let forged =
            |k: &[u8], v: &[u8]| matches!(K.open_block(L, k, &IVec::from(v)), Err(BlockError::Forged(_)));
        for at in 0..value.len() {
            let mut changed = value.to_vec();
            changed[at] ^= 1;
            assert!(forged(&key, &changed), "byte {at}");
        }
        assert!(forged(&key, &value[..value.len() - 1]), "cut short");
        assert!(forged(&key, &value[L.entry..]), "an entry dropped");
        assert!(forged(b"y\0\0\0\0", &value), "under another sled key");
        let theirs = IndexKey([4; 32]).seal_block(&key, &value[..value.len() - MAC_BYTES]);
        assert!(forged(&key, &theirs), "another database's key");
        // A read that meets it names the block and hands out nothing.
        tree.insert(&key, theirs).unwrap();
        assert!(
            matches!(blocks(&tree).lookup(&entry(3)[..4]), Err(BlockError::Forged(k)) if k == key.to_vec())
        );
    }
}
