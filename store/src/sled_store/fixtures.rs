//! Events, metadata and appends for the store's unit tests.

use chrono::DateTime;
use uuid::Uuid;

use crate::{Append, Causation, ExpectedVersion, Metadata, NewEvent};

pub(super) fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(u128::from(n)),
        event_type: "T".into(),
        schema_version: 1,
        payload: vec![n as u8; 40],
    }
}

pub(super) fn meta(n: u64) -> Metadata {
    Metadata {
        recorded_at: DateTime::from_timestamp(1_750_000_000 + n as i64, 0).unwrap_or_default(),
        actor: "admin".into(),
        correlation_id: Uuid::from_u128(u128::from(n)),
        causation: Causation::Command { name: "test".into() },
        origin: None,
    }
}

/// An append of `events` to `stream`, with the metadata of command `n`.
pub(super) fn append_to(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>, n: u64) -> Append {
    Append { stream: stream.into(), expected, events, meta: meta(n) }
}
