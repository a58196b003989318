//! The one vocabulary every host speaks: `Command` in, `Reply` back, `Event`s drained after.
//!
//! Serialized with serde in snake_case, internally tagged by `"type"`; the same shapes serve the
//! HTTP command envelope, the command log, the wasm API and fuzz inputs. Intervals are `_ms`
//! integers; the engine adds `now` to them. Commands live in `command.rs`, replies and the
//! records they carry in `reply.rs`, events in `event.rs`.

use std::collections::BTreeMap;

use uuid::Uuid;

mod command;
mod event;
mod job;
mod reply;

pub use crate::ids::{LeaseToken, SessionId, WaiterId};
pub use command::{Command, KvEntry, LeaseRef, PublishMessage};
pub use event::{Event, Observed, ObservedKind};
pub use job::{DedupMode, Job, JobState, ScheduleInfo, ScheduleSpec};
pub use reply::{
    DeadLetter, DeadLetterReason, Delivery, GroupInfo, KvStats, KvValue, NackAction, PubMessage,
    Published, PubsubStats, QueueStats, Reply,
};

/// A message id users see: a UUID built from the engine's seeded PRNG. It stays the same across
/// redeliveries.
pub type MessageId = Uuid;

/// String headers carried with a message.
pub type Headers = BTreeMap<String, String>;
