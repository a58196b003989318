//! The oracle's job-lifecycle rules (DESIGN.md §13): lookups, waits for a job, cancels and
//! schedules (their timetables are in `schedules`).
//!
//! - A lookup finds a waiting, in-flight or dead-lettered job, and a completed or cancelled
//!   one exactly while retention keeps it; it carries its last publish's message and its ack's
//!   result.
//! - A wait for a job answers at once only for a finished job (or with `wait_ms` 0); a parked
//!   wait is answered in the very call its job finishes, with the finished job, or at its
//!   deadline with the job as it is, or ends with a timeout when the job's queue is deleted.
//!   At the end of every call no wait is left on a finished job or past its deadline.

use synap_core::{Command, Error, Job, JobState, MessageId, Reply, WaiterId};

use super::schedules::Put;
use super::{Oracle, Place, code};

/// A parked wait for a job.
#[derive(Clone, Debug)]
pub(crate) struct JobWait {
    /// The job's queue.
    pub(crate) queue: usize,
    /// The job.
    pub(crate) id: MessageId,
    /// When the wait ends unless the job finishes first.
    pub(crate) deadline: u64,
}

impl Oracle {
    /// A cancel: a waiting job ends cancelled now, an in-flight one when its delivery ends, a
    /// finished one is refused (or forgotten already).
    pub(super) fn cancel(&mut self, id: MessageId, now: u64, result: &Result<Reply, Error>) {
        let Some(e) = self.ledger.map.get_mut(&id) else {
            assert_eq!(
                code(result),
                Some("message_not_found"),
                "cancel of unknown {id}"
            );
            return;
        };
        let want = match &e.place {
            Place::Waiting => JobState::Cancelled,
            Place::InFlight {
                deadline: Some(d), ..
            } if now < *d => JobState::InFlight,
            Place::InFlight { .. } => panic!("{id}: a lease ran out without its timer"),
            Place::Dead(_) => {
                assert_eq!(
                    code(result),
                    Some("already_finished"),
                    "cancel of dead {id}"
                );
                return;
            }
            Place::Acked | Place::Cancelled => {
                let c = code(result);
                assert!(
                    matches!(c, Some("already_finished" | "message_not_found")),
                    "cancel of finished {id} answered {result:?}"
                );
                return;
            }
        };
        assert_eq!(
            result,
            &Ok(Reply::Cancelled { state: want }),
            "cancel of {id}"
        );
        e.cancel_requested = true;
    }

    /// A job as the engine answered it agrees with the ledger: state, message, result.
    fn check_job(&self, job: &Job) {
        let id = job.message_id;
        let e = self
            .ledger
            .map
            .get(&id)
            .unwrap_or_else(|| panic!("job {id} answered, unknown to the ledger"));
        let ok = matches!(
            (&e.place, job.state),
            (Place::Waiting, JobState::Ready | JobState::Delayed)
                | (Place::InFlight { .. }, JobState::InFlight)
                | (Place::Dead(_), JobState::DeadLettered)
                | (Place::Acked, JobState::Completed)
                | (Place::Cancelled, JobState::Cancelled)
        );
        assert!(ok, "job {id}: ledger {:?}, engine {:?}", e.place, job.state);
        self.check_flow_fields(job);
        if job.state == JobState::InFlight {
            assert_eq!(
                job.cancel_requested, e.cancel_requested,
                "job {id} cancel mark"
            );
        }
        if let Some(body) = &e.body {
            assert_eq!(
                job.message
                    .as_ref()
                    .map(synap_core::Json::to_value)
                    .as_ref(),
                Some(body),
                "job {id} carries another message than its last publish's"
            );
        }
        if matches!(job.state, JobState::Completed | JobState::Cancelled) {
            assert_eq!(
                job.result.as_ref().map(synap_core::Json::to_value),
                e.result,
                "job {id}: the result its ack carried"
            );
        }
    }

    /// A lookup agrees with the ledger; a finished job is found exactly while it is kept.
    pub(super) fn check_lookup(&mut self, id: MessageId, result: &Result<Reply, Error>) {
        if self.flow_lookup(id, result) {
            return;
        }
        self.retention.prune(self.now);
        let found = self.ledger.map.get(&id).is_some_and(|e| match e.place {
            Place::Acked | Place::Cancelled => self.retention.holds(e.queue, id),
            _ => true,
        });
        match result {
            Ok(Reply::Job(job)) => {
                assert!(found, "lookup of {id} found a job the oracle has not kept");
                self.check_job(job);
            }
            Err(Error::MessageNotFound { .. }) => {
                let place = self.ledger.map.get(&id).map(|e| &e.place);
                assert!(!found, "lookup of {id} found nothing, ledger {place:?}");
            }
            other => panic!("lookup of {id} answered {other:?}"),
        }
    }

    /// A `WaitJob` was answered (its events are drained).
    pub(super) fn wait_job(
        &mut self,
        queue: &str,
        id: MessageId,
        wait_ms: u64,
        result: &Result<Reply, Error>,
    ) {
        if let Ok(Reply::Waiting { waiter_id }) = result {
            assert!(wait_ms > 0, "a wait of 0 ms parked");
            assert!(self.ledger.unfinished(id), "a wait parked on finished {id}");
            let max = synap_core::Limits::default().max_wait_ms;
            let w = JobWait {
                queue: self.cfg.queue_index(queue),
                id,
                deadline: self.now + wait_ms.min(max),
            };
            let fresh = !self.takers.waiters.contains_key(waiter_id);
            assert!(
                fresh && self.job_waits.insert(*waiter_id, w).is_none(),
                "waiter id reused"
            );
            return;
        }
        if let Ok(Reply::Job(job)) = result {
            assert!(
                wait_ms == 0 || job.state.is_finished(),
                "a wait for {id} answered at once while {:?}",
                job.state
            );
        }
        self.check_lookup(id, result);
    }

    /// A parked wait was answered.
    pub(super) fn job_waited(&mut self, waiter: WaiterId, job: &Job) {
        let w = self
            .job_waits
            .remove(&waiter)
            .unwrap_or_else(|| panic!("job wait answer to unknown waiter {waiter:?}"));
        assert_eq!(job.message_id, w.id, "a wait answered with another job");
        self.check_job(job);
        if !job.state.is_finished() {
            assert!(
                w.deadline <= self.now,
                "the wait for {} answered at {} while {:?}, before its deadline {}",
                w.id,
                self.now,
                job.state,
                w.deadline
            );
        }
        self.waits_answered += 1;
    }

    /// A wait ended with a timeout: only a wait whose job is gone with its queue.
    pub(super) fn job_wait_timed_out(&mut self, waiter: WaiterId) {
        let w = self
            .job_waits
            .remove(&waiter)
            .unwrap_or_else(|| panic!("timeout of unknown waiter {waiter:?}"));
        assert!(
            !self.ledger.map.contains_key(&w.id),
            "the wait for {} timed out while its job exists",
            w.id
        );
    }

    /// A `CancelWait` withdraws a wait still parked (one answered first is not).
    pub(super) fn cancel_wait(&mut self, waiter: WaiterId, result: &Result<Reply, Error>) {
        let cancelled = self.job_waits.remove(&waiter).is_some();
        assert_eq!(
            result,
            &Ok(Reply::WaitCancelled { cancelled }),
            "cancel of wait {waiter:?}"
        );
    }

    /// No wait is stranded: none on a finished job, none past its deadline.
    pub(super) fn check_job_waits(&self) {
        for (waiter, w) in &self.job_waits {
            assert!(
                self.ledger.unfinished(w.id),
                "waiter {waiter:?} stranded: {} finished, its wait unanswered",
                w.id
            );
            assert!(
                w.deadline > self.now,
                "waiter {waiter:?} stranded past its deadline {} (now {})",
                w.deadline,
                self.now
            );
        }
    }

    /// A schedule put (its timetable starts) or the host's resume after downtime.
    pub(super) fn before_schedule_command(
        &mut self,
        now: u64,
        cmd: &Command,
        result: &Result<Reply, Error>,
    ) {
        match cmd {
            Command::PutSchedule {
                queue, schedule, ..
            } => {
                let Ok(Reply::ScheduleSet { next_run_at, .. }) = result else {
                    panic!("schedule put answered {result:?}");
                };
                let q = self.cfg.queue_index(queue);
                let put = match (&schedule.cron, schedule.every_ms) {
                    (Some(pattern), _) => Put {
                        anchor: Some(0),
                        period: crate::swarm::config::cron_period(pattern),
                        max_runs: schedule.max_runs.unwrap_or(u64::MAX),
                        loose: self.cfg.queue(q).max_bytes.is_some(),
                    },
                    (None, every) => Put {
                        anchor: None,
                        period: every.expect("a schedule has a period"),
                        max_runs: schedule.max_runs.unwrap_or(u64::MAX),
                        loose: self.cfg.queue(q).max_bytes.is_some(),
                    },
                };
                self.schedules.put(q, &put, now, *next_run_at);
            }
            Command::Resume { .. } => self.schedules.resumed(now),
            _ => {}
        }
    }

    /// The job-lifecycle commands' checks once their events are drained.
    pub(super) fn after_job_command(&mut self, cmd: &Command, result: &Result<Reply, Error>) {
        match cmd {
            Command::GetJob { message_id, .. } => self.check_lookup(*message_id, result),
            Command::WaitJob {
                queue,
                message_id,
                wait_ms,
            } => self.wait_job(queue, *message_id, *wait_ms, result),
            Command::CancelWait { waiter_id } => self.cancel_wait(*waiter_id, result),
            _ => {}
        }
    }
}
