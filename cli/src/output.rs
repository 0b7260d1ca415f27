//! Printing: aligned tables for people, one JSON document for scripts.

use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::shell::Done;

/// Where a command writes its answer, and in which form.
pub struct Out<'a> {
    /// `--json`: one JSON document instead of text.
    pub json: bool,
    /// Standard output (or a test's buffer).
    pub w: &'a mut dyn Write,
    /// Colour whole lines (a terminal, NO_COLOR unset).
    pub color: bool,
}

/// Wraps text in an ANSI colour.
fn paint(code: &str, text: &str) -> String {
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Red text (refusals, failures).
pub fn red(text: &str) -> String {
    paint("31", text)
}

/// Green text (success).
pub fn green(text: &str) -> String {
    paint("32", text)
}

/// Yellow text (advice, warnings).
pub fn yellow(text: &str) -> String {
    paint("33", text)
}

impl Out<'_> {
    /// Writes one line in a colour, when colour is on.
    pub fn colored(&mut self, color: fn(&str) -> String, text: impl AsRef<str>) -> Result<(), CliError> {
        let text = text.as_ref();
        let line = if self.color { color(text) } else { text.to_owned() };
        self.line(line)
    }

    /// Writes one line of text.
    pub fn line(&mut self, text: impl AsRef<str>) -> Result<(), CliError> {
        writeln!(self.w, "{}", text.as_ref()).map_err(broken_pipe)
    }

    /// Writes bytes as they are (CSV).
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.w.write_all(bytes).map_err(broken_pipe)
    }

    /// Writes a JSON document, pretty-printed.
    pub fn json(&mut self, value: &Value) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        self.line(text)
    }

    /// Writes an aligned table with a header row.
    pub fn table(&mut self, headers: &[&str], rows: Vec<Vec<String>>) -> Result<(), CliError> {
        let mut table = Table::new();
        table.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
        table.set_header(headers.iter().map(|h| h.to_uppercase()));
        for row in rows {
            table.add_row(row);
        }
        // comfy-table pads every cell; trailing blanks only get in the way of diffs.
        // comfy-table pads each cell with one blank on either side: drop the first.
        let text: Vec<String> =
            table.lines().map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_owned()).collect();
        self.line(text.join("\n"))
    }

    /// Reports a write command: what it did and where its events landed.
    pub fn done(&mut self, command: &str, done: &Done, summary: &str, extra: Value) -> Result<(), CliError> {
        if self.json {
            let mut doc = json!({
                "command": command,
                "result": if done.events.is_empty() { "unchanged" } else { "success" },
                "correlationId": done.correlation_id,
                "firstSeq": done.appended.as_ref().map(|a| a.first_seq),
                "lastSeq": done.appended.as_ref().map(|a| a.last_seq),
                "events": done.events.iter().map(|e| e.type_name()).collect::<Vec<_>>(),
            });
            if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
                doc.extend(extra);
            }
            return self.json(&doc);
        }
        match &done.appended {
            Some(a) if a.first_seq == a.last_seq => self.line(format!("{summary} (seq {})", a.last_seq)),
            Some(a) => self.line(format!("{summary} (seq {}-{})", a.first_seq, a.last_seq)),
            None => self.line(format!("no change: {command} had nothing to do")),
        }
    }
}

/// A closed pipe (`usertrail user list | head`) ends the command quietly;
/// any other failure to write is reported.
fn broken_pipe(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return CliError::OutputClosed;
    }
    CliError::Usage(format!("cannot write output: {e}"))
}
