//! The engine task: the one owner of the sans-IO `Engine`.
//!
//! Handlers hand it `Request`s through an inbox (see `shared`): whichever handler finds the
//! engine's lock free runs what the inbox holds as a turn, in its own task, and the task's loop
//! runs what is left. Each turn calls the engine with the clock's `now`, replies, and routes the
//! events the engine produced; the loop re-arms one `Sleep` from `poll_timeout()`. No tokio
//! timer exists per message or per waiter: the engine keeps all deadlines.
//!
//! With persistence on, each turn runs at one `now`; its accepted mutating commands are logged
//! as one record, and its replies and pushes are held until that record is durable (see
//! `durable`). While the disk is full or after storage failed, a client's mutations are
//! refused before they run.

mod durable;
mod shared;

pub(crate) use durable::digest_at;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use synap_core::{
    Command, Delivery, Engine, Error, Event, LeaseRef, Millis, PubMessage, QueueStats, Reply,
    SessionId, WaiterId,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::handle::{EngineHandle, Failure};
use crate::storage::outbox::{Outgoing, TaskStorage};
pub(crate) use shared::Shared;

/// Requests handlers may queue before `send` waits: back-pressure instead of unbounded memory.
pub(crate) const REQUEST_QUEUE: usize = 4096;
/// Requests taken per turn: they share its `now` and, with persistence, its log record.
const BATCH: usize = 256;
/// Engine events buffered for `/events` listeners; a slow listener skips (it is told so).
pub(crate) const EVENT_BUFFER: usize = 4096;

/// A consume's outcome: the leased messages, empty when a long-poll ended with nothing.
pub(crate) type ConsumeResult = Result<Vec<Delivery>, Failure>;

/// What the engine pushes to an attached session's connection.
#[derive(Debug)]
pub(crate) enum SessionPush {
    /// Deliveries leased to the session, one credit each.
    Messages(Vec<Delivery>),
    /// The engine ended the session (its queue was deleted).
    Ended,
}

/// Most pushes one session's sink holds. Each push carries at least one delivery and a
/// session holds at most `max_session_credit` of them, so a sink never fills unless that
/// limit is raised past it; a full sink detaches the session rather than block the engine.
pub(crate) const SESSION_SINK: usize = 16_384;

/// What a handler asks of the engine task.
pub(crate) enum Request {
    /// Any command with a direct reply.
    Call {
        cmd: Command,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    },
    /// Commands with direct replies, run in order in one turn (a streaming connection's
    /// frames read together): one reply each, in the same order.
    CallMany {
        cmds: Vec<Command>,
        reply: oneshot::Sender<Vec<Result<Reply, Failure>>>,
    },
    /// A `Command::Consume` that may park; `token` names it for `Abandon`.
    Consume {
        cmd: Command,
        token: u64,
        reply: oneshot::Sender<ConsumeResult>,
    },
    /// A `Command::WaitJob` that may park until the job finishes; `token` names it for
    /// `Abandon`. Answered with `Reply::Job`, or `message_not_found` if the job is gone.
    WaitJob {
        cmd: Command,
        token: u64,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    },
    /// The client behind consume `token` hung up: withdraw its waiter if still parked, and give
    /// back the messages its reply carried if they were never read.
    Abandon { token: u64, returned: Vec<Delivery> },
    /// Attach a streaming consumer (`cmd` is a `Command::Attach`): its pushes go to `sink`.
    Attach {
        cmd: Command,
        sink: mpsc::Sender<SessionPush>,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    },
    /// Subscribe a connection: pushed messages go to `sink`, whose free room is the credit.
    Subscribe {
        patterns: Vec<String>,
        sink: mpsc::Sender<PubMessage>,
        reply: oneshot::Sender<Result<String, Failure>>,
    },
    /// Stats of every queue, for `/metrics`.
    Snapshot {
        reply: oneshot::Sender<Vec<QueueStats>>,
    },
    /// The engine's `state_digest` once time reaches `at` (running the timers due by then
    /// on a copy), with the time it was taken at: two servers that ran the same commands give
    /// the same digest at the same `at`.
    Digest {
        at: Option<Millis>,
        reply: oneshot::Sender<(u64, Millis, Option<u64>)>,
    },
    /// Stop: finish the turn, write what the log holds and the shutdown snapshot, then end.
    Stop { done: oneshot::Sender<()> },
    /// Shutting down: answer every parked consumer with an empty list and park no more.
    Drain,
}

/// A parked long-poll consumer.
struct Parked {
    token: u64,
    reply: oneshot::Sender<ConsumeResult>,
}

/// State of the engine task.
pub(crate) struct EngineTask {
    engine: Engine,
    clock: Clock,
    parked: HashMap<WaiterId, Parked>,
    /// Parked waits for a job to finish, with their tokens.
    parked_jobs: HashMap<WaiterId, (u64, oneshot::Sender<Result<Reply, Failure>>)>,
    by_token: HashMap<u64, WaiterId>,
    sinks: HashMap<String, mpsc::Sender<PubMessage>>,
    sessions: HashMap<SessionId, mpsc::Sender<SessionPush>>,
    events: broadcast::Sender<Arc<Event>>,
    draining: bool,
    /// The current turn's time.
    now: Millis,
    /// The command log, when persistence is on.
    storage: Option<TaskStorage>,
    /// Set by `Stop`: answered once the task has finished.
    stopped: Option<oneshot::Sender<()>>,
}

impl EngineTask {
    /// A task owning `engine` on `clock`; engine events are also broadcast on `events`.
    pub(crate) fn new(engine: Engine, events: broadcast::Sender<Arc<Event>>, clock: Clock) -> Self {
        Self {
            engine,
            clock,
            parked: HashMap::new(),
            parked_jobs: HashMap::new(),
            by_token: HashMap::new(),
            sinks: HashMap::new(),
            sessions: HashMap::new(),
            events,
            draining: false,
            now: clock.now(),
            storage: None,
            stopped: None,
        }
    }

    /// Starts the task's loop; returns the handle handlers call it through, and the loop's
    /// join handle (it ends after a `Stop`).
    pub(crate) fn start(self) -> (EngineHandle, tokio::task::JoinHandle<()>) {
        let status = self.storage.as_ref().map(TaskStorage::watch);
        let shared = Arc::new(Shared::new(self));
        let task = tokio::spawn(Arc::clone(&shared).run(status));
        (EngineHandle::new(shared), task)
    }

    /// True when so many turns wait for the log writer that requests must queue.
    fn backlogged(&self) -> bool {
        self.storage.as_ref().is_some_and(TaskStorage::backlogged)
    }

    /// A turn that only runs the timers due now.
    fn timeout_turn(&mut self) {
        self.begin_turn();
        if self.storage.is_some() && self.engine.run_due(self.now) {
            // A schedule's run publishes a job: logged as a tick, so a restart replays it.
            let _ = self.apply(Command::Tick);
        } else {
            self.engine.handle_timeout(self.now);
        }
        self.route_events();
        self.end_turn();
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Call { cmd, reply } => {
                let result = self.call(cmd);
                self.answer(Outgoing::Call(reply, result));
            }
            Request::CallMany { cmds, reply } => {
                let results = cmds.into_iter().map(|cmd| self.call(cmd)).collect();
                self.answer(Outgoing::Many(reply, results));
            }
            Request::Consume { cmd, token, reply } => self.consume(cmd, token, reply),
            Request::WaitJob { cmd, token, reply } => self.wait_job(cmd, token, reply),
            Request::Abandon { token, returned } => {
                self.abandon(token);
                self.give_back(returned);
            }
            Request::Attach { cmd, sink, reply } => self.attach(cmd, sink, reply),
            Request::Subscribe {
                patterns,
                sink,
                reply,
            } => self.subscribe(patterns, sink, reply),
            Request::Snapshot { reply } => {
                let stats = self.snapshot();
                self.answer(Outgoing::Stats(reply, stats));
            }
            Request::Digest { at, reply } => {
                let (digest, at) = self.digest(at);
                let _ = reply.send((digest, at, None));
            }
            Request::Stop { done } => {
                self.draining = true;
                self.stopped = Some(done);
            }
            Request::Drain => {
                self.draining = true;
                self.drain_parked();
            }
        }
        self.route_events();
    }

    /// Runs one command with a direct reply. A command that ends a subscriber or a session
    /// also drops the sink its pushes went to.
    fn call(&mut self, cmd: Command) -> Result<Reply, Failure> {
        if let Some(refused) = self.refusal(&cmd) {
            return Err(refused);
        }
        match &cmd {
            Command::Unsubscribe {
                subscriber_id,
                patterns: None,
            } => {
                self.sinks.remove(subscriber_id);
            }
            Command::Detach { session_id, .. } => {
                self.sessions.remove(session_id);
            }
            _ => {}
        }
        Ok(self.apply(cmd)?)
    }

    fn attach(
        &mut self,
        cmd: Command,
        sink: mpsc::Sender<SessionPush>,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    ) {
        debug_assert!(matches!(cmd, Command::Attach { .. }));
        if let Some(refused) = self.refusal(&cmd) {
            self.answer(Outgoing::Attached(reply, Err(refused)));
            return;
        }
        let result = self.apply(cmd);
        if let Ok(Reply::Attached { session_id, .. }) = &result {
            // Registered before the events of the attach (its first pushes) are routed.
            self.sessions.insert(*session_id, sink);
        }
        // If the connection is gone already, what was pushed goes back (`Outgoing::send`).
        self.answer(Outgoing::Attached(reply, result.map_err(Failure::from)));
    }

    /// Detaches a session whose connection is gone, giving back what it held.
    fn detach(&mut self, session_id: SessionId) {
        self.sessions.remove(&session_id);
        let cmd = Command::Detach {
            session_id,
            give_back: true,
        };
        if let Err(e) = self.apply(cmd) {
            debug!(error = %e, "session already ended");
        }
    }

    fn consume(&mut self, mut cmd: Command, token: u64, reply: oneshot::Sender<ConsumeResult>) {
        if self.draining {
            // No new waiters while shutting down: answer with what is ready now.
            if let Command::Consume { wait_ms, .. } = &mut cmd {
                *wait_ms = 0;
            }
        }
        if let Some(refused) = self.refusal(&cmd) {
            self.answer(Outgoing::Consume(reply, Err(refused)));
            return;
        }
        match self.apply(cmd) {
            Ok(Reply::Messages { messages }) => {
                // If the client left before the answer, the messages go back at once (see
                // `Outgoing::send`), as for a parked consumer.
                self.answer(Outgoing::Consume(reply, Ok(messages)));
            }
            Ok(Reply::Waiting { waiter_id }) => {
                self.by_token.insert(token, waiter_id);
                self.parked.insert(waiter_id, Parked { token, reply });
            }
            Ok(other) => unreachable!("consume replied {other:?}"),
            Err(e) => self.answer(Outgoing::Consume(reply, Err(e.into()))),
        }
    }

    fn wait_job(
        &mut self,
        mut cmd: Command,
        token: u64,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    ) {
        if self.draining
            && let Command::WaitJob { wait_ms, .. } = &mut cmd
        {
            // No new waiters while shutting down: answer with the job as it is.
            *wait_ms = 0;
        }
        if let Some(refused) = self.refusal(&cmd) {
            self.answer(Outgoing::Call(reply, Err(refused)));
            return;
        }
        match self.apply(cmd) {
            Ok(Reply::Waiting { waiter_id }) => {
                self.by_token.insert(token, waiter_id);
                self.parked_jobs.insert(waiter_id, (token, reply));
            }
            other => self.answer(Outgoing::Call(reply, other.map_err(Into::into))),
        }
    }

    /// Answers a parked job wait: the job, or (`None`) it is gone.
    fn job_waited(&mut self, waiter_id: WaiterId, job: Option<Box<synap_core::Job>>) -> bool {
        let Some((token, reply)) = self.parked_jobs.remove(&waiter_id) else {
            return false;
        };
        self.by_token.remove(&token);
        let answer = match job {
            Some(job) => Ok(Reply::Job(job)),
            None => Err(Error::MessageNotFound {
                message_id: "the job is gone (purged, or its queue deleted)".into(),
            }
            .into()),
        };
        self.answer(Outgoing::Call(reply, answer));
        true
    }

    fn abandon(&mut self, token: u64) {
        let Some(waiter_id) = self.by_token.remove(&token) else {
            return;
        };
        self.parked.remove(&waiter_id);
        self.parked_jobs.remove(&waiter_id);
        let _ = self.apply(Command::CancelWait { waiter_id });
        debug!(?waiter_id, "parked consumer hung up; wait cancelled");
    }

    fn subscribe(
        &mut self,
        patterns: Vec<String>,
        sink: mpsc::Sender<PubMessage>,
        reply: oneshot::Sender<Result<String, Failure>>,
    ) {
        let credit = u32::try_from(sink.capacity()).unwrap_or(u32::MAX);
        // A connected subscriber is removed when its connection ends, so it needs no idle timer.
        let cmd = Command::Subscribe {
            subscriber_id: None,
            patterns,
            credit,
            idle_ms: None,
        };
        if let Some(refused) = self.refusal(&cmd) {
            self.answer(Outgoing::Subscribed(reply, Err(refused)));
            return;
        }
        let result = match self.apply(cmd) {
            Ok(Reply::Subscribed { subscriber_id, .. }) => {
                self.sinks.insert(subscriber_id.clone(), sink);
                Ok(subscriber_id)
            }
            Ok(other) => unreachable!("subscribe replied {other:?}"),
            Err(e) => Err(e.into()),
        };
        self.answer(Outgoing::Subscribed(reply, result));
    }

    fn snapshot(&mut self) -> Vec<QueueStats> {
        let now = self.now;
        let Ok(Reply::Queues { queues }) = self.engine.handle(now, Command::ListQueues) else {
            return Vec::new();
        };
        queues
            .into_iter()
            .filter_map(
                |queue| match self.engine.handle(now, Command::Stats { queue }) {
                    Ok(Reply::Stats(s)) => Some(*s),
                    _ => None,
                },
            )
            .collect()
    }

    /// Answers every parked consumer with an empty list and withdraws its waiter.
    fn drain_parked(&mut self) {
        for (waiter_id, p) in std::mem::take(&mut self.parked) {
            let _ = self.apply(Command::CancelWait { waiter_id });
            self.answer(Outgoing::Consume(p.reply, Ok(Vec::new())));
        }
        for (waiter_id, (_, reply)) in std::mem::take(&mut self.parked_jobs) {
            let _ = self.apply(Command::CancelWait { waiter_id });
            let err = Error::LimitExceeded {
                what: "waits (the server is shutting down)".into(),
                limit: 0,
            };
            self.answer(Outgoing::Call(reply, Err(err.into())));
        }
        self.by_token.clear();
        self.route_events();
    }

    /// Routes everything the engine produced since the last call.
    fn route_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
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
                    if let Some(p) = self.parked.remove(&waiter_id) {
                        self.by_token.remove(&p.token);
                        self.answer(Outgoing::Consume(p.reply, Ok(Vec::new())));
                    }
                }
                Event::PubSub {
                    subscriber_id,
                    message,
                } => self.push(subscriber_id, message),
                Event::Pushed {
                    session_id,
                    messages,
                } => self.push_session(session_id, messages),
                Event::SessionEnded { session_id } => {
                    if let Some(sink) = self.sessions.remove(&session_id) {
                        // Behind the pushes it may still have waiting for the log.
                        self.answer(Outgoing::Push(session_id, sink, SessionPush::Ended));
                    }
                }
                Event::Observed(_) | Event::KeyExpired { .. } | Event::Progress { .. } => {}
            }
        }
    }

    fn deliver(&mut self, waiter_id: WaiterId, messages: Vec<Delivery>) {
        match self.parked.remove(&waiter_id) {
            Some(p) => {
                self.by_token.remove(&p.token);
                // A client that left meanwhile gets its messages given back on send.
                self.answer(Outgoing::Consume(p.reply, Ok(messages)));
            }
            None => self.give_back(messages),
        }
    }

    /// Hands leased messages whose consumer is gone back to the engine, which makes them ready
    /// again (counted as a failed attempt) rather than let them sit until their leases end.
    fn give_back(&mut self, messages: Vec<Delivery>) {
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
            let cmd = Command::GiveBack {
                queue: queue.to_string(),
                leases,
            };
            match self.apply(cmd) {
                Ok(_) => debug!(%queue, "unread messages given back"),
                // Deleted meanwhile: nothing left to give back.
                Err(Error::QueueNotFound { .. }) => {}
                Err(e) => warn!(error = %e, "could not give back leased messages"),
            }
        }
    }

    /// Forwards a session's deliveries to its connection; a connection that is gone (or
    /// cannot keep up) detaches the session, which gives the messages back.
    fn push_session(&mut self, session_id: SessionId, messages: Vec<Delivery>) {
        let Some(sink) = self.sessions.get(&session_id) else {
            // Pushed while its detach was on the way: the detach gives them back.
            return;
        };
        // A sink that is gone or full detaches the session on send (`Outgoing::send`).
        let sink = sink.clone();
        self.answer(Outgoing::Push(
            session_id,
            sink,
            SessionPush::Messages(messages),
        ));
    }

    fn push(&mut self, subscriber_id: String, message: PubMessage) {
        let Some(sink) = self.sinks.get(&subscriber_id) else {
            return;
        };
        match sink.try_send(message) {
            Ok(()) => {}
            // Credit never exceeds the sink's free room, so Full means a bug elsewhere; the
            // message is dropped (pub/sub is at-most-once) rather than blocking the engine.
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(%subscriber_id, "subscriber sink full; message dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.sinks.remove(&subscriber_id);
                let cmd = Command::Unsubscribe {
                    subscriber_id,
                    patterns: None,
                };
                let _ = self.apply(cmd);
            }
        }
    }
}

#[cfg(test)]
mod tests;
