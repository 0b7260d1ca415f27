//! The witness: the last committed record's seq and hash, kept in a file of
//! its own beside the log, so that a log that lost records says so.
//!
//! sled's recovery takes a damaged message for the end of its log and opens
//! what came before it as if it were all: a flipped bit can silently drop
//! every later record, and the next append would land on top of the loss.
//! The witness is written after each commit is durable (never before), so
//! after a crash it may lag the log but never lead it: a log that reaches
//! less far than its witness, or holds another record at its seq, has lost
//! records. It also keeps `verify`'s finding once one is made, which keeps
//! the log closed to writes until it is restored.
//!
//! The file holds two slots, written in turn, each with its generation and a
//! checksum: a write torn by a crash leaves the other slot, one commit
//! behind, which is a lag and not a loss. A write is one `write` and no
//! fsync: the records it names are durable already, and losing the write
//! to a power cut only makes the witness lag.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::Hash;
use crate::Problem;

/// The witness's file name inside the log's directory.
pub(super) const FILE: &str = "witness";
const MAGIC: &[u8; 8] = b"utwitns1";
const SLOT: usize = 512;
/// Room for a finding's text in a slot: the rest holds magic, generation,
/// seq, hash, the finding's seq, the text's length and the checksum.
const FINDING_ROOM: usize = SLOT - 8 - 8 - 8 - 32 - 8 - 2 - SUM;
/// The checksum's bytes: the start of the SHA-256 of the rest of the slot.
const SUM: usize = 8;

/// What the witness says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Witnessed {
    /// The last record known committed and durable.
    pub seq: u64,
    /// That record's hash.
    pub hash: Hash,
    /// A finding of `verify`, which keeps the log closed to writes.
    pub finding: Option<Problem>,
}

/// What an open finds in the witness's place.
#[derive(Debug)]
pub(super) enum Found {
    /// No witness file.
    Missing,
    /// A file whose slots are neither of them whole.
    Damaged,
    /// The newest whole slot.
    Holds(Witnessed),
}

/// The witness file (created by its first write).
pub(super) struct Witness {
    path: PathBuf,
    file: Option<File>,
    /// The newest slot's generation: the next write goes to the other slot.
    generation: u64,
    /// What the file says now.
    pub(super) holds: Option<Witnessed>,
}

impl Witness {
    /// Reads the witness of the log at `root`. Refuses a symlink or anything
    /// but a regular file in its place.
    pub(super) fn open(root: &Path) -> io::Result<(Witness, Found)> {
        let path = root.join(FILE);
        let mut witness = Witness { path, file: None, generation: 0, holds: None };
        match std::fs::symlink_metadata(&witness.path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                let what = format!("{} is not a regular file", witness.path.display());
                return Err(io::Error::new(io::ErrorKind::InvalidData, what));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((witness, Found::Missing)),
            Err(e) => return Err(e),
        }
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&witness.path)?;
        let mut bytes = Vec::new();
        // Two slots at most: a huge file in its place is damage, not a read.
        (&mut file).take(2 * SLOT as u64 + 1).read_to_end(&mut bytes)?;
        witness.file = Some(file);
        let slots = [0, 1].map(|i| bytes.get(i * SLOT..(i + 1) * SLOT).and_then(decode));
        let Some((generation, newest)) = slots.into_iter().flatten().max_by_key(|(g, _)| *g) else {
            return Ok((witness, Found::Damaged));
        };
        witness.generation = generation;
        witness.holds = Some(newest.clone());
        Ok((witness, Found::Holds(newest)))
    }

    /// Records `witnessed`: in the slot the newest is not in.
    pub(super) fn write(&mut self, witnessed: Witnessed) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = encode(generation, &witnessed);
        let created = self.file.is_none();
        let file = match &mut self.file {
            Some(file) => file,
            // `create_new` never follows a symlink put in its place meanwhile.
            None => {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                self.file.insert(options.open(&self.path)?)
            }
        };
        file.seek(SeekFrom::Start((generation % 2) * SLOT as u64))?;
        file.write_all(&slot)?;
        if created {
            // A later write may be lost to a power cut (the witness lags);
            // the file itself must not be, once the format mark says it is there.
            file.sync_all()?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        self.generation = generation;
        self.holds = Some(witnessed);
        Ok(())
    }

    /// Records that the log is whole up to `seq`, whose hash is `hash`,
    /// unless it says so already.
    pub(super) fn attest(&mut self, seq: u64, hash: Hash) -> io::Result<()> {
        if self.holds.as_ref().is_some_and(|w| w.seq == seq && w.hash == hash) {
            return Ok(());
        }
        self.write(Witnessed { seq, hash, finding: None })
    }
}

/// A hash as the witness's findings print it: lowercase hex.
pub(super) fn hex(hash: &Hash) -> String {
    hex::encode(hash)
}

fn encode(generation: u64, w: &Witnessed) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    let (finding_seq, finding) = w.finding.as_ref().map_or((0, ""), |p| (p.seq, p.what.as_str()));
    // Cut at a character boundary to fit.
    let mut len = finding.len().min(FINDING_ROOM);
    while !finding.is_char_boundary(len) {
        len -= 1;
    }
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        slot[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(MAGIC);
    put(&generation.to_be_bytes());
    put(&w.seq.to_be_bytes());
    put(&w.hash);
    put(&finding_seq.to_be_bytes());
    put(&(u16::from(w.finding.is_some()) << 15 | len as u16).to_be_bytes());
    put(&finding.as_bytes()[..len]);
    let sum = checksum(&slot[..SLOT - SUM]);
    slot[SLOT - SUM..].copy_from_slice(&sum);
    slot
}

fn checksum(body: &[u8]) -> [u8; SUM] {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(body);
    let mut sum = [0; SUM];
    sum.copy_from_slice(&digest[..SUM]);
    sum
}

/// A slot's generation and content, if it is whole.
fn decode(slot: &[u8]) -> Option<(u64, Witnessed)> {
    let (body, sum) = slot.split_at_checked(SLOT - SUM)?;
    if body.get(..8)? != MAGIC || checksum(body) != sum {
        return None;
    }
    let u64_at = |at: usize| body.get(at..at + 8)?.try_into().ok().map(u64::from_be_bytes);
    let generation = u64_at(8)?;
    let seq = u64_at(16)?;
    let hash: Hash = body.get(24..56)?.try_into().ok()?;
    let finding_seq = u64_at(56)?;
    let tag = u16::from_be_bytes(body.get(64..66)?.try_into().ok()?);
    let len = usize::from(tag & 0x7fff);
    let finding = match tag & 0x8000 != 0 {
        true => {
            let what = String::from_utf8_lossy(body.get(66..66 + len)?).into_owned();
            Some(Problem { seq: finding_seq, what })
        }
        false => None,
    };
    Some((generation, Witnessed { seq, hash, finding }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witnessed(seq: u64, finding: Option<&str>) -> Witnessed {
        let finding = finding.map(|what| Problem { seq: seq + 1, what: what.to_owned() });
        Witnessed { seq, hash: [seq as u8; 32], finding }
    }

    #[test]
    fn the_newest_whole_slot_is_what_the_witness_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, found) = Witness::open(dir.path()).unwrap();
        assert!(matches!(found, Found::Missing));
        for seq in 1..=5 {
            w.attest(seq, [seq as u8; 32]).unwrap();
        }
        let (_, found) = Witness::open(dir.path()).unwrap();
        assert!(matches!(found, Found::Holds(ref h) if *h == witnessed(5, None)), "{found:?}");

        // A torn write of the newest slot leaves the one before: a lag.
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Five writes: the fifth went to slot 1 (odd generations), the fourth to slot 0.
        let (newest, older) = (SLOT, 0);
        bytes[newest + 30] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, found) = Witness::open(dir.path()).unwrap();
        assert!(matches!(found, Found::Holds(ref h) if *h == witnessed(4, None)), "{found:?}");

        // Both slots damaged: named, never taken for "nothing to check".
        bytes[older + 30] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Witness::open(dir.path()).unwrap().1, Found::Damaged));
        std::fs::write(&path, &bytes[..100]).unwrap();
        assert!(matches!(Witness::open(dir.path()).unwrap().1, Found::Damaged));
    }

    #[test]
    fn a_finding_is_kept_and_a_long_one_is_cut_to_fit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Witness::open(dir.path()).unwrap();
        let long = "é".repeat(FINDING_ROOM);
        w.write(witnessed(7, Some(&long))).unwrap();
        let (reopened, found) = Witness::open(dir.path()).unwrap();
        let Found::Holds(held) = found else { panic!("{found:?}") };
        assert_eq!(held.seq, 7);
        let kept = held.finding.unwrap();
        assert_eq!(kept.seq, 8);
        let kept = kept.what;
        assert!(kept.len() <= FINDING_ROOM && long.starts_with(&kept) && !kept.is_empty());
        assert_eq!(reopened.generation, 1);
        w.write(witnessed(7, Some(""))).unwrap();
        let Found::Holds(held) = Witness::open(dir.path()).unwrap().1 else { panic!() };
        assert_eq!(held.finding.map(|p| p.what).as_deref(), Some(""), "an empty finding is still a finding");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_in_the_witness_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(FILE)).unwrap();
        assert!(Witness::open(dir.path()).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }
}
