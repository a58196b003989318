//! The oracle: a model of the engine kept outside it from what it is sent and what it reports,
//! checking every reply and event against the rules of DESIGN.md §3, the job lifecycle's of
//! §13 and the flows' of §14 (`flows`, with its own model of every flow).
//!
//! It sees every command with its reply before the events are drained (`before`), every event
//! in order (`event`), and the command again once they are (`after`). From this it keeps a
//! ledger per message, the parked waiters and attached sessions with their credit, the waits
//! for jobs, the kept finished jobs, the schedules' timetables, the pub/sub subscribers and the
//! KV, and predicts each answer. A violation panics with the rule.

mod flow;
mod flow_views;
mod flows;
mod jobs;
mod keys;
mod kv;
mod ledger;
mod publishes;
mod pubsub;
mod queues;
mod retention;
mod schedules;
mod settle;
mod takers;

use std::collections::BTreeMap;
use std::sync::Arc;

use synap_core::{Command, Error, Event, MessageId, ObservedKind, Reply, WaiterId};

use super::config::SwarmConfig;
use flow::FlowModel;
use flows::FlowBook;
use jobs::JobWait;
use keys::Keys;
pub(crate) use kv::KvModel;
use ledger::Ended;
pub(crate) use ledger::{Failing, Ledger, Place};
use pubsub::PubsubModel;
use retention::{Finish, Retention};
use schedules::Schedules;
pub(crate) use takers::{SessionModel, Takers, WaiterModel};

/// Longest lease the engine grants (it caps longer ones).
const MAX_LEASE_MS: u64 = synap_core::MAX_LEASE_MS;

/// The whole model and its rules.
#[derive(Debug)]
pub(crate) struct Oracle {
    /// Every message ever published.
    pub(crate) ledger: Ledger,
    /// Waiters and sessions.
    pub(crate) takers: Takers,
    /// Pub/sub subscribers.
    pubsub: PubsubModel,
    /// The KV.
    pub(crate) kv: KvModel,
    cfg: SwarmConfig,
    max_window: u32,
    /// What a give-back by `Detach` returned: (messages, their deliveries before).
    given_back: Vec<(MessageId, u32)>,
    /// Messages removed with their queue.
    pub(crate) deleted: usize,
    /// Publish idempotency keys and the ids they were first answered with.
    keys: Keys,
    /// Messages published in the current call not (yet) claimed by a publish command: runs
    /// of a schedule.
    unclaimed: Vec<MessageId>,
    /// Schedules' timetables and runs.
    pub(crate) schedules: Schedules,
    /// Finished jobs kept for lookup.
    pub(crate) retention: Retention,
    /// Parked waits for a job.
    pub(crate) job_waits: BTreeMap<WaiterId, JobWait>,
    /// Waits for a job answered by an event.
    pub(crate) waits_answered: usize,
    /// Per (queue, key) of debounced publishes, the job the key last started.
    debounce: BTreeMap<(usize, String), MessageId>,
    /// Debounced publishes that replaced a delayed job's message.
    pub(crate) replacements: usize,
    /// The time of the engine call being checked.
    pub(crate) now: u64,
    /// Flow control: pauses, rate limits and windows.
    pub(crate) flow: FlowModel,
    /// Flows (DESIGN.md §14): jobs that wait for other jobs.
    pub(crate) flows: FlowBook,
}

fn code(result: &Result<Reply, Error>) -> Option<&'static str> {
    result.as_ref().err().map(Error::code)
}

impl Oracle {
    /// An oracle for a run of `cfg` on an engine with session windows up to `max_window`.
    #[must_use]
    pub(crate) fn new(cfg: &SwarmConfig, max_window: u32) -> Self {
        let mut ledger = Ledger::default();
        ledger.schedule_bodies = (0..cfg.queues.len())
            .map(|q| cfg.schedule_body(q))
            .collect();
        Self {
            ledger,
            takers: Takers::default(),
            pubsub: PubsubModel::new(cfg.subscriber_buffer),
            kv: KvModel::default(),
            cfg: cfg.clone(),
            max_window,
            given_back: Vec::new(),
            deleted: 0,
            keys: Keys::default(),
            unclaimed: Vec::new(),
            schedules: Schedules::new(cfg.queues.len()),
            retention: Retention::new(
                cfg.queues
                    .iter()
                    .map(|q| [q.config.keep_completed, q.config.keep_cancelled])
                    .collect(),
            ),
            job_waits: BTreeMap::new(),
            waits_answered: 0,
            debounce: BTreeMap::new(),
            replacements: 0,
            now: 0,
            flow: FlowModel::default(),
            flows: FlowBook::default(),
        }
    }

    fn lease_of(&self, queue: &str, lease_ms: Option<u64>) -> u64 {
        let q = self.cfg.queue_index(queue);
        lease_ms
            .unwrap_or(self.cfg.queue(q).ack_deadline_ms)
            .min(MAX_LEASE_MS)
    }

    /// A command was answered; its events are not drained yet, so the ledger still shows the
    /// state before it.
    pub(crate) fn before(&mut self, now: u64, cmd: &Command, result: &Result<Reply, Error>) {
        self.given_back.clear();
        self.now = now;
        match cmd {
            Command::Ack {
                message_id,
                lease,
                result: carried,
                ..
            } => {
                self.check_lease_use(*message_id, *lease, now, result);
                if result.is_ok() {
                    self.ledger.entry(*message_id).result =
                        carried.as_ref().map(synap_core::Json::to_value);
                }
            }
            Command::Extend {
                message_id, lease, ..
            } => {
                self.check_lease_use(*message_id, *lease, now, result);
            }
            Command::Publish { message, .. } => {
                if let Ok(Reply::Published(p)) = result {
                    self.publish_body(message, p);
                }
            }
            Command::PublishBatch { messages: sent, .. } => {
                if let Ok(Reply::PublishedBatch { messages }) = result {
                    for (m, p) in sent.iter().zip(messages) {
                        self.publish_body(m, p);
                    }
                }
            }
            Command::PutSchedule { .. } | Command::Resume { .. } => {
                self.before_schedule_command(now, cmd, result);
            }
            Command::Progress {
                message_id, lease, ..
            } => {
                self.check_lease_use(*message_id, *lease, now, result);
                if let Ok(reply) = result {
                    let e = &self.ledger.map[message_id];
                    let Place::InFlight {
                        deadline: Some(d), ..
                    } = e.place
                    else {
                        unreachable!("checked above");
                    };
                    let want = Reply::Progressed {
                        cancelled: e.cancel_requested,
                        lease_deadline: synap_core::Millis(d),
                    };
                    // An extend moves the deadline: only `cancelled` is predicted then.
                    match reply {
                        Reply::Progressed { cancelled, .. } => {
                            assert_eq!(*cancelled, e.cancel_requested, "progress of {message_id}");
                        }
                        other => panic!("progress answered {other:?}, expected {want:?}"),
                    }
                }
            }
            Command::Cancel { message_id, .. } => {
                if !self.flow_cancel(*message_id, result) {
                    self.cancel(*message_id, now, result);
                }
            }
            Command::AddFlow { flow } => self.flow_added(flow, result),
            Command::Nack {
                message_id,
                lease,
                requeue,
                delay_ms,
                snooze,
                ..
            } => self.nack(
                now,
                *message_id,
                lease.expect("lease named"),
                (*requeue, *snooze),
                *delay_ms,
                result,
            ),
            // A pause or a rate limit holds back what follows it, not the deliveries of the
            // timers the engine caught up on first (applied once those are drained).
            Command::ResumeQueue { .. } => self.flow_command(now, cmd, result),
            Command::PauseQueue { .. } | Command::RateLimit { .. } => {}
            Command::GiveBack { leases, .. } => {
                let valid: Vec<MessageId> = leases
                    .iter()
                    .filter(|l| self.ledger.lease_valid(l.message_id, l.lease, now))
                    .map(|l| l.message_id)
                    .collect();
                let returned = valid.len() as u64;
                assert_eq!(result, &Ok(Reply::GivenBack { returned }), "give-back");
                self.ledger.failing = Some(Failing::GiveBack(valid));
            }
            Command::Consume {
                queue,
                lease_ms,
                max_messages,
                consumer_id,
                ..
            } => {
                if let Ok(Reply::Waiting { waiter_id }) = result {
                    let w = WaiterModel {
                        queue: self.cfg.queue_index(queue),
                        lease_ms: self.lease_of(queue, *lease_ms),
                        max_messages: *max_messages,
                        consumer: consumer_id.as_deref().map(Arc::from),
                    };
                    assert!(
                        self.takers.waiters.insert(*waiter_id, w).is_none(),
                        "waiter id reused"
                    );
                }
            }
            Command::Attach {
                queue,
                credit,
                lease_ms,
                ..
            } => {
                let Ok(Reply::Attached {
                    session_id,
                    consumer_id,
                }) = result
                else {
                    panic!("attach answered {result:?}");
                };
                let m = SessionModel {
                    queue: self.cfg.queue_index(queue),
                    lease_ms: self.lease_of(queue, *lease_ms),
                    consumer: Arc::from(consumer_id.as_str()),
                    credit: *credit,
                    window: u64::from(*credit),
                    held: Default::default(),
                };
                assert!(
                    self.takers.sessions.insert(*session_id, m).is_none(),
                    "session id reused"
                );
            }
            Command::SessionCredit { session_id, credit } => {
                let Some(m) = self.takers.sessions.get_mut(session_id) else {
                    assert_eq!(
                        code(result),
                        Some("session_not_found"),
                        "credit to a gone session"
                    );
                    return;
                };
                if m.window + u64::from(*credit) > u64::from(self.max_window) {
                    assert_eq!(
                        code(result),
                        Some("limit_exceeded"),
                        "credit past the window cap"
                    );
                    return;
                }
                assert!(result.is_ok(), "credit answered {result:?}");
                m.credit += credit;
                m.window += u64::from(*credit);
            }
            Command::Detach {
                session_id,
                give_back,
            } => self.detach(*session_id, *give_back, result),
            Command::DropConsumers => {
                let waiters = (self.takers.waiters.len() + self.job_waits.len()) as u64;
                let sessions = self.takers.sessions.len() as u64;
                assert_eq!(result, &Ok(Reply::ConsumersDropped { waiters, sessions }));
                self.takers.waiters.clear();
                self.job_waits.clear();
                for (s, _) in std::mem::take(&mut self.takers.sessions) {
                    self.ledger.orphan(s);
                    self.takers.ending.insert(s);
                }
            }
            Command::DeleteQueue { queue } => self.delete(queue, result),
            _ => self.pubsub.command(cmd, result),
        }
    }

    /// One drained event.
    pub(crate) fn event(&mut self, event: &Event) {
        match event {
            Event::Observed(o) => {
                let q = self.cfg.queue_index(&o.queue);
                self.flow_before_observed(o);
                match (o.kind, o.message_id) {
                    (ObservedKind::Published, _) => self.unclaimed.extend(o.message_id),
                    (ObservedKind::Acked, Some(id)) => {
                        self.retention.finished(q, Finish::Completed, o.at.0, id);
                    }
                    (ObservedKind::Cancelled, Some(id)) => {
                        self.retention.finished(q, Finish::Cancelled, o.at.0, id);
                    }
                    _ => {}
                }
                let ended = self.ledger.observe(o, q, self.cfg.queue(q));
                self.flow_after_observed(o);
                if let (ObservedKind::Delivered, Some(id)) = (o.kind, o.message_id) {
                    self.flow_delivered(q, id, o.at.0);
                }
                if let (Ended::Delivery(Some(s)), Some(id)) = (ended, o.message_id) {
                    self.takers.returned(s, id);
                }
            }
            Event::Delivered {
                waiter_id,
                messages,
            } => {
                let w = self
                    .takers
                    .waiters
                    .remove(waiter_id)
                    .unwrap_or_else(|| panic!("delivery to unknown waiter {waiter_id:?}"));
                assert!(!messages.is_empty(), "a waiter is answered with messages");
                assert!(
                    messages.len() <= w.max_messages as usize,
                    "waiter over-served"
                );
                for d in messages {
                    self.ledger
                        .delivered(d, w.lease_ms, w.consumer.clone(), None);
                    self.flow_delivery(d);
                    self.check_prefetch(w.queue, w.consumer.as_deref());
                }
            }
            Event::WaitTimedOut { waiter_id } => {
                if self.takers.waiters.remove(waiter_id).is_none() {
                    self.job_wait_timed_out(*waiter_id);
                }
            }
            Event::Pushed {
                session_id,
                messages,
            } => {
                assert!(!messages.is_empty(), "an empty push");
                for d in messages {
                    let m = self.takers.pushed(*session_id, d.message_id);
                    let (lease_ms, consumer, queue) = (m.lease_ms, m.consumer.clone(), m.queue);
                    assert_eq!(
                        &*d.queue, self.cfg.queues[queue].name,
                        "push from another queue"
                    );
                    self.ledger.delivered(
                        d,
                        lease_ms,
                        Some(Arc::clone(&consumer)),
                        Some(*session_id),
                    );
                    self.flow_delivery(d);
                    self.check_prefetch(queue, Some(&consumer));
                }
            }
            Event::SessionEnded { session_id } => {
                assert!(
                    self.takers.ending.remove(session_id),
                    "unexpected end of {session_id:?}"
                );
            }
            Event::PubSub {
                subscriber_id,
                message,
            } => self.pubsub.pushed(subscriber_id, message),
            Event::KeyExpired { key, at } => self.kv.expired(key, at.0),
            Event::Progress { message_id, .. } => {
                assert!(
                    matches!(self.ledger.map[message_id].place, Place::InFlight { .. }),
                    "progress of {message_id} not in flight"
                );
            }
            Event::JobWaited { waiter_id, job } => self.job_waited(*waiter_id, job),
        }
    }

    fn check_prefetch(&self, queue: usize, consumer: Option<&str>) {
        let prefetch = self.cfg.queue(queue).prefetch;
        if let (Some(c), true) = (consumer, prefetch > 0) {
            assert!(
                self.ledger.held_by(queue, c) <= prefetch,
                "{c} holds more than prefetch {prefetch}"
            );
        }
    }

    /// The command's events are drained: record what its reply handed out and check what it
    /// must have done.
    pub(crate) fn after(&mut self, cmd: &Command, result: &Result<Reply, Error>) {
        match (cmd, result) {
            (
                Command::Consume {
                    queue,
                    lease_ms,
                    consumer_id,
                    ..
                },
                Ok(Reply::Messages { messages }),
            ) => {
                let lease_ms = self.lease_of(queue, *lease_ms);
                let consumer: Option<Arc<str>> = consumer_id.as_deref().map(Arc::from);
                for d in messages {
                    self.ledger.delivered(d, lease_ms, consumer.clone(), None);
                    self.flow_delivery(d);
                }
                self.check_prefetch(self.cfg.queue_index(queue), consumer_id.as_deref());
            }
            (Command::Publish { .. } | Command::PublishBatch { .. }, Ok(_)) => {
                self.after_publish(cmd, result);
            }
            (
                Command::Extend { message_id, .. },
                Ok(Reply::Extended {
                    lease_deadline,
                    cancelled,
                }),
            ) => {
                let e = &self.ledger.map[message_id];
                assert_eq!(*cancelled, e.cancel_requested, "extend of {message_id}");
                self.ledger.extended(*message_id, lease_deadline.0);
            }
            (
                Command::Progress {
                    message_id,
                    extend_ms: Some(_),
                    ..
                },
                Ok(Reply::Progressed { lease_deadline, .. }),
            ) => self.ledger.extended(*message_id, lease_deadline.0),
            (Command::GetJob { .. } | Command::WaitJob { .. } | Command::CancelWait { .. }, _) => {
                self.after_job_command(cmd, result);
            }
            (Command::DeleteQueue { queue }, _) => self.deleted(queue),
            (Command::GetFlow { flow_id }, _) => self.check_flow_info(*flow_id, result),
            (Command::PauseQueue { .. } | Command::RateLimit { .. }, _) => {
                self.flow_command(self.now, cmd, result);
            }
            (Command::SessionCredit { session_id, .. }, Ok(Reply::SessionCredited { credit })) => {
                assert_eq!(
                    *credit, self.takers.sessions[session_id].credit,
                    "credit left"
                );
            }
            _ => {}
        }
        self.end_of_call();
    }

    /// The end of one engine call (command or timeout): every give-back left its messages
    /// ready again or dead-lettered, every expected session end and pub/sub push happened.
    pub(crate) fn end_of_call(&mut self) {
        self.flows_end_of_call();
        // What no publish command claimed was published by a schedule's run, at its slot: a
        // slot never yields two jobs.
        for id in std::mem::take(&mut self.unclaimed) {
            let Some(e) = self.ledger.map.get_mut(&id) else {
                continue;
            };
            e.scheduled = true;
            self.schedules.ran(e.queue, e.published_at);
        }
        assert!(
            self.ledger.pending_bodies.is_empty(),
            "publishes answered without their Published event: {:?}",
            self.ledger.pending_bodies
        );
        self.ledger.replaced.clear();
        self.ledger.pending_flow.clear();
        self.ledger.snoozing = None;
        self.check_job_waits();
        for (id, before) in std::mem::take(&mut self.given_back) {
            let e = &self.ledger.map[&id];
            match &e.place {
                Place::Dead(_) => {}
                Place::Waiting | Place::InFlight { .. } => {
                    assert!(
                        before <= e.max_retries,
                        "{id} given back after its last attempt yet not dead-lettered"
                    );
                }
                Place::Acked => panic!("given-back {id} acked"),
                Place::Cancelled => assert!(e.cancel_requested),
            }
        }
        self.ledger.failing = None;
        assert!(
            self.takers.ending.is_empty(),
            "sessions not ended: {:?}",
            self.takers.ending
        );
        self.pubsub.all_pushed();
    }
}
