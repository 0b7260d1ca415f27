//! The environment aggregate's state: settings, business units, roles and
//! the SystemUser table, folded from the environment's own stream.
//!
//! Deciding lives beside it: [`crate::eligibility`] (who is entitled),
//! [`crate::sync`] (what a sync pass or an on-demand add writes) and
//! [`crate::envcmd`] (the environment commands).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{
    AccessMode, AddedBy, App, Column, Entitlement, EnvEvent, EnvType, Level, ObservedUser, Operation,
    Privilege, Stamp, UserKind,
};
use crate::ids::derive_id;

/// What every environment stream's name starts with.
pub const STREAM_PREFIX: &str = "env/";

/// The stream that holds one environment's events.
pub fn stream(id: Uuid) -> String {
    format!("{STREAM_PREFIX}{id}")
}

/// UPN of the delegated-admin placeholder (E5).
pub const DELEGATED_ADMIN_UPN: &str = "crmoln2@microsoft.com";
/// UPN of the support placeholder (E5).
pub const SUPPORT_UPN: &str = "crmoln@microsoft.com";
/// The role that may do anything (R6).
pub const SYSTEM_ADMINISTRATOR: &str = "System Administrator";
/// The default role of stubs outside Sales (T1.3).
pub const BASIC_USER: &str = "Basic User";
/// The default role of stubs where Sales is installed (T1.3).
pub const SALESPERSON: &str = "Salesperson";
/// The most non-interactive users an environment holds (A3).
pub const NON_INTERACTIVE_LIMIT: usize = 7;

/// Setting: roles may be assigned to disabled users (E4, R5).
pub const ALLOW_ROLE_ASSIGNMENT_ON_DISABLED: &str = "allowRoleAssignmentOnDisabledUsers";
/// Setting: application users' status may be changed (E4, P2).
pub const ALLOW_APP_USER_STATUS_CHANGE: &str = "allowApplicationUserStatusChange";
/// Setting: session timeout (O1).
pub const SESSION_TIMEOUT: &str = "sessionTimeout";
/// Setting: inactivity timeout (O1).
pub const INACTIVITY_TIMEOUT: &str = "inactivityTimeout";

/// The tables that default roles grant privileges on.
pub const CORE_TABLES: [&str; 10] = [
    "account",
    "contact",
    "lead",
    "opportunity",
    "incident",
    "activitypointer",
    "systemuser",
    "team",
    "businessunit",
    "role",
];

/// An environment as of some point in its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Its id (its stream is `env/<id>`).
    pub id: Uuid,
    /// Its name, unique in the tenant.
    pub name: String,
    /// Its type (E1).
    pub env_type: Option<EnvType>,
    /// Whether it has a Dataverse database (E1).
    pub dataverse: bool,
    /// The security group that gates it (E2).
    pub security_group: Option<Uuid>,
    /// App-pass capacity (E3).
    pub app_pass: u32,
    /// Installed apps (E3).
    pub apps: BTreeSet<App>,
    /// The directory user who created it.
    pub creator: Uuid,
    /// Settings by name (E4, O1).
    pub settings: BTreeMap<String, String>,
    /// The root business unit (R1).
    pub root_business_unit: Uuid,
    /// Business units by id.
    pub business_units: BTreeMap<Uuid, BusinessUnit>,
    /// Security roles by id.
    pub roles: BTreeMap<Uuid, Role>,
    /// The SystemUser table, by systemuserid.
    #[serde(deserialize_with = "crate::bulk::map")]
    pub users: BTreeMap<Uuid, SystemUser>,
    /// Teams by id (R7).
    pub teams: BTreeMap<Uuid, Team>,
    /// Unified routing is provisioned (O3).
    pub unified_routing: bool,
    /// The records that last changed the environment's own settings.
    pub evidence: EnvEvidence,
    /// What the last export of its SystemUser table showed: an observation,
    /// apart from the state the rules derive (issue 32).
    pub observed: Observed,
    /// Directory object id to systemuserid: sync looks every user up.
    #[serde(deserialize_with = "crate::bulk::map")]
    by_object: BTreeMap<Uuid, Uuid>,
    /// Enabled records entitled by the app-pass capacity, keyed by (enabled at, id).
    app_pass_holders: BTreeMap<Uuid, (u64, Uuid)>,
}

/// The SystemUser table as exports showed it, by the environment's own systemuserid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// When the export that last changed it was taken (`None`: never observed).
    pub at: Option<DateTime<Utc>>,
    /// The record that holds that export.
    pub seq: u64,
    /// The rows.
    pub users: BTreeMap<Uuid, ObservedUser>,
}

/// Log positions behind an environment's own facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEvidence {
    /// Its creation, or the last change of its type or database.
    pub created: u64,
    /// The last change of its security group.
    pub security_group: u64,
    /// The last change of its app-pass capacity.
    pub app_pass: u64,
}

/// A business unit (R1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessUnit {
    /// Its id.
    pub id: Uuid,
    /// Its name, unique among its siblings.
    pub name: String,
    /// Its parent; the root has none.
    pub parent: Option<Uuid>,
}

/// A security role (R2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The business unit it belongs to.
    pub business_unit: Uuid,
    /// Its privileges: the level of each table and operation it grants.
    pub privileges: BTreeMap<(String, Operation), Level>,
    /// An app-access role: grants no data privileges (S8).
    pub app_access: bool,
}

/// A team (R7): an owner team, or a group team that follows a directory group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// Its id.
    pub id: Uuid,
    /// Its name, unique in the environment.
    pub name: String,
    /// Its business unit.
    pub business_unit: Uuid,
    /// The directory group it follows, for a group team.
    pub group: Option<Uuid>,
    /// Members (systemuserids).
    pub members: BTreeSet<Uuid>,
    /// Roles its members get.
    pub roles: BTreeSet<Uuid>,
    /// The last record that added or removed each member.
    pub member_changes: BTreeMap<Uuid, u64>,
    /// The last record that gave or took each role.
    pub role_changes: BTreeMap<Uuid, u64>,
}

/// A SystemUser record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemUser {
    /// systemuserid
    pub id: Uuid,
    /// What kind of record it is.
    pub kind: UserKind,
    /// azureactivedirectoryobjectid: the directory user.
    pub object_id: Option<Uuid>,
    /// applicationid, for application users.
    pub application_id: Option<Uuid>,
    /// domainname: the UPN (or the application's name).
    pub domainname: String,
    /// Synchronized columns (S6).
    pub columns: BTreeMap<Column, String>,
    /// A customer edited internalemailaddress here: sync never writes it again (S6.3).
    pub email_edited: bool,
    /// isdisabled
    pub is_disabled: bool,
    /// accessmode (A1)
    pub access_mode: AccessMode,
    /// islicensed
    pub is_licensed: bool,
    /// The user's business unit (R1).
    pub business_unit: Uuid,
    /// Directly assigned roles.
    pub roles: BTreeSet<Uuid>,
    /// How the record came to be.
    pub added_by: AddedBy,
    /// What entitled it when it was last added or enabled.
    pub entitlement: Option<Entitlement>,
    /// Its mailbox is enabled for email processing (O2).
    pub mailbox_enabled: bool,
    /// A setup user: sync chose its Administrative mode (S3), not an admin,
    /// so the mode does not keep it entitled (A4 is for modes admins set).
    pub setup_user: bool,
    /// The records behind its state.
    pub evidence: SystemUserEvidence,
}

/// Log positions behind a SystemUser record's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemUserEvidence {
    /// Its creation.
    pub added: u64,
    /// The last enable or disable.
    pub status: u64,
    /// The last access-mode change (or the creation).
    pub access_mode: u64,
    /// The last assignment or removal of each role.
    pub roles: BTreeMap<Uuid, u64>,
    /// The last change of its business unit (or the creation).
    pub business_unit: u64,
}

/// What a record's access mode lets it reach (A5, A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// Signs in to the web interface and admin portals.
    pub web: bool,
    /// Calls the API.
    pub api: bool,
    /// Touches data at all (its roles' privileges apply).
    pub data: bool,
    /// Writes data (its roles' write privileges apply).
    pub write: bool,
}

impl Reach {
    /// What `mode` lets a record reach (A5, A6).
    pub fn of(mode: AccessMode) -> Reach {
        match mode {
            AccessMode::ReadWrite | AccessMode::DelegatedAdmin | AccessMode::SupportUser => {
                Reach { web: true, api: true, data: true, write: true }
            }
            AccessMode::Administrative => Reach { web: true, api: true, data: false, write: false },
            AccessMode::Read => Reach { web: true, api: true, data: true, write: false },
            AccessMode::NonInteractive => Reach { web: false, api: true, data: true, write: true },
        }
    }
}

impl SystemUser {
    /// What the access mode lets this record reach: Administrative users get
    /// no data whatever their roles (A5); non-interactive ones no web sign-in (A6).
    pub fn reach(&self) -> Reach {
        Reach::of(self.access_mode)
    }

    /// A column's value.
    pub fn column(&self, column: Column) -> Option<&str> {
        self.columns.get(&column).map(String::as_str)
    }

    /// A directory user's record (not an application, stub or placeholder).
    pub fn is_directory_user(&self) -> bool {
        self.kind == UserKind::User
    }
}

impl Environment {
    /// Whether the environment exists (its creation has been folded).
    pub fn exists(&self) -> bool {
        self.env_type.is_some()
    }

    /// The record of a directory user, by object id.
    pub fn user_by_object(&self, object_id: Uuid) -> Option<&SystemUser> {
        self.by_object.get(&object_id).and_then(|id| self.users.get(id))
    }

    /// The record of an application user, by application id.
    pub fn user_by_application(&self, app_id: Uuid) -> Option<&SystemUser> {
        self.users.values().find(|u| u.application_id == Some(app_id))
    }

    /// Records with this domainname, compared case-insensitively.
    pub fn users_named(&self, domainname: &str) -> impl Iterator<Item = &SystemUser> + '_ {
        let name = domainname.to_owned();
        self.users.values().filter(move |u| u.domainname.eq_ignore_ascii_case(&name))
    }

    /// A role by name (case-insensitive), preferring the root business unit's.
    pub fn role_named(&self, name: &str) -> Option<&Role> {
        let mut matching = self.roles.values().filter(|r| r.name.eq_ignore_ascii_case(name));
        let first = matching.next()?;
        Some(
            std::iter::once(first)
                .chain(matching)
                .find(|r| r.business_unit == self.root_business_unit)
                .unwrap_or(first),
        )
    }

    /// A team by name (case-insensitive).
    pub fn team_named(&self, name: &str) -> Option<&Team> {
        self.teams.values().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The teams a record belongs to.
    pub fn teams_of(&self, user: Uuid) -> impl Iterator<Item = &Team> {
        self.teams.values().filter(move |t| t.members.contains(&user))
    }

    /// Whether `unit` is `ancestor` or below it: roles are inherited by child units (R1).
    pub fn within(&self, unit: Uuid, ancestor: Uuid) -> bool {
        let mut at = Some(unit);
        for _ in 0..=self.business_units.len() {
            match at {
                Some(u) if u == ancestor => return true,
                Some(u) => at = self.business_units.get(&u).and_then(|b| b.parent),
                None => return false,
            }
        }
        false
    }

    /// A business unit by name (case-insensitive).
    pub fn business_unit_named(&self, name: &str) -> Option<&BusinessUnit> {
        self.business_units.values().find(|b| b.name.eq_ignore_ascii_case(name))
    }

    /// A setting's value as a boolean (unset: false).
    pub fn flag(&self, name: &str) -> bool {
        self.settings.get(name).is_some_and(|v| v == "true")
    }

    /// Non-interactive directory users, enabled or not (A3); application
    /// users and placeholders do not count.
    pub fn non_interactive(&self) -> impl Iterator<Item = &SystemUser> {
        self.users
            .values()
            .filter(|u| u.kind == UserKind::User && u.access_mode == AccessMode::NonInteractive)
    }

    /// Enabled records entitled by the app-pass capacity, earliest first.
    pub fn app_pass_holders(&self) -> Vec<&SystemUser> {
        let mut keys: Vec<&(u64, Uuid)> = self.app_pass_holders.values().collect();
        keys.sort();
        keys.into_iter().filter_map(|(_, id)| self.users.get(id)).collect()
    }

    /// Keeps the indexes true for one record after an event touched it.
    fn reindex(&mut self, id: Uuid) {
        let Some(u) = self.users.get(&id) else { return };
        if u.kind == UserKind::User {
            if let Some(object) = u.object_id {
                self.by_object.insert(object, id);
            }
        }
        if !u.is_disabled && u.entitlement == Some(Entitlement::AppPass) {
            let key = (u.evidence.status, id);
            self.app_pass_holders.insert(id, key);
        } else {
            self.app_pass_holders.remove(&id);
        }
    }

    /// Enabled records entitled by the app-pass capacity, other than `except`.
    pub fn app_pass_in_use(&self, except: Option<Uuid>) -> u32 {
        self.app_pass_holders().iter().filter(|u| Some(u.id) != except).count() as u32
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &EnvEvent, stamp: Stamp) {
        self.fold(event, stamp);
        if let EnvEvent::SystemUserAdded { id, .. }
        | EnvEvent::SystemUserEnabled { id, .. }
        | EnvEvent::SystemUserDisabled { id, .. }
        | EnvEvent::EntitlementChanged { id, .. } = event
        {
            self.reindex(*id);
        }
    }

    fn fold(&mut self, event: &EnvEvent, stamp: Stamp) {
        let seq = stamp.seq;
        match event {
            EnvEvent::EnvironmentCreated {
                id,
                name,
                env_type,
                dataverse,
                security_group,
                app_pass,
                apps,
                creator,
            } => {
                self.id = *id;
                self.name = name.clone();
                self.env_type = Some(*env_type);
                self.dataverse = *dataverse;
                self.security_group = *security_group;
                self.app_pass = *app_pass;
                self.apps = apps.iter().copied().collect();
                self.creator = *creator;
                self.evidence = EnvEvidence { created: seq, security_group: seq, app_pass: seq };
            }
            EnvEvent::SecurityGroupChanged { new, .. } => {
                self.security_group = *new;
                self.evidence.security_group = seq;
            }
            EnvEvent::AppPassChanged { new, .. } => {
                self.app_pass = *new;
                self.evidence.app_pass = seq;
            }
            EnvEvent::SettingChanged { name, new, .. } => match new {
                Some(v) => {
                    self.settings.insert(name.clone(), v.clone());
                }
                None => {
                    self.settings.remove(name);
                }
            },
            EnvEvent::BusinessUnitCreated { id, name, parent } => {
                if parent.is_none() {
                    self.root_business_unit = *id;
                }
                self.business_units
                    .insert(*id, BusinessUnit { id: *id, name: name.clone(), parent: *parent });
            }
            EnvEvent::RoleCreated { id, name, business_unit, privileges, app_access } => {
                let role = Role {
                    id: *id,
                    name: name.clone(),
                    business_unit: *business_unit,
                    privileges: privileges
                        .iter()
                        .map(|p| ((p.table.clone(), p.operation), p.level))
                        .collect(),
                    app_access: *app_access,
                };
                self.roles.insert(*id, role);
            }
            EnvEvent::SystemUserAdded {
                id,
                kind,
                object_id,
                application_id,
                domainname,
                columns,
                access_mode,
                is_licensed,
                is_disabled,
                business_unit,
                added_by,
                entitlement,
            } => {
                let record = SystemUser {
                    id: *id,
                    kind: *kind,
                    object_id: *object_id,
                    application_id: *application_id,
                    domainname: domainname.clone(),
                    columns: columns.iter().cloned().collect(),
                    email_edited: false,
                    is_disabled: *is_disabled,
                    access_mode: *access_mode,
                    is_licensed: *is_licensed,
                    business_unit: *business_unit,
                    roles: BTreeSet::new(),
                    added_by: *added_by,
                    entitlement: entitlement.clone(),
                    mailbox_enabled: false,
                    setup_user: *access_mode == AccessMode::Administrative
                        && *added_by != AddedBy::Placeholder,
                    evidence: SystemUserEvidence {
                        added: seq,
                        status: seq,
                        access_mode: seq,
                        roles: BTreeMap::new(),
                        business_unit: seq,
                    },
                };
                self.users.insert(*id, record);
            }
            EnvEvent::SystemUserUpdated { id, changes } => self.with_user(id, |u| {
                for change in changes {
                    match &change.new {
                        Some(v) => u.columns.insert(change.column, v.clone()),
                        None => u.columns.remove(&change.column),
                    };
                }
            }),
            EnvEvent::SystemUserEnabled { id, entitlement } => self.with_user(id, |u| {
                u.is_disabled = false;
                u.entitlement = entitlement.clone();
                u.evidence.status = seq;
            }),
            EnvEvent::SystemUserDisabled { id, .. } => self.with_user(id, |u| {
                u.is_disabled = true;
                u.evidence.status = seq;
            }),
            EnvEvent::LicensedChanged { id, is_licensed } => {
                self.with_user(id, |u| u.is_licensed = *is_licensed)
            }
            EnvEvent::AccessModeChanged { id, new, .. } => self.with_user(id, |u| {
                u.access_mode = *new;
                u.setup_user = false;
                u.evidence.access_mode = seq;
            }),
            EnvEvent::SetupModeChanged { id, new, .. } => self.with_user(id, |u| {
                u.access_mode = *new;
                u.setup_user = *new == AccessMode::Administrative;
                u.evidence.access_mode = seq;
            }),
            EnvEvent::EntitlementChanged { id, new, .. } => {
                self.with_user(id, |u| u.entitlement = new.clone())
            }
            EnvEvent::RoleAssigned { user, role } => self.with_user(user, |u| {
                u.roles.insert(*role);
                u.evidence.roles.insert(*role, seq);
            }),
            EnvEvent::RoleRemoved { user, role } => self.with_user(user, |u| {
                u.roles.remove(role);
                u.evidence.roles.insert(*role, seq);
            }),
            EnvEvent::EmailEditedInEnvironment { id, new, .. } => self.with_user(id, |u| {
                u.email_edited = true;
                match new {
                    Some(v) => u.columns.insert(Column::InternalEmailAddress, v.clone()),
                    None => u.columns.remove(&Column::InternalEmailAddress),
                };
            }),
            EnvEvent::RecordsReassigned { .. } | EnvEvent::MailboxTestScheduled { .. } => {}
            EnvEvent::UserBusinessUnitChanged { user, new, .. } => self.with_user(user, |u| {
                u.business_unit = *new;
                u.evidence.business_unit = seq;
            }),
            EnvEvent::RolePrivilegeSet { role, table, operation, new, .. } => {
                if let Some(r) = self.roles.get_mut(role) {
                    match new {
                        Level::None => r.privileges.remove(&(table.clone(), *operation)),
                        level => r.privileges.insert((table.clone(), *operation), *level),
                    };
                }
            }
            EnvEvent::TeamCreated { id, name, business_unit, group } => {
                let team = Team {
                    id: *id,
                    name: name.clone(),
                    business_unit: *business_unit,
                    group: *group,
                    members: BTreeSet::new(),
                    roles: BTreeSet::new(),
                    member_changes: BTreeMap::new(),
                    role_changes: BTreeMap::new(),
                };
                self.teams.insert(*id, team);
            }
            EnvEvent::TeamMemberAdded { team, user } => self.with_team(team, |t| {
                t.members.insert(*user);
                t.member_changes.insert(*user, seq);
            }),
            EnvEvent::TeamMemberRemoved { team, user } => self.with_team(team, |t| {
                t.members.remove(user);
                t.member_changes.insert(*user, seq);
            }),
            EnvEvent::TeamRoleAssigned { team, role } => self.with_team(team, |t| {
                t.roles.insert(*role);
                t.role_changes.insert(*role, seq);
            }),
            EnvEvent::TeamRoleRemoved { team, role } => self.with_team(team, |t| {
                t.roles.remove(role);
                t.role_changes.insert(*role, seq);
            }),
            EnvEvent::MailboxEnabled { user } => self.with_user(user, |u| u.mailbox_enabled = true),
            EnvEvent::UnifiedRoutingEnabled { .. } => self.unified_routing = true,
            EnvEvent::EnvironmentTypeChanged { new, .. } => {
                self.env_type = Some(*new);
                self.evidence.created = seq;
            }
            EnvEvent::DataverseAdded => {
                self.dataverse = true;
                self.evidence.created = seq;
            }
            EnvEvent::SystemUsersObserved { observed_at, rows, gone } => {
                let observed = &mut self.observed;
                for id in gone {
                    observed.users.remove(id);
                }
                observed.users.extend(rows.iter().map(|row| (row.id, row.clone())));
                observed.at = Some(*observed_at);
                observed.seq = seq;
            }
        }
    }

    fn with_team(&mut self, id: &Uuid, f: impl FnOnce(&mut Team)) {
        if let Some(t) = self.teams.get_mut(id) {
            f(t);
        }
    }

    fn with_user(&mut self, id: &Uuid, f: impl FnOnce(&mut SystemUser)) {
        if let Some(u) = self.users.get_mut(id) {
            f(u);
        }
    }
}

/// The starting state of a new environment with a database (E5): the root
/// business unit, the default roles, and the two placeholder users.
pub fn starting_state(id: Uuid, name: &str, apps: &[App]) -> Vec<EnvEvent> {
    let env = id.as_bytes();
    let root = derive_id(&[env, b"business-unit", b"root"]);
    let role_id = |name: &str| derive_id(&[env, b"role", name.as_bytes()]);
    let mut events = vec![EnvEvent::BusinessUnitCreated { id: root, name: name.to_owned(), parent: None }];
    let mut roles: Vec<(&str, Vec<Privilege>, bool)> = vec![
        (SYSTEM_ADMINISTRATOR, grant(&CORE_TABLES, &ALL_OPERATIONS, Level::Organization), false),
        ("System Customizer", grant(&CORE_TABLES, &[Operation::Read], Level::Organization), false),
        (BASIC_USER, basic_user(), false),
        (
            "Environment Maker",
            grant(&["canvasapp", "workflow"], &[Operation::Create, Operation::Read], Level::User),
            false,
        ),
    ];
    if apps.contains(&App::Sales) {
        let mut salesperson =
            grant(&["account", "contact", "lead", "opportunity"], &ALL_OPERATIONS, Level::User);
        salesperson.extend(grant(&["account", "contact"], &[Operation::Read], Level::BusinessUnit));
        roles.push((SALESPERSON, salesperson, false));
    }
    for app in apps {
        roles.push((app.access_role(), Vec::new(), true));
    }
    for (name, privileges, app_access) in roles {
        events.push(EnvEvent::RoleCreated {
            id: role_id(name),
            name: name.to_owned(),
            business_unit: root,
            privileges,
            app_access,
        });
    }
    let placeholders = [
        (DELEGATED_ADMIN_UPN, UserKind::DelegatedAdmin, AccessMode::DelegatedAdmin, "Delegated Admin"),
        (SUPPORT_UPN, UserKind::Support, AccessMode::SupportUser, "Support User"),
    ];
    for (upn, kind, access_mode, full_name) in placeholders {
        let user = derive_id(&[env, b"placeholder", upn.as_bytes()]);
        events.push(EnvEvent::SystemUserAdded {
            id: user,
            kind,
            object_id: None,
            application_id: None,
            domainname: upn.to_owned(),
            columns: vec![
                (Column::FirstName, "#".into()),
                (Column::LastName, full_name.into()),
                (Column::FullName, full_name.into()),
            ],
            access_mode,
            is_licensed: false,
            is_disabled: false,
            business_unit: root,
            added_by: AddedBy::Placeholder,
            entitlement: None,
        });
        if kind == UserKind::DelegatedAdmin {
            events.push(EnvEvent::RoleAssigned { user, role: role_id(SYSTEM_ADMINISTRATOR) });
        }
    }
    events
}

/// Every operation, in order.
pub const ALL_OPERATIONS: [Operation; 8] = [
    Operation::Create,
    Operation::Read,
    Operation::Write,
    Operation::Delete,
    Operation::Append,
    Operation::AppendTo,
    Operation::Assign,
    Operation::Share,
];

fn grant(tables: &[&str], operations: &[Operation], level: Level) -> Vec<Privilege> {
    tables
        .iter()
        .flat_map(|t| {
            operations.iter().map(move |op| Privilege { table: (*t).to_owned(), operation: *op, level })
        })
        .collect()
}

/// Basic User: own records of the everyday tables, and reading the
/// organization's users, teams and business units.
fn basic_user() -> Vec<Privilege> {
    let own = [
        Operation::Create,
        Operation::Read,
        Operation::Write,
        Operation::Delete,
        Operation::Append,
        Operation::AppendTo,
    ];
    let mut privileges = grant(&["account", "contact", "activitypointer"], &own, Level::User);
    privileges.extend(grant(
        &["systemuser", "team", "businessunit"],
        &[Operation::Read],
        Level::Organization,
    ));
    privileges
}
