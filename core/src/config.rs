//! Engine and queue configuration, with the defaults of DESIGN.md §3 and the limits of §2.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Upper bound of a queue's `max_result_bytes`: 1 MiB.
pub const MAX_RESULT_BYTES: u64 = 1 << 20;

/// Longest message group name, in bytes.
pub const MAX_GROUP_BYTES: usize = 255;

/// Longest lease (ack deadline) a consumer may ask for: 12 hours.
pub const MAX_LEASE_MS: u64 = 12 * 3600 * 1000;

/// Exponential backoff between retries: the i-th retry waits
/// `min(initial_ms * multiplier^(i-1), max_ms)`, reduced by up to `jitter` (a fraction) drawn
/// from the seeded PRNG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial_ms: u64,
    /// Growth factor per retry (≥ 1).
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Upper bound on any delay.
    pub max_ms: u64,
    /// Fraction in `[0, 1]` by which a delay may be randomly shortened.
    #[serde(default)]
    pub jitter: f64,
}

fn default_multiplier() -> f64 {
    2.0
}

/// Per-queue settings. Every field has a default, so `{}` is a valid config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Retries after the first delivery: `max_retries = N` allows N+1 deliveries.
    pub max_retries: u32,
    /// Default lease length for a consume that does not give one.
    pub ack_deadline_ms: u64,
    /// Fixed retry delays: the i-th retry waits `retry_delays_ms[i-1]`; the last value repeats.
    pub retry_delays_ms: Vec<u64>,
    /// Exponential backoff, used when `retry_delays_ms` is empty.
    pub backoff: Option<Backoff>,
    /// Ready plus delayed messages the queue may hold; a publish beyond it is `queue_full`.
    pub max_depth: u64,
    /// Time-to-live of each message from publish; unacked by then, it is dead-lettered.
    pub message_ttl_ms: Option<u64>,
    /// Unacked messages one consumer id may hold; 0 = unlimited.
    pub prefetch: u32,
    /// Keep dead-lettered messages in the queue's DLQ (if off they are dropped and counted).
    pub dead_letter: bool,
    /// DLQ capacity; when full the oldest entry is dropped and counted.
    pub dlq_max: u64,
    /// Priority of a message published without one.
    pub default_priority: u8,
    /// Where a message that failed (nack, lease expiry, give-back) stands when it is ready
    /// again.
    pub retry_position: RetryPosition,
    /// Message bytes (bodies and headers, queued and dead-lettered) the queue may hold; a
    /// publish beyond it is `memory_full`. `None`: only the server's `max_held_bytes` applies.
    /// (Always serialized: snapshots encode structs as arrays, and fields follow it.)
    pub max_bytes: Option<u64>,
    /// Completed jobs kept for lookup (with their results), by count and age.
    pub keep_completed: Keep,
    /// Cancelled jobs kept for lookup, by count and age.
    pub keep_cancelled: Keep,
    /// Largest `result` an ack may carry (compact JSON bytes).
    pub max_result_bytes: u64,
    /// Most leased messages of the queue across all its consumers; `None`: no limit.
    pub max_in_flight: Option<u32>,
    /// Most leased messages of one group; `None`: no limit.
    pub group_concurrency: Option<u32>,
    /// A group's messages are delivered in publish order, the next only after the previous is
    /// acked or dead-lettered (a group holds one delivery at a time; `group_concurrency` must
    /// be 1 or absent). A retried message keeps its group's head.
    pub ordered_groups: bool,
    /// Within a priority, ready messages are taken round robin across groups, so one group's
    /// burst does not starve the others.
    pub fair_groups: bool,
    /// Most deliveries of the queue per window.
    pub rate_limit: Option<RateLimit>,
    /// Most deliveries of each group per window.
    pub group_rate_limit: Option<RateLimit>,
    /// Snoozes a message may take (nack with `snooze`); one more dead-letters it
    /// (`snoozed_out`).
    pub max_snoozes: u32,
}

/// At most `max` deliveries per window of `per_ms`. A window opens with the first delivery
/// after the previous one closed and lasts `per_ms`; once `max` deliveries were made in it,
/// the next waits for it to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Deliveries per window (at least 1).
    pub max: u32,
    /// The window's length.
    pub per_ms: u64,
}

impl RateLimit {
    fn validate(&self, field: &str, limits: &Limits) -> Result<(), Error> {
        if self.max == 0 {
            return Err(Error::invalid(field, "max must be at least 1"));
        }
        if self.per_ms == 0 || self.per_ms > limits.max_delay_ms {
            return Err(Error::invalid(
                field,
                format!(
                    "the window must be between 1 and {} ms",
                    limits.max_delay_ms
                ),
            ));
        }
        Ok(())
    }
}

/// How many finished jobs of a kind a queue keeps for lookup, and for how long: a finished
/// job is forgotten when `count` newer ones of its kind were kept, or `age_ms` after it
/// finished, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Keep {
    /// Most jobs kept (0 keeps none).
    pub count: u64,
    /// Longest time a job is kept after it finished.
    pub age_ms: u64,
}

impl Default for Keep {
    fn default() -> Self {
        Self {
            count: 1_000,
            age_ms: 3_600_000,
        }
    }
}

impl Keep {
    fn validate(&self, field: &str, limits: &Limits) -> Result<(), Error> {
        if self.count > limits.max_kept_jobs {
            return Err(Error::invalid(
                field,
                format!("count is at most {}", limits.max_kept_jobs),
            ));
        }
        if self.age_ms == 0 || self.age_ms > limits.max_ttl_ms {
            return Err(Error::invalid(
                field,
                format!("age must be between 1 and {} ms", limits.max_ttl_ms),
            ));
        }
        Ok(())
    }
}

/// Where a retried message re-enters its priority's line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPosition {
    /// At the back, behind everything ready at that moment, as in Synap: a failing message
    /// does not hold up the ones behind it.
    #[default]
    Back,
    /// At its original place by publish order, as in RabbitMQ and beanstalkd.
    Original,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            ack_deadline_ms: 30_000,
            retry_delays_ms: Vec::new(),
            backoff: None,
            max_depth: 100_000,
            message_ttl_ms: None,
            prefetch: 0,
            dead_letter: true,
            dlq_max: 10_000,
            default_priority: 5,
            retry_position: RetryPosition::Back,
            max_bytes: None,
            keep_completed: Keep::default(),
            keep_cancelled: Keep::default(),
            max_result_bytes: 64 * 1024,
            max_in_flight: None,
            group_concurrency: None,
            ordered_groups: false,
            fair_groups: false,
            rate_limit: None,
            group_rate_limit: None,
            max_snoozes: 100,
        }
    }
}

impl QueueConfig {
    /// Checks every field against its range.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        if self.ack_deadline_ms == 0 || self.ack_deadline_ms > MAX_LEASE_MS {
            return Err(Error::invalid(
                "ack_deadline_ms",
                format!("must be between 1 ms and {MAX_LEASE_MS} ms"),
            ));
        }
        if self.max_retries > limits.max_retries {
            return Err(Error::invalid(
                "max_retries",
                format!("at most {}", limits.max_retries),
            ));
        }
        if self.retry_delays_ms.len() > limits.max_retry_delays {
            return Err(Error::invalid(
                "retry_delays_ms",
                format!("at most {} entries", limits.max_retry_delays),
            ));
        }
        if let Some(bad) = self
            .retry_delays_ms
            .iter()
            .find(|d| **d > limits.max_delay_ms)
        {
            return Err(Error::invalid(
                "retry_delays_ms",
                format!("{bad} ms exceeds the limit of {} ms", limits.max_delay_ms),
            ));
        }
        if let Some(b) = &self.backoff {
            b.validate(limits)?;
        }
        if self.max_depth == 0 || self.max_depth > limits.max_queue_depth {
            return Err(Error::invalid(
                "max_depth",
                format!("must be between 1 and {}", limits.max_queue_depth),
            ));
        }
        if self.message_ttl_ms == Some(0) {
            return Err(Error::invalid("message_ttl_ms", "must be positive"));
        }
        if self.dlq_max > limits.max_dlq {
            return Err(Error::invalid(
                "dlq_max",
                format!("at most {}", limits.max_dlq),
            ));
        }
        if self.max_bytes == Some(0) {
            return Err(Error::invalid("max_bytes", "must be positive"));
        }
        if self.default_priority > 9 {
            return Err(Error::invalid("default_priority", "must be 0..=9"));
        }
        self.keep_completed.validate("keep_completed", limits)?;
        self.keep_cancelled.validate("keep_cancelled", limits)?;
        if self.max_result_bytes > MAX_RESULT_BYTES {
            return Err(Error::invalid(
                "max_result_bytes",
                format!("at most {MAX_RESULT_BYTES}"),
            ));
        }
        self.validate_flow(limits)
    }

    /// Checks the flow-control settings (DESIGN.md §12).
    fn validate_flow(&self, limits: &Limits) -> Result<(), Error> {
        if self.max_in_flight == Some(0) {
            return Err(Error::invalid("max_in_flight", "must be at least 1"));
        }
        if self.group_concurrency == Some(0) {
            return Err(Error::invalid("group_concurrency", "must be at least 1"));
        }
        if self.ordered_groups && self.group_concurrency.is_some_and(|c| c != 1) {
            return Err(Error::invalid(
                "ordered_groups",
                "an ordered group holds one delivery at a time: group_concurrency must be 1",
            ));
        }
        if let Some(r) = &self.rate_limit {
            r.validate("rate_limit", limits)?;
        }
        if let Some(r) = &self.group_rate_limit {
            r.validate("group_rate_limit", limits)?;
        }
        if self.max_snoozes > limits.max_snoozes {
            return Err(Error::invalid(
                "max_snoozes",
                format!("at most {}", limits.max_snoozes),
            ));
        }
        Ok(())
    }

    /// Most deliveries one group may hold: 1 for ordered groups.
    #[must_use]
    pub fn group_limit(&self) -> Option<u32> {
        if self.ordered_groups {
            Some(1)
        } else {
            self.group_concurrency
        }
    }

    /// Whether any flow-control setting limits deliveries (the queue then keeps flow state).
    pub(crate) fn controls_flow(&self) -> bool {
        self.max_in_flight.is_some()
            || self.group_concurrency.is_some()
            || self.ordered_groups
            || self.fair_groups
            || self.rate_limit.is_some()
            || self.group_rate_limit.is_some()
    }
}

impl Backoff {
    fn validate(&self, limits: &Limits) -> Result<(), Error> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0 && self.multiplier <= 100.0) {
            return Err(Error::invalid("backoff.multiplier", "must be in 1..=100"));
        }
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            return Err(Error::invalid("backoff.jitter", "must be in 0..=1"));
        }
        if self.max_ms < self.initial_ms || self.max_ms > limits.max_delay_ms {
            return Err(Error::invalid(
                "backoff.max_ms",
                format!(
                    "must be at least initial and at most {} ms",
                    limits.max_delay_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Every collection's limit (DESIGN.md §2). Exceeding one is a clear error, never a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Queues the engine may hold.
    pub max_queues: u64,
    /// Upper bound any queue's `max_depth` may be set to.
    pub max_queue_depth: u64,
    /// Upper bound on `max_retries`.
    pub max_retries: u32,
    /// Upper bound on a DLQ's capacity.
    pub max_dlq: u64,
    /// Largest message body, in bytes.
    pub max_payload_bytes: usize,
    /// Most headers on one message.
    pub max_headers: usize,
    /// Largest header name plus value, in bytes.
    pub max_header_bytes: usize,
    /// Messages in one batch publish.
    pub max_batch: usize,
    /// Longest delay (publish delay, nack delay, retry delay).
    pub max_delay_ms: u64,
    /// Longest message TTL.
    pub max_ttl_ms: u64,
    /// Longest long-poll wait; longer requests are capped to it.
    pub max_wait_ms: u64,
    /// Long-poll waiters parked across all queues.
    pub max_waiters: usize,
    /// Consumer ids tracked per queue.
    pub max_consumers_per_queue: usize,
    /// Longest nack error text kept (longer text is cut at a character boundary).
    pub max_error_bytes: usize,
    /// KV keys held.
    pub max_kv_keys: usize,
    /// Longest KV key, in bytes.
    pub max_key_bytes: usize,
    /// Largest KV value (as compact JSON), in bytes.
    pub max_value_bytes: usize,
    /// Pub/sub subscribers registered.
    pub max_subscribers: usize,
    /// Patterns per subscriber.
    pub max_patterns_per_subscriber: usize,
    /// Messages buffered per subscriber before the oldest is dropped.
    pub subscriber_buffer: usize,
    /// Longest topic or pattern, in bytes.
    pub max_topic_bytes: usize,
    /// Consumer sessions attached across all queues.
    pub max_sessions: usize,
    /// Credit one session may hold, free and in use together.
    pub max_session_credit: u32,
    /// Messages one consume may lease.
    pub max_consume_messages: u32,
    /// Longest consumer or subscriber id, in bytes.
    pub max_id_bytes: usize,
    /// Largest page of a DLQ listing or a pub/sub poll.
    pub max_page: u64,
    /// Most entries of a queue's `retry_delays`.
    pub max_retry_delays: usize,
    /// Most keys one KV listing returns.
    pub max_keys_listed: u64,
    /// The memory budget: message bytes (bodies and headers of queued and dead-lettered
    /// messages, across all queues) the engine may hold. A publish that would pass it is
    /// `memory_full`; hosts set it from the machine's memory.
    pub max_held_bytes: u64,
    /// Live publish idempotency keys held across all queues.
    pub max_idempotency_keys: usize,
    /// Largest progress report (compact JSON bytes).
    pub max_progress_bytes: usize,
    /// Upper bound a queue's `keep_completed.count` and `keep_cancelled.count` may be set to.
    pub max_kept_jobs: u64,
    /// Bytes of finished jobs kept for lookup (bodies, headers, results, progress) across all
    /// queues. A job that would pass it makes room by forgetting its queue's oldest kept jobs,
    /// or is not kept.
    pub max_kept_bytes: u64,
    /// Schedules across all queues.
    pub max_schedules: usize,
    /// Parked waits for a job to finish, across all queues.
    pub max_job_waiters: usize,
    /// Message groups one queue may hold (groups holding messages, and groups whose rate
    /// window is still open); a publish that would start one more is `limit_exceeded`.
    pub max_groups_per_queue: usize,
    /// Upper bound a queue's `max_snoozes` may be set to.
    pub max_snoozes: u32,
    /// Flow records held: flows running, and finished ones while a job of theirs can still
    /// be looked up. An `AddFlow` beyond it is `limit_exceeded`.
    pub max_flows: usize,
    /// Jobs in one flow.
    pub max_flow_jobs: usize,
    /// Levels of one flow (a root with children and grandchildren is 3).
    pub max_flow_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queues: 10_000,
            max_queue_depth: 10_000_000,
            max_retries: 1_000,
            max_dlq: 1_000_000,
            max_payload_bytes: 1 << 20,
            max_headers: 64,
            max_header_bytes: 8 * 1024,
            max_batch: 1_000,
            max_delay_ms: 30 * 24 * 3600 * 1000,
            max_ttl_ms: 365 * 24 * 3600 * 1000,
            max_wait_ms: 300_000,
            max_waiters: 10_000,
            max_consumers_per_queue: 10_000,
            max_error_bytes: 4 * 1024,
            max_kv_keys: 1_000_000,
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            max_subscribers: 10_000,
            max_patterns_per_subscriber: 64,
            subscriber_buffer: 1024,
            max_topic_bytes: 255,
            max_sessions: 10_000,
            max_session_credit: 10_000,
            max_consume_messages: 100,
            max_id_bytes: 255,
            max_page: 1_000,
            max_retry_delays: 64,
            max_keys_listed: 10_000,
            max_held_bytes: 2 << 30,
            max_idempotency_keys: 1_000_000,
            max_progress_bytes: 4 * 1024,
            max_kept_jobs: 100_000,
            max_kept_bytes: 256 << 20,
            max_schedules: 10_000,
            max_job_waiters: 10_000,
            max_groups_per_queue: 100_000,
            max_snoozes: 100_000,
            max_flows: 10_000,
            max_flow_jobs: 1_000,
            max_flow_depth: 8,
        }
    }
}

/// Five minutes, as SQS FIFO queues deduplicate.
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Whole-engine configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Publishing to an unknown queue creates it with `default_queue`.
    pub auto_create_queues: bool,
    /// Settings of queues created without a config, and of auto-created queues.
    pub default_queue: QueueConfig,
    /// Collection and size limits.
    pub limits: Limits,
    /// Emit `Event::Observed` for every message state change. Hosts that stream events to a
    /// dashboard or simulator keep it on; a benchmark may turn it off.
    pub observe: bool,
    /// How long a publish idempotency key is remembered after its first publish.
    pub idempotency_window_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            auto_create_queues: true,
            default_queue: QueueConfig::default(),
            limits: Limits::default(),
            observe: true,
            idempotency_window_ms: DEFAULT_IDEMPOTENCY_WINDOW_MS,
        }
    }
}

/// Checks message headers against the count and size limits.
pub(crate) fn check_headers(limits: &Limits, headers: &crate::Headers) -> Result<(), Error> {
    if headers.len() > limits.max_headers {
        return Err(Error::limit(
            "headers per message",
            limits.max_headers as u64,
        ));
    }
    if let Some((k, v)) = headers
        .iter()
        .find(|(k, v)| k.len() + v.len() > limits.max_header_bytes)
    {
        return Err(Error::too_large(
            "header",
            k.len() + v.len(),
            limits.max_header_bytes,
        ));
    }
    Ok(())
}

/// Checks a queue name: 1–255 characters of `A-Za-z0-9._:-`.
pub fn validate_queue_name(name: &str) -> Result<(), Error> {
    let ok_len = (1..=255).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(Error::invalid(
            "queue",
            "a queue name is 1-255 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}
