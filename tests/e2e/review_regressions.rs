//! Regressions found in review: import graph's edge cases, changes' causes,
//! whatif's environment. Each failed before its fix.
use serde_json::{json, Value};
use tests::Sandbox;

use crate::log;

const ADMIN_ID: &str = "0b8c1a2e-0000-4000-8000-0000000000aa";
const X: &str = "0b8c1a2e-0000-4000-8000-000000000001";
const G1: &str = "9a9a9a9a-0000-4000-8000-000000000001";
const G2: &str = "9a9a9a9a-0000-4000-8000-000000000002";

fn admin() -> Value {
    json!({"id": ADMIN_ID, "userPrincipalName": "admin@contoso.onmicrosoft.com", "accountEnabled": true})
}

fn write(sb: &Sandbox, name: &str, v: &Value) -> String {
    let p = sb.dir().join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p.display().to_string()
}

#[test]
fn display_name_null_second_import_appends_nothing() {
    let mut sb = Sandbox::contoso();
    let users = json!([admin(), {"id": X, "userPrincipalName": "alice@contoso.onmicrosoft.com",
        "givenName": "Alice", "surname": "Smith", "displayName": null}]);
    let f = write(&sb, "u.json", &users);
    sb.ok(&format!("import graph --users {f}"));
    let before = log(&sb).len();
    let again = sb.json(&format!("import graph --users {f}"));
    assert_eq!(log(&sb).len(), before, "second import appended: {again}");
}

#[test]
fn a_user_renamed_in_the_directory_is_still_matched_by_object_id() {
    // UPN changes are not imported (the user keeps the UPN it was first seen
    // with, README); memberships resolve through the object id, and nothing fails.
    let mut sb = Sandbox::contoso();
    let u1 = json!([admin(), {"id": X, "userPrincipalName": "alice@contoso.onmicrosoft.com"}]);
    let f = write(&sb, "u.json", &u1);
    sb.ok(&format!("import graph --users {f}"));
    let u2 = json!([admin(), {"id": X, "userPrincipalName": "alice.smith@contoso.onmicrosoft.com"}]);
    let f = write(&sb, "u.json", &u2);
    let g = write(
        &sb,
        "g.json",
        &json!([{"id": G1, "displayName": "Sales-SG",
        "members": [{"@odata.type": "#microsoft.graph.user", "id": X}]}]),
    );
    let run = sb.run(&format!("import graph --users {f} --groups {g}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let groups = sb.json("group list");
    assert_eq!(groups[0]["members"], json!(["alice@contoso.onmicrosoft.com"]));
}

#[test]
fn graph_guest_upn_imports() {
    let mut sb = Sandbox::contoso();
    let users = json!([admin(), {"id": X, "userPrincipalName": "jane_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "mail": "jane@fabrikam.com", "userType": "Guest", "accountEnabled": true}]);
    let f = write(&sb, "u.json", &users);
    let run = sb.run(&format!("import graph --users {f}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list = sb.json("user list");
    let jane = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "jane@fabrikam.com")
        .expect("the guest's own address");
    assert_eq!(jane["userType"], "Guest");
}

#[test]
fn nested_group_created_locally_survives_import_and_is_idempotent() {
    let mut sb = Sandbox::contoso();
    sb.ok("group create --name Sales-SG");
    sb.ok("group create --name Nested");
    sb.ok("group add-member --group Sales-SG --member-group Nested");
    let f = write(&sb, "u.json", &json!([admin()]));
    let g = write(
        &sb,
        "g.json",
        &json!([
        {"id": G1, "displayName": "Sales-SG", "members": [{"@odata.type": "#microsoft.graph.group", "id": G2}]},
        {"id": G2, "displayName": "Nested", "members": []}]),
    );
    let line = format!("import graph --users {f} --groups {g}");
    sb.ok(&line);
    let groups = sb.json("group list").to_string();
    assert!(groups.contains("group:Nested"), "the export says Nested is a member: {groups}");
    let before = log(&sb).len();
    sb.ok(&line);
    assert_eq!(log(&sb).len(), before, "second import appended");
}

#[test]
fn groups_without_members_key_keep_members() {
    let mut sb = Sandbox::contoso();
    sb.ok("user create --upn alice@contoso.onmicrosoft.com --first A --last B");
    sb.ok("group create --name Sales-SG");
    sb.ok("group add-member --group Sales-SG --upn alice@contoso.onmicrosoft.com");
    let f = write(
        &sb,
        "u.json",
        &json!([admin(), {"id": X, "userPrincipalName": "alice@contoso.onmicrosoft.com"}]),
    );
    // GET /groups without $expand=members: no "members" key at all.
    let g = write(&sb, "g.json", &json!([{"id": G1, "displayName": "Sales-SG"}]));
    sb.ok(&format!("import graph --users {f} --groups {g}"));
    let groups = sb.json("group list");
    assert_eq!(
        groups[0]["members"],
        json!(["alice@contoso.onmicrosoft.com"]),
        "a field left out is left alone"
    );
}

#[test]
fn purged_group_member_breaks_every_group_import() {
    let mut sb = Sandbox::contoso();
    sb.ok("user create --upn bob@contoso.onmicrosoft.com --first B --last B");
    sb.ok("group create --name Sales-SG");
    sb.ok("group add-member --group Sales-SG --upn bob@contoso.onmicrosoft.com");
    sb.ok("user delete --upn bob@contoso.onmicrosoft.com");
    sb.advance_days(31);
    let f = write(&sb, "u.json", &json!([admin()]));
    let g = write(&sb, "g.json", &json!([{"id": G1, "displayName": "Sales-SG", "members": []}]));
    let run = sb.run(&format!("import graph --users {f} --groups {g}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn changes_cause_seq_is_the_commands_audit_seq() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 3");
    sb.ok("env create --name Sales --type production --app sales");
    sb.ok("user create --upn alice@contoso.onmicrosoft.com --first A --last B --license DYN365_SALES");
    let from = sb.records();
    sb.ok("sync");
    let to = sb.records();
    let drift = sb.json(&format!("changes --env Sales --from seq:{from} --to seq:{to}"));
    let added = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["change"] == "added" && c["upn"] == "alice@contoso.onmicrosoft.com")
        .unwrap()
        .clone();
    let history = sb.json("history --env Sales --user alice@contoso.onmicrosoft.com --limit 1");
    assert_eq!(added["cause"]["seq"], history[0]["seq"], "changes: {drift}\nhistory: {history}");
}

#[test]
fn whatif_unknown_env_is_bad_input() {
    let mut sb = Sandbox::contoso();
    let plan = sb.dir().join("plan.txt");
    std::fs::write(&plan, "sku add --sku X --kind d365 --seats 1\n").unwrap();
    sb.fails(&format!("whatif --file {} --env Nowhere", plan.display()), 2);
}

#[test]
fn a_leavers_seat_goes_to_the_replacement() {
    // One seat: bob leaves the directory, jane gets his license.
    let mut sb = Sandbox::contoso();
    let sku = "6a4a1628-9b9a-424d-bed5-4118f0ede3fd";
    let s = write(
        &sb,
        "s.json",
        &json!([{"skuId": sku, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": {"enabled": 1}}]),
    );
    let bob = json!({"id": X, "userPrincipalName": "bob@contoso.onmicrosoft.com", "assignedLicenses": [{"skuId": sku}]});
    let f = write(&sb, "u.json", &json!([admin(), bob]));
    sb.ok(&format!("import graph --users {f} --skus {s}"));
    let jane = json!({"id": "0b8c1a2e-0000-4000-8000-000000000002", "userPrincipalName": "jane@contoso.onmicrosoft.com", "assignedLicenses": [{"skuId": sku}]});
    let f = write(&sb, "u.json", &json!([admin(), jane]));
    let run = sb.run(&format!("import graph --users {f} --skus {s}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn at_seq_n_is_judged_at_record_ns_time_and_a_later_time_at_that_time() {
    // R: L4. `--at seq:N` answers as of right after record N; `--at TIME` (or the
    // clock) as of that time. A block turns into a D4 finding only 30 days later.
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 3");
    sb.ok("env create --name Sales --type production");
    sb.ok("user create --upn bob@contoso.onmicrosoft.com --first B --last B --license DYN365_SALES");
    sb.ok("user block --upn bob@contoso.onmicrosoft.com");
    let head = sb.records();
    let right_after = sb.ok(&format!("review --env Sales --at seq:{head} --json"));
    sb.advance_days(40);
    let later = sb.now();
    assert_eq!(
        sb.ok(&format!("review --env Sales --at seq:{head} --json")),
        right_after,
        "seq:N does not move with the clock"
    );
    let then = sb.json(&format!("review --env Sales --at {later}"));
    assert!(then.as_array().unwrap().iter().any(|f| f["rule"] == "D4"), "40 days later: {then}");
    assert!(!right_after.contains("\"D4\""));
}
