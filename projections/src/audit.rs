//! The audit history: one record per command, successful or refused, shaped
//! like Microsoft Graph's directoryAudit (L1, L2). A sync pass gives one
//! record per changed SystemUser, initiated by the sync process.
//!
//! Names (UPNs, group, role and environment names) never change once given,
//! so the states of any later point resolve the ids of earlier records.

use std::collections::BTreeMap;

use domain::environment::Environment;
use domain::events::{AdminRole, EnvEvent, Event, Member, ReportGenerated, TenantEvent};
use domain::tenant::Tenant;
use serde::Serialize;
use store::{Causation, Record};
use uuid::Uuid;

/// One audit record of `history --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The command's last log position: `--at seq:N` with it shows the whole command.
    pub seq: u64,
    /// A unique id (the command's last event id).
    pub id: Uuid,
    /// When (RFC 3339): the stamped time, which `--now` may have set.
    pub activity_date_time: String,
    /// The writing machine's clock at the time (RFC 3339); `None` (null)
    /// for records written before the log kept it: none recorded.
    pub written_at: Option<String>,
    /// What, in Graph's words (`Add user`, `Change user license`).
    pub activity_display_name: String,
    /// The area (`UserManagement`, `SystemUserManagement`, ...).
    pub category: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
    /// For a failure, `rejected (RULE): reason`.
    pub result_reason: Option<String>,
    /// Who: a user, or the sync process.
    pub initiated_by: InitiatedBy,
    /// What it changed, with old and new values.
    pub target_resources: Vec<Target>,
    /// Shared by the command's events.
    pub correlation_id: Uuid,
    /// The environment, where one applies.
    pub environment: Option<String>,
}

/// `initiatedBy`: a user or an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitiatedBy {
    /// The user who acted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRef>,
    /// The process that acted (`sync`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppRef>,
}

/// A user reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    /// The user's UPN, as `--as` named it.
    pub user_principal_name: String,
    /// Who ran the command on the machine; `None` (null): none recorded.
    pub run_by: Option<RunBy>,
}

/// An app reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRef {
    /// The app's name.
    pub display_name: String,
    /// Who ran the process on the machine; `None` (null): none recorded.
    pub run_by: Option<RunBy>,
}

/// `runBy`: the operating-system account and host that wrote a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunBy {
    /// The operating-system account.
    pub account: String,
    /// The host name.
    pub host: String,
}

/// A target resource and its modified properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `User`, `Group`, `Sku`, `Environment`, `SystemUser`, `Role`, `Team`, `BusinessUnit`, `Tenant`, `Report`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its id, where it has one.
    pub id: Option<String>,
    /// Its name.
    pub display_name: Option<String>,
    /// Its UPN (users) or domainname (SystemUsers).
    pub user_principal_name: Option<String>,
    /// Old and new values.
    pub modified_properties: Vec<Modified>,
}

/// One modified property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Modified {
    /// The property's name.
    pub display_name: String,
    /// Before.
    pub old_value: Option<String>,
    /// After.
    pub new_value: Option<String>,
}

/// The states that name things: the tenant and every environment.
pub struct Names<'a> {
    /// The directory.
    pub tenant: &'a Tenant,
    /// Environments by id.
    pub envs: &'a BTreeMap<Uuid, Environment>,
}

/// The environment id of an `env/<id>` stream.
pub fn environment_of(stream: &str) -> Option<Uuid> {
    stream.strip_prefix("env/").and_then(|id| Uuid::parse_str(id).ok())
}

/// Splits records (in log order) into commands (see [`same_command`]).
pub fn commands(records: Vec<(Record, Event)>) -> Vec<Vec<(Record, Event)>> {
    let mut groups: Vec<Vec<(Record, Event)>> = Vec::new();
    for item in records {
        let continues = groups
            .last()
            .and_then(|g| g.last())
            .is_some_and(|(last, event)| same_command(last, subject(event), &item.0, subject(&item.1)));
        match groups.last_mut() {
            Some(group) if continues => group.push(item),
            _ => groups.push(vec![item]),
        }
    }
    groups
}

/// Whether record `next` belongs to the command of `previous`, the record
/// before it: one correlation id, and within a sync pass (whose records
/// share the pass's id) one SystemUser. `*_user`: what each is about.
pub fn same_command(
    previous: &Record,
    previous_user: Option<Uuid>,
    next: &Record,
    next_user: Option<Uuid>,
) -> bool {
    previous.correlation_id == next.correlation_id
        && (!matches!(previous.causation, Causation::Process { .. }) || previous_user == next_user)
}

/// The SystemUser an event is about, if any.
pub fn subject(event: &Event) -> Option<Uuid> {
    match event {
        Event::Environment(e) => e.system_user(),
        _ => None,
    }
}

/// Which audit records a `history` call wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records that concern this UPN (as actor or target).
    pub user: Option<String>,
    /// Records of this environment.
    pub environment: Option<String>,
}

impl AuditRecord {
    /// Whether the record passes the filter.
    pub fn matches(&self, filter: &Filter) -> bool {
        let user_ok = filter.user.as_ref().is_none_or(|upn| {
            let by = self
                .initiated_by
                .user
                .as_ref()
                .is_some_and(|u| u.user_principal_name.eq_ignore_ascii_case(upn));
            by || self
                .target_resources
                .iter()
                .any(|t| t.user_principal_name.as_ref().is_some_and(|p| p.eq_ignore_ascii_case(upn)))
        });
        let env_ok = filter
            .environment
            .as_ref()
            .is_none_or(|e| self.environment.as_ref().is_some_and(|name| name.eq_ignore_ascii_case(e)));
        user_ok && env_ok
    }
}

/// Builds the audit record of one command's records.
pub fn record(group: &[(Record, Event)], names: &Names) -> Option<AuditRecord> {
    let (first, _) = group.first()?;
    let (last, _) = group.last()?;
    let (activity, category) = crate::activity::of_record(first);
    // One command's records share one envelope: the first speaks for all.
    let run_by = first.origin.as_ref().map(|o| RunBy { account: o.account.clone(), host: o.host.clone() });
    let initiated_by = match &first.causation {
        Causation::Process { .. } => {
            InitiatedBy { user: None, app: Some(AppRef { display_name: first.actor.clone(), run_by }) }
        }
        Causation::Command { .. } => InitiatedBy {
            user: Some(UserRef { user_principal_name: first.actor.clone(), run_by }),
            app: None,
        },
    };
    let env_id =
        environment_of(&first.stream).or_else(|| group.iter().find_map(|(r, _)| environment_of(&r.stream)));
    let mut environment = env_id.and_then(|id| names.envs.get(&id)).map(|e| e.name.clone());
    let mut targets = Targets { names, list: Vec::new() };
    let mut result_reason = None;
    for (record, event) in group {
        match event {
            Event::CommandRejected(r) => {
                result_reason = Some(format!("rejected ({}): {}", r.rule, r.reason));
                environment = environment.or_else(|| r.environment.clone());
                for target in &r.targets {
                    targets.named(target);
                }
            }
            Event::Tenant(e) => targets.tenant_event(e),
            Event::ReportGenerated(r) => targets.report(r),
            Event::Environment(e) => {
                if let Some(env) = environment_of(&record.stream).and_then(|id| names.envs.get(&id)) {
                    targets.env_event(env, e);
                }
            }
        }
    }
    Some(AuditRecord {
        seq: last.seq,
        id: last.event_id,
        activity_date_time: crate::rfc3339(first.recorded_at),
        written_at: first.origin.as_ref().map(|o| crate::rfc3339(o.written_at)),
        activity_display_name: activity,
        category,
        result: if result_reason.is_some() { "failure" } else { "success" },
        result_reason,
        initiated_by,
        target_resources: targets.list,
        correlation_id: first.correlation_id,
        environment,
    })
}

/// The targets of one audit record, merged by resource.
struct Targets<'a> {
    names: &'a Names<'a>,
    list: Vec<Target>,
}

fn text(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

impl Targets<'_> {
    /// The target for a resource, added on first mention.
    fn target(
        &mut self,
        kind: &'static str,
        id: Option<String>,
        name: Option<String>,
        upn: Option<String>,
    ) -> &mut Target {
        let at = self
            .list
            .iter()
            .position(|t| t.kind == kind && t.id == id && (id.is_some() || t.display_name == name));
        let at = at.unwrap_or_else(|| {
            self.list.push(Target {
                kind,
                id,
                display_name: name,
                user_principal_name: upn,
                modified_properties: Vec::new(),
            });
            self.list.len() - 1
        });
        &mut self.list[at]
    }

    fn user(&mut self, id: Uuid) -> &mut Target {
        let user = self.names.tenant.users.get(&id);
        let name = user.map(|u| u.display_name().to_owned());
        let upn = user.map(|u| u.upn.clone());
        self.target("User", Some(id.to_string()), name, upn)
    }

    fn group(&mut self, id: Uuid) -> &mut Target {
        let name = self.names.tenant.groups.get(&id).map(|g| g.name.clone());
        self.target("Group", Some(id.to_string()), name, None)
    }

    fn member_name(&self, member: &Member) -> Option<String> {
        match member {
            Member::User(id) => self.names.tenant.users.get(id).map(|u| u.upn.clone()),
            Member::Group(id) => self.names.tenant.groups.get(id).map(|g| format!("group {}", g.name)),
        }
    }

    fn member(&mut self, member: &Member) {
        match member {
            Member::User(id) => {
                self.user(*id);
            }
            Member::Group(id) => {
                self.group(*id);
            }
        }
    }

    /// A target named in a refusal: a user if the name is one, else as is.
    fn named(&mut self, name: &str) {
        let user = domain::Upn::parse(name).ok().and_then(|upn| self.names.tenant.user(&upn).map(|u| u.id));
        match user {
            Some(id) => {
                self.user(id);
            }
            None => {
                self.target("Other", None, Some(name.to_owned()), None);
            }
        }
    }

    /// The report written: its file, period and SHA-256.
    fn report(&mut self, r: &ReportGenerated) {
        let t = self.target("Report", None, Some(r.file.clone()), None);
        for (name, value) in [
            ("from", crate::rfc3339(r.from)),
            ("to", crate::rfc3339(r.to)),
            ("sha256", r.sha256.iter().map(|b| format!("{b:02x}")).collect()),
        ] {
            t.modified_properties.push(Modified {
                display_name: name.into(),
                old_value: None,
                new_value: Some(value),
            });
        }
    }

    fn tenant_event(&mut self, event: &TenantEvent) {
        let change = |t: &mut Target, name: &str, old: Option<String>, new: Option<String>| {
            t.modified_properties.push(Modified {
                display_name: name.to_owned(),
                old_value: old,
                new_value: new,
            });
        };
        match event {
            TenantEvent::TenantInitialized { domain, name, .. } => {
                let t = self.target("Tenant", None, Some(name.clone()), None);
                change(t, "domain", None, text(domain));
            }
            TenantEvent::SkuAdded { sku, kind, seats } => {
                let t = self.target("Sku", None, Some(sku.clone()), None);
                change(t, "kind", None, text(kind.cli_name()));
                change(t, "seats", None, text(seats));
            }
            TenantEvent::SkuSeatsChanged { sku, old, new } => {
                let t = self.target("Sku", None, Some(sku.clone()), None);
                change(t, "seats", text(old), text(new));
            }
            TenantEvent::SkuIdentified { sku, id } => {
                let t = self.target("Sku", None, Some(sku.clone()), None);
                change(t, "skuId", None, text(id));
            }
            TenantEvent::UserCreated { id, user_type, profile, .. }
            | TenantEvent::UserCreatedV2 { id, user_type, profile, .. } => {
                let t = self.user(*id);
                change(t, "userType", None, text(format!("{user_type:?}")));
                for (field, value) in profile.iter() {
                    change(t, field.graph_name(), None, text(value));
                }
            }
            TenantEvent::UserUpdated { id, changes } => {
                let t = self.user(*id);
                for c in changes {
                    change(t, c.field.graph_name(), c.old.clone(), c.new.clone());
                }
            }
            TenantEvent::LicenseAssigned { id, sku } => {
                change(self.user(*id), "assignedLicenses", None, text(sku))
            }
            TenantEvent::LicenseRemoved { id, sku } => {
                change(self.user(*id), "assignedLicenses", text(sku), None)
            }
            TenantEvent::AdminRoleAdded { id, role } => {
                change(self.user(*id), "adminRoles", None, text(role.display_name()));
                self.admin_role(*role);
            }
            TenantEvent::AdminRoleRemoved { id, role } => {
                change(self.user(*id), "adminRoles", text(role.display_name()), None);
                self.admin_role(*role);
            }
            TenantEvent::UserBlocked { id } => {
                change(self.user(*id), "accountEnabled", text(true), text(false))
            }
            TenantEvent::UserUnblocked { id } => {
                change(self.user(*id), "accountEnabled", text(false), text(true))
            }
            TenantEvent::UserDeleted { id } => change(self.user(*id), "deleted", text(false), text(true)),
            TenantEvent::UserRestored { id, licenses_not_restored } => {
                let t = self.user(*id);
                change(t, "deleted", text(true), text(false));
                for sku in licenses_not_restored {
                    change(t, "assignedLicenses", text(sku), None);
                }
            }
            TenantEvent::PasswordReset { id, .. } => change(
                self.user(*id),
                "passwordProfile",
                None,
                text("temporary password set (shown once; stored hashed)"),
            ),
            TenantEvent::PasswordResetV2 { id } => change(
                self.user(*id),
                "passwordProfile",
                None,
                text("temporary password set (shown once; not stored)"),
            ),
            TenantEvent::InvitationIssued { id, sku, expires_at } => {
                let t = self.user(*id);
                change(t, "invitation", None, text(format!("pending until {}", crate::rfc3339(*expires_at))));
                if let Some(sku) = sku {
                    change(t, "heldLicense", None, text(sku));
                }
            }
            TenantEvent::InvitationAccepted { id, sku } => {
                let t = self.user(*id);
                change(t, "invitation", text("pending"), text("accepted"));
                if let Some(sku) = sku {
                    change(t, "assignedLicenses", None, text(sku));
                }
            }
            TenantEvent::GroupCreated { id, .. } => {
                self.group(*id);
            }
            TenantEvent::GroupMemberAdded { group, member } => {
                let name = self.member_name(member);
                change(self.group(*group), "members", None, name);
                self.member(member);
            }
            TenantEvent::GroupMemberRemoved { group, member } => {
                let name = self.member_name(member);
                change(self.group(*group), "members", name, None);
                self.member(member);
            }
            TenantEvent::GroupOwnerAdded { group, user } => {
                let name = self.member_name(&Member::User(*user));
                change(self.group(*group), "owners", None, name);
                self.user(*user);
            }
            TenantEvent::EnvironmentRegistered { id, name } => {
                self.target("Environment", Some(id.to_string()), Some(name.clone()), None);
            }
        }
    }

    fn admin_role(&mut self, role: AdminRole) {
        self.target("Role", None, Some(role.display_name().to_owned()), None);
    }

    fn system_user(&mut self, env: &Environment, id: Uuid) -> &mut Target {
        let record = env.users.get(&id);
        let name = record.and_then(|r| r.column(domain::events::Column::FullName)).map(str::to_owned);
        let upn = record.map(|r| r.domainname.clone());
        self.target("SystemUser", Some(id.to_string()), name, upn)
    }

    fn env_event(&mut self, env: &Environment, event: &EnvEvent) {
        let change = |t: &mut Target, name: &str, old: Option<String>, new: Option<String>| {
            t.modified_properties.push(Modified {
                display_name: name.to_owned(),
                old_value: old,
                new_value: new,
            });
        };
        let role_name = |id: &Uuid| env.roles.get(id).map(|r| r.name.clone());
        let unit_name = |id: &Uuid| env.business_units.get(id).map(|b| b.name.clone());
        let group_name =
            |id: &Option<Uuid>| id.and_then(|g| self.names.tenant.groups.get(&g)).map(|g| g.name.clone());
        let env_target = (Some(env.id.to_string()), Some(env.name.clone()));
        match event {
            EnvEvent::EnvironmentCreated { env_type, dataverse, security_group, app_pass, apps, .. } => {
                let group = group_name(security_group);
                let t = self.target("Environment", env_target.0, env_target.1, None);
                change(t, "type", None, text(env_type.cli_name()));
                change(t, "dataverse", None, text(dataverse));
                change(t, "securityGroup", None, group);
                change(t, "appPassCapacity", None, text(app_pass));
                let apps: Vec<&str> = apps.iter().map(|a| a.cli_name()).collect();
                change(t, "apps", None, text(apps.join(", ")));
            }
            EnvEvent::SecurityGroupChanged { old, new } => {
                let (old, new) = (group_name(old), group_name(new));
                change(
                    self.target("Environment", env_target.0, env_target.1, None),
                    "securityGroup",
                    old,
                    new,
                );
            }
            EnvEvent::AppPassChanged { old, new } => change(
                self.target("Environment", env_target.0, env_target.1, None),
                "appPassCapacity",
                text(old),
                text(new),
            ),
            EnvEvent::SettingChanged { name, old, new } => change(
                self.target("Environment", env_target.0, env_target.1, None),
                name,
                old.clone(),
                new.clone(),
            ),
            EnvEvent::UnifiedRoutingEnabled { .. } => change(
                self.target("Environment", env_target.0, env_target.1, None),
                "unifiedRouting",
                text(false),
                text(true),
            ),
            EnvEvent::BusinessUnitCreated { id, name, parent } => {
                let parent = parent.as_ref().and_then(unit_name);
                let t = self.target("BusinessUnit", Some(id.to_string()), Some(name.clone()), None);
                change(t, "parent", None, parent);
            }
            EnvEvent::RoleCreated { id, name, business_unit, privileges, .. } => {
                let unit = unit_name(business_unit);
                let t = self.target("Role", Some(id.to_string()), Some(name.clone()), None);
                change(t, "businessUnit", None, unit);
                change(t, "privileges", None, text(privileges.len()));
            }
            EnvEvent::RolePrivilegeSet { role, table, operation, old, new } => {
                let t = self.target("Role", Some(role.to_string()), role_name(role), None);
                change(
                    t,
                    &format!("{table}.{}", operation.cli_name()),
                    text(old.cli_name()),
                    text(new.cli_name()),
                );
            }
            EnvEvent::SystemUserAdded {
                id, columns, access_mode, is_licensed, is_disabled, kind, ..
            } => {
                let t = self.system_user(env, *id);
                change(t, "kind", None, text(kind.name()));
                change(t, "isdisabled", None, text(is_disabled));
                change(t, "accessmode", None, text(access_mode.value()));
                change(t, "islicensed", None, text(is_licensed));
                for (column, value) in columns {
                    change(t, column.logical_name(), None, text(value));
                }
            }
            EnvEvent::SystemUserUpdated { id, changes } => {
                let t = self.system_user(env, *id);
                for c in changes {
                    change(t, c.column.logical_name(), c.old.clone(), c.new.clone());
                }
            }
            EnvEvent::SystemUserEnabled { id, .. } => {
                change(self.system_user(env, *id), "isdisabled", text(true), text(false))
            }
            EnvEvent::SystemUserDisabled { id, reason } => {
                let t = self.system_user(env, *id);
                change(t, "isdisabled", text(false), text(true));
                change(t, "reason", None, text(reason));
            }
            EnvEvent::LicensedChanged { id, is_licensed } => {
                change(self.system_user(env, *id), "islicensed", text(!is_licensed), text(is_licensed))
            }
            EnvEvent::AccessModeChanged { id, old, new } => {
                change(self.system_user(env, *id), "accessmode", text(old.value()), text(new.value()))
            }
            EnvEvent::RoleAssigned { user, role } => {
                let name = role_name(role);
                change(self.system_user(env, *user), "roles", None, name);
            }
            EnvEvent::RoleRemoved { user, role } => {
                let name = role_name(role);
                change(self.system_user(env, *user), "roles", name, None);
            }
            EnvEvent::EmailEditedInEnvironment { id, old, new } => {
                change(self.system_user(env, *id), "internalemailaddress", old.clone(), new.clone())
            }
            EnvEvent::RecordsReassigned { from, to } => {
                let to_name = env.users.get(to).map(|r| r.domainname.clone());
                change(
                    self.system_user(env, *from),
                    "records",
                    None,
                    to_name.map(|n| format!("reassigned to {n}")),
                );
                self.system_user(env, *to);
            }
            EnvEvent::UserBusinessUnitChanged { user, old, new } => {
                let (old, new) = (unit_name(old), unit_name(new));
                change(self.system_user(env, *user), "businessunit", old, new);
            }
            EnvEvent::TeamCreated { id, name, business_unit, group } => {
                let (unit, group) = (unit_name(business_unit), group_name(group));
                let t = self.target("Team", Some(id.to_string()), Some(name.clone()), None);
                change(t, "businessUnit", None, unit);
                change(t, "group", None, group);
            }
            EnvEvent::TeamMemberAdded { team, user } | EnvEvent::TeamMemberRemoved { team, user } => {
                let added = matches!(event, EnvEvent::TeamMemberAdded { .. });
                let member = env.users.get(user).map(|r| r.domainname.clone());
                let team_name = env.teams.get(team).map(|t| t.name.clone());
                let t = self.target("Team", Some(team.to_string()), team_name, None);
                if added {
                    change(t, "members", None, member)
                } else {
                    change(t, "members", member, None)
                }
                self.system_user(env, *user);
            }
            EnvEvent::TeamRoleAssigned { team, role } | EnvEvent::TeamRoleRemoved { team, role } => {
                let added = matches!(event, EnvEvent::TeamRoleAssigned { .. });
                let name = role_name(role);
                let team_name = env.teams.get(team).map(|t| t.name.clone());
                let t = self.target("Team", Some(team.to_string()), team_name, None);
                if added {
                    change(t, "roles", None, name)
                } else {
                    change(t, "roles", name, None)
                }
            }
            EnvEvent::MailboxTestScheduled { user } => {
                change(self.system_user(env, *user), "mailbox", None, text("test scheduled"))
            }
            EnvEvent::EntitlementChanged { id, old, new } => {
                let (old, new) = (old.as_ref().map(|e| e.to_string()), new.as_ref().map(|e| e.to_string()));
                change(self.system_user(env, *id), "entitlement", old, new)
            }
            EnvEvent::SetupModeChanged { id, old, new } => {
                change(self.system_user(env, *id), "accessmode", text(old.value()), text(new.value()))
            }
            EnvEvent::MailboxEnabled { user } => {
                change(self.system_user(env, *user), "mailbox", text("disabled"), text("enabled"))
            }
            EnvEvent::EnvironmentTypeChanged { old, new } => change(
                self.target("Environment", env_target.0, env_target.1, None),
                "type",
                text(old.cli_name()),
                text(new.cli_name()),
            ),
            EnvEvent::DataverseAdded => change(
                self.target("Environment", env_target.0, env_target.1, None),
                "dataverse",
                text(false),
                text(true),
            ),
            EnvEvent::SystemUsersObserved { observed_at, rows, gone } => {
                let t = self.target("Environment", env_target.0, env_target.1, None);
                change(t, "observedAt", None, text(crate::rfc3339(*observed_at)));
                change(t, "observedRows", None, text(rows.len()));
                change(t, "observedGone", None, text(gone.len()));
            }
        }
    }
}
