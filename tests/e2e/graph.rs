//! import graph: Microsoft Graph exports appended as their difference.

use serde_json::{json, Value};
use tests::Sandbox;

use crate::log;

const SALES_SKU: &str = "6a4a1628-9b9a-424d-bed5-4118f0ede3fd";
const E3_SKU: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
const ALICE: &str = "0b8c1a2e-0000-4000-8000-000000000001";
const BOB: &str = "0b8c1a2e-0000-4000-8000-000000000002";
const JANE: &str = "0b8c1a2e-0000-4000-8000-000000000003";
const GROUP: &str = "9a9a9a9a-0000-4000-8000-000000000009";

fn user(id: &str, upn: &str, first: &str, city: Value, licenses: &[&str]) -> Value {
    json!({
        "id": id,
        "userPrincipalName": upn,
        "givenName": first,
        "surname": "Tester",
        "displayName": format!("{first} Tester"),
        "jobTitle": null,
        "city": city,
        "businessPhones": ["+1 555 0100"],
        "accountEnabled": true,
        "userType": "Member",
        "assignedLicenses": licenses.iter().map(|l| json!({ "skuId": l, "disabledPlans": [] })).collect::<Vec<_>>(),
        "onPremisesSyncEnabled": null,
        "someFutureField": { "nested": true }
    })
}

/// Writes the export: users over two Graph pages, groups as JSON Lines, SKUs as a bare array.
fn export(sb: &Sandbox, users: &[Value], members: &[&str]) -> String {
    let dir = sb.dir();
    let (one, two) = users.split_at(users.len() / 2);
    std::fs::write(dir.join("users-1.json"), json!({ "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": one, "@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$skiptoken=x" }).to_string()).unwrap();
    std::fs::write(dir.join("users-2.json"), json!({ "value": two }).to_string()).unwrap();
    let group = json!({
        "id": GROUP,
        "displayName": "Sales-SG",
        "members": members.iter().map(|m| json!({ "@odata.type": "#microsoft.graph.user", "id": m })).collect::<Vec<_>>(),
        "owners": [{ "@odata.type": "#microsoft.graph.user", "id": ALICE, "userPrincipalName": "alice@contoso.onmicrosoft.com" }]
    });
    std::fs::write(dir.join("groups.jsonl"), format!("{group}\n")).unwrap();
    let skus = json!([
        { "skuId": SALES_SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": { "enabled": 10 }, "consumedUnits": 2 },
        { "skuId": E3_SKU, "skuPartNumber": "ENTERPRISEPACK", "prepaidUnits": { "enabled": 50, "suspended": 0 }, "consumedUnits": 3 }
    ]);
    std::fs::write(dir.join("skus.json"), skus.to_string()).unwrap();
    let d = |f: &str| dir.join(f).display().to_string();
    // Two pages after one flag, as a shell's glob gives them.
    format!(
        "import graph --users {} {} --groups {} --skus {}",
        d("users-1.json"),
        d("users-2.json"),
        d("groups.jsonl"),
        d("skus.json")
    )
}

fn admin() -> Value {
    user("0b8c1a2e-0000-4000-8000-0000000000aa", "admin@contoso.onmicrosoft.com", "Megan", Value::Null, &[])
}

#[test]
fn an_import_appends_the_difference_and_a_second_import_nothing() {
    let mut sb = Sandbox::contoso();
    let users = [
        admin(),
        user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", json!("Lyon"), &[SALES_SKU, E3_SKU]),
        user(BOB, "bob@contoso.onmicrosoft.com", "Bob", json!("Oslo"), &[E3_SKU]),
    ];
    let line = export(&sb, &users, &[ALICE, BOB]);
    let first = sb.json(&line);
    assert!(first["events"].as_u64().unwrap() > 8, "{first}");
    let list = sb.json("user list");
    let alice = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "alice@contoso.onmicrosoft.com")
        .unwrap();
    assert_eq!(alice["id"], ALICE, "the directory's object id is kept");
    assert_eq!(alice["assignedLicenses"], json!(["DYN365_ENTERPRISE_SALES", "ENTERPRISEPACK"]));
    let skus = sb.json("sku list");
    assert_eq!(
        skus.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["skuPartNumber"].clone(), s["kind"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (json!("DYN365_ENTERPRISE_SALES"), json!("d365")),
            (json!("ENTERPRISEPACK"), json!("m365-dataverse"))
        ]
    );
    let groups = sb.json("group list");
    assert_eq!(groups[0]["members"], json!(["alice@contoso.onmicrosoft.com", "bob@contoso.onmicrosoft.com"]));
    assert_eq!(groups[0]["owners"], json!(["alice@contoso.onmicrosoft.com"]));
    let before = log(&sb).len();
    let again = sb.json(&line);
    assert_eq!(again["events"], 0);
    assert_eq!(log(&sb).len(), before, "importing the same files twice appends nothing");
}

#[test]
fn changes_in_the_export_become_updates_moves_and_deletions() {
    let mut sb = Sandbox::contoso();
    let users = [
        admin(),
        user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", json!("Lyon"), &[SALES_SKU]),
        user(BOB, "bob@contoso.onmicrosoft.com", "Bob", json!("Oslo"), &[]),
    ];
    sb.ok(&export(&sb, &users, &[ALICE]));
    // Alice moves to Nice and loses the license to Jane, a new user; Bob leaves; Alice's city is cleared next.
    let users = [
        admin(),
        user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", json!("Nice"), &[]),
        user(JANE, "jane@contoso.onmicrosoft.com", "Jane", Value::Null, &[SALES_SKU]),
    ];
    let second = sb.json(&export(&sb, &users, &[ALICE, JANE]));
    let by_type = &second["byType"];
    assert_eq!(
        (
            by_type["UserUpdated"].as_u64(),
            by_type["LicenseRemoved"].as_u64(),
            by_type["LicenseAssigned"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(by_type["UserDeleted"], 1, "bob is absent from the export");
    let history = sb.json("history --user alice@contoso.onmicrosoft.com --limit 10");
    let update = history.as_array().unwrap().iter().find(|r| r.to_string().contains("\"city\"")).unwrap();
    let city = update["targetResources"][0]["modifiedProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["displayName"] == "city")
        .unwrap();
    assert_eq!((city["oldValue"].as_str(), city["newValue"].as_str()), (Some("Lyon"), Some("Nice")));
    assert_eq!(update["activityDisplayName"], "Import from Microsoft Graph");
    let users = [admin(), user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", json!("Nice"), &[])];
    let kept = sb.json(&format!("{} --keep-missing", export(&sb, &users, &[ALICE])));
    assert_eq!(kept["byType"].get("UserDeleted"), None, "--keep-missing keeps jane");
}

#[test]
fn bad_json_exits_2_with_file_line_and_column_and_appends_nothing() {
    let mut sb = Sandbox::contoso();
    let before = log(&sb).len();
    let file = sb.dir().join("users.json");
    std::fs::write(&file, "{\"value\": [\n  {\"id\": \"0b8c1a2e-0000-4000-8000-000000000001\",\n   \"userPrincipalName\": \"alice@contoso.onmicrosoft.com\",,\n  }\n]}").unwrap();
    let err = sb.fails(&format!("import graph --users {}", file.display()), 2);
    assert!(err.contains("users.json at line 3, column"), "{err}");
    std::fs::write(&file, "[{\"id\": \"not-a-uuid\", \"userPrincipalName\": \"a@contoso.onmicrosoft.com\"}]")
        .unwrap();
    assert!(sb
        .fails(&format!("import graph --users {}", file.display()), 2)
        .contains("\"id\" is not a UUID"));
    std::fs::write(&file, format!("[{{\"id\": \"{ALICE}\", \"userPrincipalName\": \"a@contoso.onmicrosoft.com\", \"assignedLicenses\": [{{\"skuId\": \"{SALES_SKU}\"}}]}}]")).unwrap();
    let err = sb.fails(&format!("import graph --users {}", file.display()), 2);
    assert!(err.contains(&format!("SKUs not known from an earlier import: {SALES_SKU} (")), "{err}");
    // A known field of the wrong type is refused, not read as absent.
    for (field, value) in [("accountEnabled", "\"yes\""), ("city", "42"), ("businessPhones", "\"+1 555\"")] {
        std::fs::write(&file, format!("[{{\"id\": \"{ALICE}\", \"userPrincipalName\": \"a@contoso.onmicrosoft.com\", \"{field}\": {value}}}]")).unwrap();
        let err = sb.fails(&format!("import graph --users {}", file.display()), 2);
        assert!(err.contains(&format!("users.json item 1: \"{field}\" must be")), "{err}");
    }
    assert_eq!(log(&sb).len(), before);
}

#[test]
fn a_refused_change_rejects_the_whole_import_with_one_audit_record() {
    let mut sb = Sandbox::contoso();
    let before = log(&sb).len();
    // Only the SKU's 1 seat, two users want it: D4 turns the import down as a whole.
    let users = [
        admin(),
        user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", Value::Null, &[SALES_SKU]),
        user(BOB, "bob@contoso.onmicrosoft.com", "Bob", Value::Null, &[SALES_SKU]),
    ];
    let line = export(&sb, &users, &[]);
    let skus = json!([{ "skuId": SALES_SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": { "enabled": 1 } }]);
    std::fs::write(sb.dir().join("skus.json"), skus.to_string()).unwrap();
    let err = sb.fails(&line, 1);
    assert!(err.starts_with("rejected (D4)"), "{err}");
    assert_eq!(log(&sb).len(), before + 1, "one failure audit record, nothing else");
    assert_eq!(sb.json("user list").as_array().unwrap().len(), 1);
}

#[test]
fn a_refusal_deep_in_a_large_import_still_writes_nothing_of_it() {
    // Past the first few hundred commands, the store has sealed part of the
    // import before the domain turns one down (D4: one seat short).
    let mut sb = Sandbox::contoso();
    let before = log(&sb).len();
    let newcomers = 600;
    let mut users = vec![admin()];
    users.extend((1..=newcomers).map(|i| {
        let id = format!("0b8c1a2e-0000-4000-8000-{i:012}");
        user(&id, &format!("user{i}@contoso.onmicrosoft.com"), "User", Value::Null, &[SALES_SKU])
    }));
    let line = export(&sb, &users, &[]);
    let skus = json!([{ "skuId": SALES_SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": { "enabled": newcomers - 1 } }]);
    std::fs::write(sb.dir().join("skus.json"), skus.to_string()).unwrap();
    let err = sb.fails(&line, 1);
    assert!(err.starts_with("rejected (D4)"), "{err}");
    assert_eq!(log(&sb).len(), before + 1, "one failure audit record, nothing else");
    assert!(sb.json("verify")["ok"].as_bool().unwrap(), "the chain is whole");
    // With the seat it lacked, the same import lands whole.
    let skus = json!([{ "skuId": SALES_SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": { "enabled": newcomers } }]);
    std::fs::write(sb.dir().join("skus.json"), skus.to_string()).unwrap();
    let landed = sb.json(&line);
    assert_eq!(landed["byType"]["UserCreated"], newcomers, "{landed}");
    assert_eq!(landed["byType"]["LicenseAssigned"], newcomers, "{landed}");
    assert_eq!(sb.json("user list").as_array().unwrap().len(), newcomers + 1);
}

#[test]
fn a_first_pass_larger_than_one_transaction_lands_every_systemuser_once() {
    // More changed SystemUsers than one transaction of a pass holds (1,000).
    let mut sb = Sandbox::contoso();
    let mut users = vec![admin()];
    for i in 0..1_205u32 {
        let id = format!("0b8c1a2e-0000-4000-8000-{:012}", 100_000 + i);
        users.push(user(&id, &format!("u{i}@contoso.onmicrosoft.com"), "U", Value::Null, &[SALES_SKU]));
    }
    let command = export(&sb, &users, &[]);
    let skus = json!([{ "skuId": SALES_SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": { "enabled": 2000 } }]);
    std::fs::write(sb.dir().join("skus.json"), skus.to_string()).unwrap();
    sb.ok(&command);
    sb.ok("env create --name Sales --type production");
    let pass = sb.json("sync");
    let changed = pass[0]["changed"].as_array().unwrap().len();
    assert!(changed > 1_205, "every licensed user and the admin: {changed}");
    let table = sb.json("systemusers --env Sales");
    let names: std::collections::BTreeSet<_> =
        table.as_array().unwrap().iter().filter_map(|r| r["domainname"].as_str()).collect();
    assert_eq!(names.len(), table.as_array().unwrap().len(), "no SystemUser twice");
    assert!((0..1_205).all(|i| names.contains(format!("u{i}@contoso.onmicrosoft.com").as_str())));
    let again = sb.json("sync");
    assert_eq!(again[0]["changed"].as_array().unwrap().len(), 0, "the pass was whole");
    assert_eq!(sb.json("verify")["ok"], true);
}

/// The first import of a real tenant's export into a fresh `init`: the admin
/// named at `init` is not in it, and is never soft-deleted by the import
/// (it was the last Global Administrator, so D8 refused the whole import).
#[test]
fn the_first_import_of_an_export_without_the_init_admin_lands_and_keeps_the_admin() {
    let mut sb = Sandbox::contoso();
    let users = [
        user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", json!("Lyon"), &[SALES_SKU]),
        user(BOB, "bob@contoso.onmicrosoft.com", "Bob", json!("Oslo"), &[E3_SKU]),
    ];
    let line = export(&sb, &users, &[ALICE]);
    sb.ok(&line);
    let list = sb.json("user list");
    let deleted = |upn: &str| {
        list.as_array().unwrap().iter().find(|u| u["userPrincipalName"] == upn).map(|u| u["deleted"].clone())
    };
    assert_eq!(deleted("admin@contoso.onmicrosoft.com"), Some(json!(false)), "{list}");
    assert_eq!(deleted("alice@contoso.onmicrosoft.com"), Some(json!(false)));
    // And the admin still acts: a second import of the same files changes nothing.
    let before = sb.records();
    sb.ok(&line);
    assert_eq!(sb.records(), before);
}

/// `user list --json` writes licenses as skuPartNumber strings; `import
/// graph` reads that form, so the tool's own output imports into a fresh
/// database that holds the same SKUs, and nothing differs.
#[test]
fn user_list_json_imports_again_and_nothing_differs() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 5");
    sb.ok("sku add --sku ENTERPRISEPACK --kind office --seats 5");
    sb.ok("user create --upn alice@contoso.onmicrosoft.com --first Alice --last Smith --license DYN365_SALES --license ENTERPRISEPACK --city Lyon");
    sb.ok("user create --upn bob@contoso.onmicrosoft.com --first Bob --last Jones");
    let listed = sb.json("user list");
    assert!(listed.to_string().contains("\"DYN365_SALES\""), "{listed}");
    let mut copy = Sandbox::contoso();
    copy.ok("sku add --sku DYN365_SALES --kind d365 --seats 5");
    copy.ok("sku add --sku ENTERPRISEPACK --kind office --seats 5");
    let file = copy.dir().join("users.json");
    std::fs::write(&file, listed.to_string()).unwrap();
    copy.ok(&format!("import graph --users {}", file.display()));
    let strip_ids = |v: Value| -> Vec<Value> {
        let mut users: Vec<Value> = v.as_array().unwrap().clone();
        for u in &mut users {
            u.as_object_mut().unwrap().remove("id");
        }
        users.sort_by_key(|u| u["userPrincipalName"].as_str().unwrap_or_default().to_owned());
        users
    };
    assert_eq!(strip_ids(copy.json("user list")), strip_ids(listed));
    let before = copy.records();
    copy.ok(&format!("import graph --users {}", file.display()));
    assert_eq!(copy.records(), before, "a second import of the same file appends nothing");
}

/// `import entra-csv` reads the Entra admin center's "Download users" CSV as
/// a difference: profiles and sign-in change, licenses are left as they are
/// (the file names none), a user the file leaves out is soft-deleted, a
/// second import appends nothing, and a bad row appends nothing.
#[test]
fn import_entra_csv_reads_the_users_download_and_leaves_licenses_alone() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 5");
    sb.ok(
        "user create --upn alice@contoso.onmicrosoft.com --first Alice --last Smith --license DYN365_SALES",
    );
    sb.ok("user create --upn bob@contoso.onmicrosoft.com --first Bob --last Lee");
    let list = sb.json("user list");
    let id = |upn: &str| {
        list.as_array().unwrap().iter().find(|u| u["userPrincipalName"] == upn).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let file = sb.dir().join("exportUsers.csv");
    let csv = format!(
        "\u{feff}userPrincipalName,displayName,surname,mail,givenName,objectId,userType,jobTitle,department,accountEnabled,usageLocation,streetAddress,state,country,physicalDeliveryOfficeName,city,postalCode,telephoneNumber,mobile\r\n\
         alice@contoso.onmicrosoft.com,Alice Smith,Smith,,Alice,{},Member,Lead,Sales,True,FR,,,,,Lyon,,,\r\n\
         carol@contoso.onmicrosoft.com,Carol Diaz,Diaz,,Carol,0b8c1a2e-0000-4000-8000-00000000000c,Member,,,False,,,,,,,,,\r\n",
        id("alice@contoso.onmicrosoft.com")
    );
    std::fs::write(&file, csv).unwrap();
    sb.ok(&format!("import entra-csv --file {}", file.display()));
    let after = sb.json("user list");
    let user = |upn: &str| {
        after.as_array().unwrap().iter().find(|u| u["userPrincipalName"] == upn).cloned().unwrap()
    };
    assert_eq!(
        user("alice@contoso.onmicrosoft.com")["assignedLicenses"],
        json!(["DYN365_SALES"]),
        "licenses left alone"
    );
    assert_eq!(user("bob@contoso.onmicrosoft.com")["deleted"], true, "left out of the file: soft-deleted");
    assert_eq!(user("carol@contoso.onmicrosoft.com")["accountEnabled"], false);
    assert_eq!(user("admin@contoso.onmicrosoft.com")["deleted"], false, "the admin named at init stays");
    let history = sb.json("history --limit 1");
    assert!(history[0]["activityDisplayName"].as_str().is_some());
    let before = sb.records();
    sb.ok(&format!("import entra-csv --file {}", file.display()));
    assert_eq!(sb.records(), before, "the same file again appends nothing");
    std::fs::write(&file, "userPrincipalName,objectId\r\nnot-a-upn,0b8c1a2e-0000-4000-8000-00000000000d\r\n")
        .unwrap();
    let err = sb.fails(&format!("import entra-csv --file {}", file.display()), 2);
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(sb.records(), before);
}

const CRM_SKU: &str = "d17b27af-3f49-4822-99f9-56a661538792";
const E5_SKU: &str = "c7df2760-2c81-4ef7-b578-5b5392b571df";

/// A subscribedSkus export of `(skuId, part, servicePlans)`, 10 seats each.
fn skus_file(sb: &Sandbox, skus: &[(&str, &str, &[&str])]) -> String {
    let skus: Vec<Value> = skus
        .iter()
        .map(|(id, part, plans)| {
            let plans: Vec<Value> = plans.iter().map(|p| json!({ "servicePlanName": p })).collect();
            json!({ "skuId": id, "skuPartNumber": part, "prepaidUnits": { "enabled": 10 }, "servicePlans": plans })
        })
        .collect();
    let path = sb.dir().join("skus.json");
    std::fs::write(&path, Value::from(skus).to_string()).unwrap();
    path.display().to_string()
}

fn users_file(sb: &Sandbox, name: &str, users: &[Value]) -> String {
    let path = sb.dir().join(name);
    std::fs::write(&path, json!({ "value": users }).to_string()).unwrap();
    path.display().to_string()
}

// R: D4, S1, S1.4
#[test]
fn sku_kinds_come_from_the_published_list_crmstandard_is_d365() {
    let mut sb = Sandbox::contoso();
    let users = [admin(), user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", Value::Null, &[CRM_SKU])];
    // No servicePlans in the export: Microsoft's published list says what CRMSTANDARD holds.
    let skus = skus_file(&sb, &[(CRM_SKU, "CRMSTANDARD", &[])]);
    sb.ok(&format!("import graph --users {} --skus {skus}", users_file(&sb, "u.json", &users)));
    assert_eq!(sb.json("sku list")[0]["kind"], "d365");
    sb.ok("env create --name Sales --type production");
    sb.ok("sync");
    let table = sb.json("systemusers --env Sales");
    assert!(
        table.to_string().contains("alice@contoso.onmicrosoft.com"),
        "a CRM Online Professional holder gets a record: {table}"
    );
}

// R: D4, S1.4
#[test]
fn o365_free_plans_make_m365_dataverse_never_paid() {
    let mut sb = Sandbox::contoso();
    let users = [admin(), user(BOB, "bob@contoso.onmicrosoft.com", "Bob", Value::Null, &[E5_SKU])];
    let e5: &[&str] = &["EXCHANGE_S_ENTERPRISE", "POWERAPPS_O365_P3", "DYN365_CDS_O365_P3", "FLOW_O365_P3"];
    let skus = skus_file(&sb, &[(E5_SKU, "ENTERPRISEPREMIUM", e5)]);
    let done = sb.json(&format!("import graph --users {} --skus {skus}", users_file(&sb, "u.json", &users)));
    assert_eq!(done["skus"][0]["kind"], "m365-dataverse", "{done}");
    assert!(done["skus"][0]["why"].as_str().unwrap().contains("_O365_P3"), "{done}");
    sb.ok("env create --name Sales --type production");
    sb.ok("sync");
    let table = sb.json("systemusers --env Sales");
    assert!(
        !table.to_string().contains("bob@contoso.onmicrosoft.com"),
        "a free plan is on demand only (S1.4): {table}"
    );
    // --sku-kind still overrides, for a SKU seen for the first time.
    let mut sb = Sandbox::contoso();
    let skus = skus_file(&sb, &[(E5_SKU, "ENTERPRISEPREMIUM", e5)]);
    let line = format!(
        "import graph --users {} --skus {skus} --sku-kind ENTERPRISEPREMIUM=office",
        users_file(&sb, "u.json", &users)
    );
    assert_eq!(
        sb.json(&line)["skus"][0],
        json!({ "sku": "ENTERPRISEPREMIUM", "kind": "office", "why": "--sku-kind ENTERPRISEPREMIUM=office" })
    );
}

// R: D4
#[test]
fn skus_imported_once_are_known_to_later_imports() {
    let mut sb = Sandbox::contoso();
    let skus = skus_file(&sb, &[(CRM_SKU, "CRMSTANDARD", &[]), (E5_SKU, "ENTERPRISEPREMIUM", &[])]);
    let first = [admin(), user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", Value::Null, &[CRM_SKU])];
    sb.ok(&format!("import graph --users {} --skus {skus}", users_file(&sb, "1.json", &first)));
    assert!(log(&sb).iter().any(|(_, e)| e.type_name() == "SkuIdentified"), "the skuIds are in the log");
    assert_eq!(sb.json("sku list")[0]["skuId"], CRM_SKU, "and in the directory");
    // A later users file alone: its licenses are named by the skuIds the first import told.
    let later = [
        admin(),
        user(ALICE, "alice@contoso.onmicrosoft.com", "Alice", Value::Null, &[CRM_SKU, E5_SKU]),
        user(BOB, "bob@contoso.onmicrosoft.com", "Bob", Value::Null, &[E5_SKU]),
    ];
    let done = sb.json(&format!("import graph --users {}", users_file(&sb, "2.json", &later)));
    assert_eq!(done["byType"]["LicenseAssigned"], 2, "alice's E5, and bob's with him: {done}");
    let bob = sb
        .json("user list")
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "bob@contoso.onmicrosoft.com")
        .cloned();
    assert_eq!(bob.unwrap()["assignedLicenses"], json!(["ENTERPRISEPREMIUM"]));
    // A SKU never imported still needs --skus: one line naming it, exit 2, nothing appended.
    let before = log(&sb).len();
    let unknown = "11111111-2222-4333-8444-555555555555";
    let users = [admin(), user(BOB, "bob@contoso.onmicrosoft.com", "Bob", Value::Null, &[E5_SKU, unknown])];
    let err = sb.fails(&format!("import graph --users {}", users_file(&sb, "3.json", &users)), 2);
    assert!(err.contains(unknown) && err.contains("3.json item 2") && err.contains("--skus"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(log(&sb).len(), before, "nothing appended");
}

#[test]
fn import_reports_each_skus_kind_and_why() {
    let mut sb = Sandbox::contoso();
    let skus = skus_file(
        &sb,
        &[
            (CRM_SKU, "CRMSTANDARD", &[]),
            (E5_SKU, "ENTERPRISEPREMIUM", &["POWERAPPS_O365_P3"]),
            ("33333333-2222-4333-8444-555555555555", "CONTOSO_CUSTOM", &[]),
        ],
    );
    let users = users_file(&sb, "u.json", &[admin()]);
    let out = sb.ok(&format!("import graph --users {users} --skus {skus}"));
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("SKU ")).collect();
    assert_eq!(
        lines,
        [
            "SKU CRMSTANDARD: d365, service plan CRMSTANDARD (MICROSOFT DYNAMICS CRM ONLINE PROFESSIONA), in Microsoft's published list",
            "SKU ENTERPRISEPREMIUM: m365-dataverse, service plan POWERAPPS_O365_P3 (Power Apps for Office 365 (Plan 3)), in the export's servicePlans",
            "SKU CONTOSO_CUSTOM: office, not in Microsoft's published list, and no servicePlans given",
        ],
        "{out}"
    );
    // A SKU the tenant has keeps its kind, and the report says so.
    sb.ok("sku add --sku EXTRA_PRO --kind office --seats 1");
    let skus = skus_file(
        &sb,
        &[("22222222-2222-4333-8444-555555555555", "EXTRA_PRO", &["DYN365_ENTERPRISE_SALES"])],
    );
    let out = sb.ok(&format!("import graph --users {users} --skus {skus}"));
    assert!(out.contains("SKU EXTRA_PRO: office, kept from before (this export reads d365: service plan DYN365_ENTERPRISE_SALES"), "{out}");
}

/// S1: a first pass of more changes than one transaction holds leaves the
/// environment's snapshot, folded beside the appends as they land: `verify`
/// finds it the fold of the log at the pass's last record, and the view
/// that starts from it lists every record.
#[test]
fn s1_a_large_first_pass_leaves_the_snapshot_its_records_fold_to() {
    const USERS: usize = 2_500; // three of the pass's transactions
    let mut sb = Sandbox::contoso();
    let users: Vec<Value> = (0..USERS)
        .map(|i| {
            let (id, upn) =
                (format!("0b8c1a2e-0000-4000-8000-{i:012}"), format!("u{i}@contoso.onmicrosoft.com"));
            user(&id, &upn, "U", Value::Null, &[SALES_SKU])
        })
        .collect();
    let skus = json!([{ "skuId": SALES_SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES",
                        "prepaidUnits": { "enabled": 3_000 }, "consumedUnits": USERS }]);
    let (users_file, skus_file) = (sb.dir().join("users.json"), sb.dir().join("skus.json"));
    std::fs::write(&users_file, json!({ "value": users }).to_string()).unwrap();
    std::fs::write(&skus_file, skus.to_string()).unwrap();
    sb.ok(&format!(
        "import graph --keep-missing --users {} --skus {}",
        users_file.display(),
        skus_file.display()
    ));
    sb.ok("env create --name Big --type production");
    let pass = sb.json("sync --env Big");
    assert_eq!(pass[0]["added"], USERS + 1, "and the admin");
    let last = pass[0]["lastSeq"].as_u64().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let names = runtime.block_on(async { sb.shell(None).await.store.snapshot_names().await.unwrap() });
    let env_snapshot = |(name, seq): &(String, u64)| name.starts_with("aggregate/env/") && *seq == last;
    assert!(names.iter().any(env_snapshot), "a snapshot at the pass's last record: {names:?}");
    let verified = sb.json("verify");
    assert_eq!((&verified["ok"], &verified["caches"]), (&json!(true), &json!([])), "{verified}");
    let rows = sb.json("systemusers --env Big");
    assert!(rows.as_array().unwrap().len() > USERS, "{} rows", rows.as_array().unwrap().len());
}
