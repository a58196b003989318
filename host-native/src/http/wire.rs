//! JSON shapes shared by REST, WebSocket and SSE routes: request bodies with durations in
//! seconds, and delivered messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use synap_core::{DeadLetter, Delivery, MessageId, PubMessage, PublishMessage, Published};

use super::error::ApiError;
use crate::settings::secs_to_ms;

/// One message to publish, as REST and WebSocket clients send it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PublishBody {
    /// The body as any JSON value.
    pub(crate) message: Option<Value>,
    /// The body as bytes (a JSON array of 0–255 integers), as Synap's SDKs send it.
    pub(crate) payload: Option<Vec<u8>>,
    /// 0–9.
    pub(crate) priority: Option<u8>,
    /// String headers.
    pub(crate) headers: BTreeMap<String, String>,
    /// Seconds before the message becomes deliverable.
    pub(crate) delay: Option<f64>,
    /// Seconds the message may live unacked.
    pub(crate) ttl: Option<f64>,
    /// Overrides the queue's retry limit.
    pub(crate) max_retries: Option<u32>,
}

impl PublishBody {
    /// The engine's form of the message.
    pub(crate) fn into_message(self) -> Result<PublishMessage, ApiError> {
        let (message, payload) = match (self.message, self.payload) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "give either `message` or `payload`, not both",
                ));
            }
            (None, None) => {
                return Err(ApiError::bad(
                    "missing `message` (any JSON) or `payload` (byte array)",
                ));
            }
            (Some(m), None) => (Some(synap_core::Json::from_value(&m)), None),
            (None, Some(p)) => (None, Some(Arc::<[u8]>::from(p))),
        };
        Ok(PublishMessage {
            message,
            payload,
            priority: self.priority,
            headers: self.headers,
            delay_ms: self.delay.map(|d| secs_to_ms("delay", d)).transpose()?,
            ttl_ms: self.ttl.map(|t| secs_to_ms("ttl", t)).transpose()?,
            max_retries: self.max_retries,
        })
    }
}

/// `{message_id, position}`.
pub(crate) fn published_json(p: &Published) -> Value {
    json!({"message_id": p.message_id, "position": p.position})
}

/// A byte body as JSON when it holds JSON text, else `null`.
fn bytes_as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// The body of a message in both forms: `message` (JSON, or `null` for non-JSON bytes) and,
/// for byte bodies, `payload`.
fn body_fields(message: Option<&synap_core::Json>, payload: Option<&Arc<[u8]>>) -> (Value, Value) {
    match (message, payload) {
        (Some(m), _) => (m.to_value(), Value::Null),
        (None, Some(p)) => (bytes_as_json(p), json!(p.as_ref())),
        (None, None) => (Value::Null, Value::Null),
    }
}

/// A leased message as REST and WebSocket consumers receive it. Times are Unix-epoch ms.
pub(crate) fn delivery_json(d: &Delivery) -> Value {
    let (message, payload) = body_fields(d.message.as_ref(), d.payload.as_ref());
    let mut v = json!({
        "message_id": d.message_id,
        "queue": d.queue.as_ref(),
        "message": message,
        "priority": d.priority,
        "retry_count": d.retry_count,
        "max_retries": d.max_retries,
        "headers": d.headers,
        "lease": d.lease,
        "lease_deadline": d.lease_deadline.0,
        "published_at": d.published_at.0,
    });
    if !payload.is_null() {
        v["payload"] = payload;
    }
    v
}

/// A dead-lettered message.
pub(crate) fn dead_letter_json(d: &DeadLetter) -> Value {
    let (message, payload) = body_fields(d.message.as_ref(), d.payload.as_ref());
    let mut v = json!({
        "message_id": d.message_id,
        "message": message,
        "priority": d.priority,
        "headers": d.headers,
        "reason": d.reason,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "origin_queue": d.origin_queue.as_ref(),
        "published_at": d.published_at.0,
        "dead_lettered_at": d.dead_lettered_at.0,
    });
    if !payload.is_null() {
        v["payload"] = payload;
    }
    v
}

/// A pub/sub message as WebSocket and SSE subscribers receive it. Besides our
/// `{topic, message, message_id, published_at}` it carries the fields Synap's SDKs read
/// (`type`, `payload`, `metadata`, `timestamp` in seconds).
pub(crate) fn pub_message_json(m: &PubMessage) -> Value {
    let body = m.message.to_value();
    let metadata = if m.headers.is_empty() {
        Value::Null
    } else {
        json!(m.headers)
    };
    json!({
        "type": "message",
        "topic": m.topic.as_ref(),
        "message": body.clone(),
        "payload": body,
        "message_id": m.message_id,
        "published_at": m.published_at.0,
        "timestamp": m.published_at.0 / 1000,
        "headers": m.headers,
        "metadata": metadata,
    })
}

/// Parses a message id; a malformed one is a 400 naming the field.
pub(crate) fn parse_message_id(text: &str) -> Result<MessageId, ApiError> {
    MessageId::parse_str(text.trim())
        .map_err(|_| ApiError::bad(format!("message_id: {text:?} is not a valid message id")))
}

/// Milliseconds as seconds (for TTLs answered to REST clients).
#[allow(clippy::cast_precision_loss)] // TTLs are far below 2^52 ms.
pub(crate) fn ms_to_secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
