//! The simulated world: the engine, producers and workers on one virtual clock.
//!
//! The loop jumps to the earliest of the engine's next timer, the next actor wake-up and the
//! next sample; it never ticks. At equal times, engine timers run first, then actors in the
//! order they were scheduled, then the sample, so a sample shows everything up to its instant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::dist::Dist;
use super::driver::Driver;
use super::metrics::Metrics;
use super::producer::{ProducerActor, TaskCatalog};
use super::report::{Report, Summary, WorkerStats};
use super::scenario::Scenario;
use super::worker::{GroupStats, WorkerActor};
use crate::{Command, Engine, Event, Rng, WaiterId};

/// Who an agenda entry wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Actor {
    Producer(u32),
    Worker(u32),
}

/// Derives an independent seed per actor (splitmix64), so adding a worker does not change what
/// the producers publish.
pub(crate) fn sub_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The whole simulation state.
pub(crate) struct World {
    pub(crate) scenario: Scenario,
    pub(crate) driver: Driver,
    /// Min-heap of `(time, schedule order, actor)`; each actor has at most one entry.
    agenda: BinaryHeap<Reverse<(u64, u64, Actor)>>,
    order: u64,
    producers: Vec<ProducerActor>,
    pub(crate) workers: Vec<WorkerActor>,
    pub(crate) groups: Vec<GroupStats>,
    pub(crate) waiters: BTreeMap<WaiterId, u32>,
    pub(crate) catalog: TaskCatalog,
    /// Service time per `[group][task type]`.
    pub(crate) services: Vec<Vec<Dist>>,
    /// Messages published so far by the simulator (numbers the bodies).
    pub(crate) tasks_made: u64,
    /// How far the clock has been run (`step`'s argument, capped at the duration).
    reached: u64,
}

impl World {
    /// Builds the world and creates the queue at time 0.
    pub(crate) fn new(scenario: Scenario) -> Result<Self, String> {
        scenario.validate()?;
        let seed = scenario.seed;
        let engine = Engine::new(scenario.engine.clone(), seed);
        let metrics = Metrics::new(seed, scenario.reservoir_size as usize);
        let mut driver = Driver::new(
            engine,
            metrics,
            0,
            scenario.sample_interval_ms,
            scenario.duration_ms,
        );
        let created = driver.handle(
            0,
            Command::CreateQueue {
                queue: scenario.queue.clone(),
                config: Some(scenario.queue_config.clone()),
            },
        );
        created.map_err(|e| format!("queue_config: {e}"))?;
        let mut world = Self {
            catalog: TaskCatalog::new(&scenario),
            services: service_table(&scenario),
            groups: vec![GroupStats::default(); scenario.workers.len()],
            producers: Vec::new(),
            workers: Vec::new(),
            waiters: BTreeMap::new(),
            agenda: BinaryHeap::new(),
            order: 0,
            tasks_made: 0,
            reached: 0,
            driver,
            scenario,
        };
        world.spawn_actors();
        Ok(world)
    }

    fn spawn_actors(&mut self) {
        let seed = self.scenario.seed;
        for (i, p) in self.scenario.producers.iter().enumerate() {
            let rng = Rng::new(sub_seed(seed, 1, i as u64));
            self.producers
                .push(ProducerActor::new(p, &self.scenario, rng));
        }
        for i in 0..self.producers.len() {
            if let Some(t) = self.producers[i].next_time() {
                self.schedule(t, Actor::Producer(i as u32));
            }
        }
        for (g, group) in self.scenario.workers.iter().enumerate() {
            for k in 0..group.count {
                let index = self.workers.len() as u64;
                let rng = Rng::new(sub_seed(seed, 2, index));
                self.workers
                    .push(WorkerActor::new(g, format!("{}-{k}", group.name), rng));
            }
        }
        // Every worker starts by consuming at time 0, in creation order.
        for w in 0..self.workers.len() {
            self.schedule(0, Actor::Worker(w as u32));
        }
    }

    /// Wakes `actor` at `at`.
    pub(crate) fn schedule(&mut self, at: u64, actor: Actor) {
        self.order += 1;
        self.agenda.push(Reverse((at, self.order, actor)));
    }

    /// Runs every event at or before `until` (capped at the scenario's duration).
    pub(crate) fn step(&mut self, until: u64) {
        let until = until.min(self.scenario.duration_ms);
        loop {
            self.deliver_inbox();
            let actor_t = self.agenda.peek().map(|Reverse((t, _, _))| *t);
            let t = match (actor_t, self.driver.next_internal()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if t > until {
                break;
            }
            if self.driver.timer_due(t) {
                self.driver.fire_timers(t);
            } else if actor_t == Some(t) {
                let Some(Reverse((_, _, actor))) = self.agenda.pop() else {
                    break;
                };
                self.driver.events_processed += 1;
                self.wake(t, actor);
            } else {
                self.driver.sample(t);
            }
        }
        self.reached = self.reached.max(until);
    }

    fn wake(&mut self, now: u64, actor: Actor) {
        match actor {
            Actor::Producer(i) => self.wake_producer(now, i as usize),
            Actor::Worker(i) => self.wake_worker(now, i),
        }
    }

    fn wake_producer(&mut self, now: u64, i: usize) {
        let n = self.producers[i].tasks();
        let mut messages = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (kind, priority) = self.producers[i].pick();
            self.tasks_made += 1;
            let made = self.tasks_made;
            messages.push(
                self.catalog
                    .message(kind, priority, made, self.producers[i].rng()),
            );
        }
        let queue = self.scenario.queue.clone();
        let cmd = if n == 1 {
            let message = messages.pop().expect("one message");
            Command::Publish { queue, message }
        } else {
            Command::PublishBatch { queue, messages }
        };
        if self.driver.handle(now, cmd).is_err() {
            self.driver.rejected_publishes += u64::from(n);
        }
        if let Some(t) = self.producers[i].next_time() {
            self.schedule(t, Actor::Producer(i as u32));
        }
    }

    /// Hands long-poll answers to the workers that were waiting for them.
    fn deliver_inbox(&mut self) {
        if self.driver.inbox.is_empty() {
            return;
        }
        let now = self.driver.now;
        for event in std::mem::take(&mut self.driver.inbox) {
            let (waiter, messages) = match event {
                Event::Delivered {
                    waiter_id,
                    messages,
                } => (waiter_id, messages),
                Event::WaitTimedOut { waiter_id } => (waiter_id, Vec::new()),
                _ => continue,
            };
            let Some(w) = self.waiters.remove(&waiter) else {
                continue;
            };
            if messages.is_empty() {
                self.workers[w as usize].idle();
                self.schedule(now, Actor::Worker(w));
            } else {
                self.start_batch(now, w, messages);
            }
        }
    }

    /// The report so far.
    pub(crate) fn report(&self) -> Report {
        let d = &self.driver;
        let elapsed = self.reached.max(1);
        let mut busy_total = 0u64;
        let mut workers_total = 0u64;
        let workers = self
            .groups
            .iter()
            .zip(&self.scenario.workers)
            .map(|(g, spec)| {
                busy_total += g.busy_ms;
                workers_total += u64::from(spec.count);
                WorkerStats {
                    name: spec.name.clone(),
                    count: spec.count,
                    completed: g.completed,
                    failed: g.failed,
                    crashes: g.crashes,
                    late: g.late,
                    utilisation: ratio(g.busy_ms, u64::from(spec.count) * elapsed),
                }
            })
            .collect();
        Report {
            name: self.scenario.name.clone(),
            seed: self.scenario.seed.to_string(),
            finished: d.finished(),
            sample_interval_ms: self.scenario.sample_interval_ms,
            series: d.series.clone(),
            summary: Summary {
                simulated_ms: self.reached,
                utilisation: ratio(busy_total, workers_total * elapsed),
                workers,
                ..summary_of(d)
            },
        }
    }
}

/// Summary fields that come from the driver alone (replay uses it as is).
pub(crate) fn summary_of(d: &Driver) -> Summary {
    let m = &d.metrics;
    Summary {
        simulated_ms: d.now,
        published: m.published,
        completed: m.completed,
        dead_lettered: m.dead_lettered,
        dead_letter_reasons: m.reasons.clone(),
        purged: m.purged,
        still_in_system: m.still_in_system(),
        deliveries: m.deliveries,
        nacked: m.nacked,
        retries: m.retries,
        lease_expired: m.lease_expired,
        rejected_publishes: d.rejected_publishes,
        by_priority: m.priority_stats(),
        workers: Vec::new(),
        utilisation: 0.0,
        commands: d.commands,
        events_processed: d.events_processed,
        run_hash: d.run_hash(),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn service_table(scenario: &Scenario) -> Vec<Vec<Dist>> {
    scenario
        .workers
        .iter()
        .map(|w| {
            scenario
                .task_types
                .iter()
                .map(|t| w.service.get(&t.name).unwrap_or(&t.service).clone())
                .collect()
        })
        .collect()
}
