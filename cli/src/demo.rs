//! `usertrail demo`: a realistic sample tenant with six months of history,
//! written through the same commands an admin types, then a guided tour.
//!
//! It appends in the batched durability mode and flushes once at the end.
//! On a PostgreSQL URL it writes into an empty log there (made if missing),
//! and the report goes to the current directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Timelike, Utc};
use domain::envcmd::{EnvCommand, NewEnvironment, StubRow};
use domain::events::{AccessMode, App, EnvType};
use domain::events::{AdminRole, Profile, ProfileField, SkuKind};
use domain::tenant::{MemberRef, NewUser, TenantCommand};
use domain::Upn;
use serde_json::json;
use store::{Durability, EventStore};
use uuid::Uuid;

use crate::args::DemoArgs;
use crate::error::{usage, CliError};
use crate::output::Out;
use crate::shell::{Done, Shell};

/// Where the demo writes when `--db` is not given.
pub const DEMO_DB: &str = "usertrail-demo.db";

/// The report the tour ends with, beside the database (a server's demo: in
/// the current directory).
pub const DEMO_REPORT: &str = "usertrail-demo-report.html";

const DOMAIN: &str = "contoso.onmicrosoft.com";
const SALES: &str = "DYN365_ENTERPRISE_SALES";
const POWER_APPS: &str = "POWERAPPS_PER_USER";
const M365: &str = "ENTERPRISEPACK";
const OFFICE: &str = "O365_BUSINESS_ESSENTIALS";
const MARKETING: &str = "DYN365_MARKETING_APP";

const FIRST: [&str; 20] = [
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Julia", "Kofi", "Lena",
    "Mateo", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tara",
];
const LAST: [&str; 20] = [
    "Adams", "Berger", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jansen",
    "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka",
];
const ENVIRONMENTS: [&str; 4] = ["Sales", "Service", "Pilot", "Dev"];
const DEPARTMENTS: [&str; 5] = ["Sales", "Customer Service", "Finance", "IT", "Marketing"];

/// The commands the script runs besides one per user hired and one per
/// member added to Sales-SG and Service-SG: the progress bar's length.
const STEPS: u64 = 52;

/// The demo's script runner: one shell, a clock that only moves forward,
/// and the bar that counts its steps.
struct Demo {
    shell: Shell,
    start: DateTime<Utc>,
    bar: indicatif::ProgressBar,
}

impl Demo {
    /// Moves the clock to `days` (fractions allowed) after the start.
    fn day(&mut self, days: f64) {
        self.shell.now = Some(self.start + Duration::seconds((days * 86_400.0) as i64));
    }

    async fn run(&self, actor: &str, command: TenantCommand) -> Result<Done, CliError> {
        let actor = upn(actor)?;
        self.bar.inc(1);
        self.shell.execute(Some(&actor), &command).await
    }

    async fn env(&self, actor: &str, env: &str, command: EnvCommand) -> Result<Done, CliError> {
        let actor = upn(actor)?;
        self.bar.inc(1);
        self.shell.execute_env(Some(&actor), env, &command).await
    }

    async fn create_environment(&self, actor: &str, new: &NewEnvironment) -> Result<Done, CliError> {
        let actor = upn(actor)?;
        self.bar.inc(1);
        self.shell.create_environment(Some(&actor), new).await
    }

    /// The background sync pass over every environment, on `day`.
    async fn sync(&mut self, day: f64) -> Result<(), CliError> {
        self.day(day);
        let all: Vec<String> = ENVIRONMENTS.iter().map(|e| (*e).to_owned()).collect();
        self.bar.inc(1);
        self.shell.sync(&all).await?;
        Ok(())
    }
}

fn upn(text: &str) -> Result<Upn, CliError> {
    Upn::parse(text).map_err(CliError::Usage)
}

fn person(
    id: u128,
    upn_text: &str,
    first: &str,
    last: &str,
    fields: &[(ProfileField, &str)],
) -> Result<NewUser, CliError> {
    let mut profile = Profile::default();
    profile.set(ProfileField::GivenName, Some(first.to_owned()));
    profile.set(ProfileField::Surname, Some(last.to_owned()));
    for (f, v) in fields {
        profile.set(*f, Some((*v).to_owned()));
    }
    Ok(NewUser {
        id: Uuid::from_u128(id),
        upn: upn(upn_text)?,
        profile,
        licenses: vec![],
        admin_roles: vec![],
        guest: false,
        home_licenses: vec![],
        temporary_password: true,
    })
}

/// `url` without its password (the user's `:password@`, a `password=`
/// parameter), for the tour's commands to show.
fn without_password(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => {
                format!("{scheme}://{}@{host}", user.split_once(':').map_or(user, |(name, _)| name))
            }
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    let params: Vec<&str> =
        query.split('&').filter(|p| !p.is_empty() && !p.starts_with("password=")).collect();
    if params.is_empty() {
        base
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// Removes a previous demo database at the default path; refuses to touch
/// any other database that holds records.
/// Returns whether a previous demo database was replaced.
async fn prepare(path: &Path, is_default: bool, keys: &store::CacheKeys) -> Result<bool, CliError> {
    if !path.exists() {
        return Ok(false);
    }
    let records = {
        // Under the database's own key: under another, its index would be rebuilt.
        let store = crate::open(path, Durability::Batched, keys)?;
        store.head().await?.map_or(0, |h| h.seq)
    };
    if records == 0 {
        return Ok(false);
    }
    if !is_default {
        return usage(format!(
            "{} already holds {records} records; the demo writes a fresh database: remove it or pass another --db",
            path.display()
        ));
    }
    std::fs::remove_dir_all(path)
        .map_err(|source| store::StoreError::Io { path: path.to_path_buf(), source })?;
    Ok(true)
}

/// Builds the sample tenant and prints the tour, under one progress bar
/// when `options` say stderr is a terminal.
pub async fn run(
    db: Option<&Path>,
    now: Option<DateTime<Utc>>,
    options: &crate::RunOptions,
    args: DemoArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (machine, keys) = (options.machine, &options.cache_keys);
    let (path, is_default) = match db {
        Some(p) => (p.to_path_buf(), false),
        None => (PathBuf::from(DEMO_DB), true),
    };
    let (store, replaced, shown, report): (std::sync::Arc<dyn EventStore>, _, _, _) =
        match crate::postgres_url(&path) {
            Some(url) => {
                let dest = crate::copy::Destination::new(&path, "--db", "demo", options).await?;
                (dest.store, false, without_password(url), PathBuf::from(DEMO_REPORT))
            }
            None => {
                let replaced = prepare(&path, is_default, keys).await?;
                let store = crate::open(&path, Durability::Batched, keys)?;
                (
                    std::sync::Arc::new(store),
                    replaced,
                    path.display().to_string(),
                    path.with_file_name(DEMO_REPORT),
                )
            }
        };
    // Whole seconds read better in the tour than the clock's nanoseconds.
    let end = now.unwrap_or_else(|| machine.clock()).with_nanosecond(0).unwrap_or_else(Utc::now);
    let mut shell = Shell::new(store, None);
    shell.machine = machine;
    // Never ticking on its own: the binary holds stderr's lock on the main thread.
    let bar = crate::shell::progress_bar(options.progress, 0, "demo {msg} [{bar:30}] {pos}/{len}");
    let mut demo = Demo { shell, start: end - Duration::days(180), bar };
    let people = script(&mut demo, args.users as usize).await?;
    demo.bar.set_message("verify");
    demo.shell.store.flush().await?;
    let verified = demo.shell.store.verify().await?;
    demo.bar.set_message("tour");
    // Written once the bar is gone: stdout and stderr may be one terminal.
    let mut page = Vec::new();
    let mut buffered = Out { json: out.json, w: &mut page, color: out.color, width: out.width };
    if replaced && !out.json {
        buffered.line(format!("(replaced the previous demo database at {})", path.display()))?;
    }
    let mut toured = tour(&demo.shell, &shown, &people, verified, &mut buffered).await;
    if toured.is_ok() {
        demo.shell.now = Some(end);
        toured = auditors_report(&demo.shell, &shown, report, &mut buffered).await;
    }
    demo.shell.store.flush().await?;
    demo.bar.finish_and_clear();
    out.raw(&page)?;
    toured
}

/// The tour's end: the auditor's report of the last 90 days, written to `file`.
async fn auditors_report(shell: &Shell, db: &str, file: PathBuf, out: &mut Out<'_>) -> Result<(), CliError> {
    let args = crate::args::ReportArgs { from: None, to: None, env: vec![], user: vec![], out: file.clone() };
    let mut said = Vec::new();
    crate::report::report(
        shell,
        None,
        args,
        &mut Out { json: false, w: &mut said, color: false, width: None },
    )
    .await?;
    if out.json {
        return Ok(());
    }
    let file = file.display();
    out.line("")?;
    out.line(format!("== The auditor's report of the last 90 days (usertrail report --out {file}) =="))?;
    out.line(format!("wrote {file}: open it in a browser, print it to PDF"))?;
    out.line(format!(
        "its record in the log tells it from a changed copy: usertrail --db {db} verify --report {file}"
    ))
}

/// The users the tour talks about.
struct Cast {
    users: usize,
    moved_from: String,
    moved_to: String,
    deleted: String,
    /// The log position just before the license moved.
    before_move: u64,
}

async fn script(demo: &mut Demo, users: usize) -> Result<Cast, CliError> {
    // Department d gets the users i with i % 5 == d.
    let in_department = |d: usize| ((users + DEPARTMENTS.len() - 1 - d) / DEPARTMENTS.len()) as u32;
    let (sales_count, service_count, finance_count) = (in_department(0), in_department(1), in_department(2));
    demo.bar.set_length(users as u64 + u64::from(sales_count + service_count) + STEPS);
    demo.bar.set_message("hiring");
    let admin = format!("admin@{DOMAIN}");
    demo.day(0.0);
    let init = TenantCommand::Init {
        domain: DOMAIN.into(),
        name: "Contoso".into(),
        admin: person(1, &admin, "Megan", "Bowen", &[(ProfileField::JobTitle, "IT Director")])?,
    };
    demo.run(&admin, init).await?;
    for (sku, kind, seats) in [
        (SALES, SkuKind::D365, sales_count + 3),
        (POWER_APPS, SkuKind::PowerApps, service_count),
        (M365, SkuKind::M365Dataverse, users as u32 + 10),
        (OFFICE, SkuKind::Office, finance_count + 5),
        (MARKETING, SkuKind::MarketingTenant, 1),
    ] {
        demo.run(&admin, TenantCommand::AddSku { sku: sku.into(), kind, seats }).await?;
    }
    let helpers = [
        (2, "pp-admin", "Patti", "Fernandez", AdminRole::PowerPlatform),
        (3, "hr-admin", "Isaiah", "Langer", AdminRole::UserAdmin),
        (4, "helpdesk", "Lynne", "Robbins", AdminRole::PasswordAdmin),
    ];
    for (n, name, first, last, role) in helpers {
        demo.day(0.1 * n as f64);
        let mut new =
            person(n, &format!("{name}@{DOMAIN}"), first, last, &[(ProfileField::Department, "IT")])?;
        new.licenses = vec![M365.into()];
        new.admin_roles = vec![role];
        demo.run(&admin, TenantCommand::CreateUser(new)).await?;
    }

    // Hiring: the HR admin creates everyone over three weeks.
    let hr = format!("hr-admin@{DOMAIN}");
    let mut taken = HashSet::new();
    let mut by_department: Vec<Vec<String>> = vec![Vec::new(); DEPARTMENTS.len()];
    for i in 0..users {
        let (first, last) = (FIRST[i % FIRST.len()], LAST[(i / FIRST.len() * 7 + i) % LAST.len()]);
        let mut name = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
        if !taken.insert(name.clone()) {
            name = format!("{name}{i}");
        }
        let address = format!("{name}@{DOMAIN}");
        let department = DEPARTMENTS[i % DEPARTMENTS.len()];
        let title = match department {
            "Sales" => "Account Executive",
            "Customer Service" => "Support Agent",
            "Finance" => "Analyst",
            "IT" => "Engineer",
            _ => "Campaign Manager",
        };
        let city = ["Seattle", "Lyon", "Berlin", "Osaka", "Lagos"][i % 5];
        let mut new = person(
            1000 + i as u128,
            &address,
            first,
            last,
            &[
                (ProfileField::Department, department),
                (ProfileField::JobTitle, title),
                (ProfileField::City, city),
            ],
        )?;
        new.licenses = match department {
            "Sales" => vec![M365.into(), SALES.into()],
            "Customer Service" => vec![M365.into(), POWER_APPS.into()],
            "Finance" => vec![OFFICE.into()],
            _ => vec![M365.into()],
        };
        demo.day(1.0 + 20.0 * i as f64 / users as f64);
        demo.run(&hr, TenantCommand::CreateUser(new)).await?;
        by_department[i % DEPARTMENTS.len()].push(address);
    }
    let [sales, service, finance, ..] = &by_department[..] else {
        return usage("the demo needs at least three departments of users");
    };

    // Security groups for the environments of later chapters.
    demo.bar.set_message("groups");
    demo.day(21.0);
    let groups = [("Sales-SG", 9001u128, sales), ("Service-SG", 9002, service)];
    for (name, id, members) in groups {
        let owner = upn(&members[0])?;
        demo.run(
            &hr,
            TenantCommand::CreateGroup { id: Uuid::from_u128(id), name: name.into(), owner: Some(owner) },
        )
        .await?;
        for m in members.iter() {
            demo.run(&hr, TenantCommand::AddMember { group: name.into(), member: MemberRef::User(upn(m)?) })
                .await?;
        }
    }
    demo.run(
        &hr,
        TenantCommand::CreateGroup { id: Uuid::from_u128(9003), name: "Sales-EU".into(), owner: None },
    )
    .await?;
    let nested = MemberRef::Group("Sales-EU".into());
    demo.run(&hr, TenantCommand::AddMember { group: "Sales-SG".into(), member: nested }).await?;

    // Environments of every kind, and the first sync pass.
    demo.bar.set_message("six months");
    demo.day(22.0);
    let manager = sales[0].clone();
    let environments = [
        ("Sales", EnvType::Production, Some("Sales-SG"), vec![App::Sales], 0, admin.clone()),
        ("Service", EnvType::Sandbox, Some("Service-SG"), vec![App::CustomerService], 2, admin.clone()),
        ("Pilot", EnvType::Trial, None, vec![], 0, admin.clone()),
        ("Dev", EnvType::Developer, None, vec![], 0, manager.clone()),
    ];
    for (n, (name, env_type, group, apps, app_pass, creator)) in environments.into_iter().enumerate() {
        let new = NewEnvironment {
            id: Uuid::from_u128(7000 + n as u128),
            name: name.into(),
            env_type,
            dataverse: true,
            security_group: group.map(str::to_owned),
            app_pass,
            apps,
        };
        demo.create_environment(&creator, &new).await?;
    }
    // Sales users get their role through a group team that follows Sales-SG (R7).
    let team = EnvCommand::CreateTeam {
        id: Uuid::from_u128(8000),
        name: "Sales team".into(),
        business_unit: None,
        group: Some("Sales-SG".into()),
    };
    demo.env(&admin, "Sales", team).await?;
    let role = EnvCommand::AssignTeamRole { team: "Sales team".into(), role: "Salesperson".into() };
    demo.env(&admin, "Sales", role).await?;
    demo.sync(22.5).await?;

    // An integration: an application user, and legacy owners as stubs.
    demo.day(23.0);
    let erp = EnvCommand::CreateAppUser {
        app_id: Uuid::from_u128(0x6f1c_0b5e_8f3a_4a59_9c7e_2a1d_3b4c_5d6e),
        name: "ERP connector".into(),
        business_unit: None,
        roles: vec!["Basic User".into()],
    };
    demo.env(&admin, "Sales", erp).await?;
    let rows = ["legacy.rep1", "legacy.rep2", "legacy.rep3"]
        .iter()
        .enumerate()
        .map(|(i, name)| StubRow {
            line: i + 2,
            domainname: format!("{name}@contoso.com"),
            firstname: "Legacy".into(),
            lastname: format!("Rep {}", i + 1),
        })
        .collect();
    demo.env(&admin, "Sales", EnvCommand::ImportStubs { rows }).await?;
    let reassign = EnvCommand::ReassignRecords { from: upn("legacy.rep1@contoso.com")?, to: upn(&manager)? };
    demo.env(&admin, "Sales", reassign).await?;

    // The documented non-interactive set-up: license, sync, set the mode, remove the license (A4).
    demo.day(24.0);
    let service_account = format!("svc-integration@{DOMAIN}");
    let mut svc =
        person(900, &service_account, "Integration", "Service", &[(ProfileField::Department, "IT")])?;
    svc.licenses = vec![SALES.into()];
    demo.run(&admin, TenantCommand::CreateUser(svc)).await?;
    demo.run(
        &admin,
        TenantCommand::AddMember {
            group: "Sales-SG".into(),
            member: MemberRef::User(upn(&service_account)?),
        },
    )
    .await?;
    demo.sync(24.1).await?;
    let mode = EnvCommand::SetAccessMode { upn: upn(&service_account)?, mode: AccessMode::NonInteractive };
    demo.env(&admin, "Sales", mode).await?;
    demo.day(24.2);
    demo.run(&admin, TenantCommand::RemoveLicense { upn: upn(&service_account)?, sku: SALES.into() }).await?;
    demo.sync(24.3).await?;
    // A trial adds users on demand only (S1.1).
    demo.day(25.0);
    demo.env(&admin, "Pilot", EnvCommand::AddUser { upn: upn(&manager)? }).await?;

    // Months of ordinary administration.
    demo.day(35.0);
    let promoted = upn(&sales[0])?;
    let fields = vec![(ProfileField::JobTitle, Some("Sales Manager".to_owned()))];
    demo.run(&hr, TenantCommand::UpdateUser { upn: promoted, fields }).await?;
    demo.sync(36.0).await?;

    demo.day(60.0);
    let before_move = demo.shell.store.head().await?.map_or(0, |h| h.seq);
    let (moved_from, moved_to) = (sales[1].clone(), finance[0].clone());
    demo.run(&hr, TenantCommand::RemoveLicense { upn: upn(&moved_from)?, sku: SALES.into() }).await?;
    demo.run(&hr, TenantCommand::AssignLicense { upn: upn(&moved_to)?, sku: SALES.into() }).await?;
    // She moves to Finance: out of the Sales security group too.
    let left =
        TenantCommand::RemoveMember { group: "Sales-SG".into(), member: MemberRef::User(upn(&moved_from)?) };
    demo.run(&hr, left).await?;
    demo.sync(61.0).await?;

    demo.day(75.0);
    demo.run(&hr, TenantCommand::Block { upn: upn(&service[1])? }).await?;
    demo.sync(75.5).await?;
    demo.day(78.0);
    demo.run(&hr, TenantCommand::Unblock { upn: upn(&service[1])? }).await?;
    demo.sync(78.5).await?;
    demo.day(80.0);
    demo.run(&format!("helpdesk@{DOMAIN}"), TenantCommand::ResetPassword { upn: upn(&service[1])? }).await?;

    demo.day(90.0);
    let guest = upn("jane.doe@fabrikam.com")?;
    let invite =
        TenantCommand::Invite { id: Uuid::from_u128(5000), upn: guest.clone(), sku: Some(SALES.into()) };
    demo.run(&hr, invite).await?;
    demo.day(92.0);
    demo.run(&guest.to_string(), TenantCommand::AcceptInvite { upn: guest }).await?;
    demo.sync(92.5).await?;

    demo.day(120.0);
    let deleted = sales[2].clone();
    demo.run(&hr, TenantCommand::Delete { upn: upn(&deleted)? }).await?;
    demo.sync(120.5).await?;
    demo.day(124.0);
    demo.run(&hr, TenantCommand::Restore { upn: upn(&deleted)? }).await?;
    demo.sync(124.5).await?;

    // A refused command: its failure audit record is part of the history (L1).
    demo.day(150.0);
    let one_too_many = TenantCommand::AssignLicense { upn: upn(&finance[1])?, sku: POWER_APPS.into() };
    match demo.run(&hr, one_too_many.clone()).await {
        Ok(_) | Err(CliError::Rejected(_)) => {}
        Err(other) => return Err(other),
    }
    demo.day(151.0);
    let seats = service_count + 5;
    demo.run(&admin, TenantCommand::SetSeats { sku: POWER_APPS.into(), seats }).await?;
    demo.run(&hr, one_too_many).await?;
    demo.sync(151.5).await?;

    Ok(Cast { users: users + 5, moved_from, moved_to, deleted, before_move })
}

async fn tour(
    shell: &Shell,
    db: &str,
    cast: &Cast,
    report: store::VerifyReport,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let head = shell.store.head().await?;
    let records = head.map_or(0, |h| h.seq);
    if out.json {
        return out.json(&json!({
            "database": db,
            "records": records,
            "users": cast.users,
            "verified": report.problem.is_none(),
        }));
    }
    out.line(format!(
        "usertrail demo: Contoso, {} users, {records} log records over six months, in {db}",
        cast.users
    ))?;
    out.line("")?;
    out.line("== Licenses today (usertrail sku list) ==")?;
    crate::directory::sku(shell, None, crate::args::SkuCommand::List(crate::args::AtArgs { at: None }), out)
        .await?;
    out.line("")?;
    out.line("== The same, 100 days ago: time travel with --at (L4) ==")?;
    let past = head.map(|h| (h.recorded_at - Duration::days(100)).to_rfc3339());
    crate::directory::sku(shell, None, crate::args::SkuCommand::List(crate::args::AtArgs { at: past }), out)
        .await?;
    out.line("")?;
    out.line("== The audit history, newest first (usertrail history --limit 8) ==")?;
    let view = crate::args::HistoryArgs {
        user: None,
        env: None,
        since: None,
        until: None,
        limit: 8,
        at: crate::args::AtArgs { at: None },
    };
    crate::views::history(shell, view, out).await?;
    out.line("")?;
    out.line("== The SystemUser table of Sales (usertrail systemusers --env Sales) ==")?;
    crate::environments::systemusers(shell, "Sales", crate::args::AtArgs { at: None }, out).await?;
    out.line("")?;
    let who = upn(&cast.moved_from)?;
    out.line(format!(
        "== Why can't {who} reach Sales any more? (usertrail diagnose --env Sales --upn {who}) =="
    ))?;
    crate::views::diagnose(shell, "Sales", &who, crate::args::AtArgs { at: None }, out).await?;
    out.line("")?;
    out.line(format!("== Since when? (usertrail timeline --env Sales --upn {who}) =="))?;
    crate::views::timeline(shell, "Sales", &who, crate::args::AtArgs { at: None }, out).await?;
    out.line("")?;
    out.line(format!(
        "On day 60 {who} moved to Finance: her DYN365_ENTERPRISE_SALES license went to {} and she left Sales-SG;",
        cast.moved_to
    ))?;
    out.line("the next sync pass disabled her Sales record (S2.4, S4). Her Office 365 E3 alone would count only on demand (S1.4).")?;
    out.line(format!("{} was deleted on day 120 and restored four days later.", cast.deleted))?;
    out.line(format!(
        "Try: usertrail --db {db} diagnose --env Sales --upn {who} --at seq:{}",
        cast.before_move
    ))?;
    match report.problem {
        None => out.line(format!("verify: {} records, hash chain and indexes intact (L3)", report.records)),
        Some(p) => Err(CliError::Corrupt(format!("verify failed at record {}: {}", p.seq, p.what))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// Runs the script for `users` on a scratch database: the states its
    /// shell loaded from the store, and the bar's position and length.
    fn scripted(users: usize) -> (u64, u64, Option<u64>) {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let path = dir.path().join("demo.db");
            let store = crate::open(&path, Durability::Batched, &store::CacheKeys::Process).expect("a store");
            let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("a time").to_utc();
            let bar = indicatif::ProgressBar::hidden();
            let mut demo = Demo { shell: Shell::new(std::sync::Arc::new(store), None), start, bar };
            script(&mut demo, users).await.expect("the script runs");
            (demo.shell.loads.load(Ordering::Relaxed), demo.bar.position(), demo.bar.length())
        })
    }

    #[test]
    fn demo_cost_grows_linearly_with_users() {
        // A load folds a whole state, a cost in proportion to the tenant.
        // Issue 30: every command loaded the directory, so the demo's loads
        // grew with its users and its time with their square. Now a command
        // folds only what was appended since the last one.
        let (small, ..) = scripted(200);
        let (large, ..) = scripted(800);
        assert_eq!(small, large, "loads at 200 and at 800 users");
        assert!(small < 100, "{small} loads for a script of about 60 steps besides its users");
    }

    #[test]
    fn demo_progress_bar_ends_at_its_length() {
        let (_, position, length) = scripted(15);
        assert_eq!(Some(position), length, "STEPS counts every command of the script");
    }
}
