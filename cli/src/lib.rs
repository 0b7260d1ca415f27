//! The usertrail command line, as a library so tests can run it in-process.
//!
//! # Layout
//! - [`args`]: the command line as typed (clap derive).
//! - [`shell`]: load an aggregate, decide, append all or nothing, audit refusals.
//! - [`directory`]: the directory commands (`init`, `sku`, `user`, `group`).
//! - [`environments`]: environments, sync, application and stub users, `systemusers`.
//! - [`security`]: business units, roles, teams, mailboxes, `privileges`.
//! - [`views`]: `history`, `diagnose`, `timeline`, `compare`, `changes`, `review`.
//! - [`whatif`]: commands on a scratch copy, and the SystemUser diff.
//! - [`proof`]: `digest`, `verify --digest`, `export log`, `restore`.
//! - [`copy`]: `copy`, a log moved between backends, and the new log it (and `restore`) writes.
//! - [`report`]: the auditor's HTML report of a period, and `verify --report`.
//! - [`graph`]: reading Microsoft Graph exports for `import graph`.
//! - [`reality`]: `import environments`, `import systemusers` and `reconcile` (issue 32).
//! - [`demo`]: the sample tenant and its guided tour.
//! - [`views`] also has `record N`; [`export`]: views out as JSON or CSV (`--excel`).
//! - [`output`]: tables and JSON; [`time`]: `--now` and `--at`; [`error`]: exit codes.
//! - [`timings`]: `USERTRAIL_TIMINGS=1`, when each phase of a command ended.
//! - [`machine`]: the machine's clock (bounding `--now`), account and host.
//!
//! [`run`] is `main` minus the process: arguments in, exit code out.

pub mod args;
pub mod copy;
pub mod demo;
pub mod directory;
pub mod environments;
pub mod error;
pub mod export;
pub mod graph;
pub mod machine;
pub mod output;
pub mod proof;
pub mod reality;
pub mod report;
pub mod security;
pub mod shell;
pub mod time;
pub mod timings;
pub mod views;
pub mod whatif;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};
use serde_json::json;
use store::{Durability, OpenOptions, SledStore, StoreError};

use crate::args::{Cli, Command};
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::Shell;

/// The database used when `--db` is not given.
pub const DEFAULT_DB: &str = "usertrail.db";

/// How a run differs from the binary's defaults (for tests and scripted demos).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Derive new ids from this seed and the log's head instead of at random,
    /// so the same script writes the same log (insta snapshots rely on it).
    pub id_seed: Option<u64>,
    /// Colour on stdout (a terminal, and NO_COLOR unset).
    pub color_stdout: bool,
    /// The terminal's width, when stdout is one: tables fit it. Piped
    /// output keeps every table at its full width, for scripts.
    pub width: Option<u16>,
    /// Colour on stderr (a terminal, and NO_COLOR unset).
    pub color_stderr: bool,
    /// Progress bars on stderr (a terminal): tests and pipes get none.
    pub progress: bool,
    /// The process exits once this run returns (the binary): what a command
    /// loaded is left to the exit rather than freed ([`shell::release`]).
    pub exits_after_run: bool,
    /// When the store moves older records into its archive (tests that
    /// archive a small log); `None`: the store's default.
    pub archiving: Option<store::Archiving>,
    /// The machine: the real one, or a fixed stand-in for tests on a clock of their own.
    pub machine: machine::Machine,
    /// This run is a line of a `whatif` script: a `whatif` or `demo` in it
    /// is refused wherever its flags stand (a script that ran itself
    /// overflowed the stack; issue 25, finding 3).
    pub inside_whatif: bool,
    /// Where the key that authenticates the database's caches is kept
    /// (`CacheKeys::Process`, the default: a key of this process's own,
    /// so that tests write nothing into the user's home).
    pub cache_keys: store::CacheKeys,
}

impl RunOptions {
    /// The binary's options: colour where a stream is a terminal, unless NO_COLOR is set.
    pub fn for_terminal() -> RunOptions {
        use std::io::IsTerminal;
        let allowed = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        RunOptions {
            id_seed: None,
            color_stdout: allowed && std::io::stdout().is_terminal(),
            width: std::io::stdout().is_terminal().then(output::terminal_width).flatten(),
            color_stderr: allowed && std::io::stderr().is_terminal(),
            progress: std::io::stderr().is_terminal(),
            exits_after_run: true,
            archiving: None,
            machine: machine::Machine::Real,
            inside_whatif: false,
            cache_keys: key_dir().map_or(store::CacheKeys::Process, store::CacheKeys::Dir),
        }
    }
}

/// Where the binary keeps the keys that authenticate each database's
/// caches: outside every database, so that whoever can write a database's
/// directory cannot forge them (issue 25, finding 2). `USERTRAIL_KEY_DIR`,
/// else `$XDG_CONFIG_HOME/usertrail/keys`, else `~/.config/usertrail/keys`;
/// with none of them, caches last one process.
pub fn key_dir() -> Option<PathBuf> {
    let set = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("USERTRAIL_KEY_DIR")
        .or_else(|| set("XDG_CONFIG_HOME").map(|c| c.join("usertrail").join("keys")))
        .or_else(|| set("HOME").map(|h| h.join(".config").join("usertrail").join("keys")))
}

/// Runs one command line; returns the process exit code (README, "Exit codes").
pub fn run<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with(args, stdout, stderr, RunOptions::default())
}

/// [`run`] with options.
pub fn run_with<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write, options: RunOptions) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    crate::timings::phase("started");
    let parsed = Cli::command()
        .try_get_matches_from(args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut Cli::command())));
    let cli = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return clap_error(e, stdout, stderr),
    };
    // Multi-threaded so `whatif` can run its lines in place (block_in_place).
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(stderr, "error: cannot start the runtime: {e}");
            return 3;
        }
    };
    let mut damage = None;
    let color_stderr = options.color_stderr;
    let result = runtime.block_on(dispatch(cli, stdout, options, &mut damage));
    crate::timings::phase("command done");
    drop(runtime);
    crate::timings::phase("runtime stopped");
    match result {
        Ok(()) => {
            // A read of a damaged log still answers, and says so.
            if let Some(why) = damage {
                let line = format!("warning: the log is damaged: {why}").replace(['\n', '\r'], " ");
                let _ = writeln!(stderr, "{line}");
            }
            0
        }
        Err(CliError::OutputClosed) => 0,
        Err(e) => {
            // One line, whatever a name in the message holds, and no control
            // character of it reaches the terminal (issue 25, finding 9).
            let mut line = e.to_string().replace(['\n', '\r'], " ");
            // A safety net: messages quote at most 200 characters of any
            // input (domain::limits::quote), so a longer line is cut here.
            if let Some((cut, _)) = line.char_indices().nth(2000) {
                line.truncate(cut);
                line.push('…');
            }
            let line = output::for_people(&line);
            let line = if color_stderr { output::red(&line) } else { line.into_owned() };
            let _ = writeln!(stderr, "{line}");
            e.exit_code()
        }
    }
}

/// Help and version go to stdout (exit 0); a usage error becomes one line on
/// stderr (exit 2).
fn clap_error(e: clap::Error, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let rendered = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(stdout, "{rendered}");
            0
        }
        _ => {
            let message = rendered.split("\n\nUsage:").next().unwrap_or(&rendered);
            let message = message.split("\n\nFor more information").next().unwrap_or(message);
            // clap quotes the bad value whole: each word at most 200 characters.
            let one_line =
                message.split_whitespace().map(domain::limits::quote).collect::<Vec<_>>().join(" ");
            let _ = writeln!(stderr, "{one_line} (see --help)");
            2
        }
    }
}

/// Runs the command; `damage` learns why the log is closed to appends, if it is.
async fn dispatch(
    cli: Cli,
    stdout: &mut dyn Write,
    options: RunOptions,
    damage: &mut Option<String>,
) -> Result<(), CliError> {
    let Cli { global, command } = cli;
    let mut out = Out { json: global.json, w: stdout, color: options.color_stdout, width: options.width };
    let now = global.now.as_deref().map(|t| time::parse_time(t, "--now")).transpose()?;
    if let Some(now) = now {
        options.machine.check_now(now)?;
    }
    if options.inside_whatif
        && matches!(command, Command::Whatif { .. } | Command::Demo(_) | Command::Copy { .. })
    {
        return Err(CliError::Usage("whatif, demo and copy cannot run inside whatif".into()));
    }
    // Made from the same clap types as the parser: they never disagree with it.
    if let Command::Completions { shell } = command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "usertrail", &mut script);
        return out.raw(&script);
    }
    if let Command::Man = command {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .map_err(|e| CliError::Usage(format!("cannot render the manual page: {e}")))?;
        return out.raw(&page);
    }
    if let Command::Demo(args) = command {
        return demo::run(global.db.as_deref(), now, &options, args, &mut out).await;
    }
    if let Command::Copy { from, to } = &command {
        return copy::copy(from, to, &options, &mut out).await;
    }
    let path = global.db.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB));
    if let Command::Whatif { file, env } = &command {
        return whatif::whatif(&path, file, env.as_deref(), options, &mut out).await;
    }
    if let Command::Restore { from } = &command {
        return proof::restore(&path, from, &options, &mut out).await;
    }
    let server = postgres_url(&path);
    let mut shell = match server {
        Some(url) => {
            // `init` makes the log's tables, as the role that owns them.
            if matches!(command, Command::Init(_)) {
                store::PgStore::init(url).await?;
            }
            let store = store::PgStore::open(url, &options.cache_keys).await?;
            // Writers on many machines: without --now, the server's clock
            // stamps each record, so that theirs need not agree.
            if now.is_none() {
                store.stamp_with_server_clock();
            }
            let mut shell = Shell::new(std::sync::Arc::new(store), now);
            shell.store_clock = now.is_none();
            shell
        }
        None => {
            if !matches!(command, Command::Init(_)) && !path.exists() {
                return usage(format!(
                    "no database at {}: run `usertrail init` first, or pass --db",
                    path.display()
                ));
            }
            let archiving = options.archiving.unwrap_or_default();
            Shell::new(
                std::sync::Arc::new(open_with(&path, Durability::Immediate, archiving, options.cache_keys)?),
                now,
            )
        }
    };
    *damage = shell.store.damage();
    if let Some(seed) = options.id_seed {
        shell.ids = shell::Ids::seeded(seed, shell.store.head().await?.map_or(0, |h| h.seq));
    }
    shell.exits_after_run = options.exits_after_run;
    shell.progress = options.progress;
    shell.machine = options.machine;
    let actor = global.actor.as_ref();
    let result = match command {
        Command::Init(args) => directory::init(&shell, args, &mut out).await,
        Command::Sku(c) => directory::sku(&shell, actor, c, &mut out).await,
        Command::User(c) => directory::user(&shell, actor, c, &mut out).await,
        Command::Env(c) => environments::env(&shell, actor, c, &mut out).await,
        Command::Sync { env, verbose } => environments::sync(&shell, env, verbose, &mut out).await,
        Command::AppUser(c) => environments::app_user(&shell, actor, c, &mut out).await,
        Command::Import(c) => environments::import(&shell, actor, c, &mut out).await,
        Command::Systemusers { env, at } => environments::systemusers(&shell, &env, at, &mut out).await,
        Command::Bu(c) => security::bu(&shell, actor, c, &mut out).await,
        Command::Role(c) => security::role(&shell, actor, c, &mut out).await,
        Command::Team(c) => security::team(&shell, actor, c, &mut out).await,
        Command::Mailbox(c) => security::mailbox(&shell, actor, c, &mut out).await,
        Command::Privileges { env, upn, at } => security::privileges(&shell, &env, &upn, at, &mut out).await,
        Command::History(view) => views::history(&shell, view, &mut out).await,
        Command::Diagnose { env, upn, at } => views::diagnose(&shell, &env, &upn, at, &mut out).await,
        Command::Timeline { env, upn, at } => views::timeline(&shell, &env, &upn, at, &mut out).await,
        Command::Compare { env, upn, with, at } => {
            views::compare(&shell, &env, &upn, &with, at, &mut out).await
        }
        Command::Changes(view) => views::changes(&shell, &view, &mut out).await,
        Command::Review(view) => views::review(&shell, view, &mut out).await,
        Command::Reconcile { env, at } => reality::reconcile(&shell, &env, at, &mut out).await,
        Command::Export(args::ExportCommand::Systemusers { env, to, at }) => {
            environments::export(&shell, &env, &to, at, &mut out).await
        }
        Command::Export(args::ExportCommand::History { view, to }) => {
            let mut doc = Vec::new();
            async {
                views::history(&shell, view, &mut Out::document(&mut doc)).await?;
                export::write(&doc, &to, &mut out)
            }
            .await
        }
        Command::Export(args::ExportCommand::Changes { view, to }) => {
            let mut doc = Vec::new();
            async {
                views::changes(&shell, &view, &mut Out::document(&mut doc)).await?;
                export::write(&doc, &to, &mut out)
            }
            .await
        }
        Command::Export(args::ExportCommand::Review { view, to }) => {
            let mut doc = Vec::new();
            async {
                views::review(&shell, view, &mut Out::document(&mut doc)).await?;
                export::write(&doc, &to, &mut out)
            }
            .await
        }
        Command::Export(args::ExportCommand::Users { to, at }) => {
            let mut doc = Vec::new();
            async {
                directory::user_list(&shell, at, &mut Out::document(&mut doc)).await?;
                export::write(&doc, &to, &mut out)
            }
            .await
        }
        Command::Export(args::ExportCommand::Log { format: args::LogFormat::Jsonl, from, to }) => {
            proof::export_log(&shell, from.as_deref(), to.as_deref(), &mut out).await
        }
        Command::Digest => proof::digest(&shell, &mut out).await,
        Command::Record { seq } => views::record(&shell, seq, &mut out).await,
        Command::Whatif { .. } | Command::Restore { .. } | Command::Copy { .. } => Ok(()),
        Command::Group(c) => directory::group(&shell, actor, c, &mut out).await,
        Command::Verify { digest: Some(file), .. } => proof::verify_digest(&shell, &file, &mut out).await,
        Command::Verify { report: Some(file), .. } => report::verify(&shell, &file, &mut out).await,
        Command::Verify { .. } => verify(&shell, &mut out).await,
        Command::Report(args) => report::report(&shell, actor, args, &mut out).await,
        Command::Demo(_) | Command::Completions { .. } | Command::Man => Ok(()),
    };
    // After a failed write, sled's flush-on-drop would wait forever on the
    // buffer that failed: leave the store to the process's exit instead.
    // Only a failed write leaves such a buffer: a corrupt record found while
    // reading must not keep the database locked for the rest of the process.
    if matches!(result, Err(CliError::Store(StoreError::Io { .. } | StoreError::Engine(_)))) {
        std::mem::forget(shell);
        return result;
    }
    // Damage found while the command ran (a witness that could not be
    // written) is said too.
    if damage.is_none() {
        *damage = shell.store.damage();
    }
    // The close's work (the index, moving older records into the archive)
    // reports its failure rather than leave it to a drop that cannot.
    let closed = shell.store.release();
    result.and(closed.map(drop).map_err(CliError::from))
}

/// The PostgreSQL URL `--db` names, if it names one rather than a sled directory.
pub(crate) fn postgres_url(db: &Path) -> Option<&str> {
    db.to_str().filter(|db| db.starts_with("postgres://") || db.starts_with("postgresql://"))
}

/// Opens the log, waiting for another process up to `USERTRAIL_LOCK_TIMEOUT_MS`
/// (default 10 s).
pub fn open(path: &Path, durability: Durability, keys: &store::CacheKeys) -> Result<SledStore, CliError> {
    open_with(path, durability, store::Archiving::default(), keys.clone())
}

/// [`open`], archiving as `archiving` says.
pub(crate) fn open_with(
    path: &Path,
    durability: Durability,
    archiving: store::Archiving,
    cache_keys: store::CacheKeys,
) -> Result<SledStore, CliError> {
    let wait = std::env::var("USERTRAIL_LOCK_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let options =
        OpenOptions { lock_timeout: Duration::from_millis(wait), durability, archiving, cache_keys };
    crate::timings::phase("opening the database");
    let store = SledStore::open(path, options)?;
    crate::timings::phase("opened");
    Ok(store)
}

/// `verify`: the log (chain, witness, indexes), then every cache against
/// the fold of the log (issue 25, finding 2).
async fn verify(shell: &Shell, out: &mut Out<'_>) -> Result<(), CliError> {
    let report = shell.store.verify().await?;
    // Caches are checked against a log found whole: a damaged one may not fold.
    let caches = match report.problem {
        None => projections::fold::check_caches(&*shell.store).await?,
        Some(_) => Vec::new(),
    };
    if out.json {
        let problem = report.problem.as_ref().map(|p| json!({ "seq": p.seq, "what": p.what }));
        let named: Vec<String> = caches.iter().map(ToString::to_string).collect();
        let ok = report.problem.is_none() && caches.is_empty();
        out.json(&json!({ "records": report.records, "ok": ok, "problem": problem, "caches": named }))?;
    } else if report.problem.is_none() {
        out.line(format!("verified {} records: hash chain and indexes intact", report.records))?;
        for cache in &caches {
            out.line(cache.to_string())?;
        }
    }
    if let Some(p) = report.problem {
        // The records before the first bad one are sound: an export of them
        // restores into a usable database, when no backup is at hand.
        return Err(CliError::Corrupt(format!(
            "verify failed at record {seq}: {what}; the log takes no more writes: restore it from a backup taken before the damage, or keep the records before it: `usertrail export log --to seq:{before} > intact.jsonl`, then `usertrail restore --from intact.jsonl --db NEW`",
            seq = p.seq,
            what = p.what,
            before = p.seq.saturating_sub(1),
        )));
    }
    if caches.is_empty() {
        return Ok(());
    }
    // One the store vouches for would be used by the next command: it goes.
    // The others are misses already, and stay as evidence.
    for cache in caches.iter().filter(|c| c.trusted) {
        shell.store.remove_snapshots(&cache.name, cache.seq..cache.seq.saturating_add(1)).await?;
    }
    Err(CliError::Corrupt(format!(
        "verify found {} caches that are not the log's (named above); the log itself is intact, and no command uses them",
        caches.len()
    )))
}
