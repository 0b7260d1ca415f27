//! The "Environments and sync" commands, and the `systemusers` view: each
//! turns its arguments into one domain command, runs it through the shell,
//! and prints what happened.

use std::path::Path;

use domain::envcmd::{EnvCommand as DomainCommand, NewEnvironment, StubRow};
use domain::environment::{Environment, INACTIVITY_TIMEOUT, SESSION_TIMEOUT};
use domain::events::{AccessMode, EnvEvent, Event, SkuKind};
use domain::import::ImportedSku;
use domain::tenant::Tenant;
use domain::Upn;
use serde_json::{json, Value};

use crate::args::{AppUserCommand, AtArgs, EnvCommand, ImportCommand, UnifiedRoutingCommand, UserCommand};
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::{Done, Shell, SyncReport};
use crate::time::parse_at;

/// `env ...`
pub async fn env(
    shell: &Shell,
    actor: Option<&Upn>,
    command: EnvCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match command {
        EnvCommand::Create { name, env_type, no_dataverse, security_group, app_pass, app } => {
            let new = NewEnvironment {
                id: shell.ids.next(),
                name: name.clone(),
                env_type,
                dataverse: !no_dataverse,
                security_group,
                app_pass,
                apps: app,
            };
            let done = shell.create_environment(actor, &new).await?;
            let database =
                if new.dataverse { "with a Dataverse database" } else { "without a Dataverse database" };
            let summary =
                format!("created {} environment {name} {database} (id {})", env_type.cli_name(), new.id);
            out.done("env create", &done, &summary, json!({ "id": new.id, "name": name }))
        }
        EnvCommand::Set {
            env,
            security_group,
            clear_security_group,
            app_pass,
            setting,
            session_timeout,
            inactivity_timeout,
        } => {
            let group = match (security_group, clear_security_group) {
                (Some(g), _) => Some(Some(g)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let mut settings: Vec<(String, Option<String>)> =
                setting.into_iter().map(|(n, v)| (n, Some(v))).collect();
            let minutes = |d: crate::args::Duration| d.0.map(|m| m.to_string());
            if let Some(d) = session_timeout {
                settings.push((SESSION_TIMEOUT.to_owned(), minutes(d)));
            }
            if let Some(d) = inactivity_timeout {
                settings.push((INACTIVITY_TIMEOUT.to_owned(), minutes(d)));
            }
            let command = DomainCommand::Set { security_group: group, app_pass, settings };
            let done = shell.execute_env(actor, &env, &command).await?;
            out.done(command.name(), &done, &format!("updated {env}"), Value::Null)
        }
        EnvCommand::List(at) => env_list(shell, at, out).await,
        EnvCommand::UnifiedRouting(UnifiedRoutingCommand::Enable(a)) => {
            let command = DomainCommand::EnableUnifiedRouting;
            let done = shell.execute_env(actor, &a.env, &command).await?;
            out.done(
                command.name(),
                &done,
                &format!("unified routing is on in {} (it cannot be turned off)", a.env),
                Value::Null,
            )
        }
        EnvCommand::UnifiedRouting(UnifiedRoutingCommand::Disable(a)) => {
            let done = shell.execute_env(actor, &a.env, &DomainCommand::DisableUnifiedRouting).await?;
            out.done("env unified-routing disable", &done, "", Value::Null)
        }
        EnvCommand::AddUser(a) => {
            let command = DomainCommand::AddUser { upn: a.upn.clone() };
            let done = shell.execute_env(actor, &a.env, &command).await?;
            let summary = describe(&done, &a.upn, &a.env);
            out.done(command.name(), &done, &summary, Value::Null)
        }
    }
}

/// One line saying what happened to a user's record.
fn describe(done: &Done, upn: &Upn, env: &str) -> String {
    let mut said = Vec::new();
    for event in &done.events {
        let Event::Environment(e) = event else { continue };
        match e {
            EnvEvent::SystemUserAdded { access_mode, .. } => {
                said.push(format!("added {upn} to {env} ({})", access_mode.cli_name()))
            }
            EnvEvent::SystemUserEnabled { .. } => said.push(format!("enabled {upn} in {env}")),
            EnvEvent::SystemUserDisabled { .. } => said.push(format!("disabled {upn} in {env}")),
            EnvEvent::SystemUserUpdated { changes, .. } => {
                let columns: Vec<&str> = changes.iter().map(|c| c.column.logical_name()).collect();
                said.push(format!("updated {}", columns.join(", ")));
            }
            EnvEvent::AccessModeChanged { old, new, .. } => {
                said.push(format!("access mode {} -> {}", old.cli_name(), new.cli_name()));
            }
            _ => {}
        }
    }
    if said.is_empty() {
        format!("{upn} in {env}")
    } else {
        said.join("; ")
    }
}

async fn env_list(shell: &Shell, at: AtArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let seq = shell.resolve(at.at.as_deref().map(parse_at).transpose()?).await?;
    let (tenant, _) = shell.tenant_at(seq).await?;
    let mut envs = Vec::new();
    for (_, name) in tenant.environments() {
        envs.push(shell.environment_at(&tenant, name, seq).await?.0);
    }
    let group_name =
        |env: &Environment| env.security_group.and_then(|g| tenant.groups.get(&g)).map(|g| g.name.clone());
    // The placeholders are never counted anywhere (E5).
    let counted = |env: &Environment| {
        env.users
            .values()
            .filter(|u| {
                u.kind != domain::events::UserKind::DelegatedAdmin
                    && u.kind != domain::events::UserKind::Support
            })
            .count()
    };
    let enabled = |env: &Environment| {
        env.users
            .values()
            .filter(|u| {
                !u.is_disabled
                    && !matches!(
                        u.kind,
                        domain::events::UserKind::DelegatedAdmin | domain::events::UserKind::Support
                    )
            })
            .count()
    };
    if out.json {
        let doc: Vec<Value> = envs
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "name": e.name,
                    "type": e.env_type.map(|t| t.cli_name()),
                    "dataverse": e.dataverse,
                    "securityGroup": group_name(e),
                    "appPassCapacity": e.app_pass,
                    "apps": e.apps.iter().map(|a| a.cli_name()).collect::<Vec<_>>(),
                    "settings": e.settings,
                    "systemUsers": counted(e),
                    "enabledUsers": enabled(e),
                })
            })
            .collect();
        return out.json(&Value::Array(doc));
    }
    let rows = envs
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.env_type.map_or("", |t| t.cli_name()).to_owned(),
                if e.dataverse { "yes" } else { "no" }.to_owned(),
                group_name(e).unwrap_or_default(),
                e.app_pass.to_string(),
                e.apps.iter().map(|a| a.cli_name()).collect::<Vec<_>>().join(","),
                format!("{}/{}", enabled(e), counted(e)),
            ]
        })
        .collect();
    out.table(
        &["environment", "type", "dataverse", "security group", "app passes", "apps", "enabled/users"],
        rows,
    )
}

/// `sync [--env E]`
pub async fn sync(
    shell: &Shell,
    env: Option<String>,
    verbose: bool,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let names = env.map(|name| vec![name]);
    if out.json {
        // An array written as each pass ends, as `Out::json` would print it
        // whole: a pass over many environments never holds all their names.
        let mut first = true;
        shell
            .sync_each(names.as_deref(), |r| {
                let element = json!({
                    "environment": r.environment,
                    "changed": r.changed,
                    "firstSeq": r.first_seq,
                    "lastSeq": r.last_seq,
                    "added": r.counts.added,
                    "enabled": r.counts.enabled,
                    "disabled": r.counts.disabled,
                    "updated": r.counts.updated,
                    "unchanged": r.unchanged(),
                });
                let text = serde_json::to_string_pretty(&element).unwrap_or_else(|_| "null".into());
                let indented = text.replace('\n', "\n  ");
                let open = if std::mem::take(&mut first) { "[" } else { "," };
                out.raw(format!("{open}\n  {indented}").as_bytes())
            })
            .await?;
        return out.raw(if first { b"[]\n" } else { b"\n]\n" });
    }
    let mut any = false;
    shell
        .sync_each(names.as_deref(), |r| {
            any = true;
            out.line(summary(&r, verbose))
        })
        .await?;
    if !any {
        out.line("no environments to sync")?;
    }
    Ok(())
}

/// One line per environment: a first pass over a large tenant changes tens
/// of thousands of records, and their names are `--verbose`'s.
fn summary(r: &SyncReport, verbose: bool) -> String {
    const NAMED: usize = 3;
    match (r.first_seq, r.last_seq) {
        _ if !r.dataverse => format!("{}: no Dataverse database, nothing to sync", r.environment),
        (Some(first), Some(last)) => {
            let c = r.counts;
            let mut parts: Vec<String> = [
                (c.added, "added"),
                (c.enabled, "enabled"),
                (c.disabled, "disabled"),
                (c.updated, "updated"),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            parts.extend(r.unchanged().map(|n| format!("{n} unchanged")));
            let span = if first == last { first.to_string() } else { format!("{first}-{last}") };
            let names = match (verbose, r.changed.len().checked_sub(NAMED)) {
                (false, Some(more)) if more > 0 => {
                    format!("{} and {more} more (--verbose names all)", r.changed[..NAMED].join(", "))
                }
                _ => r.changed.join(", "),
            };
            format!("{}: {} (seq {span}): {names}", r.environment, parts.join(", "))
        }
        _ => format!("{}: up to date", r.environment),
    }
}

/// The environment commands that live under `user ...`.
pub async fn user(
    shell: &Shell,
    actor: Option<&Upn>,
    command: UserCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (env, upn, command) = match command {
        UserCommand::Refresh(a) => (a.env, a.upn.clone(), DomainCommand::Refresh { upn: a.upn }),
        UserCommand::Access(a) => (a.env, a.upn.clone(), DomainCommand::Access { upn: a.upn }),
        UserCommand::SetAccessMode { env, upn, mode } => {
            (env, upn.clone(), DomainCommand::SetAccessMode { upn, mode })
        }
        UserCommand::ReassignRecords { env, from, to } => {
            let command = DomainCommand::ReassignRecords { from: from.clone(), to: to.clone() };
            let done = shell.execute_env(actor, &env, &command).await?;
            return out.done(
                command.name(),
                &done,
                &format!("reassigned the records of {from} to {to} in {env}"),
                Value::Null,
            );
        }
        UserCommand::SetBu { env, upn, bu } => {
            let command = DomainCommand::SetBusinessUnit { upn: upn.clone(), business_unit: bu.clone() };
            let done = shell.execute_env(actor, &env, &command).await?;
            return out.done(
                command.name(),
                &done,
                &format!("moved {upn} to business unit {bu} in {env}"),
                Value::Null,
            );
        }
        UserCommand::SetEmail { env, upn, email } => {
            let email = Some(email).filter(|e| !e.trim().is_empty());
            (env, upn.clone(), DomainCommand::EditEmail { upn, email })
        }
        _ => return usage("not an environment command"),
    };
    let done = shell.execute_env(actor, &env, &command).await?;
    if done.events.is_empty() && !out.json {
        return out.line(match command {
            DomainCommand::Access { .. } => format!("{upn} can access {env}: its record is enabled"),
            DomainCommand::Refresh { .. } => format!("no change: {upn}'s record in {env} is up to date"),
            _ => format!("no change: {} had nothing to do", command.name()),
        });
    }
    out.done(command.name(), &done, &describe(&done, &upn, &env), Value::Null)
}

/// `app-user ...`
pub async fn app_user(
    shell: &Shell,
    actor: Option<&Upn>,
    command: AppUserCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match command {
        AppUserCommand::Create { env, app_id, name, bu, role } => {
            let command =
                DomainCommand::CreateAppUser { app_id, name: name.clone(), business_unit: bu, roles: role };
            let done = shell.execute_env(actor, &env, &command).await?;
            let summary =
                format!("created application user {name} for {app_id} in {env} (enabled, non-interactive)");
            out.done(command.name(), &done, &summary, Value::Null)
        }
        AppUserCommand::SetStatus { env, app_id, enabled } => {
            let command = DomainCommand::SetAppUserStatus { app_id, enabled };
            let done = shell.execute_env(actor, &env, &command).await?;
            let state = if enabled { "enabled" } else { "disabled" };
            let mut extra = json!({});
            if !enabled && !done.events.is_empty() {
                extra["warning"] =
                    json!("every integration that uses this application user stops working (P2)");
            }
            if out.json {
                return out.done(command.name(), &done, "", extra);
            }
            out.done(
                command.name(),
                &done,
                &format!("{state} the application user of {app_id} in {env}"),
                Value::Null,
            )?;
            if !enabled && !done.events.is_empty() {
                out.colored(
                    crate::output::yellow,
                    "warning: every integration that uses this application user stops working (P2)",
                )?;
            }
            Ok(())
        }
    }
}

/// `import stub-users`
pub async fn import(
    shell: &Shell,
    actor: Option<&Upn>,
    command: ImportCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (env, file) = match command {
        ImportCommand::StubUsers { env, file } => (env, file),
        ImportCommand::Graph { users, groups, skus, keep_missing, sku_kind } => {
            let files = crate::graph::Files {
                users,
                groups,
                skus,
                kinds: sku_kind.into_iter().collect(),
                keep_missing,
                entra_csv: None,
            };
            return import_graph(shell, actor, &files, "import graph", out).await;
        }
        ImportCommand::Environments { file } => {
            return crate::reality::import_environments(shell, actor, &file, out).await
        }
        ImportCommand::Systemusers { env, file, observed_at } => {
            return crate::reality::import_systemusers(shell, actor, &env, &file, observed_at.as_deref(), out)
                .await
        }
        ImportCommand::EntraCsv { file, skus, keep_missing } => {
            let files = crate::graph::Files {
                users: vec![],
                groups: vec![],
                skus,
                kinds: Default::default(),
                keep_missing,
                entra_csv: Some(file),
            };
            return import_graph(shell, actor, &files, "import entra-csv", out).await;
        }
    };
    let rows = read_stub_csv(&file)?;
    let count = rows.len();
    let command = DomainCommand::ImportStubs { rows };
    let done = shell.execute_env(actor, &env, &command).await?;
    out.done(
        command.name(),
        &done,
        &format!("imported {count} stub users into {env}"),
        json!({ "imported": count }),
    )
}

/// `import graph`: the export's difference from the directory, appended at once.
async fn import_graph(
    shell: &Shell,
    actor: Option<&Upn>,
    files: &crate::graph::Files,
    command: &'static str,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    crate::timings::phase("start");
    let (mut users, mut skus) = (0, Vec::new());
    let done = shell
        .execute_batch(actor, command, |tenant, now| {
            // Read against the tenant: the SKUs it knows name the licenses an
            // export gives by skuId alone. A retry, after another writer got
            // in first, reads the files again.
            let export = crate::graph::read_export(files, tenant)?;
            crate::timings::phase("read the export");
            users = export.users.len();
            skus = export.skus.iter().flatten().map(|sku| sku_report(tenant, sku)).collect();
            Ok(crate::graph::plan(tenant, export, now))
        })
        .await?;
    crate::timings::phase("import done");
    let events: usize = done.events_by_type.values().sum();
    if out.json {
        return out.json(&json!({
            "users": users,
            "commands": done.changes,
            "events": events,
            "firstSeq": done.seqs.map(|s| s.0),
            "lastSeq": done.seqs.map(|s| s.1),
            "byType": done.events_by_type,
            "skus": skus.iter().map(|(sku, kind, why)| json!({ "sku": sku, "kind": kind.cli_name(), "why": why })).collect::<Vec<_>>(),
        }));
    }
    for (sku, kind, why) in &skus {
        out.line(format!("SKU {sku}: {}, {why}", kind.cli_name()))?;
    }
    match done.seqs {
        Some((first, last)) => out.line(format!(
            "imported {users} users: {} changes ({events} events, seq {first}-{last})",
            done.changes
        )),
        None => out.line(format!(
            "imported {users} users: the directory already matches the export; nothing appended"
        )),
    }
}

/// A SKU of an export as the import leaves it: its part number, its kind,
/// and why. A SKU the tenant has keeps the kind it has.
fn sku_report(tenant: &Tenant, sku: &ImportedSku) -> (String, SkuKind, String) {
    match tenant.sku(&sku.part) {
        Some(have) if have.kind != sku.kind => (
            have.part.clone(),
            have.kind,
            format!("kept from before (this export reads {}: {})", sku.kind.cli_name(), sku.why),
        ),
        _ => (sku.part.clone(), sku.kind, sku.why.clone()),
    }
}

/// Reads the stub-user CSV (RFC 4180; header `domainname,firstname,lastname`).
/// Any bad row rejects the whole file, naming its line.
pub fn read_stub_csv(path: &Path) -> Result<Vec<StubRow>, CliError> {
    let file = path.display();
    let text = std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {file}: {e}")))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_slice());
    let mut lines = CsvLines::new(&text);
    let mut rows = Vec::new();
    let mut header_seen = false;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = lines.of(e.position().map_or(0, |p| p.byte()));
            CliError::Usage(format!("{file} line {line}: {e}"))
        })?;
        let line = lines.of(record.position().map_or(0, |p| p.byte()));
        let fields: Vec<&str> = record.iter().map(str::trim).collect();
        if !header_seen {
            let header: Vec<String> =
                fields.iter().map(|f| f.trim_start_matches('\u{feff}').to_lowercase()).collect();
            if header != ["domainname", "firstname", "lastname"] {
                return usage(format!(
                    "{file} line {line}: the header must be domainname,firstname,lastname"
                ));
            }
            header_seen = true;
            continue;
        }
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let [domainname, firstname, lastname] = fields[..] else {
            return usage(format!(
                "{file} line {line}: expected 3 fields (domainname,firstname,lastname), found {}",
                fields.len()
            ));
        };
        let domainname =
            Upn::parse(domainname).map_err(|e| CliError::Usage(format!("{file} line {line}: {e}")))?;
        if lastname.is_empty() {
            return usage(format!("{file} line {line}: lastname is empty"));
        }
        // firstname and lastname are synchronized from givenName and surname
        // (S6): the directory's limits hold for stubs too (issue 25, finding 3).
        for (name, field, value) in [
            ("firstname", domain::events::ProfileField::GivenName, firstname),
            ("lastname", domain::events::ProfileField::Surname, lastname),
        ] {
            let cap = domain::limits::profile_cap(field);
            if domain::limits::check_profile_field(field, value).is_err() {
                return usage(format!(
                    "{file} line {line}: {name} is {} characters long; the limit is {cap}",
                    value.chars().count()
                ));
            }
        }
        rows.push(StubRow {
            line,
            domainname: domainname.to_string(),
            firstname: firstname.to_owned(),
            lastname: lastname.to_owned(),
        });
    }
    if !header_seen {
        return usage(format!(
            "{file} line 1: the file is empty; expected the header domainname,firstname,lastname"
        ));
    }
    if rows.is_empty() {
        return usage(format!("{file}: no rows after the header"));
    }
    Ok(rows)
}

/// The lines of a CSV's records as an editor shows them. csv's own count
/// places a record where the one before it ended: a line short after a CRLF
/// end, and blind to the empty lines it skips.
pub(crate) struct CsvLines<'a> {
    text: &'a [u8],
    /// How far the text is counted, and the line there.
    counted: usize,
    line: usize,
}

impl<'a> CsvLines<'a> {
    /// Lines of `text`, from its start.
    pub(crate) fn new(text: &'a [u8]) -> Self {
        CsvLines { text, counted: 0, line: 1 }
    }

    /// The line of the record csv places at byte `offset` (offsets only
    /// grow: the text is counted once).
    pub(crate) fn of(&mut self, offset: u64) -> usize {
        let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.text.len());
        // The record starts past the line ends csv had not read yet.
        while matches!(self.text.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        for at in self.counted..start {
            // A CR alone ends a line too, for csv as for editors.
            let ends = match self.text[at] {
                b'\n' => true,
                b'\r' => self.text.get(at + 1) != Some(&b'\n'),
                _ => false,
            };
            self.line += usize::from(ends);
        }
        self.counted = self.counted.max(start);
        self.line
    }
}

/// The SystemUser rows of an environment as of `--at`.
pub async fn systemuser_rows(
    shell: &Shell,
    env: &str,
    at: &AtArgs,
) -> Result<Vec<projections::systemusers::Row>, CliError> {
    let at = at.at.as_deref().map(parse_at).transpose()?;
    let environment = shell.environment_as_of(env, at).await?.environment;
    Ok(projections::systemusers::rows(&environment))
}

/// `systemusers --env E [--at WHEN]`
pub async fn systemusers(shell: &Shell, env: &str, at: AtArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let rows = systemuser_rows(shell, env, &at).await?;
    if out.json {
        return out.json(&serde_json::to_value(&rows).unwrap_or(Value::Null));
    }
    let table = rows
        .iter()
        .map(|u| {
            vec![
                u.domainname.clone(),
                u.fullname.clone().unwrap_or_default(),
                u.kind.to_owned(),
                if u.isdisabled { "disabled" } else { "enabled" }.to_owned(),
                AccessMode::from_value(u.accessmode)
                    .map_or_else(|| u.accessmode.to_string(), AccessMode::shown),
                if u.islicensed { "yes" } else { "no" }.to_owned(),
                u.roles.join(", "),
            ]
        })
        .collect();
    out.table(&["domainname", "fullname", "kind", "status", "access mode", "licensed", "roles"], table)
}

/// `export systemusers --env E --format json|csv [--at WHEN]`: JSON exactly as
/// `systemusers --json`; CSV per RFC 4180 with the same columns.
pub async fn export(
    shell: &Shell,
    env: &str,
    to: &crate::args::ExportTo,
    at: AtArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let rows = systemuser_rows(shell, env, &at).await?;
    match to.format {
        crate::args::ExportFormat::Json => out.json(&serde_json::to_value(&rows).unwrap_or(Value::Null)),
        crate::args::ExportFormat::Csv => {
            // Every column, in Dataverse's order, even for an empty table.
            let header =
                serde_json::to_value(projections::systemusers::Row::default_columns()).unwrap_or(Value::Null);
            let columns: Vec<String> = header
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let cells = rows
                .iter()
                .map(|row| {
                    let value = serde_json::to_value(row).unwrap_or(Value::Null);
                    columns.iter().map(|c| crate::export::plain(&value[c])).collect()
                })
                .collect();
            out.raw(&crate::export::csv(&columns, cells, to.excel)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t1_stub_csv_lines_are_an_editors_after_crlf_empty_and_quoted_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stubs.csv");
        let lines = [
            "domainname,firstname,lastname",
            "",
            "a@contoso.com,A,A",
            "",
            "",
            "b@contoso.com,\"Two\nlines\",B",
            "c@contoso.com,C,C",
            ",,",
            "bad,D,D",
        ];
        for end in ["\n", "\r\n", "\r"] {
            std::fs::write(&file, lines[..8].join(end)).unwrap();
            let rows: Vec<usize> = read_stub_csv(&file).unwrap().iter().map(|r| r.line).collect();
            assert_eq!(rows, [3, 6, 8], "{end:?}");
            std::fs::write(&file, lines.join(end) + end).unwrap();
            let err = read_stub_csv(&file).unwrap_err().to_string();
            assert!(err.contains("line 10: malformed UPN"), "{end:?}: {err}");
        }
    }
}
