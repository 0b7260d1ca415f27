//! Reality check (issue 32): the environments the admin tools list, planned
//! as ordinary environment events, and the SystemUser tables Dataverse
//! exports, recorded as observations kept apart from the state the rules
//! derive. `projections::reconcile` sets the two side by side.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envcmd::{self, EnvCommand, NewEnvironment};
use crate::environment::{self, Environment};
use crate::events::{EnvEvent, EnvType, ObservedUser, Stamp, TenantEvent};
use crate::ids::{derive_id, Upn};
use crate::rules::{invalid, Rejection};
use crate::tenant::Tenant;

/// usertrail's id of the environment the admin API names `admin_id`: the id
/// itself where it is a GUID, else one derived from it (`Default-<tenant>`).
pub fn environment_id(admin_id: &str) -> Uuid {
    let admin_id = admin_id.trim();
    Uuid::parse_str(admin_id)
        .unwrap_or_else(|_| derive_id(&[b"admin-environment", admin_id.to_lowercase().as_bytes()]))
}

/// An environment as the admin tools list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEnvironment {
    /// The admin API's `name` (pac's `EnvironmentId`).
    pub admin_id: String,
    /// `displayName`.
    pub name: String,
    /// `environmentSku`.
    pub env_type: EnvType,
    /// It has `linkedEnvironmentMetadata` (an instance URL).
    pub dataverse: bool,
    /// `None`: the listing does not say (pac's); `Some(None)`: no group.
    pub security_group: Option<Option<Uuid>>,
}

/// What a listing changes, and what it leaves for people to read.
#[derive(Debug, Default)]
pub struct EnvironmentsPlan {
    /// The registry entries of new environments (tenant stream).
    pub registered: Vec<TenantEvent>,
    /// Each changed environment's events, by id.
    pub streams: Vec<(Uuid, Vec<EnvEvent>)>,
    /// One line per change, and per change the import does not make.
    pub report: Vec<String>,
    /// Environments the listing does not hold: reported, never deleted.
    pub missing: Vec<String>,
}

/// Plans a listing against the registry and the environments `envs` (by
/// id): new ones created as `env create` creates them, a changed type,
/// database or security group appended, each decided (A2, E2) as `env
/// create` and `env set` decide it. Display names shared within the listing
/// are registered as `Name (admin id)`.
pub fn plan_environments(
    tenant: &Tenant,
    envs: &BTreeMap<Uuid, Environment>,
    actor: &Upn,
    listed: Vec<ListedEnvironment>,
    now: DateTime<Utc>,
) -> Result<EnvironmentsPlan, Rejection> {
    let mut shared: BTreeMap<String, usize> = BTreeMap::new();
    for l in &listed {
        *shared.entry(l.name.to_lowercase()).or_default() += 1;
    }
    let mut plan = EnvironmentsPlan::default();
    let mut seen = BTreeSet::new();
    for l in listed {
        let id = environment_id(&l.admin_id);
        let existing = envs
            .get(&id)
            .or_else(|| tenant.environment(&l.name).and_then(|(id, _)| envs.get(&id)))
            .filter(|e| !seen.contains(&e.id));
        let Some(env) = existing else {
            let name = if shared[&l.name.to_lowercase()] > 1 {
                format!("{} ({})", l.name, l.admin_id)
            } else {
                l.name
            };
            let new = NewEnvironment {
                id,
                name: name.clone(),
                env_type: l.env_type,
                dataverse: l.dataverse,
                security_group: group_name(tenant, &name, l.security_group.flatten())?,
                app_pass: 0,
                apps: vec![],
            };
            let (registered, events) = envcmd::decide_create(tenant, actor, &new, now)?;
            let database = if l.dataverse { "with" } else { "without" };
            plan.report
                .push(format!("created {} environment {name} {database} Dataverse", l.env_type.cli_name()));
            plan.registered.push(registered);
            plan.streams.push((id, events));
            seen.insert(id);
            continue;
        };
        seen.insert(env.id);
        let name = &env.name;
        // A2: changing an environment takes an administrator, as `env set` decides it.
        let set = |security_group| EnvCommand::Set { security_group, app_pass: None, settings: vec![] };
        envcmd::decide(tenant, env, actor, &set(None), now)?;
        let mut events = Vec::new();
        let mut typed = None;
        if let Some(old) = env.env_type.filter(|t| *t != l.env_type) {
            let event = EnvEvent::EnvironmentTypeChanged { old, new: l.env_type };
            plan.report.push(format!("{name}: type {} -> {}", old.cli_name(), l.env_type.cli_name()));
            // E2 is judged on the type the listing gives.
            let mut judged = env.clone();
            judged.apply(&event, Stamp { seq: 0, at: now });
            typed = Some(judged);
            events.push(event);
        }
        match (env.dataverse, l.dataverse) {
            (false, true) => {
                plan.report.push(format!("{name}: Dataverse database added"));
                events.push(EnvEvent::DataverseAdded);
                let apps: Vec<_> = env.apps.iter().copied().collect();
                events.extend(environment::starting_state(env.id, name, &apps));
            }
            (true, false) => plan.report.push(format!(
                "{name}: listed without a Dataverse database; a database is never removed, left as it is"
            )),
            _ => {}
        }
        if let Some(group) = l.security_group.filter(|g| *g != env.security_group) {
            let judged = typed.as_ref().unwrap_or(env);
            let named = group_name(tenant, name, group)?;
            plan.report.push(format!("{name}: security group set to {}", named.as_deref().unwrap_or("none")));
            events.extend(envcmd::decide(tenant, judged, actor, &set(Some(named)), now)?);
        }
        if !l.name.eq_ignore_ascii_case(name) && shared[&l.name.to_lowercase()] == 1 {
            plan.report.push(format!("{name}: listed as {}; a rename is not imported", l.name));
        }
        if !events.is_empty() {
            plan.streams.push((env.id, events));
        }
    }
    plan.missing =
        tenant.environments().filter(|(id, _)| !seen.contains(id)).map(|(_, name)| name.to_owned()).collect();
    Ok(plan)
}

/// The name of the directory group `group`, which must be known.
fn group_name(tenant: &Tenant, env: &str, group: Option<Uuid>) -> Result<Option<String>, Rejection> {
    let Some(id) = group else { return Ok(None) };
    match tenant.groups.get(&id) {
        Some(g) => Ok(Some(g.name.clone())),
        None => invalid(format!(
            "environment {env}: its security group {id} is not in the directory (import graph --groups first)"
        )),
    }
}

/// An export of `env`'s SystemUser table as an observation: the rows that
/// differ from the last one, and the systemuserids it no longer holds.
/// `None` when it shows what the last one showed: the same file twice
/// appends nothing.
pub fn observe(env: &Environment, rows: &[ObservedUser], observed_at: DateTime<Utc>) -> Option<EnvEvent> {
    let ids: BTreeSet<Uuid> = rows.iter().map(|r| r.id).collect();
    let last = &env.observed.users;
    let gone: Vec<Uuid> = last.keys().filter(|id| !ids.contains(id)).copied().collect();
    let rows: Vec<ObservedUser> = rows.iter().filter(|r| last.get(&r.id) != Some(*r)).cloned().collect();
    (!rows.is_empty() || !gone.is_empty()).then_some(EnvEvent::SystemUsersObserved {
        observed_at,
        rows,
        gone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{encode, Event};

    fn row(n: u128) -> ObservedUser {
        ObservedUser {
            id: Uuid::from_u128(n),
            object_id: Some(Uuid::from_u128(n << 64)),
            application_id: None,
            domainname: Some(format!("user{n}@contoso.onmicrosoft.com")),
            is_disabled: Some(false),
            access_mode: Some(0),
            is_licensed: Some(true),
            business_unit: Some("Contoso".into()),
            roles: Some(["Basic User".to_owned(), "Salesperson".to_owned()].into()),
        }
    }

    fn observed(rows: &[ObservedUser]) -> Environment {
        let mut env = Environment::default();
        let at = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
        if let Some(event) = observe(&env, rows, at) {
            env.apply(&event, Stamp { seq: 1, at });
        }
        env
    }

    #[test]
    fn an_admin_id_is_kept_where_it_is_a_guid_and_derived_alike_in_any_case_where_not() {
        let id = "4f1c7a52-3b0e-4c1d-9a7e-2d5b8c6f1e01";
        assert_eq!(environment_id(id).to_string(), id);
        let default = environment_id("Default-b1f7e6d4-2c3a-4e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(default, environment_id(" default-B1F7E6D4-2c3a-4e5f-8a9b-0c1d2e3f4a5b"));
        assert_ne!(default, environment_id("Default-other"));
    }

    #[test]
    fn an_observation_records_only_what_changed_and_what_is_gone() {
        let rows: Vec<ObservedUser> = (1..=3).map(row).collect();
        let env = observed(&rows);
        assert_eq!(env.observed.users.len(), 3);
        let at = env.observed.at.unwrap_or_default();
        assert_eq!(observe(&env, &rows, at), None, "the same export twice appends nothing");
        let mut later = rows[..2].to_vec();
        later[1].is_disabled = Some(true);
        let Some(EnvEvent::SystemUsersObserved { rows: changed, gone, .. }) = observe(&env, &later, at)
        else {
            panic!("a changed export is observed");
        };
        assert_eq!((changed, gone), (vec![later[1].clone()], vec![rows[2].id]));
    }

    #[test]
    fn an_observed_row_takes_about_a_hundred_bytes_of_the_log() {
        let rows: Vec<ObservedUser> = (1..=1_000).map(row).collect();
        let at = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
        let event = observe(&Environment::default(), &rows, at).map(Event::Environment);
        let bytes = event.map(|e| encode(&e).map(|b| b.len()).unwrap_or(usize::MAX)).unwrap_or(0);
        assert!((90_000..=110_000).contains(&bytes), "1000 rows in {bytes} bytes");
    }
}
