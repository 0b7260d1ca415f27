//! whatif on a scratch copy, and exports.

use serde_json::Value;
use tests::Sandbox;

const ALICE: &str = "alice@contoso.onmicrosoft.com";

fn sales() -> Sandbox {
    let mut sb = Sandbox::contoso();
    sb.ok("sku add --sku DYN365_SALES --kind d365 --seats 10");
    sb.ok("group create --name Sales-SG");
    sb.ok("env create --name Sales --type production --security-group Sales-SG");
    sb.ok(&format!(
        "user create --upn {ALICE} --first Alice --last 'Smith, Jr.' --license DYN365_SALES --city 'Lyon'"
    ));
    sb.ok(&format!("group add-member --group Sales-SG --upn {ALICE}"));
    sb.ok("sync");
    sb
}

/// What the sandbox's log is now, on its backend.
fn fingerprint(sb: &Sandbox) -> Fingerprint {
    if sb.on_server() {
        return Fingerprint::Records(sb.read_log());
    }
    let mut files = Vec::new();
    let mut stack = vec![sb.db()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    Fingerprint::Files(files)
}

/// What a whatif leaves as it was: a sled database's every file, byte for
/// byte; a server's log, record for record.
#[derive(PartialEq, Debug)]
enum Fingerprint {
    Files(Vec<(std::path::PathBuf, Vec<u8>)>),
    Records(Vec<store::Record>),
}

#[test]
fn whatif_prints_the_systemuser_diff_and_leaves_the_database_byte_for_byte_untouched() {
    let mut sb = sales();
    let plan = sb.dir().join("plan.txt");
    std::fs::write(
        &plan,
        format!(
            "# Alice leaves the group; Bob joins\n\ngroup remove-member --group Sales-SG --upn {ALICE}\n\
             user create --upn bob@contoso.onmicrosoft.com --first Bob --last Lee --license DYN365_SALES\n\
             group add-member --group Sales-SG --upn bob@contoso.onmicrosoft.com --as admin@contoso.onmicrosoft.com\nsync\n"
        ),
    )
    .unwrap();
    let before = fingerprint(&sb);
    let diff = sb.json(&format!("whatif --file {} --env Sales", plan.display()));
    assert_eq!(fingerprint(&sb), before, "the real database is untouched");
    let rows: Vec<(String, String, String)> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["domainname"].as_str().unwrap().into(),
                d["change"].as_str().unwrap().into(),
                d["field"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(rows.contains(&(ALICE.into(), "changed".into(), "isdisabled".into())), "{rows:?}");
    assert!(
        rows.contains(&("bob@contoso.onmicrosoft.com".into(), "added".into(), String::new())),
        "{rows:?}"
    );
    let disabled = diff.as_array().unwrap().iter().find(|d| d["field"] == "isdisabled").unwrap();
    // One vocabulary with `changes --json`.
    assert_eq!((disabled["oldValue"].as_str(), disabled["newValue"].as_str()), (Some("false"), Some("true")));
    assert!(disabled.get("old").is_none());
    // And the real view still says alice is enabled.
    let table = sb.json("systemusers --env Sales");
    assert!(table.as_array().unwrap().iter().any(|r| r["domainname"] == ALICE && r["isdisabled"] == false));
}

#[test]
fn whatif_reports_a_failing_line_and_refuses_db_in_a_line() {
    let mut sb = sales();
    let plan = sb.dir().join("plan.txt");
    std::fs::write(&plan, "sync\nuser block --upn nobody@contoso.onmicrosoft.com\n").unwrap();
    let before = fingerprint(&sb);
    let err = sb.fails(&format!("whatif --file {}", plan.display()), 2);
    assert!(err.ends_with("line 2: unknown user nobody@contoso.onmicrosoft.com"), "{err}");
    std::fs::write(&plan, "user list --db /tmp/other\n").unwrap();
    assert!(sb.fails(&format!("whatif --file {}", plan.display()), 2).contains("--db is not allowed"));
    assert_eq!(fingerprint(&sb), before);
}

#[test]
fn export_gives_the_systemusers_json_or_rfc4180_csv() {
    let mut sb = sales();
    let json = sb.ok("export systemusers --env Sales --format json");
    assert_eq!(json, sb.ok("systemusers --env Sales --json"), "exactly what systemusers --json prints");
    let csv = sb.ok("export systemusers --env Sales --format csv");
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert!(lines[0].starts_with("systemuserid,domainname,firstname,lastname,fullname,"), "{}", lines[0]);
    let alice = lines.iter().find(|l| l.contains(ALICE)).unwrap();
    assert!(alice.contains(",\"Smith, Jr.\",\"Alice Smith, Jr.\","), "a comma in a field is quoted: {alice}");
    let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let table: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), table.as_array().unwrap().len());
    let lastname = header.iter().position(|h| h == "lastname").unwrap();
    assert!(rows.iter().any(|r| &r[lastname] == "Smith, Jr."));
    sb.fails("export systemusers --env Sales --format xml", 2);
    // As of seq 3 the environment did not exist yet (L4).
    let err = sb.fails("export systemusers --env Sales --format csv --at seq:3", 2);
    assert!(err.contains("unknown environment Sales"), "{err}");
}

/// `export history|changes|review|users`: JSON exactly as the view's
/// `--json`; CSV with one column per key that reads back to the same rows;
/// `--excel` adds a byte order mark and makes a formula-looking cell text
/// (a display name of `=HYPERLINK(...)`), while plain CSV stays byte-true.
#[test]
fn every_view_exports_as_json_or_csv_and_excel_gets_no_formula() {
    let mut sb = sales();
    sb.ok("user create --upn eve@contoso.onmicrosoft.com --first Eve --last Doe --display-name =HYPERLINK(\"http://x\")");
    let head = sb.records();
    let views = [
        ("history --limit 500", "export history --limit 500"),
        (
            &*format!("changes --env Sales --from seq:0 --to seq:{head}"),
            &*format!("export changes --env Sales --from seq:0 --to seq:{head}"),
        ),
        ("review", "export review"),
        ("user list", "export users"),
    ]
    .map(|(v, e)| (v.to_owned(), e.to_owned()));
    for (view, export) in &views {
        let json = sb.ok(&format!("{export} --format json"));
        assert_eq!(json, sb.ok(&format!("{view} --json")), "{export}: exactly the view's JSON");
        let doc: Value = serde_json::from_str(&json).unwrap();
        let csv_text = sb.ok(&format!("{export} --format csv"));
        assert!(!csv_text.starts_with('\u{feff}'));
        let mut reader = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
        let header = reader.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), doc.as_array().unwrap().len(), "{export}: a row per object");
        assert!(header.iter().any(|h| !h.is_empty()), "{export}");
    }
    let plain = sb.ok("export users --format csv");
    assert!(
        plain.contains(",=HYPERLINK(\"\"http://x\"\"),")
            || plain.contains("\"=HYPERLINK(\"\"http://x\"\")\""),
        "{plain}"
    );
    let excel = sb.ok("export users --format csv --excel");
    assert!(excel.starts_with('\u{feff}'), "Excel reads UTF-8 by its byte order mark");
    assert!(
        excel.contains("'=HYPERLINK(") && !excel.contains(",=HYPERLINK(") && !excel.contains("\"=HYPERLINK("),
        "{excel}"
    );
    let excel_users = sb.ok("export systemusers --env Sales --format csv --excel");
    assert!(excel_users.starts_with('\u{feff}'));
    sb.fails("export review --format xml", 2);
}

/// A whatif line that a rule refuses exits 1 (not 2, as bad input would),
/// after the diff of the lines before it; the database is untouched.
#[test]
fn a_whatif_line_refused_by_a_rule_exits_1_after_the_diff_up_to_it() {
    let mut sb = sales();
    let plan = sb.dir().join("plan.txt");
    std::fs::write(
        &plan,
        format!("group remove-member --group Sales-SG --upn {ALICE}\nsync\nuser admin-role remove --upn admin@contoso.onmicrosoft.com --role global\nsync\n"),
    )
    .unwrap();
    let before = fingerprint(&sb);
    let run = sb.run(&format!("whatif --file {}", plan.display()));
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert!(run.stderr.contains("line 3: rejected (D8)"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stdout.starts_with("ran the 2 lines before line 3 on a scratch copy"), "{}", run.stdout);
    assert!(
        run.stdout.contains(ALICE) && run.stdout.contains("isdisabled"),
        "alice's record is disabled by line 2: {}",
        run.stdout
    );
    assert_eq!(fingerprint(&sb), before);
    let json = sb.run(&format!("whatif --file {} --json", plan.display()));
    assert_eq!(json.code, 1);
    let diff: Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(diff.as_array().unwrap().iter().any(|d| d["domainname"] == ALICE));
}
