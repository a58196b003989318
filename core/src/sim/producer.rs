//! Producers: arrival processes that publish tasks, and the task bodies they publish.

use std::sync::Arc;

use super::dist::exponential;
use super::scenario::{Arrival, Producer, Scenario};
use super::world::{Actor, Stage};
use crate::{Command, Headers, Json, PublishMessage, Rng};

/// What the simulator knows about each task type when it builds a message.
pub(crate) struct TaskCatalog {
    names: Vec<Arc<str>>,
    padding: Vec<String>,
    poison: Vec<f64>,
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
        Self {
            names,
            padding,
            poison,
        }
    }

    /// The task type a delivery's `task` header names.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    /// A message of task type `kind`; draws whether it is poison (fails on every attempt).
    pub(crate) fn message(
        &self,
        kind: usize,
        priority: Option<u8>,
        n: u64,
        rng: &mut Rng,
    ) -> PublishMessage {
        let name = &self.names[kind];
        let body = format!(
            r#"{{"task":"{name}","n":{n},"data":"{}"}}"#,
            self.padding[kind]
        );
        let mut headers = Headers::new();
        headers.insert("task".into(), name.to_string());
        if self.poison[kind] > 0.0 && rng.next_f64() < self.poison[kind] {
            headers.insert("poison".into(), "1".into());
        }
        PublishMessage {
            // Task names are validated plain text and padding is `x`s, so this is valid JSON.
            message: Some(Json::from_trusted_text(body)),
            priority,
            headers,
            ..PublishMessage::default()
        }
    }
}

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
    /// Groups its tasks are spread over (0: none).
    groups: u32,
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
    /// Its agenda entry is due: publish the tasks of this arrival (one, or a batch), then
    /// schedule the next arrival.
    pub(crate) fn wake(&mut self, i: u32, now: u64, stage: &mut Stage) {
        let n = self.tasks();
        let mut messages = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (kind, priority) = self.pick();
            stage.tasks_made += 1;
            let made = stage.tasks_made;
            let mut message = stage.catalog.message(kind, priority, made, self.rng());
            // Drawn only for a producer with groups, so other runs draw what they always did.
            if self.groups > 0 {
                let g = self.rng.next_u64() % u64::from(self.groups);
                message.group = Some(format!("group-{g}"));
            }
            messages.push(message);
        }
        let queue = stage.scenario.queue.clone();
        let cmd = if n == 1 {
            let message = messages.pop().expect("one message");
            Command::Publish { queue, message }
        } else {
            Command::PublishBatch { queue, messages }
        };
        if stage.driver.handle(now, cmd).is_err() {
            stage.driver.rejected_publishes += u64::from(n);
        }
        if let Some(t) = self.next_time() {
            stage.schedule(t, Actor::Producer(i));
        }
    }
}
