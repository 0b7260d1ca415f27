//! The security model of an environment: effective privileges (R3), what an
//! access mode takes away (A5), and no elevation (R6).

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::environment::{Environment, Role, SystemUser, SYSTEM_ADMINISTRATOR};
use crate::events::{AccessMode, Level, Operation};

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
    let direct = user.roles.iter().filter_map(|r| env.roles.get(r)).map(|r| (r, None));
    let through_teams = env.teams_of(user.id).flat_map(|t| {
        t.roles.iter().filter_map(|r| env.roles.get(r)).map(move |r| (r, Some(t.name.as_str())))
    });
    direct.chain(through_teams).collect()
}

/// Holds the System Administrator role, directly or through a team.
pub fn is_system_administrator(env: &Environment, user: &SystemUser) -> bool {
    roles_of(env, user)
        .iter()
        .any(|(r, _)| r.name == SYSTEM_ADMINISTRATOR && r.business_unit == env.root_business_unit)
}

/// R3: the union of the record's roles, each table and operation at the
/// highest level granted; A5: an Administrative record keeps administration
/// tables only.
pub fn effective_privileges(env: &Environment, user: &SystemUser) -> Vec<Grant> {
    let mut grants: BTreeMap<(String, Operation), Grant> = BTreeMap::new();
    for (role, team) in roles_of(env, user) {
        for ((table, operation), level) in &role.privileges {
            if *level == Level::None {
                continue;
            }
            if user.access_mode == AccessMode::Administrative
                && !ADMINISTRATION_TABLES.contains(&table.as_str())
            {
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

/// Whether the record has any role at all, directly or through a team (R4).
pub fn has_any_role(env: &Environment, user: &SystemUser) -> bool {
    !roles_of(env, user).is_empty()
}

/// The ids of every role a record holds (direct and through teams).
pub fn role_ids(env: &Environment, user: &SystemUser) -> Vec<Uuid> {
    roles_of(env, user).into_iter().map(|(r, _)| r.id).collect()
}
