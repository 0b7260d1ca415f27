//! compare, changes, review: the questions no other tool answers.

use serde_json::Value;
use tests::Sandbox;

const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";

/// Sales with alice (Salesperson through the group team) and bob (licensed,
/// in the group, not yet synced into the team).
fn sales() -> Sandbox {
    Sandbox::sales_team(10)
}

fn aspects(comparison: &Value) -> Vec<(String, String)> {
    comparison["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["aspect"].as_str().unwrap().to_owned(), d["detail"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn compare_names_the_missing_group_membership_role_and_privileges() {
    let mut sb = sales();
    let cmp = sb.json(&format!("compare --env Sales --upn {BOB} --with {ALICE}"));
    assert_eq!((cmp["upn"].as_str(), cmp["with"].as_str()), (Some(BOB), Some(ALICE)));
    let found = aspects(&cmp);
    assert!(found.contains(&("check".into(), "security group (S2.4)".into())), "{found:?}");
    assert!(
        found.contains(&("isdisabled".into(), "the record's status (S4, S5)".into())),
        "bob has no record: {found:?}"
    );
    assert!(found.contains(&("role".into(), "role Salesperson (direct or through a team, R3)".into())));
    let read_account = cmp["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["detail"] == "read on account (R3)")
        .unwrap();
    assert_eq!(read_account["b"], "bu from Salesperson (team Sales team)");
    assert_eq!(read_account["a"], Value::Null);
    // Yes-or-no aspects are JSON booleans (issue 30); no record is null.
    let side = |aspect: &str| {
        let d = cmp["differences"].as_array().unwrap().iter().find(|d| d["aspect"] == aspect).unwrap();
        (d["a"].clone(), d["b"].clone())
    };
    assert_eq!(side("isdisabled"), (Value::Null, Value::Bool(false)));
    assert_eq!(side("islicensed"), (Value::Null, Value::Bool(true)));
    // Fixed: the golden user and bob stand the same.
    sb.ok(&format!("group add-member --group Sales-SG --upn {BOB}"));
    sb.ok("sync");
    let same = sb.json(&format!("compare --env Sales --upn {BOB} --with {ALICE}"));
    assert_eq!(same["differences"], serde_json::json!([]));
    // --at applies to both: before the fix they differed.
    let earlier = sb.records() - 5;
    let before = sb.json(&format!("compare --env Sales --upn {BOB} --with {ALICE} --at seq:{earlier}"));
    assert!(!before["differences"].as_array().unwrap().is_empty());
    sb.fails(&format!("compare --env Sales --upn nobody@contoso.onmicrosoft.com --with {ALICE}"), 2);
}

#[test]
fn changes_lists_the_drift_between_two_points_with_causes() {
    let mut sb = sales();
    let from = sb.records();
    sb.ok(&format!("user update --upn {ALICE} --title 'Sales Manager'"));
    sb.ok(&format!("group add-member --group Sales-SG --upn {BOB}"));
    sb.ok("sync");
    sb.ok(&format!("user set-access-mode --env Sales --upn {ALICE} --mode read"));
    let to = sb.records();
    let drift = sb.json(&format!("changes --env Sales --from seq:{from} --to seq:{to}"));
    let rows: Vec<(String, String, String)> = drift
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["upn"].as_str().unwrap().into(),
                c["change"].as_str().unwrap().into(),
                c["field"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(rows.contains(&(ALICE.into(), "changed".into(), "jobtitle".into())), "{rows:?}");
    assert!(rows.contains(&(BOB.into(), "added".into(), String::new())), "{rows:?}");
    assert!(rows.contains(&(BOB.into(), "role gained".into(), "role".into())), "{rows:?}");
    assert!(rows.contains(&(ALICE.into(), "accessmode".into(), "accessmode".into())), "{rows:?}");
    let mode = drift.as_array().unwrap().iter().find(|c| c["change"] == "accessmode").unwrap();
    assert_eq!((mode["oldValue"].as_str(), mode["newValue"].as_str()), (Some("0"), Some("2")));
    assert_eq!(mode["cause"]["initiatedBy"], "admin@contoso.onmicrosoft.com");
    let added = drift.as_array().unwrap().iter().find(|c| c["change"] == "added").unwrap();
    assert_eq!(added["cause"]["initiatedBy"], "sync (app)");
    assert_eq!(added["cause"]["activityDisplayName"], "Synchronize user");
    assert_eq!(
        sb.json(&format!("changes --env Sales --from seq:{to} --to seq:{to}")),
        serde_json::json!([]),
        "empty interval"
    );
    sb.fails(&format!("changes --env Sales --from seq:{to} --to seq:{from}"), 2);
}

#[test]
fn review_finds_what_an_auditor_asks_for() {
    // R: R4, R6, A3, D4, D6, D10, P2
    let mut sb = sales();
    sb.ok("role copy --env Sales --from Salesperson --name 'Account Owner'");
    sb.ok("role set-privilege --env Sales --role 'Account Owner' --table account --op delete --level org");
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role 'Account Owner'"));
    sb.ok(
        "user create --upn carol@contoso.onmicrosoft.com --first Carol --last Tester --license DYN365_SALES",
    );
    sb.ok("group add-member --group Sales-SG --upn carol@contoso.onmicrosoft.com");
    sb.ok("user create --upn jane@fabrikam.com --first Jane --last Doe --guest --license DYN365_SALES --home-license DYN365_ENTERPRISE");
    sb.ok("group add-member --group Sales-SG --upn jane@fabrikam.com");
    sb.ok("app-user create --env Sales --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --name 'ERP connector'");
    sb.ok("env set --env Sales --setting allowApplicationUserStatusChange=true");
    sb.ok("app-user set-status --env Sales --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --enabled false");
    sb.ok("sync");
    sb.ok(&format!("user block --upn {BOB}"));
    sb.advance_days(40);
    sb.ok("sync");
    let findings = sb.json("review --env Sales");
    let by_rule = |rule: &str| -> Vec<Value> {
        findings.as_array().unwrap().iter().filter(|f| f["rule"] == rule).cloned().collect()
    };
    let wide = by_rule("R6");
    assert_eq!(wide.len(), 1);
    assert_eq!((wide[0]["upn"].as_str(), wide[0]["severity"].as_str()), (Some(ALICE), Some("high")));
    assert!(wide[0]["detail"].as_str().unwrap().contains("delete account (from Account Owner)"));
    let seats = by_rule("D4");
    assert_eq!(seats[0]["upn"], BOB);
    assert!(seats[0]["detail"].as_str().unwrap().starts_with("blocked since"));
    let guest = by_rule("D10");
    assert_eq!(guest.len(), 1);
    assert_eq!(
        (guest[0]["upn"].as_str(), guest[0]["detail"].as_str()),
        (Some("jane@fabrikam.com"), Some("guest: licensed in this tenant: DYN365_SALES"))
    );
    let apps = by_rule("P2");
    assert_eq!(apps[0]["upn"], "ERP connector");
    let limit = by_rule("A3");
    assert_eq!(limit[0]["detail"], "0 of 7 non-interactive users (application users do not count)");
    assert_eq!(
        (&limit[0]["upn"], &limit[0]["environment"]),
        (&Value::Null, &serde_json::json!("Sales")),
        "about the environment"
    );
    for f in findings.as_array().unwrap() {
        assert!(["high", "medium", "low"].contains(&f["severity"].as_str().unwrap()));
        assert!(f["advice"].as_str().is_some_and(|a| !a.is_empty()));
    }
    let severities: Vec<&str> =
        findings.as_array().unwrap().iter().map(|f| f["severity"].as_str().unwrap()).collect();
    let mut sorted = severities.clone();
    sorted.sort_by_key(|s| ["high", "medium", "low"].iter().position(|x| x == s));
    assert_eq!(severities, sorted, "most severe first");
}

/// D7 in diagnose's advice: within 30 days a deleted user can be restored,
/// after them it is gone for good; the domain's `is_purged` says which.
#[test]
fn d7_diagnose_advises_restore_within_the_window_and_recreation_after_it() {
    let mut sb = sales();
    sb.ok(&format!("user delete --upn {BOB}"));
    let advice = |sb: &mut Sandbox| -> Vec<String> {
        let d = sb.json(&format!("diagnose --env Sales --upn {BOB}"));
        assert_eq!(d["canAccess"], false);
        d["advice"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
    };
    sb.advance_days(20);
    let within = advice(&mut sb);
    assert!(within.iter().any(|a| a.starts_with("restore the user before")), "{within:?}");
    assert!(!within.iter().any(|a| a.contains("gone for good")), "{within:?}");
    sb.advance_days(15);
    let after = sb.run(&format!("diagnose --env Sales --upn {BOB} --json"));
    // Gone for good: the UPN names nobody any more, or the advice says so.
    assert!(
        after.code == 2 || after.stdout.contains("is gone for good: create the user again"),
        "{} {}",
        after.stdout,
        after.stderr
    );
}

/// `review` without `--env` reviews every environment (each finding names
/// its own); `--severity` keeps that severity or higher, `--rule` those
/// rules; the table opens with a summary by severity and rule.
#[test]
fn review_summarises_by_rule_and_severity_and_filters_by_environment_rule_and_severity() {
    let mut sb = sales();
    sb.ok("env create --name Ops --type sandbox");
    sb.ok("sync");
    sb.ok(&format!("user block --upn {BOB}"));
    let all = sb.json("review");
    let rows = all.as_array().unwrap();
    let envs: std::collections::BTreeSet<&str> =
        rows.iter().map(|f| f["environment"].as_str().unwrap()).collect();
    assert_eq!(envs, ["Ops", "Sales"].into_iter().collect(), "{all}");
    let sales_only = sb.json("review --env Sales");
    assert!(sales_only.as_array().unwrap().iter().all(|f| f["environment"] == "Sales"));
    assert_eq!(
        sales_only.as_array().unwrap().len(),
        rows.iter().filter(|f| f["environment"] == "Sales").count(),
        "the same findings, filtered"
    );
    let rank = |s: &str| ["high", "medium", "low"].iter().position(|x| *x == s).unwrap();
    for severity in ["high", "medium", "low"] {
        let kept = sb.json(&format!("review --severity {severity}"));
        let want = rows.iter().filter(|f| rank(f["severity"].as_str().unwrap()) <= rank(severity)).count();
        assert_eq!(kept.as_array().unwrap().len(), want, "--severity {severity}");
    }
    let a3 = sb.json("review --rule a3");
    assert!(!a3.as_array().unwrap().is_empty() && a3.as_array().unwrap().iter().all(|f| f["rule"] == "A3"));
    let table = sb.ok("review --env Sales");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("access review of Sales as of"), "{table}");
    assert!(
        lines[1].starts_with("SEVERITY") && lines[1].contains("FINDINGS"),
        "the summary comes first: {table}"
    );
    sb.fails("review --severity urgent", 2);
}
