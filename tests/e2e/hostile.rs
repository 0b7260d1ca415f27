//! Hostile input from a local attacker (issue 25): what an export, a CSV or a
//! command line can carry, refused or made harmless. TESTING.md, "Local
//! attacker", lists these tests by finding.

use serde_json::{json, Value};
use tests::Sandbox;

const ADMIN_ID: &str = "0b8c1a2e-0000-4000-8000-0000000000aa";
const EVIL_ID: &str = "0b8c1a2e-0000-4000-8000-0000000000e1";

/// A Graph user, as GET /users gives it.
fn graph_user(id: &str, upn: &str, display_name: &str) -> Value {
    json!({ "id": id, "userPrincipalName": upn, "displayName": display_name, "accountEnabled": true })
}

/// Writes `users` as a Graph export next to the database; returns `--users PATH`.
fn users_file(sb: &Sandbox, name: &str, users: &[Value]) -> String {
    let path = sb.dir().join(name);
    std::fs::write(&path, json!({ "value": users }).to_string()).unwrap();
    format!("--users {}", path.display())
}

/// Finding 9: a Graph displayName carrying escape sequences (clear the
/// screen, turn red) is shown escaped in the table, and kept true in JSON.
#[test]
fn control_characters_in_a_name_are_shown_escaped_in_tables_and_kept_in_json() {
    let mut sb = Sandbox::contoso();
    let evil = "Evil\u{1b}[2J\u{1b}[31mName";
    let users = [
        graph_user(ADMIN_ID, "admin@contoso.onmicrosoft.com", "Megan"),
        graph_user(EVIL_ID, "evil@contoso.onmicrosoft.com", evil),
    ];
    sb.ok(&format!("import graph {}", users_file(&sb, "users.json", &users)));
    let table = sb.ok("user list");
    assert!(!table.contains('\u{1b}'), "no escape character reaches the terminal: {table:?}");
    assert!(table.contains("Evil\\u{1b}[2J\\u{1b}[31mName"), "shown escaped, visibly: {table}");
    let listed = sb.json("user list");
    let shown: Vec<&str> =
        listed.as_array().unwrap().iter().filter_map(|u| u["displayName"].as_str()).collect();
    assert!(shown.contains(&evil), "JSON keeps the true string: {shown:?}");
    // The audit trail prints it escaped as well.
    let history = sb.ok("history --limit 1");
    assert!(!history.contains('\u{1b}'), "{history:?}");
}

/// Finding 3: a 20 MiB displayName through `import graph` once landed and
/// made every later command exit 3. Refused while reading, naming the field
/// and the limit; nothing appended, and the log still reads.
#[test]
fn a_20_mib_display_name_is_refused_by_import_graph_and_nothing_lands() {
    let mut sb = Sandbox::contoso();
    let records = sb.records();
    let users = [
        graph_user(ADMIN_ID, "admin@contoso.onmicrosoft.com", "Megan"),
        graph_user(EVIL_ID, "evil@contoso.onmicrosoft.com", &"x".repeat(20 << 20)),
    ];
    let err = sb.fails(&format!("import graph {}", users_file(&sb, "big.json", &users)), 2);
    assert!(err.contains("item 2: displayName is 20971520 characters long; the limit is 256"), "{err}");
    assert!(err.len() < 1000, "the value is not echoed");
    assert_eq!(sb.records(), records, "nothing appended");
    sb.ok("user list");
}

/// Finding 3: the same through a command-line flag, and through a stub CSV.
#[test]
fn an_oversized_field_is_refused_on_the_command_line_and_in_a_stub_csv() {
    let mut sb = Sandbox::contoso();
    let records = sb.records();
    let big = "y".repeat(20 << 20);
    let err = sb.fails(
        &format!("user create --upn a@contoso.onmicrosoft.com --first A --last B --display-name {big}"),
        2,
    );
    assert!(
        err.contains("displayName is 20971520 characters long; the limit is 256"),
        "{}",
        &err[..200.min(err.len())]
    );
    assert!(err.len() < 1000);
    let err = sb.fails(
        &format!("user create --upn a@contoso.onmicrosoft.com --first A --last {}", "z".repeat(65)),
        2,
    );
    assert!(err.contains("surname is 65 characters long; the limit is 64"), "{err}");
    assert_eq!(sb.records(), records, "nothing appended");
    sb.ok("env create --name Sales --type production");
    let csv = sb.dir().join("stubs.csv");
    std::fs::write(
        &csv,
        format!("domainname,firstname,lastname\nold@contoso.com,Old,{}\n", "w".repeat(20 << 20)),
    )
    .unwrap();
    let records = sb.records();
    let err = sb.fails(&format!("import stub-users --env Sales --file {}", csv.display()), 2);
    assert!(err.contains("line 2: lastname is 20971520 characters long; the limit is 64"), "{err}");
    assert_eq!(sb.records(), records, "nothing appended");
}

/// Finding 3: five million `{}` items once took 5 GB before an error; each
/// item is now checked as it is read, so the first one stops the import.
#[test]
fn a_file_of_millions_of_empty_items_is_refused_at_the_first() {
    let mut sb = Sandbox::contoso();
    let path = sb.dir().join("empty.json");
    let mut text = String::with_capacity(15_000_000);
    text.push('[');
    for i in 0..5_000_000 {
        text.push_str(if i == 0 { "{}" } else { ",{}" });
    }
    text.push(']');
    std::fs::write(&path, text).unwrap();
    let started = std::time::Instant::now();
    let err = sb.fails(&format!("import graph --users {}", path.display()), 2);
    assert!(err.contains("at line 1, column 3") && err.contains("an item without \"id\""), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Finding 3: a whatif script that runs whatif on itself overflowed the
/// stack; refused wherever its flags stand, and a 100 MB line is quoted in
/// part only.
#[test]
fn a_nested_whatif_is_refused_wherever_its_flags_stand_and_huge_lines_are_quoted_in_part() {
    let mut sb = Sandbox::contoso();
    let script = sb.dir().join("self.txt");
    for line in [
        format!("whatif --file {}", script.display()),
        format!("--json whatif --file {}", script.display()),
        format!("--as admin@contoso.onmicrosoft.com whatif --file {}", script.display()),
    ] {
        std::fs::write(&script, format!("{line}\n")).unwrap();
        let err = sb.fails(&format!("whatif --file {}", script.display()), 2);
        assert!(err.contains("whatif") && err.contains("cannot run inside whatif"), "`{line}`: {err}");
    }
    let huge = "u".repeat(100 << 20);
    std::fs::write(&script, format!("user block --upn {huge}\n")).unwrap();
    let err = sb.fails(&format!("whatif --file {}", script.display()), 2);
    assert!(err.len() < 1000, "{} characters", err.len());
    assert!(err.contains(&"u".repeat(150)) && !err.contains(&"u".repeat(201)), "{}", &err[..300]);
}
