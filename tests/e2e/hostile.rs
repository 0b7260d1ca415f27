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
