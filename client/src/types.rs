//! Request options and response types. Durations are `std::time::Duration` in the API and
//! seconds (fractions allowed) on the wire, as DESIGN.md §5 specifies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Result, SynapError};

/// String headers carried with a message.
pub type Headers = BTreeMap<String, String>;

/// Serializes a duration as (possibly fractional) seconds.
pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

// serde's `serialize_with` hands over a `&Option<_>`, so the signature cannot take `Option<&_>`.
#[expect(
    clippy::ref_option,
    reason = "signature imposed by serde's serialize_with"
)]
pub(crate) fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn vec_secs<S: Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(d.iter().map(Duration::as_secs_f64))
}

/// Options of a publish. `Default` gives the queue's defaults for everything.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublishOptions {
    /// 0–9, higher delivered first; the queue's `default_priority` when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// String headers delivered with the message.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: Headers,
    /// Not deliverable before this much time has passed.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub delay: Option<Duration>,
    /// Dead-lettered (reason `expired`) if not acked within this time of publishing.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub ttl: Option<Duration>,
    /// Overrides the queue's `max_retries` for this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl PublishOptions {
    /// Options with just a priority.
    #[must_use]
    pub fn priority(priority: u8) -> Self {
        Self {
            priority: Some(priority),
            ..Self::default()
        }
    }
}

/// Where a published message landed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PublishResult {
    /// The message id; it stays the same across redeliveries.
    pub message_id: String,
    /// 1-based place in delivery order at publish time; `None` for a delayed message.
    #[serde(default)]
    pub position: Option<u64>,
}

/// Options of a consume. `Default` returns at once with the queue's ack deadline.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumeOptions {
    /// Long-poll wait when nothing is ready (0 or `None` returns at once; the server caps it).
    #[serde(rename = "timeout", skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Lease length: unacked by then, the message is retried. The queue default when `None`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub ack_deadline: Option<Duration>,
    /// Identifies the worker for `prefetch` and the `consumers` stat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
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
}

/// A delivery as the server sends it, before the body is decoded.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RawDelivery {
    pub(crate) message_id: String,
    #[serde(default)]
    pub(crate) message: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) payload: Option<Vec<u8>>,
    #[serde(default)]
    pub(crate) priority: u8,
    #[serde(default)]
    pub(crate) retry_count: u32,
    #[serde(default)]
    pub(crate) headers: Option<Headers>,
    #[serde(default)]
    pub(crate) lease: Option<u64>,
    #[serde(default)]
    pub(crate) published_at: Option<f64>,
}

impl RawDelivery {
    /// Decodes the body. A message published as bytes (e.g. by Synap's SDKs) is read as JSON
    /// text, so JSON-encoded byte payloads interoperate.
    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<QueueMessage<T>> {
        let body = match (self.message, self.payload) {
            (Some(json), _) => serde_json::from_value(json),
            (None, Some(bytes)) => serde_json::from_slice(&bytes),
            (None, None) => serde_json::from_value(serde_json::Value::Null),
        }
        .map_err(|e| SynapError::Decode(format!("body of message {}: {e}", self.message_id)))?;
        Ok(QueueMessage {
            id: self.message_id,
            body,
            priority: self.priority,
            retry_count: self.retry_count,
            headers: self.headers.unwrap_or_default(),
            lease: self.lease,
            // Milliseconds are whole numbers; the float only tolerates servers that send one.
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            published_at: self.published_at.unwrap_or(0.0) as u64,
        })
    }
}

/// How to reject a message.
#[derive(Clone, Debug, Serialize)]
pub struct NackOptions {
    /// Retry it (subject to `max_retries`); `false` dead-letters it at once.
    pub requeue: bool,
    /// Retry delay overriding the queue's policy.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub delay: Option<Duration>,
    /// Why it failed; kept with the message and shown in the DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Lease token of the delivery being rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

impl Default for NackOptions {
    fn default() -> Self {
        Self {
            requeue: true,
            delay: None,
            error: None,
            lease: None,
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
}

/// What a nack did to the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NackAction {
    /// Ready again at once.
    Requeued,
    /// Ready again after a retry delay.
    Delayed,
    /// Moved to the dead-letter queue.
    DeadLettered,
}

/// Outcome of a batch ack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct AckBatchResult {
    /// Messages acknowledged.
    pub acked: u64,
    /// Acks the server refused, with its machine code.
    #[serde(default)]
    pub failed: Vec<AckFailure>,
}

/// One refused ack of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AckFailure {
    /// The message.
    pub message_id: String,
    /// Why, e.g. `lease_mismatch` or `message_not_found`.
    pub code: String,
}

/// Exponential backoff between retries: the i-th retry waits `initial * multiplier^(i-1)`,
/// capped at `max`, shortened by up to `jitter` (a fraction).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backoff {
    /// Delay before the first retry.
    #[serde(serialize_with = "secs")]
    pub initial: Duration,
    /// Growth factor per retry (≥ 1).
    pub multiplier: f64,
    /// Upper bound on any delay.
    #[serde(serialize_with = "secs")]
    pub max: Duration,
    /// Fraction in `[0, 1]` by which a delay may be randomly shortened.
    pub jitter: f64,
}

/// Settings of a queue; `None` fields take the server's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueConfig {
    /// Retries after the first delivery (`N` allows `N + 1` deliveries). Server default 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Default lease length of a consume. Server default 30 s.
    #[serde(rename = "ack_deadline_secs")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub ack_deadline: Option<Duration>,
    /// Fixed retry delays: the i-th retry waits the i-th value, the last one repeats.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "vec_secs")]
    pub retry_delays: Vec<Duration>,
    /// Exponential backoff, used when `retry_delays` is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Ready plus delayed messages the queue may hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u64>,
    /// Time-to-live of every message from publish.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub message_ttl: Option<Duration>,
    /// Unacked messages one consumer id may hold (0 = unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u32>,
    /// Keep dead-lettered messages in the DLQ (on by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<bool>,
    /// DLQ capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_max: Option<u64>,
    /// Priority of messages published without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_priority: Option<u8>,
    /// Where a retried message stands when it is ready again. Server default: the back of
    /// its priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_position: Option<RetryPosition>,
}

/// Where a retried message (nack, lease expiry) re-enters its priority's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPosition {
    /// Behind everything ready at that moment (the default).
    Back,
    /// At its original place by publish order.
    Original,
}

/// Statistics of one queue (DESIGN.md §3). Missing fields read as 0.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Ready plus delayed.
    pub depth: u64,
    /// Deliverable now.
    pub ready: u64,
    /// Waiting for a delay or a retry delay.
    pub delayed: u64,
    /// Leased and not yet acked.
    pub in_flight: u64,
    /// Entries in the DLQ.
    pub dead_letter_count: u64,
    /// Distinct consumer ids waiting, holding a lease, or seen in the last 30 s.
    pub consumers: u64,
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
    /// Messages dead-lettered.
    pub dead_lettered_total: u64,
    /// Messages whose TTL passed.
    pub expired_total: u64,
    /// Mean ready-to-delivery time over the last 1,000 deliveries.
    pub avg_wait_time_ms: f64,
    /// Age of the oldest ready message.
    pub oldest_ready_age_ms: u64,
}

/// One dead-lettered message. The body stays untyped because a DLQ mixes whatever failed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DeadLetter {
    /// The message id.
    pub message_id: String,
    /// The body (JSON; `null` for byte payloads).
    #[serde(default)]
    pub message: serde_json::Value,
    /// 0–9.
    #[serde(default)]
    pub priority: u8,
    /// Headers as published.
    #[serde(default)]
    pub headers: Headers,
    /// `rejected`, `max_retries_exceeded` or `expired`.
    pub reason: String,
    /// Deliveries made.
    #[serde(default)]
    pub attempts: u32,
    /// The last nack's error text (or a note that the lease expired).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was dead-lettered, Unix milliseconds.
    #[serde(default)]
    pub dead_lettered_at: u64,
}

/// A page of a dead-letter queue.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DlqPage {
    /// Entries in the DLQ in all.
    pub total: u64,
    /// This page, oldest first.
    #[serde(default)]
    pub messages: Vec<DeadLetter>,
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
    fn byte_payloads_decode_as_json_text() {
        let raw: RawDelivery = serde_json::from_value(serde_json::json!({
            "message_id": "m1", "payload": b"{\"n\":7}".to_vec(), "priority": 3,
            "retry_count": 1, "lease": 4, "published_at": 1000
        }))
        .unwrap();
        let msg = raw.decode::<serde_json::Value>().unwrap();
        assert_eq!(msg.body, serde_json::json!({"n": 7}));
        assert_eq!((msg.priority, msg.retry_count, msg.lease), (3, 1, Some(4)));
        assert_eq!(msg.published_at, 1000);
    }
}
