//! One queue: ready index, delayed and in-flight messages, waiters, DLQ and statistics.
//!
//! Publish and consume live here; leases (ack, nack, extend, expiry) in `lease.rs`; retry
//! delays in `retry.rs`; the dead-letter queue in `dead_letter.rs`; statistics in `stats.rs`;
//! flow control (pause, rate limits, `max_in_flight`, message groups) in `flow.rs` and
//! `groups.rs`.

mod dead_letter;
mod deliver;
mod flow;
mod groups;
mod jobs;
mod lease;
mod message;
mod ready;
mod retry;
mod session;
mod stats;
mod store;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{
    LeaseToken, MessageId, Observed, ObservedKind, PublishMessage, Published, SessionId, WaiterId,
};
use crate::config::{Limits, MAX_LEASE_MS, QueueConfig, RetryPosition, check_headers};
use crate::ctx::Ctx;
use crate::json::Json;
use crate::time::Millis;
use crate::timers::TimerKind;

pub use crate::ids::QueueId;
pub(crate) use dead_letter::DeadLetters;
pub(crate) use deliver::{Lessee, Taker};
use flow::Flow;
pub(crate) use jobs::{Kept, Record};
pub(crate) use lease::Nack;
pub(crate) use message::{Body, Message, NewMessage, State};
use ready::Ready;
pub(crate) use session::Session;
use stats::{Consumers, Counters, WaitWindow};
use store::Messages;

/// Size (entries) below which the message store and ready lanes are never shrunk.
const COMPACT_MIN: usize = 4096;

/// What a consume asks for, after validation.
pub(crate) struct ConsumeSpec {
    pub(crate) max_messages: u32,
    pub(crate) lease_ms: u64,
    pub(crate) consumer: Option<Arc<str>>,
}

impl ConsumeSpec {
    /// Who the consume's leases go to.
    pub(crate) fn lessee(&self) -> Lessee<'_> {
        Lessee {
            lease_ms: self.lease_ms,
            consumer: &self.consumer,
            session: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Queue {
    pub(crate) id: QueueId,
    pub(crate) name: Arc<str>,
    pub(crate) config: QueueConfig,
    pub(crate) messages: Messages,
    ready: Ready,
    delayed: u64,
    in_flight: u64,
    pub(crate) dlq: DeadLetters,
    /// Waiters and sessions, in the order they are served.
    pub(crate) line: VecDeque<Taker>,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    consumers: Consumers,
    counters: Counters,
    waits: WaitWindow,
    /// Message bytes held: bodies and headers of the messages in `messages` and the DLQ.
    #[serde(default)]
    pub(crate) held: u64,
    /// Finished jobs kept for lookup.
    #[serde(default)]
    pub(crate) kept: Kept,
    /// Schedules, by id. (Always serialized: snapshots encode structs as arrays, and `flow`
    /// follows.)
    #[serde(default)]
    pub(crate) schedules: BTreeMap<Arc<str>, crate::schedule::Schedule>,
    /// Flow control: pause, rate limits, message groups. `None` for a queue that uses none
    /// of it (boxed: most queues do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow: Option<Box<Flow>>,
}

impl Queue {
    pub(crate) fn new(id: QueueId, name: &str, config: QueueConfig) -> Self {
        let flow = config.controls_flow().then(Box::default);
        Self {
            id,
            name: name.into(),
            config,
            messages: Messages::default(),
            ready: Ready::default(),
            delayed: 0,
            in_flight: 0,
            dlq: DeadLetters::default(),
            line: VecDeque::new(),
            sessions: BTreeMap::new(),
            consumers: Consumers::default(),
            counters: Counters::default(),
            waits: WaitWindow::default(),
            held: 0,
            kept: Kept::default(),
            schedules: BTreeMap::new(),
            flow,
        }
    }

    /// Ready plus delayed: what counts against `max_depth`.
    pub(crate) fn depth(&self) -> u64 {
        self.ready_len() + self.delayed
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

    /// Checks that `bytes` more message bytes fit the queue's `max_bytes` and the server's
    /// budget.
    pub(crate) fn check_memory(&self, ctx: &Ctx, bytes: u64) -> Result<(), Error> {
        if let Some(limit) = self.config.max_bytes
            && self.held.saturating_add(bytes) > limit
        {
            return Err(Error::MemoryFull {
                scope: format!("queue {}", self.name),
                held: self.held,
                limit,
            });
        }
        check_server_memory(ctx, bytes)
    }

    /// Counts message bytes that came in.
    fn hold(&mut self, ctx: &mut Ctx, bytes: u64) {
        self.held += bytes;
        ctx.held_bytes += bytes;
    }

    /// Counts message bytes that left (acked, purged, dropped from the DLQ), and gives back
    /// the room a drained backlog left in the message store and the ready index.
    pub(crate) fn let_go(&mut self, ctx: &mut Ctx, bytes: u64) {
        self.held = self.held.saturating_sub(bytes);
        ctx.held_bytes = ctx.held_bytes.saturating_sub(bytes);
        self.messages.compact();
        self.ready.compact();
    }

    /// Adds a validated message (see `check_publish` and `check_room`). With `serve`, parked
    /// waiters are served at once; a batch serves them once after its last message, so a
    /// waiter gets the batch's messages in priority order.
    ///
    /// The message is taken out of `m` field by field (a message is bigger than what moves
    /// without a copy call, and a batch would move each one several times).
    pub(crate) fn publish(
        &mut self,
        ctx: &mut Ctx,
        m: &mut PublishMessage,
        serve: bool,
    ) -> Published {
        let id = ctx.new_id();
        self.publish_as(ctx, m, serve, id)
    }

    /// Adds a validated message under a given id (a debounced publish replacing a delayed
    /// job keeps its id).
    pub(crate) fn publish_as(
        &mut self,
        ctx: &mut Ctx,
        m: &mut PublishMessage,
        serve: bool,
        id: MessageId,
    ) -> Published {
        let now = ctx.now;
        let seq = ctx.seq();
        let body = match (m.message.take(), m.payload.take()) {
            (Some(j), _) => Body::Json(j),
            (None, Some(b)) => Body::Bytes(b),
            (None, None) => unreachable!("check_publish requires a body"),
        };
        let group = m.group.as_deref().map(|g| self.group_enter(g));
        let mut msg = Message::new(NewMessage {
            id,
            seq,
            body,
            priority: m.priority.unwrap_or(self.config.default_priority),
            headers: std::mem::take(&mut m.headers),
            now,
            max_retries: m.max_retries.unwrap_or(self.config.max_retries),
            ttl_ms: m.ttl_ms.or(self.config.message_ttl_ms),
            group,
        });
        self.counters.published += 1;
        self.hold(ctx, msg.held_bytes());
        let priority = msg.priority;
        ctx.observe(|| self.observed(ObservedKind::Published, &msg, now));
        if let Some(at) = msg.expires_at() {
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
            None => Some(self.put_ready(ctx, (priority, seq, id), group)),
        };
        self.messages.insert(msg);
        if serve && position.is_some() {
            self.serve(ctx);
        }
        Published {
            message_id: id,
            position,
            duplicate: false,
            replaced: false,
        }
    }

    /// Checks a consume's options and fills in the queue's defaults.
    pub(crate) fn consume_spec(
        &self,
        limits: &Limits,
        max_messages: u32,
        lease_ms: Option<u64>,
        consumer: Option<String>,
    ) -> Result<ConsumeSpec, Error> {
        let max = limits.max_consume_messages;
        if !(1..=max).contains(&max_messages) {
            return Err(Error::invalid("max_messages", format!("must be 1..={max}")));
        }
        let lease_ms = lease_ms.unwrap_or(self.config.ack_deadline_ms);
        if lease_ms == 0 {
            return Err(Error::invalid("lease_ms", "must be positive"));
        }
        let lease_ms = lease_ms.min(MAX_LEASE_MS);
        if let Some(c) = &consumer {
            check_id("consumer_id", c, limits.max_id_bytes)?;
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
        // A retry (it was delivered before) joins the back of its priority when so configured;
        // a delayed publish keeps its place by publish order. In an ordered group a retry
        // keeps the group's head, and a delayed publish takes its place in the group's order
        // when its delay ends.
        let retry = msg.was_delivered();
        let group = msg.group_slot();
        // (`keeps_place`, spelled out: `msg` borrows the store.)
        let fresh = if self.config.ordered_groups && group.is_some() {
            !retry
        } else {
            retry && self.config.retry_position == RetryPosition::Back
        };
        if fresh {
            msg.seq = ctx.seq();
        }
        let place = (msg.priority, msg.seq, id);
        self.delayed -= 1;
        if retry {
            self.group_retry_wait(ctx, group, false);
        }
        self.put_ready(ctx, place, group);
        self.serve(ctx);
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
    pub(crate) fn remove_waiting(&mut self, ctx: &mut Ctx, id: MessageId) -> Message {
        let mut msg = self.messages.remove(&id).expect("message exists");
        match msg.state {
            State::Ready => {
                let found = self.pull_ready(ctx, &msg);
                assert!(found, "ready message missing from the ready index");
            }
            State::Delayed { until } => {
                self.delayed -= 1;
                ctx.timers
                    .remove(until, TimerKind::Due { queue: self.id, id });
                if msg.was_delivered() {
                    self.group_retry_wait(ctx, msg.group_slot(), false);
                }
            }
            State::InFlight { .. } => panic!("remove_waiting of an in-flight message"),
        }
        self.group_leave(ctx, &mut msg);
        self.cancel_ttl(ctx, &msg);
        msg
    }

    /// Takes a message out of the queue's store (and its group) once it has left the ready
    /// index and flight: acked, dead-lettered, cancelled or purged.
    pub(crate) fn remove_message(&mut self, ctx: &Ctx, id: MessageId) -> Message {
        let (flow, config) = (&mut self.flow, &self.config);
        self.messages
            .remove_then(&id, |m| {
                flow::leave_group(flow.as_deref_mut(), config, ctx.now, m)
            })
            .expect("message exists")
    }

    fn cancel_ttl(&self, ctx: &mut Ctx, msg: &Message) {
        if let (Some(at), false) = (msg.expires_at(), msg.expired) {
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
        if let Some(f) = self.flow.as_deref_mut() {
            ids.extend(f.groups.drain_ready());
        }
        let mut delayed: Vec<MessageId> = self
            .messages
            .values()
            .filter(|m| matches!(m.state, State::Delayed { .. }))
            .map(|m| m.id)
            .collect();
        delayed.sort_unstable();
        let mut bytes = 0;
        for id in &ids {
            ctx.finished.push(crate::ctx::Finished {
                queue: self.id,
                id: *id,
                job: None,
                outcome: crate::ctx::Outcome::Purged,
            });
            let msg = self.remove_message(ctx, *id);
            self.cancel_ttl(ctx, &msg);
            bytes += msg.held_bytes();
        }
        for id in delayed {
            ctx.finished.push(crate::ctx::Finished {
                queue: self.id,
                id,
                job: None,
                outcome: crate::ctx::Outcome::Purged,
            });
            let msg = self.remove_waiting(ctx, id);
            bytes += msg.held_bytes();
            ids.push(msg.id);
        }
        self.let_go(ctx, bytes);
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

    /// Removes every timer, waiter and session of a queue that is being deleted; returns the
    /// waiters and sessions, whose hosts must be told.
    pub(crate) fn teardown(&mut self, ctx: &mut Ctx) -> (Vec<WaiterId>, Vec<SessionId>) {
        let mut ids: Vec<MessageId> = self.messages.ids().collect();
        ids.sort_unstable();
        for id in ids {
            let msg = &self.messages[&id];
            if let Some((at, timer)) = self.state_timer(msg) {
                ctx.timers.remove(at, timer);
            }
            self.cancel_ttl(ctx, msg);
        }
        self.flow_teardown(ctx);
        let waiters: Vec<WaiterId> = self.waiters().map(|w| w.id).collect();
        for w in &waiters {
            self.unpark(ctx, *w);
        }
        let sessions = self.session_ids();
        for s in &sessions {
            self.detach(ctx, *s, false);
        }
        (waiters, sessions)
    }

    /// The lease timer of delivery `lease` of message `id`.
    pub(crate) fn lease_timer(&self, id: MessageId, lease: LeaseToken) -> TimerKind {
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

    pub(crate) fn observed(&self, kind: ObservedKind, msg: &Message, at: Millis) -> Observed {
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
            + self.messages.footprint()
            + self.ready.footprint()
            + self.flow.as_ref().map_or(0, |f| f.groups.footprint())
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

/// The message bytes a message to publish will hold (see `Message::held_bytes`).
pub(crate) fn publish_bytes(m: &PublishMessage) -> u64 {
    let body = match (&m.message, &m.payload) {
        (Some(j), _) => j.len(),
        (None, Some(b)) => b.len(),
        (None, None) => 0,
    };
    let headers: usize = m.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (body + headers) as u64
}

/// Checks that `bytes` more message bytes fit the server's budget (`max_held_bytes`).
pub(crate) fn check_server_memory(ctx: &Ctx, bytes: u64) -> Result<(), Error> {
    let limit = ctx.limits.max_held_bytes;
    if ctx.held_bytes.saturating_add(bytes) > limit {
        return Err(Error::MemoryFull {
            scope: "server".to_owned(),
            held: ctx.held_bytes,
            limit,
        });
    }
    Ok(())
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
    if let Some(group) = &m.group {
        check_id("group", group, crate::config::MAX_GROUP_BYTES)?;
    }
    if let Some(key) = &m.idempotency_key {
        crate::dedup::check_key(key, limits.max_id_bytes)?;
    }
    if m.delay_ms.is_some_and(|d| d > limits.max_delay_ms) {
        return Err(Error::invalid(
            "delay_ms",
            format!("at most {} ms", limits.max_delay_ms),
        ));
    }
    if m.ttl_ms == Some(0) || m.ttl_ms.is_some_and(|t| t > limits.max_ttl_ms) {
        return Err(Error::invalid(
            "ttl_ms",
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

pub(crate) use crate::input::check_id;
