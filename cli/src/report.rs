//! The auditor's report (issue 31): one self-contained HTML file of a period,
//! tied to the verified log, and `verify --report`, which tells the file a
//! record says was issued from a changed copy. Every number comes from the
//! views (`review`, `changes`, `systemusers`, `timeline`, `history`,
//! `record N`); this module only gathers and lays them out. Every list is
//! counted whole and shown in part (its first [`DETAIL_ROWS`], with the
//! command that prints the rest from the same log position), so a report's
//! size follows its number of lists, not the tenant's size.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use domain::environment::Environment;
use domain::events::{Event, ReportGenerated};
use domain::tenant::Tenant;
use domain::Upn;
use projections::audit::{self, AuditRecord, Names};
use projections::changes::Change;
use projections::review::Finding;
use projections::systemusers::Row;
use projections::timeline::{Interval, Subject};
use sha2::{Digest, Sha256};
use store::{Append, Causation, ExpectedVersion, Metadata};

use crate::args::ReportArgs;
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::{event_of, Shell, AUDIT_STREAM};
use crate::time::{parse_at, At};

mod html;

/// The roles that make a user privileged in an environment.
const PRIVILEGED_ROLES: [&str; 2] = ["System Administrator", "System Customizer"];

/// Rows shown of any one list: a group of findings (one rule in one
/// environment), an environment's changes, its timelines, the refusals.
/// Chosen by measurement (BENCHMARKS.md): a year of a 50,000-user tenant
/// in ten environments makes a report of a few MiB that Chromium opens in seconds.
pub const DETAIL_ROWS: usize = 100;

/// The first [`DETAIL_ROWS`] items of a list, and how many it holds.
struct Part<T> {
    shown: Vec<T>,
    total: usize,
}

impl<T> Part<T> {
    fn of(mut all: Vec<T>) -> Self {
        let total = all.len();
        all.truncate(DETAIL_ROWS);
        Part { shown: all, total }
    }
}

/// What the report shows, gathered from the views.
struct Report {
    tenant: String,
    from: (u64, DateTime<Utc>),
    to: (u64, DateTime<Utc>),
    /// The period's end as `--at` takes it: the commands that print a
    /// list whole name it, so they answer as the report does.
    at: String,
    generated_at: DateTime<Utc>,
    head: Option<(u64, String)>,
    /// `verify`'s result: records walked, and the first problem.
    verified: (u64, Option<String>),
    envs: Vec<EnvReport>,
    /// Ordered by severity, then rule, then environment.
    groups: Vec<Group>,
    refusals: Part<AuditRecord>,
    timelines: Vec<Timeline>,
    appendix: Vec<(u64, String)>,
}

/// The findings of one rule in one environment, review's and reality's,
/// as `review --env E --rule R` lists them.
struct Group {
    env: String,
    rule: String,
    /// How many of each severity, highest first.
    severities: Vec<(&'static str, usize)>,
    /// Its advice, written once: each finding's, with its user written `U`.
    advice: Vec<String>,
    findings: Part<Finding>,
}

/// One environment of the report.
struct EnvReport {
    name: String,
    /// `None`: it did not exist by the period's end.
    seen: Option<EnvSeen>,
}

/// An environment that existed by the period's end.
struct EnvSeen {
    /// It was created during the period.
    created: bool,
    /// Enabled users (SystemUser records of kind user) at the start and at the end.
    users: [usize; 2],
    applications: usize,
    non_interactive: usize,
    /// Enabled users holding a privileged role, with those roles.
    privileged: Vec<(String, Vec<String>)>,
    /// Enabled users whose directory user holds an environment admin role.
    admins: Vec<String>,
    /// Review's findings by severity.
    severities: BTreeMap<&'static str, usize>,
    findings: usize,
    /// Where the last observed table departs from the rules' (reconcile).
    reality: usize,
    /// Changes by kind.
    kinds: BTreeMap<&'static str, usize>,
    changes: Part<Change>,
    /// Users whose access changed in the period and whose timeline is not drawn.
    undrawn: usize,
}

/// A user's intervals in each environment.
struct Timeline {
    upn: String,
    rows: Vec<(String, Vec<Interval>)>,
}

/// `report [--from WHEN] [--to WHEN] [--env E ...] [--user U ...] --out FILE`
pub async fn report(
    shell: &Shell,
    actor: Option<&Upn>,
    args: ReportArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let report = gather(shell, &args).await?;
    let page = html::page(&report);
    crate::timings::phase("report: html");
    let file = args.out.display().to_string();
    std::fs::write(&args.out, page.as_bytes()).or_else(|e| usage(format!("cannot write {file}: {e}")))?;
    let sha256: [u8; 32] = Sha256::digest(page.as_bytes()).into();
    if let (_, Some(problem)) = &report.verified {
        return Err(CliError::Corrupt(format!(
            "{problem}; the report at {file} says so on its cover; the log takes no more records, so none of this report could be appended"
        )));
    }
    let (tenant, _) = shell.tenant().await?;
    let actor = Shell::actor(&tenant, actor)?;
    let event = ReportGenerated { from: report.from.1, to: report.to.1, file: file.clone(), sha256 };
    let event = shell.new_event(&Event::ReportGenerated(event)).or_else(|e| usage(format!("{e:?}")))?;
    let meta = Metadata {
        recorded_at: report.generated_at,
        actor: actor.to_string(),
        correlation_id: shell.ids.next(),
        causation: Causation::Command { name: "report".into() },
        origin: Some(shell.origin()),
    };
    let append =
        Append { stream: AUDIT_STREAM.to_owned(), expected: ExpectedVersion::Any, events: vec![event], meta };
    let appended = match shell.store.append(append).await? {
        Ok(appended) => appended,
        Err(rejection) => return usage(rejection.to_string()),
    };
    let hash = crate::proof::hex(&sha256);
    if out.json {
        return out.json(&serde_json::json!({ "file": file, "sha256": hash, "seq": appended.last_seq }));
    }
    out.line(format!("wrote {file} (sha256 {hash}), issued as record {}", appended.last_seq))?;
    out.line(format!("check a copy with: usertrail verify --report {file}"))
}

/// `verify --report FILE`: the record that issued this file, or exit 3.
pub async fn verify(shell: &Shell, file: &Path, out: &mut Out<'_>) -> Result<(), CliError> {
    let name = file.display();
    let bytes = std::fs::read(file).or_else(|e| usage(format!("cannot read {name}: {e}")))?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    for record in shell.store.read_stream(AUDIT_STREAM, 1).await? {
        let Event::ReportGenerated(issued) = event_of(&record)? else { continue };
        if issued.sha256 != sha256 {
            continue;
        }
        let (from, to) = (projections::rfc3339(issued.from), projections::rfc3339(issued.to));
        if out.json {
            return out.json(&serde_json::json!({
                "file": name.to_string(), "seq": record.seq, "from": from, "to": to,
                "issuedAs": issued.file, "by": record.actor,
            }));
        }
        return out.line(format!(
            "{name} is the report record {} says was issued ({}, by {}): period {from} to {to}",
            record.seq,
            crate::output::to_second(&projections::rfc3339(record.recorded_at)),
            record.actor
        ));
    }
    Err(CliError::Disproved(format!(
        "{name} is no report this log issued: no record holds its SHA-256 {}",
        crate::proof::hex(&sha256)
    )))
}

/// The period's two ends: `--to` (default now) and `--from` (default 90 days before it).
async fn period(shell: &Shell, args: &ReportArgs) -> Result<[(u64, DateTime<Utc>); 2], CliError> {
    let to = shell.point(args.to.as_deref().map(parse_at).transpose()?).await?;
    let from = match args.from.as_deref() {
        Some(from) => parse_at(from)?,
        None => At::Time(to.1 - Duration::days(90)),
    };
    let from = shell.point(Some(from)).await?;
    if from.0 > to.0 || from.1 > to.1 {
        return usage(format!("--from (seq {}) is after --to (seq {})", from.0, to.0));
    }
    Ok([from, to])
}

async fn gather(shell: &Shell, args: &ReportArgs) -> Result<Report, CliError> {
    let [from, to] = period(shell, args).await?;
    let generated_at = shell.now().await?;
    let head = shell.store.head().await?;
    let verified = shell.store.verify().await?;
    let verified = (
        verified.records,
        verified.problem.map(|p| format!("verify failed at record {}: {}", p.seq, p.what)),
    );
    crate::timings::phase("report: verified");
    let end = shell.store.read_log(to.0, to.0, 1).await?.first().map(|r| r.recorded_at);
    let at = if end == Some(to.1) { format!("seq:{}", to.0) } else { projections::rfc3339(to.1) };
    let (tenant, _) = shell.tenant_at(to.0).await?;
    let names: Vec<String> = match args.env.as_slice() {
        [] => tenant.environments().map(|(_, name)| name.to_owned()).collect(),
        named => {
            let (now, _) = shell.tenant().await?;
            if let Some(name) = named.iter().find(|n| now.environment(n).is_none()) {
                let known: Vec<&str> = now.environments().map(|(_, n)| n).collect();
                return usage(format!("unknown environment {name} (known: {})", known.join(", ")));
            }
            named.to_vec()
        }
    };
    let mut envs = Vec::new();
    let mut groups = Vec::new();
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names {
        let Some((_, registered)) = tenant.environment(&name) else {
            envs.push(EnvReport { name, seen: None });
            continue;
        };
        let name = registered.to_owned();
        let (start, _) = shell.environment_at(&tenant, &name, from.0).await?;
        let (end, _) = shell.environment_at(&tenant, &name, to.0).await?;
        let findings = crate::views::review_of(shell, &tenant, &end, to.1).await?;
        let reality = projections::reconcile::findings(&tenant, &end, to.1);
        let changes = crate::views::changes_after(shell, start.clone(), end.id, from.0, to.0).await?;
        // The timelines drawn: the users with the most access changes, ties by UPN, and those asked for.
        let mut changed: BTreeMap<&str, usize> = BTreeMap::new();
        for c in
            changes.iter().filter(|c| matches!(c.change, "added" | "enabled" | "disabled" | "accessmode"))
        {
            *changed.entry(c.upn.as_str()).or_default() += 1;
        }
        let mut ranked: Vec<(&str, usize)> = changed.into_iter().collect();
        ranked.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let asked = |upn: &str| args.user.iter().any(|u| u.as_str().eq_ignore_ascii_case(upn));
        let undrawn = ranked.iter().skip(DETAIL_ROWS).filter(|(upn, _)| !asked(upn)).count();
        let drawn = ranked.iter().take(DETAIL_ROWS).map(|(upn, _)| upn.to_string());
        for upn in drawn.chain(args.user.iter().map(Upn::to_string)) {
            wanted.entry(upn).or_default().insert(name.clone());
        }
        let seen = seen(&tenant, [&start, &end], &findings, reality.len(), changes, undrawn);
        groups.extend(group(&name, findings.into_iter().chain(reality)));
        envs.push(EnvReport { seen: Some(seen), name });
    }
    groups.sort_by_cached_key(|g| {
        let highest = g.severities.first().map(|(s, _)| crate::views::severity_rank(s));
        (highest, g.rule.clone(), g.env.clone())
    });
    crate::timings::phase("report: the views");
    let wanted: Vec<(String, BTreeSet<String>)> = wanted.into_iter().collect();
    let mut timelines: Vec<Timeline> =
        wanted.iter().map(|(upn, _)| Timeline { upn: upn.clone(), rows: Vec::new() }).collect();
    // One pass over each environment's records (and the directory's, read once) draws all its users' bars.
    let directory = crate::views::stream_upto(shell, domain::tenant::STREAM, to.0).await?;
    for (id, env) in tenant.environments() {
        let drawn: Vec<usize> = (0..wanted.len()).filter(|&i| wanted[i].1.contains(env)).collect();
        if drawn.is_empty() {
            continue;
        }
        let subjects: Vec<Subject> = drawn
            .iter()
            .map(|&i| match Upn::parse(&wanted[i].0).ok().and_then(|u| tenant.user(&u)) {
                Some(user) => Subject::Directory(user.id),
                None => Subject::Named(wanted[i].0.clone()),
            })
            .collect();
        let env_records = crate::views::stream_upto(shell, &domain::environment::stream(id), to.0).await?;
        let mut records: Vec<&_> = directory.iter().chain(&env_records).collect();
        records.sort_by_key(|(r, _)| r.seq);
        let found = projections::timeline::timelines(&records, &subjects, from.0);
        for (i, intervals) in drawn.into_iter().zip(found) {
            timelines[i].rows.push((env.to_owned(), intervals));
        }
    }
    let refusals = Part::of(refusals(shell, &tenant, &args.env, from.0, to.0).await?);
    crate::timings::phase("report: timelines");
    // Cited: what the report shows, and nothing else.
    let mut cited = BTreeSet::new();
    cited.extend(groups.iter().flat_map(|g| &g.findings.shown).flat_map(|f| f.evidence.iter().copied()));
    let seen_envs = envs.iter().filter_map(|e| e.seen.as_ref());
    cited.extend(seen_envs.flat_map(|s| &s.changes.shown).flat_map(|c| [c.seq, c.cause.seq]));
    let marks = timelines.iter().flat_map(|t| &t.rows).flat_map(|(_, intervals)| intervals);
    cited.extend(marks.map(|i| i.cause.seq).filter(|s| *s > from.0));
    cited.extend(refusals.shown.iter().map(|r| r.seq));
    cited.retain(|&s| s > 0);
    let mut appendix = Vec::with_capacity(cited.len());
    // Folded once: the states at the period's end name every record before it.
    let (named, envs_named) = crate::views::names_at(shell, to.0).await?;
    let names = Names { tenant: &named, envs: &envs_named };
    crate::views::commands_holding(shell, &cited, |command, head| {
        let whole = audit::record(command, &names);
        for (at, (record, _)) in command.iter().enumerate().filter(|(_, (r, _))| cited.contains(&r.seq)) {
            let mut text = Vec::new();
            let mut page = Out { json: false, w: &mut text, color: false, width: None };
            crate::views::describe(command, at, &whole, head, &names, None, &mut page)?;
            appendix.push((record.seq, String::from_utf8_lossy(&text).into_owned()));
        }
        Ok(())
    })
    .await?;
    crate::timings::phase("report: appendix");
    let tenant_name = tenant
        .info
        .as_ref()
        .map_or_else(|| "(no tenant yet)".to_owned(), |i| format!("{} ({})", i.name, i.domain));
    Ok(Report {
        tenant: tenant_name,
        from,
        to,
        at,
        generated_at,
        head: head.map(|h| (h.seq, crate::proof::hex(&h.hash))),
        verified,
        envs,
        groups,
        refusals,
        timelines,
        appendix,
    })
}

/// An environment's findings in one group per rule, in the order found.
fn group(env: &str, findings: impl Iterator<Item = Finding>) -> Vec<Group> {
    let mut by_rule: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    for f in findings {
        by_rule.entry(f.rule.clone()).or_default().push(f);
    }
    by_rule
        .into_iter()
        .map(|(rule, findings)| {
            let mut severities: BTreeMap<(u8, &'static str), usize> = BTreeMap::new();
            let mut advice = BTreeSet::new();
            for f in &findings {
                *severities.entry((crate::views::severity_rank(f.severity), f.severity)).or_default() += 1;
                let upn = f.upn.as_deref().filter(|u| !u.is_empty());
                advice.insert(upn.map_or_else(|| f.advice.clone(), |u| f.advice.replace(u, "U")));
            }
            Group {
                env: env.to_owned(),
                rule,
                severities: severities.into_iter().map(|((_, s), n)| (s, n)).collect(),
                advice: advice.into_iter().collect(),
                findings: Part::of(findings),
            }
        })
        .collect()
}

/// An environment's numbers, from its SystemUser table at both ends.
fn seen(
    tenant: &Tenant,
    [start, end]: [&Environment; 2],
    findings: &[Finding],
    reality: usize,
    changes: Vec<Change>,
    undrawn: usize,
) -> EnvSeen {
    let mut severities = BTreeMap::new();
    for f in findings {
        *severities.entry(f.severity).or_default() += 1;
    }
    let mut kinds = BTreeMap::new();
    for c in &changes {
        *kinds.entry(c.change).or_default() += 1;
    }
    let rows = projections::systemusers::rows(end);
    let enabled_users = |r: &&Row| r.kind == "user" && !r.isdisabled;
    let users = |rows: &[Row]| rows.iter().filter(enabled_users).count();
    let privileged = rows
        .iter()
        .filter(enabled_users)
        .filter_map(|r| {
            let held: Vec<String> =
                r.roles.iter().filter(|role| PRIVILEGED_ROLES.contains(&role.as_str())).cloned().collect();
            (!held.is_empty()).then(|| (r.domainname.clone(), held))
        })
        .collect();
    let admins = rows
        .iter()
        .filter(enabled_users)
        .filter(|r| {
            let user = r.azureactivedirectoryobjectid.and_then(|id| tenant.users.get(&id));
            user.is_some_and(Tenant::is_environment_admin)
        })
        .map(|r| r.domainname.clone())
        .collect();
    EnvSeen {
        created: !start.exists(),
        users: [users(&projections::systemusers::rows(start)), users(&rows)],
        applications: rows.iter().filter(|r| r.kind == "application").count(),
        non_interactive: end.non_interactive().count(),
        privileged,
        admins,
        severities,
        findings: findings.len(),
        reality,
        kinds,
        changes: Part::of(changes),
        undrawn,
    }
}

/// The refused attempts (L1) of the period, of the environments asked for
/// (of any, and of the directory, when none was named).
async fn refusals(
    shell: &Shell,
    tenant: &Tenant,
    envs: &[String],
    from: u64,
    to: u64,
) -> Result<Vec<AuditRecord>, CliError> {
    let no_envs = BTreeMap::new();
    let names = Names { tenant, envs: &no_envs };
    let mut found = Vec::new();
    for record in shell.store.read_stream_until(AUDIT_STREAM, 1, to).await? {
        if record.seq <= from {
            continue;
        }
        let event = event_of(&record)?;
        let Event::CommandRejected(rejected) = &event else { continue };
        let wanted = envs.is_empty()
            || rejected.environment.as_ref().is_some_and(|e| envs.iter().any(|n| n.eq_ignore_ascii_case(e)));
        if wanted {
            found.extend(audit::record(&[(record, event)], &names));
        }
    }
    Ok(found)
}
