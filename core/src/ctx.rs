//! State shared by every part of the engine during one call: the clock reading, the PRNG, the
//! timer queue, the event queue and the id counters.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::api::{DeadLetterReason, Event, Job, LeaseToken, MessageId, Observed, WaiterId};
use crate::config::Limits;
use crate::ids::QueueId;
use crate::json::Json;
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
    pub(crate) answered: Vec<WaiterId>,
    /// Message bytes held across all queues (queued and dead-lettered), for the memory
    /// budget (`Limits::max_held_bytes`).
    #[serde(default)]
    pub(crate) held_bytes: u64,
    /// Bytes of finished jobs kept for lookup across all queues (`Limits::max_kept_bytes`).
    #[serde(default)]
    pub(crate) kept_bytes: u64,
    /// Jobs that finished (or left their queue unfinished) since the engine last looked: it
    /// releases their `until_finished` keys and answers the waits on them. Not state: drained
    /// within the call that filled it.
    #[serde(skip)]
    pub(crate) finished: Vec<Finished>,
    /// Parked waits for jobs to finish.
    #[serde(default, skip_serializing_if = "JobWaiters::is_empty")]
    pub(crate) job_waiters: JobWaiters,
}

/// A job that finished, or left its queue unfinished (purged), in the call just made. `job`
/// is its lookup answer, built only when someone waits for it; `outcome` is how it ended,
/// for the flow it may belong to.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    pub(crate) queue: QueueId,
    pub(crate) id: MessageId,
    pub(crate) job: Option<Box<Job>>,
    pub(crate) outcome: Outcome,
}

/// How a job left its queue.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Acked, with the result its ack carried.
    Completed(Option<Json>),
    /// Cancelled (with the result of an ack that settled it, if any).
    Cancelled(Option<Json>),
    /// Dead-lettered (or dropped by a queue that keeps no DLQ).
    DeadLettered(DeadLetterReason),
    /// Purged while ready or delayed.
    Purged,
}

/// Parked `WaitJob`s: by waiter (with the job and the deadline), and by job. Serialized as
/// the by-waiter map alone; the by-job index is rebuilt from it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "WaiterMap", into = "WaiterMap")]
pub(crate) struct JobWaiters {
    pub(crate) by_waiter: WaiterMap,
    by_job: BTreeMap<(QueueId, MessageId), BTreeSet<WaiterId>>,
}

type WaiterMap = BTreeMap<WaiterId, (QueueId, MessageId, Millis)>;

impl From<WaiterMap> for JobWaiters {
    fn from(by_waiter: WaiterMap) -> Self {
        let mut by_job: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
        for (w, (q, id, _)) in &by_waiter {
            by_job.entry((*q, *id)).or_default().insert(*w);
        }
        Self { by_waiter, by_job }
    }
}

impl From<JobWaiters> for WaiterMap {
    fn from(w: JobWaiters) -> Self {
        w.by_waiter
    }
}

impl JobWaiters {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_waiter.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_waiter.len()
    }

    /// Whether anyone waits for this job.
    pub(crate) fn watches(&self, queue: QueueId, id: MessageId) -> bool {
        !self.by_waiter.is_empty() && self.by_job.contains_key(&(queue, id))
    }

    pub(crate) fn add(&mut self, w: WaiterId, queue: QueueId, id: MessageId, deadline: Millis) {
        self.by_waiter.insert(w, (queue, id, deadline));
        self.by_job.entry((queue, id)).or_default().insert(w);
    }

    /// Removes one waiter; its job and deadline.
    pub(crate) fn remove(&mut self, w: WaiterId) -> Option<(QueueId, MessageId, Millis)> {
        let (q, id, deadline) = self.by_waiter.remove(&w)?;
        if let Some(set) = self.by_job.get_mut(&(q, id)) {
            set.remove(&w);
            if set.is_empty() {
                self.by_job.remove(&(q, id));
            }
        }
        Some((q, id, deadline))
    }

    /// Removes every waiter of a job; with their deadlines.
    pub(crate) fn take_job(&mut self, queue: QueueId, id: MessageId) -> Vec<(WaiterId, Millis)> {
        let Some(set) = self.by_job.remove(&(queue, id)) else {
            return Vec::new();
        };
        set.into_iter()
            .filter_map(|w| self.by_waiter.remove(&w).map(|(_, _, d)| (w, d)))
            .collect()
    }

    /// Every waiter, in id order.
    pub(crate) fn waiters(&self) -> Vec<WaiterId> {
        self.by_waiter.keys().copied().collect()
    }
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
            kept_bytes: 0,
            finished: Vec::new(),
            job_waiters: JobWaiters::default(),
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
