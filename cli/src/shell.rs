//! The imperative shell around the domain: load an aggregate (nearest
//! snapshot + the records after it), decide, append all events or none, and
//! record refusals (L1).

use chrono::{DateTime, Utc};
use domain::events::{self, CommandRejected, Event, TenantEvent};
use domain::tenant::{self, Tenant, TenantCommand};
use domain::{Rejection, Upn};
use serde::{Deserialize, Serialize};
use store::{
    Append, AppendRejection, Appended, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, Record,
    SledStore, Snapshot,
};
use uuid::Uuid;

use crate::error::{usage, CliError};
use crate::time::At;

/// The stream of failure audit records.
pub const AUDIT_STREAM: &str = "audit";

const TENANT_SNAPSHOT: &str = "aggregate/tenant";

/// Replaying more records than this saves a snapshot for next time.
const SNAPSHOT_AFTER: usize = 256;

/// How often a command is re-decided after losing a race to another writer.
const CONFLICT_RETRIES: usize = 32;

/// An open database, and what every command shares: the time override.
pub struct Shell {
    /// The log.
    pub store: SledStore,
    /// `--now`, if given.
    pub now: Option<DateTime<Utc>>,
}

/// A command that went through: its events and where they landed.
#[derive(Debug)]
pub struct Done {
    /// The events appended (empty: nothing to change).
    pub events: Vec<TenantEvent>,
    /// Where they landed (`None` when there was nothing to append).
    pub appended: Option<Appended>,
    /// Shared by the command's events.
    pub correlation_id: Uuid,
}

#[derive(Serialize, Deserialize)]
struct TenantSnapshot {
    version: u64,
    tenant: Tenant,
}

/// Decodes a record's payload, or names the record that cannot be read.
pub fn event_of(record: &Record) -> Result<Event, CliError> {
    events::decode(record.schema_version, &record.payload)
        .map_err(|e| CliError::Corrupt(format!("record {}: {e}", record.seq)))
}

impl Shell {
    /// The time to stamp on new events: `--now` or the clock, never earlier
    /// than the last record's time.
    pub async fn now(&self) -> Result<DateTime<Utc>, CliError> {
        let now = self.now.unwrap_or_else(Utc::now);
        if let Some(head) = self.store.head().await? {
            if now < head.recorded_at {
                let source = if self.now.is_some() { "--now" } else { "the clock" };
                return usage(format!(
                    "{source} ({}) is earlier than the last event ({}): time never goes backwards; pass a later --now",
                    now.to_rfc3339(),
                    head.recorded_at.to_rfc3339()
                ));
            }
        }
        Ok(now)
    }

    /// The log position that `--at` names (the head when absent).
    pub async fn resolve(&self, at: Option<At>) -> Result<u64, CliError> {
        let head = self.store.head().await?.map_or(0, |h| h.seq);
        Ok(match at {
            None => head,
            Some(At::Seq(n)) => n.min(head),
            Some(At::Time(t)) => self.store.seq_at(t).await?,
        })
    }

    /// The time a view is judged at: the time of record `seq` for a past
    /// position, the clock (or `--now`) at the head.
    pub async fn time_of(&self, seq: u64) -> Result<DateTime<Utc>, CliError> {
        let head = self.store.head().await?;
        if head.is_none_or(|h| h.seq == seq) {
            return Ok(self
                .now
                .unwrap_or_else(Utc::now)
                .max(head.map_or(DateTime::UNIX_EPOCH, |h| h.recorded_at)));
        }
        let record = self.store.read_log(seq, seq, 1).await?;
        Ok(record.first().map_or(DateTime::UNIX_EPOCH, |r| r.recorded_at))
    }

    /// The directory as of log position `upto`, and the tenant stream's version then.
    pub async fn tenant_at(&self, upto: u64) -> Result<(Tenant, u64), CliError> {
        let snapshot = self.store.load_snapshot(TENANT_SNAPSHOT, upto).await?;
        let base = snapshot.as_ref().and_then(|s| {
            // A snapshot that no longer decodes is only a cache: replay instead.
            bincode::serde::decode_from_slice::<TenantSnapshot, _>(&s.state, bincode::config::standard()).ok()
        });
        let (mut tenant, mut version, snapshot_seq) = match (base, snapshot) {
            (Some((s, _)), Some(snap)) => (s.tenant, s.version, snap.seq),
            _ => (Tenant::default(), 0, 0),
        };
        let records = self.store.read_stream(tenant::STREAM, version + 1).await?;
        let mut replayed = 0;
        let mut last_seq = snapshot_seq;
        for record in records.iter().take_while(|r| r.seq <= upto) {
            if let Event::Tenant(event) = event_of(record)? {
                tenant.apply(&event, domain::events::Stamp { seq: record.seq, at: record.recorded_at });
            }
            version = record.version;
            last_seq = record.seq;
            replayed += 1;
        }
        if replayed >= SNAPSHOT_AFTER {
            let state = TenantSnapshot { version, tenant };
            let bytes = bincode::serde::encode_to_vec(&state, bincode::config::standard())
                .map_err(|e| CliError::Corrupt(format!("cannot encode a snapshot: {e}")))?;
            self.store.save_snapshot(TENANT_SNAPSHOT, Snapshot { seq: last_seq, state: bytes }).await?;
            return Ok((state.tenant, version));
        }
        Ok((tenant, version))
    }

    /// The directory now.
    pub async fn tenant(&self) -> Result<(Tenant, u64), CliError> {
        self.tenant_at(u64::MAX).await
    }

    /// The actor of a command: `--as`, or the Global Administrator named at `init`.
    pub fn actor(tenant: &Tenant, given: Option<&Upn>) -> Result<Upn, CliError> {
        match given {
            Some(upn) => Ok(upn.clone()),
            None => tenant
                .default_actor()
                .map_or_else(|| usage("no actor: pass --as UPN (or run `usertrail init` first)"), Ok),
        }
    }

    /// Decides a tenant command and appends its events, all or none. A lost
    /// race re-decides on the newer state; a refusal leaves one audit record.
    pub async fn execute(&self, actor: Option<&Upn>, command: &TenantCommand) -> Result<Done, CliError> {
        let correlation_id = Uuid::new_v4();
        for _ in 0..CONFLICT_RETRIES {
            let (tenant, version) = self.tenant().await?;
            let actor = match command {
                TenantCommand::Init { admin, .. } => admin.upn.clone(),
                TenantCommand::AcceptInvite { upn } => upn.clone(),
                _ => Shell::actor(&tenant, actor)?,
            };
            let now = self.now().await?;
            let meta = Metadata {
                recorded_at: now,
                actor: actor.to_string(),
                correlation_id,
                causation: Causation::Command { name: command.name().to_owned() },
            };
            let events = match tenant::decide(&tenant, &actor, command, now) {
                Ok(events) => events,
                Err(Rejection::Invalid(reason)) => return usage(reason),
                Err(Rejection::Refused(refusal)) => {
                    let record = CommandRejected {
                        command: command.name().to_owned(),
                        rule: refusal.rule.to_string(),
                        reason: refusal.reason.clone(),
                        targets: command.targets(),
                        environment: None,
                    };
                    self.record_refusal(record, meta).await?;
                    return Err(CliError::Rejected(refusal));
                }
            };
            if events.is_empty() {
                return Ok(Done { events, appended: None, correlation_id });
            }
            let append = Append {
                stream: tenant::STREAM.to_owned(),
                expected: ExpectedVersion::Exactly(version),
                events: events.iter().map(|e| new_event(&Event::Tenant(e.clone()))).collect(),
                meta,
            };
            match self.store.append(append).await? {
                Ok(appended) => return Ok(Done { events, appended: Some(appended), correlation_id }),
                Err(AppendRejection::Conflict { .. }) => continue,
                Err(other) => return usage(other.to_string()),
            }
        }
        usage(format!("gave up after {CONFLICT_RETRIES} tries: other writers keep changing the tenant"))
    }

    async fn record_refusal(&self, record: CommandRejected, meta: Metadata) -> Result<(), CliError> {
        let append = Append {
            stream: AUDIT_STREAM.to_owned(),
            expected: ExpectedVersion::Any,
            events: vec![new_event(&Event::CommandRejected(record))],
            meta,
        };
        match self.store.append(append).await? {
            Ok(_) => Ok(()),
            Err(other) => usage(other.to_string()),
        }
    }
}

/// Wraps an event for the log, with a fresh id.
pub fn new_event(event: &Event) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event.type_name().to_owned(),
        schema_version: domain::SCHEMA_VERSION,
        payload: events::encode(event),
    }
}
