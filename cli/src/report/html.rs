//! The report's HTML: a few template pieces, every text escaped. Numbers
//! carry `data-n="ENV/KEY"` so a test (or a script) finds them, and a list
//! shown in part says how many more it holds (`data-more`) and the command
//! that prints them all (`data-command`); nothing is loaded from anywhere,
//! and the page needs no script.

use chrono::{DateTime, Utc};
use domain::environment::NON_INTERACTIVE_LIMIT;
use domain::events::AccessMode;

use super::{EnvSeen, Part, Report, Timeline, DETAIL_ROWS};
use crate::output::to_second;

/// The change kinds of `changes`, in the order the report lists them.
const KINDS: [&str; 9] = [
    "added",
    "enabled",
    "disabled",
    "accessmode",
    "role gained",
    "role lost",
    "team joined",
    "team left",
    "changed",
];

/// Only what is written here is loaded: inline styles, and images as data.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLE: &str = r#"
:root { font: 14px/1.4 system-ui, "Segoe UI", Roboto, sans-serif; color: #111; }
body { max-width: 1200px; margin: 0 auto; padding: 1rem 2rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #333; margin-top: 2.5rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td[data-n], td.n { text-align: right; font-variant-numeric: tabular-nums; }
dt { font-weight: bold; float: left; clear: left; width: 9rem; }
dd { margin-left: 10rem; }
code, pre { font: 12px ui-monospace, Consolas, monospace; }
pre { white-space: pre-wrap; background: #f9fafb; border: 1px solid #e5e7eb; padding: .4rem; margin: .3rem 0; }
.ok { color: #15803d; }
.bad { color: #b91c1c; font-weight: bold; }
tr.high td:first-child { color: #b91c1c; font-weight: bold; }
tr.medium td:first-child { color: #b45309; }
details.high > summary { color: #b91c1c; font-weight: bold; }
details.medium > summary { color: #b45309; }
.absent { fill: #e5e7eb; } .enabled { fill: #16a34a; } .disabled { fill: #dc2626; }
.mark { stroke: #111; stroke-width: 2; }
svg text { font-size: 11px; fill: #111; }
figure { margin: .8rem 0; } figcaption { font-weight: bold; }
summary { cursor: pointer; }
@media print {
  nav { display: none; }
  h2 { break-before: page; }
  tr, pre, figure { break-inside: avoid; }
  thead { display: table-header-group; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
}
/* Closed lists print whole (Chromium 131 and later). */
@media print { details::details-content { content-visibility: visible; display: contents; } }
"#;

/// Escapes text for HTML content and quoted attributes; control characters
/// (but newline and tab) become U+FFFD.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    to_second(&projections::rfc3339(t))
}

/// A link to a record of the appendix.
fn cite(seq: u64) -> String {
    format!(r##"<a href="#record-{seq}">{seq}</a>"##)
}

/// A number a test can find: `data-n="KEY"`.
fn num(key: &str, n: usize) -> String {
    format!(r#"<td data-n="{}">{n}</td>"#, esc(key))
}

/// A table of `rows` (each a `<tr>`).
fn table(head: &[&str], rows: Vec<String>) -> String {
    let head: String = head.iter().map(|h| format!("<th>{}</th>", esc(h))).collect();
    format!("<table><thead><tr>{head}</tr></thead><tbody>{}</tbody></table>", rows.concat())
}

/// A word of a shell command line, quoted when the shell would split or expand it.
fn sh(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+,-./:=_".contains(c);
    match !word.is_empty() && word.chars().all(plain) {
        true => word.to_owned(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

/// Under a list shown in part: how many more it holds, and the command that
/// prints them (`key` names both for a test).
fn more(key: &str, hidden: usize, what: &str, command: &str) -> String {
    if hidden == 0 {
        return String::new();
    }
    format!(
        "<p class=\"more\"><span data-more=\"{key}\">{hidden}</span> more {what}: <code data-command=\"{key}\">{}</code></p>\n",
        esc(command),
        key = esc(key),
    )
}

fn row(cells: &[String]) -> String {
    format!("<tr>{}</tr>", cells.iter().map(|c| format!("<td>{c}</td>")).collect::<String>())
}

/// The whole page.
pub fn page(r: &Report) -> String {
    let title = format!("Access report: {}, {} to {}", r.tenant, time(r.from.1), time(r.to.1));
    let mut p = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    // The hatch that marks an access mode other than read-write, shared by every timeline.
    p.push_str(concat!(
        r#"<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>"#,
        r#"<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">"#,
        r##"<rect width="2" height="6" fill="#fff" fill-opacity="0.7"/></pattern></defs></svg>"##,
        "\n"
    ));
    p.push_str(&cover(r));
    p.push_str(concat!(
        "<nav><ol><li><a href=\"#summary\">Summary</a></li><li><a href=\"#findings\">Access review findings</a></li>",
        "<li><a href=\"#changes\">Changes in the period</a></li><li><a href=\"#refusals\">Refused attempts</a></li>",
        "<li><a href=\"#timelines\">Timelines</a></li><li><a href=\"#appendix\">Appendix: the records cited</a></li></ol></nav>\n"
    ));
    p.push_str(&summary(r));
    p.push_str(&findings(r));
    p.push_str(&changes(r));
    p.push_str(&refusals(r));
    p.push_str(&timelines(r));
    p.push_str(&appendix(r));
    p.push_str("</body>\n</html>\n");
    p
}

fn cover(r: &Report) -> String {
    let (head, hash) = r.head.as_ref().map_or((0, ""), |(seq, hash)| (*seq, hash.as_str()));
    let (verified, issued) = match &r.verified {
        (records, None) => (
            format!(r#"<dd id="verify" class="ok" data-ok="true">intact: {records} records, hash chain and indexes (usertrail verify)</dd>"#),
            "Writing this report appended one record (\"Generate report\") holding the SHA-256 of this file: \
             <code>usertrail verify --report FILE</code> tells this file from a changed copy.",
        ),
        (_, Some(problem)) => (
            format!(r#"<dd id="verify" class="bad" data-ok="false">FAILED: {}. The figures below are read from a damaged log.</dd>"#, esc(problem)),
            "The log failed verify: it takes no more records, so no record of this report was appended.",
        ),
    };
    format!(
        "<header id=\"cover\">\n<h1>Access report: {tenant}</h1>\n<dl>\n\
         <dt>Period</dt><dd id=\"period\" data-from-seq=\"{fs}\" data-to-seq=\"{ts}\">{from} to {to} (after record {fs}, up to record {ts}); every figure is as of its end</dd>\n\
         <dt>Generated at</dt><dd id=\"generated-at\">{generated}</dd>\n\
         <dt>Log</dt><dd id=\"digest\" data-seq=\"{head}\" data-hash=\"{hash}\">record {head}, hash <code>{hash}</code> (usertrail digest)</dd>\n\
         <dt>Verified</dt>{verified}\n</dl>\n<p>{issued}</p>\n</header>\n",
        tenant = esc(&r.tenant),
        fs = r.from.0,
        ts = r.to.0,
        from = time(r.from.1),
        to = time(r.to.1),
        generated = time(r.generated_at),
    )
}

fn summary(r: &Report) -> String {
    let mut rows = Vec::new();
    let mut lists = String::new();
    for env in &r.envs {
        let name = esc(&env.name);
        let Some(s) = &env.seen else {
            rows.push(format!(
                r#"<tr><td>{name}</td><td colspan="12" data-absent="{name}">did not exist by the end of the period</td></tr>"#
            ));
            continue;
        };
        let key = |k: &str| format!("{}/{k}", env.name);
        let kind = |k: &str| s.kinds.get(k).copied().unwrap_or(0);
        let severity = |k: &str| s.severities.get(k).copied().unwrap_or(0);
        let created = if s.created { " <small>(created in the period)</small>" } else { "" };
        rows.push(format!(
            "<tr><td>{name}{created}</td>{}{}{}{}{}{}{}<td><span data-n=\"{}\">{}</span> of {NON_INTERACTIVE_LIMIT}</td>{}{}{}{}</tr>",
            num(&key("users-start"), s.users[0]),
            num(&key("users-end"), s.users[1]),
            num(&key("added"), kind("added")),
            num(&key("enabled"), kind("enabled")),
            num(&key("disabled"), kind("disabled")),
            num(&key("privileged"), s.privileged.len()),
            num(&key("admins"), s.admins.len()),
            esc(&key("non-interactive")),
            s.non_interactive,
            num(&key("applications"), s.applications),
            num(&key("high"), severity("high")),
            num(&key("medium"), severity("medium")),
            num(&key("low"), severity("low")),
        ));
        let held: Vec<String> = s
            .privileged
            .iter()
            .map(|(upn, roles)| format!("<li>{}: {}</li>", esc(upn), esc(&roles.join(", "))))
            .chain(s.admins.iter().map(|upn| format!("<li>{}: a directory admin role</li>", esc(upn))))
            .collect();
        if !held.is_empty() {
            let command = format!(
                "usertrail export systemusers --env {} --at {} --format csv --excel",
                sh(&env.name),
                r.at
            );
            lists.push_str(&format!(
                "<details><summary>Privileged users of {name} ({})</summary><ul>{}</ul>{}</details>\n",
                held.len(),
                held[..held.len().min(DETAIL_ROWS)].concat(),
                more(
                    &key("privileged"),
                    held.len().saturating_sub(DETAIL_ROWS),
                    "privileged users, all in the column roles of",
                    &command
                )
            ));
        }
    }
    format!(
        "<section id=\"summary\">\n<h2>Summary</h2>\n<p>Users are enabled SystemUser records of kind user (usertrail systemusers); \
         changes are counted by kind (usertrail changes); findings by severity (usertrail review). Privileged: enabled users holding \
         {roles}; admins: enabled users whose directory user holds an admin role that governs environments.</p>\n\
         <table><thead><tr><th rowspan=\"2\">environment</th><th colspan=\"2\">users</th><th colspan=\"3\">in the period</th>\
         <th colspan=\"2\">privileged</th><th rowspan=\"2\">non-interactive (A3)</th><th rowspan=\"2\">application users</th>\
         <th colspan=\"3\">findings</th></tr><tr><th>at start</th><th>at end</th><th>added</th><th>enabled</th><th>disabled</th>\
         <th>by role</th><th>admins</th><th>high</th><th>medium</th><th>low</th></tr></thead><tbody>{}</tbody></table>\n{lists}</section>\n",
        rows.concat(),
        roles = esc(&super::PRIVILEGED_ROLES.join(" or ")),
    )
}

/// The environments that existed by the period's end.
fn seen(r: &Report) -> impl Iterator<Item = (&str, &EnvSeen)> {
    r.envs.iter().filter_map(|e| e.seen.as_ref().map(|s| (e.name.as_str(), s)))
}

fn findings(r: &Report) -> String {
    let mut p = String::from(
        "<section id=\"findings\">\n<h2>Access review findings</h2>\n<p>As of the period's end (usertrail review): one group \
         per rule and environment, high first, its advice written once (U: each finding's user); where an environment's last \
         observed SystemUser table departs from the rules, those departures are findings too (reality, usertrail reconcile).</p>\n<ul>",
    );
    for (name, s) in seen(r) {
        p.push_str(&format!(
            "<li>{}: <span data-n=\"{}/findings\">{}</span> findings, <span data-n=\"{}/reality\">{}</span> departures from the rules</li>",
            esc(name),
            esc(name),
            s.findings,
            esc(name),
            s.reality
        ));
    }
    p.push_str("</ul>\n");
    for g in &r.groups {
        let key = format!("{}/{}", g.env, g.rule);
        let severities: Vec<String> = g.severities.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let severities = match severities.len() {
            1 => String::new(),
            _ => format!(" ({})", severities.join(", ")),
        };
        let findings = if g.findings.total == 1 { "finding" } else { "findings" };
        let highest = g.severities.first().map_or("low", |(s, _)| s);
        // High findings are what an auditor reads first: their groups come open.
        let open = if highest == "high" { " open" } else { "" };
        let advice: Vec<String> = g.advice.iter().map(|a| format!("<li>{}</li>", esc(a))).collect();
        let rows = g
            .findings
            .shown
            .iter()
            .map(|f| {
                let evidence: Vec<String> = f.evidence.iter().map(|s| cite(*s)).collect();
                format!(
                    "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(f.severity),
                    esc(f.severity),
                    esc(f.upn.as_deref().unwrap_or("")),
                    esc(&f.detail),
                    evidence.join(", "),
                )
            })
            .collect();
        let command = format!(
            "usertrail export review --env {} --rule {} --at {} --format csv --excel",
            sh(&g.env),
            sh(&g.rule),
            r.at
        );
        p.push_str(&format!(
            "<details class=\"{}\"{open}><summary>{}: {} in {}, <span data-n=\"{}\">{}</span> {findings}{}</summary>\n\
             <p>Advice:</p><ul>{}</ul>\n{}{}</details>\n",
            esc(highest),
            esc(highest),
            esc(&g.rule),
            esc(&g.env),
            esc(&key),
            g.findings.total,
            esc(&severities),
            advice.concat(),
            table(&["severity", "user", "detail", "records"], rows),
            more(
                &key,
                g.findings.total - g.findings.shown.len(),
                "findings; all of them, from the same log position",
                &command
            )
        ));
    }
    p.push_str("</section>\n");
    p
}

fn changes(r: &Report) -> String {
    let mut p = String::from(
        "<section id=\"changes\">\n<h2>Changes in the period</h2>\n<p>Each change to a SystemUser record (usertrail changes), \
         with the command or sync pass that made it.</p>\n",
    );
    for (name, s) in seen(r) {
        let counts: Vec<String> = KINDS
            .iter()
            .map(|k| {
                let n = s.kinds.get(k).copied().unwrap_or(0);
                format!("{} <span data-n=\"{}/change/{}\">{n}</span>", esc(k), esc(name), esc(k))
            })
            .collect();
        p.push_str(&format!(
            "<h3>{}: <span data-n=\"{}/changes\">{}</span> changes</h3>\n<p>{}</p>\n",
            esc(name),
            esc(name),
            s.changes.total,
            counts.join(", ")
        ));
        let rows = s
            .changes
            .shown
            .iter()
            .map(|c| {
                row(&[
                    cite(c.seq),
                    esc(&to_second(&c.at)),
                    esc(&c.upn),
                    esc(c.change),
                    esc(c.field.as_deref().unwrap_or("")),
                    esc(c.old_value.as_deref().unwrap_or("")),
                    esc(c.new_value.as_deref().unwrap_or("")),
                    format!(
                        "{} by {} ({})",
                        esc(&c.cause.activity_display_name),
                        esc(&c.cause.initiated_by),
                        cite(c.cause.seq)
                    ),
                ])
            })
            .collect();
        p.push_str(&table(&["record", "time", "user", "change", "field", "old", "new", "cause"], rows));
        let command = format!(
            "usertrail export changes --env {} --from seq:{} --to seq:{} --format csv --excel",
            sh(name),
            r.from.0,
            r.to.0
        );
        let hidden = s.changes.total - s.changes.shown.len();
        p.push_str(&more(
            &format!("{name}/changes"),
            hidden,
            "changes; all of them, from the same log position",
            &command,
        ));
    }
    p.push_str("</section>\n");
    p
}

fn refusals(r: &Report) -> String {
    let rows = r
        .refusals
        .shown
        .iter()
        .map(|a| {
            let by = a.initiated_by.user.as_ref().map_or("", |u| u.user_principal_name.as_str());
            let targets: Vec<&str> = a
                .target_resources
                .iter()
                .filter_map(|t| t.user_principal_name.as_deref().or(t.display_name.as_deref()))
                .collect();
            row(&[
                cite(a.seq),
                esc(&to_second(&a.activity_date_time)),
                esc(by),
                esc(&a.activity_display_name),
                esc(a.environment.as_deref().unwrap_or("")),
                esc(&targets.join(", ")),
                esc(a.result_reason.as_deref().unwrap_or("")),
            ])
        })
        .collect();
    // History starts at a time: from the period's start's, which may take in
    // a few records before it but misses none, newest first, as many as the period holds.
    let command = format!(
        "usertrail export history --at seq:{} --since {} --limit {} --format csv --excel",
        r.to.0,
        projections::rfc3339(r.from.1),
        r.to.0 - r.from.0
    );
    let Part { shown, total } = &r.refusals;
    format!(
        "<section id=\"refusals\">\n<h2>Refused attempts</h2>\n<p><span data-n=\"refusals\">{total}</span> commands a rule turned down \
         in the period (L1; usertrail history).</p>\n{}{}</section>\n",
        table(&["record", "time", "by", "activity", "environment", "targets", "result"], rows),
        more("refusals", total - shown.len(), "refused attempts, each a record of result failure among", &command)
    )
}

/// The timelines' colours and marks.
const LEGEND: &str = concat!(
    "<svg width=\"14\" height=\"10\"><rect width=\"14\" height=\"10\" class=\"enabled\"/></svg> enabled, ",
    "<svg width=\"14\" height=\"10\"><rect width=\"14\" height=\"10\" class=\"disabled\"/></svg> disabled, ",
    "<svg width=\"14\" height=\"10\"><rect width=\"14\" height=\"10\" class=\"absent\"/></svg> no record, ",
    "<svg width=\"14\" height=\"10\"><rect width=\"14\" height=\"10\" class=\"enabled\"/><rect width=\"14\" height=\"10\" fill=\"url(#hatch)\"/></svg> ",
    "an access mode other than read-write; a black mark is a change, linked to its record."
);

fn timelines(r: &Report) -> String {
    let mut p = format!(
        "<section id=\"timelines\">\n<h2>Timelines</h2>\n<p>Each user whose access changed in the period, up to {DETAIL_ROWS} \
         an environment (those with the most changes; ties by name), and each asked for (usertrail timeline): {LEGEND}</p>\n"
    );
    let figures: Vec<String> = r.timelines.iter().map(|t| svg(t, r.from.1, r.to.1)).collect();
    if figures.len() <= DETAIL_ROWS {
        p.push_str(&figures.concat());
    } else {
        for (i, page) in r.timelines.chunks(DETAIL_ROWS).zip(figures.chunks(DETAIL_ROWS)).enumerate() {
            let (users, figures) = page;
            let (first, last) = (users.first().map_or("", |t| &t.upn), users.last().map_or("", |t| &t.upn));
            p.push_str(&format!(
                "<details><summary>users {} to {} of {}: {} to {}</summary>\n{}</details>\n",
                i * DETAIL_ROWS + 1,
                i * DETAIL_ROWS + users.len(),
                r.timelines.len(),
                esc(first),
                esc(last),
                figures.concat()
            ));
        }
    }
    for (name, s) in seen(r) {
        let command = format!("usertrail timeline --env {} --upn U --at {}", sh(name), r.at);
        let what =
            "users whose access changed are not drawn (export changes names them); any one is drawn by";
        p.push_str(&more(&format!("{name}/timelines"), s.undrawn, what, &command));
    }
    p.push_str("</section>\n");
    p
}

/// One user's bars, one per environment, over the period.
fn svg(t: &Timeline, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    const LABEL: f64 = 120.0;
    const WIDTH: f64 = 640.0;
    const ROW: f64 = 22.0;
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| LABEL + WIDTH * ((t.clamp(from, to) - from).num_milliseconds() as f64 / span);
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc());
    let height = ROW * t.rows.len() as f64 + 16.0;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" role=\"img\">",
        esc(&t.upn),
        w = LABEL + WIDTH + 10.0
    );
    for (i, (env, intervals)) in t.rows.iter().enumerate() {
        let y = ROW * i as f64;
        s.push_str(&format!("<text x=\"0\" y=\"{}\">{}</text>", y + 12.0, esc(env)));
        for interval in intervals {
            let Some(start) = parse(&interval.from) else { continue };
            let end = interval.to.as_deref().and_then(parse).unwrap_or(to);
            if end < from || start > to {
                continue;
            }
            let (x1, x2) = (x(start), x(end));
            let mode = interval.accessmode.and_then(AccessMode::from_value);
            let shown = mode.map_or_else(String::new, |m| format!(", {}", m.shown()));
            // What held at the period's start is judged there, not where it began.
            let (since, cause) = match start > from {
                true => (time(start), format!(" (record {})", interval.cause.seq)),
                false => (time(from), String::new()),
            };
            let tip = format!("{}{shown}, {since} to {}{cause}", interval.state, time(end));
            s.push_str(&format!(
                "<rect x=\"{x1:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"14\" class=\"{}\"><title>{}</title></rect>",
                x2 - x1,
                interval.state,
                esc(&tip)
            ));
            if mode.is_some_and(|m| m != AccessMode::ReadWrite) {
                s.push_str(&format!(
                    "<rect x=\"{x1:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"14\" fill=\"url(#hatch)\"/>",
                    x2 - x1
                ));
            }
            if start > from {
                s.push_str(&format!(
                    "<a href=\"#record-{seq}\"><line class=\"mark\" x1=\"{x1:.1}\" x2=\"{x1:.1}\" y1=\"{}\" y2=\"{}\"><title>record {seq}: {}</title></line></a>",
                    y - 2.0,
                    y + 16.0,
                    esc(&interval.cause.activity_display_name),
                    seq = interval.cause.seq
                ));
            }
        }
    }
    let axis = ROW * t.rows.len() as f64 + 12.0;
    s.push_str(&format!(
        "<text x=\"{LABEL}\" y=\"{axis}\">{}</text><text x=\"{}\" y=\"{axis}\" text-anchor=\"end\">{}</text></svg></figure>\n",
        esc(&time(from)),
        LABEL + WIDTH,
        esc(&time(to))
    ));
    s
}

fn appendix(r: &Report) -> String {
    let records: Vec<String> = r
        .appendix
        .iter()
        .map(|(seq, text)| format!("<pre id=\"record-{seq}\">{}</pre>\n", esc(text)))
        .collect();
    let mut p = format!(
        "<section id=\"appendix\">\n<h2>Appendix: the records cited</h2>\n<p><span data-n=\"appendix\">{}</span> records, \
         each as <code>usertrail record N</code> prints it.</p>\n",
        records.len()
    );
    if records.len() <= DETAIL_ROWS {
        p.push_str(&records.concat());
    } else {
        for (seqs, text) in r.appendix.chunks(DETAIL_ROWS).zip(records.chunks(DETAIL_ROWS)) {
            let (first, last) = (seqs.first().map_or(0, |s| s.0), seqs.last().map_or(0, |s| s.0));
            p.push_str(&format!(
                "<details><summary>records {first} to {last}</summary>\n{}</details>\n",
                text.concat()
            ));
        }
    }
    p.push_str("</section>\n");
    p
}
