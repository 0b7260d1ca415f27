//! Every event usertrail records: the schema of the log, in one place.
//!
//! **Schema rule.** Events are encoded with bincode, which writes an enum
//! variant as its position. So variants (of [`Event`] and of every enum an
//! event holds) are only ever *added at the end*; a variant that has landed is
//! never changed, reordered or removed. A new shape of an old event is a new
//! variant, and [`decode`] upcasts the old one. [`SCHEMA_VERSION`] goes into
//! each record's envelope so a reader can tell which rules applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::password::PasswordHash;

/// Where and when an event landed: its log position and recorded time.
/// Folds keep positions as evidence ("which record decided this?").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's time.
    pub at: DateTime<Utc>,
}

/// The schema version written into every new record's envelope.
pub const SCHEMA_VERSION: u16 = 1;

/// Any event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A change to the tenant directory (stream `tenant`).
    Tenant(TenantEvent),
    /// A command that a rule turned down (stream `audit`, L1).
    CommandRejected(CommandRejected),
    /// A change to one environment (stream `env/<id>`).
    Environment(EnvEvent),
    /// An auditor's report was written (stream `audit`): it changes nothing,
    /// and proves which report was issued.
    ReportGenerated(ReportGenerated),
}

/// The record of a written report: its period, its file and the SHA-256 of
/// its bytes, so a copy can be told from the original (`verify --report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportGenerated {
    /// The period's start (excluded).
    pub from: DateTime<Utc>,
    /// The period's end (included).
    pub to: DateTime<Utc>,
    /// The file's name as given to `--out`.
    pub file: String,
    /// The SHA-256 of the bytes written.
    pub sha256: [u8; 32],
}

/// The failure audit record of a command a rule refused: it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRejected {
    /// The command as named on the command line (`user license assign`).
    pub command: String,
    /// The rule ID (`D4`); a string so that new rules never shift old records.
    pub rule: String,
    /// The one-line reason given to the actor.
    pub reason: String,
    /// What the command was aimed at (UPNs, SKU or group names).
    pub targets: Vec<String>,
    /// The environment, where the command was aimed at one.
    pub environment: Option<String>,
}

/// A directory admin role (D8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AdminRole {
    /// Global Administrator: everything.
    Global,
    /// Power Platform Administrator.
    PowerPlatform,
    /// Dynamics 365 Administrator (service admin).
    Dynamics365,
    /// User Administrator: users, licenses, groups.
    UserAdmin,
    /// Password Administrator: password resets only.
    PasswordAdmin,
}

impl AdminRole {
    /// Every role, in display order.
    pub const ALL: [AdminRole; 5] = [
        AdminRole::Global,
        AdminRole::PowerPlatform,
        AdminRole::Dynamics365,
        AdminRole::UserAdmin,
        AdminRole::PasswordAdmin,
    ];

    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            AdminRole::Global => "global",
            AdminRole::PowerPlatform => "power-platform",
            AdminRole::Dynamics365 => "dynamics365",
            AdminRole::UserAdmin => "user-admin",
            AdminRole::PasswordAdmin => "password-admin",
        }
    }

    /// The role's name in the Microsoft 365 admin center.
    pub fn display_name(self) -> &'static str {
        match self {
            AdminRole::Global => "Global Administrator",
            AdminRole::PowerPlatform => "Power Platform Administrator",
            AdminRole::Dynamics365 => "Dynamics 365 Administrator",
            AdminRole::UserAdmin => "User Administrator",
            AdminRole::PasswordAdmin => "Password Administrator",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<AdminRole> {
        AdminRole::ALL.into_iter().find(|r| r.cli_name() == name)
    }
}

impl fmt::Display for AdminRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// What a SKU entitles (D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SkuKind {
    /// A Dynamics 365 user license.
    D365,
    /// A Power Apps user license.
    PowerApps,
    /// A Microsoft 365 license that carries the free Dataverse plan.
    M365Dataverse,
    /// An Office-only license: entitles nothing in Dataverse.
    Office,
    /// The tenant-level Marketing license: held by the tenant, not assigned.
    MarketingTenant,
}

impl SkuKind {
    /// Every kind, in display order.
    pub const ALL: [SkuKind; 5] = [
        SkuKind::D365,
        SkuKind::PowerApps,
        SkuKind::M365Dataverse,
        SkuKind::Office,
        SkuKind::MarketingTenant,
    ];

    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            SkuKind::D365 => "d365",
            SkuKind::PowerApps => "power-apps",
            SkuKind::M365Dataverse => "m365-dataverse",
            SkuKind::Office => "office",
            SkuKind::MarketingTenant => "marketing-tenant",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<SkuKind> {
        SkuKind::ALL.into_iter().find(|k| k.cli_name() == name)
    }

    /// A paid user license, which entitles its holder wherever it is (S2.2, S7).
    pub fn is_paid(self) -> bool {
        matches!(self, SkuKind::D365 | SkuKind::PowerApps)
    }
}

/// Member of the tenant, or a guest from another tenant (D10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserType {
    /// A user of this tenant.
    Member,
    /// A user of another tenant, invited here.
    Guest,
}

/// A profile field of a directory user (D3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProfileField {
    /// givenName
    GivenName,
    /// surname
    Surname,
    /// displayName
    DisplayName,
    /// jobTitle
    JobTitle,
    /// department
    Department,
    /// mail
    Mail,
    /// businessPhones (the office phone)
    OfficePhone,
    /// mobilePhone
    MobilePhone,
    /// faxNumber
    Fax,
    /// streetAddress
    StreetAddress,
    /// city
    City,
    /// state (or province)
    State,
    /// postalCode
    PostalCode,
    /// country (or region)
    Country,
}

impl ProfileField {
    /// Every field, in display order.
    pub const ALL: [ProfileField; 14] = [
        ProfileField::GivenName,
        ProfileField::Surname,
        ProfileField::DisplayName,
        ProfileField::JobTitle,
        ProfileField::Department,
        ProfileField::Mail,
        ProfileField::OfficePhone,
        ProfileField::MobilePhone,
        ProfileField::Fax,
        ProfileField::StreetAddress,
        ProfileField::City,
        ProfileField::State,
        ProfileField::PostalCode,
        ProfileField::Country,
    ];

    /// The attribute's name in Microsoft Graph (and in audit records).
    pub fn graph_name(self) -> &'static str {
        match self {
            ProfileField::GivenName => "givenName",
            ProfileField::Surname => "surname",
            ProfileField::DisplayName => "displayName",
            ProfileField::JobTitle => "jobTitle",
            ProfileField::Department => "department",
            ProfileField::Mail => "mail",
            ProfileField::OfficePhone => "businessPhones",
            ProfileField::MobilePhone => "mobilePhone",
            ProfileField::Fax => "faxNumber",
            ProfileField::StreetAddress => "streetAddress",
            ProfileField::City => "city",
            ProfileField::State => "state",
            ProfileField::PostalCode => "postalCode",
            ProfileField::Country => "country",
        }
    }
}

/// A user's profile: the fields that are set (D3).
///
/// Shared: a new user's profile is in its command, its `UserCreated` event
/// and the directory, and a copy is a count, not a map. It is stored as the
/// map itself (serde's `Arc<T>` is `T`), so sharing changed no event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile(Arc<BTreeMap<ProfileField, String>>);

impl Profile {
    /// The field's value, if set.
    pub fn get(&self, field: ProfileField) -> Option<&str> {
        self.0.get(&field).map(String::as_str)
    }

    /// Sets a field, or clears it with `None`.
    pub fn set(&mut self, field: ProfileField, value: Option<String>) {
        // Copies the map only while another holder shares it.
        let fields = Arc::make_mut(&mut self.0);
        match value {
            Some(value) => fields.insert(field, value),
            None => fields.remove(&field),
        };
    }

    /// The fields that are set, in field order.
    pub fn iter(&self) -> impl Iterator<Item = (ProfileField, &str)> {
        self.0.iter().map(|(field, value)| (*field, value.as_str()))
    }
}

impl FromIterator<(ProfileField, String)> for Profile {
    fn from_iter<I: IntoIterator<Item = (ProfileField, String)>>(fields: I) -> Profile {
        Profile(Arc::new(fields.into_iter().collect()))
    }
}

/// One changed profile field, with its old and new values (D3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Which field.
    pub field: ProfileField,
    /// Before (`None`: was not set).
    pub old: Option<String>,
    /// After (`None`: cleared).
    pub new: Option<String>,
}

/// A member of a security group: a user or a (nested) group (D9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Member {
    /// A user, by object id.
    User(Uuid),
    /// A nested group, by object id.
    Group(Uuid),
}

/// A change to the tenant directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantEvent {
    /// The tenant was set up with its primary domain (D1) and first Global
    /// Administrator, the default actor of commands.
    TenantInitialized { domain: String, name: String, admin: Uuid },
    /// A SKU was bought (D4).
    SkuAdded { sku: String, kind: SkuKind, seats: u32 },
    /// A SKU's seat count changed (D4).
    SkuSeatsChanged { sku: String, old: u32, new: u32 },
    /// A user was created (D1, D2, D3); for a guest, by an invitation (D10).
    UserCreated {
        id: Uuid,
        upn: String,
        user_type: UserType,
        profile: Profile,
        /// Landed with the temporary password's salted hash: now written as
        /// [`TenantEvent::UserCreatedV2`], which keeps none.
        password: PasswordHash,
        /// Licenses the guest holds in its home tenant: they do not count here (D10).
        home_licenses: Vec<String>,
    },
    /// Profile fields changed (D3).
    UserUpdated { id: Uuid, changes: Vec<FieldChange> },
    /// A license was assigned (D4).
    LicenseAssigned { id: Uuid, sku: String },
    /// A license was removed: its seat is free (D4).
    LicenseRemoved { id: Uuid, sku: String },
    /// A directory admin role was given (D8).
    AdminRoleAdded { id: Uuid, role: AdminRole },
    /// A directory admin role was taken away (D8).
    AdminRoleRemoved { id: Uuid, role: AdminRole },
    /// Sign-in was blocked (D6).
    UserBlocked { id: Uuid },
    /// Sign-in was allowed again (D6).
    UserUnblocked { id: Uuid },
    /// The user was soft-deleted: seats are free; restorable for 30 days (D7).
    UserDeleted { id: Uuid },
    /// The user came back; licenses whose seats were taken meanwhile did not (D7).
    UserRestored { id: Uuid, licenses_not_restored: Vec<String> },
    /// A new temporary password was set. Landed with its salted hash (D2):
    /// now written as [`TenantEvent::PasswordResetV2`], which keeps none.
    PasswordReset { id: Uuid, password: PasswordHash },
    /// A guest was invited; the license's seat is held until acceptance or expiry (D5).
    InvitationIssued { id: Uuid, sku: Option<String>, expires_at: DateTime<Utc> },
    /// The guest accepted; the held license became an assignment (D5).
    InvitationAccepted { id: Uuid, sku: Option<String> },
    /// A security group was created (D9).
    GroupCreated { id: Uuid, name: String },
    /// A user or group joined a group (D9).
    GroupMemberAdded { group: Uuid, member: Member },
    /// A user or group left a group (D9).
    GroupMemberRemoved { group: Uuid, member: Member },
    /// A user became an owner of a group (D9).
    GroupOwnerAdded { group: Uuid, user: Uuid },
    /// An environment was created; its own stream holds the rest (E1).
    EnvironmentRegistered { id: Uuid, name: String },
    /// A user was created (D1, D2, D3): `UserCreated` without any trace of a
    /// password. Nothing ever checks a temporary password, so the log keeps
    /// only whether one was issued; who issued it and when are the record's
    /// actor and time (L2).
    UserCreatedV2 {
        id: Uuid,
        upn: String,
        user_type: UserType,
        profile: Profile,
        /// Licenses the guest holds in its home tenant: they do not count here (D10).
        home_licenses: Vec<String>,
        /// Whether a temporary password was shown to the actor (not for imported users).
        temporary_password: bool,
    },
    /// A new temporary password was issued (D2): `PasswordReset` without its
    /// hash. Who issued it and when are the record's actor and time (L2).
    PasswordResetV2 { id: Uuid },
    /// A SKU's Graph `skuId` became known (from a subscribedSkus export),
    /// so that later exports may name the SKU by it alone.
    SkuIdentified { sku: String, id: Uuid },
}

/// The kind of an environment (E1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EnvType {
    /// A production environment.
    Production,
    /// A sandbox.
    Sandbox,
    /// A trial: users are added on demand only (S1.1).
    Trial,
    /// A developer environment: only its creator is added (S1.2).
    Developer,
    /// The tenant's default environment.
    Default,
    /// Dataverse for Teams: users are added on first access (S1.3).
    Teams,
}

impl EnvType {
    /// Every type, in display order.
    pub const ALL: [EnvType; 6] = [
        EnvType::Production,
        EnvType::Sandbox,
        EnvType::Trial,
        EnvType::Developer,
        EnvType::Default,
        EnvType::Teams,
    ];

    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            EnvType::Production => "production",
            EnvType::Sandbox => "sandbox",
            EnvType::Trial => "trial",
            EnvType::Developer => "developer",
            EnvType::Default => "default",
            EnvType::Teams => "teams",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<EnvType> {
        EnvType::ALL.into_iter().find(|t| t.cli_name() == name)
    }
}

/// An app installed in an environment (E3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum App {
    /// Dynamics 365 Sales.
    Sales,
    /// Customer Service Hub.
    CustomerService,
}

impl App {
    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            App::Sales => "sales",
            App::CustomerService => "customer-service",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<App> {
        [App::Sales, App::CustomerService].into_iter().find(|a| a.cli_name() == name)
    }

    /// The app-access role that licensed users get (S8).
    pub fn access_role(self) -> &'static str {
        match self {
            App::Sales => "Sales app access",
            App::CustomerService => "Customer Service app access",
        }
    }
}

/// A SystemUser's access mode and its stored value (A1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AccessMode {
    /// 0: full access within the user's privileges.
    ReadWrite,
    /// 1: settings and administration only, no data (A5).
    Administrative,
    /// 2: read only.
    Read,
    /// 3: Microsoft support engineers.
    SupportUser,
    /// 4: API only, no web interface (A6); at most seven per environment (A3).
    NonInteractive,
    /// 5: partners' delegated admins.
    DelegatedAdmin,
}

impl AccessMode {
    /// The value Dataverse stores (A1).
    pub fn value(self) -> u8 {
        match self {
            AccessMode::ReadWrite => 0,
            AccessMode::Administrative => 1,
            AccessMode::Read => 2,
            AccessMode::SupportUser => 3,
            AccessMode::NonInteractive => 4,
            AccessMode::DelegatedAdmin => 5,
        }
    }

    /// The mode Dataverse stores as `value` (A1), if it is one.
    pub fn from_value(value: u8) -> Option<AccessMode> {
        use AccessMode::*;
        [ReadWrite, Administrative, Read, SupportUser, NonInteractive, DelegatedAdmin]
            .into_iter()
            .find(|m| m.value() == value)
    }

    /// As views print it: the name, then the value Dataverse stores.
    pub fn shown(self) -> String {
        format!("{} ({})", self.cli_name(), self.value())
    }

    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            AccessMode::ReadWrite => "read-write",
            AccessMode::Administrative => "administrative",
            AccessMode::Read => "read",
            AccessMode::SupportUser => "support",
            AccessMode::NonInteractive => "non-interactive",
            AccessMode::DelegatedAdmin => "delegated-admin",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<AccessMode> {
        [
            AccessMode::ReadWrite,
            AccessMode::Administrative,
            AccessMode::Read,
            AccessMode::SupportUser,
            AccessMode::NonInteractive,
            AccessMode::DelegatedAdmin,
        ]
        .into_iter()
        .find(|m| m.cli_name() == name)
    }
}

/// What kind of SystemUser a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UserKind {
    /// A directory user, synchronized.
    User,
    /// An application user (P1).
    Application,
    /// A stub from data import (T1).
    Stub,
    /// The delegated-admin placeholder (E5).
    DelegatedAdmin,
    /// The support placeholder (E5).
    Support,
}

impl UserKind {
    /// The name used in views.
    pub fn name(self) -> &'static str {
        match self {
            UserKind::User => "user",
            UserKind::Application => "application",
            UserKind::Stub => "stub",
            UserKind::DelegatedAdmin => "delegated-admin",
            UserKind::Support => "support",
        }
    }
}

/// A SystemUser column that sync writes (S6), by Dataverse logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Column {
    /// firstname
    FirstName,
    /// lastname
    LastName,
    /// fullname: set at creation only (S6.1)
    FullName,
    /// jobtitle
    JobTitle,
    /// internalemailaddress: set at creation only (S6.2, S6.3)
    InternalEmailAddress,
    /// mobilephone
    MobilePhone,
    /// address1_telephone1
    Telephone1,
    /// address1_fax
    Fax,
    /// address1_line1
    Line1,
    /// address1_city
    City,
    /// address1_stateorprovince
    StateOrProvince,
    /// address1_postalcode
    PostalCode,
    /// address1_country
    Country,
}

impl Column {
    /// Every column, in display order.
    pub const ALL: [Column; 13] = [
        Column::FirstName,
        Column::LastName,
        Column::FullName,
        Column::JobTitle,
        Column::InternalEmailAddress,
        Column::MobilePhone,
        Column::Telephone1,
        Column::Fax,
        Column::Line1,
        Column::City,
        Column::StateOrProvince,
        Column::PostalCode,
        Column::Country,
    ];

    /// The Dataverse logical name.
    pub fn logical_name(self) -> &'static str {
        match self {
            Column::FirstName => "firstname",
            Column::LastName => "lastname",
            Column::FullName => "fullname",
            Column::JobTitle => "jobtitle",
            Column::InternalEmailAddress => "internalemailaddress",
            Column::MobilePhone => "mobilephone",
            Column::Telephone1 => "address1_telephone1",
            Column::Fax => "address1_fax",
            Column::Line1 => "address1_line1",
            Column::City => "address1_city",
            Column::StateOrProvince => "address1_stateorprovince",
            Column::PostalCode => "address1_postalcode",
            Column::Country => "address1_country",
        }
    }

    /// The directory field it is synchronized from (S6).
    pub fn source(self) -> ProfileField {
        match self {
            Column::FirstName => ProfileField::GivenName,
            Column::LastName => ProfileField::Surname,
            Column::FullName => ProfileField::DisplayName,
            Column::JobTitle => ProfileField::JobTitle,
            Column::InternalEmailAddress => ProfileField::Mail,
            Column::MobilePhone => ProfileField::MobilePhone,
            Column::Telephone1 => ProfileField::OfficePhone,
            Column::Fax => ProfileField::Fax,
            Column::Line1 => ProfileField::StreetAddress,
            Column::City => ProfileField::City,
            Column::StateOrProvince => ProfileField::State,
            Column::PostalCode => ProfileField::PostalCode,
            Column::Country => ProfileField::Country,
        }
    }
}

/// One changed SystemUser column, with its old and new values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnChange {
    /// Which column.
    pub column: Column,
    /// Before.
    pub old: Option<String>,
    /// After.
    pub new: Option<String>,
}

/// How a SystemUser record came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddedBy {
    /// The background sync pass (S1).
    Sync,
    /// The user's own first access (S5).
    Access,
    /// An admin's on-demand add (S5).
    AdminAdd,
    /// Refresh user (S9).
    Refresh,
    /// Created with the environment (E5).
    Placeholder,
    /// An application user (P1).
    AppUserCreate,
    /// A stub from data import (T1).
    Import,
}

/// What a user is entitled by in an environment (S2.2, S3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entitlement {
    /// A Dynamics 365 or Power Apps license from this tenant.
    License(String),
    /// A Global, Power Platform or Dynamics 365 Administrator without a license (S3).
    AdminWithoutLicense,
    /// The record is non-interactive or administrative and keeps its mode (A4, S3).
    KeptMode,
    /// The free Dataverse plan of a Microsoft 365 license (S1.4, on demand only).
    FreeDataversePlan(String),
    /// The environment's app-pass capacity (S1.4, on demand only).
    AppPass,
    /// The tenant-level Marketing license (S1.4, on demand only).
    MarketingTenant(String),
}

impl std::fmt::Display for Entitlement {
    /// In words, as views print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entitlement::License(sku) => write!(f, "license {sku}"),
            Entitlement::AdminWithoutLicense => f.write_str("administrator without a license (S3)"),
            Entitlement::KeptMode => f.write_str("keeps its access mode (A4, S3)"),
            Entitlement::FreeDataversePlan(sku) => write!(f, "free Dataverse plan of {sku} (S1.4)"),
            Entitlement::AppPass => f.write_str("app pass (S1.4)"),
            Entitlement::MarketingTenant(sku) => write!(f, "tenant Marketing license {sku} (S1.4)"),
        }
    }
}

/// A table x operation privilege at an access level (R2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Privilege {
    /// The table's logical name.
    pub table: String,
    /// The operation.
    pub operation: Operation,
    /// The access level.
    pub level: Level,
}

/// An operation on a table (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// create
    Create,
    /// read
    Read,
    /// write
    Write,
    /// delete
    Delete,
    /// append
    Append,
    /// append-to
    AppendTo,
    /// assign
    Assign,
    /// share
    Share,
}

impl Operation {
    /// Every operation, in order.
    pub const ALL: [Operation; 8] = [
        Operation::Create,
        Operation::Read,
        Operation::Write,
        Operation::Delete,
        Operation::Append,
        Operation::AppendTo,
        Operation::Assign,
        Operation::Share,
    ];

    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Delete => "delete",
            Operation::Append => "append",
            Operation::AppendTo => "append-to",
            Operation::Assign => "assign",
            Operation::Share => "share",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.cli_name() == name)
    }
}

/// An access level, lowest first (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// None
    None,
    /// User: own records
    User,
    /// Business Unit
    BusinessUnit,
    /// Parent: Child Business Units
    ParentChild,
    /// Organization
    Organization,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] =
        [Level::None, Level::User, Level::BusinessUnit, Level::ParentChild, Level::Organization];

    /// The name used on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::User => "user",
            Level::BusinessUnit => "bu",
            Level::ParentChild => "parent-child",
            Level::Organization => "org",
        }
    }

    /// Reads a command-line name.
    pub fn from_cli(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.cli_name() == name)
    }
}

/// A change to one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvEvent {
    /// The environment was created (E1-E3); E5's starting state follows as
    /// its own events.
    EnvironmentCreated {
        id: Uuid,
        name: String,
        env_type: EnvType,
        dataverse: bool,
        security_group: Option<Uuid>,
        app_pass: u32,
        apps: Vec<App>,
        /// The directory user who created it (the developer of S1.2).
        creator: Uuid,
    },
    /// The security group was set or cleared (E2).
    SecurityGroupChanged { old: Option<Uuid>, new: Option<Uuid> },
    /// The app-pass capacity changed (E3).
    AppPassChanged { old: u32, new: u32 },
    /// A setting changed (E4, O1): name and value as text.
    SettingChanged { name: String, old: Option<String>, new: Option<String> },
    /// A business unit was created (R1); the root has no parent.
    BusinessUnitCreated { id: Uuid, name: String, parent: Option<Uuid> },
    /// A security role was created with its privileges (R2).
    RoleCreated { id: Uuid, name: String, business_unit: Uuid, privileges: Vec<Privilege>, app_access: bool },
    /// A SystemUser record was added.
    SystemUserAdded {
        id: Uuid,
        kind: UserKind,
        /// azureactivedirectoryobjectid: the directory user (or service principal).
        object_id: Option<Uuid>,
        /// applicationid, for application users.
        application_id: Option<Uuid>,
        domainname: String,
        columns: Vec<(Column, String)>,
        access_mode: AccessMode,
        is_licensed: bool,
        is_disabled: bool,
        business_unit: Uuid,
        added_by: AddedBy,
        entitlement: Option<Entitlement>,
    },
    /// Columns changed (S6): old and new values.
    SystemUserUpdated { id: Uuid, changes: Vec<ColumnChange> },
    /// The record was enabled (S5), with what entitles it.
    SystemUserEnabled { id: Uuid, entitlement: Option<Entitlement> },
    /// The record was disabled (S4, P2), with the failing rules.
    SystemUserDisabled { id: Uuid, reason: String },
    /// islicensed changed.
    LicensedChanged { id: Uuid, is_licensed: bool },
    /// The access mode changed (A1-A4).
    AccessModeChanged { id: Uuid, old: AccessMode, new: AccessMode },
    /// A role was given to a user (S7, S8, T1.3, R*).
    RoleAssigned { user: Uuid, role: Uuid },
    /// A role was taken from a user.
    RoleRemoved { user: Uuid, role: Uuid },
    /// A customer edited internalemailaddress in the environment: sync never writes it again (S6.3).
    EmailEditedInEnvironment { id: Uuid, old: Option<String>, new: Option<String> },
    /// A stub's records were reassigned to another user (T1.4).
    RecordsReassigned { from: Uuid, to: Uuid },
    /// A user moved to another business unit; its direct roles were re-checked (R1).
    UserBusinessUnitChanged { user: Uuid, old: Uuid, new: Uuid },
    /// A role's privilege on a table and operation changed level (R2).
    RolePrivilegeSet { role: Uuid, table: String, operation: Operation, old: Level, new: Level },
    /// A team was created: an owner team, or a group team tied to a directory group (R7).
    TeamCreated { id: Uuid, name: String, business_unit: Uuid, group: Option<Uuid> },
    /// A user joined a team (by an admin, or following its group at sync, R7).
    TeamMemberAdded { team: Uuid, user: Uuid },
    /// A user left a team.
    TeamMemberRemoved { team: Uuid, user: Uuid },
    /// A role was given to a team: its members get it (R3, R7).
    TeamRoleAssigned { team: Uuid, role: Uuid },
    /// A role was taken from a team.
    TeamRoleRemoved { team: Uuid, role: Uuid },
    /// A mailbox test was scheduled (O2).
    MailboxTestScheduled { user: Uuid },
    /// The test passed and the mailbox is enabled for email processing (O2).
    MailboxEnabled { user: Uuid },
    /// Unified routing was provisioned with a tenant admin's consent; it stays on (O3).
    UnifiedRoutingEnabled { consented_by: Uuid },
    /// What entitles an enabled record changed (an app-pass user got a license, S2.2).
    EntitlementChanged { id: Uuid, old: Option<Entitlement>, new: Option<Entitlement> },
    /// Sync moved a setup user's mode: Administrative when an unlicensed tenant
    /// admin is added or loses its license (S3), Read-Write once licensed (S7).
    SetupModeChanged { id: Uuid, old: AccessMode, new: AccessMode },
    /// The admin tools list the environment under another type (sandbox
    /// converted to production, ...): `import environments` (issue 32).
    EnvironmentTypeChanged { old: EnvType, new: EnvType },
    /// A Dataverse database was added to an environment that had none (E1);
    /// E5's starting state follows as its own events.
    DataverseAdded,
    /// What an export of the SystemUser table showed (`import systemusers`,
    /// issue 32): an observation, kept apart from the state the rules derive.
    /// Only the rows that differ from the last observation, and the
    /// systemuserids the table no longer holds.
    SystemUsersObserved { observed_at: DateTime<Utc>, rows: Vec<ObservedUser>, gone: Vec<Uuid> },
}

/// One SystemUser row as an export showed it. A field the export did not
/// carry (left out of `$select`) is `None`: not observed, never a difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedUser {
    /// systemuserid, the environment's own id (not usertrail's).
    pub id: Uuid,
    /// azureactivedirectoryobjectid.
    pub object_id: Option<Uuid>,
    /// applicationid, for application users.
    pub application_id: Option<Uuid>,
    /// domainname.
    pub domainname: Option<String>,
    /// isdisabled.
    pub is_disabled: Option<bool>,
    /// accessmode, as Dataverse stores it (A1).
    pub access_mode: Option<u8>,
    /// islicensed.
    pub is_licensed: Option<bool>,
    /// The business unit's name (the lookup's formatted value).
    pub business_unit: Option<String>,
    /// Names of the directly assigned roles (`$expand=systemuserroles_association`).
    pub roles: Option<BTreeSet<String>>,
}

impl EnvEvent {
    /// The SystemUser record this event is about, if it is about one: a sync
    /// pass's records are one audit record per SystemUser they change.
    pub fn system_user(&self) -> Option<Uuid> {
        use EnvEvent::*;
        match self {
            SystemUserAdded { id, .. }
            | SystemUserUpdated { id, .. }
            | SystemUserEnabled { id, .. }
            | SystemUserDisabled { id, .. }
            | LicensedChanged { id, .. }
            | AccessModeChanged { id, .. }
            | EmailEditedInEnvironment { id, .. }
            | EntitlementChanged { id, .. }
            | SetupModeChanged { id, .. } => Some(*id),
            RoleAssigned { user, .. }
            | RoleRemoved { user, .. }
            | UserBusinessUnitChanged { user, .. }
            | TeamMemberAdded { user, .. }
            | TeamMemberRemoved { user, .. }
            | MailboxTestScheduled { user }
            | MailboxEnabled { user } => Some(*user),
            EnvironmentCreated { .. }
            | SecurityGroupChanged { .. }
            | AppPassChanged { .. }
            | SettingChanged { .. }
            | BusinessUnitCreated { .. }
            | RoleCreated { .. }
            | RecordsReassigned { .. }
            | RolePrivilegeSet { .. }
            | TeamCreated { .. }
            | TeamRoleAssigned { .. }
            | TeamRoleRemoved { .. }
            | UnifiedRoutingEnabled { .. }
            | EnvironmentTypeChanged { .. }
            | DataverseAdded
            | SystemUsersObserved { .. } => None,
        }
    }

    /// The event's type name, as recorded in the envelope.
    pub fn type_name(&self) -> &'static str {
        match self {
            EnvEvent::EnvironmentCreated { .. } => "EnvironmentCreated",
            EnvEvent::SecurityGroupChanged { .. } => "SecurityGroupChanged",
            EnvEvent::AppPassChanged { .. } => "AppPassChanged",
            EnvEvent::SettingChanged { .. } => "SettingChanged",
            EnvEvent::BusinessUnitCreated { .. } => "BusinessUnitCreated",
            EnvEvent::RoleCreated { .. } => "RoleCreated",
            EnvEvent::SystemUserAdded { .. } => "SystemUserAdded",
            EnvEvent::SystemUserUpdated { .. } => "SystemUserUpdated",
            EnvEvent::SystemUserEnabled { .. } => "SystemUserEnabled",
            EnvEvent::SystemUserDisabled { .. } => "SystemUserDisabled",
            EnvEvent::LicensedChanged { .. } => "LicensedChanged",
            EnvEvent::AccessModeChanged { .. } => "AccessModeChanged",
            EnvEvent::RoleAssigned { .. } => "RoleAssigned",
            EnvEvent::RoleRemoved { .. } => "RoleRemoved",
            EnvEvent::EmailEditedInEnvironment { .. } => "EmailEditedInEnvironment",
            EnvEvent::RecordsReassigned { .. } => "RecordsReassigned",
            EnvEvent::UserBusinessUnitChanged { .. } => "UserBusinessUnitChanged",
            EnvEvent::RolePrivilegeSet { .. } => "RolePrivilegeSet",
            EnvEvent::TeamCreated { .. } => "TeamCreated",
            EnvEvent::TeamMemberAdded { .. } => "TeamMemberAdded",
            EnvEvent::TeamMemberRemoved { .. } => "TeamMemberRemoved",
            EnvEvent::TeamRoleAssigned { .. } => "TeamRoleAssigned",
            EnvEvent::TeamRoleRemoved { .. } => "TeamRoleRemoved",
            EnvEvent::MailboxTestScheduled { .. } => "MailboxTestScheduled",
            EnvEvent::MailboxEnabled { .. } => "MailboxEnabled",
            EnvEvent::UnifiedRoutingEnabled { .. } => "UnifiedRoutingEnabled",
            EnvEvent::EntitlementChanged { .. } => "EntitlementChanged",
            EnvEvent::SetupModeChanged { .. } => "SetupModeChanged",
            EnvEvent::EnvironmentTypeChanged { .. } => "EnvironmentTypeChanged",
            EnvEvent::DataverseAdded => "DataverseAdded",
            EnvEvent::SystemUsersObserved { .. } => "SystemUsersObserved",
        }
    }
}

impl Event {
    /// The event's type name, as recorded in the envelope.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::CommandRejected(_) => "CommandRejected",
            Event::ReportGenerated(_) => "ReportGenerated",
            Event::Tenant(e) => match e {
                TenantEvent::TenantInitialized { .. } => "TenantInitialized",
                TenantEvent::SkuAdded { .. } => "SkuAdded",
                TenantEvent::SkuSeatsChanged { .. } => "SkuSeatsChanged",
                TenantEvent::UserCreated { .. } => "UserCreated",
                TenantEvent::UserUpdated { .. } => "UserUpdated",
                TenantEvent::LicenseAssigned { .. } => "LicenseAssigned",
                TenantEvent::LicenseRemoved { .. } => "LicenseRemoved",
                TenantEvent::AdminRoleAdded { .. } => "AdminRoleAdded",
                TenantEvent::AdminRoleRemoved { .. } => "AdminRoleRemoved",
                TenantEvent::UserBlocked { .. } => "UserBlocked",
                TenantEvent::UserUnblocked { .. } => "UserUnblocked",
                TenantEvent::UserDeleted { .. } => "UserDeleted",
                TenantEvent::UserRestored { .. } => "UserRestored",
                TenantEvent::PasswordReset { .. } => "PasswordReset",
                TenantEvent::InvitationIssued { .. } => "InvitationIssued",
                TenantEvent::InvitationAccepted { .. } => "InvitationAccepted",
                TenantEvent::GroupCreated { .. } => "GroupCreated",
                TenantEvent::GroupMemberAdded { .. } => "GroupMemberAdded",
                TenantEvent::GroupMemberRemoved { .. } => "GroupMemberRemoved",
                TenantEvent::GroupOwnerAdded { .. } => "GroupOwnerAdded",
                TenantEvent::EnvironmentRegistered { .. } => "EnvironmentRegistered",
                // The same facts as before in a new shape: scripts that count
                // types (`import graph --json`'s `byType`) see no change.
                TenantEvent::UserCreatedV2 { .. } => "UserCreated",
                TenantEvent::PasswordResetV2 { .. } => "PasswordReset",
                TenantEvent::SkuIdentified { .. } => "SkuIdentified",
            },
            Event::Environment(e) => e.type_name(),
        }
    }
}

/// A stored payload that this version of usertrail cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Written by a newer usertrail.
    #[error("event schema version {0} is newer than this usertrail reads ({SCHEMA_VERSION})")]
    NewerSchema(u16),
    /// Not a valid encoding of any event.
    #[error("undecodable event payload: {0}")]
    Malformed(String),
}

/// The largest payload we decode: a corrupt length prefix must not ask for
/// an impossible allocation. [`encode`] refuses anything larger, so every
/// event that lands can be read back.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// An event too large to be read back: refused before it is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {event_type} event would take more than {MAX_PAYLOAD} bytes, the most the log reads back")]
pub struct TooLarge {
    /// The event's type name.
    pub event_type: &'static str,
}

/// Decoding's claims: bincode counts a string's bytes twice (its allocation,
/// then its reading), so twice the longest payload lets every payload of at
/// most [`MAX_PAYLOAD`] bytes decode while a corrupt length prefix still
/// cannot ask for more.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 2 * MAX_PAYLOAD }>()
}

/// Encodes an event for the log, under the same limit as [`decode`]: an
/// event that could not be read back is refused here, before any append
/// (a 20 MiB name once landed and made every later command fail).
pub fn encode(event: &Event) -> Result<Vec<u8>, TooLarge> {
    // Most events fit: growing from empty would reallocate and copy about
    // seven times on the way to a few hundred bytes.
    let mut bytes = Vec::with_capacity(256);
    let too_large = TooLarge { event_type: event.type_name() };
    // Encoding into a Vec cannot fail for these plain types; bincode does not
    // apply a limit when encoding, so the length is checked here.
    match bincode::serde::encode_into_std_write(event, &mut bytes, bincode::config::standard()) {
        Ok(_) if bytes.len() <= MAX_PAYLOAD => Ok(bytes),
        _ => Err(too_large),
    }
}

/// Decodes a payload written with `schema_version`, upcasting older shapes.
pub fn decode(schema_version: u16, bytes: &[u8]) -> Result<Event, DecodeError> {
    if schema_version > SCHEMA_VERSION {
        return Err(DecodeError::NewerSchema(schema_version));
    }
    if bytes.len() > MAX_PAYLOAD {
        return Err(DecodeError::Malformed(format!("{} bytes, more than {MAX_PAYLOAD}", bytes.len())));
    }
    let (event, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9@. -]{0,12}"
    }

    #[test]
    fn a_shared_profile_is_stored_as_the_plain_map_it_was_before() {
        let fields: BTreeMap<ProfileField, String> =
            [(ProfileField::GivenName, "Ada".to_owned()), (ProfileField::Surname, "Lovelace".to_owned())]
                .into();
        let profile: Profile = fields.clone().into_iter().collect();
        fn bytes(v: &impl Serialize) -> Vec<u8> {
            bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
        }
        assert_eq!(bytes(&profile), bytes(&fields), "the same bytes, so the same events");
        let back: Profile =
            bincode::serde::decode_from_slice(&bytes(&fields), bincode::config::standard()).unwrap().0;
        assert_eq!(back, profile);
    }

    #[test]
    fn changing_a_copy_of_a_profile_leaves_the_original_as_it_was() {
        let original: Profile = [(ProfileField::City, "Lyon".to_owned())].into_iter().collect();
        let mut copy = original.clone();
        copy.set(ProfileField::City, Some("Paris".into()));
        copy.set(ProfileField::Mail, Some("ada@contoso.com".into()));
        assert_eq!(original.iter().collect::<Vec<_>>(), [(ProfileField::City, "Lyon")]);
        assert_eq!(copy.get(ProfileField::City), Some("Paris"));
        copy.set(ProfileField::City, None);
        assert_eq!(copy.iter().collect::<Vec<_>>(), [(ProfileField::Mail, "ada@contoso.com")]);
    }

    fn uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }

    fn password() -> impl Strategy<Value = PasswordHash> {
        (any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(|(salt, digest)| PasswordHash { salt, digest })
    }

    fn field() -> impl Strategy<Value = ProfileField> {
        proptest::sample::select(ProfileField::ALL.to_vec())
    }

    fn member() -> impl Strategy<Value = Member> {
        prop_oneof![uuid().prop_map(Member::User), uuid().prop_map(Member::Group)]
    }

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..4_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
    }

    fn tenant_event() -> impl Strategy<Value = TenantEvent> {
        let kind = proptest::sample::select(SkuKind::ALL.to_vec());
        let role = proptest::sample::select(AdminRole::ALL.to_vec());
        let user_type = prop_oneof![Just(UserType::Member), Just(UserType::Guest)];
        let profile = proptest::collection::btree_map(field(), text(), 0..4).prop_map(Profile::from_iter);
        let user_type2 = prop_oneof![Just(UserType::Member), Just(UserType::Guest)];
        let profile2 = proptest::collection::btree_map(field(), text(), 0..4).prop_map(Profile::from_iter);
        let change = (field(), proptest::option::of(text()), proptest::option::of(text()))
            .prop_map(|(field, old, new)| FieldChange { field, old, new });
        prop_oneof![
            (text(), text(), uuid()).prop_map(|(domain, name, admin)| TenantEvent::TenantInitialized {
                domain,
                name,
                admin
            }),
            (text(), kind, any::<u32>()).prop_map(|(sku, kind, seats)| TenantEvent::SkuAdded {
                sku,
                kind,
                seats
            }),
            (text(), any::<u32>(), any::<u32>()).prop_map(|(sku, old, new)| TenantEvent::SkuSeatsChanged {
                sku,
                old,
                new
            }),
            (uuid(), text(), user_type, profile, password(), proptest::collection::vec(text(), 0..3))
                .prop_map(|(id, upn, user_type, profile, password, home_licenses)| {
                    TenantEvent::UserCreated { id, upn, user_type, profile, password, home_licenses }
                }),
            (uuid(), proptest::collection::vec(change, 0..4))
                .prop_map(|(id, changes)| TenantEvent::UserUpdated { id, changes }),
            (uuid(), text()).prop_map(|(id, sku)| TenantEvent::LicenseAssigned { id, sku }),
            (uuid(), text()).prop_map(|(id, sku)| TenantEvent::LicenseRemoved { id, sku }),
            (uuid(), role.clone()).prop_map(|(id, role)| TenantEvent::AdminRoleAdded { id, role }),
            (uuid(), role).prop_map(|(id, role)| TenantEvent::AdminRoleRemoved { id, role }),
            uuid().prop_map(|id| TenantEvent::UserBlocked { id }),
            uuid().prop_map(|id| TenantEvent::UserUnblocked { id }),
            uuid().prop_map(|id| TenantEvent::UserDeleted { id }),
            (uuid(), proptest::collection::vec(text(), 0..3)).prop_map(|(id, licenses_not_restored)| {
                TenantEvent::UserRestored { id, licenses_not_restored }
            }),
            (uuid(), password()).prop_map(|(id, password)| TenantEvent::PasswordReset { id, password }),
            (uuid(), proptest::option::of(text()), time())
                .prop_map(|(id, sku, expires_at)| TenantEvent::InvitationIssued { id, sku, expires_at }),
            (uuid(), proptest::option::of(text()))
                .prop_map(|(id, sku)| TenantEvent::InvitationAccepted { id, sku }),
            (uuid(), text()).prop_map(|(id, name)| TenantEvent::GroupCreated { id, name }),
            (uuid(), member()).prop_map(|(group, member)| TenantEvent::GroupMemberAdded { group, member }),
            (uuid(), member()).prop_map(|(group, member)| TenantEvent::GroupMemberRemoved { group, member }),
            (uuid(), uuid()).prop_map(|(group, user)| TenantEvent::GroupOwnerAdded { group, user }),
            (uuid(), text(), user_type2, profile2, proptest::collection::vec(text(), 0..3), any::<bool>())
                .prop_map(|(id, upn, user_type, profile, home_licenses, temporary_password)| {
                    TenantEvent::UserCreatedV2 {
                        id,
                        upn,
                        user_type,
                        profile,
                        home_licenses,
                        temporary_password,
                    }
                }),
            uuid().prop_map(|id| TenantEvent::PasswordResetV2 { id }),
            (text(), uuid()).prop_map(|(sku, id)| TenantEvent::SkuIdentified { sku, id }),
        ]
    }

    fn entitlement() -> impl Strategy<Value = Entitlement> {
        prop_oneof![
            text().prop_map(Entitlement::License),
            Just(Entitlement::AdminWithoutLicense),
            Just(Entitlement::KeptMode),
            text().prop_map(Entitlement::FreeDataversePlan),
            Just(Entitlement::AppPass),
            text().prop_map(Entitlement::MarketingTenant),
        ]
    }

    fn access_mode() -> impl Strategy<Value = AccessMode> {
        proptest::sample::select(vec![
            AccessMode::ReadWrite,
            AccessMode::Administrative,
            AccessMode::Read,
            AccessMode::SupportUser,
            AccessMode::NonInteractive,
            AccessMode::DelegatedAdmin,
        ])
    }

    fn column() -> impl Strategy<Value = Column> {
        proptest::sample::select(Column::ALL.to_vec())
    }

    fn level() -> impl Strategy<Value = Level> {
        proptest::sample::select(Level::ALL.to_vec())
    }

    fn operation() -> impl Strategy<Value = Operation> {
        proptest::sample::select(Operation::ALL.to_vec())
    }

    /// Every `EnvEvent` variant (issue 34: the property generated none).
    fn env_event() -> impl Strategy<Value = EnvEvent> {
        use EnvEvent as E;
        let opt_uuid = || proptest::option::of(uuid());
        let opt_text = || proptest::option::of(text());
        let env_type = proptest::sample::select(EnvType::ALL.to_vec());
        let types = env_type.clone();
        let apps =
            proptest::collection::vec(proptest::sample::select(vec![App::Sales, App::CustomerService]), 0..3);
        let privilege = (text(), operation(), level()).prop_map(|(table, operation, level)| Privilege {
            table,
            operation,
            level,
        });
        let kind = proptest::sample::select(vec![
            UserKind::User,
            UserKind::Application,
            UserKind::Stub,
            UserKind::DelegatedAdmin,
            UserKind::Support,
        ]);
        let added_by = proptest::sample::select(vec![
            AddedBy::Sync,
            AddedBy::Access,
            AddedBy::AdminAdd,
            AddedBy::Refresh,
            AddedBy::Placeholder,
            AddedBy::AppUserCreate,
            AddedBy::Import,
        ]);
        let change = (column(), opt_text(), opt_text()).prop_map(|(column, old, new)| ColumnChange {
            column,
            old,
            new,
        });
        let added = (
            (uuid(), kind, opt_uuid(), opt_uuid(), text()),
            (proptest::collection::vec((column(), text()), 0..3), access_mode(), any::<(bool, bool)>()),
            (uuid(), added_by, proptest::option::of(entitlement())),
        )
            .prop_map(
                |(
                    (id, kind, object_id, application_id, domainname),
                    (columns, access_mode, (is_licensed, is_disabled)),
                    (business_unit, added_by, entitlement),
                )| E::SystemUserAdded {
                    id,
                    kind,
                    object_id,
                    application_id,
                    domainname,
                    columns,
                    access_mode,
                    is_licensed,
                    is_disabled,
                    business_unit,
                    added_by,
                    entitlement,
                },
            );
        prop_oneof![
            (uuid(), text(), env_type, any::<bool>(), opt_uuid(), any::<u32>(), apps, uuid()).prop_map(
                |(id, name, env_type, dataverse, security_group, app_pass, apps, creator)| {
                    E::EnvironmentCreated {
                        id,
                        name,
                        env_type,
                        dataverse,
                        security_group,
                        app_pass,
                        apps,
                        creator,
                    }
                }
            ),
            (opt_uuid(), opt_uuid()).prop_map(|(old, new)| E::SecurityGroupChanged { old, new }),
            any::<(u32, u32)>().prop_map(|(old, new)| E::AppPassChanged { old, new }),
            (text(), opt_text(), opt_text()).prop_map(|(name, old, new)| E::SettingChanged {
                name,
                old,
                new
            }),
            (uuid(), text(), opt_uuid()).prop_map(|(id, name, parent)| E::BusinessUnitCreated {
                id,
                name,
                parent
            }),
            (uuid(), text(), uuid(), proptest::collection::vec(privilege, 0..3), any::<bool>()).prop_map(
                |(id, name, business_unit, privileges, app_access)| E::RoleCreated {
                    id,
                    name,
                    business_unit,
                    privileges,
                    app_access
                }
            ),
            added,
            (uuid(), proptest::collection::vec(change, 0..3))
                .prop_map(|(id, changes)| E::SystemUserUpdated { id, changes }),
            (uuid(), proptest::option::of(entitlement()))
                .prop_map(|(id, entitlement)| E::SystemUserEnabled { id, entitlement }),
            (uuid(), text()).prop_map(|(id, reason)| E::SystemUserDisabled { id, reason }),
            (uuid(), any::<bool>()).prop_map(|(id, is_licensed)| E::LicensedChanged { id, is_licensed }),
            (uuid(), access_mode(), access_mode()).prop_map(|(id, old, new)| E::AccessModeChanged {
                id,
                old,
                new
            }),
            (uuid(), uuid()).prop_map(|(user, role)| E::RoleAssigned { user, role }),
            (uuid(), uuid()).prop_map(|(user, role)| E::RoleRemoved { user, role }),
            (uuid(), opt_text(), opt_text()).prop_map(|(id, old, new)| E::EmailEditedInEnvironment {
                id,
                old,
                new
            }),
            (uuid(), uuid()).prop_map(|(from, to)| E::RecordsReassigned { from, to }),
            (uuid(), uuid(), uuid()).prop_map(|(user, old, new)| E::UserBusinessUnitChanged {
                user,
                old,
                new
            }),
            (uuid(), text(), operation(), level(), level()).prop_map(|(role, table, operation, old, new)| {
                E::RolePrivilegeSet { role, table, operation, old, new }
            }),
            (uuid(), text(), uuid(), opt_uuid()).prop_map(|(id, name, business_unit, group)| {
                E::TeamCreated { id, name, business_unit, group }
            }),
            (uuid(), uuid()).prop_map(|(team, user)| E::TeamMemberAdded { team, user }),
            (uuid(), uuid()).prop_map(|(team, user)| E::TeamMemberRemoved { team, user }),
            (uuid(), uuid()).prop_map(|(team, role)| E::TeamRoleAssigned { team, role }),
            (uuid(), uuid()).prop_map(|(team, role)| E::TeamRoleRemoved { team, role }),
            uuid().prop_map(|user| E::MailboxTestScheduled { user }),
            uuid().prop_map(|user| E::MailboxEnabled { user }),
            uuid().prop_map(|consented_by| E::UnifiedRoutingEnabled { consented_by }),
            (uuid(), proptest::option::of(entitlement()), proptest::option::of(entitlement()))
                .prop_map(|(id, old, new)| E::EntitlementChanged { id, old, new }),
            (uuid(), access_mode(), access_mode()).prop_map(|(id, old, new)| E::SetupModeChanged {
                id,
                old,
                new
            }),
            (types.clone(), types).prop_map(|(old, new)| E::EnvironmentTypeChanged { old, new }),
            Just(E::DataverseAdded),
            (time(), proptest::collection::vec(observed(), 0..3), proptest::collection::vec(uuid(), 0..2))
                .prop_map(|(observed_at, rows, gone)| E::SystemUsersObserved { observed_at, rows, gone }),
        ]
    }

    fn observed() -> impl Strategy<Value = ObservedUser> {
        let opt_uuid = || proptest::option::of(uuid());
        let opt_text = || proptest::option::of(text());
        let names = proptest::option::of(proptest::collection::btree_set(text(), 0..3));
        (
            (uuid(), opt_uuid(), opt_uuid(), opt_text()),
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(0u8..6),
                proptest::option::of(any::<bool>()),
            ),
            (opt_text(), names),
        )
            .prop_map(
                |(
                    (id, object_id, application_id, domainname),
                    (is_disabled, access_mode, is_licensed),
                    (business_unit, roles),
                )| ObservedUser {
                    id,
                    object_id,
                    application_id,
                    domainname,
                    is_disabled,
                    access_mode,
                    is_licensed,
                    business_unit,
                    roles,
                },
            )
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            tenant_event().prop_map(Event::Tenant),
            env_event().prop_map(Event::Environment),
            (text(), text(), text(), proptest::collection::vec(text(), 0..3), proptest::option::of(text()))
                .prop_map(|(command, rule, reason, targets, environment)| Event::CommandRejected(
                    CommandRejected { command, rule, reason, targets, environment }
                )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every variant of `Event`, `TenantEvent` and `EnvEvent` with varied fields.
        #[test]
        fn every_event_round_trips(event in event()) {
            let bytes = encode(&event).unwrap();
            prop_assert_eq!(decode(SCHEMA_VERSION, &bytes), Ok(event));
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(SCHEMA_VERSION, &bytes);
        }
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_a_panic() {
        let bytes = [1, 253, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode(SCHEMA_VERSION, &bytes), Err(DecodeError::Malformed(_))));
    }

    /// Issue 25, finding 3: what `encode` accepts, `decode` reads back; one byte more is refused.
    #[test]
    fn an_event_the_log_could_not_read_back_is_refused_by_encode() {
        let named =
            |n: usize| Event::Tenant(TenantEvent::GroupCreated { id: Uuid::nil(), name: "x".repeat(n) });
        let fits = MAX_PAYLOAD - 2 - 17 - 5;
        let bytes = encode(&named(fits)).unwrap();
        assert_eq!(bytes.len(), MAX_PAYLOAD);
        // Compared, not printed: a failure would print 16 MiB.
        assert!(decode(SCHEMA_VERSION, &bytes) == Ok(named(fits)), "the largest event reads back");
        assert!(encode(&named(fits + 1)) == Err(TooLarge { event_type: "GroupCreated" }));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(SCHEMA_VERSION, &longer).is_err(), "nor does decode read more");
        assert!(encode(&named(20 << 20)).is_err(), "the 20 MiB name of the issue");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let bytes = encode(&Event::Tenant(TenantEvent::UserBlocked { id: Uuid::nil() })).unwrap();
        assert_eq!(decode(SCHEMA_VERSION + 1, &bytes), Err(DecodeError::NewerSchema(SCHEMA_VERSION + 1)));
    }

    /// Pins the encoding of landed variants: if this changes, old logs no
    /// longer read. Add variants at the end instead.
    #[test]
    fn landed_encodings_do_not_move() {
        let blocked = encode(&Event::Tenant(TenantEvent::UserBlocked { id: Uuid::from_u128(1) })).unwrap();
        assert_eq!(&blocked[..2], &[0, 9], "Event::Tenant is 0, UserBlocked is 9");
        let rejected = encode(&Event::CommandRejected(CommandRejected {
            command: String::new(),
            rule: String::new(),
            reason: String::new(),
            targets: vec![],
            environment: None,
        }))
        .unwrap();
        assert_eq!(rejected, vec![1, 0, 0, 0, 0, 0]);
        let reset = encode(&Event::Tenant(TenantEvent::PasswordResetV2 { id: Uuid::from_u128(1) })).unwrap();
        assert_eq!(&reset[..2], &[0, 22], "PasswordResetV2 is 22, after UserCreatedV2 at 21");
    }

    /// D2: an issued password leaves no hash, salt or text in the event.
    #[test]
    fn a_password_issued_now_is_recorded_as_a_bare_fact() {
        let id = Uuid::from_u128(7);
        let reset = encode(&Event::Tenant(TenantEvent::PasswordResetV2 { id })).unwrap();
        assert_eq!(
            reset.len(),
            2 + 1 + 16,
            "two tags and the user's id (its length, 16 bytes), nothing else"
        );
        let old = encode(&Event::Tenant(TenantEvent::PasswordReset {
            id,
            password: PasswordHash { salt: [1; 16], digest: [2; 32] },
        }))
        .unwrap();
        assert_eq!(&old[..2], &[0, 13], "the landed shape still reads");
        assert!(matches!(decode(SCHEMA_VERSION, &old), Ok(Event::Tenant(TenantEvent::PasswordReset { .. }))));
    }
}
