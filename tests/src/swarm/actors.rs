//! The swarm's actors: a publisher, consumers with fault plans, and a KV user with its model.

use std::collections::BTreeMap;

use serde_json::json;
use synap_core::{Command, Delivery, Json, MessageId, PublishMessage, Reply, WaiterId};

use super::{QUEUE, World};

/// What a consumer will do with a delivery.
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
}

#[derive(Debug)]
pub(crate) struct Held {
    d: Delivery,
    plan: Plan,
    act_at: u64,
}

/// A worker: consumes (at once or long-polling), then acts on each delivery per its plan.
#[derive(Debug)]
pub(crate) struct Consumer {
    name: String,
    held: Vec<Held>,
    /// Parked waiter and the lease length it asked for.
    pub(crate) parked: Option<(WaiterId, Option<u64>)>,
    /// The lease length of the last immediate consume.
    pub(crate) lease_ms: Option<u64>,
    pub(crate) next_consume: Option<u64>,
    crashed_until: Option<u64>,
    max_held: usize,
    /// Lease tokens of earlier deliveries, for stale acks.
    old: Vec<(MessageId, u64)>,
}

impl Consumer {
    pub(crate) fn new(i: usize, seed: u64) -> Self {
        Self {
            name: format!("worker-{i}"),
            held: Vec::new(),
            parked: None,
            lease_ms: None,
            next_consume: Some(1_000),
            crashed_until: None,
            max_held: 1 + ((seed as usize + i) % 3),
            old: Vec::new(),
        }
    }

    pub(crate) fn next_at(&self) -> Option<u64> {
        if let Some(t) = self.crashed_until {
            return Some(t);
        }
        let act = self.held.iter().map(|h| h.act_at).min();
        let consume = if self.parked.is_none() && self.held.len() < self.max_held {
            self.next_consume
        } else {
            None
        };
        [act, consume].into_iter().flatten().min()
    }

    pub(crate) fn hold(&mut self, d: Delivery, plan: (Plan, u64)) {
        self.old.push((d.message_id, d.lease));
        if self.old.len() > 16 {
            self.old.remove(0);
        }
        self.held.push(Held {
            d,
            plan: plan.0,
            act_at: plan.1,
        });
    }

    /// Fault-free phase: revive, and ack everything promptly.
    pub(crate) fn calm_down(&mut self, now: u64) {
        self.crashed_until = self.crashed_until.map(|_| now);
        for h in &mut self.held {
            h.plan = Plan::Ack;
            h.act_at = h.act_at.min(now);
        }
    }
}

/// Publishes `total` messages, some in batches, with delays, TTLs and retry overrides.
#[derive(Debug)]
pub(crate) struct Publisher {
    total: usize,
    sent: usize,
    next: u64,
}

impl Publisher {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            total,
            sent: 0,
            next: 1_000,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.sent >= self.total
    }

    pub(crate) fn next_at(&self) -> Option<u64> {
        (!self.done()).then_some(self.next)
    }
}

/// The KV model: value and expiry per key. A key is live while `expires_at > now`.
#[derive(Debug, Default)]
pub(crate) struct KvModel {
    map: BTreeMap<String, (serde_json::Value, Option<u64>)>,
}

impl KvModel {
    fn live(&self, key: &str, now: u64) -> Option<&serde_json::Value> {
        self.map
            .get(key)
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(v, _)| v)
    }

    /// The engine removed `key` at `at`: the model must agree it expired then.
    pub(crate) fn expired(&mut self, key: &str, at: u64) {
        let (_, exp) = self.map.remove(key).expect("expired key is in the model");
        assert_eq!(exp, Some(at), "key {key} expired at the wrong time");
    }
}

impl World {
    pub(crate) fn publish(&mut self) {
        let batch = if self.chance(self.cfg.p_batch) {
            self.pick(2, 5) as usize
        } else {
            1
        };
        let left = self.publisher().total - self.publisher().sent;
        let n = batch.min(left);
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.publisher().sent;
            self.publisher().sent += 1;
            let mut m = PublishMessage {
                message: Some(Json::from_value(&json!({ "n": k }))),
                priority: Some(self.pick(0, 9) as u8),
                ..PublishMessage::default()
            };
            if self.chance(self.cfg.p_delay) {
                m.delay_ms = Some(self.pick(1, 1_000));
            }
            if self.chance(self.cfg.p_ttl) {
                m.ttl_ms = Some(self.pick(50, 5_000));
            }
            if self.chance(self.cfg.p_override_retries) {
                m.max_retries = Some(self.pick(0, 3) as u32);
            }
            messages.push(m);
        }
        let gap = self.pick(0, self.cfg.publish_gap_ms);
        self.publisher().next = self.now + gap;
        let specs: Vec<_> = messages.iter().map(|m| (m.max_retries, m.ttl_ms)).collect();
        let cmd = if n == 1 {
            Command::Publish {
                queue: QUEUE.into(),
                message: messages.remove(0),
            }
        } else {
            Command::PublishBatch {
                queue: QUEUE.into(),
                messages,
            }
        };
        let ids: Vec<MessageId> = match self.exec(cmd) {
            Ok(Reply::Published(p)) => vec![p.message_id],
            Ok(Reply::PublishedBatch { messages }) => {
                messages.iter().map(|p| p.message_id).collect()
            }
            other => panic!("publish answered {other:?}"),
        };
        for (id, (retries, ttl)) in ids.into_iter().zip(specs) {
            self.oracle.published(id, retries, ttl);
        }
    }

    /// Chooses what a consumer will do with a delivery, and when.
    pub(crate) fn plan(&mut self, d: &Delivery) -> (Plan, u64) {
        let service = self.pick(0, self.cfg.service_ms);
        let at = self.now + service;
        if !self.faults {
            return (Plan::Ack, self.now + self.pick(0, 20));
        }
        let c = &self.cfg;
        let table = [
            (c.p_crash, Plan::Crash),
            (c.p_late_ack, Plan::LateAck),
            (c.p_dup_ack, Plan::DupAck),
            (c.p_stale_ack, Plan::StaleAck),
            (c.p_nack / 2.0, Plan::Nack(None)),
            (c.p_nack / 2.0, Plan::Nack(Some(0))),
            (c.p_reject, Plan::Reject),
            (c.p_extend, Plan::Extend),
        ];
        for (p, plan) in table {
            if self.chance(p) {
                return match plan {
                    Plan::LateAck => (plan, d.lease_deadline.0 + self.pick(0, 50)),
                    Plan::Nack(Some(_)) => (Plan::Nack(Some(self.pick(1, 400))), at),
                    _ => (plan, at),
                };
            }
        }
        (Plan::Ack, at)
    }

    /// Consumer `i` does whatever is due: revive, act on held deliveries, or consume.
    pub(crate) fn act(&mut self, i: usize) {
        let now = self.now;
        if let Some(t) = self.consumer(i).crashed_until {
            if t <= now {
                self.consumer(i).crashed_until = None;
                self.consumer(i).next_consume = Some(now);
            }
            return;
        }
        let due: Vec<usize> = (0..self.consumer(i).held.len())
            .filter(|&h| self.consumer(i).held[h].act_at <= now)
            .collect();
        for h in due.into_iter().rev() {
            let held = self.consumer(i).held.remove(h);
            if held.plan == Plan::Crash {
                // Every lease this consumer holds is simply abandoned.
                self.consumer(i).held.clear();
                let silence = self.pick(1, 3 * self.cfg.queue.ack_deadline_ms);
                self.consumer(i).crashed_until = Some(now + silence);
                return;
            }
            self.settle(i, held);
        }
        let c = self.consumer(i);
        let wants = c.parked.is_none() && c.held.len() < c.max_held;
        if wants && c.next_consume.is_some_and(|t| t <= now) {
            self.consume(i);
        }
    }

    fn consume(&mut self, i: usize) {
        let long = self.chance(self.cfg.p_long_poll);
        let lease_ms = if self.chance(0.5) {
            None
        } else {
            Some(self.pick(10, 3_000))
        };
        let max = self.pick(1, 3) as u32;
        let cmd = Command::Consume {
            queue: QUEUE.into(),
            wait_ms: if long { self.pick(1, 5_000) } else { 0 },
            lease_ms,
            max_messages: max,
            consumer_id: Some(self.consumer(i).name.clone()),
        };
        match self.exec(cmd) {
            Ok(Reply::Messages { messages }) => {
                let empty = messages.is_empty();
                self.consumer(i).lease_ms = lease_ms;
                let now = self.now;
                self.receive(i, messages, now);
                if empty {
                    let pause = self.pick(1, 500);
                    self.consumer(i).next_consume = Some(self.now + pause);
                }
            }
            Ok(Reply::Waiting { waiter_id }) => {
                self.consumer(i).parked = Some((waiter_id, lease_ms))
            }
            other => panic!("consume answered {other:?}"),
        }
    }

    fn settle(&mut self, i: usize, held: Held) {
        let d = held.d;
        match held.plan {
            Plan::Ack | Plan::LateAck => self.ack(d.message_id, d.lease),
            Plan::DupAck => {
                self.ack(d.message_id, d.lease);
                self.ack(d.message_id, d.lease);
            }
            Plan::StaleAck => {
                let stale = self
                    .consumer(i)
                    .old
                    .iter()
                    .find(|(id, l)| *id == d.message_id && *l != d.lease)
                    .copied();
                let token = stale.map_or(d.lease.wrapping_sub(1), |(_, l)| l);
                self.ack(d.message_id, token);
                self.ack(d.message_id, d.lease);
            }
            Plan::Nack(delay) => self.nack(d.message_id, d.lease, true, delay),
            Plan::Reject => self.nack(d.message_id, d.lease, false, None),
            Plan::Extend => {
                let lease_ms = self.pick(10, 2_000);
                let cmd = Command::Extend {
                    queue: QUEUE.into(),
                    message_id: d.message_id,
                    lease_ms,
                    lease: Some(d.lease),
                };
                let predicted = self.oracle.predict_ack(d.message_id, d.lease, self.now);
                let result = self.exec(cmd);
                super::Oracle::check_ack(
                    d.message_id,
                    predicted,
                    &result.as_ref().map(|_| ()).map_err(Clone::clone),
                );
                if let Ok(Reply::Extended { lease_deadline }) = result {
                    self.oracle.extended(d.message_id, lease_deadline.0);
                    let service = self.pick(0, lease_ms);
                    let plan = if self.faults {
                        Plan::LateAck
                    } else {
                        Plan::Ack
                    };
                    let at = if plan == Plan::LateAck && self.chance(0.5) {
                        lease_deadline.0
                    } else {
                        self.now + service
                    };
                    self.consumer(i).hold(
                        d,
                        (
                            if at >= lease_deadline.0 {
                                Plan::LateAck
                            } else {
                                Plan::Ack
                            },
                            at,
                        ),
                    );
                }
            }
            Plan::Crash => unreachable!("handled by act"),
        }
    }

    fn ack(&mut self, id: MessageId, lease: u64) {
        let predicted = self.oracle.predict_ack(id, lease, self.now);
        let result = self.exec(Command::Ack {
            queue: QUEUE.into(),
            message_id: id,
            lease: Some(lease),
        });
        let result = result.map(|r| assert_eq!(r, Reply::Acked));
        super::Oracle::check_ack(id, predicted, &result);
    }

    fn nack(&mut self, id: MessageId, lease: u64, requeue: bool, delay_ms: Option<u64>) {
        let before = self.oracle.ledger.get(&id).cloned();
        self.oracle.nacking(id, requeue, delay_ms);
        let cmd = Command::Nack {
            queue: QUEUE.into(),
            message_id: id,
            requeue,
            delay_ms,
            error: Some("swarm failure".into()),
            lease: Some(lease),
        };
        let result = self.exec(cmd).map(|r| match r {
            Reply::Nacked { action } => action,
            other => panic!("nack answered {other:?}"),
        });
        let now = self.now;
        self.oracle.check_nack(id, lease, now, before, &result);
    }

    /// A random KV operation, checked against the model.
    pub(crate) fn kv_op(&mut self) {
        let key = format!("k{}", self.pick(0, 4));
        let now = self.now;
        match self.pick(0, 3) {
            0 => {
                let ttl_ms = if self.chance(0.5) {
                    Some(self.pick(0, 2_000))
                } else {
                    None
                };
                let value = json!(self.pick(0, 100));
                let cmd = Command::KvSet {
                    key: key.clone(),
                    value: Json::from_value(&value),
                    ttl_ms,
                };
                assert_eq!(self.exec(cmd), Ok(Reply::KvOk));
                self.kv_model()
                    .map
                    .insert(key, (value, ttl_ms.map(|t| now + t)));
            }
            1 => {
                let expected = self.kv_model().live(&key, now).cloned();
                let got = match self.exec(Command::KvGet { key: key.clone() }) {
                    Ok(Reply::KvValue(v)) => v.value.map(|j| j.to_value()),
                    other => panic!("kv get answered {other:?}"),
                };
                assert_eq!(got, expected, "rule 6: kv get {key} at {now}");
            }
            2 => {
                let live = self.kv_model().live(&key, now).is_some();
                let got = self.exec(Command::KvDel { key: key.clone() });
                assert_eq!(got, Ok(Reply::KvDeleted { deleted: live }), "kv del {key}");
                self.kv_model().map.remove(&key);
            }
            _ => {
                let entry = self
                    .kv_model()
                    .live(&key, now)
                    .cloned()
                    .map(|v| (v, self.kv_model().map[&key].1));
                let (base, exp) =
                    entry.map_or((0, None), |(v, e)| (v.as_i64().expect("ints only"), e));
                let got = self.exec(Command::KvIncr {
                    key: key.clone(),
                    by: 3,
                });
                assert_eq!(got, Ok(Reply::KvInt { value: base + 3 }), "kv incr {key}");
                self.kv_model().map.insert(key, (json!(base + 3), exp));
            }
        }
    }
}
