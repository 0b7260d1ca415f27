//! The views as of any point (L4), rebuilt from zero, and the audit history (L1, L2).

use projections::fold::{load, Snapshots};
use serde_json::Value;
use store::{OpenOptions, SledStore};
use tests::Sandbox;

const ALICE: &str = "alice@contoso.onmicrosoft.com";

/// A script that touches every kind of record: directory, environment,
/// sync, security, refusals.
fn scripted() -> (Sandbox, Vec<&'static str>) {
    let sb = Sandbox::contoso();
    let script = vec![
        "sku add --sku DYN365_SALES --kind d365 --seats 3",
        "group create --name Sales-SG",
        "user create --upn alice@contoso.onmicrosoft.com --first Alice --last Smith --license DYN365_SALES",
        "group add-member --group Sales-SG --upn alice@contoso.onmicrosoft.com",
        "env create --name Sales --type production --security-group Sales-SG --app sales",
        "sync",
        "team create --env Sales --name 'Sales team' --group Sales-SG",
        "team role assign --env Sales --team 'Sales team' --role Salesperson",
        "sync",
        "user update --upn alice@contoso.onmicrosoft.com --city Lyon",
        "user access --env Sales --upn alice@contoso.onmicrosoft.com",
        "group remove-member --group Sales-SG --upn alice@contoso.onmicrosoft.com",
        "sync",
        "user access --env Sales --upn alice@contoso.onmicrosoft.com",
        "group add-member --group Sales-SG --upn alice@contoso.onmicrosoft.com",
        "user refresh --env Sales --upn alice@contoso.onmicrosoft.com",
        "user set-access-mode --env Sales --upn alice@contoso.onmicrosoft.com --mode administrative",
        "user license remove --upn alice@contoso.onmicrosoft.com --sku DYN365_SALES",
        "sync",
    ];
    (sb, script)
}

fn views(sb: &mut Sandbox, at: u64) -> Vec<String> {
    [
        format!("systemusers --env Sales --at seq:{at}"),
        format!("diagnose --env Sales --upn {ALICE} --at seq:{at}"),
        format!("timeline --env Sales --upn {ALICE} --at seq:{at}"),
        format!("privileges --env Sales --upn {ALICE} --at seq:{at}"),
        format!("history --at seq:{at} --limit 5"),
        format!("user list --at seq:{at}"),
    ]
    .iter()
    .map(|line| {
        let run = sb.run(&format!("{line} --json"));
        format!("{} {}{}", run.code, run.stdout, run.stderr)
    })
    .collect()
}

#[test]
fn l4_every_view_as_of_seq_n_says_what_it_said_when_n_was_the_head() {
    // R: L4
    let (mut sb, script) = scripted();
    let mut then = Vec::new();
    for line in script {
        let run = sb.run(line);
        assert!(run.code <= 1, "{line}: {}", run.stderr);
        let head = sb.records();
        if sb.run("env list --json").stdout.contains("Sales") {
            then.push((head, views(&mut sb, head)));
        }
    }
    assert!(then.len() > 10);
    for (seq, said) in then {
        for (view, (now, then)) in views(&mut sb, seq).iter().zip(&said).enumerate() {
            if now != then {
                let at = now.chars().zip(then.chars()).position(|(a, b)| a != b).unwrap_or(0);
                let context = |s: &str| s.chars().skip(at.saturating_sub(80)).take(200).collect::<String>();
                panic!(
                    "view {view} as of seq:{seq} changed afterwards:\nthen: {}\nnow:  {}",
                    context(then),
                    context(now)
                );
            }
        }
    }
}

#[test]
fn a_rebuild_from_zero_equals_the_checkpointed_states() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 400");
    sb.ok("env create --name Sales --type production");
    // Enough records in each stream that loading saves snapshots along the way.
    for i in 0..150 {
        sb.ok(&format!(
            "user create --upn u{i}@contoso.onmicrosoft.com --first U --last {i} --license DYN365_SALES"
        ));
        if i % 50 == 49 {
            sb.ok("sync");
            sb.ok("systemusers --env Sales");
        }
    }
    let head = sb.records();
    let store = SledStore::open(sb.db(), OpenOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env_stream = {
        let (tenant, _): (domain::tenant::Tenant, u64) =
            rt.block_on(load(&store, "tenant", head, Snapshots::Ignore)).unwrap();
        domain::environment::stream(tenant.environment("Sales").unwrap().0)
    };
    let snapshots_made =
        rt.block_on(store::EventStore::load_snapshot(&store, "aggregate/tenant", head)).unwrap();
    assert!(snapshots_made.is_some(), "the checkpoint exists, so the comparison means something");
    for at in [head / 3, head / 2, head - 7, head] {
        let (t1, v1): (domain::tenant::Tenant, u64) =
            rt.block_on(load(&store, "tenant", at, Snapshots::Use)).unwrap();
        let (t2, v2): (domain::tenant::Tenant, u64) =
            rt.block_on(load(&store, "tenant", at, Snapshots::Ignore)).unwrap();
        assert_eq!((t1, v1), (t2, v2), "tenant as of seq {at}");
        let (e1, w1): (domain::environment::Environment, u64) =
            rt.block_on(load(&store, &env_stream, at, Snapshots::Use)).unwrap();
        let (e2, w2): (domain::environment::Environment, u64) =
            rt.block_on(load(&store, &env_stream, at, Snapshots::Ignore)).unwrap();
        assert_eq!((e1, w1), (e2, w2), "environment as of seq {at}");
    }
}

#[test]
fn l1_history_has_one_record_per_command_newest_first_with_old_and_new_values() {
    let (mut sb, script) = scripted();
    for line in &script[..4] {
        sb.ok(line);
    }
    sb.ok(&format!("user update --upn {ALICE} --city Lyon --title Seller"));
    sb.fails(&format!("user license assign --upn {ALICE} --sku NOPE"), 2);
    sb.fails(&format!("user create --upn {ALICE} --first A --last B"), 1);
    let history = sb.json("history --limit 3");
    let records = history.as_array().unwrap();
    assert_eq!(records.len(), 3);
    let refused = &records[0];
    assert_eq!(
        (refused["result"].as_str(), refused["activityDisplayName"].as_str()),
        (Some("failure"), Some("Add user"))
    );
    assert!(refused["resultReason"].as_str().unwrap().starts_with("rejected (D1)"));
    let update = &records[1];
    assert_eq!(update["activityDisplayName"], "Update user");
    let changed: Vec<(Value, Value, Value)> = update["targetResources"][0]["modifiedProperties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["displayName"].clone(), m["oldValue"].clone(), m["newValue"].clone()))
        .collect();
    assert_eq!(
        changed,
        vec![("jobTitle".into(), Value::Null, "Seller".into()), ("city".into(), Value::Null, "Lyon".into())]
    );
    assert_eq!(update["initiatedBy"]["user"]["userPrincipalName"], "admin@contoso.onmicrosoft.com");
    // seq is the command's last record: --at seq:N shows the whole command.
    assert!(records[2]["seq"].as_u64() < update["seq"].as_u64());
    // `--user` keeps exactly the records about her: an empty answer, or one
    // that drops or adds a record, fails.
    let by_user = sb.json(&format!("history --user {ALICE}"));
    let all = sb.json("history");
    let about: Vec<&Value> =
        all.as_array().unwrap().iter().filter(|r| r.to_string().contains(ALICE)).collect();
    let kept: Vec<&Value> = by_user.as_array().unwrap().iter().collect();
    assert_eq!(kept, about);
    assert!(all.as_array().unwrap().len() > kept.len(), "records about others are left out");
    let activities: Vec<&str> = kept.iter().filter_map(|r| r["activityDisplayName"].as_str()).collect();
    for activity in ["Add user", "Update user"] {
        assert!(activities.contains(&activity), "{activity} in {activities:?}");
    }
    let err = sb.fails("history --env Nowhere", 2);
    assert!(err.contains("unknown environment Nowhere"), "{err}");
}

#[test]
fn l2_a_sync_pass_is_initiated_by_the_app_one_record_per_systemuser() {
    let (mut sb, script) = scripted();
    for line in &script[..6] {
        sb.ok(line);
    }
    let history = sb.json("history --env Sales --limit 10");
    let sync: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["activityDisplayName"] == "Synchronize user")
        .collect();
    assert_eq!(sync.len(), 2, "alice and the admin");
    for record in sync {
        assert_eq!(record["initiatedBy"]["app"]["displayName"], "sync");
        assert_eq!(record["environment"], "Sales");
        assert_eq!(record["targetResources"][0]["type"], "SystemUser");
    }
}

#[test]
fn history_filters_by_time_and_limit() {
    let (mut sb, script) = scripted();
    for line in &script[..3] {
        sb.ok(line);
    }
    let middle = sb.now();
    sb.advance_days(1);
    for line in &script[3..6] {
        sb.ok(line);
    }
    let since = sb.json(&format!("history --since {middle}"));
    let until = sb.json(&format!("history --until {middle}"));
    let all = sb.json("history --limit 1000");
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    assert_eq!(count(&since) + count(&until), count(&all));
    assert!(since
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["activityDateTime"].as_str().unwrap() >= middle.as_str()));
    assert_eq!(count(&sb.json("history --limit 2")), 2);
}
