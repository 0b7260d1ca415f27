//! Eligibility: the one function that says whether a directory user may be
//! in an environment, returning every check it made (rules E1, S1-S3, D10)
//! with the log records that decided it; and [`can_access`], the one answer
//! to whether a user gets in now (S5, S4, R4, A5, A6). Sync, Refresh, access
//! attempts, on-demand adds and every view use them; no other code decides
//! these rules.

use chrono::{DateTime, Utc};

use crate::environment::{Environment, SystemUser};
use crate::events::{AccessMode, AdminRole, Entitlement, EnvType, Member, SkuKind, UserKind, UserType};
use crate::rules::Rule;
use crate::security;
use crate::tenant::{Tenant, User};

/// How the user is being considered: it changes the S1 exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The background sync pass (S1).
    Sync,
    /// Refresh user: the sync for one user, at once (S9).
    Refresh,
    /// The user's own access attempt (S5).
    Access,
    /// An admin's on-demand add (S5).
    AdminAdd,
}

impl How {
    /// An on-demand action (S1.4, S2.4's owner clause).
    pub fn on_demand(self) -> bool {
        matches!(self, How::Access | How::AdminAdd)
    }
}

/// What a check is about, whatever its rule and words: code tells checks
/// apart by it, never by their text; [`Checked::name`] is what people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Database,
    SignIn,
    License,
    GuestLicense,
    SecurityGroup,
    Added,
    Kind,
    Record,
    Roles,
    AccessMode,
}

impl Checked {
    /// The short name people read.
    pub fn name(self) -> &'static str {
        match self {
            Checked::Database => "database",
            Checked::SignIn => "sign-in",
            Checked::License => "license",
            Checked::GuestLicense => "guest license",
            Checked::SecurityGroup => "security group",
            Checked::Added => "added to the environment",
            Checked::Kind => "kind",
            Checked::Record => "record",
            Checked::Roles => "security roles",
            Checked::AccessMode => "access mode",
        }
    }
}

/// One check: its rule, whether it passed, why, and the records behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The rule checked.
    pub rule: Rule,
    /// What it is about.
    pub what: Checked,
    /// Whether it passed.
    pub passed: bool,
    /// A human sentence.
    pub detail: String,
    /// The log records that decided it.
    pub evidence: Vec<u64>,
}

/// Every check made, and what the user is entitled by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    /// The checks, in the order they were made.
    pub checks: Vec<Check>,
    /// What entitles the user, if anything.
    pub entitlement: Option<Entitlement>,
    /// Holds a Dynamics 365 or Power Apps license from this tenant (islicensed).
    pub licensed: bool,
}

impl Eligibility {
    /// Entitled to an enabled record: every check but the add check passed (S2).
    pub fn entitled(&self) -> bool {
        self.checks.iter().filter(|c| c.what != Checked::Added).all(|c| c.passed)
    }

    /// May be added now: entitled, and the add check passed too (S1).
    pub fn may_add(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The failing checks, one clause each: `S2.2: no license ...; S2.4: ...`.
    pub fn failing_summary(&self) -> String {
        self.failing().map(|c| format!("{}: {}", c.rule, c.detail)).collect::<Vec<_>>().join("; ")
    }

    /// The newest record behind any check: what triggered a change.
    pub fn newest_evidence(&self) -> u64 {
        self.checks.iter().flat_map(|c| c.evidence.iter().copied()).max().unwrap_or(0)
    }

    /// Whether the entitlement only counts on demand (S1.4).
    pub fn on_demand_only(&self) -> bool {
        matches!(
            self.entitlement,
            Some(Entitlement::FreeDataversePlan(_) | Entitlement::AppPass | Entitlement::MarketingTenant(_))
        )
    }
}

fn check(rule: Rule, what: Checked, passed: bool, detail: String, evidence: Vec<u64>) -> Check {
    let mut evidence: Vec<u64> = evidence.into_iter().filter(|&s| s > 0).collect();
    evidence.sort_unstable();
    evidence.dedup();
    Check { rule, what, passed, detail, evidence }
}

/// Decides whether `user` is entitled to `env` at `now`, considered as `how`.
pub fn eligibility(
    tenant: &Tenant,
    env: &Environment,
    user: &User,
    how: How,
    now: DateTime<Utc>,
) -> Eligibility {
    let mut checks = vec![
        check(
            Rule::E1,
            Checked::Database,
            env.dataverse,
            if env.dataverse {
                format!("{} has a Dataverse database", env.name)
            } else {
                format!("{} has no Dataverse database: no user can be added", env.name)
            },
            vec![env.evidence.created],
        ),
        sign_in(user, now),
    ];
    let (license, entitlement, licensed) = license(tenant, env, user);
    checks.push(license);
    checks.push(guest(user, licensed || entitlement.is_some()));
    checks.push(security_group(tenant, env, user, how));
    let eligibility = Eligibility { checks, entitlement, licensed };
    let add = add_check(tenant, env, user, how, &eligibility);
    let mut eligibility = eligibility;
    eligibility.checks.push(add);
    eligibility
}

fn sign_in(user: &User, now: DateTime<Utc>) -> Check {
    let (passed, detail) = match (user.deleted_at, user.account_enabled) {
        (Some(at), _) if user.is_purged(now) => {
            (false, format!("{} was deleted on {} and is gone for good", user.upn, at.format("%Y-%m-%d")))
        }
        (Some(at), _) => {
            (false, format!("{} is deleted in the directory (since {})", user.upn, at.format("%Y-%m-%d")))
        }
        (None, false) => (false, format!("{} is blocked from signing in", user.upn)),
        (None, true) => (true, format!("{} exists and may sign in", user.upn)),
    };
    check(Rule::S2_1, Checked::SignIn, passed, detail, vec![user.evidence.sign_in])
}

/// S2.2 with the exceptions of S3: what entitles the user, if anything.
fn license(tenant: &Tenant, env: &Environment, user: &User) -> (Check, Option<Entitlement>, bool) {
    let held: Vec<_> = user.licenses.iter().filter_map(|l| tenant.sku(l)).collect();
    let license_evidence: Vec<u64> = user.evidence.licenses.values().copied().collect();
    let role_evidence: Vec<u64> = user.evidence.admin_roles.values().copied().collect();
    let record = env.user_by_object(user.id);
    let pass = |detail: String, entitlement, evidence| {
        (check(Rule::S2_2, Checked::License, true, detail, evidence), Some(entitlement))
    };

    let (result, licensed) = if let Some(sku) = held.iter().find(|s| s.kind.is_paid()) {
        let evidence = vec![user.evidence.licenses.get(&sku.part).copied().unwrap_or(0)];
        (pass(format!("licensed: {}", sku.part), Entitlement::License(sku.part.clone()), evidence), true)
    } else if let Some(role) = [AdminRole::Global, AdminRole::PowerPlatform, AdminRole::Dynamics365]
        .into_iter()
        .find(|r| user.admin_roles.contains(r))
    {
        let detail = match record {
            Some(_) => format!("no license needed: {role} (S3)"),
            None => format!("no license needed: {role} (S3); added as a setup user in Administrative mode"),
        };
        (pass(detail, Entitlement::AdminWithoutLicense, role_evidence.clone()), false)
    } else if let Some(r) = record.filter(|r| {
        !r.setup_user && matches!(r.access_mode, AccessMode::NonInteractive | AccessMode::Administrative)
    }) {
        let detail =
            format!("no license needed: the record is {} and keeps its mode (A4)", r.access_mode.cli_name());
        (pass(detail, Entitlement::KeptMode, vec![r.evidence.access_mode]), false)
    } else if let Some(sku) = held.iter().find(|s| s.kind == SkuKind::M365Dataverse) {
        let detail = format!("free Dataverse plan of {} (on demand only, S1.4)", sku.part);
        let evidence = vec![user.evidence.licenses.get(&sku.part).copied().unwrap_or(0)];
        (pass(detail, Entitlement::FreeDataversePlan(sku.part.clone()), evidence), false)
    } else if holds_app_pass(env, record) {
        let detail = format!(
            "app-pass capacity of {} ({} of {} in use; on demand only, S1.4)",
            env.name,
            env.app_pass_in_use(None),
            env.app_pass
        );
        (pass(detail, Entitlement::AppPass, vec![env.evidence.app_pass]), false)
    } else if let Some(sku) = tenant.skus.values().find(|s| s.kind == SkuKind::MarketingTenant && s.seats > 0)
    {
        let detail = format!("the tenant's Marketing license {} (on demand only, S1.4)", sku.part);
        (pass(detail, Entitlement::MarketingTenant(sku.part.clone()), vec![sku.changed]), false)
    } else {
        let office: Vec<&str> =
            held.iter().filter(|s| s.kind == SkuKind::Office).map(|s| s.part.as_str()).collect();
        let mut detail = "no license that entitles Dataverse".to_owned();
        if !office.is_empty() {
            detail.push_str(&format!(" ({} is Office-only)", office.join(", ")));
        }
        if env.app_pass > 0 {
            detail.push_str(&format!(
                "; the app-pass capacity is used up ({} of {})",
                env.app_pass_in_use(None),
                env.app_pass
            ));
        }
        let mut evidence = license_evidence;
        evidence.push(user.evidence.created);
        ((check(Rule::S2_2, Checked::License, false, detail, evidence), None), false)
    };
    (result.0, result.1, licensed)
}

/// The app-pass capacity goes to the earliest holders first; a newcomer gets a
/// pass only while one is free (S1.4).
fn holds_app_pass(env: &Environment, record: Option<&SystemUser>) -> bool {
    let holders = env.app_pass_holders();
    match record.and_then(|r| holders.iter().position(|h| h.id == r.id)) {
        Some(rank) => (rank as u32) < env.app_pass,
        None => (holders.len() as u32) < env.app_pass,
    }
}

fn guest(user: &User, entitled_here: bool) -> Check {
    if user.user_type == UserType::Member {
        return check(
            Rule::S2_3,
            Checked::GuestLicense,
            true,
            "a member of this tenant".into(),
            vec![user.evidence.created],
        );
    }
    let home = if user.home_licenses.is_empty() {
        String::new()
    } else {
        format!("; its home-tenant licenses ({}) do not count here", user.home_licenses.join(", "))
    };
    let mut evidence: Vec<u64> = user.evidence.licenses.values().copied().collect();
    evidence.push(user.evidence.created);
    let detail = if entitled_here {
        format!("a guest entitled by this tenant{home}")
    } else {
        format!("a guest needs a license from this tenant (D10){home}")
    };
    check(Rule::S2_3, Checked::GuestLicense, entitled_here, detail, evidence)
}

fn security_group(tenant: &Tenant, env: &Environment, user: &User, how: How) -> Check {
    let Some(group) = env.security_group.and_then(|g| tenant.groups.get(&g)) else {
        let detail = format!("{} has no security group", env.name);
        return check(Rule::S2_4, Checked::SecurityGroup, true, detail, vec![env.evidence.security_group]);
    };
    let sg = env.evidence.security_group;
    let member = Member::User(user.id);
    let changed = group.changes.get(&member).copied().unwrap_or(0);
    if let Some(role) =
        [AdminRole::Global, AdminRole::PowerPlatform].into_iter().find(|r| user.admin_roles.contains(r))
    {
        let evidence = vec![sg, user.evidence.admin_roles.get(&role).copied().unwrap_or(0)];
        return check(
            Rule::S2_4,
            Checked::SecurityGroup,
            true,
            format!("exempt from {} as a {role}", group.name),
            evidence,
        );
    }
    if group.members.contains(&member) {
        return check(
            Rule::S2_4,
            Checked::SecurityGroup,
            true,
            format!("a direct member of {}", group.name),
            vec![sg, changed],
        );
    }
    // The owner counts as a member when added on demand, and so stays once in.
    let in_environment = env.user_by_object(user.id).is_some();
    if (how.on_demand() || in_environment) && group.owners.contains(&user.id) {
        let detail = format!("an owner of {}: counts as a member when added on demand", group.name);
        return check(Rule::S2_4, Checked::SecurityGroup, true, detail, vec![sg, changed]);
    }
    let nested =
        group.nested().find_map(|g| tenant.groups.get(&g).filter(|inner| inner.members.contains(&member)));
    let mut detail = match nested {
        Some(inner) => {
            format!("only in {} through nested group {}, which is ignored (D9)", group.name, inner.name)
        }
        None => format!("not a member of {}", group.name),
    };
    if user.admin_roles.contains(&AdminRole::Dynamics365) {
        detail.push_str("; Dynamics 365 Administrators must be members too");
    }
    check(Rule::S2_4, Checked::SecurityGroup, false, detail, vec![sg, changed])
}

/// S1: whether a missing record may be added now, by environment type and entitlement.
fn add_check(tenant: &Tenant, env: &Environment, user: &User, how: How, e: &Eligibility) -> Check {
    let created = env.evidence.created;
    if let Some(record) = env.user_by_object(user.id) {
        let detail = format!("already in {} (since record {})", env.name, record.evidence.added);
        return check(Rule::S1, Checked::Added, true, detail, vec![record.evidence.added]);
    }
    let refuse = |rule, detail: String| check(rule, Checked::Added, false, detail, vec![created]);
    match env.env_type {
        Some(EnvType::Developer) if user.id != env.creator => {
            let creator = tenant.users.get(&env.creator).map_or("its creator", |u| u.upn.as_str());
            return refuse(Rule::S1_2, format!("a developer environment adds only its creator ({creator})"));
        }
        Some(EnvType::Trial) if !how.on_demand() => {
            return refuse(
                Rule::S1_1,
                "a trial environment adds users on demand only (user access or env add-user)".into(),
            );
        }
        Some(EnvType::Teams) if how != How::Access => {
            return refuse(Rule::S1_3, "Dataverse for Teams adds users on their first access only".into());
        }
        _ => {}
    }
    if e.on_demand_only() && !how.on_demand() {
        let by = match &e.entitlement {
            Some(Entitlement::FreeDataversePlan(p)) => format!("the free Dataverse plan of {p}"),
            Some(Entitlement::MarketingTenant(p)) => format!("the tenant's Marketing license {p}"),
            _ => "the app-pass capacity".to_owned(),
        };
        return refuse(Rule::S1_4, format!("entitled only by {by}: added on demand only"));
    }
    let detail = if how.on_demand() { "may be added on demand" } else { "added automatically by sync" };
    check(Rule::S1, Checked::Added, true, detail.into(), vec![created])
}

/// Whether a user gets into an environment's web interface, with every check that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The directory user's eligibility, judged as its own access attempt (S5).
    pub eligibility: Option<Eligibility>,
    /// The record's checks: what it is, its status (S4, S5), roles (R4), access mode (A5, A6).
    pub record: Vec<Check>,
}

impl Access {
    /// Every check, the eligibility's first.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.eligibility.iter().flat_map(|e| &e.checks).chain(&self.record)
    }

    /// Gets in: every check passed.
    pub fn can(&self) -> bool {
        self.checks().all(|c| c.passed)
    }
}

/// The one answer to "can this user get in now": the directory `user` (if
/// any) through `record` (its SystemUser, if any) at `now`. Blocking, a lost
/// license or group take effect at once, before the next sync disables the
/// record: an access attempt is judged on entitlement at that moment (S5).
pub fn can_access(
    tenant: &Tenant,
    env: &Environment,
    user: Option<&User>,
    record: Option<&SystemUser>,
    now: DateTime<Utc>,
) -> Access {
    let eligibility = user.map(|u| eligibility(tenant, env, u, How::Access, now));
    let Some(r) = record else {
        let who = user.map_or("the user", |u| u.upn.as_str());
        let detail = format!("{who} has no SystemUser record in {}", env.name);
        return Access { eligibility, record: vec![check(Rule::S5, Checked::Record, false, detail, vec![])] };
    };
    let mut checks = Vec::new();
    if user.is_none() {
        checks.push(kind(r));
    }
    let (status, evidence) = (if r.is_disabled { "disabled" } else { "enabled" }, r.evidence.status);
    let detail = format!("the record is {status} (since record {evidence})");
    checks.push(check(Rule::S4, Checked::Record, !r.is_disabled, detail, vec![r.evidence.added, evidence]));
    let roles = security::roles_of(env, r);
    let detail = if roles.is_empty() {
        "no security role, directly or through a team: the record stays enabled and licensed but cannot reach the environment (removing all roles is not the recommended way to remove access)".to_owned()
    } else {
        let names: Vec<String> = roles
            .iter()
            .map(|(role, team)| match team {
                Some(t) => format!("{} (team {t})", role.name),
                None => role.name.clone(),
            })
            .collect();
        format!("holds {}", names.join(", "))
    };
    checks.push(check(Rule::R4, Checked::Roles, !roles.is_empty(), detail, security::role_evidence(env, r)));
    checks.push(access_mode(r));
    Access { eligibility, record: checks }
}

/// A record that is no directory user's (views look those up by their user):
/// a placeholder (E5), an application user (P1) or a stub, which never signs in (T1.1).
fn kind(r: &SystemUser) -> Check {
    let (rule, passed, what) = match r.kind {
        UserKind::DelegatedAdmin => (Rule::E5, true, "the delegated-admin placeholder: every partner delegated admin maps to it; never synced, never counted (E5)"),
        UserKind::Support => (Rule::E5, true, "the support placeholder for Microsoft support engineers; never synced, never counted (E5)"),
        UserKind::Stub => (Rule::T1_1, false, "a stub user: it cannot sign in (T1.1)"),
        _ => (Rule::P1, true, "an application user: enabled at creation, non-interactive, not counted toward the limit of seven (P1)"),
    };
    check(rule, Checked::Kind, passed, format!("{} is {what}", r.domainname), vec![r.evidence.added])
}

/// What the access mode lets the record reach (A5, A6).
fn access_mode(r: &SystemUser) -> Check {
    let (reach, mode) = (r.reach(), r.access_mode.cli_name());
    let (rule, detail) = if !reach.web {
        (Rule::A6, format!("{mode}: reaches data through the API only, never the web interface"))
    } else if !reach.data {
        (Rule::A5, format!("{mode}: settings and administration only, no data whatever its roles"))
    } else if !reach.write {
        (Rule::A1, format!("{mode}: reads data within its privileges, writes nothing"))
    } else {
        (Rule::A1, format!("{}: full access within its privileges", r.access_mode.shown()))
    };
    check(rule, Checked::AccessMode, reach.web, detail, vec![r.evidence.access_mode])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::SystemUserEvidence;
    use crate::events::AddedBy;
    use uuid::Uuid;

    fn record(kind: UserKind, access_mode: AccessMode) -> SystemUser {
        SystemUser {
            id: Uuid::from_u128(1),
            kind,
            object_id: None,
            application_id: None,
            domainname: "r@contoso.com".into(),
            columns: Default::default(),
            email_edited: false,
            is_disabled: false,
            access_mode,
            is_licensed: true,
            business_unit: Uuid::from_u128(2),
            roles: Default::default(),
            added_by: AddedBy::Sync,
            entitlement: None,
            mailbox_enabled: false,
            setup_user: false,
            evidence: SystemUserEvidence { added: 3, access_mode: 4, ..Default::default() },
        }
    }

    #[test]
    fn a1_a5_a6_each_access_mode_is_judged_by_what_it_reaches() {
        let judged = |mode| {
            let c = access_mode(&record(UserKind::User, mode));
            (c.rule, c.passed, c.evidence, c.detail)
        };
        let (rule, passed, evidence, detail) = judged(AccessMode::ReadWrite);
        assert_eq!((rule, passed, evidence), (Rule::A1, true, vec![4]));
        assert!(detail.contains("full access"), "{detail}");
        let (rule, passed, _, detail) = judged(AccessMode::Read);
        assert_eq!((rule, passed), (Rule::A1, true));
        assert!(detail.contains("writes nothing"), "{detail}");
        let (rule, passed, _, detail) = judged(AccessMode::Administrative);
        assert_eq!((rule, passed), (Rule::A5, true));
        assert!(detail.contains("no data"), "{detail}");
        let (rule, passed, _, detail) = judged(AccessMode::NonInteractive);
        assert_eq!((rule, passed), (Rule::A6, false));
        assert!(detail.contains("API only"), "{detail}");
    }

    #[test]
    fn e5_p1_t1_1_a_record_of_no_directory_user_is_judged_by_its_kind() {
        let judged = |k| {
            let c = kind(&record(k, AccessMode::ReadWrite));
            (c.rule, c.passed, c.what, c.evidence)
        };
        assert_eq!(judged(UserKind::DelegatedAdmin), (Rule::E5, true, Checked::Kind, vec![3]));
        assert_eq!(judged(UserKind::Support), (Rule::E5, true, Checked::Kind, vec![3]));
        assert_eq!(judged(UserKind::Stub), (Rule::T1_1, false, Checked::Kind, vec![3]));
        assert_eq!(judged(UserKind::Application), (Rule::P1, true, Checked::Kind, vec![3]));
    }

    #[test]
    fn every_check_has_its_own_name() {
        use Checked::*;
        let all =
            [Database, SignIn, License, GuestLicense, SecurityGroup, Added, Kind, Record, Roles, AccessMode];
        let names: std::collections::BTreeSet<&str> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(names
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == ' ' || c == '-')));
        assert_eq!(License.name(), "license");
    }
}
