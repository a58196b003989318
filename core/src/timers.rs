//! One timer queue for the whole engine, deadlines as data.
//!
//! Every pending deadline is an entry `(when, TimerKey)` in one ordered set, so
//! `poll_timeout` is its first entry. Entries are removed eagerly when their subject goes away
//! (an ack removes the lease timer), which bounds the set by live state; the handlers also
//! re-check their subject, so a stale entry would be harmless.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::api::MessageId;
use crate::ids::{LeaseToken, QueueId, WaiterId};
use crate::time::Millis;

/// What a deadline is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    // Variant order is the firing order of timers due at the same millisecond: a TTL that
    // ends as a delay ends must win, so an expiring message is never delivered.
    /// A message's TTL passes.
    MessageTtl {
        /// Owning queue.
        queue: QueueId,
        /// The message.
        id: MessageId,
    },
    /// A group's `group_rate_limit` window closes. These fire before any other timer due at
    /// the same millisecond but TTLs, and the first of them for a queue takes the queue's
    /// others along: every group whose window ends then is listed again before the queue
    /// serves its consumers, so no delivery at that millisecond sees a group still held back.
    GroupWindow {
        /// The queue.
        queue: QueueId,
        /// The group.
        group: std::sync::Arc<str>,
    },
    /// The queue's `rate_limit` window closes: deliveries it held back may go now.
    RateWindow {
        /// The queue.
        queue: QueueId,
    },
    /// A worker's `RateLimit` of the queue ends.
    RateLimitEnd {
        /// The queue.
        queue: QueueId,
    },
    /// A message's lease (ack deadline) ends; `lease` is the lease token it was set for.
    Lease {
        /// Owning queue.
        queue: QueueId,
        /// The message.
        id: MessageId,
        /// The lease token.
        lease: LeaseToken,
    },
    /// A delayed message (publish delay or retry delay) becomes ready.
    Due {
        /// Owning queue.
        queue: QueueId,
        /// The message.
        id: MessageId,
    },
    /// A parked long-poll consumer's wait ends.
    Wait {
        /// The waiter.
        waiter: WaiterId,
    },
    /// A subscriber registered with `idle_ms` has been idle that long; `version` tells a
    /// subscriber touched since from the one the timer was for.
    SubscriberIdle {
        /// The subscriber.
        subscriber: String,
        /// The touch it belongs to.
        version: u64,
    },
    /// A KV key's TTL passes; `version` tells a rewritten key from the one the timer was for.
    KeyTtl {
        /// The key.
        key: String,
        /// The write it belongs to.
        version: u64,
    },
    /// The oldest finished job a queue keeps reaches its retention age.
    Retention {
        /// The queue.
        queue: QueueId,
    },
    /// A schedule's next run is due.
    Schedule {
        /// The queue.
        queue: QueueId,
        /// The schedule's id.
        id: std::sync::Arc<str>,
    },
}

/// The ordered set of pending deadlines.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Timers {
    set: BTreeSet<(Millis, TimerKind)>,
}

impl Timers {
    pub(crate) fn add(&mut self, at: Millis, kind: TimerKind) {
        self.set.insert((at, kind));
    }

    pub(crate) fn remove(&mut self, at: Millis, kind: TimerKind) {
        self.set.remove(&(at, kind));
    }

    /// The earliest deadline and what it is for.
    pub(crate) fn next(&self) -> Option<&(Millis, TimerKind)> {
        self.set.first()
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, TimerKind)> {
        if self.set.first()?.0 <= now {
            self.set.pop_first()
        } else {
            None
        }
    }

    /// Removes and returns the earliest entry if it is due at `now` and `matches` its kind.
    pub(crate) fn pop_due_if(
        &mut self,
        now: Millis,
        matches: impl Fn(&TimerKind) -> bool,
    ) -> Option<(Millis, TimerKind)> {
        let (at, kind) = self.set.first()?;
        if *at <= now && matches(kind) {
            self.set.pop_first()
        } else {
            None
        }
    }

    /// The kinds of the timers due at `now`.
    pub(crate) fn due(&self, now: Millis) -> impl Iterator<Item = &TimerKind> {
        self.set
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|(_, kind)| kind)
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn contains(&self, at: Millis, kind: &TimerKind) -> bool {
        self.set.contains(&(at, kind.clone()))
    }
}
