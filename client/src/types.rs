//! Request options and response types. Durations are `std::time::Duration` in the API and
//! seconds (fractions allowed) on the wire, as DESIGN.md §5 specifies. Every body goes out and
//! comes back through the `synap-wire` types the server uses, so a field renamed on either
//! side fails to decode instead of reading as a default; several of those types are re-exported
//! here as they are.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use synap_wire as wire;

use crate::error::{Result, SynapError};

pub use synap_wire::{
    AckBatchResult, AckFailure, Cancelled, DeadLetterReason, DedupMode, Flow, FlowChild,
    FlowCreated, FlowJob, FlowJobState, FlowNode, FlowRequest, GroupInfo, Job, JobState, Keep,
    NackAction, OnChildFailure, QueueStats, Rate, RetryPosition, Schedule, ScheduleSet,
};

/// String headers carried with a message.
pub type Headers = wire::Headers;

/// Where a published message landed: its id, and its 1-based place in delivery order at
/// publish time (`None` for a delayed message).
pub type PublishResult = wire::Published;

/// A duration as (possibly fractional) seconds, the wire's unit.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An optional duration as seconds.
pub(crate) fn opt_secs(d: Option<Duration>) -> Option<f64> {
    d.map(secs)
}

/// Options of a publish. `Default` gives the queue's defaults for everything.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    /// 0–9, higher delivered first; the queue's `default_priority` when `None`.
    pub priority: Option<u8>,
    /// String headers delivered with the message.
    pub headers: Headers,
    /// Not deliverable before this much time has passed.
    pub delay: Option<Duration>,
    /// Dead-lettered (reason `expired`) if not acked within this time of publishing.
    pub ttl: Option<Duration>,
    /// Overrides the queue's `max_retries` for this message.
    pub max_retries: Option<u32>,
    /// A retry with the same key within the server's idempotency window (five minutes by
    /// default) answers with the first publish's result (`duplicate: true`) and adds nothing:
    /// retry a publish whose reply was lost with the key it was first sent with.
    pub idempotency_key: Option<String>,
    /// How long `idempotency_key` holds: [`DedupMode::Window`] (the server's default) or
    /// [`DedupMode::UntilFinished`] (while the job it names is unfinished, whatever the window).
    pub dedup: Option<DedupMode>,
    /// With `idempotency_key` and `delay`: a publish whose key names a job that is still delayed
    /// replaces that job's message and restarts its delay (the trailing call wins; the answer
    /// says `replaced: true`).
    pub debounce: bool,
    /// The message's group (a user, a tenant, a video): the queue's group settings
    /// (`group_concurrency`, `ordered_groups`, `fair_groups`, `group_rate_limit`) apply per group.
    pub group: Option<String>,
}

/// The options alone serialize as the wire request without a body.
impl Serialize for PublishOptions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.request(None).serialize(s)
    }
}

impl PublishOptions {
    /// The wire request publishing `message` with these options.
    pub(crate) fn request(&self, message: Option<serde_json::Value>) -> wire::PublishRequest {
        wire::PublishRequest {
            message,
            payload: None,
            priority: self.priority,
            headers: self.headers.clone(),
            delay: opt_secs(self.delay),
            ttl: opt_secs(self.ttl),
            max_retries: self.max_retries,
            idempotency_key: self.idempotency_key.clone(),
            dedup: self.dedup,
            debounce: self.debounce.then_some(true),
            group: self.group.clone(),
        }
    }

    /// Options with just a priority.
    #[must_use]
    pub fn priority(priority: u8) -> Self {
        Self {
            priority: Some(priority),
            ..Self::default()
        }
    }
}

/// Options of a consume. `Default` returns at once with the queue's ack deadline.
#[derive(Clone, Debug, Default)]
pub struct ConsumeOptions {
    /// Long-poll wait when nothing is ready (0 or `None` returns at once; the server caps it).
    pub timeout: Option<Duration>,
    /// Lease length: unacked by then, the message is retried. The queue default when `None`.
    pub ack_deadline: Option<Duration>,
    /// Identifies the worker for `prefetch` and the `consumers` stat.
    pub consumer_id: Option<String>,
}

impl ConsumeOptions {
    /// The wire request leasing up to `max_messages`.
    pub(crate) fn request(&self, max_messages: u32) -> wire::ConsumeRequest {
        wire::ConsumeRequest {
            timeout: opt_secs(self.timeout),
            ack_deadline: opt_secs(self.ack_deadline),
            max_messages: Some(max_messages),
            consumer_id: self.consumer_id.clone(),
        }
    }
}

/// A leased message with its body decoded as `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueMessage<T> {
    /// The message id (the same on every delivery of this message).
    pub id: String,
    /// The body.
    pub body: T,
    /// 0–9.
    pub priority: u8,
    /// Earlier deliveries of this message (0 on the first).
    pub retry_count: u32,
    /// Headers as published.
    pub headers: Headers,
    /// The lease token of this delivery; pass it to ack/nack/extend so a late answer after a
    /// redelivery is refused instead of touching the new delivery.
    pub lease: Option<u64>,
    /// Publish time, Unix milliseconds.
    pub published_at: u64,
    /// The message's group ([`PublishOptions::group`]); `None` for a message published
    /// without one.
    pub group: Option<String>,
    /// A flow parent's children ([`SynapClient::flow_add`](crate::SynapClient::flow_add)),
    /// all finished, in the order given: each one's `message_id`, `queue`, `state`, `result`
    /// (what its ack carried) and `reason` (why it was dead-lettered). Under
    /// `on_child_failure: ignore` the failed ones are left out. `None` for any other message.
    pub children: Option<Vec<FlowChild>>,
}

/// A delivery as the server sends it, before the body is decoded.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawDelivery(pub(crate) wire::Delivery);

impl RawDelivery {
    /// Decodes the body. A message published as bytes (e.g. by Synap's SDKs) is read as JSON
    /// text, so JSON-encoded byte payloads interoperate.
    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<QueueMessage<T>> {
        let d = self.0;
        let body = match d.payload {
            Some(bytes) => serde_json::from_slice(&bytes),
            None => serde_json::from_value(d.message),
        }
        .map_err(|e| SynapError::Decode(format!("body of message {}: {e}", d.message_id)))?;
        Ok(QueueMessage {
            id: d.message_id,
            body,
            priority: d.priority,
            retry_count: d.retry_count,
            headers: d.headers,
            lease: Some(d.lease),
            published_at: d.published_at,
            group: d.group,
            children: d.children,
        })
    }
}

/// How to reject a message. It serializes as the fields of a nack without the message id.
#[derive(Clone, Debug, Serialize)]
pub struct NackOptions {
    /// Retry it (subject to `max_retries`); `false` dead-letters it at once.
    pub requeue: bool,
    /// Retry delay overriding the queue's policy.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_secs"
    )]
    pub delay: Option<Duration>,
    /// Why it failed; kept with the message and shown in the DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Lease token of the delivery being rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// Snooze instead of failing: the message comes back after `delay` (at once when `None`)
    /// without spending an attempt (the answer is [`NackAction::Snoozed`]). Snoozes are
    /// counted per message; past the queue's `max_snoozes` it is dead-lettered
    /// (`snoozed_out`). Refused with `requeue: false`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub snooze: bool,
}

// serde's `serialize_with` hands over a `&Option<_>`, so the signature cannot take `Option<&_>`.
#[expect(
    clippy::ref_option,
    reason = "signature imposed by serde's serialize_with"
)]
fn ser_opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    opt_secs(*d).serialize(s)
}

impl NackOptions {
    /// The wire request rejecting `message_id` with these options.
    pub(crate) fn request(&self, message_id: &str) -> wire::NackRequest {
        wire::NackRequest {
            message_id: message_id.to_owned(),
            requeue: Some(self.requeue),
            delay: opt_secs(self.delay),
            error: self.error.clone(),
            lease: self.lease,
            snooze: self.snooze.then_some(true),
        }
    }
}

impl Default for NackOptions {
    fn default() -> Self {
        Self {
            requeue: true,
            delay: None,
            error: None,
            lease: None,
            snooze: false,
        }
    }
}

impl NackOptions {
    /// A retryable failure with an error text.
    #[must_use]
    pub fn retry_with_error(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }

    /// A snooze: the message comes back after `delay` (`Duration::ZERO`: at once) without
    /// spending an attempt. Set `lease` too, so a late snooze after a redelivery is refused.
    #[must_use]
    pub fn snooze(delay: Duration) -> Self {
        Self {
            delay: Some(delay),
            snooze: true,
            ..Self::default()
        }
    }
}

/// Exponential backoff between retries: the i-th retry waits `initial * multiplier^(i-1)`,
/// capped at `max`, shortened by up to `jitter` (a fraction).
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Growth factor per retry (≥ 1).
    pub multiplier: f64,
    /// Upper bound on any delay.
    pub max: Duration,
    /// Fraction in `[0, 1]` by which a delay may be randomly shortened.
    pub jitter: f64,
}

/// Settings of a queue; `None` fields take the server's defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueConfig {
    /// Retries after the first delivery (`N` allows `N + 1` deliveries). Server default 3.
    pub max_retries: Option<u32>,
    /// Default lease length of a consume. Server default 30 s.
    pub ack_deadline: Option<Duration>,
    /// Fixed retry delays: the i-th retry waits the i-th value, the last one repeats.
    pub retry_delays: Vec<Duration>,
    /// Exponential backoff, used when `retry_delays` is empty.
    pub backoff: Option<Backoff>,
    /// Ready plus delayed messages the queue may hold.
    pub max_depth: Option<u64>,
    /// Time-to-live of every message from publish.
    pub message_ttl: Option<Duration>,
    /// Unacked messages one consumer id may hold (0 = unlimited).
    pub prefetch: Option<u32>,
    /// Keep dead-lettered messages in the DLQ (on by default).
    pub dead_letter: Option<bool>,
    /// DLQ capacity.
    pub dlq_max: Option<u64>,
    /// Priority of messages published without one.
    pub default_priority: Option<u8>,
    /// Where a retried message stands when it is ready again. Server default: the back of
    /// its priority.
    pub retry_position: Option<RetryPosition>,
    /// Completed jobs kept for lookup with their results ([`Keep`]: count and age). Server
    /// default 1,000 for an hour.
    pub keep_completed: Option<Keep>,
    /// Cancelled jobs kept for lookup. Server default 1,000 for an hour.
    pub keep_cancelled: Option<Keep>,
    /// Largest `result` an ack may carry, in bytes of compact JSON. Server default 64 KiB.
    pub max_result_bytes: Option<u64>,
    /// Most leased messages of the queue across all its consumers (at least 1); no limit
    /// when `None`. A consume finding the queue at the limit gets nothing now (or waits).
    pub max_in_flight: Option<u32>,
    /// Most leased messages of one group at a time (at least 1); no limit when `None`.
    pub group_concurrency: Option<u32>,
    /// A group's messages are delivered one at a time in publish order, the next after the
    /// previous is acked or dead-lettered (`group_concurrency` must be 1 or `None`).
    pub ordered_groups: Option<bool>,
    /// Within a priority, ready messages are taken round robin across groups, so one group's
    /// burst does not make the others wait behind it.
    pub fair_groups: Option<bool>,
    /// Most deliveries of the queue per window ([`Rate`] `{max, per_secs}`; a window opens with
    /// its first delivery); no limit when `None`.
    pub rate_limit: Option<Rate>,
    /// Most deliveries of each group per window; no limit when `None`.
    pub group_rate_limit: Option<Rate>,
    /// Snoozes a message may take before it is dead-lettered (`snoozed_out`). Server
    /// default 100.
    pub max_snoozes: Option<u32>,
}

impl QueueConfig {
    /// The settings as the wire carries them (seconds; unset fields left out).
    #[must_use]
    pub fn to_wire(&self) -> wire::QueueConfig {
        wire::QueueConfig {
            max_retries: self.max_retries,
            ack_deadline_secs: opt_secs(self.ack_deadline),
            retry_delays: (!self.retry_delays.is_empty())
                .then(|| self.retry_delays.iter().copied().map(secs).collect()),
            backoff: self.backoff.as_ref().map(|b| wire::Backoff {
                initial: secs(b.initial),
                multiplier: Some(b.multiplier),
                max: secs(b.max),
                jitter: Some(b.jitter),
            }),
            max_depth: self.max_depth,
            message_ttl: opt_secs(self.message_ttl),
            prefetch: self.prefetch,
            dead_letter: self.dead_letter,
            dlq_max: self.dlq_max,
            default_priority: self.default_priority,
            retry_position: self.retry_position,
            max_bytes: None,
            keep_completed: self.keep_completed,
            keep_cancelled: self.keep_cancelled,
            max_result_bytes: self.max_result_bytes,
            max_in_flight: self.max_in_flight,
            group_concurrency: self.group_concurrency,
            ordered_groups: self.ordered_groups,
            fair_groups: self.fair_groups,
            rate_limit: self.rate_limit,
            group_rate_limit: self.group_rate_limit,
            max_snoozes: self.max_snoozes,
        }
    }
}

/// Serializes as the wire's settings (seconds).
impl Serialize for QueueConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
}

/// One dead-lettered message. The body stays untyped because a DLQ mixes whatever failed.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The message id.
    pub message_id: String,
    /// The body (JSON; `null` for byte payloads that are not JSON text).
    pub message: serde_json::Value,
    /// 0–9.
    pub priority: u8,
    /// Headers as published.
    pub headers: Headers,
    /// `rejected`, `max_retries_exceeded` or `expired`.
    pub reason: String,
    /// Deliveries made.
    pub attempts: u32,
    /// The last nack's error text (or a note that the lease expired).
    pub last_error: Option<String>,
    /// When it was dead-lettered, Unix milliseconds.
    pub dead_lettered_at: u64,
}

impl From<wire::DeadLetter> for DeadLetter {
    fn from(d: wire::DeadLetter) -> Self {
        Self {
            message_id: d.message_id,
            message: d.message,
            priority: d.priority,
            headers: d.headers,
            reason: d.reason.as_str().to_owned(),
            attempts: d.attempts,
            last_error: d.last_error,
            dead_lettered_at: d.dead_lettered_at,
        }
    }
}

/// A page of a dead-letter queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DlqPage {
    /// Entries in the DLQ in all.
    pub total: u64,
    /// This page, oldest first.
    pub messages: Vec<DeadLetter>,
}

impl From<wire::DlqPage> for DlqPage {
    fn from(p: wire::DlqPage) -> Self {
        Self {
            total: p.total,
            messages: p.messages.into_iter().map(DeadLetter::from).collect(),
        }
    }
}

/// A pub/sub message received by a subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct PubSubMessage {
    /// The topic it was published to (not the pattern that matched).
    pub topic: String,
    /// Its id.
    pub message_id: String,
    /// The body as published.
    pub message: serde_json::Value,
    /// Headers as published.
    pub headers: Headers,
    /// Publish time, Unix milliseconds.
    pub published_at: u64,
}

impl PubSubMessage {
    /// Decodes the body as `T`.
    ///
    /// # Errors
    /// [`SynapError::Decode`] when the body does not have `T`'s shape.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.message.clone())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_go_out_as_fractional_seconds() {
        let opts = PublishOptions {
            delay: Some(Duration::from_millis(250)),
            ..PublishOptions::priority(9)
        };
        let v = serde_json::to_value(&opts).unwrap();
        assert_eq!(v, serde_json::json!({"priority": 9, "delay": 0.25}));

        let cfg = QueueConfig {
            ack_deadline: Some(Duration::from_secs(2)),
            retry_delays: vec![Duration::from_millis(100), Duration::from_millis(1500)],
            ..QueueConfig::default()
        };
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ack_deadline_secs": 2.0, "retry_delays": [0.1, 1.5]})
        );
    }

    #[test]
    fn dedup_and_debounce_go_out_only_when_set() {
        let opts = PublishOptions {
            idempotency_key: Some("k".into()),
            dedup: Some(DedupMode::UntilFinished),
            debounce: true,
            ..PublishOptions::default()
        };
        let v = serde_json::to_value(&opts).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"idempotency_key": "k", "dedup": "until_finished", "debounce": true})
        );
        let v = serde_json::to_value(PublishOptions::default()).unwrap();
        assert_eq!(v, serde_json::json!({}));
    }

    #[test]
    fn flow_settings_and_snoozes_go_out_as_the_wire_has_them() {
        let cfg = QueueConfig {
            max_in_flight: Some(8),
            group_concurrency: Some(1),
            fair_groups: Some(true),
            rate_limit: Some(Rate {
                max: 30,
                per_secs: 60.0,
            }),
            max_snoozes: Some(5),
            ..QueueConfig::default()
        };
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"max_in_flight": 8, "group_concurrency": 1, "fair_groups": true,
                "rate_limit": {"max": 30, "per_secs": 60.0}, "max_snoozes": 5})
        );
        let snooze = NackOptions {
            lease: Some(7),
            ..NackOptions::snooze(Duration::from_millis(1500))
        };
        let v = serde_json::to_value(snooze.request("m1")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message_id": "m1", "requeue": true, "delay": 1.5, "lease": 7,
                "snooze": true})
        );
        let v = serde_json::to_value(NackOptions::default()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"requeue": true}),
            "no snooze unless asked"
        );
    }

    #[test]
    fn byte_payloads_decode_as_json_text() {
        let raw: RawDelivery = serde_json::from_value(serde_json::json!({
            "message_id": "m1", "queue": "q", "message": {"n": 7},
            "payload": b"{\"n\":7}".to_vec(), "priority": 3, "retry_count": 1,
            "max_retries": 3, "headers": {}, "lease": 4, "lease_deadline": 31000,
            "published_at": 1000, "group": "user-1"
        }))
        .unwrap();
        let msg = raw.decode::<serde_json::Value>().unwrap();
        assert_eq!(msg.body, serde_json::json!({"n": 7}));
        assert_eq!((msg.priority, msg.retry_count, msg.lease), (3, 1, Some(4)));
        assert_eq!(msg.published_at, 1000);
        assert_eq!(msg.group.as_deref(), Some("user-1"));
        assert!(msg.children.is_none(), "not a flow parent");
    }

    #[test]
    fn a_parents_delivery_carries_its_children() {
        let raw: RawDelivery = serde_json::from_value(serde_json::json!({
            "message_id": "p", "queue": "package", "message": {"v": 7}, "priority": 5,
            "retry_count": 0, "max_retries": 3, "headers": {}, "lease": 1,
            "lease_deadline": 31000, "published_at": 1000, "children": [
                {"message_id": "c1", "queue": "transcode", "state": "completed",
                    "result": {"url": "s3://v/7/480p.mp4"}},
                {"message_id": "c2", "queue": "transcode", "state": "dead_lettered",
                    "result": null, "reason": "rejected"}]
        }))
        .unwrap();
        let msg = raw.decode::<serde_json::Value>().unwrap();
        let children = msg.children.unwrap();
        assert_eq!(children.len(), 2);
        assert_eq!(children[0].state, FlowJobState::Completed);
        assert_eq!(
            children[0].result,
            Some(serde_json::json!({"url": "s3://v/7/480p.mp4"}))
        );
        assert_eq!(children[1].state, FlowJobState::DeadLettered);
        assert_eq!(children[1].result, None);
        assert_eq!(children[1].reason, Some(DeadLetterReason::Rejected));
    }
}
