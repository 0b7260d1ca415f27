//! Digests, the verifiable export of the log, and restore (issue 27): what an auditor checks without us.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tests::Sandbox;

const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";

/// A history with an environment, sync passes, a profile change and a refusal.
fn scenario(sb: &mut Sandbox, bobs_surname: &str) {
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 10");
    sb.ok("env create --name Sales --type production");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok("sync");
    sb.ok(&format!("user create --upn {BOB} --first Bob --last {bobs_surname} --license DYN365_SALES"));
    sb.ok(&format!("user update --upn {ALICE} --city Lyon --title Seller"));
    sb.fails(&format!("user create --upn {ALICE} --first A --last B"), 1);
    sb.ok("sync");
    sb.ok(&format!("user license remove --upn {BOB} --sku DYN365_SALES"));
    sb.ok("sync");
}

fn write(sb: &Sandbox, name: &str, text: &str) -> PathBuf {
    let path = sb.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `export log` with `flags`, saved as `name`.
fn export(sb: &mut Sandbox, flags: &str, name: &str) -> (PathBuf, Vec<Value>) {
    let text = sb.ok(&format!("export log {flags}"));
    let lines = text.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    (write(sb, name, &text), lines)
}

/// Runs the standard-library checker of README's "For auditors" on `file`.
fn python_check(file: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("check_export.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3 runs the export checker (CI has it)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// Removes the log's chunks from the one holding `seq` on, as sled's
/// recovery does when it takes a damaged message for the end of its log
/// (store/tests/witness.rs); returns the seq the log now ends at.
fn lose_tail_from(db: &Path, seq: u64) -> u64 {
    let sled = sled::Config::new().path(db.join("live")).open().unwrap();
    let events = sled.open_tree("events").unwrap();
    let first = |key: &[u8]| u64::from_be_bytes(key[1..9].try_into().unwrap());
    let chunks: Vec<u64> = events.scan_prefix(b"r").keys().map(|k| first(&k.unwrap())).collect();
    let start = chunks.iter().copied().filter(|&c| c <= seq).max().unwrap();
    for c in chunks.iter().filter(|&&c| c >= start) {
        let mut key = vec![b'r'];
        key.extend_from_slice(&c.to_be_bytes());
        events.remove(key).unwrap();
    }
    sled.flush().unwrap();
    start - 1
}

#[test]
fn l3_a_digest_holds_while_the_log_extends_it_and_fails_on_another_history_or_a_lost_tail() {
    let mut sb = Sandbox::contoso();
    scenario(&mut sb, "Jones");
    let digest = sb.json("digest");
    let n = sb.records();
    assert_eq!(digest["seq"], n);
    assert_eq!(digest["format"], 1);
    assert_eq!(digest["tenant"], "contoso.onmicrosoft.com");
    assert_eq!(digest["hash"].as_str().map(str::len), Some(64));
    assert!(digest["at"].as_str().is_some_and(|t| t.starts_with("2026-")), "{digest}");
    let file = write(&sb, "digest.json", &digest.to_string());

    let holds = sb.ok(&format!("verify --digest {}", file.display()));
    assert!(holds.starts_with(&format!("digest of record {n} holds")), "{holds}");
    // The log goes on: the digest still holds, chained to the new head.
    sb.ok(&format!("user block --upn {BOB}"));
    sb.ok("sync");
    let holds = sb.json(&format!("verify --digest {}", file.display()));
    assert_eq!((holds["holds"].as_bool(), holds["head"].as_u64()), (Some(true), Some(sb.records())));

    // Another history of the same length, its own chain whole: not ours.
    let mut other = Sandbox::contoso();
    scenario(&mut other, "Jonas");
    assert_eq!(other.records(), n, "the same length");
    assert!(other.ok("verify").contains("intact"), "its own chain is whole");
    let err = other.fails(&format!("verify --digest {}", file.display()), 3);
    assert!(err.contains(&format!("record {n} differs from the digest")), "{err}");

    // The log loses the records from the digest's on.
    let ends = lose_tail_from(&sb.db(), n);
    assert!(ends < n);
    let err = sb.fails(&format!("verify --digest {}", file.display()), 3);
    assert!(
        err.contains(&format!("the digest's record {n} is not in this log, which ends at record {ends}")),
        "{err}"
    );
    // verify names the loss, and the way to keep what is left.
    let err = sb.fails("verify", 3);
    assert!(
        err.contains(&format!("usertrail export log --to seq:{ends}"))
            && err.contains("usertrail restore --from"),
        "{err}"
    );

    // That recovery: the intact part exported and restored is a usable log.
    let (intact, lines) = export(&mut sb, &format!("--to seq:{ends}"), "intact.jsonl");
    assert_eq!(lines.len() as u64, ends);
    assert!(python_check(&intact).0);
    let new = sb.dir().join("recovered.db");
    sb.ok(&format!("restore --from {} --db {}", intact.display(), new.display()));
    let db = format!("--db {}", new.display());
    assert!(sb.ok(&format!("verify {db}")).contains(&format!("verified {ends} records")));
    assert_eq!(sb.json(&format!("user list {db}")), sb.json(&format!("user list --at seq:{ends}")));
    sb.ok(&format!("user create --upn carol@contoso.onmicrosoft.com --first Carol --last Diaz {db}"));
    assert!(sb.ok(&format!("verify {db}")).contains("intact"));
}

#[test]
fn a_malformed_digest_file_is_bad_input() {
    let mut sb = Sandbox::contoso();
    let good = sb.json("digest");
    let hash = good["hash"].as_str().unwrap().to_owned();
    let cases = [
        ("not JSON", "digest of record 1".to_owned()),
        ("format 2", good.to_string().replace("\"format\":1", "\"format\":2")),
        ("short hash", good.to_string().replace(&hash, &hash[2..])),
        ("no seq", good.to_string().replace("\"seq\":", "\"sequence\":")),
        ("seq 0", good.to_string().replace(&format!("\"seq\":{}", good["seq"]), "\"seq\":0")),
    ];
    for (case, text) in cases {
        assert_ne!(text, good.to_string(), "{case}: the case changes the digest");
        let file = write(&sb, "digest.json", &text);
        let err = sb.fails(&format!("verify --digest {}", file.display()), 2);
        assert!(err.contains("digest.json"), "{case}: {err}");
    }
    sb.fails(&format!("verify --digest {}", sb.dir().join("absent.json").display()), 2);
}

#[test]
fn l3_an_export_checks_without_usertrail_and_restores_into_the_same_views_at_every_point() {
    let mut sb = Sandbox::contoso();
    scenario(&mut sb, "Jones");
    let n = sb.records();
    let (file, lines) = export(&mut sb, "", "log.jsonl");
    assert_eq!(lines.len() as u64, n);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], i as u64 + 1);
        for key in
            ["stream", "version", "eventId", "at", "actor", "correlationId", "prevHash", "hash", "bytes"]
        {
            assert!(!line[key].is_null(), "line {i} has {key}: {line}");
        }
        assert!(line["event"]["type"].is_string(), "{line}");
        // The sandbox's machine wrote every record: format 2, origin kept.
        assert_eq!(line["runBy"]["account"], tests::SANDBOX_ACCOUNT);
        assert!(line["writtenAt"].is_string());
    }
    assert_eq!(lines[0]["prevHash"], "0".repeat(64));
    assert_eq!(lines[0]["event"]["type"], "TenantInitialized");
    assert_eq!(lines[0]["event"]["domain"], "contoso.onmicrosoft.com");
    let (ok, said) = python_check(&file);
    assert!(ok && said.contains(&format!("chain intact: records 1-{n}")), "{said}");

    let new = sb.dir().join("restored.db");
    let restored = sb.ok(&format!("restore --from {} --db {}", file.display(), new.display()));
    assert!(restored.contains(&format!("restored {n} records")), "{restored}");
    let db = format!("--db {}", new.display());
    assert!(sb.ok(&format!("verify {db}")).contains(&format!("verified {n} records")));
    // The same digest: the same records, byte for byte.
    assert_eq!(sb.json(&format!("digest {db}")), sb.json("digest"));
    let now = sb.now();
    for at in ["".to_owned(), "--at seq:5".into(), "--at seq:12".into(), format!("--at seq:{}", n - 1)] {
        for view in ["history --limit 100", "user list", "systemusers --env Sales"] {
            let line = format!("{view} {at} --now {now}");
            assert_eq!(sb.json(&format!("{line} {db}")), sb.json(&line), "{line}");
        }
    }
    // An export of the restored log is the same file.
    let again = sb.ok(&format!("export log {db}"));
    assert_eq!(again, std::fs::read_to_string(&file).unwrap());
}

#[test]
fn l3_restore_refuses_a_changed_line_naming_it_and_leaves_nothing_behind() {
    let mut sb = Sandbox::contoso();
    scenario(&mut sb, "Jones");
    let (_, lines) = export(&mut sb, "", "log.jsonl");
    let bob =
        lines.iter().position(|l| l["event"]["type"] == "UserCreated" && l.to_string().contains("Jones"));
    let bob = bob.expect("Bob's creation is exported");
    let changed = |f: &dyn Fn(&mut Value)| {
        let mut lines = lines.clone();
        f(&mut lines[bob]);
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    };
    let reencoded = |l: &mut Value, from: &str, to: &str| {
        let bytes = l["bytes"].as_str().map(cli::proof::unbase64).unwrap().unwrap();
        let at = bytes.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
        let mut bytes = bytes;
        bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
        l["bytes"] = Value::String(cli::proof::base64(&bytes));
    };
    let cases: Vec<(&str, String, bool, &str)> = vec![
        // The readable event says Jonas; its bytes (and hash) still say Jones.
        (
            "a readable field",
            changed(&|l| l["event"] = Value::String(l["event"].to_string().replace("Jones", "Jonas"))),
            true,
            "\"event\"",
        ),
        ("the actor", changed(&|l| l["actor"] = "mallory@contoso.onmicrosoft.com".into()), true, "\"actor\""),
        (
            "the bytes",
            changed(&|l| reencoded(l, "Jones", "Jonas")),
            false,
            "hash is not the SHA-256 of its bytes",
        ),
        (
            "a line dropped",
            {
                let mut t = lines.clone();
                t.remove(bob);
                t.iter().map(|l| format!("{l}\n")).collect()
            },
            false,
            "where record",
        ),
    ];
    let line_no = bob + 1;
    for (case, text, python_passes, expected) in cases {
        let file = write(&sb, "tampered.jsonl", &text);
        assert_eq!(python_check(&file).0, python_passes, "{case}: the checker sees the chain only");
        let new = sb.dir().join("restored.db");
        let err = sb.fails(&format!("restore --from {} --db {}", file.display(), new.display()), 3);
        assert!(err.contains(&format!("line {line_no} of")) && err.contains(expected), "{case}: {err}");
        assert!(!new.exists(), "{case}: nothing left behind");
    }
    // A line that is no JSON is bad input, named too; an empty directory stays, empty.
    let file = write(&sb, "broken.jsonl", &format!("{}\nnot json\n", lines[0]));
    let empty = sb.dir().join("empty.db");
    std::fs::create_dir(&empty).unwrap();
    let err = sb.fails(&format!("restore --from {} --db {}", file.display(), empty.display()), 2);
    assert!(err.contains("line 2 of"), "{err}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    // The database restored into must be new.
    let (good, _) = export(&mut sb, "", "log.jsonl");
    let err = sb.fails(&format!("restore --from {} --db {}", good.display(), sb.db().display()), 2);
    assert!(err.contains("is not empty"), "{err}");
    assert!(sb.ok("verify").contains("intact"), "the existing log untouched");
}

#[test]
fn an_export_range_checks_on_its_own_but_only_an_export_from_record_1_restores() {
    let mut sb = Sandbox::contoso();
    scenario(&mut sb, "Jones");
    let (file, lines) = export(&mut sb, "--from seq:3 --to seq:7", "part.jsonl");
    assert_eq!(lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
    let (ok, said) = python_check(&file);
    assert!(ok && said.contains("records 3-7"), "{said}");
    let new = sb.dir().join("part.db");
    let err = sb.fails(&format!("restore --from {} --db {}", file.display(), new.display()), 2);
    assert!(err.contains("starts at record 3"), "{err}");
    assert!(!new.exists());
    // --to as a time: the records stamped up to then.
    let at = lines[2]["at"].as_str().unwrap().to_owned();
    let (_, upto) = export(&mut sb, &format!("--to {at}"), "upto.jsonl");
    let (_, all) = export(&mut sb, "", "all.jsonl");
    let stamped_then = all.iter().filter(|l| l["at"] == at.as_str()).map(|l| l["seq"].as_u64()).max();
    assert_eq!(upto.last().map(|l| l["seq"].as_u64()), stamped_then, "every record stamped then, none after");
    assert!(upto.len() >= 5 && upto.len() < all.len());
    for bad in ["--from seq:0", "--from 3", "--to seq:9999", "--to yesterday", "--from seq:9 --to seq:3"] {
        sb.fails(&format!("export log {bad}"), 2);
    }
}
