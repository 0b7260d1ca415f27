//! Drift between two points of the log: what changed in an environment's
//! SystemUser table, field by field, each change with the record and the
//! command (or sync pass) that made it.

use domain::environment::Environment;
use domain::events::{EnvEvent, Stamp};
use serde::Serialize;
use store::{Causation, Record};
use uuid::Uuid;

/// One change of `changes --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The record that made it.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// The SystemUser's domainname.
    pub upn: String,
    /// added, changed, enabled, disabled, accessmode, role gained, role lost, team joined, team left.
    pub change: &'static str,
    /// The field or role concerned.
    pub field: Option<String>,
    /// Before.
    #[serde(rename = "oldValue")]
    pub old_value: Option<String>,
    /// After.
    #[serde(rename = "newValue")]
    pub new_value: Option<String>,
    /// The command or sync pass that made it.
    pub cause: Cause,
}

/// The command (or sync pass) behind a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// The record's seq.
    pub seq: u64,
    /// The activity of its command.
    #[serde(rename = "activityDisplayName")]
    pub activity_display_name: String,
    /// Who: a UPN, or `sync (app)`.
    #[serde(rename = "initiatedBy")]
    pub initiated_by: String,
}

/// The changes made by `records` (an environment stream's records after the
/// point `start` reflects, in order).
pub fn changes(mut env: Environment, records: &[(Record, EnvEvent)]) -> Vec<Change> {
    let mut out = Vec::new();
    // The last record of each command: the seq of its audit record.
    let mut ends = vec![0; records.len()];
    for i in (0..records.len()).rev() {
        let (record, event) = &records[i];
        let same_as_next = records.get(i + 1).is_some_and(|(next, next_event)| {
            crate::audit::same_command(record, event.system_user(), next, next_event.system_user())
        });
        ends[i] = if same_as_next { ends[i + 1] } else { records[i].0.seq };
    }
    for (i, (record, event)) in records.iter().enumerate() {
        env.apply(event, Stamp { seq: record.seq, at: record.recorded_at });
        let (activity, _) = crate::activity::of_record(record);
        let initiated_by = match &record.causation {
            Causation::Process { .. } => format!("{} (app)", record.actor),
            Causation::Command { .. } => record.actor.clone(),
        };
        let cause = Cause { seq: ends[i], activity_display_name: activity, initiated_by };
        let mut push = |user: &Uuid,
                        change: &'static str,
                        field: Option<String>,
                        old: Option<String>,
                        new: Option<String>| {
            let upn = env.users.get(user).map_or_else(|| user.to_string(), |u| u.domainname.clone());
            out.push(Change {
                seq: record.seq,
                at: crate::rfc3339(record.recorded_at),
                upn,
                change,
                field,
                old_value: old,
                new_value: new,
                cause: cause.clone(),
            });
        };
        let role_name = |id: &Uuid| env.roles.get(id).map(|r| r.name.clone());
        let text = |v: &dyn ToString| Some(v.to_string());
        match event {
            EnvEvent::SystemUserAdded { id, kind, access_mode, is_disabled, .. } => {
                let state = format!(
                    "{}, {}, {}",
                    kind.name(),
                    if *is_disabled { "disabled" } else { "enabled" },
                    access_mode.cli_name()
                );
                push(id, "added", None, None, Some(state));
            }
            EnvEvent::SystemUserUpdated { id, changes } => {
                for c in changes {
                    push(
                        id,
                        "changed",
                        Some(c.column.logical_name().to_owned()),
                        c.old.clone(),
                        c.new.clone(),
                    );
                }
            }
            EnvEvent::SystemUserEnabled { id, .. } => {
                push(id, "enabled", Some("isdisabled".into()), text(&true), text(&false))
            }
            EnvEvent::SystemUserDisabled { id, .. } => {
                push(id, "disabled", Some("isdisabled".into()), text(&false), text(&true))
            }
            EnvEvent::LicensedChanged { id, is_licensed } => {
                push(id, "changed", Some("islicensed".into()), text(&!is_licensed), text(is_licensed))
            }
            EnvEvent::AccessModeChanged { id, old, new } | EnvEvent::SetupModeChanged { id, old, new } => {
                push(id, "accessmode", Some("accessmode".into()), text(&old.value()), text(&new.value()))
            }
            EnvEvent::RoleAssigned { user, role } => {
                push(user, "role gained", Some("role".into()), None, role_name(role))
            }
            EnvEvent::RoleRemoved { user, role } => {
                push(user, "role lost", Some("role".into()), role_name(role), None)
            }
            EnvEvent::EmailEditedInEnvironment { id, old, new } => {
                push(id, "changed", Some("internalemailaddress".into()), old.clone(), new.clone())
            }
            EnvEvent::UserBusinessUnitChanged { user, old, new } => {
                let unit = |u: &Uuid| env.business_units.get(u).map(|b| b.name.clone());
                push(user, "changed", Some("businessunit".into()), unit(old), unit(new))
            }
            EnvEvent::EntitlementChanged { id, old, new } => {
                let show = |e: &Option<domain::events::Entitlement>| e.as_ref().map(|e| e.to_string());
                push(id, "changed", Some("entitlement".into()), show(old), show(new))
            }
            EnvEvent::MailboxEnabled { user } => {
                push(user, "changed", Some("mailbox".into()), text(&"disabled"), text(&"enabled"))
            }
            EnvEvent::TeamMemberAdded { team, user } | EnvEvent::TeamMemberRemoved { team, user } => {
                let joined = matches!(event, EnvEvent::TeamMemberAdded { .. });
                let Some(t) = env.teams.get(team) else { continue };
                let name = t.name.clone();
                let roles: Vec<String> = t.roles.iter().filter_map(role_name).collect();
                if joined {
                    push(user, "team joined", Some("team".into()), None, Some(name.clone()));
                } else {
                    push(user, "team left", Some("team".into()), Some(name.clone()), None);
                }
                for role in roles {
                    let through = Some(format!("{role} (team {name})"));
                    if joined {
                        push(user, "role gained", Some("role".into()), None, through);
                    } else {
                        push(user, "role lost", Some("role".into()), through, None);
                    }
                }
            }
            EnvEvent::TeamRoleAssigned { team, role } | EnvEvent::TeamRoleRemoved { team, role } => {
                let gained = matches!(event, EnvEvent::TeamRoleAssigned { .. });
                let Some(t) = env.teams.get(team) else { continue };
                let through = role_name(role).map(|r| format!("{r} (team {})", t.name));
                let members: Vec<Uuid> = t.members.iter().copied().collect();
                for member in members {
                    if gained {
                        push(&member, "role gained", Some("role".into()), None, through.clone());
                    } else {
                        push(&member, "role lost", Some("role".into()), through.clone(), None);
                    }
                }
            }
            _ => {}
        }
    }
    out
}
