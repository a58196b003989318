//! Bodies of the `/queue/` routes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Headers, present};

/// One message to publish (`POST /queue/{name}/publish`, an entry of `publish_batch`, the
/// queue WebSocket's `publish` frame). Exactly one of `message` and `payload` is given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The body as any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    /// The body as bytes (a JSON array of 0–255 integers), as Synap's SDKs send it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<u8>>,
    /// 0–9; the queue's `default_priority` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// String headers (none when absent).
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Seconds before the message becomes deliverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<f64>,
    /// Seconds the message may live unacked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<f64>,
    /// Overrides the queue's retry limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// A retry of a publish with the same key (within the server's idempotency window, five
    /// minutes by default) answers with the first publish's id and position and adds nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How long the idempotency key holds: `window` (the default) or `until_finished` (while
    /// the job it names is unfinished, whatever the window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup: Option<crate::DedupMode>,
    /// With an idempotency key and a `delay`: a publish whose key names a job still delayed
    /// replaces that job's message and restarts its delay (the trailing call wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debounce: Option<bool>,
    /// The message's group, 1–255 bytes without control characters (a user, a tenant, a
    /// video): the queue's group settings apply per group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `POST /queue/{name}/publish_batch`: all messages are accepted or none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBatchRequest {
    /// The messages, in order.
    #[serde(deserialize_with = "crate::strict::objects")]
    pub messages: Vec<PublishRequest>,
}

/// Where a published message landed: `{message_id, position}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The message id; the same across redeliveries.
    pub message_id: String,
    /// 1-based place in delivery order at publish time; `null` for a delayed message.
    #[serde(deserialize_with = "present")]
    pub position: Option<u64>,
    /// `true` when the idempotency key was seen already and nothing was added (absent
    /// otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// `true` when a debounced publish replaced the message of a still-delayed job (absent
    /// otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

/// `{messages: [{message_id, position}]}` of a batch publish, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBatch {
    /// One result per message.
    pub messages: Vec<Published>,
}

/// Consume options: the body of `POST /queue/{name}/consume`, or the query of
/// `GET /queue/{name}/consume/{consumer_id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeRequest {
    /// Long-poll seconds (0 or absent = answer at once; capped at `max_wait_secs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Lease seconds; the queue's ack deadline when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_deadline: Option<f64>,
    /// 1..=100 (1 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u32>,
    /// The consumer, for `prefetch` and the `consumers` stat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
}

/// A leased message as REST and WebSocket consumers receive it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message id.
    pub message_id: String,
    /// The queue.
    pub queue: String,
    /// The body as JSON: the bytes parsed as JSON for a byte body, `null` when they are not.
    pub message: Value,
    /// The body as bytes, for a message published as bytes; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<u8>>,
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
    /// When the lease ends unless acked or extended, Unix ms.
    pub lease_deadline: u64,
    /// Publish time, Unix ms.
    pub published_at: u64,
    /// The message's group; absent for a message published without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A flow parent's children, once they finished (`POST /flows`): each child's message
    /// id, queue, state and result; absent for any other message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<crate::FlowChild>>,
}

/// `{messages: [delivery]}`: the answer of a consume, empty when the wait ends with nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deliveries {
    /// The leased messages.
    pub messages: Vec<Delivery>,
}

/// `POST /queue/{name}/ack`, and one entry of `ack_batch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The message.
    pub message_id: String,
    /// The lease being settled; the current one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// The job's result (any JSON), kept with the completed job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// `POST /queue/{name}/ack_batch`: each ack succeeds or fails on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBatchRequest {
    /// The acks.
    #[serde(deserialize_with = "crate::strict::objects")]
    pub acks: Vec<AckRequest>,
}

/// `{acked, failed}` of a batch ack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckBatchResult {
    /// Messages acknowledged.
    pub acked: u64,
    /// Acks refused, with their machine code.
    pub failed: Vec<AckFailure>,
}

/// One refused ack of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckFailure {
    /// The message id as sent.
    pub message_id: String,
    /// Why, e.g. `lease_mismatch`, `message_not_found` or `invalid_argument`.
    pub code: String,
}

/// `POST /queue/{name}/nack`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NackRequest {
    /// The message.
    pub message_id: String,
    /// Retry it (true when absent); `false` dead-letters it at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requeue: Option<bool>,
    /// Retry delay in seconds, overriding the queue's policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<f64>,
    /// Why it failed; kept with the message and shown in the DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The lease being settled; the current one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// Snooze: the message comes back after `delay` (at once when absent) without spending
    /// an attempt; past the queue's `max_snoozes` it is dead-lettered (`snoozed_out`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snooze: Option<bool>,
}

/// What a nack did to the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NackAction {
    /// Ready again at once.
    Requeued,
    /// Ready again after a retry delay.
    Delayed,
    /// Moved to the dead-letter queue (or dropped if the queue keeps none).
    DeadLettered,
    /// The job had been cancelled: settled as cancelled, never retried.
    Cancelled,
    /// Snoozed: ready again after the delay, without spending an attempt.
    Snoozed,
}

/// `{success: true, action}` of a nack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nacked {
    /// Always true in a 200 answer.
    pub success: bool,
    /// What happened to the message.
    pub action: NackAction,
}

/// `POST /queue/{name}/extend`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// The message.
    pub message_id: String,
    /// The new lease length from now, seconds.
    pub ack_deadline: f64,
    /// The lease being extended; the current one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

/// `{success: true, lease_deadline}` of an extend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extended {
    /// Always true in a 200 answer.
    pub success: bool,
    /// The new end of the lease, Unix ms.
    pub lease_deadline: u64,
}

/// `{success: true, queue, created}` of `POST /queue/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCreated {
    /// Always true in a 200 answer.
    pub success: bool,
    /// The queue name.
    pub queue: String,
    /// False if the queue existed.
    pub created: bool,
}

/// `{queues}` of `GET /queue/list`, sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    /// Queue names.
    pub queues: Vec<String>,
}

/// The query of `GET /queue/{name}/dlq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqQuery {
    /// Entries to skip (0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Page size, 1–1000 (100 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Nacked with `requeue: false`.
    Rejected,
    /// Failed after its last allowed delivery.
    MaxRetriesExceeded,
    /// Its TTL passed before it was acked.
    Expired,
    /// Snoozed once more than the queue's `max_snoozes`.
    SnoozedOut,
    /// A flow parent whose child failed under `on_child_failure: fail`.
    ChildFailed,
}

impl DeadLetterReason {
    /// The reason as it is spelled on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::MaxRetriesExceeded => "max_retries_exceeded",
            Self::Expired => "expired",
            Self::SnoozedOut => "snoozed_out",
            Self::ChildFailed => "child_failed",
        }
    }
}

/// One dead-lettered message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message id.
    pub message_id: String,
    /// The body as JSON (`null` for bytes that are not JSON).
    pub message: Value,
    /// The body as bytes, for a message published as bytes; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<u8>>,
    /// 0–9.
    pub priority: u8,
    /// Headers as published.
    pub headers: Headers,
    /// Why.
    pub reason: DeadLetterReason,
    /// Deliveries made.
    pub attempts: u32,
    /// The last nack's error text (or a note that the lease expired); `null` when none.
    #[serde(deserialize_with = "present")]
    pub last_error: Option<String>,
    /// The queue it was dead-lettered from.
    pub origin_queue: String,
    /// Publish time, Unix ms.
    pub published_at: u64,
    /// When it was dead-lettered, Unix ms.
    pub dead_lettered_at: u64,
}

/// `{total, messages}`: a page of a dead-letter queue, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqPage {
    /// Entries in the DLQ in all.
    pub total: u64,
    /// This page.
    pub messages: Vec<DeadLetter>,
}

/// `POST /queue/{name}/dlq/retry`: which entries to redrive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqRetryRequest {
    /// The entries; all of them when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_ids: Option<Vec<String>>,
}

/// `{retried}` of a DLQ redrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    /// Entries moved back to the queue.
    pub retried: u64,
}
