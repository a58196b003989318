//! The swarm's client: a producer of keyed publishes and a worker that consumes and acks,
//! sending turns of requests to the node it believes leads (following `NotLeader`, resending
//! what was lost or went unanswered), and what it makes of the answers (checked by the
//! oracle).

use synap_cluster::{Refused, TurnResult};
use synap_core::{Command, Error, LeaseToken, MessageId, QueueConfig, Reply, json_message};

use super::{GIVE_UP_MS, LEASE_MS, NODES, QUEUE, World};

/// One request of the client, as it rides in a proposal.
#[derive(Clone, Copy, Debug)]
pub(super) enum Req {
    Create,
    Publish(usize),
    Consume,
    Ack(MessageId, LeaseToken),
}

/// The producer and the worker, as one client: every few milliseconds it sends the node it
/// believes leads one turn of requests (publishes of keys due, a consume, acks).
#[derive(Default)]
pub(super) struct Client {
    pub(super) target: u64,
    pub(super) next_at: u64,
    pub(super) created: bool,
    pub(super) create_until: u64,
    /// Per key: the message its publish was answered with, and until when one is out (at
    /// first: when it is released).
    pub(super) keys: Vec<(Option<MessageId>, u64)>,
    pub(super) consume_until: u64,
    pub(super) acks: Vec<(MessageId, LeaseToken)>,
}

impl World {
    /// Sends one turn of requests to the node the client believes leads.
    pub(super) fn act(&mut self) {
        let now = self.now;
        let c = &mut self.client;
        let mut reqs = Vec::new();
        if !c.created {
            if c.create_until <= now {
                reqs.push(Req::Create);
            }
        } else {
            let want = 1 + (self.rng.next_u64() % 4) as usize;
            let due = (0..c.keys.len()).filter(|&k| c.keys[k].0.is_none() && c.keys[k].1 <= now);
            reqs.extend(due.take(want).map(Req::Publish));
            if c.consume_until <= now {
                reqs.push(Req::Consume);
            }
            reqs.extend(c.acks.iter().map(|&(id, lease)| Req::Ack(id, lease)));
        }
        self.client.next_at = now + self.pick(5, 30);
        if reqs.is_empty() {
            return;
        }
        let cmds: Vec<Command> = reqs.iter().map(|&r| Client::command(r)).collect();
        let target = self.client.target;
        let i = (target - 1) as usize;
        let clock = self.clock();
        let Some(node) = self.peers[i].node.as_mut() else {
            self.client.target = self.pick(1, NODES);
            return;
        };
        let n = cmds.len() as u64;
        match node.propose(clock, cmds) {
            Ok(p) => {
                self.oracle.note(&[6, target, p.0, n]);
                let c = &mut self.client;
                for r in &reqs {
                    match *r {
                        Req::Create => c.create_until = now + GIVE_UP_MS,
                        Req::Publish(k) => c.keys[k].1 = now + GIVE_UP_MS,
                        Req::Consume => c.consume_until = now + GIVE_UP_MS,
                        Req::Ack(..) => {}
                    }
                }
                // Acks are sent once: a lost one lets the lease expire and the message return.
                c.acks.clear();
                self.peers[i].in_flight.insert(p, reqs);
                self.drain(i);
            }
            Err(Refused::NotLeader { leader }) => {
                self.client.target = match leader {
                    Some(l) => l,
                    None => self.pick(1, NODES),
                };
            }
            Err(Refused::Busy) => {}
            Err(other) => panic!("node {target} refused a turn: {other:?}"),
        }
    }

    pub(super) fn on_turn(&mut self, reqs: &[Req], turn: TurnResult) {
        assert_eq!(reqs.len(), turn.replies.len(), "one reply per command");
        for (r, reply) in reqs.iter().zip(turn.replies) {
            let c = &mut self.client;
            match (*r, reply) {
                (Req::Create, Ok(Reply::QueueCreated { .. })) => c.created = true,
                (Req::Publish(k), Ok(Reply::Published(p))) => {
                    self.oracle.publish_answered(k, p.message_id);
                    c.keys[k].0 = Some(p.message_id);
                }
                (Req::Consume, Ok(Reply::Messages { messages })) => {
                    c.consume_until = 0;
                    for d in messages {
                        self.oracle.delivered(d.message_id, turn.index);
                        c.acks.push((d.message_id, d.lease));
                    }
                }
                (Req::Ack(id, _), Ok(Reply::Acked)) => self.oracle.ack_answered(id),
                // The lease expired first and the message went to another delivery.
                (
                    Req::Ack(..),
                    Err(Error::LeaseMismatch { .. } | Error::MessageNotFound { .. }),
                ) => {}
                (r, other) => panic!("{r:?} answered {other:?} at index {}", turn.index),
            }
        }
    }
}

impl Client {
    fn command(r: Req) -> Command {
        match r {
            Req::Create => Command::CreateQueue {
                queue: QUEUE.into(),
                config: Some(Box::new(QueueConfig {
                    max_retries: 1_000,
                    ..QueueConfig::default()
                })),
            },
            Req::Publish(k) => {
                let mut message = json_message(serde_json::json!({ "key": k }));
                message.idempotency_key = Some(format!("key-{k}"));
                Command::Publish {
                    queue: QUEUE.into(),
                    message,
                }
            }
            Req::Consume => Command::Consume {
                queue: QUEUE.into(),
                wait_ms: 0,
                lease_ms: Some(LEASE_MS),
                max_messages: 5,
                consumer_id: None,
            },
            Req::Ack(id, lease) => Command::Ack {
                queue: QUEUE.into(),
                message_id: id,
                lease: Some(lease),
                result: None,
            },
        }
    }

    /// A request whose proposal was lost: send it again at once.
    pub(super) fn forget(&mut self, r: Req) {
        match r {
            Req::Create => self.create_until = 0,
            Req::Publish(k) => self.keys[k].1 = 0,
            Req::Consume => self.consume_until = 0,
            Req::Ack(..) => {}
        }
    }
}
