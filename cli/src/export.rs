//! `export history|changes|review|users`: a view's JSON as it is, or the
//! same objects as CSV rows, one column per key. RFC 4180 and byte-true for
//! scripts; with `--excel`, a UTF-8 byte order mark (Excel reads UTF-8
//! only with it) and every cell that Excel would take for a formula made
//! text (OWASP's advice on CSV injection: a name like `=HYPERLINK(...)` in a
//! directory export must not run when an auditor opens the file).

use serde_json::Value;

use crate::args::{ExportFormat, ExportTo};
use crate::error::CliError;
use crate::output::Out;

/// Writes `document` (the JSON a view printed) as `to` says.
pub fn write(document: &[u8], to: &ExportTo, out: &mut Out<'_>) -> Result<(), CliError> {
    let doc: Value = serde_json::from_slice(document)
        .map_err(|e| CliError::Corrupt(format!("a view's JSON did not read back: {e}")))?;
    match to.format {
        ExportFormat::Json => out.json(&doc),
        ExportFormat::Csv => {
            let (columns, rows) = flatten(&doc);
            out.raw(&csv(&columns, rows, to.excel)?)
        }
    }
}

/// RFC 4180 CSV (CRLF line ends) of a header and rows.
pub fn csv(columns: &[String], rows: Vec<Vec<String>>, excel: bool) -> Result<Vec<u8>, CliError> {
    let text = |e: csv::Error| CliError::Usage(format!("cannot write CSV: {e}"));
    let start = if excel { "\u{feff}".as_bytes().to_vec() } else { Vec::new() };
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(start);
    // The header too: a column named after data (a key of a map) is data.
    match excel {
        true => writer.write_record(columns.iter().map(|c| as_text(c))),
        false => writer.write_record(columns),
    }
    .map_err(text)?;
    for row in rows {
        match excel {
            true => writer.write_record(row.iter().map(|c| as_text(c))),
            false => writer.write_record(&row),
        }
        .map_err(text)?;
    }
    writer.into_inner().map_err(|e| CliError::Usage(format!("cannot write CSV: {e}")))
}

/// A cell Excel would read as a formula, made text with a leading `'`.
fn as_text(cell: &str) -> String {
    match cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{cell}"),
        false => cell.to_owned(),
    }
}

/// The rows of a JSON array of objects: one column per key, nested objects'
/// keys joined with `.`, lists of plain values joined with `;`, anything
/// else as its JSON text; columns in the order keys are first met.
pub fn flatten(doc: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let items: &[Value] = doc.as_array().map_or(std::slice::from_ref(doc), Vec::as_slice);
    let mut columns: Vec<String> = Vec::new();
    let mut column_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut flat: Vec<Vec<(usize, String)>> = Vec::with_capacity(items.len());
    for item in items {
        let mut cells = Vec::new();
        cells_of("", item, &mut cells);
        let placed = cells
            .into_iter()
            .map(|(key, value)| {
                let at = *column_of.entry(key.clone()).or_insert_with(|| {
                    columns.push(key);
                    columns.len() - 1
                });
                (at, value)
            })
            .collect();
        flat.push(placed);
    }
    let rows = flat
        .into_iter()
        .map(|cells| {
            let mut row = vec![String::new(); columns.len()];
            for (at, value) in cells {
                row[at] = value;
            }
            row
        })
        .collect();
    (columns, rows)
}

fn cells_of(prefix: &str, value: &Value, cells: &mut Vec<(String, String)>) {
    let key = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                cells_of(&key(k), v, cells);
            }
        }
        other => cells.push((prefix.to_owned(), plain(other))),
    }
}

/// A value as one CSV cell.
pub fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(plain).collect::<Vec<_>>().join(";")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_rows_with_a_column_per_key() {
        let doc = json!([
            { "seq": 3, "who": { "upn": "a@x.com", "app": null }, "roles": ["r1", "r2"], "targets": [{ "id": 1 }] },
            { "seq": 4, "who": { "upn": "b@x.com" }, "extra": true }
        ]);
        let (columns, rows) = flatten(&doc);
        // A JSON object lists its keys in order (serde_json's map is sorted).
        assert_eq!(columns, ["roles", "seq", "targets", "who.app", "who.upn", "extra"]);
        assert_eq!(rows[0], ["r1;r2", "3", "[{\"id\":1}]", "", "a@x.com", ""]);
        assert_eq!(rows[1], ["", "4", "", "", "b@x.com", "true"]);
    }

    #[test]
    fn excel_gets_a_bom_and_formulas_as_text_and_scripts_get_the_true_bytes() {
        let columns = vec!["name".to_owned(), "note".to_owned()];
        let rows = vec![
            vec!["=HYPERLINK(\"x\")".to_owned(), "a, \"b\"\nc".to_owned()],
            vec!["-1".into(), "@x".into()],
        ];
        let plain = String::from_utf8(csv(&columns, rows.clone(), false).unwrap()).unwrap();
        assert_eq!(plain, "name,note\r\n\"=HYPERLINK(\"\"x\"\")\",\"a, \"\"b\"\"\nc\"\r\n-1,@x\r\n");
        let excel = String::from_utf8(csv(&columns, rows, true).unwrap()).unwrap();
        assert!(excel.starts_with('\u{feff}'));
        assert!(excel.contains("\"'=HYPERLINK(\"\"x\"\")\"") && excel.contains("'-1,'@x\r\n"), "{excel}");
    }
}
