//! The SystemUser table of an environment, keyed by Dataverse logical names.

use domain::environment::{Environment, SystemUser};
use domain::events::Column;
use domain::security;
use serde::Serialize;
use uuid::Uuid;

/// One SystemUser record as `systemusers --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub systemuserid: Uuid,
    pub domainname: String,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub fullname: Option<String>,
    pub internalemailaddress: Option<String>,
    pub jobtitle: Option<String>,
    pub mobilephone: Option<String>,
    pub address1_telephone1: Option<String>,
    pub address1_fax: Option<String>,
    pub address1_line1: Option<String>,
    pub address1_city: Option<String>,
    pub address1_stateorprovince: Option<String>,
    pub address1_postalcode: Option<String>,
    pub address1_country: Option<String>,
    pub azureactivedirectoryobjectid: Option<Uuid>,
    pub applicationid: Option<Uuid>,
    pub isdisabled: bool,
    pub accessmode: u8,
    pub islicensed: bool,
    pub issyncwithdirectory: bool,
    pub businessunit: String,
    /// Role names, direct and through teams.
    pub roles: Vec<String>,
    pub kind: &'static str,
}

impl Row {
    /// The column names, in the order of the JSON keys and the CSV header.
    pub fn default_columns() -> Vec<&'static str> {
        vec![
            "systemuserid",
            "domainname",
            "firstname",
            "lastname",
            "fullname",
            "internalemailaddress",
            "jobtitle",
            "mobilephone",
            "address1_telephone1",
            "address1_fax",
            "address1_line1",
            "address1_city",
            "address1_stateorprovince",
            "address1_postalcode",
            "address1_country",
            "azureactivedirectoryobjectid",
            "applicationid",
            "isdisabled",
            "accessmode",
            "islicensed",
            "issyncwithdirectory",
            "businessunit",
            "roles",
            "kind",
        ]
    }
}

/// Role names of a record, direct and through teams, sorted and deduplicated.
pub fn role_names(env: &Environment, user: &SystemUser) -> Vec<String> {
    let mut names: Vec<String> =
        security::roles_of(env, user).into_iter().map(|(r, _)| r.name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// The row of one record.
pub fn row(env: &Environment, u: &SystemUser) -> Row {
    let c = |column| u.column(column).map(str::to_owned);
    Row {
        systemuserid: u.id,
        domainname: u.domainname.clone(),
        firstname: c(Column::FirstName),
        lastname: c(Column::LastName),
        fullname: c(Column::FullName),
        internalemailaddress: c(Column::InternalEmailAddress),
        jobtitle: c(Column::JobTitle),
        mobilephone: c(Column::MobilePhone),
        address1_telephone1: c(Column::Telephone1),
        address1_fax: c(Column::Fax),
        address1_line1: c(Column::Line1),
        address1_city: c(Column::City),
        address1_stateorprovince: c(Column::StateOrProvince),
        address1_postalcode: c(Column::PostalCode),
        address1_country: c(Column::Country),
        azureactivedirectoryobjectid: u.object_id,
        applicationid: u.application_id,
        isdisabled: u.is_disabled,
        accessmode: u.access_mode.value(),
        islicensed: u.is_licensed,
        issyncwithdirectory: u.is_directory_user(),
        businessunit: env.business_units.get(&u.business_unit).map(|b| b.name.clone()).unwrap_or_default(),
        roles: role_names(env, u),
        kind: u.kind.name(),
    }
}

/// Every record of the environment, by domainname.
pub fn rows(env: &Environment) -> Vec<Row> {
    let mut users: Vec<&SystemUser> = env.users.values().collect();
    users.sort_by_key(|u| (u.domainname.to_lowercase(), u.id));
    users.into_iter().map(|u| row(env, u)).collect()
}
