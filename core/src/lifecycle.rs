//! The job lifecycle at the engine's level (DESIGN.md §13): lookup, waiting for a job,
//! progress, cancellation, schedules, debounced publishes, and what happens after a job
//! finishes (its `until_finished` key is released and the waits on it are answered).

use crate::Error;
use crate::api::{Command, Event, Job, PublishMessage, Published, Reply, WaiterId};
use crate::dedup::ScopedKey;
use crate::engine::Engine;
use crate::ids::QueueId;
use crate::queue::{State, check_publish, publish_bytes};
use crate::timers::TimerKind;

impl Engine {
    /// Runs one job-lifecycle command.
    pub(crate) fn dispatch_job(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::GetJob { queue, message_id } => {
                Reply::Job(Box::new(self.lookup_job(&queue, message_id)?))
            }
            Command::WaitJob {
                queue,
                message_id,
                wait_ms,
            } => self.wait_job(&queue, message_id, wait_ms)?,
            Command::Progress {
                queue,
                message_id,
                lease,
                progress,
                extend_ms,
            } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                let (cancelled, lease_deadline) =
                    q.progress(ctx, message_id, lease, progress, extend_ms)?;
                Reply::Progressed {
                    cancelled,
                    lease_deadline,
                }
            }
            Command::Cancel { queue, message_id } => {
                if let Some(cancelled) = self.cancel_waiting_parent(&queue, message_id) {
                    return cancelled;
                }
                let (q, ctx) = self.queue_mut(&queue)?;
                let state = q.cancel(ctx, message_id)?;
                q.serve(ctx);
                Reply::Cancelled { state }
            }
            Command::PutSchedule {
                queue,
                schedule_id,
                schedule,
            } => self.put_schedule(&queue, schedule_id, schedule)?,
            Command::ListSchedules { queue } => self.list_schedules(&queue)?,
            Command::DeleteSchedule { queue, schedule_id } => {
                self.delete_schedule(&queue, &schedule_id)?
            }
            Command::RunSchedule { queue, schedule_id } => {
                self.run_schedule(&queue, &schedule_id)?
            }
            // The timers due ran in `handle`.
            Command::Tick => Reply::Ticked,
            // Caught up in `handle`, before the timers due at `now` ran.
            Command::Resume { .. } => Reply::Resumed { caught_up: 0 },
            other => unreachable!("{other:?} is not a job command"),
        })
    }

    /// Answers at once with a finished job (or any job when `wait_ms` is 0); parks otherwise.
    fn wait_job(
        &mut self,
        queue: &str,
        id: crate::MessageId,
        wait_ms: u64,
    ) -> Result<Reply, Error> {
        let q = self.queue(queue)?;
        let job = self.lookup_job_in(q, id)?;
        if job.state.is_finished() || wait_ms == 0 {
            return Ok(Reply::Job(Box::new(job)));
        }
        let qid = q.id;
        let ctx = &mut self.ctx;
        let max = ctx.limits.max_job_waiters;
        if ctx.job_waiters.len() >= max {
            return Err(Error::limit("job waiters", max as u64));
        }
        let waiter = WaiterId(ctx.next_waiter);
        ctx.next_waiter += 1;
        let deadline = ctx.now.add_ms(wait_ms.min(ctx.limits.max_wait_ms));
        ctx.timers.add(deadline, TimerKind::Wait { waiter });
        ctx.job_waiters.add(waiter, qid, id, deadline);
        Ok(Reply::Waiting { waiter_id: waiter })
    }

    /// A job waiter's deadline passed: answer with the job as it is now (or, if it is gone,
    /// a timeout). False if `waiter` is not a job waiter.
    pub(crate) fn job_wait_ended(&mut self, waiter: WaiterId) -> bool {
        let Some((qid, id, _)) = self.ctx.job_waiters.remove(waiter) else {
            return false;
        };
        let job = self
            .queues
            .get(&qid)
            .and_then(|q| self.lookup_job_in(q, id).ok());
        self.answer_job_waiter(waiter, job.map(Box::new));
        true
    }

    fn answer_job_waiter(&mut self, waiter_id: WaiterId, job: Option<Box<Job>>) {
        self.ctx.events.push_back(match job {
            Some(mut job) => {
                self.annotate_job(&mut job);
                Event::JobWaited { waiter_id, job }
            }
            None => Event::WaitTimedOut { waiter_id },
        });
    }

    /// Withdraws a job waiter (its client hung up); false if it is not one.
    pub(crate) fn cancel_job_wait(&mut self, waiter: WaiterId) -> bool {
        match self.ctx.job_waiters.remove(waiter) {
            Some((_, _, deadline)) => {
                self.ctx.timers.remove(deadline, TimerKind::Wait { waiter });
                true
            }
            None => false,
        }
    }

    /// Withdraws every job waiter (the host restarted); how many there were.
    pub(crate) fn drop_job_waiters(&mut self) -> u64 {
        let waiters = self.ctx.job_waiters.waiters();
        for w in &waiters {
            self.cancel_job_wait(*w);
        }
        waiters.len() as u64
    }

    /// The jobs of a deleted queue are gone: their waits end with a timeout, their keys go.
    pub(crate) fn forget_queue_jobs(&mut self, qid: QueueId) {
        let waiters: Vec<WaiterId> = self
            .ctx
            .job_waiters
            .by_waiter
            .iter()
            .filter(|(_, (q, _, _))| *q == qid)
            .map(|(w, _)| *w)
            .collect();
        for w in waiters {
            self.cancel_job_wait(w);
            self.answer_job_waiter(w, None);
        }
        self.dedup.forget_queue(qid);
    }

    /// After a call: every job that finished releases its held idempotency key, the waits on
    /// it are answered, and its flow (if any) goes on, which may finish more jobs (a failed
    /// child's siblings cancelled): those are settled too.
    pub(crate) fn settle_finished(&mut self) {
        while !self.ctx.finished.is_empty() {
            for f in std::mem::take(&mut self.ctx.finished) {
                self.dedup.release(f.queue, f.id);
                for (w, deadline) in self.ctx.job_waiters.take_job(f.queue, f.id) {
                    self.ctx
                        .timers
                        .remove(deadline, TimerKind::Wait { waiter: w });
                    self.answer_job_waiter(w, f.job.clone());
                }
                self.flow_job_finished(&f);
            }
        }
    }

    /// A debounced publish: a key whose job is still delayed (never delivered) replaces that
    /// job's message and restarts its delay; otherwise a new job is published and the key
    /// names it, held until it finishes.
    pub(crate) fn publish_debounced(
        &mut self,
        queue: &str,
        mut m: PublishMessage,
    ) -> Result<Published, Error> {
        check_publish(&self.ctx.limits, &m)?;
        let Some(key) = m.idempotency_key.clone() else {
            return Err(Error::invalid("debounce", "needs an idempotency key"));
        };
        if m.delay_ms.is_none_or(|d| d == 0) {
            return Err(Error::invalid("debounce", "needs a delay"));
        }
        let now = self.ctx.now;
        let qid = self.publish_target(queue)?.0.id;
        self.dedup.expire(now);
        let key = ScopedKey::new(qid, &key);
        let pending = self.dedup.first(&key).map(|p| p.message_id);
        let q = self.queues.get_mut(&qid).expect("publish target exists");
        let delayed = pending.filter(|id| {
            q.messages
                .get(id)
                .is_some_and(|msg| matches!(msg.state, State::Delayed { .. }) && msg.attempts == 0)
        });
        if let Some(id) = delayed {
            let old = q.messages[&id].held_bytes();
            q.check_memory(&self.ctx, publish_bytes(&m).saturating_sub(old))?;
            q.check_groups(&self.ctx.limits, m.group.as_deref().into_iter())?;
            let msg = q.remove_waiting(&mut self.ctx, id);
            q.let_go(&mut self.ctx, msg.held_bytes());
            let published = q.publish_as(&mut self.ctx, &mut m, true, id);
            return Ok(Published {
                replaced: true,
                ..published
            });
        }
        q.check_room(1)?;
        q.check_memory(&self.ctx, publish_bytes(&m))?;
        q.check_groups(&self.ctx.limits, m.group.as_deref().into_iter())?;
        if pending.is_none() {
            self.dedup
                .check_room(1, self.ctx.limits.max_idempotency_keys)?;
        }
        let q = self.queues.get_mut(&qid).expect("publish target exists");
        let published = q.publish(&mut self.ctx, &mut m, true);
        self.dedup.record_held(key, published.clone());
        Ok(published)
    }
}
