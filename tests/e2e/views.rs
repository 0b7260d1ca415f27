//! The views as of any point (L4), rebuilt from zero, and the audit history (L1, L2).

use projections::fold::{load, Snapshots};
use serde_json::Value;
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
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shell = rt.block_on(sb.shell(None));
    let store = &*shell.store;
    let env_stream = {
        let (tenant, _): (domain::tenant::Tenant, u64) =
            rt.block_on(load(store, "tenant", head, Snapshots::Ignore)).unwrap();
        domain::environment::stream(tenant.environment("Sales").unwrap().0)
    };
    let snapshots_made = rt.block_on(store.load_snapshot("aggregate/tenant", head)).unwrap();
    assert!(snapshots_made.is_some(), "the checkpoint exists, so the comparison means something");
    for at in [head / 3, head / 2, head - 7, head] {
        let (t1, v1): (domain::tenant::Tenant, u64) =
            rt.block_on(load(store, "tenant", at, Snapshots::Use)).unwrap();
        let (t2, v2): (domain::tenant::Tenant, u64) =
            rt.block_on(load(store, "tenant", at, Snapshots::Ignore)).unwrap();
        assert_eq!((t1, v1), (t2, v2), "tenant as of seq {at}");
        let (e1, w1): (domain::environment::Environment, u64) =
            rt.block_on(load(store, &env_stream, at, Snapshots::Use)).unwrap();
        let (e2, w2): (domain::environment::Environment, u64) =
            rt.block_on(load(store, &env_stream, at, Snapshots::Ignore)).unwrap();
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

/// `--at` takes a date (the end of that day, UTC) and `N{m,h,d} ago`, each
/// the same point as the RFC 3339 time it names; a `seq:N` past the log's
/// end is bad input naming where the log ends.
#[test]
fn l4_at_a_date_or_n_ago_names_the_same_point_and_seq_past_the_end_is_refused() {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 3");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.advance_days(2);
    sb.ok(&format!("user license remove --upn {ALICE} --sku DYN365_SALES"));
    let head = sb.records();
    let licensed = |sb: &mut Sandbox, when: &str| -> bool {
        let users = sb.json(&format!("user list --at '{when}'"));
        let alice =
            users.as_array().unwrap().iter().find(|u| u["userPrincipalName"] == ALICE).cloned().unwrap();
        !alice["assignedLicenses"].as_array().unwrap().is_empty()
    };
    // The sandbox's clock started on 2026-01-05; the license went two days later.
    assert!(licensed(&mut sb, "2026-01-05"), "the end of the first day");
    assert!(licensed(&mut sb, "2026-01-06T23:59:59.999999999Z"));
    assert!(!licensed(&mut sb, "2026-01-07"), "the end of the day it went");
    assert!(licensed(&mut sb, "1d ago"), "a day before the clock is before the removal");
    // Each read is stamped a minute after the line before it (the harness's clock).
    assert!(licensed(&mut sb, "90m ago"));
    assert!(!licensed(&mut sb, "0m ago"));
    let err = sb.fails(&format!("user list --at seq:{}", head + 1), 2);
    assert!(err.contains(&format!("the log ends at record {head}")), "{err}");
    assert!(!licensed(&mut sb, &format!("seq:{head}")));
    let err = sb.fails("user list --at 2026-08-32", 2);
    assert!(err.contains("a date (2026-03-01") && err.contains("ago"), "{err}");
}

/// Views print words: no Rust debug form (`License("…")`) and no variant
/// name (`KeptMode`) reaches a table or a JSON value, whatever the script
/// recorded (issue 30: `changes` printed `License("DYN365_ENTERPRISE_SALES")`).
#[test]
fn views_print_words_never_a_debug_form_or_a_variant_name() {
    let (mut sb, mut script) = scripted();
    script.extend([
        "sku add --sku POWERAPPS_PER_USER --kind power-apps --seats 3",
        "user license assign --upn alice@contoso.onmicrosoft.com --sku POWERAPPS_PER_USER",
        "user set-access-mode --env Sales --upn alice@contoso.onmicrosoft.com --mode read-write",
        "sync",
        "user license assign --upn alice@contoso.onmicrosoft.com --sku DYN365_SALES",
        "user license remove --upn alice@contoso.onmicrosoft.com --sku POWERAPPS_PER_USER",
        "sync",
    ]);
    for line in &script {
        sb.run(line);
    }
    let head = sb.records();
    let lines = [
        format!("changes --env Sales --from seq:0 --to seq:{head}"),
        "history".into(),
        format!("timeline --env Sales --upn {ALICE}"),
        format!("diagnose --env Sales --upn {ALICE}"),
        "review --env Sales".into(),
        "systemusers --env Sales".into(),
    ];
    // Graph's own names, which views print as Graph does.
    let graph_terms = [
        "SystemUserManagement",
        "UserManagement",
        "GroupManagement",
        "RoleManagement",
        "DirectoryManagement",
    ];
    let debug_form = |text: &str, json: bool| {
        let variants = ["KeptMode", "AdminWithoutLicense", "FreeDataversePlan", "AppPass", "MarketingTenant"];
        if let Some(at) = text.find("(\"") {
            return Some(text[at.saturating_sub(30)..(at + 10).min(text.len())].to_owned());
        }
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| {
                let camel = w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && w.chars().skip(1).any(|c| c.is_ascii_uppercase())
                    && w.chars().any(|c| c.is_ascii_lowercase());
                variants.contains(w) || (!json && camel && !graph_terms.contains(w))
            })
            .map(str::to_owned)
    };
    let mut seen_entitlement = false;
    for line in &lines {
        for json in [false, true] {
            let run = sb.run(&format!("{line}{}", if json { " --json" } else { "" }));
            assert_eq!(run.code, 0, "{line}: {}", run.stderr);
            seen_entitlement |= run.stdout.contains("license POWERAPPS_PER_USER");
            assert_eq!(
                debug_form(&run.stdout, json),
                None,
                "`{line}` (json: {json}) printed:\n{}",
                run.stdout
            );
        }
    }
    assert!(seen_entitlement, "the script changed an entitlement, and a view said so in words");
}

/// `record N` shows any evidence seq any view prints: the record, the
/// command it belongs to (a sync pass's record alone, as history shows it),
/// its event in words, its hash and its neighbours.
#[test]
fn record_n_shows_every_evidence_seq_the_views_print() {
    let (mut sb, script) = scripted();
    for line in &script {
        sb.run(line);
    }
    let head = sb.records();
    let mut seqs = std::collections::BTreeSet::new();
    let mut collect = |v: &Value, key: &str| {
        fn walk(v: &Value, key: &str, out: &mut std::collections::BTreeSet<u64>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        match (k == key, x) {
                            (true, Value::Number(n)) => out.extend(n.as_u64()),
                            (true, Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_u64)),
                            _ => walk(x, key, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, key, out)),
                _ => {}
            }
        }
        walk(v, key, &mut seqs);
    };
    collect(&sb.json(&format!("diagnose --env Sales --upn {ALICE}")), "evidence");
    collect(&sb.json("review --env Sales"), "evidence");
    collect(&sb.json(&format!("changes --env Sales --from seq:0 --to seq:{head}")), "seq");
    collect(&sb.json("history"), "seq");
    assert!(seqs.len() > 10, "{seqs:?}");
    for &seq in &seqs {
        let shown = sb.json(&format!("record {seq}"));
        assert_eq!(shown["seq"], seq, "{shown}");
        assert_eq!(shown["hash"].as_str().map(str::len), Some(64));
        let (first, last) = (
            shown["commandRecords"]["first"].as_u64().unwrap(),
            shown["commandRecords"]["last"].as_u64().unwrap(),
        );
        assert!(first <= seq && seq <= last, "{shown}");
        assert_eq!(
            shown["command"]["seq"], last,
            "the command's audit record is its last seq, as history shows it"
        );
        assert_eq!(shown["previous"], if seq > 1 { Value::from(seq - 1) } else { Value::Null });
    }
    let text = sb.ok(&format!("record {head}"));
    assert!(
        text.starts_with(&format!("record {head} of {head}"))
            && text.contains("hash")
            && text.contains("next      none"),
        "{text}"
    );
    for bad in [0, head + 1] {
        let err = sb.fails(&format!("record {bad}"), 2);
        assert!(err.contains(&format!("the log holds records 1 to {head}")), "{err}");
    }
}

/// One vocabulary: `timeline` prints the access mode as `systemusers` does
/// (`read-write (0)`), and `--at` ends the last interval at the point asked,
/// not at "now".
#[test]
fn timeline_speaks_as_systemusers_and_ends_at_the_point_asked() {
    let (mut sb, script) = scripted();
    for line in &script {
        sb.run(line);
    }
    let now = sb.ok(&format!("timeline --env Sales --upn {ALICE}"));
    assert!(now.lines().last().is_some_and(|l| l.contains(" now ")), "{now}");
    assert!(now.contains("read-write (0)") && now.contains("administrative (1)"), "{now}");
    let then = sb.ok(&format!("timeline --env Sales --upn {ALICE} --at seq:20"));
    let last = then.lines().last().unwrap();
    assert!(!last.contains(" now ") && last.contains("2026-01-05T"), "{then}");
}
