//! The environment commands: create and configure environments (E1-E4),
//! on-demand adds and access (S5), Refresh user (S9), access modes (A1-A3),
//! application users (P1-P2) and stub users (T1).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::eligibility::{Eligibility, How};
use crate::environment::{
    self, Environment, Role, SystemUser, Team, ALLOW_APP_USER_STATUS_CHANGE,
    ALLOW_ROLE_ASSIGNMENT_ON_DISABLED, BASIC_USER, INACTIVITY_TIMEOUT, NON_INTERACTIVE_LIMIT, SALESPERSON,
    SESSION_TIMEOUT, SYSTEM_ADMINISTRATOR,
};
use crate::events::{
    AccessMode, AddedBy, App, Column, EnvEvent, EnvType, Level, ObservedUser, Operation, Privilege,
    TenantEvent, UserKind,
};
use crate::ids::{derive_id, Upn};
use crate::rules::{invalid, refuse, Rejection, Rule};
use crate::security;
use crate::sync::sync_user;
use crate::tenant::{authenticate, Tenant, User};

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
    /// Creates a business unit under a parent (the root by default) (R1).
    CreateBusinessUnit { id: Uuid, name: String, parent: Option<String> },
    /// Moves a user to another business unit (R1).
    SetBusinessUnit { upn: Upn, business_unit: String },
    /// Copies a role under a new name (R2).
    CopyRole { id: Uuid, from: String, name: String, business_unit: Option<String> },
    /// Sets a role's level on a table and operation (R2, R6).
    SetPrivilege { role: String, table: String, operation: Operation, level: Level },
    /// Gives a user a role (R1, R5, R6).
    AssignRole { upn: Upn, role: String },
    /// Takes a role from a user.
    RemoveRole { upn: Upn, role: String },
    /// Creates an owner team, or a group team tied to a directory group (R7).
    CreateTeam { id: Uuid, name: String, business_unit: Option<String>, group: Option<String> },
    /// Adds a user to an owner team.
    AddTeamMember { team: String, upn: Upn },
    /// Removes a user from an owner team.
    RemoveTeamMember { team: String, upn: Upn },
    /// Gives a team a role (R1, R6).
    AssignTeamRole { team: String, role: String },
    /// Takes a role from a team.
    RemoveTeamRole { team: String, role: String },
    /// Tests and enables a user's mailbox (O2).
    MailboxTestEnable { upn: Upn },
    /// Provisions unified routing, with a tenant admin's consent (O3).
    EnableUnifiedRouting,
    /// Tries to turn unified routing off: never possible once on (O3).
    DisableUnifiedRouting,
    /// Records what an export of the SystemUser table showed (issue 32).
    Observe { observed_at: DateTime<Utc>, rows: Vec<ObservedUser> },
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
            EnvCommand::CreateBusinessUnit { .. } => "bu create",
            EnvCommand::SetBusinessUnit { .. } => "user set-bu",
            EnvCommand::CopyRole { .. } => "role copy",
            EnvCommand::SetPrivilege { .. } => "role set-privilege",
            EnvCommand::AssignRole { .. } => "role assign",
            EnvCommand::RemoveRole { .. } => "role remove",
            EnvCommand::CreateTeam { .. } => "team create",
            EnvCommand::AddTeamMember { .. } => "team add-member",
            EnvCommand::RemoveTeamMember { .. } => "team remove-member",
            EnvCommand::AssignTeamRole { .. } => "team role assign",
            EnvCommand::RemoveTeamRole { .. } => "team role remove",
            EnvCommand::MailboxTestEnable { .. } => "mailbox test-enable",
            EnvCommand::EnableUnifiedRouting => "env unified-routing enable",
            EnvCommand::DisableUnifiedRouting => "env unified-routing disable",
            EnvCommand::Observe { .. } => "import systemusers",
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
            EnvCommand::SetBusinessUnit { upn, business_unit } => {
                vec![upn.to_string(), business_unit.clone()]
            }
            EnvCommand::AssignRole { upn, role } | EnvCommand::RemoveRole { upn, role } => {
                vec![upn.to_string(), role.clone()]
            }
            EnvCommand::MailboxTestEnable { upn } => vec![upn.to_string()],
            EnvCommand::AddTeamMember { team, upn } | EnvCommand::RemoveTeamMember { team, upn } => {
                vec![team.clone(), upn.to_string()]
            }
            EnvCommand::AssignTeamRole { team, role } | EnvCommand::RemoveTeamRole { team, role } => {
                vec![team.clone(), role.clone()]
            }
            EnvCommand::CreateBusinessUnit { name, .. }
            | EnvCommand::CopyRole { name, .. }
            | EnvCommand::CreateTeam { name, .. } => {
                vec![name.clone()]
            }
            EnvCommand::SetPrivilege { role, .. } => vec![role.clone()],
            EnvCommand::EnableUnifiedRouting
            | EnvCommand::DisableUnifiedRouting
            | EnvCommand::Observe { .. } => vec![],
        }
    }
}

type Decided = Result<Vec<EnvEvent>, Rejection>;

/// A name people type and read: not empty, no control characters (a newline
/// in a name would forge lines in every message that quotes it).
pub fn check_name<'a>(what: &str, name: &'a str) -> Result<&'a str, Rejection> {
    let name = name.trim();
    if name.is_empty() {
        return invalid(format!("{what} needs a name"));
    }
    if name.chars().any(char::is_control) {
        return invalid(format!("{what} name {name:?} holds a control character"));
    }
    Ok(name)
}

/// A2: environment administration takes a tenant admin role acting through
/// the admin center, or, in the environment, the System Administrator role or
/// Write on the systemuser table at Organization level (direct or through a team).
fn administer(env: &Environment, actor: &User, what: &str) -> Result<(), Rejection> {
    if Tenant::is_environment_admin(actor) {
        return Ok(());
    }
    let allowed = env.user_by_object(actor.id).filter(|r| !r.is_disabled).is_some_and(|r| {
        security::is_system_administrator(env, r)
            || security::level_of(&security::effective_privileges(env, r), "systemuser", Operation::Write)
                == Level::Organization
    });
    if allowed {
        return Ok(());
    }
    refuse(
        Rule::A2,
        format!(
            "{} may not {what} in {}: it takes the System Administrator role there (or Write on systemuser at Organization level), or a Global, Power Platform or Dynamics 365 Administrator role",
            actor.upn, env.name
        ),
    )
}

/// R6: the actor may grant only what it holds itself at the same or a higher
/// level; System Administrators and tenant admins may grant anything.
fn no_elevation<'a>(
    env: &Environment,
    actor: &User,
    privileges: impl IntoIterator<Item = (&'a (String, Operation), &'a Level)>,
    what: &str,
) -> Result<(), Rejection> {
    match security::elevation(env, actor, privileges) {
        None => Ok(()),
        Some(security::Elevation::NoRecord) => refuse(
            Rule::R6,
            format!("{} has no record in {} and holds no privileges to {what}", actor.upn, env.name),
        ),
        Some(security::Elevation::Short(s)) => refuse(
            Rule::R6,
            format!(
                "{} may not {what}: it needs {} on {} at {} level and holds {} (no elevation)",
                actor.upn,
                s.operation.cli_name(),
                s.table,
                s.needed.cli_name(),
                s.held.cli_name()
            ),
        ),
    }
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
    let name = check_name("an environment", &new.name)?;
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
            d.create_app_user(actor, *app_id, name, business_unit.as_deref(), roles)
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
        EnvCommand::CreateBusinessUnit { id, name, parent } => {
            administer(env, actor, "create business units")?;
            d.create_business_unit(*id, name, parent.as_deref())
        }
        EnvCommand::SetBusinessUnit { upn, business_unit } => {
            administer(env, actor, "move users between business units")?;
            d.set_business_unit(upn, business_unit)
        }
        EnvCommand::CopyRole { id, from, name, business_unit } => {
            administer(env, actor, "create roles")?;
            d.copy_role(*id, from, name, business_unit.as_deref())
        }
        EnvCommand::SetPrivilege { role, table, operation, level } => {
            administer(env, actor, "edit roles")?;
            d.set_privilege(actor, role, table, *operation, *level)
        }
        EnvCommand::AssignRole { upn, role } => {
            administer(env, actor, "assign roles")?;
            d.assign_role(actor, upn, role)
        }
        EnvCommand::RemoveRole { upn, role } => {
            administer(env, actor, "remove roles")?;
            d.remove_role(upn, role)
        }
        EnvCommand::CreateTeam { id, name, business_unit, group } => {
            administer(env, actor, "create teams")?;
            d.create_team(*id, name, business_unit.as_deref(), group.as_deref())
        }
        EnvCommand::AddTeamMember { team, upn } => {
            administer(env, actor, "change teams")?;
            d.team_member(actor, team, upn, true)
        }
        EnvCommand::RemoveTeamMember { team, upn } => {
            administer(env, actor, "change teams")?;
            d.team_member(actor, team, upn, false)
        }
        EnvCommand::AssignTeamRole { team, role } => {
            administer(env, actor, "assign roles")?;
            d.team_role(actor, team, role, true)
        }
        EnvCommand::RemoveTeamRole { team, role } => {
            administer(env, actor, "remove roles")?;
            d.team_role(actor, team, role, false)
        }
        EnvCommand::MailboxTestEnable { upn } => {
            administer(env, actor, "enable mailboxes")?;
            d.mailbox(upn)
        }
        EnvCommand::EnableUnifiedRouting => d.enable_unified_routing(actor),
        EnvCommand::DisableUnifiedRouting => {
            if env.unified_routing {
                return refuse(
                    Rule::O3,
                    format!(
                        "unified routing in {} is on and cannot be turned off from the application",
                        env.name
                    ),
                );
            }
            invalid(format!("unified routing is not on in {}", env.name))
        }
        EnvCommand::Observe { observed_at, rows } => {
            administer(env, actor, "import its SystemUser table")?;
            needs_database(env)?;
            Ok(crate::reality::observe(env, rows, *observed_at).into_iter().collect())
        }
    }
}

/// The refusal of a user who is not entitled to `what` (access, be added to)
/// the environment: the first failing rule, every failing check.
fn not_entitled(user: &User, env: &Environment, e: &Eligibility, what: &str) -> Decided {
    let rule = e.failing().next().map_or(Rule::S5, |c| c.rule);
    refuse(rule, format!("{} cannot {what} {}: {}", user.upn, env.name, e.failing_summary()))
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
        if !record.reach().web {
            return refuse(
                Rule::A6,
                format!("{upn} is non-interactive in {}: it reaches data through the API only, not the web interface", env.name),
            );
        }
    }
    needs_database(env)?;
    let (e, events) = sync_user(tenant, env, user, How::Access, now);
    if !e.may_add() {
        return not_entitled(user, env, &e, "access");
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
        if self.tenant.live_user(upn, self.now).is_none()
            && self.env.users_named(upn.as_str()).any(|r| r.kind == UserKind::Stub)
        {
            return refuse(Rule::T1_1, format!("{upn} is a stub user: it cannot be enabled or synchronized"));
        }
        let user = self.directory_user(upn)?;
        needs_database(self.env)?;
        let (e, events) = sync_user(self.tenant, self.env, user, How::AdminAdd, self.now);
        if !e.may_add() {
            return not_entitled(user, self.env, &e, "be added to");
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
        if mode == AccessMode::NonInteractive && self.env.non_interactive().count() >= NON_INTERACTIVE_LIMIT {
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

    /// P1: enabled at once, non-interactive, first name "#", not counted by A3.
    fn create_app_user(
        &self,
        actor: &User,
        app_id: Uuid,
        name: &str,
        business_unit: Option<&str>,
        roles: &[String],
    ) -> Decided {
        needs_database(self.env)?;
        let name = check_name("an application user", name)?;
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
            if !self.env.within(unit, role.business_unit) {
                return refuse(
                    Rule::R1,
                    format!("role {} belongs to another business unit than the user's", role.name),
                );
            }
            // An application user's roles are roles the actor gives: no elevation (R6).
            no_elevation(
                self.env,
                actor,
                &role.privileges,
                &format!("give application user {name} the role {}", role.name),
            )?;
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

    fn role(&self, name: &str) -> Result<&'a Role, Rejection> {
        match self.env.role_named(name) {
            Some(r) => Ok(r),
            None => invalid(format!("unknown role {name} in {}", self.env.name)),
        }
    }

    fn team(&self, name: &str) -> Result<&'a Team, Rejection> {
        match self.env.team_named(name) {
            Some(t) => Ok(t),
            None => invalid(format!("unknown team {name} in {}", self.env.name)),
        }
    }

    /// R1: names are unique among siblings; the tree only grows under existing units.
    fn create_business_unit(&self, id: Uuid, name: &str, parent: Option<&str>) -> Decided {
        let name = check_name("a business unit", name)?;
        let parent = self.business_unit(parent)?;
        let sibling = self
            .env
            .business_units
            .values()
            .any(|b| b.parent == Some(parent) && b.name.eq_ignore_ascii_case(name));
        if sibling
            || self
                .env
                .business_units
                .get(&parent)
                .is_some_and(|p| p.name.eq_ignore_ascii_case(name) && p.parent.is_none())
        {
            let parent_name = self.env.business_units.get(&parent).map_or("", |b| b.name.as_str());
            return refuse(
                Rule::R1,
                format!("a business unit named {name} already exists under {parent_name}"),
            );
        }
        Ok(vec![EnvEvent::BusinessUnitCreated { id, name: name.to_owned(), parent: Some(parent) }])
    }

    /// R1: one business unit per user; direct roles that the new unit cannot
    /// hold (neither its own nor inherited from above) are removed.
    fn set_business_unit(&self, upn: &Upn, business_unit: &str) -> Decided {
        let record = self.record(upn)?;
        let unit = self.business_unit(Some(business_unit))?;
        if record.business_unit == unit {
            return Ok(vec![]);
        }
        let mut events =
            vec![EnvEvent::UserBusinessUnitChanged { user: record.id, old: record.business_unit, new: unit }];
        for role in record.roles.iter().filter_map(|r| self.env.roles.get(r)) {
            if !self.env.within(unit, role.business_unit) {
                events.push(EnvEvent::RoleRemoved { user: record.id, role: role.id });
            }
        }
        Ok(events)
    }

    /// R2: new roles are copies of existing ones under a new name.
    fn copy_role(&self, id: Uuid, from: &str, name: &str, business_unit: Option<&str>) -> Decided {
        let source = self.role(from)?;
        let name = check_name("a role", name)?;
        let unit = self.business_unit(business_unit)?;
        if self.env.roles.values().any(|r| r.business_unit == unit && r.name.eq_ignore_ascii_case(name)) {
            return invalid(format!("a role named {name} exists already in that business unit"));
        }
        let privileges = source
            .privileges
            .iter()
            .map(|((table, operation), level)| Privilege {
                table: table.clone(),
                operation: *operation,
                level: *level,
            })
            .collect();
        Ok(vec![EnvEvent::RoleCreated {
            id,
            name: name.to_owned(),
            business_unit: unit,
            privileges,
            app_access: source.app_access,
        }])
    }

    /// R2 and R6: an actor edits a privilege only up to the level it holds.
    fn set_privilege(
        &self,
        actor: &User,
        role: &str,
        table: &str,
        operation: Operation,
        level: Level,
    ) -> Decided {
        let role = self.role(role)?;
        let table = table.trim().to_lowercase();
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return invalid(format!("'{table}' is not a table's logical name"));
        }
        if role.name == SYSTEM_ADMINISTRATOR && role.business_unit == self.env.root_business_unit {
            return refuse(Rule::R2, "the System Administrator role cannot be edited");
        }
        let key = (table.clone(), operation);
        no_elevation(
            self.env,
            actor,
            [(&key, &level)],
            &format!("set {} on {table} to {} in {}", operation.cli_name(), level.cli_name(), role.name),
        )?;
        let old = role.privileges.get(&key).copied().unwrap_or(Level::None);
        if old == level {
            return Ok(vec![]);
        }
        Ok(vec![EnvEvent::RolePrivilegeSet { role: role.id, table, operation, old, new: level }])
    }

    /// R1, R5, R6: a role of the user's unit (or above), to an enabled user
    /// unless the environment allows otherwise, and only what the actor holds.
    fn assign_role(&self, actor: &User, upn: &Upn, role: &str) -> Decided {
        let record = self.record(upn)?;
        let role = self.role(role)?;
        if matches!(record.kind, UserKind::DelegatedAdmin | UserKind::Support) {
            return refuse(Rule::E5, format!("{upn} is a placeholder whose roles never change"));
        }
        if !self.env.within(record.business_unit, role.business_unit) {
            let unit = self.env.business_units.get(&record.business_unit).map_or("?", |b| b.name.as_str());
            return refuse(
                Rule::R1,
                format!("role {} belongs to another business unit than {upn}'s ({unit})", role.name),
            );
        }
        if record.is_disabled && !self.env.flag(ALLOW_ROLE_ASSIGNMENT_ON_DISABLED) {
            return refuse(
                Rule::R5,
                format!("{upn} is disabled in {}: roles go to enabled users unless {ALLOW_ROLE_ASSIGNMENT_ON_DISABLED} is on", self.env.name),
            );
        }
        no_elevation(self.env, actor, &role.privileges, &format!("assign {}", role.name))?;
        if record.roles.contains(&role.id) {
            return Ok(vec![]);
        }
        Ok(vec![EnvEvent::RoleAssigned { user: record.id, role: role.id }])
    }

    fn remove_role(&self, upn: &Upn, role: &str) -> Decided {
        let record = self.record(upn)?;
        let role = self.role(role)?;
        if !record.roles.contains(&role.id) {
            let through = self.env.teams_of(record.id).find(|t| t.roles.contains(&role.id));
            return invalid(match through {
                Some(team) => {
                    format!("{upn} holds {} through team {}: remove it from the team", role.name, team.name)
                }
                None => format!("{upn} does not hold {}", role.name),
            });
        }
        Ok(vec![EnvEvent::RoleRemoved { user: record.id, role: role.id }])
    }

    /// R7: owner teams, and group teams that follow a directory group.
    fn create_team(&self, id: Uuid, name: &str, business_unit: Option<&str>, group: Option<&str>) -> Decided {
        let name = check_name("a team", name)?;
        if let Some(existing) = self.env.team_named(name) {
            return invalid(format!("a team named {} exists already in {}", existing.name, self.env.name));
        }
        let unit = self.business_unit(business_unit)?;
        let group = match group {
            None => None,
            Some(g) => match self.tenant.group_named(g) {
                Some(group) => Some(group.id),
                None => return invalid(format!("unknown group {g}")),
            },
        };
        Ok(vec![EnvEvent::TeamCreated { id, name: name.to_owned(), business_unit: unit, group }])
    }

    fn team_member(&self, actor: &User, team: &str, upn: &Upn, add: bool) -> Decided {
        let team = self.team(team)?;
        if let Some(group) = team.group.and_then(|g| self.tenant.groups.get(&g)) {
            return refuse(
                Rule::R7,
                format!(
                    "{} is a group team: its members follow the directory group {}; change the group instead",
                    team.name, group.name
                ),
            );
        }
        let record = self.record(upn)?;
        if !matches!(record.kind, UserKind::User | UserKind::Application) {
            return invalid(format!("{upn} cannot be a team member"));
        }
        // Joining a team hands its roles over: the actor must hold them (R6).
        if add && !team.members.contains(&record.id) {
            for role in team.roles.iter().filter_map(|r| self.env.roles.get(r)) {
                no_elevation(
                    self.env,
                    actor,
                    &role.privileges,
                    &format!("add {upn} to team {} (role {})", team.name, role.name),
                )?;
            }
        }
        match (add, team.members.contains(&record.id)) {
            (true, true) => Ok(vec![]),
            (true, false) => Ok(vec![EnvEvent::TeamMemberAdded { team: team.id, user: record.id }]),
            (false, true) => Ok(vec![EnvEvent::TeamMemberRemoved { team: team.id, user: record.id }]),
            (false, false) => invalid(format!("{upn} is not a member of {}", team.name)),
        }
    }

    fn team_role(&self, actor: &User, team: &str, role: &str, add: bool) -> Decided {
        let team = self.team(team)?;
        let role = self.role(role)?;
        if !add {
            if !team.roles.contains(&role.id) {
                return invalid(format!("team {} does not hold {}", team.name, role.name));
            }
            return Ok(vec![EnvEvent::TeamRoleRemoved { team: team.id, role: role.id }]);
        }
        if !self.env.within(team.business_unit, role.business_unit) {
            return refuse(
                Rule::R1,
                format!("role {} belongs to another business unit than team {}'s", role.name, team.name),
            );
        }
        no_elevation(
            self.env,
            actor,
            &role.privileges,
            &format!("assign {} to team {}", role.name, team.name),
        )?;
        if team.roles.contains(&role.id) {
            return Ok(vec![]);
        }
        Ok(vec![EnvEvent::TeamRoleAssigned { team: team.id, role: role.id }])
    }

    /// O2: the test is scheduled, then the mailbox is enabled.
    fn mailbox(&self, upn: &Upn) -> Decided {
        let record = self.record(upn)?;
        if record.kind != UserKind::User {
            return invalid(format!("{upn} has no mailbox: only users do"));
        }
        if record.is_disabled {
            return refuse(
                Rule::O2,
                format!("{upn} is disabled in {}: enable the user before its mailbox", self.env.name),
            );
        }
        if record.mailbox_enabled {
            return Ok(vec![]);
        }
        Ok(vec![
            EnvEvent::MailboxTestScheduled { user: record.id },
            EnvEvent::MailboxEnabled { user: record.id },
        ])
    }

    /// O3: provisioning needs a tenant admin's consent; it never turns off.
    fn enable_unified_routing(&self, actor: &User) -> Decided {
        needs_database(self.env)?;
        if !Tenant::is_environment_admin(actor) {
            return refuse(
                Rule::O3,
                format!("provisioning unified routing in {} needs the consent of a Global, Power Platform or Dynamics 365 Administrator; {} is none", self.env.name, actor.upn),
            );
        }
        if self.env.unified_routing {
            return Ok(vec![]);
        }
        Ok(vec![EnvEvent::UnifiedRoutingEnabled { consented_by: actor.id }])
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
