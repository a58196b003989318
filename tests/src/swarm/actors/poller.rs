//! A long-poll consumer: consumes from any queue (at once or parking a waiter), works its
//! deliveries per plan, and on a crash goes silent holding its leases, or has its host give
//! back the answers it never read.

use std::collections::BTreeMap;

use synap_core::{Command, Delivery, LeaseRef, Reply, WaiterId};

use super::hands::{Hands, Plan};
use crate::swarm::harness::Harness;

/// A long-poll worker.
#[derive(Debug)]
pub(crate) struct Poller {
    name: String,
    hands: Hands,
    /// The waiter it parked, if any.
    pub(crate) parked: Option<WaiterId>,
    next_consume: Option<u64>,
    crashed_until: Option<u64>,
    max_held: usize,
}

impl Poller {
    pub(crate) fn new(i: usize, seed: u64) -> Self {
        Self {
            name: format!("worker-{i}"),
            hands: Hands::default(),
            parked: None,
            next_consume: Some(1_000),
            crashed_until: None,
            max_held: 1 + ((seed as usize + i) % 3),
        }
    }

    pub(crate) fn next_at(&self) -> Option<u64> {
        if let Some(t) = self.crashed_until {
            return Some(t);
        }
        let consume = if self.parked.is_none() && self.hands.len() < self.max_held {
            self.next_consume
        } else {
            None
        };
        [self.hands.next_at(), consume].into_iter().flatten().min()
    }

    /// Fault-free phase: revive, and ack everything promptly.
    pub(crate) fn calm_down(&mut self, now: u64) {
        self.crashed_until = self.crashed_until.map(|_| now);
        self.hands.calm_down(now);
    }

    /// Messages arrived (an immediate answer or a parked waiter's).
    pub(crate) fn receive(&mut self, h: &mut Harness, messages: Vec<Delivery>) {
        for d in messages {
            self.hands.hold(h, d);
        }
        self.next_consume = Some(h.now);
    }

    /// Its waiter ended without messages, or was dropped by a restart.
    pub(crate) fn unpark(&mut self, now: u64) {
        self.parked = None;
        self.next_consume = Some(now);
    }

    /// Does whatever is due: revive, act on held deliveries, or consume.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        let now = h.now;
        if let Some(t) = self.crashed_until {
            if t <= now {
                self.crashed_until = None;
                self.next_consume = Some(now);
            }
            return;
        }
        for held in self.hands.due(now) {
            if held.plan == Plan::Crash {
                self.crash(h, held.d);
                return;
            }
            self.hands.settle(h, held);
        }
        let wants = self.parked.is_none() && self.hands.len() < self.max_held;
        if wants && self.next_consume.is_some_and(|t| t <= now) {
            self.consume(h);
        }
    }

    /// Goes silent for a while; every lease it holds is abandoned, or half the time given
    /// back by its host (an answer its client never read).
    fn crash(&mut self, h: &mut Harness, d: Delivery) {
        let mut dropped = self.hands.drop_all();
        dropped.push(d);
        if h.chance(0.5) {
            let mut by_queue: BTreeMap<String, Vec<LeaseRef>> = BTreeMap::new();
            for d in dropped {
                by_queue
                    .entry(d.queue.to_string())
                    .or_default()
                    .push(LeaseRef {
                        message_id: d.message_id,
                        lease: d.lease,
                    });
            }
            for (queue, leases) in by_queue {
                let _ = h.exec(Command::GiveBack { queue, leases });
            }
        }
        let longest = h.cfg.queues.iter().map(|q| q.config.ack_deadline_ms).max();
        let silence = h.pick(1, 3 * longest.unwrap_or(1_000));
        self.crashed_until = Some(h.now + silence);
    }

    fn consume(&mut self, h: &mut Harness) {
        let long = h.chance(h.cfg.p_long_poll);
        let lease_ms = if h.chance(0.5) {
            None
        } else {
            Some(h.pick(10, 3_000))
        };
        let q = h.any_queue();
        let cmd = Command::Consume {
            queue: h.cfg.queues[q].name.clone(),
            wait_ms: if long { h.pick(1, 5_000) } else { 0 },
            lease_ms,
            max_messages: h.pick(1, 3) as u32,
            consumer_id: Some(self.name.clone()),
        };
        match h.exec(cmd) {
            Ok(Reply::Messages { messages }) => {
                let empty = messages.is_empty();
                self.receive(h, messages);
                if empty {
                    let pause = h.pick(1, 500);
                    self.next_consume = Some(h.now + pause);
                }
            }
            Ok(Reply::Waiting { waiter_id }) => self.parked = Some(waiter_id),
            other => panic!("consume answered {other:?}"),
        }
    }
}
