//! The one place that converts between the wire types of `synap-wire` (seconds, Unix ms,
//! message ids as text) and the core's `Command`/`Reply` types (milliseconds, `MessageId`).
//! Routes parse a wire request, call a function here for the command, and answer the wire
//! form of the reply built here. Queue settings convert in `crate::settings`, which the config
//! file shares.

use std::sync::Arc;

use serde_json::Value;
use synap_core::{
    Command, DeadLetter, DeadLetterReason, Delivery, Json, LeaseToken, MessageId, NackAction,
    PubMessage, PublishMessage, Published, QueueStats,
};
use synap_wire as wire;

use super::error::ApiError;
pub(crate) use crate::settings::ms_to_secs;
use crate::settings::{secs_to_ms, settings_of};

/// The engine's form of a message to publish: exactly one of `message` and `payload`.
pub(crate) fn publish_message(r: wire::PublishRequest) -> Result<PublishMessage, ApiError> {
    let (message, payload) = match (r.message, r.payload) {
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
        (Some(m), None) => (Some(Json::from_value(&m)), None),
        (None, Some(p)) => (None, Some(Arc::<[u8]>::from(p))),
    };
    Ok(PublishMessage {
        message,
        payload,
        priority: r.priority,
        headers: r.headers,
        delay_ms: opt_ms("delay", r.delay)?,
        ttl_ms: opt_ms("ttl", r.ttl)?,
        max_retries: r.max_retries,
        idempotency_key: r.idempotency_key,
    })
}

/// Optional seconds as milliseconds, refusing bad values with an error naming `field`.
pub(crate) fn opt_ms(field: &str, secs: Option<f64>) -> Result<Option<u64>, ApiError> {
    Ok(secs.map(|s| secs_to_ms(field, s)).transpose()?)
}

/// The consume command of `POST /queue/{name}/consume` and its GET form.
pub(crate) fn consume_command(r: wire::ConsumeRequest, queue: String) -> Result<Command, ApiError> {
    Ok(Command::Consume {
        queue,
        wait_ms: secs_to_ms("timeout", r.timeout.unwrap_or(0.0))?,
        lease_ms: opt_ms("ack_deadline", r.ack_deadline)?,
        max_messages: r.max_messages.unwrap_or(1),
        consumer_id: r.consumer_id,
    })
}

/// The ack command of one ack request.
pub(crate) fn ack_command(r: &wire::AckRequest, queue: String) -> Result<Command, ApiError> {
    Ok(Command::Ack {
        queue,
        message_id: parse_message_id(&r.message_id)?,
        lease: r.lease.map(LeaseToken),
        result: None,
    })
}

/// The nack command; `requeue` is true when absent.
pub(crate) fn nack_command(r: wire::NackRequest, queue: String) -> Result<Command, ApiError> {
    Ok(Command::Nack {
        queue,
        message_id: parse_message_id(&r.message_id)?,
        requeue: r.requeue.unwrap_or(true),
        delay_ms: opt_ms("delay", r.delay)?,
        error: r.error,
        lease: r.lease.map(LeaseToken),
    })
}

/// The extend command.
pub(crate) fn extend_command(r: &wire::ExtendRequest, queue: String) -> Result<Command, ApiError> {
    Ok(Command::Extend {
        queue,
        message_id: parse_message_id(&r.message_id)?,
        lease_ms: secs_to_ms("ack_deadline", r.ack_deadline)?,
        lease: r.lease.map(LeaseToken),
    })
}

/// `{message_id, position}`.
pub(crate) fn published(p: &Published) -> wire::Published {
    wire::Published {
        message_id: p.message_id.to_string(),
        position: p.position,
        duplicate: p.duplicate,
    }
}

/// What a nack did.
pub(crate) const fn nack_action(a: NackAction) -> wire::NackAction {
    match a {
        NackAction::Requeued => wire::NackAction::Requeued,
        NackAction::Delayed => wire::NackAction::Delayed,
        NackAction::DeadLettered => wire::NackAction::DeadLettered,
    }
}

/// Why a message was dead-lettered.
const fn dead_letter_reason(r: DeadLetterReason) -> wire::DeadLetterReason {
    match r {
        DeadLetterReason::Rejected => wire::DeadLetterReason::Rejected,
        DeadLetterReason::MaxRetriesExceeded => wire::DeadLetterReason::MaxRetriesExceeded,
        DeadLetterReason::Expired => wire::DeadLetterReason::Expired,
    }
}

/// A byte body as JSON when it holds JSON text, else `null`.
fn bytes_as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// The body of a message in both forms: `message` (JSON, or `null` for non-JSON bytes) and,
/// for byte bodies, `payload`.
fn body_fields(message: Option<&Json>, payload: Option<&Arc<[u8]>>) -> (Value, Option<Vec<u8>>) {
    match (message, payload) {
        (Some(m), _) => (m.to_value(), None),
        (None, Some(p)) => (bytes_as_json(p), Some(p.to_vec())),
        (None, None) => (Value::Null, None),
    }
}

/// A leased message as REST and WebSocket consumers receive it.
pub(crate) fn delivery(d: &Delivery) -> wire::Delivery {
    let (message, payload) = body_fields(d.message.as_ref(), d.payload.as_ref());
    wire::Delivery {
        message_id: d.message_id.to_string(),
        queue: d.queue.to_string(),
        message,
        payload,
        priority: d.priority,
        retry_count: d.retry_count,
        max_retries: d.max_retries,
        headers: d.headers.clone(),
        lease: d.lease.0,
        lease_deadline: d.lease_deadline.0,
        published_at: d.published_at.0,
    }
}

/// A dead-lettered message.
pub(crate) fn dead_letter(d: &DeadLetter) -> wire::DeadLetter {
    let (message, payload) = body_fields(d.message.as_ref(), d.payload.as_ref());
    wire::DeadLetter {
        message_id: d.message_id.to_string(),
        message,
        payload,
        priority: d.priority,
        headers: d.headers.clone(),
        reason: dead_letter_reason(d.reason),
        attempts: d.attempts,
        last_error: d.last_error.clone(),
        origin_queue: d.origin_queue.to_string(),
        published_at: d.published_at.0,
        dead_lettered_at: d.dead_lettered_at.0,
    }
}

/// A queue's statistics, its config in seconds.
pub(crate) fn queue_stats(s: &QueueStats) -> wire::QueueStats {
    wire::QueueStats {
        queue: s.queue.clone(),
        depth: s.depth,
        ready: s.ready,
        delayed: s.delayed,
        in_flight: s.in_flight,
        dead_letter_count: s.dead_letter_count,
        consumers: s.consumers,
        waiters: s.waiters,
        published_total: s.published_total,
        consumed_total: s.consumed_total,
        acked_total: s.acked_total,
        nacked_total: s.nacked_total,
        lease_expired_total: s.lease_expired_total,
        dead_lettered_total: s.dead_lettered_total,
        expired_total: s.expired_total,
        dlq_dropped_total: s.dlq_dropped_total,
        avg_wait_time_ms: s.avg_wait_time_ms,
        oldest_ready_age_ms: s.oldest_ready_age_ms,
        bytes: s.bytes,
        memory: wire::MemoryStats {
            held_bytes: s.server_held_bytes,
            limit_bytes: s.server_max_held_bytes,
        },
        config: settings_of(&s.config),
    }
}

/// A pub/sub message as WebSocket and SSE subscribers receive it, with the fields Synap's SDKs
/// read (`payload`, `metadata`, `timestamp` in seconds).
pub(crate) fn pub_message(m: &PubMessage) -> wire::PubsubMessage {
    let body = m.message.to_value();
    wire::PubsubMessage {
        topic: m.topic.to_string(),
        message: body.clone(),
        payload: body,
        message_id: m.message_id.to_string(),
        published_at: m.published_at.0,
        timestamp: m.published_at.0 / 1000,
        headers: m.headers.clone(),
        metadata: (!m.headers.is_empty()).then(|| m.headers.clone()),
    }
}

/// [`pub_message`] as JSON, for the envelope's `pubsub.poll`.
pub(crate) fn pub_message_json(m: &PubMessage) -> Value {
    to_json(&pub_message(m))
}

/// A wire value as JSON. The wire types hold only strings, numbers, lists and string-keyed
/// maps, so this cannot fail; `null` would only show a broken invariant.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Parses a message id; a malformed one is a 400 naming the field.
pub(crate) fn parse_message_id(text: &str) -> Result<MessageId, ApiError> {
    MessageId::parse_str(text.trim())
        .map_err(|_| ApiError::bad(format!("message_id: {text:?} is not a valid message id")))
}
