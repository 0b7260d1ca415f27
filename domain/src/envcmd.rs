//! The environment commands: create and configure environments (E1-E4),
//! on-demand adds and access (S5), Refresh user (S9), access modes (A1-A3),
//! application users (P1-P2) and stub users (T1).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::eligibility::{Eligibility, How};
use crate::environment::{
    self, Environment, SystemUser, ALLOW_APP_USER_STATUS_CHANGE, ALLOW_ROLE_ASSIGNMENT_ON_DISABLED,
    BASIC_USER, INACTIVITY_TIMEOUT, NON_INTERACTIVE_LIMIT, SALESPERSON, SESSION_TIMEOUT,
    SYSTEM_ADMINISTRATOR,
};
use crate::events::{AccessMode, AddedBy, App, Column, EnvEvent, EnvType, TenantEvent, UserKind};
use crate::ids::{derive_id, Upn};
use crate::rules::{invalid, refuse, Rejection, Rule};
use crate::sync::sync_user;
use crate::tenant::{Tenant, User};

/// An environment to create (`env create`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvironment {
    /// Its id (chosen by the caller).
    pub id: Uuid,
    /// Its name, unique in the tenant.
    pub name: String,
    /// Its type.
    pub env_type: EnvType,
    /// With a Dataverse database.
    pub dataverse: bool,
    /// The security group that gates it, by name.
    pub security_group: Option<String>,
    /// App-pass capacity.
    pub app_pass: u32,
    /// Installed apps.
    pub apps: Vec<App>,
}

/// One row of a stub-user import (T1), with its line in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRow {
    /// The file's line number (the header is line 1).
    pub line: usize,
    /// domainname
    pub domainname: String,
    /// firstname
    pub firstname: String,
    /// lastname
    pub lastname: String,
}

/// A command on one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvCommand {
    /// Changes the security group (`Some(None)` clears it), app passes and settings.
    Set {
        security_group: Option<Option<String>>,
        app_pass: Option<u32>,
        settings: Vec<(String, Option<String>)>,
    },
    /// Refresh user (S9).
    Refresh { upn: Upn },
    /// The user's own access attempt (S5); the actor is the user.
    Access { upn: Upn },
    /// An admin's on-demand add (S5).
    AddUser { upn: Upn },
    /// Changes a user's access mode (A1-A3).
    SetAccessMode { upn: Upn, mode: AccessMode },
    /// Creates an application user (P1).
    CreateAppUser { app_id: Uuid, name: String, business_unit: Option<String>, roles: Vec<String> },
    /// Enables or disables an application user (P2).
    SetAppUserStatus { app_id: Uuid, enabled: bool },
    /// Imports stub users (T1).
    ImportStubs { rows: Vec<StubRow> },
    /// Reassigns a user's records to another user (T1.4).
    ReassignRecords { from: Upn, to: Upn },
    /// A customer edits internalemailaddress in the environment (S6.3).
    EditEmail { upn: Upn, email: Option<String> },
}

impl EnvCommand {
    /// The command's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            EnvCommand::Set { .. } => "env set",
            EnvCommand::Refresh { .. } => "user refresh",
            EnvCommand::Access { .. } => "user access",
            EnvCommand::AddUser { .. } => "env add-user",
            EnvCommand::SetAccessMode { .. } => "user set-access-mode",
            EnvCommand::CreateAppUser { .. } => "app-user create",
            EnvCommand::SetAppUserStatus { .. } => "app-user set-status",
            EnvCommand::ImportStubs { .. } => "import stub-users",
            EnvCommand::ReassignRecords { .. } => "user reassign-records",
            EnvCommand::EditEmail { .. } => "user set-email",
        }
    }

    /// What the command is aimed at, for audit records.
    pub fn targets(&self) -> Vec<String> {
        match self {
            EnvCommand::Set { .. } | EnvCommand::ImportStubs { .. } => vec![],
            EnvCommand::Refresh { upn }
            | EnvCommand::Access { upn }
            | EnvCommand::AddUser { upn }
            | EnvCommand::SetAccessMode { upn, .. }
            | EnvCommand::EditEmail { upn, .. } => vec![upn.to_string()],
            EnvCommand::CreateAppUser { app_id, .. } | EnvCommand::SetAppUserStatus { app_id, .. } => {
                vec![app_id.to_string()]
            }
            EnvCommand::ReassignRecords { from, to } => vec![from.to_string(), to.to_string()],
        }
    }
}

type Decided = Result<Vec<EnvEvent>, Rejection>;

/// The actor as a directory user who can sign in.
fn authenticate<'a>(tenant: &'a Tenant, actor: &Upn, now: DateTime<Utc>) -> Result<&'a User, Rejection> {
    let Some(user) = tenant.live_user(actor, now) else {
        return invalid(format!("unknown actor {actor}: no such user in this tenant"));
    };
    if !user.can_sign_in() {
        return refuse(Rule::D8, format!("actor {actor} cannot sign in and cannot act"));
    }
    Ok(user)
}

/// A2: environment administration takes a tenant admin role, or the System
/// Administrator role held by the actor's enabled record in the environment.
fn administer(env: &Environment, actor: &User, what: &str) -> Result<(), Rejection> {
    if Tenant::is_environment_admin(actor) {
        return Ok(());
    }
    let system_admin = env.role_named(SYSTEM_ADMINISTRATOR).map(|r| r.id);
    let holds = env
        .user_by_object(actor.id)
        .is_some_and(|r| !r.is_disabled && system_admin.is_some_and(|sa| r.roles.contains(&sa)));
    if holds {
        return Ok(());
    }
    refuse(
        Rule::A2,
        format!(
            "{} may not {what} in {}: it takes the System Administrator role there, or a Global, Power Platform or Dynamics 365 Administrator role",
            actor.upn, env.name
        ),
    )
}

fn needs_database(env: &Environment) -> Result<(), Rejection> {
    if env.dataverse {
        return Ok(());
    }
    refuse(Rule::E1, format!("environment '{}' has no Dataverse database: no user can be added", env.name))
}

/// Decides `env create`: the tenant's registry entry and the new stream's events.
pub fn decide_create(
    tenant: &Tenant,
    actor: &Upn,
    new: &NewEnvironment,
    now: DateTime<Utc>,
) -> Result<(TenantEvent, Vec<EnvEvent>), Rejection> {
    let actor = authenticate(tenant, actor, now)?;
    let name = new.name.trim();
    if name.is_empty() {
        return invalid("an environment needs a name");
    }
    if let Some((_, existing)) = tenant.environment(name) {
        return invalid(format!("an environment named {existing} exists already"));
    }
    if new.env_type != EnvType::Developer && !Tenant::is_environment_admin(actor) {
        return refuse(
            Rule::A2,
            format!("{} may not create a {} environment: it takes a Global, Power Platform or Dynamics 365 Administrator (anyone may create a developer environment)", actor.upn, new.env_type.cli_name()),
        );
    }
    if !new.dataverse && !new.apps.is_empty() {
        return invalid("apps need a Dataverse database: drop --no-dataverse or --app");
    }
    let security_group = match &new.security_group {
        None => None,
        Some(_) if matches!(new.env_type, EnvType::Default | EnvType::Developer) => {
            return refuse(
                Rule::E2,
                format!("a {} environment cannot be tied to a security group", new.env_type.cli_name()),
            );
        }
        Some(g) => match tenant.group_named(g) {
            Some(group) => Some(group.id),
            None => return invalid(format!("unknown group {g}")),
        },
    };
    let mut apps = new.apps.clone();
    apps.sort();
    apps.dedup();
    let mut events = vec![EnvEvent::EnvironmentCreated {
        id: new.id,
        name: name.to_owned(),
        env_type: new.env_type,
        dataverse: new.dataverse,
        security_group,
        app_pass: new.app_pass,
        apps: apps.clone(),
        creator: actor.id,
    }];
    if new.dataverse {
        events.extend(environment::starting_state(new.id, name, &apps));
    }
    Ok((TenantEvent::EnvironmentRegistered { id: new.id, name: name.to_owned() }, events))
}

/// Decides a command on an existing environment at `now`.
pub fn decide(
    tenant: &Tenant,
    env: &Environment,
    actor: &Upn,
    command: &EnvCommand,
    now: DateTime<Utc>,
) -> Decided {
    if let EnvCommand::Access { upn } = command {
        return access(tenant, env, upn, now);
    }
    let actor = authenticate(tenant, actor, now)?;
    let d = Decision { tenant, env, now };
    match command {
        EnvCommand::Access { .. } => Ok(vec![]),
        EnvCommand::Set { security_group, app_pass, settings } => {
            administer(env, actor, "change settings")?;
            d.set(security_group.as_ref(), *app_pass, settings)
        }
        EnvCommand::Refresh { upn } => {
            administer(env, actor, "refresh users")?;
            d.refresh(upn)
        }
        EnvCommand::AddUser { upn } => {
            administer(env, actor, "add users")?;
            d.add_user(upn)
        }
        EnvCommand::SetAccessMode { upn, mode } => {
            administer(env, actor, "change access modes")?;
            d.set_access_mode(upn, *mode)
        }
        EnvCommand::CreateAppUser { app_id, name, business_unit, roles } => {
            administer(env, actor, "create application users")?;
            d.create_app_user(*app_id, name, business_unit.as_deref(), roles)
        }
        EnvCommand::SetAppUserStatus { app_id, enabled } => {
            administer(env, actor, "change application users")?;
            d.set_app_user_status(*app_id, *enabled, &actor.upn)
        }
        EnvCommand::ImportStubs { rows } => {
            administer(env, actor, "import users")?;
            d.import_stubs(rows)
        }
        EnvCommand::ReassignRecords { from, to } => {
            administer(env, actor, "reassign records")?;
            d.reassign(from, to)
        }
        EnvCommand::EditEmail { upn, email } => {
            administer(env, actor, "edit users")?;
            d.edit_email(upn, email.as_deref())
        }
    }
}

/// The refusal of a user who is not entitled: the first failing rule, every failing check.
fn not_entitled(user: &User, env: &Environment, e: &Eligibility) -> Decided {
    let rule = e.failing().next().map_or(Rule::S5, |c| c.rule);
    refuse(rule, format!("{} cannot be added to {}: {}", user.upn, env.name, e.failing_summary()))
}

/// S5: a user's own access attempt adds a missing entitled user, or enables
/// a disabled one; a user who is not entitled is turned away with the checks.
fn access(tenant: &Tenant, env: &Environment, upn: &Upn, now: DateTime<Utc>) -> Decided {
    let stub = env.users_named(upn.as_str()).find(|r| r.kind == UserKind::Stub);
    let Some(user) = tenant.live_user(upn, now) else {
        if stub.is_some() {
            return refuse(Rule::T1_1, format!("{upn} is a stub user in {}: stubs cannot sign in", env.name));
        }
        return invalid(format!("unknown user {upn}"));
    };
    if let Some(record) = env.user_by_object(user.id) {
        if record.access_mode == AccessMode::NonInteractive {
            return refuse(
                Rule::A6,
                format!("{upn} is non-interactive in {}: it reaches data through the API only, not the web interface", env.name),
            );
        }
    }
    needs_database(env)?;
    let (e, events) = sync_user(tenant, env, user, How::Access, now);
    if !e.may_add() {
        let rule = e.failing().next().map_or(Rule::S5, |c| c.rule);
        return refuse(rule, format!("{upn} cannot access {}: {}", env.name, e.failing_summary()));
    }
    Ok(events)
}

/// One decision's context.
struct Decision<'a> {
    tenant: &'a Tenant,
    env: &'a Environment,
    now: DateTime<Utc>,
}

impl<'a> Decision<'a> {
    fn directory_user(&self, upn: &Upn) -> Result<&'a User, Rejection> {
        match self.tenant.live_user(upn, self.now) {
            Some(u) => Ok(u),
            None => invalid(format!("unknown user {upn}")),
        }
    }

    /// The record with this UPN: a directory user's, or a stub's or an
    /// application's by domainname.
    fn record(&self, upn: &Upn) -> Result<&'a SystemUser, Rejection> {
        let by_object = self.tenant.live_user(upn, self.now).and_then(|u| self.env.user_by_object(u.id));
        match by_object.or_else(|| self.env.users_named(upn.as_str()).next()) {
            Some(r) => Ok(r),
            None => invalid(format!("{upn} has no record in {}: add it first (env add-user)", self.env.name)),
        }
    }

    fn set(
        &self,
        group: Option<&Option<String>>,
        app_pass: Option<u32>,
        settings: &[(String, Option<String>)],
    ) -> Decided {
        let env = self.env;
        let mut events = Vec::new();
        if let Some(group) = group {
            let new = match group {
                Some(_) if matches!(env.env_type, Some(EnvType::Default | EnvType::Developer)) => {
                    let kind = env.env_type.map_or("", |t| t.cli_name());
                    return refuse(
                        Rule::E2,
                        format!("a {kind} environment cannot be tied to a security group"),
                    );
                }
                Some(name) => match self.tenant.group_named(name) {
                    Some(g) => Some(g.id),
                    None => return invalid(format!("unknown group {name}")),
                },
                None => None,
            };
            if new != env.security_group {
                events.push(EnvEvent::SecurityGroupChanged { old: env.security_group, new });
            }
        }
        if let Some(capacity) = app_pass.filter(|c| *c != env.app_pass) {
            events.push(EnvEvent::AppPassChanged { old: env.app_pass, new: capacity });
        }
        for (name, value) in settings {
            let known = [
                ALLOW_ROLE_ASSIGNMENT_ON_DISABLED,
                ALLOW_APP_USER_STATUS_CHANGE,
                SESSION_TIMEOUT,
                INACTIVITY_TIMEOUT,
            ];
            let Some(name) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
                return invalid(format!("unknown setting {name}: {}", known.join(", ")));
            };
            let old = env.settings.get(*name).cloned();
            if old != *value {
                events.push(EnvEvent::SettingChanged { name: (*name).to_owned(), old, new: value.clone() });
            }
        }
        Ok(events)
    }

    /// S9: the sync for one user, at once; not for stubs (T1.2).
    fn refresh(&self, upn: &Upn) -> Decided {
        if self.tenant.live_user(upn, self.now).is_none()
            && self.env.users_named(upn.as_str()).any(|r| r.kind == UserKind::Stub)
        {
            return refuse(
                Rule::T1_2,
                format!("{upn} is a stub user: Refresh user is not available for stub users"),
            );
        }
        let user = self.directory_user(upn)?;
        needs_database(self.env)?;
        Ok(sync_user(self.tenant, self.env, user, How::Refresh, self.now).1)
    }

    /// S5: an admin adds an entitled user on demand, or enables its record.
    fn add_user(&self, upn: &Upn) -> Decided {
        let user = self.directory_user(upn)?;
        needs_database(self.env)?;
        let (e, events) = sync_user(self.tenant, self.env, user, How::AdminAdd, self.now);
        if !e.may_add() {
            return not_entitled(user, self.env, &e);
        }
        Ok(events)
    }

    /// A1-A3: change a directory user's access mode; at most seven non-interactive.
    fn set_access_mode(&self, upn: &Upn, mode: AccessMode) -> Decided {
        let record = self.record(upn)?;
        match record.kind {
            UserKind::User => {}
            UserKind::Application => {
                return refuse(Rule::P1, format!("{upn} is an application user: always non-interactive"))
            }
            UserKind::Stub => {
                return refuse(Rule::T1_1, format!("{upn} is a stub user: it cannot sign in in any mode"))
            }
            UserKind::DelegatedAdmin | UserKind::Support => {
                return refuse(Rule::E5, format!("{upn} is a placeholder whose mode never changes"))
            }
        }
        if mode == AccessMode::DelegatedAdmin {
            return refuse(
                Rule::A1,
                "the delegated-admin mode belongs to the placeholder crmoln2@microsoft.com",
            );
        }
        if record.access_mode == mode {
            return Ok(vec![]);
        }
        if mode == AccessMode::NonInteractive && self.env.non_interactive_count() >= NON_INTERACTIVE_LIMIT {
            return refuse(
                Rule::A3,
                format!(
                    "environment '{}' already has {NON_INTERACTIVE_LIMIT} non-interactive users",
                    self.env.name
                ),
            );
        }
        Ok(vec![EnvEvent::AccessModeChanged { id: record.id, old: record.access_mode, new: mode }])
    }

    fn business_unit(&self, name: Option<&str>) -> Result<Uuid, Rejection> {
        match name {
            None => Ok(self.env.root_business_unit),
            Some(n) => match self.env.business_unit_named(n) {
                Some(bu) => Ok(bu.id),
                None => invalid(format!("unknown business unit {n} in {}", self.env.name)),
            },
        }
    }

    /// Whether `unit` is `ancestor` or below it (roles are inherited downwards, R1).
    fn within(&self, unit: Uuid, ancestor: Uuid) -> bool {
        let mut at = Some(unit);
        let mut steps = 0;
        while let Some(u) = at {
            if u == ancestor {
                return true;
            }
            steps += 1;
            at = self
                .env
                .business_units
                .get(&u)
                .and_then(|b| b.parent)
                .filter(|_| steps <= self.env.business_units.len());
        }
        false
    }

    /// P1: enabled at once, non-interactive, first name "#", not counted by A3.
    fn create_app_user(
        &self,
        app_id: Uuid,
        name: &str,
        business_unit: Option<&str>,
        roles: &[String],
    ) -> Decided {
        needs_database(self.env)?;
        let name = name.trim();
        if name.is_empty() {
            return invalid("an application user needs a name");
        }
        if self.env.user_by_application(app_id).is_some() {
            return invalid(format!(
                "application {app_id} already has an application user in {}",
                self.env.name
            ));
        }
        let unit = self.business_unit(business_unit)?;
        let id = derive_id(&[self.env.id.as_bytes(), b"application", app_id.as_bytes()]);
        let mut events = vec![EnvEvent::SystemUserAdded {
            id,
            kind: UserKind::Application,
            object_id: None,
            application_id: Some(app_id),
            domainname: name.to_owned(),
            columns: vec![
                (Column::FirstName, "#".into()),
                (Column::LastName, name.to_owned()),
                (Column::FullName, format!("# {name}")),
            ],
            access_mode: AccessMode::NonInteractive,
            is_licensed: false,
            is_disabled: false,
            business_unit: unit,
            added_by: AddedBy::AppUserCreate,
            entitlement: None,
        }];
        for role_name in roles {
            let Some(role) = self.env.role_named(role_name) else {
                return invalid(format!("unknown role {role_name} in {}", self.env.name));
            };
            if !self.within(unit, role.business_unit) {
                return refuse(
                    Rule::R1,
                    format!("role {} belongs to another business unit than the user's", role.name),
                );
            }
            events.push(EnvEvent::RoleAssigned { user: id, role: role.id });
        }
        Ok(events)
    }

    /// P2: only where the environment allows it; disabling says what breaks.
    fn set_app_user_status(&self, app_id: Uuid, enabled: bool, actor: &str) -> Decided {
        let Some(record) = self.env.user_by_application(app_id) else {
            return invalid(format!("application {app_id} has no application user in {}", self.env.name));
        };
        if !self.env.flag(ALLOW_APP_USER_STATUS_CHANGE) {
            return refuse(
                Rule::P2,
                format!(
                    "the status of application users cannot be changed in {}: set --setting {ALLOW_APP_USER_STATUS_CHANGE}=true first",
                    self.env.name
                ),
            );
        }
        if record.is_disabled != enabled {
            return Ok(vec![]);
        }
        Ok(vec![if enabled {
            EnvEvent::SystemUserEnabled { id: record.id, entitlement: None }
        } else {
            let reason = format!(
                "disabled by {actor}: every integration that uses application {app_id} ({}) stops working (P2)",
                record.domainname
            );
            EnvEvent::SystemUserDisabled { id: record.id, reason }
        }])
    }

    /// T1: stubs are disabled placeholders with a default role (T1.3).
    fn import_stubs(&self, rows: &[StubRow]) -> Decided {
        needs_database(self.env)?;
        if rows.is_empty() {
            return invalid("the import has no rows");
        }
        let default_role = if self.env.apps.contains(&App::Sales) { SALESPERSON } else { BASIC_USER };
        let Some(role) = self.env.role_named(default_role) else {
            return invalid(format!("{} has no {default_role} role to give stub users", self.env.name));
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut events = Vec::new();
        for row in rows {
            let key = row.domainname.to_lowercase();
            if !seen.insert(key.clone()) || self.env.users_named(&row.domainname).next().is_some() {
                return invalid(format!(
                    "line {}: {} already has a record in {}",
                    row.line, row.domainname, self.env.name
                ));
            }
            let id = derive_id(&[self.env.id.as_bytes(), b"stub", key.as_bytes()]);
            let first = if row.firstname.trim().is_empty() {
                "#".to_owned()
            } else {
                row.firstname.trim().to_owned()
            };
            let full = format!("{} {}", row.firstname.trim(), row.lastname.trim()).trim().to_owned();
            events.push(EnvEvent::SystemUserAdded {
                id,
                kind: UserKind::Stub,
                object_id: None,
                application_id: None,
                domainname: row.domainname.clone(),
                columns: vec![
                    (Column::FirstName, first),
                    (Column::LastName, row.lastname.trim().to_owned()),
                    (Column::FullName, full),
                ],
                access_mode: AccessMode::ReadWrite,
                is_licensed: false,
                is_disabled: true,
                business_unit: self.env.root_business_unit,
                added_by: AddedBy::Import,
                entitlement: None,
            });
            events.push(EnvEvent::RoleAssigned { user: id, role: role.id });
        }
        Ok(events)
    }

    /// T1.4: records can be reassigned, to enabled and disabled users alike.
    fn reassign(&self, from: &Upn, to: &Upn) -> Decided {
        let source = self.record(from)?;
        let target = self.record(to)?;
        if source.id == target.id {
            return invalid("records are reassigned to another user, not the same one");
        }
        Ok(vec![EnvEvent::RecordsReassigned { from: source.id, to: target.id }])
    }

    /// S6.3: a customer's own edit of the primary email.
    fn edit_email(&self, upn: &Upn, email: Option<&str>) -> Decided {
        let record = self.record(upn)?;
        let new = email.map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned);
        let old = record.column(Column::InternalEmailAddress).map(str::to_owned);
        if old == new && record.email_edited {
            return Ok(vec![]);
        }
        Ok(vec![EnvEvent::EmailEditedInEnvironment { id: record.id, old, new }])
    }
}

#[cfg(test)]
mod tests;
