//! The report a simulation or replay produces: a time series and a summary (serde, snake_case).

use serde::{Deserialize, Serialize};

use super::grouping::GroupClass;

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario's name (or `replay`).
    pub name: String,
    /// The seed, as decimal digits (a string so JavaScript keeps all 64 bits).
    pub seed: String,
    /// True once the whole duration has been simulated.
    pub finished: bool,
    /// Virtual time between samples.
    pub sample_interval_ms: u64,
    /// One point per sample interval, plus one at the end.
    pub series: Vec<Sample>,
    /// Totals over the run so far.
    pub summary: Summary,
    /// A replay's final engine state digest (hex), as a server's `/debug/state_digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<String>,
}

/// The state of the queues at one instant, and what happened in the interval before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Virtual time of the sample.
    pub t_ms: u64,
    /// Ready messages (summed over queues).
    pub ready: u64,
    /// Delayed messages (waiting for a retry delay).
    pub delayed: u64,
    /// Leased messages.
    pub in_flight: u64,
    /// Entries in dead-letter queues.
    pub dead_letter: u64,
    /// Parked long-poll consumers.
    pub waiters: u64,
    /// Messages published in the interval.
    pub published: u64,
    /// Messages acked in the interval.
    pub completed: u64,
    /// Messages dead-lettered in the interval.
    pub dead_lettered: u64,
    /// Messages that ended cancelled in the interval.
    #[serde(default)]
    pub cancelled: u64,
    /// `completed` per second of the interval.
    pub throughput_per_sec: f64,
    /// Ready-to-delivery wait of the interval's deliveries, per priority (highest first).
    pub wait_ms: Vec<PriorityWait>,
    /// The same per group class (heavy, light, ungrouped), when producers use groups; absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_wait_ms: Vec<ClassWait>,
    /// Flows in the interval, when task types have children; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowSample>,
}

/// Flows within one sample interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSample {
    /// Parents waiting for their children at the sample's instant (summed over queues).
    pub waiting_children: u64,
    /// Flows added in the interval.
    pub started: u64,
    /// Flows whose root was acked in the interval.
    pub completed: u64,
    /// Flows whose root was dead-lettered in the interval.
    pub failed: u64,
    /// Flows whose root was cancelled in the interval.
    pub cancelled: u64,
    /// End-to-end latency of the flows completed in the interval.
    pub latency_ms: FlowInterval,
}

/// Latency percentiles of the flows completed within one interval.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInterval {
    /// Flows counted.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

/// Flows over the run: a flow is one task of a type with children and everything below it,
/// added whole; it ends when its root (the task that runs last) ends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowStats {
    /// Flows added.
    pub started: u64,
    /// Of those, completed: the root was acked.
    pub completed: u64,
    /// Of those, failed: the root was dead-lettered (a child failed under
    /// `on_child_failure: fail`, or the root itself ran out of retries).
    pub failed: u64,
    /// Of those, cancelled: the root was cancelled.
    pub cancelled: u64,
    /// Of those, not finished yet.
    pub running: u64,
    /// Completed flows in which some job failed (under `continue` or `ignore`).
    pub completed_with_failures: u64,
    /// Flows the engine refused (counted in `rejected_publishes` with all their tasks).
    pub rejected: u64,
    /// End-to-end latency of completed flows: from the flow's `AddFlow` to its root's ack.
    pub latency_ms: Percentiles,
}

/// Wait percentiles of one group class within one interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassWait {
    /// `heavy`, `light` or `ungrouped`.
    pub class: GroupClass,
    /// Deliveries counted.
    pub count: u64,
    /// Median wait.
    pub p50: u64,
    /// 99th percentile wait.
    pub p99: u64,
}

/// Totals and percentiles of one group class: the heavy group, the light groups together, or
/// the messages without a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupClassStats {
    /// `heavy`, `light` or `ungrouped`.
    pub class: GroupClass,
    /// Groups in the class: 1 for `heavy`, the largest producer `count` for `light`, 0 for
    /// `ungrouped`.
    pub groups: u32,
    /// Messages published in it.
    pub published: u64,
    /// Of those, acked.
    pub completed: u64,
    /// Of those, dead-lettered.
    pub dead_lettered: u64,
    /// Of those, cancelled.
    pub cancelled: u64,
    /// Publish-to-ack time of completed messages.
    pub latency_ms: Percentiles,
    /// Ready-to-delivery wait of every delivery (retries included).
    pub wait_ms: Percentiles,
}

/// Wait percentiles of one priority within one interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityWait {
    /// 0–9.
    pub priority: u8,
    /// Deliveries counted.
    pub count: u64,
    /// Median wait.
    pub p50: u64,
    /// 99th percentile wait.
    pub p99: u64,
}

/// Percentiles of a set of durations. `count`, `max` and `mean` cover every value; the
/// percentiles come from the sorted reservoir (exact while `count` ≤ the reservoir size).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values seen.
    pub count: u64,
    /// Mean of all values.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
}

/// Per-priority totals and percentiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorityStats {
    /// 0–9.
    pub priority: u8,
    /// Messages published with it.
    pub published: u64,
    /// Of those, acked.
    pub completed: u64,
    /// Of those, dead-lettered.
    pub dead_lettered: u64,
    /// Of those, cancelled.
    #[serde(default)]
    pub cancelled: u64,
    /// Publish-to-ack time of completed messages.
    pub latency_ms: Percentiles,
    /// Ready-to-delivery wait of every delivery (retries included).
    pub wait_ms: Percentiles,
}

/// One worker group's work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// The group's name.
    pub name: String,
    /// Workers in it.
    pub count: u32,
    /// Tasks acked (not counting cancelled ones).
    pub completed: u64,
    /// Tasks nacked after a failure.
    pub failed: u64,
    /// Tasks whose ack or nack settled them as cancelled: they were cancelled while the
    /// worker held them, so its work was wasted.
    #[serde(default)]
    pub cancelled: u64,
    /// Crashes.
    pub crashes: u64,
    /// Acks or nacks refused because the lease had ended (the task ran past its deadline).
    pub late: u64,
    /// Fraction of the group's time spent processing tasks.
    pub utilisation: f64,
}

/// Counts of dead-lettered messages by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterReasons {
    /// Nacked without requeue.
    pub rejected: u64,
    /// Out of retries.
    pub max_retries_exceeded: u64,
    /// TTL passed.
    pub expired: u64,
    /// A flow parent whose child failed under `on_child_failure: fail` (absent when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub child_failed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What became of the cancellations the simulator sent (task types' `cancel`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelStats {
    /// `Cancel` commands sent.
    pub sent: u64,
    /// Of those, answered `in_flight`: a worker held the job, and its ack, nack or lease
    /// expiry settled it as cancelled.
    pub in_flight: u64,
    /// Of those, refused because the job had already finished (completed, dead-lettered).
    pub already_finished: u64,
    /// Cancellations drawn but not scheduled because 1,000,000 were already pending.
    pub skipped: u64,
}

/// Totals over the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Virtual time simulated so far.
    pub simulated_ms: u64,
    /// Messages published (follow-ups included).
    pub published: u64,
    /// Messages acked.
    pub completed: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Why they were dead-lettered.
    pub dead_letter_reasons: DeadLetterReasons,
    /// Messages removed by purge.
    pub purged: u64,
    /// Messages that ended cancelled (removed at once, or settled when their delivery ended).
    #[serde(default)]
    pub cancelled: u64,
    /// The simulator's cancellations (all zero in a replay).
    #[serde(default)]
    pub cancels: CancelStats,
    /// Published and not yet acked, dead-lettered, cancelled or purged: ready, delayed or in
    /// flight.
    pub still_in_system: u64,
    /// Deliveries (first attempts and retries).
    pub deliveries: u64,
    /// Nacks.
    pub nacked: u64,
    /// Retries scheduled (after a nack or a lease expiry).
    pub retries: u64,
    /// Leases that ran out.
    pub lease_expired: u64,
    /// Publishes the engine refused (e.g. `queue_full`).
    pub rejected_publishes: u64,
    /// Per priority, highest first.
    pub by_priority: Vec<PriorityStats>,
    /// Per group class (heavy, light, ungrouped), when producers use groups; absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_group_class: Vec<GroupClassStats>,
    /// Flows, when task types have children; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowStats>,
    /// Per worker group.
    pub workers: Vec<WorkerStats>,
    /// Fraction of all workers' time spent processing tasks.
    pub utilisation: f64,
    /// Commands handed to the engine.
    pub commands: u64,
    /// Discrete events processed: actor wake-ups, timer firings and engine events.
    pub events_processed: u64,
    /// xxh3 of the `(now, command, reply, events)` trace, 16 hex digits.
    pub run_hash: String,
}
