//! Every stored shape pinned (issue 34): one sample per event variant and per
//! variant of every enum an event holds, each sample's encoding pinned in
//! `golden/events.txt`, and every golden line decoded back to its sample.
//!
//! A landed encoding never changes (the schema rule of `domain::events`): a
//! new variant is a new golden line, appended with `USERTRAIL_BLESS_GOLDEN=1`,
//! which never rewrites a line already there. A variant with no sample fails
//! to compile (the `match`es below have no `_` arm) or fails the count that
//! serde itself reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use domain::events::*;
use domain::password::PasswordHash;
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

fn id(n: u128) -> Uuid {
    // Distinct, recognisable bytes in every position of the 16.
    Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0000 + n)
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 123_000_000).expect("a valid time")
}

fn profile() -> Profile {
    [(ProfileField::GivenName, "Ada".to_owned()), (ProfileField::City, "Lyon".to_owned())]
        .into_iter()
        .collect()
}

fn privilege() -> Privilege {
    Privilege { table: "account".into(), operation: Operation::Write, level: Level::BusinessUnit }
}

/// One sample of every `Event` variant, every optional field set and every
/// list non-empty, so that the inner shapes are pinned too.
fn event_samples() -> Vec<Event> {
    use EnvEvent as E;
    use TenantEvent as T;
    let hash = PasswordHash { salt: [7; 16], digest: [9; 32] };
    let tenant = [
        T::TenantInitialized { domain: "contoso.com".into(), name: "Contoso".into(), admin: id(1) },
        T::SkuAdded { sku: "D365_SALES".into(), kind: SkuKind::D365, seats: 25 },
        T::SkuSeatsChanged { sku: "D365_SALES".into(), old: 25, new: 300 },
        T::UserCreated {
            id: id(2),
            upn: "ada@contoso.com".into(),
            user_type: UserType::Guest,
            profile: profile(),
            password: hash.clone(),
            home_licenses: vec!["E5".into()],
        },
        T::UserUpdated {
            id: id(2),
            changes: vec![FieldChange { field: ProfileField::Mail, old: Some("a@x".into()), new: None }],
        },
        T::LicenseAssigned { id: id(2), sku: "D365_SALES".into() },
        T::LicenseRemoved { id: id(2), sku: "D365_SALES".into() },
        T::AdminRoleAdded { id: id(2), role: AdminRole::PowerPlatform },
        T::AdminRoleRemoved { id: id(2), role: AdminRole::PowerPlatform },
        T::UserBlocked { id: id(2) },
        T::UserUnblocked { id: id(2) },
        T::UserDeleted { id: id(2) },
        T::UserRestored { id: id(2), licenses_not_restored: vec!["OFFICE".into()] },
        T::PasswordReset { id: id(2), password: hash },
        T::InvitationIssued { id: id(3), sku: Some("POWER_APPS".into()), expires_at: at() },
        T::InvitationAccepted { id: id(3), sku: Some("POWER_APPS".into()) },
        T::GroupCreated { id: id(4), name: "Sales".into() },
        T::GroupMemberAdded { group: id(4), member: Member::User(id(2)) },
        T::GroupMemberRemoved { group: id(4), member: Member::Group(id(5)) },
        T::GroupOwnerAdded { group: id(4), user: id(2) },
        T::EnvironmentRegistered { id: id(6), name: "Prod".into() },
        T::UserCreatedV2 {
            id: id(7),
            upn: "bob@contoso.com".into(),
            user_type: UserType::Member,
            profile: profile(),
            home_licenses: vec!["E3".into()],
            temporary_password: true,
        },
        T::PasswordResetV2 { id: id(7) },
        T::SkuIdentified { sku: "D365_SALES".into(), id: id(13) },
    ];
    let env = [
        E::EnvironmentCreated {
            id: id(6),
            name: "Prod".into(),
            env_type: EnvType::Sandbox,
            dataverse: true,
            security_group: Some(id(4)),
            app_pass: 3,
            apps: vec![App::Sales, App::CustomerService],
            creator: id(1),
        },
        E::SecurityGroupChanged { old: None, new: Some(id(4)) },
        E::AppPassChanged { old: 3, new: 5 },
        E::SettingChanged { name: "auditing".into(), old: Some("off".into()), new: Some("on".into()) },
        E::BusinessUnitCreated { id: id(8), name: "EMEA".into(), parent: Some(id(9)) },
        E::RoleCreated {
            id: id(10),
            name: "Salesperson".into(),
            business_unit: id(8),
            privileges: vec![privilege()],
            app_access: true,
        },
        E::SystemUserAdded {
            id: id(11),
            kind: UserKind::User,
            object_id: Some(id(2)),
            application_id: Some(id(12)),
            domainname: "ada@contoso.com".into(),
            columns: vec![(Column::FirstName, "Ada".into())],
            access_mode: AccessMode::NonInteractive,
            is_licensed: true,
            is_disabled: false,
            business_unit: id(8),
            added_by: AddedBy::Sync,
            entitlement: Some(Entitlement::License("D365_SALES".into())),
        },
        E::SystemUserUpdated {
            id: id(11),
            changes: vec![ColumnChange { column: Column::City, old: None, new: Some("Lyon".into()) }],
        },
        E::SystemUserEnabled { id: id(11), entitlement: Some(Entitlement::AppPass) },
        E::SystemUserDisabled { id: id(11), reason: "S2: no license".into() },
        E::LicensedChanged { id: id(11), is_licensed: false },
        E::AccessModeChanged { id: id(11), old: AccessMode::ReadWrite, new: AccessMode::Administrative },
        E::RoleAssigned { user: id(11), role: id(10) },
        E::RoleRemoved { user: id(11), role: id(10) },
        E::EmailEditedInEnvironment { id: id(11), old: Some("a@x".into()), new: Some("b@x".into()) },
        E::RecordsReassigned { from: id(13), to: id(11) },
        E::UserBusinessUnitChanged { user: id(11), old: id(8), new: id(9) },
        E::RolePrivilegeSet {
            role: id(10),
            table: "contact".into(),
            operation: Operation::Delete,
            old: Level::None,
            new: Level::Organization,
        },
        E::TeamCreated { id: id(14), name: "Sales team".into(), business_unit: id(8), group: Some(id(4)) },
        E::TeamMemberAdded { team: id(14), user: id(11) },
        E::TeamMemberRemoved { team: id(14), user: id(11) },
        E::TeamRoleAssigned { team: id(14), role: id(10) },
        E::TeamRoleRemoved { team: id(14), role: id(10) },
        E::MailboxTestScheduled { user: id(11) },
        E::MailboxEnabled { user: id(11) },
        E::UnifiedRoutingEnabled { consented_by: id(1) },
        E::EntitlementChanged {
            id: id(11),
            old: Some(Entitlement::AppPass),
            new: Some(Entitlement::KeptMode),
        },
        E::SetupModeChanged { id: id(11), old: AccessMode::Administrative, new: AccessMode::ReadWrite },
        E::EnvironmentTypeChanged { old: EnvType::Sandbox, new: EnvType::Production },
        E::DataverseAdded,
        E::SystemUsersObserved {
            observed_at: at(),
            rows: vec![ObservedUser {
                id: id(12),
                object_id: Some(id(2)),
                application_id: Some(id(13)),
                domainname: Some("ada@contoso.com".into()),
                is_disabled: Some(false),
                access_mode: Some(4),
                is_licensed: Some(true),
                business_unit: Some("Prod".into()),
                roles: Some(BTreeSet::from(["Basic User".to_owned()])),
            }],
            gone: vec![id(14)],
        },
    ];
    let rejected = CommandRejected {
        command: "user license assign".into(),
        rule: "D4".into(),
        reason: "no free seat".into(),
        targets: vec!["ada@contoso.com".into()],
        environment: Some("Prod".into()),
    };
    let report = ReportGenerated { from: at(), to: at(), file: "q1.html".into(), sha256: [5; 32] };
    tenant
        .into_iter()
        .map(Event::Tenant)
        .chain([Event::CommandRejected(rejected)])
        .chain(env.into_iter().map(Event::Environment))
        .chain([Event::ReportGenerated(report)])
        .collect()
}

/// Each event's label, written for the test (not `Event::type_name`, which
/// names the V2 shapes as their elders): no `_` arm, so a new variant does
/// not compile until it is labelled here and given a sample above.
fn event_label(event: &Event) -> String {
    use EnvEvent as E;
    use TenantEvent as T;
    let name = match event {
        Event::CommandRejected(_) => return "CommandRejected".into(),
        Event::ReportGenerated(_) => return "ReportGenerated".into(),
        Event::Tenant(e) => match e {
            T::TenantInitialized { .. } => "TenantInitialized",
            T::SkuAdded { .. } => "SkuAdded",
            T::SkuSeatsChanged { .. } => "SkuSeatsChanged",
            T::UserCreated { .. } => "UserCreated",
            T::UserUpdated { .. } => "UserUpdated",
            T::LicenseAssigned { .. } => "LicenseAssigned",
            T::LicenseRemoved { .. } => "LicenseRemoved",
            T::AdminRoleAdded { .. } => "AdminRoleAdded",
            T::AdminRoleRemoved { .. } => "AdminRoleRemoved",
            T::UserBlocked { .. } => "UserBlocked",
            T::UserUnblocked { .. } => "UserUnblocked",
            T::UserDeleted { .. } => "UserDeleted",
            T::UserRestored { .. } => "UserRestored",
            T::PasswordReset { .. } => "PasswordReset",
            T::InvitationIssued { .. } => "InvitationIssued",
            T::InvitationAccepted { .. } => "InvitationAccepted",
            T::GroupCreated { .. } => "GroupCreated",
            T::GroupMemberAdded { .. } => "GroupMemberAdded",
            T::GroupMemberRemoved { .. } => "GroupMemberRemoved",
            T::GroupOwnerAdded { .. } => "GroupOwnerAdded",
            T::EnvironmentRegistered { .. } => "EnvironmentRegistered",
            T::UserCreatedV2 { .. } => "UserCreatedV2",
            T::PasswordResetV2 { .. } => "PasswordResetV2",
            T::SkuIdentified { .. } => "SkuIdentified",
        },
        Event::Environment(e) => match e {
            E::EnvironmentCreated { .. } => "EnvironmentCreated",
            E::SecurityGroupChanged { .. } => "SecurityGroupChanged",
            E::AppPassChanged { .. } => "AppPassChanged",
            E::SettingChanged { .. } => "SettingChanged",
            E::BusinessUnitCreated { .. } => "BusinessUnitCreated",
            E::RoleCreated { .. } => "RoleCreated",
            E::SystemUserAdded { .. } => "SystemUserAdded",
            E::SystemUserUpdated { .. } => "SystemUserUpdated",
            E::SystemUserEnabled { .. } => "SystemUserEnabled",
            E::SystemUserDisabled { .. } => "SystemUserDisabled",
            E::LicensedChanged { .. } => "LicensedChanged",
            E::AccessModeChanged { .. } => "AccessModeChanged",
            E::RoleAssigned { .. } => "RoleAssigned",
            E::RoleRemoved { .. } => "RoleRemoved",
            E::EmailEditedInEnvironment { .. } => "EmailEditedInEnvironment",
            E::RecordsReassigned { .. } => "RecordsReassigned",
            E::UserBusinessUnitChanged { .. } => "UserBusinessUnitChanged",
            E::RolePrivilegeSet { .. } => "RolePrivilegeSet",
            E::TeamCreated { .. } => "TeamCreated",
            E::TeamMemberAdded { .. } => "TeamMemberAdded",
            E::TeamMemberRemoved { .. } => "TeamMemberRemoved",
            E::TeamRoleAssigned { .. } => "TeamRoleAssigned",
            E::TeamRoleRemoved { .. } => "TeamRoleRemoved",
            E::MailboxTestScheduled { .. } => "MailboxTestScheduled",
            E::MailboxEnabled { .. } => "MailboxEnabled",
            E::UnifiedRoutingEnabled { .. } => "UnifiedRoutingEnabled",
            E::EntitlementChanged { .. } => "EntitlementChanged",
            E::SetupModeChanged { .. } => "SetupModeChanged",
            E::EnvironmentTypeChanged { .. } => "EnvironmentTypeChanged",
            E::DataverseAdded => "DataverseAdded",
            E::SystemUsersObserved { .. } => "SystemUsersObserved",
        },
    };
    let outer = if matches!(event, Event::Tenant(_)) { "Tenant" } else { "Environment" };
    format!("{outer}::{name}")
}

/// The enums that events hold are stored as their positions too: each of
/// their variants, with an exhaustive label, encoded alone with the
/// configuration `events::encode` uses (bincode's standard).
fn nested_samples() -> Vec<(String, Vec<u8>)> {
    fn pin<T: Serialize>(out: &mut Vec<(String, Vec<u8>)>, label: String, value: &T) {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes");
        out.push((label, bytes));
    }
    let mut out = Vec::new();
    for v in
        [SkuKind::D365, SkuKind::PowerApps, SkuKind::M365Dataverse, SkuKind::Office, SkuKind::MarketingTenant]
    {
        let name = match v {
            SkuKind::D365 => "D365",
            SkuKind::PowerApps => "PowerApps",
            SkuKind::M365Dataverse => "M365Dataverse",
            SkuKind::Office => "Office",
            SkuKind::MarketingTenant => "MarketingTenant",
        };
        pin(&mut out, format!("SkuKind::{name}"), &v);
    }
    for v in AdminRole::ALL {
        let name = match v {
            AdminRole::Global => "Global",
            AdminRole::PowerPlatform => "PowerPlatform",
            AdminRole::Dynamics365 => "Dynamics365",
            AdminRole::UserAdmin => "UserAdmin",
            AdminRole::PasswordAdmin => "PasswordAdmin",
        };
        pin(&mut out, format!("AdminRole::{name}"), &v);
    }
    for v in [UserType::Member, UserType::Guest] {
        let name = match v {
            UserType::Member => "Member",
            UserType::Guest => "Guest",
        };
        pin(&mut out, format!("UserType::{name}"), &v);
    }
    for v in ProfileField::ALL {
        let name = match v {
            ProfileField::GivenName => "GivenName",
            ProfileField::Surname => "Surname",
            ProfileField::DisplayName => "DisplayName",
            ProfileField::JobTitle => "JobTitle",
            ProfileField::Department => "Department",
            ProfileField::Mail => "Mail",
            ProfileField::OfficePhone => "OfficePhone",
            ProfileField::MobilePhone => "MobilePhone",
            ProfileField::Fax => "Fax",
            ProfileField::StreetAddress => "StreetAddress",
            ProfileField::City => "City",
            ProfileField::State => "State",
            ProfileField::PostalCode => "PostalCode",
            ProfileField::Country => "Country",
        };
        pin(&mut out, format!("ProfileField::{name}"), &v);
    }
    for v in [Member::User(id(2)), Member::Group(id(5))] {
        let name = match v {
            Member::User(_) => "User",
            Member::Group(_) => "Group",
        };
        pin(&mut out, format!("Member::{name}"), &v);
    }
    for v in [
        EnvType::Production,
        EnvType::Sandbox,
        EnvType::Trial,
        EnvType::Developer,
        EnvType::Default,
        EnvType::Teams,
    ] {
        let name = match v {
            EnvType::Production => "Production",
            EnvType::Sandbox => "Sandbox",
            EnvType::Trial => "Trial",
            EnvType::Developer => "Developer",
            EnvType::Default => "Default",
            EnvType::Teams => "Teams",
        };
        pin(&mut out, format!("EnvType::{name}"), &v);
    }
    for v in [App::Sales, App::CustomerService] {
        let name = match v {
            App::Sales => "Sales",
            App::CustomerService => "CustomerService",
        };
        pin(&mut out, format!("App::{name}"), &v);
    }
    for v in [
        AccessMode::ReadWrite,
        AccessMode::Administrative,
        AccessMode::Read,
        AccessMode::SupportUser,
        AccessMode::NonInteractive,
        AccessMode::DelegatedAdmin,
    ] {
        let name = match v {
            AccessMode::ReadWrite => "ReadWrite",
            AccessMode::Administrative => "Administrative",
            AccessMode::Read => "Read",
            AccessMode::SupportUser => "SupportUser",
            AccessMode::NonInteractive => "NonInteractive",
            AccessMode::DelegatedAdmin => "DelegatedAdmin",
        };
        pin(&mut out, format!("AccessMode::{name}"), &v);
    }
    for v in
        [UserKind::User, UserKind::Application, UserKind::Stub, UserKind::DelegatedAdmin, UserKind::Support]
    {
        let name = match v {
            UserKind::User => "User",
            UserKind::Application => "Application",
            UserKind::Stub => "Stub",
            UserKind::DelegatedAdmin => "DelegatedAdmin",
            UserKind::Support => "Support",
        };
        pin(&mut out, format!("UserKind::{name}"), &v);
    }
    for v in Column::ALL {
        let name = match v {
            Column::FirstName => "FirstName",
            Column::LastName => "LastName",
            Column::FullName => "FullName",
            Column::JobTitle => "JobTitle",
            Column::InternalEmailAddress => "InternalEmailAddress",
            Column::MobilePhone => "MobilePhone",
            Column::Telephone1 => "Telephone1",
            Column::Fax => "Fax",
            Column::Line1 => "Line1",
            Column::City => "City",
            Column::StateOrProvince => "StateOrProvince",
            Column::PostalCode => "PostalCode",
            Column::Country => "Country",
        };
        pin(&mut out, format!("Column::{name}"), &v);
    }
    for v in [
        AddedBy::Sync,
        AddedBy::Access,
        AddedBy::AdminAdd,
        AddedBy::Refresh,
        AddedBy::Placeholder,
        AddedBy::AppUserCreate,
        AddedBy::Import,
    ] {
        let name = match v {
            AddedBy::Sync => "Sync",
            AddedBy::Access => "Access",
            AddedBy::AdminAdd => "AdminAdd",
            AddedBy::Refresh => "Refresh",
            AddedBy::Placeholder => "Placeholder",
            AddedBy::AppUserCreate => "AppUserCreate",
            AddedBy::Import => "Import",
        };
        pin(&mut out, format!("AddedBy::{name}"), &v);
    }
    for v in [
        Entitlement::License("D365_SALES".into()),
        Entitlement::AdminWithoutLicense,
        Entitlement::KeptMode,
        Entitlement::FreeDataversePlan("E3".into()),
        Entitlement::AppPass,
        Entitlement::MarketingTenant("MKT".into()),
    ] {
        let name = match v {
            Entitlement::License(_) => "License",
            Entitlement::AdminWithoutLicense => "AdminWithoutLicense",
            Entitlement::KeptMode => "KeptMode",
            Entitlement::FreeDataversePlan(_) => "FreeDataversePlan",
            Entitlement::AppPass => "AppPass",
            Entitlement::MarketingTenant(_) => "MarketingTenant",
        };
        pin(&mut out, format!("Entitlement::{name}"), &v);
    }
    for v in Operation::ALL {
        let name = match v {
            Operation::Create => "Create",
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Delete => "Delete",
            Operation::Append => "Append",
            Operation::AppendTo => "AppendTo",
            Operation::Assign => "Assign",
            Operation::Share => "Share",
        };
        pin(&mut out, format!("Operation::{name}"), &v);
    }
    for v in Level::ALL {
        let name = match v {
            Level::None => "None",
            Level::User => "User",
            Level::BusinessUnit => "BusinessUnit",
            Level::ParentChild => "ParentChild",
            Level::Organization => "Organization",
        };
        pin(&mut out, format!("Level::{name}"), &v);
    }
    out
}

/// How many variants serde knows `T` to have: the count in the error for an
/// index far past the end (`expected variant index 0 <= i < N`), so a
/// variant that the samples forgot is counted even though nothing names it.
fn variant_count_in(bytes: &[u8], error: impl FnOnce(&[u8]) -> String) -> usize {
    let message = error(bytes);
    let count = message.rsplit("0 <= i < ").next().and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    count.unwrap_or_else(|| panic!("serde names no variant count in: {message}"))
}

fn nested_count<T: DeserializeOwned>() -> usize {
    // 250 is the largest index bincode writes in one byte.
    variant_count_in(&[250], |bytes| {
        match bincode::serde::decode_from_slice::<T, _>(bytes, bincode::config::standard()) {
            Ok(_) => "decoded".into(),
            Err(e) => e.to_string(),
        }
    })
}

fn event_count(outer: u8) -> usize {
    variant_count_in(&[outer, 250], |bytes| format!("{:?}", decode(SCHEMA_VERSION, bytes)))
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/events.txt")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "an odd number of hex digits: {text}");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits")).collect()
}

/// Every sample, labelled: the events, then the nested enums' variants.
fn all_samples() -> Vec<(String, Vec<u8>, Option<Event>)> {
    let mut all: Vec<_> = event_samples()
        .into_iter()
        .map(|e| (event_label(&e), encode(&e).expect("a sample encodes"), Some(e)))
        .collect();
    all.extend(nested_samples().into_iter().map(|(label, bytes)| (label, bytes, None)));
    all
}

/// The golden file: `label hex` per line, `#` comments and blank lines skipped.
fn golden() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(golden_path()).unwrap_or_default();
    let mut lines = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (label, hex) = line.split_once(' ').unwrap_or_else(|| panic!("not `label hex`: {line}"));
        assert!(
            lines.insert(label.to_owned(), hex.trim().to_owned()).is_none(),
            "{label} twice in the golden file"
        );
    }
    lines
}

#[test]
fn every_variant_has_one_sample_and_serde_counts_no_more() {
    let samples = all_samples();
    let labels: Vec<&str> = samples.iter().map(|(l, _, _)| l.as_str()).collect();
    let unique: BTreeSet<&str> = labels.iter().copied().collect();
    assert_eq!(unique.len(), labels.len(), "each label once: {labels:?}");

    let count = |prefix: &str| labels.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("Tenant::"), event_count(0), "a TenantEvent variant without a sample");
    assert_eq!(count("CommandRejected"), 1);
    assert_eq!(count("Environment::"), event_count(2), "an EnvEvent variant without a sample");
    assert_eq!(count("ReportGenerated"), 1);
    assert_eq!(event_count(250), 4, "Event: Tenant, CommandRejected, Environment, ReportGenerated");

    let nested = [
        ("SkuKind::", nested_count::<SkuKind>()),
        ("AdminRole::", nested_count::<AdminRole>()),
        ("UserType::", nested_count::<UserType>()),
        ("ProfileField::", nested_count::<ProfileField>()),
        ("Member::", nested_count::<Member>()),
        ("EnvType::", nested_count::<EnvType>()),
        ("App::", nested_count::<App>()),
        ("AccessMode::", nested_count::<AccessMode>()),
        ("UserKind::", nested_count::<UserKind>()),
        ("Column::", nested_count::<Column>()),
        ("AddedBy::", nested_count::<AddedBy>()),
        ("Entitlement::", nested_count::<Entitlement>()),
        ("Operation::", nested_count::<Operation>()),
        ("Level::", nested_count::<Level>()),
    ];
    for (prefix, serde_count) in nested {
        assert_eq!(count(prefix), serde_count, "{prefix}: a variant without a sample");
    }
    let counted: usize = nested.iter().map(|(_, n)| n).sum::<usize>() + event_count(0) + 2 + event_count(2);
    assert_eq!(counted, labels.len(), "a sample of an enum not counted here");
}

#[test]
fn every_stored_shape_matches_its_golden_line_and_decodes_back_to_its_sample() {
    let samples = all_samples();
    let mut golden = golden();
    if std::env::var_os("USERTRAIL_BLESS_GOLDEN").is_some() {
        // Appends the new variants' lines; a landed line is never rewritten.
        let mut text = std::fs::read_to_string(golden_path()).unwrap_or_default();
        for (label, bytes, _) in &samples {
            if !golden.contains_key(label) {
                text.push_str(&format!("{label} {}\n", hex(bytes)));
                golden.insert(label.clone(), hex(bytes));
            }
        }
        std::fs::write(golden_path(), text).expect("the golden file is written");
    }
    let mut problems = Vec::new();
    for (label, bytes, event) in &samples {
        let Some(pinned) = golden.get(label) else {
            problems.push(format!(
                "{label}: no golden line (a new variant? USERTRAIL_BLESS_GOLDEN=1 appends it)"
            ));
            continue;
        };
        if *pinned != hex(bytes) {
            problems.push(format!(
                "{label}: its stored shape changed, so logs holding it no longer read\n  pinned {pinned}\n  now    {}",
                hex(bytes)
            ));
        }
        if let Some(event) = event {
            match decode(SCHEMA_VERSION, &unhex(pinned)) {
                Ok(back) if back == *event => {}
                other => {
                    problems.push(format!("{label}: its pinned bytes decode to {other:?}, not the sample"))
                }
            }
        }
    }
    let sampled: BTreeSet<&String> = samples.iter().map(|(l, _, _)| l).collect();
    for label in golden.keys().filter(|l| !sampled.contains(l)) {
        problems.push(format!("{label}: pinned but no longer sampled (a landed variant is never removed)"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_samples_stand_in_declaration_order_so_the_file_reads_as_the_schema() {
    // bincode writes a variant as its position: the i-th sample of each enum
    // must carry tag i, so a label can never pin another variant's bytes.
    let mut next = [0u8; 3];
    for event in event_samples() {
        let bytes = encode(&event).expect("a sample encodes");
        let outer = bytes[0] as usize;
        // CommandRejected and ReportGenerated are structs: no inner tag.
        if outer == 1 || outer == 3 {
            continue;
        }
        assert_eq!(bytes[1], next[outer], "{} stands at position {}", event_label(&event), bytes[1]);
        next[outer] += 1;
    }
    assert_eq!(next[0] as usize, event_count(0));
    assert_eq!(next[2] as usize, event_count(2));
}
