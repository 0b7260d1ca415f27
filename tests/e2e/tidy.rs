//! The project's own habits: module docs, and what each crate may depend on.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() && !matches!(name, "target" | ".git" | "snapshots") {
            rust_files(&path, found);
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for krate in ["domain", "store", "projections", "cli", "tests"] {
        rust_files(&root().join(krate), &mut files);
    }
    assert!(files.len() > 10, "the crates were found");
    let undocumented: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            // The first line itself: a `use` or an attribute before the doc
            // is a file that says nothing of what it is for.
            let first = text.lines().next().unwrap_or_default();
            !first.starts_with("//!")
        })
        .collect();
    assert!(undocumented.is_empty(), "add a `//!` line saying what each is for: {undocumented:?}");
}

fn dependencies(krate: &str) -> String {
    let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).expect("a manifest");
    // Only the [dependencies] table: dev-dependencies may use anything.
    manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap_or_default()
        .split("\n[")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_domain_knows_nothing_of_storage_the_shell_or_the_clock() {
    let deps = dependencies("domain");
    for forbidden in ["sled", "clap", "tokio", "store", "async-trait", "comfy-table"] {
        assert!(!deps.lines().any(|l| l.starts_with(forbidden)), "domain depends on {forbidden}");
    }
}

#[test]
fn the_store_knows_nothing_of_the_domain() {
    let deps = dependencies("store");
    assert!(!deps.lines().any(|l| l.starts_with("domain")), "store depends on domain");
}

#[test]
fn the_domain_reads_no_clock_and_draws_no_random_ids() {
    let mut files = Vec::new();
    rust_files(&root().join("domain").join("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for forbidden in ["Utc::now", "new_v4", "SystemTime", "std::fs", "std::net"] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}: time and ids come in as arguments",
                file.display()
            );
        }
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    use clap::CommandFactory;
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|c| c.get_name() != "help").collect();
        if subs.is_empty() {
            out.push(path);
            return;
        }
        for sub in subs {
            let mut next = path.clone();
            next.push(sub.get_name().to_owned());
            leaves(sub, next, out);
        }
    }
    let mut commands = Vec::new();
    leaves(&cli::args::Cli::command(), Vec::new(), &mut commands);
    assert!(commands.len() > 50, "the whole surface is walked: {}", commands.len());
    for path in commands {
        let mut args = vec!["usertrail".to_owned()];
        args.extend(path.iter().cloned());
        args.push("--help".to_owned());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = cli::run(args, &mut out, &mut err);
        let help = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{path:?}");
        assert!(help.contains("Example:"), "`usertrail {} --help` has no example", path.join(" "));
    }
}
