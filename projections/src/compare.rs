//! The "golden user" comparison: how two users' standing in one environment
//! differs (business unit, access mode, status, license, roles, effective
//! privileges, eligibility checks), each difference with where it comes from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::eligibility::{eligibility, How};
use domain::environment::{Environment, SystemUser};
use domain::security::{self, Grant};
use domain::tenant::Tenant;
use domain::Upn;
use serde::Serialize;

/// `compare --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The environment's name.
    pub environment: String,
    /// The time compared at (RFC 3339).
    pub at: String,
    /// The user examined.
    pub upn: String,
    /// The user compared with (the "golden user").
    pub with: String,
    /// What differs, aspect by aspect.
    pub differences: Vec<Difference>,
}

/// One difference between the two users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// businessunit, accessmode, isdisabled, islicensed, role, privilege, check.
    pub aspect: &'static str,
    /// The first user's value.
    pub a: Option<Side>,
    /// The second user's value.
    pub b: Option<Side>,
    /// What it is about, and where it comes from.
    pub detail: String,
}

/// One user's value in a difference: text, or a yes or no that `--json`
/// writes as a JSON boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Side {
    /// A name, a level, a verdict.
    Text(String),
    /// isdisabled, islicensed.
    Flag(bool),
}

impl From<String> for Side {
    fn from(text: String) -> Self {
        Side::Text(text)
    }
}

impl From<bool> for Side {
    fn from(flag: bool) -> Self {
        Side::Flag(flag)
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Side::Text(text) => f.write_str(text),
            Side::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// Why a comparison cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// This UPN is neither a directory user nor a record of the environment.
    Unknown(String),
}

fn record<'a>(tenant: &Tenant, env: &'a Environment, upn: &Upn) -> Option<&'a SystemUser> {
    tenant.user(upn).and_then(|u| env.user_by_object(u.id)).or_else(|| env.users_named(upn.as_str()).next())
}

fn diff<S: Into<Side>>(
    out: &mut Vec<Difference>,
    aspect: &'static str,
    a: Option<S>,
    b: Option<S>,
    detail: impl Into<String>,
) {
    let (a, b) = (a.map(Into::into), b.map(Into::into));
    if a != b {
        out.push(Difference { aspect, a, b, detail: detail.into() });
    }
}

/// Where a role comes from: `direct`, or `team T`.
fn role_sources(env: &Environment, user: &SystemUser) -> BTreeMap<String, Vec<String>> {
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (role, team) in security::roles_of(env, user) {
        let via = team.map_or_else(|| "direct".to_owned(), |t| format!("team {t}"));
        roles.entry(role.name.clone()).or_default().push(via);
    }
    roles
}

fn grant_text(grant: Option<&Grant>) -> Option<String> {
    grant.map(|g| {
        let from: Vec<String> = g
            .from
            .iter()
            .map(|s| s.team.as_ref().map_or_else(|| s.role.clone(), |t| format!("{} (team {t})", s.role)))
            .collect();
        format!("{} from {}", g.level.cli_name(), from.join(", "))
    })
}

/// Compares `a` with `b` in `env` as of `at`.
pub fn compare(
    tenant: &Tenant,
    env: &Environment,
    a: &Upn,
    b: &Upn,
    at: DateTime<Utc>,
) -> Result<Comparison, Missing> {
    let exists = |u: &Upn| tenant.user(u).is_some() || env.users_named(u.as_str()).next().is_some();
    for u in [a, b] {
        if !exists(u) {
            return Err(Missing::Unknown(u.to_string()));
        }
    }
    let (ra, rb) = (record(tenant, env, a), record(tenant, env, b));
    let mut out = Vec::new();
    let unit = |r: Option<&SystemUser>| {
        r.and_then(|r| env.business_units.get(&r.business_unit)).map(|u| u.name.clone())
    };
    diff(
        &mut out,
        "businessunit",
        unit(ra),
        unit(rb),
        "the business unit decides which roles can be held (R1)",
    );
    let mode = |r: Option<&SystemUser>| {
        r.map(|r| format!("{} ({})", r.access_mode.cli_name(), r.access_mode.value()))
    };
    diff(&mut out, "accessmode", mode(ra), mode(rb), "what the access mode allows (A1, A5, A6)");
    // No record: null, as for every other aspect.
    let status = |r: Option<&SystemUser>| r.map(|r| r.is_disabled);
    diff(&mut out, "isdisabled", status(ra), status(rb), "the record's status (S4, S5)");
    let licensed = |r: Option<&SystemUser>| r.map(|r| r.is_licensed);
    diff(&mut out, "islicensed", licensed(ra), licensed(rb), "a Dynamics 365 or Power Apps license (S2.2)");

    let roles_a = ra.map(|r| role_sources(env, r)).unwrap_or_default();
    let roles_b = rb.map(|r| role_sources(env, r)).unwrap_or_default();
    let names: std::collections::BTreeSet<&String> = roles_a.keys().chain(roles_b.keys()).collect();
    for name in names {
        let text = |m: &BTreeMap<String, Vec<String>>| m.get(name).map(|via| via.join(", "));
        diff(
            &mut out,
            "role",
            text(&roles_a),
            text(&roles_b),
            format!("role {name} (direct or through a team, R3)"),
        );
    }

    let grants =
        |r: Option<&SystemUser>| r.map(|r| security::effective_privileges(env, r)).unwrap_or_default();
    let (ga, gb) = (grants(ra), grants(rb));
    let mut keys: Vec<(String, domain::events::Operation)> =
        ga.iter().chain(gb.iter()).map(|g| (g.table.clone(), g.operation)).collect();
    keys.sort();
    keys.dedup();
    for (table, operation) in keys {
        let find = |gs: &[Grant]| gs.iter().find(|g| g.table == table && g.operation == operation).cloned();
        let (x, y) = (find(&ga), find(&gb));
        if x.as_ref().map(|g| g.level) != y.as_ref().map(|g| g.level) {
            let detail = format!("{} on {table} (R3)", operation.cli_name());
            out.push(Difference {
                aspect: "privilege",
                a: grant_text(x.as_ref()).map(Side::Text),
                b: grant_text(y.as_ref()).map(Side::Text),
                detail,
            });
        }
    }

    let checks = |u: &Upn| {
        tenant.user(u).map(|user| eligibility(tenant, env, user, How::Access, at).checks).unwrap_or_default()
    };
    let (ca, cb) = (checks(a), checks(b));
    for check in &ca {
        let other = cb.iter().find(|c| c.what == check.what);
        let verdict = |c: Option<&domain::eligibility::Check>| {
            c.map(|c| Side::Text(format!("{}: {}", if c.passed { "passed" } else { "failed" }, c.detail)))
        };
        if other.map(|o| o.passed) != Some(check.passed) {
            out.push(Difference {
                aspect: "check",
                a: verdict(Some(check)),
                b: verdict(other),
                detail: format!("{} ({})", check.what.name(), check.rule),
            });
        }
    }
    Ok(Comparison {
        environment: env.name.clone(),
        at: crate::rfc3339(at),
        upn: a.to_string(),
        with: b.to_string(),
        differences: out,
    })
}
