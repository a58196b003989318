//! Idempotency keys of publishes: a producer that lost a publish reply (a crash, a timeout)
//! retries with the same key, and a key seen within the window answers with the first
//! publish's message id and position and adds nothing.
//!
//! Keys are engine state like any other: they are in snapshots and replay from the command log
//! (the key travels in the `Publish` command), so the promise holds across restarts. Each key
//! lives for `idempotency_window_ms` after its first publish, scoped to one queue (a queue
//! deleted and created again starts with no keys). At most `limits.max_idempotency_keys` live
//! keys are held across the engine; a publish that would add one more is refused.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{MessageId, Published};
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
    /// Held while its job is unfinished (`until_finished`, debounce), not for a window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    held: bool,
}

/// The live keys, and the order in which they run out.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Dedup {
    seen: SortedMap<ScopedKey, Seen>,
    /// Keys in the order they were recorded with their expiry. The window is the same for every
    /// key recorded under one config, so the front runs out first.
    order: VecDeque<(Millis, ScopedKey)>,
    /// The job each held key names, so the key is released when the job finishes.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "crate::fxmap::pairs"
    )]
    owners: BTreeMap<(QueueId, MessageId), Arc<str>>,
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

    /// Records the first publish of a key, held for the window.
    pub(crate) fn record(&mut self, key: ScopedKey, first: Published, expires_at: Millis) {
        self.order.push_back((expires_at, key.clone()));
        self.seen.insert(
            key,
            Seen {
                first,
                expires_at,
                held: false,
            },
        );
    }

    /// Records a key held while its job is unfinished; it replaces any earlier entry of the
    /// key (a debounced publish that started a new job).
    pub(crate) fn record_held(&mut self, key: ScopedKey, first: Published) {
        // Snapshots encode `Published` as an array whose trailing flags are left out when
        // false: a first publish has neither.
        debug_assert!(!first.duplicate && !first.replaced);
        if let Some(old) = self.seen.get(&key).filter(|s| s.held) {
            self.owners.remove(&(key.queue, old.first.message_id));
        }
        self.owners
            .insert((key.queue, first.message_id), Arc::clone(&key.key));
        self.seen.insert(
            key,
            Seen {
                first,
                expires_at: Millis(u64::MAX),
                held: true,
            },
        );
    }

    /// A job finished (or left its queue): release the key it held.
    pub(crate) fn release(&mut self, queue: QueueId, id: MessageId) {
        if self.owners.is_empty() {
            return;
        }
        let Some(key) = self.owners.remove(&(queue, id)) else {
            return;
        };
        let key = ScopedKey { queue, key };
        if self
            .seen
            .get(&key)
            .is_some_and(|s| s.held && s.first.message_id == id)
        {
            self.seen.remove(&key);
        }
    }

    /// Releases every held key of a deleted queue.
    pub(crate) fn forget_queue(&mut self, queue: QueueId) {
        let ids: Vec<MessageId> = self
            .owners
            .range((queue, MessageId::nil())..=(queue, MessageId::max()))
            .map(|((_, id), _)| *id)
            .collect();
        for id in ids {
            self.release(queue, id);
        }
    }

    /// Held keys and the jobs they name, for the invariants.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn held(&self) -> impl Iterator<Item = (QueueId, MessageId)> + '_ {
        self.owners.keys().copied()
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
