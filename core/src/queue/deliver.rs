//! The one delivery path: long-poll waiters and attached sessions stand in one line, and ready
//! messages are leased to them first come, first served.
//!
//! A waiter takes what it asked for (within its consumer's prefetch room) and leaves the line;
//! a session takes up to its credit and goes to the back, so sessions share a busy queue round
//! robin. A taker with no room keeps its place and is passed over. An immediate consume leases
//! through the same `take`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::{Delivery, Event, MessageId, Observed, ObservedKind, SessionId, WaiterId};
use crate::ctx::Ctx;
use crate::time::Millis;
use crate::timers::TimerKind;

use super::{Queue, State};

/// A parked long-poll consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Waiter {
    pub(crate) id: WaiterId,
    pub(crate) max_messages: u32,
    pub(crate) lease_ms: u64,
    pub(crate) consumer: Option<Arc<str>>,
    pub(crate) deadline: Millis,
}

/// One place in a queue's line of consumers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Taker {
    /// A long-poll consume, answered once.
    Waiter(Waiter),
    /// A streaming consumer, served again and again while it has credit.
    Session(SessionId),
}

/// Who a lease goes to.
pub(crate) struct Lessee<'a> {
    pub(crate) lease_ms: u64,
    pub(crate) consumer: &'a Option<Arc<str>>,
    pub(crate) session: Option<SessionId>,
}

impl Queue {
    /// Leases up to `max` ready messages to `to` (fewer if its consumer's prefetch room is
    /// smaller, fewer are ready, or the queue's flow limits hold the rest back).
    pub(crate) fn take(&mut self, ctx: &mut Ctx, max: u32, to: &Lessee<'_>) -> Vec<Delivery> {
        let n = max.min(self.prefetch_room(to.consumer));
        let mut out = Vec::with_capacity(n.min(16) as usize);
        for _ in 0..n {
            let Some(id) = self.next_ready(ctx) else {
                break;
            };
            self.lease_out(ctx, id, to, &mut out);
        }
        out
    }

    /// How many more leases the consumer id may hold under the queue's `prefetch`.
    pub(crate) fn prefetch_room(&self, consumer: &Option<Arc<str>>) -> u32 {
        match (self.config.prefetch, consumer) {
            (0, _) | (_, None) => u32::MAX,
            (limit, Some(c)) => limit.saturating_sub(self.consumers.held(c)),
        }
    }

    /// Moves one message from ready to in-flight and adds its delivery to `out` (built where
    /// it is stored: a delivery is bigger than what moves without a copy call).
    fn lease_out(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        to: &Lessee<'_>,
        out: &mut Vec<Delivery>,
    ) {
        let now = ctx.now;
        let lease = ctx.lease_token();
        let deadline = now.add_ms(to.lease_ms);
        let slot = self.messages.slot_of(&id).expect("ready id has a message");
        let msg = self.messages.at_mut(slot);
        debug_assert_eq!(msg.state, State::Ready);
        msg.attempts += 1;
        msg.state = State::InFlight {
            lease,
            deadline,
            consumer: to.consumer.clone(),
            session: to.session,
        };
        let wait = now.since(msg.ready_since);
        msg.ready_since = now;
        ctx.timers.add(deadline, self.lease_timer(id, lease));
        self.in_flight += 1;
        self.counters.consumed += 1;
        self.waits.record(wait);
        if let Some(c) = to.consumer {
            self.consumers.lease(c, now);
        }
        if let Some(s) = to.session.and_then(|s| self.sessions.get_mut(&s)) {
            s.hold(id, lease);
        }
        let msg = self.messages.at(slot);
        out.push(msg.delivery(&self.name, self.group_of(msg)));
        ctx.observe(|| Observed {
            ms: Some(wait),
            ..self.observed(ObservedKind::Delivered, msg, now)
        });
    }

    /// Parks a waiter at the back of the line.
    pub(crate) fn park(
        &mut self,
        ctx: &mut Ctx,
        max_messages: u32,
        to: &Lessee<'_>,
        wait_ms: u64,
    ) -> WaiterId {
        let id = WaiterId(ctx.next_waiter);
        ctx.next_waiter += 1;
        let deadline = ctx.now.add_ms(wait_ms);
        ctx.timers.add(deadline, TimerKind::Wait { waiter: id });
        if let Some(c) = to.consumer {
            self.consumers.wait(c, 1);
        }
        self.line.push_back(Taker::Waiter(Waiter {
            id,
            max_messages,
            lease_ms: to.lease_ms,
            consumer: to.consumer.clone(),
            deadline,
        }));
        id
    }

    /// Removes a waiter (answered, timed out or cancelled); `None` if it is not here.
    pub(crate) fn unpark(&mut self, ctx: &mut Ctx, waiter: WaiterId) -> Option<Waiter> {
        let at = self
            .line
            .iter()
            .position(|t| matches!(t, Taker::Waiter(w) if w.id == waiter))?;
        let Some(Taker::Waiter(w)) = self.line.remove(at) else {
            unreachable!("position found a waiter");
        };
        self.forget_waiter(ctx, &w);
        Some(w)
    }

    /// Drops a waiter that has left the line: its deadline and its consumer's wait count.
    fn forget_waiter(&mut self, ctx: &mut Ctx, w: &Waiter) {
        ctx.timers
            .remove(w.deadline, TimerKind::Wait { waiter: w.id });
        if let Some(c) = &w.consumer {
            self.consumers.wait(c, -1);
        }
    }

    /// The parked waiters, in line order.
    pub(crate) fn waiters(&self) -> impl Iterator<Item = &Waiter> {
        self.line.iter().filter_map(|t| match t {
            Taker::Waiter(w) => Some(w),
            Taker::Session(_) => None,
        })
    }

    /// Hands ready messages to the line, first come first served: a waiter gets what it asked
    /// for and leaves (`Event::Delivered`); a session gets up to its credit and goes to the
    /// back (`Event::Pushed`). A taker without room keeps its place. Serving stops while the
    /// queue's flow limits hold back every ready message.
    pub(crate) fn serve(&mut self, ctx: &mut Ctx) {
        let mut i = 0;
        while i < self.line.len() && self.deliverable(ctx.now) {
            let served = match &self.line[i] {
                Taker::Waiter(w) => self.serve_waiter(ctx, i, w.max_messages),
                Taker::Session(s) => self.serve_session(ctx, i, *s),
            };
            if !served {
                i += 1;
            }
        }
    }

    /// Answers the waiter at place `i` if its consumer has room; false when passed over.
    fn serve_waiter(&mut self, ctx: &mut Ctx, i: usize, max_messages: u32) -> bool {
        let Some(Taker::Waiter(w)) = self.line.get(i) else {
            unreachable!("serve_waiter at a waiter's place");
        };
        if self.prefetch_room(&w.consumer) == 0 {
            return false;
        }
        let Some(Taker::Waiter(w)) = self.line.remove(i) else {
            unreachable!("checked above");
        };
        self.forget_waiter(ctx, &w);
        ctx.answered.push(w.id);
        let to = Lessee {
            lease_ms: w.lease_ms,
            consumer: &w.consumer,
            session: None,
        };
        let messages = self.take(ctx, max_messages, &to);
        ctx.events.push_back(Event::Delivered {
            waiter_id: w.id,
            messages,
        });
        true
    }

    /// Pushes to the session at place `i` if it has credit and prefetch room, moving it to the
    /// back of the line; false when passed over.
    fn serve_session(&mut self, ctx: &mut Ctx, i: usize, id: SessionId) -> bool {
        let s = &self.sessions[&id];
        let consumer = Some(Arc::clone(&s.consumer));
        let (credit, lease_ms) = (s.credit, s.lease_ms);
        if credit == 0 || self.prefetch_room(&consumer) == 0 {
            return false;
        }
        let taker = self.line.remove(i).expect("the session's place");
        self.line.push_back(taker);
        let to = Lessee {
            lease_ms,
            consumer: &consumer,
            session: Some(id),
        };
        let messages = self.take(ctx, credit, &to);
        ctx.events.push_back(Event::Pushed {
            session_id: id,
            messages,
        });
        true
    }
}
