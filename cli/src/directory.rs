//! The "Directory (tenant)" commands: `init`, `sku`, `user`, `group`.
//! Each turns its arguments into one domain command, runs it through the
//! shell, and prints what happened.

use domain::events::{ProfileField, SkuKind};
use domain::tenant::{MemberRef, NewUser, Tenant, TenantCommand};
use domain::Upn;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::args::{
    AdminRoleCommand, AtArgs, CreateArgs, GroupCommand, InitArgs, LicenseCommand, MemberArgs, ProfileArgs,
    SkuCommand, UpdateArgs, UserCommand,
};
use crate::error::CliError;
use crate::output::Out;
use crate::shell::Shell;
use crate::time::parse_at;

/// The characters of a temporary password: no look-alikes (0/O, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
/// Random characters in a temporary password: 16 of 57 are 93 bits, past
/// the 72 asked for even after redrawing those that miss a character class.
const PASSWORD_CHARS: usize = 16;
/// Characters per group, read out between dashes.
const PASSWORD_GROUP: usize = 4;

/// A new temporary password, drawn from the operating system's CSPRNG. It
/// goes to the actor once and nowhere else: the log records only that one
/// was issued (D2).
///
/// Four groups of four with dashes and a final `!`, so it is easy to read
/// out; it always holds an upper-case letter, a lower-case letter, a digit
/// and symbols, so it meets Entra ID's complexity rule (three of four
/// classes) whatever was drawn.
pub fn temporary_password() -> Result<String, CliError> {
    // The largest multiple of the alphabet's size in a byte: bytes at or past
    // it are redrawn, so every character is equally likely.
    let fair = (256 / PASSWORD_ALPHABET.len() * PASSWORD_ALPHABET.len()) as u8;
    loop {
        let mut chars = Vec::with_capacity(PASSWORD_CHARS);
        let mut bytes = [0u8; 64];
        while chars.len() < PASSWORD_CHARS {
            getrandom::fill(&mut bytes)
                .map_err(|e| CliError::System(format!("no randomness from the operating system: {e}")))?;
            let usable = bytes.iter().filter(|&&b| b < fair);
            chars.extend(usable.map(|&b| PASSWORD_ALPHABET[usize::from(b) % PASSWORD_ALPHABET.len()]));
            chars.truncate(PASSWORD_CHARS);
        }
        let classes = [u8::is_ascii_uppercase, u8::is_ascii_lowercase, u8::is_ascii_digit];
        if !classes.iter().all(|class| chars.iter().any(class)) {
            continue;
        }
        let groups: Vec<&str> =
            chars.chunks(PASSWORD_GROUP).map(|g| std::str::from_utf8(g).unwrap_or_default()).collect();
        return Ok(format!("{}!", groups.join("-")));
    }
}

fn profile_fields(
    first: Option<&str>,
    last: Option<&str>,
    p: &ProfileArgs,
) -> Result<Vec<(ProfileField, Option<String>)>, CliError> {
    let given = [
        (ProfileField::GivenName, first),
        (ProfileField::Surname, last),
        (ProfileField::DisplayName, p.display_name.as_deref()),
        (ProfileField::JobTitle, p.title.as_deref()),
        (ProfileField::Department, p.department.as_deref()),
        (ProfileField::Mail, p.mail.as_deref()),
        (ProfileField::OfficePhone, p.phone.as_deref()),
        (ProfileField::MobilePhone, p.mobile.as_deref()),
        (ProfileField::Fax, p.fax.as_deref()),
        (ProfileField::StreetAddress, p.street.as_deref()),
        (ProfileField::City, p.city.as_deref()),
        (ProfileField::State, p.state.as_deref()),
        (ProfileField::PostalCode, p.postal.as_deref()),
        (ProfileField::Country, p.country.as_deref()),
    ];
    // An empty value clears the field; a value past Microsoft's limit is
    // refused here, before anything is decided (issue 25, finding 3).
    let mut fields = Vec::new();
    for (field, value) in given {
        let Some(value) = value else { continue };
        let value = value.trim();
        domain::limits::check_profile_field(field, value).map_err(CliError::Usage)?;
        fields.push((field, Some(value.to_owned()).filter(|v| !v.is_empty())));
    }
    Ok(fields)
}

fn new_user(id: Uuid, upn: Upn, fields: Vec<(ProfileField, Option<String>)>) -> NewUser {
    let profile = fields.into_iter().filter_map(|(f, v)| Some((f, v?))).collect();
    NewUser {
        id,
        upn,
        profile,
        licenses: vec![],
        admin_roles: vec![],
        guest: false,
        home_licenses: vec![],
        temporary_password: true,
    }
}

/// `init`
pub async fn init(shell: &Shell, args: InitArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let password = temporary_password()?;
    let admin = new_user(shell.ids.next(), args.admin.clone(), vec![]);
    let id = admin.id;
    let command = TenantCommand::Init { domain: args.tenant.clone(), name: args.name, admin };
    let done = shell.execute(None, &command).await?;
    if out.json {
        let extra = json!({ "tenant": args.tenant.to_lowercase(), "admin": { "id": id, "userPrincipalName": args.admin.to_string(), "temporaryPassword": password } });
        return out.done(command.name(), &done, "", extra);
    }
    out.done(
        command.name(),
        &done,
        &format!("tenant {} created; Global Administrator {}", args.tenant.to_lowercase(), args.admin),
        Value::Null,
    )?;
    out.line(format!("temporary password for {}: {password}  (shown once; it is not stored)", args.admin))
}

/// `sku ...`
pub async fn sku(
    shell: &Shell,
    actor: Option<&Upn>,
    command: SkuCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (domain_command, summary) = match command {
        SkuCommand::Add { sku, kind, seats } => {
            let summary = format!("added {sku} ({}) with {seats} seats", kind.cli_name());
            (TenantCommand::AddSku { sku, kind, seats }, summary)
        }
        SkuCommand::SetSeats { sku, seats } => {
            let summary = format!("{sku} now has {seats} seats");
            (TenantCommand::SetSeats { sku, seats }, summary)
        }
        SkuCommand::List(at) => return sku_list(shell, at, out).await,
    };
    let done = shell.execute(actor, &domain_command).await?;
    out.done(domain_command.name(), &done, &summary, Value::Null)
}

async fn sku_list(shell: &Shell, at: AtArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let (tenant, now) = tenant_as_of(shell, &at).await?;
    let rows = tenant.skus.values().map(|s| {
        let used = tenant.seats_used(&s.part, now);
        (s, used, s.seats.saturating_sub(used))
    });
    if out.json {
        let skus: Vec<Value> = rows
            .map(|(s, used, free)| json!({ "skuPartNumber": s.part, "skuId": s.id, "kind": s.kind.cli_name(), "seats": s.seats, "used": used, "free": free }))
            .collect();
        return out.json(&Value::Array(skus));
    }
    let rows = rows
        .map(|(s, used, free)| {
            let note = if s.kind == SkuKind::MarketingTenant { "held by the tenant" } else { "" };
            vec![
                s.part.clone(),
                s.kind.cli_name().into(),
                s.seats.to_string(),
                used.to_string(),
                free.to_string(),
                note.into(),
            ]
        })
        .collect();
    out.table(&["sku", "kind", "seats", "used", "free", ""], rows)
}

/// The directory as of `--at`, and the time it is judged at.
async fn tenant_as_of(
    shell: &Shell,
    at: &AtArgs,
) -> Result<(Tenant, chrono::DateTime<chrono::Utc>), CliError> {
    let (seq, now) = shell.point(at.at.as_deref().map(parse_at).transpose()?).await?;
    let (tenant, _) = shell.tenant_at(seq).await?;
    Ok((tenant, now))
}

/// `user ...`
pub async fn user(
    shell: &Shell,
    actor: Option<&Upn>,
    command: UserCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (domain_command, summary, password) = match command {
        UserCommand::Create(args) => return create(shell, actor, args, out).await,
        UserCommand::List(at) => return user_list(shell, at, out).await,
        env_command @ (UserCommand::Refresh(_)
        | UserCommand::Access(_)
        | UserCommand::SetAccessMode { .. }
        | UserCommand::ReassignRecords { .. }
        | UserCommand::SetEmail { .. }
        | UserCommand::SetBu { .. }) => {
            return crate::environments::user(shell, actor, env_command, out).await
        }
        UserCommand::Update(UpdateArgs { upn, first, last, profile }) => {
            let fields = profile_fields(first.as_deref(), last.as_deref(), &profile)?;
            let summary = format!("updated {upn}");
            (TenantCommand::UpdateUser { upn, fields }, summary, None)
        }
        UserCommand::License(LicenseCommand::Assign(a)) => {
            let summary = format!("assigned {} to {}", a.sku, a.upn);
            (TenantCommand::AssignLicense { upn: a.upn, sku: a.sku }, summary, None)
        }
        UserCommand::License(LicenseCommand::Remove(a)) => {
            let summary = format!("removed {} from {}", a.sku, a.upn);
            (TenantCommand::RemoveLicense { upn: a.upn, sku: a.sku }, summary, None)
        }
        UserCommand::AdminRole(AdminRoleCommand::Add(a)) => {
            let summary = format!("{} is now a {}", a.upn, a.role);
            (TenantCommand::AddAdminRole { upn: a.upn, role: a.role }, summary, None)
        }
        UserCommand::AdminRole(AdminRoleCommand::Remove(a)) => {
            let summary = format!("{} is no longer a {}", a.upn, a.role);
            (TenantCommand::RemoveAdminRole { upn: a.upn, role: a.role }, summary, None)
        }
        UserCommand::Block(a) => {
            (TenantCommand::Block { upn: a.upn.clone() }, format!("blocked sign-in of {}", a.upn), None)
        }
        UserCommand::Unblock(a) => {
            (TenantCommand::Unblock { upn: a.upn.clone() }, format!("allowed sign-in of {}", a.upn), None)
        }
        UserCommand::Delete(a) => (
            TenantCommand::Delete { upn: a.upn.clone() },
            format!("deleted {} (restorable for 30 days; its seats are free)", a.upn),
            None,
        ),
        UserCommand::Restore(a) => {
            (TenantCommand::Restore { upn: a.upn.clone() }, format!("restored {}", a.upn), None)
        }
        UserCommand::ResetPassword(a) => {
            let text = temporary_password()?;
            (
                TenantCommand::ResetPassword { upn: a.upn.clone() },
                format!("reset the password of {}", a.upn),
                Some((a.upn, text)),
            )
        }
        UserCommand::Invite { upn, license } => {
            let text = temporary_password()?;
            let held =
                license.as_ref().map_or(String::new(), |l| format!("; a {l} seat is held for 14 days"));
            let summary = format!("invited {upn}{held}");
            (
                TenantCommand::Invite { id: shell.ids.next(), upn: upn.clone(), sku: license },
                summary,
                Some((upn, text)),
            )
        }
        UserCommand::AcceptInvite(a) => (
            TenantCommand::AcceptInvite { upn: a.upn.clone() },
            format!("{} accepted the invitation", a.upn),
            None,
        ),
    };
    let done = shell.execute(actor, &domain_command).await?;
    let mut extra = json!({});
    let mut notes = Vec::new();
    for event in &done.events {
        if let domain::Event::Tenant(domain::events::TenantEvent::UserRestored {
            licenses_not_restored,
            ..
        }) = event
        {
            extra["licensesNotRestored"] = json!(licenses_not_restored);
            if !licenses_not_restored.is_empty() {
                notes.push(format!(
                    "not restored (no free seat, D7): {}; assign them again when seats are free",
                    licenses_not_restored.join(", ")
                ));
            }
        }
    }
    if let Some((upn, text)) = password.as_ref().filter(|_| !done.events.is_empty()) {
        extra["temporaryPassword"] = json!(text);
        notes.push(format!("temporary password for {upn}: {text}  (shown once; it is not stored)"));
    }
    if out.json {
        return out.done(domain_command.name(), &done, &summary, extra);
    }
    out.done(domain_command.name(), &done, &summary, Value::Null)?;
    notes.into_iter().try_for_each(|n| out.line(n))
}

async fn create(
    shell: &Shell,
    actor: Option<&Upn>,
    args: CreateArgs,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let text = temporary_password()?;
    let fields = profile_fields(Some(&args.first), Some(&args.last), &args.profile)?;
    let mut new = new_user(shell.ids.next(), args.upn.clone(), fields);
    new.licenses = args.license;
    new.admin_roles = args.admin_role;
    new.guest = args.guest;
    new.home_licenses = args.home_license;
    let id = new.id;
    let command = TenantCommand::CreateUser(new);
    let done = shell.execute(actor, &command).await?;
    if out.json {
        let extra = json!({ "id": id, "userPrincipalName": args.upn.to_string(), "temporaryPassword": text });
        return out.done(command.name(), &done, "", extra);
    }
    out.done(command.name(), &done, &format!("created {} (id {id})", args.upn), Value::Null)?;
    out.line(format!("temporary password for {}: {text}  (shown once; it is not stored)", args.upn))
}

/// `user list [--at WHEN]` (and `export users`).
pub async fn user_list(shell: &Shell, at: AtArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let (tenant, now) = tenant_as_of(shell, &at).await?;
    let users: Vec<_> = tenant.live_users(now).collect();
    if out.json {
        let doc: Vec<Value> = users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "userPrincipalName": u.upn,
                    "displayName": u.display_name(),
                    "givenName": u.profile.get(ProfileField::GivenName),
                    "surname": u.profile.get(ProfileField::Surname),
                    "accountEnabled": u.account_enabled,
                    "userType": format!("{:?}", u.user_type),
                    "assignedLicenses": u.licenses,
                    "adminRoles": u.admin_roles.iter().map(|r| r.cli_name()).collect::<Vec<_>>(),
                    "deleted": u.is_deleted(),
                })
            })
            .collect();
        return out.json(&Value::Array(doc));
    }
    let rows = users
        .iter()
        .map(|u| {
            let state = match (u.is_deleted(), u.account_enabled, u.pending_invitation(now)) {
                (true, _, _) => "deleted",
                (_, false, _) => "blocked",
                (_, _, Some(_)) => "invited",
                _ => "enabled",
            };
            vec![
                u.upn.clone(),
                u.display_name().to_owned(),
                format!("{:?}", u.user_type).to_lowercase(),
                state.into(),
                u.licenses.iter().cloned().collect::<Vec<_>>().join(","),
                u.admin_roles.iter().map(|r| r.cli_name()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    out.table(&["upn", "display name", "type", "state", "licenses", "admin roles"], rows)
}

/// `group ...`
pub async fn group(
    shell: &Shell,
    actor: Option<&Upn>,
    command: GroupCommand,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let member = |m: MemberArgs| -> (String, MemberRef, String) {
        let (reference, name) = match (m.upn, m.member_group) {
            (Some(upn), _) => (MemberRef::User(upn.clone()), upn.to_string()),
            (None, Some(g)) => (MemberRef::Group(g.clone()), format!("group {g}")),
            // clap requires exactly one of the two.
            (None, None) => (MemberRef::Group(String::new()), String::new()),
        };
        (m.group, reference, name)
    };
    let (domain_command, summary) = match command {
        GroupCommand::List(at) => return group_list(shell, at, out).await,
        GroupCommand::Create { name, owner } => {
            let summary = format!("created group {name}");
            (TenantCommand::CreateGroup { id: shell.ids.next(), name, owner }, summary)
        }
        GroupCommand::AddMember(m) => {
            let (group, member, name) = member(m);
            let summary = format!("added {name} to {group}");
            (TenantCommand::AddMember { group, member }, summary)
        }
        GroupCommand::RemoveMember(m) => {
            let (group, member, name) = member(m);
            let summary = format!("removed {name} from {group}");
            (TenantCommand::RemoveMember { group, member }, summary)
        }
        GroupCommand::AddOwner { group, upn } => {
            let summary = format!("{upn} now owns {group}");
            (TenantCommand::AddOwner { group, upn }, summary)
        }
    };
    let done = shell.execute(actor, &domain_command).await?;
    out.done(domain_command.name(), &done, &summary, Value::Null)
}

async fn group_list(shell: &Shell, at: AtArgs, out: &mut Out<'_>) -> Result<(), CliError> {
    let (tenant, _) = tenant_as_of(shell, &at).await?;
    let name_of = |m: &domain::events::Member| match m {
        domain::events::Member::User(id) => {
            tenant.users.get(id).map_or_else(|| id.to_string(), |u| u.upn.clone())
        }
        domain::events::Member::Group(id) => {
            tenant.groups.get(id).map_or_else(|| id.to_string(), |g| format!("group:{}", g.name))
        }
    };
    let upn_of = |id: &Uuid| tenant.users.get(id).map_or_else(|| id.to_string(), |u| u.upn.clone());
    let mut groups: Vec<_> = tenant.groups.values().collect();
    groups.sort_by_key(|g| g.name.to_lowercase());
    if out.json {
        let doc: Vec<Value> = groups
            .iter()
            .map(|g| {
                json!({
                    "id": g.id,
                    "displayName": g.name,
                    "members": g.members.iter().map(name_of).collect::<Vec<_>>(),
                    "owners": g.owners.iter().map(upn_of).collect::<Vec<_>>(),
                })
            })
            .collect();
        return out.json(&Value::Array(doc));
    }
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.members.iter().map(name_of).collect::<Vec<_>>().join(","),
                g.owners.iter().map(upn_of).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    out.table(&["group", "members", "owners"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    /// Issue 25, finding 1: five runs once printed `BzU-hEM-…`, `BzU-hEW-…`
    /// (text cut from clock-based ids). 10,000 draws from the OS's CSPRNG
    /// share no 8-character prefix: with 57^8 ≈ 1.1e14 prefixes, the chance
    /// that two of them do is about 5e7 / 1.1e14 ≈ 5e-7.
    #[test]
    fn temporary_passwords_share_no_prefix_beyond_chance_and_keep_their_shape() {
        let drawn: Vec<String> = (0..10_000).map(|_| temporary_password().unwrap()).collect();
        let mut prefixes = HashSet::new();
        let mut first_chars = BTreeSet::new();
        for password in &drawn {
            let bytes = password.as_bytes();
            assert_eq!(bytes.len(), 20, "{password}: four groups of four, three dashes, a '!'");
            assert_eq!((bytes[4], bytes[9], bytes[14], bytes[19]), (b'-', b'-', b'-', b'!'), "{password}");
            let chars: Vec<u8> = password.bytes().filter(|b| !matches!(b, b'-' | b'!')).collect();
            assert_eq!(chars.len(), PASSWORD_CHARS);
            assert!(chars.iter().all(|c| PASSWORD_ALPHABET.contains(c)), "{password}");
            // Entra ID's complexity: at least three of upper, lower, digit, symbol.
            assert!(chars.iter().any(u8::is_ascii_uppercase), "{password}");
            assert!(chars.iter().any(u8::is_ascii_lowercase), "{password}");
            assert!(chars.iter().any(u8::is_ascii_digit), "{password}");
            assert!(prefixes.insert(password[..9].to_owned()), "two passwords begin {}", &password[..9]);
            first_chars.insert(bytes[0]);
        }
        // Each of 57 characters is expected 175 times in first place; a
        // missing one would mean a skewed draw (chance about 57 * e^-175).
        assert_eq!(first_chars.len(), PASSWORD_ALPHABET.len(), "every character begins some password");
        // At least 72 bits: 16 characters of 57 are 93 bits before the class redraw.
        assert!(PASSWORD_CHARS as f64 * (PASSWORD_ALPHABET.len() as f64).log2() - 1.0 >= 72.0);
    }
}
