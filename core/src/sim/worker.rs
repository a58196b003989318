//! Workers: long-poll consumers that process tasks, fail, crash and restart. A worker consumes
//! its group's queue and settles each task on the queue it came from.
//!
//! A worker is always in exactly one of four states and has at most one agenda entry:
//! idle (wakes to consume), waiting (parked in the engine, woken by `Delivered` or
//! `WaitTimedOut`), busy with one delivery (wakes when it finishes or crashes), or down after
//! a crash (wakes when it restarts). Leases held by a crashed worker are simply forgotten: the
//! engine expires them at the ack deadline, exactly as with a real dead process.
//!
//! Workers never report progress, so a job cancelled while a worker holds it runs to the end
//! of its service time; the worker's ack or nack then settles it as cancelled (counted as the
//! group's `cancelled`, with no follow-ups or side effects).

use std::collections::VecDeque;

use super::grouping::GroupClass;
use super::world::{Actor, Stage};
use crate::{Command, Delivery, Error, Json, NackAction, Reply, Rng};

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
    pub(crate) cancelled: u64,
    pub(crate) crashes: u64,
    pub(crate) late: u64,
}

impl WorkerActor {
    /// Its agenda entry is due.
    pub(crate) fn wake(&mut self, w: u32, now: u64, stage: &mut Stage) {
        let state = std::mem::replace(&mut self.state, WorkerState::Idle);
        match state {
            WorkerState::Idle | WorkerState::Down => self.consume(w, now, stage),
            WorkerState::Busy {
                delivery,
                outcome,
                started,
            } => {
                stage.groups[self.group].busy_ms += now - started;
                match outcome {
                    Fate::Crash => self.crash(w, now, stage),
                    Fate::Success => self.complete(now, &delivery, stage),
                    Fate::Failure => self.fail(now, &delivery, stage),
                }
                if !matches!(outcome, Fate::Crash) {
                    self.next_or_consume(w, now, stage);
                }
            }
            WorkerState::Waiting => unreachable!("a waiting worker has no agenda entry"),
        }
    }

    fn consume(&mut self, w: u32, now: u64, stage: &mut Stage) {
        let spec = &stage.scenario.workers[self.group];
        let cmd = Command::Consume {
            queue: stage.scenario.worker_queue(self.group).to_owned(),
            wait_ms: spec.wait_ms,
            lease_ms: spec.lease_ms,
            max_messages: spec.max_messages,
            consumer_id: Some(self.consumer.clone()),
        };
        let poll_interval = spec.poll_interval_ms;
        match stage.driver.handle(now, cmd) {
            Ok(Reply::Messages { messages }) if !messages.is_empty() => {
                self.start_batch(w, now, messages, stage);
            }
            Ok(Reply::Waiting { waiter_id }) => {
                self.state = WorkerState::Waiting;
                stage.waiters.insert(waiter_id, w);
            }
            // Nothing ready and no wait asked, or a refusal (e.g. too many waiters): poll later.
            _ => stage.schedule(now + poll_interval, Actor::Worker(w)),
        }
    }

    /// Takes the deliveries of one consume and starts on the first.
    pub(crate) fn start_batch(
        &mut self,
        w: u32,
        now: u64,
        messages: Vec<Delivery>,
        stage: &mut Stage,
    ) {
        self.batch = messages.into();
        self.next_or_consume(w, now, stage);
    }

    fn next_or_consume(&mut self, w: u32, now: u64, stage: &mut Stage) {
        match self.batch.pop_front() {
            Some(d) => self.begin(w, now, d, stage),
            None => self.consume(w, now, stage),
        }
    }

    /// Draws the service time and fate of one delivery and schedules its end.
    fn begin(&mut self, w: u32, now: u64, delivery: Delivery, stage: &mut Stage) {
        let spec = &stage.scenario.workers[self.group];
        let kind = delivery
            .headers
            .get("task")
            .and_then(|t| stage.catalog.index_of(t));
        let (service, type_failure) = match kind {
            Some(k) => (
                stage.services[self.group][k].sample(&mut self.rng),
                stage.scenario.task_types[k].failure_probability,
            ),
            None => (0, 0.0),
        };
        let service = (service as f64 * spec.service_factor).round() as u64;
        let poison = delivery.headers.contains_key("poison");
        let failure = 1.0 - (1.0 - type_failure) * (1.0 - spec.failure_probability);
        let (outcome, ends) = if self.rng.next_f64() < spec.crash_probability {
            let at = (service as f64 * self.rng.next_f64()).floor() as u64;
            (Fate::Crash, now + at)
        } else if poison || self.rng.next_f64() < failure {
            (Fate::Failure, now + service)
        } else {
            (Fate::Success, now + service)
        };
        self.state = WorkerState::Busy {
            delivery: Box::new(delivery),
            outcome,
            started: now,
        };
        stage.schedule(ends, Actor::Worker(w));
    }

    fn crash(&mut self, w: u32, now: u64, stage: &mut Stage) {
        self.batch.clear();
        self.state = WorkerState::Down;
        stage.groups[self.group].crashes += 1;
        let restart = stage.scenario.workers[self.group].restart_ms;
        stage.schedule(now + restart, Actor::Worker(w));
    }

    fn fail(&mut self, now: u64, d: &Delivery, stage: &mut Stage) {
        let task = d.headers.get("task").map_or("task", String::as_str);
        let cmd = Command::Nack {
            queue: d.queue.to_string(),
            message_id: d.message_id,
            requeue: true,
            delay_ms: None,
            error: Some(format!("{task} failed (simulated)")),
            lease: Some(d.lease),
            snooze: false,
        };
        match stage.driver.handle(now, cmd) {
            Ok(Reply::Nacked {
                action: NackAction::Cancelled,
            }) => stage.groups[self.group].cancelled += 1,
            Ok(_) => stage.groups[self.group].failed += 1,
            Err(e) => stage.count_refusal(self.group, &e),
        }
    }

    fn complete(&mut self, now: u64, d: &Delivery, stage: &mut Stage) {
        let group = self.group;
        let queue = d.queue.to_string();
        let cmd = Command::Ack {
            queue: queue.clone(),
            message_id: d.message_id,
            lease: Some(d.lease),
            result: None,
        };
        let cancelled_before = stage.driver.metrics.cancelled;
        if let Err(e) = stage.driver.handle(now, cmd) {
            // The lease ended while the task ran: the message is someone else's now.
            stage.count_refusal(group, &e);
            return;
        }
        if stage.driver.metrics.cancelled > cancelled_before {
            // The job was cancelled while the worker held it: the ack settled it as
            // cancelled, so it did not complete and has no follow-ups.
            stage.groups[group].cancelled += 1;
            return;
        }
        stage.groups[group].completed += 1;
        let spec = &stage.scenario.workers[group];
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
            let _ = stage.driver.handle(now, cmd);
        }
        self.follow_ups(now, d, stage);
    }

    fn follow_ups(&mut self, now: u64, d: &Delivery, stage: &mut Stage) {
        let Some(kind) = d
            .headers
            .get("task")
            .and_then(|t| stage.catalog.index_of(t))
        else {
            return;
        };
        for i in 0..stage.scenario.task_types[kind].follow_ups.len() {
            let f = &stage.scenario.task_types[kind].follow_ups[i];
            let (priority, probability) = (f.priority.unwrap_or(d.priority), f.probability);
            let next = stage
                .scenario
                .task_index(&f.task_type)
                .expect("validated follow-up");
            if probability < 1.0 && self.rng.next_f64() >= probability {
                continue;
            }
            if stage.catalog.is_flow(next) {
                let made = &mut stage.tasks_made;
                let draft = stage
                    .catalog
                    .flow(next, Some(priority), made, &mut self.rng);
                stage.add_flow(now, draft);
                continue;
            }
            stage.tasks_made += 1;
            let message =
                stage
                    .catalog
                    .message(next, Some(priority), stage.tasks_made, &mut self.rng);
            let cmd = Command::Publish {
                queue: stage.catalog.queue(next).to_owned(),
                message,
            };
            match stage.driver.handle(now, cmd) {
                Ok(Reply::Published(p)) => {
                    stage.published(now, p.message_id, next, GroupClass::Ungrouped);
                }
                Ok(_) => {}
                Err(_) => stage.driver.rejected_publishes += 1,
            }
        }
    }
}

impl Stage {
    /// A settle the engine refused because the lease had ended: counted as late.
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
