//! The security model of an environment: effective privileges (R3), what an
//! access mode takes away (A5), no elevation (R6), and the group teams whose
//! roles reach past those who may change their group's members (R6, R7).

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::environment::{Environment, Role, SystemUser, Team, SYSTEM_ADMINISTRATOR};
use crate::events::{Level, Member, Operation};
use crate::tenant::{Group, GroupRight, Tenant, User};

/// Tables of settings and administration, which Administrative users keep (A5).
pub const ADMINISTRATION_TABLES: [&str; 4] = ["systemuser", "team", "businessunit", "role"];

/// A role that grants a privilege, directly or through a team.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// The role's name.
    pub role: String,
    /// The team it comes through, if any.
    pub team: Option<String>,
}

/// One effective privilege: the highest level any of the user's roles grants,
/// and every role (and team) that grants it at that level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The table.
    pub table: String,
    /// The operation.
    pub operation: Operation,
    /// The highest level granted.
    pub level: Level,
    /// The roles that grant it at that level.
    pub from: Vec<Source>,
}

/// The roles a record holds: its own, and those of the teams it is in, with the team.
pub fn roles_of<'a>(env: &'a Environment, user: &SystemUser) -> Vec<(&'a Role, Option<&'a str>)> {
    roles_apart_from(env, user, None)
}

/// [`roles_of`], leaving out what comes through the team `except`.
fn roles_apart_from<'a>(
    env: &'a Environment,
    user: &SystemUser,
    except: Option<Uuid>,
) -> Vec<(&'a Role, Option<&'a str>)> {
    let direct = user.roles.iter().filter_map(|r| env.roles.get(r)).map(|r| (r, None));
    let through_teams = env.teams_of(user.id).filter(move |t| Some(t.id) != except).flat_map(|t| {
        t.roles.iter().filter_map(|r| env.roles.get(r)).map(move |r| (r, Some(t.name.as_str())))
    });
    direct.chain(through_teams).collect()
}

/// Holds the System Administrator role, directly or through a team.
pub fn is_system_administrator(env: &Environment, user: &SystemUser) -> bool {
    is_system_administrator_among(&roles_of(env, user), env)
}

fn is_system_administrator_among(roles: &[(&Role, Option<&str>)], env: &Environment) -> bool {
    roles.iter().any(|(r, _)| r.name == SYSTEM_ADMINISTRATOR && r.business_unit == env.root_business_unit)
}

/// R3: the union of the record's roles, each table and operation at the
/// highest level granted; A5: an Administrative record keeps administration
/// tables only.
pub fn effective_privileges(env: &Environment, user: &SystemUser) -> Vec<Grant> {
    privileges_of(user, roles_of(env, user))
}

/// The effective privileges of `user` holding `roles`.
fn privileges_of(user: &SystemUser, roles: Vec<(&Role, Option<&str>)>) -> Vec<Grant> {
    let mut grants: BTreeMap<(String, Operation), Grant> = BTreeMap::new();
    for (role, team) in roles {
        for ((table, operation), level) in &role.privileges {
            if *level == Level::None {
                continue;
            }
            if !user.reach().data && !ADMINISTRATION_TABLES.contains(&table.as_str()) {
                continue;
            }
            let source = Source { role: role.name.clone(), team: team.map(str::to_owned) };
            let grant = grants.entry((table.clone(), *operation)).or_insert_with(|| Grant {
                table: table.clone(),
                operation: *operation,
                level: *level,
                from: Vec::new(),
            });
            if *level > grant.level {
                grant.level = *level;
                grant.from.clear();
            }
            if *level == grant.level && !grant.from.contains(&source) {
                grant.from.push(source);
            }
        }
    }
    let mut grants: Vec<Grant> = grants.into_values().collect();
    for grant in &mut grants {
        grant.from.sort();
    }
    grants
}

/// The level a record holds on one table and operation.
pub fn level_of(grants: &[Grant], table: &str, operation: Operation) -> Level {
    grants.iter().find(|g| g.table == table && g.operation == operation).map_or(Level::None, |g| g.level)
}

/// A privilege the actor would need but does not hold at that level (R6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The table.
    pub table: String,
    /// The operation.
    pub operation: Operation,
    /// The level needed.
    pub needed: Level,
    /// The level the actor holds.
    pub held: Level,
}

/// R6: the first privilege of `privileges` that `grants` does not cover at
/// the same or a higher level.
pub fn shortfall<'a>(
    grants: &[Grant],
    privileges: impl IntoIterator<Item = (&'a (String, Operation), &'a Level)>,
) -> Option<Shortfall> {
    privileges.into_iter().find_map(|((table, operation), needed)| {
        let held = level_of(grants, table, *operation);
        (held < *needed).then(|| Shortfall {
            table: table.clone(),
            operation: *operation,
            needed: *needed,
            held,
        })
    })
}

/// The records behind a record's roles: its own assignments, and its teams'
/// memberships and roles.
pub fn role_evidence(env: &Environment, user: &SystemUser) -> Vec<u64> {
    let mut evidence: Vec<u64> = user.evidence.roles.values().copied().collect();
    for team in env.teams_of(user.id) {
        evidence.extend(team.member_changes.get(&user.id));
        evidence.extend(team.role_changes.values());
    }
    evidence
}

/// Whether the record has any role at all, directly or through a team (R4).
pub fn has_any_role(env: &Environment, user: &SystemUser) -> bool {
    !roles_of(env, user).is_empty()
}

/// The ids of every role a record holds (direct and through teams).
pub fn role_ids(env: &Environment, user: &SystemUser) -> Vec<Uuid> {
    roles_of(env, user).into_iter().map(|(r, _)| r.id).collect()
}

/// Why a directory user does not hold a set of privileges in an environment (R6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elevation {
    /// It has no SystemUser record there, so it holds no privileges at all.
    NoRecord,
    /// Its record falls short of this privilege.
    Short(Shortfall),
}

/// R6: whether `user` holds every privilege of `privileges` in `env` at the
/// same or a higher level (`None`), or why not. Tenant admins (Global, Power
/// Platform, Dynamics 365) and System Administrators hold everything.
pub fn elevation<'a>(
    env: &Environment,
    user: &User,
    privileges: impl IntoIterator<Item = (&'a (String, Operation), &'a Level)>,
) -> Option<Elevation> {
    elevation_apart_from(env, user, privileges, None)
}

/// [`elevation`], counting nothing that comes through the team `except`.
fn elevation_apart_from<'a>(
    env: &Environment,
    user: &User,
    privileges: impl IntoIterator<Item = (&'a (String, Operation), &'a Level)>,
    except: Option<Uuid>,
) -> Option<Elevation> {
    if Tenant::is_environment_admin(user) {
        return None;
    }
    let Some(record) = env.user_by_object(user.id) else { return Some(Elevation::NoRecord) };
    let roles = roles_apart_from(env, record, except);
    if is_system_administrator_among(&roles, env) {
        return None;
    }
    shortfall(&privileges_of(record, roles), privileges).map(Elevation::Short)
}

/// Whether `user` holds everything `role` grants in `env` (what it would
/// need to grant the role itself, R6) other than through `team`: what a
/// group team gives its members cannot vouch for those who put them there.
pub fn holds_apart_from(env: &Environment, user: &User, role: &Role, team: &Team) -> bool {
    elevation_apart_from(env, user, &role.privileges, Some(team.id)).is_none()
}

/// A group team holding a role beyond what some of those who may change its
/// group's members hold (R6, R7): each of them can gain the role, or give it
/// to anyone, by adding a member to the group, and the next sync pass puts
/// that member in the team. The services allow it; reviews should see it.
/// What someone holds is judged on the state reviewed, apart from the team
/// itself (once the path is used, the team is what gives the role).
#[derive(Debug, Clone)]
pub struct GroupTeamReach<'a> {
    /// The directory group behind the team.
    pub group: &'a Group,
    /// The group team.
    pub team: &'a Team,
    /// The team's role that they do not hold.
    pub role: &'a Role,
    /// Who may change the group's members without holding the role, and why.
    pub managers: Vec<(&'a User, GroupRight)>,
    /// Each user member added by someone who did not hold the role:
    /// the member, and the record that added it.
    pub added_by_others: Vec<(&'a User, u64)>,
}

/// Every group team of `env` holding a role beyond its group's managers'
/// own (R6, R7), with the members added by someone who does not hold it.
/// `adder` names the actor of a log record (the domain keeps the record's
/// seq as evidence, the envelope its actor): `None` when it is no directory
/// user, who then holds nothing.
pub fn group_team_reach<'a>(
    tenant: &'a Tenant,
    env: &'a Environment,
    adder: impl Fn(u64) -> Option<&'a User>,
) -> Vec<GroupTeamReach<'a>> {
    let mut out = Vec::new();
    for team in env.teams.values() {
        let Some(group) = team.group.and_then(|g| tenant.groups.get(&g)) else { continue };
        let managers = tenant.group_managers(group);
        for role in team.roles.iter().filter_map(|r| env.roles.get(r)) {
            let lacking: Vec<(&User, GroupRight)> =
                managers.iter().copied().filter(|(u, _)| !holds_apart_from(env, u, role, team)).collect();
            let added_by_others: Vec<(&User, u64)> = group
                .members
                .iter()
                .filter_map(|m| match m {
                    Member::User(id) => Some((tenant.users.get(id)?, group.changes.get(m).copied()?)),
                    Member::Group(_) => None,
                })
                .filter(|(_, seq)| adder(*seq).is_none_or(|a| !holds_apart_from(env, a, role, team)))
                .collect();
            if !lacking.is_empty() || !added_by_others.is_empty() {
                out.push(GroupTeamReach { group, team, role, managers: lacking, added_by_others });
            }
        }
    }
    out
}
