//! A local attacker (issue 25): a user who can run usertrail and type any
//! `--as` or `--now`. Each test reproduces an attack and checks it does no harm.

use serde_json::{json, Value};
use store::{Append, ExpectedVersion, Metadata, NewEvent, SledStore};
use tests::{Sandbox, SANDBOX_ACCOUNT, SANDBOX_HOST};

const MALLORY: &str = "mallory@contoso.onmicrosoft.com";
const ALICE: &str = "alice@contoso.onmicrosoft.com";

/// The newest audit record.
fn newest(sb: &mut Sandbox) -> Value {
    sb.json("history --limit 1")[0].clone()
}

/// Finding 4: a `--now` in 2099 once stamped its refusal's audit record in
/// 2099, and every later command on the clock was refused (time never goes
/// backwards). It is now refused as bad input before anything is written.
#[test]
fn a_now_far_ahead_of_the_machine_clock_is_refused_and_the_log_keeps_its_time() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {MALLORY} --first Mallory --last M"));
    let before = sb.records();
    let err = sb.fails(
        &format!(
            "--as {MALLORY} --now 2099-01-01T00:00:00Z user admin-role add --upn {MALLORY} --role global"
        ),
        2,
    );
    assert!(err.contains("--now") && err.contains("5 minutes ahead"), "{err}");
    assert_eq!(sb.records(), before, "nothing appended, not even an audit record");
    // Later commands on the machine's clock (the sandbox's) still land.
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last A"));
    let record = newest(&mut sb);
    assert_eq!(record["activityDateTime"], record["writtenAt"]);
    assert!(record["activityDateTime"].as_str().unwrap().starts_with("2026-01-05"), "{record}");
    // Up to five minutes ahead is a clock's drift, not an attack.
    let ahead = (chrono::DateTime::parse_from_rfc3339(&sb.now()).unwrap() + chrono::Duration::minutes(4))
        .to_rfc3339();
    sb.ok(&format!("user block --upn {ALICE} --now {ahead}"));
    let err = sb.fails("user list --now 2099-01-01T00:00:00Z", 2);
    assert!(err.contains("USERTRAIL_ALLOW_FUTURE=1"), "{err}");
}

/// Finding 4 and issue 27 point 4: beside the stamped time (any `--now`)
/// and the typed actor (any `--as`), each record keeps the machine's clock,
/// account and host, and `history --json` shows them.
#[test]
fn each_record_keeps_the_machine_clock_account_and_host_beside_its_stamped_time() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 5");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last A --license DYN365_SALES"));
    let stamped = sb.now();
    sb.advance_days(3);
    // Back-dated on purpose (`--now` within the log's order): the machine's
    // clock, three days on, is kept beside it.
    sb.ok(&format!("user block --upn {ALICE} --now {stamped}"));
    let record = newest(&mut sb);
    let run_by = json!({ "account": SANDBOX_ACCOUNT, "host": SANDBOX_HOST });
    assert_eq!(record["initiatedBy"]["user"]["userPrincipalName"], "admin@contoso.onmicrosoft.com");
    assert_eq!(record["initiatedBy"]["user"]["runBy"], run_by);
    assert_eq!(record["activityDateTime"], "2026-01-05T09:04:00Z");
    assert_eq!(record["writtenAt"], "2026-01-08T09:03:00Z", "the machine's clock, not --now");
    sb.ok("env create --name Sales --type production");
    sb.ok("sync");
    let sync = newest(&mut sb);
    assert_eq!(sync["initiatedBy"]["app"]["displayName"], "sync");
    assert_eq!(sync["initiatedBy"]["app"]["runBy"], run_by);
}

/// Records written before the envelope kept the machine (format 1) stay as
/// they were: they read, `verify` passes over them and the newer records
/// chained after them, and `history --json` says they recorded none (null).
#[test]
fn records_from_before_read_verify_and_say_they_recorded_no_machine() {
    let mut original = Sandbox::contoso();
    original.ok(&format!("user create --upn {ALICE} --first Alice --last A"));
    let old = Sandbox::new();
    let records = SledStore::open(original.db(), original.open_options())
        .unwrap()
        .read_log_blocking(1, u64::MAX, usize::MAX)
        .unwrap();
    {
        // Written again without an origin, as an older usertrail wrote them.
        let store = SledStore::open(old.db(), old.open_options()).unwrap();
        let appends: Vec<Append> = records
            .iter()
            .map(|r| Append {
                stream: r.stream.clone(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: r.event_id,
                    event_type: r.event_type.clone(),
                    schema_version: r.schema_version,
                    payload: r.payload.clone(),
                }],
                meta: Metadata {
                    recorded_at: r.recorded_at,
                    actor: r.actor.clone(),
                    correlation_id: r.correlation_id,
                    causation: r.causation.clone(),
                    origin: None,
                },
            })
            .collect();
        store.append_all_blocking(&appends).unwrap().unwrap();
        let raw = store.raw_record(1).unwrap().unwrap();
        assert_eq!(raw[0], 1, "record format 1, as before");
    }
    let mut sb = old;
    // The copied records end at the original's clock: move past them.
    sb.advance_days(30);
    let history = sb.json("history");
    assert_eq!(history.as_array().unwrap().len(), 2);
    for record in history.as_array().unwrap() {
        assert_eq!(record["initiatedBy"]["user"]["runBy"], Value::Null, "none recorded");
        assert_eq!(record["writtenAt"], Value::Null, "none recorded");
    }
    sb.ok(&format!("user block --upn {ALICE}"));
    assert_eq!(newest(&mut sb)["initiatedBy"]["user"]["runBy"]["account"], SANDBOX_ACCOUNT);
    let verified = sb.json("verify");
    assert_eq!(
        (verified["ok"].clone(), verified["records"].as_u64()),
        (json!(true), Some(records.len() as u64 + 1))
    );
}

const UA: &str = "ua@contoso.onmicrosoft.com";

/// Sales, with a group team on Admins-SG holding System Administrator, and
/// `helpers` (UPN, `user create` flags) created and synced.
fn admins_team(helpers: &[(&str, &str)]) -> Sandbox {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 10");
    for (upn, flags) in helpers {
        sb.ok(&format!("user create --upn {upn} --first H --last H --license DYN365_SALES {flags}"));
    }
    sb.ok("group create --name Admins-SG");
    sb.ok("env create --name Sales --type production --app sales");
    sb.ok("team create --env Sales --name Admins --group Admins-SG");
    sb.ok("team role assign --env Sales --team Admins --role 'System Administrator'");
    sb.ok("sync");
    sb
}

fn r7(findings: &Value) -> Vec<Value> {
    findings.as_array().unwrap().iter().filter(|f| f["rule"] == "R7").cloned().collect()
}

/// Finding 8: a User Administrator adds itself to a group that backs a
/// group team holding System Administrator; after `sync` it holds the role.
/// The path is allowed (the services allow it); `review` now names it: the
/// group, the team, the role, who may change the group's members, and the
/// record that added the member.
#[test]
fn r7_elevation_through_a_group_team_is_a_high_review_finding() {
    let mut sb = admins_team(&[(UA, "--admin-role user-admin")]);
    // Before anyone uses the path, the path itself is a finding.
    let before = r7(&sb.json("review --env Sales"));
    assert_eq!(before.len(), 1, "{before:?}");
    sb.ok(&format!("--as {UA} group add-member --group Admins-SG --upn {UA}"));
    let added = sb.json("history --limit 1")[0]["seq"].as_u64().unwrap();
    sb.ok("sync");
    let roles = sb.json("systemusers --env Sales");
    let ua = roles.as_array().unwrap().iter().find(|r| r["domainname"] == UA).unwrap();
    assert!(ua["roles"].as_array().unwrap().contains(&json!("System Administrator")), "the path works: {ua}");

    let findings = r7(&sb.json("review --env Sales"));
    // About the environment, not a user (issue 30): no upn.
    let group = findings.iter().find(|f| f["upn"].is_null()).expect("the group's finding");
    assert_eq!(group["environment"], "Sales");
    assert_eq!(group["severity"], "high");
    let detail = group["detail"].as_str().unwrap();
    for part in ["group Admins-SG", "team Admins", "System Administrator", UA, "User Administrator"] {
        assert!(detail.contains(part), "{part} in {detail}");
    }
    let member = findings.iter().find(|f| f["upn"] == UA).expect("the member's finding");
    assert_eq!(member["severity"], "high");
    assert!(member["evidence"].as_array().unwrap().contains(&json!(added)), "{member}");
    let detail = member["detail"].as_str().unwrap();
    for part in
        ["Admins-SG", "Admins", "System Administrator", &format!("record {added}"), &format!("by {UA}")]
    {
        assert!(detail.contains(part), "{part} in {detail}");
    }
    // The table shows it too.
    let table = sb.ok("review --env Sales");
    assert!(table.contains("R7"), "{table}");
}

/// A group owner without the role is a manager too; one the Global
/// Administrator added is not "added by someone who does not hold it".
#[test]
fn r7_a_group_owner_without_the_role_is_named_and_an_admin_s_addition_is_not() {
    let mut sb = admins_team(&[(ALICE, ""), ("bob@contoso.onmicrosoft.com", "")]);
    sb.ok(&format!("group add-owner --group Admins-SG --upn {ALICE}"));
    sb.ok("group add-member --group Admins-SG --upn bob@contoso.onmicrosoft.com");
    sb.ok("sync");
    let findings = r7(&sb.json("review --env Sales"));
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0]["detail"].as_str().unwrap().contains(&format!("{ALICE} (owner)")), "{findings:?}");
}

/// A clean setup: the same team, but no one who may change the group's
/// members lacks System Administrator (only the Global Administrator), and
/// its members were added by that administrator: no R7 finding.
#[test]
fn r7_a_group_team_whose_managers_hold_its_roles_is_no_finding() {
    let mut sb = admins_team(&[(ALICE, "")]);
    sb.ok(&format!("group add-member --group Admins-SG --upn {ALICE}"));
    sb.ok("sync");
    assert_eq!(r7(&sb.json("review --env Sales")), Vec::<Value>::new());
}

/// Finding 2's Contoso: Mallory a Password Administrator (`role`), and
/// enough records after her that the directory's snapshots reach past her;
/// returns the newest one's file (a tip, left by a command at the head).
fn mallory_with_a_tip(sb: &mut Sandbox, role: &str) -> std::path::PathBuf {
    sb.ok(&format!("user create --upn {MALLORY} --first Mallory --last M"));
    sb.ok(&format!("user admin-role add --upn {MALLORY} --role {role}"));
    for i in 0..20 {
        sb.ok(&format!("user create --upn u{i}@contoso.onmicrosoft.com --first U --last N{i}"));
    }
    sb.ok("user list");
    let dir = sb.db().join("snapshots").join(hex("aggregate/tenant"));
    let newest = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).max();
    newest.expect("a snapshot of the directory")
}

fn hex(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A cache file's pieces: its tag, its state, and its trailer (the bound
/// record's hash and the MAC; `store::snapshots`). The directory's is
/// parted (`utc2`): its state is its parts, then what the MAC covers (the
/// head, the parts' table, their count and this length).
fn parts(bytes: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let (tag, rest) = bytes.split_at(4);
    let (state, trailer) = rest.split_at(rest.len() - 64);
    (tag, state, trailer)
}

/// Of a parted cache's state, what its MAC covers.
fn covered(state: &[u8]) -> &[u8] {
    let length = u64::from_le_bytes(state[state.len() - 8..].try_into().unwrap()) as usize;
    &state[state.len() - 8 - length..]
}

fn roles_of(sb: &mut Sandbox, upn: &str) -> Value {
    let list = sb.json("user list");
    let user = list.as_array().unwrap().iter().find(|u| u["userPrincipalName"] == upn).unwrap().clone();
    user["adminRoles"].clone()
}

/// Finding 2: a head snapshot edited to make a Password Administrator
/// Global (the CRC recomputed) made `user list` show her Global, let her
/// grant Global, and `verify` passed. Now the cache carries a MAC under a
/// key outside the database: the same forged state (taken from a database
/// where she is Global, every other byte alike) fails it and is a miss.
#[test]
fn a_head_snapshot_forged_to_make_a_password_admin_global_is_a_miss_and_verify_names_it() {
    let mut sb = Sandbox::contoso();
    let file = mallory_with_a_tip(&mut sb, "password-admin");
    let mut global = Sandbox::contoso();
    let theirs = mallory_with_a_tip(&mut global, "global");
    assert_eq!(file.file_name(), theirs.file_name(), "both at the same record");
    let (ours, forged) = (std::fs::read(&file).unwrap(), std::fs::read(&theirs).unwrap());
    let (tag, state, trailer) = parts(&ours);
    assert_eq!(tag, b"utc2", "the directory's cache is parted");
    let differing = state.iter().zip(parts(&forged).1).filter(|(a, b)| a != b).count();
    // A byte or so of Mallory's part, and that part's SHA-256 in the table.
    assert!(differing > 0 && differing < 40, "a forgery of a byte or so: {differing}");
    // The attacker keeps the binding (the record's hash), and cannot make the MAC.
    std::fs::write(&file, [tag, parts(&forged).1, trailer].concat()).unwrap();

    // Verify first: a command's fold, finding it a miss, writes the true
    // cache over it.
    let seq = file.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap();
    let (stdout, stderr) = verify_fails(&mut sb);
    let line = format!("cache aggregate/tenant at record {seq} fails its MAC");
    assert!(stdout.contains(&line), "{stdout}");
    assert!(stderr.contains("caches that are not the log's") && stderr.contains("the log itself is intact"));
    assert!(file.exists(), "a cache that is a miss anyway stays, as evidence");
    assert_eq!(roles_of(&mut sb, MALLORY), json!(["password-admin"]), "the log's truth, not the cache's");
    let before = sb.records();
    let refused = sb.fails(&format!("--as {MALLORY} user admin-role add --upn {MALLORY} --role global"), 1);
    assert!(refused.contains("rejected"), "{refused}");
    assert_eq!(sb.records(), before + 1, "only the refusal's audit record");
    assert_eq!(sb.run("verify").code, 0, "the fold wrote the true cache over the forged one");
}

/// `verify`, which exits 3: its stdout and stderr.
fn verify_fails(sb: &mut Sandbox) -> (String, String) {
    let run = sb.run("verify");
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    (run.stdout, run.stderr)
}

/// Finding 2, the key leaked: a forgery with a good MAC is used by commands
/// until `verify`, which re-folds the log, names it and removes it. The
/// directory's tip points at parts held apart (`parts/aggregate/tenant`):
/// the attacker forges those too, each under the key and our binding.
#[test]
fn a_forged_cache_with_a_good_mac_is_named_by_verify_and_removed() {
    let mut sb = Sandbox::contoso();
    let file = mallory_with_a_tip(&mut sb, "password-admin");
    let mut global = Sandbox::contoso();
    mallory_with_a_tip(&mut global, "global");
    let key_file = std::fs::read_dir(sb.key_dir()).unwrap().next().unwrap().unwrap().path();
    let key = std::fs::read(key_file).unwrap();
    for name in ["aggregate/tenant", "parts/aggregate/tenant"] {
        let (ours, theirs) =
            (sb.db().join("snapshots").join(hex(name)), global.db().join("snapshots").join(hex(name)));
        let Ok(entries) = std::fs::read_dir(&theirs) else { continue };
        for entry in entries {
            let their_file = entry.unwrap().path();
            let our_file = ours.join(their_file.file_name().unwrap());
            let seq = their_file.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap();
            let (forged, original) = (std::fs::read(&their_file).unwrap(), std::fs::read(&our_file).unwrap());
            let (tag, state, _) = parts(&forged);
            let hash = &parts(&original).2[..32];
            let signed = if tag == b"utc2" { covered(state) } else { state };
            let mac = mac(
                &key,
                &[&(name.len() as u64).to_le_bytes(), name.as_bytes(), &seq.to_le_bytes(), tag, signed, hash],
            );
            std::fs::write(&our_file, [tag, state, hash, &mac].concat()).unwrap();
        }
    }
    let seq = file.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap();
    let name = "aggregate/tenant";
    assert_eq!(roles_of(&mut sb, MALLORY), json!(["global"]), "with the key, a forgery is used");
    let (stdout, _) = verify_fails(&mut sb);
    assert!(stdout.contains(&format!("cache {name} at record {seq} differs from the log")), "{stdout}");
    assert!(!file.exists(), "verify removed the cache the store vouched for");
    assert_eq!(roles_of(&mut sb, MALLORY), json!(["password-admin"]));
    assert_eq!(sb.run("verify").code, 0, "nothing left to name");
}

/// HMAC-SHA256 of the parts, as the test computes it on its own.
fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Finding 2: a cache copied whole from another database (its own key,
/// another history) is a miss, and `verify` names it.
#[test]
fn a_snapshot_copied_from_another_database_is_a_miss() {
    let mut sb = Sandbox::contoso();
    let file = mallory_with_a_tip(&mut sb, "password-admin");
    let mut global = Sandbox::contoso();
    let theirs = mallory_with_a_tip(&mut global, "global");
    std::fs::copy(&theirs, &file).unwrap();
    let (stdout, _) = verify_fails(&mut sb);
    assert!(stdout.contains("cache aggregate/tenant at record"), "{stdout}");
    assert!(stdout.contains("fails its MAC"), "another database, another key: {stdout}");
    assert_eq!(roles_of(&mut sb, MALLORY), json!(["password-admin"]));
}

/// Finding 2: a database copied whole (its id, and its key with it) whose
/// history then went another way: a cache of one copied into the other
/// passes the MAC, and the binding to the record's hash makes it a miss.
#[test]
fn a_snapshot_from_a_copy_with_another_history_since_is_a_miss() {
    let mut sb = Sandbox::contoso();
    sb.ok("user create --upn carol@contoso.onmicrosoft.com --first Carol --last C");
    let mut twin = Sandbox::new();
    copy_dir(&sb.db(), &twin.db());
    copy_dir(&sb.key_dir(), &twin.key_dir());
    twin.advance_days(1);
    sb.advance_days(1);
    let theirs = mallory_with_a_tip(&mut sb, "global");
    let file = mallory_with_a_tip(&mut twin, "password-admin");
    assert_eq!(file.file_name(), theirs.file_name(), "both at the same record");
    std::fs::copy(&theirs, &file).unwrap();
    let (stdout, _) = verify_fails(&mut twin);
    assert!(stdout.contains("was folded from another history than this log's"), "{stdout}");
    assert_eq!(roles_of(&mut twin, MALLORY), json!(["password-admin"]));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Finding 2: a sync mark (no checksum then) raised to the directory's
/// version made `sync` answer "up to date" and left a removed group member
/// enabled (S4). The mark is now a cache like the others: raised, it fails
/// its MAC, and the pass looks at everyone.
#[test]
fn a_raised_sync_mark_is_a_miss_and_sync_still_disables_the_removed_member() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 20");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last A --license DYN365_SALES"));
    sb.ok("group create --name Sales-SG");
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb.ok("env create --name Sales --type production --security-group Sales-SG");
    sb.ok("sync");
    let enabled = |sb: &mut Sandbox| {
        let table = sb.json("systemusers --env Sales");
        let alice = table.as_array().unwrap().iter().find(|r| r["domainname"] == ALICE).unwrap().clone();
        alice["isdisabled"] == false
    };
    assert!(enabled(&mut sb));
    sb.ok(&format!("group remove-member --group Sales-SG --upn {ALICE}"));
    let marks = std::fs::read_dir(sb.db().join("snapshots")).unwrap().map(|e| e.unwrap().path());
    let marks: Vec<_> =
        marks.filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&hex("sync/"))).collect();
    assert_eq!(marks.len(), 1, "one environment, one mark");
    let file = std::fs::read_dir(&marks[0]).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    // The tenant version it brought in line, raised by the one removal.
    let tenant = u64::from_be_bytes(bytes[4..12].try_into().unwrap());
    bytes[4..12].copy_from_slice(&(tenant + 1).to_be_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let passes = sb.json("sync");
    assert_eq!(passes[0]["changed"], json!([ALICE]), "{passes}");
    assert!(!enabled(&mut sb), "S4: disabled once out of the group");
}

/// Finding 2: a missing key (another machine, a config directory lost)
/// makes every cache a miss, and commands answer as before; a new key is
/// made, and the caches it cannot check are gone.
#[test]
fn without_its_key_file_every_cache_is_a_miss_and_commands_are_still_right() {
    let mut sb = Sandbox::contoso();
    let file = mallory_with_a_tip(&mut sb, "password-admin");
    let keys: Vec<_> = std::fs::read_dir(sb.key_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(keys.len(), 1, "one database, one key");
    let old = std::fs::read(&keys[0]).unwrap();
    std::fs::remove_file(&keys[0]).unwrap();
    assert_eq!(roles_of(&mut sb, MALLORY), json!(["password-admin"]));
    assert!(!file.exists(), "a cache no key can check is removed");
    let new = std::fs::read(&keys[0]).unwrap();
    assert!(new.len() == 32 && new != old, "a new key, for new caches");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&sb.key_dir()), mode(&keys[0])), (0o700, 0o600));
    }
    let before = sb.records();
    sb.fails(&format!("--as {MALLORY} user admin-role add --upn {MALLORY} --role global"), 1);
    assert_eq!(sb.records(), before + 1);
    assert_eq!(sb.run("verify").code, 0);
}

/// The tenant stream's run block (its sled key and value), read from the
/// sandbox's database behind the store's back.
fn tenant_runs(sb: &Sandbox) -> (Vec<u8>, Vec<u8>) {
    let store = SledStore::open(sb.db(), sb.open_options()).unwrap();
    let prefix = [&b"s"[..], &6u16.to_be_bytes(), b"tenant"].concat();
    let mut blocks = store.raw_tree().scan_prefix(prefix);
    let (key, value) = blocks.next().expect("the tenant's runs are in a block").unwrap();
    assert!(blocks.next().is_none(), "one block");
    (key.to_vec(), value.to_vec())
}

/// Puts `value` under `key` in the sandbox's database, and removes its
/// snapshots: the next command folds the tenant from its first record.
fn plant(sb: &Sandbox, key: &[u8], value: &[u8]) {
    let store = SledStore::open(sb.db(), sb.open_options()).unwrap();
    store.raw_tree().insert(key, value).unwrap();
    store.raw_tree().flush().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(sb.db().join("snapshots"));
}

/// A run block: its sled key and its value.
type RunBlock = (Vec<u8>, Vec<u8>);

/// Mallory a Global Administrator, then removed: the tenant's run block as
/// it was before the removal, and as it is after.
fn mallory_removed(sb: &mut Sandbox) -> (RunBlock, RunBlock) {
    sb.ok(&format!("user create --upn {MALLORY} --first Mallory --last M"));
    sb.ok(&format!("user admin-role add --upn {MALLORY} --role global"));
    let before = tenant_runs(sb);
    sb.ok(&format!("user admin-role remove --upn {MALLORY} --role global"));
    let after = tenant_runs(sb);
    assert_eq!(before.0, after.0, "the same block, rewritten");
    (before, after)
}

/// Finding 2, the index: the tenant's run block rolled back to the one it
/// was before Mallory's Global Administrator role was removed (authentic:
/// the store wrote it), and the snapshots deleted, hid the removal from a
/// fold from zero, and she acted as Global again. The runs now fall short
/// of the tenant's head in the authenticated `mindexed`: the index is a
/// miss, rebuilt from the records, and she is refused.
#[test]
fn a_tenant_run_block_rolled_back_to_hide_a_role_removal_is_a_miss_and_she_is_refused() {
    let mut sb = Sandbox::contoso();
    let ((key, old), _) = mallory_removed(&mut sb);
    let before = sb.records();
    plant(&sb, &key, &old);
    let refused = sb.fails(&format!("--as {MALLORY} user create --upn {ALICE} --first Alice --last A"), 1);
    assert!(refused.contains("rejected"), "{refused}");
    assert_eq!(sb.records(), before + 1, "only the refusal's audit record");
    assert_eq!(roles_of(&mut sb, MALLORY), json!([]), "the log's truth, not the old block's");
    assert_eq!(sb.run("verify").code, 0, "rebuilt by the command");
}

/// Finding 2, the index forged: the removal's run cut out of the tenant's
/// block (its MAC left as it was). `verify`, run first, names the index as
/// a cache that was not the log's, rebuilt; the log still takes writes, and
/// Mallory is refused.
#[test]
fn a_tenant_run_block_forged_to_hide_a_role_removal_is_named_by_verify_and_a_miss() {
    let mut sb = Sandbox::contoso();
    let ((_, old), (key, new)) = mallory_removed(&mut sb);
    // The runs before the removal's, and the block's MAC.
    let forged = [&new[..old.len() - 32], &new[new.len() - 32..]].concat();
    assert!(forged.len() < new.len());
    plant(&sb, &key, &forged);
    let (stdout, stderr) = verify_fails(&mut sb);
    assert!(stdout.contains("cache index at record") && stdout.contains("fails its MAC"), "{stdout}");
    assert!(stdout.contains("it was rebuilt from the records"), "{stdout}");
    assert!(stderr.contains("the log itself is intact"), "{stderr}");
    assert_eq!(sb.run("verify").code, 0, "nothing left to name");
    sb.fails(&format!("--as {MALLORY} user create --upn {ALICE} --first Alice --last A"), 1);
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last A"));
}

/// Finding 2, a cache folded from an altered record: a record altered
/// while a view ran, then put back. The view folded the altered record and
/// saved a tip of that fold, bound to a later record and under the tool's
/// own MAC, so it outlived the repair: commands would have decided on it
/// until `verify` re-folded. A fold now saves no cache unless the chain over
/// the records it replayed is intact.
#[test]
fn a_record_altered_while_a_view_runs_then_put_back_leaves_no_cache_of_it() {
    let mut sb = Sandbox::contoso();
    sb.ok("user create --upn quokka@contoso.onmicrosoft.com --first Quinn --last Quokka");
    for i in 0..12 {
        sb.ok(&format!("user create --upn u{i}@contoso.onmicrosoft.com --first U --last N{i}"));
    }
    let seq = sb.records() - 12;
    let snapshots = sb.db().join("snapshots").join(hex("aggregate/tenant"));
    let _ = std::fs::remove_dir_all(&snapshots);
    let cached = || std::fs::read_dir(&snapshots).map_or(0, |d| d.count());
    let original = {
        let store = store::SledStore::open(sb.db(), sb.open_options()).unwrap();
        let original = store.raw_record(seq).unwrap().expect("the record");
        let mut altered = original.clone();
        let places: Vec<usize> =
            original.windows(6).enumerate().filter(|(_, w)| w == b"Quokka").map(|(at, _)| at).collect();
        assert!(!places.is_empty(), "the surname in the record");
        for at in places {
            altered[at + 5] = b'o';
        }
        store.raw_set_record(seq, Some(&altered)).unwrap();
        original
    };
    let shown = sb.ok("user list");
    assert!(shown.contains("Quokko"), "reads trust a record that decodes: {shown}");
    assert_eq!(cached(), 0, "no cache of a fold over an altered record");

    store::SledStore::open(sb.db(), sb.open_options()).unwrap().raw_set_record(seq, Some(&original)).unwrap();
    let shown = sb.ok("user list");
    assert!(shown.contains("Quokka") && !shown.contains("Quokko"), "{shown}");
    assert!(cached() > 0, "an intact chain is cached again");
    let run = sb.run("verify");
    assert_eq!(run.code, 0, "no cache outlived the repair: {}{}", run.stdout, run.stderr);
}
