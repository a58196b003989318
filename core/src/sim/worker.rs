//! Workers: long-poll consumers that process tasks, fail, crash and restart.
//!
//! A worker is always in exactly one of four states and has at most one agenda entry:
//! idle (wakes to consume), waiting (parked in the engine, woken by `Delivered` or
//! `WaitTimedOut`), busy with one delivery (wakes when it finishes or crashes), or down after
//! a crash (wakes when it restarts). Leases held by a crashed worker are simply forgotten: the
//! engine expires them at the ack deadline, exactly as with a real dead process.

use std::collections::VecDeque;

use super::world::{Actor, World};
use crate::{Command, Delivery, Error, Json, Reply, Rng};

/// How the task in hand will end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Ack, then publish follow-ups.
    Success,
    /// Nack with an error (the queue's retry policy applies).
    Failure,
    /// Die holding the lease.
    Crash,
}

/// What a worker is doing.
#[derive(Clone, Debug)]
pub(crate) enum WorkerState {
    /// About to consume.
    Idle,
    /// Parked in a long-poll.
    Waiting,
    /// Processing `delivery` since `started`.
    Busy {
        delivery: Box<Delivery>,
        outcome: Fate,
        started: u64,
    },
    /// Crashed; restarts at its next wake-up.
    Down,
}

/// One worker.
pub(crate) struct WorkerActor {
    group: usize,
    consumer: String,
    rng: Rng,
    state: WorkerState,
    /// Deliveries of the current consume not yet started.
    batch: VecDeque<Delivery>,
}

impl WorkerActor {
    pub(crate) fn new(group: usize, consumer: String, rng: Rng) -> Self {
        Self {
            group,
            consumer,
            rng,
            state: WorkerState::Idle,
            batch: VecDeque::new(),
        }
    }

    /// Back to idle after a long-poll ended with nothing; it consumes again at its wake-up.
    pub(crate) fn idle(&mut self) {
        self.state = WorkerState::Idle;
        self.batch.clear();
    }
}

/// Counters of one worker group.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupStats {
    pub(crate) busy_ms: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) crashes: u64,
    pub(crate) late: u64,
}

impl World {
    /// The worker's agenda entry is due.
    pub(crate) fn wake_worker(&mut self, now: u64, w: u32) {
        let state = std::mem::replace(&mut self.workers[w as usize].state, WorkerState::Idle);
        match state {
            WorkerState::Idle | WorkerState::Down => self.consume(now, w),
            WorkerState::Busy {
                delivery,
                outcome,
                started,
            } => {
                let group = self.workers[w as usize].group;
                self.groups[group].busy_ms += now - started;
                match outcome {
                    Fate::Crash => self.crash(now, w),
                    Fate::Success => self.complete(now, w, &delivery),
                    Fate::Failure => self.fail(now, w, &delivery),
                }
                if !matches!(outcome, Fate::Crash) {
                    self.next_or_consume(now, w);
                }
            }
            WorkerState::Waiting => unreachable!("a waiting worker has no agenda entry"),
        }
    }

    fn consume(&mut self, now: u64, w: u32) {
        let worker = &self.workers[w as usize];
        let spec = &self.scenario.workers[worker.group];
        let cmd = Command::Consume {
            queue: self.scenario.queue.clone(),
            wait_ms: spec.wait_ms,
            lease_ms: spec.lease_ms,
            max_messages: spec.max_messages,
            consumer_id: Some(worker.consumer.clone()),
        };
        let poll_interval = spec.poll_interval_ms;
        match self.driver.handle(now, cmd) {
            Ok(Reply::Messages { messages }) if !messages.is_empty() => {
                self.start_batch(now, w, messages);
            }
            Ok(Reply::Waiting { waiter_id }) => {
                self.workers[w as usize].state = WorkerState::Waiting;
                self.waiters.insert(waiter_id, w);
            }
            // Nothing ready and no wait asked, or a refusal (e.g. too many waiters): poll later.
            _ => self.schedule(now + poll_interval, Actor::Worker(w)),
        }
    }

    /// Takes the deliveries of one consume and starts on the first.
    pub(crate) fn start_batch(&mut self, now: u64, w: u32, messages: Vec<Delivery>) {
        self.workers[w as usize].batch = messages.into();
        self.next_or_consume(now, w);
    }

    fn next_or_consume(&mut self, now: u64, w: u32) {
        match self.workers[w as usize].batch.pop_front() {
            Some(d) => self.begin(now, w, d),
            None => self.consume(now, w),
        }
    }

    /// Draws the service time and outcome of one delivery and schedules its end.
    fn begin(&mut self, now: u64, w: u32, delivery: Delivery) {
        let worker = &mut self.workers[w as usize];
        let spec = &self.scenario.workers[worker.group];
        let kind = delivery
            .headers
            .get("task")
            .and_then(|t| self.catalog.index_of(t));
        let (service, type_failure) = match kind {
            Some(k) => (
                self.services[worker.group][k].sample(&mut worker.rng),
                self.scenario.task_types[k].failure_probability,
            ),
            None => (0, 0.0),
        };
        let service = (service as f64 * spec.service_factor).round() as u64;
        let poison = delivery.headers.contains_key("poison");
        let failure = 1.0 - (1.0 - type_failure) * (1.0 - spec.failure_probability);
        let (outcome, ends) = if worker.rng.next_f64() < spec.crash_probability {
            let at = (service as f64 * worker.rng.next_f64()).floor() as u64;
            (Fate::Crash, now + at)
        } else if poison || worker.rng.next_f64() < failure {
            (Fate::Failure, now + service)
        } else {
            (Fate::Success, now + service)
        };
        worker.state = WorkerState::Busy {
            delivery: Box::new(delivery),
            outcome,
            started: now,
        };
        self.schedule(ends, Actor::Worker(w));
    }

    fn crash(&mut self, now: u64, w: u32) {
        let worker = &mut self.workers[w as usize];
        worker.batch.clear();
        worker.state = WorkerState::Down;
        let group = worker.group;
        self.groups[group].crashes += 1;
        let restart = self.scenario.workers[group].restart_ms;
        self.schedule(now + restart, Actor::Worker(w));
    }

    fn fail(&mut self, now: u64, w: u32, d: &Delivery) {
        let group = self.workers[w as usize].group;
        let task = d.headers.get("task").map_or("task", String::as_str);
        let cmd = Command::Nack {
            queue: self.scenario.queue.clone(),
            message_id: d.message_id,
            requeue: true,
            delay_ms: None,
            error: Some(format!("{task} failed (simulated)")),
            lease: Some(d.lease),
        };
        match self.driver.handle(now, cmd) {
            Ok(_) => self.groups[group].failed += 1,
            Err(e) => self.count_refusal(group, &e),
        }
    }

    fn complete(&mut self, now: u64, w: u32, d: &Delivery) {
        let group = self.workers[w as usize].group;
        let queue = self.scenario.queue.clone();
        let cmd = Command::Ack {
            queue: queue.clone(),
            message_id: d.message_id,
            lease: Some(d.lease),
        };
        if let Err(e) = self.driver.handle(now, cmd) {
            // The lease ended while the task ran: the message is someone else's now.
            self.count_refusal(group, &e);
            return;
        }
        self.groups[group].completed += 1;
        let spec = &self.scenario.workers[group];
        let mut side_effects = Vec::new();
        if let Some(ttl) = spec.status_ttl_ms {
            side_effects.push(Command::KvSet {
                key: format!("{queue}:{}:status", d.message_id),
                value: Json::from_trusted_text(r#""done""#),
                ttl_ms: Some(ttl),
            });
        }
        if let Some(topic) = &spec.notify_topic {
            side_effects.push(Command::PubsubPublish {
                topic: topic.clone(),
                message: Json::from_trusted_text(format!(
                    r#"{{"message_id":"{}","status":"done"}}"#,
                    d.message_id
                )),
                headers: Default::default(),
            });
        }
        for cmd in side_effects {
            let _ = self.driver.handle(now, cmd);
        }
        self.follow_ups(now, w, d);
    }

    fn follow_ups(&mut self, now: u64, w: u32, d: &Delivery) {
        let Some(kind) = d.headers.get("task").and_then(|t| self.catalog.index_of(t)) else {
            return;
        };
        for i in 0..self.scenario.task_types[kind].follow_ups.len() {
            let f = &self.scenario.task_types[kind].follow_ups[i];
            let (priority, probability) = (f.priority.unwrap_or(d.priority), f.probability);
            let next = self
                .scenario
                .task_index(&f.task_type)
                .expect("validated follow-up");
            let rng = &mut self.workers[w as usize].rng;
            if probability < 1.0 && rng.next_f64() >= probability {
                continue;
            }
            self.tasks_made += 1;
            let message = self
                .catalog
                .message(next, Some(priority), self.tasks_made, rng);
            let cmd = Command::Publish {
                queue: self.scenario.queue.clone(),
                message,
            };
            if self.driver.handle(now, cmd).is_err() {
                self.driver.rejected_publishes += 1;
            }
        }
    }

    fn count_refusal(&mut self, group: usize, e: &Error) {
        debug_assert!(
            matches!(
                e,
                Error::LeaseMismatch { .. } | Error::MessageNotFound { .. }
            ),
            "unexpected refusal {e}"
        );
        self.groups[group].late += 1;
    }
}
