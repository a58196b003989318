//! The oracle's checks of a delivery being settled by its consumer: an ack's or extend's lease,
//! a nack's action, and a session's detach giving its messages back.

use synap_core::{Error, LeaseToken, MessageId, NackAction, Reply, SessionId};

use super::{Failing, Oracle, code};

impl Oracle {
    /// Checks an ack's or extend's validity against the ledger.
    pub(super) fn check_lease_use(
        &self,
        id: MessageId,
        lease: Option<LeaseToken>,
        now: u64,
        result: &Result<Reply, Error>,
    ) {
        let lease = lease.expect("the swarm always names the lease");
        let want = if self.ledger.lease_valid(id, lease, now) {
            None
        } else {
            Some(self.ledger.expected_error(id, now))
        };
        assert_eq!(
            code(result),
            want,
            "ack or extend of {id} answered {result:?}"
        );
    }

    pub(super) fn nack(
        &mut self,
        now: u64,
        id: MessageId,
        lease: LeaseToken,
        (requeue, snooze): (bool, bool),
        delay: Option<u64>,
        result: &Result<Reply, Error>,
    ) {
        if !self.ledger.lease_valid(id, lease, now) {
            assert_eq!(
                code(result),
                Some(self.ledger.expected_error(id, now)),
                "nack of {id}"
            );
            return;
        }
        let Ok(Reply::Nacked { action }) = result else {
            panic!("valid nack of {id} answered {result:?}");
        };
        let e = &self.ledger.map[&id];
        if e.cancel_requested {
            assert_eq!(*action, NackAction::Cancelled, "nack of cancelled {id}");
            self.ledger.failing = Some(Failing::Nack(id, requeue));
            return;
        }
        if snooze {
            return self.snoozed(id, now, *action);
        }
        let expired = e.expired || e.expires_at.is_some_and(|x| x <= now);
        let dead = expired || !requeue || e.deliveries > e.max_retries;
        assert_eq!(
            *action == NackAction::DeadLettered,
            dead,
            "nack action of {id}"
        );
        if delay.is_some_and(|d| d > 0) && !dead {
            assert_eq!(*action, NackAction::Delayed);
        }
        self.ledger.failing = Some(Failing::Nack(id, requeue));
    }

    pub(super) fn detach(&mut self, s: SessionId, give_back: bool, result: &Result<Reply, Error>) {
        let Some(m) = self.takers.sessions.remove(&s) else {
            assert_eq!(
                code(result),
                Some("session_not_found"),
                "detach of a gone session"
            );
            return;
        };
        let returned = if give_back { m.held.len() as u64 } else { 0 };
        assert_eq!(result, &Ok(Reply::Detached { returned }), "detach of {s:?}");
        if give_back {
            let ids: Vec<MessageId> = m.held.iter().copied().collect();
            self.given_back = ids
                .iter()
                .map(|id| (*id, self.ledger.map[id].deliveries))
                .collect();
            self.ledger.failing = Some(Failing::GiveBack(ids));
        } else {
            self.ledger.orphan(s);
        }
    }
}
