//! The message ledger: where the oracle believes each message is, and the rules of
//! DESIGN.md §3 checked against every state change the engine reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use synap_core::{
    DeadLetterReason, Delivery, LeaseToken, MessageId, Observed, ObservedKind, QueueConfig,
    QueueStats, SessionId,
};

/// Where the oracle believes a message is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Place {
    /// Ready or delayed: deliverable now or later.
    Waiting,
    /// Leased under `lease` until `deadline` (both known once the delivery is seen).
    InFlight {
        /// The lease token, once known.
        lease: Option<LeaseToken>,
        /// The lease deadline, once known.
        deadline: Option<u64>,
        /// The consumer id it is leased to, if any.
        consumer: Option<Arc<str>>,
        /// The attached session holding it, if any (none once that session is gone).
        session: Option<SessionId>,
    },
    /// Acknowledged: gone for good.
    Acked,
    /// In the DLQ.
    Dead(DeadLetterReason),
    /// Cancelled: gone for good, never delivered again.
    Cancelled,
}

impl Place {
    /// Leased, holder not yet known.
    fn leased() -> Self {
        Self::InFlight {
            lease: None,
            deadline: None,
            consumer: None,
            session: None,
        }
    }
}

/// What the oracle knows of one message.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The queue it lives in (index into the run's queues).
    pub(crate) queue: usize,
    /// Where it is.
    pub(crate) place: Place,
    /// Deliveries since publish or redrive.
    pub(crate) deliveries: u32,
    /// Its retry limit (known from its publish).
    pub(crate) max_retries: u32,
    /// Its expiry, if it has a TTL.
    pub(crate) expires_at: Option<u64>,
    /// Its TTL passed.
    pub(crate) expired: bool,
    /// Publish time.
    pub(crate) published_at: u64,
    /// Its TTL, renewed from `now` on redrive.
    pub(crate) ttl_ms: Option<u64>,
    /// When it was last delivered (a timer may deliver it earlier than the host's `now`).
    pub(crate) delivered_at: u64,
    /// Lease tokens it was ever delivered under.
    pub(crate) leases: Vec<LeaseToken>,
    /// A cancel was accepted for it: it ends cancelled, never retried.
    pub(crate) cancel_requested: bool,
    /// Published by a schedule's run (no publish command claimed it).
    pub(crate) scheduled: bool,
    /// Publishes that made it: 1, plus one per debounced publish that replaced its message.
    pub(crate) publishes: u64,
    /// The end of its publish delay, while it was never delivered nor moved since.
    pub(crate) delayed_until: Option<u64>,
    /// Its message (every delivery and lookup carries it), once known.
    pub(crate) body: Option<Value>,
    /// What the ack that finished it carried.
    pub(crate) result: Option<Value>,
    /// Its group, if any.
    pub(crate) group: Option<Arc<str>>,
    /// Its place in publish order (renewed on redrive): an ordered group's order.
    pub(crate) order: u64,
    /// Times it was snoozed since publish or redrive.
    pub(crate) snoozes: u32,
    /// When it first became ready: its publish (or redrive), or its publish delay's end. An
    /// ordered group takes a message into its order then.
    pub(crate) ready_at: u64,
    /// It has finished once (acked, dead-lettered or cancelled): an `until_finished` key is
    /// released then for good, a redrive does not take it again.
    pub(crate) finished_once: bool,
}

impl Entry {
    /// A message just published to `queue` at `at`.
    pub(crate) fn fresh(queue: usize, cfg: &QueueConfig, at: u64, body: Option<Value>) -> Self {
        Self {
            queue,
            place: Place::Waiting,
            deliveries: 0,
            max_retries: cfg.max_retries,
            expires_at: cfg.message_ttl_ms.map(|t| at + t),
            expired: false,
            published_at: at,
            ttl_ms: cfg.message_ttl_ms,
            delivered_at: 0,
            leases: Vec::new(),
            cancel_requested: false,
            scheduled: false,
            publishes: 1,
            delayed_until: None,
            body,
            result: None,
            group: None,
            order: 0,
            snoozes: 0,
            ready_at: at,
            finished_once: false,
        }
    }

    /// Still in the delay of its publish at `now`, never delivered: what a debounced publish
    /// of its key replaces.
    pub(crate) fn still_delayed(&self, now: u64) -> bool {
        self.place == Place::Waiting
            && self.deliveries == 0
            && !self.expired
            && self.delayed_until.is_some_and(|t| t > now)
    }
}

/// A failure the oracle expects the engine to report as `Nacked`: a consumer's nack, or a
/// give-back of deliveries whose consumer is gone.
#[derive(Clone, Debug)]
pub(crate) enum Failing {
    /// A nack of one message: (id, requeue).
    Nack(MessageId, bool),
    /// A give-back of these messages (ready again at once, counted as an attempt).
    GiveBack(Vec<MessageId>),
}

/// Every message ever published, by id.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The entries.
    pub(crate) map: BTreeMap<MessageId, Entry>,
    /// The failure being applied by the current command, if any.
    pub(crate) failing: Option<Failing>,
    /// Whether the last `Nacked` came from a give-back (its retry must be immediate).
    gave_back: Option<MessageId>,
    /// The messages of the current command's publishes, by the ids its reply named.
    pub(crate) pending_bodies: BTreeMap<MessageId, Value>,
    /// Per queue, the message its schedule publishes (a publish no command named).
    pub(crate) schedule_bodies: Vec<Option<Value>>,
    /// Jobs whose message a debounced publish replaced in the current call.
    pub(crate) replaced: Vec<MessageId>,
    /// The groups and publish delays of the current command's publishes, by the ids its reply
    /// named (known before their `Published` events, as a delivery may follow at once).
    pub(crate) pending_flow: BTreeMap<MessageId, (Option<Arc<str>>, Option<u64>)>,
    /// The message the current command snoozes, if it does.
    pub(crate) snoozing: Option<MessageId>,
    /// Publishes and redrives seen: the next entry's `order`.
    next_order: u64,
    /// Flow parents whose child failed under `on_child_failure: fail` in the current call:
    /// each must be dead-lettered as `child_failed` (and nothing else may be).
    pub(crate) child_failing: BTreeSet<MessageId>,
}

impl Ledger {
    /// The entry of `id`, which must exist.
    pub(crate) fn entry(&mut self, id: MessageId) -> &mut Entry {
        self.map
            .get_mut(&id)
            .unwrap_or_else(|| panic!("event about unknown message {id}"))
    }

    /// Applies one observed state change, checking that it was allowed. Returns the session
    /// whose delivery ended, if one did (it gets its credit back).
    pub(crate) fn observe(&mut self, o: &Observed, queue: usize, cfg: &QueueConfig) -> Ended {
        let at = o.at.0;
        let Some(id) = o.message_id else {
            panic!("swarm never purges, yet saw {o:?}");
        };
        if o.kind == ObservedKind::Published {
            let body = self.pending_bodies.remove(&id);
            let body = body.or_else(|| self.schedule_bodies[queue].clone());
            let mut fresh = Entry::fresh(queue, cfg, at, body);
            if let Some((group, delay)) = self.pending_flow.remove(&id) {
                fresh.group = group;
                fresh.delayed_until = delay.filter(|d| *d > 0).map(|d| at + d);
                fresh.ready_at = fresh.delayed_until.unwrap_or(at);
            }
            self.next_order += 1;
            fresh.order = self.next_order;
            if let Some(e) = self.map.get_mut(&id) {
                // Only a debounced publish re-publishes an id: a job still delayed, never
                // delivered, whose message it replaces (and whose delay it restarts).
                assert!(
                    e.queue == queue && e.still_delayed(at),
                    "id {id} published twice (while {:?}, delayed until {:?})",
                    e.place,
                    e.delayed_until
                );
                fresh.publishes = e.publishes + 1;
                *e = fresh;
                self.replaced.push(id);
            } else {
                self.map.insert(id, fresh);
            }
            return Ended::None;
        }
        let failing = self.failing.clone();
        let gave_back = self.gave_back.take();
        let snoozing = self.snoozing == Some(id);
        let child_failing = o.kind == ObservedKind::DeadLettered
            && o.reason == Some(DeadLetterReason::ChildFailed)
            && self.child_failing.remove(&id);
        self.next_order += u64::from(o.kind == ObservedKind::Redriven);
        let next_order = self.next_order;
        let e = self.entry(id);
        assert_eq!(e.queue, queue, "{id} reported from another queue");
        // Whatever happened to it, it is no longer in its publish delay.
        e.delayed_until = None;
        let ended = match &e.place {
            Place::InFlight { session, .. } => Ended::Delivery(*session),
            _ => Ended::None,
        };
        match o.kind {
            ObservedKind::Published | ObservedKind::Purged => unreachable!(),
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
                e.place = Place::leased();
                return Ended::None;
            }
            ObservedKind::Acked => {
                assert!(matches!(e.place, Place::InFlight { deadline: Some(d), .. } if at < d));
                assert!(!e.cancel_requested, "{id}: a cancelled job completed");
                e.place = Place::Acked;
            }
            ObservedKind::Cancelled => {
                assert!(e.cancel_requested, "{id} cancelled by nobody");
                assert!(
                    matches!(e.place, Place::Waiting | Place::InFlight { .. }),
                    "{id} cancelled while {:?}",
                    e.place
                );
                e.place = Place::Cancelled;
            }
            ObservedKind::Nacked => {
                assert!(matches!(e.place, Place::InFlight { deadline: Some(d), .. } if at < d));
                let give_back = match &failing {
                    Some(Failing::Nack(n, _)) if *n == id => false,
                    Some(Failing::GiveBack(ids)) if ids.contains(&id) => true,
                    other => panic!("nack of {id} nobody sent (expected {other:?})"),
                };
                if give_back {
                    self.gave_back = Some(id);
                }
                let e = self.entry(id);
                e.place = Place::Waiting;
                if snoozing {
                    // A snooze does not spend an attempt.
                    e.deliveries -= 1;
                    e.snoozes += 1;
                }
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
                assert!(
                    !e.cancel_requested,
                    "{id}: a cancelled job is never retried"
                );
                assert!(!e.expired, "an expired message is never retried");
                assert!(
                    e.deliveries <= e.max_retries,
                    "rule 5: {id} retried after its last attempt"
                );
                if gave_back == Some(id) {
                    assert_eq!(o.ms, Some(0), "a given-back message is ready again at once");
                }
            }
            ObservedKind::Expired => {
                assert_eq!(e.expires_at, Some(at), "{id} expired at the wrong time");
                e.expired = true;
            }
            ObservedKind::DeadLettered => {
                assert!(
                    !e.cancel_requested,
                    "{id}: a cancelled job was dead-lettered"
                );
                let reason = o.reason.expect("dead_lettered carries a reason");
                match reason {
                    DeadLetterReason::Expired => assert!(e.expired),
                    DeadLetterReason::Rejected => {
                        assert!(
                            matches!(failing, Some(Failing::Nack(p, false)) if p == id),
                            "rule 5"
                        );
                    }
                    DeadLetterReason::MaxRetriesExceeded => {
                        assert_eq!(e.deliveries, e.max_retries + 1, "rule 5: attempts left");
                    }
                    // Only a flow parent fails this way, when its flow says so.
                    DeadLetterReason::ChildFailed => assert!(
                        child_failing,
                        "{id} dead-lettered as child_failed, yet no child of it failed under fail"
                    ),
                    DeadLetterReason::SnoozedOut => {
                        assert!(snoozing, "{id} snoozed out, yet not snoozed");
                        assert!(
                            e.snoozes > cfg.max_snoozes,
                            "{id} snoozed out after {} snoozes (max_snoozes {})",
                            e.snoozes,
                            cfg.max_snoozes
                        );
                    }
                }
                e.place = Place::Dead(reason);
                e.finished_once = true;
            }
            ObservedKind::Redriven => {
                assert!(matches!(e.place, Place::Dead(_)));
                e.deliveries = 0;
                e.snoozes = 0;
                e.order = next_order;
                e.ready_at = at;
                e.expired = false;
                e.expires_at = e.ttl_ms.map(|t| at + t);
                e.place = Place::Waiting;
            }
        }
        if matches!(
            o.kind,
            ObservedKind::Acked
                | ObservedKind::Nacked
                | ObservedKind::LeaseExpired
                | ObservedKind::Cancelled
        ) {
            ended
        } else {
            Ended::None
        }
    }

    /// Records a delivery's lease token, deadline and holder.
    pub(crate) fn delivered(
        &mut self,
        d: &Delivery,
        lease_ms: u64,
        consumer: Option<Arc<str>>,
        session: Option<SessionId>,
    ) {
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
        if let Some(body) = &e.body {
            assert_eq!(
                d.message.as_ref().map(synap_core::Json::to_value).as_ref(),
                Some(body),
                "{} delivered with another message than its last publish's",
                d.message_id
            );
        }
        e.leases.push(d.lease);
        e.place = Place::InFlight {
            lease: Some(d.lease),
            deadline: Some(d.lease_deadline.0),
            consumer,
            session,
        };
    }

    /// Records the publish-time overrides the oracle cannot see in events.
    pub(crate) fn published(&mut self, id: MessageId, m: &synap_core::PublishMessage) {
        let (max_retries, ttl_ms) = (m.max_retries, m.ttl_ms);
        let e = self.entry(id);
        e.delayed_until = m.delay_ms.filter(|d| *d > 0).map(|d| e.published_at + d);
        e.ready_at = e.delayed_until.unwrap_or(e.published_at);
        if let Some(r) = max_retries {
            e.max_retries = r;
        }
        if let Some(t) = ttl_ms {
            e.ttl_ms = Some(t);
            e.expires_at = Some(e.published_at + t);
        }
    }

    /// An extend moved the lease deadline.
    pub(crate) fn extended(&mut self, id: MessageId, deadline: u64) {
        let e = self.entry(id);
        let Place::InFlight { deadline: d, .. } = &mut e.place else {
            panic!("extend of {id} while {:?}", e.place);
        };
        *d = Some(deadline);
    }

    /// Whether `lease` is the valid lease of `id` at `now`.
    pub(crate) fn lease_valid(&self, id: MessageId, lease: LeaseToken, now: u64) -> bool {
        matches!(self.map.get(&id).map(|e| &e.place),
            Some(Place::InFlight { lease: Some(l), deadline: Some(d), .. }) if *l == lease && now < *d)
    }

    /// The error an invalid ack, nack or extend must get at `now`: a cancelled job whose
    /// lease ran out (its timer runs first) is gone.
    pub(crate) fn expected_error(&self, id: MessageId, now: u64) -> &'static str {
        if let Some(e) = self.map.get(&id)
            && e.cancel_requested
            && matches!(e.place, Place::InFlight { deadline: Some(d), .. } if now >= d)
        {
            return "message_not_found";
        }
        match self.map.get(&id).map(|e| &e.place) {
            None | Some(Place::Acked | Place::Cancelled) => "message_not_found",
            Some(_) => "lease_mismatch",
        }
    }

    /// Checks one queue's counts against the ledger.
    pub(crate) fn check_stats(&self, queue: usize, s: &QueueStats) {
        let count = |f: &dyn Fn(&Place) -> bool| {
            self.map
                .values()
                .filter(|e| e.queue == queue && f(&e.place))
                .count() as u64
        };
        let q = &s.queue;
        assert_eq!(
            s.in_flight,
            count(&|p| matches!(p, Place::InFlight { .. })),
            "{q} in_flight"
        );
        assert_eq!(s.depth, count(&|p| *p == Place::Waiting), "{q} depth");
        assert_eq!(
            s.dead_letter_count,
            count(&|p| matches!(p, Place::Dead(_))),
            "{q} dlq"
        );
        let publishes: u64 = self
            .map
            .values()
            .filter(|e| e.queue == queue)
            .map(|e| e.publishes)
            .sum();
        assert_eq!(s.published_total, publishes, "{q} published_total");
    }

    /// Leases on `queue` held by consumer id `c`.
    pub(crate) fn held_by(&self, queue: usize, c: &str) -> u32 {
        self.map
            .values()
            .filter(|e| e.queue == queue)
            .filter(|e| matches!(&e.place, Place::InFlight { consumer: Some(x), .. } if &**x == c))
            .count() as u32
    }

    /// Detaches `session` from the messages it holds (their leases run on).
    pub(crate) fn orphan(&mut self, session: SessionId) {
        for e in self.map.values_mut() {
            if let Place::InFlight { session: s, .. } = &mut e.place
                && *s == Some(session)
            {
                *s = None;
            }
        }
    }

    /// Every message has ended acked or dead-lettered.
    pub(crate) fn all_settled(&self) -> bool {
        self.map
            .values()
            .all(|e| matches!(e.place, Place::Acked | Place::Dead(_) | Place::Cancelled))
    }

    /// Whether `id` still holds its `until_finished` key: unfinished, and never finished.
    pub(crate) fn holds_key(&self, id: MessageId) -> bool {
        self.unfinished(id) && !self.map[&id].finished_once
    }

    /// Whether `id` is known and not finished.
    pub(crate) fn unfinished(&self, id: MessageId) -> bool {
        self.map
            .get(&id)
            .is_some_and(|e| matches!(e.place, Place::Waiting | Place::InFlight { .. }))
    }

    /// Messages cancelled, and messages a schedule published.
    pub(crate) fn lifecycle_counts(&self) -> (usize, usize) {
        let cancelled = self
            .map
            .values()
            .filter(|e| e.place == Place::Cancelled)
            .count();
        let scheduled = self.map.values().filter(|e| e.scheduled).count();
        (cancelled, scheduled)
    }

    /// Messages in each end state: (acked, dead).
    pub(crate) fn settled_counts(&self) -> (usize, usize) {
        let acked = self
            .map
            .values()
            .filter(|e| e.place == Place::Acked)
            .count();
        let dead = self
            .map
            .values()
            .filter(|e| matches!(e.place, Place::Dead(_)))
            .count();
        (acked, dead)
    }
}

/// What an observed change ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Nothing held ended.
    None,
    /// A delivery ended; the session that held it gets its credit back.
    Delivery(Option<SessionId>),
}
