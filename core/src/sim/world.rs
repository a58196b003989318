//! The simulated world: the engine, producers and workers on one virtual clock.
//!
//! The loop jumps to the earliest of the engine's next timer, the next actor wake-up and the
//! next sample; it never ticks. At equal times, engine timers run first, then actors in the
//! order they were scheduled, then the sample, so a sample shows everything up to its instant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::cancel::Canceller;
use super::dist::Dist;
use super::driver::Driver;
use super::grouping::GroupClass;
use super::metrics::Metrics;
use super::producer::{ProducerActor, TaskCatalog, schedule_command};
use super::report::{CancelStats, Report, Summary, WorkerStats};
use super::scenario::{Arrival, Scenario, queue_config_error};
use super::worker::{GroupStats, WorkerActor};
use crate::{Command, Engine, Event, MessageId, Rng, WaiterId};

/// Who an agenda entry wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Actor {
    Producer(u32),
    Worker(u32),
    /// A cancellation of this job (of this task type) is due.
    Cancel(MessageId, u32),
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

/// What the actors act on: the scenario, the engine (through the driver), the agenda and the
/// shared tallies. Each actor's own state stays in the actor; its methods take the stage.
pub(crate) struct Stage {
    pub(crate) scenario: Scenario,
    pub(crate) driver: Driver,
    /// Min-heap of `(time, schedule order, actor)`; each actor has at most one entry.
    agenda: BinaryHeap<Reverse<(u64, u64, Actor)>>,
    order: u64,
    pub(crate) groups: Vec<GroupStats>,
    /// Which worker each parked waiter belongs to.
    pub(crate) waiters: BTreeMap<WaiterId, u32>,
    pub(crate) catalog: TaskCatalog,
    /// Service time per `[group][task type]`.
    pub(crate) services: Vec<Vec<Dist>>,
    /// Messages published so far by the simulator (numbers the bodies).
    pub(crate) tasks_made: u64,
    /// Task types' cancellations.
    pub(crate) canceller: Canceller,
}

impl Stage {
    /// Wakes `actor` at `at`.
    pub(crate) fn schedule(&mut self, at: u64, actor: Actor) {
        self.order += 1;
        self.agenda.push(Reverse((at, self.order, actor)));
    }
}

/// The whole simulation state: the stage and the actors on it.
pub(crate) struct World {
    pub(crate) stage: Stage,
    producers: Vec<ProducerActor>,
    workers: Vec<WorkerActor>,
    /// How far the clock has been run (`step`'s argument, capped at the duration).
    reached: u64,
}

impl World {
    /// Builds the world, creates the queue and puts the producers' schedules at time 0.
    pub(crate) fn new(scenario: Scenario) -> Result<Self, String> {
        scenario.validate()?;
        let seed = scenario.seed;
        let engine = Engine::new(scenario.engine.clone(), seed);
        let mut metrics = Metrics::new(seed, scenario.reservoir_size as usize);
        if let Some(listed) = group_classes(&scenario) {
            metrics.keep_group_classes(seed, scenario.reservoir_size as usize, listed);
        }
        if scenario.has_flows() {
            metrics.keep_flows(seed, scenario.reservoir_size as usize);
        }
        let mut driver = Driver::new(
            engine,
            metrics,
            0,
            scenario.sample_interval_ms,
            scenario.duration_ms,
        );
        for queue in scenario.queues() {
            let created = driver.handle(
                0,
                Command::CreateQueue {
                    queue: queue.to_owned(),
                    config: Some(Box::new(scenario.queue_config.clone())),
                },
            );
            created.map_err(queue_config_error)?;
        }
        let catalog = TaskCatalog::new(&scenario);
        for (i, p) in scenario.producers.iter().enumerate() {
            if let Some(cmd) = schedule_command(i, p, &scenario, &catalog) {
                driver
                    .handle(0, cmd)
                    .map_err(|e| format!("producers[{i}] ({}).arrival: {e}", p.name))?;
            }
        }
        let canceller = Canceller::new(&scenario, Rng::new(sub_seed(seed, 3, 0)));
        // Schedule runs are published by engine timers: the driver keeps their ids, so that
        // their cancellations can be drawn.
        let scheduled =
            (scenario.producers.iter()).any(|p| matches!(p.arrival, Arrival::Schedule { .. }));
        if scheduled && canceller.active() {
            driver.timer_published = Some(Vec::new());
        }
        let stage = Stage {
            catalog,
            canceller,
            services: service_table(&scenario),
            groups: vec![GroupStats::default(); scenario.workers.len()],
            waiters: BTreeMap::new(),
            agenda: BinaryHeap::new(),
            order: 0,
            tasks_made: 0,
            driver,
            scenario,
        };
        let mut world = Self {
            stage,
            producers: Vec::new(),
            workers: Vec::new(),
            reached: 0,
        };
        world.spawn_actors();
        Ok(world)
    }

    fn spawn_actors(&mut self) {
        let stage = &mut self.stage;
        let seed = stage.scenario.seed;
        for (i, p) in stage.scenario.producers.iter().enumerate() {
            let rng = Rng::new(sub_seed(seed, 1, i as u64));
            self.producers
                .push(ProducerActor::new(p, &stage.scenario, rng));
        }
        for i in 0..self.producers.len() {
            if let Some(t) = self.producers[i].next_time() {
                stage.schedule(t, Actor::Producer(i as u32));
            }
        }
        for (g, group) in stage.scenario.workers.iter().enumerate() {
            for k in 0..group.count {
                let index = self.workers.len() as u64;
                let rng = Rng::new(sub_seed(seed, 2, index));
                self.workers
                    .push(WorkerActor::new(g, format!("{}-{k}", group.name), rng));
            }
        }
        // Every worker starts by consuming at time 0, in creation order.
        for w in 0..self.workers.len() {
            stage.schedule(0, Actor::Worker(w as u32));
        }
    }

    /// Runs every event at or before `until` (capped at the scenario's duration).
    pub(crate) fn step(&mut self, until: u64) {
        let until = until.min(self.stage.scenario.duration_ms);
        loop {
            self.deliver_inbox();
            let stage = &mut self.stage;
            let actor_t = stage.agenda.peek().map(|Reverse((t, _, _))| *t);
            let t = match (actor_t, stage.driver.next_internal()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if t > until {
                break;
            }
            if stage.driver.timer_due(t) {
                stage.driver.fire_timers(t);
                if let Some(ids) = stage.driver.timer_published.as_mut() {
                    let ids = std::mem::take(ids);
                    stage.published_by_timers(t, ids);
                }
            } else if actor_t == Some(t) {
                let Some(Reverse((_, _, actor))) = stage.agenda.pop() else {
                    break;
                };
                stage.driver.events_processed += 1;
                self.wake(t, actor);
            } else {
                stage.driver.sample(t);
            }
        }
        self.reached = self.reached.max(until);
    }

    fn wake(&mut self, now: u64, actor: Actor) {
        match actor {
            Actor::Producer(i) => self.producers[i as usize].wake(i, now, &mut self.stage),
            Actor::Worker(w) => self.workers[w as usize].wake(w, now, &mut self.stage),
            Actor::Cancel(id, kind) => self.stage.cancel(now, id, kind as usize),
        }
    }

    /// Hands long-poll answers to the workers that were waiting for them.
    fn deliver_inbox(&mut self) {
        let stage = &mut self.stage;
        if stage.driver.inbox.is_empty() {
            return;
        }
        let now = stage.driver.now;
        for event in std::mem::take(&mut stage.driver.inbox) {
            let (waiter, messages) = match event {
                Event::Delivered {
                    waiter_id,
                    messages,
                } => (waiter_id, messages),
                Event::WaitTimedOut { waiter_id } => (waiter_id, Vec::new()),
                _ => continue,
            };
            let Some(w) = stage.waiters.remove(&waiter) else {
                continue;
            };
            let worker = &mut self.workers[w as usize];
            if messages.is_empty() {
                worker.idle();
                stage.schedule(now, Actor::Worker(w));
            } else {
                worker.start_batch(w, now, messages, stage);
            }
        }
    }

    /// The report so far.
    pub(crate) fn report(&self) -> Report {
        let stage = &self.stage;
        let d = &stage.driver;
        let elapsed = self.reached.max(1);
        let mut busy_total = 0u64;
        let mut workers_total = 0u64;
        let workers = stage
            .groups
            .iter()
            .zip(&stage.scenario.workers)
            .map(|(g, spec)| {
                busy_total += g.busy_ms;
                workers_total += u64::from(spec.count);
                WorkerStats {
                    name: spec.name.clone(),
                    count: spec.count,
                    completed: g.completed,
                    failed: g.failed,
                    cancelled: g.cancelled,
                    crashes: g.crashes,
                    late: g.late,
                    utilisation: ratio(g.busy_ms, u64::from(spec.count) * elapsed),
                }
            })
            .collect();
        Report {
            name: stage.scenario.name.clone(),
            seed: stage.scenario.seed.to_string(),
            finished: d.finished(),
            sample_interval_ms: stage.scenario.sample_interval_ms,
            series: d.series.clone(),
            summary: Summary {
                simulated_ms: self.reached,
                utilisation: ratio(busy_total, workers_total * elapsed),
                workers,
                cancels: stage.canceller.stats.clone(),
                ..summary_of(d)
            },
            state_digest: None,
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
        cancelled: m.cancelled,
        cancels: CancelStats::default(),
        still_in_system: m.still_in_system(),
        deliveries: m.deliveries,
        nacked: m.nacked,
        retries: m.retries,
        lease_expired: m.lease_expired,
        rejected_publishes: d.rejected_publishes,
        by_priority: m.priority_stats(),
        by_group_class: m.group_class_stats(),
        flows: m.flow_stats(),
        workers: Vec::new(),
        utilisation: 0.0,
        commands: d.commands,
        events_processed: d.events_processed,
        run_hash: d.run_hash(),
    }
}

/// The group classes the report lists, with their group counts, when any producer uses
/// groups: `heavy` when one has a `heavy_share`, `light` when one has a `count`, `ungrouped`
/// when some tasks carry no group (producers without groups, schedule runs, follow-ups).
fn group_classes(scenario: &Scenario) -> Option<Vec<(GroupClass, u32)>> {
    let producers = &scenario.producers;
    if !producers.iter().any(|p| p.groups.used()) {
        return None;
    }
    let mut listed = Vec::new();
    if producers.iter().any(|p| p.groups.heavy_share > 0.0) {
        listed.push((GroupClass::Heavy, 1));
    }
    // A producer whose every task is heavy draws no light group.
    let light = (producers.iter())
        .filter(|p| p.groups.heavy_share < 1.0)
        .map(|p| p.groups.count)
        .max()
        .unwrap_or(0);
    if light > 0 {
        listed.push((GroupClass::Light, light));
    }
    // Follow-ups and flows carry no group.
    let follow_ups =
        (scenario.task_types.iter()).any(|t| !t.follow_ups.is_empty() || !t.children.is_empty());
    if follow_ups || producers.iter().any(|p| p.groups.leaves_ungrouped()) {
        listed.push((GroupClass::Ungrouped, 0));
    }
    Some(listed)
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
