//! The scenario: a workload described as data (serde JSON, snake_case), and its validation.
//!
//! Every field has a default, so `{}` is a valid (if idle) scenario; `docs/simulator.md` lists
//! them all. Limits keep a browser tab from being asked to simulate years of traffic.

use std::collections::BTreeMap;

use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use super::dist::Dist;
use super::grouping::ProducerGroups;
use super::pipeline::{ChildTasks, is_fail};
use crate::{EngineConfig, Error, MIN_EVERY_MS, OnChildFailure, QueueConfig, validate_queue_name};

/// Most worker groups × count in one scenario.
pub const MAX_WORKERS: u32 = 1_000;
/// Most producers.
pub const MAX_PRODUCERS: usize = 100;
/// Most groups a producer may spread its tasks over.
pub const MAX_PRODUCER_GROUPS: u32 = 100_000;
/// Most task types.
pub const MAX_TASK_TYPES: usize = 32;
/// Longest simulated time: 7 days.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most samples in the time series.
pub const MAX_SAMPLES: u64 = 10_000;
/// Most tasks the producers may be expected to publish (rate × active time), follow-ups aside.
pub const MAX_EXPECTED_TASKS: f64 = 10_000_000.0;
/// Largest generated payload.
pub const MAX_PAYLOAD_BYTES: u32 = 64 * 1024;
/// Longest cron pattern of a scheduled producer.
pub const MAX_CRON_BYTES: usize = 128;

/// A whole simulated workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A label copied into the report.
    pub name: String,
    /// Simulated time, from 0.
    pub duration_ms: u64,
    /// Seeds the engine and every actor; a number or a string of digits.
    #[serde(deserialize_with = "super::seed::from_number_or_string")]
    pub seed: u64,
    /// Virtual time between two points of the report's time series.
    pub sample_interval_ms: u64,
    /// The queue tasks go to (a task type may name another).
    pub queue: String,
    /// The settings of every queue (retry policy, ack deadline, prefetch …).
    pub queue_config: QueueConfig,
    /// The engine's settings (limits); the queue is created with `queue_config` regardless.
    pub engine: EngineConfig,
    /// The kinds of task, referred to by name from producers, follow-ups and workers.
    pub task_types: Vec<TaskType>,
    /// Where tasks come from.
    pub producers: Vec<Producer>,
    /// Who processes them.
    pub workers: Vec<WorkerGroup>,
    /// Samples kept per percentile series (reservoir size); percentiles are exact up to it.
    pub reservoir_size: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            duration_ms: 3_600_000,
            seed: 1,
            sample_interval_ms: 60_000,
            queue: "tasks".into(),
            queue_config: QueueConfig::default(),
            engine: EngineConfig::default(),
            task_types: Vec::new(),
            producers: Vec::new(),
            workers: Vec::new(),
            reservoir_size: 10_000,
        }
    }
}

/// A kind of task: how long it takes, how often it fails, what it leads to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskType {
    /// Name, put in the message's `task` header.
    pub name: String,
    /// Service time on a worker (a worker group may override it).
    pub service: Dist,
    /// Chance that one attempt fails (the worker nacks with an error), independently per attempt.
    pub failure_probability: f64,
    /// Fraction of tasks that fail on every attempt (e.g. corrupt uploads): these end in the DLQ.
    pub poison_probability: f64,
    /// Size of the generated JSON body.
    pub payload_bytes: u32,
    /// Tasks published by the worker after it acks one of these.
    pub follow_ups: Vec<FollowUp>,
    /// A fraction of these tasks is cancelled some time after it is published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Cancellation>,
    /// The queue its tasks go to; the scenario's `queue` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Child tasks it waits for: a task of a type with children is published as a flow
    /// (`AddFlow`), this task being the parent that runs once its children are finished.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildTasks>,
    /// What a failed child does to a task of this type (a parent).
    #[serde(skip_serializing_if = "is_fail")]
    pub on_child_failure: OnChildFailure,
}

impl Default for TaskType {
    fn default() -> Self {
        Self {
            name: "task".into(),
            service: Dist::Constant { ms: 1000 },
            failure_probability: 0.0,
            poison_probability: 0.0,
            payload_bytes: 256,
            follow_ups: Vec::new(),
            cancel: None,
            queue: None,
            children: Vec::new(),
            on_child_failure: OnChildFailure::Fail,
        }
    }
}

/// Cancellations of one task type: each published task of the type is cancelled with chance
/// `fraction`, `after` its publish (`Command::Cancel`, as a user giving up would).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cancellation {
    /// Chance that a task is cancelled (0 to 1).
    pub fraction: f64,
    /// Delay from the publish to the cancel.
    pub after: Dist,
}

impl Default for Cancellation {
    fn default() -> Self {
        Self {
            fraction: 0.0,
            after: Dist::Constant { ms: 60_000 },
        }
    }
}

/// A task published when another completes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowUp {
    /// Its task type.
    pub task_type: String,
    /// Its priority; the completed task's priority when absent.
    pub priority: Option<u8>,
    /// Chance that it is published at all.
    pub probability: f64,
}

impl Default for FollowUp {
    fn default() -> Self {
        Self {
            task_type: String::new(),
            priority: None,
            probability: 1.0,
        }
    }
}

/// When a producer publishes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "process", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrival {
    /// Evenly spaced, `rate_per_sec` tasks a second.
    Constant {
        /// Tasks per second.
        rate_per_sec: f64,
    },
    /// A Poisson process: exponential gaps with mean `1 / rate_per_sec`.
    Poisson {
        /// Mean tasks per second.
        rate_per_sec: f64,
    },
    /// `size` tasks at once (one batch publish) every `every_ms`, the first at `start_ms`.
    Bursts {
        /// Gap between bursts.
        every_ms: u64,
        /// Tasks per burst (at most 1,000, the batch limit).
        size: u32,
    },
    /// An engine schedule (`Command::PutSchedule`) put at time 0, every `every_ms` or on a
    /// 5-field UTC `cron` pattern (exactly one of the two); the engine's own timers publish its
    /// runs. Runs fall strictly after `start_ms` and before `stop_ms`: every `every_ms` at
    /// `start_ms + k × every_ms` (k ≥ 1), cron at its slots. Time 0 is 1970-01-01 00:00 UTC.
    Schedule {
        /// Interval between runs (at least 1 s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every_ms: Option<u64>,
        /// A cron pattern (minute hour day-of-month month day-of-week), in UTC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cron: Option<String>,
    },
}

/// One task kind in a producer's mix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixEntry {
    /// The task type.
    pub task_type: String,
    /// The priority it is published with; the queue's default when absent.
    pub priority: Option<u8>,
    /// Relative weight among the mix's entries.
    pub weight: u32,
}

impl Default for MixEntry {
    fn default() -> Self {
        Self {
            task_type: String::new(),
            priority: None,
            weight: 1,
        }
    }
}

/// A source of tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Producer {
    /// A label.
    pub name: String,
    /// When it publishes.
    pub arrival: Arrival,
    /// What it publishes, chosen by weight for each task.
    pub mix: Vec<MixEntry>,
    /// First publish time.
    pub start_ms: u64,
    /// No publishes at or after this time; the scenario's end when absent.
    pub stop_ms: Option<u64>,
    /// Spreads its tasks over message groups (a user or tenant each; producers share the
    /// names): a number `n` draws them uniformly from `group-0` to `group-{n-1}`;
    /// `{count, heavy_share}` also sends each to the group `heavy` with chance `heavy_share`.
    /// 0 publishes ungrouped. The queue config's group settings then apply (DESIGN.md §12).
    #[serde(skip_serializing_if = "unused")]
    pub groups: ProducerGroups,
}

fn unused(g: &ProducerGroups) -> bool {
    !g.used()
}

impl Default for Producer {
    fn default() -> Self {
        Self {
            name: "producer".into(),
            arrival: Arrival::Poisson { rate_per_sec: 1.0 },
            mix: Vec::new(),
            start_ms: 0,
            stop_ms: None,
            groups: ProducerGroups::default(),
        }
    }
}

/// A group of identical workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerGroup {
    /// A label; worker `i` of the group consumes as `"{name}-{i}"`.
    pub name: String,
    /// Workers in the group.
    pub count: u32,
    /// Long-poll wait of each consume (0 = poll, retrying after `poll_interval_ms`).
    pub wait_ms: u64,
    /// Lease asked for; the queue's `ack_deadline_ms` when absent.
    pub lease_ms: Option<u64>,
    /// Messages per consume (1..=100); a worker processes them one after another.
    pub max_messages: u32,
    /// Pause before polling again after an empty non-waiting consume or a refused one.
    pub poll_interval_ms: u64,
    /// Multiplies every service time (2.0 = a worker half as fast).
    pub service_factor: f64,
    /// Per-task-type service times that replace the task type's own.
    pub service: BTreeMap<String, Dist>,
    /// Chance that one attempt fails on this worker (independently of the task type's).
    pub failure_probability: f64,
    /// Chance that the worker crashes during a task: it dies holding its leases (they expire
    /// at the ack deadline) and comes back after `restart_ms`.
    pub crash_probability: f64,
    /// Down time after a crash.
    pub restart_ms: u64,
    /// After each completed task, write `{queue}:{message_id}:status` to KV with this TTL.
    pub status_ttl_ms: Option<u64>,
    /// After each completed task, publish a notification on this pub/sub topic.
    pub notify_topic: Option<String>,
    /// The queue it consumes; the scenario's `queue` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl Default for WorkerGroup {
    fn default() -> Self {
        Self {
            name: "worker".into(),
            count: 1,
            wait_ms: 30_000,
            lease_ms: None,
            max_messages: 1,
            poll_interval_ms: 1_000,
            service_factor: 1.0,
            service: BTreeMap::new(),
            failure_probability: 0.0,
            crash_probability: 0.0,
            restart_ms: 30_000,
            status_ttl_ms: None,
            notify_topic: None,
            queue: None,
        }
    }
}

/// An invalid `queue_config` named like the scenario's other fields:
/// `queue_config.max_in_flight: must be at least 1`.
pub(crate) fn queue_config_error(e: Error) -> String {
    match e {
        Error::InvalidArgument { field, reason } => format!("queue_config.{field}: {reason}"),
        e => format!("queue_config: {e}"),
    }
}

fn probability(what: &str, p: f64) -> Result<(), String> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} must be between 0 and 1, got {p}"))
    }
}

pub(super) fn priority(what: &str, p: Option<u8>) -> Result<(), String> {
    match p {
        Some(p) if p > 9 => Err(format!("{what} must be 0..=9, got {p}")),
        _ => Ok(()),
    }
}

impl Scenario {
    /// Checks the whole scenario; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.duration_ms == 0 || self.duration_ms > MAX_DURATION_MS {
            return Err(format!("duration_ms must be 1..={MAX_DURATION_MS}"));
        }
        if self.sample_interval_ms == 0 || self.duration_ms / self.sample_interval_ms > MAX_SAMPLES
        {
            return Err(format!(
                "sample_interval_ms must be positive and give at most {MAX_SAMPLES} samples"
            ));
        }
        if !(1..=1_000_000).contains(&self.reservoir_size) {
            return Err("reservoir_size must be 1..=1000000".into());
        }
        validate_queue_name(&self.queue).map_err(|e| format!("queue: {e}"))?;
        self.queue_config
            .validate(&self.engine.limits)
            .map_err(queue_config_error)?;
        self.validate_task_types()?;
        self.validate_producers()?;
        self.validate_workers()
    }

    /// The index of a task type by name.
    pub(crate) fn task_index(&self, name: &str) -> Option<usize> {
        self.task_types.iter().position(|t| t.name == name)
    }

    pub(super) fn known_type(&self, what: &str, name: &str) -> Result<(), String> {
        match self.task_index(name) {
            Some(_) => Ok(()),
            None => Err(format!("{what}: unknown task type {name:?}")),
        }
    }

    fn validate_task_types(&self) -> Result<(), String> {
        if self.task_types.len() > MAX_TASK_TYPES {
            return Err(format!("at most {MAX_TASK_TYPES} task types"));
        }
        for (i, t) in self.task_types.iter().enumerate() {
            let at = format!("task_types[{i}] ({})", t.name);
            if t.name.is_empty() || t.name.len() > 64 {
                return Err(format!("{at}: name must be 1-64 bytes"));
            }
            if self.task_index(&t.name) != Some(i) {
                return Err(format!("{at}: duplicate task type name"));
            }
            t.service.validate(&format!("{at}.service"))?;
            probability(&format!("{at}.failure_probability"), t.failure_probability)?;
            probability(&format!("{at}.poison_probability"), t.poison_probability)?;
            if t.payload_bytes > MAX_PAYLOAD_BYTES {
                return Err(format!("{at}.payload_bytes: at most {MAX_PAYLOAD_BYTES}"));
            }
            if t.follow_ups.len() > 8 {
                return Err(format!("{at}.follow_ups: at most 8"));
            }
            for f in &t.follow_ups {
                self.known_type(&format!("{at}.follow_ups"), &f.task_type)?;
                priority(&format!("{at}.follow_ups.priority"), f.priority)?;
                probability(&format!("{at}.follow_ups.probability"), f.probability)?;
            }
            if let Some(c) = &t.cancel {
                probability(&format!("{at}.cancel.fraction"), c.fraction)?;
                c.after.validate(&format!("{at}.cancel.after"))?;
            }
        }
        self.validate_flows()
    }

    fn validate_producers(&self) -> Result<(), String> {
        if self.producers.len() > MAX_PRODUCERS {
            return Err(format!("at most {MAX_PRODUCERS} producers"));
        }
        let mut expected = 0.0;
        for (i, p) in self.producers.iter().enumerate() {
            let at = format!("producers[{i}] ({})", p.name);
            if p.mix.is_empty() || p.mix.len() > 64 {
                return Err(format!("{at}.mix: 1 to 64 entries"));
            }
            let mut total_weight = 0u64;
            // Jobs per task, weighted: a flow's task brings its whole tree.
            let mut weighted_jobs = 0.0;
            for m in &p.mix {
                self.known_type(&format!("{at}.mix"), &m.task_type)?;
                priority(&format!("{at}.mix.priority"), m.priority)?;
                total_weight += u64::from(m.weight);
                let kind = self.task_index(&m.task_type).expect("known type");
                weighted_jobs += f64::from(m.weight) * self.flow_jobs(kind) as f64;
            }
            if total_weight == 0 {
                return Err(format!("{at}.mix: weights must not all be 0"));
            }
            let per_task = weighted_jobs / total_weight as f64;
            p.groups.validate(&at, MAX_PRODUCER_GROUPS)?;
            if p.groups.used() && matches!(p.arrival, Arrival::Schedule { .. }) {
                return Err(format!(
                    "{at}.groups: a schedule's runs carry no group; leave groups out"
                ));
            }
            let stop = p.stop_ms.unwrap_or(self.duration_ms).min(self.duration_ms);
            let active_s = stop.saturating_sub(p.start_ms) as f64 / 1000.0;
            expected += match p.arrival {
                Arrival::Schedule { every_ms, ref cron } => {
                    if p.mix.len() != 1 {
                        return Err(format!(
                            "{at}.mix: a schedule publishes one task type, give exactly 1 entry"
                        ));
                    }
                    self.validate_schedule(&at, every_ms, cron.as_deref())?;
                    if per_task > 1.0 {
                        return Err(format!(
                            "{at}.mix: a schedule publishes single tasks, not flows: {:?} has children",
                            p.mix[0].task_type
                        ));
                    }
                    // At most one cron run a minute.
                    active_s * 1000.0 / every_ms.unwrap_or(60_000) as f64 + 1.0
                }
                Arrival::Constant { rate_per_sec } | Arrival::Poisson { rate_per_sec } => {
                    if !(rate_per_sec.is_finite() && rate_per_sec > 0.0 && rate_per_sec <= 10_000.0)
                    {
                        return Err(format!("{at}.arrival.rate_per_sec must be in (0, 10000]"));
                    }
                    rate_per_sec * active_s * per_task
                }
                Arrival::Bursts { every_ms, size } => {
                    if every_ms == 0 || !(1..=1000).contains(&size) {
                        return Err(format!(
                            "{at}.arrival: every_ms must be positive and size 1..=1000"
                        ));
                    }
                    f64::from(size) * (active_s * 1000.0 / every_ms as f64 + 1.0) * per_task
                }
            };
        }
        if expected > MAX_EXPECTED_TASKS {
            return Err(format!(
                "producers would publish about {expected:.0} tasks; the limit is {MAX_EXPECTED_TASKS}"
            ));
        }
        Ok(())
    }

    fn validate_schedule(
        &self,
        at: &str,
        every_ms: Option<u64>,
        cron: Option<&str>,
    ) -> Result<(), String> {
        match (every_ms, cron) {
            (Some(every), None) => {
                let max = self.engine.limits.max_ttl_ms;
                if !(MIN_EVERY_MS..=max).contains(&every) {
                    return Err(format!(
                        "{at}.arrival.every_ms must be {MIN_EVERY_MS}..={max}"
                    ));
                }
            }
            (None, Some(pattern)) => {
                if pattern.len() > MAX_CRON_BYTES {
                    return Err(format!("{at}.arrival.cron: at most {MAX_CRON_BYTES} bytes"));
                }
                CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .year(Year::Disallowed)
                    .build()
                    .parse(pattern)
                    .map_err(|e| {
                        format!("{at}.arrival.cron: not a 5-field cron pattern ({pattern:?}): {e}")
                    })?;
            }
            _ => {
                return Err(format!(
                    "{at}.arrival: a schedule takes exactly one of every_ms or cron"
                ));
            }
        }
        Ok(())
    }

    fn validate_workers(&self) -> Result<(), String> {
        let total: u64 = self.workers.iter().map(|w| u64::from(w.count)).sum();
        if total > u64::from(MAX_WORKERS) {
            return Err(format!("at most {MAX_WORKERS} workers in all, got {total}"));
        }
        for (i, w) in self.workers.iter().enumerate() {
            let at = format!("workers[{i}] ({})", w.name);
            if w.name.is_empty() || w.name.len() > 64 {
                return Err(format!("{at}: name must be 1-64 bytes"));
            }
            if !(1..=100).contains(&w.max_messages) {
                return Err(format!("{at}.max_messages must be 1..=100"));
            }
            if w.wait_ms == 0 && w.poll_interval_ms == 0 {
                return Err(format!(
                    "{at}: poll_interval_ms must be positive when wait_ms is 0"
                ));
            }
            if w.poll_interval_ms == 0 {
                return Err(format!("{at}.poll_interval_ms must be positive"));
            }
            if let Some(l) = w.lease_ms {
                if l == 0 || l > crate::MAX_LEASE_MS {
                    return Err(format!("{at}.lease_ms must be 1..={}", crate::MAX_LEASE_MS));
                }
            }
            if !(w.service_factor.is_finite()
                && w.service_factor > 0.0
                && w.service_factor <= 1000.0)
            {
                return Err(format!("{at}.service_factor must be in (0, 1000]"));
            }
            for (name, d) in &w.service {
                self.known_type(&format!("{at}.service"), name)?;
                d.validate(&format!("{at}.service.{name}"))?;
            }
            probability(&format!("{at}.failure_probability"), w.failure_probability)?;
            probability(&format!("{at}.crash_probability"), w.crash_probability)?;
            self.validate_worker_queue(&at, w.queue.as_deref())?;
            if let Some(t) = &w.notify_topic {
                if t.is_empty() || t.contains(['*', '#']) {
                    return Err(format!(
                        "{at}.notify_topic must be a topic without wildcards"
                    ));
                }
            }
        }
        Ok(())
    }
}
