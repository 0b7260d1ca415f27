//! A generator of realistic synthetic tenants, written through the real APIs:
//! every event is decided by the domain (`tenant::decide`, `envcmd::decide`,
//! `sync::sync_user`), folded into the in-memory states it was decided on,
//! and appended through `SledStore::append_all_blocking`, many commands per
//! transaction (as an import would), in `Durability::Batched`.
//!
//! Shape: tenant init, five SKUs, N users with licenses, departments as
//! security groups, M environments (one gated by a group, the rest open),
//! a first sync pass, then history until the log holds K events: profile
//! updates, license moves, blocks and unblocks, admin roles, group moves,
//! environment role assignments, each directory change followed by the sync
//! of that user (what the background pass would write). Snapshots are saved
//! the way the CLI saves them (`projections::fold::load`), every
//! `snapshot_every` records of a stream.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cli::shell::Ids;
use domain::eligibility::How;
use domain::envcmd::{self, EnvCommand, NewEnvironment};
use domain::environment::{self, Environment};
use domain::events::{self, AdminRole, App, EnvEvent, EnvType, Event, ProfileField, SkuKind, Stamp};
use domain::tenant::{self, MemberRef, NewUser, Tenant, TenantCommand};
use domain::{Upn, SCHEMA_VERSION};
use projections::fold::{self, Snapshots};
use store::{Append, Causation, Durability, ExpectedVersion, Metadata, NewEvent, OpenOptions, SledStore};
use uuid::Uuid;

pub const DOMAIN: &str = "contoso.onmicrosoft.com";
pub const ADMIN: &str = "admin@contoso.onmicrosoft.com";
const SKUS: [(&str, SkuKind); 5] = [
    ("DYN365_ENTERPRISE_SALES", SkuKind::D365),
    ("POWERAPPS_PER_USER", SkuKind::PowerApps),
    ("ENTERPRISEPACK", SkuKind::M365Dataverse),
    ("O365_BUSINESS_ESSENTIALS", SkuKind::Office),
    ("DYN365_CUSTOMER_SERVICE", SkuKind::D365),
];
const DEPARTMENTS: [&str; 6] = ["Sales", "Service", "Finance", "IT", "Marketing", "Operations"];
const FIRST: [&str; 10] =
    ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Julia"];
const LAST: [&str; 10] =
    ["Adams", "Berger", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jansen"];
const TITLES: [&str; 6] = ["Seller", "Agent", "Analyst", "Engineer", "Manager", "Specialist"];
const CITIES: [&str; 6] = ["Lyon", "Oslo", "Porto", "Riga", "Graz", "Ghent"];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub users: usize,
    pub environments: usize,
    /// Stop the history once the log holds at least this many events.
    pub events: u64,
    /// Commands per transaction.
    pub batch: usize,
    /// Save a stream's snapshot once this many of its records are past the last one (0: never).
    pub snapshot_every: u64,
    /// Run the first sync pass over every environment (and sync each change after).
    pub sync: bool,
    /// The clock's step between history commands, in seconds (set-up's are 7 s apart).
    pub seconds_per_command: i64,
}

/// A generated database.
pub struct Generated {
    pub head: u64,
    /// The head after the set-up (tenant, users, environments, first sync).
    pub setup: u64,
    pub env_names: Vec<String>,
    pub upns: Vec<String>,
    pub elapsed: Duration,
    pub rejected: u64,
    /// Records the first close after generating moved into the archive, and how long it took.
    pub archived: u64,
    pub archiving: Duration,
}

/// A tiny deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Env {
    name: String,
    state: Environment,
}

struct Gen {
    store: SledStore,
    ids: Ids,
    tenant: Tenant,
    envs: Vec<Env>,
    seq: u64,
    versions: HashMap<String, u64>,
    since_snapshot: HashMap<String, u64>,
    now: DateTime<Utc>,
    pending: Vec<Append>,
    pending_commands: usize,
    spec: Spec,
    rng: Rng,
    admin: Upn,
    rejected: u64,
    /// Seconds between commands.
    step: i64,
}

pub fn upn_of(i: usize) -> String {
    format!("u{i}.{}@{DOMAIN}", LAST[i % LAST.len()].to_lowercase())
}

/// Where the bench keeps its databases' cache keys: one place for the
/// generator and every child command, which are separate processes (a
/// process's own key would make every cache of the one before a miss).
pub fn cache_keys() -> store::CacheKeys {
    store::CacheKeys::Dir(std::env::temp_dir().join("usertrail-bench-keys"))
}

/// Opens (or creates) a log in the batched mode, as an import would.
pub fn open_batched(path: &Path) -> SledStore {
    SledStore::open(
        path,
        OpenOptions {
            lock_timeout: Duration::from_secs(10),
            durability: Durability::Batched,
            cache_keys: cache_keys(),
            ..OpenOptions::default()
        },
    )
    .expect("open the log")
}

/// Writes a synthetic tenant into a new log at `path`.
pub fn generate(path: &Path, spec: Spec) -> Generated {
    let started = Instant::now();
    let store = open_batched(path);
    let mut g = Gen {
        store,
        ids: Ids::seeded_ordered(0x5eed),
        tenant: Tenant::default(),
        envs: Vec::new(),
        seq: 0,
        versions: HashMap::new(),
        since_snapshot: HashMap::new(),
        now: DateTime::from_timestamp(1_735_689_600, 0).unwrap(),
        pending: Vec::new(),
        pending_commands: 0,
        spec,
        rng: Rng::new(0x9e37_79b9_7f4a_7c15),
        admin: Upn::parse(ADMIN).unwrap(),
        rejected: 0,
        step: 7,
    };
    g.setup();
    let setup = g.seq;
    g.history();
    g.flush();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(store::EventStore::flush(&g.store)).expect("flush");
    let elapsed = started.elapsed();
    // The writer's close moves its older records into the archive, timed apart.
    let settling = Instant::now();
    let archived = g.store.close().expect("close the log, archiving the older records");
    Generated {
        head: g.seq,
        archived,
        archiving: settling.elapsed(),
        setup,
        env_names: g.envs.iter().map(|e| e.name.clone()).collect(),
        upns: (0..spec.users).map(upn_of).collect(),
        elapsed,
        rejected: g.rejected,
    }
}

impl Gen {
    fn new_event(&self, event: &Event) -> NewEvent {
        NewEvent {
            event_id: self.ids.next(),
            event_type: event.type_name().to_owned(),
            schema_version: SCHEMA_VERSION,
            payload: events::encode(event).expect("generated events are small"),
        }
    }

    fn meta(&self, actor: &str, causation: Causation) -> Metadata {
        Metadata {
            recorded_at: self.now,
            actor: actor.to_owned(),
            correlation_id: self.ids.next(),
            causation,
            origin: None,
        }
    }

    /// Queues one stream's events and returns the stamps they will land with.
    fn queue(&mut self, stream: String, events: Vec<Event>, meta: Metadata) {
        if events.is_empty() {
            return;
        }
        let version = self.versions.entry(stream.clone()).or_default();
        let expected = *version;
        *version += events.len() as u64;
        *self.since_snapshot.entry(stream.clone()).or_default() += events.len() as u64;
        let new_events = events.iter().map(|e| self.new_event(e)).collect();
        self.pending.push(Append {
            stream,
            expected: ExpectedVersion::Exactly(expected),
            events: new_events,
            meta,
        });
    }

    fn stamp(&mut self) -> Stamp {
        self.seq += 1;
        Stamp { seq: self.seq, at: self.now }
    }

    fn end_command(&mut self) {
        self.now += chrono::Duration::seconds(self.step);
        self.pending_commands += 1;
        if self.pending_commands >= self.spec.batch {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let appends = std::mem::take(&mut self.pending);
        self.pending_commands = 0;
        let appended = self.store.append_all_blocking(&appends).expect("store").expect("append accepted");
        assert_eq!(appended.last().map(|a| a.last_seq), Some(self.seq), "stamps match where events landed");
        if self.spec.snapshot_every > 0 {
            self.snapshots();
        }
    }

    /// Saves snapshots as the CLI would after a long replay.
    fn snapshots(&mut self) {
        let due: Vec<String> = self
            .since_snapshot
            .iter()
            .filter(|(_, n)| **n >= self.spec.snapshot_every)
            .map(|(s, _)| s.clone())
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for stream in due {
            if stream == tenant::STREAM {
                rt.block_on(fold::load::<Tenant, _>(&self.store, &stream, u64::MAX, Snapshots::Use)).unwrap();
            } else if stream.starts_with("env/") {
                rt.block_on(fold::load::<Environment, _>(&self.store, &stream, u64::MAX, Snapshots::Use))
                    .unwrap();
            }
            self.since_snapshot.insert(stream, 0);
        }
    }

    /// Decides a tenant command, folds and queues its events; false if turned down.
    fn tenant_command(&mut self, command: TenantCommand) -> bool {
        let admin = self.admin.clone();
        let events = match tenant::decide(&self.tenant, &admin, &command, self.now) {
            Ok(events) => events,
            Err(_) => {
                self.rejected += 1;
                return false;
            }
        };
        for e in &events {
            let stamp = self.stamp();
            self.tenant.apply(e, stamp);
        }
        let meta = self.meta(ADMIN, Causation::Command { name: command.name().to_owned() });
        self.queue(tenant::STREAM.to_owned(), events.into_iter().map(Event::Tenant).collect(), meta);
        self.end_command();
        true
    }

    fn env_command(&mut self, env: usize, command: EnvCommand) -> bool {
        let admin = self.admin.clone();
        let events = match envcmd::decide(&self.tenant, &self.envs[env].state, &admin, &command, self.now) {
            Ok(events) => events,
            Err(_) => {
                self.rejected += 1;
                return false;
            }
        };
        let stream = environment::stream(self.envs[env].state.id);
        for e in &events {
            let stamp = self.stamp();
            self.envs[env].state.apply(e, stamp);
        }
        let meta = self.meta(ADMIN, Causation::Command { name: command.name().to_owned() });
        self.queue(stream, events.into_iter().map(Event::Environment).collect(), meta);
        self.end_command();
        true
    }

    /// What the background sync pass writes for one user, in every environment.
    fn sync_one(&mut self, id: Uuid) {
        if !self.spec.sync {
            return;
        }
        for env in 0..self.envs.len() {
            let Some(user) = self.tenant.users.get(&id) else { return };
            let (e, events) =
                domain::sync::sync_user(&self.tenant, &self.envs[env].state, user, How::Sync, self.now);
            if events.is_empty() {
                continue;
            }
            let trigger = e.newest_evidence();
            self.sync_events(env, events, trigger);
        }
    }

    fn sync_events(&mut self, env: usize, events: Vec<EnvEvent>, trigger: u64) {
        for e in &events {
            let stamp = self.stamp();
            self.envs[env].state.apply(e, stamp);
        }
        let meta = self.meta("sync", Causation::Process { name: "sync".into(), trigger: Some(trigger) });
        let stream = environment::stream(self.envs[env].state.id);
        self.queue(stream, events.into_iter().map(Event::Environment).collect(), meta);
    }

    fn person(&mut self, i: usize) -> NewUser {
        let mut profile = events::Profile::default();
        profile.set(ProfileField::GivenName, Some(FIRST[i % FIRST.len()].to_owned()));
        profile.set(ProfileField::Surname, Some(LAST[(i / 10) % LAST.len()].to_owned()));
        profile.set(ProfileField::JobTitle, Some(TITLES[i % TITLES.len()].to_owned()));
        profile.set(ProfileField::Department, Some(DEPARTMENTS[i % DEPARTMENTS.len()].to_owned()));
        profile.set(ProfileField::City, Some(CITIES[(i / 7) % CITIES.len()].to_owned()));
        let upn = if i == usize::MAX { ADMIN.to_owned() } else { upn_of(i) };
        NewUser {
            id: self.ids.next(),
            upn: Upn::parse(&upn).unwrap(),
            profile,
            licenses: Vec::new(),
            admin_roles: Vec::new(),
            guest: false,
            home_licenses: Vec::new(),
            temporary_password: true,
        }
    }

    fn setup(&mut self) {
        let admin = self.person(usize::MAX);
        self.tenant_command(TenantCommand::Init { domain: DOMAIN.into(), name: "Contoso".into(), admin });
        let seats = (self.spec.users as u32).saturating_mul(2).max(10);
        for (sku, kind) in SKUS {
            self.tenant_command(TenantCommand::AddSku { sku: sku.into(), kind, seats });
        }
        for d in DEPARTMENTS {
            let id = self.ids.next();
            self.tenant_command(TenantCommand::CreateGroup { id, name: format!("{d}-SG"), owner: None });
        }
        for i in 0..self.spec.users {
            let mut new = self.person(i);
            new.licenses = match i % 10 {
                0..=4 => vec![SKUS[0].0.into(), SKUS[2].0.into()],
                5..=7 => vec![SKUS[4].0.into()],
                8 => vec![SKUS[1].0.into()],
                _ => vec![SKUS[3].0.into()],
            };
            let upn = new.upn.clone();
            self.tenant_command(TenantCommand::CreateUser(new));
            let group = format!("{}-SG", DEPARTMENTS[i % DEPARTMENTS.len()]);
            self.tenant_command(TenantCommand::AddMember { group, member: MemberRef::User(upn) });
        }
        for m in 0..self.spec.environments {
            let name = format!("Env{m}");
            let new = NewEnvironment {
                id: self.ids.next(),
                name: name.clone(),
                env_type: if m == 0 { EnvType::Production } else { EnvType::Sandbox },
                dataverse: true,
                security_group: (m == 0).then(|| "Sales-SG".to_owned()),
                app_pass: 0,
                apps: vec![App::Sales],
            };
            let (registered, env_events) = envcmd::decide_create(&self.tenant, &self.admin, &new, self.now)
                .expect("environment creation is allowed");
            let stamp = self.stamp();
            self.tenant.apply(&registered, stamp);
            let mut state = Environment::default();
            for e in &env_events {
                let stamp = self.stamp();
                state.apply(e, stamp);
            }
            let meta = self.meta(ADMIN, Causation::Command { name: "env create".into() });
            self.queue(tenant::STREAM.to_owned(), vec![Event::Tenant(registered)], meta.clone());
            self.queue(
                environment::stream(new.id),
                env_events.into_iter().map(Event::Environment).collect(),
                meta,
            );
            self.envs.push(Env { name, state });
            self.end_command();
        }
        // The first sync pass, one environment at a time, as `sync` writes it.
        if self.spec.sync {
            for env in 0..self.envs.len() {
                let changes = domain::sync::sync_pass(&self.tenant, &self.envs[env].state, self.now);
                for change in changes {
                    self.sync_events(env, change.events, change.trigger);
                    self.pending_commands += 1;
                    if self.pending_commands >= self.spec.batch {
                        self.flush();
                    }
                }
                self.end_command();
            }
        }
    }

    fn history(&mut self) {
        self.step = self.spec.seconds_per_command;
        let users = self.spec.users.max(1);
        let mut misses = 0u64;
        while self.seq < self.spec.events && misses < 10_000 {
            let i = self.rng.below(users);
            let upn = Upn::parse(&upn_of(i)).unwrap();
            let Some(id) = self.tenant.live_user(&upn, self.now).map(|u| u.id) else {
                misses += 1;
                continue;
            };
            let roll = self.rng.below(100);
            let done = match roll {
                0..=34 => {
                    let field = [ProfileField::JobTitle, ProfileField::City, ProfileField::MobilePhone]
                        [self.rng.below(3)];
                    let value = match field {
                        ProfileField::JobTitle => TITLES[self.rng.below(TITLES.len())].to_owned(),
                        ProfileField::City => CITIES[self.rng.below(CITIES.len())].to_owned(),
                        _ => format!("+33 6 {:08}", self.rng.below(100_000_000)),
                    };
                    self.tenant_command(TenantCommand::UpdateUser {
                        upn: upn.clone(),
                        fields: vec![(field, Some(value))],
                    })
                }
                35..=54 => {
                    // A license move: take one away, or give one back.
                    let sku = SKUS[[0, 1, 4][self.rng.below(3)]].0.to_owned();
                    let has = self.tenant.users[&id].licenses.contains(&sku);
                    if has {
                        self.tenant_command(TenantCommand::RemoveLicense { upn: upn.clone(), sku })
                    } else {
                        self.tenant_command(TenantCommand::AssignLicense { upn: upn.clone(), sku })
                    }
                }
                55..=69 => {
                    if self.tenant.users[&id].account_enabled {
                        self.tenant_command(TenantCommand::Block { upn: upn.clone() })
                    } else {
                        self.tenant_command(TenantCommand::Unblock { upn: upn.clone() })
                    }
                }
                70..=74 => {
                    let role = [AdminRole::PowerPlatform, AdminRole::UserAdmin, AdminRole::PasswordAdmin]
                        [self.rng.below(3)];
                    if self.tenant.users[&id].admin_roles.contains(&role) {
                        self.tenant_command(TenantCommand::RemoveAdminRole { upn: upn.clone(), role })
                    } else {
                        self.tenant_command(TenantCommand::AddAdminRole { upn: upn.clone(), role })
                    }
                }
                75..=84 => {
                    let group = format!("{}-SG", DEPARTMENTS[self.rng.below(DEPARTMENTS.len())]);
                    let member = MemberRef::User(upn.clone());
                    let is_member = self.tenant.group_named(&group).is_some_and(|g| {
                        g.members.iter().any(|m| matches!(m, events::Member::User(u) if *u == id))
                    });
                    if is_member {
                        self.tenant_command(TenantCommand::RemoveMember { group, member })
                    } else {
                        self.tenant_command(TenantCommand::AddMember { group, member })
                    }
                }
                _ => {
                    if self.envs.is_empty() {
                        false
                    } else {
                        let env = self.rng.below(self.envs.len());
                        let role = ["Salesperson", "Basic User"][self.rng.below(2)].to_owned();
                        let has = self.envs[env].state.user_by_object(id).is_some_and(|su| {
                            su.roles
                                .iter()
                                .any(|r| self.envs[env].state.roles.get(r).is_some_and(|x| x.name == role))
                        });
                        if has {
                            self.env_command(env, EnvCommand::RemoveRole { upn: upn.clone(), role })
                        } else {
                            self.env_command(env, EnvCommand::AssignRole { upn: upn.clone(), role })
                        }
                    }
                }
            };
            if done && roll < 85 {
                self.sync_one(id);
            }
        }
    }
}

/// Every projection rebuilt from zero: the tenant and every environment, each
/// folded from its own stream with snapshots ignored. Returns the records folded.
pub fn rebuild_all(store: &SledStore) -> u64 {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let rebuilt = rt.block_on(fold::rebuild_all(store, u64::MAX)).unwrap();
    assert!(rebuilt.tenant.1 > 0, "the tenant was rebuilt");
    rebuilt.records
}
