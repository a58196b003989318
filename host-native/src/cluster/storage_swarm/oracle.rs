//! The storage swarm's oracle: what every node applied and every client was told, checked
//! outside the nodes.
//!
//! - at most one leader per term;
//! - a committed entry never changes: one `(term, hash)` per index across nodes and restarts;
//! - replicas are equal at equal index: the engine digests recorded at an index (every entry
//!   fourth entry applied, every snapshot made or installed) agree, and so do the events applying an entry made;
//! - in log order (the first replica to apply an index feeds its events here): each message is
//!   published once, leased only when not leased, acked once, never dead-lettered;
//! - for the client: every publish answer for a key names one message; every delivery it got
//!   is one the log made at that index; every ack it was told succeeded is acked in the log;
//! - at the end: every key was answered with its own message, and every message is acked;
//! - a node's storage: a restart after a clean crash recovers exactly what was written (`same`),
//!   one after a failed write at least the hard state and committed entries (`kept_committed`).

use std::collections::{BTreeMap, BTreeSet};

use synap_cluster::{Applied, AppliedKind, MemDisk, Recovered};
use synap_core::{Event, MessageId, ObservedKind};

/// Where a message stands in log order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Leased,
    Acked,
}

#[derive(Debug, Default)]
pub(super) struct Oracle {
    leaders: BTreeMap<u64, u64>,
    committed: BTreeMap<u64, (u64, u64)>,
    digests: BTreeMap<u64, u64>,
    /// Index → hash of the events applying it made.
    events: BTreeMap<u64, u64>,
    ledger: BTreeMap<MessageId, State>,
    /// `(index, message)` delivered there.
    deliveries: BTreeSet<(u64, MessageId)>,
    keys: BTreeMap<usize, MessageId>,
    acked: usize,
    trace: u64,
}

/// FNV-1a over `bytes`, from `h`.
fn fold(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Oracle {
    /// Adds `words` to the trace hash.
    pub(super) fn note(&mut self, words: &[u64]) {
        for w in words {
            self.trace = fold(self.trace, &w.to_le_bytes());
        }
    }

    pub(super) fn trace(&self) -> u64 {
        self.trace
    }

    /// Messages acked in the log.
    pub(super) fn acked(&self) -> usize {
        self.acked
    }

    /// `node` leads in `term`.
    pub(super) fn leader(&mut self, term: u64, node: u64) {
        let first = *self.leaders.entry(term).or_insert(node);
        assert_eq!(
            first, node,
            "two leaders in term {term}: {first} and {node}"
        );
    }

    /// `node` applied an entry (or made or installed a snapshot) and made `events`.
    pub(super) fn applied(&mut self, node: u64, a: &Applied, events: &[Event]) {
        self.note(&[1, node, a.index, a.term, a.hash]);
        if let Some(d) = a.digest {
            let first = *self.digests.entry(a.index).or_insert(d);
            assert_eq!(
                first, d,
                "replicas differ at index {}: node {node} ({:?})",
                a.index, a.kind
            );
        }
        if a.kind != AppliedKind::Entry {
            return;
        }
        let first = *self.committed.entry(a.index).or_insert((a.term, a.hash));
        assert_eq!(
            first,
            (a.term, a.hash),
            "committed entry {} changed on node {node}",
            a.index
        );
        let mut h = 0;
        for e in events {
            h = fold(h, &serde_json::to_vec(e).expect("events serialize"));
        }
        match self.events.get(&a.index) {
            Some(&first) => assert_eq!(
                first, h,
                "node {node} made other events applying entry {}",
                a.index
            ),
            None => {
                self.events.insert(a.index, h);
                for e in events {
                    self.canon(a.index, e);
                }
            }
        }
    }

    /// One event, in log order.
    fn canon(&mut self, index: u64, e: &Event) {
        let Event::Observed(o) = e else { return };
        let Some(id) = o.message_id else { return };
        let state = self.ledger.get(&id).copied();
        let next = match (o.kind, state) {
            (ObservedKind::Published, None) => State::Waiting,
            (ObservedKind::Published, Some(_)) => panic!("{id} published twice (index {index})"),
            (kind, None) => panic!("{kind:?} of unknown message {id} at index {index}"),
            (kind, Some(State::Acked)) => panic!("{kind:?} of {id} at {index} after its ack"),
            (ObservedKind::Delivered, Some(State::Leased)) => {
                panic!("{id} leased while leased (index {index})")
            }
            (ObservedKind::Delivered, _) => {
                self.deliveries.insert((index, id));
                State::Leased
            }
            (ObservedKind::Acked, _) => {
                self.acked += 1;
                State::Acked
            }
            (ObservedKind::Nacked | ObservedKind::LeaseExpired, _) => State::Waiting,
            (ObservedKind::RetryScheduled, Some(s)) => s,
            (kind, _) => panic!("{kind:?} of {id} at index {index}"),
        };
        self.ledger.insert(id, next);
    }

    /// A publish with key `key` was answered committed, as message `id`.
    pub(super) fn publish_answered(&mut self, key: usize, id: MessageId) {
        let first = *self.keys.entry(key).or_insert(id);
        assert_eq!(first, id, "key {key} answered as two messages");
    }

    /// The client got `id` from a consume applied at `index`.
    pub(super) fn delivered(&self, id: MessageId, index: u64) {
        assert!(
            self.deliveries.contains(&(index, id)),
            "the client got {id} at index {index}, which the log did not deliver there"
        );
    }

    /// The client was told its ack of `id` succeeded.
    pub(super) fn ack_answered(&self, id: MessageId) {
        assert_eq!(
            self.ledger.get(&id),
            Some(&State::Acked),
            "the client was told {id} was acked"
        );
    }

    /// The closing checks: every key answered with its own message, each published once (the
    /// ledger panics on a second) and acked.
    pub(super) fn finish(&self, keys: &[(Option<MessageId>, u64)]) {
        let answered: BTreeSet<MessageId> = keys.iter().filter_map(|k| k.0).collect();
        assert_eq!(
            answered.len(),
            keys.len(),
            "two keys answered as one message"
        );
        assert_eq!(
            self.ledger.len(),
            keys.len(),
            "messages in the log != keys: a publish was doubled or lost"
        );
        for id in &answered {
            assert_eq!(
                self.ledger.get(id),
                Some(&State::Acked),
                "{id} answered but not acked"
            );
        }
        assert_eq!(self.acked, keys.len());
    }
}

/// A restart after a clean crash recovers exactly what was written.
pub(super) fn same(id: u64, got: &Recovered, want: &Recovered) {
    assert_eq!(got.hard_state, want.hard_state, "node {id}: hard state");
    assert_eq!(got.snapshot, want.snapshot, "node {id}: snapshot");
    let ids = |r: &Recovered| {
        r.entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(got), ids(want), "node {id}: entries");
    assert_eq!(got.entries, want.entries, "node {id}: entries' contents");
}

/// A restart after a failed write (part of the group may be on disk, a torn record cut off)
/// keeps at least every committed entry written before, and the hard state.
pub(super) fn kept_committed(id: u64, got: &Recovered, had: &MemDisk) {
    let (hs, was) = (&got.hard_state, &had.hard_state);
    assert!(
        hs.term >= was.term && hs.commit >= was.commit,
        "node {id}: hard state went back from {was:?} to {hs:?}"
    );
    let snap = got.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
    for e in &had.entries {
        if e.index <= snap || e.index > was.commit {
            continue;
        }
        let kept = got.entries.iter().find(|g| g.index == e.index);
        assert_eq!(
            kept,
            Some(e),
            "node {id} lost committed entry {} after a failed write",
            e.index
        );
    }
}
