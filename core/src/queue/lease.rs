//! Leases: ack, nack, extend, and expiry (handled exactly like a nack with requeue).

use std::sync::Arc;

use crate::Error;
use crate::api::{DeadLetterReason, LeaseToken, MessageId, NackAction, Observed, ObservedKind};
use crate::config::{MAX_LEASE_MS, RetryPosition};
use crate::ctx::{Ctx, Finished};
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
        if let Some(c) = consumer {
            self.consumers.release(&c, ctx.now);
        }
        self.return_credit(session, id);
        self.in_flight -= 1;
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
        let msg = self.messages.remove(&id).expect("leased message exists");
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

    pub(crate) fn nack(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease: Option<LeaseToken>,
        requeue: bool,
        delay_ms: Option<u64>,
        error: Option<String>,
    ) -> Result<NackAction, Error> {
        if delay_ms.is_some_and(|d| d > ctx.limits.max_delay_ms) {
            return Err(Error::invalid(
                "delay_ms",
                format!("at most {} ms", ctx.limits.max_delay_ms),
            ));
        }
        let (lease, deadline) = self.leased(id, lease)?;
        self.release(ctx, id, lease, deadline);
        self.counters.nacked += 1;
        let now = ctx.now;
        let error = error.map(|e| truncate(e, ctx.limits.max_error_bytes));
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        msg.set_last_error(error);
        let msg = &self.messages[&id];
        ctx.observe(|| self.observed(ObservedKind::Nacked, msg, now));
        let action = self.fail(ctx, id, requeue, delay_ms);
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
        if msg.cancel_requested {
            let msg = self.messages.remove(&id).expect("message exists");
            self.cancel_ttl(ctx, &msg);
            let started_at = Some(msg.ready_since);
            self.settle_cancelled(ctx, msg, None, started_at);
            return NackAction::Cancelled;
        }
        let reason = if msg.expired {
            Some(DeadLetterReason::Expired)
        } else if !requeue {
            Some(DeadLetterReason::Rejected)
        } else if msg.attempts > msg.max_retries {
            Some(DeadLetterReason::MaxRetriesExceeded)
        } else {
            None
        };
        if let Some(reason) = reason {
            let msg = self.messages.remove(&id).expect("message exists");
            self.cancel_ttl(ctx, &msg);
            self.dead_letter(ctx, msg, reason);
            return NackAction::DeadLettered;
        }
        let delay = delay_ms.unwrap_or_else(|| self.retry_delay(ctx, msg.attempts));
        let now = ctx.now;
        let msg = &self.messages[&id];
        ctx.observe(|| Observed {
            ms: Some(delay),
            ..self.observed(ObservedKind::RetryScheduled, msg, now)
        });
        let back = self.config.retry_position == RetryPosition::Back;
        let msg = self.messages.get_mut(&id).expect("message exists");
        if delay == 0 {
            msg.state = State::Ready;
            msg.ready_since = now;
            if back {
                msg.seq = ctx.seq();
            }
            self.ready.insert(msg.priority, msg.seq, id);
            NackAction::Requeued
        } else {
            let until = now.add_ms(delay);
            msg.state = State::Delayed { until };
            ctx.timers.add(until, TimerKind::Due { queue: self.id, id });
            self.delayed += 1;
            NackAction::Delayed
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
