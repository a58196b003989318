//! Queue settings in seconds: the body of `POST /queue/{name}`, the `queue:` entries of the
//! config file, and the `config` of `GET /queue/{name}/stats`.

use serde::{Deserialize, Serialize};

/// Exponential backoff between retries, in seconds: the i-th retry waits
/// `initial * multiplier^(i-1)`, capped at `max`, shortened by up to `jitter` (a fraction).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry, seconds.
    pub initial: f64,
    /// Growth per retry (≥ 1); the server takes 2 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Largest delay, seconds.
    pub max: f64,
    /// Random shortening fraction in `[0, 1]`; 0 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

/// Settings of a queue. In a request every field is optional (absent = the server's default
/// queue settings; an empty object = get-or-create). In the stats answer every field the queue
/// has is given, so the object can be sent back to `POST /queue/{name}` as it is; `backoff` and
/// `message_ttl` are absent when the queue has none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Retries after the first delivery (`N` allows `N + 1` deliveries).
    #[serde(alias = "default_max_retries", skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Default lease length, seconds.
    #[serde(alias = "ack_deadline", skip_serializing_if = "Option::is_none")]
    pub ack_deadline_secs: Option<f64>,
    /// Seconds before the i-th retry; the last value repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_delays: Option<Vec<f64>>,
    /// Exponential backoff, used when `retry_delays` is empty.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_object"
    )]
    pub backoff: Option<Backoff>,
    /// Ready plus delayed messages allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u64>,
    /// Seconds a message may live unacked before it is dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_ttl: Option<f64>,
    /// Unacked messages per consumer id (0 = unlimited).
    #[serde(alias = "prefetch_limit", skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u32>,
    /// Keep dead-lettered messages in the DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<bool>,
    /// DLQ capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_max: Option<u64>,
    /// Priority (0–9) of messages published without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_priority: Option<u8>,
    /// Where a retried message stands when it is ready again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_position: Option<RetryPosition>,
    /// Message bytes (bodies and headers, queued and dead-lettered) the queue may hold;
    /// publishes past it are refused with 507 `memory_full`. Absent: only the server's budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Completed jobs kept for lookup (with their results): `{count, age_secs}`, 1,000 for
    /// an hour by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_completed: Option<Keep>,
    /// Cancelled jobs kept for lookup: `{count, age_secs}`, 1,000 for an hour by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_cancelled: Option<Keep>,
    /// Largest `result` an ack may carry, in bytes of compact JSON (64 KiB by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<u64>,
    /// Most leased messages of the queue across all its consumers; no limit when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Most leased messages of one group; no limit when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_concurrency: Option<u32>,
    /// A group's messages go one at a time in publish order, the next after the previous is
    /// acked or dead-lettered (`group_concurrency` must then be 1 or absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_groups: Option<bool>,
    /// Within a priority, ready messages are taken round robin across groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fair_groups: Option<bool>,
    /// Most deliveries of the queue per window; no limit when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_object"
    )]
    pub rate_limit: Option<Rate>,
    /// Most deliveries of each group per window; no limit when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_object"
    )]
    pub group_rate_limit: Option<Rate>,
    /// Snoozes a message may take before it is dead-lettered (`snoozed_out`); 100 by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_snoozes: Option<u32>,
}

/// At most `max` deliveries per window of `per_secs` seconds. A window opens with the first
/// delivery after the previous one closed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Deliveries per window (at least 1).
    pub max: u32,
    /// The window's length, seconds.
    pub per_secs: f64,
}

/// How many finished jobs of a kind a queue keeps for lookup, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// Most jobs kept (0 keeps none).
    pub count: u64,
    /// Seconds a job is kept after it finished.
    pub age_secs: f64,
}

/// Where a retried message (nack, lease expiry) re-enters its priority's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPosition {
    /// Behind everything ready at that moment (the server's default).
    Back,
    /// At its original place by publish order.
    Original,
}

impl QueueConfig {
    /// True when no field is set (the body of a get-or-create).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
