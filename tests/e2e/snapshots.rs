//! The seeds' workflows, each view pinned at several points in time, in JSON
//! and as a table. Times and ids are fixed (the sandbox's clock and seeded
//! ids), so the snapshots are stable; every `.snap` here was read before it
//! was accepted.

use tests::Sandbox;

/// Runs a view and returns what a user sees: stdout, or the exit code and stderr.
fn view(sb: &mut Sandbox, line: &str) -> String {
    let run = sb.run(line);
    match run.code {
        0 => run.stdout,
        code => format!("exit {code}: {}", run.stderr),
    }
}

/// Contoso with a Dynamics SKU, group Sales-SG and environment Sales tied to it.
fn contoso() -> Sandbox {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 5");
    sb.ok("group create --name Sales-SG");
    sb.ok("env create --name Sales --type production --security-group Sales-SG --app sales");
    sb
}

const OPS: &str = "ops@contoso.onmicrosoft.com";
const SVC: &str = "svc-erp@contoso.onmicrosoft.com";
const ALICE: &str = "alice@contoso.onmicrosoft.com";

#[test]
fn administrative_user() {
    // R: A4, A5, S7. Seed 000: license, admin role, sync, Administrative mode, remove the license.
    let mut sb = contoso();
    sb.ok(&format!(
        "user create --upn {OPS} --first Ops --last Admin --license DYN365_SALES --admin-role dynamics365"
    ));
    sb.ok(&format!("group add-member --group Sales-SG --upn {OPS}"));
    sb.ok("sync");
    let synced = sb.records();
    sb.ok(&format!("user set-access-mode --env Sales --upn {OPS} --mode administrative"));
    sb.ok(&format!("user license remove --upn {OPS} --sku DYN365_SALES"));
    sb.ok("sync");
    insta::assert_snapshot!(
        "administrative_user_systemusers_after_first_sync",
        view(&mut sb, &format!("systemusers --env Sales --at seq:{synced}"))
    );
    insta::assert_snapshot!(
        "administrative_user_diagnose",
        view(&mut sb, &format!("diagnose --env Sales --upn {OPS} --json"))
    );
    insta::assert_snapshot!(
        "administrative_user_timeline",
        view(&mut sb, &format!("timeline --env Sales --upn {OPS}"))
    );
    insta::assert_snapshot!(
        "administrative_user_privileges",
        view(&mut sb, &format!("privileges --env Sales --upn {OPS}"))
    );
}

#[test]
fn non_interactive_user() {
    // R: A3, A4, A6. License, sync, Non-interactive mode, remove the license: it stays.
    let mut sb = contoso();
    sb.ok(&format!("user create --upn {SVC} --first Erp --last Connector --license DYN365_SALES"));
    sb.ok(&format!("group add-member --group Sales-SG --upn {SVC}"));
    sb.ok("sync");
    sb.ok("team create --env Sales --name 'Sales team' --group Sales-SG");
    sb.ok("team role assign --env Sales --team 'Sales team' --role Salesperson");
    sb.ok("sync");
    sb.ok(&format!("user set-access-mode --env Sales --upn {SVC} --mode non-interactive"));
    sb.ok(&format!("user license remove --upn {SVC} --sku DYN365_SALES"));
    sb.ok("sync");
    insta::assert_snapshot!(
        "non_interactive_user_timeline",
        view(&mut sb, &format!("timeline --env Sales --upn {SVC} --json"))
    );
    insta::assert_snapshot!(
        "non_interactive_user_diagnose",
        view(&mut sb, &format!("diagnose --env Sales --upn {SVC}"))
    );
    insta::assert_snapshot!(
        "non_interactive_user_access",
        view(&mut sb, &format!("user access --env Sales --upn {SVC}"))
    );
}

#[test]
fn application_user() {
    // R: P1, P2.
    let mut sb = contoso();
    sb.ok("app-user create --env Sales --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --name 'ERP connector' --role 'Basic User'");
    sb.ok("env set --env Sales --setting allowApplicationUserStatusChange=true");
    sb.ok("app-user set-status --env Sales --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --enabled false");
    insta::assert_snapshot!("application_user_systemusers", view(&mut sb, "systemusers --env Sales"));
    insta::assert_snapshot!("application_user_history", view(&mut sb, "history --limit 2 --json"));
}

#[test]
fn stub_import() {
    // R: T1.1, T1.2, T1.3, T1.4.
    let mut sb = contoso();
    let csv = sb.dir().join("legacy.csv");
    std::fs::write(&csv, "domainname,firstname,lastname\nlegacy.rep1@contoso.com,Legacy,Rep One\nlegacy.rep2@contoso.com,,Rep Two\n").unwrap();
    sb.ok(&format!("import stub-users --env Sales --file {}", csv.display()));
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb.ok("sync");
    sb.ok(&format!("user reassign-records --env Sales --from legacy.rep1@contoso.com --to {ALICE}"));
    insta::assert_snapshot!("stub_import_systemusers", view(&mut sb, "systemusers --env Sales"));
    insta::assert_snapshot!(
        "stub_import_diagnose_is_not_offered",
        view(&mut sb, "diagnose --env Sales --upn legacy.rep2@contoso.com")
    );
    insta::assert_snapshot!("stub_import_history", view(&mut sb, "history --env Sales --limit 3"));
}

#[test]
fn security_group_removal() {
    // R: S2.4, S4. Removed from the environment's security group: disabled at the next pass.
    let mut sb = contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb.ok("team create --env Sales --name 'Sales team' --group Sales-SG");
    sb.ok("team role assign --env Sales --team 'Sales team' --role Salesperson");
    sb.ok("sync");
    let before = sb.records();
    sb.ok(&format!("group remove-member --group Sales-SG --upn {ALICE}"));
    let removed = sb.records();
    sb.ok("sync");
    insta::assert_snapshot!(
        "security_group_removal_diagnose_before",
        view(&mut sb, &format!("diagnose --env Sales --upn {ALICE} --at seq:{before} --json"))
    );
    insta::assert_snapshot!(
        "security_group_removal_diagnose_between",
        view(&mut sb, &format!("diagnose --env Sales --upn {ALICE} --at seq:{removed}"))
    );
    insta::assert_snapshot!(
        "security_group_removal_diagnose_after",
        view(&mut sb, &format!("diagnose --env Sales --upn {ALICE} --json"))
    );
    insta::assert_snapshot!(
        "security_group_removal_timeline",
        view(&mut sb, &format!("timeline --env Sales --upn {ALICE} --json"))
    );
    insta::assert_snapshot!(
        "security_group_removal_history",
        view(&mut sb, &format!("history --user {ALICE} --limit 4"))
    );
}

#[test]
fn license_removal() {
    // R: S2.2, S4.
    let mut sb = contoso();
    sb.ok("env set --env Sales --clear-security-group");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok("sync");
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role Salesperson"));
    let before = sb.records();
    sb.ok(&format!("user license remove --upn {ALICE} --sku DYN365_SALES"));
    sb.ok("sync");
    insta::assert_snapshot!(
        "license_removal_systemusers_before",
        view(&mut sb, &format!("systemusers --env Sales --at seq:{before}"))
    );
    insta::assert_snapshot!(
        "license_removal_diagnose",
        view(&mut sb, &format!("diagnose --env Sales --upn {ALICE}"))
    );
    insta::assert_snapshot!(
        "license_removal_timeline",
        view(&mut sb, &format!("timeline --env Sales --upn {ALICE}"))
    );
}

#[test]
fn directory_deletion_and_restore() {
    // R: D7, S2.1, S4, S5.
    let mut sb = contoso();
    sb.ok("env set --env Sales --clear-security-group");
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --license DYN365_SALES"));
    sb.ok("sync");
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role Salesperson"));
    sb.advance_days(1);
    sb.ok(&format!("user delete --upn {ALICE}"));
    sb.ok("sync");
    let deleted = sb.records();
    sb.advance_days(3);
    sb.ok(&format!("user restore --upn {ALICE}"));
    sb.ok("sync");
    insta::assert_snapshot!(
        "deletion_and_restore_diagnose_while_deleted",
        view(&mut sb, &format!("diagnose --env Sales --upn {ALICE} --at seq:{deleted}"))
    );
    insta::assert_snapshot!(
        "deletion_and_restore_timeline",
        view(&mut sb, &format!("timeline --env Sales --upn {ALICE} --json"))
    );
    insta::assert_snapshot!(
        "deletion_and_restore_history",
        view(&mut sb, &format!("history --user {ALICE} --limit 6"))
    );
}

#[test]
fn the_questions_admins_ask() {
    // R: R3, R4, S2.4. Bob cannot work; alice can: what differs, what changed, what an auditor sees.
    let mut sb = contoso();
    sb.ok("team create --env Sales --name 'Sales team' --group Sales-SG");
    sb.ok("team role assign --env Sales --team 'Sales team' --role Salesperson");
    for who in [ALICE, "bob@contoso.onmicrosoft.com"] {
        sb.ok(&format!("user create --upn {who} --first User --last Tester --license DYN365_SALES"));
    }
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb.ok("sync");
    let before = sb.records();
    sb.ok("group add-member --group Sales-SG --upn bob@contoso.onmicrosoft.com");
    sb.ok("sync");
    sb.ok("role copy --env Sales --from Salesperson --name 'Account Owner'");
    sb.ok("role set-privilege --env Sales --role 'Account Owner' --table account --op write --level org");
    sb.ok(&format!("role assign --env Sales --upn {ALICE} --role 'Account Owner'"));
    let after = sb.records();
    insta::assert_snapshot!(
        "questions_compare_before",
        view(
            &mut sb,
            &format!(
                "compare --env Sales --upn bob@contoso.onmicrosoft.com --with {ALICE} --at seq:{before}"
            )
        )
    );
    insta::assert_snapshot!(
        "questions_changes",
        view(&mut sb, &format!("changes --env Sales --from seq:{before} --to seq:{after} --json"))
    );
    insta::assert_snapshot!("questions_review", view(&mut sb, "review --env Sales"));
}
