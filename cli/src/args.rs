//! The command line as typed: clap-derive types, checked only for form.
//! Turning them into domain commands happens in the command modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use domain::Upn;

/// usertrail: why can (or can't) a user reach a Power Platform environment, and since when?
///
/// Every admin and directory action is an event in an append-only, hash-chained
/// log; every view can be asked as of any past time. Exit codes: 0 done,
/// 1 rejected by a rule, 2 bad usage or input, 3 store problem.
#[derive(Debug, Parser)]
#[command(name = "usertrail", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The database directory or postgres:// URL [default: ./usertrail.db; for `demo`, ./usertrail-demo.db]
    // A URL may hold a password: the help never shows the variable's value.
    #[arg(long, env = "USERTRAIL_DB", hide_env_values = true, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The actor (UPN); default: the Global Administrator named at `init`
    #[arg(long = "as", env = "USERTRAIL_AS", global = true, value_name = "UPN", value_parser = Upn::parse)]
    pub actor: Option<Upn>,
    /// Time stamped on new events (RFC 3339); default: the clock
    #[arg(long, env = "USERTRAIL_NOW", global = true, value_name = "TIME")]
    pub now: Option<String>,
    /// Machine-readable output: one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

/// Every command.
// Built once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up the tenant and its first Global Administrator
    #[command(
        after_help = "Example:\n  usertrail init --tenant contoso.onmicrosoft.com --admin admin@contoso.onmicrosoft.com --name Contoso"
    )]
    Init(InitArgs),
    /// Licenses (SKUs) and their seats
    #[command(subcommand)]
    Sku(SkuCommand),
    /// Directory users: create, update, licenses, admin roles, block, delete, guests
    #[command(subcommand)]
    User(UserCommand),
    /// Security groups, their members and owners
    #[command(subcommand)]
    Group(GroupCommand),
    /// Environments: create, configure, list, add users on demand
    #[command(subcommand)]
    Env(EnvCommand),
    /// Run the background directory sync pass (every environment when --env is absent)
    #[command(after_help = "Example:\n  usertrail sync --env Sales")]
    Sync {
        /// Only this environment
        #[arg(long)]
        env: Option<String>,
        /// Name every changed user, not only the first few
        #[arg(long)]
        verbose: bool,
    },
    /// Application users (server-to-server identities) of an environment
    #[command(subcommand, name = "app-user")]
    AppUser(AppUserCommand),
    /// Import data into an environment
    #[command(subcommand)]
    Import(ImportCommand),
    /// The SystemUser table of an environment (Dataverse logical names with --json)
    #[command(after_help = "Example:\n  usertrail systemusers --env Sales --at 2026-03-01T00:00:00Z")]
    Systemusers {
        /// The environment
        #[arg(long)]
        env: String,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Business units of an environment
    #[command(subcommand)]
    Bu(BuCommand),
    /// Security roles: copy, set privileges, assign to users
    #[command(subcommand)]
    Role(RoleCommand),
    /// Teams: owner teams and group teams, their members and roles
    #[command(subcommand)]
    Team(TeamCommand),
    /// Mailboxes of users
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// A user's effective privileges, each with the roles (and teams) it comes from
    #[command(
        after_help = "Example:\n  usertrail privileges --env Sales --upn alice@contoso.onmicrosoft.com --at seq:120"
    )]
    Privileges {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        #[command(flatten)]
        at: AtArgs,
    },
    /// The audit history: one record per command, newest first (Graph directoryAudit with --json)
    #[command(
        after_help = "Example:\n  usertrail history --user alice@contoso.onmicrosoft.com --env Sales --since 2026-03-01T00:00:00Z --limit 20"
    )]
    History(HistoryArgs),
    /// Run diagnostics: every check with the records behind it, and what would fix it
    #[command(
        after_help = "Example:\n  usertrail diagnose --env Sales --upn alice@contoso.onmicrosoft.com --at 2026-03-01T00:00:00Z"
    )]
    Diagnose {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        #[command(flatten)]
        at: AtArgs,
    },
    /// A user's access intervals in an environment, each with the record that opened it
    #[command(after_help = "Example:\n  usertrail timeline --env Sales --upn alice@contoso.onmicrosoft.com")]
    Timeline {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        #[command(flatten)]
        at: AtArgs,
    },
    /// The "golden user" comparison: what differs between two users, and why
    #[command(
        after_help = "Example:\n  usertrail compare --env Sales --upn bob@contoso.onmicrosoft.com --with alice@contoso.onmicrosoft.com"
    )]
    Compare {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user to examine
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        /// The user to compare with (the one who works)
        #[arg(long, value_parser = Upn::parse)]
        with: Upn,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Drift between two points: SystemUser changes, each with the records that made it
    #[command(
        after_help = "Example:\n  usertrail changes --env Sales --from 2026-03-01T00:00:00Z --to seq:400"
    )]
    Changes(ChangesArgs),
    /// An access review: a summary by rule and severity, then findings with evidence and advice
    #[command(
        after_help = "Example:\n  usertrail review --env Sales --at 2026-06-30T00:00:00Z --json\n  usertrail review --severity high            # every environment, high findings only\n  usertrail review --env Sales --rule A3 --rule R6"
    )]
    Review(ReviewArgs),
    /// The SystemUser table the rules and the log predict beside the last one observed: every difference
    #[command(
        after_help = "Example:\n  usertrail reconcile --env Sales --json\n\nEach difference names its field, the rule that predicts it (or \"outside the log\"),\nthe records behind it and the likely causes; access that should not exist first."
    )]
    Reconcile {
        /// The environment (its name, or the admin API's id)
        #[arg(long)]
        env: String,
        #[command(flatten)]
        at: AtArgs,
    },
    /// The auditor's report of a period: one self-contained HTML file (audited)
    #[command(
        after_help = "Example:\n  usertrail report --from 2026-01-01 --to 2026-03-31 --out q1.html\n  usertrail report --env Sales --user ada@contoso.onmicrosoft.com --out sales.html   # the last 90 days\n  usertrail verify --report q1.html"
    )]
    Report(ReportArgs),
    /// Export a view (systemusers) as JSON or CSV, or the log itself
    #[command(subcommand)]
    Export(ExportCommand),
    /// Run a file of commands on a scratch copy and print the SystemUser diff; the real log is untouched
    #[command(
        after_help = "Example:\n  usertrail whatif --file plan.txt --env Sales\n\nThe file holds one command a line without the leading usertrail; blank lines and\n# comments are skipped; a line may carry --as and --now, never --db."
    )]
    Whatif {
        /// The file of commands
        #[arg(long)]
        file: PathBuf,
        /// Only this environment's diff
        #[arg(long)]
        env: Option<String>,
    },
    /// Check the hash chain and every index; report the first bad record
    #[command(
        after_help = "Example:\n  usertrail verify --db ./usertrail.db\n  usertrail verify --digest digest-2026-03-01.json"
    )]
    Verify {
        /// Instead: does this log still hold the record of this digest
        /// (`digest --json` saved), with its hash, chained to the head?
        #[arg(long, value_name = "FILE", conflicts_with = "report")]
        digest: Option<PathBuf>,
        /// Instead: is this the report a record of this log says was
        /// issued (the SHA-256 of its bytes)?
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// The head (seq, hash, time, tenant): keep it elsewhere, check it later with verify --digest
    #[command(after_help = "Example:\n  usertrail digest --json > digest-2026-03-01.json")]
    Digest,
    /// A new database from an `export log` file, every hash and field checked
    #[command(after_help = "Example:\n  usertrail restore --from log.jsonl --db ./restored.db")]
    Restore {
        /// The export (JSON Lines, from record 1)
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Move a log between backends (sled directory, PostgreSQL URL), byte for byte, every hash checked
    #[command(
        after_help = "Example:\n  usertrail copy --from ./usertrail.db --to 'postgres://usertrail_writer@db.example.com/audit?schema=contoso'\n\nThe destination must be empty; caches are not copied (they rebuild)."
    )]
    Copy {
        /// The log to copy: a sled directory or a postgres:// URL
        #[arg(long, value_name = "DB")]
        from: PathBuf,
        /// An empty log to copy it into: a new sled directory or a postgres:// URL
        #[arg(long, value_name = "DB")]
        to: PathBuf,
    },
    /// Build a sample tenant with months of history and take a guided tour
    #[command(after_help = "Example:\n  usertrail demo            # writes ./usertrail-demo.db afresh")]
    Demo(DemoArgs),
    /// One log record: its command, its event in words, its hash, its neighbours
    #[command(after_help = "Example:\n  usertrail record 331      # any evidence seq a view prints")]
    Record {
        /// The record's seq
        seq: u64,
    },
    /// Print the completion script for a shell
    #[command(
        after_help = "Example:\n  usertrail completions bash > ~/.local/share/bash-completion/completions/usertrail\n  usertrail completions zsh > ~/.zfunc/_usertrail\n  usertrail completions fish > ~/.config/fish/completions/usertrail.fish\n  usertrail completions powershell >> $PROFILE"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff)
    #[command(after_help = "Example:\n  usertrail man > ~/.local/share/man/man1/usertrail.1")]
    Man,
}

/// `init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The tenant's primary domain
    #[arg(long, value_name = "DOMAIN")]
    pub tenant: String,
    /// The first Global Administrator's UPN (in the tenant's domain)
    #[arg(long, value_name = "UPN", value_parser = Upn::parse)]
    pub admin: Upn,
    /// The organization's name
    #[arg(long, default_value = "")]
    pub name: String,
}

/// `sku ...`
#[derive(Debug, Subcommand)]
pub enum SkuCommand {
    /// Buy a SKU with a number of seats
    #[command(
        after_help = "Example:\n  usertrail sku add --sku DYN365_ENTERPRISE_SALES --kind d365 --seats 25"
    )]
    Add {
        /// The SKU part number
        #[arg(long)]
        sku: String,
        /// What it entitles: d365 | power-apps | m365-dataverse | office | marketing-tenant
        #[arg(long, value_parser = parse_kind)]
        kind: domain::events::SkuKind,
        /// How many seats
        #[arg(long, allow_negative_numbers = true, value_parser = parse_seats)]
        seats: u32,
    },
    /// Change a SKU's seat count (never below the seats in use)
    #[command(
        name = "set-seats",
        after_help = "Example:\n  usertrail sku set-seats --sku DYN365_ENTERPRISE_SALES --seats 30"
    )]
    SetSeats {
        /// The SKU part number
        #[arg(long)]
        sku: String,
        /// The new seat count
        #[arg(long, allow_negative_numbers = true, value_parser = parse_seats)]
        seats: u32,
    },
    /// List SKUs with seats used and free
    #[command(after_help = "Example:\n  usertrail sku list --at 2026-03-01T00:00:00Z")]
    List(AtArgs),
}

/// `history`'s filters (and `export history`'s).
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Records that concern this user (as actor or target)
    #[arg(long, value_parser = Upn::parse)]
    pub user: Option<Upn>,
    /// Records of this environment
    #[arg(long)]
    pub env: Option<String>,
    /// From this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many records
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub at: AtArgs,
}

/// `changes`'s interval (and `export changes`'s).
#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// The environment
    #[arg(long)]
    pub env: String,
    /// From this point (as --at takes it), excluded
    #[arg(long, value_name = "WHEN")]
    pub from: String,
    /// To this point (as --at takes it), included
    #[arg(long, value_name = "WHEN")]
    pub to: String,
}

/// `report`'s period, scope and file.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The period's start (as --at takes it), excluded [default: 90 days before --to]
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// The period's end (as --at takes it), included [default: now]
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// Only these environments (repeatable; default every environment)
    #[arg(long)]
    pub env: Vec<String>,
    /// A timeline for these users too, changed or not (repeatable)
    #[arg(long, value_parser = Upn::parse)]
    pub user: Vec<Upn>,
    /// The HTML file to write
    #[arg(long, value_name = "FILE.html")]
    pub out: PathBuf,
}

/// `review`'s scope and filters (and `export review`'s).
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Only these environments (repeatable; default every environment)
    #[arg(long)]
    pub env: Vec<String>,
    /// Only findings of these rules (repeatable, e.g. R6)
    #[arg(long)]
    pub rule: Vec<String>,
    /// Only findings of this severity or higher
    #[arg(long, value_parser = ["high", "medium", "low"])]
    pub severity: Option<String>,
    #[command(flatten)]
    pub at: AtArgs,
}

/// How an export is written.
#[derive(Debug, Args)]
pub struct ExportTo {
    /// json or csv
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// CSV for Excel: a UTF-8 byte order mark, and cells that begin with
    /// = + - @ (or a tab or carriage return) prefixed with ' so that Excel
    /// reads them as text, never as a formula (OWASP, CSV injection)
    #[arg(long)]
    pub excel: bool,
}

/// `--at WHEN` of the views.
#[derive(Debug, Args)]
pub struct AtArgs {
    /// Answer as the view stood then: an RFC 3339 time, or seq:N
    #[arg(long, value_name = "WHEN")]
    pub at: Option<String>,
}

/// The profile flags of `user create` and `user update` (D3).
#[derive(Debug, Args, Default)]
pub struct ProfileArgs {
    /// Display name (default: first and last name)
    #[arg(long)]
    pub display_name: Option<String>,
    /// Job title
    #[arg(long)]
    pub title: Option<String>,
    /// Department
    #[arg(long)]
    pub department: Option<String>,
    /// Email address
    #[arg(long)]
    pub mail: Option<String>,
    /// Office phone
    #[arg(long)]
    pub phone: Option<String>,
    /// Mobile phone
    #[arg(long)]
    pub mobile: Option<String>,
    /// Fax number
    #[arg(long)]
    pub fax: Option<String>,
    /// Street address
    #[arg(long)]
    pub street: Option<String>,
    /// City
    #[arg(long)]
    pub city: Option<String>,
    /// State or province
    #[arg(long)]
    pub state: Option<String>,
    /// Postal code
    #[arg(long)]
    pub postal: Option<String>,
    /// Country or region
    #[arg(long)]
    pub country: Option<String>,
}

/// A `--upn` alone.
#[derive(Debug, Args)]
pub struct UpnArg {
    /// The user's UPN
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
}

/// A user and a SKU.
#[derive(Debug, Args)]
pub struct UserSku {
    /// The user's UPN
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
    /// The SKU part number
    #[arg(long)]
    pub sku: String,
}

/// A user and an admin role.
#[derive(Debug, Args)]
pub struct UserRole {
    /// The user's UPN
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
    /// global | power-platform | dynamics365 | user-admin | password-admin
    #[arg(long, value_parser = parse_role)]
    pub role: domain::events::AdminRole,
}

/// `user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints its temporary password once
    #[command(
        after_help = "Example:\n  usertrail user create --upn alice@contoso.onmicrosoft.com --first Alice --last Smith \\\n      --title Seller --license DYN365_ENTERPRISE_SALES"
    )]
    Create(CreateArgs),
    /// Change profile fields (an empty value clears a field)
    #[command(
        after_help = "Example:\n  usertrail user update --upn alice@contoso.onmicrosoft.com --city Lyon --title ''"
    )]
    Update(UpdateArgs),
    /// Assign or remove a license
    #[command(subcommand)]
    License(LicenseCommand),
    /// Give or take a directory admin role (Global Administrators only)
    #[command(subcommand, name = "admin-role")]
    AdminRole(AdminRoleCommand),
    /// Block sign-in
    #[command(after_help = "Example:\n  usertrail user block --upn alice@contoso.onmicrosoft.com")]
    Block(UpnArg),
    /// Allow sign-in again
    #[command(after_help = "Example:\n  usertrail user unblock --upn alice@contoso.onmicrosoft.com")]
    Unblock(UpnArg),
    /// Soft-delete a user: seats are freed; restorable for 30 days
    #[command(after_help = "Example:\n  usertrail user delete --upn alice@contoso.onmicrosoft.com")]
    Delete(UpnArg),
    /// Restore a soft-deleted user (licenses come back while seats are free)
    #[command(after_help = "Example:\n  usertrail user restore --upn alice@contoso.onmicrosoft.com")]
    Restore(UpnArg),
    /// Set a new temporary password; prints it once
    #[command(
        name = "reset-password",
        after_help = "Example:\n  usertrail user reset-password --upn alice@contoso.onmicrosoft.com"
    )]
    ResetPassword(UpnArg),
    /// Invite a guest; a license's seat is held for 14 days
    #[command(
        after_help = "Example:\n  usertrail user invite --upn jane@fabrikam.com --license DYN365_ENTERPRISE_SALES"
    )]
    Invite {
        /// The guest's own address
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        /// A license to hold for the guest
        #[arg(long)]
        license: Option<String>,
    },
    /// The guest accepts its invitation (done by the guest itself)
    #[command(
        name = "accept-invite",
        after_help = "Example:\n  usertrail user accept-invite --upn jane@fabrikam.com"
    )]
    AcceptInvite(UpnArg),
    /// List users (Graph-style with --json)
    #[command(after_help = "Example:\n  usertrail user list --json --at seq:120")]
    List(AtArgs),
    /// Refresh user: sync one user into one environment at once (S9)
    #[command(
        after_help = "Example:\n  usertrail user refresh --env Sales --upn alice@contoso.onmicrosoft.com"
    )]
    Refresh(EnvUser),
    /// The user's own access attempt (S5): adds or enables an entitled user
    #[command(
        after_help = "Example:\n  usertrail user access --env Sales --upn alice@contoso.onmicrosoft.com"
    )]
    Access(EnvUser),
    /// Change a user's access mode in an environment (at most 7 non-interactive)
    #[command(
        name = "set-access-mode",
        after_help = "Example:\n  usertrail user set-access-mode --env Sales --upn svc-erp@contoso.onmicrosoft.com --mode non-interactive"
    )]
    SetAccessMode {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        /// read-write | administrative | read | support | non-interactive
        #[arg(long, value_parser = parse_mode)]
        mode: domain::events::AccessMode,
    },
    /// Reassign a (stub) user's records to another user (T1.4)
    #[command(
        name = "reassign-records",
        after_help = "Example:\n  usertrail user reassign-records --env Sales --from old.rep@contoso.com --to alice@contoso.onmicrosoft.com"
    )]
    ReassignRecords {
        /// The environment
        #[arg(long)]
        env: String,
        /// Whose records
        #[arg(long, value_parser = Upn::parse)]
        from: Upn,
        /// To whom
        #[arg(long, value_parser = Upn::parse)]
        to: Upn,
    },
    /// Move a user to another business unit (roles it can no longer hold are removed)
    #[command(
        name = "set-bu",
        after_help = "Example:\n  usertrail user set-bu --env Sales --upn alice@contoso.onmicrosoft.com --bu France"
    )]
    SetBu {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        /// The business unit
        #[arg(long)]
        bu: String,
    },
    /// Edit a user's primary email in the environment; sync never writes it again (S6.3)
    #[command(
        name = "set-email",
        after_help = "Example:\n  usertrail user set-email --env Sales --upn alice@contoso.onmicrosoft.com --email sales.alice@contoso.com"
    )]
    SetEmail {
        /// The environment
        #[arg(long)]
        env: String,
        /// The user
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
        /// The new address (empty clears it)
        #[arg(long)]
        email: String,
    },
}

/// An environment and a user.
#[derive(Debug, Args)]
pub struct EnvUser {
    /// The environment
    #[arg(long)]
    pub env: String,
    /// The user
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
}

/// `env ...`
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment (developer: the actor is its creator)
    #[command(
        after_help = "Example:\n  usertrail env create --name Sales --type production --security-group Sales-SG --app sales"
    )]
    Create {
        /// Its name, unique in the tenant
        #[arg(long)]
        name: String,
        /// production | sandbox | trial | developer | default | teams
        #[arg(long = "type", value_parser = parse_env_type)]
        env_type: domain::events::EnvType,
        /// Without a Dataverse database (no user can be added)
        #[arg(long)]
        no_dataverse: bool,
        /// The security group that gates it
        #[arg(long, value_name = "GROUP")]
        security_group: Option<String>,
        /// App-pass capacity
        #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = parse_count)]
        app_pass: u32,
        /// An installed app (repeatable): sales | customer-service
        #[arg(long, value_parser = parse_app)]
        app: Vec<domain::events::App>,
    },
    /// Change an environment's security group, app passes and settings
    #[command(
        after_help = "Example:\n  usertrail env set --env Sales --clear-security-group --setting allowRoleAssignmentOnDisabledUsers=true --session-timeout 8h"
    )]
    Set {
        /// The environment
        #[arg(long)]
        env: String,
        /// Tie it to this security group
        #[arg(long, value_name = "GROUP", conflicts_with = "clear_security_group")]
        security_group: Option<String>,
        /// Remove its security group
        #[arg(long)]
        clear_security_group: bool,
        /// App-pass capacity
        #[arg(long, allow_negative_numbers = true, value_parser = parse_count)]
        app_pass: Option<u32>,
        /// allowRoleAssignmentOnDisabledUsers=true|false, allowApplicationUserStatusChange=true|false (repeatable)
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_setting)]
        setting: Vec<(String, String)>,
        /// Session timeout: 90m, 8h, 1d, or off
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        session_timeout: Option<Duration>,
        /// Inactivity timeout: 90m, 8h, 1d, or off
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        inactivity_timeout: Option<Duration>,
    },
    /// List environments
    #[command(after_help = "Example:\n  usertrail env list --json")]
    List(AtArgs),
    /// Add a user on demand, or enable its record (S5)
    #[command(
        name = "add-user",
        after_help = "Example:\n  usertrail env add-user --env Trial --upn alice@contoso.onmicrosoft.com"
    )]
    AddUser(EnvUser),
    /// Unified routing: provisioned with a tenant admin's consent, never turned off (O3)
    #[command(subcommand, name = "unified-routing")]
    UnifiedRouting(UnifiedRoutingCommand),
}

/// `env unified-routing ...`
#[derive(Debug, Subcommand)]
pub enum UnifiedRoutingCommand {
    /// Provision unified routing (a Global, Power Platform or Dynamics 365 Administrator consents)
    #[command(after_help = "Example:\n  usertrail env unified-routing enable --env Service")]
    Enable(EnvArg),
    /// Turn unified routing off: always refused once it is on (O3)
    #[command(after_help = "Example:\n  usertrail env unified-routing disable --env Service")]
    Disable(EnvArg),
}

/// An environment alone.
#[derive(Debug, Args)]
pub struct EnvArg {
    /// The environment
    #[arg(long)]
    pub env: String,
}

/// `bu ...`
#[derive(Debug, Subcommand)]
pub enum BuCommand {
    /// Create a business unit (under the root unless --parent)
    #[command(after_help = "Example:\n  usertrail bu create --env Sales --name France --parent Europe")]
    Create {
        /// The environment
        #[arg(long)]
        env: String,
        /// Its name, unique among its siblings
        #[arg(long)]
        name: String,
        /// Its parent unit
        #[arg(long)]
        parent: Option<String>,
    },
}

/// `role ...`
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Copy a role under a new name (in --bu, the root by default)
    #[command(
        after_help = "Example:\n  usertrail role copy --env Sales --from Salesperson --name 'Senior Salesperson'"
    )]
    Copy {
        /// The environment
        #[arg(long)]
        env: String,
        /// The role to copy
        #[arg(long)]
        from: String,
        /// The new role's name
        #[arg(long)]
        name: String,
        /// The new role's business unit
        #[arg(long)]
        bu: Option<String>,
    },
    /// Set a role's level on a table and operation (no higher than you hold, R6)
    #[command(
        name = "set-privilege",
        after_help = "Example:\n  usertrail role set-privilege --env Sales --role 'Senior Salesperson' --table opportunity --op read --level bu"
    )]
    SetPrivilege {
        /// The environment
        #[arg(long)]
        env: String,
        /// The role
        #[arg(long)]
        role: String,
        /// The table's logical name
        #[arg(long)]
        table: String,
        /// create | read | write | delete | append | append-to | assign | share
        #[arg(long, value_parser = parse_operation)]
        op: domain::events::Operation,
        /// none | user | bu | parent-child | org
        #[arg(long, value_parser = parse_level)]
        level: domain::events::Level,
    },
    /// Give a user a role (of its business unit or above; what you hold yourself)
    #[command(
        after_help = "Example:\n  usertrail role assign --env Sales --upn alice@contoso.onmicrosoft.com --role Salesperson"
    )]
    Assign(EnvUserRole),
    /// Take a role from a user
    #[command(
        after_help = "Example:\n  usertrail role remove --env Sales --upn alice@contoso.onmicrosoft.com --role Salesperson"
    )]
    Remove(EnvUserRole),
}

/// An environment, a user and a role.
#[derive(Debug, Args)]
pub struct EnvUserRole {
    /// The environment
    #[arg(long)]
    pub env: String,
    /// The user
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
    /// The role
    #[arg(long)]
    pub role: String,
}

/// `team ...`
#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create an owner team, or a group team with --group
    #[command(
        after_help = "Example:\n  usertrail team create --env Sales --name 'Sales team' --group Sales-SG"
    )]
    Create {
        /// The environment
        #[arg(long)]
        env: String,
        /// Its name, unique in the environment
        #[arg(long)]
        name: String,
        /// Its business unit
        #[arg(long)]
        bu: Option<String>,
        /// The directory group it follows (a group team)
        #[arg(long)]
        group: Option<String>,
    },
    /// Add a user to an owner team
    #[command(
        name = "add-member",
        after_help = "Example:\n  usertrail team add-member --env Sales --team Reviewers --upn alice@contoso.onmicrosoft.com"
    )]
    AddMember(EnvTeamUser),
    /// Remove a user from an owner team
    #[command(
        name = "remove-member",
        after_help = "Example:\n  usertrail team remove-member --env Sales --team Reviewers --upn alice@contoso.onmicrosoft.com"
    )]
    RemoveMember(EnvTeamUser),
    /// Give or take a team's roles
    #[command(subcommand)]
    Role(TeamRoleCommand),
}

/// An environment, a team and a user.
#[derive(Debug, Args)]
pub struct EnvTeamUser {
    /// The environment
    #[arg(long)]
    pub env: String,
    /// The team
    #[arg(long)]
    pub team: String,
    /// The user
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
}

/// `team role ...`
#[derive(Debug, Subcommand)]
pub enum TeamRoleCommand {
    /// Give a team a role: its members get it
    #[command(
        after_help = "Example:\n  usertrail team role assign --env Sales --team 'Sales team' --role Salesperson"
    )]
    Assign(EnvTeamRole),
    /// Take a role from a team
    #[command(
        after_help = "Example:\n  usertrail team role remove --env Sales --team 'Sales team' --role Salesperson"
    )]
    Remove(EnvTeamRole),
}

/// An environment, a team and a role.
#[derive(Debug, Args)]
pub struct EnvTeamRole {
    /// The environment
    #[arg(long)]
    pub env: String,
    /// The team
    #[arg(long)]
    pub team: String,
    /// The role
    #[arg(long)]
    pub role: String,
}

/// `mailbox ...`
#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Test and enable a user's mailbox: the test is scheduled, then the mailbox enabled (O2)
    #[command(
        name = "test-enable",
        after_help = "Example:\n  usertrail mailbox test-enable --env Sales --upn alice@contoso.onmicrosoft.com"
    )]
    TestEnable(EnvUser),
}

/// A duration setting: minutes, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub Option<u32>);

/// `export ...`
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export the SystemUser table (JSON exactly as `systemusers --json`, or RFC 4180 CSV)
    #[command(
        after_help = "Example:\n  usertrail export systemusers --env Sales --format csv --at 2026-03-01T00:00:00Z > sales.csv"
    )]
    Systemusers {
        /// The environment
        #[arg(long)]
        env: String,
        #[command(flatten)]
        to: ExportTo,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Export audit records: JSON exactly as `history --json`, or CSV
    #[command(
        after_help = "Example:\n  usertrail export history --since 2026-01-01T00:00:00Z --limit 100000 --format csv --excel > history.csv"
    )]
    History {
        #[command(flatten)]
        view: HistoryArgs,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Export the drift between two points: JSON exactly as `changes --json`, or CSV
    #[command(
        after_help = "Example:\n  usertrail export changes --env Sales --from 2026-01-01 --to 2026-03-31 --format csv --excel > q1.csv"
    )]
    Changes {
        #[command(flatten)]
        view: ChangesArgs,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Export an access review: JSON exactly as `review --json`, or CSV
    #[command(
        after_help = "Example:\n  usertrail export review --severity medium --format csv --excel > review.csv"
    )]
    Review {
        #[command(flatten)]
        view: ReviewArgs,
        #[command(flatten)]
        to: ExportTo,
    },
    /// Export the directory's users: JSON exactly as `user list --json`, or CSV
    #[command(after_help = "Example:\n  usertrail export users --format csv --excel > users.csv")]
    Users {
        #[command(flatten)]
        to: ExportTo,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Every record of the log, one JSON object a line, with the exact bytes each hash covers
    #[command(
        after_help = "Example:\n  usertrail export log > log.jsonl\n  usertrail export log --to seq:4200 > intact.jsonl"
    )]
    Log {
        /// jsonl (the only one)
        #[arg(long, value_enum, default_value = "jsonl")]
        format: LogFormat,
        /// From this record (seq:N); default the first
        #[arg(long, value_name = "seq:N")]
        from: Option<String>,
        /// Up to this point (seq:N or an RFC 3339 time), included; default the head
        #[arg(long, value_name = "WHEN")]
        to: Option<String>,
    },
}

/// The format of `export log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON Lines: one record a line.
    Jsonl,
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON document.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// `app-user ...`
#[derive(Debug, Subcommand)]
pub enum AppUserCommand {
    /// Create an application user: enabled, non-interactive, not counted (P1)
    #[command(
        after_help = "Example:\n  usertrail app-user create --env Sales --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --name 'ERP connector' --role 'Basic User'"
    )]
    Create {
        /// The environment
        #[arg(long)]
        env: String,
        /// The application (client) id
        #[arg(long, value_parser = parse_uuid)]
        app_id: uuid::Uuid,
        /// Its name
        #[arg(long)]
        name: String,
        /// Its business unit (default: the root)
        #[arg(long)]
        bu: Option<String>,
        /// A security role (repeatable)
        #[arg(long)]
        role: Vec<String>,
    },
    /// Enable or disable an application user, where the environment allows it (P2)
    #[command(
        name = "set-status",
        after_help = "Example:\n  usertrail app-user set-status --env Sales --app-id 6f1c0b5e-8f3a-4a59-9c7e-2a1d3b4c5d6e --enabled false"
    )]
    SetStatus {
        /// The environment
        #[arg(long)]
        env: String,
        /// The application (client) id
        #[arg(long, value_parser = parse_uuid)]
        app_id: uuid::Uuid,
        /// true or false
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
    },
}

/// `import ...`
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import Microsoft Graph exports; appends the difference from the directory as ordinary events
    #[command(
        after_help = "Example:\n  usertrail import graph --users users-1.json --users users-2.json --groups groups.json --skus skus.json\n\nFiles may be Graph pages ({\"value\": [...]}), bare arrays or JSON Lines. Users absent\nfrom the export are soft-deleted unless --keep-missing. Importing the same files twice\nappends nothing."
    )]
    Graph {
        /// GET /users export: one file per page, after one flag or repeated
        #[arg(long, required = true, num_args = 1..)]
        users: Vec<PathBuf>,
        /// GET /groups export with members and owners expanded (several files allowed)
        #[arg(long, num_args = 1..)]
        groups: Vec<PathBuf>,
        /// GET /subscribedSkus export, for SKUs not known from an earlier import (several files allowed)
        #[arg(long, num_args = 1..)]
        skus: Vec<PathBuf>,
        /// Keep users the export does not mention instead of deleting them
        #[arg(long)]
        keep_missing: bool,
        /// The kind of a skuPartNumber, overriding the one its service plans give (repeatable)
        #[arg(long, value_name = "PART=KIND", value_parser = parse_sku_kind)]
        sku_kind: Vec<(String, domain::events::SkuKind)>,
    },
    /// Import the Entra admin center's "Download users" CSV, as its difference (licenses left as they are)
    #[command(
        name = "entra-csv",
        after_help = "Example:\n  usertrail import entra-csv --file exportUsers_2026-12-6.csv --skus skus.json"
    )]
    EntraCsv {
        /// The downloaded CSV
        #[arg(long)]
        file: PathBuf,
        /// GET /subscribedSkus export, for SKUs not known yet (several files allowed)
        #[arg(long, num_args = 1..)]
        skus: Vec<PathBuf>,
        /// Keep users the file does not mention instead of deleting them
        #[arg(long)]
        keep_missing: bool,
    },
    /// Import the environments the admin tools list, as their difference (never deletes one)
    #[command(
        after_help = "Example:\n  usertrail import environments --file environments.json\n\nThe admin API's list (GET .../scopes/admin/environments: {\"value\": [...]}) or\n`pac admin list --json`. New environments are created, a changed type, database or\nsecurity group appended; environments the file lacks are reported, never deleted.\nEnvironments sharing a display name are registered as 'Name (id)'; --env also takes the id."
    )]
    Environments {
        /// The listing (several files allowed)
        #[arg(long, required = true, num_args = 1..)]
        file: Vec<PathBuf>,
    },
    /// Record what an export of an environment's SystemUser table showed (an observation)
    #[command(
        after_help = "Example:\n  usertrail import systemusers --env Sales --file su-1.json su-2.json --observed-at 2026-12-01T08:00:00Z\n\nThe Web API's answer to GET /api/data/v9.2/systemusers?$select=...&$expand=systemuserroles_association($select=name),\none file per page. Kept apart from what the rules derive; a field left out of\n$select is not observed. The same export twice appends nothing. See `reconcile`."
    )]
    Systemusers {
        /// The environment (its name, or the admin API's id)
        #[arg(long)]
        env: String,
        /// The export's pages
        #[arg(long, required = true, num_args = 1..)]
        file: Vec<PathBuf>,
        /// When the export was taken (RFC 3339); default: now
        #[arg(long, value_name = "WHEN")]
        observed_at: Option<String>,
    },
    /// Import stub users from a CSV file (header: domainname,firstname,lastname)
    #[command(
        name = "stub-users",
        after_help = "Example:\n  usertrail import stub-users --env Sales --file legacy-owners.csv"
    )]
    StubUsers {
        /// The environment
        #[arg(long)]
        env: String,
        /// The CSV file
        #[arg(long)]
        file: PathBuf,
    },
}

/// `user create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The user principal name
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
    /// Given name
    #[arg(long)]
    pub first: String,
    /// Surname
    #[arg(long)]
    pub last: String,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// A license to assign (repeatable)
    #[arg(long, value_name = "SKU")]
    pub license: Vec<String>,
    /// An admin role to give (repeatable; Global Administrators only)
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub admin_role: Vec<domain::events::AdminRole>,
    /// A guest from another tenant (its UPN is its own address)
    #[arg(long)]
    pub guest: bool,
    /// A guest's license in its home tenant (repeatable); it does not count here (D10)
    #[arg(long, value_name = "SKU", requires = "guest")]
    pub home_license: Vec<String>,
}

/// `user update`
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The user principal name
    #[arg(long, value_parser = Upn::parse)]
    pub upn: Upn,
    /// Given name
    #[arg(long)]
    pub first: Option<String>,
    /// Surname
    #[arg(long)]
    pub last: Option<String>,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// `user license ...`
#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Assign a license (rejected when no seat is free)
    #[command(
        after_help = "Example:\n  usertrail user license assign --upn alice@contoso.onmicrosoft.com --sku DYN365_ENTERPRISE_SALES"
    )]
    Assign(UserSku),
    /// Remove a license; its seat is free again
    #[command(
        after_help = "Example:\n  usertrail user license remove --upn alice@contoso.onmicrosoft.com --sku DYN365_ENTERPRISE_SALES"
    )]
    Remove(UserSku),
}

/// `user admin-role ...`
#[derive(Debug, Subcommand)]
pub enum AdminRoleCommand {
    /// Give an admin role
    #[command(
        after_help = "Example:\n  usertrail user admin-role add --upn bob@contoso.onmicrosoft.com --role power-platform"
    )]
    Add(UserRole),
    /// Take an admin role away
    #[command(
        after_help = "Example:\n  usertrail user admin-role remove --upn bob@contoso.onmicrosoft.com --role power-platform"
    )]
    Remove(UserRole),
}

/// `group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a security group
    #[command(
        after_help = "Example:\n  usertrail group create --name Sales-SG --owner bob@contoso.onmicrosoft.com"
    )]
    Create {
        /// The group's name, unique in the tenant
        #[arg(long)]
        name: String,
        /// Its first owner
        #[arg(long, value_parser = Upn::parse)]
        owner: Option<Upn>,
    },
    /// Add a user or a group (nested) to a group
    #[command(
        name = "add-member",
        after_help = "Example:\n  usertrail group add-member --group Sales-SG --upn alice@contoso.onmicrosoft.com"
    )]
    AddMember(MemberArgs),
    /// Remove a user or a group from a group
    #[command(
        name = "remove-member",
        after_help = "Example:\n  usertrail group remove-member --group Sales-SG --member-group Sales-EU"
    )]
    RemoveMember(MemberArgs),
    /// Add an owner to a group
    #[command(
        name = "add-owner",
        after_help = "Example:\n  usertrail group add-owner --group Sales-SG --upn bob@contoso.onmicrosoft.com"
    )]
    AddOwner {
        /// The group's name
        #[arg(long)]
        group: String,
        /// The new owner
        #[arg(long, value_parser = Upn::parse)]
        upn: Upn,
    },
    /// List groups with their members and owners
    #[command(after_help = "Example:\n  usertrail group list --json")]
    List(AtArgs),
}

/// A group and one member: a user or a group.
#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The group's name
    #[arg(long)]
    pub group: String,
    /// A user member
    #[arg(long, value_parser = Upn::parse, required_unless_present = "member_group", conflicts_with = "member_group")]
    pub upn: Option<Upn>,
    /// A nested group member
    #[arg(long, value_name = "GROUP")]
    pub member_group: Option<String>,
}

/// `demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many users the sample tenant gets
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(15..=100_000))]
    pub users: u32,
}

fn parse_sku_kind(text: &str) -> Result<(String, domain::events::SkuKind), String> {
    let Some((part, kind)) = text.split_once('=') else {
        return Err(format!("'{text}' is not PART=KIND"));
    };
    Ok((part.trim().to_uppercase(), parse_kind(kind.trim())?))
}

fn parse_count(text: &str) -> Result<u32, String> {
    match text.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("cannot be negative ({n})")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

fn parse_env_type(text: &str) -> Result<domain::events::EnvType, String> {
    domain::events::EnvType::from_cli(text).ok_or_else(|| {
        format!(
            "unknown environment type '{text}': production | sandbox | trial | developer | default | teams"
        )
    })
}

fn parse_app(text: &str) -> Result<domain::events::App, String> {
    domain::events::App::from_cli(text)
        .ok_or_else(|| format!("unknown app '{text}': sales | customer-service"))
}

fn parse_mode(text: &str) -> Result<domain::events::AccessMode, String> {
    domain::events::AccessMode::from_cli(text)
        .filter(|m| *m != domain::events::AccessMode::DelegatedAdmin)
        .ok_or_else(|| format!("unknown access mode '{text}': read-write | administrative | read | support | non-interactive"))
}

fn parse_operation(text: &str) -> Result<domain::events::Operation, String> {
    domain::events::Operation::from_cli(text).ok_or_else(|| {
        format!("unknown operation '{text}': create | read | write | delete | append | append-to | assign | share")
    })
}

fn parse_level(text: &str) -> Result<domain::events::Level, String> {
    domain::events::Level::from_cli(text)
        .ok_or_else(|| format!("unknown access level '{text}': none | user | bu | parent-child | org"))
}

fn parse_uuid(text: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(text.trim()).map_err(|e| format!("'{text}' is not a UUID: {e}"))
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("'{text}' is not NAME=VALUE"));
    };
    let known = ["allowRoleAssignmentOnDisabledUsers", "allowApplicationUserStatusChange"];
    let Some(name) = known.iter().find(|k| k.eq_ignore_ascii_case(name.trim())) else {
        return Err(format!("unknown setting '{}': {}", name.trim(), known.join(" | ")));
    };
    match value.trim() {
        v @ ("true" | "false") => Ok(((*name).to_owned(), v.to_owned())),
        other => Err(format!("{name} takes true or false, not '{other}'")),
    }
}

/// `90m`, `8h`, `1d`, or `off`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Duration(None));
    }
    let bad = || format!("'{text}' is not a duration: use 90m, 8h, 1d or off");
    // The unit is the last character, whatever its width in bytes.
    let split = text.char_indices().last().map(|(i, _)| i).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u32 = number.parse().map_err(|_| bad())?;
    let minutes = match unit {
        "m" => Some(n),
        "h" => n.checked_mul(60),
        "d" => n.checked_mul(24 * 60),
        _ => None,
    };
    match minutes {
        Some(0) => Err("a timeout of 0 would sign everyone out at once: use off to unset it".into()),
        Some(m) => Ok(Duration(Some(m))),
        None => Err(bad()),
    }
}

fn parse_seats(text: &str) -> Result<u32, String> {
    match text.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("seats cannot be negative ({n})")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("{n} seats is more than usertrail counts")),
        Err(_) => Err(format!("'{text}' is not a whole number of seats")),
    }
}

fn parse_kind(text: &str) -> Result<domain::events::SkuKind, String> {
    domain::events::SkuKind::from_cli(text).ok_or_else(|| {
        format!("unknown SKU kind '{text}': d365 | power-apps | m365-dataverse | office | marketing-tenant")
    })
}

fn parse_role(text: &str) -> Result<domain::events::AdminRole, String> {
    domain::events::AdminRole::from_cli(text).ok_or_else(|| {
        format!("unknown admin role '{text}': global | power-platform | dynamics365 | user-admin | password-admin")
    })
}
