//! Counts and waits per group class (the heavy group, the light groups, the ungrouped
//! messages), kept only when the scenario's producers use groups.
//!
//! The engine's `Observed` events do not name a message's group, so the simulator tells these
//! metrics the class of each grouped message it publishes; an id they were not told about is
//! ungrouped. The map holds only grouped messages still in the system. The reservoirs draw from
//! a PRNG of their own, so keeping these figures changes none of the per-priority ones.

use rustc_hash::FxHashMap;

use super::grouping::GroupClass;
use super::metrics::Reservoir;
use super::report::{ClassWait, GroupClassStats};
use crate::{MessageId, Rng};

/// One class's counters and samples.
#[derive(Clone, Debug)]
struct ClassCounts {
    published: u64,
    completed: u64,
    dead_lettered: u64,
    cancelled: u64,
    latency: Reservoir,
    wait: Reservoir,
    interval_wait: Reservoir,
}

/// How a message left the system.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ending {
    Acked(Option<u64>),
    DeadLettered,
    Cancelled,
}

/// Everything counted per class.
#[derive(Clone, Debug)]
pub(crate) struct ClassMetrics {
    rng: Rng,
    interval_cap: usize,
    /// The class of every grouped message still in the system.
    class_of: FxHashMap<MessageId, GroupClass>,
    counts: [ClassCounts; 3],
    /// The classes the report lists, with their group counts.
    listed: Vec<(GroupClass, u32)>,
}

impl ClassMetrics {
    pub(crate) fn new(
        seed: u64,
        reservoir_size: usize,
        interval_cap: usize,
        listed: Vec<(GroupClass, u32)>,
    ) -> Self {
        let one = ClassCounts {
            published: 0,
            completed: 0,
            dead_lettered: 0,
            cancelled: 0,
            latency: Reservoir::new(reservoir_size),
            wait: Reservoir::new(reservoir_size),
            interval_wait: Reservoir::new(interval_cap),
        };
        Self {
            rng: Rng::new(seed ^ 0x6772_6f75_7073_2121),
            interval_cap,
            class_of: FxHashMap::default(),
            counts: [one.clone(), one.clone(), one],
            listed,
        }
    }

    fn class(&self, id: Option<MessageId>) -> GroupClass {
        id.and_then(|id| self.class_of.get(&id).copied())
            .unwrap_or(GroupClass::Ungrouped)
    }

    /// The simulator published `id` in a group of class `class`.
    pub(crate) fn classify(&mut self, id: MessageId, class: GroupClass) {
        if class != GroupClass::Ungrouped {
            self.class_of.insert(id, class);
            self.counts[class.index()].published += 1;
        }
    }

    /// A delivery after `wait` ms ready.
    pub(crate) fn delivered(&mut self, id: Option<MessageId>, wait: u64) {
        let c = &mut self.counts[self.class(id).index()];
        c.wait.record(wait, &mut self.rng);
        c.interval_wait.record(wait, &mut self.rng);
    }

    /// The message left the system.
    pub(crate) fn ended(&mut self, id: Option<MessageId>, how: Ending) {
        let class = self.class(id);
        if let Some(id) = id {
            self.class_of.remove(&id);
        }
        let c = &mut self.counts[class.index()];
        match how {
            Ending::Acked(latency) => {
                c.completed += 1;
                if let Some(ms) = latency {
                    c.latency.record(ms, &mut self.rng);
                }
            }
            Ending::DeadLettered => c.dead_lettered += 1,
            Ending::Cancelled => c.cancelled += 1,
        }
    }

    /// Per-interval waits of the listed classes that had deliveries; resets the interval.
    pub(crate) fn take_interval_waits(&mut self) -> Vec<ClassWait> {
        let mut out = Vec::new();
        for &(class, _) in &self.listed {
            let c = &mut self.counts[class.index()];
            if c.interval_wait.seen() == 0 {
                continue;
            }
            let pc = c.interval_wait.percentiles();
            out.push(ClassWait {
                class,
                count: pc.count,
                p50: pc.p50,
                p99: pc.p99,
            });
            c.interval_wait = Reservoir::new(self.interval_cap);
        }
        out
    }

    /// Totals of every listed class; the ungrouped ones published are what the grouped ones
    /// leave of `published` (schedule runs are published by engine timers, unseen here).
    pub(crate) fn stats(&self, published: u64) -> Vec<GroupClassStats> {
        let grouped = self.counts[GroupClass::Heavy.index()].published
            + self.counts[GroupClass::Light.index()].published;
        self.listed
            .iter()
            .map(|&(class, groups)| {
                let c = &self.counts[class.index()];
                GroupClassStats {
                    class,
                    groups,
                    published: match class {
                        GroupClass::Ungrouped => published.saturating_sub(grouped),
                        _ => c.published,
                    },
                    completed: c.completed,
                    dead_lettered: c.dead_lettered,
                    cancelled: c.cancelled,
                    latency_ms: c.latency.percentiles(),
                    wait_ms: c.wait.percentiles(),
                }
            })
            .collect()
    }
}
