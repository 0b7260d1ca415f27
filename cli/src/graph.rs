//! `import graph`: reads Microsoft Graph exports (GET /users, /groups with
//! members and owners, /subscribedSkus) in any of the shapes Graph and Graph
//! Data Connect write them, and turns them into a `domain::import::Export`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use domain::events::{ProfileField, SkuKind};
use domain::import::{Export, ImportedGroup, ImportedMember, ImportedSku, ImportedUser, UserPlan};
use domain::tenant::{Tenant, TenantCommand};
use domain::Upn;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::{usage, CliError};

mod entra;
pub(crate) mod json;
pub mod skus;

use json::{Field, Id, Key, Str};

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

/// `"id"`: a user's or a group's.
enum ObjectId {}

impl Key for ObjectId {
    const NAME: &'static str = "id";
}

/// `"skuId"`.
enum SkuId {}

impl Key for SkuId {
    const NAME: &'static str = "skuId";
}

/// Trimmed, and none if empty.
fn trimmed(s: &Str) -> Option<String> {
    Some(s.0.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A user of GET /users (or of `user list --json`): what the import reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser<'a> {
    #[serde(borrow)]
    id: Id<'a, ObjectId>,
    #[serde(default, borrow)]
    user_principal_name: Field<Str<'a>>,
    #[serde(default, borrow)]
    user_type: Field<Str<'a>>,
    #[serde(default)]
    account_enabled: Field<bool>,
    #[serde(default, borrow)]
    business_phones: Field<Vec<Str<'a>>>,
    #[serde(default, borrow)]
    assigned_licenses: Field<Vec<License<'a>>>,
    #[serde(default, borrow)]
    given_name: Field<Str<'a>>,
    #[serde(default, borrow)]
    surname: Field<Str<'a>>,
    #[serde(default, borrow)]
    display_name: Field<Str<'a>>,
    #[serde(default, borrow)]
    job_title: Field<Str<'a>>,
    #[serde(default, borrow)]
    department: Field<Str<'a>>,
    #[serde(default, borrow)]
    mail: Field<Str<'a>>,
    #[serde(default, borrow)]
    mobile_phone: Field<Str<'a>>,
    #[serde(default, borrow)]
    fax_number: Field<Str<'a>>,
    #[serde(default, borrow)]
    street_address: Field<Str<'a>>,
    #[serde(default, borrow)]
    city: Field<Str<'a>>,
    #[serde(default, borrow)]
    state: Field<Str<'a>>,
    #[serde(default, borrow)]
    postal_code: Field<Str<'a>>,
    #[serde(default, borrow)]
    country: Field<Str<'a>>,
}

impl<'a> GraphUser<'a> {
    /// The profile fields, by their Graph names.
    fn profile(&self) -> [(&'static str, ProfileField, &Field<Str<'a>>); 13] {
        use ProfileField::*;
        [
            ("givenName", GivenName, &self.given_name),
            ("surname", Surname, &self.surname),
            ("displayName", DisplayName, &self.display_name),
            ("jobTitle", JobTitle, &self.job_title),
            ("department", Department, &self.department),
            ("mail", Mail, &self.mail),
            ("mobilePhone", MobilePhone, &self.mobile_phone),
            ("faxNumber", Fax, &self.fax_number),
            ("streetAddress", StreetAddress, &self.street_address),
            ("city", City, &self.city),
            ("state", State, &self.state),
            ("postalCode", PostalCode, &self.postal_code),
            ("country", Country, &self.country),
        ]
    }
}

/// A text field: `None` if absent, `Some(None)` if null or blank; one of
/// another type is refused.
fn field_text(key: &str, value: &Field<Str>) -> Result<Option<Option<String>>, String> {
    match value {
        Field::Absent => Ok(None),
        Field::Null => Ok(Some(None)),
        Field::Is(s) => Ok(Some(trimmed(s))),
        Field::Wrong(_) => Err(format!("\"{key}\" must be a string or null")),
    }
}

/// An assigned license: Graph's `{"skuId": ...}`, or a skuPartNumber as
/// `user list --json` writes it, so that the tool's own output imports again.
#[derive(Deserialize)]
#[serde(untagged)]
enum License<'a> {
    Sku {
        #[serde(rename = "skuId", borrow)]
        sku_id: Cow<'a, str>,
    },
    Part(#[serde(borrow)] Cow<'a, str>),
}

/// A subscribed SKU (GET /subscribedSkus).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphSku<'a> {
    #[serde(borrow)]
    sku_id: Id<'a, SkuId>,
    #[serde(borrow)]
    sku_part_number: Option<Str<'a>>,
    prepaid_units: Option<Units>,
    #[serde(default, borrow)]
    service_plans: Option<Vec<Plan<'a>>>,
}

/// One of a SKU's `servicePlans`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plan<'a> {
    #[serde(borrow)]
    service_plan_name: Option<Str<'a>>,
}

/// A SKU's `prepaidUnits`.
#[derive(Deserialize)]
struct Units {
    enabled: Option<i64>,
}

/// A group (GET /groups with members and owners expanded).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphGroup<'a> {
    #[serde(borrow)]
    id: Id<'a, ObjectId>,
    #[serde(borrow)]
    display_name: Option<Str<'a>>,
    #[serde(default, borrow)]
    members: Field<Vec<Member<'a>>>,
    #[serde(borrow)]
    owners: Option<Vec<Member<'a>>>,
}

/// A group's member or owner.
#[derive(Deserialize)]
struct Member<'a> {
    #[serde(rename = "@odata.type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
}

impl Member<'_> {
    /// Its type and id; one without a valid id is passed over.
    fn read(&self) -> Option<(&str, Uuid)> {
        let id = Uuid::parse_str(&self.id.as_ref()?.0).ok()?;
        Some((self.kind.as_ref().map_or("#microsoft.graph.user", |k| &k.0), id))
    }
}

fn uuid<K: Key>(file: &Path, n: usize, id: &Id<K>) -> Result<Uuid, CliError> {
    Uuid::parse_str(id.0.trim())
        .or_else(|_| usage(format!("{} item {n}: \"{}\" is not a UUID", file.display(), K::NAME)))
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

/// The users of one export file, in order, and the skuIds of their
/// licenses that `sku_parts` does not know.
fn users_of(file: &Path, sku_parts: &BTreeMap<Uuid, String>) -> Result<Read, CliError> {
    let text = json::read_text(file)?;
    let (mut users, mut unknown) = (Vec::new(), BTreeMap::new());
    for (n, u) in json::items::<GraphUser>(file, &text)?.iter().enumerate() {
        let n = n + 1;
        let bad = |why: String| CliError::Usage(format!("{} item {n}: {why}", file.display()));
        let id = uuid(file, n, &u.id)?;
        let upn = field_text("userPrincipalName", &u.user_principal_name).map_err(bad)?.flatten();
        let user_type = field_text("userType", &u.user_type).map_err(bad)?.flatten();
        let guest = user_type.is_some_and(|t| t.eq_ignore_ascii_case("Guest"));
        let mut profile = BTreeMap::new();
        for (key, field, value) in u.profile() {
            match field_text(key, value).map_err(bad)? {
                // Entra always has a display name: a null one is an export artifact, not a request to clear.
                Some(None) if field == ProfileField::DisplayName && matches!(value, Field::Null) => {}
                Some(value) => drop(profile.insert(field, value)),
                None => {}
            }
        }
        let account_enabled = match u.account_enabled {
            Field::Is(enabled) => Some(enabled),
            Field::Wrong(_) => return Err(bad("\"accountEnabled\" must be true, false or null".into())),
            Field::Absent | Field::Null => None,
        };
        match &u.business_phones {
            Field::Absent => {}
            Field::Null => drop(profile.insert(ProfileField::OfficePhone, None)),
            Field::Is(phones) => {
                let first = phones.first().map(|p| p.0.to_string()).filter(|p| !p.trim().is_empty());
                profile.insert(ProfileField::OfficePhone, first);
            }
            Field::Wrong(_) => {
                return Err(bad("\"businessPhones\" must be an array of strings or null".into()))
            }
        }
        let licenses = match &u.assigned_licenses {
            Field::Absent | Field::Null => &[][..],
            Field::Is(licenses) => licenses,
            Field::Wrong(_) => {
                return Err(bad(
                    "\"assignedLicenses\" must be an array of {\"skuId\": ...} objects or skuPartNumbers, or null"
                        .into(),
                ))
            }
        };
        let mail = profile.get(&ProfileField::Mail).cloned().flatten();
        let upn = match upn.map(|u| Upn::parse(&guest_address(&u, mail))) {
            Some(Ok(upn)) => upn,
            Some(Err(why)) => return Err(bad(why.to_string())),
            None => return Err(bad("\"userPrincipalName\" is missing".into())),
        };
        // Microsoft's limits, refused while reading (issue 25, finding 3).
        for (field, value) in &profile {
            if let Some(value) = value {
                domain::limits::check_profile_field(*field, value).map_err(bad)?;
            }
        }
        let mut parts = BTreeSet::new();
        for license in licenses {
            let sku_id = match license {
                License::Part(part) => {
                    parts.insert(part.to_string());
                    continue;
                }
                License::Sku { sku_id } => Uuid::parse_str(sku_id)
                    .map_err(|_| bad("an assigned license has no valid skuId".into()))?,
            };
            match sku_parts.get(&sku_id) {
                Some(part) => drop(parts.insert(part.clone())),
                None => drop(unknown.entry(sku_id).or_insert_with(|| format!("{} item {n}", file.display()))),
            }
        }
        users.push(ImportedUser { id, upn, profile, account_enabled, guest, licenses: Some(parts) });
    }
    Ok((users, unknown))
}

/// Users read, and the skuIds among their licenses that are not known,
/// where each was first met.
type Read = (Vec<ImportedUser>, BTreeMap<Uuid, String>);

/// Reads the user files on up to as many threads as there are cores (a
/// large tenant's export is a hundred pages or more); the users, and the
/// first error met, come out in file order whatever thread read them.
fn read_users(files: &[PathBuf], sku_parts: &BTreeMap<Uuid, String>) -> Result<Read, CliError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type ByFile = (usize, Result<Read, CliError>);
    let read: Vec<Vec<ByFile>> = std::thread::scope(|scope| {
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
    let mut by_file: Vec<ByFile> = read.into_iter().flatten().collect();
    if by_file.len() != files.len() {
        return usage("a thread reading the export failed");
    }
    by_file.sort_by_key(|(i, _)| *i);
    let (mut users, mut unknown) = (Vec::new(), BTreeMap::new());
    for (_, read) in by_file {
        let (more, not_known) = read?;
        users.extend(more);
        for (id, at) in not_known {
            unknown.entry(id).or_insert(at);
        }
    }
    Ok((users, unknown))
}

/// Reads every file into one export, naming licenses by the SKUs `tenant`
/// knows from earlier imports and those the export gives; any bad file or
/// item, or a license of a SKU known from neither: exit 2, nothing read.
pub fn read_export(files: &Files, tenant: &Tenant) -> Result<Export, CliError> {
    let mut sku_parts: BTreeMap<Uuid, String> =
        tenant.sku_ids().map(|(id, s)| (id, s.part.clone())).collect();
    let mut skus = Vec::new();
    for file in &files.skus {
        let text = json::read_text(file)?;
        for (n, s) in json::items::<GraphSku>(file, &text)?.iter().enumerate() {
            let id = uuid(file, n + 1, &s.sku_id)?;
            let Some(part) = s.sku_part_number.as_ref().and_then(trimmed) else {
                return usage(format!("{} item {}: \"skuPartNumber\" is missing", file.display(), n + 1));
            };
            let seats = s.prepaid_units.as_ref().and_then(|p| p.enabled).unwrap_or(0);
            let seats = u32::try_from(seats.max(0)).unwrap_or(u32::MAX);
            let plans: Vec<String> = s
                .service_plans
                .iter()
                .flatten()
                .filter_map(|p| p.service_plan_name.as_ref().and_then(trimmed))
                .collect();
            let (kind, why) = skus::classify(&part, Some(id), &plans, &files.kinds);
            sku_parts.insert(id, part.clone());
            skus.push(ImportedSku { id, part, kind, why, seats });
        }
    }
    let (mut users, unknown) = read_users(&files.users, &sku_parts)?;
    if !unknown.is_empty() {
        let named: Vec<String> = unknown.iter().take(5).map(|(id, at)| format!("{id} ({at})")).collect();
        let more = unknown.len().saturating_sub(named.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        return usage(format!(
            "licenses of SKUs not known from an earlier import: {}{more} (pass their subscribedSkus export with --skus)",
            named.join(", ")
        ));
    }
    if let Some(file) = &files.entra_csv {
        users.extend(entra::users(file)?);
    }
    let groups = if files.groups.is_empty() {
        None
    } else {
        let mut groups = Vec::new();
        for file in &files.groups {
            let text = json::read_text(file)?;
            for (n, g) in json::items::<GraphGroup>(file, &text)?.iter().enumerate() {
                let id = uuid(file, n + 1, &g.id)?;
                let Some(name) = g.display_name.as_ref().and_then(trimmed) else {
                    return usage(format!("{} item {}: \"displayName\" is missing", file.display(), n + 1));
                };
                // Without `$expand=members` there is no "members" key: leave members as they are.
                let members = match &g.members {
                    Field::Absent => None,
                    Field::Null => Some(Default::default()),
                    Field::Is(members) => Some(
                        members
                            .iter()
                            .filter_map(Member::read)
                            .filter_map(|(kind, id)| match kind {
                                "#microsoft.graph.user" => Some(ImportedMember::User(id)),
                                "#microsoft.graph.group" => Some(ImportedMember::Group(id)),
                                // Devices, service principals and contacts are not members here.
                                _ => None,
                            })
                            .collect(),
                    ),
                    Field::Wrong(_) => {
                        return usage(format!(
                            "{} item {}: \"members\" must be an array or null",
                            file.display(),
                            n + 1
                        ))
                    }
                };
                let owners = g.owners.iter().flatten().filter_map(Member::read);
                let owners = owners.filter(|(kind, _)| *kind == "#microsoft.graph.user").map(|(_, id)| id);
                groups.push(ImportedGroup { id, name, members, owners: owners.collect() });
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
        Ok(json::items::<GraphUser>(file, &text)?.len())
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
    fn a_page_value_that_is_not_an_array_an_item_that_is_not_an_object_or_a_repeated_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text, says) in [
            ("text.json", r#"{"value": "x"}"#, "expected a sequence"),
            ("items.json", r#"{"value": [{"id": "1"}, 7]}"#, "expected struct GraphUser"),
            ("twice.json", r#"{"value": [], "value": [{"id": "1"}]}"#, "duplicate field `value`"),
            ("dup.json", r#"[{"id": "1", "city": "Oslo", "city": "Lyon"}]"#, "duplicate field `city`"),
        ] {
            let err = count(&write(&dir, name, text)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("unexpected JSON in {}", dir.path().join(name).display())),
                "{err}"
            );
            assert!(err.contains("at line 1, column") && err.contains(says), "{err}");
        }
        // An item without its id is refused where it ends, whatever the layout.
        for (name, text, place) in [
            ("null.json", r#"{"value": null}"#, "line 1, column 15"),
            ("lines.json", "{\"id\":\"1\"}\n\n{\"city\":\"Lyon\"}\n", "line 3, column 15"),
            ("array.json", "[{\"id\":\"1\"},\n {\"id\": null}]", "line 2, column 13"),
        ] {
            let err = count(&write(&dir, name, text)).unwrap_err().to_string();
            assert!(err.contains(&format!("{name} at {place}: an item without \"id\"")), "{err}");
        }
    }

    #[test]
    fn users_read_escapes_borrow_plain_strings_and_skip_what_the_import_does_not_read() {
        let text = r#"{"id": "00000000-0000-4000-8000-000000000001", "city": "Lyon", "surname": "Ly\non",
            "userPrincipalName": "a\u0040contoso.com", "extensionAttributes": {"deep": [1, {"x": null}]},
            "accountEnabled": false}"#;
        let user: GraphUser = serde_json::from_str(text).unwrap();
        assert!(matches!(user.city, Field::Is(Str(Cow::Borrowed("Lyon")))));
        assert!(matches!(&user.surname, Field::Is(Str(Cow::Owned(s))) if s == "Ly\non"));
        let dir = tempfile::tempdir().unwrap();
        let users = read_users(&[write(&dir, "u.json", &format!("[{text}]"))], &BTreeMap::new()).unwrap().0;
        assert_eq!(users[0].upn.to_string(), "a@contoso.com");
        assert_eq!(users[0].profile.get(&ProfileField::City), Some(&Some("Lyon".to_owned())));
        assert_eq!(users[0].account_enabled, Some(false));
        assert_eq!(users[0].profile.len(), 2, "only the fields the export mentions: {:?}", users[0].profile);
    }

    #[test]
    fn null_clears_absent_leaves_alone_and_another_type_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let id = "00000000-0000-4000-8000-000000000001";
        let file = write(
            &dir,
            "u.json",
            &format!(
                r#"[{{"id": "{id}", "userPrincipalName": "a@contoso.com", "city": null, "jobTitle": " ", "displayName": null, "businessPhones": []}}]"#
            ),
        );
        let users = read_users(&[file], &BTreeMap::new()).unwrap().0;
        let want =
            [(ProfileField::JobTitle, None), (ProfileField::City, None), (ProfileField::OfficePhone, None)];
        assert_eq!(users[0].profile, want.into_iter().collect(), "a null displayName is not a clear");
        assert_eq!(users[0].account_enabled, None);
        for (field, value) in [("mail", "[]"), ("assignedLicenses", "{}"), ("accountEnabled", "0")] {
            let file = write(
                &dir,
                "bad.json",
                &format!(r#"[{{"id": "{id}", "userPrincipalName": "a@contoso.com", "{field}": {value}}}]"#),
            );
            let err = read_users(&[file], &BTreeMap::new()).unwrap_err().to_string();
            assert!(err.contains(&format!("bad.json item 1: \"{field}\" must be")), "{err}");
        }
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
        let users = read_users(&files, &BTreeMap::new()).unwrap().0;
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
