//! Export files read without building a `serde_json::Value` of every user:
//! a user object keeps only the keys the import reads, and its strings
//! borrow from the file's text. A 100k-user export is a hundred pages, and
//! the tree of maps a `Value` is cost more than the parse itself.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{usage, CliError};

/// A JSON value, its strings borrowed where the text has no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, and its value if it is an integer that fits an `i64`.
    Number(Option<i64>),
    /// A string.
    Text(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object: its keys in order (later duplicates win on lookup, as in `Value`).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => *n,
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value of `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Some(n)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(i64::try_from(n).ok()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Number(None))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Text(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            entries.push((key.0, map.next_value()?));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed where it can be.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Json::deserialize(deserializer)? {
            Json::Text(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("an object key that is not a string")),
        }
    }
}

/// An object of which only `KEYS` are kept; every other key is skipped
/// unread. Later duplicates of a key win, as in `Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked<'a> {
    entries: Vec<(&'static str, Json<'a>)>,
}

/// The keys a [`Picked`] object keeps.
pub trait Keys {
    /// Every key worth reading.
    const KEYS: &'static [&'static str];
    /// Keys without which an item is refused as soon as it is read, so that
    /// a file of millions of `{}` fails at its first item rather than after
    /// holding them all (issue 25, finding 3).
    const REQUIRED: &'static [&'static str] = &[];
}

impl<'a> Picked<'a> {
    /// The value of `key`, if the object has it.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether the object has `key` (even as null).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// A [`Picked`] object that keeps the keys of `K`.
pub struct PickedOf<'a, K> {
    /// The object.
    pub object: Picked<'a>,
    keys: std::marker::PhantomData<K>,
}

impl<'de, K: Keys> Deserialize<'de> for PickedOf<'de, K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PickVisitor<K>(std::marker::PhantomData<K>);
        impl<'de, K: Keys> Visitor<'de> for PickVisitor<K> {
            type Value = Picked<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Picked<'de>, A::Error> {
                // Grown as keys are found: reserving every key's room made an
                // empty object cost a kilobyte.
                let mut entries: Vec<(&'static str, Json<'de>)> = Vec::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match K::KEYS.iter().find(|k| **k == key.0) {
                        Some(known) => {
                            let value = map.next_value()?;
                            entries.retain(|(k, _)| k != known);
                            entries.push((known, value));
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if let Some(missing) = K::REQUIRED.iter().find(|r| !entries.iter().any(|(k, _)| k == *r)) {
                    return Err(de::Error::custom(format!("an item without \"{missing}\"")));
                }
                Ok(Picked { entries })
            }
        }
        let object = deserializer.deserialize_map(PickVisitor::<K>(std::marker::PhantomData))?;
        Ok(PickedOf { object, keys: std::marker::PhantomData })
    }
}

/// A JSON error as one line: file, line, column, and what is wrong (bad
/// syntax, or well-formed JSON of the wrong shape, like an item that is not
/// an object).
pub fn json_error(file: &Path, line_offset: usize, e: &serde_json::Error) -> CliError {
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    let kind = match e.classify() {
        serde_json::error::Category::Data => "unexpected JSON",
        _ => "bad JSON",
    };
    CliError::Usage(format!(
        "{kind} in {} at line {}, column {}: {what}",
        file.display(),
        e.line() + line_offset,
        e.column()
    ))
}

/// A Graph page: `{"value": [...]}`, other keys (`@odata.nextLink`) ignored;
/// a repeated `"value"` counts once, the last, as in `Value`.
struct Page<T> {
    value: Option<Items<T>>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Page<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PageVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for PageVisitor<T> {
            type Value = Page<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Graph page")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page<T>, A::Error> {
                let mut value = None;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.0 == "value" {
                        value = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Page { value })
            }
        }
        deserializer.deserialize_map(PageVisitor(std::marker::PhantomData))
    }
}

/// A page's `value`: an array, or anything else (refused with its own message).
enum Items<T> {
    Array(Vec<T>),
    NotArray,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemsVisitor<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Items::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Items<T>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Items::NotArray)
            }
            fn visit_unit<E>(self) -> Result<Items<T>, E> {
                Ok(Items::NotArray)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Items<T>, E> {
                Ok(Items::NotArray)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Items<T>, E> {
                Ok(Items::NotArray)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Items<T>, E> {
                Ok(Items::NotArray)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Items<T>, E> {
                Ok(Items::NotArray)
            }
            fn visit_str<E>(self, _: &str) -> Result<Items<T>, E> {
                Ok(Items::NotArray)
            }
        }
        deserializer.deserialize_any(ItemsVisitor(std::marker::PhantomData))
    }
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
            Ok(Page { value: Some(Items::Array(items)) }) => Ok(items),
            Ok(Page { value: Some(Items::NotArray) }) => {
                usage(format!("{}: \"value\" is not an array", file.display()))
            }
            // One object that is not a page: the item itself.
            Ok(Page { value: None }) => {
                serde_json::from_str(text).map(|item| vec![item]).map_err(|e| json_error(file, 0, &e))
            }
            // JSON Lines: more than one line, and the first a whole value by itself.
            Err(_) if is_json_lines(text) => {
                let mut items = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    items.push(serde_json::from_str(line).map_err(|e| json_error(file, n, &e))?);
                }
                Ok(items)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What `Json` should read for a value, built from serde_json's reading.
    fn expected(v: &Value) -> Json<'static> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.as_i64()),
            Value::String(s) => Json::Text(Cow::Owned(s.clone())),
            Value::Array(items) => Json::Array(items.iter().map(expected).collect()),
            Value::Object(map) => {
                Json::Object(map.iter().map(|(k, v)| (Cow::Owned(k.clone()), expected(v))).collect())
            }
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            // Quotes, backslashes, controls and non-ASCII: the escapes.
            "[a-z\"\\\\\u{0}-\u{1f}é😀 ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z\"@.]{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_reads_every_document_as_serde_json_does(v in any_json()) {
            let text = serde_json::to_string(&v).unwrap();
            let read: Json = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(read, expected(&v));
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_text() {
        let read: Json = serde_json::from_str(r#"{"plain": "Lyon", "escaped": "Ly\non"}"#).unwrap();
        assert!(matches!(read.get("plain"), Some(Json::Text(Cow::Borrowed("Lyon")))));
        assert!(matches!(read.get("escaped"), Some(Json::Text(Cow::Owned(s))) if s == "Ly\non"));
    }
}
