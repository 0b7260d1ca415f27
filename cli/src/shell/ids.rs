//! Where new ids come from: random and time-ordered, or derived from a seed.

use uuid::Uuid;

/// Where new ids come from: random and time-ordered (UUID v7) in normal
/// use, so that the log's event id index grows at its right edge; derived
/// from a seed, the log's head when the run started, and a counter when
/// output must be reproducible (snapshot tests, scripted demos). Derived ids
/// never repeat within one log: every run that appends moves the head.
pub struct Ids {
    seed: Option<(u64, u64)>,
    ordered: bool,
    counter: std::sync::atomic::AtomicU64,
    /// For random ids: drawn once, then counted up (see [`Ids::next`]).
    base: u128,
}

impl Ids {
    /// Random, time-ordered ids (version 7).
    pub fn random() -> Ids {
        let base = Uuid::new_v4().as_u128();
        Ids { seed: None, ordered: true, counter: std::sync::atomic::AtomicU64::new(0), base }
    }

    /// Reproducible ids for a run that starts with the log's head at `head`.
    pub fn seeded(seed: u64, head: u64) -> Ids {
        Ids {
            seed: Some((seed, head)),
            ordered: false,
            counter: std::sync::atomic::AtomicU64::new(0),
            base: 0,
        }
    }

    /// Reproducible ids shaped like version 7 ones: the counter stands for
    /// the time, so they sort in the order they were made (generators of
    /// large synthetic logs).
    pub fn seeded_ordered(seed: u64) -> Ids {
        Ids { seed: Some((seed, 0)), ordered: true, counter: std::sync::atomic::AtomicU64::new(0), base: 0 }
    }

    /// A new id.
    pub fn next(&self) -> Uuid {
        self.make(Ids::millis())
    }

    /// Ids made together, such as one command's: they share one reading of
    /// the clock, which cost a twentieth of a large import's deciding when
    /// read per id.
    pub fn together(&self) -> Together<'_> {
        Together { ids: self, millis: Ids::millis() }
    }

    /// The clock, in milliseconds since the epoch.
    fn millis() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The next id, made at `millis` if random.
    fn make(&self, millis: u64) -> Uuid {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((seed, head)) = self.seed else {
            // Version 7: the time in milliseconds, then a random base drawn
            // once per run plus a counter, so ids of one millisecond still
            // sort in the order they were made, and a run asks the OS for
            // randomness once rather than per id.
            let counted = self.base.wrapping_add(u128::from(n)).to_be_bytes();
            let tail: [u8; 10] = counted[6..].try_into().unwrap_or_default();
            return uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
        };
        let derived = domain::ids::derive_id(&[&seed.to_be_bytes(), &head.to_be_bytes(), &n.to_be_bytes()]);
        if !self.ordered {
            return derived;
        }
        // 48 bits of "milliseconds" from the counter; the rest derived.
        let tail: [u8; 10] = derived.as_bytes()[6..].try_into().unwrap_or_default();
        uuid::Builder::from_unix_timestamp_millis(n, &tail).into_uuid()
    }
}

/// Ids made together ([`Ids::together`]).
pub struct Together<'a> {
    ids: &'a Ids,
    millis: u64,
}

impl Together<'_> {
    /// A new id.
    pub fn id(&mut self) -> Uuid {
        self.ids.make(self.millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_together_are_those_made_one_by_one_and_sort_as_made() {
        // Seeded: the same ids in the same order either way.
        let (one_by_one, together) = (Ids::seeded(7, 3), Ids::seeded(7, 3));
        let mut batch = together.together();
        for _ in 0..5 {
            assert_eq!(one_by_one.next(), batch.id());
        }
        // Random: one command's ids share a timestamp and still sort as made.
        let ids = Ids::random();
        let before = Ids::millis();
        let mut batch = ids.together();
        let made: Vec<Uuid> = (0..1000).map(|_| batch.id()).collect();
        let stamps: std::collections::BTreeSet<u64> = made
            .iter()
            .filter_map(|id| id.get_timestamp())
            .map(|t| t.to_unix().0 * 1000 + u64::from(t.to_unix().1) / 1_000_000)
            .collect();
        assert_eq!(stamps.len(), 1, "one reading of the clock");
        assert!(stamps.iter().all(|&t| t >= before && t <= Ids::millis()), "{stamps:?} around {before}");
        assert!(made.windows(2).all(|w| w[0] < w[1]), "sorted as made");
        assert!(made.iter().all(|id| id.get_version_num() == 7));
    }
}
