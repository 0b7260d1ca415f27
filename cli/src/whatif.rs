//! `whatif`: run a file of commands on a scratch copy of the database and
//! print what they would change in the SystemUser tables. The real database
//! is never opened: it is locked as the store locks it, copied, and released,
//! so it stays byte-for-byte as it was. A PostgreSQL log is copied record by
//! record into a scratch sled database (`copy`), and only read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use store::Durability;

use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::Shell;
use crate::RunOptions;

/// One SystemUser difference of `whatif --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The environment.
    pub environment: String,
    /// The record's domainname.
    pub domainname: String,
    /// added, removed or changed.
    pub change: &'static str,
    /// The column, for a change.
    pub field: Option<String>,
    /// Before (`oldValue`, as `changes --json` names it).
    #[serde(rename = "oldValue")]
    pub old: Option<String>,
    /// After (`newValue`).
    #[serde(rename = "newValue")]
    pub new: Option<String>,
}

/// Splits a command line on blanks; single or double quotes group words.
pub fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (c, quote) {
            ('\'' | '"', None) => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => words.extend(word.take()),
            (c, _) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    words.extend(word);
    Ok(words)
}

/// The command lines of a whatif file, with their line numbers.
fn read_script(file: &Path) -> Result<Vec<(usize, Vec<String>)>, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = split_line(line)
            .map_err(|e| CliError::Usage(format!("{} line {}: {e}", file.display(), n + 1)))?;
        if words.iter().any(|w| w == "--db" || w.starts_with("--db=")) {
            return usage(format!("{} line {}: --db is not allowed in a whatif file", file.display(), n + 1));
        }
        if words.first().is_some_and(|w| ["whatif", "demo", "copy"].contains(&w.as_str())) {
            return usage(format!(
                "{} line {}: {} cannot run inside whatif",
                file.display(),
                n + 1,
                words[0]
            ));
        }
        lines.push((n + 1, words));
    }
    Ok(lines)
}

/// Copies the database directory while holding the store's lock on it.
fn copy_locked(db: &Path, to: &Path) -> Result<(), CliError> {
    if !store::SledStore::exists(db) {
        return Err(CliError::Usage(format!("no usertrail database at {}", db.display())));
    }
    let wait = std::env::var("USERTRAIL_LOCK_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let _lock = store::lock_dir(db, Duration::from_millis(wait))?;
    copy_dir(db, to)
        .map_err(|source| CliError::Store(store::StoreError::Io { path: db.to_path_buf(), source }))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            let what = format!(
                "{} is a symbolic link: usertrail follows no link inside its database",
                entry.path().display()
            );
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
        }
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Every environment's SystemUser rows, as JSON objects keyed by systemuserid.
async fn tables(
    copy: &Path,
    only: Option<&str>,
    keys: &store::CacheKeys,
) -> Result<BTreeMap<String, BTreeMap<String, Value>>, CliError> {
    let shell = Shell::new(std::sync::Arc::new(crate::open(copy, Durability::Batched, keys)?), None);
    let (tenant, _) = shell.tenant().await?;
    let mut tables = BTreeMap::new();
    for (_, name) in tenant.environments() {
        if only.is_some_and(|o| !o.eq_ignore_ascii_case(name)) {
            continue;
        }
        let (env, _) = shell.environment_at(&tenant, name, u64::MAX).await?;
        let rows = projections::systemusers::rows(&env)
            .into_iter()
            .map(|r| (r.systemuserid.to_string(), serde_json::to_value(&r).unwrap_or(Value::Null)))
            .collect();
        tables.insert(name.to_owned(), rows);
    }
    Ok(tables)
}

fn diff(
    before: &BTreeMap<String, BTreeMap<String, Value>>,
    after: &BTreeMap<String, BTreeMap<String, Value>>,
) -> Vec<Difference> {
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(", ")),
        other => Some(other.to_string()),
    };
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for (env, rows) in after {
        let old_rows = before.get(env).unwrap_or(&empty);
        for (id, row) in rows {
            let name = row["domainname"].as_str().unwrap_or(id).to_owned();
            let Some(old) = old_rows.get(id) else {
                out.push(Difference {
                    environment: env.clone(),
                    domainname: name,
                    change: "added",
                    field: None,
                    old: None,
                    new: None,
                });
                continue;
            };
            for column in projections::systemusers::Row::default_columns() {
                if old[column] != row[column] {
                    out.push(Difference {
                        environment: env.clone(),
                        domainname: name.clone(),
                        change: "changed",
                        field: Some(column.to_owned()),
                        old: text(&old[column]),
                        new: text(&row[column]),
                    });
                }
            }
        }
        for (id, row) in old_rows.iter().filter(|(id, _)| !rows.contains_key(*id)) {
            let name = row["domainname"].as_str().unwrap_or(id).to_owned();
            out.push(Difference {
                environment: env.clone(),
                domainname: name,
                change: "removed",
                field: None,
                old: None,
                new: None,
            });
        }
    }
    out
}

/// The options a script's line runs with: the run's, except that the
/// process goes on after it, so what the line loaded must be freed (the
/// binary's options leave it to the exit: a leaked directory per line).
fn line_options(options: RunOptions) -> RunOptions {
    RunOptions { exits_after_run: false, inside_whatif: true, ..options }
}

/// `whatif --file CMDS [--env E]`
pub async fn whatif(
    db: &Path,
    file: &Path,
    env: Option<&str>,
    options: RunOptions,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let script = read_script(file)?;
    let scratch = scratch_dir()?;
    // The binary's process ends at a signal: the copy goes first. (Not in
    // process: exiting would end the caller, a test harness.)
    let guard = options.exits_after_run.then(|| removed_on_signal(scratch.path().to_path_buf()));
    let result = run_script(db, file, env, &script, &scratch, options, out).await;
    if let Some(guard) = guard {
        guard.abort();
    }
    result
}

/// The scratch directory of a whatif: its own (0700, whatever the umask:
/// the copy holds the log's personal data; issue 25, finding 5), removed
/// when dropped.
fn scratch_dir() -> Result<tempfile::TempDir, CliError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("usertrail-whatif-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    builder.tempdir().map_err(|e| CliError::Usage(format!("cannot make a scratch directory: {e}")))
}

/// Waits for SIGINT or SIGTERM, then removes `scratch` and ends the
/// process as the signal would have (128 + its number).
fn removed_on_signal(scratch: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        let code = {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = interrupt.recv() => 130,
                _ = terminate.recv() => 143,
            }
        };
        #[cfg(not(unix))]
        let code = match tokio::signal::ctrl_c().await {
            Ok(()) => 130,
            Err(_) => return,
        };
        // A line still running may write into the copy meanwhile, and even
        // make its directories again: remove it until it has stayed gone a
        // while (at most about two seconds), then end before it can return.
        let mut gone_since = 0;
        for _ in 0..100 {
            let _ = std::fs::remove_dir_all(&scratch);
            gone_since = if scratch.exists() { 0 } else { gone_since + 1 };
            if gone_since == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::process::exit(code);
    })
}

/// Copies the log `db` names into `to`, a new sled database: a sled
/// directory file by file under its lock, a PostgreSQL log record by
/// record. Where the log is, for messages (never a password).
async fn copy_of(db: &Path, to: &Path, options: &mut RunOptions) -> Result<String, CliError> {
    if crate::postgres_url(db).is_none() {
        copy_locked(db, to)?;
        return Ok(db.display().to_string());
    }
    // The copy's caches last this run: a key kept for a scratch log would outlive it.
    options.cache_keys = store::CacheKeys::Process;
    let (source, name) = crate::copy::open_source(db, options).await?;
    let copied = crate::copy::copy_log(&*source, &name, to, "--db", "whatif", options).await;
    let closed = source.release();
    copied?;
    closed?;
    Ok(name)
}

/// Runs the script on a copy of `db` in `scratch` and prints what would change.
async fn run_script(
    db: &Path,
    file: &Path,
    env: Option<&str>,
    script: &[(usize, Vec<String>)],
    scratch: &tempfile::TempDir,
    options: RunOptions,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let copy: PathBuf = scratch.path().join("usertrail.db");
    let mut options = options;
    let db = &copy_of(db, &copy, &mut options).await?;
    let before = tables(&copy, env, &options.cache_keys).await?;
    if let Some(env) = env.filter(|_| before.is_empty()) {
        return usage(format!("unknown environment {env} in {db}"));
    }
    for (line, words) in script {
        // --db before the line's own words: a `--` in the line cannot swallow it.
        let mut args = vec!["usertrail".to_owned(), "--db".to_owned(), copy.display().to_string()];
        args.extend(words.iter().cloned());
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        // Each line runs as its own command, on the copy, off this runtime.
        let code = tokio::task::block_in_place(|| {
            crate::run_with(args, &mut stdout, &mut stderr, line_options(options.clone()))
        });
        if code != 0 {
            let stderr = String::from_utf8_lossy(&stderr);
            let reason = stderr.trim().trim_start_matches("error: ").replace('\n', " ");
            if code != 1 {
                return usage(format!("{} line {line}: {reason}", file.display()));
            }
            // A rule refused it: what the lines before it would change, then why.
            let after = tables(&copy, env, &options.cache_keys).await?;
            let ran = format!("the {} lines before line {line}", line_count_before(script, *line));
            print_diff(&diff(&before, &after), &ran, db, out)?;
            return Err(CliError::RefusedLine(format!("{} line {line}: {reason}", file.display())));
        }
    }
    let after = tables(&copy, env, &options.cache_keys).await?;
    print_diff(&diff(&before, &after), &format!("{} commands", script.len()), db, out)
}

/// How many commands of the script come before script line `line`.
fn line_count_before(script: &[(usize, Vec<String>)], line: usize) -> usize {
    script.iter().filter(|(n, _)| *n < line).count()
}

/// The SystemUser differences, after saying what ran.
fn print_diff(differences: &[Difference], ran: &str, db: &str, out: &mut Out<'_>) -> Result<(), CliError> {
    if out.json {
        return out.json(&serde_json::to_value(differences).unwrap_or(Value::Null));
    }
    out.line(format!("ran {ran} on a scratch copy of {db}; the database itself is unchanged"))?;
    if differences.is_empty() {
        return out.line("no SystemUser record would change");
    }
    let rows = differences
        .iter()
        .map(|d| {
            vec![
                d.environment.clone(),
                d.domainname.clone(),
                d.change.to_owned(),
                d.field.clone().unwrap_or_default(),
                d.old.clone().unwrap_or_default(),
                d.new.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.table(&["environment", "domainname", "change", "field", "old", "new"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_line_frees_what_it_loaded_even_in_the_binary() {
        let binary = RunOptions {
            id_seed: Some(7),
            color_stdout: true,
            width: None,
            color_stderr: false,
            progress: false,
            exits_after_run: true,
            archiving: None,
            machine: crate::machine::Machine::Real,
            inside_whatif: false,
            cache_keys: store::CacheKeys::Process,
        };
        let line = line_options(binary);
        assert!(!line.exits_after_run, "the process goes on after each line");
        assert!(line.inside_whatif, "a whatif in a line is refused");
        assert_eq!((line.id_seed, line.color_stdout, line.color_stderr), (Some(7), true, false));
    }

    #[test]
    fn lines_split_like_a_shell_would() {
        assert_eq!(
            split_line("user update --upn a@b.com --title 'Sales Manager' --city \"New York\"").unwrap(),
            ["user", "update", "--upn", "a@b.com", "--title", "Sales Manager", "--city", "New York"]
        );
        assert_eq!(split_line("x --city ''").unwrap(), ["x", "--city", ""]);
        assert!(split_line("x 'open").is_err());
    }
}
