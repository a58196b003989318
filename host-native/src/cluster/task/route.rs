//! Where a cluster node's answers and engine events go: replies to the requests of a
//! proposal, long-poll answers, session and pub/sub pushes to the connections this node
//! holds. Leased messages nobody received are given back through the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use synap_cluster::{Answer, Refused};
use synap_core::{Command, Delivery, Engine, Error, Event, LeaseRef, QueueStats, Reply, WaiterId};
use tracing::{debug, warn};

use super::{ClusterTask, Parked, Waiting};
use crate::cluster::NotServing;
use crate::engine_task::SessionPush;
use crate::handle::Failure;
use crate::storage::outbox::{Outgoing, Undelivered};

impl ClusterTask {
    /// A proposal answered: its replies go to the requests that wait for them.
    pub(super) fn on_answer(&mut self, a: Answer) {
        if self.on_change_answer(&a) {
            return;
        }
        let Some(waits) = self.in_flight.remove(&a.proposal) else {
            return;
        };
        let turn = match a.outcome {
            Ok(turn) => turn,
            Err(
                Refused::Lost { .. }
                | Refused::NotLeader { .. }
                | Refused::Busy
                | Refused::Rejected { .. }
                | Refused::Stopped { .. },
            ) => {
                let lost =
                    NotServing::Lost(self.leader_addr().filter(|l| l.id != self.cfg.node_id));
                self.refuse(waits, &Failure::Cluster(lost));
                return;
            }
        };
        let mut replies = turn.replies.into_iter();
        for w in waits {
            match w {
                Waiting::Many { reply, n } => {
                    let rs = replies.by_ref().take(n).map(|r| r.map_err(Failure::from));
                    let _ = reply.send(rs.collect());
                }
                w => {
                    let r = replies.next().expect("one reply per command");
                    self.on_reply(w, r);
                }
            }
        }
    }

    fn on_reply(&mut self, w: Waiting, r: Result<Reply, Error>) {
        match w {
            Waiting::Call(tx) => self.send(Outgoing::Call(tx, r.map_err(Failure::from))),
            Waiting::Consume { token, reply } => self.on_consumed(token, reply, r),
            Waiting::WaitJob { token, reply } => match r {
                Ok(Reply::Waiting { waiter_id }) => {
                    self.by_token.insert(token, waiter_id);
                    self.parked_jobs.insert(waiter_id, (token, reply));
                }
                other => self.send(Outgoing::Call(reply, other.map_err(Failure::from))),
            },
            Waiting::Attach { sink, reply } => {
                if let Ok(Reply::Attached { session_id, .. }) = &r {
                    self.sessions.insert(*session_id, sink);
                }
                self.send(Outgoing::Attached(reply, r.map_err(Failure::from)));
            }
            Waiting::Subscribe { sink, reply } => {
                let r = match r {
                    Ok(Reply::Subscribed { subscriber_id, .. }) => {
                        self.sinks.insert(subscriber_id.clone(), sink);
                        Ok(subscriber_id)
                    }
                    Ok(other) => unreachable!("subscribe replied {other:?}"),
                    Err(e) => Err(e.into()),
                };
                self.send(Outgoing::Subscribed(reply, r));
            }
            Waiting::Internal | Waiting::Many { .. } => {}
        }
    }

    fn on_consumed(
        &mut self,
        token: u64,
        reply: tokio::sync::oneshot::Sender<super::ConsumeResult>,
        r: Result<Reply, Error>,
    ) {
        self.consuming.remove(&token);
        let abandoned = self.abandoned.remove(&token);
        match r {
            Ok(Reply::Messages { messages }) if abandoned => self.give_back(messages),
            Ok(Reply::Messages { messages }) => self.send(Outgoing::Consume(reply, Ok(messages))),
            Ok(Reply::Waiting { waiter_id }) if abandoned => {
                self.cancelled.insert(waiter_id);
                self.internal.push(Command::CancelWait { waiter_id });
            }
            Ok(Reply::Waiting { waiter_id }) => {
                self.by_token.insert(token, waiter_id);
                self.parked.insert(waiter_id, Parked { token, reply });
            }
            Ok(other) => unreachable!("consume replied {other:?}"),
            Err(e) => self.send(Outgoing::Consume(reply, Err(e.into()))),
        }
    }

    /// Answers a parked job wait: the job, or (`None`) it is gone. Whether one was parked here.
    fn job_waited(&mut self, waiter_id: WaiterId, job: Option<Box<synap_core::Job>>) -> bool {
        let Some((token, reply)) = self.parked_jobs.remove(&waiter_id) else {
            return false;
        };
        self.by_token.remove(&token);
        let answer = match job {
            Some(job) => Ok(Reply::Job(job)),
            None => Err(Failure::from(Error::MessageNotFound {
                message_id: "the job is gone (purged, or its queue deleted)".into(),
            })),
        };
        self.send(Outgoing::Call(reply, answer));
        true
    }

    /// Sends a reply or push; gives back or detaches what could not be delivered.
    fn send(&mut self, out: Outgoing) {
        match out.send() {
            Undelivered::Nothing => {}
            Undelivered::Messages(m) => self.give_back(m),
            Undelivered::Session(session_id) => {
                self.sessions.remove(&session_id);
                self.internal.push(Command::Detach {
                    session_id,
                    give_back: true,
                });
            }
        }
    }

    /// One engine event, the same on every replica; routed if this node holds its client.
    pub(super) fn on_event(&mut self, event: Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Arc::new(event.clone()));
        }
        match event {
            Event::Delivered {
                waiter_id,
                messages,
            } => self.deliver(waiter_id, messages),
            Event::JobWaited { waiter_id, job } => {
                self.job_waited(waiter_id, Some(job));
            }
            Event::WaitTimedOut { waiter_id } if self.job_waited(waiter_id, None) => {}
            Event::WaitTimedOut { waiter_id } => {
                self.cancelled.remove(&waiter_id);
                if let Some(p) = self.parked.remove(&waiter_id) {
                    self.by_token.remove(&p.token);
                    self.send(Outgoing::Consume(p.reply, Ok(Vec::new())));
                }
            }
            Event::PubSub {
                subscriber_id,
                message,
            } => self.push(subscriber_id, message),
            Event::Pushed {
                session_id,
                messages,
            } => {
                if let Some(sink) = self.sessions.get(&session_id) {
                    let sink = sink.clone();
                    self.send(Outgoing::Push(
                        session_id,
                        sink,
                        SessionPush::Messages(messages),
                    ));
                }
            }
            Event::SessionEnded { session_id } => {
                if let Some(sink) = self.sessions.remove(&session_id) {
                    let _ = sink.try_send(SessionPush::Ended);
                }
            }
            Event::Observed(_) | Event::KeyExpired { .. } | Event::Progress { .. } => {}
        }
    }

    fn deliver(&mut self, waiter_id: WaiterId, messages: Vec<Delivery>) {
        if let Some(p) = self.parked.remove(&waiter_id) {
            self.by_token.remove(&p.token);
            self.send(Outgoing::Consume(p.reply, Ok(messages)));
        } else if self.cancelled.remove(&waiter_id) {
            // Delivered before this node's cancel was applied: nobody will read it.
            self.give_back(messages);
        }
        // Otherwise another node's waiter (or one of an earlier term): its leases run out.
    }

    fn push(&mut self, subscriber_id: String, message: synap_core::PubMessage) {
        let Some(sink) = self.sinks.get(&subscriber_id) else {
            return;
        };
        match sink.try_send(message) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                warn!(%subscriber_id, "subscriber sink full; message dropped");
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                self.sinks.remove(&subscriber_id);
                self.internal.push(Command::Unsubscribe {
                    subscriber_id,
                    patterns: None,
                });
            }
        }
    }

    /// Proposes to give back leased messages whose consumer is gone.
    pub(super) fn give_back(&mut self, messages: Vec<Delivery>) {
        let mut by_queue: BTreeMap<Arc<str>, Vec<LeaseRef>> = BTreeMap::new();
        for d in &messages {
            by_queue
                .entry(Arc::clone(&d.queue))
                .or_default()
                .push(LeaseRef {
                    message_id: d.message_id,
                    lease: d.lease,
                });
        }
        for (queue, leases) in by_queue {
            debug!(%queue, n = leases.len(), "giving back unread messages");
            self.internal.push(Command::GiveBack {
                queue: queue.to_string(),
                leases,
            });
        }
    }
}

/// Stats of every queue of this replica (for `/metrics`), read on a copy of the engine so the
/// replica itself runs nothing outside the log.
pub(super) fn stats(engine: &Engine) -> Vec<QueueStats> {
    let mut copy = engine.clone();
    let now = copy.now();
    let Ok(Reply::Queues { queues }) = copy.handle(now, Command::ListQueues) else {
        return Vec::new();
    };
    queues
        .into_iter()
        .filter_map(|queue| match copy.handle(now, Command::Stats { queue }) {
            Ok(Reply::Stats(s)) => Some(*s),
            _ => None,
        })
        .collect()
}
