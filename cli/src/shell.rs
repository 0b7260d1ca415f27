//! The imperative shell around the domain: load an aggregate (nearest
//! snapshot + the records after it), decide, append all events or none, and
//! record refusals (L1).

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use domain::envcmd::{self, EnvCommand, NewEnvironment};
use domain::environment::{self, Environment};
use domain::events::{self, CommandRejected, Event};
use domain::sync;
use domain::tenant::{self, Tenant, TenantCommand};
use domain::{Refusal, Rejection, Upn};
use store::{
    Append, AppendRejection, Appended, Causation, EventStore, ExpectedVersion, Metadata, NewEvent, Origin,
    SledStore,
};
use uuid::Uuid;

use crate::error::{usage, CliError};
use crate::machine::{Machine, Runner};
use crate::time::At;

/// The stream of failure audit records.
pub const AUDIT_STREAM: &str = "audit";

/// How often a command is re-decided after losing a race to another writer.
const CONFLICT_RETRIES: usize = 32;

/// The most changed SystemUsers one transaction of a sync pass holds.
pub const SYNC_CHUNK: usize = 1000;

/// An open database, and what every command shares: the time override and
/// the source of new ids.
pub struct Shell {
    /// The log.
    pub store: SledStore,
    /// `--now`, if given.
    pub now: Option<DateTime<Utc>>,
    /// Where new ids come from.
    pub ids: Ids,
    /// The process exits once the command is done: see [`Shell::release`].
    pub exits_after_run: bool,
    /// The machine whose clock, account and host each record keeps.
    pub machine: Machine,
    /// The account and host, asked of the system once, by the first write.
    runner: std::sync::OnceLock<Runner>,
}

/// A point of the log in absolute terms: `--at` once `N ago` is a time.
enum Moment {
    Seq(u64),
    Time(DateTime<Utc>),
}

/// Where new ids come from: random and time-ordered (UUID v7) in normal
/// use, so that the log's event id index grows at its right edge; derived
/// from a seed, the log's head when the run started, and a counter when
/// output must be reproducible (snapshot tests, scripted demos). Derived ids
/// never repeat within one log: every run that appends moves the head.
pub struct Ids {
    seed: Option<(u64, u64)>,
    ordered: bool,
    counter: std::sync::atomic::AtomicU64,
    /// For random ids: drawn once, then counted up (see [`Ids::next`]).
    base: u128,
}

impl Ids {
    /// Random, time-ordered ids (version 7).
    pub fn random() -> Ids {
        let base = Uuid::new_v4().as_u128();
        Ids { seed: None, ordered: true, counter: std::sync::atomic::AtomicU64::new(0), base }
    }

    /// Reproducible ids for a run that starts with the log's head at `head`.
    pub fn seeded(seed: u64, head: u64) -> Ids {
        Ids {
            seed: Some((seed, head)),
            ordered: false,
            counter: std::sync::atomic::AtomicU64::new(0),
            base: 0,
        }
    }

    /// Reproducible ids shaped like version 7 ones: the counter stands for
    /// the time, so they sort in the order they were made (generators of
    /// large synthetic logs).
    pub fn seeded_ordered(seed: u64) -> Ids {
        Ids { seed: Some((seed, 0)), ordered: true, counter: std::sync::atomic::AtomicU64::new(0), base: 0 }
    }

    /// A new id.
    pub fn next(&self) -> Uuid {
        self.make(Ids::millis())
    }

    /// Ids made together, such as one command's: they share one reading of
    /// the clock, which cost a twentieth of a large import's deciding when
    /// read per id.
    pub fn together(&self) -> Together<'_> {
        Together { ids: self, millis: Ids::millis() }
    }

    /// The clock, in milliseconds since the epoch.
    fn millis() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The next id, made at `millis` if random.
    fn make(&self, millis: u64) -> Uuid {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((seed, head)) = self.seed else {
            // Version 7: the time in milliseconds, then a random base drawn
            // once per run plus a counter, so ids of one millisecond still
            // sort in the order they were made, and a run asks the OS for
            // randomness once rather than per id.
            let counted = self.base.wrapping_add(u128::from(n)).to_be_bytes();
            let tail: [u8; 10] = counted[6..].try_into().unwrap_or_default();
            return uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
        };
        let derived = domain::ids::derive_id(&[&seed.to_be_bytes(), &head.to_be_bytes(), &n.to_be_bytes()]);
        if !self.ordered {
            return derived;
        }
        // 48 bits of "milliseconds" from the counter; the rest derived.
        let tail: [u8; 10] = derived.as_bytes()[6..].try_into().unwrap_or_default();
        uuid::Builder::from_unix_timestamp_millis(n, &tail).into_uuid()
    }
}

/// Ids made together ([`Ids::together`]).
pub struct Together<'a> {
    ids: &'a Ids,
    millis: u64,
}

impl Together<'_> {
    /// A new id.
    pub fn id(&mut self) -> Uuid {
        self.ids.make(self.millis)
    }
}

impl Shell {
    /// A shell over `store` with random ids.
    pub fn new(store: SledStore, now: Option<DateTime<Utc>>) -> Shell {
        Shell {
            store,
            now,
            ids: Ids::random(),
            exits_after_run: false,
            machine: Machine::Real,
            runner: std::sync::OnceLock::new(),
        }
    }

    /// Lets go of state a command loaded. When the process exits right after
    /// the command, the state is left to the exit instead of freed: freeing
    /// the directory of a 1M-event log, entry by entry, took 0.8 ms of a
    /// `user create` (BENCHMARKS.md, target 4). The store is never given
    /// here: its drop leaves the log's indexes complete.
    pub fn release<T>(&self, state: T) {
        if self.exits_after_run {
            std::mem::forget(state);
        }
    }

    /// Wraps an event for the log, with a new id; one too large for the log
    /// to read back is bad input (exit 2), refused before any append.
    pub fn new_event(&self, event: &Event) -> Result<NewEvent, Rejection> {
        encoded(self.ids.next(), event).map_err(|e| Rejection::Invalid(e.to_string()))
    }
}

/// What a batch of commands appended.
#[derive(Debug, Default)]
pub struct BatchDone {
    /// How many of its commands changed something.
    pub changes: usize,
    /// Its events by type name.
    pub events_by_type: BTreeMap<&'static str, usize>,
    /// The first and last seq it landed at (`None`: nothing to change).
    pub seqs: Option<(u64, u64)>,
}

/// A command that went through: its events and where they landed.
#[derive(Debug)]
pub struct Done {
    /// The events appended (empty: nothing to change).
    pub events: Vec<Event>,
    /// Where they landed (`None` when there was nothing to append).
    pub appended: Option<Appended>,
    /// Shared by the command's events.
    pub correlation_id: Uuid,
}

pub use projections::fold::{event_of, stamp_of, Aggregate};

impl Shell {
    /// The time to stamp on new events: `--now` or the clock, never earlier
    /// than the last record's time.
    pub async fn now(&self) -> Result<DateTime<Utc>, CliError> {
        // The clock to the millisecond: JSON prints every digit a time
        // has, and a time printed is a time a script gives back to `--at`.
        let now = self.now.unwrap_or_else(|| {
            let clock = self.machine.clock();
            clock.with_nanosecond(clock.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(clock)
        });
        if let Some(head) = self.store.head().await? {
            // A writer that read the clock just before another one appended
            // trails it by a moment: that is concurrency, not a clock gone back.
            if self.now.is_none()
                && now < head.recorded_at
                && head.recorded_at - now <= chrono::Duration::seconds(1)
            {
                return Ok(head.recorded_at);
            }
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
        Ok(match at.map(|at| self.moment(at)) {
            None => head,
            Some(Moment::Seq(n)) if n > head => {
                return usage(format!("--at seq:{n} is past the log's end: the log ends at record {head}"))
            }
            Some(Moment::Seq(n)) => n,
            Some(Moment::Time(t)) => self.store.seq_at(t).await?,
        })
    }

    /// Where `at` points, with `N ago` counted back from `--now` or the clock.
    fn moment(&self, at: At) -> Moment {
        match at {
            At::Seq(n) => Moment::Seq(n),
            At::Time(t) => Moment::Time(t),
            At::Ago(d) => {
                let now = self.now.unwrap_or_else(|| self.machine.clock());
                Moment::Time(now.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC))
            }
        }
    }

    /// The position and time a view answers as of: `--at TIME` is judged at
    /// that time, `--at seq:N` at record N's time, and no `--at` at the clock
    /// (or `--now`) over the whole log.
    pub async fn point(&self, at: Option<At>) -> Result<(u64, DateTime<Utc>), CliError> {
        let seq = self.resolve(at).await?;
        let time = match at.map(|at| self.moment(at)) {
            Some(Moment::Time(t)) => t,
            Some(Moment::Seq(_)) => {
                let record = self.store.read_log(seq, seq, 1).await?;
                record.first().map_or(DateTime::UNIX_EPOCH, |r| r.recorded_at)
            }
            None => {
                let head = self.store.head().await?.map_or(DateTime::UNIX_EPOCH, |h| h.recorded_at);
                self.now.unwrap_or_else(|| self.machine.clock()).max(head)
            }
        };
        Ok((seq, time))
    }

    /// A stream's state as of log position `upto`, and the stream's version
    /// then: the nearest snapshot, plus the stream's records after it.
    pub async fn load<A: Aggregate>(&self, stream: &str, upto: u64) -> Result<(A, u64), CliError> {
        Ok(projections::fold::load(&self.store, stream, upto, projections::fold::Snapshots::Use).await?)
    }

    /// The directory as of log position `upto`, and the tenant stream's version then.
    pub async fn tenant_at(&self, upto: u64) -> Result<(Tenant, u64), CliError> {
        self.load(tenant::STREAM, upto).await
    }

    /// The directory now.
    pub async fn tenant(&self) -> Result<(Tenant, u64), CliError> {
        self.tenant_at(u64::MAX).await
    }

    /// An environment by name, as of `upto`, with its stream version.
    pub async fn environment_at(
        &self,
        tenant: &Tenant,
        name: &str,
        upto: u64,
    ) -> Result<(Environment, u64), CliError> {
        let (id, _) = Shell::environment_named(tenant, name)?;
        self.load(&environment::stream(id), upto).await
    }

    /// An environment's id and name as the directory registered it, or the
    /// error that names the known ones.
    fn environment_named<'t>(tenant: &'t Tenant, name: &str) -> Result<(Uuid, &'t str), CliError> {
        tenant.environment(name).map_or_else(
            || {
                let known: Vec<&str> = tenant.environments().map(|(_, n)| n).collect();
                let hint = if known.is_empty() {
                    "none exists yet".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                usage(format!("unknown environment {name} ({hint})"))
            },
            Ok,
        )
    }

    /// What a view of one environment answers from: the point `--at` names
    /// (seq and time), and the directory and the environment as they stood then.
    pub async fn environment_as_of(&self, env: &str, at: Option<At>) -> Result<AsOf, CliError> {
        let (seq, time) = self.point(at).await?;
        let (tenant, _) = self.tenant_at(seq).await?;
        let (environment, _) = self.environment_at(&tenant, env, seq).await?;
        Ok(AsOf { seq, time, tenant, environment })
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

    fn meta(&self, actor: &str, command: &str, correlation_id: Uuid, now: DateTime<Utc>) -> Metadata {
        Metadata {
            recorded_at: now,
            actor: actor.to_owned(),
            correlation_id,
            causation: Causation::Command { name: command.to_owned() },
            origin: Some(self.origin()),
        }
    }

    /// Where a record made now is written from: the machine's clock (beside
    /// the stamped time, which `--now` may set), account and host.
    pub fn origin(&self) -> Origin {
        let runner = self.runner.get_or_init(|| self.machine.runner());
        Origin {
            written_at: self.machine.clock(),
            account: runner.account.clone(),
            host: runner.host.clone(),
        }
    }

    /// Ends one try of a command: bad input ends it with nothing appended; a
    /// refusal with one audit record (L1); events are appended in one
    /// transaction. `None` means another writer won the race: try again.
    async fn conclude(
        &self,
        attempted: &Attempted,
        meta: Metadata,
        decided: Result<(Vec<Event>, Vec<Append>), Rejection>,
    ) -> Result<Option<Done>, CliError> {
        let correlation_id = meta.correlation_id;
        let (events, appends) = match decided {
            Ok(planned) => planned,
            Err(Rejection::Invalid(reason)) => return usage(reason),
            Err(Rejection::Refused(refusal)) => return Err(self.refused(attempted, refusal, meta).await),
        };
        if events.is_empty() {
            return Ok(Some(Done { events, appended: None, correlation_id }));
        }
        match self.store.append_all(appends).await? {
            Ok(appended) => {
                let first = appended.iter().map(|a| a.first_seq).min();
                let last = appended.iter().map(|a| a.last_seq).max();
                let appended = first.zip(last).map(|(first_seq, last_seq)| Appended {
                    first_seq,
                    last_seq,
                    stream_version: appended.last().map_or(0, |a| a.stream_version),
                    was_retry: false,
                });
                Ok(Some(Done { events, appended, correlation_id }))
            }
            Err(AppendRejection::Conflict { .. }) => Ok(None),
            // Another writer on the clock got in first with a later time: read
            // the clock again and re-decide, as after a conflict.
            Err(AppendRejection::TimeWentBackwards { .. }) if self.now.is_none() => Ok(None),
            Err(other) => usage(other.to_string()),
        }
    }

    /// Records a refusal (L1) and returns the error that reports it.
    async fn refused(&self, attempted: &Attempted, refusal: Refusal, mut meta: Metadata) -> CliError {
        let record = CommandRejected {
            command: attempted.command.to_owned(),
            rule: refusal.rule.to_string(),
            reason: refusal.reason.clone(),
            targets: attempted.targets.clone(),
            environment: attempted.environment.clone(),
        };
        let event = match self.new_event(&Event::CommandRejected(record)) {
            Ok(event) => event,
            Err(Rejection::Invalid(reason) | Rejection::Refused(Refusal { reason, .. })) => {
                return CliError::Usage(reason)
            }
        };
        for _ in 0..CONFLICT_RETRIES {
            let append = Append {
                stream: AUDIT_STREAM.to_owned(),
                expected: ExpectedVersion::Any,
                events: vec![event.clone()],
                meta: meta.clone(),
            };
            match self.store.append(append).await {
                Ok(Ok(_)) => return CliError::Rejected(refusal),
                // On the clock, a later writer got in first: stamp the record anew.
                Ok(Err(AppendRejection::TimeWentBackwards { last, .. })) if self.now.is_none() => {
                    meta.recorded_at = self.machine.clock().max(last);
                    meta.origin = Some(self.origin());
                }
                Ok(Err(other)) => return CliError::Usage(other.to_string()),
                Err(e) => return CliError::Store(e),
            }
        }
        CliError::Usage(format!("gave up recording the refusal after {CONFLICT_RETRIES} tries"))
    }

    fn gave_up<T>(what: &str) -> Result<T, CliError> {
        usage(format!("gave up after {CONFLICT_RETRIES} tries: other writers keep changing {what}"))
    }

    /// Decides a tenant command and appends its events, all or none. A lost
    /// race re-decides on the newer state; a refusal leaves one audit record.
    pub async fn execute(&self, actor: Option<&Upn>, command: &TenantCommand) -> Result<Done, CliError> {
        let correlation_id = self.ids.next();
        let attempted = Attempted { command: command.name(), targets: command.targets(), environment: None };
        for _ in 0..CONFLICT_RETRIES {
            let (tenant, version) = self.tenant().await?;
            crate::timings::phase("loaded the tenant");
            let actor = match command {
                TenantCommand::Init { admin, .. } => admin.upn.clone(),
                TenantCommand::AcceptInvite { upn } => upn.clone(),
                _ => Shell::actor(&tenant, actor)?,
            };
            let now = self.now().await?;
            let meta = self.meta(actor.as_str(), command.name(), correlation_id, now);
            let decided = tenant::decide(&tenant, &actor, command, now).and_then(|events| {
                let events: Vec<Event> = events.into_iter().map(Event::Tenant).collect();
                let append = Append {
                    stream: tenant::STREAM.to_owned(),
                    expected: ExpectedVersion::Exactly(version),
                    events: events.iter().map(|e| self.new_event(e)).collect::<Result<_, _>>()?,
                    meta: meta.clone(),
                };
                Ok((events, vec![append]))
            });
            if let Some(done) = self.conclude(&attempted, meta, decided).await? {
                crate::timings::phase("appended");
                self.release(tenant);
                return Ok(done);
            }
        }
        Shell::gave_up("the tenant")
    }

    /// Decides a batch of tenant commands (an import) in order, each against
    /// the state the ones before it leave, and appends them in one
    /// transaction: one correlation id per command, all of them or none.
    /// Each event is encoded as soon as it is folded: a large batch holds
    /// its events once, as bytes. `plan` is called once a try: again when
    /// another writer got in first.
    pub async fn execute_batch(
        &self,
        actor: Option<&Upn>,
        name: &'static str,
        mut plan: impl FnMut(&Tenant, DateTime<Utc>) -> Result<Vec<TenantCommand>, CliError>,
    ) -> Result<BatchDone, CliError> {
        for _ in 0..CONFLICT_RETRIES {
            let (mut tenant, version) = self.tenant().await?;
            let actor = Shell::actor(&tenant, actor)?;
            let now = self.now().await?;
            // Where the events will land if no other writer gets in first:
            // the working state is stamped with these seqs, and saved as a
            // snapshot below only if they turn out to be the real ones.
            let head = self.store.head().await?.map_or(0, |h| h.seq);
            let mut next_seq = head + 1;
            crate::timings::phase("loaded the tenant");
            let commands = plan(&tenant, now)?;
            crate::timings::phase("planned");
            let progress = indicatif::ProgressBar::new(commands.len() as u64);
            progress.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            progress.set_message(name);
            // Each command's events are encoded, then sealed by the store,
            // while the next is decided.
            let mut encoder = Encoder::spawn(tenant::STREAM, self.store.begin().await?);
            let mut done = BatchDone::default();
            let mut expected = version;
            let mut ended_early = false;
            // Each command is freed once decided: what it held is reused for the
            // state and the records instead of being asked of the OS anew.
            for command in commands {
                let mut ids = self.ids.together();
                let correlation_id = ids.id();
                let meta = self.meta(actor.as_str(), name, correlation_id, now);
                let events = match tenant::decide(&tenant, &actor, &command, now) {
                    Ok(events) => events,
                    Err(Rejection::Invalid(reason)) => {
                        progress.finish_and_clear();
                        return usage(format!(
                            "{name}: {} {}: {reason}",
                            command.name(),
                            command.targets().join(" ")
                        ));
                    }
                    Err(Rejection::Refused(refusal)) => {
                        progress.finish_and_clear();
                        // Nothing of the batch is written; the refusal is.
                        drop(encoder);
                        let attempted =
                            Attempted { command: name, targets: command.targets(), environment: None };
                        return Err(self.refused(&attempted, refusal, meta).await);
                    }
                };
                progress.inc(1);
                if events.is_empty() {
                    continue;
                }
                let mut decided = Vec::with_capacity(events.len());
                for event in events {
                    tenant.apply(&event, domain::events::Stamp { seq: next_seq, at: now });
                    next_seq += 1;
                    let event = Event::Tenant(event);
                    *done.events_by_type.entry(event.type_name()).or_default() += 1;
                    decided.push((ids.id(), event));
                }
                let follows = expected;
                expected += decided.len() as u64;
                if !encoder.send(Decided { events: decided, meta, expected: follows }).await {
                    ended_early = true; // the commit below says why
                    break;
                }
            }
            progress.finish_and_clear();
            let transaction = encoder.finish().await?;
            crate::timings::phase("decided");
            // A large batch leaves the directory's snapshot behind. Encoding
            // (and then freeing) a large directory, and writing tens of
            // megabytes, take a while: they run beside the commit, and the
            // staged snapshot is published only if the events land where
            // the working state was stamped (dropped, it is discarded).
            let stamped_last = next_seq - 1;
            let large = stamped_last - head >= projections::fold::SNAPSHOT_AFTER as u64;
            let snapshot = (large && !ended_early).then(|| {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let bytes = tokio::task::spawn_blocking(move || {
                        let bytes = projections::fold::snapshot_bytes(&tenant, expected);
                        free_aside(tenant);
                        bytes
                    })
                    .await
                    .map_err(|e| CliError::Usage(format!("snapshot task failed: {e}")))??;
                    Ok::<_, CliError>(
                        projections::fold::stage(&store, tenant::STREAM, bytes, stamped_last).await?,
                    )
                })
            });
            match transaction.commit().await? {
                Ok(appended) if appended.is_empty() => return Ok(done),
                Ok(appended) => {
                    crate::timings::phase("appended");
                    let landed =
                        appended.first().map(|a| a.first_seq).zip(appended.last().map(|a| a.last_seq));
                    let landed_as_stamped = landed == Some((head + 1, stamped_last));
                    done.changes = appended.len();
                    done.seqs = landed;
                    if let Some(staging) = snapshot.filter(|_| landed_as_stamped) {
                        let staged = staging
                            .await
                            .map_err(|e| CliError::Usage(format!("snapshot task failed: {e}")))??;
                        projections::fold::publish(&self.store, staged).await?;
                        crate::timings::phase("saved the snapshot");
                    }
                    return Ok(done);
                }
                Err(AppendRejection::Conflict { .. } | AppendRejection::Moved { .. }) => continue,
                Err(AppendRejection::TimeWentBackwards { .. }) if self.now.is_none() => continue,
                Err(other) => return usage(other.to_string()),
            }
        }
        Shell::gave_up("the tenant")
    }

    /// Creates an environment: its registry entry on the tenant stream and its
    /// own stream, in one transaction.
    pub async fn create_environment(
        &self,
        actor: Option<&Upn>,
        new: &NewEnvironment,
    ) -> Result<Done, CliError> {
        let correlation_id = self.ids.next();
        let attempted = Attempted {
            command: "env create",
            targets: vec![new.name.clone()],
            environment: Some(new.name.clone()),
        };
        for _ in 0..CONFLICT_RETRIES {
            let (tenant, version) = self.tenant().await?;
            let actor = Shell::actor(&tenant, actor)?;
            let now = self.now().await?;
            let meta = self.meta(actor.as_str(), attempted.command, correlation_id, now);
            let decided =
                envcmd::decide_create(&tenant, &actor, new, now).and_then(|(registered, env_events)| {
                    let registered = Event::Tenant(registered);
                    let env_events: Vec<Event> = env_events.into_iter().map(Event::Environment).collect();
                    let appends = vec![
                        Append {
                            stream: tenant::STREAM.to_owned(),
                            expected: ExpectedVersion::Exactly(version),
                            events: vec![self.new_event(&registered)?],
                            meta: meta.clone(),
                        },
                        Append {
                            stream: environment::stream(new.id),
                            expected: ExpectedVersion::Exactly(0),
                            events: env_events.iter().map(|e| self.new_event(e)).collect::<Result<_, _>>()?,
                            meta: meta.clone(),
                        },
                    ];
                    Ok((std::iter::once(registered).chain(env_events).collect(), appends))
                });
            if let Some(done) = self.conclude(&attempted, meta, decided).await? {
                return Ok(done);
            }
        }
        Shell::gave_up("the tenant")
    }

    /// Decides a command on one environment and appends its events, all or
    /// none, re-deciding after a lost race (this is what holds A3 under
    /// concurrency).
    pub async fn execute_env(
        &self,
        actor: Option<&Upn>,
        env_name: &str,
        command: &EnvCommand,
    ) -> Result<Done, CliError> {
        let correlation_id = self.ids.next();
        for _ in 0..CONFLICT_RETRIES {
            let (tenant, _) = self.tenant().await?;
            let (env, version) = self.environment_at(&tenant, env_name, u64::MAX).await?;
            let attempted = Attempted {
                command: command.name(),
                targets: command.targets(),
                environment: Some(env.name.clone()),
            };
            let actor = match command {
                EnvCommand::Access { upn } => upn.clone(),
                _ => Shell::actor(&tenant, actor)?,
            };
            let now = self.now().await?;
            let meta = self.meta(actor.as_str(), command.name(), correlation_id, now);
            let decided = envcmd::decide(&tenant, &env, &actor, command, now).and_then(|events| {
                let events: Vec<Event> = events.into_iter().map(Event::Environment).collect();
                let append = Append {
                    stream: environment::stream(env.id),
                    expected: ExpectedVersion::Exactly(version),
                    events: events.iter().map(|e| self.new_event(e)).collect::<Result<_, _>>()?,
                    meta: meta.clone(),
                };
                Ok((events, vec![append]))
            });
            if let Some(done) = self.conclude(&attempted, meta, decided).await? {
                self.release((tenant, env));
                return Ok(done);
            }
        }
        Shell::gave_up(env_name)
    }

    /// Background sync passes over environments (S1), one after the other,
    /// on one reading of the directory. Every changed SystemUser is one
    /// append, caused by the sync process and the directory record that
    /// triggered it; the appends of one pass share the pass's correlation id.
    pub async fn sync(&self, env_names: &[String]) -> Result<Vec<SyncReport>, CliError> {
        let tenant = self.tenant().await?;
        self.sync_with(env_names, tenant).await
    }

    /// [`Shell::sync`] over every environment of the directory.
    pub async fn sync_all(&self) -> Result<Vec<SyncReport>, CliError> {
        let tenant = self.tenant().await?;
        let names: Vec<String> = tenant.0.environments().map(|(_, n)| n.to_owned()).collect();
        self.sync_with(&names, tenant).await
    }

    async fn sync_with(
        &self,
        env_names: &[String],
        tenant: (Tenant, u64),
    ) -> Result<Vec<SyncReport>, CliError> {
        // Drawn on stderr only when it is a terminal; a large tenant takes a while.
        let progress = indicatif::ProgressBar::new(env_names.len() as u64);
        progress.set_style(
            indicatif::ProgressStyle::with_template("sync {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut reports = Vec::with_capacity(env_names.len());
        let mut tenant = Some(tenant);
        for name in env_names {
            progress.set_message(name.clone());
            reports.push(self.sync_one(name, &mut tenant).await?);
            progress.inc(1);
        }
        progress.finish_and_clear();
        Ok(reports)
    }

    /// One environment's pass, written in transactions of at most
    /// [`SYNC_CHUNK`] changed SystemUsers (each change whole), so a first
    /// pass over a large tenant never holds it all in one transaction. A lost
    /// race recomputes what is left: the pass is idempotent.
    ///
    /// A pass leaves a [`SyncMark`]: the versions of the directory and of the
    /// environment it brought in line. While both are unchanged, the next
    /// pass looks only at the users whose entitlement time alone can change
    /// (`sync::sync_pass_over`), and at nobody when there are none: a pass
    /// with nothing to do does not even read the environment.
    async fn sync_one(&self, name: &str, cached: &mut Option<(Tenant, u64)>) -> Result<SyncReport, CliError> {
        let mut report = SyncReport {
            environment: name.to_owned(),
            changed: Vec::new(),
            first_seq: None,
            last_seq: None,
            dataverse: true,
            counts: SyncCounts::default(),
            records: None,
        };
        let pass = self.ids.next();
        for _ in 0..CONFLICT_RETRIES {
            let (tenant, tenant_version) = match cached {
                Some(loaded) => &*loaded,
                None => &*cached.insert(self.tenant().await?),
            };
            let (id, canonical) = Shell::environment_named(tenant, name)?;
            report.environment = canonical.to_owned();
            let stream = environment::stream(id);
            let judged: Vec<&domain::tenant::User> =
                tenant.users.values().filter(|u| u.judged_by_time()).collect();
            let mark = self.sync_mark(&stream).await?;
            let unchanged =
                |env_version| mark.filter(|m| (m.tenant, m.environment) == (*tenant_version, env_version));
            if let Some(mark) = unchanged(self.store.stream_version(&stream).await?) {
                if judged.is_empty() || !mark.dataverse {
                    report.dataverse = mark.dataverse;
                    return Ok(report);
                }
            }
            let (env, version): (Environment, u64) = self.load(&stream, u64::MAX).await?;
            report.dataverse = env.dataverse;
            report.records = Some(env.users.len());
            let now = self.now().await?;
            let changes = match unchanged(version) {
                Some(_) => sync::sync_pass_over(tenant, &env, now, judged),
                None => sync::sync_pass(tenant, &env, now),
            };
            let written: usize = changes.iter().map(|c| c.events.len()).sum();
            // A large pass leaves a snapshot behind, so that the next reader
            // of this environment does not replay it.
            let mut after = (written >= projections::fold::SNAPSHOT_AFTER).then(|| env.clone());
            let mut expected = version;
            let mut raced = false;
            for chunk in changes.chunks(SYNC_CHUNK) {
                let mut appends = Vec::with_capacity(chunk.len());
                for change in chunk {
                    appends.push(Append {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exactly(expected),
                        events: change
                            .events
                            .iter()
                            .map(|e| self.new_event(&Event::Environment(e.clone())))
                            .collect::<Result<_, _>>()
                            .map_err(|r| CliError::Usage(r.to_string()))?,
                        meta: Metadata {
                            recorded_at: now,
                            actor: SYNC_ACTOR.to_owned(),
                            correlation_id: pass,
                            causation: Causation::Process {
                                name: SYNC_ACTOR.to_owned(),
                                trigger: Some(change.trigger),
                            },
                            origin: Some(self.origin()),
                        },
                    });
                    expected += change.events.len() as u64;
                }
                match self.store.append_all(appends).await? {
                    Ok(appended) => {
                        if let Some(state) = after.as_mut() {
                            for (change, landed) in chunk.iter().zip(&appended) {
                                for (event, seq) in change.events.iter().zip(landed.first_seq..) {
                                    state.apply(event, domain::events::Stamp { seq, at: now });
                                }
                            }
                        }
                        report.first_seq = report.first_seq.or(appended.first().map(|a| a.first_seq));
                        report.last_seq = appended.last().map(|a| a.last_seq).or(report.last_seq);
                        report.changed.extend(chunk.iter().map(|c| c.upn.clone()));
                        chunk.iter().for_each(|c| report.counts.count(c));
                    }
                    Err(AppendRejection::Conflict { .. }) => {
                        raced = true;
                        break;
                    }
                    Err(AppendRejection::TimeWentBackwards { .. }) if self.now.is_none() => {
                        raced = true;
                        break;
                    }
                    Err(other) => return usage(other.to_string()),
                }
            }
            if !raced {
                if let (Some(state), Some(last)) = (after, report.last_seq) {
                    projections::fold::save(&self.store, &stream, &state, expected, last).await?;
                }
                let mark =
                    SyncMark { tenant: *tenant_version, environment: expected, dataverse: env.dataverse };
                // Bound to the log's head now (the store's framing: a mark
                // copied from another history, or forged, is a miss).
                if let Some(head) = self.store.head().await? {
                    let name = format!("sync/{stream}");
                    self.store.save_snapshot(&name, mark.snapshot(head.seq)).await?;
                    self.store.remove_snapshots(&name, 0..head.seq).await?;
                }
                return Ok(report);
            }
            // Another writer got in: read the directory again too.
            *cached = None;
        }
        Shell::gave_up(name)
    }

    async fn sync_mark(&self, stream: &str) -> Result<Option<SyncMark>, CliError> {
        let saved = self.store.load_snapshot(&format!("sync/{stream}"), u64::MAX).await?;
        Ok(saved.and_then(|s| SyncMark::read(&s.state)))
    }
}

/// What a sync pass over an environment left behind: the versions of the
/// directory and the environment that it brought in line, and whether the
/// environment has a database. A cache beside the log (a lost mark costs one
/// full pass), kept as the store's snapshot `sync/<stream>` at the head it
/// was written at, which binds and authenticates it as every cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMark {
    /// The tenant stream's version the pass read.
    pub tenant: u64,
    /// The environment stream's version once the pass was written.
    pub environment: u64,
    /// Whether the environment has a Dataverse database.
    pub dataverse: bool,
}

impl SyncMark {
    fn snapshot(self, seq: u64) -> store::Snapshot {
        let mut state = Vec::with_capacity(17);
        state.extend_from_slice(&self.tenant.to_be_bytes());
        state.extend_from_slice(&self.environment.to_be_bytes());
        state.push(u8::from(self.dataverse));
        store::Snapshot { seq, state }
    }

    fn read(state: &[u8]) -> Option<SyncMark> {
        let tenant = u64::from_be_bytes(state.get(..8)?.try_into().ok()?);
        let environment = u64::from_be_bytes(state.get(8..16)?.try_into().ok()?);
        let dataverse = match state.get(16..)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        Some(SyncMark { tenant, environment, dataverse })
    }
}

/// The states a view of one environment answers from.
pub struct AsOf {
    /// The log position.
    pub seq: u64,
    /// The time it is judged at.
    pub time: DateTime<Utc>,
    /// The directory then.
    pub tenant: Tenant,
    /// The environment then.
    pub environment: Environment,
}

/// What a refusal's audit record says about the command.
struct Attempted {
    command: &'static str,
    targets: Vec<String>,
    environment: Option<String>,
}

/// The actor name of the sync process in the log (`initiatedBy.app`).
pub const SYNC_ACTOR: &str = "sync";

/// What one environment's sync pass changed.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The environment's name.
    pub environment: String,
    /// The UPNs whose records changed.
    pub changed: Vec<String>,
    /// The first record written.
    pub first_seq: Option<u64>,
    /// The last record written.
    pub last_seq: Option<u64>,
    /// Whether it has a database (a pass over one without does nothing).
    pub dataverse: bool,
    /// What the changes were.
    pub counts: SyncCounts,
    /// The SystemUser records before the pass, when it read the environment.
    pub records: Option<usize>,
}

impl SyncReport {
    /// The records the pass left as they were, when it read the environment.
    pub fn unchanged(&self) -> Option<usize> {
        let after = self.records? + self.counts.added;
        Some(after.saturating_sub(self.changed.len()))
    }
}

/// A pass's changes by kind: each changed SystemUser counts once, as what
/// happened to it first (added, enabled or disabled), else as updated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Records added.
    pub added: usize,
    /// Records enabled.
    pub enabled: usize,
    /// Records disabled.
    pub disabled: usize,
    /// Records whose columns, mode, license flag or roles changed.
    pub updated: usize,
}

impl SyncCounts {
    fn count(&mut self, change: &sync::SyncChange) {
        use domain::events::EnvEvent::*;
        let kind = |f: fn(&domain::events::EnvEvent) -> bool| change.events.iter().any(f);
        if kind(|e| matches!(e, SystemUserAdded { .. })) {
            self.added += 1
        } else if kind(|e| matches!(e, SystemUserEnabled { .. })) {
            self.enabled += 1
        } else if kind(|e| matches!(e, SystemUserDisabled { .. })) {
            self.disabled += 1
        } else {
            self.updated += 1
        }
    }
}

/// Frees `value` on a thread of its own, for the large states a command
/// leaves behind (a 100k-user directory takes a tenth of a second to free):
/// nothing waits for it, and a process that ends first hands the memory
/// back to the OS at once.
pub fn free_aside<T: Send + 'static>(value: T) {
    // If no thread can be started, `spawn` drops the closure, and so frees
    // the value, here.
    let _ = std::thread::Builder::new().name("free".into()).spawn(move || drop(value));
}

/// Wraps an event for the log under `id`, refused if the log could not read it back.
fn encoded(id: Uuid, event: &Event) -> Result<NewEvent, events::TooLarge> {
    Ok(NewEvent {
        event_id: id,
        event_type: event.type_name().to_owned(),
        schema_version: domain::SCHEMA_VERSION,
        payload: events::encode(event)?,
    })
}

/// One command of a batch as decided: its events with their new ids, its
/// metadata, and the stream version they follow.
struct Decided {
    events: Vec<(Uuid, Event)>,
    meta: Metadata,
    expected: u64,
}

/// Encodes a batch's events into appends and hands them to its transaction,
/// on a thread of its own: encoding 200k events takes a tenth of a second
/// that deciding the commands after them need not wait for.
struct Encoder {
    /// Commands not yet handed over: they go in bunches, as to the store.
    bunch: Vec<Decided>,
    decided: tokio::sync::mpsc::Sender<Vec<Decided>>,
    /// The transaction, once every command is encoded or it has ended; an
    /// event too large for the log ends it unwritten.
    encoding: tokio::task::JoinHandle<Result<store::Transaction, events::TooLarge>>,
}

impl Encoder {
    /// Commands handed over at a time.
    const BUNCH: usize = 256;
    /// Bunches in flight before the decider waits for the encoder.
    const IN_FLIGHT: usize = 8;

    /// Starts encoding into `transaction`, whose appends go to `stream`.
    fn spawn(stream: &'static str, mut transaction: store::Transaction) -> Encoder {
        let (decided, mut received) = tokio::sync::mpsc::channel::<Vec<Decided>>(Self::IN_FLIGHT);
        let encoding = tokio::task::spawn_blocking(move || {
            while let Some(bunch) = received.blocking_recv() {
                for Decided { events, meta, expected } in bunch {
                    let append = Append {
                        stream: stream.to_owned(),
                        expected: ExpectedVersion::Exactly(expected),
                        // Dropped with the transaction, whatever it staged is never written.
                        events: events
                            .iter()
                            .map(|(id, event)| encoded(*id, event))
                            .collect::<Result<_, _>>()?,
                        meta,
                    };
                    // An ended transaction says why at its commit.
                    if !transaction.blocking_send(append) {
                        return Ok(transaction);
                    }
                }
            }
            Ok(transaction)
        });
        Encoder { bunch: Vec::with_capacity(Self::BUNCH), decided, encoding }
    }

    /// Adds a command. `false`: the transaction has already ended.
    async fn send(&mut self, decided: Decided) -> bool {
        self.bunch.push(decided);
        if self.bunch.len() < Self::BUNCH {
            return true;
        }
        let bunch = std::mem::replace(&mut self.bunch, Vec::with_capacity(Self::BUNCH));
        self.decided.send(bunch).await.is_ok()
    }

    /// Encodes what is left, and gives back the transaction to commit.
    async fn finish(self) -> Result<store::Transaction, CliError> {
        let Encoder { bunch, decided, encoding } = self;
        // A failed send means the encoder stopped at an ended transaction.
        let _ = decided.send(bunch).await;
        drop(decided);
        encoding
            .await
            .map_err(|e| CliError::Usage(format!("the encoding task failed: {e}")))?
            .map_err(|e| CliError::Usage(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_together_are_those_made_one_by_one_and_sort_as_made() {
        // Seeded: the same ids in the same order either way.
        let (one_by_one, together) = (Ids::seeded(7, 3), Ids::seeded(7, 3));
        let mut batch = together.together();
        for _ in 0..5 {
            assert_eq!(one_by_one.next(), batch.id());
        }
        // Random: one command's ids share a timestamp and still sort as made.
        let ids = Ids::random();
        let before = Ids::millis();
        let mut batch = ids.together();
        let made: Vec<Uuid> = (0..1000).map(|_| batch.id()).collect();
        let stamps: std::collections::BTreeSet<u64> = made
            .iter()
            .filter_map(|id| id.get_timestamp())
            .map(|t| t.to_unix().0 * 1000 + u64::from(t.to_unix().1) / 1_000_000)
            .collect();
        assert_eq!(stamps.len(), 1, "one reading of the clock");
        assert!(stamps.iter().all(|&t| t >= before && t <= Ids::millis()), "{stamps:?} around {before}");
        assert!(made.windows(2).all(|w| w[0] < w[1]), "sorted as made");
        assert!(made.iter().all(|id| id.get_version_num() == 7));
    }

    #[test]
    fn released_state_is_freed_unless_the_process_exits_after_the_run() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let mut shell = Shell::new(SledStore::temporary().unwrap(), None);
        shell.release(Counted(Arc::clone(&drops)));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "tests and the demo run many commands: freed");
        shell.exits_after_run = true;
        shell.release(Counted(Arc::clone(&drops)));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "left to the exit");
    }
}
