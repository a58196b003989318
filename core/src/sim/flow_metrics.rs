//! Flow figures, kept only when some task type has children: how many flows started,
//! completed, failed and were cancelled, and the end-to-end latency of each completed one —
//! from the `AddFlow` that created it to the ack of its root, the job that runs last.
//!
//! The simulator tells these metrics each flow it adds (its job ids, from the engine's reply);
//! the engine's `Observed` events then tell how each job ends. A flow is done when its root
//! ends: `completed` when the root is acked, `failed` when it is dead-lettered (reason
//! `child_failed` when a child failed under `on_child_failure: fail`, or its own retries ran
//! out), `cancelled` when it is cancelled. A flow that completes although some of its jobs
//! failed (`continue` or `ignore`) counts in `completed_with_failures` as well. The maps hold
//! only jobs of unfinished flows; the reservoirs draw from a PRNG of their own.

use rustc_hash::{FxHashMap, FxHashSet};

use super::metrics::Reservoir;
use super::report::{FlowInterval, FlowSample, FlowStats};
use crate::{MessageId, Rng};

/// How a flow job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobEnd {
    Acked,
    DeadLettered,
    Cancelled,
}

/// Counts over the run or over one sample interval.
#[derive(Clone, Debug)]
struct Counts {
    started: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
    latency: Reservoir,
}

impl Counts {
    fn new(cap: usize) -> Self {
        Self {
            started: 0,
            completed: 0,
            failed: 0,
            cancelled: 0,
            latency: Reservoir::new(cap),
        }
    }
}

/// Everything counted about flows.
#[derive(Clone, Debug)]
pub(crate) struct FlowMetrics {
    rng: Rng,
    interval_cap: usize,
    /// Unfinished flows by root job: when the flow was added, and whether a job of it failed.
    roots: FxHashMap<MessageId, (u64, bool)>,
    /// The root of every unfinished job of an unfinished flow, root aside.
    jobs: FxHashMap<MessageId, MessageId>,
    /// Parents still waiting for their children (not yet published to their queue).
    waiting: FxHashSet<MessageId>,
    total: Counts,
    interval: Counts,
    completed_with_failures: u64,
    rejected: u64,
}

impl FlowMetrics {
    pub(crate) fn new(seed: u64, reservoir_size: usize, interval_cap: usize) -> Self {
        Self {
            rng: Rng::new(seed ^ 0x666c_6f77_7321_2121),
            interval_cap,
            roots: FxHashMap::default(),
            jobs: FxHashMap::default(),
            waiting: FxHashSet::default(),
            total: Counts::new(reservoir_size),
            interval: Counts::new(interval_cap),
            completed_with_failures: 0,
            rejected: 0,
        }
    }

    /// A flow was added at `now`: its jobs in pre-order (the root first), each with whether
    /// it is a parent.
    pub(crate) fn added(&mut self, now: u64, jobs: &[(MessageId, bool)]) {
        let Some(&(root, _)) = jobs.first() else {
            return;
        };
        self.roots.insert(root, (now, false));
        for &(id, parent) in jobs {
            if id != root {
                self.jobs.insert(id, root);
            }
            if parent {
                self.waiting.insert(id);
            }
        }
        self.total.started += 1;
        self.interval.started += 1;
    }

    /// The engine refused a flow.
    pub(crate) fn rejected(&mut self) {
        self.rejected += 1;
    }

    /// Whether `id` is a job of an unfinished flow.
    pub(crate) fn is_member(&self, id: MessageId) -> bool {
        self.roots.contains_key(&id) || self.jobs.contains_key(&id)
    }

    /// A job entered its queue: a parent stops waiting.
    pub(crate) fn published(&mut self, id: MessageId) {
        self.waiting.remove(&id);
    }

    /// A job ended; returns true when it was a parent that never entered its queue (it failed
    /// or was cancelled while it waited, and counts as published only now).
    pub(crate) fn ended(&mut self, id: MessageId, how: JobEnd, at: u64) -> bool {
        let never_queued = self.waiting.remove(&id);
        if let Some(root) = self.jobs.remove(&id) {
            if how != JobEnd::Acked
                && let Some(flow) = self.roots.get_mut(&root)
            {
                flow.1 = true;
            }
            return never_queued;
        }
        let Some((added, failures)) = self.roots.remove(&id) else {
            return never_queued;
        };
        match how {
            JobEnd::Acked => {
                let ms = at.saturating_sub(added);
                for c in [&mut self.total, &mut self.interval] {
                    c.completed += 1;
                    c.latency.record(ms, &mut self.rng);
                }
                if failures {
                    self.completed_with_failures += 1;
                }
            }
            JobEnd::DeadLettered => {
                self.total.failed += 1;
                self.interval.failed += 1;
            }
            JobEnd::Cancelled => {
                self.total.cancelled += 1;
                self.interval.cancelled += 1;
            }
        }
        never_queued
    }

    /// The interval's figures, with `waiting_children` read from the queues; resets them.
    pub(crate) fn take_interval(&mut self, waiting_children: u64) -> FlowSample {
        let c = std::mem::replace(&mut self.interval, Counts::new(self.interval_cap));
        let p = c.latency.percentiles();
        FlowSample {
            waiting_children,
            started: c.started,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
            latency_ms: FlowInterval {
                count: p.count,
                p50: p.p50,
                p99: p.p99,
            },
        }
    }

    /// Totals over the run so far.
    pub(crate) fn stats(&self) -> FlowStats {
        let t = &self.total;
        FlowStats {
            started: t.started,
            completed: t.completed,
            failed: t.failed,
            cancelled: t.cancelled,
            running: self.roots.len() as u64,
            completed_with_failures: self.completed_with_failures,
            rejected: self.rejected,
            latency_ms: t.latency.percentiles(),
        }
    }
}
