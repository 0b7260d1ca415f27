//! The tenant aggregate: the directory's users, SKUs, admin roles and groups.
//!
//! [`decide`] turns a [`TenantCommand`] into events or a rejection (rules
//! D1-D10); [`Tenant::apply`] folds an event into the state. Time comes in as
//! an argument: seat holds (D5) and the restore window (D7) are judged at the
//! time of the command, with no background timer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{
    AdminRole, FieldChange, Member, Profile, ProfileField, SkuKind, Stamp, TenantEvent, UserType,
};
use crate::ids::{check_domain, Upn};
use crate::parted::{Part, PartError, Parted};
use crate::rules::{invalid, refuse, Rejection, Rule};

/// The stream that holds the tenant's events.
pub const STREAM: &str = "tenant";

/// How long an invitation holds its seat (D5).
pub const INVITATION_LIFETIME: Duration = Duration::days(14);

/// How long a soft-deleted user can be restored (D7).
pub const RESTORE_WINDOW: Duration = Duration::days(30);

/// The directory as of some point in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Set by `init`.
    pub info: Option<TenantInfo>,
    /// Every user ever created, by object id (purged ones too, for history),
    /// read from a snapshot a part at a time ([`crate::parted`]).
    pub users: Users,
    /// SKUs by lower-case part number.
    pub skus: BTreeMap<String, Sku>,
    /// Security groups by object id, read a part at a time.
    pub groups: Groups,
    /// Lower-case UPN to the newest user that has it, read a part at a time.
    upns: Parted<String, Uuid, 512>,
    /// Lower-case group name to group id.
    group_names: BTreeMap<String, Uuid>,
    /// Environments by lower-case name: their ids (each has its own stream).
    environments: BTreeMap<String, (Uuid, String)>,
    /// Lower-case SKU to how many users that are not deleted hold it, so a
    /// seat check costs no scan of the directory.
    assigned: BTreeMap<String, u32>,
    /// Users with an invitation not yet accepted (their held seats count
    /// while it is pending, which depends on the time asked).
    invited: BTreeSet<Uuid>,
}

/// The tenant's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The primary domain (`contoso.onmicrosoft.com`).
    pub domain: String,
    /// The organization's display name.
    pub name: String,
    /// The first Global Administrator: the default actor.
    pub admin: Uuid,
}

/// Every user ever created, by object id: parts of some 64 users (about
/// 20 KB), so that a command reads and decodes a few of them.
pub type Users = Parted<Uuid, User, 64>;

/// Security groups by object id: a group may hold tens of thousands of
/// members, so a part holds a few groups.
pub type Groups = Parted<Uuid, Group, 4>;

/// A directory user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The immutable object id (D1).
    pub id: Uuid,
    /// The sign-in name, as typed.
    pub upn: String,
    /// Member or guest (D10).
    pub user_type: UserType,
    /// Profile fields (D3).
    pub profile: Profile,
    /// Sign-in allowed (D6).
    pub account_enabled: bool,
    /// Licenses assigned in this tenant, by SKU part number (D4).
    pub licenses: BTreeSet<String>,
    /// A guest's licenses from its home tenant; they entitle nothing here (D10).
    pub home_licenses: Vec<String>,
    /// Directory admin roles (D8).
    pub admin_roles: BTreeSet<AdminRole>,
    /// When it was soft-deleted (D7).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Since when sign-in is blocked (D6).
    pub blocked_at: Option<DateTime<Utc>>,
    /// A guest's invitation (D5).
    pub invitation: Option<Invitation>,
    /// The records that last changed each fact about the user.
    pub evidence: UserEvidence,
}

/// Log positions of the records that last changed each fact about a user:
/// the evidence behind every eligibility check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvidence {
    /// The user's creation.
    pub created: u64,
    /// The last change of whether it can sign in (create, block, unblock, delete, restore).
    pub sign_in: u64,
    /// The last change of its profile.
    pub profile: u64,
    /// The last assignment or removal of each license, by part number.
    pub licenses: BTreeMap<String, u64>,
    /// The last grant or removal of each admin role.
    pub admin_roles: BTreeMap<AdminRole, u64>,
}

/// A guest invitation and the seat it holds (D5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The license whose seat it holds.
    pub sku: Option<String>,
    /// After this, the seat is free and the invitation cannot be accepted.
    pub expires_at: DateTime<Utc>,
    /// Whether the guest accepted it.
    pub accepted: bool,
}

/// A bought license (D4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    /// The part number as first typed (`DYN365_ENTERPRISE_SALES`).
    pub part: String,
    /// What it entitles.
    pub kind: SkuKind,
    /// How many seats were bought.
    pub seats: u32,
    /// The record that bought it or last changed its seats.
    pub changed: u64,
    /// Graph's `skuId`, once an import has told it.
    pub id: Option<Uuid>,
}

/// A security group (D9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The object id.
    pub id: Uuid,
    /// The display name, unique in the tenant.
    pub name: String,
    /// Direct members: users and nested groups.
    #[serde(deserialize_with = "crate::bulk::set")]
    pub members: BTreeSet<Member>,
    /// Owners (users).
    pub owners: BTreeSet<Uuid>,
    /// The last record that added or removed each member, or made each owner.
    #[serde(deserialize_with = "crate::bulk::map")]
    pub changes: BTreeMap<Member, u64>,
}

impl Group {
    /// The groups nested in this one, directly. Groups sort after users, so
    /// this walks them only, not every member.
    pub fn nested(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.members.range(Member::Group(Uuid::nil())..).filter_map(|m| match m {
            Member::Group(id) => Some(*id),
            Member::User(_) => None,
        })
    }
}

/// A user to create: everything `user create` or `init` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The object id to give it (chosen by the caller: the domain has no randomness).
    pub id: Uuid,
    /// Its sign-in name.
    pub upn: Upn,
    /// Its profile fields.
    pub profile: Profile,
    /// Licenses to assign at once.
    pub licenses: Vec<String>,
    /// Admin roles to give at once (Global Administrators only, D8).
    pub admin_roles: Vec<AdminRole>,
    /// A guest rather than a member (D10).
    pub guest: bool,
    /// A guest's home-tenant licenses, recorded but not counted (D10).
    pub home_licenses: Vec<String>,
    /// Whether a temporary password is issued to the actor (D2); an imported
    /// user signs in with its own directory's password. The text never
    /// reaches the domain.
    pub temporary_password: bool,
}

/// A member to add to or remove from a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    /// A user by UPN.
    User(Upn),
    /// A group by name.
    Group(String),
}

/// A command on the tenant directory, as decided by [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    /// Sets up the tenant and its first Global Administrator.
    Init { domain: String, name: String, admin: NewUser },
    /// Buys a SKU.
    AddSku { sku: String, kind: SkuKind, seats: u32 },
    /// Changes a SKU's seat count.
    SetSeats { sku: String, seats: u32 },
    /// Records a SKU's Graph `skuId` (from a subscribedSkus export).
    IdentifySku { sku: String, id: Uuid },
    /// Creates a user.
    CreateUser(NewUser),
    /// Sets or clears profile fields (`None` clears).
    UpdateUser { upn: Upn, fields: Vec<(ProfileField, Option<String>)> },
    /// Assigns a license.
    AssignLicense { upn: Upn, sku: String },
    /// Removes a license.
    RemoveLicense { upn: Upn, sku: String },
    /// Gives an admin role.
    AddAdminRole { upn: Upn, role: AdminRole },
    /// Takes an admin role away.
    RemoveAdminRole { upn: Upn, role: AdminRole },
    /// Blocks sign-in.
    Block { upn: Upn },
    /// Allows sign-in again.
    Unblock { upn: Upn },
    /// Soft-deletes a user.
    Delete { upn: Upn },
    /// Restores a soft-deleted user.
    Restore { upn: Upn },
    /// Sets a new temporary password.
    ResetPassword { upn: Upn },
    /// Invites a guest, optionally holding a license seat for it.
    Invite { id: Uuid, upn: Upn, sku: Option<String> },
    /// The guest accepts its invitation (the actor is the guest).
    AcceptInvite { upn: Upn },
    /// Creates a security group.
    CreateGroup { id: Uuid, name: String, owner: Option<Upn> },
    /// Adds a user or a group to a group.
    AddMember { group: String, member: MemberRef },
    /// Removes a user or a group from a group.
    RemoveMember { group: String, member: MemberRef },
    /// Adds an owner to a group.
    AddOwner { group: String, upn: Upn },
}

impl TenantCommand {
    /// The command's name as typed on the command line, for audit records.
    pub fn name(&self) -> &'static str {
        match self {
            TenantCommand::Init { .. } => "init",
            TenantCommand::AddSku { .. } => "sku add",
            TenantCommand::SetSeats { .. } => "sku set-seats",
            TenantCommand::IdentifySku { .. } => "sku identify",
            TenantCommand::CreateUser(_) => "user create",
            TenantCommand::UpdateUser { .. } => "user update",
            TenantCommand::AssignLicense { .. } => "user license assign",
            TenantCommand::RemoveLicense { .. } => "user license remove",
            TenantCommand::AddAdminRole { .. } => "user admin-role add",
            TenantCommand::RemoveAdminRole { .. } => "user admin-role remove",
            TenantCommand::Block { .. } => "user block",
            TenantCommand::Unblock { .. } => "user unblock",
            TenantCommand::Delete { .. } => "user delete",
            TenantCommand::Restore { .. } => "user restore",
            TenantCommand::ResetPassword { .. } => "user reset-password",
            TenantCommand::Invite { .. } => "user invite",
            TenantCommand::AcceptInvite { .. } => "user accept-invite",
            TenantCommand::CreateGroup { .. } => "group create",
            TenantCommand::AddMember { .. } => "group add-member",
            TenantCommand::RemoveMember { .. } => "group remove-member",
            TenantCommand::AddOwner { .. } => "group add-owner",
        }
    }

    /// What the command is aimed at (UPNs, SKUs, groups), for audit records.
    pub fn targets(&self) -> Vec<String> {
        let member = |m: &MemberRef| match m {
            MemberRef::User(u) => u.to_string(),
            MemberRef::Group(g) => g.clone(),
        };
        match self {
            TenantCommand::Init { domain, .. } => vec![domain.clone()],
            TenantCommand::AddSku { sku, .. }
            | TenantCommand::SetSeats { sku, .. }
            | TenantCommand::IdentifySku { sku, .. } => vec![sku.clone()],
            TenantCommand::CreateUser(new) => vec![new.upn.to_string()],
            TenantCommand::AssignLicense { upn, sku } | TenantCommand::RemoveLicense { upn, sku } => {
                vec![upn.to_string(), sku.clone()]
            }
            TenantCommand::UpdateUser { upn, .. }
            | TenantCommand::AddAdminRole { upn, .. }
            | TenantCommand::RemoveAdminRole { upn, .. }
            | TenantCommand::Block { upn }
            | TenantCommand::Unblock { upn }
            | TenantCommand::Delete { upn }
            | TenantCommand::Restore { upn }
            | TenantCommand::ResetPassword { upn, .. }
            | TenantCommand::Invite { upn, .. }
            | TenantCommand::AcceptInvite { upn } => vec![upn.to_string()],
            TenantCommand::CreateGroup { name, .. } => vec![name.clone()],
            TenantCommand::AddMember { group, member: m }
            | TenantCommand::RemoveMember { group, member: m } => {
                vec![group.clone(), member(m)]
            }
            TenantCommand::AddOwner { group, upn } => vec![group.clone(), upn.to_string()],
        }
    }
}

impl User {
    /// Soft-deleted (and maybe already gone for good).
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// Gone for good: soft-deleted more than 30 days before `now` (D7).
    pub fn is_purged(&self, now: DateTime<Utc>) -> bool {
        self.deleted_at.is_some_and(|at| now >= at + RESTORE_WINDOW)
    }

    /// Can sign in: exists, not deleted, not blocked (S2.1).
    pub fn can_sign_in(&self) -> bool {
        self.deleted_at.is_none() && self.account_enabled
    }

    /// Whether what sync decides for this user can change with time alone:
    /// a deleted user is purged 30 days on (D7), and nothing else about
    /// entitlement reads the clock.
    pub fn judged_by_time(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// A guest whose invitation is still pending at `now`.
    pub fn pending_invitation(&self, now: DateTime<Utc>) -> Option<&Invitation> {
        self.invitation.as_ref().filter(|i| !i.accepted && now < i.expires_at)
    }

    /// The display name, or the UPN where none is set.
    pub fn display_name(&self) -> &str {
        self.profile.get(ProfileField::DisplayName).unwrap_or(&self.upn)
    }

    fn has_any(&self, roles: &[AdminRole]) -> bool {
        roles.iter().any(|r| self.admin_roles.contains(r))
    }

    /// Holds a role that only a Global Administrator may manage.
    fn is_privileged(&self) -> bool {
        self.has_any(&[AdminRole::Global, AdminRole::PowerPlatform, AdminRole::Dynamics365])
    }
}

impl Tenant {
    /// The newest user with this UPN, purged or not.
    pub fn user(&self, upn: &Upn) -> Option<&User> {
        self.upns.get(&upn.key()).and_then(|id| self.users.get(id))
    }

    /// The user with this UPN, unless it is gone for good at `now`.
    pub fn live_user(&self, upn: &Upn, now: DateTime<Utc>) -> Option<&User> {
        self.user(upn).filter(|u| !u.is_purged(now))
    }

    /// A SKU by part number, compared case-insensitively.
    pub fn sku(&self, part: &str) -> Option<&Sku> {
        self.skus.get(&part.trim().to_lowercase())
    }

    /// The SKUs whose Graph `skuId` is known, by it.
    pub fn sku_ids(&self) -> impl Iterator<Item = (Uuid, &Sku)> {
        self.skus.values().filter_map(|s| Some((s.id?, s)))
    }

    /// A group by name, compared case-insensitively.
    pub fn group_named(&self, name: &str) -> Option<&Group> {
        self.group_names.get(&name.to_lowercase()).and_then(|id| self.groups.get(id))
    }

    /// Seats of a SKU taken at `now`: assignments of users not deleted, and
    /// invitations still pending (D4, D5, D7).
    pub fn seats_used(&self, part: &str, now: DateTime<Utc>) -> u32 {
        let part = part.trim().to_lowercase();
        let assigned = self.assigned.get(&part).copied().unwrap_or(0);
        let held_by_invitation = self
            .invited
            .iter()
            .filter_map(|id| self.users.get(id))
            .filter(|u| !u.is_deleted() && !u.licenses.iter().any(|l| l.to_lowercase() == part))
            .filter(|u| {
                u.pending_invitation(now)
                    .and_then(|i| i.sku.as_ref())
                    .is_some_and(|s| s.to_lowercase() == part)
            })
            .count() as u32;
        assigned + held_by_invitation
    }

    /// Seats of a SKU still free at `now`.
    pub fn free_seats(&self, part: &str, now: DateTime<Utc>) -> u32 {
        self.sku(part).map_or(0, |s| s.seats.saturating_sub(self.seats_used(part, now)))
    }

    /// Whether `inner` is `outer` or is reachable through its nested groups.
    fn contains_group(&self, outer: Uuid, inner: Uuid) -> bool {
        let mut stack = vec![outer];
        let mut seen = BTreeSet::new();
        while let Some(g) = stack.pop() {
            if g == inner {
                return true;
            }
            if seen.insert(g) {
                if let Some(group) = self.groups.get(&g) {
                    stack.extend(group.nested());
                }
            }
        }
        false
    }

    /// Active Global Administrators other than `except`.
    fn other_global_admins(&self, except: Uuid) -> usize {
        self.users
            .values()
            .filter(|u| u.id != except && u.can_sign_in() && u.admin_roles.contains(&AdminRole::Global))
            .count()
    }

    /// The UPN of the Global Administrator named at `init`.
    pub fn default_actor(&self) -> Option<Upn> {
        let info = self.info.as_ref()?;
        Upn::parse(&self.users.get(&info.admin)?.upn).ok()
    }

    /// An environment's id and name, by name compared case-insensitively, or
    /// by the admin API's id of an imported one (two may share a display name).
    pub fn environment(&self, name: &str) -> Option<(Uuid, &str)> {
        let by_name = self.environments.get(&name.to_lowercase());
        let by_id = || {
            let id = crate::reality::environment_id(name);
            self.environments.values().find(|(env, _)| *env == id)
        };
        by_name.or_else(by_id).map(|(id, name)| (*id, name.as_str()))
    }

    /// Every environment's id and name, in name order.
    pub fn environments(&self) -> impl Iterator<Item = (Uuid, &str)> {
        self.environments.values().map(|(id, name)| (*id, name.as_str()))
    }

    /// A user by object id, unless gone for good at `now`.
    pub fn user_by_id(&self, id: Uuid, now: DateTime<Utc>) -> Option<&User> {
        self.users.get(&id).filter(|u| !u.is_purged(now))
    }

    /// Whether the user holds one of the admin roles that govern environments
    /// (Global, Power Platform, Dynamics 365: S2.4, S3, S7, A2).
    pub fn is_environment_admin(user: &User) -> bool {
        user.is_privileged()
    }

    /// Why `user` may change `group`'s members (D8, D9), or `None`.
    pub fn may_change_members(user: &User, group: &Group) -> Option<GroupRight> {
        if group.owners.contains(&user.id) {
            return Some(GroupRight::Owner);
        }
        GROUP_MANAGER_ROLES.iter().copied().find(|r| user.admin_roles.contains(r)).map(GroupRight::Role)
    }

    /// Everyone who may change `group`'s members, and why: its owners and
    /// the holders of [`GROUP_MANAGER_ROLES`], deleted users left out.
    pub fn group_managers(&self, group: &Group) -> Vec<(&User, GroupRight)> {
        let mut managers: Vec<(&User, GroupRight)> = self
            .upns
            .values()
            .filter_map(|id| self.users.get(id))
            .filter(|u| !u.is_deleted())
            .filter_map(|u| Tenant::may_change_members(u, group).map(|right| (u, right)))
            .collect();
        managers.sort_by(|a, b| (a.1, &a.0.upn).cmp(&(b.1, &b.0.upn)));
        managers
    }

    /// Users that are not gone for good at `now`, in UPN order.
    pub fn live_users(&self, now: DateTime<Utc>) -> impl Iterator<Item = &User> {
        self.upns.values().filter_map(|id| self.users.get(id)).filter(move |u| !u.is_purged(now))
    }

    /// Folds one event into the state; `stamp` is where and when it landed.
    pub fn apply(&mut self, event: &TenantEvent, stamp: Stamp) {
        let (seq, at) = (stamp.seq, stamp.at);
        let Some(id) = changed_user(event) else { return self.fold(event, stamp) };
        // One lookup serves the fold and the seat counters: the user is
        // reached through a map of every user, and an import folds 200k events.
        let Some(user) = self.users.get_mut(&id) else { return };
        match event {
            // The hot events of an import move one seat at most: counted in
            // place, without the two sets of lower-cased names built below.
            TenantEvent::LicenseAssigned { sku, .. } | TenantEvent::LicenseRemoved { sku, .. } => {
                let before = holds_seat(user, sku);
                fold_user(user, event, seq, at);
                match (before, holds_seat(user, sku)) {
                    (false, true) => *self.assigned.entry(sku.to_lowercase()).or_default() += 1,
                    (true, false) => {
                        if let Some(n) = self.assigned.get_mut(&sku.to_lowercase()) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    _ => {}
                }
            }
            _ => {
                let before = seat_holdings(user);
                fold_user(user, event, seq, at);
                let after = seat_holdings(user);
                let invitation_pending = user.invitation.as_ref().is_some_and(|i| !i.accepted);
                for sku in before.difference(&after) {
                    if let Some(n) = self.assigned.get_mut(sku) {
                        *n = n.saturating_sub(1);
                    }
                }
                for sku in after.difference(&before) {
                    *self.assigned.entry(sku.clone()).or_default() += 1;
                }
                if invitation_pending {
                    self.invited.insert(id);
                } else {
                    self.invited.remove(&id);
                }
            }
        }
    }

    /// Folds an event that changes no existing user (a new user replaces
    /// any under its id).
    fn fold(&mut self, event: &TenantEvent, stamp: Stamp) {
        let seq = stamp.seq;
        match event {
            TenantEvent::TenantInitialized { domain, name, admin } => {
                self.info = Some(TenantInfo { domain: domain.clone(), name: name.clone(), admin: *admin });
            }
            TenantEvent::SkuAdded { sku, kind, seats } => {
                let sku_entry = Sku { part: sku.clone(), kind: *kind, seats: *seats, changed: seq, id: None };
                self.skus.insert(sku.to_lowercase(), sku_entry);
            }
            TenantEvent::SkuSeatsChanged { sku, new, .. } => {
                if let Some(s) = self.skus.get_mut(&sku.to_lowercase()) {
                    s.seats = *new;
                    s.changed = seq;
                }
            }
            TenantEvent::SkuIdentified { sku, id } => {
                if let Some(s) = self.skus.get_mut(&sku.to_lowercase()) {
                    s.id = Some(*id);
                }
            }
            // A landed `UserCreated`'s password hash is dropped: nothing reads it.
            TenantEvent::UserCreated { id, upn, user_type, profile, home_licenses, .. }
            | TenantEvent::UserCreatedV2 { id, upn, user_type, profile, home_licenses, .. } => {
                self.upns.insert(upn.to_lowercase(), *id);
                let user = User {
                    id: *id,
                    upn: upn.clone(),
                    user_type: *user_type,
                    profile: profile.clone(),
                    account_enabled: true,
                    licenses: BTreeSet::new(),
                    home_licenses: home_licenses.clone(),
                    admin_roles: BTreeSet::new(),
                    deleted_at: None,
                    blocked_at: None,
                    invitation: None,
                    evidence: UserEvidence {
                        created: seq,
                        sign_in: seq,
                        profile: seq,
                        ..UserEvidence::default()
                    },
                };
                // A new user holds no seat and no invitation; one it replaces gives up its own.
                if let Some(replaced) = self.users.insert(*id, user) {
                    for sku in seat_holdings(&replaced) {
                        if let Some(n) = self.assigned.get_mut(&sku) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    self.invited.remove(id);
                }
            }
            TenantEvent::GroupCreated { id, name } => {
                self.group_names.insert(name.to_lowercase(), *id);
                self.groups.insert(
                    *id,
                    Group {
                        id: *id,
                        name: name.clone(),
                        members: BTreeSet::new(),
                        owners: BTreeSet::new(),
                        changes: BTreeMap::new(),
                    },
                );
            }
            TenantEvent::GroupMemberAdded { group, member } => self.with_group(group, |g| {
                g.members.insert(*member);
                g.changes.insert(*member, seq);
            }),
            TenantEvent::GroupMemberRemoved { group, member } => self.with_group(group, |g| {
                g.members.remove(member);
                g.changes.insert(*member, seq);
            }),
            TenantEvent::GroupOwnerAdded { group, user } => self.with_group(group, |g| {
                g.owners.insert(*user);
                g.changes.entry(Member::User(*user)).or_insert(seq);
            }),
            TenantEvent::EnvironmentRegistered { id, name } => {
                self.environments.insert(name.to_lowercase(), (*id, name.clone()));
            }
            // Events on an existing user, as `changed_user` names them, go through `fold_user`.
            _ => {}
        }
    }

    fn with_group(&mut self, id: &Uuid, f: impl FnOnce(&mut Group)) {
        if let Some(g) = self.groups.get_mut(id) {
            f(g);
        }
    }
}

/// The directory's parts ([`crate::parted`]) as one list, in the order a
/// snapshot stores them: the users', the UPN index's, then the groups'.
impl Tenant {
    /// Where each map's parts start in the list of the snapshot this was
    /// loaded from, and where they end.
    fn offsets(&self) -> [u32; 4] {
        let users = self.users.source_parts();
        let upns = users + self.upns.source_parts();
        [0, users, upns, upns + self.groups.source_parts()]
    }

    /// Every part a snapshot of the directory stores, in order.
    pub fn parts(&self) -> Result<Vec<Part>, String> {
        let [_, users, upns, _] = self.offsets();
        let shift = |parts: Vec<Part>, by: u32| {
            parts.into_iter().map(move |p| match p {
                Part::Kept(i) => Part::Kept(i + by),
                encoded => encoded,
            })
        };
        let mut all: Vec<Part> = shift(self.users.parts()?, 0).collect();
        all.extend(shift(self.upns.parts()?, users));
        all.extend(shift(self.groups.parts()?, upns));
        Ok(all)
    }

    /// Makes the snapshot just saved of it the source its absent parts are
    /// read from: a map read whole may have been laid out anew.
    pub fn saved(&mut self) {
        self.users.saved();
        self.upns.saved();
        self.groups.saved();
    }

    /// The parts not read yet, as indexes of the source snapshot's list.
    pub fn absent_parts(&self) -> Vec<u32> {
        let [_, users, upns, _] = self.offsets();
        let users_absent = self.users.absent();
        let upns_absent = self.upns.absent().map(|p| p + users);
        users_absent.chain(upns_absent).chain(self.groups.absent().map(|p| p + upns)).collect()
    }

    /// The absent parts reached since the last call: whatever was decided or
    /// folded meanwhile is void until they are filled.
    pub fn take_misses(&self) -> BTreeSet<u32> {
        let [_, users, upns, _] = self.offsets();
        let mut missed = self.users.take_misses();
        missed.extend(self.upns.take_misses().into_iter().map(|p| p + users));
        missed.extend(self.groups.take_misses().into_iter().map(|p| p + upns));
        missed
    }

    /// Reads part `index` of the source snapshot's list from its bytes.
    pub fn fill(&mut self, index: u32, bytes: &[u8]) -> Result<(), PartError> {
        let [_, users, upns, end] = self.offsets();
        match index {
            i if i < users => self.users.fill("users", i, bytes),
            i if i < upns => self.upns.fill("UPN index", i - users, bytes),
            i if i < end => self.groups.fill("groups", i - upns, bytes),
            _ => Err(PartError { what: "directory", part: index, why: format!("is past its {end} parts") }),
        }
    }
}

/// The licenses whose seats a user holds: all of them, unless it is deleted.
fn seat_holdings(user: &User) -> BTreeSet<String> {
    if user.is_deleted() {
        return BTreeSet::new();
    }
    user.licenses.iter().map(|l| l.to_lowercase()).collect()
}

/// Whether `user` holds a seat of `sku`: it is not deleted and has it,
/// compared as [`seat_holdings`] compares (lower-cased).
fn holds_seat(user: &User, sku: &str) -> bool {
    let same = |held: &String| match held.is_ascii() && sku.is_ascii() {
        true => held.eq_ignore_ascii_case(sku),
        false => held.to_lowercase() == sku.to_lowercase(),
    };
    !user.is_deleted() && user.licenses.iter().any(same)
}

/// The existing user an event changes, if any: those [`fold_user`] folds.
/// Exhaustive, so that a new event must say which fold it goes through.
fn changed_user(event: &TenantEvent) -> Option<Uuid> {
    match event {
        TenantEvent::UserUpdated { id, .. }
        | TenantEvent::LicenseAssigned { id, .. }
        | TenantEvent::LicenseRemoved { id, .. }
        | TenantEvent::AdminRoleAdded { id, .. }
        | TenantEvent::AdminRoleRemoved { id, .. }
        | TenantEvent::UserBlocked { id }
        | TenantEvent::UserUnblocked { id }
        | TenantEvent::UserDeleted { id }
        | TenantEvent::UserRestored { id, .. }
        | TenantEvent::PasswordReset { id, .. }
        | TenantEvent::PasswordResetV2 { id }
        | TenantEvent::InvitationIssued { id, .. }
        | TenantEvent::InvitationAccepted { id, .. } => Some(*id),
        TenantEvent::TenantInitialized { .. }
        | TenantEvent::SkuAdded { .. }
        | TenantEvent::SkuSeatsChanged { .. }
        | TenantEvent::SkuIdentified { .. }
        | TenantEvent::UserCreated { .. }
        | TenantEvent::UserCreatedV2 { .. }
        | TenantEvent::GroupCreated { .. }
        | TenantEvent::GroupMemberAdded { .. }
        | TenantEvent::GroupMemberRemoved { .. }
        | TenantEvent::GroupOwnerAdded { .. }
        | TenantEvent::EnvironmentRegistered { .. } => None,
    }
}

/// Folds an event that [`changed_user`] names into that user.
fn fold_user(u: &mut User, event: &TenantEvent, seq: u64, at: DateTime<Utc>) {
    match event {
        TenantEvent::UserUpdated { changes, .. } => {
            u.evidence.profile = seq;
            for change in changes {
                u.profile.set(change.field, change.new.clone());
            }
        }
        TenantEvent::LicenseAssigned { sku, .. } => {
            u.licenses.insert(sku.clone());
            u.evidence.licenses.insert(sku.clone(), seq);
        }
        TenantEvent::LicenseRemoved { sku, .. } => {
            u.licenses.remove(sku);
            u.evidence.licenses.insert(sku.clone(), seq);
        }
        TenantEvent::AdminRoleAdded { role, .. } => {
            u.admin_roles.insert(*role);
            u.evidence.admin_roles.insert(*role, seq);
        }
        TenantEvent::AdminRoleRemoved { role, .. } => {
            u.admin_roles.remove(role);
            u.evidence.admin_roles.insert(*role, seq);
        }
        TenantEvent::UserBlocked { .. } => {
            u.account_enabled = false;
            u.blocked_at = Some(at);
            u.evidence.sign_in = seq;
        }
        TenantEvent::UserUnblocked { .. } => {
            u.account_enabled = true;
            u.blocked_at = None;
            u.evidence.sign_in = seq;
        }
        TenantEvent::UserDeleted { .. } => {
            u.deleted_at = Some(at);
            u.evidence.sign_in = seq;
        }
        TenantEvent::UserRestored { licenses_not_restored, .. } => {
            u.deleted_at = None;
            u.evidence.sign_in = seq;
            for sku in licenses_not_restored {
                u.licenses.remove(sku);
                u.evidence.licenses.insert(sku.clone(), seq);
                // A pending invitation loses the hold on a seat that was taken meanwhile.
                if let Some(i) = u.invitation.as_mut().filter(|i| i.sku.as_ref() == Some(sku)) {
                    i.sku = None;
                }
            }
        }
        // Kept nowhere (D2): the record itself is the evidence that one was issued.
        TenantEvent::PasswordReset { .. } | TenantEvent::PasswordResetV2 { .. } => {}
        TenantEvent::InvitationIssued { sku, expires_at, .. } => {
            u.invitation = Some(Invitation { sku: sku.clone(), expires_at: *expires_at, accepted: false });
        }
        TenantEvent::InvitationAccepted { sku, .. } => {
            if let Some(i) = u.invitation.as_mut() {
                i.accepted = true;
            }
            if let Some(sku) = sku {
                u.licenses.insert(sku.clone());
                u.evidence.licenses.insert(sku.clone(), seq);
            }
        }
        // Not about an existing user (`changed_user` tells): folded by `Tenant::fold`.
        _ => {}
    }
}

/// Folds an event into a state: `evolve(state, event) -> state`.
pub fn evolve(mut tenant: Tenant, event: &TenantEvent, stamp: Stamp) -> Tenant {
    tenant.apply(event, stamp);
    tenant
}

const USER_MANAGERS: &[AdminRole] = &[AdminRole::Global, AdminRole::UserAdmin];
/// The directory roles that may change any group's members and owners (D8,
/// D9); a group's owners may change their own group.
pub const GROUP_MANAGER_ROLES: &[AdminRole] = USER_MANAGERS;

/// Why a user may change a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupRight {
    /// It owns the group.
    Owner,
    /// It holds a directory role that manages every group.
    Role(AdminRole),
}
const GLOBAL_ONLY: &[AdminRole] = &[AdminRole::Global];
const PASSWORD_RESETTERS: &[AdminRole] = &[AdminRole::Global, AdminRole::UserAdmin, AdminRole::PasswordAdmin];

/// Decides a command against the directory as it stands at `now`.
pub fn decide(
    tenant: &Tenant,
    actor: &Upn,
    command: &TenantCommand,
    now: DateTime<Utc>,
) -> Result<Vec<TenantEvent>, Rejection> {
    if let TenantCommand::Init { domain, name, admin } = command {
        return decide_init(tenant, domain, name, admin);
    }
    let Some(info) = &tenant.info else {
        return invalid("no tenant in this database yet: run `usertrail init` first");
    };
    // The invited guest accepts its invitation itself, and cannot sign in before.
    let actor = match command {
        TenantCommand::AcceptInvite { .. } => known(tenant, actor, now)?,
        _ => authenticate(tenant, actor, now)?,
    };
    let d = Decision { tenant, info, now, actor };
    match command {
        TenantCommand::Init { domain, name, admin } => decide_init(tenant, domain, name, admin),
        TenantCommand::AddSku { sku, kind, seats } => d.add_sku(sku, *kind, *seats),
        TenantCommand::SetSeats { sku, seats } => d.set_seats(sku, *seats),
        TenantCommand::IdentifySku { sku, id } => d.identify_sku(sku, *id),
        TenantCommand::CreateUser(new) => d.create_user(new),
        TenantCommand::UpdateUser { upn, fields } => d.update_user(upn, fields),
        TenantCommand::AssignLicense { upn, sku } => d.assign_license(upn, sku),
        TenantCommand::RemoveLicense { upn, sku } => d.remove_license(upn, sku),
        TenantCommand::AddAdminRole { upn, role } => d.add_admin_role(upn, *role),
        TenantCommand::RemoveAdminRole { upn, role } => d.remove_admin_role(upn, *role),
        TenantCommand::Block { upn } => d.block(upn),
        TenantCommand::Unblock { upn } => d.unblock(upn),
        TenantCommand::Delete { upn } => d.delete(upn),
        TenantCommand::Restore { upn } => d.restore(upn),
        TenantCommand::ResetPassword { upn } => d.reset_password(upn),
        TenantCommand::Invite { id, upn, sku } => d.invite(*id, upn, sku.as_deref()),
        TenantCommand::AcceptInvite { upn } => d.accept_invite(upn),
        TenantCommand::CreateGroup { id, name, owner } => d.create_group(*id, name, owner.as_ref()),
        TenantCommand::AddMember { group, member } => d.add_member(group, member),
        TenantCommand::RemoveMember { group, member } => d.remove_member(group, member),
        TenantCommand::AddOwner { group, upn } => d.add_owner(group, upn),
    }
}

fn decide_init(
    tenant: &Tenant,
    domain: &str,
    name: &str,
    admin: &NewUser,
) -> Result<Vec<TenantEvent>, Rejection> {
    if let Some(info) = &tenant.info {
        return invalid(format!("this database already holds tenant {}", info.domain));
    }
    if let Err(why) = check_domain(domain) {
        return invalid(format!("malformed tenant domain: {why}"));
    }
    if admin.upn.domain() != domain.to_lowercase() {
        return refuse(
            Rule::D1,
            format!("the admin's UPN {} is not in the tenant's domain {domain}", admin.upn),
        );
    }
    let name = if name.trim().is_empty() { domain.split('.').next().unwrap_or(domain) } else { name.trim() };
    Ok(vec![
        TenantEvent::TenantInitialized {
            domain: domain.to_lowercase(),
            name: name.to_owned(),
            admin: admin.id,
        },
        created(admin, UserType::Member),
        TenantEvent::AdminRoleAdded { id: admin.id, role: AdminRole::Global },
    ])
}

/// The `UserCreated` event of a new user, with a display name when none was given.
fn created(new: &NewUser, user_type: UserType) -> TenantEvent {
    let mut profile = new.profile.clone();
    if profile.get(ProfileField::DisplayName).is_none() {
        let given = [ProfileField::GivenName, ProfileField::Surname].map(|f| profile.get(f).unwrap_or(""));
        let display = given.join(" ").trim().to_owned();
        profile.set(
            ProfileField::DisplayName,
            Some(if display.is_empty() { new.upn.to_string() } else { display }),
        );
    }
    TenantEvent::UserCreatedV2 {
        id: new.id,
        upn: new.upn.to_string(),
        user_type,
        profile,
        home_licenses: new.home_licenses.clone(),
        temporary_password: new.temporary_password,
    }
}

/// The actor as a user of this tenant, not gone for good.
fn known<'a>(tenant: &'a Tenant, actor: &Upn, now: DateTime<Utc>) -> Result<&'a User, Rejection> {
    match tenant.live_user(actor, now) {
        Some(user) => Ok(user),
        None => invalid(format!("unknown actor {actor}: no such user in this tenant")),
    }
}

/// The actor of a command: a user of this tenant who can sign in (D8).
pub fn authenticate<'a>(tenant: &'a Tenant, actor: &Upn, now: DateTime<Utc>) -> Result<&'a User, Rejection> {
    let user = known(tenant, actor, now)?;
    if !user.can_sign_in() {
        let why = if user.is_deleted() { "is deleted" } else { "is blocked from signing in" };
        return refuse(Rule::D8, format!("actor {actor} {why} and cannot act"));
    }
    Ok(user)
}

/// One decision's context: the state, the time and the authenticated actor.
struct Decision<'a> {
    tenant: &'a Tenant,
    info: &'a TenantInfo,
    now: DateTime<Utc>,
    actor: &'a User,
}

type Decided = Result<Vec<TenantEvent>, Rejection>;

impl<'a> Decision<'a> {
    /// The actor must hold one of `roles` to `what` (D8).
    fn require(&self, roles: &[AdminRole], what: &str) -> Result<(), Rejection> {
        if self.actor.has_any(roles) {
            return Ok(());
        }
        let needed: Vec<&str> = roles.iter().map(|r| r.display_name()).collect();
        let held = if self.actor.admin_roles.is_empty() {
            "no admin role".to_owned()
        } else {
            self.actor.admin_roles.iter().map(|r| r.display_name()).collect::<Vec<_>>().join(", ")
        };
        refuse(
            Rule::D8,
            format!("{} ({held}) may not {what}: it takes {}", self.actor.upn, needed.join(" or ")),
        )
    }

    /// Only a Global Administrator may change a user who holds a privileged
    /// admin role (D8).
    fn may_change(&self, target: &User, what: &str) -> Result<(), Rejection> {
        if target.is_privileged() && !self.actor.admin_roles.contains(&AdminRole::Global) {
            return refuse(
                Rule::D8,
                format!("only a Global Administrator may {what} {}, who holds an admin role", target.upn),
            );
        }
        Ok(())
    }

    /// The user with this UPN, or bad input naming it.
    fn user(&self, upn: &Upn) -> Result<&'a User, Rejection> {
        match self.tenant.live_user(upn, self.now) {
            Some(u) => Ok(u),
            None => invalid(format!("unknown user {upn}")),
        }
    }

    /// A user that is not soft-deleted (D7).
    fn active_user(&self, upn: &Upn) -> Result<&'a User, Rejection> {
        let user = self.user(upn)?;
        if user.is_deleted() {
            return refuse(Rule::D7, format!("{upn} is deleted; restore it first"));
        }
        Ok(user)
    }

    fn sku(&self, part: &str) -> Result<&'a Sku, Rejection> {
        match self.tenant.sku(part) {
            Some(s) => Ok(s),
            None => invalid(format!("unknown SKU {part}")),
        }
    }

    fn group(&self, name: &str) -> Result<&'a Group, Rejection> {
        match self.tenant.group_named(name) {
            Some(g) => Ok(g),
            None => invalid(format!("unknown group {name}")),
        }
    }

    /// A SKU that can be assigned to a user and has a free seat (D4).
    fn assignable(&self, part: &str) -> Result<&'a Sku, Rejection> {
        let sku = self.sku(part)?;
        if sku.kind == SkuKind::MarketingTenant {
            return refuse(
                Rule::D4,
                format!(
                    "{} is a tenant-level license: it is held by the tenant, not assigned to users",
                    sku.part
                ),
            );
        }
        let used = self.tenant.seats_used(part, self.now);
        if used >= sku.seats {
            return refuse(
                Rule::D4,
                format!("no licenses available: all {} seats of {} are in use", sku.seats, sku.part),
            );
        }
        Ok(sku)
    }

    /// The UPN must be free: no user that is not gone for good holds it (D1).
    fn upn_free(&self, upn: &Upn) -> Result<(), Rejection> {
        if let Some(holder) = self.tenant.live_user(upn, self.now) {
            let state = if holder.is_deleted() { " (soft-deleted, restorable)" } else { "" };
            return refuse(Rule::D1, format!("UPN {upn} is already taken by {}{state}", holder.upn));
        }
        Ok(())
    }

    fn add_sku(&self, part: &str, kind: SkuKind, seats: u32) -> Decided {
        self.require(GLOBAL_ONLY, "buy licenses")?;
        let part = part.trim();
        if part.is_empty() || part.contains(char::is_whitespace) {
            return invalid(format!(
                "'{part}' is not a SKU part number: one word, like DYN365_ENTERPRISE_SALES"
            ));
        }
        if let Some(existing) = self.tenant.sku(part) {
            return invalid(format!(
                "SKU {} exists already; change its seats with `sku set-seats`",
                existing.part
            ));
        }
        Ok(vec![TenantEvent::SkuAdded { sku: part.to_owned(), kind, seats }])
    }

    fn identify_sku(&self, part: &str, id: Uuid) -> Decided {
        self.require(GLOBAL_ONLY, "buy licenses")?;
        let sku = self.sku(part)?;
        if let Some((_, other)) = self.tenant.sku_ids().find(|(known, s)| *known == id && s.part != sku.part)
        {
            return invalid(format!("skuId {id} is {} already, not {}", other.part, sku.part));
        }
        if sku.id == Some(id) {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::SkuIdentified { sku: sku.part.clone(), id }])
    }

    fn set_seats(&self, part: &str, seats: u32) -> Decided {
        self.require(GLOBAL_ONLY, "change license seats")?;
        let sku = self.sku(part)?;
        let used = self.tenant.seats_used(part, self.now);
        if seats < used {
            return refuse(
                Rule::D4,
                format!("cannot lower {} to {seats} seats: {used} are in use", sku.part),
            );
        }
        if seats == sku.seats {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::SkuSeatsChanged { sku: sku.part.clone(), old: sku.seats, new: seats }])
    }

    fn create_user(&self, new: &NewUser) -> Decided {
        self.require(USER_MANAGERS, "create users")?;
        if !new.admin_roles.is_empty() {
            self.require(GLOBAL_ONLY, "assign admin roles")?;
        }
        self.upn_free(&new.upn)?;
        let in_domain = new.upn.domain() == self.info.domain;
        if new.guest && in_domain {
            return invalid(format!("a guest's UPN is its own address, not one in {}", self.info.domain));
        }
        if !new.guest && !in_domain {
            return refuse(
                Rule::D1,
                format!(
                    "{} is not in the tenant's domain {}; create a guest for outside users",
                    new.upn, self.info.domain
                ),
            );
        }
        let user_type = if new.guest { UserType::Guest } else { UserType::Member };
        let mut events = vec![created(new, user_type)];
        let mut assigned: Vec<&str> = Vec::new();
        for part in &new.licenses {
            let sku = self.sku(part)?;
            if assigned.iter().any(|p| p.eq_ignore_ascii_case(&sku.part)) {
                continue;
            }
            self.assignable(part)?;
            assigned.push(&sku.part);
            events.push(TenantEvent::LicenseAssigned { id: new.id, sku: sku.part.clone() });
        }
        let roles: BTreeSet<AdminRole> = new.admin_roles.iter().copied().collect();
        events.extend(roles.into_iter().map(|role| TenantEvent::AdminRoleAdded { id: new.id, role }));
        Ok(events)
    }

    fn update_user(&self, upn: &Upn, fields: &[(ProfileField, Option<String>)]) -> Decided {
        self.require(USER_MANAGERS, "update users")?;
        let user = self.active_user(upn)?;
        self.may_change(user, "update")?;
        let mut changes: Vec<FieldChange> = Vec::new();
        for (field, value) in fields {
            let new = value.as_ref().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            let old = user.profile.get(*field).map(str::to_owned);
            changes.retain(|c| c.field != *field);
            if old != new {
                changes.push(FieldChange { field: *field, old, new });
            }
        }
        if changes.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::UserUpdated { id: user.id, changes }])
    }

    fn assign_license(&self, upn: &Upn, part: &str) -> Decided {
        self.require(USER_MANAGERS, "assign licenses")?;
        let user = self.active_user(upn)?;
        let sku = self.sku(part)?;
        if user.licenses.contains(&sku.part) {
            return Ok(vec![]);
        }
        self.assignable(part)?;
        Ok(vec![TenantEvent::LicenseAssigned { id: user.id, sku: sku.part.clone() }])
    }

    fn remove_license(&self, upn: &Upn, part: &str) -> Decided {
        self.require(USER_MANAGERS, "remove licenses")?;
        let user = self.active_user(upn)?;
        let sku = self.sku(part)?;
        if !user.licenses.contains(&sku.part) {
            return invalid(format!("{upn} does not hold {}", sku.part));
        }
        Ok(vec![TenantEvent::LicenseRemoved { id: user.id, sku: sku.part.clone() }])
    }

    fn add_admin_role(&self, upn: &Upn, role: AdminRole) -> Decided {
        self.require(GLOBAL_ONLY, "assign admin roles")?;
        let user = self.active_user(upn)?;
        if user.admin_roles.contains(&role) {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::AdminRoleAdded { id: user.id, role }])
    }

    fn remove_admin_role(&self, upn: &Upn, role: AdminRole) -> Decided {
        self.require(GLOBAL_ONLY, "remove admin roles")?;
        let user = self.active_user(upn)?;
        if !user.admin_roles.contains(&role) {
            return invalid(format!("{upn} is not a {}", role.display_name()));
        }
        self.keeps_a_global_admin(user, role == AdminRole::Global, "lose the Global Administrator role")?;
        Ok(vec![TenantEvent::AdminRoleRemoved { id: user.id, role }])
    }

    /// The tenant must keep a Global Administrator who can sign in (D8).
    fn keeps_a_global_admin(&self, user: &User, loses_it: bool, what: &str) -> Result<(), Rejection> {
        let is_last = user.can_sign_in()
            && user.admin_roles.contains(&AdminRole::Global)
            && self.tenant.other_global_admins(user.id) == 0;
        if loses_it && is_last {
            return refuse(
                Rule::D8,
                format!("{} is the last Global Administrator and cannot {what}", user.upn),
            );
        }
        Ok(())
    }

    fn block(&self, upn: &Upn) -> Decided {
        self.require(USER_MANAGERS, "block users")?;
        let user = self.active_user(upn)?;
        self.may_change(user, "block")?;
        if !user.account_enabled {
            return Ok(vec![]);
        }
        self.keeps_a_global_admin(user, true, "be blocked")?;
        Ok(vec![TenantEvent::UserBlocked { id: user.id }])
    }

    fn unblock(&self, upn: &Upn) -> Decided {
        self.require(USER_MANAGERS, "unblock users")?;
        let user = self.active_user(upn)?;
        self.may_change(user, "unblock")?;
        if user.account_enabled {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::UserUnblocked { id: user.id }])
    }

    fn delete(&self, upn: &Upn) -> Decided {
        self.require(USER_MANAGERS, "delete users")?;
        let user = self.user(upn)?;
        if user.is_deleted() {
            return refuse(Rule::D7, format!("{upn} is already deleted"));
        }
        self.may_change(user, "delete")?;
        self.keeps_a_global_admin(user, true, "be deleted")?;
        Ok(vec![TenantEvent::UserDeleted { id: user.id }])
    }

    fn restore(&self, upn: &Upn) -> Decided {
        self.require(USER_MANAGERS, "restore users")?;
        let Some(user) = self.tenant.user(upn) else {
            return invalid(format!("unknown user {upn}"));
        };
        let Some(deleted_at) = user.deleted_at else {
            return invalid(format!("{upn} is not deleted"));
        };
        if user.is_purged(self.now) {
            return refuse(
                Rule::D7,
                format!(
                    "{upn} was deleted on {} and is gone for good after 30 days",
                    deleted_at.format("%Y-%m-%d")
                ),
            );
        }
        self.may_change(user, "restore")?;
        // A license, or the seat a pending invitation held, comes back only
        // if its SKU has a free seat now (D7, D5). The user, deleted, holds
        // none of them while this is judged.
        let held = user.pending_invitation(self.now).and_then(|i| i.sku.as_ref());
        let free = |part: &String| {
            self.tenant.sku(part).is_some_and(|s| self.tenant.seats_used(part, self.now) < s.seats)
        };
        let not_restored: Vec<String> =
            user.licenses.iter().chain(held).filter(|p| !free(p)).cloned().collect();
        Ok(vec![TenantEvent::UserRestored { id: user.id, licenses_not_restored: not_restored }])
    }

    fn reset_password(&self, upn: &Upn) -> Decided {
        self.require(PASSWORD_RESETTERS, "reset passwords")?;
        let user = self.active_user(upn)?;
        let only_password_admin = !self.actor.has_any(USER_MANAGERS);
        if only_password_admin && !user.admin_roles.is_empty() {
            return refuse(
                Rule::D8,
                format!("a Password Administrator may reset only non-admins' passwords; {upn} holds an admin role"),
            );
        }
        self.may_change(user, "reset the password of")?;
        Ok(vec![TenantEvent::PasswordResetV2 { id: user.id }])
    }

    fn invite(&self, id: Uuid, upn: &Upn, sku: Option<&str>) -> Decided {
        self.require(USER_MANAGERS, "invite guests")?;
        if let Some(guest) = self.tenant.live_user(upn, self.now) {
            return self.reinvite(guest, sku);
        }
        if upn.domain() == self.info.domain {
            return invalid(format!("{upn} is in this tenant's domain: create a member, invite outsiders"));
        }
        let sku = sku.map(|part| self.assignable(part)).transpose()?;
        let new = NewUser {
            id,
            upn: upn.clone(),
            profile: Profile::default(),
            licenses: vec![],
            admin_roles: vec![],
            guest: true,
            home_licenses: vec![],
            temporary_password: true,
        };
        Ok(vec![
            created(&new, UserType::Guest),
            TenantEvent::InvitationIssued {
                id,
                sku: sku.map(|s| s.part.clone()),
                expires_at: self.now + INVITATION_LIFETIME,
            },
        ])
    }

    /// A guest whose invitation expired unaccepted can be invited again (D5).
    fn reinvite(&self, guest: &User, sku: Option<&str>) -> Decided {
        let expired = guest.invitation.as_ref().is_some_and(|i| !i.accepted && self.now >= i.expires_at);
        if !expired || guest.is_deleted() {
            let state = if guest.is_deleted() { " (soft-deleted, restorable)" } else { "" };
            return refuse(Rule::D1, format!("UPN {} is already taken by {}{state}", guest.upn, guest.upn));
        }
        let sku = sku.map(|part| self.assignable(part)).transpose()?;
        Ok(vec![
            TenantEvent::PasswordResetV2 { id: guest.id },
            TenantEvent::InvitationIssued {
                id: guest.id,
                sku: sku.map(|s| s.part.clone()),
                expires_at: self.now + INVITATION_LIFETIME,
            },
        ])
    }

    fn accept_invite(&self, upn: &Upn) -> Decided {
        let user = self.active_user(upn)?;
        let Some(invitation) = user.invitation.as_ref().filter(|i| !i.accepted) else {
            return invalid(format!("{upn} has no pending invitation"));
        };
        if self.now >= invitation.expires_at {
            return refuse(
                Rule::D5,
                format!(
                    "the invitation of {upn} expired on {}; invite again",
                    invitation.expires_at.to_rfc3339()
                ),
            );
        }
        Ok(vec![TenantEvent::InvitationAccepted { id: user.id, sku: invitation.sku.clone() }])
    }

    /// Global and User Administrators manage every group; owners their own.
    fn may_manage(&self, group: &Group) -> Result<(), Rejection> {
        if Tenant::may_change_members(self.actor, group).is_some() {
            return Ok(());
        }
        self.require(GROUP_MANAGER_ROLES, &format!("manage group {}", group.name))
    }

    fn create_group(&self, id: Uuid, name: &str, owner: Option<&Upn>) -> Decided {
        self.require(USER_MANAGERS, "create groups")?;
        let name = crate::envcmd::check_name("a group", name)?;
        if let Some(existing) = self.tenant.group_named(name) {
            return invalid(format!("a group named {} exists already", existing.name));
        }
        let mut events = vec![TenantEvent::GroupCreated { id, name: name.to_owned() }];
        if let Some(owner) = owner {
            let owner = self.active_user(owner)?;
            events.push(TenantEvent::GroupOwnerAdded { group: id, user: owner.id });
        }
        Ok(events)
    }

    fn member(&self, member: &MemberRef) -> Result<Member, Rejection> {
        Ok(match member {
            MemberRef::User(upn) => Member::User(self.user(upn)?.id),
            MemberRef::Group(name) => Member::Group(self.group(name)?.id),
        })
    }

    fn add_member(&self, group: &str, member: &MemberRef) -> Decided {
        let group = self.group(group)?;
        self.may_manage(group)?;
        let member = match member {
            MemberRef::User(upn) => Member::User(self.active_user(upn)?.id),
            MemberRef::Group(_) => self.member(member)?,
        };
        if let Member::Group(inner) = member {
            if self.tenant.contains_group(inner, group.id) {
                let inner_name = self.tenant.groups.get(&inner).map_or("?", |g| g.name.as_str());
                return refuse(
                    Rule::D9,
                    format!(
                        "adding group {inner_name} to {} would make a cycle of nested groups",
                        group.name
                    ),
                );
            }
        }
        if group.members.contains(&member) {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::GroupMemberAdded { group: group.id, member }])
    }

    fn remove_member(&self, group: &str, member: &MemberRef) -> Decided {
        let group = self.group(group)?;
        self.may_manage(group)?;
        let member_id = self.member(member)?;
        if !group.members.contains(&member_id) {
            let name = match member {
                MemberRef::User(u) => u.to_string(),
                MemberRef::Group(g) => g.clone(),
            };
            return invalid(format!("{name} is not a member of {}", group.name));
        }
        Ok(vec![TenantEvent::GroupMemberRemoved { group: group.id, member: member_id }])
    }

    fn add_owner(&self, group: &str, upn: &Upn) -> Decided {
        let group = self.group(group)?;
        self.may_manage(group)?;
        let user = self.active_user(upn)?;
        if group.owners.contains(&user.id) {
            return Ok(vec![]);
        }
        Ok(vec![TenantEvent::GroupOwnerAdded { group: group.id, user: user.id }])
    }
}

#[cfg(test)]
mod tests;
