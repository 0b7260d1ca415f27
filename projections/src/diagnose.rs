//! Run diagnostics: why a user can or cannot reach an environment, as of a
//! point in time. The eligibility checks are those sync decides with
//! (`domain::eligibility`); the record, role (R4) and access-mode (A5, A6)
//! checks follow; each names the log records behind it, and advice says
//! what would fix what fails.

use chrono::{DateTime, Utc};
use domain::eligibility::{eligibility, Check, How, ADD_CHECK};
use domain::environment::{Environment, SystemUser, BASIC_USER, SALESPERSON};
use domain::events::{AccessMode, App, SkuKind, UserKind};
use domain::rules::Rule;
use domain::security;
use domain::tenant::{Tenant, User};
use domain::Upn;
use serde::Serialize;

/// `diagnose --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The environment's name.
    pub environment: String,
    /// The user diagnosed.
    pub upn: String,
    /// The time the diagnosis is judged at (RFC 3339).
    pub at: String,
    /// Whether the user can reach the environment's web interface now.
    #[serde(rename = "canAccess")]
    pub can_access: bool,
    /// Every check made, in order.
    pub checks: Vec<CheckOut>,
    /// What would fix what fails.
    pub advice: Vec<String>,
}

/// One check as diagnostics prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOut {
    /// The rule ID.
    pub rule: String,
    /// A short name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// A sentence.
    pub detail: String,
    /// The log records that decided it.
    pub evidence: Vec<u64>,
}

impl From<&Check> for CheckOut {
    fn from(c: &Check) -> CheckOut {
        CheckOut {
            rule: c.rule.to_string(),
            name: c.name.to_owned(),
            passed: c.passed,
            detail: c.detail.clone(),
            evidence: c.evidence.clone(),
        }
    }
}

fn out(rule: Rule, name: &str, passed: bool, detail: String, evidence: Vec<u64>) -> CheckOut {
    let mut evidence: Vec<u64> = evidence.into_iter().filter(|&s| s > 0).collect();
    evidence.sort_unstable();
    evidence.dedup();
    CheckOut { rule: rule.to_string(), name: name.to_owned(), passed, detail, evidence }
}

/// Why diagnostics cannot be run for this name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOffered {
    /// A stub user (T1.2).
    Stub,
    /// No directory user and no record by that name.
    Unknown,
}

/// Diagnoses `upn` in `env` as of `at`.
pub fn diagnose(
    tenant: &Tenant,
    env: &Environment,
    upn: &Upn,
    at: DateTime<Utc>,
) -> Result<Diagnosis, NotOffered> {
    let user = tenant.user(upn);
    let named = env.users_named(upn.as_str()).find(|r| r.kind != UserKind::User);
    let record = user.and_then(|u| env.user_by_object(u.id)).or(named);
    let mut checks = Vec::new();
    let mut advice = Vec::new();
    match (user, record) {
        (None, Some(r)) if r.kind == UserKind::Stub => return Err(NotOffered::Stub),
        (None, None) => return Err(NotOffered::Unknown),
        (Some(user), _) => {
            let e = eligibility(tenant, env, user, How::Access, at);
            checks.extend(e.checks.iter().map(CheckOut::from));
            advise_directory(tenant, env, user, &e.checks, record, at, &mut advice);
        }
        (None, Some(r)) => {
            let what = match r.kind {
                UserKind::DelegatedAdmin => "the delegated-admin placeholder: every partner delegated admin maps to it; never synced, never counted (E5)",
                UserKind::Support => "the support placeholder for Microsoft support engineers; never synced, never counted (E5)",
                _ => "an application user: enabled at creation, non-interactive, not counted toward the limit of seven (P1)",
            };
            let rule = if r.kind == UserKind::Application { Rule::P1 } else { Rule::E5 };
            checks.push(out(rule, "kind", true, format!("{upn} is {what}"), vec![r.evidence.added]));
        }
    }
    checks.extend(record_checks(env, upn, record, &mut advice));
    let can_access = record.is_some() && checks.iter().all(|c| c.passed);
    Ok(Diagnosis {
        environment: env.name.clone(),
        upn: upn.to_string(),
        at: crate::rfc3339(at),
        can_access,
        checks,
        advice,
    })
}

/// The record exists and is enabled; it holds a role (R4); its access mode
/// lets it in (A5, A6).
fn record_checks(
    env: &Environment,
    upn: &Upn,
    record: Option<&SystemUser>,
    advice: &mut Vec<String>,
) -> Vec<CheckOut> {
    let Some(r) = record else {
        return vec![out(
            Rule::S5,
            "record",
            false,
            format!("{upn} has no SystemUser record in {}", env.name),
            vec![],
        )];
    };
    let mut checks = Vec::new();
    let status = if r.is_disabled {
        format!("the record is disabled (since record {})", r.evidence.status)
    } else {
        format!("the record is enabled (since record {})", r.evidence.status)
    };
    checks.push(out(Rule::S4, "record", !r.is_disabled, status, vec![r.evidence.added, r.evidence.status]));

    let roles = security::roles_of(env, r);
    let mut evidence: Vec<u64> = r.evidence.roles.values().copied().collect();
    for team in env.teams_of(r.id) {
        evidence.extend(team.member_changes.get(&r.id));
        evidence.extend(team.role_changes.values());
    }
    if roles.is_empty() {
        let detail = "no security role, directly or through a team: the record stays enabled and licensed but cannot reach the environment (removing all roles is not the recommended way to remove access)";
        checks.push(out(Rule::R4, "security roles", false, detail.to_owned(), evidence));
        let role = if env.apps.contains(&App::Sales) { SALESPERSON } else { BASIC_USER };
        advice.push(format!(
            "assign a security role: usertrail role assign --env {} --upn {upn} --role '{role}' (or add the user to a team that has one)",
            env.name
        ));
    } else {
        let names: Vec<String> = roles
            .iter()
            .map(|(role, team)| match team {
                Some(t) => format!("{} (team {t})", role.name),
                None => role.name.clone(),
            })
            .collect();
        checks.push(out(Rule::R4, "security roles", true, format!("holds {}", names.join(", ")), evidence));
    }

    let mode = r.access_mode;
    let (rule, passed, detail) = match mode {
        AccessMode::NonInteractive => (
            Rule::A6,
            false,
            "non-interactive: reaches data through the API only, never the web interface".to_owned(),
        ),
        AccessMode::Administrative => (
            Rule::A5,
            true,
            "administrative: settings and administration only, no data whatever its roles".to_owned(),
        ),
        AccessMode::Read => {
            (Rule::A1, true, "read: reads data within its privileges, writes nothing".to_owned())
        }
        other => (
            Rule::A1,
            true,
            format!("{} ({}): full access within its privileges", other.cli_name(), other.value()),
        ),
    };
    checks.push(out(rule, "access mode", passed, detail, vec![r.evidence.access_mode]));
    match mode {
        AccessMode::NonInteractive if r.kind == UserKind::User => advice.push(format!(
            "for web access set the mode back: usertrail user set-access-mode --env {} --upn {upn} --mode read-write",
            env.name
        )),
        AccessMode::Administrative => advice.push(format!(
            "for data access set the mode: usertrail user set-access-mode --env {} --upn {upn} --mode read-write (needs a license)",
            env.name
        )),
        _ => {}
    }
    checks
}

/// Advice for the eligibility checks that failed.
fn advise_directory(
    tenant: &Tenant,
    env: &Environment,
    user: &User,
    checks: &[Check],
    record: Option<&SystemUser>,
    at: DateTime<Utc>,
    advice: &mut Vec<String>,
) {
    let upn = &user.upn;
    let env_name = &env.name;
    for check in checks.iter().filter(|c| !c.passed) {
        match check.rule {
            Rule::E1 => advice.push(format!("{env_name} has no Dataverse database: no user can be added there")),
            Rule::S2_1 if user.is_deleted() => match user.deleted_at {
                Some(deleted) if !user.is_purged(at) => advice.push(format!(
                    "restore the user before {}: usertrail user restore --upn {upn}",
                    crate::rfc3339(deleted + domain::tenant::RESTORE_WINDOW)
                )),
                _ => advice.push(format!("{upn} is gone for good: create the user again")),
            },
            Rule::S2_1 => advice.push(format!("allow sign-in: usertrail user unblock --upn {upn}")),
            Rule::S2_2 | Rule::S2_3 => {
                let free = tenant
                    .skus
                    .values()
                    .filter(|s| matches!(s.kind, SkuKind::D365 | SkuKind::PowerApps))
                    .map(|s| (s, s.seats.saturating_sub(tenant.seats_used(&s.part, at))))
                    .find(|(_, free)| *free > 0);
                match free {
                    Some((sku, n)) => advice.push(format!(
                        "assign a license: {n} seat{} free on {} (usertrail user license assign --upn {upn} --sku {})",
                        if n == 1 { "" } else { "s" },
                        sku.part,
                        sku.part
                    )),
                    None => advice.push("no Dynamics 365 or Power Apps seat is free: add seats (usertrail sku set-seats) or free one".into()),
                }
            }
            Rule::S2_4 => {
                if let Some(group) = env.security_group.and_then(|g| tenant.groups.get(&g)) {
                    advice.push(format!(
                        "add {upn} to security group {} directly (nested groups are ignored): usertrail group add-member --group {} --upn {upn}",
                        group.name, group.name
                    ));
                }
            }
            Rule::S1_1 | Rule::S1_4 => advice.push(format!(
                "added on demand only: the user's first access adds it, or usertrail env add-user --env {env_name} --upn {upn}"
            )),
            Rule::S1_2 => advice.push("a developer environment holds only its creator".into()),
            Rule::S1_3 => advice.push("Dataverse for Teams adds the user on its first access".into()),
            _ => {}
        }
    }
    let entitled = checks.iter().filter(|c| c.name != ADD_CHECK).all(|c| c.passed);
    match record {
        Some(r) if r.is_disabled && entitled => {
            advice.push(format!("entitled again: Refresh user to sync now: usertrail user refresh --env {env_name} --upn {upn}"))
        }
        Some(r) if r.is_disabled => advice.push(format!(
            "once that is fixed, the next sync pass enables the record; to sync at once: usertrail user refresh --env {env_name} --upn {upn}"
        )),
        None if entitled && eligibility(tenant, env, user, How::Sync, at).may_add() => advice.push(format!(
            "the next sync pass adds it; to sync now: usertrail user refresh --env {env_name} --upn {upn}"
        )),
        None if entitled && checks.iter().all(|c| c.passed) => advice.push(format!(
            "added on demand: the user's first access adds it, or usertrail env add-user --env {env_name} --upn {upn}"
        )),
        _ => {}
    }
}
