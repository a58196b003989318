//! Leases: ack, nack, extend, and expiry (handled exactly like a nack with requeue).

use std::sync::Arc;

use crate::Error;
use crate::api::{DeadLetterReason, LeaseToken, MessageId, NackAction, Observed, ObservedKind};
use crate::config::{MAX_LEASE_MS, RetryPosition};
use crate::ctx::{Ctx, Finished, Outcome};
use crate::time::Millis;
use crate::timers::TimerKind;

use super::{Message, Queue, Record, State};
use crate::api::JobState;
use crate::json::Json;

/// Text recorded as a message's last error when its lease runs out.
pub(crate) const LEASE_EXPIRED: &str = "lease expired";

impl Queue {
    /// Checks that `id` is in flight under `lease` (any lease when `None`) and returns its
    /// current lease token and deadline.
    pub(crate) fn leased(
        &self,
        id: MessageId,
        lease: Option<LeaseToken>,
    ) -> Result<(LeaseToken, Millis), Error> {
        let Some(msg) = self.messages.get(&id) else {
            if self.dlq.contains(id) {
                return Err(mismatch(id, "the message was dead-lettered"));
            }
            return Err(Error::MessageNotFound {
                message_id: id.to_string(),
            });
        };
        match (&msg.state, lease) {
            (State::InFlight { lease: current, .. }, Some(given)) if *current != given => {
                Err(mismatch(
                    id,
                    &format!("lease {given} is stale, the current lease is {current}"),
                ))
            }
            (
                State::InFlight {
                    lease, deadline, ..
                },
                _,
            ) => Ok((*lease, *deadline)),
            (State::Ready, _) => Err(mismatch(id, "the message is not leased (it is ready)")),
            (State::Delayed { .. }, _) => Err(mismatch(
                id,
                "the message is not leased (it awaits a retry)",
            )),
        }
    }

    /// Takes an in-flight message out of flight: removes its lease timer, releases its
    /// consumer's prefetch slot and gives its session the credit back.
    pub(crate) fn release(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease: LeaseToken,
        deadline: Millis,
    ) {
        ctx.timers.remove(deadline, self.lease_timer(id, lease));
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        let State::InFlight {
            consumer, session, ..
        } = &msg.state
        else {
            unreachable!("release of a message that is not in flight");
        };
        let (consumer, session): (Option<Arc<str>>, _) = (consumer.clone(), *session);
        let group = msg.group_slot();
        if let Some(c) = consumer {
            self.consumers.release(&c, ctx.now);
        }
        self.return_credit(session, id);
        self.in_flight -= 1;
        if let Some(g) = group {
            self.group_released(ctx, g);
        }
    }

    /// Acks a delivery: the job is completed (kept with `result` for lookup), or, if it was
    /// cancelled meanwhile, settled as cancelled.
    pub(crate) fn ack(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease: Option<LeaseToken>,
        result: Option<Json>,
    ) -> Result<(), Error> {
        if let Some(r) = &result
            && r.len() as u64 > self.config.max_result_bytes
        {
            return Err(Error::too_large(
                "result",
                r.len(),
                self.config.max_result_bytes as usize,
            ));
        }
        let (lease, deadline) = self.leased(id, lease)?;
        self.release(ctx, id, lease, deadline);
        let msg = self.remove_message(ctx, id);
        self.cancel_ttl(ctx, &msg);
        let now = ctx.now;
        let started_at = Some(msg.ready_since);
        if msg.cancel_requested {
            self.settle_cancelled(ctx, msg, result, started_at);
        } else {
            self.counters.acked += 1;
            ctx.observe(|| self.observed(ObservedKind::Acked, &msg, now));
            self.let_go(ctx, msg.held_bytes());
            self.keep(
                ctx,
                Record {
                    msg,
                    state: JobState::Completed,
                    result,
                    started_at,
                    finished_at: now,
                },
            );
        }
        self.serve(ctx);
        Ok(())
    }

    /// Rejects a delivery: retry it (`requeue`), snooze it, or dead-letter it.
    pub(crate) fn nack(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease: Option<LeaseToken>,
        nack: Nack,
    ) -> Result<NackAction, Error> {
        if nack.delay_ms.is_some_and(|d| d > ctx.limits.max_delay_ms) {
            return Err(Error::invalid(
                "delay_ms",
                format!("at most {} ms", ctx.limits.max_delay_ms),
            ));
        }
        if nack.snooze && !nack.requeue {
            return Err(Error::invalid(
                "snooze",
                "a snoozed message comes back: requeue must be true",
            ));
        }
        let (lease, deadline) = self.leased(id, lease)?;
        self.release(ctx, id, lease, deadline);
        self.counters.nacked += 1;
        let now = ctx.now;
        let error = nack.error.map(|e| truncate(e, ctx.limits.max_error_bytes));
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        msg.set_last_error(error);
        let msg = &self.messages[&id];
        ctx.observe(|| self.observed(ObservedKind::Nacked, msg, now));
        let action = if nack.snooze {
            self.snooze(ctx, id, nack.delay_ms.unwrap_or(0))
        } else {
            self.fail(ctx, id, nack.requeue, nack.delay_ms)
        };
        self.serve(ctx);
        Ok(action)
    }

    pub(crate) fn extend(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease: Option<LeaseToken>,
        lease_ms: u64,
    ) -> Result<Millis, Error> {
        if lease_ms == 0 {
            return Err(Error::invalid("lease_ms", "must be positive"));
        }
        let (lease, deadline) = self.leased(id, lease)?;
        let new_deadline = ctx.now.add_ms(lease_ms.min(MAX_LEASE_MS));
        ctx.timers.remove(deadline, self.lease_timer(id, lease));
        ctx.timers.add(new_deadline, self.lease_timer(id, lease));
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        if let State::InFlight { deadline, .. } = &mut msg.state {
            *deadline = new_deadline;
        }
        Ok(new_deadline)
    }

    /// A lease timer fired: if the lease is still current, treat it as a failed delivery.
    pub(crate) fn on_lease_expiry(&mut self, ctx: &mut Ctx, id: MessageId, lease: LeaseToken) {
        let Ok((current, deadline)) = self.leased(id, Some(lease)) else {
            return;
        };
        debug_assert_eq!(current, lease);
        // The timer popped already; `release` removing it again is a no-op.
        self.release(ctx, id, lease, deadline);
        self.counters.lease_expired += 1;
        let now = ctx.now;
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        msg.set_last_error(Some(LEASE_EXPIRED.to_owned()));
        let msg = &self.messages[&id];
        ctx.observe(|| self.observed(ObservedKind::LeaseExpired, msg, now));
        self.fail(ctx, id, true, None);
        self.serve(ctx);
    }

    /// After a failed delivery (nack or lease expiry) of a message just taken out of flight:
    /// dead-letter it, or schedule its retry.
    pub(crate) fn fail(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        requeue: bool,
        delay_ms: Option<u64>,
    ) -> NackAction {
        let msg = &self.messages[&id];
        let reason = if !requeue {
            Some(DeadLetterReason::Rejected)
        } else if msg.attempts > msg.max_retries {
            Some(DeadLetterReason::MaxRetriesExceeded)
        } else {
            None
        };
        if let Some(action) = self.settle_failed(ctx, id, reason) {
            return action;
        }
        let attempts = self.messages[&id].attempts;
        let delay = delay_ms.unwrap_or_else(|| self.retry_delay(ctx, attempts));
        if self.retry(ctx, id, delay) {
            NackAction::Delayed
        } else {
            NackAction::Requeued
        }
    }

    /// Snoozes a delivery that just left flight: back after `delay_ms` without spending an
    /// attempt, or dead-lettered (`snoozed_out`) past the queue's `max_snoozes`.
    fn snooze(&mut self, ctx: &mut Ctx, id: MessageId, delay_ms: u64) -> NackAction {
        let msg = self.messages.get_mut(&id).expect("message exists");
        msg.attempts -= 1;
        let snoozes = msg.snoozes() + 1;
        msg.set_snoozes(snoozes);
        let reason = (snoozes > self.config.max_snoozes).then_some(DeadLetterReason::SnoozedOut);
        if let Some(action) = self.settle_failed(ctx, id, reason) {
            return action;
        }
        self.retry(ctx, id, delay_ms);
        NackAction::Snoozed
    }

    /// Ends a failed delivery's message if it must end: cancelled when cancellation was
    /// asked, dead-lettered when its TTL passed or for `reason`. `None` when it is retried.
    fn settle_failed(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        reason: Option<DeadLetterReason>,
    ) -> Option<NackAction> {
        let msg = &self.messages[&id];
        if msg.cancel_requested {
            let msg = self.remove_message(ctx, id);
            self.cancel_ttl(ctx, &msg);
            let started_at = Some(msg.ready_since);
            self.settle_cancelled(ctx, msg, None, started_at);
            return Some(NackAction::Cancelled);
        }
        let reason = if msg.expired {
            DeadLetterReason::Expired
        } else {
            reason?
        };
        let msg = self.remove_message(ctx, id);
        self.cancel_ttl(ctx, &msg);
        self.dead_letter(ctx, msg, reason);
        Some(NackAction::DeadLettered)
    }

    /// Makes a message that left flight ready again after `delay` (at once when 0); true
    /// when it waits.
    fn retry(&mut self, ctx: &mut Ctx, id: MessageId, delay: u64) -> bool {
        let now = ctx.now;
        let msg = &self.messages[&id];
        ctx.observe(|| Observed {
            ms: Some(delay),
            ..self.observed(ObservedKind::RetryScheduled, msg, now)
        });
        let group = msg.group_slot();
        let back = self.config.retry_position == RetryPosition::Back && !self.keeps_place(group);
        let msg = self.messages.get_mut(&id).expect("message exists");
        if delay == 0 {
            msg.state = State::Ready;
            msg.ready_since = now;
            if back {
                msg.seq = ctx.seq();
            }
            let place = (msg.priority, msg.seq, id);
            self.put_ready(ctx, place, group);
            false
        } else {
            let until = now.add_ms(delay);
            msg.state = State::Delayed { until };
            ctx.timers.add(until, TimerKind::Due { queue: self.id, id });
            self.delayed += 1;
            self.group_retry_wait(ctx, group, true);
            true
        }
    }

    /// Moves a message that has left the queue's map into the DLQ (or drops it when the queue
    /// keeps no DLQ).
    pub(crate) fn dead_letter(&mut self, ctx: &mut Ctx, msg: Message, reason: DeadLetterReason) {
        let now = ctx.now;
        let job = ctx.job_waiters.watches(self.id, msg.id).then(|| {
            let mut job = self.job_of(&msg, JobState::DeadLettered, None, None, Some(now));
            job.dead_letter_reason = Some(reason);
            Box::new(job)
        });
        ctx.finished.push(Finished {
            queue: self.id,
            id: msg.id,
            job,
            outcome: Outcome::DeadLettered(reason),
        });
        self.counters.dead_lettered += 1;
        ctx.observe(|| Observed {
            reason: Some(reason),
            ..self.observed(ObservedKind::DeadLettered, &msg, now)
        });
        let dropped = if self.config.dead_letter {
            self.dlq.push(msg, reason, now, self.config.dlq_max)
        } else {
            self.dlq.dropped += 1;
            msg.held_bytes()
        };
        self.let_go(ctx, dropped);
    }
}

/// How a nack asks for its message to go on.
pub(crate) struct Nack {
    /// Retry (subject to `max_retries`) rather than dead-letter at once.
    pub(crate) requeue: bool,
    /// Retry delay overriding the queue's policy (the snooze's length when snoozing).
    pub(crate) delay_ms: Option<u64>,
    /// Error text kept with the message.
    pub(crate) error: Option<String>,
    /// Snooze: back after the delay without spending an attempt.
    pub(crate) snooze: bool,
}

fn mismatch(id: MessageId, detail: &str) -> Error {
    Error::LeaseMismatch {
        message_id: id.to_string(),
        detail: detail.to_owned(),
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
