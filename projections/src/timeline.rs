//! A user's timeline in an environment: intervals of absent, enabled or
//! disabled, with the access mode and whether the user could get in, each
//! opened by the record that changed it.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use domain::eligibility::can_access;
use domain::environment::{Environment, SystemUser};
use domain::events::{Event, Member, Stamp, TenantEvent, UserKind};
use domain::tenant::{Tenant, User};
use serde::Serialize;
use store::Record;
use uuid::Uuid;

/// One interval of `timeline --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// When it began (RFC 3339).
    pub from: String,
    /// When it ended; `None` while it lasts.
    pub to: Option<String>,
    /// `absent`, `enabled` or `disabled`.
    pub state: &'static str,
    /// The access mode's value (A1), while there is a record.
    pub accessmode: Option<u8>,
    /// The user gets in through the web interface (`domain::eligibility::can_access`).
    #[serde(rename = "canAccess")]
    pub can_access: bool,
    /// The record that opened the interval.
    pub cause: Cause,
}

/// The record that opened an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// Its sequence number.
    pub seq: u64,
    /// The activity of the command (or process) that wrote it.
    #[serde(rename = "activityDisplayName")]
    pub activity_display_name: String,
}

/// Whose record to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A directory user, by object id.
    Directory(Uuid),
    /// A record by domainname (application users, stubs, placeholders).
    Named(String),
}

/// The subject's directory user, if any, and its record.
fn find<'a>(
    tenant: &'a Tenant,
    env: &'a Environment,
    subject: &Subject,
) -> (Option<&'a User>, Option<&'a SystemUser>) {
    match subject {
        Subject::Directory(id) => (tenant.users.get(id), env.user_by_object(*id)),
        Subject::Named(name) => (None, env.users_named(name).find(|r| r.kind != UserKind::User)),
    }
}

/// The timeline of `subject` over the tenant's and an environment's records
/// merged in log order. State is judged when a command (or one sync change)
/// is complete, so an interval's cause is that command's last record: the
/// `seq` of its audit record.
pub fn timeline(records: &[(Record, Event)], subject: &Subject) -> Vec<Interval> {
    timelines(records, std::slice::from_ref(subject), 0).pop().unwrap_or_default()
}

/// The timelines of several subjects in one pass (as [`timeline`]), each
/// judged at every command end after record `since` and at the last one at
/// or before it: the interval that held at `since` starts there, so only
/// the intervals after it keep their true start and cause. A command is
/// judged only for the subjects it may have changed (whether one gets in
/// hangs on no clock: `can_access` passes a deleted user as gone either way).
pub fn timelines<R: Borrow<(Record, Event)>>(
    records: &[R],
    subjects: &[Subject],
    since: u64,
) -> Vec<Vec<Interval>> {
    let mut tenant = Tenant::default();
    let mut env = Environment::default();
    let mut all: Vec<Vec<Interval>> = vec![Vec::new(); subjects.len()];
    let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
    for (i, subject) in subjects.iter().enumerate() {
        let key = match subject {
            Subject::Directory(id) => Key::User(*id),
            Subject::Named(name) => Key::Name(name.to_lowercase()),
        };
        by_key.entry(key).or_default().push(i);
    }
    // What the command so far may have changed: `None` is anything.
    let mut touched: Option<HashSet<Key>> = Some(HashSet::new());
    // Every subject is judged at the first judged end, and after the environment was gone.
    let mut everyone = true;
    for (i, (record, event)) in records.iter().map(Borrow::borrow).enumerate() {
        let stamp = Stamp { seq: record.seq, at: record.recorded_at };
        let keys: Option<Vec<Key>> = match event {
            Event::Tenant(e) => {
                tenant.apply(e, stamp);
                user_of(e).map(|id| vec![Key::User(id)])
            }
            Event::Environment(e) => {
                env.apply(e, stamp);
                let found = e.system_user().and_then(|id| env.users.get(&id));
                found.map(|r| {
                    [Some(Key::Name(r.domainname.to_lowercase())), r.object_id.map(Key::User)]
                        .into_iter()
                        .flatten()
                        .collect()
                })
            }
            Event::CommandRejected(_) | Event::ReportGenerated(_) => Some(Vec::new()),
        };
        match (keys, touched.as_mut()) {
            (Some(keys), Some(t)) => t.extend(keys),
            (Some(_), None) => {}
            (None, _) => touched = None,
        }
        let next = records.get(i + 1).map(Borrow::borrow);
        let command_ends = next.is_none_or(|(next, next_event)| {
            !crate::audit::same_command(
                record,
                crate::audit::subject(event),
                next,
                crate::audit::subject(next_event),
            )
        });
        if !command_ends {
            continue;
        }
        let touched = touched.replace(HashSet::new());
        let judged = record.seq > since || next.is_none_or(|(next, _)| next.seq > since);
        if !judged || !env.exists() {
            everyone = true;
            continue;
        }
        let judge_one =
            |i: usize, intervals: &mut Vec<Interval>| judge(&tenant, &env, &subjects[i], record, intervals);
        match touched {
            Some(keys) if !everyone => {
                for i in keys.iter().filter_map(|k| by_key.get(k)).flatten() {
                    judge_one(*i, &mut all[*i]);
                }
            }
            _ => all.iter_mut().enumerate().for_each(|(i, intervals)| judge_one(i, intervals)),
        }
        everyone = false;
    }
    all
}

/// What a subject is found by.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    User(Uuid),
    /// A record's domainname, lowercase.
    Name(String),
}

/// The one directory user a tenant event may change the access of (`None`: it may change anyone's).
fn user_of(event: &TenantEvent) -> Option<Uuid> {
    use TenantEvent::*;
    match event {
        UserCreated { id, .. }
        | UserCreatedV2 { id, .. }
        | UserUpdated { id, .. }
        | LicenseAssigned { id, .. }
        | LicenseRemoved { id, .. }
        | AdminRoleAdded { id, .. }
        | AdminRoleRemoved { id, .. }
        | UserBlocked { id }
        | UserUnblocked { id }
        | UserDeleted { id }
        | UserRestored { id, .. }
        | PasswordReset { id, .. }
        | PasswordResetV2 { id }
        | InvitationIssued { id, .. }
        | InvitationAccepted { id, .. }
        | GroupOwnerAdded { user: id, .. }
        | GroupMemberAdded { member: Member::User(id), .. }
        | GroupMemberRemoved { member: Member::User(id), .. } => Some(*id),
        _ => None,
    }
}

/// Opens an interval for `subject` if its state after `record` differs from the last one's.
fn judge(
    tenant: &Tenant,
    env: &Environment,
    subject: &Subject,
    record: &Record,
    intervals: &mut Vec<Interval>,
) {
    let (user, found) = find(tenant, env, subject);
    let can = can_access(tenant, env, user, found, record.recorded_at).can();
    let (state, accessmode) = match found {
        None => ("absent", None),
        Some(r) => (if r.is_disabled { "disabled" } else { "enabled" }, Some(r.access_mode.value())),
    };
    let same = intervals
        .last()
        .is_some_and(|i| i.state == state && i.accessmode == accessmode && i.can_access == can);
    if same {
        return;
    }
    let at = crate::rfc3339(record.recorded_at);
    if let Some(last) = intervals.last_mut() {
        last.to = Some(at.clone());
    }
    let (activity, _) = crate::activity::of_record(record);
    intervals.push(Interval {
        from: at,
        to: None,
        state,
        accessmode,
        can_access: can,
        cause: Cause { seq: record.seq, activity_display_name: activity },
    });
}
