//! Loading: the time a command is stamped with, the point `--at` names, and
//! the states folded up to it.

use chrono::{DateTime, Timelike, Utc};
use domain::environment::{self, Environment};
use domain::tenant::{self, Tenant};
use domain::Upn;
use projections::fold::Loaded;
use uuid::Uuid;

use super::{Aggregate, Shell};
use crate::error::{usage, CliError};
use crate::time::At;

/// A point of the log in absolute terms: `--at` once `N ago` is a time.
enum Moment {
    Seq(u64),
    Time(DateTime<Utc>),
}

impl Shell {
    /// The time to stamp on new events (and decide them at): `--now` or the
    /// clock, never earlier than the last record's time. A store with a
    /// clock of its own stamps them with that instead.
    pub async fn now(&self) -> Result<DateTime<Utc>, CliError> {
        // The clock to the millisecond: JSON prints every digit a time
        // has, and a time printed is a time a script gives back to `--at`.
        let now = self.now.unwrap_or_else(|| {
            let clock = self.machine.clock();
            clock.with_nanosecond(clock.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(clock)
        });
        if let Some(head) = self.store.head().await? {
            // A writer that read the clock just before another one appended
            // trails it by a moment: that is concurrency, not a clock gone
            // back. Behind a store's clock, a machine's may trail it by any.
            if self.now.is_none()
                && now < head.recorded_at
                && (self.store_clock || head.recorded_at - now <= chrono::Duration::seconds(1))
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
        self.loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(projections::fold::load(&*self.store, stream, upto, projections::fold::Snapshots::Use).await?)
    }

    /// The directory as of log position `upto`, and the tenant stream's version then.
    pub async fn tenant_at(&self, upto: u64) -> Result<(Tenant, u64), CliError> {
        self.load(tenant::STREAM, upto).await
    }

    /// The directory now.
    pub async fn tenant(&self) -> Result<(Tenant, u64), CliError> {
        self.tenant_at(u64::MAX).await
    }

    /// The directory now, for a command to give back ([`Shell::give_back`]):
    /// the one given back last, with what was appended since folded in. A
    /// shell that runs many commands (the demo) so folds each record once,
    /// instead of the whole directory once a command. Read in part: a
    /// command reads the parts its decision reaches ([`Shell::decide_reading`]).
    pub(super) async fn lend_parted(&self) -> Result<Loaded<Tenant>, CliError> {
        let kept = self.kept.lock().ok().and_then(|mut kept| kept.take());
        let fresh = || projections::fold::load_parted(&*self.store, tenant::STREAM, u64::MAX);
        let Some(mut loaded) = kept else { return Ok(fresh().await?) };
        for record in self.store.read_stream_until(tenant::STREAM, loaded.version + 1, u64::MAX).await? {
            loaded.state.fold(projections::fold::event_of(&record)?, projections::fold::stamp_of(&record));
            loaded.version = record.version;
        }
        // A record that reached a part not read was not folded: anew.
        if !loaded.state.take_misses().is_empty() {
            return Ok(fresh().await?);
        }
        Ok(loaded)
    }

    /// [`Shell::lend_parted`], whole: for what walks the directory.
    pub(super) async fn lend_tenant(&self) -> Result<(Tenant, u64), CliError> {
        let Loaded { mut state, version, source } = self.lend_parted().await?;
        let absent = state.absent_parts().into_iter().collect();
        if !projections::fold::read_parts(&*self.store, tenant::STREAM, source, &mut state, &absent).await? {
            return self.tenant().await;
        }
        Ok((state, version))
    }

    /// Runs `attempt` (a decision) on `loaded` until it reaches no part not
    /// read, reading those it reached: a result that rests on a part not
    /// read is void. A part that cannot be read (its snapshot gone or
    /// damaged since) costs a fold of the directory from the log.
    pub(super) async fn decide_reading<T>(
        &self,
        loaded: &mut Loaded<Tenant>,
        mut attempt: impl FnMut(&Tenant) -> T,
    ) -> Result<T, CliError> {
        loop {
            let outcome = attempt(&loaded.state);
            let missed = loaded.state.take_misses();
            if missed.is_empty() {
                return Ok(outcome);
            }
            projections::fold::read_or_refold(&*self.store, tenant::STREAM, loaded, &missed).await?;
        }
    }

    /// Keeps the directory at `version` for the next command; a process that
    /// exits after this one has none, and leaves it to the exit.
    pub(super) fn give_back(&self, tenant: Tenant, version: u64) {
        self.keep(Loaded { state: tenant, version, source: None });
    }

    /// [`Shell::give_back`] for a directory read in part.
    pub(super) fn keep(&self, loaded: Loaded<Tenant>) {
        match self.kept.lock() {
            Ok(mut kept) if !self.exits_after_run => *kept = Some(loaded),
            _ => super::release(self.exits_after_run, loaded),
        }
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
    pub(super) fn environment_named<'t>(tenant: &'t Tenant, name: &str) -> Result<(Uuid, &'t str), CliError> {
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
