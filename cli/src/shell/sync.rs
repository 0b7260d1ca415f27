//! Sync passes over environments (S1) and the marks they leave.

use domain::environment::{self, Environment};
use domain::events::Event;
use domain::sync;
use domain::tenant::Tenant;
use store::{Append, Causation, ExpectedVersion, Metadata};

use super::Shell;
use crate::error::CliError;

/// The most changed SystemUsers one transaction of a sync pass holds.
pub const SYNC_CHUNK: usize = 1000;

impl Shell {
    /// Background sync passes over environments (S1), one after the other,
    /// on one reading of the directory; `None` is every environment. Every
    /// changed SystemUser is one append, caused by the sync process and the
    /// directory record that triggered it; the appends of one pass share the
    /// pass's correlation id. Each environment's report goes to `done` as its
    /// pass ends, so a pass over a hundred environments holds one report at
    /// a time.
    pub async fn sync_each(
        &self,
        env_names: Option<&[String]>,
        mut done: impl FnMut(SyncReport) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let (tenant, version) = self.lend_tenant().await?;
        let names: Vec<String> = match env_names {
            Some(names) => names.to_vec(),
            None => tenant.environments().map(|(_, n)| n.to_owned()).collect(),
        };
        // A large tenant takes a while.
        let progress = self.bar(names.len() as u64, "sync {msg} [{bar:30}] {pos}/{len}");
        let mut tenant = Some((tenant, version));
        for name in &names {
            progress.set_message(name.clone());
            done(self.sync_one(name, &mut tenant).await?)?;
            progress.inc(1);
        }
        progress.finish_and_clear();
        if let Some((tenant, version)) = tenant {
            self.give_back(tenant, version);
        }
        Ok(())
    }

    /// [`Shell::sync_each`] over these environments, every report kept.
    pub async fn sync(&self, env_names: &[String]) -> Result<Vec<SyncReport>, CliError> {
        let mut reports = Vec::with_capacity(env_names.len());
        self.sync_each(Some(env_names), |r| {
            reports.push(r);
            Ok(())
        })
        .await?;
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
        let report = SyncReport {
            environment: name.to_owned(),
            changed: Vec::new(),
            first_seq: None,
            last_seq: None,
            dataverse: true,
            counts: SyncCounts::default(),
            records: None,
        };
        let pass = self.ids.next();
        let state = tokio::sync::Mutex::new((cached, report));
        let synced = Shell::retry(|| async {
            let mut state = state.lock().await;
            let (cached, report) = &mut *state;
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
                    return Ok(Some(()));
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
            let dataverse = env.dataverse;
            // A large pass leaves a snapshot behind, so that the next reader
            // of this environment does not replay it; otherwise the table
            // goes now, before the pass's records are written.
            let changes = std::sync::Arc::new(changes);
            let after = (written >= projections::fold::SNAPSHOT_AFTER)
                .then(|| Beside::start(env, changes.clone(), version, now));
            let mut expected = version;
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
                let appended = match self.store.append_all(appends).await? {
                    Ok(appended) => appended,
                    Err(rejection) => {
                        // Another writer got in: read the directory again too.
                        **cached = None;
                        return self.lost_race(rejection);
                    }
                };
                if let Some(after) = &after {
                    after.landed(appended.iter().map(|a| a.first_seq).collect());
                }
                report.first_seq = report.first_seq.or(appended.first().map(|a| a.first_seq));
                report.last_seq = appended.last().map(|a| a.last_seq).or(report.last_seq);
                report.changed.extend(chunk.iter().map(|c| c.upn.clone()));
                chunk.iter().for_each(|c| report.counts.count(c));
            }
            if let Some(snapshot) = match after {
                Some(after) => after.finish().await?,
                None => None,
            } {
                projections::fold::save_encoded(&*self.store, &stream, snapshot).await?;
            }
            let mark = SyncMark { tenant: *tenant_version, environment: expected, dataverse };
            // Bound to the log's head now (the store's framing: a mark
            // copied from another history, or forged, is a miss).
            if let Some(head) = self.store.head().await? {
                let name = format!("sync/{stream}");
                self.store.save_snapshot(&name, mark.snapshot(head.seq)).await?;
                self.store.remove_snapshots(&name, 0..head.seq).await?;
            }
            Ok(Some(()))
        });
        synced.await?.ok_or_else(|| Shell::gave_up(name))?;
        Ok(state.into_inner().1)
    }

    async fn sync_mark(&self, stream: &str) -> Result<Option<SyncMark>, CliError> {
        let saved = self.store.load_snapshot(&format!("sync/{stream}"), u64::MAX).await?;
        Ok(saved.and_then(|s| SyncMark::read(&s.state)))
    }
}

/// The SystemUser table after a large pass, folded from the pass's changes
/// on a thread beside the one that appends them, and encoded there as the
/// snapshot the pass leaves: the fold and the encoding were a third of a
/// first pass over 300k users (BENCHMARKS.md, issue 29).
struct Beside {
    /// Where each change of the next chunk of [`SYNC_CHUNK`] landed (the
    /// seq of its first event); `None` once the pass has ended.
    landed: std::sync::mpsc::Sender<Option<Vec<u64>>>,
    /// The snapshot, once every landed change is folded (none if none landed).
    done: tokio::task::JoinHandle<Result<Option<store::Snapshot>, projections::Error>>,
}

impl Beside {
    /// Starts folding `changes` into `env`, at `version`, as they land.
    fn start(
        mut env: Environment,
        changes: std::sync::Arc<Vec<sync::SyncChange>>,
        mut version: u64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Beside {
        let (landed, arrivals) = std::sync::mpsc::channel::<Option<Vec<u64>>>();
        let done = tokio::task::spawn_blocking(move || {
            let (mut chunks, mut last) = (changes.chunks(SYNC_CHUNK), None);
            loop {
                match arrivals.recv() {
                    Ok(Some(firsts)) => {
                        for (change, first) in chunks.next().unwrap_or_default().iter().zip(firsts) {
                            for (event, seq) in change.events.iter().zip(first..) {
                                env.apply(event, domain::events::Stamp { seq, at });
                                (version, last) = (version + 1, Some(seq));
                            }
                        }
                    }
                    Ok(None) => break,
                    // The pass was given up (a lost race, a failed append):
                    // nobody reads its snapshot.
                    Err(_) => return Ok(None),
                }
            }
            last.map(|last| projections::fold::snapshot_of(&env, version, last)).transpose()
        });
        Beside { landed, done }
    }

    /// Notes that the next chunk of changes landed, each one's first event at `firsts`.
    fn landed(&self, firsts: Vec<u64>) {
        // Refused only once the fold has ended, which `finish` reports.
        let _ = self.landed.send(Some(firsts));
    }

    /// The snapshot of the table with every landed change folded in.
    async fn finish(self) -> Result<Option<store::Snapshot>, CliError> {
        // Refused only once the fold has ended, which the join reports.
        let _ = self.landed.send(None);
        let done =
            self.done.await.map_err(|e| CliError::System(format!("the sync pass's fold failed: {e}")))?;
        Ok(done?)
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
        store::Snapshot { seq, state, parts: Vec::new() }
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
