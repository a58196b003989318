//! The oracle's model of the engine's takers: parked long-poll waiters and attached consumer
//! sessions, with each session's credit window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use synap_core::{MessageId, QueueStats, SessionId, WaiterId};

use super::ledger::{Ledger, Place};

/// A parked long-poll consume.
#[derive(Clone, Debug)]
pub(crate) struct WaiterModel {
    /// Its queue.
    pub(crate) queue: usize,
    /// Lease length of what it will be given.
    pub(crate) lease_ms: u64,
    /// Most messages it takes.
    pub(crate) max_messages: u32,
    /// Its consumer id.
    pub(crate) consumer: Option<Arc<str>>,
}

/// An attached session.
#[derive(Clone, Debug)]
pub(crate) struct SessionModel {
    /// Its queue.
    pub(crate) queue: usize,
    /// Lease length of each push.
    pub(crate) lease_ms: u64,
    /// Its consumer id.
    pub(crate) consumer: Arc<str>,
    /// Credit not in use.
    pub(crate) credit: u32,
    /// All credit ever granted (attach plus grants): free credit plus held leases.
    pub(crate) window: u64,
    /// Messages it holds.
    pub(crate) held: BTreeSet<MessageId>,
}

/// Waiters and sessions the engine should know.
#[derive(Debug, Default)]
pub(crate) struct Takers {
    /// Parked waiters.
    pub(crate) waiters: BTreeMap<WaiterId, WaiterModel>,
    /// Attached sessions.
    pub(crate) sessions: BTreeMap<SessionId, SessionModel>,
    /// Sessions whose `SessionEnded` the current command must emit.
    pub(crate) ending: BTreeSet<SessionId>,
}

impl Takers {
    /// A push to `s` of message `id`: within its credit, never beyond its window.
    pub(crate) fn pushed(&mut self, s: SessionId, id: MessageId) -> &SessionModel {
        let m = self
            .sessions
            .get_mut(&s)
            .unwrap_or_else(|| panic!("push to session {s:?} that is not attached"));
        assert!(m.credit > 0, "session {s:?} pushed {id} beyond its credit");
        m.credit -= 1;
        assert!(m.held.insert(id), "{id} pushed twice to session {s:?}");
        assert!(
            m.held.len() as u64 <= m.window,
            "session {s:?} holds more than its credit window"
        );
        m
    }

    /// A delivery of `id` held by `s` ended: the credit comes back.
    pub(crate) fn returned(&mut self, s: SessionId, id: MessageId) {
        if let Some(m) = self.sessions.get_mut(&s) {
            assert!(m.held.remove(&id), "session {s:?} did not hold {id}");
            m.credit += 1;
        }
    }

    /// Checks the takers of `queue` against its stats and the ledger: counts, each session's
    /// credit window and held set, and that no taker with room is left while messages are
    /// ready that flow control does not hold back.
    pub(crate) fn check(&self, queue: usize, prefetch: u32, s: &QueueStats, ledger: &Ledger) {
        let sessions: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, m)| m.queue == queue)
            .collect();
        let waiters: Vec<_> = self.waiters.values().filter(|w| w.queue == queue).collect();
        assert_eq!(s.sessions, sessions.len() as u64, "{} sessions", s.queue);
        assert_eq!(s.waiters, waiters.len() as u64, "{} waiters", s.queue);
        let room = |c: &str| prefetch == 0 || ledger.held_by(queue, c) < prefetch;
        for (id, m) in &sessions {
            assert_eq!(
                u64::from(m.credit) + m.held.len() as u64,
                m.window,
                "session {id:?}: credit plus held is its window"
            );
            let holds: BTreeSet<MessageId> = ledger
                .map
                .iter()
                .filter(|(_, e)| matches!(e.place, Place::InFlight { session: Some(x), .. } if x == **id))
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(holds, m.held, "session {id:?} holds what was pushed to it");
            if s.ready > s.held_back {
                assert!(
                    m.credit == 0 || !room(&m.consumer),
                    "{} ready messages left while session {id:?} has credit {} and room",
                    s.ready,
                    m.credit
                );
            }
        }
        if s.ready > s.held_back {
            for w in waiters {
                let has_room = w.consumer.as_deref().is_none_or(room);
                assert!(
                    !has_room,
                    "{} ready while a waiter with room is parked",
                    s.ready
                );
            }
        }
    }
}
