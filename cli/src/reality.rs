//! Reality check (issue 32): `import environments` reads the admin tools'
//! environment listings, `import systemusers` the Dataverse Web API's
//! systemusers pages, and `reconcile` prints the differences between the
//! SystemUser table the rules predict and the one last observed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use domain::envcmd::EnvCommand;
use domain::events::{EnvEvent, EnvType, Event, ObservedUser};
use domain::reality::ListedEnvironment;
use domain::Upn;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::args::AtArgs;
use crate::error::{usage, CliError};
use crate::graph::json::{self, Field, Id, Key, Str};
use crate::output::Out;
use crate::shell::{AsOf, Shell};
use crate::time::{parse_at, parse_time};

/// An environment of the admin API's list (`name`, `properties`), or of
/// `pac admin list --json` (`EnvironmentId`, `DisplayName`, ...).
#[derive(Deserialize)]
struct Listed<'a> {
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default, borrow)]
    properties: Option<Properties<'a>>,
    #[serde(rename = "EnvironmentId", default, borrow)]
    environment_id: Option<Str<'a>>,
    #[serde(rename = "DisplayName", default, borrow)]
    display_name: Option<Str<'a>>,
    #[serde(rename = "Type", default, borrow)]
    kind: Option<Str<'a>>,
    #[serde(rename = "EnvironmentUrl", default, borrow)]
    url: Field<Str<'a>>,
    #[serde(rename = "SecurityGroupId", default, borrow)]
    security_group: Field<Str<'a>>,
}

/// The admin API's `properties`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties<'a> {
    #[serde(default, borrow)]
    display_name: Option<Str<'a>>,
    #[serde(default, borrow)]
    environment_sku: Option<Str<'a>>,
    #[serde(default, borrow)]
    linked_environment_metadata: Option<Linked<'a>>,
}

/// `properties.linkedEnvironmentMetadata`: present when there is a Dataverse database.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Linked<'a> {
    #[serde(default, borrow)]
    security_group_id: Field<Str<'a>>,
}

/// A GUID field: absent, null, empty and the nil GUID are none.
fn guid(value: &Field<Str>, field: &str) -> Result<Option<Option<Uuid>>, String> {
    match value {
        Field::Absent => Ok(None),
        Field::Null => Ok(Some(None)),
        Field::Is(s) if s.0.trim().is_empty() => Ok(Some(None)),
        Field::Is(s) => match Uuid::parse_str(s.0.trim()) {
            Ok(id) => Ok(Some(Some(id).filter(|id| !id.is_nil()))),
            Err(_) => Err(format!("\"{field}\" is not a GUID")),
        },
        Field::Wrong(_) => Err(format!("\"{field}\" must be a string or null")),
    }
}

/// The admin tools' environment types (`environmentSku`, pac's `Type`).
fn env_type(text: &str) -> Option<EnvType> {
    match text.trim().to_lowercase().as_str() {
        "subscriptionbasedtrial" => Some(EnvType::Trial),
        other => EnvType::from_cli(other),
    }
}

/// Reads environment listings; any bad item: exit 2, naming file, item and field.
pub fn read_environments(files: &[PathBuf]) -> Result<Vec<ListedEnvironment>, CliError> {
    let mut listed = Vec::new();
    for file in files {
        let text = json::read_text(file)?;
        for (n, l) in json::items::<Listed>(file, &text)?.into_iter().enumerate() {
            let bad = |why: String| CliError::Usage(format!("{} item {}: {why}", file.display(), n + 1));
            let text = |s: &Option<Str>| s.as_ref().map(|s| s.0.trim().to_owned()).filter(|s| !s.is_empty());
            let item = match &l.properties {
                Some(p) => {
                    let admin_id = text(&l.name).ok_or_else(|| bad("\"name\" is missing".into()))?;
                    let name = text(&p.display_name)
                        .ok_or_else(|| bad("\"properties.displayName\" is missing".into()))?;
                    let sku = text(&p.environment_sku)
                        .ok_or_else(|| bad("\"properties.environmentSku\" is missing".into()))?;
                    let linked = p.linked_environment_metadata.as_ref();
                    let field = "properties.linkedEnvironmentMetadata.securityGroupId";
                    let group = match linked {
                        Some(m) => guid(&m.security_group_id, field).map_err(bad)?.flatten(),
                        None => None,
                    };
                    (admin_id, name, sku, "properties.environmentSku", linked.is_some(), Some(group))
                }
                None => {
                    let admin_id = text(&l.environment_id)
                        .ok_or_else(|| bad("neither \"properties\" nor \"EnvironmentId\"".into()))?;
                    let name =
                        text(&l.display_name).ok_or_else(|| bad("\"DisplayName\" is missing".into()))?;
                    let kind = text(&l.kind).ok_or_else(|| bad("\"Type\" is missing".into()))?;
                    let url = has_text(&l.url)
                        .ok_or_else(|| bad("\"EnvironmentUrl\" must be a string or null".into()))?;
                    let group = guid(&l.security_group, "SecurityGroupId").map_err(bad)?;
                    (admin_id, name, kind, "Type", url, group)
                }
            };
            let (admin_id, name, kind, field, dataverse, security_group) = item;
            let env_type = env_type(&kind)
                .ok_or_else(|| bad(format!("\"{field}\" {kind:?} is not a known environment type")))?;
            domain::envcmd::check_name("an environment", &name).map_err(|e| bad(e.to_string()))?;
            listed.push(ListedEnvironment { admin_id, name, env_type, dataverse, security_group });
        }
    }
    let mut ids = BTreeSet::new();
    if let Some(twice) = listed.iter().find(|l| !ids.insert(domain::reality::environment_id(&l.admin_id))) {
        return usage(format!("environment {} ({}) is listed twice", twice.name, twice.admin_id));
    }
    Ok(listed)
}

/// Whether a URL field names a database (a non-empty string); `None` for another type.
fn has_text(value: &Field<Str>) -> Option<bool> {
    match value {
        Field::Absent | Field::Null => Some(false),
        Field::Is(s) => Some(!s.0.trim().is_empty()),
        Field::Wrong(_) => None,
    }
}

/// `"systemuserid"`.
enum SystemUserId {}

impl Key for SystemUserId {
    const NAME: &'static str = "systemuserid";
}

/// A row of GET /api/data/v9.2/systemusers: the columns reconcile compares.
/// Annotations (`@odata.etag`, `...@OData.Community.Display.V1.FormattedValue`)
/// are skipped, except the business unit's name.
#[derive(Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    systemuserid: Id<'a, SystemUserId>,
    #[serde(default, borrow)]
    azureactivedirectoryobjectid: Field<Str<'a>>,
    #[serde(default, borrow)]
    applicationid: Field<Str<'a>>,
    #[serde(default, borrow)]
    domainname: Field<Str<'a>>,
    #[serde(default)]
    isdisabled: Field<bool>,
    #[serde(default)]
    accessmode: Field<u8>,
    #[serde(default)]
    islicensed: Field<bool>,
    #[serde(rename = "_businessunitid_value", default, borrow)]
    business_unit: Field<Str<'a>>,
    #[serde(rename = "_businessunitid_value@OData.Community.Display.V1.FormattedValue", default, borrow)]
    business_unit_name: Option<Str<'a>>,
    #[serde(rename = "businessunitid", default, borrow)]
    business_unit_expanded: Option<Named<'a>>,
    #[serde(default, borrow)]
    systemuserroles_association: Field<Vec<Named<'a>>>,
}

/// An expanded record: a role, or the business unit.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
}

/// A field that is observed only when the export carries it with a value.
fn observed<T: Copy>(value: &Field<T>, field: &str, kind: &str) -> Result<Option<T>, String> {
    match value {
        Field::Absent | Field::Null => Ok(None),
        Field::Is(v) => Ok(Some(*v)),
        Field::Wrong(_) => Err(format!("\"{field}\" must be {kind} or null")),
    }
}

/// Reads systemusers pages; any bad item: exit 2, naming file, item and field.
pub fn read_systemusers(files: &[PathBuf]) -> Result<Vec<ObservedUser>, CliError> {
    let mut rows = Vec::new();
    let mut ids = BTreeSet::new();
    for file in files {
        let text = json::read_text(file)?;
        for (n, r) in json::items::<Row>(file, &text)?.into_iter().enumerate() {
            let bad = |why: String| CliError::Usage(format!("{} item {}: {why}", file.display(), n + 1));
            let id = Uuid::parse_str(r.systemuserid.0.trim())
                .map_err(|_| bad("\"systemuserid\" is not a GUID".into()))?;
            if !ids.insert(id) {
                return Err(bad(format!("systemuserid {id} appears twice in the export")));
            }
            let object_id =
                guid(&r.azureactivedirectoryobjectid, "azureactivedirectoryobjectid").map_err(bad)?;
            let application_id = guid(&r.applicationid, "applicationid").map_err(bad)?;
            let domainname = match &r.domainname {
                Field::Is(s) => Some(s.0.trim().to_owned()).filter(|s| !s.is_empty()),
                Field::Wrong(_) => return Err(bad("\"domainname\" must be a string or null".into())),
                Field::Absent | Field::Null => None,
            };
            let access_mode = observed(&r.accessmode, "accessmode", "an integer from 0 to 5").map_err(bad)?;
            if let Some(mode) = access_mode.filter(|m| domain::events::AccessMode::from_value(*m).is_none()) {
                return Err(bad(format!("\"accessmode\" {mode} is not an access mode (0 to 5, A1)")));
            }
            // A null business unit is a row the export cut short: every record has one.
            let named = r
                .business_unit_name
                .as_ref()
                .or(r.business_unit_expanded.as_ref().and_then(|b| b.name.as_ref()));
            let business_unit = match &r.business_unit {
                Field::Wrong(_) => {
                    return Err(bad("\"_businessunitid_value\" must be a string or null".into()))
                }
                Field::Null => None,
                _ => named.map(|n| n.0.trim().to_owned()),
            };
            let roles = match &r.systemuserroles_association {
                Field::Absent | Field::Null => None,
                Field::Is(roles) => Some(
                    roles
                        .iter()
                        .map(|role| role.name.as_ref().map(|n| n.0.trim().to_owned()))
                        .collect::<Option<BTreeSet<String>>>()
                        .ok_or_else(|| bad("a role of \"systemuserroles_association\" has no \"name\" (expand it with $select=name)".into()))?,
                ),
                Field::Wrong(_) => return Err(bad("\"systemuserroles_association\" must be an array".into())),
            };
            rows.push(ObservedUser {
                id,
                object_id: object_id.flatten(),
                application_id: application_id.flatten(),
                domainname,
                is_disabled: observed(&r.isdisabled, "isdisabled", "true or false").map_err(bad)?,
                access_mode,
                is_licensed: observed(&r.islicensed, "islicensed", "true or false").map_err(bad)?,
                business_unit,
                roles,
            });
        }
    }
    Ok(rows)
}

/// `import environments --file ENVS.json`
pub async fn import_environments(
    shell: &Shell,
    actor: Option<&Upn>,
    files: &[PathBuf],
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let listed = read_environments(files)?;
    let (done, plan) = shell.import_environments(actor, &listed).await?;
    if out.json {
        let extra = json!({ "environments": listed.len(), "changes": plan.report, "missing": plan.missing });
        return out.done("import environments", &done, "", extra);
    }
    for line in &plan.report {
        out.line(line)?;
    }
    for name in &plan.missing {
        out.line(format!("{name}: not in the listing (kept; an import never deletes an environment)"))?;
    }
    match &done.appended {
        Some(a) => {
            out.line(format!("imported {} environments (seq {}-{})", listed.len(), a.first_seq, a.last_seq))
        }
        None => out.line(format!(
            "imported {} environments: the log already matches; nothing appended",
            listed.len()
        )),
    }
}

/// `import systemusers --env E --file SU.json [--observed-at WHEN]`
pub async fn import_systemusers(
    shell: &Shell,
    actor: Option<&Upn>,
    env: &str,
    files: &[PathBuf],
    observed_at: Option<&str>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let rows = read_systemusers(files)?;
    let observed_at = match observed_at {
        Some(t) => parse_time(t, "--observed-at")?,
        None => shell.now().await?,
    };
    let count = rows.len();
    let command = EnvCommand::Observe { observed_at, rows };
    let done = shell.execute_env(actor, env, &command).await?;
    let (changed, gone) = done
        .events
        .iter()
        .find_map(|e| match e {
            Event::Environment(EnvEvent::SystemUsersObserved { rows, gone, .. }) => {
                Some((rows.len(), gone.len()))
            }
            _ => None,
        })
        .unwrap_or_default();
    let extra = json!({ "rows": count, "changed": changed, "gone": gone });
    if out.json {
        return out.done(command.name(), &done, "", extra);
    }
    if done.appended.is_none() {
        return out
            .line(format!("observed {count} SystemUser rows of {env}: as last observed; nothing appended"));
    }
    let summary = format!("observed {count} SystemUser rows of {env}: {changed} new or changed, {gone} gone");
    out.done(command.name(), &done, &summary, Value::Null)
}

/// `reconcile --env E [--at WHEN]`
pub async fn reconcile(shell: &Shell, env: &str, at: AtArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let at = at.at.as_deref().map(parse_at).transpose()?;
    let AsOf { seq, time, tenant, environment } = shell.environment_as_of(env, at).await?;
    let Some(observed_at) = environment.observed.at else {
        return usage(format!(
            "{} has no observation as of seq {seq}: import one with `usertrail import systemusers --env {env} --file ...`",
            environment.name
        ));
    };
    let differences = projections::reconcile::reconcile(&tenant, &environment, time);
    if out.json {
        return out.json(&serde_json::to_value(&differences).unwrap_or(Value::Null));
    }
    out.line(format!(
        "reconcile {} as of {} (seq {seq}) with the export of {} (record {}): {} differences",
        environment.name,
        crate::output::to_second(&projections::rfc3339(time)),
        crate::output::to_second(&projections::rfc3339(observed_at)),
        environment.observed.seq,
        differences.len()
    ))?;
    if differences.is_empty() {
        return Ok(());
    }
    let shown = |v: &Option<projections::reconcile::Value>| {
        v.as_ref().map_or_else(|| "-".to_owned(), |v| v.to_string())
    };
    let rows = differences
        .iter()
        .map(|d| {
            let evidence: Vec<String> = d.evidence.iter().map(u64::to_string).collect();
            vec![
                d.severity.name().to_owned(),
                d.upn.clone(),
                d.field.to_owned(),
                shown(&d.expected),
                shown(&d.observed),
                d.rule.clone(),
                evidence.join(","),
                d.advice.clone(),
            ]
        })
        .collect();
    let headers = ["severity", "upn", "field", "expected", "observed", "rule", "evidence (seq)", "advice"];
    out.table_painted(&headers, rows, |row| match row[0].as_str() {
        "high" => Some(crate::output::red as crate::output::Paint),
        "medium" => Some(crate::output::yellow),
        _ => None,
    })
}
