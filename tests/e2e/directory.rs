//! The common admin flows of the tenant directory, and its rules via the CLI.

use serde_json::Value;
use tests::Sandbox;

use crate::log;

const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";

fn user<'a>(list: &'a Value, upn: &str) -> &'a Value {
    list.as_array()
        .and_then(|users| users.iter().find(|u| u["userPrincipalName"] == upn))
        .unwrap_or_else(|| panic!("{upn} is not listed: {list}"))
}

fn licenses(sb: &mut Sandbox, upn: &str) -> Vec<String> {
    let list = sb.json("user list");
    let licenses = user(&list, upn)["assignedLicenses"].as_array().cloned().unwrap_or_default();
    licenses.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect()
}

#[test]
fn create_a_user_with_a_license() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 2");
    let created = sb.json(&format!("user create --upn {ALICE} --first Alice --last Smith --title Seller --city Lyon --license DYN365_SALES"));
    assert_eq!(created["result"], "success");
    assert_eq!(created["userPrincipalName"], ALICE);
    assert!(created["temporaryPassword"].as_str().is_some_and(|p| p.len() >= 12));
    let list = sb.json("user list");
    let alice = user(&list, ALICE);
    assert_eq!(alice["displayName"], "Alice Smith");
    assert_eq!(alice["accountEnabled"], true);
    assert_eq!(alice["userType"], "Member");
    assert_eq!(alice["assignedLicenses"], serde_json::json!(["DYN365_SALES"]));
    let skus = sb.json("sku list");
    assert_eq!(skus[0]["used"], 1);
    assert_eq!(skus[0]["free"], 1);
    // One command, one correlation id over all its events (L2).
    let records = log(&sb);
    let mine: Vec<_> =
        records.iter().filter(|(r, _)| r.correlation_id.to_string() == created["correlationId"]).collect();
    assert_eq!(mine.len(), 2, "UserCreated and LicenseAssigned");
    assert!(mine.iter().all(|(r, _)| r.actor == "admin@contoso.onmicrosoft.com"));
}

#[test]
fn move_a_license_to_another_user() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 1");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok(&format!("user create --upn {BOB} --first Bob --last Lee"));
    let full = sb.fails(&format!("user license assign --upn {BOB} --sku DYN365_SALES"), 1);
    assert!(full.starts_with("rejected (D4): no licenses available"), "{full}");
    sb.ok(&format!("user license remove --upn {ALICE} --sku DYN365_SALES"));
    sb.ok(&format!("user license assign --upn {BOB} --sku DYN365_SALES"));
    assert!(licenses(&mut sb, ALICE).is_empty());
    assert_eq!(licenses(&mut sb, BOB), ["DYN365_SALES"]);
}

#[test]
fn block_delete_and_restore() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 1");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok(&format!("user block --upn {ALICE}"));
    assert_eq!(user(&sb.json("user list"), ALICE)["accountEnabled"], false);
    sb.ok(&format!("user unblock --upn {ALICE}"));
    sb.ok(&format!("user delete --upn {ALICE}"));
    let list = sb.json("user list");
    assert_eq!(user(&list, ALICE)["deleted"], true);
    assert_eq!(sb.json("sku list")[0]["free"], 1, "D7: a deleted user frees its seat");
    sb.advance_days(10);
    let restored = sb.json(&format!("user restore --upn {ALICE}"));
    assert_eq!(restored["licensesNotRestored"], serde_json::json!([]));
    assert_eq!(licenses(&mut sb, ALICE), ["DYN365_SALES"]);
}

#[test]
fn d7_restore_reports_the_licenses_that_could_not_come_back() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 1");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok(&format!("user delete --upn {ALICE}"));
    sb.ok(&format!("user create --upn {BOB} --first Bob --last Lee --license DYN365_SALES"));
    let out = sb.ok(&format!("user restore --upn {ALICE}"));
    assert!(out.contains("not restored (no free seat, D7): DYN365_SALES"), "{out}");
    sb.advance_days(31);
    sb.ok(&format!("user delete --upn {ALICE}"));
    sb.advance_days(31);
    let gone = sb.fails(&format!("user restore --upn {ALICE}"), 1);
    assert!(gone.starts_with("rejected (D7)") && gone.contains("gone for good"), "{gone}");
}

#[test]
fn d2_the_temporary_password_never_reaches_the_database_files() {
    let mut sb = Sandbox::contoso();
    let created = sb.json(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    let reset = sb.json(&format!("user reset-password --upn {ALICE}"));
    let passwords: Vec<String> = [&created, &reset]
        .iter()
        .map(|doc| doc["temporaryPassword"].as_str().expect("a password is printed once").to_owned())
        .collect();
    assert_ne!(passwords[0], passwords[1]);
    let mut files = vec![sb.db()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for password in &passwords {
            assert!(
                !bytes.windows(password.len()).any(|w| w == password.as_bytes()),
                "{password} found in {}",
                path.display()
            );
        }
    }
    assert!(scanned > 0, "the database files were read");
    // The log records that each was issued, and nothing of either: no hash, no salt.
    let events: Vec<_> = log(&sb).into_iter().map(|(_, e)| e).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        domain::Event::Tenant(domain::events::TenantEvent::UserCreatedV2 { temporary_password: true, .. })
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e, domain::Event::Tenant(domain::events::TenantEvent::PasswordResetV2 { .. }))));
    assert!(!events.iter().any(|e| matches!(
        e,
        domain::Event::Tenant(
            domain::events::TenantEvent::PasswordReset { .. }
                | domain::events::TenantEvent::UserCreated { .. }
        )
    )));
}

#[test]
fn d3_an_update_keeps_old_and_new_values_in_the_log() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --city Lyon"));
    sb.ok(&format!("user update --upn {ALICE} --city Paris --title 'Account Manager' --mobile ''"));
    let (_, last) = log(&sb).pop().unwrap();
    let domain::Event::Tenant(domain::events::TenantEvent::UserUpdated { changes, .. }) = last else {
        panic!("{last:?}")
    };
    let summary: Vec<_> =
        changes.iter().map(|c| (c.field.graph_name(), c.old.clone(), c.new.clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("jobTitle", None, Some("Account Manager".to_owned())),
            ("city", Some("Lyon".to_owned()), Some("Paris".to_owned())),
        ]
    );
}

#[test]
fn d5_an_invitation_holds_its_seat_for_14_days() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 1");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    sb.ok("user invite --upn jane@fabrikam.com --license DYN365_SALES");
    sb.fails(&format!("user license assign --upn {ALICE} --sku DYN365_SALES"), 1);
    sb.advance_days(14);
    sb.ok(&format!("user license assign --upn {ALICE} --sku DYN365_SALES"));
    let late = sb.fails("user accept-invite --upn jane@fabrikam.com", 1);
    assert!(late.starts_with("rejected (D5)"), "{late}");
}

#[test]
fn d8_a_forbidden_command_leaves_one_failure_audit_record_and_nothing_else() {
    // R: D8, L1
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    sb.ok(&format!("user admin-role add --upn {ALICE} --role power-platform"));
    let before = log(&sb).len();
    let err = sb.fails(&format!("user create --upn {BOB} --first Bob --last Lee --as {ALICE}"), 1);
    assert!(err.starts_with("rejected (D8): alice@contoso.onmicrosoft.com (Power Platform Administrator) may not create users"), "{err}");
    let records = log(&sb);
    assert_eq!(records.len(), before + 1);
    let (record, event) = records.last().unwrap();
    let domain::Event::CommandRejected(rejected) = event else { panic!("{event:?}") };
    assert_eq!((rejected.command.as_str(), rejected.rule.as_str()), ("user create", "D8"));
    assert_eq!(rejected.targets, vec![BOB.to_owned()]);
    assert_eq!(record.actor, ALICE);
    assert_eq!(record.stream, "audit");
    assert!(sb.json("user list").as_array().unwrap().iter().all(|u| u["userPrincipalName"] != BOB));
}

#[test]
fn d9_nested_groups_and_cycles() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    sb.ok(&format!("group create --name Sales-SG --owner {ALICE}"));
    sb.ok("group create --name Sales-EU");
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb.ok("group add-member --group Sales-SG --member-group Sales-EU");
    let cycle = sb.fails("group add-member --group Sales-EU --member-group Sales-SG", 1);
    assert!(cycle.starts_with("rejected (D9)"), "{cycle}");
    let groups = sb.json("group list");
    let sales = groups.as_array().unwrap().iter().find(|g| g["displayName"] == "Sales-SG").unwrap();
    assert_eq!(sales["members"], serde_json::json!([ALICE, "group:Sales-EU"]));
    assert_eq!(sales["owners"], serde_json::json!([ALICE]));
}

#[test]
fn d10_a_guest_and_its_licenses() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 1");
    sb.ok("user create --upn jane@fabrikam.com --first Jane --last Doe --guest --home-license DYN365_SALES");
    let list = sb.json("user list");
    let jane = user(&list, "jane@fabrikam.com");
    assert_eq!(jane["userType"], "Guest");
    assert_eq!(jane["assignedLicenses"], serde_json::json!([]), "a home-tenant license is not assigned here");
    assert_eq!(sb.json("sku list")[0]["free"], 1);
}

#[test]
fn l4_the_user_list_as_of_a_past_point() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith"));
    let before_bob = sb.records();
    let between = sb.now();
    sb.advance_days(1);
    sb.ok(&format!("user create --upn {BOB} --first Bob --last Lee"));
    let count = |v: Value| v.as_array().map_or(0, Vec::len);
    assert_eq!(count(sb.json(&format!("user list --at seq:{before_bob}"))), 2);
    assert_eq!(count(sb.json(&format!("user list --at {between}"))), 2);
    assert_eq!(count(sb.json("user list")), 3);
    assert_eq!(count(sb.json("user list --at seq:0")), 0);
}
