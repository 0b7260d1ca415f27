//! One command: decided against the state it loaded, appended all or none,
//! tried again when another writer got in first; refusals recorded (L1).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::envcmd::{self, EnvCommand, NewEnvironment};
use domain::environment::{self, Environment};
use domain::events::{CommandRejected, Event};
use domain::reality::{self, EnvironmentsPlan, ListedEnvironment};
use domain::tenant::{self, Tenant, TenantCommand};
use domain::{Refusal, Rejection, Upn};
use store::{Append, AppendRejection, Appended, Causation, ExpectedVersion, Metadata, Origin};
use uuid::Uuid;

use super::{release, Attempted, Done, Shell, AUDIT_STREAM, CONFLICT_RETRIES};
use crate::error::{usage, CliError};

impl Shell {
    /// The metadata of a command's records.
    pub(super) fn meta(
        &self,
        actor: &str,
        command: &str,
        correlation_id: Uuid,
        now: DateTime<Utc>,
    ) -> Metadata {
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

    /// Runs tries of a command until one is not turned back by another
    /// writer (`Ok(None)`: load and decide again), at most
    /// [`CONFLICT_RETRIES`] of them; `None` when every one was.
    /// What a try changes for the next one lives outside it, behind a lock
    /// that no two tries ever hold at once: a future borrowing from its
    /// closure could not be sent to another thread.
    pub(super) async fn retry<T, Try: std::future::Future<Output = Result<Option<T>, CliError>>>(
        mut attempt: impl FnMut() -> Try,
    ) -> Result<Option<T>, CliError> {
        for _ in 0..CONFLICT_RETRIES {
            if let Some(done) = attempt().await? {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    /// The error of a command that other writers kept turning back.
    pub(super) fn gave_up(what: &str) -> CliError {
        CliError::Usage(format!("gave up after {CONFLICT_RETRIES} tries: other writers keep changing {what}"))
    }

    /// What an append turned down means for a try: another writer got in
    /// first (`Ok(None)`: try again), or the error that ends the command.
    pub(super) fn lost_race<T>(&self, rejection: AppendRejection) -> Result<Option<T>, CliError> {
        match rejection {
            AppendRejection::Conflict { .. } | AppendRejection::Moved { .. } => Ok(None),
            // Another writer on the clock got in first with a later time: read
            // the clock again and re-decide, as after a conflict.
            AppendRejection::TimeWentBackwards { .. } if self.now.is_none() => Ok(None),
            other => usage(other.to_string()),
        }
    }

    /// Ends one try of a command: bad input ends it with nothing appended; a
    /// refusal with one audit record (L1); the events of each stream, decided
    /// at its version, are appended in one transaction. `None` means another
    /// writer won the race: try again.
    async fn conclude(
        &self,
        attempted: &Attempted,
        meta: Metadata,
        decided: Result<Vec<(String, u64, Vec<Event>)>, Rejection>,
    ) -> Result<Option<Done>, CliError> {
        let correlation_id = meta.correlation_id;
        let mut events = Vec::new();
        let mut appends = Vec::new();
        let encoded = decided.and_then(|streams| {
            for (stream, version, stream_events) in streams {
                let new = stream_events.iter().map(|e| self.new_event(e)).collect::<Result<_, _>>()?;
                appends.push(Append {
                    stream,
                    expected: ExpectedVersion::Exactly(version),
                    events: new,
                    meta: meta.clone(),
                });
                events.extend(stream_events);
            }
            Ok(())
        });
        match encoded {
            Ok(()) => {}
            Err(Rejection::Invalid(reason)) => return usage(reason),
            Err(Rejection::Refused(refusal)) => return Err(self.refused(attempted, refusal, meta).await),
        }
        if events.is_empty() {
            return Ok(Some(Done { events, appended: None, correlation_id }));
        }
        let appended = match self.store.append_all(appends).await? {
            Ok(appended) => appended,
            Err(rejection) => return self.lost_race(rejection),
        };
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

    /// Records a refusal (L1) and returns the error that reports it.
    pub(super) async fn refused(&self, attempted: &Attempted, refusal: Refusal, meta: Metadata) -> CliError {
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
        let (event, meta) = (&event, &tokio::sync::Mutex::new(meta));
        let recorded = Shell::retry(move || async move {
            let mut meta = meta.lock().await;
            let append = Append {
                stream: AUDIT_STREAM.to_owned(),
                expected: ExpectedVersion::Any,
                events: vec![event.clone()],
                meta: meta.clone(),
            };
            match self.store.append(append).await? {
                Ok(_) => Ok(Some(())),
                // On the clock, a later writer got in first: stamp the record anew.
                Err(AppendRejection::TimeWentBackwards { last, .. }) if self.now.is_none() => {
                    meta.recorded_at = self.machine.clock().max(last);
                    meta.origin = Some(self.origin());
                    Ok(None)
                }
                Err(other) => usage(other.to_string()),
            }
        });
        match recorded.await {
            Ok(Some(())) => CliError::Rejected(refusal),
            Ok(None) => {
                CliError::Usage(format!("gave up recording the refusal after {CONFLICT_RETRIES} tries"))
            }
            Err(e) => e,
        }
    }

    /// Decides a tenant command and appends its events, all or none. A lost
    /// race re-decides on the newer state; a refusal leaves one audit record.
    pub async fn execute(&self, actor: Option<&Upn>, command: &TenantCommand) -> Result<Done, CliError> {
        let correlation_id = self.ids.next();
        let attempted = &Attempted { command: command.name(), targets: command.targets(), environment: None };
        let done = Shell::retry(move || async move {
            let mut loaded = self.lend_parted().await?;
            crate::timings::phase("loaded the tenant");
            let actor_of = |tenant: &Tenant| match command {
                TenantCommand::Init { admin, .. } => Ok(admin.upn.clone()),
                TenantCommand::AcceptInvite { upn } => Ok(upn.clone()),
                _ => Shell::actor(tenant, actor),
            };
            let actor = self.decide_reading(&mut loaded, actor_of).await??;
            let now = self.now().await?;
            let decide = |tenant: &Tenant| tenant::decide(tenant, &actor, command, now);
            let decided = self.decide_reading(&mut loaded, decide).await?;
            let version = loaded.version;
            let meta = self.meta(actor.as_str(), command.name(), correlation_id, now);
            let decided = decided.map(|events| {
                vec![(tenant::STREAM.to_owned(), version, events.into_iter().map(Event::Tenant).collect())]
            });
            self.keep(loaded);
            let done = self.conclude(attempted, meta, decided).await?;
            if done.is_some() {
                crate::timings::phase("appended");
            }
            Ok(done)
        });
        done.await?.ok_or_else(|| Shell::gave_up("the tenant"))
    }

    /// Creates an environment: its registry entry on the tenant stream and its
    /// own stream, in one transaction.
    pub async fn create_environment(
        &self,
        actor: Option<&Upn>,
        new: &NewEnvironment,
    ) -> Result<Done, CliError> {
        let correlation_id = self.ids.next();
        let attempted = &Attempted {
            command: "env create",
            targets: vec![new.name.clone()],
            environment: Some(new.name.clone()),
        };
        let done = Shell::retry(move || async move {
            let (tenant, version) = self.lend_tenant().await?;
            let actor = Shell::actor(&tenant, actor)?;
            let now = self.now().await?;
            let meta = self.meta(actor.as_str(), attempted.command, correlation_id, now);
            let decided = envcmd::decide_create(&tenant, &actor, new, now).map(|(registered, events)| {
                vec![
                    (tenant::STREAM.to_owned(), version, vec![Event::Tenant(registered)]),
                    (environment::stream(new.id), 0, events.into_iter().map(Event::Environment).collect()),
                ]
            });
            self.give_back(tenant, version);
            self.conclude(attempted, meta, decided).await
        });
        done.await?.ok_or_else(|| Shell::gave_up("the tenant"))
    }

    /// Imports an environment listing (issue 32): new environments and the
    /// changes of known ones, decided against the directory and every
    /// environment, appended in one transaction (all of them or none).
    pub async fn import_environments(
        &self,
        actor: Option<&Upn>,
        listed: &[ListedEnvironment],
    ) -> Result<(Done, EnvironmentsPlan), CliError> {
        let correlation_id = self.ids.next();
        let attempted = &Attempted { command: "import environments", targets: vec![], environment: None };
        let planned = &std::sync::Mutex::new(EnvironmentsPlan::default());
        let done = Shell::retry(move || async move {
            let (tenant, version) = self.lend_tenant().await?;
            let (mut envs, mut versions) = (BTreeMap::new(), BTreeMap::new());
            for (id, _) in tenant.environments() {
                let (env, at) = self.load::<Environment>(&environment::stream(id), u64::MAX).await?;
                envs.insert(id, env);
                versions.insert(id, at);
            }
            let actor = Shell::actor(&tenant, actor)?;
            let now = self.now().await?;
            let meta = self.meta(actor.as_str(), attempted.command, correlation_id, now);
            let decided =
                reality::plan_environments(&tenant, &envs, &actor, listed.to_vec(), now).map(|plan| {
                    let registered = plan.registered.iter().cloned().map(Event::Tenant).collect::<Vec<_>>();
                    let tenant_stream =
                        (!registered.is_empty()).then(|| (tenant::STREAM.to_owned(), version, registered));
                    let envs = plan.streams.iter().map(|(id, events)| {
                        let events = events.iter().cloned().map(Event::Environment).collect();
                        (environment::stream(*id), versions.get(id).copied().unwrap_or(0), events)
                    });
                    let streams = tenant_stream.into_iter().chain(envs).collect();
                    *planned.lock().unwrap_or_else(|p| p.into_inner()) = plan;
                    streams
                });
            self.give_back(tenant, version);
            self.conclude(attempted, meta, decided).await
        });
        let done = done.await?.ok_or_else(|| Shell::gave_up("the tenant"))?;
        let plan = std::mem::take(&mut *planned.lock().unwrap_or_else(|p| p.into_inner()));
        Ok((done, plan))
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
        let done = Shell::retry(move || async move {
            let (tenant, tenant_version) = self.lend_tenant().await?;
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
            let decided = envcmd::decide(&tenant, &env, &actor, command, now).map(|events| {
                vec![(
                    environment::stream(env.id),
                    version,
                    events.into_iter().map(Event::Environment).collect(),
                )]
            });
            self.give_back(tenant, tenant_version);
            let done = self.conclude(&attempted, meta, decided).await?;
            if done.is_some() {
                release(self.exits_after_run, env);
            }
            Ok(done)
        });
        done.await?.ok_or_else(|| Shell::gave_up(env_name))
    }
}
