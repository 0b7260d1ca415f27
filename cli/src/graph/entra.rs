//! The Entra admin center's "Download users" CSV (Users > All users >
//! Download users), the export most admins have: its documented columns
//! (`userPrincipalName`, `displayName`, `surname`, `mail`, `givenName`,
//! `objectId`, `userType`, `jobTitle`, `department`, `accountEnabled`,
//! `streetAddress`, `state`, `country`, `city`, `postalCode`,
//! `telephoneNumber`, `mobile`, and others it does not read) become the same
//! users `import graph` reads. The file names no licenses: an import of it
//! leaves licenses as they are.

use std::collections::BTreeMap;
use std::path::Path;

use domain::events::ProfileField;
use domain::import::ImportedUser;
use domain::Upn;
use uuid::Uuid;

use crate::error::{usage, CliError};

/// The profile columns, by the names the download gives them.
const FIELDS: [(&str, ProfileField); 13] = [
    ("givenName", ProfileField::GivenName),
    ("surname", ProfileField::Surname),
    ("displayName", ProfileField::DisplayName),
    ("jobTitle", ProfileField::JobTitle),
    ("department", ProfileField::Department),
    ("mail", ProfileField::Mail),
    ("telephoneNumber", ProfileField::OfficePhone),
    ("mobile", ProfileField::MobilePhone),
    ("streetAddress", ProfileField::StreetAddress),
    ("city", ProfileField::City),
    ("state", ProfileField::State),
    ("postalCode", ProfileField::PostalCode),
    ("country", ProfileField::Country),
];

/// The users of a downloaded CSV; a bad file or row is exit 2 naming the
/// file, the line and the column.
pub fn users(file: &Path) -> Result<Vec<ImportedUser>, CliError> {
    let name = file.display();
    let text =
        std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("cannot read {name}: {e}")))?;
    let body = text.trim_start_matches('\u{feff}');
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let headers = reader.headers().map_err(|e| CliError::Usage(format!("{name}: {e}")))?.clone();
    let column: BTreeMap<String, usize> =
        headers.iter().enumerate().map(|(i, h)| (h.trim().to_ascii_lowercase(), i)).collect();
    let at = |key: &str| column.get(&key.to_ascii_lowercase()).copied();
    let (Some(upn_at), Some(id_at)) = (at("userPrincipalName"), at("objectId")) else {
        return usage(format!(
            "{name}: not an Entra users download: its header needs userPrincipalName and objectId"
        ));
    };
    let mut users = Vec::new();
    let mut lines = crate::environments::CsvLines::new(body.as_bytes());
    for row in reader.records() {
        let row = row.map_err(|e| CliError::Usage(format!("{name}: {e}")))?;
        let line = lines.of(row.position().map_or(0, |p| p.byte()));
        let bad = |what: String| CliError::Usage(format!("{name} line {line}: {what}"));
        let cell = |i: usize| row.get(i).map(str::trim).filter(|v| !v.is_empty());
        let id = cell(id_at)
            .and_then(|v| Uuid::parse_str(v).ok())
            .ok_or_else(|| bad("objectId is not a directory object id".into()))?;
        let guest = at("userType").and_then(cell).is_some_and(|t| t.eq_ignore_ascii_case("Guest"));
        let mail = at("mail").and_then(cell).map(str::to_owned);
        let upn = cell(upn_at).ok_or_else(|| bad("userPrincipalName is empty".into()))?;
        let upn = Upn::parse(&super::guest_address(upn, mail)).map_err(|why| bad(why.to_string()))?;
        let mut profile = BTreeMap::new();
        for (key, field) in FIELDS {
            if let Some(i) = at(key) {
                let value = cell(i).map(str::to_owned);
                if let Some(value) = &value {
                    domain::limits::check_profile_field(field, value).map_err(bad)?;
                }
                profile.insert(field, value);
            }
        }
        let account_enabled = match at("accountEnabled").and_then(cell) {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            Some(v) => {
                return Err(bad(format!("accountEnabled is {}, not True or False", domain::limits::quote(v))))
            }
        };
        users.push(ImportedUser { id, upn, profile, account_enabled, guest, licenses: None });
    }
    if users.is_empty() {
        return usage(format!("{name} holds no users"));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_reads_as_users_and_a_bad_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(
            &file,
            "\u{feff}userPrincipalName,displayName,surname,mail,givenName,objectId,userType,jobTitle,department,accountEnabled,usageLocation,city\n\
             alice@contoso.onmicrosoft.com,Alice Smith,Smith,alice@contoso.com,Alice,0b8c1a2e-0000-4000-8000-000000000001,Member,Seller,,True,FR,Lyon\n\
             jane_fabrikam.com#EXT#@contoso.onmicrosoft.com,Jane,Doe,jane@fabrikam.com,Jane,0b8c1a2e-0000-4000-8000-000000000002,Guest,,,False,,\n",
        )
        .unwrap();
        let read = users(&file).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].upn.as_str(), "alice@contoso.onmicrosoft.com");
        assert_eq!(read[0].profile.get(&ProfileField::City), Some(&Some("Lyon".to_owned())));
        assert_eq!(read[0].profile.get(&ProfileField::Department), Some(&None), "an empty cell clears");
        assert_eq!(read[0].licenses, None, "the download names no licenses");
        assert_eq!(
            (read[1].upn.as_str(), read[1].guest, read[1].account_enabled),
            ("jane@fabrikam.com", true, Some(false))
        );
        std::fs::write(&file, "userPrincipalName,objectId,accountEnabled\nbob@contoso.onmicrosoft.com,0b8c1a2e-0000-4000-8000-000000000003,maybe\n").unwrap();
        let err = users(&file).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("accountEnabled is maybe"), "{err}");
        std::fs::write(&file, "userPrincipalName,objectId\r\nok@contoso.onmicrosoft.com,0b8c1a2e-0000-4000-8000-000000000004\r\nbad,0b8c1a2e-0000-4000-8000-000000000005\r\n").unwrap();
        let err = users(&file).unwrap_err().to_string();
        assert!(err.contains("line 3"), "CRLF line ends count as LF ones: {err}");
        std::fs::write(&file, "displayName\nBob\n").unwrap();
        assert!(users(&file).unwrap_err().to_string().contains("needs userPrincipalName and objectId"));
    }
}
