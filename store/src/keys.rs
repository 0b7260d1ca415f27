//! Key layout of the `log`, `index` and `snapshots` trees.
//!
//! Every number is big-endian so that sled's byte order is numeric order.
//! The `index` tree holds several kinds of entry, told apart by a one-byte
//! tag, so that one append touches only two trees:
//!
//! | tag | key                                 | value                 |
//! |-----|-------------------------------------|-----------------------|
//! | `m` | `m` ++ name                         | store metadata        |
//! | `h` | `h` ++ stream                       | stream head version   |
//! | `s` | `s` ++ len(stream) u16 ++ stream ++ version | seq           |
//! | `e` | `e` ++ event id (16 bytes)          | seq                   |
//! | `t` | `t` ++ time (ordered i64 nanos)     | last seq at that time |
//!
//! The time index has one entry per distinct time, not per record: the
//! events of one command share their time, and time never goes backwards.

pub(crate) const META_FORMAT: &[u8] = b"mformat";
pub(crate) const META_HEAD: &[u8] = b"mhead";

pub(crate) const TAG_HEAD: u8 = b'h';
pub(crate) const TAG_STREAM: u8 = b's';
pub(crate) const TAG_EVENT: u8 = b'e';
pub(crate) const TAG_TIME: u8 = b't';

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn head_key(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + stream.len());
    k.push(TAG_HEAD);
    k.extend_from_slice(stream.as_bytes());
    k
}

/// The prefix shared by every version key of one stream.
pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let len = u16::try_from(stream.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(3 + stream.len() + 8);
    k.push(TAG_STREAM);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    k
}

pub(crate) fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn event_key(id: &uuid::Uuid) -> [u8; 17] {
    let mut k = [TAG_EVENT; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Flips the sign bit so that negative times sort before positive ones.
pub(crate) fn time_key(nanos: i64) -> [u8; 9] {
    let mut k = [TAG_TIME; 9];
    k[1..].copy_from_slice(&((nanos as u64) ^ (1 << 63)).to_be_bytes());
    k
}

pub(crate) fn time_from_key(key: &[u8]) -> Option<i64> {
    let raw: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

pub(crate) fn snapshot_prefix(name: &str) -> Vec<u8> {
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + name.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn snapshot_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = snapshot_prefix(name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Reads a big-endian u64 from the start of a value.
pub(crate) fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_times() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(time_key(pair[0]) < time_key(pair[1]));
        }
        for t in times {
            assert_eq!(time_from_key(&time_key(t)), Some(t));
        }
    }

    #[test]
    fn one_stream_prefix_never_covers_another_stream() {
        // Without the length, "env/a" would be a prefix of "env/ab"'s keys.
        assert!(!stream_key("env/ab", 1).starts_with(&stream_prefix("env/a")));
    }
}
