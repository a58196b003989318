//! `GET /queue/{name}/stats`.

use serde::{Deserialize, Serialize};

use crate::QueueConfig;

/// Statistics of one queue, with its settings in the shape `POST /queue/{name}` takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Long-poll consumers parked on this queue.
    pub waiters: u64,
    /// Messages published.
    pub published_total: u64,
    /// Deliveries.
    pub consumed_total: u64,
    /// Acks.
    pub acked_total: u64,
    /// Nacks (give-backs of a gone consumer included).
    pub nacked_total: u64,
    /// Leases that ran out.
    pub lease_expired_total: u64,
    /// Messages dead-lettered (whether kept or dropped).
    pub dead_lettered_total: u64,
    /// Messages whose TTL passed.
    pub expired_total: u64,
    /// DLQ entries dropped because the DLQ was full or disabled.
    pub dlq_dropped_total: u64,
    /// Mean ready-to-delivery time over the last 1,000 deliveries, ms.
    pub avg_wait_time_ms: f64,
    /// Age of the oldest ready message, ms.
    pub oldest_ready_age_ms: u64,
    /// Jobs cancelled (ready, delayed, or in flight and then settled).
    #[serde(default)]
    pub cancelled_total: u64,
    /// Completed and cancelled jobs kept for lookup (`keep_completed`, `keep_cancelled`).
    #[serde(default)]
    pub kept_jobs: u64,
    /// Schedules of this queue.
    #[serde(default)]
    pub schedules: u64,
    /// Flow parents waiting for their children (not in `depth`).
    #[serde(default)]
    pub waiting_children: u64,
    /// Message bytes the queue holds (bodies and headers, queued and dead-lettered).
    #[serde(default)]
    pub bytes: u64,
    /// The server's memory budget and what all queues hold of it.
    #[serde(default)]
    pub memory: MemoryStats,
    /// The queue's settings, durations in seconds.
    pub config: QueueConfig,
    /// Paused: it delivers nothing until resumed.
    #[serde(default)]
    pub paused: bool,
    /// Nothing is delivered before this time (Unix ms): a worker's rate limit, or the
    /// queue's `rate_limit` window while it is full; `null` when not rate limited.
    #[serde(default)]
    pub rate_limited_until_ms: Option<u64>,
    /// Groups holding messages (ready, delayed or in flight).
    #[serde(default)]
    pub groups: u64,
    /// Ready messages no consumer may take now (paused, rate limited, at `max_in_flight`, or
    /// in groups at a limit).
    #[serde(default)]
    pub held_back: u64,
}

/// The server's memory budget: message bytes held across all queues, and the limit past
/// which publishes are refused with 507 `memory_full`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Message bytes held across all queues.
    pub held_bytes: u64,
    /// The budget.
    pub limit_bytes: u64,
}
