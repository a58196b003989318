//! The oracle: a ledger per message, kept outside the engine from what the engine reports,
//! checking every output against the rules of DESIGN.md §3.
//!
//! It learns of state changes from `Event::Observed` (in the order they happened) and of lease
//! tokens from deliveries, and it predicts the outcome of every ack and nack before the engine
//! answers. A violation panics with the message and the rule.

use std::collections::BTreeMap;

use synap_core::{
    DeadLetterReason, Delivery, Error, MessageId, NackAction, Observed, ObservedKind, QueueConfig,
    QueueStats,
};

/// Where the oracle believes a message is.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// Ready or delayed: deliverable now or later.
    Waiting,
    /// Leased under `lease` until `deadline` (the token is known once the delivery is seen).
    InFlight {
        /// The lease token, once known.
        lease: Option<u64>,
        /// The lease deadline, once known.
        deadline: Option<u64>,
    },
    /// Acknowledged: gone for good.
    Acked,
    /// In the DLQ.
    Dead(DeadLetterReason),
}

/// What the oracle knows of one message.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it is.
    pub place: Place,
    /// Deliveries since publish or redrive.
    pub deliveries: u32,
    /// Its retry limit (known from its publish).
    pub max_retries: u32,
    /// Its expiry, if it has a TTL.
    pub expires_at: Option<u64>,
    /// Its TTL passed.
    pub expired: bool,
    /// Publish time.
    pub published_at: u64,
    /// Its TTL, renewed from `now` on redrive.
    pub ttl_ms: Option<u64>,
    /// When it was last delivered (a timer may deliver it earlier than the host's `now`).
    pub delivered_at: u64,
    /// Lease tokens it was ever delivered under.
    pub leases: Vec<u64>,
}

/// The ledger and the rules.
#[derive(Debug, Default)]
pub struct Oracle {
    /// Every message ever published.
    pub ledger: BTreeMap<MessageId, Entry>,
    /// The nack being applied, if any: (id, requeue, explicit delay).
    pending_nack: Option<(MessageId, bool, Option<u64>)>,
}

impl Oracle {
    fn entry(&mut self, id: MessageId) -> &mut Entry {
        self.ledger
            .get_mut(&id)
            .unwrap_or_else(|| panic!("event about unknown message {id}"))
    }

    /// Applies one observed state change, checking that it was allowed.
    pub fn observe(&mut self, o: &Observed, queue: &QueueConfig) {
        let at = o.at.0;
        let Some(id) = o.message_id else {
            panic!("swarm never purges, yet saw {o:?}");
        };
        if o.kind == ObservedKind::Published {
            let fresh = Entry {
                place: Place::Waiting,
                deliveries: 0,
                max_retries: queue.max_retries,
                expires_at: queue.message_ttl_ms.map(|t| at + t),
                expired: false,
                published_at: at,
                ttl_ms: queue.message_ttl_ms,
                delivered_at: 0,
                leases: Vec::new(),
            };
            assert!(
                self.ledger.insert(id, fresh).is_none(),
                "id {id} published twice"
            );
            return;
        }
        let pending = self.pending_nack;
        let e = self.entry(id);
        match o.kind {
            ObservedKind::Published => unreachable!(),
            ObservedKind::Delivered => {
                assert_eq!(
                    e.place,
                    Place::Waiting,
                    "rule 2/4: {id} delivered while {:?}",
                    e.place
                );
                e.deliveries += 1;
                assert_eq!(o.attempts, e.deliveries, "attempt count of {id}");
                assert!(
                    e.deliveries <= e.max_retries + 1,
                    "rule 3: {id} delivered too often"
                );
                e.delivered_at = at;
                e.place = Place::InFlight {
                    lease: None,
                    deadline: None,
                };
            }
            ObservedKind::Acked => {
                assert!(matches!(e.place, Place::InFlight { deadline: Some(d), .. } if at < d));
                e.place = Place::Acked;
            }
            ObservedKind::Nacked => {
                assert!(matches!(e.place, Place::InFlight { deadline: Some(d), .. } if at < d));
                assert_eq!(pending.map(|p| p.0), Some(id), "nack of {id} nobody sent");
                e.place = Place::Waiting;
            }
            ObservedKind::LeaseExpired => {
                let Place::InFlight {
                    deadline: Some(d), ..
                } = e.place
                else {
                    panic!("lease of {id} expired while {:?}", e.place);
                };
                assert_eq!(at, d, "lease of {id} must expire exactly at its deadline");
                e.place = Place::Waiting;
            }
            ObservedKind::RetryScheduled => {
                assert_eq!(e.place, Place::Waiting);
                assert!(!e.expired, "an expired message is never retried");
            }
            ObservedKind::Expired => {
                assert_eq!(e.expires_at, Some(at), "{id} expired at the wrong time");
                e.expired = true;
            }
            ObservedKind::DeadLettered => {
                let reason = o.reason.expect("dead_lettered carries a reason");
                match reason {
                    DeadLetterReason::Expired => assert!(e.expired),
                    DeadLetterReason::Rejected => {
                        assert!(matches!(pending, Some((p, false, _)) if p == id), "rule 5");
                    }
                    DeadLetterReason::MaxRetriesExceeded => {
                        assert_eq!(e.deliveries, e.max_retries + 1, "rule 5: attempts left");
                    }
                }
                e.place = Place::Dead(reason);
            }
            ObservedKind::Redriven => {
                assert!(matches!(e.place, Place::Dead(_)));
                e.deliveries = 0;
                e.expired = false;
                e.expires_at = e.ttl_ms.map(|t| at + t);
                e.place = Place::Waiting;
            }
            ObservedKind::Purged => unreachable!(),
        }
    }

    /// Records a delivery's lease token and deadline.
    pub fn delivered(&mut self, d: &Delivery, lease_ms: u64) {
        let e = self.entry(d.message_id);
        assert!(
            matches!(e.place, Place::InFlight { lease: None, .. }),
            "delivery of {} not announced by an event",
            d.message_id
        );
        assert_eq!(d.retry_count + 1, e.deliveries);
        assert_eq!(
            d.lease_deadline.0,
            e.delivered_at + lease_ms,
            "lease deadline"
        );
        assert!(!e.leases.contains(&d.lease), "lease token reused");
        e.leases.push(d.lease);
        e.place = Place::InFlight {
            lease: Some(d.lease),
            deadline: Some(d.lease_deadline.0),
        };
    }

    /// Records the publish-time overrides the oracle cannot see in events.
    pub fn published(&mut self, id: MessageId, max_retries: Option<u32>, ttl_ms: Option<u64>) {
        let e = self.entry(id);
        if let Some(r) = max_retries {
            e.max_retries = r;
        }
        if let Some(t) = ttl_ms {
            e.ttl_ms = Some(t);
            e.expires_at = Some(e.published_at + t);
        }
    }

    /// An extend moved the lease deadline.
    pub fn extended(&mut self, id: MessageId, deadline: u64) {
        let e = self.entry(id);
        let Place::InFlight { deadline: d, .. } = &mut e.place else {
            panic!("extend of {id} while {:?}", e.place);
        };
        *d = Some(deadline);
    }

    /// Whether `lease` is the valid lease of `id` at `now`.
    fn lease_valid(&self, id: MessageId, lease: u64, now: u64) -> bool {
        matches!(self.ledger.get(&id).map(|e| &e.place),
            Some(Place::InFlight { lease: Some(l), deadline: Some(d) }) if *l == lease && now < *d)
    }

    /// The error an invalid ack, nack or extend must get.
    fn expected_error(&self, id: MessageId) -> &'static str {
        match self.ledger.get(&id).map(|e| &e.place) {
            None | Some(Place::Acked) => "message_not_found",
            Some(_) => "lease_mismatch",
        }
    }

    /// Predicts an ack's answer from the ledger: `Ok` or the error code. Called before the
    /// ack is sent; the timers due at `now` are accounted for by comparing with deadlines.
    pub fn predict_ack(&self, id: MessageId, lease: u64, now: u64) -> Result<(), &'static str> {
        if self.lease_valid(id, lease, now) {
            Ok(())
        } else {
            Err(self.expected_error(id))
        }
    }

    /// Checks an ack's answer against its prediction.
    pub fn check_ack(
        id: MessageId,
        predicted: Result<(), &'static str>,
        result: &Result<(), Error>,
    ) {
        let got = result.as_ref().map(|_| ()).map_err(Error::code);
        assert_eq!(got, predicted, "ack of {id}");
    }

    /// Announces a nack about to be sent.
    pub fn nacking(&mut self, id: MessageId, requeue: bool, delay: Option<u64>) {
        self.pending_nack = Some((id, requeue, delay));
    }

    /// Checks a nack's answer: whether it was allowed and what it did.
    pub fn check_nack(
        &mut self,
        id: MessageId,
        lease: u64,
        now: u64,
        before: Option<Entry>,
        result: &Result<NackAction, Error>,
    ) {
        let (_, requeue, delay) = self.pending_nack.take().expect("nack announced");
        let valid = before.as_ref().is_some_and(|e| {
            matches!(e.place, Place::InFlight { lease: Some(l), deadline: Some(d) } if l == lease && now < d)
        });
        let action = match (valid, result) {
            (false, Err(e)) => {
                let expected = match before.map(|b| b.place) {
                    None | Some(Place::Acked) => "message_not_found",
                    Some(_) => "lease_mismatch",
                };
                assert_eq!(e.code(), expected, "nack of {id}");
                return;
            }
            (true, Ok(action)) => *action,
            (valid, other) => panic!("nack of {id} (valid lease: {valid}) answered {other:?}"),
        };
        let e = before.expect("valid nack has an entry");
        let expired = e.expired || e.expires_at.is_some_and(|x| x <= now);
        let dead = expired || !requeue || e.deliveries > e.max_retries;
        assert_eq!(
            action == NackAction::DeadLettered,
            dead,
            "nack action of {id}"
        );
        if delay.is_some_and(|d| d > 0) && !dead {
            assert_eq!(action, NackAction::Delayed);
        }
    }

    /// Checks the engine's counts against the ledger.
    pub fn check_stats(&self, s: &QueueStats) {
        let count = |f: &dyn Fn(&Place) -> bool| {
            self.ledger.values().filter(|e| f(&e.place)).count() as u64
        };
        assert_eq!(
            s.in_flight,
            count(&|p| matches!(p, Place::InFlight { .. })),
            "in_flight"
        );
        assert_eq!(s.depth, count(&|p| *p == Place::Waiting), "depth");
        assert_eq!(
            s.dead_letter_count,
            count(&|p| matches!(p, Place::Dead(_))),
            "dlq"
        );
        assert_eq!(
            s.published_total,
            self.ledger.len() as u64,
            "published_total"
        );
    }

    /// Every message has ended acked or dead-lettered.
    pub fn all_settled(&self) -> bool {
        self.ledger
            .values()
            .all(|e| matches!(e.place, Place::Acked | Place::Dead(_)))
    }

    /// Messages in each end state: (acked, dead).
    pub fn settled_counts(&self) -> (usize, usize) {
        let acked = self
            .ledger
            .values()
            .filter(|e| e.place == Place::Acked)
            .count();
        let dead = self
            .ledger
            .values()
            .filter(|e| matches!(e.place, Place::Dead(_)))
            .count();
        (acked, dead)
    }
}
