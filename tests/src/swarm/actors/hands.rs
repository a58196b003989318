//! What a worker does with the deliveries it holds, long-poll consumer and streamer alike: a
//! plan per delivery (ack, late ack, double ack, stale ack, nack, reject, extend, crash) and
//! the calls that carry it out. A flow parent's delivery carries its children's outcomes; its
//! ack's result joins them (so a grandparent sees them nested).

use synap_core::{Command, Delivery, FlowChild, FlowJobState, Json, LeaseToken, MessageId, Reply};

use crate::swarm::harness::Harness;

/// What a worker will do with a delivery.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Plan {
    Ack,
    /// Ack after the lease deadline has passed.
    LateAck,
    /// Ack, then ack again.
    DupAck,
    /// Ack with an older lease token first, then properly.
    StaleAck,
    /// Nack with requeue, maybe with an explicit delay.
    Nack(Option<u64>),
    /// Nack without requeue.
    Reject,
    /// Extend the lease, then ack.
    Extend,
    /// Crash: drop every lease held and go silent for a while.
    Crash,
    /// Nack with `snooze`, after a delay: back later without spending an attempt.
    Snooze(u64),
}

impl Plan {
    /// Chooses what to do with delivery `d`, and when.
    fn draw(h: &mut Harness, d: &Delivery) -> (Self, u64) {
        let service = h.pick(0, h.cfg.service_ms);
        let at = h.now + service;
        if !h.faults {
            return (Self::Ack, h.now + h.pick(0, 20));
        }
        let c = &h.cfg;
        let table = [
            (c.p_crash, Self::Crash),
            (c.p_late_ack, Self::LateAck),
            (c.p_dup_ack, Self::DupAck),
            (c.p_stale_ack, Self::StaleAck),
            (c.p_nack / 2.0, Self::Nack(None)),
            (c.p_nack / 2.0, Self::Nack(Some(0))),
            (c.p_reject, Self::Reject),
            (c.p_extend, Self::Extend),
            (c.p_snooze, Self::Snooze(0)),
        ];
        for (p, plan) in table {
            if h.chance(p) {
                return match plan {
                    Self::LateAck => (plan, d.lease_deadline.0 + h.pick(0, 50)),
                    Self::Nack(Some(_)) => (Self::Nack(Some(h.pick(1, 400))), at),
                    Self::Snooze(_) => (Self::Snooze(h.pick(0, 300)), at),
                    _ => (plan, at),
                };
            }
        }
        (Self::Ack, at)
    }
}

/// One delivery held, with its plan.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) d: Delivery,
    pub(crate) plan: Plan,
    act_at: u64,
}

/// The deliveries a worker holds, and lease tokens of earlier ones (for stale acks).
#[derive(Debug, Default)]
pub(crate) struct Hands {
    held: Vec<Held>,
    old: Vec<(MessageId, LeaseToken)>,
}

impl Hands {
    /// Takes a delivery and plans what to do with it.
    pub(crate) fn hold(&mut self, h: &mut Harness, d: Delivery) {
        let (plan, at) = Plan::draw(h, &d);
        self.keep(d, plan, at);
    }

    fn keep(&mut self, d: Delivery, plan: Plan, act_at: u64) {
        self.old.push((d.message_id, d.lease));
        if self.old.len() > 16 {
            self.old.remove(0);
        }
        self.held.push(Held { d, plan, act_at });
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// When the next held delivery is due.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.held.iter().map(|h| h.act_at).min()
    }

    /// Removes and returns the deliveries due at `now`, latest-held first.
    pub(crate) fn due(&mut self, now: u64) -> Vec<Held> {
        let mut out = Vec::new();
        for i in (0..self.held.len()).rev() {
            if self.held[i].act_at <= now {
                out.push(self.held.remove(i));
            }
        }
        out
    }

    /// Abandons every delivery held (their leases will run out).
    pub(crate) fn drop_all(&mut self) -> Vec<Delivery> {
        self.held.drain(..).map(|h| h.d).collect()
    }

    /// Fault-free phase: ack everything promptly.
    pub(crate) fn calm_down(&mut self, now: u64) {
        for h in &mut self.held {
            h.plan = Plan::Ack;
            h.act_at = h.act_at.min(now);
        }
    }

    /// Carries out a plan other than `Crash`.
    pub(crate) fn settle(&mut self, h: &mut Harness, held: Held) {
        let d = held.d;
        match held.plan {
            Plan::Ack | Plan::LateAck => {
                if h.chance(h.cfg.p_progress) {
                    progress(h, &d);
                }
                let result = match &d.children {
                    // A flow parent joins what its children did.
                    Some(children) => Some(Json::from_value(&joined(children))),
                    None => h
                        .chance(h.cfg.p_result)
                        .then(|| Json::from_value(&serde_json::json!({ "done": d.message_id }))),
                };
                ack_with(h, &d, d.lease, result);
            }
            Plan::DupAck => {
                ack(h, &d, d.lease);
                ack(h, &d, d.lease);
            }
            Plan::StaleAck => {
                let stale = self
                    .old
                    .iter()
                    .find(|(id, l)| *id == d.message_id && *l != d.lease)
                    .copied();
                ack(
                    h,
                    &d,
                    stale.map_or(LeaseToken(d.lease.0.wrapping_sub(1)), |(_, l)| l),
                );
                ack(h, &d, d.lease);
            }
            Plan::Nack(delay) => nack(h, &d, true, delay),
            Plan::Snooze(delay) => snooze(h, &d, delay),
            Plan::Reject => nack(h, &d, false, None),
            Plan::Extend => self.extend(h, d),
            Plan::Crash => unreachable!("a crash is the worker's to handle"),
        }
    }

    fn extend(&mut self, h: &mut Harness, d: Delivery) {
        let lease_ms = h.pick(10, 2_000);
        let cmd = Command::Extend {
            queue: d.queue.to_string(),
            message_id: d.message_id,
            lease_ms,
            lease: Some(d.lease),
        };
        let Ok(Reply::Extended { lease_deadline, .. }) = h.exec(cmd) else {
            return;
        };
        let deadline = lease_deadline.0;
        let at = if h.faults && h.chance(0.5) {
            deadline
        } else {
            h.now + h.pick(0, lease_ms)
        };
        let plan = if at >= deadline {
            Plan::LateAck
        } else {
            Plan::Ack
        };
        self.keep(d, plan, at);
    }
}

/// A flow parent's result: how many of its children it heard of, how many completed, and
/// their results.
fn joined(children: &[FlowChild]) -> serde_json::Value {
    let completed = children
        .iter()
        .filter(|c| c.state == FlowJobState::Completed)
        .count();
    let results: Vec<_> = children
        .iter()
        .filter_map(|c| c.result.as_ref().map(Json::to_value))
        .collect();
    serde_json::json!({ "children": children.len(), "completed": completed, "results": results })
}

fn ack(h: &mut Harness, d: &Delivery, lease: LeaseToken) {
    ack_with(h, d, lease, None);
}

/// Reports progress on a delivery, sometimes extending its lease too.
fn progress(h: &mut Harness, d: &Delivery) {
    let extend_ms = h.chance(0.3).then(|| h.pick(10, 2_000));
    let _ = h.exec(Command::Progress {
        queue: d.queue.to_string(),
        message_id: d.message_id,
        lease: Some(d.lease),
        progress: Json::from_value(&serde_json::json!({ "pct": 50 })),
        extend_ms,
    });
}

fn ack_with(h: &mut Harness, d: &Delivery, lease: LeaseToken, result: Option<Json>) {
    let result = h.exec(Command::Ack {
        queue: d.queue.to_string(),
        message_id: d.message_id,
        lease: Some(lease),
        result,
    });
    if let Ok(r) = result {
        assert_eq!(r, Reply::Acked);
    }
}

fn snooze(h: &mut Harness, d: &Delivery, delay_ms: u64) {
    let _ = h.exec(Command::Nack {
        queue: d.queue.to_string(),
        message_id: d.message_id,
        requeue: true,
        delay_ms: Some(delay_ms),
        error: None,
        lease: Some(d.lease),
        snooze: true,
    });
}

fn nack(h: &mut Harness, d: &Delivery, requeue: bool, delay_ms: Option<u64>) {
    let _ = h.exec(Command::Nack {
        queue: d.queue.to_string(),
        message_id: d.message_id,
        requeue,
        delay_ms,
        error: Some("swarm failure".into()),
        lease: Some(d.lease),
        snooze: false,
    });
}
