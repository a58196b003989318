//! Turns the engine's `Observed` events into counts and percentiles.
//!
//! Percentile storage is bounded: each series keeps a uniform reservoir sample (Vitter's
//! algorithm R) of at most `reservoir_size` values, drawn with its own seeded PRNG so that
//! sampling never perturbs the workload. Percentiles are computed exactly from the sorted
//! reservoir (nearest rank), so they are exact while a series has at most that many values.

use rustc_hash::FxHashMap;

use super::class_metrics::{ClassMetrics, Ending};
use super::flow_metrics::{FlowMetrics, JobEnd};
use super::grouping::GroupClass;
use super::report::{
    ClassWait, DeadLetterReasons, FlowSample, FlowStats, GroupClassStats, Percentiles,
    PriorityStats, PriorityWait,
};
use crate::{DeadLetterReason, MessageId, Observed, ObservedKind, Rng};

/// A bounded uniform sample of a stream of durations, with exact count, max and sum.
#[derive(Clone, Debug)]
pub(crate) struct Reservoir {
    cap: usize,
    seen: u64,
    sum: u128,
    max: u64,
    values: Vec<u64>,
}

impl Reservoir {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: 0,
            sum: 0,
            max: 0,
            values: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, value: u64, rng: &mut Rng) {
        self.seen += 1;
        self.sum += u128::from(value);
        self.max = self.max.max(value);
        if self.values.len() < self.cap {
            self.values.push(value);
        } else {
            let slot = rng.next_u64() % self.seen;
            if slot < self.cap as u64 {
                self.values[slot as usize] = value;
            }
        }
    }

    /// Values recorded.
    pub(crate) fn seen(&self) -> u64 {
        self.seen
    }

    /// Count, mean, p50/p90/p99 (nearest rank over the sorted sample) and max.
    pub(crate) fn percentiles(&self) -> Percentiles {
        if self.seen == 0 {
            return Percentiles::default();
        }
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        Percentiles {
            count: self.seen,
            mean: self.sum as f64 / self.seen as f64,
            p50: rank(&sorted, 50),
            p90: rank(&sorted, 90),
            p99: rank(&sorted, 99),
            max: self.max,
        }
    }
}

/// Nearest-rank percentile: the smallest value with at least `p`% of values at or below it.
fn rank(sorted: &[u64], p: u64) -> u64 {
    let n = sorted.len() as u64;
    let idx = (p * n).div_ceil(100).max(1) - 1;
    sorted[idx as usize]
}

/// Per-priority counters and samples.
#[derive(Clone, Debug)]
struct PriorityMetrics {
    published: u64,
    completed: u64,
    dead_lettered: u64,
    cancelled: u64,
    latency: Reservoir,
    wait: Reservoir,
    interval_wait: Reservoir,
}

/// Everything the run has counted.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    rng: Rng,
    interval_cap: usize,
    by_priority: Vec<PriorityMetrics>,
    /// Publish time of every message still in the system (to measure publish→ack latency).
    open: FxHashMap<MessageId, u64>,
    pub(crate) published: u64,
    pub(crate) completed: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) cancelled: u64,
    pub(crate) reasons: DeadLetterReasons,
    pub(crate) purged: u64,
    pub(crate) deliveries: u64,
    pub(crate) nacked: u64,
    pub(crate) retries: u64,
    pub(crate) lease_expired: u64,
    /// Counts at the previous sample (published, completed, dead-lettered, cancelled), to
    /// report per-interval figures.
    pub(crate) last: [u64; 4],
    /// Per group class, when producers use groups.
    classes: Option<ClassMetrics>,
    /// Flows, when task types have children.
    flows: Option<FlowMetrics>,
}

impl Metrics {
    pub(crate) fn new(seed: u64, reservoir_size: usize) -> Self {
        let interval_cap = reservoir_size.min(2_000);
        let one = PriorityMetrics {
            published: 0,
            completed: 0,
            dead_lettered: 0,
            cancelled: 0,
            latency: Reservoir::new(reservoir_size),
            wait: Reservoir::new(reservoir_size),
            interval_wait: Reservoir::new(interval_cap),
        };
        Self {
            rng: Rng::new(seed ^ 0x6d65_7472_6963_7321),
            interval_cap,
            by_priority: vec![one; 10],
            open: FxHashMap::default(),
            published: 0,
            completed: 0,
            dead_lettered: 0,
            cancelled: 0,
            reasons: DeadLetterReasons::default(),
            purged: 0,
            deliveries: 0,
            nacked: 0,
            retries: 0,
            lease_expired: 0,
            last: [0; 4],
            classes: None,
            flows: None,
        }
    }

    /// Keeps flow figures from now on.
    pub(crate) fn keep_flows(&mut self, seed: u64, reservoir_size: usize) {
        self.flows = Some(FlowMetrics::new(seed, reservoir_size, self.interval_cap));
    }

    /// The simulator added a flow at `now` (its jobs in pre-order, each with whether it is a
    /// parent).
    pub(crate) fn flow_added(&mut self, now: u64, jobs: &[(MessageId, bool)]) {
        if let Some(f) = &mut self.flows {
            f.added(now, jobs);
        }
    }

    /// The engine refused a flow.
    pub(crate) fn flow_rejected(&mut self) {
        if let Some(f) = &mut self.flows {
            f.rejected();
        }
    }

    /// Whether `id` is a job of an unfinished flow.
    pub(crate) fn is_flow_job(&self, id: MessageId) -> bool {
        self.flows.as_ref().is_some_and(|f| f.is_member(id))
    }

    /// A flow job ended. A parent that ended while it waited for its children (failed or
    /// cancelled with its flow) never entered its queue: it counts as published now, so that
    /// published = completed + dead-lettered + cancelled + purged + still in the system.
    fn flow_job_ended(&mut self, o: &Observed, how: JobEnd) {
        let (Some(f), Some(id)) = (&mut self.flows, o.message_id) else {
            return;
        };
        if f.ended(id, how, o.at.0) {
            self.published += 1;
            self.by_priority[usize::from(o.priority.min(9))].published += 1;
        }
    }

    /// Keeps figures per group class from now on, listing `listed` (with their group counts)
    /// in the report.
    pub(crate) fn keep_group_classes(
        &mut self,
        seed: u64,
        reservoir_size: usize,
        listed: Vec<(GroupClass, u32)>,
    ) {
        self.classes = Some(ClassMetrics::new(
            seed,
            reservoir_size,
            self.interval_cap,
            listed,
        ));
    }

    /// The simulator published `id` with a group of class `class`.
    pub(crate) fn classify(&mut self, id: MessageId, class: GroupClass) {
        if let Some(c) = &mut self.classes {
            c.classify(id, class);
        }
    }

    fn class_ended(&mut self, id: Option<MessageId>, how: Ending) {
        if let Some(c) = &mut self.classes {
            c.ended(id, how);
        }
    }

    /// Accounts one message state change.
    pub(crate) fn observe(&mut self, o: &Observed) {
        let p = &mut self.by_priority[usize::from(o.priority.min(9))];
        let at = o.at.0;
        match o.kind {
            ObservedKind::Published => {
                self.published += 1;
                p.published += 1;
                if let Some(id) = o.message_id {
                    self.open.insert(id, at);
                    if let Some(f) = &mut self.flows {
                        f.published(id);
                    }
                }
            }
            ObservedKind::Delivered => {
                self.deliveries += 1;
                let wait = o.ms.unwrap_or(0);
                p.wait.record(wait, &mut self.rng);
                p.interval_wait.record(wait, &mut self.rng);
                if let Some(c) = &mut self.classes {
                    c.delivered(o.message_id, wait);
                }
            }
            ObservedKind::Acked => {
                self.completed += 1;
                p.completed += 1;
                let latency = o
                    .message_id
                    .and_then(|id| self.open.remove(&id))
                    .map(|published| at.saturating_sub(published));
                if let Some(ms) = latency {
                    p.latency.record(ms, &mut self.rng);
                }
                self.class_ended(o.message_id, Ending::Acked(latency));
                self.flow_job_ended(o, JobEnd::Acked);
            }
            ObservedKind::DeadLettered => {
                self.flow_job_ended(o, JobEnd::DeadLettered);
                let p = &mut self.by_priority[usize::from(o.priority.min(9))];
                self.dead_lettered += 1;
                p.dead_lettered += 1;
                if let Some(id) = o.message_id {
                    self.open.remove(&id);
                }
                self.class_ended(o.message_id, Ending::DeadLettered);
                match o.reason {
                    Some(DeadLetterReason::Rejected) => self.reasons.rejected += 1,
                    Some(DeadLetterReason::Expired) => self.reasons.expired += 1,
                    Some(DeadLetterReason::ChildFailed) => self.reasons.child_failed += 1,
                    _ => self.reasons.max_retries_exceeded += 1,
                }
            }
            ObservedKind::Nacked => self.nacked += 1,
            ObservedKind::RetryScheduled => self.retries += 1,
            ObservedKind::LeaseExpired => self.lease_expired += 1,
            ObservedKind::Purged => self.purged += o.count.unwrap_or(0),
            ObservedKind::Redriven => {
                // A redriven message is back in the system; its latency restarts.
                self.dead_lettered_back(o);
            }
            ObservedKind::Expired => {}
            // Cancelled while waiting, or settled as cancelled when its delivery ended (a
            // worker's ack of a cancelled job lands here, not in `completed`).
            ObservedKind::Cancelled => {
                self.flow_job_ended(o, JobEnd::Cancelled);
                let p = &mut self.by_priority[usize::from(o.priority.min(9))];
                self.cancelled += 1;
                p.cancelled += 1;
                if let Some(id) = o.message_id {
                    self.open.remove(&id);
                }
                self.class_ended(o.message_id, Ending::Cancelled);
            }
        }
    }

    fn dead_lettered_back(&mut self, o: &Observed) {
        if let Some(id) = o.message_id {
            self.open.insert(id, o.at.0);
            self.published += 1;
            self.by_priority[usize::from(o.priority.min(9))].published += 1;
        }
    }

    /// Messages published and not yet acked, dead-lettered, cancelled or purged.
    pub(crate) fn still_in_system(&self) -> u64 {
        self.published
            .saturating_sub(self.completed + self.dead_lettered + self.cancelled + self.purged)
    }

    /// Per-interval wait percentiles, highest priority first; resets the interval samples.
    pub(crate) fn take_interval_waits(&mut self) -> Vec<PriorityWait> {
        let mut out = Vec::new();
        for (priority, p) in self.by_priority.iter_mut().enumerate().rev() {
            if p.interval_wait.seen == 0 {
                continue;
            }
            let pc = p.interval_wait.percentiles();
            out.push(PriorityWait {
                priority: priority as u8,
                count: pc.count,
                p50: pc.p50,
                p99: pc.p99,
            });
            p.interval_wait = Reservoir::new(self.interval_cap);
        }
        out
    }

    /// Per-interval wait percentiles per group class (empty without groups); resets them.
    pub(crate) fn take_interval_class_waits(&mut self) -> Vec<ClassWait> {
        self.classes
            .as_mut()
            .map_or_else(Vec::new, ClassMetrics::take_interval_waits)
    }

    /// The interval's flow figures (`None` without flows); resets them.
    pub(crate) fn take_interval_flows(&mut self, waiting_children: u64) -> Option<FlowSample> {
        (self.flows.as_mut()).map(|f| f.take_interval(waiting_children))
    }

    /// Flow totals (`None` without flows).
    pub(crate) fn flow_stats(&self) -> Option<FlowStats> {
        self.flows.as_ref().map(FlowMetrics::stats)
    }

    /// Totals per group class (empty without groups).
    pub(crate) fn group_class_stats(&self) -> Vec<GroupClassStats> {
        self.classes
            .as_ref()
            .map_or_else(Vec::new, |c| c.stats(self.published))
    }

    /// Totals per priority that saw any message, highest first.
    pub(crate) fn priority_stats(&self) -> Vec<PriorityStats> {
        let mut out = Vec::new();
        for (priority, p) in self.by_priority.iter().enumerate().rev() {
            if p.published == 0 && p.wait.seen == 0 {
                continue;
            }
            out.push(PriorityStats {
                priority: priority as u8,
                published: p.published,
                completed: p.completed,
                dead_lettered: p.dead_lettered,
                cancelled: p.cancelled,
                latency_ms: p.latency.percentiles(),
                wait_ms: p.wait.percentiles(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_below_the_cap() {
        let mut r = Reservoir::new(1000);
        let mut rng = Rng::new(1);
        for v in (1..=100).rev() {
            r.record(v, &mut rng);
        }
        let p = r.percentiles();
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50, 90, 99, 100)
        );
        assert!((p.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn reservoir_is_bounded_and_roughly_uniform() {
        let mut r = Reservoir::new(1000);
        let mut rng = Rng::new(2);
        for v in 0..100_000 {
            r.record(v, &mut rng);
        }
        assert_eq!(r.values.len(), 1000);
        let p = r.percentiles();
        assert_eq!(p.count, 100_000);
        assert_eq!(p.max, 99_999);
        assert!((45_000..55_000).contains(&p.p50), "p50 {}", p.p50);
    }
}
