//! Importing a directory export: the difference between what the export says
//! and what the tenant holds, as ordinary tenant commands (creates, updates
//! with old and new values, license and membership changes, deletions).
//! Importing the same export twice plans nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::events::{Member, ProfileField, SkuKind};
use crate::ids::Upn;
use crate::tenant::{MemberRef, NewUser, Tenant, TenantCommand, User};

/// A user as the export has it. `profile` holds the fields the export
/// mentions: `Some` sets, `None` (an explicit null) clears; absent fields are
/// left as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedUser {
    /// The directory object id.
    pub id: Uuid,
    /// The sign-in name.
    pub upn: Upn,
    /// Fields the export mentions.
    pub profile: BTreeMap<ProfileField, Option<String>>,
    /// accountEnabled, if the export says.
    pub account_enabled: Option<bool>,
    /// userType Guest.
    pub guest: bool,
    /// Assigned licenses, by part number; `None`: the export does not say
    /// (the Entra admin center's CSV), and licenses are left as they are.
    pub licenses: Option<BTreeSet<String>>,
}

/// A group member as the export has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImportedMember {
    /// A user, by directory object id.
    User(Uuid),
    /// A nested group, by directory object id.
    Group(Uuid),
}

/// A security group as the export has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedGroup {
    /// The directory object id.
    pub id: Uuid,
    /// displayName.
    pub name: String,
    /// Direct members; `None` when the export left them out (GET /groups
    /// without `$expand=members`): then members are left as they are.
    pub members: Option<BTreeSet<ImportedMember>>,
    /// Owners (users).
    pub owners: BTreeSet<Uuid>,
}

/// A subscribed SKU as the export has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedSku {
    /// skuId.
    pub id: Uuid,
    /// skuPartNumber.
    pub part: String,
    /// The kind (inferred or overridden).
    pub kind: SkuKind,
    /// Why that kind, for the import's report.
    pub why: String,
    /// prepaidUnits.enabled.
    pub seats: u32,
}

/// A whole directory export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Users (GET /users).
    pub users: Vec<ImportedUser>,
    /// Groups with members and owners (GET /groups), if given.
    pub groups: Option<Vec<ImportedGroup>>,
    /// SKUs (GET /subscribedSkus), if given.
    pub skus: Option<Vec<ImportedSku>>,
    /// Keep users the export does not mention, instead of deleting them.
    pub keep_missing: bool,
}

/// What the export's users need, user by user. Each user's commands depend
/// on the directory alone, not on the other users: a caller may plan
/// slices of the export apart (on several threads) and [`UserPlan::join`]
/// the parts in order, which gives what planning them in one go gives.
#[derive(Debug, Default)]
pub struct UserPlan {
    /// Export ids to this tenant's ids, for the users the tenant already
    /// has (matched by id, or by UPN for users created here); a user it does
    /// not have yet keeps the export's id.
    ours: BTreeMap<Uuid, Uuid>,
    /// The tenant's users the export mentions.
    seen: BTreeSet<Uuid>,
    /// Restores, updates, blocks and unblocks, license removals.
    users: Vec<TenantCommand>,
    /// New users with their licenses, after every removal.
    arrivals: Vec<TenantCommand>,
    /// License assignments, after every removal.
    assigns: Vec<TenantCommand>,
}

impl UserPlan {
    /// Plans `users` of an export against `tenant` at `now`. Takes them: what
    /// they hold moves into the commands instead of being copied.
    pub fn of(tenant: &Tenant, users: Vec<ImportedUser>, now: DateTime<Utc>) -> UserPlan {
        let mut plan = UserPlan::default();
        for ImportedUser { id, upn, profile, account_enabled, guest, licenses } in users {
            let existing = tenant.user_by_id(id, now).or_else(|| tenant.live_user(&upn, now));
            let Some(existing) = existing else {
                // Created under the export's id: `ours` maps only the ids that differ.
                let block =
                    (account_enabled == Some(false)).then(|| TenantCommand::Block { upn: upn.clone() });
                plan.arrivals.push(TenantCommand::CreateUser(NewUser {
                    id,
                    upn,
                    profile: profile.into_iter().filter_map(|(f, v)| Some((f, v?))).collect(),
                    licenses: licenses.into_iter().flatten().collect(),
                    admin_roles: vec![],
                    guest,
                    home_licenses: vec![],
                    // They sign in with their own directory's password.
                    temporary_password: false,
                }));
                plan.arrivals.extend(block);
                continue;
            };
            plan.ours.insert(id, existing.id);
            plan.seen.insert(existing.id);
            let upn = Upn::parse(&existing.upn).unwrap_or(upn);
            if existing.is_deleted() {
                plan.users.push(TenantCommand::Restore { upn: upn.clone() });
            }
            let fields: Vec<(ProfileField, Option<String>)> =
                profile.into_iter().filter(|(f, v)| existing.profile.get(*f) != v.as_deref()).collect();
            if !fields.is_empty() {
                plan.users.push(TenantCommand::UpdateUser { upn: upn.clone(), fields });
            }
            match account_enabled {
                Some(false) if existing.account_enabled => {
                    plan.users.push(TenantCommand::Block { upn: upn.clone() })
                }
                Some(true) if !existing.account_enabled => {
                    plan.users.push(TenantCommand::Unblock { upn: upn.clone() })
                }
                _ => {}
            }
            let Some(licenses) = licenses else { continue };
            let held: BTreeSet<String> = existing.licenses.iter().map(|l| l.to_lowercase()).collect();
            let wanted: BTreeSet<String> = licenses.iter().map(|l| l.to_lowercase()).collect();
            for sku in existing.licenses.iter().filter(|l| !wanted.contains(&l.to_lowercase())) {
                plan.users.push(TenantCommand::RemoveLicense { upn: upn.clone(), sku: sku.clone() });
            }
            for sku in licenses.into_iter().filter(|l| !held.contains(&l.to_lowercase())) {
                plan.assigns.push(TenantCommand::AssignLicense { upn: upn.clone(), sku });
            }
        }
        plan
    }

    /// This plan followed by `later`, the plan of the users after these.
    pub fn join(mut self, later: UserPlan) -> UserPlan {
        self.ours.extend(later.ours);
        self.seen.extend(later.seen);
        self.users.extend(later.users);
        self.arrivals.extend(later.arrivals);
        self.assigns.extend(later.assigns);
        self
    }
}

/// The commands that bring `tenant` in line with `export` at `now`, in an
/// order that never needs a seat before it is free: leavers go and licenses
/// are removed before anyone takes a seat. A new user is created with its
/// licenses, as the admin center does, in one command.
pub fn plan(tenant: &Tenant, mut export: Export, now: DateTime<Utc>) -> Vec<TenantCommand> {
    let users = UserPlan::of(tenant, std::mem::take(&mut export.users), now);
    plan_with(tenant, &export, users, now)
}

/// [`plan`], given the plan of the export's users ([`UserPlan::of`] all of them):
/// `export.users` is not read.
pub fn plan_with(
    tenant: &Tenant,
    export: &Export,
    users: UserPlan,
    now: DateTime<Utc>,
) -> Vec<TenantCommand> {
    let UserPlan { ours, seen, users, arrivals, assigns } = users;
    let mut first = Vec::new(); // SKUs bought or grown
    let mut groups = Vec::new();
    let mut deletions = Vec::new(); // leavers, before anyone takes their seats
    let mut last = Vec::new(); // shrinking SKUs

    for sku in export.skus.iter().flatten() {
        match tenant.sku(&sku.part) {
            None => {
                first.push(TenantCommand::AddSku { sku: sku.part.clone(), kind: sku.kind, seats: sku.seats })
            }
            Some(have) if sku.seats > have.seats => {
                first.push(TenantCommand::SetSeats { sku: have.part.clone(), seats: sku.seats })
            }
            Some(have) if sku.seats < have.seats => {
                last.push(TenantCommand::SetSeats { sku: have.part.clone(), seats: sku.seats })
            }
            Some(_) => {}
        }
        if tenant.sku(&sku.part).and_then(|have| have.id) != Some(sku.id) {
            first.push(TenantCommand::IdentifySku { sku: sku.part.clone(), id: sku.id });
        }
    }

    if let Some(export_groups) = &export.groups {
        // The users the tenant does not have yet are named as they will be
        // created; looked up per member: a map, not a scan of the plan.
        let export_upns: BTreeMap<Uuid, &Upn> = arrivals
            .iter()
            .filter_map(|c| match c {
                TenantCommand::CreateUser(new) => Some((new.id, &new.upn)),
                _ => None,
            })
            .collect();
        // A user this tenant knows is named by its UPN here (UPN changes are not imported).
        let upn_of = |graph_id: &Uuid| -> Option<Upn> {
            let ours = ours.get(graph_id).copied().unwrap_or(*graph_id);
            let here =
                tenant.users.get(&ours).filter(|u| !u.is_purged(now)).and_then(|u| Upn::parse(&u.upn).ok());
            here.or_else(|| export_upns.get(graph_id).map(|u| (*u).clone()))
        };
        let export_names: BTreeMap<Uuid, &String> = export_groups.iter().map(|g| (g.id, &g.name)).collect();
        let name_of = |graph_id: &Uuid| -> Option<String> {
            export_names
                .get(graph_id)
                .map(|n| (*n).clone())
                .or_else(|| tenant.groups.get(graph_id).map(|g| g.name.clone()))
        };
        // Export group ids to this tenant's: groups made here are matched by name.
        let group_ids: BTreeMap<Uuid, Uuid> = export_groups
            .iter()
            .map(|g| {
                let local =
                    tenant.groups.get(&g.id).or_else(|| tenant.group_named(&g.name)).map_or(g.id, |e| e.id);
                (g.id, local)
            })
            .collect();
        for g in export_groups {
            let existing = tenant.groups.get(&g.id).or_else(|| tenant.group_named(&g.name));
            if existing.is_none() {
                groups.push(TenantCommand::CreateGroup { id: g.id, name: g.name.clone(), owner: None });
            }
            let name = existing.map_or_else(|| g.name.clone(), |e| e.name.clone());
            if let Some(members) = &g.members {
                let current: BTreeSet<Member> = existing.map(|e| e.members.clone()).unwrap_or_default();
                let wanted: BTreeSet<Member> = members
                    .iter()
                    .map(|m| match m {
                        ImportedMember::User(id) => Member::User(ours.get(id).copied().unwrap_or(*id)),
                        ImportedMember::Group(id) => Member::Group(group_ids.get(id).copied().unwrap_or(*id)),
                    })
                    .collect();
                // Our id back to the export's, to name the member.
                let graph_ids: BTreeMap<Uuid, Uuid> = members
                    .iter()
                    .filter_map(|m| match m {
                        ImportedMember::User(gid) => Some((ours.get(gid).copied().unwrap_or(*gid), *gid)),
                        ImportedMember::Group(_) => None,
                    })
                    .collect();
                for member in wanted.difference(&current) {
                    let reference = match member {
                        Member::User(id) => graph_ids.get(id).and_then(upn_of).map(MemberRef::User),
                        Member::Group(id) => name_of(id).map(MemberRef::Group),
                    };
                    if let Some(member) = reference {
                        groups.push(TenantCommand::AddMember { group: name.clone(), member });
                    }
                }
                for member in current.difference(&wanted) {
                    let reference = match member {
                        // A user gone for good cannot be named any more; its membership goes with it.
                        Member::User(id) => tenant
                            .users
                            .get(id)
                            .filter(|u| !u.is_purged(now))
                            .and_then(|u| Upn::parse(&u.upn).ok())
                            .map(MemberRef::User),
                        Member::Group(id) => tenant.groups.get(id).map(|g| MemberRef::Group(g.name.clone())),
                    };
                    if let Some(member) = reference {
                        groups.push(TenantCommand::RemoveMember { group: name.clone(), member });
                    }
                }
            }
            let owners: BTreeSet<Uuid> = existing.map(|e| e.owners.clone()).unwrap_or_default();
            for owner in &g.owners {
                let id = ours.get(owner).copied().unwrap_or(*owner);
                if !owners.contains(&id) {
                    if let Some(upn) = upn_of(owner) {
                        groups.push(TenantCommand::AddOwner { group: name.clone(), upn });
                    }
                }
            }
        }
    }

    if !export.keep_missing {
        // The admin named at `init` is usertrail's default actor and rarely in
        // an export of a real tenant: it is never soft-deleted by an import.
        let init_admin = tenant.info.as_ref().map(|i| i.admin);
        let missing = |u: &&User| !u.is_deleted() && !seen.contains(&u.id) && Some(u.id) != init_admin;
        for user in tenant.live_users(now).filter(missing) {
            if let Ok(upn) = Upn::parse(&user.upn) {
                deletions.push(TenantCommand::Delete { upn });
            }
        }
    }

    first
        .into_iter()
        .chain(deletions)
        .chain(users)
        .chain(arrivals)
        .chain(assigns)
        .chain(groups)
        .chain(last)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Stamp;
    use crate::tenant::decide;
    use chrono::TimeZone;

    const ADMIN: &str = "admin@contoso.onmicrosoft.com";

    fn upn(s: &str) -> Upn {
        Upn::parse(s).unwrap()
    }

    fn apply_all(tenant: &mut Tenant, commands: &[TenantCommand], now: DateTime<Utc>, seq: &mut u64) {
        for command in commands {
            let events =
                decide(tenant, &upn(ADMIN), command, now).unwrap_or_else(|r| panic!("{command:?}: {r}"));
            for e in events {
                *seq += 1;
                tenant.apply(&e, Stamp { seq: *seq, at: now });
            }
        }
    }

    fn contoso(now: DateTime<Utc>, seq: &mut u64) -> Tenant {
        let mut tenant = Tenant::default();
        let admin = NewUser {
            id: Uuid::from_u128(1),
            upn: upn(ADMIN),
            profile: crate::events::Profile::default(),
            licenses: vec![],
            admin_roles: vec![],
            guest: false,
            home_licenses: vec![],
            temporary_password: false,
        };
        let init =
            TenantCommand::Init { domain: "contoso.onmicrosoft.com".into(), name: "Contoso".into(), admin };
        apply_all(&mut tenant, &[init], now, seq);
        tenant
    }

    fn sales_sku(seats: u32) -> ImportedSku {
        let (id, part, why) = (Uuid::from_u128(0x5a1e5), "DYN365_SALES".into(), String::new());
        ImportedSku { id, part, kind: SkuKind::D365, why, seats }
    }

    fn user(n: u128, who: &str, city: &str, licenses: &[&str]) -> ImportedUser {
        ImportedUser {
            id: Uuid::from_u128(n),
            upn: upn(who),
            profile: [
                (ProfileField::GivenName, Some("X".to_owned())),
                (ProfileField::City, Some(city.to_owned())),
            ]
            .into_iter()
            .collect(),
            account_enabled: Some(true),
            guest: false,
            licenses: Some(licenses.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn importing_twice_plans_nothing_the_second_time() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut seq = 0;
        let mut tenant = contoso(now, &mut seq);
        let mut export = Export {
            users: vec![
                user(1, ADMIN, "Paris", &[]),
                user(2, "alice@contoso.onmicrosoft.com", "Lyon", &["DYN365_SALES"]),
            ],
            groups: Some(vec![ImportedGroup {
                id: Uuid::from_u128(9),
                name: "Sales-SG".into(),
                members: Some([ImportedMember::User(Uuid::from_u128(2))].into_iter().collect()),
                owners: [Uuid::from_u128(1)].into_iter().collect(),
            }]),
            skus: Some(vec![sales_sku(5)]),
            keep_missing: false,
        };
        let commands = plan(&tenant, export.clone(), now);
        assert!(commands.len() >= 6, "{commands:?}");
        apply_all(&mut tenant, &commands, now, &mut seq);
        assert!(plan(&tenant, export.clone(), now).is_empty(), "nothing left to do");
        // A change in the export becomes an update with old and new values, and a move of the license.
        export.users[1].profile.insert(ProfileField::City, Some("Nice".into()));
        export.users[1].licenses = Some(BTreeSet::new());
        let commands = plan(&tenant, export.clone(), now);
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(
            matches!(&commands[0], TenantCommand::UpdateUser { fields, .. } if fields == &vec![(ProfileField::City, Some("Nice".to_owned()))])
        );
        assert!(matches!(&commands[1], TenantCommand::RemoveLicense { .. }));
    }

    #[test]
    fn an_export_planned_in_slices_and_joined_plans_what_it_plans_whole() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut seq = 0;
        let mut tenant = contoso(now, &mut seq);
        let sku = sales_sku(50);
        let who = |n: u128| format!("u{n}@contoso.onmicrosoft.com");
        // Half the users are already here, some with a license and some blocked.
        let before = Export {
            users: (2..14)
                .map(|n| user(n, &who(n), "Lyon", if n % 3 == 0 { &["DYN365_SALES"] } else { &[] }))
                .collect(),
            skus: Some(vec![sku.clone()]),
            keep_missing: true,
            ..Export::default()
        };
        let arrivals = plan(&tenant, before, now);
        apply_all(&mut tenant, &arrivals, now, &mut seq);
        apply_all(&mut tenant, &[TenantCommand::Block { upn: upn(&who(5)) }], now, &mut seq);
        // The export moves cities and licenses, adds users and leaves some out.
        let mut users: Vec<ImportedUser> = (4..24)
            .map(|n| {
                user(
                    n,
                    &who(n),
                    if n % 2 == 0 { "Oslo" } else { "Lyon" },
                    if n % 4 == 0 { &["DYN365_SALES"] } else { &[] },
                )
            })
            .collect();
        users.push(user(1, ADMIN, "Paris", &[]));
        let export = Export { users, skus: Some(vec![sku]), ..Export::default() };
        let whole = plan(&tenant, export.clone(), now);
        assert!(whole.len() > 20, "{whole:?}");
        for cut in 0..=export.users.len() {
            let (early, late) = export.users.split_at(cut);
            let joined =
                UserPlan::of(&tenant, early.to_vec(), now).join(UserPlan::of(&tenant, late.to_vec(), now));
            assert_eq!(plan_with(&tenant, &export, joined, now), whole, "cut at {cut}");
        }
    }

    /// Issue 34 (the guards on accountEnabled): an export that blocks a
    /// user plans one Block, then nothing; enabled again, one Unblock.
    #[test]
    fn d6_an_export_blocks_and_unblocks_a_user_once() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut seq = 0;
        let mut tenant = contoso(now, &mut seq);
        let mut bob = user(2, "bob@contoso.onmicrosoft.com", "Oslo", &[]);
        let export = |bob: &ImportedUser| Export {
            users: vec![user(1, ADMIN, "Paris", &[]), bob.clone()],
            ..Export::default()
        };
        let commands = plan(&tenant, export(&bob), now);
        apply_all(&mut tenant, &commands, now, &mut seq);
        bob.account_enabled = Some(false);
        let commands = plan(&tenant, export(&bob), now);
        assert_eq!(commands, vec![TenantCommand::Block { upn: bob.upn.clone() }]);
        apply_all(&mut tenant, &commands, now, &mut seq);
        assert!(plan(&tenant, export(&bob), now).is_empty(), "blocked already");
        bob.account_enabled = Some(true);
        assert_eq!(plan(&tenant, export(&bob), now), vec![TenantCommand::Unblock { upn: bob.upn.clone() }]);
    }

    /// Issue 34 (`plan_with`'s SKU and group guards): seats grow first and
    /// shrink last, a SKU's id is recorded once, and a group's members and
    /// owners follow the export for users the tenant has already (D4, D9).
    #[test]
    fn d4_d9_an_export_moves_seats_and_the_members_and_owners_of_known_users() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut seq = 0;
        let mut tenant = contoso(now, &mut seq);
        let (alice, bob) = ("alice@contoso.onmicrosoft.com", "bob@contoso.onmicrosoft.com");
        let mut users = vec![
            user(1, ADMIN, "Paris", &[]),
            user(2, alice, "Lyon", &["DYN365_SALES"]),
            user(3, bob, "Oslo", &[]),
        ];
        let export = |users: &[ImportedUser], members: &[u128], seats: u32| Export {
            users: users.to_vec(),
            groups: Some(vec![ImportedGroup {
                id: Uuid::from_u128(9),
                name: "Sales-SG".into(),
                members: Some(members.iter().map(|n| ImportedMember::User(Uuid::from_u128(*n))).collect()),
                owners: [Uuid::from_u128(3)].into_iter().collect(),
            }]),
            skus: Some(vec![sales_sku(seats)]),
            keep_missing: false,
        };
        let commands = plan(&tenant, Export { groups: None, ..export(&users, &[], 2) }, now);
        apply_all(&mut tenant, &commands, now, &mut seq);
        assert_eq!(tenant.sku("DYN365_SALES").and_then(|s| s.id), Some(sales_sku(2).id));
        let (group, member) = (String::from("Sales-SG"), |who: &str| MemberRef::User(upn(who)));
        let commands = plan(&tenant, export(&users, &[2, 3], 5), now);
        assert_eq!(
            commands,
            vec![
                TenantCommand::SetSeats { sku: "DYN365_SALES".into(), seats: 5 },
                TenantCommand::CreateGroup { id: Uuid::from_u128(9), name: group.clone(), owner: None },
                TenantCommand::AddMember { group: group.clone(), member: member(alice) },
                TenantCommand::AddMember { group: group.clone(), member: member(bob) },
                TenantCommand::AddOwner { group: group.clone(), upn: upn(bob) },
            ]
        );
        apply_all(&mut tenant, &commands, now, &mut seq);
        assert!(plan(&tenant, export(&users, &[2, 3], 5), now).is_empty());
        users[1].licenses = Some(BTreeSet::new());
        assert_eq!(
            plan(&tenant, export(&users, &[3], 0), now),
            vec![
                TenantCommand::RemoveLicense { upn: upn(alice), sku: "DYN365_SALES".into() },
                TenantCommand::RemoveMember { group, member: member(alice) },
                TenantCommand::SetSeats { sku: "DYN365_SALES".into(), seats: 0 },
            ]
        );
    }

    #[test]
    fn users_missing_from_the_export_are_deleted_unless_kept() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut seq = 0;
        let mut tenant = contoso(now, &mut seq);
        let export = Export {
            users: vec![user(1, ADMIN, "Paris", &[]), user(2, "bob@contoso.onmicrosoft.com", "Oslo", &[])],
            ..Export::default()
        };
        let commands = plan(&tenant, export.clone(), now);
        apply_all(&mut tenant, &commands, now, &mut seq);
        let without_bob = Export { users: vec![user(1, ADMIN, "Paris", &[])], ..Export::default() };
        assert_eq!(
            plan(&tenant, without_bob.clone(), now),
            vec![TenantCommand::Delete { upn: upn("bob@contoso.onmicrosoft.com") }]
        );
        let kept = Export { keep_missing: true, ..without_bob };
        assert!(plan(&tenant, kept.clone(), now).is_empty());
        // The admin named at `init` is never deleted by an import, even by
        // one that does not list it (the first import of a real tenant).
        let only_bob =
            Export { users: vec![user(2, "bob@contoso.onmicrosoft.com", "Oslo", &[])], ..Export::default() };
        assert!(plan(&tenant, only_bob, now).is_empty(), "bob is there already, and the admin stays");
    }

    #[test]
    fn d4_a_new_user_arrives_with_its_licenses_after_the_seat_it_takes_is_freed() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut seq = 0;
        let mut tenant = contoso(now, &mut seq);
        let one_seat = Some(vec![sales_sku(1)]);
        let alice = user(2, "alice@contoso.onmicrosoft.com", "Lyon", &["DYN365_SALES"]);
        let export = Export {
            users: vec![user(1, ADMIN, "Paris", &[]), alice.clone()],
            skus: one_seat.clone(),
            ..Export::default()
        };
        let commands = plan(&tenant, export.clone(), now);
        apply_all(&mut tenant, &commands, now, &mut seq);
        // The only seat moves from alice to a newcomer listed before her.
        let carol = user(3, "carol@contoso.onmicrosoft.com", "Oslo", &["DYN365_SALES"]);
        let alice_without = user(2, "alice@contoso.onmicrosoft.com", "Lyon", &[]);
        let export = Export {
            users: vec![user(1, ADMIN, "Paris", &[]), carol, alice_without],
            skus: one_seat,
            ..Export::default()
        };
        let commands = plan(&tenant, export.clone(), now);
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(
            matches!(&commands[0], TenantCommand::RemoveLicense { upn, .. } if upn.as_str() == "alice@contoso.onmicrosoft.com")
        );
        assert!(
            matches!(&commands[1], TenantCommand::CreateUser(new) if new.licenses == vec!["DYN365_SALES".to_owned()]),
            "{commands:?}"
        );
        apply_all(&mut tenant, &commands, now, &mut seq);
        assert!(plan(&tenant, export.clone(), now).is_empty(), "nothing left to do");
    }
}
