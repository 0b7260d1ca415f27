//! An access review of one environment as of a point in time: the findings
//! an auditor asks for, each with a severity, its rule, the evidence (log
//! records) and an advice line.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use domain::eligibility::{can_access, Checked};
use domain::environment::{Environment, SystemUser, NON_INTERACTIVE_LIMIT};
use domain::events::Member;
use domain::events::{Level, Operation, UserKind, UserType};
use domain::security;
use domain::tenant::{GroupRight, Tenant};
use domain::Upn;
use serde::Serialize;

/// Data tables where Organization-level Write or Delete is worth a look.
pub const CORE_DATA_TABLES: [&str; 6] =
    ["account", "contact", "lead", "opportunity", "incident", "activitypointer"];

/// One finding of `review --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule it is about.
    pub rule: String,
    /// high, medium or low.
    pub severity: &'static str,
    /// The user concerned; none for a finding about the environment itself
    /// (A3, and R7 on a group team).
    pub upn: Option<String>,
    /// One line.
    pub detail: String,
    /// The log records behind it.
    pub evidence: Vec<u64>,
    /// What to do about it.
    pub advice: String,
}

fn finding<'a>(
    rule: &str,
    severity: &'static str,
    upn: impl Into<Option<&'a str>>,
    detail: String,
    mut evidence: Vec<u64>,
    advice: String,
) -> Finding {
    evidence.retain(|&s| s > 0);
    evidence.sort_unstable();
    evidence.dedup();
    let upn = upn.into().map(str::to_owned);
    Finding { rule: rule.to_owned(), severity, upn, detail, evidence, advice }
}

/// The records whose actors [`review`] asks for: those that last changed a
/// member of a group behind one of `env`'s group teams.
pub fn actors_needed(tenant: &Tenant, env: &Environment) -> Vec<u64> {
    let mut seqs: Vec<u64> = env
        .teams
        .values()
        .filter_map(|t| t.group.and_then(|g| tenant.groups.get(&g)))
        .flat_map(|g| g.changes.iter().filter(|(m, _)| matches!(m, Member::User(_))).map(|(_, s)| *s))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// Reviews `env` as of `at`. `actors` names the actor (as the record's
/// envelope has it) of each record [`actors_needed`] lists.
pub fn review(
    tenant: &Tenant,
    env: &Environment,
    at: DateTime<Utc>,
    actors: &BTreeMap<u64, String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    group_team_findings(tenant, env, actors, &mut out);
    let name = &env.name;
    let directory = |r: &SystemUser| r.object_id.and_then(|id| tenant.users.get(&id));
    for r in env.users.values() {
        let upn = r.domainname.as_str();
        // The access findings (R4, D10) name checks the domain fails, as diagnose shows them.
        let access = can_access(tenant, env, directory(r), Some(r), at);
        let fails = |what| access.checks().any(|c| c.what == what && !c.passed);
        let has_role = !fails(Checked::Roles);
        match r.kind {
            UserKind::User if !r.is_disabled && !has_role && r.setup_user => out.push(finding(
                "R4",
                "low",
                upn,
                "a setup user (an unlicensed tenant admin, S3): no role, administers through the admin center".into(),
                vec![r.evidence.added, r.evidence.access_mode],
                "nothing to do unless the admin needs the apps: then a license and a role".into(),
            )),
            UserKind::User if !r.is_disabled && !has_role => out.push(finding(
                "R4",
                "medium",
                upn,
                "enabled without any security role: it cannot reach the environment, yet stays enabled and licensed".into(),
                vec![r.evidence.added, r.evidence.status],
                format!("assign a role (usertrail role assign --env {name} --upn {upn} --role ...) or disable the user in the directory"),
            )),
            _ if r.is_disabled && has_role && r.kind != UserKind::Stub => out.push(finding(
                "R5",
                "low",
                upn,
                format!("disabled but still holds {}", super::systemusers::role_names(env, r).join(", ")),
                [vec![r.evidence.status], security::role_evidence(env, r)].concat(),
                format!("remove the roles if the user left: usertrail role remove --env {name} --upn {upn} --role ..."),
            )),
            _ => {}
        }
        let admin = security::is_system_administrator(env, r)
            || directory(r).is_some_and(Tenant::is_environment_admin);
        if r.kind == UserKind::User && !r.is_disabled && !admin {
            let grants = security::effective_privileges(env, r);
            let wide: Vec<String> = grants
                .iter()
                .filter(|g| {
                    g.level == Level::Organization
                        && matches!(g.operation, Operation::Write | Operation::Delete)
                })
                .filter(|g| CORE_DATA_TABLES.contains(&g.table.as_str()))
                .map(|g| {
                    let from: Vec<&str> = g.from.iter().map(|s| s.role.as_str()).collect();
                    format!("{} {} (from {})", g.operation.cli_name(), g.table, from.join(", "))
                })
                .collect();
            if !wide.is_empty() {
                out.push(finding(
                    "R6",
                    "high",
                    upn,
                    format!("Organization-level {} without being an administrator", wide.join("; ")),
                    security::role_evidence(env, r),
                    "narrow the role to Business Unit level, or confirm the need and record it".into(),
                ));
            }
        }
        if r.kind == UserKind::Application && r.is_disabled {
            out.push(finding(
                "P2",
                "medium",
                upn,
                "application user is disabled: every integration that uses it fails".into(),
                vec![r.evidence.status],
                format!("enable it if it is still in use: usertrail app-user set-status --env {name} --app-id <id> --enabled true"),
            ));
        }
        if let Some(user) = directory(r).filter(|u| u.user_type == UserType::Guest) {
            let source = if user.licenses.is_empty() {
                match user.home_licenses.is_empty() {
                    true => "no license".to_owned(),
                    false => format!(
                        "only home-tenant licenses ({}), which do not count here",
                        user.home_licenses.join(", ")
                    ),
                }
            } else {
                format!(
                    "licensed in this tenant: {}",
                    user.licenses.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            let evidence =
                [vec![user.evidence.created], user.evidence.licenses.values().copied().collect()].concat();
            let severity = if fails(Checked::GuestLicense) && !r.is_disabled { "medium" } else { "low" };
            out.push(finding(
                "D10",
                severity,
                upn,
                format!("guest: {source}"),
                evidence,
                "guests need a license from this tenant (D10)".into(),
            ));
        }
    }

    let non_interactive: Vec<&SystemUser> = env.non_interactive().collect();
    let count = non_interactive.len();
    let severity = match count {
        n if n >= NON_INTERACTIVE_LIMIT => "high",
        n if n + 1 >= NON_INTERACTIVE_LIMIT => "medium",
        _ => "low",
    };
    out.push(finding(
        "A3",
        severity,
        None,
        format!("{count} of {NON_INTERACTIVE_LIMIT} non-interactive users (application users do not count)"),
        non_interactive.iter().map(|u| u.evidence.access_mode).collect(),
        if count >= NON_INTERACTIVE_LIMIT {
            "the limit is reached: use application users for new integrations (P1)".into()
        } else {
            format!("{} more can be set non-interactive", NON_INTERACTIVE_LIMIT - count)
        },
    ));

    // Seats held by users blocked for more than 30 days (D4, D6).
    for user in tenant.live_users(at) {
        let Some(since) = user.blocked_at.filter(|b| at - *b > Duration::days(30)) else { continue };
        if user.licenses.is_empty() || user.is_deleted() {
            continue;
        }
        let licenses: Vec<String> = user.licenses.iter().cloned().collect();
        out.push(finding(
            "D4",
            "medium",
            user.upn.as_str(),
            format!("blocked since {} and still holds {}", crate::rfc3339(since), licenses.join(", ")),
            [vec![user.evidence.sign_in], user.evidence.licenses.values().copied().collect()].concat(),
            format!("free the seats: usertrail user license remove --upn {} --sku {}", user.upn, licenses[0]),
        ));
    }
    let rank = |s: &str| match s {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    };
    out.sort_by(|a, b| (rank(a.severity), &a.rule, &a.upn).cmp(&(rank(b.severity), &b.rule, &b.upn)));
    out
}

/// R6, R7: each group team holding a role beyond what someone who may change
/// its group's members holds, and each member added by such a one (the
/// domain says who may and who holds: `security::group_team_reach`).
fn group_team_findings(
    tenant: &Tenant,
    env: &Environment,
    actors: &BTreeMap<u64, String>,
    out: &mut Vec<Finding>,
) {
    let adder = |seq: u64| actors.get(&seq).and_then(|a| Upn::parse(a).ok()).and_then(|u| tenant.user(&u));
    for reach in security::group_team_reach(tenant, env, adder) {
        let (group, team, role) = (&reach.group.name, &reach.team.name, &reach.role.name);
        let role_seq = reach.team.role_changes.get(&reach.role.id).copied().unwrap_or(0);
        if !reach.managers.is_empty() {
            let who: Vec<String> = reach
                .managers
                .iter()
                .map(|(u, right)| match right {
                    GroupRight::Owner => format!("{} (owner)", u.upn),
                    GroupRight::Role(r) => format!("{} ({})", u.upn, r.display_name()),
                })
                .collect();
            let owners = reach.managers.iter().filter_map(|(u, r)| {
                (*r == GroupRight::Owner).then(|| reach.group.changes.get(&Member::User(u.id)).copied())?
            });
            let roles = reach.managers.iter().filter_map(|(u, r)| match r {
                GroupRight::Role(role) => u.evidence.admin_roles.get(role).copied(),
                GroupRight::Owner => None,
            });
            out.push(finding(
                "R7",
                "high",
                None,
                format!(
                    "group {group} backs team {team}, which holds {role}; {} may change the group's members without holding {role} (R6): adding anyone to the group gives them {role} at the next sync",
                    who.join(", ")
                ),
                [vec![role_seq], owners.collect(), roles.collect()].concat(),
                format!(
                    "give team {team} only roles its group's managers hold, or restrict who manages group {group} (its owners, User Administrators)"
                ),
            ));
        }
        for (member, seq) in &reach.added_by_others {
            let by = actors.get(seq).map_or("an unknown actor", String::as_str);
            out.push(finding(
                "R7",
                "high",
                member.upn.as_str(),
                format!(
                    "added to group {group} (record {seq}) by {by}, who does not hold {role}; the group backs team {team}, which holds {role}"
                ),
                vec![*seq, role_seq],
                format!(
                    "confirm that {} should hold {role}; if not: usertrail group remove-member --group {group} --upn {}",
                    member.upn, member.upn
                ),
            ));
        }
    }
}
