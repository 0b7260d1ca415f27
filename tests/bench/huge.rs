//! `--huge`: the largest tenants (issue 29). A tenant of `--huge-users`
//! users (300,000) over 4 and over `--huge-environments` (100)
//! environments, synced from nothing; every row a ratio measured in this
//! run. Minutes and some 15 GB of scratch space: never in CI.

use std::path::Path;

use super::{child, dir_size, gen, settle_disk, Row};

/// What a child `usertrail sync` measured: seconds, peak RSS (KiB), and
/// the SystemUser records it changed.
struct Pass {
    secs: f64,
    rss: u64,
    changes: u64,
}

fn sync(db: &Path) -> Pass {
    let out = child(&["--child-cli", "usertrail", "--db", db.to_str().unwrap(), "sync"]);
    Pass { secs: out[0].parse().unwrap(), rss: out[1].parse().unwrap(), changes: out[2].parse().unwrap() }
}

/// The SystemUser records that `sync`'s summary lines say changed
/// (`Env3: 27000 added, 12 updated, 3 unchanged (seq ...): ...`): every
/// count but the unchanged one.
pub fn changes_in(output: &str) -> u64 {
    output
        .lines()
        .flat_map(|line| line.split([':', ',', '(']))
        .filter_map(|part| {
            let (n, what) = part.trim().split_once(' ')?;
            ["added", "enabled", "disabled", "updated"].contains(&what).then(|| n.parse::<u64>().ok())?
        })
        .sum()
}

fn timed(args: Vec<String>) -> (f64, u64) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = child(&refs);
    (out[0].parse().unwrap(), out[1].parse().unwrap())
}

fn cli(db: &Path, args: &[&str]) -> Vec<String> {
    let mut v =
        vec!["--child-cli".to_owned(), "usertrail".to_owned(), "--db".to_owned(), db.display().to_string()];
    v.extend(args.iter().map(|a| (*a).to_owned()));
    v
}

/// The median seconds (and the largest peak RSS) of `reps` runs of `args`.
fn median_of(reps: usize, mut args: impl FnMut(usize) -> Vec<String>) -> (f64, u64) {
    let runs: Vec<(f64, u64)> = (0..reps).map(|i| timed(args(i))).collect();
    (super::median(runs.iter().map(|r| r.0).collect()), runs.iter().map(|r| r.1).max().unwrap_or(0))
}

/// The rows of `--huge`.
pub fn run(dir: &Path, users: usize, environments: usize, rows: &mut Vec<Row>) {
    let mut row = |target, what: String, ratio: f64, goal: &str, pass: bool, detail: String| {
        rows.push(Row { target, what, ratio, goal: goal.into(), pass, detail })
    };
    let tenant = |name: &str, users, environments| {
        let db = dir.join(name);
        let spec = gen::Spec {
            users,
            environments,
            events: 0,
            batch: 1_000,
            snapshot_every: 0,
            sync: false,
            seconds_per_command: 7,
        };
        let g = gen::generate(&db, spec);
        super::report_gen(name, &g, &db);
        db
    };
    let few_db = tenant("few.db", users, 4);
    let many_db = tenant("many.db", users, environments);
    settle_disk();
    let few = sync(&few_db);
    settle_disk();
    let first = sync(&many_db);
    settle_disk();
    let again = sync(&many_db);
    // The first close after a pass moves its records into the archive (a
    // writer of that many leaves it to the next close): the pass after
    // that one shows what a no-change pass costs alone.
    let alone = sync(&many_db);
    let per_env = |p: &Pass, n: usize| p.secs / n as f64;
    let rss_ratio = first.rss as f64 / few.rss as f64;
    row(
        "8a",
        format!("peak RSS of a first sync pass, {users} users: {environments} environments / 4"),
        rss_ratio,
        "<= 1.5x",
        rss_ratio <= 1.5,
        format!("{} MiB vs {} MiB", first.rss / 1024, few.rss / 1024),
    );
    let time_ratio = per_env(&first, environments) / per_env(&few, 4);
    row(
        "8b",
        format!("first pass time per environment: {environments} environments / 4"),
        time_ratio,
        "<= 1.25x",
        time_ratio <= 1.25,
        format!("{:.1} s vs {:.1} s", first.secs, few.secs),
    );
    let rate = first.changes as f64 / first.secs;
    row(
        "8c",
        format!("first pass, {users} users x {environments} environments: SystemUser changes/s / 100k"),
        rate / 100_000.0,
        ">= 1x, RSS < 2 GiB",
        rate >= 100_000.0 && first.rss < 2 << 20,
        format!(
            "{} changes in {:.1} s ({rate:.0}/s); peak RSS {} MiB",
            first.changes,
            first.secs,
            first.rss / 1024
        ),
    );
    row(
        "8d",
        "first pass / no-change pass".into(),
        first.secs / again.secs,
        ">= 10x",
        first.secs >= 10.0 * again.secs,
        format!(
            "{:.1} s (its close archiving what it wrote) vs {:.2} s ({} changes); the next pass {:.2} s",
            first.secs, again.secs, again.changes, alone.secs
        ),
    );
    // One environment's view, with 100 environments or 4 beside it.
    let reps = 5;
    let view = |db: &Path, what: &str| median_of(reps, |_| cli(db, &[what, "--env", "Env1"]));
    for (target, what) in [("8e", "systemusers"), ("8f", "review")] {
        let (many, many_rss) = view(&many_db, what);
        let (few, few_rss) = view(&few_db, what);
        row(
            target,
            format!("{what} --env Env1: beside {} environments / beside 3", environments - 1),
            many / few,
            "<= 1.5x",
            many / few <= 1.5,
            format!(
                "{:.0} ms vs {:.0} ms; peak RSS {} / {} MiB",
                many * 1e3,
                few * 1e3,
                many_rss / 1024,
                few_rss / 1024
            ),
        );
    }
    // A command at the head: the same update on this directory and on a 2k one.
    let small_db = tenant("small.db", 2_000, 4);
    let update = |db: &Path, i: usize| {
        let upn = gen::upn_of(i);
        cli(db, &["user", "update", "--upn", &upn, "--title", &format!("Title {i}")])
    };
    settle_disk();
    let (big, big_rss) = median_of(reps, |i| update(&many_db, i));
    let (small, small_rss) = median_of(reps, |i| update(&small_db, i));
    row(
        "8g",
        format!("user update on a {users}-user directory / on a 2,000-user one"),
        big / small,
        "<= 2x",
        big / small <= 2.0,
        format!(
            "{:.1} ms vs {:.1} ms; peak RSS {} / {} MiB",
            big * 1e3,
            small * 1e3,
            big_rss / 1024,
            small_rss / 1024
        ),
    );
    // A Graph export of the whole directory into a new log, against a
    // command that holds that directory once it is in.
    let (pages, skus) = super::graph_export(&dir.join("export"), users);
    let import_db = dir.join("import.db");
    let db_arg = import_db.display().to_string();
    super::run_cli(
        &["usertrail", "--db", &db_arg, "init", "--tenant", gen::DOMAIN, "--admin", gen::ADMIN]
            .map(String::from),
        false,
    );
    let mut import = cli(&import_db, &["import", "graph", "--skus", &skus.display().to_string()]);
    for page in &pages {
        import.extend(["--users".to_owned(), page.display().to_string()]);
    }
    let (import_secs, import_rss) = timed(import);
    let largest = pages.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).max().unwrap_or(0);
    // A command reads the parts of the directory it reaches; `env list`, a
    // view, holds the whole directory and prints a line.
    let (_, held_rss) = median_of(1, |_| cli(&import_db, &["env", "list"]));
    row(
        "8i",
        format!(
            "peak RSS of import graph, {users} users in {} files / of a view holding the directory (env list)",
            pages.len()
        ),
        import_rss as f64 / held_rss as f64,
        "<= 2x",
        import_rss <= 2 * held_rss,
        format!(
            "{} MiB vs {} MiB (import {import_secs:.1} s; largest file {} KiB)",
            import_rss / 1024,
            held_rss / 1024,
            largest / 1024
        ),
    );
    let head = super::head_of(&many_db);
    // The log and its index, as PostgreSQL's figure counts its table and
    // indexes; the snapshots beside them are caches, reported apart.
    let caches = dir_size(&many_db.join("snapshots")) as f64;
    let bytes = dir_size(&many_db) as f64 - caches;
    row(
        "8h",
        "disk per event of the synced tenant's log and index / PostgreSQL's 452 B".into(),
        bytes / head as f64 / 452.0,
        "<= 1x",
        bytes / head as f64 <= 452.0,
        format!(
            "{:.0} B/event, {head} events, {:.1} GiB; snapshots beside it {:.0} B/event",
            bytes / head as f64,
            bytes / (1u64 << 30) as f64,
            caches / head as f64
        ),
    );
}
