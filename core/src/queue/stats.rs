//! Counters, consumer tracking and the wait-time window behind `Stats`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::QueueStats;
use crate::time::Millis;

use super::Queue;

/// A consumer counts as present for this long after it was last seen.
pub(crate) const CONSUMER_SEEN_MS: u64 = 30_000;
/// Deliveries the average wait time is taken over.
const WAIT_WINDOW: usize = 1_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub(crate) published: u64,
    pub(crate) consumed: u64,
    pub(crate) acked: u64,
    pub(crate) nacked: u64,
    pub(crate) lease_expired: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) expired: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) cancelled: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Ready-to-delivery times of the last `WAIT_WINDOW` deliveries, with their running sum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct WaitWindow {
    samples: VecDeque<u64>,
    sum: u64,
}

impl WaitWindow {
    pub(crate) fn record(&mut self, wait_ms: u64) {
        // A clock jump can make one wait enormous; capping a sample (at ~35 years) keeps the
        // sum of the window far from overflow.
        let wait_ms = wait_ms.min(1 << 40);
        if self.samples.len() == WAIT_WINDOW {
            self.sum -= self.samples.pop_front().unwrap_or(0);
        }
        self.samples.push_back(wait_ms);
        self.sum += wait_ms;
    }

    fn mean(&self) -> f64 {
        if self.samples.is_empty() {
            0.0
        } else {
            self.sum as f64 / self.samples.len() as f64
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Consumer {
    /// Messages it holds leases on.
    pub(crate) held: u32,
    /// Its parked waiters.
    pub(crate) waiting: u32,
    /// Its attached sessions.
    pub(crate) attached: u32,
    pub(crate) last_seen: Millis,
}

/// Consumer ids seen by a queue, bounded by `max_consumers_per_queue`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Consumers {
    map: BTreeMap<Arc<str>, Consumer>,
}

impl Consumers {
    /// Records that `c` was seen now; a new id beyond the limit is refused once idle ids older
    /// than `CONSUMER_SEEN_MS` have been forgotten.
    pub(crate) fn touch(&mut self, c: &Arc<str>, now: Millis, limit: usize) -> Result<(), Error> {
        if let Some(entry) = self.map.get_mut(c) {
            entry.last_seen = now;
            return Ok(());
        }
        if self.map.len() >= limit {
            self.map.retain(|_, e| e.is_present(now));
            if self.map.len() >= limit {
                return Err(Error::limit("consumers per queue", limit as u64));
            }
        }
        self.map.insert(
            c.clone(),
            Consumer {
                last_seen: now,
                ..Consumer::default()
            },
        );
        Ok(())
    }

    pub(crate) fn held(&self, c: &Arc<str>) -> u32 {
        self.map.get(c).map_or(0, |e| e.held)
    }

    pub(crate) fn lease(&mut self, c: &Arc<str>, now: Millis) {
        let e = self.map.entry(c.clone()).or_default();
        e.held += 1;
        e.last_seen = now;
    }

    pub(crate) fn release(&mut self, c: &Arc<str>, now: Millis) {
        if let Some(e) = self.map.get_mut(c) {
            e.held = e.held.saturating_sub(1);
            e.last_seen = now;
        }
    }

    pub(crate) fn wait(&mut self, c: &Arc<str>, delta: i32) {
        let e = self.map.entry(c.clone()).or_default();
        e.waiting = e.waiting.saturating_add_signed(delta);
    }

    pub(crate) fn attach(&mut self, c: &Arc<str>, delta: i32) {
        let e = self.map.entry(c.clone()).or_default();
        e.attached = e.attached.saturating_add_signed(delta);
    }

    fn present(&self, now: Millis) -> u64 {
        self.map.values().filter(|e| e.is_present(now)).count() as u64
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn held_total(&self) -> u64 {
        self.map.values().map(|e| u64::from(e.held)).sum()
    }
}

impl Consumer {
    fn is_present(&self, now: Millis) -> bool {
        self.held > 0
            || self.waiting > 0
            || self.attached > 0
            || now.since(self.last_seen) < CONSUMER_SEEN_MS
    }
}

impl Queue {
    pub(crate) fn stats(&self, now: Millis) -> QueueStats {
        let grouped = self.flow.as_ref().map(|f| f.groups.heads());
        let oldest = self
            .ready
            .heads()
            .chain(grouped.into_iter().flatten())
            .map(|id| self.messages[&id].enqueued_at)
            .min()
            .map_or(0, |at| now.since(at));
        let c = &self.counters;
        let mut stats = QueueStats {
            queue: self.name.to_string(),
            depth: self.depth(),
            ready: self.ready_len(),
            delayed: self.delayed,
            in_flight: self.in_flight,
            dead_letter_count: self.dlq.len(),
            consumers: self.consumers.present(now),
            waiters: self.waiters().count() as u64,
            sessions: self.sessions.len() as u64,
            published_total: c.published,
            consumed_total: c.consumed,
            acked_total: c.acked,
            nacked_total: c.nacked,
            lease_expired_total: c.lease_expired,
            dead_lettered_total: c.dead_lettered,
            expired_total: c.expired,
            cancelled_total: c.cancelled,
            kept_jobs: self.kept.len(),
            schedules: self.schedules.len() as u64,
            dlq_dropped_total: self.dlq.dropped,
            avg_wait_time_ms: self.waits.mean(),
            oldest_ready_age_ms: oldest,
            bytes: self.held,
            server_held_bytes: 0,
            server_max_held_bytes: 0,
            config: self.config.clone(),
            ..QueueStats::default()
        };
        self.flow_stats(now, &mut stats);
        stats
    }
}
