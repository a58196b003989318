//! Idempotency keys of publishes: a producer that lost a publish reply (a crash, a timeout)
//! retries with the same key, and a key seen within the window answers with the first
//! publish's message id and position and adds nothing.
//!
//! Keys are engine state like any other: they are in snapshots and replay from the command log
//! (the key travels in the `Publish` command), so the promise holds across restarts. Each key
//! lives for `idempotency_window_ms` after its first publish, scoped to one queue (a queue
//! deleted and created again starts with no keys). At most `limits.max_idempotency_keys` live
//! keys are held across the engine; a publish that would add one more is refused.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::Published;
use crate::fxmap::SortedMap;
use crate::ids::QueueId;
use crate::time::Millis;

/// A key, scoped to the queue it was published to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ScopedKey {
    queue: QueueId,
    key: Arc<str>,
}

impl ScopedKey {
    pub(crate) fn new(queue: QueueId, key: &str) -> Self {
        Self {
            queue,
            key: key.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Seen {
    first: Published,
    expires_at: Millis,
}

/// The live keys, and the order in which they run out.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Dedup {
    seen: SortedMap<ScopedKey, Seen>,
    /// Keys in the order they were recorded with their expiry. The window is the same for every
    /// key recorded under one config, so the front runs out first.
    order: VecDeque<(Millis, ScopedKey)>,
}

impl Dedup {
    /// Forgets the keys whose window ended at or before `now`.
    pub(crate) fn expire(&mut self, now: Millis) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let (at, key) = self.order.pop_front().expect("front exists");
            // A key recorded again after it ran out has a later expiry: keep that one.
            if self.seen.get(&key).is_some_and(|s| s.expires_at == at) {
                self.seen.remove(&key);
            }
        }
    }

    /// The first publish of a live key (call `expire` first).
    pub(crate) fn first(&self, key: &ScopedKey) -> Option<&Published> {
        self.seen.get(key).map(|s| &s.first)
    }

    /// Checks that `extra` more keys fit under `max`.
    pub(crate) fn check_room(&self, extra: usize, max: usize) -> Result<(), Error> {
        if self.seen.len() + extra > max {
            return Err(Error::limit("idempotency keys", max as u64));
        }
        Ok(())
    }

    /// Records the first publish of a key.
    pub(crate) fn record(&mut self, key: ScopedKey, first: Published, expires_at: Millis) {
        self.order.push_back((expires_at, key.clone()));
        self.seen.insert(key, Seen { first, expires_at });
    }

    /// Live keys held.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Checks an idempotency key: 1 to `max_bytes` bytes, no control characters.
pub(crate) fn check_key(key: &str, max_bytes: usize) -> Result<(), Error> {
    if key.is_empty() || key.len() > max_bytes || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "idempotency_key",
            format!("an idempotency key is 1-{max_bytes} bytes without control characters"),
        ));
    }
    Ok(())
}
