//! Rule tests of environments, eligibility and sync: given a directory and an
//! environment, when a command or a sync pass is decided, then these events
//! or this refusal. Each test names its rule.

use chrono::{Duration, TimeZone};

use super::*;
use crate::eligibility::{can_access, eligibility, Checked};
use crate::environment::{DELEGATED_ADMIN_UPN, SUPPORT_UPN};
use crate::events::{AdminRole, Entitlement, Event, Member, Profile, ProfileField, SkuKind, Stamp};
use crate::rules::Refusal;
use crate::sync::sync_pass;
use crate::tenant::{MemberRef, NewUser, TenantCommand};

const ADMIN: &str = "admin@contoso.onmicrosoft.com";
const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";
const SALES_SKU: &str = "DYN365_SALES";
const E3: &str = "ENTERPRISEPACK";
const OFFICE: &str = "O365_ESSENTIALS";

fn upn(text: &str) -> Upn {
    Upn::parse(text).unwrap()
}

/// A tenant with environments, folded from a log kept in memory.
struct World {
    tenant: Tenant,
    envs: Vec<Environment>,
    now: DateTime<Utc>,
    seq: u64,
    next: u128,
}

impl World {
    /// Contoso: the admin, a 10-seat Dynamics SKU, an M365 SKU, an Office
    /// SKU, group Sales-SG, and users alice and bob without licenses.
    fn contoso() -> World {
        let mut w = World {
            tenant: Tenant::default(),
            envs: Vec::new(),
            now: Utc.with_ymd_and_hms(2026, 2, 2, 9, 0, 0).unwrap(),
            seq: 0,
            next: 10,
        };
        let admin = w.new_user(ADMIN);
        w.tenant_ok(
            ADMIN,
            TenantCommand::Init { domain: "contoso.onmicrosoft.com".into(), name: "Contoso".into(), admin },
        );
        for (sku, kind) in
            [(SALES_SKU, SkuKind::D365), (E3, SkuKind::M365Dataverse), (OFFICE, SkuKind::Office)]
        {
            w.tenant_ok(ADMIN, TenantCommand::AddSku { sku: sku.into(), kind, seats: 10 });
        }
        w.user(ALICE);
        w.user(BOB);
        w.tenant_ok(
            ADMIN,
            TenantCommand::CreateGroup { id: Uuid::from_u128(900), name: "Sales-SG".into(), owner: None },
        );
        w
    }

    fn new_user(&mut self, who: &str) -> NewUser {
        self.next += 1;
        let mut profile = Profile::default();
        profile.set(ProfileField::GivenName, Some(who.split('@').next().unwrap_or_default().to_owned()));
        profile.set(ProfileField::Surname, Some("Tester".into()));
        profile.set(ProfileField::Mail, Some(who.to_owned()));
        NewUser {
            id: Uuid::from_u128(self.next),
            upn: upn(who),
            profile,
            licenses: vec![],
            admin_roles: vec![],
            guest: false,
            home_licenses: vec![],
            temporary_password: true,
        }
    }

    fn stamp(&mut self) -> Stamp {
        self.seq += 1;
        Stamp { seq: self.seq, at: self.now }
    }

    fn tenant_ok(&mut self, actor: &str, command: TenantCommand) {
        let events = crate::tenant::decide(&self.tenant, &upn(actor), &command, self.now)
            .unwrap_or_else(|r| panic!("{r}"));
        for e in events {
            let stamp = self.stamp();
            self.tenant.apply(&e, stamp);
        }
    }

    fn user(&mut self, who: &str) {
        let new = self.new_user(who);
        self.tenant_ok(ADMIN, TenantCommand::CreateUser(new));
    }

    fn license(&mut self, who: &str, sku: &str) {
        self.tenant_ok(ADMIN, TenantCommand::AssignLicense { upn: upn(who), sku: sku.into() });
    }

    fn unlicense(&mut self, who: &str, sku: &str) {
        self.tenant_ok(ADMIN, TenantCommand::RemoveLicense { upn: upn(who), sku: sku.into() });
    }

    fn join(&mut self, who: &str) {
        self.tenant_ok(
            ADMIN,
            TenantCommand::AddMember { group: "Sales-SG".into(), member: MemberRef::User(upn(who)) },
        );
    }

    /// Creates an environment; returns its index in `envs`.
    fn env(
        &mut self,
        actor: &str,
        name: &str,
        env_type: EnvType,
        configure: impl FnOnce(&mut NewEnvironment),
    ) -> usize {
        self.next += 1;
        let mut new = NewEnvironment {
            id: Uuid::from_u128(self.next),
            name: name.into(),
            env_type,
            dataverse: true,
            security_group: None,
            app_pass: 0,
            apps: vec![],
        };
        configure(&mut new);
        let (registered, events) =
            decide_create(&self.tenant, &upn(actor), &new, self.now).unwrap_or_else(|r| panic!("{r}"));
        let stamp = self.stamp();
        self.tenant.apply(&registered, stamp);
        let mut env = Environment::default();
        for e in &events {
            let stamp = self.stamp();
            env.apply(e, stamp);
        }
        self.envs.push(env);
        self.envs.len() - 1
    }

    fn when(&self, env: usize, actor: &str, command: EnvCommand) -> Decided {
        decide(&self.tenant, &self.envs[env], &upn(actor), &command, self.now)
    }

    fn apply(&mut self, env: usize, events: &[EnvEvent]) {
        for e in events {
            let stamp = self.stamp();
            self.envs[env].apply(e, stamp);
        }
    }

    fn ok(&mut self, env: usize, actor: &str, command: EnvCommand) -> Vec<EnvEvent> {
        let events = self.when(env, actor, command).unwrap_or_else(|r| panic!("refused: {r}"));
        self.apply(env, &events);
        events
    }

    /// Runs a sync pass; returns the events it wrote.
    fn sync(&mut self, env: usize) -> Vec<EnvEvent> {
        let changes = sync_pass(&self.tenant, &self.envs[env], self.now);
        let events: Vec<EnvEvent> = changes.into_iter().flat_map(|c| c.events).collect();
        self.apply(env, &events);
        events
    }

    fn record(&self, env: usize, who: &str) -> Option<&SystemUser> {
        let user = self.tenant.user(&upn(who))?;
        self.envs[env].user_by_object(user.id)
    }

    fn roles_of(&self, env: usize, who: &str) -> Vec<String> {
        let record = self.record(env, who).expect("a record");
        let mut names: Vec<String> =
            record.roles.iter().map(|r| self.envs[env].roles[r].name.clone()).collect();
        names.sort();
        names
    }
}

fn refused_by(outcome: Decided, rule: Rule) -> String {
    match outcome {
        Err(Rejection::Refused(Refusal { rule: r, reason })) if r == rule => reason,
        other => panic!("expected a refusal by {rule}, got {other:?}"),
    }
}

fn production(w: &mut World) -> usize {
    w.env(ADMIN, "Sales", EnvType::Production, |_| {})
}

#[test]
fn e1_an_environment_without_a_database_rejects_every_add() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = w.env(ADMIN, "Flows", EnvType::Production, |e| e.dataverse = false);
    assert!(w.envs[env].users.is_empty(), "no placeholders without a database");
    assert!(w.sync(env).is_empty(), "sync adds nobody");
    for command in [
        EnvCommand::AddUser { upn: upn(ALICE) },
        EnvCommand::CreateAppUser {
            app_id: Uuid::from_u128(5),
            name: "ERP".into(),
            business_unit: None,
            roles: vec![],
        },
        EnvCommand::ImportStubs {
            rows: vec![StubRow {
                line: 2,
                domainname: "x@contoso.com".into(),
                firstname: "X".into(),
                lastname: "Y".into(),
            }],
        },
    ] {
        let reason = refused_by(w.when(env, ADMIN, command), Rule::E1);
        assert!(reason.contains("no Dataverse database"), "{reason}");
    }
    refused_by(w.when(env, ALICE, EnvCommand::Access { upn: upn(ALICE) }), Rule::E1);
}

#[test]
fn e2_default_and_developer_environments_take_no_security_group() {
    let mut w = World::contoso();
    for env_type in [EnvType::Default, EnvType::Developer] {
        let new = NewEnvironment {
            id: Uuid::from_u128(77),
            name: "X".into(),
            env_type,
            dataverse: true,
            security_group: Some("Sales-SG".into()),
            app_pass: 0,
            apps: vec![],
        };
        assert!(matches!(
            decide_create(&w.tenant, &upn(ADMIN), &new, w.now),
            Err(Rejection::Refused(Refusal { rule: Rule::E2, .. }))
        ));
    }
    let default = w.env(ADMIN, "Contoso (default)", EnvType::Default, |_| {});
    let set =
        EnvCommand::Set { security_group: Some(Some("Sales-SG".into())), app_pass: None, settings: vec![] };
    refused_by(w.when(default, ADMIN, set), Rule::E2);
}

#[test]
fn e2_changing_the_security_group_changes_who_is_eligible_at_the_next_sync() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    w.join(ALICE);
    let env = production(&mut w);
    w.sync(env);
    assert!(!w.record(env, BOB).unwrap().is_disabled);
    w.ok(
        env,
        ADMIN,
        EnvCommand::Set { security_group: Some(Some("Sales-SG".into())), app_pass: None, settings: vec![] },
    );
    w.sync(env);
    assert!(!w.record(env, ALICE).unwrap().is_disabled, "a member stays");
    assert!(w.record(env, BOB).unwrap().is_disabled, "S4: bob is no longer entitled");
    w.ok(env, ADMIN, EnvCommand::Set { security_group: Some(None), app_pass: None, settings: vec![] });
    w.sync(env);
    assert!(!w.record(env, BOB).unwrap().is_disabled, "cleared: bob is entitled again");
}

#[test]
fn e3_installed_apps_decide_default_roles_and_e4_settings_change() {
    // R: E3, E4
    let mut w = World::contoso();
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| {
        e.apps = vec![App::Sales, App::CustomerService];
        e.app_pass = 2;
    });
    let names: Vec<&str> = w.envs[env].roles.values().map(|r| r.name.as_str()).collect();
    for expected in ["Salesperson", "Sales app access", "Customer Service app access"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert_eq!(w.envs[env].app_pass, 2);
    let settings = vec![(ALLOW_ROLE_ASSIGNMENT_ON_DISABLED.to_owned(), Some("true".to_owned()))];
    let events = w.ok(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: Some(5), settings });
    assert_eq!(events.len(), 2);
    assert!(w.envs[env].flag(ALLOW_ROLE_ASSIGNMENT_ON_DISABLED));
    assert_eq!(w.envs[env].app_pass, 5);
    let unknown = vec![("frobnicate".to_owned(), Some("1".to_owned()))];
    assert!(matches!(
        w.when(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: None, settings: unknown }),
        Err(Rejection::Invalid(_))
    ));
}

#[test]
fn e5_a_new_environment_starts_with_root_unit_default_roles_and_two_placeholders() {
    let mut w = World::contoso();
    let env = production(&mut w);
    let env = &w.envs[env];
    assert_eq!(env.business_units.len(), 1);
    assert_eq!(env.business_units[&env.root_business_unit].parent, None);
    let names: Vec<&str> = env.roles.values().map(|r| r.name.as_str()).collect();
    for expected in ["System Administrator", "System Customizer", "Basic User", "Environment Maker"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(!names.contains(&"Salesperson"), "Salesperson only where Sales is installed");
    let delegated = env.users_named(DELEGATED_ADMIN_UPN).next().unwrap();
    assert_eq!((delegated.kind, delegated.access_mode.value()), (UserKind::DelegatedAdmin, 5));
    assert!(delegated.roles.contains(&env.role_named("System Administrator").unwrap().id));
    let support = env.users_named(SUPPORT_UPN).next().unwrap();
    assert_eq!((support.kind, support.access_mode.value()), (UserKind::Support, 3));
}

#[test]
fn e5_placeholders_are_never_synced_nor_counted() {
    let mut w = World::contoso();
    let env = production(&mut w);
    w.sync(env);
    assert_eq!(w.envs[env].non_interactive().count(), 0);
    let placeholders: Vec<_> =
        w.envs[env].users.values().filter(|u| u.added_by == AddedBy::Placeholder).collect();
    assert_eq!(placeholders.len(), 2);
    assert!(placeholders.iter().all(|p| p.object_id.is_none()), "not linked to the directory");
    assert_eq!(w.sync(env), vec![], "a second pass changes nothing");
}

#[test]
fn s1_sync_adds_licensed_users_and_a_second_pass_changes_nothing() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    let events = w.sync(env);
    assert!(matches!(&events[0], EnvEvent::SystemUserAdded { added_by: AddedBy::Sync, .. }));
    let alice = w.record(env, ALICE).unwrap();
    assert!(!alice.is_disabled && alice.is_licensed);
    assert_eq!(alice.access_mode, AccessMode::ReadWrite, "A1: licensed users are Read-Write");
    assert!(w.record(env, BOB).is_none(), "bob has no license");
    assert!(w.sync(env).is_empty());
}

#[test]
fn s1_1_a_trial_adds_on_demand_only_but_keeps_records_up_to_date() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = w.env(ADMIN, "Trial", EnvType::Trial, |_| {});
    assert!(w.sync(env).is_empty());
    let e = eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(ALICE)).unwrap(), How::Sync, w.now);
    let add = e.checks.iter().find(|c| c.what == Checked::Added).unwrap();
    assert_eq!((add.rule, add.passed), (Rule::S1_1, false));
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(ALICE) });
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(ALICE),
            fields: vec![(ProfileField::City, Some("Oslo".into()))],
        },
    );
    w.sync(env);
    assert_eq!(w.record(env, ALICE).unwrap().column(Column::City), Some("Oslo"), "the pass still updates");
}

#[test]
fn s1_2_a_developer_environment_adds_only_its_creator() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    let env = w.env(ALICE, "Alice dev", EnvType::Developer, |_| {});
    w.sync(env);
    assert!(w.record(env, ALICE).is_some());
    assert!(w.record(env, BOB).is_none());
    refused_by(w.when(env, ADMIN, EnvCommand::AddUser { upn: upn(BOB) }), Rule::S1_2);
}

#[test]
fn s1_3_teams_adds_users_on_their_first_access_only() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = w.env(ADMIN, "Team", EnvType::Teams, |_| {});
    assert!(w.sync(env).is_empty());
    refused_by(w.when(env, ADMIN, EnvCommand::AddUser { upn: upn(ALICE) }), Rule::S1_3);
    let events = w.ok(env, ALICE, EnvCommand::Access { upn: upn(ALICE) });
    assert!(matches!(&events[0], EnvEvent::SystemUserAdded { added_by: AddedBy::Access, .. }));
}

#[test]
fn s1_4_free_plan_app_pass_and_marketing_entitle_on_demand_only() {
    let mut w = World::contoso();
    w.license(ALICE, E3);
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.app_pass = 1);
    w.sync(env);
    assert!(
        w.record(env, ALICE).is_none() && w.record(env, BOB).is_none(),
        "sync adds neither the free plan nor app-pass users"
    );
    let e = eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(ALICE)).unwrap(), How::Sync, w.now);
    assert_eq!(e.entitlement, Some(Entitlement::FreeDataversePlan(E3.into())));
    assert!(e.entitled() && !e.may_add());
    w.ok(env, ALICE, EnvCommand::Access { upn: upn(ALICE) });
    assert!(!w.record(env, ALICE).unwrap().is_disabled);
    // Bob has nothing but the environment's app pass; the capacity is one.
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(BOB) });
    assert_eq!(w.record(env, BOB).unwrap().entitlement, Some(Entitlement::AppPass));
    w.user("carol@contoso.onmicrosoft.com");
    let reason = refused_by(
        w.when(env, ADMIN, EnvCommand::AddUser { upn: upn("carol@contoso.onmicrosoft.com") }),
        Rule::S2_2,
    );
    assert!(reason.contains("app-pass capacity is used up (1 of 1)"), "{reason}");
    // The tenant-level Marketing license entitles carol on demand.
    w.tenant_ok(ADMIN, TenantCommand::AddSku { sku: "MKT".into(), kind: SkuKind::MarketingTenant, seats: 1 });
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn("carol@contoso.onmicrosoft.com") });
    assert_eq!(
        w.record(env, "carol@contoso.onmicrosoft.com").unwrap().entitlement,
        Some(Entitlement::MarketingTenant("MKT".into()))
    );
}

#[test]
fn s2_1_a_blocked_or_deleted_user_is_disabled_s4_never_deleted() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.tenant_ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) });
    w.tenant_ok(ADMIN, TenantCommand::Delete { upn: upn(BOB) });
    let events = w.sync(env);
    assert_eq!(events.iter().filter(|e| matches!(e, EnvEvent::SystemUserDisabled { .. })).count(), 2);
    assert!(w.record(env, ALICE).unwrap().is_disabled);
    assert!(w.record(env, BOB).unwrap().is_disabled, "S4: a deleted user's record stays, disabled");
    w.now += Duration::days(40);
    assert!(w.sync(env).is_empty(), "purged: still there, still disabled");
    assert_eq!(w.envs[env].users.len(), 5, "two placeholders, the admin as setup user, alice, bob");
}

#[test]
fn s2_2_removing_the_license_disables_and_reassigning_reenables() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.unlicense(ALICE, SALES_SKU);
    let removal = w.seq;
    let changes = sync_pass(&w.tenant, &w.envs[env], w.now);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].trigger, removal, "the pass names the record that triggered it");
    let events = w.sync(env);
    let EnvEvent::SystemUserDisabled { reason, .. } = &events[1] else { panic!("{events:?}") };
    assert!(reason.starts_with("S2.2: no license"), "{reason}");
    w.license(ALICE, SALES_SKU);
    w.sync(env);
    assert!(!w.record(env, ALICE).unwrap().is_disabled);
}

#[test]
fn s2_2_an_office_license_entitles_nothing() {
    let mut w = World::contoso();
    w.license(ALICE, OFFICE);
    let env = production(&mut w);
    let reason = refused_by(w.when(env, ADMIN, EnvCommand::AddUser { upn: upn(ALICE) }), Rule::S2_2);
    assert!(reason.contains("O365_ESSENTIALS is Office-only"), "{reason}");
}

#[test]
fn s2_3_a_guest_needs_a_license_from_this_tenant() {
    let mut w = World::contoso();
    let mut jane = w.new_user("jane@fabrikam.com");
    jane.guest = true;
    jane.home_licenses = vec![SALES_SKU.into()];
    w.tenant_ok(ADMIN, TenantCommand::CreateUser(jane));
    let env = production(&mut w);
    let outcome = w.when(env, ADMIN, EnvCommand::AddUser { upn: upn("jane@fabrikam.com") });
    let reason = refused_by(outcome, Rule::S2_2);
    assert!(reason.contains("S2.3: a guest needs a license from this tenant (D10); its home-tenant licenses (DYN365_SALES) do not count here"), "{reason}");
    w.license("jane@fabrikam.com", SALES_SKU);
    w.sync(env);
    assert!(w.record(env, "jane@fabrikam.com").is_some());
}

#[test]
fn s2_4_security_group_members_admins_and_owners() {
    let mut w = World::contoso();
    for who in [ALICE, BOB] {
        w.license(who, SALES_SKU);
    }
    w.user("dyn@contoso.onmicrosoft.com");
    w.user("pp@contoso.onmicrosoft.com");
    w.tenant_ok(
        ADMIN,
        TenantCommand::AddAdminRole { upn: upn("dyn@contoso.onmicrosoft.com"), role: AdminRole::Dynamics365 },
    );
    w.tenant_ok(
        ADMIN,
        TenantCommand::AddAdminRole {
            upn: upn("pp@contoso.onmicrosoft.com"),
            role: AdminRole::PowerPlatform,
        },
    );
    w.join(ALICE);
    w.tenant_ok(ADMIN, TenantCommand::AddOwner { group: "Sales-SG".into(), upn: upn(BOB) });
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.security_group = Some("Sales-SG".into()));
    w.sync(env);
    assert!(w.record(env, ALICE).is_some(), "a direct member");
    assert!(
        w.record(env, "pp@contoso.onmicrosoft.com").is_some(),
        "a Power Platform Administrator is exempt"
    );
    assert!(w.record(env, ADMIN).is_some(), "a Global Administrator is exempt");
    assert!(
        w.record(env, "dyn@contoso.onmicrosoft.com").is_none(),
        "a Dynamics 365 Administrator must be a member"
    );
    assert!(w.record(env, BOB).is_none(), "an owner is not added by sync");
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(BOB) });
    assert!(w.record(env, BOB).is_some(), "the owner counts as a member on demand");
}

#[test]
fn s2_4_nested_group_members_are_ignored_and_the_check_says_so() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.tenant_ok(
        ADMIN,
        TenantCommand::CreateGroup { id: Uuid::from_u128(901), name: "Sales-EU".into(), owner: None },
    );
    w.tenant_ok(
        ADMIN,
        TenantCommand::AddMember { group: "Sales-EU".into(), member: MemberRef::User(upn(ALICE)) },
    );
    w.tenant_ok(
        ADMIN,
        TenantCommand::AddMember { group: "Sales-SG".into(), member: MemberRef::Group("Sales-EU".into()) },
    );
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.security_group = Some("Sales-SG".into()));
    let reason = refused_by(w.when(env, ADMIN, EnvCommand::AddUser { upn: upn(ALICE) }), Rule::S2_4);
    assert!(reason.contains("through nested group Sales-EU, which is ignored (D9)"), "{reason}");
}

#[test]
fn eligibility_returns_every_check_with_its_evidence() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let assigned = w.seq;
    w.join(ALICE);
    let joined = w.seq;
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.security_group = Some("Sales-SG".into()));
    let e = eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(ALICE)).unwrap(), How::Sync, w.now);
    let rules: Vec<Rule> = e.checks.iter().map(|c| c.rule).collect();
    assert_eq!(rules, vec![Rule::E1, Rule::S2_1, Rule::S2_2, Rule::S2_3, Rule::S2_4, Rule::S1]);
    assert!(e.checks.iter().all(|c| c.passed && !c.evidence.is_empty()));
    let license = &e.checks[2];
    assert_eq!(
        (license.detail.as_str(), license.evidence.as_slice()),
        ("licensed: DYN365_SALES", &[assigned][..])
    );
    assert!(e.checks[4].evidence.contains(&joined));
}

#[test]
fn s5_an_access_attempt_enables_a_disabled_record_when_entitled_and_is_refused_otherwise() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.tenant_ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) });
    w.sync(env);
    let reason = refused_by(w.when(env, ALICE, EnvCommand::Access { upn: upn(ALICE) }), Rule::S2_1);
    assert!(reason.contains("is blocked from signing in"), "{reason}");
    w.tenant_ok(ADMIN, TenantCommand::Unblock { upn: upn(ALICE) });
    let events = w.ok(env, ALICE, EnvCommand::Access { upn: upn(ALICE) });
    assert!(events.iter().any(|e| matches!(e, EnvEvent::SystemUserEnabled { .. })));
    let bob = w.when(env, BOB, EnvCommand::Access { upn: upn(BOB) });
    assert!(refused_by(bob, Rule::S2_2).contains("cannot access Sales"));
}

#[test]
fn s6_sync_maps_directory_fields_to_systemuser_columns() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let fields = vec![
        (ProfileField::JobTitle, Some("Seller".into())),
        (ProfileField::OfficePhone, Some("+1 555 0100".into())),
        (ProfileField::MobilePhone, Some("+1 555 0101".into())),
        (ProfileField::Fax, Some("+1 555 0102".into())),
        (ProfileField::StreetAddress, Some("1 Main St".into())),
        (ProfileField::City, Some("Seattle".into())),
        (ProfileField::State, Some("WA".into())),
        (ProfileField::PostalCode, Some("98101".into())),
        (ProfileField::Country, Some("US".into())),
        (ProfileField::Department, Some("Sales".into())),
    ];
    w.tenant_ok(ADMIN, TenantCommand::UpdateUser { upn: upn(ALICE), fields });
    let env = production(&mut w);
    w.sync(env);
    let record = w.record(env, ALICE).unwrap();
    let columns: Vec<(&str, &str)> =
        record.columns.iter().map(|(c, v)| (c.logical_name(), v.as_str())).collect();
    assert_eq!(
        columns,
        vec![
            ("firstname", "alice"),
            ("lastname", "Tester"),
            ("fullname", "alice Tester"),
            ("jobtitle", "Seller"),
            ("internalemailaddress", ALICE),
            ("mobilephone", "+1 555 0101"),
            ("address1_telephone1", "+1 555 0100"),
            ("address1_fax", "+1 555 0102"),
            ("address1_line1", "1 Main St"),
            ("address1_city", "Seattle"),
            ("address1_stateorprovince", "WA"),
            ("address1_postalcode", "98101"),
            ("address1_country", "US"),
        ]
    );
    assert_eq!(record.domainname, ALICE);
    assert_eq!(
        record.object_id,
        Some(w.tenant.user(&upn(ALICE)).unwrap().id),
        "azureactivedirectoryobjectid"
    );
}

#[test]
fn s6_1_fullname_is_set_at_creation_and_not_updated() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(ALICE),
            fields: vec![(ProfileField::DisplayName, Some("Alice the Great".into()))],
        },
    );
    assert!(w.sync(env).is_empty());
    assert_eq!(w.record(env, ALICE).unwrap().column(Column::FullName), Some("alice Tester"));
}

#[test]
fn s6_2_the_primary_email_is_set_at_creation_and_not_updated() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(ALICE),
            fields: vec![(ProfileField::Mail, Some("a.new@contoso.com".into()))],
        },
    );
    w.sync(env);
    assert_eq!(w.record(env, ALICE).unwrap().column(Column::InternalEmailAddress), Some(ALICE));
    // A record created with no email gets one: nothing can be lost.
    w.tenant_ok(ADMIN, TenantCommand::UpdateUser { upn: upn(BOB), fields: vec![(ProfileField::Mail, None)] });
    w.license(BOB, SALES_SKU);
    w.sync(env);
    assert_eq!(w.record(env, BOB).unwrap().column(Column::InternalEmailAddress), None);
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(BOB),
            fields: vec![(ProfileField::Mail, Some("bob@contoso.com".into()))],
        },
    );
    w.sync(env);
    assert_eq!(w.record(env, BOB).unwrap().column(Column::InternalEmailAddress), Some("bob@contoso.com"));
}

#[test]
fn s6_3_once_a_customer_edits_the_email_sync_never_writes_it() {
    let mut w = World::contoso();
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser { upn: upn(ALICE), fields: vec![(ProfileField::Mail, None)] },
    );
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.ok(env, ADMIN, EnvCommand::EditEmail { upn: upn(ALICE), email: None });
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(ALICE),
            fields: vec![(ProfileField::Mail, Some("a@contoso.com".into()))],
        },
    );
    assert!(w.sync(env).is_empty(), "even a blank edited email stays blank");
    w.ok(
        env,
        ADMIN,
        EnvCommand::EditEmail { upn: upn(ALICE), email: Some("sales.alice@contoso.com".into()) },
    );
    w.sync(env);
    assert_eq!(
        w.record(env, ALICE).unwrap().column(Column::InternalEmailAddress),
        Some("sales.alice@contoso.com")
    );
}

#[test]
fn s6_4_a_blank_first_name_becomes_a_hash() {
    let mut w = World::contoso();
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser { upn: upn(ALICE), fields: vec![(ProfileField::GivenName, None)] },
    );
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    assert_eq!(w.record(env, ALICE).unwrap().column(Column::FirstName), Some("#"));
}

#[test]
fn s6_5_fields_outside_the_mapping_are_never_synchronized() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.tenant_ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(ALICE),
            fields: vec![(ProfileField::Department, Some("Finance".into()))],
        },
    );
    assert!(w.sync(env).is_empty(), "department is not a SystemUser column of the mapping");
    assert!(w.record(env, ALICE).unwrap().columns.values().all(|v| v != "Finance"));
}

#[test]
fn s7_a_licensed_admin_is_read_write_with_system_administrator_and_an_unlicensed_one_a_setup_user() {
    let mut w = World::contoso();
    for who in [ALICE, BOB] {
        w.tenant_ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(who), role: AdminRole::PowerPlatform });
    }
    w.license(ALICE, SALES_SKU);
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.app_pass = 5);
    w.sync(env);
    let alice = w.record(env, ALICE).unwrap();
    assert_eq!(alice.access_mode, AccessMode::ReadWrite);
    assert_eq!(w.roles_of(env, ALICE), vec!["System Administrator"]);
    let bob = w.record(env, BOB).unwrap();
    assert_eq!(bob.access_mode, AccessMode::Administrative, "S3: a setup user, whatever app passes exist");
    assert!(bob.roles.is_empty());
    let creator = w.record(env, ADMIN).unwrap();
    assert!(creator.roles.is_empty(), "only a developer environment's creator administers it unlicensed");
    // Losing the license makes a licensed admin a setup user too.
    w.unlicense(ALICE, SALES_SKU);
    w.sync(env);
    assert_eq!(w.record(env, ALICE).unwrap().access_mode, AccessMode::Administrative);
    assert!(!w.record(env, ALICE).unwrap().is_disabled);
}

#[test]
fn s8_licensed_users_get_the_app_access_role_of_each_installed_app() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = w.env(ADMIN, "Service", EnvType::Production, |e| e.apps = vec![App::CustomerService]);
    w.sync(env);
    assert_eq!(w.roles_of(env, ALICE), vec!["Customer Service app access"]);
    let role = w.envs[env].role_named("Customer Service app access").unwrap();
    assert!(role.privileges.is_empty() && role.app_access, "no data privileges");
}

#[test]
fn s9_refresh_syncs_one_user_at_once_and_is_refused_for_stubs() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    let events = w.ok(env, ADMIN, EnvCommand::Refresh { upn: upn(ALICE) });
    assert!(matches!(&events[0], EnvEvent::SystemUserAdded { added_by: AddedBy::Refresh, .. }));
    let rows = vec![StubRow {
        line: 2,
        domainname: "old.rep@contoso.com".into(),
        firstname: "Old".into(),
        lastname: "Rep".into(),
    }];
    w.ok(env, ADMIN, EnvCommand::ImportStubs { rows });
    let reason =
        refused_by(w.when(env, ADMIN, EnvCommand::Refresh { upn: upn("old.rep@contoso.com") }), Rule::T1_2);
    assert!(reason.contains("not available for stub users"), "{reason}");
}

#[test]
fn a1_access_modes_have_their_stored_values() {
    let values: Vec<u8> = [
        AccessMode::ReadWrite,
        AccessMode::Administrative,
        AccessMode::Read,
        AccessMode::SupportUser,
        AccessMode::NonInteractive,
        AccessMode::DelegatedAdmin,
    ]
    .map(AccessMode::value)
    .to_vec();
    assert_eq!(values, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a2_changing_an_access_mode_takes_system_administrator_or_a_tenant_admin() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    let mode = |who: &str| EnvCommand::SetAccessMode { upn: upn(who), mode: AccessMode::Read };
    let reason = refused_by(w.when(env, BOB, mode(ALICE)), Rule::A2);
    assert!(reason.contains("System Administrator"), "{reason}");
    let sysadmin = w.envs[env].role_named("System Administrator").unwrap().id;
    let bob_id = w.record(env, BOB).unwrap().id;
    w.apply(env, &[EnvEvent::RoleAssigned { user: bob_id, role: sysadmin }]);
    w.ok(env, BOB, mode(ALICE));
    assert_eq!(w.record(env, ALICE).unwrap().access_mode, AccessMode::Read);
}

fn non_interactive(w: &mut World, env: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let who = format!("svc{i}@contoso.onmicrosoft.com");
            w.user(&who);
            w.license(&who, SALES_SKU);
            w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(&who) });
            who
        })
        .collect()
}

#[test]
fn a3_the_eighth_non_interactive_user_is_refused() {
    let mut w = World::contoso();
    w.tenant_ok(ADMIN, TenantCommand::SetSeats { sku: SALES_SKU.into(), seats: 20 });
    let env = production(&mut w);
    let users = non_interactive(&mut w, env, 8);
    for who in &users[..7] {
        w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(who), mode: AccessMode::NonInteractive });
    }
    let reason = refused_by(
        w.when(
            env,
            ADMIN,
            EnvCommand::SetAccessMode { upn: upn(&users[7]), mode: AccessMode::NonInteractive },
        ),
        Rule::A3,
    );
    assert_eq!(reason, "environment 'Sales' already has 7 non-interactive users");
    // Application users do not count (P1).
    w.ok(
        env,
        ADMIN,
        EnvCommand::CreateAppUser {
            app_id: Uuid::from_u128(1),
            name: "ERP".into(),
            business_unit: None,
            roles: vec![],
        },
    );
    assert_eq!(w.envs[env].non_interactive().count(), 7);
}

#[test]
fn a4_an_administrative_or_non_interactive_user_keeps_its_mode_without_a_license() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::Administrative });
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(BOB), mode: AccessMode::NonInteractive });
    w.unlicense(ALICE, SALES_SKU);
    w.unlicense(BOB, SALES_SKU);
    w.sync(env);
    for who in [ALICE, BOB] {
        let record = w.record(env, who).unwrap();
        assert!(!record.is_disabled, "{who} stays enabled");
        assert!(!record.is_licensed);
    }
    assert_eq!(w.record(env, ALICE).unwrap().access_mode, AccessMode::Administrative);
    assert_eq!(w.record(env, BOB).unwrap().access_mode, AccessMode::NonInteractive);
}

#[test]
fn a5_an_administrative_user_reaches_no_data_whatever_its_roles() {
    let mut w = World::contoso();
    w.tenant_ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::Dynamics365 });
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    assert_eq!(w.roles_of(env, ALICE), vec!["System Administrator"], "S7");
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::Administrative });
    let reach = w.record(env, ALICE).unwrap().reach();
    assert!(!reach.data && !reach.write, "System Administrator or not, no data (A5)");
    assert!(reach.web, "settings and administration stay reachable");
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::NonInteractive });
    let reach = w.record(env, ALICE).unwrap().reach();
    assert!(!reach.web && reach.api && reach.data, "A6: API only");
}

#[test]
fn s5_access_is_judged_at_once_and_names_each_check_that_fails() {
    // R: S5, S2.2, R4, A6. A lost license closes access before the next sync disables the record.
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    let access = |w: &World| -> (bool, Vec<Checked>) {
        let access =
            can_access(&w.tenant, &w.envs[env], w.tenant.user(&upn(ALICE)), w.record(env, ALICE), w.now);
        (access.can(), access.checks().filter(|c| !c.passed).map(|c| c.what).collect())
    };
    assert_eq!(access(&w), (false, vec![Checked::Roles]), "synced without a role (R4)");
    w.ok(env, ADMIN, EnvCommand::AssignRole { upn: upn(ALICE), role: BASIC_USER.into() });
    assert_eq!(access(&w), (true, vec![]));
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::NonInteractive });
    assert_eq!(access(&w), (false, vec![Checked::AccessMode]), "API only (A6)");
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::ReadWrite });
    w.unlicense(ALICE, SALES_SKU);
    assert!(!w.record(env, ALICE).unwrap().is_disabled, "no sync yet");
    assert_eq!(access(&w), (false, vec![Checked::License]));
}

#[test]
fn a6_a_non_interactive_user_cannot_sign_in_to_the_web_interface() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::NonInteractive });
    let reason = refused_by(w.when(env, ALICE, EnvCommand::Access { upn: upn(ALICE) }), Rule::A6);
    assert!(reason.contains("API only"), "{reason}");
}

#[test]
fn p1_application_users_are_enabled_non_interactive_and_uncounted() {
    let mut w = World::contoso();
    let env = production(&mut w);
    for n in 0..9u128 {
        let create = EnvCommand::CreateAppUser {
            app_id: Uuid::from_u128(100 + n),
            name: format!("App {n}"),
            business_unit: None,
            roles: vec!["Basic User".into()],
        };
        w.ok(env, ADMIN, create);
    }
    let app = w.envs[env].user_by_application(Uuid::from_u128(100)).unwrap();
    assert_eq!(
        (app.kind, app.access_mode, app.is_disabled),
        (UserKind::Application, AccessMode::NonInteractive, false)
    );
    assert_eq!(app.column(Column::FirstName), Some("#"));
    assert_eq!(w.envs[env].non_interactive().count(), 0, "no limit on their number");
    let again = EnvCommand::CreateAppUser {
        app_id: Uuid::from_u128(100),
        name: "Dup".into(),
        business_unit: None,
        roles: vec![],
    };
    assert!(matches!(w.when(env, ADMIN, again), Err(Rejection::Invalid(_))));
}

#[test]
fn p2_application_user_status_changes_only_where_allowed_and_says_what_breaks() {
    let mut w = World::contoso();
    let env = production(&mut w);
    let app_id = Uuid::from_u128(42);
    w.ok(
        env,
        ADMIN,
        EnvCommand::CreateAppUser {
            app_id,
            name: "ERP connector".into(),
            business_unit: None,
            roles: vec![],
        },
    );
    let disable = EnvCommand::SetAppUserStatus { app_id, enabled: false };
    let reason = refused_by(w.when(env, ADMIN, disable.clone()), Rule::P2);
    assert!(reason.contains("allowApplicationUserStatusChange=true"), "{reason}");
    let settings = vec![(ALLOW_APP_USER_STATUS_CHANGE.to_owned(), Some("true".to_owned()))];
    w.ok(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: None, settings });
    let events = w.ok(env, ADMIN, disable);
    let EnvEvent::SystemUserDisabled { reason, .. } = &events[0] else { panic!("{events:?}") };
    assert!(reason.contains("every integration that uses application"), "{reason}");
}

#[test]
fn t1_stub_import_gives_disabled_placeholders_a_default_role() {
    let mut w = World::contoso();
    let sales = w.env(ADMIN, "Sales", EnvType::Production, |e| e.apps = vec![App::Sales]);
    let plain = w.env(ADMIN, "Ops", EnvType::Production, |_| {});
    w.sync(sales);
    let rows = |n: usize| {
        (0..n)
            .map(|i| StubRow {
                line: i + 2,
                domainname: format!("rep{i}@old.contoso.com"),
                firstname: String::new(),
                lastname: format!("Rep {i}"),
            })
            .collect::<Vec<_>>()
    };
    w.ok(sales, ADMIN, EnvCommand::ImportStubs { rows: rows(2) });
    w.ok(plain, ADMIN, EnvCommand::ImportStubs { rows: rows(1) });
    let stub = w.envs[sales].users_named("rep0@old.contoso.com").next().unwrap();
    assert!(stub.is_disabled, "T1.1: cannot be enabled");
    assert_eq!(stub.column(Column::FirstName), Some("#"));
    let role_of =
        |env: usize, stub: &SystemUser| w.envs[env].roles[stub.roles.iter().next().unwrap()].name.clone();
    assert_eq!(role_of(sales, stub), "Salesperson", "T1.3 where Sales is installed");
    assert_eq!(
        role_of(plain, w.envs[plain].users_named("rep0@old.contoso.com").next().unwrap()),
        "Basic User"
    );
    assert!(w.sync(sales).is_empty(), "T1.1: never synchronized");
    let dup = vec![StubRow {
        line: 7,
        domainname: "REP1@old.contoso.com".into(),
        firstname: "R".into(),
        lastname: "1".into(),
    }];
    match w.when(sales, ADMIN, EnvCommand::ImportStubs { rows: dup }) {
        Err(Rejection::Invalid(reason)) => assert!(reason.starts_with("line 7:"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn t1_1_a_stub_cannot_sign_in_and_t1_4_its_records_can_be_reassigned() {
    // R: T1.1, T1.4
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    let rows = vec![StubRow {
        line: 2,
        domainname: "old.rep@contoso.onmicrosoft.com".into(),
        firstname: "Old".into(),
        lastname: "Rep".into(),
    }];
    w.ok(env, ADMIN, EnvCommand::ImportStubs { rows });
    refused_by(
        w.when(
            env,
            "old.rep@contoso.onmicrosoft.com",
            EnvCommand::Access { upn: upn("old.rep@contoso.onmicrosoft.com") },
        ),
        Rule::T1_1,
    );
    let events = w.ok(
        env,
        ADMIN,
        EnvCommand::ReassignRecords { from: upn("old.rep@contoso.onmicrosoft.com"), to: upn(ALICE) },
    );
    assert!(matches!(events[0], EnvEvent::RecordsReassigned { .. }));
    refused_by(
        w.when(
            env,
            ADMIN,
            EnvCommand::SetAccessMode { upn: upn("old.rep@contoso.onmicrosoft.com"), mode: AccessMode::Read },
        ),
        Rule::T1_1,
    );
}

#[test]
fn environment_events_round_trip_through_the_codec() {
    let mut w = World::contoso();
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.apps = vec![App::Sales]);
    let id = w.envs[env].id;
    for event in crate::environment::starting_state(id, "Sales", &[App::Sales]) {
        let wrapped = Event::Environment(event);
        assert_eq!(
            crate::events::decode(crate::SCHEMA_VERSION, &crate::events::encode(&wrapped).unwrap()),
            Ok(wrapped)
        );
    }
    let _ = Member::User(id);
}

// ---- Security: business units, roles, teams, no elevation (R1-R7, A2, A5, O1-O3) ----

fn give(w: &mut World, env: usize, who: &str, role: &str) {
    w.ok(env, ADMIN, EnvCommand::AssignRole { upn: upn(who), role: role.into() });
}

fn bu(w: &mut World, env: usize, id: u128, name: &str, parent: Option<&str>) {
    let command = EnvCommand::CreateBusinessUnit {
        id: Uuid::from_u128(id),
        name: name.into(),
        parent: parent.map(str::to_owned),
    };
    w.ok(env, ADMIN, command);
}

fn copy(w: &mut World, env: usize, id: u128, from: &str, name: &str, unit: Option<&str>) {
    let command = EnvCommand::CopyRole {
        id: Uuid::from_u128(id),
        from: from.into(),
        name: name.into(),
        business_unit: unit.map(str::to_owned),
    };
    w.ok(env, ADMIN, command);
}

fn set(role: &str, table: &str, operation: Operation, level: Level) -> EnvCommand {
    EnvCommand::SetPrivilege { role: role.into(), table: table.into(), operation, level }
}

/// Sales with alice and bob synced (licensed, no roles but the app-access ones).
fn secured() -> (World, usize) {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    (w, env)
}

#[test]
fn r1_business_units_form_a_tree_with_unique_sibling_names() {
    let (mut w, env) = secured();
    bu(&mut w, env, 300, "Europe", None);
    bu(&mut w, env, 301, "France", Some("Europe"));
    let dup = EnvCommand::CreateBusinessUnit {
        id: Uuid::from_u128(302),
        name: "france".into(),
        parent: Some("Europe".into()),
    };
    refused_by(w.when(env, ADMIN, dup), Rule::R1);
    bu(&mut w, env, 304, "Spain", Some("Europe"));
    let unknown = EnvCommand::CreateBusinessUnit {
        id: Uuid::from_u128(303),
        name: "Lyon".into(),
        parent: Some("Nowhere".into()),
    };
    assert!(matches!(w.when(env, ADMIN, unknown), Err(Rejection::Invalid(_))));
    let france = w.envs[env].business_unit_named("France").unwrap();
    assert_eq!(france.parent, Some(Uuid::from_u128(300)));
}

#[test]
fn r1_only_roles_of_the_users_unit_or_above_can_be_assigned() {
    let (mut w, env) = secured();
    bu(&mut w, env, 300, "Europe", None);
    bu(&mut w, env, 301, "France", Some("Europe"));
    copy(&mut w, env, 400, "Basic User", "France Seller", Some("France"));
    copy(&mut w, env, 401, "Basic User", "Europe Seller", Some("Europe"));
    refused_by(
        w.when(env, ADMIN, EnvCommand::AssignRole { upn: upn(ALICE), role: "France Seller".into() }),
        Rule::R1,
    );
    w.ok(env, ADMIN, EnvCommand::SetBusinessUnit { upn: upn(ALICE), business_unit: "France".into() });
    give(&mut w, env, ALICE, "France Seller");
    give(&mut w, env, ALICE, "Europe Seller"); // inherited from the parent unit
    give(&mut w, env, ALICE, "Basic User"); // and from the root
                                            // Moving up to Europe drops the role France's users alone could hold.
    let events =
        w.ok(env, ADMIN, EnvCommand::SetBusinessUnit { upn: upn(ALICE), business_unit: "Europe".into() });
    assert!(events.contains(&EnvEvent::RoleRemoved {
        user: w.record(env, ALICE).unwrap().id,
        role: Uuid::from_u128(400)
    }));
    assert!(w.roles_of(env, ALICE).contains(&"Europe Seller".to_owned()));
}

#[test]
fn r2_roles_are_copied_then_edited_and_system_administrator_is_fixed() {
    let (mut w, env) = secured();
    copy(&mut w, env, 400, "Basic User", "Seller", None);
    let seller = w.envs[env].role_named("Seller").unwrap().clone();
    let basic = w.envs[env].role_named("Basic User").unwrap().clone();
    assert_eq!(seller.privileges, basic.privileges, "a copy starts with the same privileges");
    w.ok(env, ADMIN, set("Seller", "opportunity", Operation::Read, Level::BusinessUnit));
    assert_eq!(
        w.envs[env].role_named("Seller").unwrap().privileges[&("opportunity".to_owned(), Operation::Read)],
        Level::BusinessUnit
    );
    assert_ne!(
        w.envs[env].role_named("Basic User").unwrap().privileges,
        w.envs[env].role_named("Seller").unwrap().privileges
    );
    refused_by(
        w.when(env, ADMIN, set("System Administrator", "account", Operation::Read, Level::User)),
        Rule::R2,
    );
    let again = EnvCommand::CopyRole {
        id: Uuid::from_u128(401),
        from: "Basic User".into(),
        name: "seller".into(),
        business_unit: None,
    };
    assert!(matches!(w.when(env, ADMIN, again), Err(Rejection::Invalid(_))), "one Seller per unit");
    w.ok(env, ADMIN, set("Seller", "new_project", Operation::Read, Level::User));
    let bad = w.when(env, ADMIN, set("Seller", "new project", Operation::Read, Level::User));
    assert_eq!(bad, Err(Rejection::Invalid("'new project' is not a table's logical name".into())));
    let sysadmin = &w.envs[env].role_named("System Administrator").unwrap().privileges;
    assert!(
        sysadmin.values().all(|l| *l == Level::Organization),
        "System Administrator: everything at Organization"
    );
    assert!(
        w.envs[env]
            .role_named("Basic User")
            .unwrap()
            .privileges
            .iter()
            .any(|((t, _), l)| t == "account" && *l == Level::User),
        "Basic User: own records"
    );
}

#[test]
fn r3_privileges_are_the_union_of_direct_and_team_roles_at_the_highest_level() {
    let (mut w, env) = secured();
    copy(&mut w, env, 400, "Basic User", "Account Reader", None);
    w.ok(env, ADMIN, set("Account Reader", "account", Operation::Read, Level::Organization));
    give(&mut w, env, ALICE, "Basic User");
    w.ok(
        env,
        ADMIN,
        EnvCommand::CreateTeam {
            id: Uuid::from_u128(500),
            name: "Readers".into(),
            business_unit: None,
            group: None,
        },
    );
    w.ok(env, ADMIN, EnvCommand::AssignTeamRole { team: "Readers".into(), role: "Account Reader".into() });
    w.ok(env, ADMIN, EnvCommand::AddTeamMember { team: "Readers".into(), upn: upn(ALICE) });
    let record = w.record(env, ALICE).unwrap().clone();
    let grants = crate::security::effective_privileges(&w.envs[env], &record);
    let read = grants.iter().find(|g| g.table == "account" && g.operation == Operation::Read).unwrap();
    assert_eq!(read.level, Level::Organization, "the highest level wins");
    assert_eq!(
        read.from,
        vec![crate::security::Source { role: "Account Reader".into(), team: Some("Readers".into()) }]
    );
    let write = grants.iter().find(|g| g.table == "account" && g.operation == Operation::Write).unwrap();
    let sources: Vec<(&str, Option<&str>)> =
        write.from.iter().map(|s| (s.role.as_str(), s.team.as_deref())).collect();
    assert_eq!(write.level, Level::User);
    assert_eq!(
        sources,
        vec![("Account Reader", Some("Readers")), ("Basic User", None)],
        "every role granting the top level"
    );
}

#[test]
fn r4_a_user_without_any_role_stays_enabled_and_licensed() {
    let (mut w, env) = secured();
    let record = w.record(env, ALICE).unwrap().clone();
    let sales_app = record.roles.iter().copied().collect::<Vec<_>>();
    for role in sales_app {
        w.apply(env, &[EnvEvent::RoleRemoved { user: record.id, role }]);
    }
    let record = w.record(env, ALICE).unwrap().clone();
    assert!(!crate::security::has_any_role(&w.envs[env], &record));
    assert!(w.sync(env).is_empty(), "sync does not disable it");
    assert!(!record.is_disabled && record.is_licensed);
}

#[test]
fn r5_roles_go_to_enabled_users_unless_the_setting_allows() {
    let (mut w, env) = secured();
    w.tenant_ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) });
    w.sync(env);
    let reason = refused_by(
        w.when(env, ADMIN, EnvCommand::AssignRole { upn: upn(ALICE), role: "Basic User".into() }),
        Rule::R5,
    );
    assert!(reason.contains("allowRoleAssignmentOnDisabledUsers"), "{reason}");
    let on = vec![(ALLOW_ROLE_ASSIGNMENT_ON_DISABLED.to_owned(), Some("true".to_owned()))];
    w.ok(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: None, settings: on });
    give(&mut w, env, ALICE, "Basic User");
}

/// Bob administers Sales through a copy of Basic User that adds Write on
/// systemuser at Organization level (A2), without being System Administrator.
fn delegated_admin() -> (World, usize) {
    let (mut w, env) = secured();
    copy(&mut w, env, 410, "Basic User", "User Manager", None);
    w.ok(env, ADMIN, set("User Manager", "systemuser", Operation::Write, Level::Organization));
    give(&mut w, env, BOB, "User Manager");
    (w, env)
}

#[test]
fn r6_an_actor_assigns_only_what_it_holds_and_the_refusal_says_what_is_missing() {
    let (mut w, env) = delegated_admin();
    w.ok(env, BOB, EnvCommand::AssignRole { upn: upn(ALICE), role: "Basic User".into() });
    let reason = refused_by(
        w.when(env, BOB, EnvCommand::AssignRole { upn: upn(ALICE), role: "System Administrator".into() }),
        Rule::R6,
    );
    assert!(reason.contains("needs create on account at org level and holds user"), "{reason}");
    w.ok(
        env,
        ADMIN,
        EnvCommand::CreateTeam {
            id: Uuid::from_u128(501),
            name: "Admins".into(),
            business_unit: None,
            group: None,
        },
    );
    refused_by(
        w.when(
            env,
            BOB,
            EnvCommand::AssignTeamRole { team: "Admins".into(), role: "System Administrator".into() },
        ),
        Rule::R6,
    );
    // Editing: only up to the level the actor holds.
    copy(&mut w, env, 411, "Basic User", "Seller", None);
    w.ok(env, BOB, set("Seller", "account", Operation::Read, Level::User));
    refused_by(w.when(env, BOB, set("Seller", "account", Operation::Read, Level::Organization)), Rule::R6);
    // A System Administrator may do anything.
    w.ok(env, ADMIN, EnvCommand::AssignRole { upn: upn(BOB), role: "System Administrator".into() });
    w.ok(env, BOB, EnvCommand::AssignRole { upn: upn(ALICE), role: "System Administrator".into() });
}

#[test]
fn a2_write_on_systemuser_at_organization_level_allows_changing_access_modes() {
    let (mut w, env) = delegated_admin();
    w.ok(env, BOB, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::Read });
    w.ok(env, ADMIN, set("User Manager", "systemuser", Operation::Write, Level::BusinessUnit));
    refused_by(
        w.when(env, BOB, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::ReadWrite }),
        Rule::A2,
    );
}

#[test]
fn a5_an_administrative_user_has_no_data_privileges_whatever_its_roles() {
    let (mut w, env) = secured();
    give(&mut w, env, ALICE, "System Administrator");
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::Administrative });
    let record = w.record(env, ALICE).unwrap().clone();
    let grants = crate::security::effective_privileges(&w.envs[env], &record);
    assert!(
        grants.iter().all(|g| crate::security::ADMINISTRATION_TABLES.contains(&g.table.as_str())),
        "no data tables"
    );
    assert!(
        grants.iter().any(|g| g.table == "systemuser" && g.operation == Operation::Write),
        "administration stays"
    );
}

#[test]
fn r7_group_team_members_follow_the_directory_group_at_each_sync() {
    let (mut w, env) = secured();
    w.join(ALICE);
    w.tenant_ok(
        ADMIN,
        TenantCommand::CreateGroup { id: Uuid::from_u128(950), name: "Sales-EU".into(), owner: None },
    );
    w.tenant_ok(
        ADMIN,
        TenantCommand::AddMember { group: "Sales-EU".into(), member: MemberRef::User(upn(BOB)) },
    );
    w.tenant_ok(
        ADMIN,
        TenantCommand::AddMember { group: "Sales-SG".into(), member: MemberRef::Group("Sales-EU".into()) },
    );
    w.ok(
        env,
        ADMIN,
        EnvCommand::CreateTeam {
            id: Uuid::from_u128(502),
            name: "Sales team".into(),
            business_unit: None,
            group: Some("Sales-SG".into()),
        },
    );
    w.ok(env, ADMIN, EnvCommand::AssignTeamRole { team: "Sales team".into(), role: "Basic User".into() });
    w.sync(env);
    let team = w.envs[env].team_named("Sales team").unwrap();
    let alice = w.record(env, ALICE).unwrap().id;
    assert_eq!(
        team.members.iter().copied().collect::<Vec<_>>(),
        vec![alice],
        "bob is only in a nested group (D9)"
    );
    let reason = refused_by(
        w.when(env, ADMIN, EnvCommand::AddTeamMember { team: "Sales team".into(), upn: upn(BOB) }),
        Rule::R7,
    );
    assert!(reason.contains("follow the directory group Sales-SG"), "{reason}");
    w.tenant_ok(
        ADMIN,
        TenantCommand::RemoveMember { group: "Sales-SG".into(), member: MemberRef::User(upn(ALICE)) },
    );
    w.sync(env);
    assert!(w.envs[env].team_named("Sales team").unwrap().members.is_empty());
}

/// Alice holds System Administrator directly and Basic User through the owner
/// team Readers: what `security` reports of her roles (R3, R4, R7).
fn admin_with_a_team_role() -> (World, usize) {
    let (mut w, env) = secured();
    give(&mut w, env, ALICE, "System Administrator");
    let readers = EnvCommand::CreateTeam {
        id: Uuid::from_u128(503),
        name: "Readers".into(),
        business_unit: None,
        group: None,
    };
    w.ok(env, ADMIN, readers);
    w.ok(env, ADMIN, EnvCommand::AssignTeamRole { team: "Readers".into(), role: "Basic User".into() });
    w.ok(env, ADMIN, EnvCommand::AddTeamMember { team: "Readers".into(), upn: upn(ALICE) });
    (w, env)
}

#[test]
fn r4_r7_a_records_roles_and_their_evidence_include_its_teams() {
    use crate::security::{has_any_role, is_system_administrator, role_evidence, role_ids};
    let (w, env) = admin_with_a_team_role();
    let (e, alice, bob) = (&w.envs[env], w.record(env, ALICE).unwrap(), w.record(env, BOB).unwrap());
    assert!(is_system_administrator(e, alice));
    assert!(!is_system_administrator(e, bob));
    assert!(has_any_role(e, alice));
    let (sysadmin, basic) =
        (e.role_named("System Administrator").unwrap(), e.role_named("Basic User").unwrap());
    let mut ids = role_ids(e, alice);
    ids.sort();
    let mut expected = vec![sysadmin.id, basic.id];
    expected.sort();
    assert_eq!(ids, expected, "direct and through the team");
    // The assignment, the team membership and the team's role: each its own record.
    let team = e.team_named("Readers").unwrap();
    let mut evidence = role_evidence(e, alice);
    evidence.sort();
    let mut expected = vec![
        alice.evidence.roles[&sysadmin.id],
        team.member_changes[&alice.id],
        team.role_changes[&basic.id],
    ];
    expected.sort();
    assert_eq!(evidence, expected);
}

#[test]
fn r3_a_lower_level_from_another_role_is_not_named_as_a_source() {
    let (w, env) = admin_with_a_team_role();
    let grants = crate::security::effective_privileges(&w.envs[env], w.record(env, ALICE).unwrap());
    let read = grants.iter().find(|g| g.table == "account" && g.operation == Operation::Read).unwrap();
    assert_eq!(read.level, Level::Organization);
    assert_eq!(read.from, vec![crate::security::Source { role: "System Administrator".into(), team: None }]);
}

#[test]
fn r6_a5_an_administrative_system_administrator_still_holds_every_role() {
    let (mut w, env) = admin_with_a_team_role();
    w.ok(env, ADMIN, EnvCommand::SetAccessMode { upn: upn(ALICE), mode: AccessMode::Administrative });
    let e = &w.envs[env];
    let alice = w.tenant.user(&upn(ALICE)).unwrap();
    // A5 leaves her no data privileges, but R6 lets a System Administrator assign any role.
    let basic = &e.role_named("Basic User").unwrap().privileges;
    assert_eq!(crate::security::elevation(e, alice, basic), None);
    let bob = w.tenant.user(&upn(BOB)).unwrap();
    assert!(crate::security::elevation(e, bob, basic).is_some(), "bob holds no role");
}

#[test]
fn r6_r7_a_group_team_role_beyond_its_groups_owner_is_reported() {
    let (mut w, env) = secured();
    w.tenant_ok(ADMIN, TenantCommand::AddOwner { group: "Sales-SG".into(), upn: upn(BOB) });
    w.join(ALICE);
    give(&mut w, env, BOB, "Basic User");
    let team = EnvCommand::CreateTeam {
        id: Uuid::from_u128(504),
        name: "Sales team".into(),
        business_unit: None,
        group: Some("Sales-SG".into()),
    };
    w.ok(env, ADMIN, team);
    for role in ["Basic User", "System Administrator"] {
        w.ok(env, ADMIN, EnvCommand::AssignTeamRole { team: "Sales team".into(), role: role.into() });
    }
    w.sync(env);
    let admin = w.tenant.user(&upn(ADMIN));
    let reach = crate::security::group_team_reach(&w.tenant, &w.envs[env], |_| admin);
    let found: Vec<(&str, &str, Vec<String>, usize)> = reach
        .iter()
        .map(|r| {
            let managers = r.managers.iter().map(|(u, _)| u.upn.to_string()).collect();
            (r.team.name.as_str(), r.role.name.as_str(), managers, r.added_by_others.len())
        })
        .collect();
    // Bob holds Basic User himself and the admin holds everything, who added alice:
    // only System Administrator reaches past bob, and no member was added by him.
    assert_eq!(found, vec![("Sales team", "System Administrator", vec![BOB.to_owned()], 0)]);
    // Added by someone holding nothing (no directory user), alice is named.
    let reach = crate::security::group_team_reach(&w.tenant, &w.envs[env], |_| None);
    let alice = w.tenant.user(&upn(ALICE)).unwrap().id;
    let added: Vec<Vec<Uuid>> =
        reach.iter().map(|r| r.added_by_others.iter().map(|(u, _)| u.id).collect()).collect();
    assert_eq!(added, vec![vec![alice], vec![alice]], "both roles, through alice");
}
#[test]
fn o1_session_and_inactivity_timeouts_are_settings() {
    let (mut w, env) = secured();
    let settings = vec![
        (SESSION_TIMEOUT.to_owned(), Some("480".to_owned())),
        (INACTIVITY_TIMEOUT.to_owned(), Some("60".to_owned())),
    ];
    w.ok(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: None, settings });
    assert_eq!(w.envs[env].settings.get(SESSION_TIMEOUT).map(String::as_str), Some("480"));
    let off = vec![(INACTIVITY_TIMEOUT.to_owned(), None)];
    w.ok(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: None, settings: off });
    assert!(!w.envs[env].settings.contains_key(INACTIVITY_TIMEOUT), "off: the directory's policy applies");
}

#[test]
fn o2_a_mailbox_test_is_scheduled_then_the_mailbox_enabled() {
    let (mut w, env) = secured();
    let events = w.ok(env, ADMIN, EnvCommand::MailboxTestEnable { upn: upn(ALICE) });
    let id = w.record(env, ALICE).unwrap().id;
    assert_eq!(
        events,
        vec![EnvEvent::MailboxTestScheduled { user: id }, EnvEvent::MailboxEnabled { user: id }]
    );
    assert!(w.record(env, ALICE).unwrap().mailbox_enabled);
    w.tenant_ok(ADMIN, TenantCommand::Block { upn: upn(BOB) });
    w.sync(env);
    refused_by(w.when(env, ADMIN, EnvCommand::MailboxTestEnable { upn: upn(BOB) }), Rule::O2);
}

#[test]
fn o3_unified_routing_needs_a_tenant_admins_consent_and_never_turns_off() {
    let (mut w, env) = delegated_admin();
    let reason = refused_by(w.when(env, BOB, EnvCommand::EnableUnifiedRouting), Rule::O3);
    assert!(reason.contains("consent"), "{reason}");
    w.ok(env, ADMIN, EnvCommand::EnableUnifiedRouting);
    assert!(w.envs[env].unified_routing);
    let reason = refused_by(w.when(env, ADMIN, EnvCommand::DisableUnifiedRouting), Rule::O3);
    assert!(reason.contains("cannot be turned off"), "{reason}");
}

// ---- Regressions found in review (each a rule an admin relies on) ----

#[test]
fn regression_s2_4_an_owner_added_on_demand_is_not_disabled_by_the_next_pass() {
    let mut w = World::contoso();
    w.license(BOB, SALES_SKU);
    w.tenant_ok(ADMIN, TenantCommand::AddOwner { group: "Sales-SG".into(), upn: upn(BOB) });
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.security_group = Some("Sales-SG".into()));
    w.ok(env, BOB, EnvCommand::Access { upn: upn(BOB) });
    assert!(!w.record(env, BOB).unwrap().is_disabled);
    w.sync(env);
    assert!(!w.record(env, BOB).unwrap().is_disabled, "the owner was just admitted on demand (S2.4)");
}

#[test]
fn regression_app_pass_capacity_of_one_does_not_keep_many_unlicensed_users_enabled() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    w.license(BOB, SALES_SKU);
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.app_pass = 1);
    w.sync(env);
    w.unlicense(ALICE, SALES_SKU);
    w.unlicense(BOB, SALES_SKU);
    w.sync(env);
    let enabled = [ALICE, BOB].iter().filter(|who| !w.record(env, who).unwrap().is_disabled).count();
    assert!(enabled <= 1, "{enabled} users enabled on an app-pass capacity of 1");
}

#[test]
fn regression_an_app_pass_user_who_gets_a_license_frees_the_pass() {
    let mut w = World::contoso();
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.app_pass = 1);
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(ALICE) });
    w.license(ALICE, SALES_SKU);
    w.sync(env);
    assert_eq!(w.envs[env].app_pass_in_use(None), 0, "alice is licensed now");
}

#[test]
fn regression_a_setup_user_whose_admin_role_is_removed_loses_access() {
    let mut w = World::contoso();
    w.tenant_ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::PowerPlatform });
    let env = production(&mut w);
    w.sync(env);
    assert_eq!(w.record(env, BOB).unwrap().access_mode, AccessMode::Administrative);
    w.tenant_ok(ADMIN, TenantCommand::RemoveAdminRole { upn: upn(BOB), role: AdminRole::PowerPlatform });
    w.sync(env);
    assert!(w.record(env, BOB).unwrap().is_disabled, "no license, no admin role: not entitled");
}

#[test]
fn regression_a_setup_user_who_gets_a_license_becomes_read_write() {
    let mut w = World::contoso();
    w.tenant_ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::PowerPlatform });
    let env = production(&mut w);
    w.sync(env);
    w.license(BOB, SALES_SKU);
    w.sync(env);
    let bob = w.record(env, BOB).unwrap();
    assert_eq!(w.roles_of(env, BOB), vec!["System Administrator"]);
    assert_eq!(
        bob.access_mode,
        AccessMode::ReadWrite,
        "S7: a licensed admin is Read-Write; A5 leaves it no data"
    );
}

#[test]
fn regression_the_creator_of_a_developer_environment_administers_it() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = w.env(ALICE, "Alice dev", EnvType::Developer, |_| {});
    w.sync(env);
    let create = EnvCommand::CreateAppUser {
        app_id: Uuid::from_u128(7),
        name: "My app".into(),
        business_unit: None,
        roles: vec![],
    };
    assert!(w.when(env, ALICE, create).is_ok(), "{:?}", w.roles_of(env, ALICE));
}

/// Issue 34 (mutants of `holds_app_pass`): the capacity goes to the earliest
/// holders, each judged by its own place in line; lowered, the later holder
/// loses its pass and the earlier keeps it.
#[test]
fn s1_4_app_passes_go_to_the_earliest_holders_each_by_its_own_place() {
    let mut w = World::contoso();
    let carol = "carol@contoso.onmicrosoft.com";
    w.user(carol);
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.app_pass = 2);
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(BOB) });
    w.ok(env, ADMIN, EnvCommand::AddUser { upn: upn(ALICE) });
    let reason = refused_by(w.when(env, ADMIN, EnvCommand::AddUser { upn: upn(carol) }), Rule::S2_2);
    assert!(reason.contains("the app-pass capacity is used up (2 of 2)"), "{reason}");
    let entitlement = |w: &World, who: &str| {
        eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(who)).unwrap(), How::Sync, w.now).entitlement
    };
    assert_eq!(entitlement(&w, BOB), Some(Entitlement::AppPass));
    assert_eq!(entitlement(&w, ALICE), Some(Entitlement::AppPass));
    w.ok(env, ADMIN, EnvCommand::Set { security_group: None, app_pass: Some(1), settings: vec![] });
    assert_eq!(entitlement(&w, BOB), Some(Entitlement::AppPass), "the first in line keeps its pass");
    assert_eq!(entitlement(&w, ALICE), None, "the second loses it");
}

/// Issue 34 (mutants of `sign_in`'s purge guard): deleted, a user fails
/// sign-in as restorable until the 30th day, and as gone for good from it.
#[test]
fn s2_1_a_deleted_user_is_restorable_for_30_days_then_gone_for_good() {
    let mut w = World::contoso();
    let env = production(&mut w);
    w.tenant_ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    let deleted = w.now;
    let sign_in = |w: &World| {
        let alice = w.tenant.users.values().find(|u| u.upn == ALICE).expect("alice is kept").clone();
        let e = eligibility(&w.tenant, &w.envs[env], &alice, How::Sync, w.now);
        let check = e.checks.into_iter().find(|c| c.rule == Rule::S2_1).expect("the sign-in check");
        assert!(!check.passed);
        check.detail
    };
    w.now = deleted + Duration::days(30) - Duration::seconds(1);
    assert_eq!(sign_in(&w), format!("{ALICE} is deleted in the directory (since 2026-02-02)"));
    w.now = deleted + Duration::days(30);
    assert_eq!(sign_in(&w), format!("{ALICE} was deleted on 2026-02-02 and is gone for good"));
}

/// Issue 34 (mutants of `add_check`'s arms): a sync pass refuses each
/// on-demand-only entitlement by name.
#[test]
fn s1_4_the_add_check_names_each_on_demand_only_entitlement() {
    let mut w = World::contoso();
    w.license(ALICE, E3);
    let with_pass = w.env(ADMIN, "Sales", EnvType::Production, |e| e.app_pass = 1);
    let without = w.env(ADMIN, "Service", EnvType::Production, |_| {});
    w.tenant_ok(ADMIN, TenantCommand::AddSku { sku: "MKT".into(), kind: SkuKind::MarketingTenant, seats: 1 });
    let add_check = |w: &World, env: usize, who: &str| {
        let e = eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(who)).unwrap(), How::Sync, w.now);
        let check = e.checks.into_iter().find(|c| c.what == Checked::Added).expect("the add check");
        assert!(!check.passed && check.rule == Rule::S1_4, "{check:?}");
        check.detail
    };
    assert_eq!(
        add_check(&w, with_pass, ALICE),
        "entitled only by the free Dataverse plan of ENTERPRISEPACK: added on demand only"
    );
    assert_eq!(add_check(&w, with_pass, BOB), "entitled only by the app-pass capacity: added on demand only");
    assert_eq!(
        add_check(&w, without, BOB),
        "entitled only by the tenant's Marketing license MKT: added on demand only"
    );
}

/// Issue 34 (boundary mutants in `license`): a Marketing SKU with no seats
/// entitles nothing, and a capacity of zero app passes is not "used up".
#[test]
fn s2_2_a_marketing_license_without_seats_and_no_app_pass_capacity_entitle_nothing() {
    let mut w = World::contoso();
    w.tenant_ok(ADMIN, TenantCommand::AddSku { sku: "MKT".into(), kind: SkuKind::MarketingTenant, seats: 0 });
    let env = production(&mut w);
    let e = eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(BOB)).unwrap(), How::AdminAdd, w.now);
    assert_eq!(e.entitlement, None);
    let license = e.checks.iter().find(|c| c.rule == Rule::S2_2).expect("the license check");
    assert!(!license.passed);
    assert_eq!(license.detail, "no license that entitles Dataverse");
}

/// Issue 34 (the `s > 0` filter of `check`): a record that never touched
/// the user is no evidence: a non-member's group check names the group's
/// setting alone.
#[test]
fn s2_4_a_non_members_group_check_has_the_setting_alone_as_evidence() {
    let mut w = World::contoso();
    w.license(ALICE, SALES_SKU);
    let env = w.env(ADMIN, "Sales", EnvType::Production, |e| e.security_group = Some("Sales-SG".into()));
    let e = eligibility(&w.tenant, &w.envs[env], w.tenant.user(&upn(ALICE)).unwrap(), How::Sync, w.now);
    let group = e.checks.iter().find(|c| c.rule == Rule::S2_4).expect("the group check");
    assert!(!group.passed);
    assert_eq!(group.evidence, vec![w.envs[env].evidence.security_group]);
}

/// Issue 34 (`licensed || entitled` in `eligibility`): a guest entitled here
/// by something other than a paid license (the free plan) passes S2.3.
#[test]
fn s2_3_a_guest_entitled_by_the_free_plan_passes_the_guest_check() {
    let mut w = World::contoso();
    let mut jane = w.new_user("jane@fabrikam.com");
    jane.guest = true;
    w.tenant_ok(ADMIN, TenantCommand::CreateUser(jane));
    w.license("jane@fabrikam.com", E3);
    let env = production(&mut w);
    let user = w.tenant.user(&upn("jane@fabrikam.com")).unwrap();
    let e = eligibility(&w.tenant, &w.envs[env], user, How::Access, w.now);
    assert!(!e.licensed, "the free plan is no paid license");
    let guest = e.checks.iter().find(|c| c.rule == Rule::S2_3).expect("the guest check");
    assert!(guest.passed, "{guest:?}");
    assert_eq!(guest.detail, "a guest entitled by this tenant");
}

/// Issue 34 (mutants of `name` and `targets`): a command's audit record
/// names it as typed and what it aims at.
#[test]
fn l2_a_command_is_named_as_typed_with_its_targets() {
    let command = EnvCommand::AssignRole { upn: upn(ALICE), role: SALESPERSON.into() };
    assert_eq!(command.name(), "role assign");
    assert_eq!(command.targets(), vec![ALICE.to_owned(), SALESPERSON.to_owned()]);
}

/// Issue 34 (the stub guards of `refresh` and `add_user`): only a stub's
/// name is refused as a stub's; an unknown user, or a placeholder's name,
/// is bad input.
#[test]
fn t1_1_t1_2_only_a_stub_is_refused_as_one() {
    let mut w = World::contoso();
    let env = production(&mut w);
    for who in ["carol@contoso.onmicrosoft.com", SUPPORT_UPN] {
        for command in [EnvCommand::Refresh { upn: upn(who) }, EnvCommand::AddUser { upn: upn(who) }] {
            assert_eq!(w.when(env, ADMIN, command), Err(Rejection::Invalid(format!("unknown user {who}"))));
        }
    }
}

/// Issue 34 (the guards of `remove_role`, `team_member` and `team_role`):
/// a held role or team role comes off, an unheld one is bad input; R6
/// checks what joining a team hands over, and nothing else.
#[test]
fn r6_roles_come_off_as_held_and_only_joining_a_team_needs_its_roles() {
    let (mut w, env) = delegated_admin();
    give(&mut w, env, ALICE, "Basic User");
    let remove = EnvCommand::RemoveRole { upn: upn(ALICE), role: "Basic User".into() };
    w.ok(env, BOB, remove.clone());
    assert!(matches!(w.when(env, BOB, remove), Err(Rejection::Invalid(_))));
    let admins = EnvCommand::CreateTeam {
        id: Uuid::from_u128(502),
        name: "Admins".into(),
        business_unit: None,
        group: None,
    };
    w.ok(env, ADMIN, admins);
    w.ok(env, ADMIN, EnvCommand::AssignTeamRole { team: "Admins".into(), role: SYSTEM_ADMINISTRATOR.into() });
    w.ok(env, ADMIN, EnvCommand::AddTeamMember { team: "Admins".into(), upn: upn(ALICE) });
    let join = |who: &str| EnvCommand::AddTeamMember { team: "Admins".into(), upn: upn(who) };
    refused_by(w.when(env, BOB, join(BOB)), Rule::R6);
    assert_eq!(w.when(env, BOB, join(ALICE)), Ok(vec![]), "already a member: nothing handed over");
    let leave = |who: &str| EnvCommand::RemoveTeamMember { team: "Admins".into(), upn: upn(who) };
    assert!(matches!(w.when(env, BOB, leave(BOB)), Err(Rejection::Invalid(_))), "not a member");
    w.ok(env, BOB, leave(ALICE));
    let take = EnvCommand::RemoveTeamRole { team: "Admins".into(), role: SYSTEM_ADMINISTRATOR.into() };
    w.ok(env, ADMIN, take.clone());
    assert!(matches!(w.when(env, ADMIN, take), Err(Rejection::Invalid(_))));
}

/// Issue 34 (`stream`, `exists`, `is_directory_user` and `role_named`):
/// an environment exists once created, under its own stream; placeholders
/// are no directory users; a unit's role does not hide the root's of that name.
#[test]
fn e5_an_environment_knows_its_stream_its_directory_users_and_its_root_roles() {
    let mut w = World::contoso();
    assert!(!Environment::default().exists(), "nothing folded yet");
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    let id = w.envs[env].id;
    assert!(w.envs[env].exists());
    assert_eq!(environment::stream(id), format!("env/{id}"));
    assert!(w.record(env, ALICE).unwrap().is_directory_user());
    assert!(w.envs[env].users_named(SUPPORT_UPN).all(|r| !r.is_directory_user()));
    bu(&mut w, env, 300, "Europe", None);
    copy(&mut w, env, 400, BASIC_USER, BASIC_USER, Some("Europe"));
    let root = w.envs[env].root_business_unit;
    assert_eq!(w.envs[env].role_named("basic user").unwrap().business_unit, root);
}

/// Issue 34 (`setup_user` in the fold): only a record that sync put in
/// Administrative mode is a setup user, until sync moves it to Read-Write (S3, S7).
#[test]
fn s3_s7_only_a_record_sync_made_administrative_is_a_setup_user() {
    let mut w = World::contoso();
    w.tenant_ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::PowerPlatform });
    w.license(ALICE, SALES_SKU);
    let env = production(&mut w);
    w.sync(env);
    let setup = |w: &World, who: &str| w.record(env, who).unwrap().setup_user;
    assert!(setup(&w, BOB));
    assert!(!setup(&w, ALICE), "licensed: Read-Write from the start");
    w.license(BOB, SALES_SKU);
    w.sync(env);
    assert!(!setup(&w, BOB), "licensed now: Read-Write, no setup user");
}
