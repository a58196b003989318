//! The cluster oracle: checks, outside the nodes, what every node and client saw.
//!
//! - at most one leader per term;
//! - a committed (applied) entry never changes: one `(term, hash)` per index across nodes and
//!   restarts;
//! - replicas are equal at equal applied index: the engine digests recorded at an index, and
//!   the events each replica produced applying it, agree;
//! - in log order (the first replica to apply an index feeds its `Observed` events here): no
//!   message is leased while leased, nothing is delivered or settled after it was acked or
//!   dead-lettered, each message is settled once;
//! - for clients: a key acknowledged twice names the same message; no client gets a delivery
//!   produced after an ack it was told succeeded; at the end every acknowledged publish is
//!   acked or dead-lettered, and there are exactly as many messages as keys.

use std::collections::{BTreeMap, BTreeSet};

use synap_cluster::Applied;
use synap_core::{Event, MessageId, Millis, ObservedKind};
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
    /// Message → the index of the first ack a client was told succeeded.
    acked: BTreeMap<MessageId, u64>,
    pub(crate) published: usize,
    pub(crate) settled_acked: usize,
    pub(crate) settled_dead: usize,
    pub(crate) leader_terms: usize,
    pub(crate) snapshots_installed: usize,
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

    /// `node` applied an entry (or installed a snapshot) and produced `events`. The first
    /// replica to apply an index feeds its events to the ledger; the others must match it.
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
        if a.snapshot {
            self.snapshots_installed += 1;
            return;
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
        let Event::Observed(o) = e else { return };
        let Some(id) = o.message_id else { return };
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

    /// A client was told its publish with `key` succeeded as `id`.
    pub(crate) fn publish_acknowledged(&mut self, key: &str, id: MessageId) {
        let first = *self.keys.entry(key.to_owned()).or_insert(id);
        assert_eq!(first, id, "key {key} acknowledged as two messages");
    }

    /// A client was told its ack of `id` (applied at `index`) succeeded.
    pub(crate) fn ack_acknowledged(&mut self, id: MessageId, index: u64) {
        let at = self.acked.entry(id).or_insert(index);
        *at = (*at).min(index);
    }

    /// A client got a delivery of `id` produced at `index`.
    pub(crate) fn delivered_to_client(&mut self, id: MessageId, index: u64) {
        if let Some(&acked) = self.acked.get(&id) {
            assert!(
                index < acked,
                "{id} delivered at index {index} after its ack at {acked} was acknowledged"
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
