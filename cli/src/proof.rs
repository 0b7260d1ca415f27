//! Proof an auditor can check without us (issue 27): `digest` (the head,
//! kept elsewhere), `verify --digest` (does this log still extend it?),
//! `export log` (every record as JSON Lines with the exact bytes its hash
//! covers) and `restore` (a new database from such an export, every hash
//! and every readable field checked against the bytes).

use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use domain::events::Event;
use serde_json::{json, Map, Value};
use store::{AppendRejection, EventStore, Hash, Record, Sealed, GENESIS_HASH};

use crate::copy::Destination;
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::Shell;
use crate::time::parse_at;
use crate::RunOptions;

/// The digest format `digest` writes and `verify --digest` reads.
pub const DIGEST_FORMAT: u64 = 1;

/// Records read (and checked, and written) at a time: memory stays flat
/// whatever the log's size.
const PAGE: usize = 1024;

/// The longest export line `restore` reads: a record is at most 64 MiB,
/// which base64 makes 86 MiB, plus the readable fields.
const MAX_LINE: u64 = 200 * 1024 * 1024;

/// Hex of a hash, lower case.
pub fn hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// A hash from 64 hex digits, or `None`.
pub fn parse_hex(text: &str) -> Option<Hash> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash).ok().map(|()| hash)
}

/// Standard base64 with padding (RFC 4648, section 4), as Python's
/// `base64.b64decode` reads it.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 with padding, canonical only (no stray bits);
/// `None` for anything else.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The record's event as people read it: `type` and the event's fields.
/// `Err`: the payload is no event this usertrail reads.
pub fn readable_event(record: &Record) -> Result<Value, String> {
    let event = domain::events::decode(record.schema_version, &record.payload).map_err(|e| e.to_string())?;
    let shown = match &event {
        Event::Tenant(e) => serde_json::to_value(e),
        Event::Environment(e) => serde_json::to_value(e),
        // Not an enum: its fields are the object itself.
        Event::CommandRejected(c) => serde_json::to_value(c).map(|v| json!({ "CommandRejected": v })),
        // The hash as hex, as every other hash is shown.
        Event::ReportGenerated(r) => Ok(json!({ "ReportGenerated": {
            "from": projections::rfc3339(r.from),
            "to": projections::rfc3339(r.to),
            "file": r.file,
            "sha256": hex(&r.sha256),
        }})),
    }
    .map_err(|e| e.to_string())?;
    let mut readable = Map::new();
    readable.insert("type".into(), Value::String(event.type_name().into()));
    // serde writes a variant as {"Name": fields} ("Name" alone when it has none).
    let fields = match shown {
        Value::Object(variant) if variant.len() == 1 => variant.into_iter().next().map(|(_, v)| v),
        Value::String(_) => None,
        other => Some(other),
    };
    match fields {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) if !fields.contains_key("type") => readable.extend(fields),
        // A field named `type`, or fields that are no object: kept apart, never overwritten.
        Some(other) => {
            readable.insert("fields".into(), other);
        }
    }
    Ok(Value::Object(readable))
}

/// One export line: the readable fields and the exact bytes the hash covers.
pub fn export_line(sealed: &Sealed) -> Result<Value, String> {
    let r = sealed.record();
    let mut line = json!({
        "seq": r.seq,
        "stream": r.stream,
        "version": r.version,
        "eventId": r.event_id.to_string(),
        "at": projections::rfc3339(r.recorded_at),
        "actor": r.actor,
        "correlationId": r.correlation_id.to_string(),
        "event": readable_event(r)?,
        "prevHash": hex(&r.prev_hash),
        "hash": hex(&r.hash),
        "bytes": base64(sealed.hashed()),
    });
    if let (Some(origin), Value::Object(fields)) = (&r.origin, &mut line) {
        fields.insert("runBy".into(), json!({ "account": origin.account, "host": origin.host }));
        fields.insert("writtenAt".into(), Value::String(projections::rfc3339(origin.written_at)));
    }
    Ok(line)
}

/// A check the log fails: exit 3, naming the record.
fn disproved(what: String) -> CliError {
    CliError::Disproved(what)
}

/// `usertrail digest`: the head, to keep elsewhere.
pub async fn digest(shell: &Shell, out: &mut Out<'_>) -> Result<(), CliError> {
    let Some(head) = shell.store.head().await? else {
        return usage("the log is empty: there is no record to digest yet");
    };
    let (tenant, _) = shell.tenant_at(head.seq).await?;
    let domain = tenant.info.as_ref().map(|i| i.domain.clone());
    let at = projections::rfc3339(head.recorded_at);
    if out.json {
        return out.json(&json!({
            "format": DIGEST_FORMAT,
            "tenant": domain,
            "seq": head.seq,
            "hash": hex(&head.hash),
            "at": at,
        }));
    }
    out.line(format!(
        "digest of record {} of {} at {at}: hash {} (format {DIGEST_FORMAT})",
        head.seq,
        domain.as_deref().unwrap_or("(no tenant yet)"),
        hex(&head.hash)
    ))?;
    out.line(
        "keep the output of `usertrail digest --json` elsewhere; `usertrail verify --digest FILE` checks it",
    )
}

/// What a digest file says.
struct Digest {
    tenant: Option<String>,
    seq: u64,
    hash: Hash,
    at: DateTime<Utc>,
}

/// Reads a digest file (`digest --json` saved); bad input names the file and what is wrong.
fn read_digest(file: &Path) -> Result<Digest, CliError> {
    let name = file.display();
    let text = match std::fs::metadata(file) {
        Ok(meta) if meta.len() > 64 * 1024 => return usage(format!("digest {name} is no digest: too large")),
        Ok(_) => std::fs::read_to_string(file)
            .map_err(|e| CliError::Usage(format!("cannot read digest {name}: {e}")))?,
        Err(e) => return usage(format!("cannot read digest {name}: {e}")),
    };
    let bad = |what: &str| CliError::Usage(format!("digest {name} is malformed: {what}"));
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let format = value.get("format").and_then(Value::as_u64).ok_or_else(|| bad("no \"format\" number"))?;
    if format != DIGEST_FORMAT {
        return usage(format!(
            "digest {name} has format {format}; this usertrail reads format {DIGEST_FORMAT}"
        ));
    }
    let seq = value.get("seq").and_then(Value::as_u64).filter(|&s| s >= 1);
    let seq = seq.ok_or_else(|| bad("no \"seq\" number of 1 or more"))?;
    let hash = value.get("hash").and_then(Value::as_str).and_then(parse_hex);
    let hash = hash.ok_or_else(|| bad("no \"hash\" of 64 hex digits"))?;
    let at = value.get("at").and_then(Value::as_str).and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let at = at.ok_or_else(|| bad("no \"at\" RFC 3339 time"))?.to_utc();
    let tenant = match value.get("tenant") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Null) => None,
        _ => return Err(bad("no \"tenant\" (a string, or null)")),
    };
    Ok(Digest { tenant, seq, hash, at })
}

/// `usertrail verify --digest FILE`: the log still holds the digest's record
/// with its hash, and the chain from it to the head is intact.
pub async fn verify_digest(shell: &Shell, file: &Path, out: &mut Out<'_>) -> Result<(), CliError> {
    let digest = read_digest(file)?;
    let result = check_digest(shell, &digest).await;
    if out.json {
        let (head, problem) = match &result {
            Ok(head) => (Some(*head), None),
            Err(CliError::Disproved(what)) => (None, Some(what.clone())),
            Err(_) => return result.map(drop),
        };
        out.json(
            &json!({ "seq": digest.seq, "holds": problem.is_none(), "head": head, "problem": problem }),
        )?;
    }
    let head = result?;
    if !out.json {
        out.line(format!(
            "digest of record {} holds: the chain from it to the head (record {head}) is intact",
            digest.seq
        ))?;
    }
    Ok(())
}

/// The head's seq when the digest holds; [`CliError::Disproved`] naming the
/// first record that differs when it does not.
async fn check_digest(shell: &Shell, digest: &Digest) -> Result<u64, CliError> {
    let n = digest.seq;
    let head = shell.store.head().await?.map_or(0, |h| h.seq);
    if head < n {
        return Err(disproved(format!(
            "the digest's record {n} is not in this log, which ends at record {head}: records were lost, or this is another log"
        )));
    }
    let mut prev: Option<Hash> = None;
    let mut from = n;
    while from <= head {
        let page = shell.store.read_sealed(from, head, PAGE).await?;
        if page.is_empty() {
            return Err(disproved(format!("record {from} is missing from the log")));
        }
        for sealed in &page {
            let r = sealed.record();
            if r.seq != from {
                return Err(disproved(format!("record {from} is missing from the log")));
            }
            if !sealed.hash_is_intact() {
                return Err(disproved(format!(
                    "record {from} is damaged: its hash is not the hash of its body"
                )));
            }
            match prev {
                None if r.hash != digest.hash => {
                    return Err(disproved(format!(
                        "record {n} differs from the digest: its hash is {}, the digest's {}; the log holds another history",
                        hex(&r.hash),
                        hex(&digest.hash)
                    )))
                }
                None if r.recorded_at != digest.at => {
                    return Err(disproved(format!(
                        "record {n} was stamped {}, the digest says {}",
                        projections::rfc3339(r.recorded_at),
                        projections::rfc3339(digest.at)
                    )))
                }
                Some(p) if r.prev_hash != p => {
                    return Err(disproved(format!(
                        "record {from} does not chain to record {}: the log changed after the digest",
                        from - 1
                    )))
                }
                _ => {}
            }
            prev = Some(r.hash);
            from += 1;
        }
    }
    let (tenant, _) = shell.tenant_at(n).await?;
    let domain = tenant.info.map(|i| i.domain);
    if domain != digest.tenant {
        return Err(disproved(format!(
            "the digest is of tenant {}; this log's is {}",
            digest.tenant.as_deref().unwrap_or("(none)"),
            domain.as_deref().unwrap_or("(none)")
        )));
    }
    Ok(head)
}

/// Parses `--from seq:N` (N at least 1).
fn parse_from(text: &str) -> Result<u64, CliError> {
    match text.trim().strip_prefix("seq:").map(str::parse::<u64>) {
        Some(Ok(n)) if n >= 1 => Ok(n),
        _ => usage(format!("bad --from '{}': expected seq:N with N at least 1", domain::limits::quote(text))),
    }
}

/// `usertrail export log`: every record from `--from` to `--to` as JSON
/// Lines. The range is checked first (hashes, chain, events readable), so
/// a damaged log writes nothing rather than an export cut short.
pub async fn export_log(
    shell: &Shell,
    from: Option<&str>,
    to: Option<&str>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let head = shell.store.head().await?.map_or(0, |h| h.seq);
    if head == 0 {
        return usage("the log is empty: there is nothing to export");
    }
    let from = from.map(parse_from).transpose()?.unwrap_or(1);
    let to = match to {
        None => head,
        Some(text) => {
            let at = parse_at(text).map_err(|e| match e {
                CliError::Usage(why) => CliError::Usage(why.replacen("bad --at", "bad --to", 1)),
                other => other,
            })?;
            shell.resolve(Some(at)).await?
        }
    };
    if from > head {
        return usage(format!("--from seq:{from} is past the log's last record, {head}"));
    }
    if to < from {
        return usage(format!("--to names record {to}, before --from's record {from}: nothing to export"));
    }
    // The hash the first record exported chains to.
    let first_prev = match from {
        1 => GENESIS_HASH,
        _ => {
            let before = shell.store.read_sealed(from - 1, from - 1, 1).await?;
            before
                .first()
                .map(|s| s.record().hash)
                .ok_or_else(|| disproved(format!("record {} is missing", from - 1)))?
        }
    };
    // First pass: every record of the range sound, before a line is written.
    let mut prev = first_prev;
    for_pages(&*shell.store, from, to, |sealed, seq| {
        let r = sealed.record();
        let cut = |what: String| {
            disproved(format!(
                "record {seq} {what}; export the records before it with --to seq:{}",
                seq.saturating_sub(1)
            ))
        };
        if r.seq != seq {
            return Err(cut("is missing".into()));
        }
        if !sealed.hash_is_intact() {
            return Err(cut("is damaged: its hash is not the hash of its body".into()));
        }
        if r.prev_hash != prev {
            return Err(cut(format!("does not chain to record {}", seq - 1)));
        }
        readable_event(r).map_err(|e| cut(format!("holds no event this usertrail reads ({e})")))?;
        prev = r.hash;
        Ok(())
    })
    .await?;
    // Second pass: the lines, buffered, as the checks found them.
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut *out.w);
    for_pages(&*shell.store, from, to, |sealed, _| {
        let line =
            export_line(sealed).map_err(|e| disproved(format!("record {}: {e}", sealed.record().seq)))?;
        serde_json::to_writer(&mut w, &line).map_err(|e| crate::output::broken_pipe(e.into()))?;
        w.write_all(b"\n").map_err(crate::output::broken_pipe)
    })
    .await?;
    w.flush().map_err(crate::output::broken_pipe)
}

/// Calls `f` on each stored record from `from` to `to`, a page at a time,
/// with the seq it should have; a record missing from the range is named.
async fn for_pages(
    store: &dyn EventStore,
    from: u64,
    to: u64,
    mut f: impl FnMut(&Sealed, u64) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut next = from;
    while next <= to {
        let page = store.read_sealed(next, to, PAGE).await?;
        if page.is_empty() {
            return Err(disproved(format!(
                "record {next} is missing; export the records before it with --to seq:{}",
                next.saturating_sub(1)
            )));
        }
        for sealed in &page {
            f(sealed, next)?;
            next += 1;
        }
    }
    Ok(())
}

/// Whether `path` is free for a new database: absent, or an empty directory.
/// `Ok(true)`: it exists (empty), so a failed write empties it rather than
/// removing it. `flag` and `command` name it in a refusal.
pub(crate) fn new_database(path: &Path, flag: &str, command: &str) -> Result<bool, CliError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => usage(format!("cannot use {flag} {}: {e}", path.display())),
        Ok(meta) if meta.is_dir() => {
            let mut entries = std::fs::read_dir(path)
                .map_err(|e| CliError::Usage(format!("cannot use {flag} {}: {e}", path.display())))?;
            match entries.next() {
                None => Ok(true),
                Some(_) => usage(format!(
                    "{flag} {} is not empty: {command} builds a new database; name a directory that does not exist",
                    path.display()
                )),
            }
        }
        Ok(_) => usage(format!(
            "{flag} {} exists and is not a directory: {command} builds a new database",
            path.display()
        )),
    }
}

/// `usertrail restore --from FILE --db NEW`: a new log from an export,
/// each line's hash, chain and readable fields checked against its bytes,
/// and the records appended byte for byte. Anything refused leaves nothing
/// behind: a sled database goes again, and a PostgreSQL log, which keeps
/// what it is given, is given nothing until the whole file has been checked.
pub async fn restore(
    path: &Path,
    file: &Path,
    options: &RunOptions,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let read = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| CliError::Usage(format!("cannot read export {}: {e}", file.display())))
    };
    let reader = read()?;
    let dest = Destination::new(path, "--db", "restore", options).await?;
    let name = dest.name.clone();
    let restored = async {
        if !dest.keeps_a_failure() {
            return restore_into(Some(&*dest.store), reader, file).await;
        }
        restore_into(None, reader, file).await?;
        restore_into(Some(&*dest.store), read()?, file).await
    }
    .await;
    let (records, head) = dest.finish(restored).await?;
    if out.json {
        return out.json(&json!({ "records": records, "hash": hex(&head), "db": name }));
    }
    out.line(format!(
        "restored {records} records into {name}: every hash checked; head record {records}, hash {}",
        hex(&head)
    ))
}

/// Reads the export line by line, each checked, into `store` (`None`: only
/// checked); the number of records and the head's hash.
async fn restore_into(
    store: Option<&dyn EventStore>,
    mut reader: impl BufRead,
    file: &Path,
) -> Result<(u64, Hash), CliError> {
    let name = file.display().to_string();
    let mut batch = Vec::with_capacity(PAGE);
    let mut prev = GENESIS_HASH;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = std::io::Read::take(&mut reader, MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::Usage(format!("cannot read export {name}: {e}")))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if buf.len() as u64 > MAX_LINE {
            return usage(format!(
                "line {line_no} of {name} is longer than any export line ({MAX_LINE} bytes)"
            ));
        }
        let sealed = check_line(&buf, line_no, &name, prev)?;
        prev = sealed.record().hash;
        if let Some(store) = store {
            batch.push(sealed);
            if batch.len() >= PAGE {
                append(store, std::mem::take(&mut batch), &name).await?;
            }
        }
    }
    if line_no == 0 {
        return usage(format!("export {name} holds no records"));
    }
    if let Some(store) = store {
        append(store, batch, &name).await?;
    }
    Ok((line_no, prev))
}

/// Appends checked records; a refusal names its line (line N holds record N).
async fn append(store: &dyn EventStore, batch: Vec<Sealed>, name: &str) -> Result<(), CliError> {
    if batch.is_empty() {
        return Ok(());
    }
    match store.append_sealed(batch).await? {
        Ok(_) => Ok(()),
        Err(AppendRejection::NotNext { seq, what }) => {
            Err(disproved(format!("line {seq} of {name} is refused: record {seq} {what}")))
        }
        Err(other) => Err(disproved(format!("{name} is refused: {other}"))),
    }
}

/// Checks one export line: well formed (else exit 2), its hash the hash of
/// its bytes, chained to the line before, and every readable field what
/// the bytes say (else exit 3); the record it carries.
fn check_line(text: &[u8], line_no: u64, name: &str, prev: Hash) -> Result<Sealed, CliError> {
    let malformed = |what: String| CliError::Usage(format!("line {line_no} of {name} is malformed: {what}"));
    let refused = |what: String| disproved(format!("line {line_no} of {name} is refused: {what}"));
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let line: Map<String, Value> = match serde_json::from_slice(text) {
        Ok(Value::Object(line)) => line,
        Ok(_) => return Err(malformed("not a JSON object".into())),
        Err(e) => return Err(malformed(format!("not JSON ({e})"))),
    };
    let string = |key: &str| match line.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(malformed(format!("no \"{key}\" string"))),
    };
    let bytes = unbase64(string("bytes")?).ok_or_else(|| malformed("\"bytes\" is not base64".into()))?;
    let hash = parse_hex(string("hash")?).ok_or_else(|| malformed("\"hash\" is not 64 hex digits".into()))?;
    let sealed = Sealed::from_hashed(&bytes)
        .map_err(|e| refused(format!("its bytes are no usertrail record ({e})")))?;
    let r = sealed.record();
    if r.hash != hash {
        return Err(refused("its hash is not the SHA-256 of its bytes".into()));
    }
    if r.seq != line_no {
        if line_no == 1 {
            return usage(format!(
                "{name} starts at record {}: restore needs an export from record 1 (export log without --from)",
                r.seq
            ));
        }
        return Err(refused(format!("it holds record {} where record {line_no} belongs", r.seq)));
    }
    if r.prev_hash != prev {
        return Err(refused(format!("record {} does not chain to the line before", r.seq)));
    }
    let expected = export_line(&sealed).map_err(|e| refused(format!("record {}: {e}", r.seq)))?;
    let Value::Object(expected) = expected else {
        return Err(refused("its record has no readable form".into()));
    };
    for (key, said) in &expected {
        let Some(given) = line.get(key) else {
            return Err(malformed(format!("no \"{key}\"")));
        };
        if !same(key, given, said) {
            return Err(refused(format!(
                "its \"{key}\" says {}, its bytes say {}",
                domain::limits::quote(&given.to_string()),
                domain::limits::quote(&said.to_string())
            )));
        }
    }
    // A claim of an origin the bytes do not carry is a disagreement too.
    for key in ["runBy", "writtenAt"] {
        if line.contains_key(key) && !expected.contains_key(key) {
            return Err(refused(format!(
                "its \"{key}\" is not in its bytes (record {} keeps no origin)",
                r.seq
            )));
        }
    }
    Ok(sealed)
}

/// Whether a readable field says what the bytes say: times as instants and
/// ids as UUIDs (however a tool reformatted them), the rest as JSON values.
fn same(key: &str, given: &Value, said: &Value) -> bool {
    match (key, given.as_str(), said.as_str()) {
        ("at" | "writtenAt", Some(g), Some(s)) => {
            let time = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.to_utc());
            time(g).is_some() && time(g) == time(s)
        }
        ("eventId" | "correlationId", Some(g), Some(s)) => {
            let id = |t: &str| uuid::Uuid::parse_str(t).ok();
            id(g).is_some() && id(g) == id(s)
        }
        ("prevHash" | "hash", Some(g), Some(s)) => {
            parse_hex(&g.to_ascii_lowercase()).is_some_and(|g| Some(g) == parse_hex(s))
        }
        _ => given == said,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_what_is_not_canonical() {
        // RFC 4648's test vectors.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(unbase64(encoded).as_deref(), Some(plain.as_bytes()));
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unbase64(&base64(&all)), Some(all));
        for bad in ["Zg=", "Zg=a", "Z===", "Zh==", "Zm9v!A==", "Zg==Zg=="] {
            assert_eq!(unbase64(bad), None, "{bad}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_other_lengths_and_digits() {
        let hash: Hash = std::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_hex(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex(&hex(&hash)[1..]), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
        assert_eq!(parse_hex(&"é".repeat(32)), None);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(text in "\\PC{0,80}") {
            let _ = unbase64(&text);
            let _ = parse_hex(&text);
        }
    }
}
