//! A local attacker (issue 25): a user who can run usertrail and type any
//! `--as` or `--now`. Each test reproduces an attack and checks it does no harm.

use serde_json::{json, Value};
use store::{Append, ExpectedVersion, Metadata, NewEvent, OpenOptions, SledStore};
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
    let records = SledStore::open(original.db(), OpenOptions::default())
        .unwrap()
        .read_log_blocking(1, u64::MAX, usize::MAX)
        .unwrap();
    {
        // Written again without an origin, as an older usertrail wrote them.
        let store = SledStore::open(old.db(), OpenOptions::default()).unwrap();
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
    let group = findings.iter().find(|f| f["upn"] == "Sales").expect("the group's finding");
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
