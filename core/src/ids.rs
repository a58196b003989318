//! Internal handles: counters wrapped in newtypes, so a waiter id is never taken for a session
//! id, and the timer queue does not depend on the queue module for its keys.

use serde::{Deserialize, Serialize};

/// Internal handle of a queue; a re-created queue gets a new one, so timers of a deleted
/// queue never touch its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub u32);

/// A parked long-poll consumer, answered later by `Event::Delivered` or `Event::WaitTimedOut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WaiterId(pub u64);

/// A streaming consumer attached to a queue (`Command::Attach`), pushed deliveries by
/// `Event::Pushed` while it has credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// The token of one delivery (lease generation) of a message: unique across the engine, so a
/// late ack carrying an old delivery's token never settles a newer delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub u64);

impl std::fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
