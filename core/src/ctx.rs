//! State shared by every part of the engine during one call: the clock reading, the PRNG, the
//! timer queue, the event queue and the id counters.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::api::{Event, LeaseToken, MessageId, Observed};
use crate::config::Limits;
use crate::rng::Rng;
use crate::time::Millis;
use crate::timers::Timers;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Ctx {
    /// The latest time seen; inputs never move it backwards.
    pub(crate) now: Millis,
    pub(crate) rng: Rng,
    pub(crate) timers: Timers,
    /// Output not yet drained: not state (hosts drain it after every call), so neither in
    /// snapshots nor in `state_digest`.
    #[serde(skip)]
    pub(crate) events: VecDeque<Event>,
    pub(crate) limits: Limits,
    pub(crate) observe: bool,
    /// Lease tokens are unique across the engine, so a token from one message never matches
    /// another's lease.
    pub(crate) next_lease: u64,
    pub(crate) next_waiter: u64,
    /// Publish order across the engine; a message keeps its number across retries.
    pub(crate) next_seq: u64,
    /// Waiters answered since the engine last looked; it drops them from its waiter index.
    pub(crate) answered: Vec<crate::api::WaiterId>,
    /// Message bytes held across all queues (queued and dead-lettered), for the memory
    /// budget (`Limits::max_held_bytes`).
    #[serde(default)]
    pub(crate) held_bytes: u64,
}

impl Ctx {
    pub(crate) fn new(seed: u64, limits: Limits, observe: bool) -> Self {
        Self {
            now: Millis::ZERO,
            rng: Rng::new(seed),
            timers: Timers::default(),
            events: VecDeque::new(),
            limits,
            observe,
            next_lease: 1,
            next_waiter: 1,
            next_seq: 1,
            answered: Vec::new(),
            held_bytes: 0,
        }
    }

    /// A UUID (version 4 layout) drawn from the seeded PRNG.
    pub(crate) fn new_id(&mut self) -> MessageId {
        uuid::Builder::from_random_bytes(self.rng.next_bytes16()).into_uuid()
    }

    pub(crate) fn lease_token(&mut self) -> LeaseToken {
        let token = LeaseToken(self.next_lease);
        self.next_lease += 1;
        token
    }

    pub(crate) fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Queues an observability event, built only when observation is on.
    pub(crate) fn observe(&mut self, build: impl FnOnce() -> Observed) {
        if self.observe {
            self.events.push_back(Event::Observed(build()));
        }
    }
}
