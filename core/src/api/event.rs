//! Output the engine produces, drained by `poll_event` after every call.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DeadLetterReason, Delivery, Job, MessageId, PubMessage, SessionId, WaiterId};
use crate::Json;
use crate::Millis;

/// The kind of a message state change reported by `Event::Observed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedKind {
    /// Accepted by publish (or batch publish).
    Published,
    /// Leased to a consumer.
    Delivered,
    /// Acknowledged.
    Acked,
    /// Nacked by a consumer.
    Nacked,
    /// Will be ready again after `delay_ms` (or at once when 0).
    RetryScheduled,
    /// Its lease ran out.
    LeaseExpired,
    /// Moved to the DLQ (`reason` says why).
    DeadLettered,
    /// Its TTL passed.
    Expired,
    /// Moved from the DLQ back to its queue.
    Redriven,
    /// Removed by purge (`count` messages, no id).
    Purged,
    /// Cancelled: removed at once, or settled as cancelled when its delivery ended.
    Cancelled,
}

/// A message state change, for dashboards and the simulator's metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// What happened.
    pub kind: ObservedKind,
    /// The queue.
    pub queue: Arc<str>,
    /// The message (absent for `purged`).
    pub message_id: Option<MessageId>,
    /// When.
    pub at: Millis,
    /// The message's priority.
    pub priority: u8,
    /// Deliveries so far.
    pub attempts: u32,
    /// `delivered`: ready-to-delivery time; `retry_scheduled`: the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// `dead_lettered`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
    /// `purged`: how many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Output produced by the engine, drained by `poll_event` after every call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A parked waiter got messages.
    Delivered {
        /// The waiter.
        waiter_id: WaiterId,
        /// The leased messages.
        messages: Vec<Delivery>,
    },
    /// A parked waiter's wait ended with nothing (or its queue was deleted).
    WaitTimedOut {
        /// The waiter.
        waiter_id: WaiterId,
    },
    /// Messages leased to an attached session, one credit each.
    Pushed {
        /// The session.
        session_id: SessionId,
        /// The leased messages.
        messages: Vec<Delivery>,
    },
    /// The engine ended a session (its queue was deleted); nothing more is pushed to it.
    SessionEnded {
        /// The session.
        session_id: SessionId,
    },
    /// A pub/sub message pushed to a subscriber (one event per matched subscriber with credit).
    PubSub {
        /// The subscriber.
        subscriber_id: String,
        /// The message.
        message: PubMessage,
    },
    /// A message state change.
    Observed(Observed),
    /// A worker reported progress on a job (emitted when observation is on).
    Progress {
        /// The queue.
        queue: Arc<str>,
        /// The job.
        message_id: MessageId,
        /// What it reported.
        progress: Json,
        /// When.
        at: Millis,
    },
    /// A parked `WaitJob` is answered: the job finished (or its wait ended, and `job` is
    /// unfinished). A job that is gone (its queue deleted, or purged) ends the wait with
    /// `WaitTimedOut` instead.
    JobWaited {
        /// The waiter.
        waiter_id: WaiterId,
        /// The job as a lookup answers it now.
        job: Box<Job>,
    },
    /// A KV key's TTL passed and it was removed.
    KeyExpired {
        /// The key.
        key: String,
        /// When.
        at: Millis,
    },
}
