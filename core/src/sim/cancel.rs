//! Cancellations: a task type's `cancel` makes a fraction of its tasks cancelled some time
//! after they are published, as users giving up on a job would.
//!
//! Every task of such a type is seen once, when it is published: by the producer or worker
//! that published it (from the publish reply), or, for a schedule's run, after the engine
//! timer that published it (its task type is read with `GetJob`). One draw from the
//! cancellations' own PRNG decides whether it is cancelled and one more draws the delay; the
//! cancel is then an agenda entry like an actor's wake-up. The engine answers a cancel with
//! `cancelled` (it was ready or delayed), `in_flight` (its worker's ack, nack or lease expiry
//! will settle it as cancelled) or `already_finished`; all three are counted, none is an error.

use std::sync::Arc;

use super::dist::Dist;
use super::grouping::GroupClass;
use super::report::CancelStats;
use super::scenario::Scenario;
use super::world::{Actor, Stage};
use crate::{Command, Error, JobState, MessageId, Reply, Rng};

/// Most cancellations waiting for their time; beyond it a drawn cancellation is skipped (and
/// counted as `skipped`).
pub(crate) const MAX_PENDING_CANCELS: u64 = 1_000_000;

/// The cancellation policy of every task type, its PRNG and its counts.
pub(crate) struct Canceller {
    rng: Rng,
    /// Per task type: `(fraction, delay)` when its tasks may be cancelled.
    policy: Vec<Option<(f64, Dist)>>,
    pending: u64,
    pub(crate) stats: CancelStats,
}

impl Canceller {
    pub(crate) fn new(scenario: &Scenario, rng: Rng) -> Self {
        let policy = scenario
            .task_types
            .iter()
            .map(|t| {
                t.cancel
                    .as_ref()
                    .filter(|c| c.fraction > 0.0)
                    .map(|c| (c.fraction, c.after.clone()))
            })
            .collect();
        Self {
            rng,
            policy,
            pending: 0,
            stats: CancelStats::default(),
        }
    }

    /// Whether any task type is ever cancelled.
    pub(crate) fn active(&self) -> bool {
        self.policy.iter().any(Option::is_some)
    }

    /// A task of type `kind` was published at `now`: when it is to be cancelled, when.
    fn draw(&mut self, kind: usize, now: u64) -> Option<u64> {
        let (fraction, after) = self.policy.get(kind)?.as_ref()?;
        if self.rng.next_f64() >= *fraction {
            return None;
        }
        let at = now.saturating_add(after.sample(&mut self.rng));
        if self.pending >= MAX_PENDING_CANCELS {
            self.stats.skipped += 1;
            return None;
        }
        self.pending += 1;
        Some(at)
    }
}

impl Stage {
    /// A task of type `kind` was published at `now` as `id` (its group of class `class`):
    /// counts it for the report's group classes and schedules its cancellation if its type's
    /// `cancel` draws one.
    pub(crate) fn published(&mut self, now: u64, id: MessageId, kind: usize, class: GroupClass) {
        self.driver.metrics.classify(id, class);
        if let Some(at) = self.canceller.draw(kind, now) {
            self.schedule(at, Actor::Cancel(id, kind as u32));
        }
    }

    /// Tasks a schedule's run published during the engine timers just run: their task type
    /// comes from the job's `task` header. A flow parent the timers released (a child's lease
    /// expiry finished it) was seen when its flow was added.
    pub(crate) fn published_by_timers(&mut self, now: u64, ids: Vec<(Arc<str>, MessageId)>) {
        for (queue, id) in ids {
            if self.driver.metrics.is_flow_job(id) {
                continue;
            }
            let cmd = Command::GetJob {
                queue: queue.to_string(),
                message_id: id,
            };
            let Ok(Reply::Job(job)) = self.driver.handle(now, cmd) else {
                continue;
            };
            let kind = job
                .headers
                .get("task")
                .and_then(|t| self.catalog.index_of(t));
            if let Some(kind) = kind {
                self.published(now, id, kind, GroupClass::Ungrouped);
            }
        }
    }

    /// A cancellation of a task of type `kind` is due: cancel the job, whatever state it is
    /// in (a flow parent still waiting for its children is cancelled with them).
    pub(crate) fn cancel(&mut self, now: u64, id: MessageId, kind: usize) {
        self.canceller.pending -= 1;
        self.canceller.stats.sent += 1;
        let cmd = Command::Cancel {
            queue: self.catalog.queue(kind).to_owned(),
            message_id: id,
        };
        match self.driver.handle(now, cmd) {
            Ok(Reply::Cancelled {
                state: JobState::InFlight,
            }) => self.canceller.stats.in_flight += 1,
            Ok(_) => {}
            // Finished (and perhaps no longer kept for lookup): nothing to cancel.
            Err(Error::AlreadyFinished { .. } | Error::MessageNotFound { .. }) => {
                self.canceller.stats.already_finished += 1;
            }
            Err(e) => debug_assert!(false, "unexpected cancel refusal {e}"),
        }
    }
}
