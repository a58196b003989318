//! The synchronous answers to commands, and the records they carry.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Headers, Job, JobState, LeaseToken, MessageId, ScheduleInfo, SessionId, WaiterId};
use crate::config::QueueConfig;
use crate::flows::{FlowAdded, FlowChild, FlowInfo};
use crate::{Json, Millis};

/// A leased message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The queue.
    pub queue: Arc<str>,
    /// The message id.
    pub message_id: MessageId,
    /// The body, when published as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Json>,
    /// The body, when published as bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Arc<[u8]>>,
    /// 0–9.
    pub priority: u8,
    /// Earlier deliveries (0 on the first).
    pub retry_count: u32,
    /// The message's retry limit.
    pub max_retries: u32,
    /// Headers as published.
    pub headers: Headers,
    /// The lease token an ack, nack or extend may carry.
    pub lease: LeaseToken,
    /// When the lease ends unless acked or extended.
    pub lease_deadline: Millis,
    /// Publish time.
    pub published_at: Millis,
    /// The message's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Arc<str>>,
    /// For a flow parent, published once its children finished: each child's outcome, in
    /// order (failed children left out under `on_child_failure: ignore`). `None` for any
    /// other message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<FlowChild>>,
}

/// Where a published message landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The new message's id.
    pub message_id: MessageId,
    /// 1-based place in delivery order at publish time; `None` for a delayed message.
    pub position: Option<u64>,
    /// The idempotency key was seen already: this is the first publish's answer, and nothing
    /// was added.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// A debounced publish replaced the message of this still-delayed job and restarted its
    /// delay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

/// What a nack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NackAction {
    /// Ready again at once.
    Requeued,
    /// Ready again after a retry delay.
    Delayed,
    /// Moved to the dead-letter queue (or dropped if the queue keeps none).
    DeadLettered,
    /// The job had been cancelled: it is settled as cancelled, never retried.
    Cancelled,
    /// Snoozed: ready again after the delay, without spending an attempt.
    Snoozed,
}

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Nacked with `requeue: false`.
    Rejected,
    /// Failed (nack or lease expiry) after its last allowed delivery.
    MaxRetriesExceeded,
    /// Its TTL passed before it was acked.
    Expired,
    /// Snoozed once more than the queue's `max_snoozes`.
    SnoozedOut,
    /// A flow parent under `on_child_failure: fail` whose child failed.
    ChildFailed,
}

impl DeadLetterReason {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::MaxRetriesExceeded => "max_retries_exceeded",
            Self::Expired => "expired",
            Self::SnoozedOut => "snoozed_out",
            Self::ChildFailed => "child_failed",
        }
    }
}

/// Statistics of one queue (DESIGN.md §3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Ready plus delayed.
    pub depth: u64,
    /// Deliverable now.
    pub ready: u64,
    /// Waiting for a delay or retry delay.
    pub delayed: u64,
    /// Flow parents waiting for their children (not in `depth`: they are not deliverable).
    #[serde(default)]
    pub waiting_children: u64,
    /// Leased and not yet acked.
    pub in_flight: u64,
    /// Entries in the DLQ.
    pub dead_letter_count: u64,
    /// Distinct consumer ids waiting, holding a lease, or seen in the last 30 s.
    pub consumers: u64,
    /// Long-poll waiters parked on this queue.
    pub waiters: u64,
    /// Streaming consumers attached to this queue.
    pub sessions: u64,
    /// Messages published.
    pub published_total: u64,
    /// Deliveries.
    pub consumed_total: u64,
    /// Acks.
    pub acked_total: u64,
    /// Nacks.
    pub nacked_total: u64,
    /// Leases that ran out.
    pub lease_expired_total: u64,
    /// Messages dead-lettered (whether kept or dropped).
    pub dead_lettered_total: u64,
    /// Messages whose TTL passed.
    pub expired_total: u64,
    /// Jobs cancelled.
    #[serde(default)]
    pub cancelled_total: u64,
    /// Finished jobs kept for lookup.
    #[serde(default)]
    pub kept_jobs: u64,
    /// Schedules of the queue.
    #[serde(default)]
    pub schedules: u64,
    /// DLQ entries dropped because the DLQ was full or disabled.
    pub dlq_dropped_total: u64,
    /// Mean ready-to-delivery time over the last 1,000 deliveries.
    pub avg_wait_time_ms: f64,
    /// Age of the oldest ready message, from when it entered the queue.
    pub oldest_ready_age_ms: u64,
    /// Message bytes the queue holds (bodies and headers, queued and dead-lettered), the
    /// figure its `max_bytes` bounds.
    #[serde(default)]
    pub bytes: u64,
    /// Message bytes held across all queues, the figure the memory budget bounds.
    #[serde(default)]
    pub server_held_bytes: u64,
    /// The memory budget (`Limits::max_held_bytes`).
    #[serde(default)]
    pub server_max_held_bytes: u64,
    /// The queue's settings.
    pub config: QueueConfig,
    /// Paused: it delivers nothing until resumed.
    #[serde(default)]
    pub paused: bool,
    /// Nothing is delivered before this time: a worker's `RateLimit`, or the queue's
    /// `rate_limit` window while it is full. `None` when not rate limited.
    #[serde(default)]
    pub rate_limited_until_ms: Option<Millis>,
    /// Groups holding messages (ready, delayed or in flight).
    #[serde(default)]
    pub groups: u64,
    /// Ready messages no consumer may take now: all of them while the queue is paused, rate
    /// limited or at `max_in_flight`, else those of groups at a limit.
    #[serde(default)]
    pub held_back: u64,
}

/// One group of a queue, as `Groups` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group.
    pub group: String,
    /// Its ready messages.
    pub ready: u64,
    /// Its leased messages.
    pub in_flight: u64,
    /// Its messages waiting for a delay, a retry delay or a snooze.
    pub delayed: u64,
}

/// One dead-lettered message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message id.
    pub message_id: MessageId,
    /// The body, when published as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Json>,
    /// The body, when published as bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Arc<[u8]>>,
    /// 0–9.
    pub priority: u8,
    /// Headers as published.
    pub headers: Headers,
    /// Why.
    pub reason: DeadLetterReason,
    /// Deliveries made.
    pub attempts: u32,
    /// The last nack's error text (or `lease expired`).
    pub last_error: Option<String>,
    /// The queue it came from.
    pub origin_queue: Arc<str>,
    /// Original publish time.
    pub published_at: Millis,
    /// When it was dead-lettered.
    pub dead_lettered_at: Millis,
}

/// A KV read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvValue {
    /// Whether a live key was found.
    pub found: bool,
    /// The value.
    pub value: Option<Json>,
    /// Remaining TTL; `None` for a key without one.
    pub ttl_ms: Option<u64>,
}

/// KV statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KvStats {
    /// Keys held (some may have expired and await removal).
    pub total_keys: u64,
    /// Bytes of keys and values.
    pub total_memory_bytes: u64,
    /// Reads.
    pub gets: u64,
    /// Writes.
    pub sets: u64,
    /// Deletes.
    pub dels: u64,
    /// Reads that found a live key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Keys removed by TTL.
    pub expired: u64,
}

/// A pub/sub message as delivered to a subscriber.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PubMessage {
    /// Its id.
    pub message_id: MessageId,
    /// The topic published to.
    pub topic: Arc<str>,
    /// Any JSON value.
    pub message: Json,
    /// String headers.
    pub headers: Headers,
    /// Publish time.
    pub published_at: Millis,
}

/// Pub/sub statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PubsubStats {
    /// Subscribers registered.
    pub subscribers: u64,
    /// Patterns registered across subscribers.
    pub subscriptions: u64,
    /// Of those, patterns with `*` or `#`.
    pub wildcard_subscriptions: u64,
    /// Distinct exact (wildcard-free) topics subscribed to.
    pub topics: Vec<String>,
    /// Messages published.
    pub messages_published: u64,
    /// Deliveries to subscribers (pushed or polled).
    pub messages_delivered: u64,
    /// Messages dropped from full subscriber buffers.
    pub messages_dropped: u64,
}

/// The synchronous answer to a `Command`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// `CreateQueue`/`ConfigureQueue`: whether a new queue was made.
    QueueCreated {
        /// Queue name.
        queue: String,
        /// False if it existed.
        created: bool,
    },
    /// `DeleteQueue`.
    QueueDeleted {
        /// False if there was no such queue.
        deleted: bool,
    },
    /// `ListQueues`.
    Queues {
        /// Sorted names.
        queues: Vec<String>,
    },
    /// `Publish`.
    Published(Published),
    /// `PublishBatch`, in order.
    PublishedBatch {
        /// One per message.
        messages: Vec<Published>,
    },
    /// `Consume` that returns at once (possibly with no messages).
    Messages {
        /// Leased messages.
        messages: Vec<Delivery>,
    },
    /// `Consume` parked: answered later by `Event::Delivered` or `Event::WaitTimedOut`.
    Waiting {
        /// The waiter.
        waiter_id: WaiterId,
    },
    /// `CancelWait`.
    WaitCancelled {
        /// False if the waiter was already answered.
        cancelled: bool,
    },
    /// `Attach`: pushes follow as `Event::Pushed`.
    Attached {
        /// The session.
        session_id: SessionId,
        /// Its consumer id.
        consumer_id: String,
    },
    /// `SessionCredit`.
    SessionCredited {
        /// Credit left after pushing what was ready.
        credit: u32,
    },
    /// `Detach`.
    Detached {
        /// Messages given back to the queue.
        returned: u64,
    },
    /// `GiveBack`.
    GivenBack {
        /// Deliveries given back (the others had ended already).
        returned: u64,
    },
    /// `DropConsumers`.
    ConsumersDropped {
        /// Waiters withdrawn.
        waiters: u64,
        /// Sessions detached.
        sessions: u64,
    },
    /// `Ack`.
    Acked,
    /// `Nack`.
    Nacked {
        /// What happened to the message.
        action: NackAction,
    },
    /// `Extend`.
    Extended {
        /// The new lease deadline.
        lease_deadline: Millis,
        /// The job was cancelled meanwhile: stop working on it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cancelled: bool,
    },
    /// `GetJob`, and `WaitJob` answered at once.
    Job(Box<Job>),
    /// `Progress`.
    Progressed {
        /// The job was cancelled meanwhile: stop working on it.
        cancelled: bool,
        /// The lease deadline (moved when `extend_ms` was given).
        lease_deadline: Millis,
    },
    /// `Cancel`.
    Cancelled {
        /// `cancelled`, or `in_flight` for a job marked to settle as cancelled when its
        /// delivery ends.
        state: JobState,
    },
    /// `PutSchedule`.
    ScheduleSet {
        /// The schedule.
        schedule_id: String,
        /// Its next run; `None` if it will never run.
        next_run_at: Option<Millis>,
        /// False when it replaced one with the same id.
        created: bool,
    },
    /// `ListSchedules`.
    Schedules {
        /// Sorted by id.
        schedules: Vec<ScheduleInfo>,
    },
    /// `DeleteSchedule`.
    ScheduleDeleted {
        /// False if there was no such schedule.
        deleted: bool,
    },
    /// `Tick`.
    Ticked,
    /// `Resume`.
    Resumed {
        /// Schedules that missed runs and make one catch-up run now.
        caught_up: u64,
    },
    /// `AddFlow`.
    FlowAdded(Box<FlowAdded>),
    /// `GetFlow`.
    Flow(Box<FlowInfo>),
    /// `Stats`.
    Stats(Box<QueueStats>),
    /// `PauseQueue`/`ResumeQueue`.
    QueuePaused {
        /// Whether the queue is paused now.
        paused: bool,
    },
    /// `RateLimit`.
    RateLimited {
        /// Nothing is delivered before this time.
        until: Millis,
    },
    /// `Groups`.
    Groups {
        /// Largest first (ready, delayed and in flight together), then by name.
        groups: Vec<GroupInfo>,
    },
    /// `DlqList`.
    DeadLetters {
        /// Entries in the DLQ.
        total: u64,
        /// The page.
        messages: Vec<DeadLetter>,
    },
    /// `DlqRetry`.
    Redriven {
        /// Messages moved back.
        retried: u64,
    },
    /// `Purge`/`DlqPurge`.
    Purged {
        /// Messages removed.
        purged: u64,
    },
    /// `KvSet`/`KvMset`.
    KvOk,
    /// `KvGet`.
    KvValue(KvValue),
    /// `KvDel`.
    KvDeleted {
        /// False if there was no live key.
        deleted: bool,
    },
    /// `KvExists`.
    KvExists {
        /// Whether a live key exists.
        exists: bool,
    },
    /// `KvExpire`/`KvPersist`.
    KvUpdated {
        /// False if there was no live key (or, for persist, no TTL).
        updated: bool,
    },
    /// `KvTtl`.
    KvTtl {
        /// Remaining TTL; `None` for a key without one.
        ttl_ms: Option<u64>,
    },
    /// `KvIncr`.
    KvInt {
        /// The new value.
        value: i64,
    },
    /// `KvKeys`.
    KvKeys {
        /// Sorted live keys.
        keys: Vec<String>,
    },
    /// `KvMget`, in the order asked.
    KvValues {
        /// `None` for a missing key.
        values: Vec<Option<Json>>,
    },
    /// `KvStats`.
    KvStats(KvStats),
    /// `Subscribe`.
    Subscribed {
        /// The subscriber.
        subscriber_id: String,
        /// All its patterns now.
        patterns: Vec<String>,
    },
    /// `Unsubscribe`.
    Unsubscribed {
        /// Patterns removed.
        removed: u64,
    },
    /// `PubsubPublish`.
    PubsubPublished {
        /// The message's id.
        message_id: MessageId,
        /// The topic.
        topic: String,
        /// Subscribers with at least one matching pattern.
        subscribers_matched: u64,
    },
    /// `PubsubPoll`.
    PubsubMessages {
        /// Buffered messages, oldest first.
        messages: Vec<PubMessage>,
        /// Messages dropped from this subscriber's buffer so far.
        dropped: u64,
    },
    /// `PubsubCredit`.
    PubsubCredited {
        /// Credit left after pushing buffered messages.
        credit: u32,
    },
    /// `PubsubStats`.
    PubsubStats(PubsubStats),
}
