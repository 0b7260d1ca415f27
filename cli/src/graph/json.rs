//! The layouts of an export file (a Graph page, a bare array, one object,
//! JSON Lines), read into derived structs whose strings borrow from the
//! file's text. An array is read one item at a time, and an item lacking
//! its id is refused as it is read: a file of millions of `{}` stops at its
//! first (issue 25).

use std::borrow::Cow;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{self, Deserializer, IgnoredAny};
use serde::Deserialize;

use crate::error::{usage, CliError};

/// A string, borrowed from the file's text where it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A field as an export gives it. A value of another type is kept as
/// `Wrong`, to be refused by name: a value we cannot read must not pass for
/// an absent one (and be cleared or skipped).
#[derive(Default, Deserialize)]
#[serde(untagged)]
pub enum Field<T> {
    /// Left out: left alone.
    #[default]
    #[serde(skip)]
    Absent,
    // Tried in this order, the common case first: each miss builds an
    // error message (trying `Null` first made reading 2.4 times slower).
    /// A value of the type wanted.
    Is(T),
    /// `null`: cleared.
    Null,
    /// A value of another type.
    Wrong(IgnoredAny),
}

/// The name of an item's id key.
pub trait Key {
    /// `id`, `skuId`.
    const NAME: &'static str;
}

/// An item's id. Left out or null, the item is refused while it is read,
/// at its own line and column (serde reads a missing field through
/// `deserialize_option`).
pub struct Id<'a, K>(pub Cow<'a, str>, PhantomData<K>);

impl<'de: 'a, 'a, K: Key> Deserialize<'de> for Id<'a, K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<Str>::deserialize(deserializer)? {
            Some(id) => Ok(Id(id.0, PhantomData)),
            None => Err(de::Error::custom(format_args!("an item without \"{}\"", K::NAME))),
        }
    }
}

/// A Graph page: `{"value": [...]}`, other keys (`@odata.nextLink`) ignored.
#[derive(Deserialize)]
struct Page<T> {
    value: Option<Vec<T>>,
}

/// A JSON error as one line: file, line, column, and what is wrong (bad
/// syntax, or well-formed JSON of the wrong shape), quoting at most
/// [`domain::limits::QUOTE_CHARS`] characters of the input.
fn json_error(file: &Path, line_offset: usize, e: &serde_json::Error) -> CliError {
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    let kind = match e.classify() {
        serde_json::error::Category::Data => "unexpected JSON",
        _ => "bad JSON",
    };
    CliError::Usage(format!(
        "{kind} in {} at line {}, column {}: {}",
        file.display(),
        e.line() + line_offset,
        e.column(),
        domain::limits::quote(what)
    ))
}

/// The items of one export file's text: a Graph page (`{"value": [...]}`),
/// a bare array, a single object, or JSON Lines (one object a line, as
/// Graph Data Connect writes). Items borrow from `text`.
pub fn items<'t, T: Deserialize<'t>>(file: &Path, text: &'t str) -> Result<Vec<T>, CliError> {
    let text = text.trim_start_matches('\u{feff}');
    match text.trim_start().chars().next() {
        None => usage(format!("{} is empty", file.display())),
        Some('[') => serde_json::from_str(text).map_err(|e| json_error(file, 0, &e)),
        Some('{') => match serde_json::from_str::<Page<T>>(text) {
            Ok(Page { value: Some(items) }) => Ok(items),
            // One object that is not a page: the item itself.
            Ok(Page { value: None }) => {
                serde_json::from_str(text).map(|item| vec![item]).map_err(|e| json_error(file, 0, &e))
            }
            // JSON Lines: more than one line, and the first a whole value by itself.
            Err(_) if is_json_lines(text) => text
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(n, line)| serde_json::from_str(line).map_err(|e| json_error(file, n, &e)))
                .collect(),
            Err(e) => Err(json_error(file, 0, &e)),
        },
        Some(_) => usage(format!(
            "bad JSON in {} at line 1: expected a Graph page {{\"value\": [...]}}, an array, or JSON Lines",
            file.display()
        )),
    }
}

fn is_json_lines(text: &str) -> bool {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first_alone = lines.next().is_some_and(|l| serde_json::from_str::<IgnoredAny>(l).is_ok());
    first_alone && lines.next().is_some()
}

/// Reads an export file's text, or names the file that cannot be read.
pub fn read_text(file: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))
}
