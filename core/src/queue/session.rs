//! Consumer sessions: streaming consumers attached to a queue.
//!
//! A session holds credit, as a pub/sub subscriber does: each pushed delivery takes one, and
//! the delivery's end (ack, nack, lease expiry, give-back) returns it, so a session never holds
//! more leases than the credit it was granted. Detaching gives back what the session still
//! holds: each message is ready again at once, counted as a failed delivery attempt, so a
//! message that kills every worker it reaches still ends in the DLQ after `max_retries`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{LeaseToken, MessageId, ObservedKind, SessionId};
use crate::ctx::Ctx;

use super::deliver::Taker;
use super::{Queue, State};

/// The error text kept with a message given back because its consumer went away.
pub(crate) const GIVEN_BACK: &str = "consumer disconnected";

/// A streaming consumer of one queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    /// Its consumer id (for `prefetch` and the `consumers` stat).
    pub(crate) consumer: Arc<str>,
    /// Lease length of each delivery.
    pub(crate) lease_ms: u64,
    /// Deliveries it may still be pushed.
    pub(crate) credit: u32,
    /// The messages it holds leases on, with their lease tokens.
    pub(crate) held: BTreeMap<MessageId, LeaseToken>,
}

impl Session {
    /// A delivery was pushed: it holds one credit until it ends.
    pub(crate) fn hold(&mut self, id: MessageId, lease: LeaseToken) {
        debug_assert!(
            self.credit > 0,
            "a session is pushed only within its credit"
        );
        self.credit -= 1;
        let before = self.held.insert(id, lease);
        debug_assert!(before.is_none(), "a message is in flight once");
    }

    /// Credit and held leases together: what the session may hold at most.
    pub(crate) fn window(&self) -> u64 {
        u64::from(self.credit) + self.held.len() as u64
    }
}

impl Queue {
    /// Attaches a validated session at the back of the line and pushes what it can take.
    pub(crate) fn attach(&mut self, ctx: &mut Ctx, session: Session) {
        self.consumers.attach(&session.consumer, 1);
        let id = session.id;
        self.sessions.insert(id, session);
        self.line.push_back(Taker::Session(id));
        self.serve(ctx);
    }

    /// Adds credit to a session and pushes what it can now take; the credit left after.
    pub(crate) fn grant(
        &mut self,
        ctx: &mut Ctx,
        id: SessionId,
        credit: u32,
        max_window: u32,
    ) -> Result<u32, Error> {
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(Error::SessionNotFound { session_id: id.0 })?;
        if s.window() + u64::from(credit) > u64::from(max_window) {
            return Err(Error::limit(
                "session credit (free plus held)",
                u64::from(max_window),
            ));
        }
        s.credit += credit;
        self.serve(ctx);
        Ok(self.sessions[&id].credit)
    }

    /// Removes a session. With `give_back`, the messages it holds are ready again at once
    /// (each counted as a failed attempt); without, their leases run to their deadlines.
    /// Returns how many messages were given back.
    pub(crate) fn detach(&mut self, ctx: &mut Ctx, id: SessionId, give_back: bool) -> Option<u64> {
        let s = self.sessions.remove(&id)?;
        let at = self
            .line
            .iter()
            .position(|t| matches!(t, Taker::Session(x) if *x == id))
            .expect("an attached session stands in the line");
        self.line.remove(at);
        self.consumers.attach(&s.consumer, -1);
        let mut returned = 0;
        for (message_id, lease) in s.held {
            if give_back {
                returned += u64::from(self.give_back(ctx, message_id, lease));
            } else if let Some(m) = self.messages.get_mut(&message_id) {
                if let State::InFlight { session, .. } = &mut m.state {
                    *session = None;
                }
            }
        }
        if returned > 0 {
            self.serve(ctx);
        }
        Some(returned)
    }

    /// Gives back one delivery whose consumer is gone: ready again at once, as a nack with no
    /// delay, so it counts as an attempt and `max_retries` still bounds redeliveries. False if
    /// the delivery has ended already (settled, expired, redelivered). The caller serves the
    /// line afterwards.
    pub(crate) fn give_back(&mut self, ctx: &mut Ctx, id: MessageId, lease: LeaseToken) -> bool {
        let Ok((lease, deadline)) = self.leased(id, Some(lease)) else {
            return false;
        };
        self.release(ctx, id, lease, deadline);
        self.counters.nacked += 1;
        let now = ctx.now;
        let msg = self.messages.get_mut(&id).expect("leased message exists");
        msg.set_last_error(Some(GIVEN_BACK.to_owned()));
        let msg = &self.messages[&id];
        ctx.observe(|| self.observed(ObservedKind::Nacked, msg, now));
        self.fail(ctx, id, true, Some(0));
        true
    }

    /// A delivery of `id` under `lease` ended: its session, if still attached, gets the credit
    /// back.
    pub(crate) fn return_credit(&mut self, session: Option<SessionId>, id: MessageId) {
        if let Some(s) = session.and_then(|s| self.sessions.get_mut(&s)) {
            if s.held.remove(&id).is_some() {
                s.credit += 1;
            }
        }
    }

    /// Every attached session, in id order.
    pub(crate) fn session_ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }
}
