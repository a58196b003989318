//! The job lifecycle within one queue: finished jobs kept for lookup (retention by count and
//! age), lookup, progress, cancellation, and settling a cancelled delivery.
//!
//! A completed or cancelled job leaves the message store and is kept as a `Record` until
//! `keep_completed`/`keep_cancelled` forget it: when `count` newer ones of its kind are kept,
//! when `age_ms` has passed since it finished (one retention timer per queue, at the oldest
//! record's end), or when the engine's `max_kept_bytes` needs room. Dead-lettered jobs are
//! looked up in the DLQ, which bounds them already.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{Job, JobState, LeaseToken, MessageId, ObservedKind};
use crate::config::Keep;
use crate::ctx::{Ctx, Finished, Outcome};
use crate::json::Json;
use crate::time::Millis;
use crate::timers::TimerKind;

use super::{Message, Queue, State};

/// A finished job kept for lookup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) msg: Message,
    pub(crate) state: JobState,
    pub(crate) result: Option<Json>,
    pub(crate) started_at: Option<Millis>,
    pub(crate) finished_at: Millis,
}

impl Record {
    /// Bytes counted against `max_kept_bytes`.
    pub(crate) fn bytes(&self) -> u64 {
        self.msg.held_bytes()
            + self.result.as_ref().map_or(0, |r| r.len() as u64)
            + self.msg.progress().map_or(0, |p| p.len() as u64)
    }
}

/// The finished jobs a queue keeps, with the order in which each kind is forgotten.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Kept {
    /// Boxed: a record is a few hundred bytes, and the tree moves its values as it inserts
    /// and removes (one ack keeps a job and, at the count, forgets the oldest).
    records: BTreeMap<MessageId, Box<Record>>,
    /// Completed jobs, oldest first (finish times never decrease).
    completed: VecDeque<(Millis, MessageId)>,
    /// Cancelled jobs, oldest first.
    cancelled: VecDeque<(Millis, MessageId)>,
    /// The retention timer set, if any.
    timer: Option<Millis>,
}

impl Kept {
    pub(crate) fn len(&self) -> u64 {
        self.records.len() as u64
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&Record> {
        self.records.get(id).map(|r| &**r)
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values().map(|r| &**r)
    }

    /// Completed and cancelled jobs kept, for the invariants.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.completed.len() as u64, self.cancelled.len() as u64)
    }

    fn order(&mut self, state: JobState) -> &mut VecDeque<(Millis, MessageId)> {
        match state {
            JobState::Completed => &mut self.completed,
            _ => &mut self.cancelled,
        }
    }

    /// Forgets the oldest job of a kind; returns its bytes.
    fn pop_oldest(&mut self, state: JobState) -> Option<u64> {
        let (_, id) = self.order(state).pop_front()?;
        let r = self.records.remove(&id).expect("ordered record exists");
        Some(r.bytes())
    }
}

impl Queue {
    fn keep_of(&self, state: JobState) -> Keep {
        match state {
            JobState::Completed => self.config.keep_completed,
            _ => self.config.keep_cancelled,
        }
    }

    /// A job has finished (completed or cancelled): keep it for lookup as the queue's
    /// retention allows, and tell the engine.
    pub(crate) fn keep(&mut self, ctx: &mut Ctx, record: Record) {
        let id = record.msg.id;
        let job = ctx.job_waiters.watches(self.id, id).then(|| {
            Box::new(self.job_of(
                &record.msg,
                record.state,
                record.result.clone(),
                record.started_at,
                Some(record.finished_at),
            ))
        });
        let outcome = match record.state {
            JobState::Completed => Outcome::Completed(record.result.clone()),
            _ => Outcome::Cancelled(record.result.clone()),
        };
        ctx.finished.push(Finished {
            queue: self.id,
            id,
            job,
            outcome,
        });
        let state = record.state;
        let keep = self.keep_of(state);
        if keep.count == 0 {
            return;
        }
        let bytes = record.bytes();
        while self.kept.order(state).len() as u64 >= keep.count {
            self.forget_oldest(ctx, state);
        }
        while ctx.kept_bytes + bytes > ctx.limits.max_kept_bytes {
            if !self.forget_oldest(ctx, state) {
                return;
            }
        }
        ctx.kept_bytes += bytes;
        let at = record.finished_at;
        self.kept.order(state).push_back((at, id));
        self.kept.records.insert(id, Box::new(record));
        self.arm_retention(ctx);
    }

    fn forget_oldest(&mut self, ctx: &mut Ctx, state: JobState) -> bool {
        match self.kept.pop_oldest(state) {
            Some(bytes) => {
                ctx.kept_bytes = ctx.kept_bytes.saturating_sub(bytes);
                true
            }
            None => false,
        }
    }

    /// Sets the retention timer at the end of the oldest kept job's age.
    fn arm_retention(&mut self, ctx: &mut Ctx) {
        let ends = |order: &VecDeque<(Millis, MessageId)>, keep: Keep| {
            order.front().map(|(at, _)| at.add_ms(keep.age_ms))
        };
        let next = [
            ends(&self.kept.completed, self.config.keep_completed),
            ends(&self.kept.cancelled, self.config.keep_cancelled),
        ]
        .into_iter()
        .flatten()
        .min();
        if next == self.kept.timer {
            return;
        }
        let timer = TimerKind::Retention { queue: self.id };
        if let Some(at) = self.kept.timer {
            ctx.timers.remove(at, timer.clone());
        }
        if let Some(at) = next {
            ctx.timers.add(at, timer);
        }
        self.kept.timer = next;
    }

    /// Forgets kept jobs past their age or count (the retention timer fired, or the queue's
    /// config changed).
    pub(crate) fn apply_retention(&mut self, ctx: &mut Ctx) {
        self.kept.timer = None;
        for state in [JobState::Completed, JobState::Cancelled] {
            let keep = self.keep_of(state);
            loop {
                let over = self.kept.order(state).len() as u64 > keep.count;
                let old = self
                    .kept
                    .order(state)
                    .front()
                    .is_some_and(|(at, _)| at.add_ms(keep.age_ms) <= ctx.now);
                if !(over || old) {
                    break;
                }
                self.forget_oldest(ctx, state);
            }
        }
        // A timer that fired is gone already (removing it again is a no-op); every record
        // whose age ended at `now` is forgotten, so the next deadline is later.
        self.arm_retention(ctx);
    }

    /// Drops every kept job (the queue is deleted); its timer too.
    pub(crate) fn forget_kept(&mut self, ctx: &mut Ctx) {
        let bytes: u64 = self.kept.records.values().map(|r| r.bytes()).sum();
        ctx.kept_bytes = ctx.kept_bytes.saturating_sub(bytes);
        if let Some(at) = self.kept.timer {
            ctx.timers
                .remove(at, TimerKind::Retention { queue: self.id });
        }
        self.kept = Kept::default();
    }

    /// A job by id, as a lookup answers it.
    pub(crate) fn job(&self, id: MessageId) -> Result<Job, Error> {
        if let Some(m) = self.messages.get(&id) {
            let state = match m.state {
                State::Ready => JobState::Ready,
                State::Delayed { .. } => JobState::Delayed,
                State::InFlight { .. } => JobState::InFlight,
            };
            let started_at = matches!(m.state, State::InFlight { .. }).then_some(m.ready_since);
            return Ok(self.job_of(m, state, None, started_at, None));
        }
        if let Some(r) = self.kept.get(&id) {
            return Ok(self.job_of(
                &r.msg,
                r.state,
                r.result.clone(),
                r.started_at,
                Some(r.finished_at),
            ));
        }
        if let Some(e) = self.dlq.find(id) {
            let mut job = self.job_of(&e.msg, JobState::DeadLettered, None, None, Some(e.at));
            job.dead_letter_reason = Some(e.reason);
            return Ok(job);
        }
        Err(Error::MessageNotFound {
            message_id: id.to_string(),
        })
    }

    pub(crate) fn job_of(
        &self,
        m: &Message,
        state: JobState,
        result: Option<Json>,
        started_at: Option<Millis>,
        finished_at: Option<Millis>,
    ) -> Job {
        let (message, payload) = m.body.split();
        Job {
            message_id: m.id,
            queue: self.name.clone(),
            state,
            priority: m.priority,
            attempts: m.attempts,
            progress: m.progress().cloned(),
            result,
            last_error: m.last_error().map(str::to_owned),
            published_at: m.published_at,
            started_at,
            finished_at,
            message,
            payload,
            headers: m.headers().clone(),
            cancel_requested: m.cancel_requested,
            dead_letter_reason: None,
            group: self.group_of(m).cloned(),
            flow_id: None,
            parent_id: None,
            children: Vec::new(),
        }
    }

    /// Records a worker's progress on a job it holds; with `extend_ms`, extends the lease too.
    /// Returns whether the job was cancelled meanwhile, and the lease deadline.
    pub(crate) fn progress(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease: Option<LeaseToken>,
        progress: Json,
        extend_ms: Option<u64>,
    ) -> Result<(bool, Millis), Error> {
        let max = ctx.limits.max_progress_bytes;
        if progress.len() > max {
            return Err(Error::too_large("progress", progress.len(), max));
        }
        let (_, mut deadline) = self.leased(id, lease)?;
        if let Some(ms) = extend_ms {
            deadline = self.extend(ctx, id, lease, ms)?;
        }
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        msg.set_progress(progress.clone());
        let cancelled = msg.cancel_requested;
        if ctx.observe {
            ctx.events.push_back(crate::api::Event::Progress {
                queue: self.name.clone(),
                message_id: id,
                progress,
                at: ctx.now,
            });
        }
        Ok((cancelled, deadline))
    }

    /// Cancels a job: a ready or delayed one is settled at once; an in-flight one is marked.
    pub(crate) fn cancel(&mut self, ctx: &mut Ctx, id: MessageId) -> Result<JobState, Error> {
        let Some(msg) = self.messages.get_mut(&id) else {
            let job = self.job(id)?;
            return Err(Error::AlreadyFinished {
                message_id: id.to_string(),
                state: state_name(job.state).to_owned(),
            });
        };
        if matches!(msg.state, State::InFlight { .. }) {
            msg.cancel_requested = true;
            return Ok(JobState::InFlight);
        }
        let msg = self.remove_waiting(ctx, id);
        self.settle_cancelled(ctx, msg, None, None);
        Ok(JobState::Cancelled)
    }

    /// A job leaves the queue as cancelled (removed from the store already, out of flight).
    pub(crate) fn settle_cancelled(
        &mut self,
        ctx: &mut Ctx,
        msg: Message,
        result: Option<Json>,
        started_at: Option<Millis>,
    ) {
        let now = ctx.now;
        self.counters.cancelled += 1;
        self.let_go(ctx, msg.held_bytes());
        ctx.observe(|| self.observed(ObservedKind::Cancelled, &msg, now));
        self.keep(
            ctx,
            Record {
                msg,
                state: JobState::Cancelled,
                result,
                started_at,
                finished_at: now,
            },
        );
    }
}

/// The snake_case name of a state.
pub(crate) fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::WaitingChildren => "waiting_children",
        JobState::Delayed => "delayed",
        JobState::Ready => "ready",
        JobState::InFlight => "in_flight",
        JobState::Completed => "completed",
        JobState::DeadLettered => "dead_lettered",
        JobState::Cancelled => "cancelled",
    }
}
