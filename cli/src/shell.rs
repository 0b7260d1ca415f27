//! The imperative shell around the domain: load an aggregate (nearest
//! snapshot + the records after it), decide, append all events or none, and
//! record refusals (L1).

use chrono::{DateTime, Utc};
use domain::events::{self, Event};
use domain::Rejection;
use store::{Appended, EventStore, NewEvent};
use uuid::Uuid;

use crate::machine::{Machine, Runner};

mod batch;
mod execute;
mod ids;
mod load;
mod sync;

pub use batch::BatchDone;
pub use ids::{Ids, Together};
pub use load::AsOf;
pub use sync::{SyncCounts, SyncMark, SyncReport, SYNC_ACTOR, SYNC_CHUNK};

/// The stream of failure audit records.
pub const AUDIT_STREAM: &str = "audit";

/// How often a command is re-decided after losing a race to another writer.
const CONFLICT_RETRIES: usize = 32;

/// An open database, and what every command shares: the time override and
/// the source of new ids.
pub struct Shell {
    /// The log, on whichever backend `--db` names.
    pub store: std::sync::Arc<dyn EventStore>,
    /// `--now`, if given.
    pub now: Option<DateTime<Utc>>,
    /// Where new ids come from.
    pub ids: Ids,
    /// The process exits once the command is done: see [`release`].
    pub exits_after_run: bool,
    /// The store stamps appends with its own clock (a PostgreSQL log
    /// without `--now`): the machine's only says when a command is decided.
    pub store_clock: bool,
    /// The machine whose clock, account and host each record keeps.
    pub machine: Machine,
    /// Whether long commands draw progress bars (the binary, when stderr
    /// is a terminal); the demo draws one of its own instead.
    pub progress: bool,
    /// The account and host, asked of the system once, by the first write.
    runner: std::sync::OnceLock<Runner>,
    /// The directory as the last command left it, with its version: the
    /// next command folds only what was appended since (`Shell::lend_tenant`).
    kept: std::sync::Mutex<Option<projections::fold::Loaded<domain::tenant::Tenant>>>,
    /// States folded from the store (a snapshot and the records after it),
    /// each costing in proportion to the state: the demo's test counts them.
    pub(crate) loads: std::sync::atomic::AtomicU64,
}

impl Shell {
    /// A shell over `store` with random ids.
    pub fn new(store: std::sync::Arc<dyn EventStore>, now: Option<DateTime<Utc>>) -> Shell {
        Shell {
            store,
            now,
            ids: Ids::random(),
            exits_after_run: false,
            store_clock: false,
            machine: Machine::Real,
            progress: false,
            runner: std::sync::OnceLock::new(),
            kept: std::sync::Mutex::new(None),
            loads: Default::default(),
        }
    }

    /// Wraps an event for the log, with a new id; one too large for the log
    /// to read back is bad input (exit 2), refused before any append.
    pub fn new_event(&self, event: &Event) -> Result<NewEvent, Rejection> {
        encoded(self.ids.next(), event).map_err(|e| Rejection::Invalid(e.to_string()))
    }

    /// A progress bar of `len` steps drawn on stderr if [`Shell::progress`],
    /// else hidden.
    pub fn bar(&self, len: u64, template: &str) -> indicatif::ProgressBar {
        progress_bar(self.progress, len, template)
    }
}

/// A progress bar of `len` steps drawn on stderr if `drawn`, else hidden.
pub fn progress_bar(drawn: bool, len: u64, template: &str) -> indicatif::ProgressBar {
    let target =
        if drawn { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::with_draw_target(Some(len), target).with_style(style)
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

/// What a refusal's audit record says about the command.
struct Attempted {
    command: &'static str,
    targets: Vec<String>,
    environment: Option<String>,
}

/// Lets go of state a command loaded. When the process exits right after
/// the command, the state is left to the exit, which hands the memory back
/// at once, instead of freed entry by entry (BENCHMARKS.md, "One memory
/// habit"). The store is never given here: its drop leaves the log's
/// indexes complete.
pub fn release<T>(exits_after_run: bool, state: T) {
    if exits_after_run {
        std::mem::forget(state);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        release(false, Counted(Arc::clone(&drops)));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "tests and the demo run many commands: freed");
        release(true, Counted(Arc::clone(&drops)));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "left to the exit");
    }
}
