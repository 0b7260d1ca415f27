//! How long each directory user field may be: Microsoft's documented limits,
//! in one table, so that nothing longer is ever decided, encoded or stored
//! (issue 25, finding 3: one 20 MiB displayName once made the log unreadable).

use crate::events::ProfileField;

/// The Microsoft Graph `user` resource reference
/// (<https://learn.microsoft.com/en-us/graph/api/resources/user>), which
/// gives "Maximum length is N characters." for these properties.
const GRAPH_USER: &str = "Microsoft Graph user resource";
/// Properties the Graph reference gives no length for take the Active
/// Directory schema's `rangeUpper` of the attribute Entra ID stores them in
/// (`mail` 256; `telephoneNumber`, `facsimileTelephoneNumber` 64).
const AD_SCHEMA: &str = "Active Directory schema rangeUpper";

/// Each profile field's longest value in characters, and where that limit is documented.
pub const PROFILE_CAPS: [(ProfileField, usize, &str); 14] = [
    (ProfileField::GivenName, 64, GRAPH_USER),
    (ProfileField::Surname, 64, GRAPH_USER),
    (ProfileField::DisplayName, 256, GRAPH_USER),
    (ProfileField::JobTitle, 128, GRAPH_USER),
    (ProfileField::Department, 64, GRAPH_USER),
    (ProfileField::Mail, 256, AD_SCHEMA),
    (ProfileField::OfficePhone, 64, AD_SCHEMA),
    (ProfileField::MobilePhone, 64, GRAPH_USER),
    (ProfileField::Fax, 64, AD_SCHEMA),
    (ProfileField::StreetAddress, 1024, GRAPH_USER),
    (ProfileField::City, 128, GRAPH_USER),
    (ProfileField::State, 128, GRAPH_USER),
    (ProfileField::PostalCode, 40, GRAPH_USER),
    (ProfileField::Country, 128, GRAPH_USER),
];

/// The longest value `field` may hold, in characters.
pub fn profile_cap(field: ProfileField) -> usize {
    // Every field is in the table (a test says so); 0 would refuse any value
    // rather than let one through unchecked.
    PROFILE_CAPS.iter().find(|(f, _, _)| *f == field).map_or(0, |(_, cap, _)| *cap)
}

/// Refuses a value longer than its field's cap, naming the field (as Graph
/// names it) and the limit. Counted in characters, as Microsoft counts.
pub fn check_profile_field(field: ProfileField, value: &str) -> Result<(), String> {
    let cap = profile_cap(field);
    // `value.len()` bytes are at least as many characters: skip the count when short.
    if value.len() <= cap {
        return Ok(());
    }
    let chars = value.chars().count();
    if chars <= cap {
        return Ok(());
    }
    Err(format!("{} is {chars} characters long; the limit is {cap}", field.graph_name()))
}

/// At most [`QUOTE_CHARS`] characters of `text`, for an error message that
/// quotes what it refuses: a 100 MB line is not echoed whole.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} characters in all)", &text[..cut], text.chars().count()),
    }
}

/// How many characters of offending input an error message quotes.
pub const QUOTE_CHARS: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_field_has_one_cap_and_longer_values_are_refused_by_name() {
        for field in ProfileField::ALL {
            assert_eq!(PROFILE_CAPS.iter().filter(|(f, _, _)| *f == field).count(), 1, "{field:?}");
            let cap = profile_cap(field);
            assert!(cap > 0);
            // Characters, not bytes: a cap's worth of 'é' (two bytes each) passes.
            assert_eq!(check_profile_field(field, &"é".repeat(cap)), Ok(()));
            let refused = check_profile_field(field, &"é".repeat(cap + 1)).unwrap_err();
            assert!(refused.starts_with(field.graph_name()) && refused.ends_with(&format!("limit is {cap}")));
        }
        assert_eq!(profile_cap(ProfileField::DisplayName), 256);
    }

    #[test]
    fn a_quote_keeps_at_most_200_characters() {
        assert_eq!(quote("short"), "short");
        let long = "ü".repeat(1_000_000);
        let quoted = quote(&long);
        assert!(quoted.starts_with(&"ü".repeat(200)) && !quoted.starts_with(&"ü".repeat(201)));
        assert!(quoted.ends_with("(1000000 characters in all)"), "{quoted}");
    }
}
