//! `import graph`: reads Microsoft Graph exports (GET /users, /groups with
//! members and owners, /subscribedSkus) in any of the shapes Graph and Graph
//! Data Connect write them, and turns them into a `domain::import::Export`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use domain::events::{ProfileField, SkuKind};
use domain::import::{Export, ImportedGroup, ImportedMember, ImportedSku, ImportedUser, UserPlan};
use domain::tenant::{Tenant, TenantCommand};
use domain::Upn;
use uuid::Uuid;

use crate::error::{usage, CliError};

mod entra;
mod json;

use json::{Json, Keys, Picked, PickedOf};

/// skuPartNumbers whose kind is known; any other is `office` unless overridden.
pub const WELL_KNOWN_SKUS: [(&str, SkuKind); 30] = [
    ("DYN365_ENTERPRISE_SALES", SkuKind::D365),
    ("DYN365_ENTERPRISE_CUSTOMER_SERVICE", SkuKind::D365),
    ("DYN365_ENTERPRISE_PLAN1", SkuKind::D365),
    ("DYN365_ENTERPRISE_FIELD_SERVICE", SkuKind::D365),
    ("DYN365_ENTERPRISE_TEAM_MEMBERS", SkuKind::D365),
    ("DYN365_TEAM_MEMBERS", SkuKind::D365),
    ("DYN365_SALES_PREMIUM", SkuKind::D365),
    ("DYN365_SALES_PRO", SkuKind::D365),
    ("D365_SALES_PRO", SkuKind::D365),
    ("DYN365_CUSTOMER_SERVICE_PRO", SkuKind::D365),
    ("POWERAPPS_PER_USER", SkuKind::PowerApps),
    ("POWERAPPS_PER_APP", SkuKind::PowerApps),
    ("POWERAPPS_PER_APP_NEW", SkuKind::PowerApps),
    ("POWERAPPS_P2", SkuKind::PowerApps),
    ("POWERAPPS_DEV", SkuKind::PowerApps),
    ("STANDARDPACK", SkuKind::M365Dataverse),
    ("ENTERPRISEPACK", SkuKind::M365Dataverse),
    ("ENTERPRISEPREMIUM", SkuKind::M365Dataverse),
    ("SPE_E3", SkuKind::M365Dataverse),
    ("SPE_E5", SkuKind::M365Dataverse),
    ("SPB", SkuKind::M365Dataverse),
    ("O365_BUSINESS_ESSENTIALS", SkuKind::M365Dataverse),
    ("O365_BUSINESS_PREMIUM", SkuKind::M365Dataverse),
    ("EXCHANGESTANDARD", SkuKind::Office),
    ("EXCHANGEENTERPRISE", SkuKind::Office),
    ("OFFICESUBSCRIPTION", SkuKind::Office),
    ("O365_BUSINESS", SkuKind::Office),
    ("POWER_BI_PRO", SkuKind::Office),
    ("DYN365_MARKETING_APP", SkuKind::MarketingTenant),
    ("DYN365_MARKETING_ATTACH", SkuKind::MarketingTenant),
];

/// The kind of a skuPartNumber: an override, a well-known part, else office.
pub fn kind_of(part: &str, overrides: &BTreeMap<String, SkuKind>) -> SkuKind {
    overrides
        .get(&part.to_uppercase())
        .copied()
        .or_else(|| WELL_KNOWN_SKUS.iter().find(|(p, _)| p.eq_ignore_ascii_case(part)).map(|(_, k)| *k))
        .unwrap_or(SkuKind::Office)
}

/// A guest's own address: Graph names guests `jane_fabrikam.com#EXT#@contoso...`;
/// their `mail`, or the part before `#EXT#` with its last `_` back to `@`.
pub fn guest_address(upn: &str, mail: Option<String>) -> String {
    let Some((external, _)) = upn.split_once("#EXT#") else {
        return upn.to_owned();
    };
    if let Some(mail) = mail.filter(|m| m.contains('@')) {
        return mail;
    }
    match external.rfind('_') {
        Some(at) => format!("{}@{}", &external[..at], &external[at + 1..]),
        None => external.to_owned(),
    }
}

/// Profile fields by their Graph attribute names.
const FIELDS: [(&str, ProfileField); 13] = [
    ("givenName", ProfileField::GivenName),
    ("surname", ProfileField::Surname),
    ("displayName", ProfileField::DisplayName),
    ("jobTitle", ProfileField::JobTitle),
    ("department", ProfileField::Department),
    ("mail", ProfileField::Mail),
    ("mobilePhone", ProfileField::MobilePhone),
    ("faxNumber", ProfileField::Fax),
    ("streetAddress", ProfileField::StreetAddress),
    ("city", ProfileField::City),
    ("state", ProfileField::State),
    ("postalCode", ProfileField::PostalCode),
    ("country", ProfileField::Country),
];

/// The keys `import graph` reads on a user (GET /users).
struct UserKeys;

impl Keys for UserKeys {
    const KEYS: &'static [&'static str] = &[
        "id",
        "userPrincipalName",
        "userType",
        "accountEnabled",
        "businessPhones",
        "assignedLicenses",
        "givenName",
        "surname",
        "displayName",
        "jobTitle",
        "department",
        "mail",
        "mobilePhone",
        "faxNumber",
        "streetAddress",
        "city",
        "state",
        "postalCode",
        "country",
    ];
    const REQUIRED: &'static [&'static str] = &["id"];
}

/// The keys read on a subscribed SKU (GET /subscribedSkus).
struct SkuKeys;

impl Keys for SkuKeys {
    const KEYS: &'static [&'static str] = &["skuId", "skuPartNumber", "prepaidUnits"];
    const REQUIRED: &'static [&'static str] = &["skuId"];
}

/// The keys read on a group (GET /groups with members and owners expanded).
struct GroupKeys;

impl Keys for GroupKeys {
    const KEYS: &'static [&'static str] = &["id", "displayName", "members", "owners"];
    const REQUIRED: &'static [&'static str] = &["id"];
}

/// The objects of one export file, keeping the keys of `K`; see [`json::items`].
fn read_objects<'t, K: Keys>(file: &Path, text: &'t str) -> Result<Vec<Picked<'t>>, CliError> {
    Ok(json::items::<PickedOf<K>>(file, text)?.into_iter().map(|p| p.object).collect())
}

fn string(o: &Picked, key: &str) -> Option<String> {
    o.get(key).and_then(Json::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Refuses a user whose known fields have the wrong JSON type: a value we
/// cannot read must not be mistaken for an absent one (and cleared or skipped).
fn check_user_types(file: &Path, n: usize, o: &Picked) -> Result<(), CliError> {
    let texts = FIELDS.iter().map(|(key, _)| *key).chain(["userPrincipalName", "userType", "mail"]);
    for key in texts {
        if o.get(key).is_some_and(|v| !matches!(v, Json::Text(_) | Json::Null)) {
            return usage(format!("{} item {n}: \"{key}\" must be a string or null", file.display()));
        }
    }
    if o.get("accountEnabled").is_some_and(|v| !matches!(v, Json::Bool(_) | Json::Null)) {
        return usage(format!("{} item {n}: \"accountEnabled\" must be true, false or null", file.display()));
    }
    for key in ["businessPhones", "assignedLicenses"] {
        if o.get(key).is_some_and(|v| !matches!(v, Json::Array(_) | Json::Null)) {
            return usage(format!("{} item {n}: \"{key}\" must be an array or null", file.display()));
        }
    }
    Ok(())
}

fn uuid(file: &Path, n: usize, o: &Picked, key: &str) -> Result<Uuid, CliError> {
    match o.get(key).and_then(Json::as_str).map(|s| Uuid::parse_str(s.trim())) {
        Some(Ok(id)) => Ok(id),
        Some(Err(_)) => usage(format!("{} item {n}: \"{key}\" is not a UUID", file.display())),
        None => usage(format!("{} item {n}: \"{key}\" is missing", file.display())),
    }
}

/// What `import graph` was given.
pub struct Files {
    /// GET /users pages.
    pub users: Vec<PathBuf>,
    /// GET /groups pages (members and owners expanded).
    pub groups: Vec<PathBuf>,
    /// GET /subscribedSkus pages.
    pub skus: Vec<PathBuf>,
    /// `--sku-kind PART=KIND` overrides.
    pub kinds: BTreeMap<String, SkuKind>,
    /// `--keep-missing`.
    pub keep_missing: bool,
    /// An Entra admin center users download (`import entra-csv`), read
    /// besides (or instead of) the Graph pages.
    pub entra_csv: Option<PathBuf>,
}

/// The users of one export file, in order.
fn users_of(file: &Path, sku_parts: &BTreeMap<Uuid, String>) -> Result<Vec<ImportedUser>, CliError> {
    let text = json::read_text(file)?;
    let mut users = Vec::new();
    for (n, o) in read_objects::<UserKeys>(file, &text)?.iter().enumerate() {
        let n = n + 1;
        let id = uuid(file, n, o, "id")?;
        check_user_types(file, n, o)?;
        let guest = string(o, "userType").is_some_and(|t| t.eq_ignore_ascii_case("Guest"));
        let upn = match string(o, "userPrincipalName")
            .map(|u| guest_address(&u, string(o, "mail")))
            .map(|u| Upn::parse(&u))
        {
            Some(Ok(upn)) => upn,
            Some(Err(why)) => return usage(format!("{} item {n}: {why}", file.display())),
            None => return usage(format!("{} item {n}: \"userPrincipalName\" is missing", file.display())),
        };
        let mut profile = BTreeMap::new();
        for (key, field) in FIELDS {
            // Entra always has a display name: a null one is an export artifact, not a request to clear.
            let null_name = field == ProfileField::DisplayName && o.get(key) == Some(&Json::Null);
            if o.contains_key(key) && !null_name {
                profile.insert(field, string(o, key));
            }
        }
        if let Some(phones) = o.get("businessPhones") {
            let first = phones.as_array().and_then(|p| p.first()).and_then(Json::as_str).map(str::to_owned);
            profile.insert(ProfileField::OfficePhone, first.filter(|p| !p.trim().is_empty()));
        }
        // Microsoft's limits, refused while reading (issue 25, finding 3).
        for (field, value) in &profile {
            if let Some(value) = value {
                domain::limits::check_profile_field(*field, value)
                    .map_err(|why| CliError::Usage(format!("{} item {n}: {why}", file.display())))?;
            }
        }
        let mut licenses = std::collections::BTreeSet::new();
        for license in o.get("assignedLicenses").and_then(Json::as_array).into_iter().flatten() {
            // A plain string is a skuPartNumber, as `user list --json` writes
            // it: the tool's own output imports again.
            if let Some(part) = license.as_str() {
                licenses.insert(part.to_owned());
                continue;
            }
            let Some(sku_id) =
                license.get("skuId").and_then(Json::as_str).and_then(|s| Uuid::parse_str(s).ok())
            else {
                return usage(format!("{} item {n}: an assigned license has no valid skuId", file.display()));
            };
            match sku_parts.get(&sku_id) {
                Some(part) => licenses.insert(part.clone()),
                None => {
                    return usage(format!(
                        "{} item {n}: license {sku_id} of {upn} is not in the subscribedSkus export (pass it with --skus)",
                        file.display()
                    ))
                }
            };
        }
        users.push(ImportedUser {
            id,
            upn,
            profile,
            account_enabled: match o.get("accountEnabled") {
                Some(Json::Bool(enabled)) => Some(*enabled),
                _ => None,
            },
            guest,
            licenses: Some(licenses),
        });
    }
    Ok(users)
}

/// Reads the user files on up to as many threads as there are cores (a
/// large tenant's export is a hundred pages or more); the users, and the
/// first error met, come out in file order whatever thread read them.
fn read_users(files: &[PathBuf], sku_parts: &BTreeMap<Uuid, String>) -> Result<Vec<ImportedUser>, CliError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Read = (usize, Result<Vec<ImportedUser>, CliError>);
    let read: Vec<Vec<Read>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break mine };
                        mine.push((i, users_of(file, sku_parts)));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut by_file: Vec<Read> = read.into_iter().flatten().collect();
    if by_file.len() != files.len() {
        return usage("a thread reading the export failed");
    }
    by_file.sort_by_key(|(i, _)| *i);
    let mut users = Vec::new();
    for (_, read) in by_file {
        users.extend(read?);
    }
    Ok(users)
}

/// Reads every file into one export; any bad file or item: exit 2, nothing read.
pub fn read_export(files: &Files) -> Result<Export, CliError> {
    let mut sku_parts: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut skus = Vec::new();
    for file in &files.skus {
        let text = json::read_text(file)?;
        for (n, o) in read_objects::<SkuKeys>(file, &text)?.iter().enumerate() {
            let id = uuid(file, n + 1, o, "skuId")?;
            let Some(part) = string(o, "skuPartNumber") else {
                return usage(format!("{} item {}: \"skuPartNumber\" is missing", file.display(), n + 1));
            };
            let seats =
                o.get("prepaidUnits").and_then(|p| p.get("enabled")).and_then(Json::as_i64).unwrap_or(0);
            let seats = u32::try_from(seats.max(0)).unwrap_or(u32::MAX);
            sku_parts.insert(id, part.clone());
            skus.push(ImportedSku { kind: kind_of(&part, &files.kinds), part, seats });
        }
    }
    let mut users = read_users(&files.users, &sku_parts)?;
    if let Some(file) = &files.entra_csv {
        users.extend(entra::users(file)?);
    }
    let groups = if files.groups.is_empty() {
        None
    } else {
        let mut groups = Vec::new();
        for file in &files.groups {
            let text = json::read_text(file)?;
            for (n, o) in read_objects::<GroupKeys>(file, &text)?.iter().enumerate() {
                let id = uuid(file, n + 1, o, "id")?;
                let Some(name) = string(o, "displayName") else {
                    return usage(format!("{} item {}: \"displayName\" is missing", file.display(), n + 1));
                };
                let objects = |key: &str| -> Vec<(String, Uuid)> {
                    o.get(key)
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|m| {
                            let kind = m
                                .get("@odata.type")
                                .and_then(Json::as_str)
                                .unwrap_or("#microsoft.graph.user");
                            let id =
                                m.get("id").and_then(Json::as_str).and_then(|s| Uuid::parse_str(s).ok())?;
                            Some((kind.to_owned(), id))
                        })
                        .collect()
                };
                // Without `$expand=members` there is no "members" key: leave members as they are.
                let members = o.contains_key("members").then(|| objects("members"));
                let members = members.map(|m| {
                    m.into_iter()
                        .filter_map(|(kind, id)| match kind.as_str() {
                            "#microsoft.graph.user" => Some(ImportedMember::User(id)),
                            "#microsoft.graph.group" => Some(ImportedMember::Group(id)),
                            // Devices, service principals and contacts are not members here.
                            _ => None,
                        })
                        .collect()
                });
                let owners = objects("owners")
                    .into_iter()
                    .filter(|(k, _)| k == "#microsoft.graph.user")
                    .map(|(_, id)| id)
                    .collect();
                groups.push(ImportedGroup { id, name, members, owners });
            }
        }
        Some(groups)
    };
    Ok(Export {
        users,
        groups,
        skus: (!files.skus.is_empty()).then_some(skus),
        keep_missing: files.keep_missing,
    })
}

/// [`domain::import::plan`], with the export's users planned in slices on
/// up to as many threads as there are cores: each user's commands depend on
/// the directory alone (a large export spends a tenth of a second here).
pub fn plan(tenant: &Tenant, mut export: Export, now: DateTime<Utc>) -> Vec<TenantCommand> {
    /// Fewer users than this are planned on the calling thread.
    const SLICE: usize = 4_096;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut users = std::mem::take(&mut export.users);
    let per = users.len().div_ceil(cores).max(SLICE);
    // Each slice is taken by the thread that plans it, or here if no thread
    // could be started.
    let mut slices = Vec::new();
    while users.len() > per {
        let rest = users.split_off(per);
        slices.push(Mutex::new(std::mem::replace(&mut users, rest)));
    }
    slices.push(Mutex::new(users));
    let take = |slice: &Mutex<Vec<ImportedUser>>| {
        std::mem::take(&mut *slice.lock().unwrap_or_else(|p| p.into_inner()))
    };
    let users = std::thread::scope(|scope| {
        let mut parts = Vec::new();
        for slice in &slices {
            let thread = std::thread::Builder::new()
                .spawn_scoped(scope, move || UserPlan::of(tenant, take(slice), now));
            parts.push(thread.map_err(|_| UserPlan::of(tenant, take(slice), now)));
        }
        parts.into_iter().fold(UserPlan::default(), |plan, part| {
            let part = part.map_or_else(
                |here| here,
                |thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
            plan.join(part)
        })
    });
    domain::import::plan_with(tenant, &export, users, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many user objects a file holds, or why it cannot be read.
    fn count(file: &Path) -> Result<usize, CliError> {
        let text = json::read_text(file)?;
        Ok(read_objects::<UserKeys>(file, &text)?.len())
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn pages_arrays_and_json_lines_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let page = write(
            &dir,
            "page.json",
            r#"{"@odata.context":"x","value":[{"id":"1"},{"id":"2"}],"@odata.nextLink":"https://graph"}"#,
        );
        let array = write(&dir, "array.json", r#"[{"id":"1"}]"#);
        let lines = write(&dir, "lines.json", "{\"id\":\"1\"}\n\n{\"id\":\"2\",\"extra\":null}\n");
        let single = write(&dir, "single.json", r#"{"id":"1","userPrincipalName":"a@contoso.com"}"#);
        assert_eq!(count(&page).unwrap(), 2);
        assert_eq!(count(&array).unwrap(), 1);
        assert_eq!(count(&lines).unwrap(), 2);
        assert_eq!(count(&single).unwrap(), 1);
    }

    #[test]
    fn bad_json_names_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let broken = write(&dir, "broken.json", "{\"value\": [\n  {\"id\": \"1\",,}\n]}");
        let err = count(&broken).unwrap_err().to_string();
        assert!(err.contains("broken.json at line 2, column"), "{err}");
        let lines = write(&dir, "lines.json", "{\"id\":\"1\"}\n{\"id\": oops}\n");
        let err = count(&lines).unwrap_err().to_string();
        assert!(err.contains("lines.json at line 2, column"), "{err}");
    }

    #[test]
    fn a_page_value_that_is_not_an_array_or_an_item_that_is_not_an_object_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("null.json", r#"{"value": null}"#), ("text.json", r#"{"value": "x"}"#)] {
            let err = count(&write(&dir, name, text)).unwrap_err().to_string();
            assert!(err.contains(&format!("{name}: \"value\" is not an array")), "{err}");
        }
        let twice = write(&dir, "twice.json", r#"{"value": 1, "value": [{"id": "1"}, {"id": "2"}]}"#);
        assert_eq!(count(&twice).unwrap(), 2, "a repeated key counts once, the last");
        let err =
            count(&write(&dir, "items.json", r#"{"value": [{"id": "1"}, 7]}"#)).unwrap_err().to_string();
        assert!(
            err.contains("unexpected JSON in")
                && err.contains("items.json at line 1, column")
                && err.contains("expected an object"),
            "{err}"
        );
    }

    #[test]
    fn users_keep_the_last_of_duplicate_keys_read_escapes_and_skip_what_the_import_does_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "dup.json",
            r#"{"value": [{"id": "00000000-0000-4000-8000-000000000001", "city": "Oslo",
                "userPrincipalName": "a\u0040contoso.com", "extensionAttributes": {"deep": [1, {"x": null}]},
                "city": "Lyon", "accountEnabled": false}]}"#,
        );
        let users = read_users(&[file], &BTreeMap::new()).unwrap();
        assert_eq!(users[0].upn.to_string(), "a@contoso.com");
        assert_eq!(users[0].profile.get(&ProfileField::City), Some(&Some("Lyon".to_owned())));
        assert_eq!(users[0].account_enabled, Some(false));
        assert_eq!(users[0].profile.len(), 1, "only the fields the export mentions: {:?}", users[0].profile);
    }

    #[test]
    fn pages_read_on_several_threads_come_out_in_file_order_with_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let page = |name: &str, from: usize| {
            let users: Vec<String> = (from..from + 3)
                .map(|i| {
                    format!(
                        r#"{{"id":"00000000-0000-4000-8000-{i:012}","userPrincipalName":"u{i}@contoso.com"}}"#
                    )
                })
                .collect();
            write(&dir, name, &format!(r#"{{"value":[{}]}}"#, users.join(",")))
        };
        let files: Vec<PathBuf> = (0..9).map(|k| page(&format!("p{k}.json"), k * 3)).collect();
        let users = read_users(&files, &BTreeMap::new()).unwrap();
        let upns: Vec<String> = users.iter().map(|u| u.upn.to_string()).collect();
        assert_eq!(upns, (0..27).map(|i| format!("u{i}@contoso.com")).collect::<Vec<_>>());
        let mut bad = files.clone();
        bad[6] = write(&dir, "late.json", "{oops");
        bad[2] = write(&dir, "early.json", "[1]");
        let err = read_users(&bad, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("early.json"), "the first bad file in order is named: {err}");
    }

    #[test]
    fn an_export_planned_on_several_threads_plans_what_one_thread_plans() {
        let users: Vec<ImportedUser> = (0..10_000u128)
            .map(|n| ImportedUser {
                id: Uuid::from_u128(n + 1),
                upn: Upn::parse(&format!("u{n}@contoso.onmicrosoft.com")).unwrap(),
                profile: [(ProfileField::City, Some(format!("City {n}")))].into_iter().collect(),
                account_enabled: Some(n % 7 != 0),
                guest: false,
                licenses: Some(Default::default()),
            })
            .collect();
        let export = Export { users, ..Export::default() };
        let now = DateTime::from_timestamp(1_770_000_000, 0).unwrap();
        let tenant = Tenant::default();
        let threads = plan(&tenant, export.clone(), now);
        assert!(threads.len() > 10_000, "creates and blocks: {}", threads.len());
        assert_eq!(threads, domain::import::plan(&tenant, export, now));
    }

    #[test]
    fn d10_graph_guest_upns_become_their_own_address() {
        assert_eq!(
            guest_address("jane_fabrikam.com#EXT#@contoso.onmicrosoft.com", None),
            "jane@fabrikam.com"
        );
        assert_eq!(
            guest_address("j_doe_fabrikam.com#EXT#@contoso.onmicrosoft.com", None),
            "j_doe@fabrikam.com"
        );
        assert_eq!(
            guest_address("x#EXT#@contoso.onmicrosoft.com", Some("jane@fabrikam.com".into())),
            "jane@fabrikam.com"
        );
        assert_eq!(guest_address("alice@contoso.onmicrosoft.com", None), "alice@contoso.onmicrosoft.com");
    }

    #[test]
    fn sku_kinds_come_from_well_known_parts_overrides_or_office() {
        let mut overrides = BTreeMap::new();
        assert_eq!(kind_of("DYN365_ENTERPRISE_SALES", &overrides), SkuKind::D365);
        assert_eq!(kind_of("spe_e5", &overrides), SkuKind::M365Dataverse);
        assert_eq!(kind_of("SOMETHING_NEW", &overrides), SkuKind::Office);
        overrides.insert("SOMETHING_NEW".into(), SkuKind::PowerApps);
        assert_eq!(kind_of("something_new", &overrides), SkuKind::PowerApps);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_an_error_or_objects_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz.json");
            std::fs::write(&path, &bytes).unwrap();
            let _ = count(&path);
        }
    }
}
