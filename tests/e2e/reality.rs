//! Reality check (issue 32): real-shaped environment listings and SystemUser
//! exports (`tests/data/reality/`), reconciled with what the rules predict.

use serde_json::Value;
use tests::Sandbox;

fn data(file: &str) -> String {
    format!("{}/data/reality/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn pages(kind: &str) -> String {
    format!("{} {}", data(&format!("systemusers-{kind}-1.json")), data(&format!("systemusers-{kind}-2.json")))
}

/// The log seqs a scenario's steps landed at.
struct Steps {
    /// The first sync of Prod, which added every entitled user.
    first_sync: (u64, u64),
    /// The directory import that removed dave's license.
    license_removed: (u64, u64),
}

fn range(doc: &Value) -> (u64, u64) {
    let seq = |k: &str| doc[k].as_u64().unwrap_or_else(|| panic!("{k} in {doc}"));
    (seq("firstSeq"), seq("lastSeq"))
}

/// Contoso's directory from the Graph exports of `tests/data/reality/`.
fn directory() -> Sandbox {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!(
        "import graph --users {} {} --groups {} --skus {}",
        data("graph-users-1.json"),
        data("graph-users-2.json"),
        data("graph-groups.json"),
        data("graph-skus.json")
    ));
    sb
}

/// Contoso from Graph exports, its environments from the admin API, Prod
/// synced; an application user and henry's role through logged commands;
/// then dave's license removed in the directory, and Prod synced again.
fn contoso() -> (Sandbox, Steps) {
    let mut sb = directory();
    sb.ok(&format!("import environments --file {}", data("environments.json")));
    let first_sync = range(&sb.json("sync --env Prod")[0]);
    sb.ok("app-user create --env Prod --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --name 'ERP connector' --role 'Basic User'");
    sb.ok("role assign --env Prod --upn henry@contoso.onmicrosoft.com --role 'Basic User'");
    let license_removed =
        range(&sb.json(&format!("import graph --users {}", data("graph-users-later.json"))));
    sb.ok("sync --env Prod");
    (sb, Steps { first_sync, license_removed })
}

fn within(seqs: &Value, (first, last): (u64, u64)) -> bool {
    seqs.as_array().is_some_and(|s| s.iter().filter_map(Value::as_u64).any(|s| (first..=last).contains(&s)))
}

#[test]
fn environments_import_as_a_diff_shared_names_take_the_admin_id_and_nothing_is_deleted() {
    let mut sb = directory();
    let out = sb.ok(&format!("import environments --file {}", data("environments.json")));
    assert!(out.contains("created production environment Prod with Dataverse"), "{out}");
    assert!(out.contains("created teams environment Marketing Team without Dataverse"), "{out}");
    let envs = sb.json("env list");
    let names: Vec<&str> = envs.as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "Contoso (default)",
            "Marketing Team",
            "Prod",
            "Test (a3b4c5d6-1111-4a2b-8c3d-4e5f6a7b8c01)",
            "Test (a3b4c5d6-2222-4a2b-8c3d-4e5f6a7b8c02)"
        ]
    );
    let prod = envs.as_array().unwrap().iter().find(|e| e["name"] == "Prod").unwrap();
    assert_eq!((prod["securityGroup"].as_str(), prod["dataverse"].as_bool()), (Some("Sales-SG"), Some(true)));
    // --env takes the admin API's id where the display name is shared.
    let test = sb.json("systemusers --env a3b4c5d6-2222-4a2b-8c3d-4e5f6a7b8c02");
    assert_eq!(test.as_array().map(Vec::len), Some(2), "the two placeholders (E5): {test}");
    // The same listing twice, or pac's shape of it, appends nothing.
    let records = sb.records();
    for file in ["environments.json", "pac-admin-list.json"] {
        let out = sb.ok(&format!("import environments --file {}", data(file)));
        assert!(out.contains("nothing appended"), "{file}: {out}");
    }
    assert_eq!(sb.records(), records);
    // A listing without Test and with Prod now a sandbox: Test reported, never deleted.
    let listing: Value =
        serde_json::from_str(&std::fs::read_to_string(data("environments.json")).unwrap()).unwrap();
    let mut kept: Vec<Value> = listing["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["properties"]["displayName"] != "Test")
        .cloned()
        .collect();
    kept[0]["properties"]["environmentSku"] = "Sandbox".into();
    // Marketing Team gains a database tied to Sales-SG.
    let linked = kept[0]["properties"]["linkedEnvironmentMetadata"].clone();
    kept[2]["properties"]["linkedEnvironmentMetadata"] = linked;
    let file = sb.dir().join("fewer.json");
    std::fs::write(&file, serde_json::json!({ "value": kept }).to_string()).unwrap();
    let out = sb.ok(&format!("import environments --file {}", file.display()));
    for change in [
        "Prod: type production -> sandbox",
        "Marketing Team: Dataverse database added",
        "Marketing Team: security group set to Sales-SG",
        "Test (a3b4c5d6-1111-4a2b-8c3d-4e5f6a7b8c01): not in the listing (kept",
    ] {
        assert!(out.contains(change), "{change}: {out}");
    }
    assert_eq!(sb.json("env list").as_array().map(Vec::len), Some(5));
    assert_eq!(sb.json("systemusers --env 'Marketing Team'").as_array().map(Vec::len), Some(2), "E5");
    // E2: the default environment cannot be tied to a group, as `env set` decides.
    kept[1]["properties"]["linkedEnvironmentMetadata"]["securityGroupId"] =
        "9a9a9a9a-0000-4000-8000-000000000009".into();
    std::fs::write(&file, serde_json::json!({ "value": kept }).to_string()).unwrap();
    let records = sb.records();
    let err = sb.fails(&format!("import environments --file {}", file.display()), 1);
    assert!(err.contains("rejected (E2)"), "{err}");
    assert_eq!(sb.records(), records + 1, "one audit record, nothing else (L1)");
}

#[test]
fn s2_2_s1_s2_a1_the_five_planted_departures_are_named_with_their_rule_and_evidence_and_nothing_else() {
    let (mut sb, steps) = contoso();
    sb.ok(&format!(
        "import systemusers --env Prod --file {} --observed-at 2026-01-05T08:00:00Z",
        pages("planted")
    ));
    let found = sb.json("reconcile --env Prod");
    let found = found.as_array().unwrap();
    let named = named(found);
    // Access that should not exist first.
    assert_eq!(
        named,
        [
            ("dave@contoso.onmicrosoft.com", "isdisabled", "S2.2"),
            ("erin@contoso.onmicrosoft.com", "record", "S1"),
            ("frank@contoso.onmicrosoft.com", "isdisabled", "S2"),
            ("grace@contoso.onmicrosoft.com", "accessmode", "A1"),
            ("alice@contoso.onmicrosoft.com", "role", "outside the log"),
        ]
    );
    let by =
        |upn: &str| found.iter().find(|d| d["upn"].as_str().is_some_and(|u| u.starts_with(upn))).unwrap();
    // dave: the license removal is the evidence, and the sync that has not run since.
    assert!(within(&by("dave")["evidence"], steps.license_removed), "{}", by("dave"));
    assert_eq!((&by("dave")["expected"], &by("dave")["observed"]), (&Value::Bool(true), &Value::Bool(false)));
    assert!(by("dave")["advice"].as_str().unwrap().contains("the sync has not run since record"));
    for upn in ["erin", "frank", "grace"] {
        assert!(within(&by(upn)["evidence"], steps.first_sync), "{}", by(upn));
    }
    assert_eq!((&by("grace")["expected"], &by("grace")["observed"]), (&Value::from(0), &Value::from(2)));
    assert!(by("grace")["advice"].as_str().unwrap().contains("changed by hand"));
    assert_eq!(
        (&by("alice")["expected"], &by("alice")["observed"]),
        (&Value::Null, &Value::from("System Customizer"))
    );
    // review's reality section holds the same, with severities.
    let review = sb.json("review --env Prod");
    let reality =
        review.as_array().unwrap().iter().filter(|f| f["detail"].as_str().unwrap().starts_with("reality:"));
    let severities: Vec<(&str, &str)> =
        reality.map(|f| (f["severity"].as_str().unwrap(), f["rule"].as_str().unwrap())).collect();
    assert_eq!(
        severities,
        [("high", "S2.2"), ("medium", "S1"), ("medium", "S2"), ("medium", "A1"), ("low", "outside the log")]
    );
    // The report's findings gain the same reality section, apart from review's own.
    let out = sb.dir().join("report.html");
    sb.ok(&format!("report --env Prod --out {}", out.display()));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<span data-n=\"Prod/reality\">5</span> departures from the rules"), "{html}");
    for upn in ["dave", "erin", "frank", "grace", "alice"] {
        assert!(html.contains(&format!("<td>{upn}@contoso.onmicrosoft.com</td>")), "{upn}");
    }
}

#[test]
fn a_clean_export_gives_no_difference_and_each_import_is_idempotent() {
    let (mut sb, _) = contoso();
    let line = format!("import systemusers --env Prod --file {}", pages("clean"));
    assert!(sb.ok(&line).contains("11 new or changed"));
    let records = sb.records();
    assert!(sb.ok(&line).contains("nothing appended"));
    assert_eq!(sb.records(), records, "the same export twice appends nothing");
    assert_eq!(sb.json("reconcile --env Prod"), Value::Array(vec![]));
    // Only the rows that changed are recorded: the planted export after the clean one.
    let planted = sb.json(&format!("import systemusers --env Prod --file {}", pages("planted")));
    assert_eq!((planted["changed"].as_u64(), planted["gone"].as_u64()), (Some(4), Some(1)), "{planted}");
    assert_eq!(sb.json("reconcile --env Prod").as_array().map(Vec::len), Some(5));
    // --at answers with the observation of that time.
    assert_eq!(sb.json(&format!("reconcile --env Prod --at seq:{records}")), Value::Array(vec![]));
}

#[test]
fn a_field_left_out_of_select_is_not_observed_and_never_a_difference() {
    let (mut sb, _) = contoso();
    let rows: Value =
        serde_json::from_str(&std::fs::read_to_string(data("systemusers-planted-2.json")).unwrap()).unwrap();
    // grace's accessmode and frank's isdisabled left out: their departures are not seen.
    let mut rows = rows["value"].clone();
    for row in rows.as_array_mut().unwrap() {
        let row = row.as_object_mut().unwrap();
        if !row["domainname"].as_str().is_some_and(|d| d.starts_with("frank") || d.starts_with("grace")) {
            continue;
        }
        row.remove("accessmode");
        row.remove("isdisabled");
        row.remove("systemuserroles_association");
    }
    let file = sb.dir().join("narrow.json");
    std::fs::write(&file, serde_json::json!({ "value": rows }).to_string()).unwrap();
    sb.ok(&format!(
        "import systemusers --env Prod --file {} {}",
        data("systemusers-planted-1.json"),
        file.display()
    ));
    let fields: Vec<String> = sb
        .json("reconcile --env Prod")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["upn"], d["field"]))
        .collect();
    assert_eq!(
        fields,
        [
            "\"dave@contoso.onmicrosoft.com\" \"isdisabled\"",
            "\"erin@contoso.onmicrosoft.com\" \"record\"",
            "\"alice@contoso.onmicrosoft.com\" \"role\""
        ]
    );
}

#[test]
fn bad_files_exit_2_naming_file_and_place_with_nothing_appended() {
    let (mut sb, _) = contoso();
    let records = sb.records();
    let id = "5e6f7a8b-0000-4000-8000-000000000001";
    for (name, text, says) in [
        (
            "syntax.json",
            "{\"value\": [\n  {\"systemuserid\": \"x\",,}\n]}".to_owned(),
            "syntax.json at line 2, column",
        ),
        (
            "mode.json",
            format!(r#"{{"value": [{{"systemuserid": "{id}", "accessmode": 9}}]}}"#),
            "mode.json item 1: \"accessmode\" 9 is not an access mode",
        ),
        (
            "flag.json",
            format!(r#"[{{"systemuserid": "{id}"}}, {{"systemuserid": "{id}", "isdisabled": "no"}}]"#),
            "flag.json item 2: systemuserid",
        ),
        (
            "type.json",
            format!(r#"[{{"systemuserid": "{id}", "islicensed": "no"}}]"#),
            "type.json item 1: \"islicensed\" must be true or false",
        ),
        ("id.json", r#"[{"domainname": "a@contoso.com"}]"#.to_owned(), "id.json at line 1, column"),
    ] {
        let file = sb.dir().join(name);
        std::fs::write(&file, text).unwrap();
        let err = sb.fails(&format!("import systemusers --env Prod --file {}", file.display()), 2);
        assert!(err.contains(says), "{name}: {err}");
    }
    for (name, text, says) in [
        (
            "sku.json",
            r#"{"value": [{"name": "x", "properties": {"displayName": "X", "environmentSku": "Weird"}}]}"#,
            "sku.json item 1: \"properties.environmentSku\"",
        ),
        (
            "group.json",
            r#"[{"EnvironmentId": "x", "DisplayName": "X", "Type": "Sandbox", "SecurityGroupId": "nope"}]"#,
            "group.json item 1: \"SecurityGroupId\" is not a GUID",
        ),
    ] {
        let file = sb.dir().join(name);
        std::fs::write(&file, text).unwrap();
        let err = sb.fails(&format!("import environments --file {}", file.display()), 2);
        assert!(err.contains(says), "{name}: {err}");
    }
    assert_eq!(sb.records(), records, "nothing appended");
}

#[test]
fn d9_s2_1_s3_access_that_should_not_exist_comes_first_with_its_likely_cause() {
    let (mut sb, _) = contoso();
    sb.ok("user create --upn ivan@contoso.onmicrosoft.com --first Ivan --last Tester --license DYN365_ENTERPRISE_SALES");
    sb.ok("group create --name Sales-Nested");
    sb.ok("group add-member --group Sales-Nested --upn ivan@contoso.onmicrosoft.com");
    sb.ok("group add-member --group Sales-SG --member-group Sales-Nested");
    sb.ok("sync --env Prod");
    let users = sb.json("user list");
    let ivan =
        users.as_array().unwrap().iter().find(|u| u["userPrincipalName"] == "ivan@contoso.onmicrosoft.com");
    let ivan = ivan.unwrap()["id"].as_str().unwrap().to_owned();
    // The clean export, where ivan (in Sales-SG only through a nested group)
    // and a user the directory never held are enabled, and the setup admin
    // is Read-Write.
    let page: Value =
        serde_json::from_str(&std::fs::read_to_string(data("systemusers-clean-1.json")).unwrap()).unwrap();
    let mut rows = page["value"].as_array().unwrap().clone();
    let admin = rows.iter_mut().find(|r| r["domainname"] == "admin@contoso.onmicrosoft.com").unwrap();
    admin["accessmode"] = 0.into();
    for (n, (upn, object)) in
        [("ivan", ivan.as_str()), ("ghost", "deadbeef-0000-4000-8000-00000000beef")].into_iter().enumerate()
    {
        let mut row = rows[3].clone();
        row["systemuserid"] = format!("5e6f7a8b-0000-4000-8000-0000000001{n:02}").into();
        row["domainname"] = format!("{upn}@contoso.onmicrosoft.com").into();
        row["azureactivedirectoryobjectid"] = object.into();
        rows.push(row);
    }
    let file = sb.dir().join("page-1.json");
    std::fs::write(&file, serde_json::json!({ "value": rows }).to_string()).unwrap();
    sb.ok(&format!(
        "import systemusers --env Prod --file {} {}",
        file.display(),
        data("systemusers-clean-2.json")
    ));
    let found = sb.json("reconcile --env Prod");
    let named = named(found.as_array().unwrap());
    assert_eq!(
        named,
        [
            ("admin@contoso.onmicrosoft.com", "accessmode", "S3"),
            ("ghost@contoso.onmicrosoft.com", "record", "S2.1"),
            ("ivan@contoso.onmicrosoft.com", "record", "S2.4"),
        ]
    );
    let advice = found[2]["advice"].as_str().unwrap();
    assert!(advice.contains("only through a nested group, which is ignored (D9)"), "{advice}");
    let review = sb.json("review --env Prod --severity high");
    let reality =
        review.as_array().unwrap().iter().filter(|f| f["detail"].as_str().unwrap().starts_with("reality:"));
    assert_eq!(reality.count(), 3, "{review}");
}

/// Each difference as (upn, field, rule), in reconcile's order.
fn named(found: &[serde_json::Value]) -> Vec<(&str, &str, &str)> {
    found
        .iter()
        .map(|d| (d["upn"].as_str().unwrap(), d["field"].as_str().unwrap(), d["rule"].as_str().unwrap()))
        .collect()
}
