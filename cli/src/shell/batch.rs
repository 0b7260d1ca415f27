//! A batch of tenant commands (an import), decided in order and appended in
//! one transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::events::Event;
use domain::tenant::{self, Tenant, TenantCommand};
use domain::{Rejection, Upn};
use store::{Append, ExpectedVersion};

use super::{encoded, release, Attempted, Shell};
use crate::error::{usage, CliError};

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

impl Shell {
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
        plan: impl FnMut(&Tenant, DateTime<Utc>) -> Result<Vec<TenantCommand>, CliError>,
    ) -> Result<BatchDone, CliError> {
        let plan = &tokio::sync::Mutex::new(plan);
        let done = Shell::retry(move || async move {
            let (mut tenant, version) = self.tenant().await?;
            let actor = Shell::actor(&tenant, actor)?;
            let now = self.now().await?;
            // Where the events will land if no other writer gets in first:
            // the working state is stamped with these seqs, and saved as a
            // snapshot below only if they turn out to be the real ones.
            let head = self.store.head().await?.map_or(0, |h| h.seq);
            let mut next_seq = head + 1;
            crate::timings::phase("loaded the tenant");
            let commands = (*plan.lock().await)(&tenant, now)?;
            crate::timings::phase("planned");
            let progress = self.bar(commands.len() as u64, "{msg} [{bar:30}] {pos}/{len}");
            progress.set_message(name);
            // Each command's events are sealed by the store while the next is decided.
            let mut transaction = self.store.begin().await?;
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
                        drop(transaction);
                        let attempted =
                            Attempted { command: name, targets: command.targets(), environment: None };
                        return Err(self.refused(&attempted, refusal, meta).await);
                    }
                };
                progress.inc(1);
                if events.is_empty() {
                    continue;
                }
                let mut records = Vec::with_capacity(events.len());
                for event in events {
                    tenant.apply(&event, domain::events::Stamp { seq: next_seq, at: now });
                    next_seq += 1;
                    let event = Event::Tenant(event);
                    *done.events_by_type.entry(event.type_name()).or_default() += 1;
                    // Dropped with the transaction, whatever it staged is never written.
                    match encoded(ids.id(), &event) {
                        Ok(record) => records.push(record),
                        Err(too_large) => {
                            progress.finish_and_clear();
                            return usage(too_large.to_string());
                        }
                    }
                }
                let follows = expected;
                expected += records.len() as u64;
                let append = Append {
                    stream: tenant::STREAM.to_owned(),
                    expected: ExpectedVersion::Exactly(follows),
                    events: records,
                    meta,
                };
                if !transaction.send(append).await {
                    ended_early = true; // the commit below says why
                    break;
                }
            }
            progress.finish_and_clear();
            crate::timings::phase("decided");
            // A large batch leaves the directory's snapshot behind. Encoding
            // (and, in tests, freeing) a large directory, and writing tens of
            // megabytes, take a while: they run beside the commit, and the
            // staged snapshot is published only if the events land where
            // the working state was stamped (dropped, it is discarded).
            let stamped_last = next_seq - 1;
            let large = stamped_last - head >= projections::fold::SNAPSHOT_AFTER as u64;
            let snapshot = (large && !ended_early).then(|| {
                let (store, exits_after_run) = (self.store.clone(), self.exits_after_run);
                tokio::spawn(async move {
                    let snapshot = tokio::task::spawn_blocking(move || {
                        let snapshot = projections::fold::snapshot_of(&tenant, expected, stamped_last);
                        release(exits_after_run, tenant);
                        snapshot
                    })
                    .await
                    .map_err(|e| CliError::Usage(format!("snapshot task failed: {e}")))??;
                    Ok::<_, CliError>(projections::fold::stage(&*store, tenant::STREAM, snapshot).await?)
                })
            });
            let appended = match transaction.commit().await? {
                Ok(appended) => appended,
                Err(rejection) => return self.lost_race(rejection),
            };
            if appended.is_empty() {
                return Ok(Some(done));
            }
            crate::timings::phase("appended");
            let landed = appended.first().map(|a| a.first_seq).zip(appended.last().map(|a| a.last_seq));
            done.changes = appended.len();
            done.seqs = landed;
            if let Some(staging) = snapshot.filter(|_| landed == Some((head + 1, stamped_last))) {
                let staged =
                    staging.await.map_err(|e| CliError::Usage(format!("snapshot task failed: {e}")))??;
                projections::fold::publish(&*self.store, staged).await?;
                crate::timings::phase("saved the snapshot");
            }
            Ok(Some(done))
        });
        done.await?.ok_or_else(|| Shell::gave_up("the tenant"))
    }
}
