//! The views of the log: `history`, `diagnose`, `timeline`, `compare`,
//! `changes`, `review` and `record N`. Each answers as of `--at` (L4) from
//! states folded up to that point.

use std::collections::BTreeMap;

use chrono::Duration;
use domain::environment::Environment;
use domain::events::Event;
use domain::tenant::Tenant;
use domain::Upn;
use projections::audit::{self, AuditRecord, Filter, Names};
use projections::diagnose::{self, NotOffered};
use projections::timeline::{self, Subject};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::args::{AtArgs, ChangesArgs, HistoryArgs, ReviewArgs};
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::{event_of, AsOf, Shell};
use crate::time::{parse_at, parse_time};

/// How many records a page of the backward history scan reads.
const PAGE: u64 = 4096;

/// The point `--at` names, if any.
fn at_of(at: &AtArgs) -> Result<Option<crate::time::At>, CliError> {
    at.at.as_deref().map(parse_at).transpose()
}

/// `history [--user U] [--env E] [--since T] [--until T] [--limit N] [--at WHEN]`
pub async fn history(shell: &Shell, view: HistoryArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let HistoryArgs { user, env, since, until, limit, at } = view;
    let filter = Filter { user: user.map(|u| u.to_string()), environment: env };
    let (since, until) = (since.as_deref(), until.as_deref());
    let (upto, _) = shell.point(at_of(&at)?).await?;
    let mut to = upto;
    if let Some(until) = until {
        to = to.min(shell.store.seq_at(parse_time(until, "--until")?).await?);
    }
    let from = match since {
        // The first record stamped at or after `since`.
        Some(since) => {
            shell.store.seq_at(parse_time(since, "--since")? - Duration::nanoseconds(1)).await? + 1
        }
        None => 1,
    };
    let (tenant, envs) = names_at(shell, upto).await?;
    if let Some(env) = &filter.environment {
        shell.environment_at(&tenant, env, upto).await?;
    }
    let names = Names { tenant: &tenant, envs: &envs };
    let records = newest_first(shell, from, to, limit, &filter, &names).await?;
    if out.json {
        return out.json(&serde_json::to_value(&records).unwrap_or(Value::Null));
    }
    if records.is_empty() {
        return out.line("no audit records");
    }
    let rows = records
        .iter()
        .map(|r| {
            let by = r.initiated_by.user.as_ref().map(|u| u.user_principal_name.clone());
            let by = by
                .or_else(|| r.initiated_by.app.as_ref().map(|a| format!("{} (app)", a.display_name)))
                .unwrap_or_default();
            let targets: Vec<String> = r
                .target_resources
                .iter()
                .map(|t| t.user_principal_name.clone().or_else(|| t.display_name.clone()).unwrap_or_default())
                .collect();
            let result = match &r.result_reason {
                Some(reason) => reason.clone(),
                None => r.result.to_owned(),
            };
            vec![
                r.seq.to_string(),
                crate::output::to_second(&r.activity_date_time),
                by,
                r.activity_display_name.clone(),
                r.environment.clone().unwrap_or_default(),
                targets.join(", "),
                result,
            ]
        })
        .collect();
    // A refusal's result is its reason (`rejected (D8): ...`).
    out.table_painted(
        &["seq", "time", "initiated by", "activity", "environment", "targets", "result"],
        rows,
        |row| row[6].starts_with("rejected").then_some(crate::output::red as crate::output::Paint),
    )
}

/// Reads the log backwards from `to`, page by page, and builds the audit
/// records of whole commands (a command never straddles a page: the oldest
/// group of a page waits for the page before it).
async fn newest_first(
    shell: &Shell,
    from: u64,
    to: u64,
    limit: usize,
    filter: &Filter,
    names: &Names<'_>,
) -> Result<Vec<AuditRecord>, CliError> {
    let mut found = Vec::new();
    let mut carry: Vec<(store::Record, Event)> = Vec::new();
    let mut hi = to;
    while hi >= from && hi > 0 && found.len() < limit {
        let lo = hi.saturating_sub(PAGE - 1).max(from).max(1);
        let mut page = Vec::new();
        for record in shell.store.read_log(lo, hi, usize::MAX).await? {
            let event = event_of(&record)?;
            page.push((record, event));
        }
        page.append(&mut carry);
        let mut groups = audit::commands(page);
        if lo > from && lo > 1 && !groups.is_empty() {
            carry = groups.remove(0);
        }
        for group in groups.iter().rev() {
            if let Some(record) = audit::record(group, names).filter(|r| r.matches(filter)) {
                found.push(record);
                if found.len() == limit {
                    return Ok(found);
                }
            }
        }
        hi = lo - 1;
    }
    if !carry.is_empty() && found.len() < limit {
        if let Some(record) = audit::record(&carry, names).filter(|r| r.matches(filter)) {
            found.push(record);
        }
    }
    Ok(found)
}

/// `diagnose --env E --upn U [--at WHEN]`
pub async fn diagnose(
    shell: &Shell,
    env: &str,
    upn: &Upn,
    at: AtArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let AsOf { seq, time, tenant, environment } = shell.environment_as_of(env, at_of(&at)?).await?;
    let diagnosis = match diagnose::diagnose(&tenant, &environment, upn, time) {
        Ok(d) => d,
        Err(NotOffered::Stub) => {
            return usage(format!("{upn} is a stub user: diagnostics are not offered for stub users (T1.2)"))
        }
        Err(NotOffered::Unknown) => {
            return usage(format!("unknown user {upn}: no directory user and no record in {env}"))
        }
    };
    if out.json {
        return out.json(&serde_json::to_value(&diagnosis).unwrap_or(Value::Null));
    }
    let verdict = if diagnosis.can_access { "can access" } else { "cannot access" };
    let color = if diagnosis.can_access { crate::output::green } else { crate::output::red };
    out.colored(
        color,
        format!("{upn} {verdict} {} (as of {}, seq {seq})", diagnosis.environment, diagnosis.at),
    )?;
    let rows = diagnosis
        .checks
        .iter()
        .map(|c| {
            let evidence: Vec<String> = c.evidence.iter().map(u64::to_string).collect();
            vec![
                if c.passed { "ok" } else { "FAIL" }.to_owned(),
                c.rule.clone(),
                c.name.clone(),
                c.detail.clone(),
                evidence.join(","),
            ]
        })
        .collect();
    out.table_painted(&["result", "rule", "check", "detail", "evidence (seq)"], rows, |row| {
        (row[0] == "FAIL").then_some(crate::output::red as crate::output::Paint)
    })?;
    for advice in &diagnosis.advice {
        out.colored(crate::output::yellow, format!("advice: {advice}"))?;
    }
    Ok(())
}

/// `timeline --env E --upn U [--at WHEN]`
pub async fn timeline(
    shell: &Shell,
    env: &str,
    upn: &Upn,
    at: AtArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let asked = at_of(&at)?;
    let AsOf { seq, time, tenant, environment } = shell.environment_as_of(env, asked).await?;
    // The last interval runs to the point asked: now, or `--at`'s.
    let end = match asked {
        None => "now".to_owned(),
        Some(_) => crate::output::to_second(&projections::rfc3339(time)),
    };
    let subject = match tenant.user(upn) {
        Some(user) => Subject::Directory(user.id),
        None if environment.users_named(upn.as_str()).next().is_some() => Subject::Named(upn.to_string()),
        None => return usage(format!("unknown user {upn}: no directory user and no record in {env}")),
    };
    let records = timeline_records(shell, environment.id, seq).await?;
    let intervals = timeline::timeline(&records, &subject);
    if out.json {
        return out.json(&serde_json::to_value(&intervals).unwrap_or(Value::Null));
    }
    let rows = intervals
        .iter()
        .map(|i| {
            vec![
                crate::output::to_second(&i.from),
                i.to.as_deref().map_or_else(|| end.clone(), crate::output::to_second),
                i.state.to_owned(),
                i.accessmode.map_or_else(String::new, |m| {
                    domain::events::AccessMode::from_value(m).map_or_else(|| m.to_string(), |m| m.shown())
                }),
                if i.can_access { "yes" } else { "no" }.to_owned(),
                format!("seq {} {}", i.cause.seq, i.cause.activity_display_name),
            ]
        })
        .collect();
    out.table(&["from", "to", "state", "mode", "can access", "cause"], rows)
}

/// What a timeline is drawn from: the directory's records and the
/// environment's up to `upto`, merged in log order.
pub async fn timeline_records(
    shell: &Shell,
    env: Uuid,
    upto: u64,
) -> Result<Vec<(store::Record, Event)>, CliError> {
    let mut records = stream_upto(shell, domain::tenant::STREAM, upto).await?;
    records.extend(stream_upto(shell, &domain::environment::stream(env), upto).await?);
    records.sort_by_key(|(r, _)| r.seq);
    Ok(records)
}

/// A stream's records up to record `upto`, decoded.
pub async fn stream_upto(
    shell: &Shell,
    stream: &str,
    upto: u64,
) -> Result<Vec<(store::Record, Event)>, CliError> {
    let mut records = Vec::new();
    for record in shell.store.read_stream_until(stream, 1, upto).await? {
        let event = event_of(&record)?;
        records.push((record, event));
    }
    Ok(records)
}

/// `compare --env E --upn A --with B [--at WHEN]`
pub async fn compare(
    shell: &Shell,
    env: &str,
    a: &Upn,
    b: &Upn,
    at: AtArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let AsOf { seq, time, tenant, environment } = shell.environment_as_of(env, at_of(&at)?).await?;
    let comparison = match projections::compare::compare(&tenant, &environment, a, b, time) {
        Ok(c) => c,
        Err(projections::compare::Missing::Unknown(who)) => {
            return usage(format!("unknown user {who}: no directory user and no record in {env}"))
        }
    };
    if out.json {
        return out.json(&serde_json::to_value(&comparison).unwrap_or(Value::Null));
    }
    if comparison.differences.is_empty() {
        return out.line(format!("{a} and {b} stand the same in {env} (as of {})", comparison.at));
    }
    out.line(format!("{a} compared with {b} in {env} (as of {}, seq {seq})", comparison.at))?;
    let rows = comparison
        .differences
        .iter()
        .map(|d| {
            vec![
                d.aspect.to_owned(),
                d.detail.clone(),
                d.a.as_ref().map_or_else(|| "-".into(), ToString::to_string),
                d.b.as_ref().map_or_else(|| "-".into(), ToString::to_string),
            ]
        })
        .collect();
    out.table(&["aspect", "about", a.as_str(), b.as_str()], rows)
}

/// `changes --env E --from WHEN --to WHEN`
pub async fn changes(shell: &Shell, view: &ChangesArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let env = view.env.as_str();
    let from = shell.resolve(Some(parse_at(&view.from)?)).await?;
    let to = shell.resolve(Some(parse_at(&view.to)?)).await?;
    if from > to {
        return usage(format!("--from (seq {from}) is after --to (seq {to})"));
    }
    let (tenant, _) = shell.tenant_at(to).await?;
    let changes = changes_between(shell, &tenant, env, from, to).await?;
    if out.json {
        return out.json(&serde_json::to_value(&changes).unwrap_or(Value::Null));
    }
    if changes.is_empty() {
        return out.line(format!("no changes in {env} between seq {from} and seq {to}"));
    }
    let rows = changes
        .iter()
        .map(|c| {
            vec![
                c.seq.to_string(),
                crate::output::to_second(&c.at),
                c.upn.clone(),
                c.change.to_owned(),
                c.field.clone().unwrap_or_default(),
                c.old_value.clone().unwrap_or_default(),
                c.new_value.clone().unwrap_or_default(),
                format!("{} by {}", c.cause.activity_display_name, c.cause.initiated_by),
            ]
        })
        .collect();
    out.table(&["seq", "time", "upn", "change", "field", "old", "new", "cause"], rows)
}

/// The changes to environment `env` after record `from` up to record `to`
/// (`tenant`: the directory as of `to`, which names the environment).
pub async fn changes_between(
    shell: &Shell,
    tenant: &Tenant,
    env: &str,
    from: u64,
    to: u64,
) -> Result<Vec<projections::changes::Change>, CliError> {
    let (at_from, _) = shell.environment_at(tenant, env, from).await?;
    let (at_to, _) = shell.environment_at(tenant, env, to).await?;
    changes_after(shell, at_from, at_to.id, from, to).await
}

/// The changes to the environment `id`, as folded at record `from`
/// (`at_from`), after it up to record `to`.
pub async fn changes_after(
    shell: &Shell,
    at_from: Environment,
    id: Uuid,
    from: u64,
    to: u64,
) -> Result<Vec<projections::changes::Change>, CliError> {
    let mut records = Vec::new();
    for record in shell.store.read_stream_until(&domain::environment::stream(id), 1, to).await? {
        if record.seq <= from {
            continue;
        }
        if let Event::Environment(e) = event_of(&record)? {
            records.push((record, e));
        }
    }
    Ok(projections::changes::changes(at_from, &records))
}

/// The access review of one environment as of `time`.
pub async fn review_of(
    shell: &Shell,
    tenant: &Tenant,
    environment: &Environment,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<projections::review::Finding>, CliError> {
    // Who added each member of a group behind a group team: the envelope's
    // actor, which the folded states do not keep.
    let mut actors = BTreeMap::new();
    for wanted in projections::review::actors_needed(tenant, environment) {
        if let Some(record) = shell.store.read_log(wanted, wanted, 1).await?.into_iter().next() {
            actors.insert(wanted, record.actor);
        }
    }
    Ok(projections::review::review(tenant, environment, time, &actors))
}

/// `review --env E [--at WHEN]`
pub async fn review(shell: &Shell, view: ReviewArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let filter = ReviewFilter { rules: view.rule, severity: view.severity };
    let envs = view.env.as_slice();
    let at = at_of(&view.at)?;
    let (seq, time) = shell.point(at).await?;
    let envs: Vec<String> = match envs {
        [] => shell.tenant_at(seq).await?.0.environments().map(|(_, name)| name.to_owned()).collect(),
        named => named.to_vec(),
    };
    let mut rows = Vec::new();
    for env in &envs {
        let AsOf { tenant, environment, .. } = shell.environment_as_of(env, at).await?;
        let findings = review_of(shell, &tenant, &environment, time).await?;
        let reality = projections::reconcile::findings(&tenant, &environment, time);
        let sections = findings.into_iter().map(|f| (false, f)).chain(reality.into_iter().map(|f| (true, f)));
        rows.extend(sections.filter(|(_, f)| filter.keeps(f)).map(|(reality, finding)| ReviewRow {
            environment: environment.name.clone(),
            reality,
            finding,
        }));
    }
    if out.json {
        return out.json(&serde_json::to_value(&rows).unwrap_or(Value::Null));
    }
    let scope = match envs.as_slice() {
        [one] => one.clone(),
        _ => format!("{} environments", envs.len()),
    };
    out.line(format!(
        "access review of {scope} as of {} (seq {seq}): {} findings",
        crate::output::to_second(&projections::rfc3339(time)),
        rows.len()
    ))?;
    if rows.is_empty() {
        return Ok(());
    }
    // The summary first: a large environment has thousands of findings.
    let mut summary: BTreeMap<(u8, &str, &str), usize> = BTreeMap::new();
    for row in &rows {
        let f = &row.finding;
        *summary.entry((severity_rank(f.severity), f.severity, f.rule.as_str())).or_default() += 1;
    }
    let summary_rows = summary
        .iter()
        .map(|((_, severity, rule), n)| vec![severity.to_string(), rule.to_string(), n.to_string()])
        .collect();
    out.table(&["severity", "rule", "findings"], summary_rows)?;
    out.line("")?;
    // The environment column only when there are several to tell apart.
    let several = envs.len() > 1;
    let (reality, rows): (Vec<&ReviewRow>, Vec<&ReviewRow>) = rows.iter().partition(|r| r.reality);
    if !rows.is_empty() {
        review_table(several, &rows, out)?;
        out.line("")?;
    }
    if !reality.is_empty() {
        out.line(
            "reality: the SystemUser tables as last exported, beside what the log predicts (reconcile)",
        )?;
        review_table(several, &reality, out)?;
    }
    Ok(())
}

/// The findings of one section of `review`, as a table.
fn review_table(several: bool, rows: &[&ReviewRow], out: &mut Out<'_>) -> Result<(), CliError> {
    let table = rows
        .iter()
        .map(|ReviewRow { environment, finding: f, .. }| {
            let evidence: Vec<String> = f.evidence.iter().map(u64::to_string).collect();
            let mut row = vec![f.severity.to_owned(), f.rule.clone()];
            row.extend(several.then(|| environment.clone()));
            row.extend([
                f.upn.clone().unwrap_or_default(),
                f.detail.clone(),
                evidence.join(","),
                f.advice.clone(),
            ]);
            row
        })
        .collect();
    let headers: &[&str] = match several {
        true => &["severity", "rule", "environment", "upn", "detail", "evidence (seq)", "advice"],
        false => &["severity", "rule", "upn", "detail", "evidence (seq)", "advice"],
    };
    out.table_painted(headers, table, |row| match row[0].as_str() {
        "high" => Some(crate::output::red as crate::output::Paint),
        "medium" => Some(crate::output::yellow),
        _ => None,
    })
}

/// Which findings `review` shows.
struct ReviewFilter {
    /// Only these rules (none: all).
    rules: Vec<String>,
    /// Only this severity or higher.
    severity: Option<String>,
}

impl ReviewFilter {
    fn keeps(&self, f: &projections::review::Finding) -> bool {
        let rule = self.rules.is_empty() || self.rules.iter().any(|r| r.eq_ignore_ascii_case(&f.rule));
        let severe = self.severity.as_deref().is_none_or(|s| severity_rank(f.severity) <= severity_rank(s));
        rule && severe
    }
}

/// A severity's rank: high first.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    }
}

/// A finding with the environment it was found in (`review --json`'s
/// objects: CLI.md's keys plus `environment`).
#[derive(Serialize)]
struct ReviewRow {
    environment: String,
    /// A finding of reconcile's (review's "reality" section).
    #[serde(skip)]
    reality: bool,
    #[serde(flatten)]
    finding: projections::review::Finding,
}

/// The directory and every environment as of `upto`: what names things in
/// audit records.
pub async fn names_at(shell: &Shell, upto: u64) -> Result<(Tenant, BTreeMap<Uuid, Environment>), CliError> {
    let (tenant, _) = shell.tenant_at(upto).await?;
    let mut envs = BTreeMap::new();
    for (id, name) in tenant.environments() {
        envs.insert(id, shell.environment_at(&tenant, name, upto).await?.0);
    }
    Ok((tenant, envs))
}

/// `record N`: the record, its command, its event in words, its hash, its neighbours.
pub async fn record(shell: &Shell, seq: u64, out: &mut Out<'_>) -> Result<(), CliError> {
    let (tenant, envs) = names_at(shell, seq).await?;
    record_named(shell, seq, &Names { tenant: &tenant, envs: &envs }, out).await
}

/// [`record`] with the states that name things: those of any point at or
/// after the record (names never change once given).
pub async fn record_named(
    shell: &Shell,
    seq: u64,
    names: &Names<'_>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let head = shell.store.head().await?.map_or(0, |h| h.seq);
    if seq == 0 || seq > head {
        return usage(format!("no record {seq}: the log holds records 1 to {head}"));
    }
    let command = command_of(shell, seq, head).await?;
    let at = command.iter().position(|(r, _)| r.seq == seq);
    let at = at.ok_or_else(|| CliError::Corrupt(format!("record {seq} is not where the log says it is")))?;
    let sealed = shell.store.read_sealed(seq, seq, 1).await?;
    let line = match sealed.first().map(crate::proof::export_line) {
        Some(Ok(line)) => line,
        Some(Err(why)) => return Err(CliError::Corrupt(format!("record {seq}: {why}"))),
        None => return Err(CliError::Corrupt(format!("record {seq} is missing"))),
    };
    describe(&command, at, &audit::record(&command, names), head, names, Some(line), out)
}

/// The records of the command holding record `seq`, grouped as `history`
/// groups them; the window widens until the command lies inside it (an
/// import is one command of many thousand records).
async fn command_of(shell: &Shell, seq: u64, head: u64) -> Result<Vec<(store::Record, Event)>, CliError> {
    let mut reach = 256;
    loop {
        let (from, to) = (seq.saturating_sub(reach).max(1), (seq + reach).min(head));
        let mut decoded = Vec::new();
        for record in shell.store.read_log(from, to, usize::MAX).await? {
            let event = event_of(&record)?;
            decoded.push((record, event));
        }
        let command = audit::commands(decoded)
            .into_iter()
            .find(|group| group.iter().any(|(r, _)| r.seq == seq))
            .ok_or_else(|| CliError::Corrupt(format!("record {seq} is not where the log says it is")))?;
        let (first, last) = (command[0].0.seq, command[command.len() - 1].0.seq);
        if (first > from || from == 1) && (last < to || to == head) {
            return Ok(command);
        }
        reach *= 8;
    }
}

/// Each command holding one of `seqs`, in log order, read in one pass
/// from the first one's command to the last one's: what the report's
/// appendix describes, each record with [`describe`].
pub async fn commands_holding(
    shell: &Shell,
    seqs: &std::collections::BTreeSet<u64>,
    mut each: impl FnMut(&[(store::Record, Event)], u64) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let head = shell.store.head().await?.map_or(0, |h| h.seq);
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else { return Ok(()) };
    if first == 0 || last > head {
        return usage(format!("no record {first} or {last}: the log holds records 1 to {head}"));
    }
    let mut next = command_of(shell, first, head).await?[0].0.seq;
    let mut group: Vec<(store::Record, Event)> = Vec::new();
    let mut hand_out = |group: &mut Vec<(store::Record, Event)>| {
        let holds = match (group.first(), group.last()) {
            (Some((a, _)), Some((b, _))) => seqs.range(a.seq..=b.seq).next().is_some(),
            _ => false,
        };
        let handed = if holds { each(group, head) } else { Ok(()) };
        group.clear();
        handed
    };
    while next <= head {
        let to = (next + PAGE - 1).min(head);
        for record in shell.store.read_log(next, to, usize::MAX).await? {
            let event = event_of(&record)?;
            let continues = group.last().is_some_and(|(r, e)| {
                audit::same_command(r, audit::subject(e), &record, audit::subject(&event))
            });
            if !continues && !group.is_empty() {
                hand_out(&mut group)?;
                if record.seq > last {
                    return Ok(());
                }
            }
            group.push((record, event));
        }
        next = to + 1;
    }
    hand_out(&mut group)
}

/// Record `command[at]` as `record N` prints it. `whole`: the command's
/// audit record (computed once for all its records); `line`: the record's
/// export line, which `--json` prints.
pub fn describe(
    command: &[(store::Record, Event)],
    at: usize,
    whole: &Option<AuditRecord>,
    head: u64,
    names: &Names<'_>,
    line: Option<Value>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let Some((record, _)) = command.get(at) else {
        return Err(CliError::Corrupt(format!("no record {at} in a command of {}", command.len())));
    };
    let seq = record.seq;
    let alone = audit::record(&command[at..=at], names);
    let (first, last) =
        (command.first().map_or(seq, |(r, _)| r.seq), command.last().map_or(seq, |(r, _)| r.seq));
    let previous = (seq > 1).then(|| seq - 1);
    let next = (seq < head).then(|| seq + 1);
    if out.json {
        let mut value = line.unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            fields.insert("command".into(), serde_json::to_value(whole).unwrap_or(Value::Null));
            fields.insert("commandRecords".into(), serde_json::json!({ "first": first, "last": last }));
            fields.insert(
                "targetResources".into(),
                serde_json::to_value(alone.as_ref().map(|a| &a.target_resources)).unwrap_or(Value::Null),
            );
            fields.insert("previous".into(), serde_json::json!(previous));
            fields.insert("next".into(), serde_json::json!(next));
        }
        return out.json(&value);
    }
    let stream = match audit::environment_of(&record.stream).and_then(|id| names.envs.get(&id)) {
        Some(env) => format!("{} ({}), version {}", record.stream, env.name, record.version),
        None => format!("{}, version {}", record.stream, record.version),
    };
    let by = whole.as_ref().map_or_else(String::new, |w| match (&w.initiated_by.user, &w.initiated_by.app) {
        (Some(user), _) => user.user_principal_name.clone(),
        (None, Some(app)) => format!("{} (app)", app.display_name),
        (None, None) => String::new(),
    });
    let activity = whole.as_ref().map_or("", |w| w.activity_display_name.as_str());
    let span = if first == last { format!("record {first}") } else { format!("records {first}-{last}") };
    out.line(format!("record {seq} of {head}"))?;
    out.line(format!("  time      {}", crate::output::to_second(&projections::rfc3339(record.recorded_at))))?;
    if let Some(origin) = &record.origin {
        out.line(format!(
            "  run by    {} on {}, at {}",
            origin.account,
            origin.host,
            crate::output::to_second(&projections::rfc3339(origin.written_at))
        ))?;
    }
    out.line(format!("  stream    {stream}"))?;
    out.line(format!("  command   {activity} by {by} ({span}, correlation {})", record.correlation_id))?;
    if let Some(reason) = whole.as_ref().and_then(|w| w.result_reason.as_ref()) {
        out.line(format!("  result    {reason}"))?;
    }
    out.line(format!("  event     {}", record.event_type))?;
    for target in alone.iter().flat_map(|a| &a.target_resources) {
        let name =
            target.user_principal_name.clone().or_else(|| target.display_name.clone()).unwrap_or_default();
        out.line(format!("    {} {name}", target.kind))?;
        for m in &target.modified_properties {
            let (old, new) = (m.old_value.as_deref().unwrap_or("-"), m.new_value.as_deref().unwrap_or("-"));
            out.line(format!("      {}: {old} -> {new}", m.display_name))?;
        }
    }
    out.line(format!("  hash      {}", crate::proof::hex(&record.hash)))?;
    out.line(format!(
        "  previous  {} (hash {})",
        previous.map_or("none".into(), |p| p.to_string()),
        crate::proof::hex(&record.prev_hash)
    ))?;
    out.line(format!("  next      {}", next.map_or("none".into(), |n| n.to_string())))
}
