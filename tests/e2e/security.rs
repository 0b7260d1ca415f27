//! Business units, roles, teams, no elevation, mailboxes, unified routing (R, O).

use serde_json::{json, Value};
use tests::Sandbox;

use crate::log;

const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";

/// Sales with alice and bob synced, licensed, in Sales-SG.
fn sales() -> Sandbox {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 10");
    sb.ok("group create --name Sales-SG");
    for (who, first) in [(ALICE, "Alice"), (BOB, "Bob")] {
        sb.ok(&format!("user create --upn {who} --first {first} --last Tester --license DYN365_SALES"));
        sb.ok(&format!("group add-member --group Sales-SG --upn {who}"));
    }
    sb.ok("env create --name Sales --type production --app sales");
    sb.ok("sync");
    sb
}

fn roles(sb: &mut Sandbox, who: &str) -> Value {
    let table = sb.json("systemusers --env Sales");
    table.as_array().unwrap().iter().find(|r| r["domainname"] == who).unwrap()["roles"].clone()
}

#[test]
fn r3_the_privileges_view_lists_each_privilege_with_its_roles_and_teams() {
    let mut sb = sales();
    sb.ok("role copy --env Sales --from 'Basic User' --name 'Account Reader'");
    sb.ok("role set-privilege --env Sales --role 'Account Reader' --table account --op read --level org");
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role 'Basic User'"));
    sb.ok("team create --env Sales --name Readers");
    sb.ok("team role assign --env Sales --team Readers --role 'Account Reader'");
    sb.ok(&format!("team add-member --env Sales --team Readers --upn {ALICE}"));
    let grants = sb.json(&format!("privileges --env Sales --upn {ALICE}"));
    let read = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["table"] == "account" && g["operation"] == "read")
        .unwrap();
    assert_eq!(read["level"], "org");
    assert_eq!(read["from"], json!([{ "role": "Account Reader", "team": "Readers" }]));
    assert_eq!(
        roles(&mut sb, ALICE),
        json!(["Account Reader", "Basic User", "Sales app access"]),
        "direct and through teams"
    );
    let table = sb.ok(&format!("privileges --env Sales --upn {ALICE}"));
    assert!(table.contains("Account Reader (team Readers)"), "{table}");
    let nothing = sb.ok(&format!("privileges --env Sales --upn {BOB}"));
    assert!(nothing.contains("its roles grant no privileges here"), "{nothing}");
}

#[test]
fn r6_no_elevation_is_refused_with_one_audit_record() {
    let mut sb = sales();
    sb.ok("role copy --env Sales --from 'Basic User' --name 'User Manager'");
    sb.ok("role set-privilege --env Sales --role 'User Manager' --table systemuser --op write --level org");
    sb.ok(&format!("role assign --env Sales --upn {BOB} --role 'User Manager'"));
    let before = log(&sb).len();
    let err = sb
        .fails(&format!("role assign --env Sales --upn {ALICE} --role 'System Administrator' --as {BOB}"), 1);
    assert!(
        err.starts_with("rejected (R6): bob@contoso.onmicrosoft.com may not assign System Administrator"),
        "{err}"
    );
    let records = log(&sb);
    assert_eq!(records.len(), before + 1);
    let (_, domain::Event::CommandRejected(rejected)) = records.last().unwrap() else { panic!() };
    assert_eq!((rejected.command.as_str(), rejected.rule.as_str()), ("role assign", "R6"));
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role 'Basic User' --as {BOB}"));
}

#[test]
fn r7_a_group_team_follows_its_group_at_sync() {
    let mut sb = sales();
    sb.ok("team create --env Sales --name 'Sales team' --group Sales-SG");
    sb.ok("team role assign --env Sales --team 'Sales team' --role Salesperson");
    assert_eq!(roles(&mut sb, ALICE), json!(["Sales app access"]), "not before the next sync");
    sb.ok("sync --env Sales");
    assert_eq!(roles(&mut sb, ALICE), json!(["Sales app access", "Salesperson"]));
    let err = sb.fails(&format!("team remove-member --env Sales --team 'Sales team' --upn {ALICE}"), 1);
    assert!(err.starts_with("rejected (R7)"), "{err}");
    sb.ok(&format!("group remove-member --group Sales-SG --upn {ALICE}"));
    sb.ok("sync --env Sales");
    let table = sb.json("systemusers --env Sales");
    let alice = table.as_array().unwrap().iter().find(|r| r["domainname"] == ALICE).unwrap();
    assert_eq!(alice["roles"], json!(["Sales app access"]), "she left the group, so the team");
}

#[test]
fn r1_business_units_and_user_moves() {
    let mut sb = sales();
    sb.ok("bu create --env Sales --name Europe");
    sb.ok("bu create --env Sales --name France --parent Europe");
    let err = sb.fails("bu create --env Sales --name france --parent Europe", 1);
    assert!(err.starts_with("rejected (R1)"), "{err}");
    sb.ok("role copy --env Sales --from Salesperson --name 'French Seller' --bu France");
    let err = sb.fails(&format!("role assign --env Sales --upn {ALICE} --role 'French Seller'"), 1);
    assert!(err.starts_with("rejected (R1)"), "{err}");
    sb.ok(&format!("user set-bu --env Sales --upn {ALICE} --bu France"));
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role 'French Seller'"));
    let table = sb.json("systemusers --env Sales");
    let alice = table.as_array().unwrap().iter().find(|r| r["domainname"] == ALICE).unwrap();
    assert_eq!(alice["businessunit"], "France");
}

#[test]
fn o2_and_o3_mailboxes_and_unified_routing() {
    let mut sb = sales();
    let out = sb.ok(&format!("mailbox test-enable --env Sales --upn {ALICE}"));
    assert!(out.contains("mailbox is enabled"), "{out}");
    let types: Vec<String> = log(&sb).iter().rev().take(2).map(|(r, _)| r.event_type.clone()).collect();
    assert_eq!(types, ["MailboxEnabled", "MailboxTestScheduled"]);
    let err = sb.fails(&format!("env unified-routing enable --env Sales --as {ALICE}"), 1);
    assert!(err.starts_with("rejected (O3)") && err.contains("consent"), "{err}");
    sb.ok("env unified-routing enable --env Sales");
    let err = sb.fails("env unified-routing disable --env Sales", 1);
    assert!(err.starts_with("rejected (O3)") && err.contains("cannot be turned off"), "{err}");
}

#[test]
fn bad_security_input_exits_2() {
    let mut sb = sales();
    for (line, says) in [
        (
            "role set-privilege --env Sales --role 'Basic User' --table account --op read --level galaxy",
            "unknown access level",
        ),
        (
            "role set-privilege --env Sales --role 'Basic User' --table account --op fly --level org",
            "unknown operation",
        ),
        ("role assign --env Sales --upn alice@contoso.onmicrosoft.com --role Nope", "unknown role Nope"),
        ("team add-member --env Sales --team Nope --upn alice@contoso.onmicrosoft.com", "unknown team Nope"),
        ("bu create --env Sales --name X --parent Nope", "unknown business unit Nope"),
        ("privileges --env Sales --upn nobody@contoso.onmicrosoft.com", "has no record in Sales"),
    ] {
        let err = sb.fails(line, 2);
        assert!(err.contains(says), "{line}: {err}");
    }
}
