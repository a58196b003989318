//! The one vocabulary every host speaks: `Command` in, `Reply` back, `Event`s drained after.
//!
//! Serialized with serde in snake_case, internally tagged by `"type"`; the same shapes serve the
//! HTTP command envelope, the command log, the wasm API and fuzz inputs. Intervals are `_ms`
//! integers; the engine adds `now` to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::QueueConfig;
pub use crate::ids::{SessionId, WaiterId};
use crate::{Json, Millis};

/// A message id users see: a UUID built from the engine's seeded PRNG. It stays the same across
/// redeliveries.
pub type MessageId = Uuid;

/// String headers carried with a message.
pub type Headers = BTreeMap<String, String>;

/// One message to publish: a JSON `message` or a byte `payload` (exactly one of the two).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishMessage {
    /// The body as any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Json>,
    /// The body as raw bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Arc<[u8]>>,
    /// 0–9, higher first; the queue's `default_priority` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// String headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: Headers,
    /// Not deliverable before `now + delay_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Dead-lettered (reason `expired`) if not acked by `now + ttl_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Overrides the queue's `max_retries` for this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// Every input the engine accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Creates a queue if it does not exist (an existing queue keeps its config and messages).
    CreateQueue {
        /// Queue name.
        queue: String,
        /// Settings; the engine's default queue config when absent.
        #[serde(default)]
        config: Option<QueueConfig>,
    },
    /// Sets the config of a queue, creating it if needed. Messages already queued keep their
    /// per-message settings.
    ConfigureQueue {
        /// Queue name.
        queue: String,
        /// New settings.
        config: QueueConfig,
    },
    /// Removes a queue with its messages and DLQ; parked waiters time out.
    DeleteQueue {
        /// Queue name.
        queue: String,
    },
    /// Names of all queues, sorted.
    ListQueues,
    /// Publishes one message.
    Publish {
        /// Queue name.
        queue: String,
        /// The message.
        #[serde(flatten)]
        message: PublishMessage,
    },
    /// Publishes several messages atomically: all are accepted or none.
    PublishBatch {
        /// Queue name.
        queue: String,
        /// The messages, in order.
        messages: Vec<PublishMessage>,
    },
    /// Leases up to `max_messages` ready messages, or parks until one is ready or `wait_ms` ends.
    Consume {
        /// Queue name.
        queue: String,
        /// Long-poll wait; 0 returns at once (capped at `limits.max_wait_ms`).
        #[serde(default)]
        wait_ms: u64,
        /// Lease length (ack deadline); the queue's `ack_deadline_ms` when absent.
        #[serde(default)]
        lease_ms: Option<u64>,
        /// 1..=100.
        #[serde(default = "one")]
        max_messages: u32,
        /// Identifies the consumer for `prefetch` and the `consumers` stat.
        #[serde(default)]
        consumer_id: Option<String>,
    },
    /// Withdraws a parked waiter (its client hung up).
    CancelWait {
        /// The waiter.
        waiter_id: WaiterId,
    },
    /// Attaches a streaming consumer to a queue: while it has credit, ready messages are
    /// leased to it and pushed as `Event::Pushed`; each delivery's end (ack, nack, lease
    /// expiry) returns its credit.
    Attach {
        /// Queue name.
        queue: String,
        /// Identifies the consumer for `prefetch` and the `consumers` stat; `session-<id>` when
        /// absent.
        #[serde(default)]
        consumer_id: Option<String>,
        /// Deliveries that may be pushed before any ends (`limits.max_session_credit` at most).
        credit: u32,
        /// Lease length of each delivery; the queue's `ack_deadline_ms` when absent.
        #[serde(default)]
        lease_ms: Option<u64>,
    },
    /// Grants an attached session more credit.
    SessionCredit {
        /// The session.
        session_id: SessionId,
        /// Additional deliveries it may be pushed.
        credit: u32,
    },
    /// Detaches a session. With `give_back` (the default) the messages it holds are ready
    /// again at once, each counted as a failed delivery attempt; without, their leases run to
    /// their deadlines.
    Detach {
        /// The session.
        session_id: SessionId,
        /// Give its messages back now.
        #[serde(default = "yes")]
        give_back: bool,
    },
    /// Gives back deliveries whose consumer is gone (a long-poll answer nobody read): each is
    /// ready again at once, counted as a failed attempt. Deliveries that already ended are
    /// skipped.
    GiveBack {
        /// Queue name.
        queue: String,
        /// The deliveries.
        leases: Vec<LeaseRef>,
    },
    /// Withdraws every parked waiter and detaches every session without giving their messages
    /// back: the host restarted, so their clients are gone, and their leases run to their
    /// deadlines.
    DropConsumers,
    /// Acknowledges a leased message: it is done.
    Ack {
        /// Queue name.
        queue: String,
        /// The message.
        message_id: MessageId,
        /// The lease token of the delivery being acked; any current lease when absent.
        #[serde(default)]
        lease: Option<u64>,
    },
    /// Rejects a leased message: retry it (`requeue`) or dead-letter it.
    Nack {
        /// Queue name.
        queue: String,
        /// The message.
        message_id: MessageId,
        /// Retry (subject to `max_retries`) rather than dead-letter at once.
        #[serde(default = "yes")]
        requeue: bool,
        /// Retry delay overriding the queue's policy.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// Error text kept with the message (and in the DLQ).
        #[serde(default)]
        error: Option<String>,
        /// The lease token of the delivery being nacked.
        #[serde(default)]
        lease: Option<u64>,
    },
    /// Extends a lease: the new deadline is `now + lease_ms`.
    Extend {
        /// Queue name.
        queue: String,
        /// The message.
        message_id: MessageId,
        /// New lease length from now.
        lease_ms: u64,
        /// The lease token of the delivery being extended.
        #[serde(default)]
        lease: Option<u64>,
    },
    /// Queue statistics.
    Stats {
        /// Queue name.
        queue: String,
    },
    /// A page of the dead-letter queue, oldest first.
    DlqList {
        /// Queue name.
        queue: String,
        /// Entries to skip.
        #[serde(default)]
        offset: u64,
        /// Page size (1..=1000, default 100).
        #[serde(default = "hundred")]
        limit: u64,
    },
    /// Moves dead-lettered messages back to the queue with attempts reset.
    DlqRetry {
        /// Queue name.
        queue: String,
        /// Which entries; all when absent.
        #[serde(default)]
        message_ids: Option<Vec<MessageId>>,
    },
    /// Empties the dead-letter queue.
    DlqPurge {
        /// Queue name.
        queue: String,
    },
    /// Removes ready and delayed messages (not in-flight ones).
    Purge {
        /// Queue name.
        queue: String,
    },
    /// Sets a key, replacing any value and TTL.
    KvSet {
        /// The key.
        key: String,
        /// Any JSON value.
        value: Json,
        /// Expires after this long; never when absent.
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    /// Reads a key.
    KvGet {
        /// The key.
        key: String,
    },
    /// Deletes a key.
    KvDel {
        /// The key.
        key: String,
    },
    /// Whether a live key exists.
    KvExists {
        /// The key.
        key: String,
    },
    /// Sets a live key's TTL.
    KvExpire {
        /// The key.
        key: String,
        /// Expires after this long.
        ttl_ms: u64,
    },
    /// Removes a live key's TTL.
    KvPersist {
        /// The key.
        key: String,
    },
    /// Remaining TTL of a live key.
    KvTtl {
        /// The key.
        key: String,
    },
    /// Adds `by` to an integer value (a missing key counts as 0); keeps the TTL.
    KvIncr {
        /// The key.
        key: String,
        /// Amount to add (may be negative).
        #[serde(default = "one_i64")]
        by: i64,
    },
    /// Live keys starting with `prefix`, sorted, at most `limit`.
    KvKeys {
        /// Key prefix; all keys when empty.
        #[serde(default)]
        prefix: String,
        /// Most keys returned (default and cap 10,000).
        #[serde(default)]
        limit: Option<u64>,
    },
    /// Reads several keys.
    KvMget {
        /// The keys.
        keys: Vec<String>,
    },
    /// Sets several keys atomically (all are validated first).
    KvMset {
        /// The entries.
        entries: Vec<KvEntry>,
    },
    /// KV statistics.
    KvStats,
    /// Registers (or extends) a subscriber's patterns.
    Subscribe {
        /// The subscriber; a fresh UUID when absent.
        #[serde(default)]
        subscriber_id: Option<String>,
        /// Topic patterns: `.`-separated, `*` = one segment, trailing `#` = zero or more.
        patterns: Vec<String>,
        /// Messages the engine may push as events right away; the rest wait in the bounded
        /// buffer until `PubsubCredit` or `PubsubPoll`.
        #[serde(default)]
        credit: u32,
        /// For a subscriber with no connection (one that polls): it is removed after this long
        /// without a `Subscribe`, `PubsubPoll` or `PubsubCredit`. Never when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_ms: Option<u64>,
    },
    /// Removes some patterns (all, and the subscriber itself, when absent).
    Unsubscribe {
        /// The subscriber.
        subscriber_id: String,
        /// Patterns to remove.
        #[serde(default)]
        patterns: Option<Vec<String>>,
    },
    /// Publishes to a topic.
    PubsubPublish {
        /// The topic (no wildcards).
        topic: String,
        /// Any JSON value.
        message: Json,
        /// String headers.
        #[serde(default)]
        headers: Headers,
    },
    /// Takes up to `max` buffered messages of a subscriber.
    PubsubPoll {
        /// The subscriber.
        subscriber_id: String,
        /// Most messages returned (1..=1000).
        #[serde(default = "hundred_u32")]
        max: u32,
    },
    /// Grants a subscriber credit: buffered messages up to it are pushed as events now, later
    /// ones as they are published.
    PubsubCredit {
        /// The subscriber.
        subscriber_id: String,
        /// Additional messages the host can take.
        credit: u32,
    },
    /// Pub/sub statistics.
    PubsubStats,
}

fn one() -> u32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn yes() -> bool {
    true
}
fn hundred() -> u64 {
    100
}
fn hundred_u32() -> u32 {
    100
}

impl Command {
    /// True for commands that change state (and so belong in a command log). Reads such as
    /// `Stats` or `KvGet` are still replayable, but hosts may skip logging them.
    #[must_use]
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            Self::ListQueues
                | Self::Stats { .. }
                | Self::DlqList { .. }
                | Self::KvGet { .. }
                | Self::KvExists { .. }
                | Self::KvTtl { .. }
                | Self::KvKeys { .. }
                | Self::KvMget { .. }
                | Self::KvStats
                | Self::PubsubStats
        )
    }
}

/// One delivery, named by message id and lease token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRef {
    /// The message.
    pub message_id: MessageId,
    /// The lease token of the delivery.
    pub lease: u64,
}

/// One KV entry of `KvMset`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// Any JSON value.
    pub value: Json,
    /// Expires after this long; never when absent.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

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
    pub lease: u64,
    /// When the lease ends unless acked or extended.
    pub lease_deadline: Millis,
    /// Publish time.
    pub published_at: Millis,
}

/// Where a published message landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The new message's id.
    pub message_id: MessageId,
    /// 1-based place in delivery order at publish time; `None` for a delayed message.
    pub position: Option<u64>,
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
    /// DLQ entries dropped because the DLQ was full or disabled.
    pub dlq_dropped_total: u64,
    /// Mean ready-to-delivery time over the last 1,000 deliveries.
    pub avg_wait_time_ms: f64,
    /// Age of the oldest ready message, from when it entered the queue.
    pub oldest_ready_age_ms: u64,
    /// The queue's settings.
    pub config: QueueConfig,
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
    },
    /// `Stats`.
    Stats(Box<QueueStats>),
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
    /// A KV key's TTL passed and it was removed.
    KeyExpired {
        /// The key.
        key: String,
        /// When.
        at: Millis,
    },
}
