//! Directory sync: what a sync pass, Refresh user, an access attempt or an
//! admin's add writes into an environment's SystemUser table (S1-S8).
//! Who is entitled comes from [`eligibility`] alone.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::eligibility::{eligibility, Eligibility, How};
use crate::environment::{Environment, SystemUser, SYSTEM_ADMINISTRATOR};
use crate::events::{
    AccessMode, AddedBy, Column, ColumnChange, Entitlement, EnvEvent, EnvType, Member, UserKind,
};
use crate::ids::derive_id;
use crate::tenant::{Tenant, User};

/// The systemuserid that a directory user gets in an environment: derived,
/// so a repeated pass adds the same record once.
pub fn systemuser_id(env: Uuid, object_id: Uuid) -> Uuid {
    derive_id(&[env.as_bytes(), b"systemuser", object_id.as_bytes()])
}

/// The value sync writes into a column from the directory (S6, S6.4).
fn synced_value(user: &User, column: Column) -> Option<String> {
    let value = match column {
        Column::FullName => Some(user.display_name().to_owned()),
        other => user.profile.get(other.source()).map(str::to_owned),
    };
    match column {
        // A blank first name becomes "#" (S6.4).
        Column::FirstName => Some(value.filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "#".into())),
        _ => value.filter(|v| !v.is_empty()),
    }
}

/// Column changes that sync makes to an existing record (S6): never the full
/// name (S6.1); the email only to fill a blank one the customer never edited
/// (S6.2, S6.3); custom fields never (S6.5: they are not columns at all).
fn column_changes(user: &User, record: &SystemUser) -> Vec<ColumnChange> {
    Column::ALL
        .into_iter()
        .filter_map(|column| {
            let new = synced_value(user, column);
            let old = record.column(column).map(str::to_owned);
            let writable = match column {
                Column::FullName => false,
                Column::InternalEmailAddress => old.is_none() && !record.email_edited,
                _ => true,
            };
            (writable && new != old).then_some(ColumnChange { column, old, new })
        })
        .collect()
}

fn added_by(how: How) -> AddedBy {
    match how {
        How::Sync => AddedBy::Sync,
        How::Refresh => AddedBy::Refresh,
        How::Access => AddedBy::Access,
        How::AdminAdd => AddedBy::AdminAdd,
    }
}

/// Roles a user gets on its own: System Administrator for a licensed tenant
/// admin (S7), and the app-access role of each installed app for a licensed
/// user (S8). Returns those it does not hold yet.
fn automatic_roles(env: &Environment, user: &User, e: &Eligibility, held: &[Uuid]) -> Vec<Uuid> {
    let mut names: Vec<&str> = Vec::new();
    // The creator of a developer environment administers it.
    if env.env_type == Some(EnvType::Developer) && env.creator == user.id {
        names.push(SYSTEM_ADMINISTRATOR);
    }
    if e.licensed && Tenant::is_environment_admin(user) && !names.contains(&SYSTEM_ADMINISTRATOR) {
        names.push(SYSTEM_ADMINISTRATOR);
    }
    if e.licensed {
        names.extend(env.apps.iter().map(|a| a.access_role()));
    }
    names
        .into_iter()
        .filter_map(|n| env.role_named(n).map(|r| r.id))
        .filter(|id| !held.contains(id))
        .collect()
}

/// The events that bring one directory user's record in line with the
/// directory, considered as `how`; with the eligibility that decided them.
pub fn sync_user(
    tenant: &Tenant,
    env: &Environment,
    user: &User,
    how: How,
    now: DateTime<Utc>,
) -> (Eligibility, Vec<EnvEvent>) {
    let e = eligibility(tenant, env, user, how, now);
    let mut events = match env.user_by_object(user.id) {
        None if e.may_add() => add(env, user, how, &e),
        None => return (e, Vec::new()),
        Some(record) => update(env, user, record, how, &e),
    };
    events.extend(group_teams(tenant, env, user));
    (e, events)
}

/// R7: a group team's members follow its directory group, direct members
/// only (nested groups are ignored, D9).
fn group_teams(tenant: &Tenant, env: &Environment, user: &User) -> Vec<EnvEvent> {
    let record = systemuser_id(env.id, user.id);
    env.teams
        .values()
        .filter_map(|team| {
            let group = tenant.groups.get(&team.group?)?;
            let should = group.members.contains(&Member::User(user.id));
            match (should, team.members.contains(&record)) {
                (true, false) => Some(EnvEvent::TeamMemberAdded { team: team.id, user: record }),
                (false, true) => Some(EnvEvent::TeamMemberRemoved { team: team.id, user: record }),
                _ => None,
            }
        })
        .collect()
}

fn add(env: &Environment, user: &User, how: How, e: &Eligibility) -> Vec<EnvEvent> {
    let id = systemuser_id(env.id, user.id);
    // An unlicensed tenant admin is a setup user in Administrative mode (S3, S7).
    let access_mode = if e.entitlement == Some(Entitlement::AdminWithoutLicense) {
        AccessMode::Administrative
    } else {
        AccessMode::ReadWrite
    };
    let columns = Column::ALL.into_iter().filter_map(|c| synced_value(user, c).map(|v| (c, v))).collect();
    let mut events = vec![EnvEvent::SystemUserAdded {
        id,
        kind: UserKind::User,
        object_id: Some(user.id),
        application_id: None,
        domainname: user.upn.clone(),
        columns,
        access_mode,
        is_licensed: e.licensed,
        is_disabled: false,
        business_unit: env.root_business_unit,
        added_by: added_by(how),
        entitlement: e.entitlement.clone(),
    }];
    events.extend(
        automatic_roles(env, user, e, &[]).into_iter().map(|role| EnvEvent::RoleAssigned { user: id, role }),
    );
    events
}

fn update(env: &Environment, user: &User, record: &SystemUser, how: How, e: &Eligibility) -> Vec<EnvEvent> {
    let id = record.id;
    let mut events = Vec::new();
    let changes = column_changes(user, record);
    if !changes.is_empty() {
        events.push(EnvEvent::SystemUserUpdated { id, changes });
    }
    if record.is_licensed != e.licensed {
        events.push(EnvEvent::LicensedChanged { id, is_licensed: e.licensed });
    }
    // An entitlement that counts on demand only keeps a record in a pass only
    // if the record was admitted under it; otherwise the user's next access
    // (or an admin's add) brings it back (S1.4, S5).
    let demoted =
        e.entitled() && e.on_demand_only() && !how.on_demand() && record.entitlement != e.entitlement;
    let entitled = e.entitled() && !demoted;
    if !entitled && !record.is_disabled {
        let reason = if demoted {
            let by = e.entitlement.as_ref().map_or_else(String::new, |en| format!("{en:?}"));
            format!("S1.4: entitled now only by {by}, which counts on demand only: the user's next access enables it again")
        } else {
            e.failing_summary()
        };
        events.push(EnvEvent::SystemUserDisabled { id, reason });
        return events;
    }
    if !entitled {
        return events;
    }
    // Entitlements that count on demand only do not re-enable a record in a pass (S1.4, S5).
    if record.is_disabled && (how.on_demand() || !e.on_demand_only()) {
        events.push(EnvEvent::SystemUserEnabled { id, entitlement: e.entitlement.clone() });
    } else if record.is_disabled {
        return events;
    } else if record.entitlement != e.entitlement {
        events.push(EnvEvent::EntitlementChanged {
            id,
            old: record.entitlement.clone(),
            new: e.entitlement.clone(),
        });
    }
    // A tenant admin without a license is a setup user (S3); licensed, it is
    // Read-Write (S7). Sync moves only the modes it set itself: an admin may
    // be midway through A4's set-up.
    if e.entitlement == Some(Entitlement::AdminWithoutLicense) && record.access_mode == AccessMode::ReadWrite
    {
        events.push(EnvEvent::SetupModeChanged {
            id,
            old: record.access_mode,
            new: AccessMode::Administrative,
        });
    }
    if record.setup_user && record.access_mode == AccessMode::Administrative && e.licensed {
        events.push(EnvEvent::SetupModeChanged { id, old: record.access_mode, new: AccessMode::ReadWrite });
    }
    let held: Vec<Uuid> = record.roles.iter().copied().collect();
    events.extend(
        automatic_roles(env, user, e, &held)
            .into_iter()
            .map(|role| EnvEvent::RoleAssigned { user: id, role }),
    );
    events
}

/// One changed SystemUser of a sync pass: its events, and the directory record
/// that triggered them (its newest evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncChange {
    /// The directory user.
    pub object_id: Uuid,
    /// The directory user's UPN.
    pub upn: String,
    /// The log record that set the change off.
    pub trigger: u64,
    /// The events, in order.
    pub events: Vec<EnvEvent>,
}

/// A background sync pass over one environment (S1): every directory user,
/// one change per SystemUser that needs one.
pub fn sync_pass(tenant: &Tenant, env: &Environment, now: DateTime<Utc>) -> Vec<SyncChange> {
    sync_pass_over(tenant, env, now, tenant.users.values())
}

/// A pass over some directory users only. Right after a pass, the directory
/// and the environment agree; until either changes, a pass can change only
/// what time alone changes, so it needs to look at
/// the users [`User::judged_by_time`] and no one else.
pub fn sync_pass_over<'a>(
    tenant: &Tenant,
    env: &Environment,
    now: DateTime<Utc>,
    users: impl IntoIterator<Item = &'a User>,
) -> Vec<SyncChange> {
    if !env.dataverse {
        return Vec::new();
    }
    users
        .into_iter()
        .filter(|u| !u.is_purged(now) || env.user_by_object(u.id).is_some())
        .filter_map(|user| {
            let (e, events) = sync_user(tenant, env, user, How::Sync, now);
            (!events.is_empty()).then(|| SyncChange {
                object_id: user.id,
                upn: user.upn.clone(),
                trigger: e.newest_evidence(),
                events,
            })
        })
        .collect()
}
