//! The auditor's report (issue 31): its HTML pinned for a small tenant, its
//! edge periods, a log that fails verify, and `verify --report`.

use tests::Sandbox;

const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";

/// Sales with alice synced in, then (the period) bob added and synced,
/// alice renamed to a script, and a license refused (D4).
fn period() -> (Sandbox, u64) {
    let mut sb = Sandbox::sales_team(2);
    let start = sb.records();
    sb.advance_days(3);
    sb.ok(&format!("group add-member --group Sales-SG --upn {BOB}"));
    sb.ok(&format!("user update --upn {ALICE} --first '<script>alert(1)</script>'"));
    sb.ok("sync");
    sb.ok("user create --upn carol@contoso.onmicrosoft.com --first Carol --last Tester");
    sb.fails("user license assign --upn carol@contoso.onmicrosoft.com --sku DYN365_SALES", 1);
    sb.advance_days(2);
    (sb, start)
}

/// Writes a report with `flags`; returns the run and the file's text.
fn report(sb: &mut Sandbox, flags: &str) -> (tests::Run, String) {
    let file = sb.dir().join("report.html");
    let run = sb.run(&format!("report {flags} --out {}", file.display()));
    let html = std::fs::read_to_string(&file).unwrap_or_default();
    (run, html)
}

/// The number shown as `data-n="KEY"`.
fn shown(html: &str, key: &str) -> Option<u64> {
    let at = html.find(&format!("data-n=\"{key}\">"))? + key.len() + 10;
    html[at..].split('<').next()?.parse().ok()
}

#[test]
fn the_report_of_a_small_tenant_is_pinned() {
    let (mut sb, start) = period();
    let (run, html) = report(&mut sb, &format!("--from seq:{start}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("report_small_tenant", html);
}

#[test]
fn a_name_holding_a_script_comes_out_inert() {
    let (mut sb, start) = period();
    let (_, html) = report(&mut sb, &format!("--from seq:{start}"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name is shown, escaped");
    assert!(!html.to_lowercase().contains("<script"), "no script element at all");
    let csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
    assert!(html.contains(&format!("<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">")));
}

#[test]
fn the_numbers_are_the_views_numbers() {
    let (mut sb, start) = period();
    let to = sb.records();
    let (_, html) = report(&mut sb, &format!("--from seq:{start} --to seq:{to}"));
    let changes = sb.json(&format!("changes --env Sales --from seq:{start} --to seq:{to}"));
    let changes = changes.as_array().unwrap();
    let kind = |k: &str| changes.iter().filter(|c| c["change"] == k).count() as u64;
    assert_eq!(shown(&html, "Sales/changes"), Some(changes.len() as u64));
    assert_eq!(shown(&html, "Sales/added"), Some(kind("added")));
    assert_eq!(kind("added"), 1, "bob was added in the period");
    let review = sb.json(&format!("review --at seq:{to}"));
    let high = review.as_array().unwrap().iter().filter(|f| f["severity"] == "high").count() as u64;
    assert_eq!(shown(&html, "Sales/high"), Some(high));
    let mut users = |at: u64| {
        let rows = sb.json(&format!("systemusers --env Sales --at seq:{at}"));
        rows.as_array().unwrap().iter().filter(|r| r["kind"] == "user" && r["isdisabled"] == false).count()
            as u64
    };
    assert_eq!(
        (shown(&html, "Sales/users-start"), shown(&html, "Sales/users-end")),
        (Some(users(start)), Some(users(to)))
    );
    assert_eq!(shown(&html, "refusals"), Some(1), "carol's license (D4), listed apart");
    assert!(html.contains("rejected (D4)"), "with its reason");
}

#[test]
fn the_timelines_mark_the_changes_timeline_shows() {
    let (mut sb, start) = period();
    let (_, html) = report(&mut sb, &format!("--from seq:{start} --user {ALICE}"));
    let mut drawn = 0;
    for who in [ALICE, BOB] {
        let intervals = sb.json(&format!("timeline --env Sales --upn {who}"));
        for interval in
            intervals.as_array().unwrap().iter().filter(|i| i["cause"]["seq"].as_u64() > Some(start))
        {
            let seq = interval["cause"]["seq"].as_u64().unwrap();
            assert!(
                html.contains(&format!("<a href=\"#record-{seq}\"><line class=\"mark\"")),
                "{who}: record {seq}"
            );
            drawn += 1;
        }
    }
    assert_eq!(drawn, 1, "bob's record added; alice, asked for with --user, unchanged");
    assert_eq!(html.matches("<figure>").count(), 2, "bob's bar, and alice's");
}

#[test]
fn writing_a_report_appends_one_record_that_history_and_record_show() {
    let (mut sb, _) = period();
    let before = sb.records();
    let (run, _) = report(&mut sb, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(sb.records(), before + 1, "one record");
    let newest = sb.json("history --limit 1");
    assert_eq!(newest[0]["activityDisplayName"], "Generate report");
    let target = &newest[0]["targetResources"][0];
    assert_eq!(target["type"], "Report");
    assert!(target["displayName"].as_str().unwrap().ends_with("report.html"), "{target}");
    let shown = sb.ok(&format!("record {}", before + 1));
    assert!(shown.contains("event     ReportGenerated") && shown.contains("sha256: - -> "), "{shown}");
}

#[test]
fn verify_report_accepts_the_file_written_and_refuses_it_with_one_byte_changed() {
    let (mut sb, _) = period();
    let (_, html) = report(&mut sb, "");
    let issued = sb.records();
    let file = sb.dir().join("report.html");
    let ok = sb.ok(&format!("verify --report {}", file.display()));
    assert!(ok.contains(&format!("record {issued} says was issued")), "{ok}");
    let mut bytes = html.into_bytes();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = sb.fails(&format!("verify --report {}", file.display()), 3);
    assert!(err.contains("report.html is no report this log issued"), "{err}");
}

#[test]
fn a_period_before_an_environment_existed_says_so() {
    let mut sb = Sandbox::contoso();
    let before = sb.records();
    sb.ok("env create --name Sales --type production");
    let (run, html) = report(&mut sb, &format!("--to seq:{before} --env Sales"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(html.contains("data-absent=\"Sales\">did not exist by the end of the period"), "{html}");
    let (_, html) = report(&mut sb, &format!("--from seq:{before} --env Sales"));
    assert!(html.contains("Sales <small>(created in the period)</small>"));
    assert_eq!(shown(&html, "Sales/users-start"), Some(0));
    let err = sb.fails(&format!("report --env Nowhere --out {}", sb.dir().join("x.html").display()), 2);
    assert!(err.contains("unknown environment Nowhere"), "{err}");
}

#[test]
fn an_empty_period_has_no_changes_and_no_refusals() {
    let (mut sb, start) = period();
    let (run, html) = report(&mut sb, &format!("--from seq:{start} --to seq:{start}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!((shown(&html, "Sales/changes"), shown(&html, "refusals")), (Some(0), Some(0)));
    assert!(!html.contains("<figure>"), "no timeline: nobody's access changed");
    let err = sb.fails(
        &format!("report --from seq:{start} --to seq:1 --out {}", sb.dir().join("x.html").display()),
        2,
    );
    assert!(err.contains("is after --to"), "{err}");
}

#[test]
fn a_log_that_fails_verify_gets_a_red_cover_and_exit_3() {
    let mut sb = Sandbox::contoso();
    sb.ok(&format!("user create --upn {ALICE} --first Alice --last Smith --city Lyon"));
    {
        let store = store::SledStore::open(sb.db(), sb.open_options()).unwrap();
        let mut bytes = store.raw_record(4).unwrap().unwrap();
        let at = bytes.windows(4).position(|w| w == b"Lyon").expect("the city is in record 4");
        bytes[at..at + 4].copy_from_slice(b"Nice");
        store.raw_set_record(4, Some(&bytes)).unwrap();
    }
    let records = sb.json("history").as_array().map(Vec::len);
    let (run, html) = report(&mut sb, "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("verify failed at record 4")
            && run.stderr.contains("none of this report could be appended"),
        "{}",
        run.stderr
    );
    assert!(
        html.contains("<dd id=\"verify\" class=\"bad\" data-ok=\"false\">FAILED: verify failed at record 4"),
        "{html}"
    );
    assert!(html.contains("id=\"appendix\""), "the rest is written");
    assert_eq!(sb.json("history").as_array().map(Vec::len), records, "nothing appended");
}

/// More refused attempts than the report shows (L1): DETAIL_ROWS rows, how
/// many more, and the history whose failures are every one of them.
#[test]
fn refused_attempts_beyond_the_cap_are_the_failures_of_the_history_named() {
    const CAP: usize = cli::report::DETAIL_ROWS;
    let mut sb = Sandbox::sales_team(2);
    sb.ok("user create --upn carol@contoso.onmicrosoft.com --first Carol --last Tester");
    let start = sb.records();
    for _ in 0..CAP + 3 {
        sb.fails("user license assign --upn carol@contoso.onmicrosoft.com --sku DYN365_SALES", 1);
    }
    let to = sb.records();
    let (_, html) = report(&mut sb, &format!("--from seq:{start} --to seq:{to}"));
    assert_eq!(shown(&html, "refusals"), Some((CAP + 3) as u64));
    let section = between(&html, "<section id=\"refusals\">", "</section>");
    assert_eq!(section.matches("<tr><td>").count(), CAP);
    assert_eq!(between(section, "data-more=\"refusals\">", "<"), "3");
    let command = between(section, "data-command=\"refusals\">", "<").replace("usertrail ", "");
    let out = sb.ok(&command);
    let mut csv = csv::Reader::from_reader(out.as_bytes());
    let result = csv.headers().unwrap().iter().position(|h| h == "result").expect("a result column");
    let failures = csv.records().filter(|r| r.as_ref().is_ok_and(|r| &r[result] == "failure")).count();
    assert_eq!(failures, CAP + 3, "{command}");
}

/// The part of `html` from `start` to the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.split_once(start).map_or("", |(_, rest)| rest);
    from.split_once(end).map_or(from, |(part, _)| part)
}

/// A period with more users added than the report shows of a list
/// (DETAIL_ROWS + 5, imported then synced into Sales, each without a role,
/// R4): each long list shows its first DETAIL_ROWS, says how many more, and
/// prints the command that lists them all, which does; the appendix lists
/// every record the page cites, once, each as `record N` prints it, and no other.
#[test]
fn a_list_longer_than_the_report_shows_names_the_command_that_prints_it_whole() {
    const SKU: &str = "6a4a1628-9b9a-424d-bed5-4118f0ede3fd";
    const CAP: usize = cli::report::DETAIL_ROWS;
    let mut sb = Sandbox::contoso();
    let users: Vec<serde_json::Value> = (0..CAP + 5)
        .map(|i| {
            serde_json::json!({
                "id": format!("0b8c1a2e-0000-4000-8000-{i:012}"),
                "userPrincipalName": format!("u{i:04}@contoso.onmicrosoft.com"),
                "givenName": "U", "surname": format!("{i}"), "displayName": format!("U {i}"),
                "accountEnabled": true, "userType": "Member",
                "assignedLicenses": [{ "skuId": SKU, "disabledPlans": [] }],
            })
        })
        .collect();
    let skus = serde_json::json!([{ "skuId": SKU, "skuPartNumber": "DYN365_ENTERPRISE_SALES", "prepaidUnits": { "enabled": 3000 } }]);
    let (u, s) = (sb.dir().join("users.json"), sb.dir().join("skus.json"));
    std::fs::write(&u, serde_json::json!({ "value": users }).to_string()).unwrap();
    std::fs::write(&s, skus.to_string()).unwrap();
    sb.ok(&format!("import graph --users {} --skus {}", u.display(), s.display()));
    sb.ok("env create --name Sales --type production");
    let start = sb.records();
    sb.ok("sync");
    let to = sb.records();
    let (run, html) = report(&mut sb, &format!("--from seq:{start} --to seq:{to}"));
    assert_eq!(run.code, 0, "{}", run.stderr);

    // The R4 group (no role): CAP rows shown of CAP + 5 (+ the admin's, low).
    let group = between(&html, "<summary>medium: R4 in Sales, ", "</details>");
    let total = shown(&html, "Sales/R4").unwrap_or_default() as usize;
    assert!(total > CAP + 5, "{total} findings of R4");
    assert_eq!(group.matches("<tr class=").count(), CAP);
    assert_eq!(
        group.matches("<li>").count(),
        2,
        "the advice once, for the admin and for the others:\n{group}"
    );
    // Each cut list: how many more, and a command that prints all of them.
    let mut lists = 0;
    for (key, all) in
        [("Sales/R4", total), ("Sales/changes", shown(&html, "Sales/changes").unwrap_or(0) as usize)]
    {
        let more = between(&html, &format!("data-more=\"{key}\">"), "<");
        assert_eq!(more.parse(), Ok(all - CAP), "{key}");
        let command = between(&html, &format!("data-command=\"{key}\">"), "<");
        let command = command.strip_prefix("usertrail ").expect("a usertrail command line");
        assert!(
            command.contains(&format!("seq:{to}")) && command.ends_with("--format csv --excel"),
            "{command}"
        );
        let out = sb.ok(command);
        let mut csv = csv::Reader::from_reader(out.as_bytes());
        let upn = csv.headers().unwrap().iter().position(|h| h.ends_with("upn")).expect("a upn column");
        let upns: Vec<String> = csv.records().flatten().map(|r| r[upn].to_owned()).collect();
        assert_eq!(upns.len(), all, "{key}: {command}");
        if key == "Sales/R4" {
            // The rows shown are the export's first, in its order.
            let shown: Vec<&str> = group
                .split("<tr class=")
                .skip(1)
                .filter_map(|row| row.split("<td>").nth(2)?.split('<').next())
                .collect();
            assert_eq!(shown, upns[..CAP]);
        }
        lists += 1;
    }
    assert_eq!(lists, 2);
    // The timelines: the CAP users with the most changes (ties by name), then the command that draws the others.
    assert_eq!(html.matches("<figure>").count(), CAP);
    assert!(html.contains("<figcaption>admin@contoso.onmicrosoft.com</figcaption>"), "first by name");
    let undrawn = between(&html, "data-more=\"Sales/timelines\">", "<");
    assert_eq!(undrawn.parse(), Ok(CAP + 5 + 1 - CAP), "the admin and each user were added");
    let command = between(&html, "data-command=\"Sales/timelines\">", "<");
    let drawn = sb.json(
        &command
            .replace("usertrail ", "")
            .replace("--upn U", &format!("--upn u{:04}@contoso.onmicrosoft.com", CAP + 4)),
    );
    assert_eq!(drawn.as_array().map(Vec::len), Some(2), "absent, then added: {drawn}");

    // The appendix: what the page cites, each once, and nothing else.
    let seqs = |prefix: &str| -> Vec<u64> {
        html.split(prefix).skip(1).filter_map(|s| s.split('"').next()?.parse().ok()).collect()
    };
    let cited: std::collections::BTreeSet<u64> = seqs("href=\"#record-").into_iter().collect();
    let listed = seqs("<pre id=\"record-");
    assert!(cited.len() > CAP, "{} records cited", cited.len());
    assert_eq!(listed.len(), cited.len(), "each listed once");
    assert_eq!(listed.into_iter().collect::<std::collections::BTreeSet<u64>>(), cited);
    assert_eq!(shown(&html, "appendix"), Some(cited.len() as u64));
    // As `record N` prints it, but for its first line: the log has grown by the report's record.
    let first = cited.first().copied().unwrap_or_default();
    let alone = sb.ok(&format!("record {first}"));
    let entry = between(&html, &format!("<pre id=\"record-{first}\">"), "</pre>");
    let escaped = alone
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert_eq!(entry.lines().skip(1).collect::<Vec<_>>(), escaped.lines().skip(1).collect::<Vec<_>>());
}
