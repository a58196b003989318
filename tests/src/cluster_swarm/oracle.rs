//! The cluster oracle: checks, outside the nodes, what every node and client saw.
//!
//! - at most one leader per term;
//! - a committed (applied) entry never changes: one `(term, hash)` per index across nodes and
//!   restarts;
//! - replicas are equal at equal applied index: the engine digests recorded at an index (every
//!   4th entry, every snapshot made and every snapshot installed), and the events each replica
//!   produced applying it, agree; an entry a restarted node replays was applied before;
//! - in log order (the first replica to apply an index feeds its events here): no message is
//!   leased while leased, nothing is delivered or settled after it was acked or dead-lettered,
//!   each message is settled once;
//! - for clients, against that log: every publish answer a node gives (late ones and lost
//!   replies included) names one message per key; every delivery a client gets (from a consume's reply or a long-poll) is
//!   one the log made at that index (to that waiter, with that lease), so no client gets a
//!   delivery after its message was acked; every ack a client is told succeeded is the log's
//!   ack of that message at that index; at the end every acknowledged publish is acked or
//!   dead-lettered, and there are exactly as many messages as keys.

use std::collections::{BTreeMap, BTreeSet};

use synap_cluster::{Applied, AppliedKind};
use synap_core::{Delivery, Event, LeaseToken, MessageId, Millis, ObservedKind, WaiterId};
use xxhash_rust::xxh3::Xxh3;

/// Where a message stands in log order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Leased,
    Acked,
    Dead,
}

/// Everything the oracle keeps.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    leaders: BTreeMap<u64, u64>,
    committed: BTreeMap<u64, (u64, u64)>,
    /// The `now` of each committed entry that has one.
    nows: BTreeMap<u64, Millis>,
    digests: BTreeMap<u64, u64>,
    events: BTreeMap<u64, u64>,
    ledger: BTreeMap<MessageId, State>,
    /// Idempotency key → the message its publishes were acknowledged with.
    keys: BTreeMap<String, MessageId>,
    /// `(index, message)` → the attempt number the log delivered it with there.
    deliveries: BTreeMap<(u64, MessageId), u32>,
    /// `(index, waiter)` → what the log handed that long-poll there.
    waiter_deliveries: BTreeMap<(u64, WaiterId), Vec<(MessageId, LeaseToken)>>,
    /// Message → the index the log acked it at.
    acked_at: BTreeMap<MessageId, u64>,
    pub(crate) published: usize,
    pub(crate) settled_acked: usize,
    pub(crate) settled_dead: usize,
    pub(crate) leader_terms: usize,
    pub(crate) snapshots_installed: usize,
    /// Publish answers for a key already answered.
    pub(crate) repeat_publish_answers: usize,
    /// Deliveries a client got, each checked against the log.
    pub(crate) client_deliveries: usize,
    /// Entries a restarted node applied again.
    pub(crate) replayed: usize,
}

impl Oracle {
    /// `node` is leader in `term`.
    pub(crate) fn leader(&mut self, term: u64, node: u64) {
        let first = *self.leaders.entry(term).or_insert(node);
        assert_eq!(
            first, node,
            "two leaders in term {term}: {first} and {node}"
        );
        self.leader_terms = self.leaders.len();
    }

    /// `node` applied an entry (or installed or made a snapshot) and produced `events`. The
    /// first replica to apply an index feeds its events to the ledger; the others must match
    /// it.
    pub(crate) fn applied(&mut self, node: u64, a: &Applied, events: &[Event]) {
        let mut h = Xxh3::new();
        for e in events {
            h.update(&serde_json::to_vec(e).expect("events serialize"));
        }
        let hash = h.digest();
        if let Some(d) = a.digest {
            let first = *self.digests.entry(a.index).or_insert(d);
            assert_eq!(
                first, d,
                "replicas differ at index {}: node {node}",
                a.index
            );
        }
        match a.kind {
            AppliedKind::Installed => {
                self.snapshots_installed += 1;
                return;
            }
            AppliedKind::Compacted => {
                assert!(a.digest.is_some(), "a snapshot made without its digest");
                return;
            }
            AppliedKind::Entry => {}
        }
        if a.replayed {
            self.replayed += 1;
            assert!(
                self.committed.contains_key(&a.index),
                "node {node} replayed entry {} that no replica applied before",
                a.index
            );
        }
        let first = *self.committed.entry(a.index).or_insert((a.term, a.hash));
        assert_eq!(
            first,
            (a.term, a.hash),
            "committed entry {} changed on node {node}",
            a.index
        );
        if let Some(now) = a.now {
            self.time_moves_forward(a.index, now);
        }
        match self.events.get(&a.index) {
            Some(&h) => assert_eq!(h, hash, "node {node} produced other events at {}", a.index),
            None => {
                self.events.insert(a.index, hash);
                for e in events {
                    self.canon(a.index, e);
                }
            }
        }
    }

    /// Time never goes backwards along the committed log (across failovers too).
    fn time_moves_forward(&mut self, index: u64, now: Millis) {
        if self.nows.insert(index, now).is_some() {
            return;
        }
        if let Some((i, &before)) = self.nows.range(..index).next_back() {
            assert!(
                before <= now,
                "time went back: {before} at {i}, {now} at {index}"
            );
        }
        if let Some((i, &after)) = self.nows.range(index + 1..).next() {
            assert!(
                now <= after,
                "time went back: {now} at {index}, {after} at {i}"
            );
        }
    }

    /// The `(term, hash)` of committed entry `index`, if any replica applied it.
    pub(crate) fn committed_at(&self, index: u64) -> Option<(u64, u64)> {
        self.committed.get(&index).copied()
    }

    /// One event in log order.
    fn canon(&mut self, index: u64, e: &Event) {
        let o = match e {
            Event::Observed(o) => o,
            Event::Delivered {
                waiter_id,
                messages,
            } => {
                let handed = messages.iter().map(|d| (d.message_id, d.lease)).collect();
                self.waiter_deliveries.insert((index, *waiter_id), handed);
                return;
            }
            _ => return,
        };
        let Some(id) = o.message_id else { return };
        match o.kind {
            ObservedKind::Delivered => {
                self.deliveries.insert((index, id), o.attempts);
            }
            ObservedKind::Acked => {
                self.acked_at.insert(id, index);
            }
            _ => {}
        }
        let state = self.ledger.get(&id).copied();
        let next = match (o.kind, state) {
            (ObservedKind::Published, None) => {
                self.published += 1;
                State::Waiting
            }
            (ObservedKind::Published, Some(_)) => panic!("{id} published twice (index {index})"),
            (_, None) => panic!("{:?} of unknown message {id} at index {index}", o.kind),
            (_, Some(s @ (State::Acked | State::Dead))) => {
                panic!("{:?} of {id} at index {index} after it ended {s:?}", o.kind)
            }
            (ObservedKind::Delivered, Some(State::Leased)) => {
                panic!("{id} leased while leased (index {index})")
            }
            (ObservedKind::Delivered, _) => State::Leased,
            (ObservedKind::Acked, _) => {
                self.settled_acked += 1;
                State::Acked
            }
            (ObservedKind::DeadLettered, _) => {
                self.settled_dead += 1;
                State::Dead
            }
            (ObservedKind::Nacked | ObservedKind::LeaseExpired, _) => State::Waiting,
            (_, Some(s)) => s,
        };
        self.ledger.insert(id, next);
    }

    /// A node answered a publish with `key` as `id`: every such answer, whether the client
    /// still waits for it, gave up on it (a late answer) or never gets it (a lost reply).
    pub(crate) fn publish_acknowledged(&mut self, key: &str, id: MessageId) {
        match self.keys.get(key) {
            Some(&first) => {
                self.repeat_publish_answers += 1;
                assert_eq!(first, id, "key {key} acknowledged as two messages");
            }
            None => {
                self.keys.insert(key.to_owned(), id);
            }
        }
    }

    /// A client was told its ack of `id`, applied at `index`, succeeded: the log acked that
    /// message at that index.
    pub(crate) fn ack_acknowledged(&mut self, id: MessageId, index: u64) {
        assert_eq!(
            self.acked_at.get(&id),
            Some(&index),
            "a client was told its ack of {id} at index {index} succeeded"
        );
    }

    /// A client got delivery `d` produced at `index`, by a consume's reply or, through
    /// `waiter`, a long-poll: the log delivered that message there (that attempt), to that
    /// waiter with that lease. With the ledger (nothing is delivered after it was acked),
    /// this also means no client gets a delivery after an ack it was told succeeded.
    pub(crate) fn delivered_to_client(
        &mut self,
        d: &Delivery,
        index: u64,
        waiter: Option<WaiterId>,
    ) {
        self.client_deliveries += 1;
        let id = d.message_id;
        let attempts = self.deliveries.get(&(index, id));
        assert_eq!(
            attempts,
            Some(&(d.retry_count + 1)),
            "a client got {id} (retry {}) at index {index}, which the log did not deliver there",
            d.retry_count
        );
        if let Some(w) = waiter {
            let handed = self.waiter_deliveries.get(&(index, w));
            assert!(
                handed.is_some_and(|h| h.contains(&(id, d.lease))),
                "long-poll {w:?} got {id} at index {index}, but the log handed it {handed:?}"
            );
        }
    }

    /// Every acknowledged publish ended acked or dead-lettered (in log order).
    pub(crate) fn all_settled(&self) -> bool {
        self.keys
            .values()
            .all(|id| matches!(self.ledger.get(id), Some(State::Acked | State::Dead)))
    }

    /// The closing checks, once the run settled.
    pub(crate) fn finish(&self, keys_expected: usize) {
        assert_eq!(
            self.keys.len(),
            keys_expected,
            "not every key was acknowledged"
        );
        assert!(self.all_settled(), "an acknowledged publish never ended");
        assert_eq!(
            self.published, keys_expected,
            "messages published != keys: a retried publish was doubled or one was lost"
        );
        let open: BTreeSet<_> = self
            .ledger
            .iter()
            .filter(|(_, s)| !matches!(s, State::Acked | State::Dead))
            .map(|(id, _)| *id)
            .collect();
        assert!(open.is_empty(), "messages never settled: {open:?}");
    }
}
