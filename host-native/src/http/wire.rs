//! The one place that converts between the wire types of `synap-wire` (seconds, Unix ms,
//! message ids as text) and the core's `Command`/`Reply` types (milliseconds, `MessageId`).
//! Routes parse a wire request, call a function here for the command, and answer the wire
//! form of the reply built here. Queue settings convert in `crate::settings`, which the config
//! file shares.

use std::sync::Arc;

use serde_json::Value;
use synap_core::{
    Command, DeadLetter, DeadLetterReason, DedupMode, Delivery, Job, JobState, Json, LeaseToken,
    MessageId, NackAction, PubMessage, PublishMessage, Published, QueueStats, ScheduleInfo,
    ScheduleSpec,
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
        dedup: r.dedup.map(|d| match d {
            wire::DedupMode::Window => DedupMode::Window,
            wire::DedupMode::UntilFinished => DedupMode::UntilFinished,
        }),
        debounce: r.debounce.unwrap_or(false),
        group: r.group,
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
        result: r.result.as_ref().map(Json::from_value),
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
        snooze: r.snooze.unwrap_or(false),
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
        replaced: p.replaced,
    }
}

/// What a nack did.
pub(crate) const fn nack_action(a: NackAction) -> wire::NackAction {
    match a {
        NackAction::Requeued => wire::NackAction::Requeued,
        NackAction::Delayed => wire::NackAction::Delayed,
        NackAction::DeadLettered => wire::NackAction::DeadLettered,
        NackAction::Cancelled => wire::NackAction::Cancelled,
        NackAction::Snoozed => wire::NackAction::Snoozed,
    }
}

/// Why a message was dead-lettered.
pub(crate) const fn dead_letter_reason(r: DeadLetterReason) -> wire::DeadLetterReason {
    match r {
        DeadLetterReason::Rejected => wire::DeadLetterReason::Rejected,
        DeadLetterReason::MaxRetriesExceeded => wire::DeadLetterReason::MaxRetriesExceeded,
        DeadLetterReason::Expired => wire::DeadLetterReason::Expired,
        DeadLetterReason::SnoozedOut => wire::DeadLetterReason::SnoozedOut,
        DeadLetterReason::ChildFailed => wire::DeadLetterReason::ChildFailed,
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
        group: d.group.as_deref().map(str::to_owned),
        children: d
            .children
            .as_ref()
            .map(|c| c.iter().map(super::flows::child).collect()),
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
        cancelled_total: s.cancelled_total,
        kept_jobs: s.kept_jobs,
        schedules: s.schedules,
        waiting_children: s.waiting_children,
        bytes: s.bytes,
        memory: wire::MemoryStats {
            held_bytes: s.server_held_bytes,
            limit_bytes: s.server_max_held_bytes,
        },
        config: settings_of(&s.config),
        paused: s.paused,
        rate_limited_until_ms: s.rate_limited_until_ms.map(|t| t.0),
        groups: s.groups,
        held_back: s.held_back,
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

/// A job's state on the wire.
pub(crate) const fn job_state(s: JobState) -> wire::JobState {
    match s {
        JobState::WaitingChildren => wire::JobState::WaitingChildren,
        JobState::Delayed => wire::JobState::Delayed,
        JobState::Ready => wire::JobState::Ready,
        JobState::InFlight => wire::JobState::InFlight,
        JobState::Completed => wire::JobState::Completed,
        JobState::DeadLettered => wire::JobState::DeadLettered,
        JobState::Cancelled => wire::JobState::Cancelled,
    }
}

/// A job as a lookup answers it.
pub(crate) fn job(j: &Job) -> wire::Job {
    let (message, payload) = body_fields(j.message.as_ref(), j.payload.as_ref());
    wire::Job {
        message_id: j.message_id.to_string(),
        queue: j.queue.to_string(),
        state: job_state(j.state),
        priority: j.priority,
        group: j.group.as_deref().map(str::to_owned),
        attempts: j.attempts,
        progress: j.progress.as_ref().map(Json::to_value),
        result: j.result.as_ref().map(Json::to_value),
        last_error: j.last_error.clone(),
        published_at: j.published_at.0,
        started_at: j.started_at.map(|t| t.0),
        finished_at: j.finished_at.map(|t| t.0),
        message,
        payload,
        headers: j.headers.clone(),
        cancel_requested: j.cancel_requested,
        dead_letter_reason: j.dead_letter_reason.map(dead_letter_reason),
        flow_id: j.flow_id.map(|f| f.to_string()),
        parent_id: j.parent_id.map(|p| p.to_string()),
        children: j.children.iter().map(ToString::to_string).collect(),
    }
}

/// The engine's schedule of a `PUT /queue/{name}/schedules/{id}` body.
pub(crate) fn schedule_spec(r: wire::ScheduleRequest) -> Result<ScheduleSpec, ApiError> {
    Ok(ScheduleSpec {
        every_ms: opt_ms("every_secs", r.every_secs)?,
        cron: r.cron,
        message: Json::from_value(&r.message),
        priority: r.priority,
        headers: r.headers,
        start_at: r.start_at.map(synap_core::Millis),
        end_at: r.end_at.map(synap_core::Millis),
        max_runs: r.max_runs,
    })
}

/// One schedule of a listing.
pub(crate) fn schedule(s: &ScheduleInfo) -> wire::Schedule {
    wire::Schedule {
        id: s.schedule_id.clone(),
        every_secs: s.spec.every_ms.map(ms_to_secs),
        cron: s.spec.cron.clone(),
        message: s.spec.message.to_value(),
        priority: s.spec.priority,
        headers: s.spec.headers.clone(),
        start_at: s.spec.start_at.map(|t| t.0),
        end_at: s.spec.end_at.map(|t| t.0),
        max_runs: s.spec.max_runs,
        next_run_at: s.next_run_at.map(|t| t.0),
        last_run_at: s.last_run_at.map(|t| t.0),
        runs: s.runs,
        last_message_id: s.last_message_id.map(|id| id.to_string()),
        last_error: s.last_error.clone(),
    }
}
