//! The engine task: the one owner of the sans-IO `Engine`.
//!
//! Handlers send `Request`s over a bounded channel. Each turn the task takes a batch of
//! requests (or fires the single timer), calls the engine with the clock's `now`, replies, routes
//! the events the engine produced, and re-arms one `Sleep` from `poll_timeout()`. No tokio timer
//! exists per message or per waiter: the engine keeps all deadlines.

use std::collections::HashMap;
use std::sync::Arc;

use synap_core::{
    Command, Delivery, Engine, Error, Event, PubMessage, QueueStats, Reply, WaiterId,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, warn};

use crate::clock::Clock;

/// Requests handlers may queue before `send` waits: back-pressure instead of unbounded memory.
pub(crate) const REQUEST_QUEUE: usize = 4096;
/// Requests taken per turn; replies go out after each one, so a batch only saves wake-ups.
const BATCH: usize = 256;
/// Engine events buffered for `/events` listeners; a slow listener skips (it is told so).
pub(crate) const EVENT_BUFFER: usize = 4096;

/// A consume's outcome: the leased messages, empty when a long-poll ended with nothing.
pub(crate) type ConsumeResult = Result<Vec<Delivery>, Error>;

/// What a handler asks of the engine task.
pub(crate) enum Request {
    /// Any command with a direct reply.
    Call {
        cmd: Command,
        reply: oneshot::Sender<Result<Reply, Error>>,
    },
    /// A `Command::Consume` that may park; `token` names it for `Abandon`.
    Consume {
        cmd: Command,
        token: u64,
        reply: oneshot::Sender<ConsumeResult>,
    },
    /// The client behind consume `token` hung up: withdraw its waiter if still parked.
    Abandon { token: u64 },
    /// Subscribe a connection: pushed messages go to `sink`, whose free room is the credit.
    Subscribe {
        patterns: Vec<String>,
        sink: mpsc::Sender<PubMessage>,
        reply: oneshot::Sender<Result<String, Error>>,
    },
    /// Stats of every queue, for `/metrics`.
    Snapshot {
        reply: oneshot::Sender<Vec<QueueStats>>,
    },
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
    by_token: HashMap<u64, WaiterId>,
    sinks: HashMap<String, mpsc::Sender<PubMessage>>,
    events: broadcast::Sender<Arc<Event>>,
    draining: bool,
}

impl EngineTask {
    /// A task owning `engine` on `clock`; engine events are also broadcast on `events`.
    pub(crate) fn new(engine: Engine, events: broadcast::Sender<Arc<Event>>, clock: Clock) -> Self {
        Self {
            engine,
            clock,
            parked: HashMap::new(),
            by_token: HashMap::new(),
            sinks: HashMap::new(),
            events,
            draining: false,
        }
    }

    /// Runs until every request sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let sleep = tokio::time::sleep_until(self.clock.instant_at(self.clock.now()));
        tokio::pin!(sleep);
        let mut armed_for = None;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Check the clock before polling the sleep: an elapsed sleep may stay pending
            // under tokio's cooperative budget, and the engine is the source of truth anyway.
            let deadline = self.engine.poll_timeout();
            if deadline.is_some_and(|d| d <= self.clock.now()) {
                self.engine.handle_timeout(self.clock.now());
                self.route_events();
                continue;
            }
            if deadline != armed_for {
                if let Some(at) = deadline {
                    sleep.as_mut().reset(self.clock.instant_at(at));
                }
                armed_for = deadline;
            }
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for req in batch.drain(..) {
                        self.on_request(req);
                    }
                }
                () = &mut sleep, if armed_for.is_some() => {
                    self.engine.handle_timeout(self.clock.now());
                    self.route_events();
                    // Force a reset next turn even if the deadline value did not change.
                    armed_for = None;
                }
            }
        }
        self.drain_parked();
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Call { cmd, reply } => {
                let forget = match &cmd {
                    Command::Unsubscribe {
                        subscriber_id,
                        patterns: None,
                    } => Some(subscriber_id.clone()),
                    _ => None,
                };
                let result = self.engine.handle(self.clock.now(), cmd);
                if let Some(id) = forget {
                    self.sinks.remove(&id);
                }
                let _ = reply.send(result);
            }
            Request::Consume { cmd, token, reply } => self.consume(cmd, token, reply),
            Request::Abandon { token } => self.abandon(token),
            Request::Subscribe {
                patterns,
                sink,
                reply,
            } => self.subscribe(patterns, sink, reply),
            Request::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Request::Drain => {
                self.draining = true;
                self.drain_parked();
            }
        }
        self.route_events();
    }

    fn consume(&mut self, mut cmd: Command, token: u64, reply: oneshot::Sender<ConsumeResult>) {
        if self.draining {
            // No new waiters while shutting down: answer with what is ready now.
            if let Command::Consume { wait_ms, .. } = &mut cmd {
                *wait_ms = 0;
            }
        }
        match self.engine.handle(self.clock.now(), cmd) {
            Ok(Reply::Messages { messages }) => {
                let _ = reply.send(Ok(messages));
            }
            Ok(Reply::Waiting { waiter_id }) => {
                self.by_token.insert(token, waiter_id);
                self.parked.insert(waiter_id, Parked { token, reply });
            }
            Ok(other) => unreachable!("consume replied {other:?}"),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn abandon(&mut self, token: u64) {
        let Some(waiter_id) = self.by_token.remove(&token) else {
            return;
        };
        self.parked.remove(&waiter_id);
        let _ = self
            .engine
            .handle(self.clock.now(), Command::CancelWait { waiter_id });
        debug!(?waiter_id, "parked consumer hung up; wait cancelled");
    }

    fn subscribe(
        &mut self,
        patterns: Vec<String>,
        sink: mpsc::Sender<PubMessage>,
        reply: oneshot::Sender<Result<String, Error>>,
    ) {
        let credit = u32::try_from(sink.capacity()).unwrap_or(u32::MAX);
        // A connected subscriber is removed when its connection ends, so it needs no idle timer.
        let cmd = Command::Subscribe {
            subscriber_id: None,
            patterns,
            credit,
            idle_ms: None,
        };
        let result = match self.engine.handle(self.clock.now(), cmd) {
            Ok(Reply::Subscribed { subscriber_id, .. }) => {
                self.sinks.insert(subscriber_id.clone(), sink);
                Ok(subscriber_id)
            }
            Ok(other) => unreachable!("subscribe replied {other:?}"),
            Err(e) => Err(e),
        };
        let _ = reply.send(result);
    }

    fn snapshot(&mut self) -> Vec<QueueStats> {
        let now = self.clock.now();
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
        let now = self.clock.now();
        for (waiter_id, p) in std::mem::take(&mut self.parked) {
            let _ = self.engine.handle(now, Command::CancelWait { waiter_id });
            let _ = p.reply.send(Ok(Vec::new()));
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
                Event::WaitTimedOut { waiter_id } => {
                    if let Some(p) = self.parked.remove(&waiter_id) {
                        self.by_token.remove(&p.token);
                        let _ = p.reply.send(Ok(Vec::new()));
                    }
                }
                Event::PubSub {
                    subscriber_id,
                    message,
                } => self.push(subscriber_id, message),
                Event::Observed(_) | Event::KeyExpired { .. } => {}
            }
        }
    }

    fn deliver(&mut self, waiter_id: WaiterId, messages: Vec<Delivery>) {
        let returned = match self.parked.remove(&waiter_id) {
            Some(p) => {
                self.by_token.remove(&p.token);
                p.reply.send(Ok(messages)).err().and_then(Result::ok)
            }
            None => Some(messages),
        };
        // The client left between the lease and the reply: give the messages back now rather
        // than let them sit until their lease expires (it counts as a failed delivery either
        // way, so `max_retries` still bounds redeliveries).
        for m in returned.unwrap_or_default() {
            let cmd = Command::Nack {
                queue: m.queue.to_string(),
                message_id: m.message_id,
                requeue: true,
                delay_ms: Some(0),
                error: Some("consumer disconnected before delivery".into()),
                lease: Some(m.lease),
            };
            if let Err(e) = self.engine.handle(self.clock.now(), cmd) {
                warn!(error = %e, "could not return an undelivered message");
            }
        }
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
                let _ = self.engine.handle(self.clock.now(), cmd);
            }
        }
    }
}
