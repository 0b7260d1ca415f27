//! Printing: aligned tables for people, one JSON document for scripts.
//!
//! Every line for people passes through [`Out::line`] (tables, summaries,
//! coloured lines) and every error line through [`for_people`]: both show
//! control characters escaped, so a name from an import cannot move the
//! cursor, clear the screen or recolour what follows (issue 25, finding 9).
//! JSON and CSV keep the true strings: they are data for programs.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::shell::Done;

/// Paints a line in one colour (ANSI codes around it): [`red`], [`yellow`].
pub type Paint = fn(&str) -> String;

/// Where a command writes its answer, and in which form.
pub struct Out<'a> {
    /// `--json`: one JSON document instead of text.
    pub json: bool,
    /// Standard output (or a test's buffer).
    pub w: &'a mut dyn Write,
    /// Colour whole lines (a terminal, NO_COLOR unset).
    pub color: bool,
    /// Fit tables to this many columns (a terminal's width).
    pub width: Option<u16>,
}

/// The width of the terminal on stdout, or `COLUMNS`.
pub fn terminal_width() -> Option<u16> {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ writes a `winsize` into the struct it is given, and nothing else.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0 && size.ws_col > 0 {
            return Some(size.ws_col);
        }
    }
    std::env::var("COLUMNS").ok()?.parse().ok().filter(|&w: &u16| w > 0)
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

/// Whether `c` must not reach a terminal as it is: control characters (C0,
/// DEL, C1: escape sequences and the CSI that begins them) and the
/// bidirectional overrides, which reorder what is shown.
fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each character unsafe for a terminal written as `\u{1b}`,
/// visibly; `keep_newlines` leaves line breaks between the lines of a block.
/// Borrowed when there is nothing to escape, which is nearly always.
fn escaped(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_here = |c: char| unsafe_for_terminal(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_here) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_here(c) {
            // Writing into a String cannot fail.
            let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// An RFC 3339 time as tables print it: to the second (JSON keeps the
/// milliseconds, so that a time given back to `--at` includes its event).
pub fn to_second(time: &str) -> String {
    match time.find('.') {
        Some(dot) => {
            let end = time[dot + 1..].find(|c: char| !c.is_ascii_digit()).map_or(time.len(), |n| dot + 1 + n);
            format!("{}{}", &time[..dot], &time[end..])
        }
        None => time.to_owned(),
    }
}

/// One line for people (an error message): every control character escaped,
/// line breaks included.
pub fn for_people(text: &str) -> Cow<'_, str> {
    escaped(text, false)
}

impl<'a> Out<'a> {
    /// JSON into `buffer`: a view's document, for an export to reshape.
    pub fn document(buffer: &'a mut Vec<u8>) -> Out<'a> {
        Out { json: true, w: buffer, color: false, width: None }
    }
}

impl Out<'_> {
    /// Writes one line in a colour, when colour is on. The text is escaped
    /// before it is painted: the colour's own codes are the only ones sent.
    pub fn colored(&mut self, color: Paint, text: impl AsRef<str>) -> Result<(), CliError> {
        let text = escaped(text.as_ref(), true);
        if self.color {
            return self.verbatim(&color(&text));
        }
        self.verbatim(&text)
    }

    /// Writes a line (or lines) of text for people, control characters escaped.
    pub fn line(&mut self, text: impl AsRef<str>) -> Result<(), CliError> {
        self.verbatim(&escaped(text.as_ref(), true))
    }

    /// Writes a line as it is: already escaped, or data (JSON).
    fn verbatim(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.w, "{text}").map_err(broken_pipe)
    }

    /// Writes bytes as they are (CSV).
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.w.write_all(bytes).map_err(broken_pipe)
    }

    /// Writes a JSON document, pretty-printed.
    pub fn json(&mut self, value: &Value) -> Result<(), CliError> {
        // The true strings: serde_json escapes C0 controls as JSON requires,
        // and a reader decodes them back.
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        self.verbatim(&text)
    }

    /// Writes an aligned table with a header row.
    pub fn table(&mut self, headers: &[&str], rows: Vec<Vec<String>>) -> Result<(), CliError> {
        self.table_painted(headers, rows, |_| None)
    }

    /// [`Out::table`], each row in the colour `paint` picks for it (a
    /// failed check, a high finding, a refusal), when colour is on and no
    /// row had to wrap.
    pub fn table_painted(
        &mut self,
        headers: &[&str],
        rows: Vec<Vec<String>>,
        paint: impl Fn(&[String]) -> Option<Paint>,
    ) -> Result<(), CliError> {
        let colours: Vec<Option<Paint>> = match self.color {
            true => rows.iter().map(|r| paint(r)).collect(),
            false => Vec::new(),
        };
        let mut table = Table::new();
        table.load_preset(presets::NOTHING);
        match self.width {
            // Long cells wrap within their column rather than widen the table.
            Some(width) => table.set_content_arrangement(ContentArrangement::Dynamic).set_width(width),
            None => table.set_content_arrangement(ContentArrangement::Disabled),
        };
        table.set_header(headers.iter().map(|h| h.to_uppercase()));
        for row in rows {
            // Escaped before the widths are measured, line breaks too: a cell is one line.
            table.add_row(row.iter().map(|cell| escaped(cell, false).into_owned()));
        }
        // comfy-table pads every cell; trailing blanks only get in the way of diffs.
        // comfy-table pads each cell with one blank on either side: drop the first.
        let mut text: Vec<String> =
            table.lines().map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_owned()).collect();
        // A line a row, after the header: otherwise rows wrapped, and stay plain.
        if !colours.is_empty() && text.len() == colours.len() + 1 {
            for (line, colour) in text.iter_mut().skip(1).zip(&colours) {
                if let Some(colour) = colour {
                    *line = colour(line);
                }
            }
        }
        self.verbatim(&text.join("\n"))
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
pub(crate) fn broken_pipe(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return CliError::OutputClosed;
    }
    CliError::Usage(format!("cannot write output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_the_terminal_and_keeps_its_full_width_when_piped() {
        let rows = vec![vec!["1".into(), "x".repeat(120), "alice@contoso.onmicrosoft.com".into()]; 3];
        let render = |width: Option<u16>| {
            let mut bytes = Vec::new();
            let mut out = Out { json: false, w: &mut bytes, color: false, width };
            out.table(&["seq", "detail", "upn"], rows.clone()).unwrap();
            String::from_utf8(bytes).unwrap()
        };
        let narrow = render(Some(60));
        assert!(narrow.lines().all(|l| l.chars().count() <= 60), "{narrow}");
        assert!(narrow.lines().count() > 4, "long cells wrap: {narrow}");
        assert_eq!(narrow.matches('x').count(), 3 * 120, "nothing is cut, only wrapped");
        let piped = render(None);
        assert_eq!(piped.lines().count(), 4, "one line a row: {piped}");
        assert!(piped.lines().nth(1).is_some_and(|l| l.contains(&"x".repeat(120))));
    }

    #[test]
    fn painted_rows_only_where_colour_is_on_and_no_row_wrapped() {
        let rows = vec![vec!["ok".to_owned(), "fine".to_owned()], vec!["FAIL".to_owned(), "x".repeat(90)]];
        let render = |color: bool, width: Option<u16>| {
            let mut bytes = Vec::new();
            let mut out = Out { json: false, w: &mut bytes, color, width };
            out.table_painted(&["result", "detail"], rows.clone(), |r| {
                (r[0] == "FAIL").then_some(red as Paint)
            })
            .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        let painted = render(true, None);
        let lines: Vec<&str> = painted.lines().collect();
        assert!(
            lines[2].starts_with("\x1b[31m") && !lines[1].contains('\x1b') && !lines[0].contains('\x1b'),
            "{painted:?}"
        );
        assert!(!render(false, None).contains('\x1b'), "no colour when off (a pipe, NO_COLOR)");
        assert!(!render(true, Some(40)).contains('\x1b'), "wrapped rows stay plain");
    }

    #[test]
    fn tables_print_times_to_the_second() {
        assert_eq!(to_second("2026-12-06T11:22:51.234Z"), "2026-12-06T11:22:51Z");
        assert_eq!(to_second("2026-12-06T11:22:51.234944571+01:00"), "2026-12-06T11:22:51+01:00");
        assert_eq!(to_second("2026-12-06T11:22:51Z"), "2026-12-06T11:22:51Z");
        assert_eq!(to_second("now"), "now");
    }

    #[test]
    fn control_characters_are_escaped_for_people_and_colour_is_ours_alone() {
        let hostile = "a\u{1b}[2Jb\u{9b}31mc\u{202e}d\u{7f}e\nf";
        assert_eq!(for_people(hostile), "a\\u{1b}[2Jb\\u{9b}31mc\\u{202e}d\\u{7f}e\\u{a}f");
        assert!(matches!(for_people("Zoë Ærøskøbing"), Cow::Borrowed(_)), "plain text is not copied");
        let mut bytes = Vec::new();
        let mut out = Out { json: false, w: &mut bytes, color: true, width: None };
        out.colored(red, "x\u{1b}[0my").unwrap();
        out.table(&["name"], vec![vec!["two\nlines".into()]]).unwrap();
        out.json(&json!({ "name": "x\u{1b}y" })).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "\u{1b}[31mx\\u{1b}[0my\u{1b}[0m", "the colour's codes only");
        assert_eq!(lines[2], "two\\u{a}lines", "a cell stays one line");
        assert!(text.contains(r#""name": "x\u001by""#), "JSON keeps the string (escaped as JSON): {text}");
    }
}
