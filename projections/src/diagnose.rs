//! Run diagnostics: why a user can or cannot reach an environment, as of a
//! point in time. The checks are the domain's (`domain::eligibility::can_access`:
//! the eligibility sync decides with, then the record, role (R4) and access
//! mode (A5, A6)); each names the log records behind it, and advice says what
//! would fix what fails.

use chrono::{DateTime, Utc};
use domain::eligibility::{can_access, eligibility, Check, Checked, Eligibility, How};
use domain::environment::{Environment, SystemUser, BASIC_USER, SALESPERSON};
use domain::events::{App, UserKind};
use domain::rules::Rule;
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
            name: c.what.name().to_owned(),
            passed: c.passed,
            detail: c.detail.clone(),
            evidence: c.evidence.clone(),
        }
    }
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
    match (user, record) {
        (None, Some(r)) if r.kind == UserKind::Stub => return Err(NotOffered::Stub),
        (None, None) => return Err(NotOffered::Unknown),
        _ => {}
    }
    let access = can_access(tenant, env, user, record, at);
    let mut advice = Vec::new();
    if let (Some(user), Some(e)) = (user, &access.eligibility) {
        advise_directory(tenant, env, user, e, record, at, &mut advice);
    }
    if let Some(r) = record {
        advise_record(env, upn, r, &access.record, &mut advice);
    }
    Ok(Diagnosis {
        environment: env.name.clone(),
        upn: upn.to_string(),
        at: crate::rfc3339(at),
        can_access: access.can(),
        checks: access.checks().map(CheckOut::from).collect(),
        advice,
    })
}

/// Advice for a record without a role (R4), or whose mode keeps it from the
/// web interface (A6) or from data (A5).
fn advise_record(env: &Environment, upn: &Upn, r: &SystemUser, checks: &[Check], advice: &mut Vec<String>) {
    if checks.iter().any(|c| c.what == Checked::Roles && !c.passed) {
        let role = if env.apps.contains(&App::Sales) { SALESPERSON } else { BASIC_USER };
        advice.push(format!(
            "assign a security role: usertrail role assign --env {} --upn {upn} --role '{role}' (or add the user to a team that has one)",
            env.name
        ));
    }
    let reach = r.reach();
    if !reach.web && r.kind == UserKind::User {
        advice.push(format!(
            "for web access set the mode back: usertrail user set-access-mode --env {} --upn {upn} --mode read-write",
            env.name
        ));
    } else if !reach.data {
        advice.push(format!(
            "for data access set the mode: usertrail user set-access-mode --env {} --upn {upn} --mode read-write (needs a license)",
            env.name
        ));
    }
}

/// Advice for the eligibility checks that failed.
fn advise_directory(
    tenant: &Tenant,
    env: &Environment,
    user: &User,
    e: &Eligibility,
    record: Option<&SystemUser>,
    at: DateTime<Utc>,
    advice: &mut Vec<String>,
) {
    let upn = &user.upn;
    let env_name = &env.name;
    for check in e.failing() {
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
                    .filter(|s| s.kind.is_paid())
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
    let entitled = e.entitled();
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
        None if e.may_add() => advice.push(format!(
            "added on demand: the user's first access adds it, or usertrail env add-user --env {env_name} --upn {upn}"
        )),
        _ => {}
    }
}
