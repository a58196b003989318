//! Domain errors: what a well-formed command can be refused for.
//!
//! Each variant has a stable machine `code` (its serde tag), which the HTTP host returns as
//! `{"error", "code"}` and maps to a status. Broken invariants are assertions, never errors.

use serde::{Deserialize, Serialize};

/// Why the engine refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Error {
    /// The named queue does not exist (and auto-create is off or does not apply).
    #[error("queue not found: {queue}")]
    QueueNotFound {
        /// The queue asked for.
        queue: String,
    },
    /// No message with this id is known to the queue (never published, acked, or gone).
    #[error("message not found: {message_id}")]
    MessageNotFound {
        /// The id asked for.
        message_id: String,
    },
    /// The message is not leased, or it is leased under another lease token (a late ack after
    /// redelivery must not touch the new delivery).
    #[error("lease mismatch for message {message_id}: {detail}")]
    LeaseMismatch {
        /// The message.
        message_id: String,
        /// What was found instead.
        detail: String,
    },
    /// The queue holds `max_depth` ready and delayed messages.
    #[error("queue is full: {queue} (max_depth {max_depth})")]
    QueueFull {
        /// The queue.
        queue: String,
        /// Its configured depth limit.
        max_depth: u64,
    },
    /// A field is out of range or malformed.
    #[error("invalid argument: {field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A payload, key or value is larger than its limit.
    #[error("payload too large: {what} is {size} bytes, the limit is {limit}")]
    PayloadTooLarge {
        /// What was too large.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A collection is at its configured limit (waiters, consumers, queues, keys, subscribers…).
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded {
        /// Which limit.
        what: String,
        /// Its value.
        limit: u64,
    },
    /// Holding the message would take the message bytes held (queued and dead-lettered
    /// messages) past the server's budget or the queue's `max_bytes`. Publishes are refused
    /// until consumers drain it; consumes, acks and everything else go on.
    #[error("memory full: {scope} holds {held} bytes of messages, the limit is {limit}")]
    MemoryFull {
        /// `server`, or the queue whose `max_bytes` it is.
        scope: String,
        /// Bytes held now.
        held: u64,
        /// The budget in bytes.
        limit: u64,
    },
    /// The KV key does not exist or has expired.
    #[error("key not found: {key}")]
    KeyNotFound {
        /// The key asked for.
        key: String,
    },
    /// The KV value is not an integer, so it cannot be incremented.
    #[error("value of {key} is not an integer")]
    NotAnInteger {
        /// The key.
        key: String,
    },
    /// No consumer session with this id is attached.
    #[error("session not found: {session_id}")]
    SessionNotFound {
        /// The session asked for.
        session_id: u64,
    },
    /// The job is finished (completed, dead-lettered or cancelled): it cannot be cancelled.
    #[error("job {message_id} is already finished ({state})")]
    AlreadyFinished {
        /// The job.
        message_id: String,
        /// `completed`, `dead_lettered` or `cancelled`.
        state: String,
    },
    /// No schedule with this id on the queue.
    #[error("schedule not found: {schedule_id}")]
    ScheduleNotFound {
        /// The id asked for.
        schedule_id: String,
    },
    /// No flow with this id (never added, or finished and no longer kept).
    #[error("flow not found: {flow_id}")]
    FlowNotFound {
        /// The id asked for.
        flow_id: String,
    },
    /// No subscriber with this id is registered.
    #[error("subscriber not found: {subscriber_id}")]
    SubscriberNotFound {
        /// The id asked for.
        subscriber_id: String,
    },
}

impl Error {
    /// The stable machine code, e.g. `queue_not_found`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::QueueNotFound { .. } => "queue_not_found",
            Self::MessageNotFound { .. } => "message_not_found",
            Self::LeaseMismatch { .. } => "lease_mismatch",
            Self::QueueFull { .. } => "queue_full",
            Self::MemoryFull { .. } => "memory_full",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::KeyNotFound { .. } => "key_not_found",
            Self::NotAnInteger { .. } => "not_an_integer",
            Self::SubscriberNotFound { .. } => "subscriber_not_found",
            Self::SessionNotFound { .. } => "session_not_found",
            Self::AlreadyFinished { .. } => "already_finished",
            Self::ScheduleNotFound { .. } => "schedule_not_found",
            Self::FlowNotFound { .. } => "flow_not_found",
        }
    }

    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn limit(what: &str, limit: u64) -> Self {
        Self::LimitExceeded {
            what: what.to_owned(),
            limit,
        }
    }

    pub(crate) fn too_large(what: &str, size: usize, limit: usize) -> Self {
        Self::PayloadTooLarge {
            what: what.to_owned(),
            size: size as u64,
            limit: limit as u64,
        }
    }
}
