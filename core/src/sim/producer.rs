//! Producers: arrival processes that publish tasks (or engine schedules that do), and the
//! task bodies they publish.

use std::sync::Arc;

use super::dist::exponential;
use super::grouping::{GroupClass, ProducerGroups};
use super::scenario::{Arrival, Producer, Scenario};
use super::world::{Actor, Stage};
use crate::{
    Command, Headers, Json, Millis, OnChildFailure, PublishMessage, Reply, Rng, ScheduleSpec,
};

/// What the simulator knows about each task type when it builds a message.
pub(crate) struct TaskCatalog {
    names: Vec<Arc<str>>,
    padding: Vec<String>,
    poison: Vec<f64>,
    queues: Vec<String>,
    /// `(task type, count, priority)` of each child entry, per task type.
    pub(super) children: Vec<Vec<(usize, u32, Option<u8>)>>,
    pub(super) on_child_failure: Vec<OnChildFailure>,
}

impl TaskCatalog {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let names = scenario
            .task_types
            .iter()
            .map(|t| Arc::from(t.name.as_str()))
            .collect();
        // The body is `{"task":"…","n":…,"data":"xxx…"}`; pad `data` so the whole is about
        // `payload_bytes` long.
        let padding = scenario
            .task_types
            .iter()
            .map(|t| "x".repeat((t.payload_bytes as usize).saturating_sub(40 + t.name.len())))
            .collect();
        let poison = scenario
            .task_types
            .iter()
            .map(|t| t.poison_probability)
            .collect();
        let children = (scenario.task_types.iter())
            .map(|t| {
                (t.children.iter())
                    .map(|c| {
                        let kind = scenario.task_index(&c.task_type).expect("validated child");
                        (kind, c.count, c.priority)
                    })
                    .collect()
            })
            .collect();
        Self {
            names,
            padding,
            poison,
            queues: (0..scenario.task_types.len())
                .map(|k| scenario.queue_of(k).to_owned())
                .collect(),
            children,
            on_child_failure: scenario
                .task_types
                .iter()
                .map(|t| t.on_child_failure)
                .collect(),
        }
    }

    /// The queue tasks of type `kind` go to.
    pub(crate) fn queue(&self, kind: usize) -> &str {
        &self.queues[kind]
    }

    /// Whether a task of type `kind` is published as a flow (its type has children).
    pub(crate) fn is_flow(&self, kind: usize) -> bool {
        !self.children[kind].is_empty()
    }

    /// The task type a delivery's `task` header names.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    /// The JSON body of task number `n` of type `kind`.
    fn body(&self, kind: usize, n: u64) -> Json {
        let name = &self.names[kind];
        // Task names are validated plain text and padding is `x`s, so this is valid JSON.
        Json::from_trusted_text(format!(
            r#"{{"task":"{name}","n":{n},"data":"{}"}}"#,
            self.padding[kind]
        ))
    }

    fn headers(&self, kind: usize) -> Headers {
        let mut headers = Headers::new();
        headers.insert("task".into(), self.names[kind].to_string());
        headers
    }

    /// A message of task type `kind`; draws whether it is poison (fails on every attempt).
    pub(crate) fn message(
        &self,
        kind: usize,
        priority: Option<u8>,
        n: u64,
        rng: &mut Rng,
    ) -> PublishMessage {
        let mut headers = self.headers(kind);
        if self.poison[kind] > 0.0 && rng.next_f64() < self.poison[kind] {
            headers.insert("poison".into(), "1".into());
        }
        PublishMessage {
            message: Some(self.body(kind, n)),
            priority,
            headers,
            ..PublishMessage::default()
        }
    }
}

/// The engine schedule of producer `i` when its arrival is a schedule, or `None` when it has
/// none or no run would fall in its active time. Runs fall strictly after `start_ms` and
/// before `stop_ms`, like a schedule put at `start_ms`; each publishes the same message (task
/// number 0, never poison).
pub(crate) fn schedule_command(
    i: usize,
    p: &Producer,
    scenario: &Scenario,
    catalog: &TaskCatalog,
) -> Option<Command> {
    let Arrival::Schedule { every_ms, cron } = &p.arrival else {
        return None;
    };
    let stop = p
        .stop_ms
        .unwrap_or(scenario.duration_ms)
        .min(scenario.duration_ms);
    let start_at = match every_ms {
        Some(every) => p.start_ms.saturating_add(*every),
        None => p.start_ms.saturating_add(1),
    };
    let end_at = stop.checked_sub(1)?;
    if start_at > end_at {
        return None;
    }
    let entry = p.mix.first()?;
    let kind = scenario
        .task_index(&entry.task_type)
        .expect("validated task type");
    Some(Command::PutSchedule {
        queue: catalog.queue(kind).to_owned(),
        schedule_id: format!("producer-{i}"),
        schedule: ScheduleSpec {
            every_ms: *every_ms,
            cron: cron.clone(),
            message: catalog.body(kind, 0),
            priority: entry.priority,
            headers: catalog.headers(kind),
            start_at: Some(Millis(start_at)),
            end_at: Some(Millis(end_at)),
            max_runs: None,
        },
    })
}

/// One arrival's messages for one queue, each with its task type and group class.
type Batch = (String, Vec<PublishMessage>, Vec<(usize, GroupClass)>);

/// One producer's state: its PRNG and where it is in its arrival process.
pub(crate) struct ProducerActor {
    rng: Rng,
    arrival: Arrival,
    /// `(cumulative weight, task type, priority)` for weighted choice.
    mix: Vec<(u64, usize, Option<u8>)>,
    start: u64,
    stop: u64,
    /// Arrivals so far (constant and bursts compute times from it, avoiding drift).
    k: u64,
    /// How its tasks are spread over groups.
    groups: ProducerGroups,
    /// Exact (fractional) time of the latest Poisson arrival; the first comes one random gap
    /// after `start`.
    poisson_at: f64,
}

impl ProducerActor {
    pub(crate) fn new(p: &Producer, scenario: &Scenario, rng: Rng) -> Self {
        let mut total = 0;
        let mix = p
            .mix
            .iter()
            .filter(|m| m.weight > 0)
            .map(|m| {
                total += u64::from(m.weight);
                let kind = scenario
                    .task_index(&m.task_type)
                    .expect("validated task type");
                (total, kind, m.priority)
            })
            .collect();
        Self {
            rng,
            arrival: p.arrival.clone(),
            mix,
            start: p.start_ms,
            stop: p
                .stop_ms
                .unwrap_or(scenario.duration_ms)
                .min(scenario.duration_ms),
            k: 0,
            poisson_at: p.start_ms as f64,
            groups: p.groups,
        }
    }

    /// The time of the next arrival (or burst), if it is before the producer stops.
    pub(crate) fn next_time(&mut self) -> Option<u64> {
        let t = match self.arrival {
            Arrival::Constant { rate_per_sec } => {
                self.start + (self.k as f64 * 1000.0 / rate_per_sec).floor() as u64
            }
            Arrival::Poisson { rate_per_sec } => {
                self.poisson_at += exponential(&mut self.rng) * 1000.0 / rate_per_sec;
                self.poisson_at.floor() as u64
            }
            Arrival::Bursts { every_ms, .. } => self.start.saturating_add(self.k * every_ms),
            // The engine's timers publish a schedule's runs.
            Arrival::Schedule { .. } => return None,
        };
        self.k += 1;
        (t < self.stop).then_some(t)
    }

    /// Tasks to publish at this arrival: one, or a whole burst.
    pub(crate) fn tasks(&self) -> u32 {
        match self.arrival {
            Arrival::Bursts { size, .. } => size,
            _ => 1,
        }
    }

    /// Draws a task type and priority from the mix.
    pub(crate) fn pick(&mut self) -> (usize, Option<u8>) {
        let total = self.mix.last().map_or(1, |m| m.0);
        let x = self.rng.next_u64() % total;
        let i = self.mix.partition_point(|m| m.0 <= x);
        (self.mix[i].1, self.mix[i].2)
    }

    /// The producer's PRNG (poison draws use it too).
    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

impl ProducerActor {
    /// Its agenda entry is due: publish the tasks of this arrival (one, or a batch per queue;
    /// a task whose type has children as a flow of its own), then schedule the next arrival.
    pub(crate) fn wake(&mut self, i: u32, now: u64, stage: &mut Stage) {
        let n = self.tasks();
        // Per queue, in the order queues first come up: its messages, with their task types
        // and group classes.
        let mut batches: Vec<Batch> = Vec::new();
        let mut flows = Vec::new();
        for _ in 0..n {
            let (kind, priority) = self.pick();
            if stage.catalog.is_flow(kind) {
                let made = &mut stage.tasks_made;
                flows.push(stage.catalog.flow(kind, priority, made, &mut self.rng));
                continue;
            }
            stage.tasks_made += 1;
            let made = stage.tasks_made;
            let mut message = stage.catalog.message(kind, priority, made, self.rng());
            // Drawn only for a producer with groups, so other runs draw what they always did.
            if self.groups.used() {
                message.group = self.groups.draw(&mut self.rng);
            }
            let class = GroupClass::of(message.group.as_deref());
            let queue = stage.catalog.queue(kind);
            match batches.iter_mut().find(|b| b.0 == queue) {
                Some(b) => {
                    b.1.push(message);
                    b.2.push((kind, class));
                }
                None => batches.push((queue.to_owned(), vec![message], vec![(kind, class)])),
            }
        }
        for (queue, mut messages, kinds) in batches {
            let count = messages.len() as u64;
            let cmd = if n == 1 {
                let message = messages.pop().expect("one message");
                Command::Publish { queue, message }
            } else {
                Command::PublishBatch { queue, messages }
            };
            let published = match stage.driver.handle(now, cmd) {
                Ok(Reply::Published(p)) => vec![p],
                Ok(Reply::PublishedBatch { messages }) => messages,
                Ok(_) => Vec::new(),
                Err(_) => {
                    stage.driver.rejected_publishes += count;
                    Vec::new()
                }
            };
            for (p, (kind, class)) in published.iter().zip(kinds) {
                stage.published(now, p.message_id, kind, class);
            }
        }
        for draft in flows {
            stage.add_flow(now, draft);
        }
        if let Some(t) = self.next_time() {
            stage.schedule(t, Actor::Producer(i));
        }
    }
}
