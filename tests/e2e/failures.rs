//! Bad input, refused commands and store faults: exit codes, one line, nothing half-written.

use tests::Sandbox;

use crate::log;

const ALICE: &str = "alice@contoso.onmicrosoft.com";

#[test]
fn bad_input_exits_2_with_one_line_and_appends_nothing() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 1");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    sb.ok("group create --name Sales-SG");
    let before = log(&sb).len();
    let cases = [
        ("user create --upn alice.contoso.com --first A --last B", "malformed UPN"),
        (&format!("user license assign --upn {ALICE} --sku NOPE") as &str, "unknown SKU NOPE"),
        ("user block --upn nobody@contoso.onmicrosoft.com", "unknown user nobody@contoso.onmicrosoft.com"),
        ("group add-member --group Nope --upn alice@contoso.onmicrosoft.com", "unknown group Nope"),
        ("sku add --sku X --kind d365 --seats -1", "seats cannot be negative"),
        ("sku add --sku X --kind d365", "--seats"),
        ("sku add --sku X --kind premium --seats 1", "unknown SKU kind 'premium'"),
        ("user create --upn bob@contoso.onmicrosoft.com --last B", "--first"),
        ("group add-member --group Sales-SG", "--upn"),
        ("user block --upn bob@contoso.onmicrosoft.com --now yesterday", "bad --now 'yesterday'"),
        (
            "user block --upn bob@contoso.onmicrosoft.com --now 2020-01-01T00:00:00Z",
            "time never goes backwards",
        ),
        ("user list --at seq:x", "bad --at"),
        ("user frobnicate", "unrecognized subcommand"),
        (
            "user block --upn alice@contoso.onmicrosoft.com --as ghost@contoso.onmicrosoft.com",
            "unknown actor",
        ),
    ];
    for (line, says) in cases {
        let err = sb.fails(line, 2);
        assert!(err.contains(says), "`{line}` said: {err}");
    }
    assert_eq!(log(&sb).len(), before, "bad input appends nothing");
}

#[test]
fn a_duplicate_upn_is_refused_with_d1() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    let err = sb.fails("user create --upn Alice@CONTOSO.onmicrosoft.com --first A --last S", 1);
    assert!(err.starts_with("rejected (D1): UPN Alice@CONTOSO.onmicrosoft.com is already taken"), "{err}");
}

#[test]
fn commands_need_a_database_first() {
    let mut sb = Sandbox::new();
    let err = sb.fails("user list", 2);
    assert!(err.contains("run `usertrail init` first"), "{err}");
    // A read makes no log: the next one is refused alike.
    assert!(sb.fails("user list", 2).contains("run `usertrail init` first"));
    if !tests::on_postgres_by_default() {
        assert!(!sb.db().exists(), "a read does not create a database");
    }
}

#[test]
fn a_file_that_is_not_a_database_exits_3() {
    let mut sb = Sandbox::new();
    let file = sb.dir().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    let err = sb.fails(&format!("user list --db {}", file.display()), 3);
    assert!(err.contains("is not a usertrail database"), "{err}");
}

#[test]
fn damaged_database_files_exit_3_without_a_panic() {
    let mut sb = Sandbox::contoso();
    let mut files = vec![sb.db()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            std::fs::write(&path, vec![0x5A; 8192]).unwrap();
        }
    }
    let run = sb.run("user list");
    assert_eq!(run.code, 3, "stdout {} stderr {}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn l3_verify_exits_3_naming_a_tampered_record() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --city Lyon"));
    assert!(sb.ok("verify").contains("intact"));
    {
        let store = store::SledStore::open(sb.db(), sb.open_options()).unwrap();
        let mut bytes = store.raw_record(4).unwrap().unwrap();
        let at = bytes.windows(4).position(|w| w == b"Lyon").expect("the city is in record 4");
        bytes[at..at + 4].copy_from_slice(b"Nice");
        store.raw_set_record(4, Some(&bytes)).unwrap();
    }
    let err = sb.fails("verify", 3);
    assert!(err.contains("verify failed at record 4"), "{err}");
}

#[test]
fn a_directory_of_other_files_is_never_turned_into_a_database() {
    let mut sb = Sandbox::new();
    let documents = sb.dir().join("Documents");
    std::fs::create_dir(&documents).unwrap();
    std::fs::write(documents.join("notes.txt"), "mine").unwrap();
    let err = sb.fails(&format!("user list --db {}", documents.display()), 3);
    assert!(err.contains("is not a usertrail database"), "{err}");
    let err = sb.fails(
        &format!(
            "init --tenant contoso.onmicrosoft.com --admin admin@contoso.onmicrosoft.com --db {}",
            documents.display()
        ),
        3,
    );
    assert!(err.contains("holds other files"), "{err}");
    assert_eq!(std::fs::read_dir(&documents).unwrap().count(), 1, "nothing was written next to notes.txt");
}

/// Issue 29: every part of every directory snapshot zeroed on disk (its
/// table and MAC intact): a command still decides on the log's directory,
/// reading it from the log where no part can be read, and `verify` names
/// each damaged cache.
#[test]
fn a_directory_whose_snapshot_parts_are_all_damaged_still_decides_on_the_log_and_verify_names_them() {
    let mut sb = Sandbox::contoso();
    for i in 0..300 {
        sb.ok(&format!("user create --upn user{i}@contoso.onmicrosoft.com --first U --last N{i}"));
    }
    sb.ok("user list");
    let mut damaged = 0;
    for name in ["aggregate/tenant", "parts/aggregate/tenant"] {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        let Ok(files) = std::fs::read_dir(sb.db().join("snapshots").join(hex)) else { continue };
        for file in files {
            let path = file.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            // utc2: tag, parts, covered bytes ending in their length, hash, MAC.
            let end = bytes.len() - 64;
            let length = u64::from_le_bytes(bytes[end - 8..end].try_into().unwrap()) as usize;
            let parts = 4..end - 8 - length;
            if !parts.is_empty() {
                bytes[parts].fill(0);
                std::fs::write(&path, bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "a snapshot holding parts");
    sb.ok("user update --upn user150@contoso.onmicrosoft.com --last Boss");
    sb.fails("user create --upn user7@contoso.onmicrosoft.com --first U --last N7", 1);
    let users = sb.json("user list");
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 301, "the admin and every user");
    let boss = users.iter().find(|u| u["userPrincipalName"] == "user150@contoso.onmicrosoft.com").unwrap();
    assert_eq!(boss["surname"], "Boss");
    let verify = sb.run("verify");
    assert_eq!(verify.code, 3, "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("has a part that cannot be read"), "{}", verify.stdout);
}

/// The files of the directory's snapshots and of the parts they hold apart,
/// by path.
fn directory_caches(sb: &Sandbox) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for name in ["aggregate/tenant", "parts/aggregate/tenant"] {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        let Ok(dir) = std::fs::read_dir(sb.db().join("snapshots").join(hex)) else { continue };
        for file in dir {
            let path = file.unwrap().path();
            files.insert(path.clone(), std::fs::read(path).unwrap());
        }
    }
    files
}

/// A writer killed right after it saved a tip of the directory, before it
/// removed the tip it started from and the parts only that one held, leaves
/// both (`cli/tests/crash.rs` met it). The tips saved after keep the parts
/// the one left behind points at: every cache stays readable, and `verify`
/// passes.
#[test]
fn a_tip_a_killed_writer_left_behind_keeps_its_parts_and_verify_passes() {
    let mut sb = Sandbox::contoso();
    for i in 0..300 {
        sb.ok(&format!("user create --upn user{i}@contoso.onmicrosoft.com --first U --last N{i}"));
    }
    let (mut restored, mut replaced_after) = (false, 0);
    for i in 0..300 {
        let before = directory_caches(&sb);
        sb.ok(&format!("user update --upn user{}@contoso.onmicrosoft.com --last L{i}", i * 37 % 300));
        let after = directory_caches(&sb);
        let gone: Vec<_> = before.iter().filter(|(path, _)| !after.contains_key(*path)).collect();
        if gone.is_empty() {
            continue;
        }
        if !restored {
            // The kill: what this command removed is back.
            for (path, bytes) in gone {
                std::fs::write(path, bytes).unwrap();
            }
            restored = true;
        } else {
            replaced_after += 1;
            if replaced_after == 3 {
                break;
            }
        }
    }
    assert!(restored && replaced_after == 3, "tips replaced: restored {restored}, then {replaced_after}");
    let verify = sb.run("verify");
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let users = sb.json("user list");
    assert_eq!(users.as_array().unwrap().len(), 301, "the admin and every user");
}
