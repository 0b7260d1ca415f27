//! Sorted fixed-size entries packed into blocks of about 4 KiB, one sled
//! value per block, keyed `prefix ++ first entry's key`.
//!
//! sled's costs grow with its number of entries: each is a page-table slot
//! that every open reads back, and each insert is a tree walk and a log
//! write. An index of a million entries kept this way is a few thousand sled
//! entries, and appending to it rewrites one block.

use sled::IVec;

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
        (BLOCK_BYTES / self.entry).max(1)
    }
}

/// A block is split once it would hold more than this many bytes.
pub(crate) const BLOCK_BYTES: usize = 4096;

/// The block whose range holds `key`: the last one starting at or before it.
pub(crate) fn block_at(tree: &sled::Tree, prefix: &[u8], key: &[u8]) -> sled::Result<Option<(IVec, IVec)>> {
    let mut at = prefix.to_vec();
    at.extend_from_slice(key);
    tree.range(prefix.to_vec()..=at).next_back().transpose()
}

/// The entry with `key`, if any.
pub(crate) fn lookup(
    tree: &sled::Tree,
    prefix: &[u8],
    layout: Layout,
    key: &[u8],
) -> sled::Result<Option<Vec<u8>>> {
    let Some((_, block)) = block_at(tree, prefix, key)? else {
        return Ok(None);
    };
    let entries: Vec<&[u8]> = block.chunks_exact(layout.entry).collect();
    Ok(entries.binary_search_by(|e| e[..layout.key].cmp(key)).ok().map(|i| entries[i].to_vec()))
}

/// Blocks of `prefix` from the one holding `key` on, in key order.
pub(crate) fn blocks_from(
    tree: &sled::Tree,
    prefix: &[u8],
    key: &[u8],
) -> sled::Result<impl Iterator<Item = sled::Result<(IVec, IVec)>>> {
    let start = match block_at(tree, prefix, key)? {
        Some((k, _)) => k.to_vec(),
        None => prefix.to_vec(),
    };
    let prefix = prefix.to_vec();
    Ok(tree.range(start..).take_while(move |entry| match entry {
        Ok((k, _)) => k.starts_with(&prefix),
        Err(_) => true,
    }))
}

/// Why new entries could not go in.
#[derive(Debug)]
pub(crate) enum MergeError {
    /// sled failed.
    Engine(sled::Error),
    /// An entry with this key is there already, with another value.
    Clash(Vec<u8>),
}

impl From<sled::Error> for MergeError {
    fn from(e: sled::Error) -> Self {
        MergeError::Engine(e)
    }
}

/// Adds `new` entries (sorted by key, keys unique) to the blocks of
/// `prefix` and puts the rewritten blocks in `batch`. An entry already there
/// unchanged is skipped, so replaying a merge is harmless.
pub(crate) fn merge(
    tree: &sled::Tree,
    prefix: &[u8],
    layout: Layout,
    new: &[u8],
    batch: &mut sled::Batch,
) -> Result<(), MergeError> {
    let mut rest: Vec<&[u8]> = new.chunks_exact(layout.entry).collect();
    while let Some(first) = rest.first() {
        // The block this entry belongs to, or else the first block (the
        // entry sorts before every block).
        let target = match block_at(tree, prefix, &first[..layout.key])? {
            Some(found) => Some(found),
            None => tree.scan_prefix(prefix).next().transpose()?,
        };
        // What the target covers ends where the next block starts.
        let next = match &target {
            Some((k, _)) => {
                let after = std::ops::Bound::Excluded(k.to_vec());
                tree.range::<Vec<u8>, _>((after, std::ops::Bound::Unbounded))
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
            batch.insert(key, piece.concat());
        }
        rest = later.to_vec();
    }
    Ok(())
}

/// Writes `entries` (sorted by key, keys unique) as new blocks of
/// `prefix`, for a prefix whose old blocks the same batch removes.
pub(crate) fn pack(prefix: &[u8], layout: Layout, entries: &[u8], batch: &mut sled::Batch) {
    for piece in entries.chunks(layout.per_block() * layout.entry) {
        let mut key = prefix.to_vec();
        key.extend_from_slice(&piece[..layout.key]);
        batch.insert(key, piece);
    }
}

/// Two sorted runs of entries as one; the same key twice must be the same entry.
fn sorted_union<'a>(old: &[&'a [u8]], new: &[&'a [u8]], layout: Layout) -> Result<Vec<&'a [u8]>, MergeError> {
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
                std::cmp::Ordering::Equal => return Err(MergeError::Clash(a[..layout.key].to_vec())),
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

    fn entry(k: u32) -> Vec<u8> {
        let mut e = k.to_be_bytes().to_vec();
        e.extend_from_slice(&(k as u16).wrapping_mul(7).to_be_bytes());
        e
    }

    fn all(tree: &sled::Tree) -> Vec<u32> {
        tree.scan_prefix(b"x")
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
                merge(&tree, b"x", L, &new, &mut batch).unwrap();
                tree.apply_batch(batch).unwrap();
                want.extend(keys);
                prop_assert_eq!(all(&tree), want.iter().copied().collect::<Vec<_>>());
                for block in tree.scan_prefix(b"x") {
                    let (k, v) = block.unwrap();
                    prop_assert!(v.len() <= BLOCK_BYTES && !v.is_empty());
                    prop_assert_eq!(&k[1..], &v[..4], "a block is keyed by its first entry");
                }
            }
            for k in [0u32, 17, 999, 4_999] {
                let found = lookup(&tree, b"x", L, &k.to_be_bytes()).unwrap();
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
            merge(&tree, b"x", L, &new, &mut batch).unwrap();
            tree.apply_batch(batch).unwrap();
        }
        assert_eq!(all(&tree), (0..1_000).collect::<Vec<_>>());
        let mut clash = entry(5);
        clash[5] ^= 1;
        let mut batch = sled::Batch::default();
        assert!(matches!(merge(&tree, b"x", L, &clash, &mut batch), Err(MergeError::Clash(_))));
    }
}
