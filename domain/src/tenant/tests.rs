//! Rule tests of the tenant aggregate: given a directory, when a command is
//! decided, then these events or this rejection. Each test names its rule.

use chrono::TimeZone;

use super::*;
use crate::rules::Refusal;

const ADMIN: &str = "admin@contoso.onmicrosoft.com";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn upn(text: &str) -> Upn {
    Upn::parse(text).unwrap()
}

fn new_user(n: u128, who: &str) -> NewUser {
    let mut profile = Profile::default();
    profile.set(ProfileField::GivenName, Some(who.split('@').next().unwrap_or(who).to_owned()));
    NewUser {
        id: Uuid::from_u128(n),
        upn: upn(who),
        profile,
        licenses: vec![],
        admin_roles: vec![],
        guest: false,
        home_licenses: vec![],
        temporary_password: true,
    }
}

/// A directory that has been through some commands, with a clock.
struct World {
    tenant: Tenant,
    now: DateTime<Utc>,
    next_id: u128,
    /// Every event applied, with its stamp.
    log: Vec<(TenantEvent, Stamp)>,
}

impl World {
    /// Contoso with its admin, a 2-seat Dynamics SKU, a 10-seat M365 SKU,
    /// and users alice and bob.
    fn contoso() -> World {
        let mut w = World { tenant: Tenant::default(), now: t0(), next_id: 100, log: Vec::new() };
        let init = TenantCommand::Init {
            domain: "contoso.onmicrosoft.com".into(),
            name: "Contoso".into(),
            admin: new_user(1, ADMIN),
        };
        w.ok(ADMIN, init);
        w.ok(ADMIN, TenantCommand::AddSku { sku: "DYN365_SALES".into(), kind: SkuKind::D365, seats: 2 });
        w.ok(
            ADMIN,
            TenantCommand::AddSku { sku: "ENTERPRISEPACK".into(), kind: SkuKind::M365Dataverse, seats: 10 },
        );
        w.create("alice@contoso.onmicrosoft.com");
        w.create("bob@contoso.onmicrosoft.com");
        w
    }

    fn when(&self, actor: &str, command: TenantCommand) -> Result<Vec<TenantEvent>, Rejection> {
        decide(&self.tenant, &upn(actor), &command, self.now)
    }

    /// Decides and applies; panics (in tests only) if refused.
    fn ok(&mut self, actor: &str, command: TenantCommand) -> Vec<TenantEvent> {
        let events = self.when(actor, command).unwrap_or_else(|r| panic!("refused: {r}"));
        for e in &events {
            let stamp = Stamp { seq: self.log.len() as u64 + 1, at: self.now };
            self.tenant.apply(e, stamp);
            self.log.push((e.clone(), stamp));
        }
        events
    }

    fn create(&mut self, who: &str) -> Uuid {
        self.next_id += 1;
        let new = new_user(self.next_id, who);
        self.ok(ADMIN, TenantCommand::CreateUser(new));
        Uuid::from_u128(self.next_id)
    }

    fn user(&self, who: &str) -> &User {
        self.tenant.user(&upn(who)).unwrap()
    }

    fn later(&mut self, days: i64) {
        self.now += Duration::days(days);
    }
}

fn assign(who: &str, sku: &str) -> TenantCommand {
    TenantCommand::AssignLicense { upn: upn(who), sku: sku.into() }
}

fn refused_by(outcome: Result<Vec<TenantEvent>, Rejection>, rule: Rule) -> String {
    match outcome {
        Err(Rejection::Refused(Refusal { rule: r, reason })) if r == rule => reason,
        other => panic!("expected a refusal by {rule}, got {other:?}"),
    }
}

fn invalid_input(outcome: Result<Vec<TenantEvent>, Rejection>) -> String {
    match outcome {
        Err(Rejection::Invalid(reason)) => reason,
        other => panic!("expected bad input, got {other:?}"),
    }
}

const ALICE: &str = "alice@contoso.onmicrosoft.com";
const BOB: &str = "bob@contoso.onmicrosoft.com";
const CAROL: &str = "carol@contoso.onmicrosoft.com";

#[test]
fn init_creates_the_tenant_and_its_global_admin() {
    let w = World::contoso();
    let admin = w.user(ADMIN);
    assert!(admin.admin_roles.contains(&AdminRole::Global));
    assert_eq!(w.tenant.info.as_ref().unwrap().domain, "contoso.onmicrosoft.com");
    assert_eq!(w.tenant.default_actor(), Some(upn(ADMIN)), "the admin named at init acts by default");
    let again =
        TenantCommand::Init { domain: "x.com".into(), name: String::new(), admin: new_user(9, "a@x.com") };
    assert!(invalid_input(w.when(ADMIN, again)).contains("already holds tenant"));
}

#[test]
fn commands_before_init_are_bad_input() {
    let outcome = decide(&Tenant::default(), &upn(ADMIN), &assign(ALICE, "X"), t0());
    assert!(invalid_input(outcome).contains("run `usertrail init`"));
}

#[test]
fn d1_upn_is_unique_compared_case_insensitively() {
    let w = World::contoso();
    let dup = TenantCommand::CreateUser(new_user(50, "ALICE@Contoso.onmicrosoft.com"));
    let reason = refused_by(w.when(ADMIN, dup), Rule::D1);
    assert!(reason.contains("already taken by alice@contoso.onmicrosoft.com"), "{reason}");
}

#[test]
fn d1_members_live_in_the_tenant_domain() {
    let w = World::contoso();
    let outsider = TenantCommand::CreateUser(new_user(50, "eve@fabrikam.com"));
    refused_by(w.when(ADMIN, outsider), Rule::D1);
}

#[test]
fn d1_the_object_id_never_changes() {
    let mut w = World::contoso();
    let id = w.user(ALICE).id;
    w.ok(
        ADMIN,
        TenantCommand::UpdateUser {
            upn: upn(ALICE),
            fields: vec![(ProfileField::DisplayName, Some("Alice B".into()))],
        },
    );
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    w.ok(ADMIN, TenantCommand::Restore { upn: upn(ALICE) });
    assert_eq!(w.user(ALICE).id, id);
    assert_eq!(w.tenant.users.len(), 3, "no user was created along the way");
}

#[test]
fn d1_a_purged_users_upn_can_be_used_again() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    refused_by(w.when(ADMIN, TenantCommand::CreateUser(new_user(60, ALICE))), Rule::D1);
    w.later(31);
    w.ok(ADMIN, TenantCommand::CreateUser(new_user(60, ALICE)));
    assert_eq!(w.user(ALICE).id, Uuid::from_u128(60));
}

#[test]
fn d2_the_log_records_that_a_temporary_password_was_issued_and_nothing_of_it() {
    let mut w = World::contoso();
    let events = w.when(ADMIN, TenantCommand::CreateUser(new_user(70, CAROL))).unwrap();
    let TenantEvent::UserCreatedV2 { temporary_password, .. } = &events[0] else { panic!("{events:?}") };
    assert!(*temporary_password, "a created user gets one");
    let mut imported = new_user(71, "dave@contoso.onmicrosoft.com");
    imported.temporary_password = false;
    let events = w.when(ADMIN, TenantCommand::CreateUser(imported)).unwrap();
    assert!(matches!(&events[0], TenantEvent::UserCreatedV2 { temporary_password: false, .. }));
    let events = w.ok(ADMIN, TenantCommand::ResetPassword { upn: upn(ALICE) });
    assert_eq!(events, vec![TenantEvent::PasswordResetV2 { id: w.user(ALICE).id }]);
}

#[test]
fn d3_an_update_records_old_and_new_values_of_each_changed_field() {
    let mut w = World::contoso();
    let fields = vec![
        (ProfileField::JobTitle, Some("Seller".into())),
        (ProfileField::City, Some("Lyon".into())),
        (ProfileField::GivenName, Some("alice".into())), // unchanged
    ];
    let events = w.ok(ADMIN, TenantCommand::UpdateUser { upn: upn(ALICE), fields });
    let TenantEvent::UserUpdated { changes, .. } = &events[0] else { panic!("{events:?}") };
    assert_eq!(
        changes,
        &vec![
            FieldChange { field: ProfileField::JobTitle, old: None, new: Some("Seller".into()) },
            FieldChange { field: ProfileField::City, old: None, new: Some("Lyon".into()) },
        ]
    );
    let events =
        w.ok(ADMIN, TenantCommand::UpdateUser { upn: upn(ALICE), fields: vec![(ProfileField::City, None)] });
    let TenantEvent::UserUpdated { changes, .. } = &events[0] else { panic!("{events:?}") };
    assert_eq!(
        changes,
        &vec![FieldChange { field: ProfileField::City, old: Some("Lyon".into()), new: None }]
    );
    assert_eq!(w.user(ALICE).profile.get(ProfileField::City), None);
    assert_eq!(w.user(ALICE).profile.get(ProfileField::JobTitle), Some("Seller"));
}

#[test]
fn d3_every_profile_field_can_be_set() {
    let mut w = World::contoso();
    let fields: Vec<_> =
        ProfileField::ALL.iter().map(|f| (*f, Some(format!("v-{}", f.graph_name())))).collect();
    w.ok(ADMIN, TenantCommand::UpdateUser { upn: upn(ALICE), fields });
    for f in ProfileField::ALL {
        assert_eq!(w.user(ALICE).profile.get(f), Some(format!("v-{}", f.graph_name()).as_str()));
    }
    assert!(
        w.ok(ADMIN, TenantCommand::UpdateUser { upn: upn(ALICE), fields: vec![] }).is_empty(),
        "no change, no event"
    );
}

#[test]
fn d4_assigning_with_no_free_seat_is_refused() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, assign(BOB, "dyn365_sales"));
    w.create(CAROL);
    let reason = refused_by(w.when(ADMIN, assign(CAROL, "DYN365_SALES")), Rule::D4);
    assert!(reason.starts_with("no licenses available"), "{reason}");
}

#[test]
fn d4_removing_a_license_or_deleting_its_user_frees_the_seat() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, assign(BOB, "DYN365_SALES"));
    w.create(CAROL);
    w.ok(ADMIN, TenantCommand::RemoveLicense { upn: upn(ALICE), sku: "DYN365_SALES".into() });
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 1);
    w.ok(ADMIN, assign(CAROL, "DYN365_SALES"));
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 0);
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(BOB) });
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 1);
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
}

#[test]
fn d4_seats_cannot_drop_below_those_in_use() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, assign(BOB, "DYN365_SALES"));
    let reason =
        refused_by(w.when(ADMIN, TenantCommand::SetSeats { sku: "DYN365_SALES".into(), seats: 1 }), Rule::D4);
    assert!(reason.contains("2 are in use"), "{reason}");
    let events = w.ok(ADMIN, TenantCommand::SetSeats { sku: "DYN365_SALES".into(), seats: 5 });
    assert_eq!(events, vec![TenantEvent::SkuSeatsChanged { sku: "DYN365_SALES".into(), old: 2, new: 5 }]);
    w.ok(ADMIN, TenantCommand::SetSeats { sku: "DYN365_SALES".into(), seats: 2 });
    // as many as in use
}

#[test]
fn d4_a_tenant_level_license_is_not_assigned_to_users() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::AddSku { sku: "MKT_TENANT".into(), kind: SkuKind::MarketingTenant, seats: 1 });
    refused_by(w.when(ADMIN, assign(ALICE, "MKT_TENANT")), Rule::D4);
}

#[test]
fn unknown_users_skus_and_groups_are_bad_input() {
    let w = World::contoso();
    assert_eq!(
        invalid_input(w.when(ADMIN, assign("nobody@contoso.onmicrosoft.com", "DYN365_SALES"))),
        "unknown user nobody@contoso.onmicrosoft.com"
    );
    assert_eq!(invalid_input(w.when(ADMIN, assign(ALICE, "NOPE"))), "unknown SKU NOPE");
    let add = TenantCommand::AddMember { group: "Nope".into(), member: MemberRef::User(upn(ALICE)) };
    assert_eq!(invalid_input(w.when(ADMIN, add)), "unknown group Nope");
    assert!(invalid_input(w.when("ghost@contoso.onmicrosoft.com", assign(ALICE, "DYN365_SALES")))
        .contains("unknown actor"));
}

fn invite(n: u128, who: &str, sku: Option<&str>) -> TenantCommand {
    TenantCommand::Invite { id: Uuid::from_u128(n), upn: upn(who), sku: sku.map(str::to_owned) }
}

#[test]
fn d5_an_invitation_holds_a_seat_until_accepted() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, invite(80, "jane@fabrikam.com", Some("DYN365_SALES")));
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 0, "the invitation holds the last seat");
    w.ok(ADMIN, assign("jane@fabrikam.com", "ENTERPRISEPACK"));
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 0, "another SKU's license leaves it held");
    refused_by(w.when(ADMIN, assign(BOB, "DYN365_SALES")), Rule::D4);
    w.later(3);
    let events = w.ok("jane@fabrikam.com", TenantCommand::AcceptInvite { upn: upn("jane@fabrikam.com") });
    assert_eq!(
        events,
        vec![TenantEvent::InvitationAccepted { id: Uuid::from_u128(80), sku: Some("DYN365_SALES".into()) }]
    );
    assert!(w.user("jane@fabrikam.com").licenses.contains("DYN365_SALES"));
    w.later(30);
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 0, "accepted: the seat stays taken");
}

#[test]
fn d5_an_expired_invitation_frees_its_seat_and_cannot_be_accepted() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, invite(80, "jane@fabrikam.com", Some("DYN365_SALES")));
    w.now += INVITATION_LIFETIME - Duration::seconds(1);
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 0, "still held one second before expiry");
    w.now += Duration::seconds(1);
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 1, "free at expiry, with no timer");
    w.ok(ADMIN, assign(BOB, "DYN365_SALES"));
    let accept = TenantCommand::AcceptInvite { upn: upn("jane@fabrikam.com") };
    assert!(refused_by(w.when("jane@fabrikam.com", accept), Rule::D5).contains("expired"));
}

#[test]
fn d5_an_expired_guest_can_be_invited_again() {
    let mut w = World::contoso();
    w.ok(ADMIN, invite(80, "jane@fabrikam.com", Some("DYN365_SALES")));
    refused_by(w.when(ADMIN, invite(81, "jane@fabrikam.com", None)), Rule::D1);
    w.later(15);
    let events = w.ok(ADMIN, invite(81, "jane@fabrikam.com", Some("DYN365_SALES")));
    assert!(
        matches!(events[1], TenantEvent::InvitationIssued { id, .. } if id == Uuid::from_u128(80)),
        "the same guest"
    );
    w.later(1);
    w.ok("jane@fabrikam.com", TenantCommand::AcceptInvite { upn: upn("jane@fabrikam.com") });
    assert!(w.user("jane@fabrikam.com").licenses.contains("DYN365_SALES"));
}

#[test]
fn d5_restoring_an_invited_guest_never_oversubscribes() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, invite(80, "jane@fabrikam.com", Some("DYN365_SALES")));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn("jane@fabrikam.com") });
    w.ok(ADMIN, assign(BOB, "DYN365_SALES"));
    let events = w.ok(ADMIN, TenantCommand::Restore { upn: upn("jane@fabrikam.com") });
    assert!(
        matches!(&events[0], TenantEvent::UserRestored { licenses_not_restored, .. } if licenses_not_restored == &vec!["DYN365_SALES".to_owned()])
    );
    w.ok("jane@fabrikam.com", TenantCommand::AcceptInvite { upn: upn("jane@fabrikam.com") });
    assert_eq!(w.tenant.seats_used("DYN365_SALES", w.now), 2, "2 seats, 2 used");
    assert!(w.user("jane@fabrikam.com").licenses.is_empty());
}

#[test]
fn d7_restore_judges_each_sku_on_its_own_seats() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, assign(ALICE, "ENTERPRISEPACK"));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    w.ok(ADMIN, TenantCommand::SetSeats { sku: "ENTERPRISEPACK".into(), seats: 1 });
    let events = w.ok(ADMIN, TenantCommand::Restore { upn: upn(ALICE) });
    assert!(
        matches!(&events[0], TenantEvent::UserRestored { licenses_not_restored, .. } if licenses_not_restored.is_empty())
    );
}

#[test]
fn d4_a_sku_name_with_blanks_never_replaces_one_in_use() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    let sneaky = TenantCommand::AddSku { sku: " DYN365_SALES".into(), kind: SkuKind::Office, seats: 0 };
    assert!(invalid_input(w.when(ADMIN, sneaky)).contains("exists already"));
    let spaced = TenantCommand::AddSku { sku: "DYN 365".into(), kind: SkuKind::Office, seats: 0 };
    assert!(invalid_input(w.when(ADMIN, spaced)).contains("one word"));
}

#[test]
fn d4_a_skus_id_is_recorded_once_and_belongs_to_one_sku() {
    let mut w = World::contoso();
    let id = Uuid::from_u128(0x5a1e5);
    let identify = |sku: &str| TenantCommand::IdentifySku { sku: sku.into(), id };
    assert_eq!(
        w.ok(ADMIN, identify("dyn365_sales")),
        vec![TenantEvent::SkuIdentified { sku: "DYN365_SALES".into(), id }]
    );
    assert_eq!(
        w.tenant.sku_ids().map(|(id, s)| (id, s.part.as_str())).collect::<Vec<_>>(),
        [(id, "DYN365_SALES")]
    );
    assert!(w.ok(ADMIN, identify("DYN365_SALES")).is_empty(), "known already");
    assert!(invalid_input(w.when(ADMIN, identify("ENTERPRISEPACK"))).contains("is DYN365_SALES already"));
    assert!(invalid_input(w.when(ADMIN, identify("NOPE"))).contains("unknown SKU"));
}

#[test]
fn d6_sign_in_can_be_blocked_and_unblocked() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) });
    assert!(!w.user(ALICE).can_sign_in());
    assert!(
        w.ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) }).is_empty(),
        "blocking twice changes nothing"
    );
    w.ok(ADMIN, TenantCommand::Unblock { upn: upn(ALICE) });
    assert!(w.user(ALICE).can_sign_in());
}

#[test]
fn d7_a_deleted_user_is_restored_within_30_days() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "ENTERPRISEPACK"));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    assert!(!w.user(ALICE).can_sign_in());
    refused_by(w.when(ADMIN, assign(ALICE, "DYN365_SALES")), Rule::D7);
    w.later(29);
    let events = w.ok(ADMIN, TenantCommand::Restore { upn: upn(ALICE) });
    assert_eq!(
        events,
        vec![TenantEvent::UserRestored { id: w.user(ALICE).id, licenses_not_restored: vec![] }]
    );
    assert!(w.user(ALICE).can_sign_in());
    assert!(w.user(ALICE).licenses.contains("ENTERPRISEPACK"));
}

#[test]
fn d7_restore_after_30_days_is_refused() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    w.later(30);
    let reason = refused_by(w.when(ADMIN, TenantCommand::Restore { upn: upn(ALICE) }), Rule::D7);
    assert!(reason.contains("gone for good"), "{reason}");
}

#[test]
fn d7_restore_retakes_seats_only_if_free() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, assign(ALICE, "ENTERPRISEPACK"));
    w.ok(ADMIN, assign(BOB, "DYN365_SALES"));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    w.create(CAROL);
    w.ok(ADMIN, assign(CAROL, "DYN365_SALES"));
    let events = w.ok(ADMIN, TenantCommand::Restore { upn: upn(ALICE) });
    assert_eq!(
        events,
        vec![TenantEvent::UserRestored {
            id: w.user(ALICE).id,
            licenses_not_restored: vec!["DYN365_SALES".into()]
        }]
    );
    assert_eq!(w.user(ALICE).licenses.iter().collect::<Vec<_>>(), vec!["ENTERPRISEPACK"]);
    assert_eq!(w.tenant.seats_used("DYN365_SALES", w.now), 2, "never oversubscribed");
}

#[test]
fn d8_only_global_and_user_admins_manage_users() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::PowerPlatform });
    let reason = refused_by(w.when(ALICE, TenantCommand::CreateUser(new_user(90, CAROL))), Rule::D8);
    assert!(reason.contains("Power Platform Administrator"), "{reason}");
    assert!(reason.contains("Global Administrator or User Administrator"), "{reason}");
    refused_by(w.when(BOB, assign(ALICE, "DYN365_SALES")), Rule::D8);
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::UserAdmin });
    w.ok(BOB, TenantCommand::CreateUser(new_user(90, CAROL)));
    w.ok(BOB, assign(CAROL, "DYN365_SALES"));
}

#[test]
fn d8_only_a_global_admin_assigns_admin_roles() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::UserAdmin });
    refused_by(
        w.when(BOB, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::UserAdmin }),
        Rule::D8,
    );
    let mut with_role = new_user(91, CAROL);
    with_role.admin_roles = vec![AdminRole::Dynamics365];
    refused_by(w.when(BOB, TenantCommand::CreateUser(with_role)), Rule::D8);
}

#[test]
fn d8_a_password_admin_may_only_reset_passwords_of_non_admins() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::PasswordAdmin });
    let events = w.ok(BOB, TenantCommand::ResetPassword { upn: upn(ALICE) });
    assert_eq!(events, vec![TenantEvent::PasswordResetV2 { id: w.user(ALICE).id }]);
    refused_by(w.when(BOB, TenantCommand::Block { upn: upn(ALICE) }), Rule::D8);
    refused_by(w.when(BOB, TenantCommand::ResetPassword { upn: upn(ADMIN) }), Rule::D8);
    // A User Administrator is no privileged role: a Global Administrator resets its password, BOB not.
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::UserAdmin });
    refused_by(w.when(BOB, TenantCommand::ResetPassword { upn: upn(ALICE) }), Rule::D8);
    w.ok(ADMIN, TenantCommand::ResetPassword { upn: upn(ALICE) });
}

#[test]
fn d8_a_user_admin_cannot_change_a_global_admin() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(BOB), role: AdminRole::UserAdmin });
    refused_by(w.when(BOB, TenantCommand::Block { upn: upn(ADMIN) }), Rule::D8);
    refused_by(w.when(BOB, TenantCommand::Delete { upn: upn(ADMIN) }), Rule::D8);
    // Nor any holder of a privileged role, last Global Administrator or not.
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::PowerPlatform });
    let reason = refused_by(w.when(BOB, TenantCommand::Block { upn: upn(ALICE) }), Rule::D8);
    assert!(reason.starts_with("only a Global Administrator may block"), "{reason}");
}

#[test]
fn d8_the_last_global_admin_stays() {
    let mut w = World::contoso();
    refused_by(
        w.when(ADMIN, TenantCommand::RemoveAdminRole { upn: upn(ADMIN), role: AdminRole::Global }),
        Rule::D8,
    );
    refused_by(w.when(ADMIN, TenantCommand::Delete { upn: upn(ADMIN) }), Rule::D8);
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::Global });
    w.ok(ADMIN, TenantCommand::RemoveAdminRole { upn: upn(ADMIN), role: AdminRole::Global });
}

#[test]
fn d8_a_blocked_admin_cannot_act() {
    let mut w = World::contoso();
    w.ok(ADMIN, TenantCommand::AddAdminRole { upn: upn(ALICE), role: AdminRole::Global });
    w.ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) });
    let reason = refused_by(w.when(ALICE, TenantCommand::Block { upn: upn(BOB) }), Rule::D8);
    assert!(reason.contains("blocked"), "{reason}");
}

fn add_group(group: &str, inner: &str) -> TenantCommand {
    TenantCommand::AddMember { group: group.into(), member: MemberRef::Group(inner.into()) }
}

#[test]
fn d9_groups_hold_users_groups_and_owners() {
    let mut w = World::contoso();
    w.ok(
        ADMIN,
        TenantCommand::CreateGroup {
            id: Uuid::from_u128(500),
            name: "Sales-SG".into(),
            owner: Some(upn(BOB)),
        },
    );
    w.ok(
        ADMIN,
        TenantCommand::CreateGroup { id: Uuid::from_u128(501), name: "Sales-EU".into(), owner: None },
    );
    // The owner manages members without being an admin.
    w.ok(BOB, TenantCommand::AddMember { group: "sales-sg".into(), member: MemberRef::User(upn(ALICE)) });
    w.ok(BOB, add_group("Sales-SG", "Sales-EU"));
    let group = w.tenant.group_named("Sales-SG").unwrap();
    assert!(group.members.contains(&Member::User(w.user(ALICE).id)));
    assert!(group.members.contains(&Member::Group(Uuid::from_u128(501))));
    assert!(group.owners.contains(&w.user(BOB).id));
    // Not an owner of Sales-EU, not an admin: refused.
    refused_by(
        w.when(
            BOB,
            TenantCommand::AddMember { group: "Sales-EU".into(), member: MemberRef::User(upn(ALICE)) },
        ),
        Rule::D8,
    );
    w.ok(BOB, TenantCommand::RemoveMember { group: "Sales-SG".into(), member: MemberRef::User(upn(ALICE)) });
    assert!(!w.tenant.group_named("Sales-SG").unwrap().members.contains(&Member::User(w.user(ALICE).id)));
}

#[test]
fn d9_a_group_in_itself_or_a_cycle_is_refused() {
    let mut w = World::contoso();
    for (n, name) in [(600, "A"), (601, "B"), (602, "C")] {
        w.ok(ADMIN, TenantCommand::CreateGroup { id: Uuid::from_u128(n), name: name.into(), owner: None });
    }
    refused_by(w.when(ADMIN, add_group("A", "A")), Rule::D9);
    w.ok(ADMIN, add_group("A", "B"));
    w.ok(ADMIN, add_group("B", "C"));
    let reason = refused_by(w.when(ADMIN, add_group("C", "A")), Rule::D9);
    assert!(reason.contains("cycle"), "{reason}");
}

#[test]
fn d10_a_guest_keeps_its_home_licenses_apart_from_this_tenants() {
    let mut w = World::contoso();
    let mut guest = new_user(95, "jane@fabrikam.com");
    guest.guest = true;
    guest.home_licenses = vec!["DYN365_SALES".into()];
    w.ok(ADMIN, TenantCommand::CreateUser(guest));
    let jane = w.user("jane@fabrikam.com");
    assert_eq!(jane.user_type, UserType::Guest);
    assert!(jane.licenses.is_empty(), "a home-tenant license is not a license here");
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 2, "and takes no seat here");
    w.ok(ADMIN, assign("jane@fabrikam.com", "DYN365_SALES"));
    assert_eq!(w.tenant.free_seats("DYN365_SALES", w.now), 1, "a license from this tenant takes a seat");
}

#[test]
fn d10_a_guest_has_an_outside_address() {
    let w = World::contoso();
    let mut guest = new_user(96, "gina@contoso.onmicrosoft.com");
    guest.guest = true;
    assert!(invalid_input(w.when(ADMIN, TenantCommand::CreateUser(guest))).contains("own address"));
}

#[test]
fn replaying_the_log_from_nothing_gives_the_same_directory() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(BOB) });
    w.later(2);
    w.ok(ADMIN, TenantCommand::Restore { upn: upn(BOB) });
    let replayed = w.log.iter().fold(Tenant::default(), |t, (e, stamp)| evolve(t, e, *stamp));
    assert_eq!(replayed, w.tenant);
}

#[test]
fn d4_the_seat_counters_equal_a_recount_of_the_directory() {
    let mut w = World::contoso();
    w.ok(ADMIN, assign(ALICE, "DYN365_SALES"));
    w.ok(ADMIN, assign(ALICE, "ENTERPRISEPACK"));
    w.ok(ADMIN, invite(80, "jane@fabrikam.com", Some("DYN365_SALES")));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    w.ok(ADMIN, assign(BOB, "DYN365_SALES"));
    w.later(2);
    w.ok(ADMIN, TenantCommand::Restore { upn: upn(ALICE) });
    w.ok(ADMIN, TenantCommand::RemoveLicense { upn: upn(BOB), sku: "DYN365_SALES".into() });
    for when in [w.now, w.now + INVITATION_LIFETIME] {
        for sku in ["DYN365_SALES", "ENTERPRISEPACK"] {
            let recount = w
                .tenant
                .users
                .values()
                .filter(|u| !u.is_deleted())
                .filter(|u| {
                    u.licenses.contains(sku)
                        || u.pending_invitation(when).and_then(|i| i.sku.as_deref()) == Some(sku)
                })
                .count() as u32;
            assert_eq!(w.tenant.seats_used(sku, when), recount, "{sku} at {when}");
        }
    }
}

proptest::proptest! {
    /// Whatever order licenses come and go in, in whatever case, on users
    /// deleted or not, the seat counters equal a recount (D4): the fast path
    /// of license events and the general one agree.
    #[test]
    fn d4_seat_counters_equal_a_recount_after_any_events(
        steps in proptest::collection::vec((0u8..6, 0u128..3, 0usize..4), 0..40)
    ) {
        const PARTS: [&str; 4] = ["DYN365_SALES", "dyn365_sales", "Énergie_Σ", "ÉNERGIE_Σ"];
        let mut tenant = Tenant::default();
        for (seq, (kind, who, part)) in steps.into_iter().enumerate() {
            let id = Uuid::from_u128(who + 1);
            let sku = PARTS[part].to_owned();
            let event = match kind {
                0 => created(&new_user(who + 1, &format!("u{who}@contoso.onmicrosoft.com")), UserType::Member),
                1 | 2 => TenantEvent::LicenseAssigned { id, sku },
                3 => TenantEvent::LicenseRemoved { id, sku },
                4 => TenantEvent::UserDeleted { id },
                _ => TenantEvent::UserRestored { id, licenses_not_restored: vec![sku] },
            };
            tenant.apply(&event, Stamp { seq: seq as u64 + 1, at: t0() });
            let mut recount: BTreeMap<String, u32> = BTreeMap::new();
            for user in tenant.users.values().filter(|u| !u.is_deleted()) {
                let held: BTreeSet<String> = user.licenses.iter().map(|l| l.to_lowercase()).collect();
                for sku in held {
                    *recount.entry(sku).or_default() += 1;
                }
            }
            let counted: BTreeMap<String, u32> =
                tenant.assigned.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (s.clone(), *n)).collect();
            proptest::prop_assert_eq!(counted, recount);
        }
    }
}

/// A state through a snapshot's encoding and back, as `projections::fold`
/// does it: the head (bincode, standard configuration) with every part
/// absent, and the parts' bytes.
fn through_snapshot(tenant: &Tenant) -> (Tenant, Vec<Vec<u8>>) {
    let bytes = bincode::serde::encode_to_vec(tenant, bincode::config::standard()).unwrap();
    let (back, read) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!(read, bytes.len());
    let parts = tenant.parts().unwrap().into_iter().map(|part| match part {
        Part::Encoded(bytes) => bytes,
        Part::Kept(_) => panic!("a tenant folded from its events keeps no part"),
    });
    (back, parts.collect())
}

/// Runs `decide` as the shell does: while it reached absent parts, they
/// are filled and it runs again. Returns its result and the parts filled.
fn decide_reading_parts(
    tenant: &mut Tenant,
    parts: &[Vec<u8>],
    decide: impl Fn(&Tenant) -> Result<Vec<TenantEvent>, Rejection>,
) -> (Result<Vec<TenantEvent>, Rejection>, usize) {
    let mut filled = 0;
    loop {
        let decided = decide(tenant);
        let missed = tenant.take_misses();
        if missed.is_empty() {
            return (decided, filled);
        }
        for part in missed {
            tenant.fill(part, &parts[part as usize]).unwrap();
            filled += 1;
        }
    }
}

#[test]
fn a_directory_read_from_its_snapshot_reads_only_the_parts_a_command_reaches() {
    let mut w = World::contoso();
    for n in 0..2_000 {
        w.create(&format!("user{n}@contoso.onmicrosoft.com"));
    }
    w.ok(
        ADMIN,
        TenantCommand::CreateGroup { id: Uuid::from_u128(500), name: "Sales-SG".into(), owner: None },
    );
    w.ok(ADMIN, TenantCommand::AddMember { group: "Sales-SG".into(), member: MemberRef::User(upn(ALICE)) });
    let (mut back, parts) = through_snapshot(&w.tenant);
    assert_eq!(back.absent_parts().len(), parts.len(), "loading the head reads no part");
    assert!(parts.len() > 8 && back.users.len() == w.tenant.users.len() && Users::default().is_empty());
    // A user create reads the actor and checks the UPN: a few parts.
    let create = TenantCommand::CreateUser(new_user(900, "new@contoso.onmicrosoft.com"));
    let (events, filled) =
        decide_reading_parts(&mut back, &parts, |t| decide(t, &upn(ADMIN), &create, w.now));
    assert_eq!(events, decide(&w.tenant, &upn(ADMIN), &create, w.now), "decided as on the whole directory");
    assert!((1..=4).contains(&filled), "{filled} of {} parts read", parts.len());
    assert_eq!(
        back.groups.absent().count(),
        back.groups.source_parts() as usize,
        "a user create reaches no group"
    );
    // A refusal is decided on the parts it needs too.
    let taken = TenantCommand::CreateUser(new_user(901, ALICE));
    let (refused, _) = decide_reading_parts(&mut back, &parts, |t| decide(t, &upn(ADMIN), &taken, w.now));
    assert_eq!(refused, decide(&w.tenant, &upn(ADMIN), &taken, w.now));
    assert!(refused.is_err());
    // A walk over every user (the last Global Administrator check) reads them all.
    let (walked, _) = decide_reading_parts(&mut back, &parts, |t| {
        decide(t, &upn(ADMIN), &TenantCommand::Block { upn: upn(ADMIN) }, w.now)
    });
    assert_eq!(walked, decide(&w.tenant, &upn(ADMIN), &TenantCommand::Block { upn: upn(ADMIN) }, w.now));
    assert!(back.users.is_whole());
    assert_eq!(back.group_named("sales-sg"), None, "a group not read yet");
    assert!(!back.take_misses().is_empty(), "is a miss");
    for part in back.absent_parts() {
        back.fill(part, &parts[part as usize]).unwrap();
    }
    assert_eq!(back.group_named("sales-sg").map(|g| g.members.len()), Some(1));
    assert_eq!(back, w.tenant, "and every user and group reads as saved");
}

#[test]
fn a_directory_read_from_its_snapshot_folds_what_follows_as_the_original_does() {
    let mut w = World::contoso();
    let alice = "alice@contoso.onmicrosoft.com";
    let (mut back, first_parts) = through_snapshot(&w.tenant);
    for part in back.absent_parts() {
        back.fill(part, &first_parts[part as usize]).unwrap();
    }
    let more = [
        assign(alice, "DYN365_SALES"),
        TenantCommand::Block { upn: upn(alice) },
        TenantCommand::UpdateUser {
            upn: upn("bob@contoso.onmicrosoft.com"),
            fields: vec![(ProfileField::City, Some("Lyon".into()))],
        },
    ];
    for command in more {
        let before = w.log.len();
        w.ok(ADMIN, command);
        for (e, stamp) in &w.log[before..] {
            back.apply(e, *stamp);
        }
    }
    assert!(back.take_misses().is_empty());
    assert_eq!(back, w.tenant);
    // Saved again and read again, it is still the same directory.
    let (mut again, parts) = through_snapshot(&back);
    for part in again.absent_parts() {
        again.fill(part, &parts[part as usize]).unwrap();
    }
    assert_eq!(again, w.tenant);
    assert_ne!(parts, first_parts);
    assert_eq!(through_snapshot(&w.tenant).1, parts, "the same bytes as saving the original");
}

/// A fold that reaches a user of a part not read is void: it says so, and
/// changes nothing of that part.
#[test]
fn a_fold_reaching_an_absent_part_says_so_and_changes_nothing_there() {
    let mut w = World::contoso();
    let (mut back, parts) = through_snapshot(&w.tenant);
    let before = w.log.len();
    w.ok(ADMIN, TenantCommand::Block { upn: upn(ALICE) });
    let (event, stamp) = &w.log[before];
    back.apply(event, *stamp);
    let missed = back.take_misses();
    assert!(!missed.is_empty(), "the fold reached a part it lacked");
    for part in back.absent_parts() {
        back.fill(part, &parts[part as usize]).unwrap();
    }
    assert!(back.user(&upn(ALICE)).unwrap().can_sign_in(), "the event was not folded into a part it lacked");
    // Kept parts are named by their place in the source, whatever map they belong to.
    let (head, _) = through_snapshot(&w.tenant);
    let kept: Vec<u32> = head
        .parts()
        .unwrap()
        .into_iter()
        .map(|p| match p {
            Part::Kept(i) => i,
            Part::Encoded(_) => panic!("nothing was read"),
        })
        .collect();
    assert_eq!(kept, (0..parts.len() as u32).collect::<Vec<_>>());
}

/// Issue 34 (`Users`' `FromIterator` and `Debug`): collected users are
/// kept by id, and print as a map of them.
#[test]
fn users_collect_by_id_and_print_as_a_map() {
    let w = World::contoso();
    let admin = w.user(ADMIN);
    let users: Users = [(admin.id, admin.clone())].into_iter().collect();
    assert_eq!(users.get(&admin.id), Some(admin));
    assert!(format!("{users:?}").starts_with(&format!("{{{}: User {{", admin.id)), "{users:?}");
}

/// A part's bytes with some left over, or past the directory's parts, are
/// refused, naming the part: the fold then reads the log instead.
#[test]
fn a_part_with_bytes_left_over_or_past_the_end_is_refused() {
    let w = World::contoso();
    let (mut back, parts) = through_snapshot(&w.tenant);
    let mut bytes = parts[0].clone();
    bytes.push(0);
    let err = back.fill(0, &bytes).unwrap_err();
    assert_eq!(err.to_string(), "part 0 of the users: has bytes left over");
    let past = parts.len() as u32;
    assert!(back.fill(past, &parts[0]).unwrap_err().to_string().contains("is past its"));
}

#[test]
fn d9_a_groups_nested_groups_are_all_its_group_members_and_no_user() {
    let (g1, g2, u1, u2) = (Uuid::from_u128(1), Uuid::from_u128(u128::MAX), Uuid::nil(), Uuid::from_u128(7));
    let group = Group {
        id: Uuid::from_u128(9),
        name: "Sales-SG".into(),
        members: [Member::User(u1), Member::Group(g1), Member::User(u2), Member::Group(g2)]
            .into_iter()
            .collect(),
        owners: Default::default(),
        changes: Default::default(),
    };
    assert_eq!(group.nested().collect::<Vec<_>>(), vec![g1, g2]);
}

/// Issue 34 (mutants of `name` and `targets`): a command's audit record
/// names it as typed and what it aims at.
#[test]
fn l2_a_command_is_named_as_typed_with_its_targets() {
    let command = assign(ALICE, "DYN365_SALES");
    assert_eq!(command.name(), "user license assign");
    assert_eq!(command.targets(), vec![ALICE.to_owned(), "DYN365_SALES".to_owned()]);
}

/// Issue 34 (`judged_by_time`, `user_by_id`): only a deleted user's
/// standing changes with time alone: it is found by id until it is gone
/// for good (D7).
#[test]
fn d7_a_deleted_user_is_judged_by_time_and_found_by_id_until_gone_for_good() {
    let mut w = World::contoso();
    let id = w.user(ALICE).id;
    assert!(!w.user(ALICE).judged_by_time());
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(ALICE) });
    assert!(w.user(ALICE).judged_by_time());
    assert_eq!(w.tenant.user_by_id(id, w.now).map(|u| u.upn.as_str()), Some(ALICE));
    w.later(30);
    assert_eq!(w.tenant.user_by_id(id, w.now), None);
}

/// Issue 34 (`environment`, `environments`): registered environments are
/// found by name whatever its case, and listed in name order.
#[test]
fn environments_are_found_by_name_and_listed_in_name_order() {
    let mut w = World::contoso();
    for (n, name) in [(2, "Sales"), (1, "Dev")] {
        let registered = TenantEvent::EnvironmentRegistered { id: Uuid::from_u128(n), name: name.into() };
        w.tenant.apply(&registered, Stamp { seq: 100 + n as u64, at: w.now });
    }
    assert_eq!(w.tenant.environment("sales"), Some((Uuid::from_u128(2), "Sales")));
    let all: Vec<(Uuid, &str)> = w.tenant.environments().collect();
    assert_eq!(all, vec![(Uuid::from_u128(1), "Dev"), (Uuid::from_u128(2), "Sales")]);
}

/// Issue 34 (the evidence set at creation): a new user's creation record
/// is the evidence of its sign-in and profile until they change.
#[test]
fn a_new_users_creation_record_is_the_evidence_of_its_sign_in_and_profile() {
    let w = World::contoso();
    let alice = w.user(ALICE);
    let created = w.log.iter().find_map(|(e, stamp)| match e {
        TenantEvent::UserCreatedV2 { id, .. } if *id == alice.id => Some(stamp.seq),
        _ => None,
    });
    let evidence = &alice.evidence;
    assert_eq!(Some((evidence.created, evidence.sign_in, evidence.profile)), created.map(|c| (c, c, c)));
}

/// Issue 34 (`holds_seat`'s ASCII shortcut): it compares as
/// `seat_holdings` does, lower-cased, also where one side alone is ASCII
/// (the Kelvin sign lower-cases to `k`).
#[test]
fn d4_holding_a_seat_is_judged_as_the_seat_counters_judge_it() {
    let w = World::contoso();
    let mut alice = w.user(ALICE).clone();
    alice.licenses.insert("SKU_K".into());
    let kelvin = "SKU_\u{212A}";
    assert!(seat_holdings(&alice).contains(&kelvin.to_lowercase()));
    assert!(holds_seat(&alice, kelvin));
}

/// Issue 34 (`AcceptInvite` acts before it can sign in): a deleted guest
/// is told to be restored first (D7), not that it cannot act (D8).
#[test]
fn d5_d7_a_deleted_guest_restores_before_it_accepts() {
    let mut w = World::contoso();
    let jane = "jane@fabrikam.com";
    w.ok(ADMIN, invite(80, jane, None));
    w.ok(ADMIN, TenantCommand::Delete { upn: upn(jane) });
    let reason = refused_by(w.when(jane, TenantCommand::AcceptInvite { upn: upn(jane) }), Rule::D7);
    assert!(reason.ends_with("is deleted; restore it first"), "{reason}");
}
