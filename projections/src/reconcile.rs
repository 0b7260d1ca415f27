//! Reality check (issue 32): the SystemUser table the rules and the log
//! predict (the environment's folded state) beside the last observation of
//! the real one; one difference per field, with the rule that predicts it,
//! the evidence, and the likely causes. Sorted by what a difference lets
//! happen: access that should not exist first.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use domain::eligibility::{eligibility, Eligibility, How};
use domain::environment::{Environment, Reach, SystemUser, SYSTEM_ADMINISTRATOR};
use domain::events::{AccessMode, AddedBy, Member, ObservedUser, UserKind};
use domain::tenant::{Tenant, User};
use domain::Rule;
use serde::Serialize;

use crate::review::Finding;

/// The rule of a difference no rule predicts: the log knows nothing of it.
pub const OUTSIDE_THE_LOG: &str = "outside the log";

/// A field's value, as `reconcile --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// isdisabled, islicensed.
    Flag(bool),
    /// accessmode, as Dataverse stores it.
    Number(u8),
    /// A business unit's or role's name; `present` or `absent` for a record.
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Flag(v) => write!(f, "{v}"),
            Value::Number(v) => match AccessMode::from_value(*v) {
                Some(mode) => f.write_str(&mode.shown()),
                None => write!(f, "{v}"),
            },
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// What a difference lets happen, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Access that should not exist.
    High,
    /// Access that should exist and does not, or was changed by hand.
    Medium,
    /// Bookkeeping, and roles assigned outside the log.
    Low,
}

impl Severity {
    /// As review prints it.
    pub fn name(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// One difference between the prediction and the observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The user: its UPN, or the record's domainname.
    pub upn: String,
    /// A SystemUser logical name, or `record` for present or absent.
    pub field: &'static str,
    /// What the rules and the log predict (`None`: nothing).
    pub expected: Option<Value>,
    /// What the export showed (`None`: nothing).
    pub observed: Option<Value>,
    /// The rule that predicts it, or [`OUTSIDE_THE_LOG`].
    pub rule: String,
    /// The log records behind the prediction, then the observation's.
    pub evidence: Vec<u64>,
    /// The likely causes, and what to do.
    pub advice: String,
    /// What it lets happen.
    #[serde(skip)]
    pub severity: Severity,
}

/// Every difference between `env`'s folded state and its last observation,
/// judged at `now`; none if it was never observed.
pub fn reconcile(tenant: &Tenant, env: &Environment, now: DateTime<Utc>) -> Vec<Difference> {
    let mut out = Vec::new();
    if env.observed.at.is_none() {
        return out;
    }
    let mut matched = BTreeSet::new();
    for o in env.observed.users.values() {
        let record = find(env, o);
        matched.extend(record.map(|r| r.id));
        let object = record.and_then(|r| r.object_id).or(o.object_id).filter(|_| o.application_id.is_none());
        let user = object.and_then(|id| tenant.user_by_id(id, now));
        let upn = user
            .map(|u| u.upn.clone())
            .or_else(|| record.map(|r| r.domainname.clone()))
            .or_else(|| o.domainname.clone())
            .unwrap_or_else(|| o.id.to_string());
        let mut p = Pair { tenant, env, upn, user, now, out: &mut out };
        match record {
            Some(r) => p.fields(r, o),
            None => p.unpredicted(o),
        }
    }
    for r in env.users.values().filter(|r| !matched.contains(&r.id)) {
        let user = r.object_id.and_then(|id| tenant.user_by_id(id, now));
        let upn = user.map_or_else(|| r.domainname.clone(), |u| u.upn.clone());
        Pair { tenant, env, upn, user, now, out: &mut out }.unobserved(r);
    }
    let order = |d: &Difference| {
        let field = FIELDS.iter().position(|f| *f == d.field);
        (d.severity, d.upn.to_lowercase(), field, format!("{:?}{:?}", d.expected, d.observed))
    };
    out.sort_by_cached_key(order);
    out
}

/// The fields compared, in the order differences are listed.
const FIELDS: [&str; 6] = ["record", "isdisabled", "accessmode", "islicensed", "businessunitid", "role"];

/// Reconcile's differences as review findings (review's "reality" section,
/// and the auditor's report's).
pub fn findings(tenant: &Tenant, env: &Environment, now: DateTime<Utc>) -> Vec<Finding> {
    reconcile(tenant, env, now)
        .into_iter()
        .map(|d| {
            let shown = |v: &Option<Value>| v.as_ref().map_or_else(|| "nothing".to_owned(), Value::to_string);
            Finding {
                rule: d.rule,
                severity: d.severity.name(),
                detail: format!(
                    "reality: {} is {} in {}, the log predicts {}",
                    d.field,
                    shown(&d.observed),
                    env.name,
                    shown(&d.expected)
                ),
                upn: Some(d.upn),
                evidence: d.evidence,
                advice: d.advice,
            }
        })
        .collect()
}

/// The log's record an observed row is: an application user by applicationid,
/// a directory user by azureactivedirectoryobjectid, then (as `import
/// graph` matches users created in usertrail) any other by domainname.
fn find<'e>(env: &'e Environment, o: &ObservedUser) -> Option<&'e SystemUser> {
    if let Some(app) = o.application_id {
        return env.user_by_application(app);
    }
    let by_object = o.object_id.and_then(|id| env.user_by_object(id));
    by_object.or_else(|| {
        let name = o.domainname.as_deref()?;
        env.users_named(name).find(|r| r.kind != UserKind::Application)
    })
}

/// One user's prediction and observation, and where their differences go.
struct Pair<'a, 'o> {
    tenant: &'a Tenant,
    env: &'a Environment,
    upn: String,
    user: Option<&'a User>,
    now: DateTime<Utc>,
    out: &'o mut Vec<Difference>,
}

impl Pair<'_, '_> {
    fn push(
        &mut self,
        field: &'static str,
        (expected, observed): (Option<Value>, Option<Value>),
        rule: String,
        severity: Severity,
        mut evidence: Vec<u64>,
        advice: String,
    ) {
        evidence.retain(|&s| s > 0);
        evidence.sort_unstable();
        evidence.dedup();
        evidence.push(self.env.observed.seq);
        let upn = self.upn.clone();
        self.out.push(Difference { upn, field, expected, observed, rule, evidence, advice, severity });
    }

    fn eligibility(&self) -> Option<Eligibility> {
        self.user.map(|u| eligibility(self.tenant, self.env, u, How::Sync, self.now))
    }

    /// The user is in the environment's group only through a nested group (D9).
    fn nested(&self) -> bool {
        let Some(user) = self.user else { return false };
        let member = Member::User(user.id);
        let group = self.env.security_group.and_then(|g| self.tenant.groups.get(&g));
        group.is_some_and(|g| {
            !g.members.contains(&member)
                && g.nested().any(|n| self.tenant.groups.get(&n).is_some_and(|i| i.members.contains(&member)))
        })
    }

    /// Why the service still grants what the rules took away.
    fn not_entitled(&self, e: &Eligibility, fallback: u64) -> (String, Vec<u64>, String) {
        let failing: Vec<_> = e.failing().filter(|c| c.what != domain::eligibility::Checked::Added).collect();
        let rule = failing.first().map_or_else(|| Rule::S4.to_string(), |c| c.rule.to_string());
        let evidence: Vec<u64> = failing.iter().flat_map(|c| c.evidence.iter().copied()).collect();
        let since = evidence.iter().copied().max().unwrap_or(fallback);
        let summary = e.failing_summary();
        let advice = match (self.nested(), since) {
            (true, _) => format!("{} is in {}'s security group only through a nested group, which is ignored (D9): add it directly, or disable the record", self.upn, self.env.name),
            (false, 0) => format!("added or enabled by hand in the environment ({summary}): disable it"),
            (false, since) => format!("the sync has not run since record {since} ({summary}), or the record was enabled by hand: run Refresh user (S9), or disable it"),
        };
        (rule, evidence, advice)
    }

    fn fields(&mut self, r: &SystemUser, o: &ObservedUser) {
        let e = self.eligibility();
        let app = r.kind == UserKind::Application;
        if let Some(disabled) = o.is_disabled.filter(|d| *d != r.is_disabled) {
            let (expected, observed) = (Some(Value::Flag(r.is_disabled)), Some(Value::Flag(disabled)));
            let status = r.evidence.status;
            if !disabled {
                let (rule, mut evidence, advice) = match &e {
                    Some(e) => self.not_entitled(e, status),
                    None => {
                        let rule = if app { Rule::P2 } else { Rule::S4 };
                        (
                            rule.to_string(),
                            vec![],
                            format!(
                                "enabled by hand in the environment; the log disabled it at record {status}"
                            ),
                        )
                    }
                };
                evidence.push(status);
                self.push("isdisabled", (expected, observed), rule, Severity::High, evidence, advice);
            } else {
                let rule = if app { Rule::P1 } else { Rule::S2 };
                let mut evidence = vec![status];
                evidence.extend(e.iter().flat_map(|e| e.checks.iter().flat_map(|c| c.evidence.clone())));
                let advice = format!("disabled by hand in the environment, or the sync has not run since record {status}, which enabled it: enable it with `env add-user` so the log holds it");
                self.push(
                    "isdisabled",
                    (expected, observed),
                    rule.to_string(),
                    Severity::Medium,
                    evidence,
                    advice,
                );
            }
        }
        if let Some(mode) = o.access_mode.filter(|m| *m != r.access_mode.value()) {
            let rule = if r.setup_user { Rule::S3 } else { Rule::A1 };
            // More of any reach than predicted is access that should not exist (A5, A6).
            let more = AccessMode::from_value(mode).map(|m| {
                let (seen, predicted) = (Reach::of(m), Reach::of(r.access_mode));
                (seen.data && !predicted.data)
                    || (seen.write && !predicted.write)
                    || (seen.web && !predicted.web)
            });
            let severity = if more.unwrap_or(true) { Severity::High } else { Severity::Medium };
            let at = r.evidence.access_mode;
            let advice = format!("changed by hand in the environment: the log set it at record {at}; set it with `user set-access-mode` so the log holds the change, or put it back");
            let values = (Some(Value::Number(r.access_mode.value())), Some(Value::Number(mode)));
            self.push("accessmode", values, rule.to_string(), severity, vec![at], advice);
        }
        if let Some(licensed) = o.is_licensed.filter(|l| *l != r.is_licensed) {
            let license =
                e.iter().flat_map(|e| &e.checks).find(|c| c.what == domain::eligibility::Checked::License);
            let evidence = license.map(|c| c.evidence.clone()).unwrap_or_default();
            let since = evidence.iter().copied().max().unwrap_or(r.evidence.added);
            let advice = format!("the sync has not run since record {since}, which changed the license");
            let values = (Some(Value::Flag(r.is_licensed)), Some(Value::Flag(licensed)));
            self.push("islicensed", values, Rule::S2_2.to_string(), Severity::Low, evidence, advice);
        }
        let unit = self.env.business_units.get(&r.business_unit).map(|b| b.name.clone());
        if let (Some(seen), Some(unit)) = (&o.business_unit, unit) {
            if !seen.eq_ignore_ascii_case(&unit) {
                let at = r.evidence.business_unit;
                let advice = format!("moved by hand in the environment (the log placed it at record {at}): move it with `user set-bu` so the log holds it, or move it back");
                let values = (Some(Value::Text(unit)), Some(Value::Text(seen.clone())));
                self.push("businessunitid", values, Rule::R1.to_string(), Severity::Medium, vec![at], advice);
            }
        }
        if let Some(seen) = &o.roles {
            self.roles(r, seen);
        }
    }

    fn roles(&mut self, r: &SystemUser, seen: &BTreeSet<String>) {
        let seen_lower: BTreeSet<String> = seen.iter().map(|n| n.to_lowercase()).collect();
        let mut predicted = BTreeSet::new();
        for id in &r.roles {
            let Some(role) = self.env.roles.get(id) else { continue };
            predicted.insert(role.name.to_lowercase());
            if seen_lower.contains(&role.name.to_lowercase()) {
                continue;
            }
            let admin = self.user.is_some_and(domain::tenant::Tenant::is_environment_admin);
            let rule = match () {
                _ if role.app_access => Rule::S8,
                _ if admin && role.name == SYSTEM_ADMINISTRATOR => Rule::S7,
                _ => Rule::L1,
            };
            let at = r.evidence.roles.get(id).copied().unwrap_or(0);
            let advice = format!("removed outside the log (the log assigned it at record {at}): assign it again, or remove it with `role remove` so the log holds it");
            let expected = Some(Value::Text(role.name.clone()));
            self.push("role", (expected, None), rule.to_string(), Severity::Medium, vec![at], advice);
        }
        for name in seen.iter().filter(|n| !predicted.contains(&n.to_lowercase())) {
            let known = self.env.role_named(name).is_some();
            let what = if known {
                "assigned in the environment"
            } else {
                "a role the log knows nothing of, assigned"
            };
            let advice = format!("{what}, not through usertrail: assign it with `role assign` so the log holds it, or remove it");
            let observed = Some(Value::Text(name.clone()));
            self.push("role", (None, observed), OUTSIDE_THE_LOG.into(), Severity::Low, vec![], advice);
        }
    }

    /// A record the log holds that the export does not.
    fn unobserved(&mut self, r: &SystemUser) {
        let rule = match r.added_by {
            AddedBy::Sync => Rule::S1,
            AddedBy::Access | AddedBy::AdminAdd => Rule::S5,
            AddedBy::Refresh => Rule::S9,
            AddedBy::Placeholder => Rule::E5,
            AddedBy::AppUserCreate => Rule::P1,
            AddedBy::Import => Rule::T1,
        };
        let added = r.evidence.added;
        let on_demand = self.eligibility().is_some_and(|e| e.on_demand_only());
        let advice = if on_demand {
            format!("{} holds a license kind that counts only on demand (S1.4): the service adds it at its first access, not at a sync; the log added it at record {added}", self.upn)
        } else {
            format!("the sync has not run since record {added}, which added it, or the record was deleted by hand or filtered out of the export: run Refresh user (S9)")
        };
        let severity = if r.is_disabled { Severity::Low } else { Severity::Medium };
        let values = (Some(Value::Text("present".into())), Some(Value::Text("absent".into())));
        self.push("record", values, rule.to_string(), severity, vec![added, r.evidence.status], advice);
    }

    /// A record the export holds that the log does not. A disabled one
    /// grants nothing and is what the rules leave (S4: never deleted).
    fn unpredicted(&mut self, o: &ObservedUser) {
        if o.is_disabled == Some(true) {
            return;
        }
        let values = (Some(Value::Text("absent".into())), Some(Value::Text("present".into())));
        let (rule, severity, evidence, advice) = match (self.eligibility(), o.application_id, o.object_id) {
            (Some(e), _, _) if e.entitled() && e.on_demand_only() => (
                Rule::S1_4.to_string(),
                Severity::Medium,
                vec![e.newest_evidence()],
                "added on demand (S1.4, S5) at its first access, outside the log: record it with `env add-user`".into(),
            ),
            (Some(e), _, _) if e.entitled() => (
                Rule::S1.to_string(),
                Severity::Medium,
                vec![e.newest_evidence()],
                format!("entitled since record {}, but the log's sync has not added it: run `usertrail sync --env {}`", e.newest_evidence(), self.env.name),
            ),
            (Some(e), _, _) => {
                let (rule, evidence, advice) = self.not_entitled(&e, 0);
                (rule, Severity::High, evidence, advice)
            }
            (None, Some(app), _) => (
                Rule::P1.to_string(),
                Severity::High,
                vec![],
                format!("an application user ({app}) the log knows nothing of: created outside usertrail; record it with `app-user create`, or remove it"),
            ),
            (None, None, Some(object)) => (
                Rule::S2_1.to_string(),
                Severity::High,
                vec![],
                format!("the directory holds no user {object}: deleted before the directory was imported, or never there; disable the record"),
            ),
            (None, None, None) => (
                OUTSIDE_THE_LOG.into(),
                Severity::Medium,
                vec![],
                "a record the log knows nothing of, with no directory or application id".into(),
            ),
        };
        self.push("record", values, rule, severity, evidence, advice);
    }
}
