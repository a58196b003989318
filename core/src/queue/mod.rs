//! One queue: ready index, delayed and in-flight messages, waiters, DLQ and statistics.
//!
//! Publish and consume live here; leases (ack, nack, extend, expiry) in `lease.rs`; retry
//! delays in `retry.rs`; the dead-letter queue in `dead_letter.rs`; statistics in `stats.rs`.

mod dead_letter;
mod lease;
mod message;
mod ready;
mod retry;
mod stats;

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{
    Delivery, Event, MessageId, Observed, ObservedKind, PublishMessage, Published, WaiterId,
};
use crate::config::{Limits, MAX_LEASE_MS, QueueConfig, check_headers};
use crate::ctx::Ctx;
use crate::fxmap::SortedMap;
use crate::json::Json;
use crate::time::Millis;
use crate::timers::TimerKind;

pub(crate) use dead_letter::DeadLetters;
pub(crate) use message::{Body, Message, State};
use ready::Ready;
use stats::{Consumers, Counters, WaitWindow};

/// Internal handle of a queue; a re-created queue gets a new one, so timers of a deleted
/// queue never touch its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub u32);

/// A parked long-poll consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Waiter {
    pub(crate) id: WaiterId,
    pub(crate) max_messages: u32,
    pub(crate) lease_ms: u64,
    pub(crate) consumer: Option<Arc<str>>,
    pub(crate) deadline: Millis,
}

/// What a consume asks for, after validation.
pub(crate) struct ConsumeSpec {
    pub(crate) max_messages: u32,
    pub(crate) lease_ms: u64,
    pub(crate) consumer: Option<Arc<str>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Queue {
    pub(crate) id: QueueId,
    pub(crate) name: Arc<str>,
    pub(crate) config: QueueConfig,
    pub(crate) messages: SortedMap<MessageId, Message>,
    ready: Ready,
    delayed: u64,
    in_flight: u64,
    pub(crate) dlq: DeadLetters,
    pub(crate) waiters: VecDeque<Waiter>,
    consumers: Consumers,
    counters: Counters,
    waits: WaitWindow,
}

impl Queue {
    pub(crate) fn new(id: QueueId, name: &str, config: QueueConfig) -> Self {
        Self {
            id,
            name: name.into(),
            config,
            messages: SortedMap::<MessageId, Message>::default(),
            ready: Ready::default(),
            delayed: 0,
            in_flight: 0,
            dlq: DeadLetters::default(),
            waiters: VecDeque::new(),
            consumers: Consumers::default(),
            counters: Counters::default(),
            waits: WaitWindow::default(),
        }
    }

    /// Ready plus delayed: what counts against `max_depth`.
    pub(crate) fn depth(&self) -> u64 {
        self.ready.len() + self.delayed
    }

    pub(crate) fn check_room(&self, n: u64) -> Result<(), Error> {
        if self.depth() + n > self.config.max_depth {
            return Err(Error::QueueFull {
                queue: self.name.to_string(),
                max_depth: self.config.max_depth,
            });
        }
        Ok(())
    }

    /// Adds a validated message (see `check_publish` and `check_room`). With `serve`, parked
    /// waiters are served at once; a batch serves them once after its last message, so a
    /// waiter gets the batch's messages in priority order.
    pub(crate) fn publish(&mut self, ctx: &mut Ctx, m: PublishMessage, serve: bool) -> Published {
        let now = ctx.now;
        let id = ctx.new_id();
        let seq = ctx.seq();
        let body = match (m.message, m.payload) {
            (Some(j), _) => Body::Json(j),
            (None, Some(b)) => Body::Bytes(b),
            (None, None) => unreachable!("check_publish requires a body"),
        };
        let ttl_ms = m.ttl_ms.or(self.config.message_ttl_ms);
        let mut msg = Message {
            id,
            seq,
            body,
            priority: m.priority.unwrap_or(self.config.default_priority),
            headers: m.headers,
            published_at: now,
            enqueued_at: now,
            ready_since: now,
            attempts: 0,
            max_retries: m.max_retries.unwrap_or(self.config.max_retries),
            ttl_ms,
            expires_at: ttl_ms.map(|t| now.add_ms(t)),
            expired: false,
            last_error: None,
            state: State::Ready,
        };
        self.counters.published += 1;
        let priority = msg.priority;
        ctx.observe(|| self.observed(ObservedKind::Published, &msg, now));
        if let Some(at) = msg.expires_at {
            ctx.timers
                .add(at, TimerKind::MessageTtl { queue: self.id, id });
        }
        let position = match m.delay_ms.filter(|d| *d > 0) {
            Some(delay) => {
                let until = now.add_ms(delay);
                msg.state = State::Delayed { until };
                ctx.timers.add(until, TimerKind::Due { queue: self.id, id });
                self.delayed += 1;
                None
            }
            None => Some(self.ready.insert(priority, seq, id)),
        };
        self.messages.insert(id, msg);
        if serve && position.is_some() {
            self.serve_waiters(ctx);
        }
        Published {
            message_id: id,
            position,
        }
    }

    /// Checks a consume's options and fills in the queue's defaults.
    pub(crate) fn consume_spec(
        &self,
        max_messages: u32,
        lease_ms: Option<u64>,
        consumer: Option<String>,
    ) -> Result<ConsumeSpec, Error> {
        if !(1..=100).contains(&max_messages) {
            return Err(Error::invalid("max_messages", "must be 1..=100"));
        }
        let lease_ms = lease_ms.unwrap_or(self.config.ack_deadline_ms);
        if lease_ms == 0 {
            return Err(Error::invalid("ack_deadline", "must be positive"));
        }
        let lease_ms = lease_ms.min(MAX_LEASE_MS);
        if let Some(c) = &consumer {
            if c.is_empty() || c.len() > 255 {
                return Err(Error::invalid("consumer_id", "must be 1-255 bytes"));
            }
        }
        Ok(ConsumeSpec {
            max_messages,
            lease_ms,
            consumer: consumer.map(Arc::from),
        })
    }

    /// Registers a consumer id (for the limit and the `consumers` stat).
    pub(crate) fn touch_consumer(
        &mut self,
        ctx: &Ctx,
        consumer: &Option<Arc<str>>,
    ) -> Result<(), Error> {
        match consumer {
            Some(c) => self
                .consumers
                .touch(c, ctx.now, ctx.limits.max_consumers_per_queue),
            None => Ok(()),
        }
    }

    /// Leases up to `spec.max_messages` ready messages (fewer if the consumer's prefetch room is
    /// smaller).
    pub(crate) fn take(&mut self, ctx: &mut Ctx, spec: &ConsumeSpec) -> Vec<Delivery> {
        let room = self.prefetch_room(&spec.consumer);
        let n = spec.max_messages.min(room);
        let mut out = Vec::with_capacity(n.min(16) as usize);
        for _ in 0..n {
            let Some(id) = self.ready.pop() else { break };
            out.push(self.lease_out(ctx, id, spec.lease_ms, &spec.consumer));
        }
        out
    }

    fn prefetch_room(&self, consumer: &Option<Arc<str>>) -> u32 {
        match (self.config.prefetch, consumer) {
            (0, _) | (_, None) => u32::MAX,
            (limit, Some(c)) => limit.saturating_sub(self.consumers.held(c)),
        }
    }

    /// Moves one message from ready to in-flight and builds its delivery.
    fn lease_out(
        &mut self,
        ctx: &mut Ctx,
        id: MessageId,
        lease_ms: u64,
        consumer: &Option<Arc<str>>,
    ) -> Delivery {
        let now = ctx.now;
        let lease = ctx.lease_token();
        let deadline = now.add_ms(lease_ms);
        let msg = self.messages.get_mut(&id).expect("ready id has a message");
        debug_assert_eq!(msg.state, State::Ready);
        msg.attempts += 1;
        msg.state = State::InFlight {
            lease,
            deadline,
            consumer: consumer.clone(),
        };
        let wait = now.since(msg.ready_since);
        ctx.timers.add(deadline, self.lease_timer(id, lease));
        self.in_flight += 1;
        self.counters.consumed += 1;
        self.waits.record(wait);
        if let Some(c) = consumer {
            self.consumers.lease(c, now);
        }
        let msg = &self.messages[&id];
        let delivery = msg.delivery(&self.name);
        ctx.observe(|| Observed {
            ms: Some(wait),
            ..self.observed(ObservedKind::Delivered, msg, now)
        });
        delivery
    }

    /// Parks a waiter at the back of the line.
    pub(crate) fn park(&mut self, ctx: &mut Ctx, spec: ConsumeSpec, wait_ms: u64) -> WaiterId {
        let id = WaiterId(ctx.next_waiter);
        ctx.next_waiter += 1;
        let deadline = ctx.now.add_ms(wait_ms);
        ctx.timers.add(deadline, TimerKind::Wait { waiter: id });
        if let Some(c) = &spec.consumer {
            self.consumers.wait(c, 1);
        }
        self.waiters.push_back(Waiter {
            id,
            max_messages: spec.max_messages,
            lease_ms: spec.lease_ms,
            consumer: spec.consumer,
            deadline,
        });
        id
    }

    /// Removes a waiter (answered, timed out or cancelled); false if it is not here.
    pub(crate) fn unpark(&mut self, ctx: &mut Ctx, waiter: WaiterId) -> Option<Waiter> {
        let at = self.waiters.iter().position(|w| w.id == waiter)?;
        let w = self.waiters.remove(at)?;
        ctx.timers.remove(w.deadline, TimerKind::Wait { waiter });
        if let Some(c) = &w.consumer {
            self.consumers.wait(c, -1);
        }
        Some(w)
    }

    /// Hands ready messages to parked waiters, first come first served. A waiter whose consumer
    /// is at its prefetch limit is passed over (it keeps its place).
    pub(crate) fn serve_waiters(&mut self, ctx: &mut Ctx) {
        let mut i = 0;
        while i < self.waiters.len() && !self.ready.is_empty() {
            let room = self.prefetch_room(&self.waiters[i].consumer);
            if room == 0 {
                i += 1;
                continue;
            }
            let w = self.waiters[i].clone();
            self.unpark(ctx, w.id);
            ctx.answered.push(w.id);
            let spec = ConsumeSpec {
                max_messages: w.max_messages,
                lease_ms: w.lease_ms,
                consumer: w.consumer,
            };
            let messages = self.take(ctx, &spec);
            ctx.events.push_back(Event::Delivered {
                waiter_id: w.id,
                messages,
            });
        }
    }

    /// A delayed message's delay has ended.
    pub(crate) fn on_due(&mut self, ctx: &mut Ctx, id: MessageId) {
        let Some(msg) = self.messages.get_mut(&id) else {
            return;
        };
        if !matches!(msg.state, State::Delayed { .. }) {
            return;
        }
        msg.state = State::Ready;
        msg.ready_since = ctx.now;
        self.delayed -= 1;
        self.ready.insert(msg.priority, msg.seq, id);
        self.serve_waiters(ctx);
    }

    /// A message's TTL has passed: dead-letter it now, or when its lease ends.
    pub(crate) fn on_ttl(&mut self, ctx: &mut Ctx, id: MessageId) {
        let now = ctx.now;
        let Some(msg) = self.messages.get_mut(&id) else {
            return;
        };
        if msg.expired {
            return;
        }
        msg.expired = true;
        self.counters.expired += 1;
        let msg = &self.messages[&id];
        ctx.observe(|| self.observed(ObservedKind::Expired, msg, now));
        match msg.state {
            State::InFlight { .. } => {}
            State::Ready | State::Delayed { .. } => {
                let msg = self.remove_waiting(ctx, id);
                self.dead_letter(ctx, msg, crate::api::DeadLetterReason::Expired);
            }
        }
    }

    /// Takes a ready or delayed message out of the queue (its timers too).
    fn remove_waiting(&mut self, ctx: &mut Ctx, id: MessageId) -> Message {
        let msg = self.messages.remove(&id).expect("message exists");
        match msg.state {
            State::Ready => {
                let found = self.ready.remove(msg.priority, msg.seq);
                assert!(found, "ready message missing from the ready index");
            }
            State::Delayed { until } => {
                self.delayed -= 1;
                ctx.timers
                    .remove(until, TimerKind::Due { queue: self.id, id });
            }
            State::InFlight { .. } => panic!("remove_waiting of an in-flight message"),
        }
        self.cancel_ttl(ctx, &msg);
        msg
    }

    fn cancel_ttl(&self, ctx: &mut Ctx, msg: &Message) {
        if let (Some(at), false) = (msg.expires_at, msg.expired) {
            ctx.timers.remove(
                at,
                TimerKind::MessageTtl {
                    queue: self.id,
                    id: msg.id,
                },
            );
        }
    }

    /// Removes ready and delayed messages; in-flight ones stay.
    pub(crate) fn purge(&mut self, ctx: &mut Ctx) -> u64 {
        let mut ids = self.ready.drain();
        let mut delayed: Vec<MessageId> = self
            .messages
            .values()
            .filter(|m| matches!(m.state, State::Delayed { .. }))
            .map(|m| m.id)
            .collect();
        delayed.sort_unstable();
        for id in &ids {
            let msg = self.messages.remove(id).expect("ready id has a message");
            self.cancel_ttl(ctx, &msg);
        }
        for id in delayed {
            let msg = self.remove_waiting(ctx, id);
            ids.push(msg.id);
        }
        let n = ids.len() as u64;
        let (now, queue) = (ctx.now, self.name.clone());
        ctx.observe(|| Observed {
            kind: ObservedKind::Purged,
            queue,
            message_id: None,
            at: now,
            priority: 0,
            attempts: 0,
            ms: None,
            reason: None,
            count: Some(n),
        });
        n
    }

    /// Removes every timer and waiter of a queue that is being deleted.
    pub(crate) fn teardown(&mut self, ctx: &mut Ctx) -> Vec<WaiterId> {
        let mut ids: Vec<MessageId> = self.messages.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let msg = &self.messages[&id];
            if let Some((at, timer)) = self.state_timer(msg) {
                ctx.timers.remove(at, timer);
            }
            self.cancel_ttl(ctx, msg);
        }
        let waiters: Vec<WaiterId> = self.waiters.iter().map(|w| w.id).collect();
        for w in &waiters {
            self.unpark(ctx, *w);
        }
        waiters
    }

    /// The lease timer of delivery `lease` of message `id`.
    pub(crate) fn lease_timer(&self, id: MessageId, lease: u64) -> TimerKind {
        TimerKind::Lease {
            queue: self.id,
            id,
            lease,
        }
    }

    /// The timer a message's state holds: the end of its delay, or of its lease.
    pub(crate) fn state_timer(&self, msg: &Message) -> Option<(Millis, TimerKind)> {
        let id = msg.id;
        match msg.state {
            State::Ready => None,
            State::Delayed { until } => Some((until, TimerKind::Due { queue: self.id, id })),
            State::InFlight {
                lease, deadline, ..
            } => Some((deadline, self.lease_timer(id, lease))),
        }
    }

    fn observed(&self, kind: ObservedKind, msg: &Message, at: Millis) -> Observed {
        Observed {
            kind,
            queue: self.name.clone(),
            message_id: Some(msg.id),
            at,
            priority: msg.priority,
            attempts: msg.attempts,
            ms: None,
            reason: None,
            count: None,
        }
    }

    /// Bytes held by the queue's messages (for the memory benchmark).
    pub(crate) fn footprint(&self) -> usize {
        self.messages
            .values()
            .map(Message::footprint)
            .sum::<usize>()
            + self.messages.capacity() * (size_of::<(MessageId, Message)>() + 1)
    }
}

/// A JSON body helper used by tests and the simulator.
#[must_use]
pub fn json_message(value: serde_json::Value) -> PublishMessage {
    PublishMessage {
        message: Some(Json::from_value(&value)),
        ..PublishMessage::default()
    }
}

#[cfg(any(test, feature = "invariants"))]
impl Queue {
    pub(crate) fn consumers_held_total(&self) -> u64 {
        self.consumers.held_total()
    }
}

/// Validates a message before anything changes (before a queue is auto-created, too), so a
/// refused publish leaves no trace and a batch is all or nothing.
pub(crate) fn check_publish(limits: &Limits, m: &PublishMessage) -> Result<(), Error> {
    let size = match (&m.message, &m.payload) {
        (Some(j), None) => j.len(),
        (None, Some(b)) => b.len(),
        _ => {
            return Err(Error::invalid(
                "message",
                "give exactly one of `message` (JSON) or `payload` (bytes)",
            ));
        }
    };
    if size > limits.max_payload_bytes {
        return Err(Error::too_large("message", size, limits.max_payload_bytes));
    }
    if m.priority.is_some_and(|p| p > 9) {
        return Err(Error::invalid("priority", "must be 0..=9"));
    }
    check_headers(limits, &m.headers)?;
    if m.delay_ms.is_some_and(|d| d > limits.max_delay_ms) {
        return Err(Error::invalid(
            "delay",
            format!("at most {} ms", limits.max_delay_ms),
        ));
    }
    if m.ttl_ms == Some(0) || m.ttl_ms.is_some_and(|t| t > limits.max_ttl_ms) {
        return Err(Error::invalid(
            "ttl",
            format!("must be between 1 and {} ms", limits.max_ttl_ms),
        ));
    }
    if m.max_retries.is_some_and(|r| r > limits.max_retries) {
        return Err(Error::invalid(
            "max_retries",
            format!("at most {}", limits.max_retries),
        ));
    }
    Ok(())
}
