//! The "Security" commands (`bu`, `role`, `team`, `mailbox`) and the
//! `privileges` view: effective privileges with the roles they come from.

use domain::envcmd::EnvCommand as DomainCommand;
use domain::security;
use domain::Upn;
use serde_json::{json, Value};

use crate::args::{AtArgs, BuCommand, MailboxCommand, RoleCommand, TeamCommand, TeamRoleCommand};
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::Shell;
use crate::time::parse_at;

/// Runs one security command on an environment and reports it.
async fn run(
    shell: &Shell,
    actor: Option<&Upn>,
    env: &str,
    command: DomainCommand,
    summary: String,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let done = shell.execute_env(actor, env, &command).await?;
    out.done(command.name(), &done, &summary, Value::Null)
}

/// `bu ...`
pub async fn bu(
    shell: &Shell,
    actor: Option<&Upn>,
    command: BuCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let BuCommand::Create { env, name, parent } = command;
    let under = parent.clone().map_or_else(|| "the root".to_owned(), |p| p.clone());
    let summary = format!("created business unit {name} under {under} in {env}");
    run(
        shell,
        actor,
        &env,
        DomainCommand::CreateBusinessUnit { id: shell.ids.next(), name, parent },
        summary,
        out,
    )
    .await
}

/// `role ...`
pub async fn role(
    shell: &Shell,
    actor: Option<&Upn>,
    command: RoleCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match command {
        RoleCommand::Copy { env, from, name, bu } => {
            let summary = format!("copied {from} to {name} in {env}");
            run(
                shell,
                actor,
                &env,
                DomainCommand::CopyRole { id: shell.ids.next(), from, name, business_unit: bu },
                summary,
                out,
            )
            .await
        }
        RoleCommand::SetPrivilege { env, role, table, op, level } => {
            let summary =
                format!("{role} now grants {} on {table} at {} level", op.cli_name(), level.cli_name());
            run(
                shell,
                actor,
                &env,
                DomainCommand::SetPrivilege { role, table, operation: op, level },
                summary,
                out,
            )
            .await
        }
        RoleCommand::Assign(a) => {
            let summary = format!("gave {} the role {} in {}", a.upn, a.role, a.env);
            run(shell, actor, &a.env, DomainCommand::AssignRole { upn: a.upn, role: a.role }, summary, out)
                .await
        }
        RoleCommand::Remove(a) => {
            let summary = format!("took the role {} from {} in {}", a.role, a.upn, a.env);
            run(shell, actor, &a.env, DomainCommand::RemoveRole { upn: a.upn, role: a.role }, summary, out)
                .await
        }
    }
}

/// `team ...`
pub async fn team(
    shell: &Shell,
    actor: Option<&Upn>,
    command: TeamCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match command {
        TeamCommand::Create { env, name, bu, group } => {
            let kind = group.as_ref().map_or("owner team".to_owned(), |g| {
                format!("group team following {g} (members from the next sync)")
            });
            let summary = format!("created {kind} {name} in {env}");
            run(
                shell,
                actor,
                &env,
                DomainCommand::CreateTeam { id: shell.ids.next(), name, business_unit: bu, group },
                summary,
                out,
            )
            .await
        }
        TeamCommand::AddMember(a) => {
            let summary = format!("added {} to team {}", a.upn, a.team);
            run(shell, actor, &a.env, DomainCommand::AddTeamMember { team: a.team, upn: a.upn }, summary, out)
                .await
        }
        TeamCommand::RemoveMember(a) => {
            let summary = format!("removed {} from team {}", a.upn, a.team);
            run(
                shell,
                actor,
                &a.env,
                DomainCommand::RemoveTeamMember { team: a.team, upn: a.upn },
                summary,
                out,
            )
            .await
        }
        TeamCommand::Role(TeamRoleCommand::Assign(a)) => {
            let summary = format!("gave team {} the role {}", a.team, a.role);
            run(
                shell,
                actor,
                &a.env,
                DomainCommand::AssignTeamRole { team: a.team, role: a.role },
                summary,
                out,
            )
            .await
        }
        TeamCommand::Role(TeamRoleCommand::Remove(a)) => {
            let summary = format!("took the role {} from team {}", a.role, a.team);
            run(
                shell,
                actor,
                &a.env,
                DomainCommand::RemoveTeamRole { team: a.team, role: a.role },
                summary,
                out,
            )
            .await
        }
    }
}

/// `mailbox ...`
pub async fn mailbox(
    shell: &Shell,
    actor: Option<&Upn>,
    command: MailboxCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let MailboxCommand::TestEnable(a) = command;
    let summary = format!("scheduled the mailbox test of {}; the mailbox is enabled", a.upn);
    run(shell, actor, &a.env, DomainCommand::MailboxTestEnable { upn: a.upn }, summary, out).await
}

/// `privileges --env E --upn U [--at WHEN]`
pub async fn privileges(
    shell: &Shell,
    env: &str,
    upn: &Upn,
    at: AtArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let at = at.at.as_deref().map(parse_at).transpose()?;
    let crate::shell::AsOf { tenant, environment, .. } = shell.environment_as_of(env, at).await?;
    let by_object = tenant.user(upn).and_then(|u| environment.user_by_object(u.id));
    let Some(record) = by_object.or_else(|| environment.users_named(upn.as_str()).next()) else {
        return usage(format!("{upn} has no record in {env}"));
    };
    let grants = security::effective_privileges(&environment, record);
    if out.json {
        let doc: Vec<Value> = grants
            .iter()
            .map(|g| {
                json!({
                    "table": g.table,
                    "operation": g.operation.cli_name(),
                    "level": g.level.cli_name(),
                    "from": g.from.iter().map(|s| json!({ "role": s.role, "team": s.team })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return out.json(&Value::Array(doc));
    }
    if grants.is_empty() {
        let why = if security::has_any_role(&environment, record) {
            "its roles grant no privileges here"
        } else {
            "it holds no role, directly or through a team (R4)"
        };
        return out.line(format!("{upn} has no privileges in {env}: {why}"));
    }
    let rows = grants
        .iter()
        .map(|g| {
            let from = g.from.iter().map(|s| match &s.team {
                Some(team) => format!("{} (team {team})", s.role),
                None => s.role.clone(),
            });
            vec![
                g.table.clone(),
                g.operation.cli_name().to_owned(),
                g.level.cli_name().to_owned(),
                from.collect::<Vec<_>>().join(", "),
            ]
        })
        .collect();
    out.table(&["table", "operation", "level", "from"], rows)?;
    if !record.reach().data {
        out.line("(Administrative access mode: data privileges are withheld whatever the roles, A5)")?;
    }
    Ok(())
}
