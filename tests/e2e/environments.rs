//! Environments, sync and the SystemUser lifecycle (E, S, A, P, T rules).

use serde_json::Value;
use tests::Sandbox;

use crate::log;

const ADMIN: &str = "admin@contoso.onmicrosoft.com";
const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";

/// Contoso with a 10-seat Dynamics SKU, alice (licensed) and bob (not), and
/// group Sales-SG with alice in it.
fn contoso() -> Sandbox {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 20");
    sb.ok(&format!(
        "user create --upn {ALICE} --first Alice --last Smith --title Seller --license DYN365_SALES"
    ));
    sb.ok(&format!("user create --upn {BOB} --first Bob --last Lee"));
    sb.ok("group create --name Sales-SG");
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb
}

fn record<'a>(table: &'a Value, domainname: &str) -> Option<&'a Value> {
    table.as_array()?.iter().find(|r| r["domainname"] == domainname)
}

#[test]
fn s1_sync_fills_the_systemuser_table_with_dataverse_logical_names() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production --app sales");
    let out = sb.ok("sync --env Sales");
    assert!(out.contains("Sales: 2 added, 2 unchanged"), "{out}");
    let table = sb.json("systemusers --env Sales");
    let alice = record(&table, ALICE).expect("alice is synced");
    let keys = [
        "systemuserid",
        "domainname",
        "firstname",
        "lastname",
        "fullname",
        "internalemailaddress",
        "jobtitle",
        "mobilephone",
        "address1_telephone1",
        "address1_fax",
        "address1_line1",
        "address1_city",
        "address1_stateorprovince",
        "address1_postalcode",
        "address1_country",
        "azureactivedirectoryobjectid",
        "applicationid",
        "isdisabled",
        "accessmode",
        "islicensed",
        "issyncwithdirectory",
        "businessunit",
        "roles",
        "kind",
    ];
    for key in keys {
        assert!(alice.get(key).is_some(), "{key} missing from {alice}");
    }
    assert_eq!(alice["fullname"], "Alice Smith");
    assert_eq!(alice["jobtitle"], "Seller");
    assert_eq!(alice["accessmode"], 0);
    assert_eq!(alice["isdisabled"], false);
    assert_eq!(alice["islicensed"], true);
    assert_eq!(alice["kind"], "user");
    assert_eq!(alice["roles"], serde_json::json!(["Sales app access"]));
    let admin = record(&table, ADMIN).expect("the unlicensed admin is a setup user");
    assert_eq!((admin["accessmode"].as_u64(), admin["roles"].as_array().map(Vec::len)), (Some(1), Some(0)));
    assert_eq!(record(&table, "crmoln2@microsoft.com").unwrap()["kind"], "delegated-admin");
    assert_eq!(record(&table, "crmoln@microsoft.com").unwrap()["accessmode"], 3);
    assert!(record(&table, BOB).is_none());
    assert!(sb.ok("sync --env Sales").contains("up to date"));
}

#[test]
fn l2_a_sync_pass_shares_one_correlation_and_history_shows_one_record_per_changed_systemuser() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    sb.ok("env create --name Ops --type production");
    sb.ok("sync");
    sb.ok(&format!("user license remove --upn {ALICE} --sku DYN365_SALES"));
    let removal = log(&sb).last().unwrap().0.seq;
    sb.ok("sync");
    let records = log(&sb);
    let (last, _) = records.last().unwrap();
    assert_eq!(last.actor, "sync");
    assert_eq!(last.causation, store::Causation::Process { name: "sync".into(), trigger: Some(removal) });

    // The first run's passes: one per environment, each with one id.
    let first_run: Vec<_> = records.iter().filter(|(r, _)| r.actor == "sync" && r.seq < removal).collect();
    let by_stream: std::collections::BTreeMap<&str, std::collections::BTreeSet<uuid::Uuid>> =
        first_run.iter().fold(Default::default(), |mut m, (r, _)| {
            m.entry(r.stream.as_str()).or_default().insert(r.correlation_id);
            m
        });
    assert_eq!(by_stream.len(), 2, "both environments synced");
    assert!(by_stream.values().all(|ids| ids.len() == 1), "one id per pass: {by_stream:?}");
    let pass_ids: std::collections::BTreeSet<_> = by_stream.values().flatten().collect();
    assert_eq!(pass_ids.len(), 2, "each pass its own id");

    // history: one audit record per changed SystemUser (alice and the
    // admin in each environment), each carrying its pass's id.
    let history = sb.json("history");
    let sync_rows: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["initiatedBy"]["app"]["displayName"] == "sync" && r["seq"].as_u64().unwrap() < removal)
        .collect();
    assert_eq!(sync_rows.len(), 4, "{sync_rows:#?}");
    for row in &sync_rows {
        let id: uuid::Uuid = row["correlationId"].as_str().unwrap().parse().unwrap();
        assert!(pass_ids.contains(&id), "{row}");
        assert_eq!(row["targetResources"].as_array().unwrap().len(), 1, "{row}");
    }
}

#[test]
fn s4_removing_the_license_disables_the_record_and_time_travel_shows_both() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    sb.ok("sync");
    let before = sb.records();
    sb.ok(&format!("user license remove --upn {ALICE} --sku DYN365_SALES"));
    sb.ok("sync");
    let now = sb.json("systemusers --env Sales");
    assert_eq!(record(&now, ALICE).unwrap()["isdisabled"], true, "disabled, never deleted");
    let then = sb.json(&format!("systemusers --env Sales --at seq:{before}"));
    assert_eq!(record(&then, ALICE).unwrap()["isdisabled"], false);
}

#[test]
fn e1_an_environment_without_a_database_refuses_every_add() {
    let mut sb = contoso();
    sb.ok("env create --name Flows --type production --no-dataverse");
    let err = sb.fails(&format!("env add-user --env Flows --upn {ALICE}"), 1);
    assert!(err.starts_with("rejected (E1): environment 'Flows' has no Dataverse database"), "{err}");
    assert!(sb.ok("sync --env Flows").contains("no Dataverse database"));
    let (record, event) = log(&sb).pop().unwrap();
    let domain::Event::CommandRejected(rejected) = event else { panic!("{event:?}") };
    assert_eq!(rejected.environment.as_deref(), Some("Flows"));
    assert_eq!(record.stream, "audit");
}

#[test]
fn e2_a_developer_environment_takes_no_security_group() {
    let mut sb = contoso();
    let err = sb.fails("env create --name Dev --type developer --security-group Sales-SG", 1);
    assert!(err.starts_with("rejected (E2)"), "{err}");
}

#[test]
fn s5_an_access_attempt_by_a_user_who_is_not_entitled_lists_the_failing_checks() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production --security-group Sales-SG");
    let err = sb.fails(&format!("user access --env Sales --upn {BOB}"), 1);
    assert!(err.starts_with("rejected (S2.2): bob@contoso.onmicrosoft.com cannot access Sales"), "{err}");
    assert!(err.contains("S2.4: not a member of Sales-SG"), "{err}");
    assert!(sb
        .ok(&format!("user access --env Sales --upn {ALICE}"))
        .contains("added alice@contoso.onmicrosoft.com to Sales"));
    assert!(sb.ok(&format!("user access --env Sales --upn {ALICE}")).contains("can access Sales"));
}

#[test]
fn s9_refresh_user_syncs_at_once_and_t1_2_is_refused_for_stubs() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    assert!(sb.ok(&format!("user refresh --env Sales --upn {ALICE}")).contains("added alice"));
    let csv = sb.dir().join("stubs.csv");
    std::fs::write(&csv, "domainname,firstname,lastname\nold.rep@contoso.com,Old,Rep\n").unwrap();
    sb.ok(&format!("import stub-users --env Sales --file {}", csv.display()));
    let err = sb.fails("user refresh --env Sales --upn old.rep@contoso.com", 1);
    assert!(err.starts_with("rejected (T1.2)"), "{err}");
}

#[test]
fn a3_the_eighth_non_interactive_user_is_refused_on_the_command_line() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    for i in 0..8 {
        sb.ok(&format!(
            "user create --upn svc{i}@contoso.onmicrosoft.com --first Svc --last {i} --license DYN365_SALES"
        ));
    }
    sb.ok("sync");
    for i in 0..7 {
        sb.ok(&format!(
            "user set-access-mode --env Sales --upn svc{i}@contoso.onmicrosoft.com --mode non-interactive"
        ));
    }
    let err = sb.fails(
        "user set-access-mode --env Sales --upn svc7@contoso.onmicrosoft.com --mode non-interactive",
        1,
    );
    assert_eq!(err, "rejected (A3): environment 'Sales' already has 7 non-interactive users");
    // A4: they keep their mode when the license goes.
    sb.ok("user license remove --upn svc0@contoso.onmicrosoft.com --sku DYN365_SALES");
    sb.ok("sync");
    let table = sb.json("systemusers --env Sales");
    let svc0 = record(&table, "svc0@contoso.onmicrosoft.com").unwrap();
    assert_eq!((svc0["accessmode"].as_u64(), svc0["isdisabled"].as_bool()), (Some(4), Some(false)));
}

#[test]
fn t1_a_bad_csv_row_rejects_the_whole_import_naming_its_line() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production --app sales");
    let before = sb.records();
    let csv = sb.dir().join("stubs.csv");
    let cases = [
        ("domainname,firstname,lastname\nok@contoso.com,A,B\nnot-a-upn,C,D\n", "line 3: malformed UPN"),
        ("domainname,firstname,lastname\nok@contoso.com,A\n", "line 2: expected 3 fields"),
        ("name,first,last\nok@contoso.com,A,B\n", "line 1: the header must be"),
        ("", "line 1: the file is empty"),
        (
            "domainname,firstname,lastname\nok@contoso.com,A,B\nOK@contoso.com,A,B\n",
            "line 3: OK@contoso.com already has a record",
        ),
    ];
    for (text, says) in cases {
        std::fs::write(&csv, text).unwrap();
        let err = sb.fails(&format!("import stub-users --env Sales --file {}", csv.display()), 2);
        assert!(err.contains(says), "{says}: {err}");
    }
    assert_eq!(sb.records(), before, "a rejected import appends nothing");
    std::fs::write(&csv, "domainname,firstname,lastname\n\"rep, old@contoso.com\",A,B\n").unwrap();
    sb.fails(&format!("import stub-users --env Sales --file {}", csv.display()), 2);
    std::fs::write(
        &csv,
        "domainname,firstname,lastname\nrep1@contoso.com,,Rep\nrep2@contoso.com,\"Mary, Jane\",Rep\n",
    )
    .unwrap();
    sb.ok(&format!("import stub-users --env Sales --file {}", csv.display()));
    let table = sb.json("systemusers --env Sales");
    let rep1 = record(&table, "rep1@contoso.com").unwrap();
    assert_eq!(
        (rep1["kind"].as_str(), rep1["isdisabled"].as_bool(), rep1["firstname"].as_str()),
        (Some("stub"), Some(true), Some("#"))
    );
    assert_eq!(rep1["roles"], serde_json::json!(["Salesperson"]), "T1.3 where Sales is installed");
    assert_eq!(record(&table, "rep2@contoso.com").unwrap()["firstname"], "Mary, Jane");
    sb.ok("sync");
    assert!(sb
        .ok(&format!("user reassign-records --env Sales --from rep1@contoso.com --to {ALICE}"))
        .contains("reassigned"));
}

#[test]
fn p2_application_user_status_and_its_warning() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    let app = "6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e";
    sb.ok(&format!("app-user create --env Sales --app-id {app} --name 'ERP connector' --role 'Basic User'"));
    let table = sb.json("systemusers --env Sales");
    let erp = record(&table, "ERP connector").unwrap();
    assert_eq!(
        (erp["kind"].as_str(), erp["accessmode"].as_u64(), erp["applicationid"].as_str()),
        (Some("application"), Some(4), Some(app))
    );
    let err = sb.fails(&format!("app-user set-status --env Sales --app-id {app} --enabled false"), 1);
    assert!(err.starts_with("rejected (P2)"), "{err}");
    sb.ok("env set --env Sales --setting allowApplicationUserStatusChange=true");
    let out = sb.ok(&format!("app-user set-status --env Sales --app-id {app} --enabled false"));
    assert!(
        out.contains("warning: every integration that uses this application user stops working (P2)"),
        "{out}"
    );
    sb.fails("app-user create --env Sales --app-id not-a-uuid --name X", 2);
}

#[test]
fn env_set_and_list_show_settings_and_timeouts() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production --security-group Sales-SG --app-pass 3");
    sb.ok("env set --env Sales --clear-security-group --session-timeout 8h --inactivity-timeout off --setting allowRoleAssignmentOnDisabledUsers=true");
    let list = sb.json("env list");
    let sales = &list[0];
    assert_eq!(sales["securityGroup"], Value::Null);
    assert_eq!(sales["appPassCapacity"], 3);
    assert_eq!(sales["settings"]["sessionTimeout"], "480");
    assert_eq!(sales["settings"]["allowRoleAssignmentOnDisabledUsers"], "true");
    for (line, says) in [
        ("env set --env Sales --session-timeout 5x", "not a duration"),
        ("env set --env Sales --setting frob=true", "unknown setting"),
        ("env set --env Nope --app-pass 1", "unknown environment Nope"),
        ("env create --name X --type galaxy", "unknown environment type"),
    ] {
        let err = sb.fails(line, 2);
        assert!(err.contains(says), "{line}: {err}");
    }
}

// ---- Regressions found in review ----

#[test]
fn a_multibyte_duration_is_bad_input_not_a_panic() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sb.run("env set --env Sales --session-timeout 1é").code
    }));
    assert_eq!(outcome.ok(), Some(2), "panicked or wrong exit code");
}

#[test]
fn a_name_cannot_forge_a_second_line_of_an_error() {
    let mut sb = contoso();
    let err = sb.fails("env create --name 'Sales\nrejected (A3): forged' --type production", 2);
    assert!(err.contains("control character"), "{err}");
    let err = sb.fails("group create --name 'G\nrejected (D1): forged'", 2);
    assert!(err.contains("control character"), "{err}");
}

#[test]
fn e5_placeholders_are_not_counted_in_env_list() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    let list = sb.json("env list");
    assert_eq!((list[0]["enabledUsers"].as_u64(), list[0]["systemUsers"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn t1_1_adding_a_stub_is_a_rule_refusal() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    let csv = sb.dir().join("stubs.csv");
    std::fs::write(&csv, "domainname,firstname,lastname\nold.rep@contoso.com,Old,Rep\n").unwrap();
    sb.ok(&format!("import stub-users --env Sales --file {}", csv.display()));
    let err = sb.fails("env add-user --env Sales --upn old.rep@contoso.com", 1);
    assert!(err.starts_with("rejected (T1.1)"), "{err}");
}

#[test]
fn sync_passes_of_every_environment_are_written_back_to_back() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    sb.ok("env create --name Service --type sandbox");
    let before = sb.records();
    let passes = sb.json("sync");
    let seqs: Vec<(u64, u64)> = passes
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["firstSeq"].as_u64().unwrap(), p["lastSeq"].as_u64().unwrap()))
        .collect();
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs[0].0, before + 1);
    assert_eq!(seqs[1].0, seqs[0].1 + 1, "back to back: nothing interleaves");
    let correlations: std::collections::BTreeSet<_> =
        log(&sb).iter().filter(|(r, _)| r.seq > before).map(|(r, _)| r.correlation_id).collect();
    assert_eq!(correlations.len(), 2, "one id per environment's pass");
}

/// `sync --json` writes each environment's element as its pass ends (a pass
/// over a hundred environments holds one report at a time), yet prints the
/// same bytes as every other document: the array pretty-printed whole.
#[test]
fn sync_json_streams_the_array_every_other_document_prints() {
    let mut sb = contoso();
    let none = sb.ok("sync --json");
    assert_eq!(none, "[]\n", "no environment yet");
    sb.ok("env create --name Sales --type production");
    sb.ok("env create --name Service --type sandbox");
    for line in ["sync --json", "sync --json", "sync --env Service --json"] {
        let out = sb.ok(line);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out, format!("{}\n", serde_json::to_string_pretty(&doc).unwrap()), "`{line}`");
        assert!(doc.as_array().is_some_and(|a| !a.is_empty()), "`{line}`: {out}");
    }
}

/// S1: a pass leaves a mark of the directory and environment versions it
/// brought in line; while neither changes, the next pass looks only at the
/// users whose entitlement time alone can change (deleted ones, D7). What it
/// decides must be what a full pass decides: dropping the marks (a cache)
/// and passing again changes nothing either, before and after the restore
/// window has run out, and a change of either side is picked up.
#[test]
fn s1_a_pass_with_nothing_changed_agrees_with_a_full_pass() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    sb.ok("env create --name Service --type sandbox");
    sb.ok("sync");
    sb.ok(&format!("user delete --upn {BOB}"));
    sb.ok("sync");
    let marks = sb.db().join("snapshots");
    let drop_marks = |sb: &Sandbox| {
        for entry in std::fs::read_dir(sb.db().join("snapshots")).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Names are hex: "sync/" is 73796e632f.
            if name.starts_with("73796e632f") {
                std::fs::remove_dir_all(entry.path()).unwrap();
            }
        }
    };
    assert!(marks.is_dir(), "the passes left their marks");
    for days in [0, 31] {
        sb.advance_days(days);
        let before = sb.records();
        let marked = sb.json("sync");
        assert_eq!(sb.records(), before, "nothing changed, nothing written ({days} days on)");
        assert!(marked.as_array().unwrap().iter().all(|p| p["changed"].as_array().unwrap().is_empty()));
        drop_marks(&sb);
        sb.ok("sync");
        assert_eq!(sb.records(), before, "a full pass agrees ({days} days on)");
    }
    // A change of the directory, then of one environment, is picked up.
    sb.ok("user create --upn carol@contoso.onmicrosoft.com --first Carol --last Diaz --license DYN365_SALES");
    let passes = sb.json("sync");
    let changed: Vec<usize> =
        passes.as_array().unwrap().iter().map(|p| p["changed"].as_array().unwrap().len()).collect();
    assert_eq!(changed, vec![1, 1], "Carol lands in both environments");
    sb.ok("env set --env Sales --security-group Sales-SG");
    let passes = sb.json("sync --env Sales");
    let changed = passes[0]["changed"].as_array().unwrap();
    assert!(!changed.is_empty(), "the new group gate disables who is not in Sales-SG: {passes}");
    let before = sb.records();
    let err = sb.fails("sync --env Marketing", 2);
    assert!(err.contains("unknown environment Marketing (known: Sales, Service)"), "{err}");
    assert_eq!(sb.records(), before);
}

/// `sync` prints a summary per environment (added, enabled, disabled,
/// updated, unchanged) naming at most a few users, `--verbose` names all,
/// and `--json` gives the counts to scripts (a 50k-user first pass printed
/// one line of 571,736 characters).
#[test]
fn sync_summarises_each_environment_and_names_everyone_only_when_asked() {
    let mut sb = contoso();
    sb.ok("env create --name Sales --type production");
    for i in 0..6 {
        sb.ok(&format!(
            "user create --upn u{i}@contoso.onmicrosoft.com --first U --last L{i} --license DYN365_SALES"
        ));
    }
    let first = sb.ok("sync");
    let line = first.lines().find(|l| l.starts_with("Sales:")).unwrap();
    assert!(
        line.contains("added") && line.contains("and ") && line.contains("more (--verbose names all)"),
        "{line}"
    );
    assert!(line.len() < 300, "{line}");
    sb.ok("user license remove --upn u0@contoso.onmicrosoft.com --sku DYN365_SALES");
    sb.ok("user update --upn u1@contoso.onmicrosoft.com --first Ursula");
    let report = sb.json("sync");
    let sales = report.as_array().unwrap().iter().find(|r| r["environment"] == "Sales").unwrap().clone();
    assert_eq!(
        (sales["added"].as_u64(), sales["disabled"].as_u64(), sales["updated"].as_u64()),
        (Some(0), Some(1), Some(1)),
        "{sales}"
    );
    let records = sb.json("systemusers --env Sales").as_array().unwrap().len() as u64;
    assert_eq!(sales["unchanged"].as_u64(), Some(records - 2), "{sales}");
    sb.ok("user create --upn u9@contoso.onmicrosoft.com --first U --last L9 --license DYN365_SALES");
    sb.ok("user create --upn u8@contoso.onmicrosoft.com --first U --last L8 --license DYN365_SALES");
    sb.ok("user create --upn u7@contoso.onmicrosoft.com --first U --last L7 --license DYN365_SALES");
    sb.ok("user create --upn u6@contoso.onmicrosoft.com --first U --last L6 --license DYN365_SALES");
    let verbose = sb.ok("sync --verbose");
    for i in 6..10 {
        assert!(verbose.contains(&format!("u{i}@contoso.onmicrosoft.com")), "{verbose}");
    }
    assert!(sb.ok("sync").contains("Sales: up to date"));
}
