//! `Engine`: the driving contract. `handle` dispatches a command, `handle_timeout` runs due
//! timers, `poll_timeout` tells the host when to call back, `poll_event` drains output.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{Command, Event, MessageId, Reply, SessionId, WaiterId};
use crate::config::{EngineConfig, QueueConfig, validate_queue_name};
use crate::ctx::Ctx;
use crate::dedup::Dedup;
use crate::flows::Flows;
use crate::kv::Kv;
use crate::pubsub::PubSub;
use crate::queue::{Queue, QueueId};
use crate::time::Millis;
use crate::timers::TimerKind;

/// The sans-IO engine: queues, KV and pub/sub as one deterministic state machine.
///
/// A run is a pure function of `(config, seed, [(now, command)])`. The whole state is
/// serde-serializable; a restored engine behaves exactly as the original would have.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) ctx: Ctx,
    pub(crate) names: BTreeMap<Arc<str>, QueueId>,
    pub(crate) queues: BTreeMap<QueueId, Queue>,
    next_queue: u32,
    /// Which queue each parked waiter waits on.
    pub(crate) waiter_queues: BTreeMap<WaiterId, QueueId>,
    /// Which queue each attached session consumes.
    pub(crate) session_queues: BTreeMap<SessionId, QueueId>,
    pub(crate) next_session: u64,
    pub(crate) kv: Kv,
    pub(crate) pubsub: PubSub,
    /// Publish idempotency keys (absent from snapshots written before keys existed).
    #[serde(default)]
    pub(crate) dedup: Dedup,
    /// Flows: jobs that wait for other jobs (last, and left out while there are none, so
    /// an engine that never ran a flow serializes as before).
    #[serde(default, skip_serializing_if = "Flows::is_empty")]
    pub(crate) flows: Flows,
}

impl Engine {
    /// A new engine; `seed` determines every id and every jitter it will ever draw.
    #[must_use]
    pub fn new(config: EngineConfig, seed: u64) -> Self {
        let ctx = Ctx::new(seed, config.limits.clone(), config.observe);
        Self {
            config,
            ctx,
            names: BTreeMap::new(),
            queues: BTreeMap::new(),
            next_queue: 1,
            waiter_queues: BTreeMap::new(),
            session_queues: BTreeMap::new(),
            next_session: 1,
            kv: Kv::default(),
            pubsub: PubSub::default(),
            dedup: Dedup::default(),
            flows: Flows::default(),
        }
    }

    /// The configuration the engine was built with.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Replaces the configuration, e.g. with a server's config file after its state was restored
    /// from a snapshot taken under another. Limits and defaults apply from now on: queues keep
    /// their own configs, and state already held beyond a lowered limit is kept, not cut.
    pub fn set_config(&mut self, config: EngineConfig) {
        self.ctx.limits = config.limits.clone();
        self.ctx.observe = config.observe;
        self.config = config;
    }

    /// Publish idempotency keys held (live, or run out and not yet forgotten).
    #[must_use]
    pub fn idempotency_keys(&self) -> usize {
        self.dedup.len()
    }

    /// The latest time the engine has seen.
    #[must_use]
    pub fn now(&self) -> Millis {
        self.ctx.now
    }

    /// Applies one command at `now`, after running every timer already due.
    pub fn handle(&mut self, now: Millis, cmd: Command) -> Result<Reply, Error> {
        // After downtime, schedules that missed slots make one catch-up run, not one per
        // slot: their timers move before the timers due at `now` run.
        let caught_up = match cmd {
            Command::Resume { since } => {
                self.handle_timeout(since);
                Some(self.resume(now.max(self.ctx.now)))
            }
            _ => None,
        };
        self.handle_timeout(now);
        let mut reply = self.dispatch(cmd);
        // Settling may publish flow parents, which may answer waiters: forget them after.
        self.settle_finished();
        self.forget_answered_waiters();
        self.decorate_reply(&mut reply);
        self.decorate_events();
        match (caught_up, reply) {
            (Some(caught_up), Ok(Reply::Resumed { .. })) => Ok(Reply::Resumed { caught_up }),
            (_, reply) => reply,
        }
    }

    /// Runs every timer due at `now`. Extra calls are harmless.
    ///
    /// Each timer runs at its own deadline, not at the (possibly later) time of the call: a
    /// lease that ends at `d` schedules its retry from `d`. So the state after a call does not
    /// depend on how late the host's timer was, and replaying only the commands of a log
    /// rebuilds exactly the state the live engine had.
    pub fn handle_timeout(&mut self, now: Millis) {
        let target = now.max(self.ctx.now);
        while let Some((at, timer)) = self.ctx.timers.pop_due(target) {
            self.advance(at);
            self.fire(timer);
        }
        self.advance(target);
        self.decorate_events();
    }

    /// The earliest pending deadline; `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.ctx.timers.next().map(|(at, _)| *at)
    }

    /// Whether a schedule's run is due at `now`: a host that logs commands sends
    /// `Command::Tick` then (rather than calling `handle_timeout`), so the run is logged.
    #[must_use]
    pub fn run_due(&self, now: Millis) -> bool {
        self.ctx
            .timers
            .due(now)
            .any(|k| matches!(k, TimerKind::Schedule { .. }))
    }

    /// What the earliest deadline is for (for logs and tests).
    #[must_use]
    pub fn next_timeout_reason(&self) -> Option<TimerKind> {
        self.ctx.timers.next().map(|(_, kind)| kind.clone())
    }

    /// The next output; drain to `None` after every `handle` or `handle_timeout`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.ctx.events.pop_front()
    }

    /// Time never goes backwards: an earlier `now` is clamped to the latest seen.
    fn advance(&mut self, now: Millis) {
        if now > self.ctx.now {
            self.ctx.now = now;
        }
    }

    fn fire(&mut self, timer: TimerKind) {
        let first_event = self.ctx.events.len();
        match timer {
            TimerKind::Lease { queue, id, lease } => {
                self.with_queue_id(queue, |q, ctx| q.on_lease_expiry(ctx, id, lease));
            }
            TimerKind::Due { queue, id } => self.with_queue_id(queue, |q, ctx| q.on_due(ctx, id)),
            TimerKind::MessageTtl { queue, id } => {
                self.with_queue_id(queue, |q, ctx| q.on_ttl(ctx, id));
            }
            TimerKind::Wait { waiter } if self.job_wait_ended(waiter) => {}
            TimerKind::Wait { waiter } => {
                if let Some(queue) = self.waiter_queues.remove(&waiter) {
                    self.with_queue_id(queue, |q, ctx| {
                        q.unpark(ctx, waiter);
                    });
                    self.ctx
                        .events
                        .push_back(Event::WaitTimedOut { waiter_id: waiter });
                }
            }
            TimerKind::KeyTtl { key, version } => self.kv.on_ttl(&mut self.ctx, &key, version),
            TimerKind::SubscriberIdle {
                subscriber,
                version,
            } => self.pubsub.on_idle(&subscriber, version),
            TimerKind::Retention { queue } => {
                self.with_queue_id(queue, |q, ctx| q.apply_retention(ctx));
            }
            TimerKind::Schedule { queue, id } => self.fire_schedule(queue, &id),
            TimerKind::GroupWindow { queue, group } => {
                let mut groups = vec![group];
                let now = self.ctx.now;
                let same_queue = |k: &TimerKind| matches!(k, TimerKind::GroupWindow { queue: q, .. } if *q == queue);
                while let Some((_, k)) = self.ctx.timers.pop_due_if(now, same_queue) {
                    let TimerKind::GroupWindow { group, .. } = k else {
                        unreachable!("matched a group window");
                    };
                    groups.push(group);
                }
                self.with_queue_id(queue, |q, ctx| q.on_group_windows(ctx, &groups));
            }
            TimerKind::RateWindow { queue } => {
                self.with_queue_id(queue, |q, ctx| q.serve(ctx));
            }
            TimerKind::RateLimitEnd { queue } => {
                self.with_queue_id(queue, |q, ctx| q.on_rate_limit_end(ctx));
            }
        }
        self.settle_finished();
        self.forget_answered_waiters();
        // A later timer of the same call may end a parent this one delivered: its delivery
        // carries its children as they were when it was made.
        self.decorate_events_from(first_event);
    }

    pub(crate) fn with_queue_id(&mut self, id: QueueId, f: impl FnOnce(&mut Queue, &mut Ctx)) {
        if let Some(q) = self.queues.get_mut(&id) {
            f(q, &mut self.ctx);
        }
    }

    /// Waiters answered by `serve_waiters` left their queue; drop them from the index too.
    pub(crate) fn forget_answered_waiters(&mut self) {
        for w in self.ctx.answered.drain(..) {
            self.waiter_queues.remove(&w);
        }
    }

    /// The named queue together with the shared context.
    pub(crate) fn queue_mut(&mut self, name: &str) -> Result<(&mut Queue, &mut Ctx), Error> {
        let id = self.names.get(name).ok_or_else(|| Error::QueueNotFound {
            queue: name.to_owned(),
        })?;
        Ok((
            self.queues.get_mut(id).expect("named queue exists"),
            &mut self.ctx,
        ))
    }

    pub(crate) fn queue(&self, name: &str) -> Result<&Queue, Error> {
        let id = self.names.get(name).ok_or_else(|| Error::QueueNotFound {
            queue: name.to_owned(),
        })?;
        Ok(&self.queues[id])
    }

    /// Creates a queue; `Ok(false)` if it exists already.
    pub(crate) fn create_queue(
        &mut self,
        name: &str,
        config: Option<QueueConfig>,
    ) -> Result<bool, Error> {
        validate_queue_name(name)?;
        if self.names.contains_key(name) {
            return Ok(false);
        }
        let config = config.unwrap_or_else(|| self.config.default_queue.clone());
        config.validate(&self.ctx.limits)?;
        if self.names.len() as u64 >= self.ctx.limits.max_queues {
            return Err(Error::limit("queues", self.ctx.limits.max_queues));
        }
        let id = QueueId(self.next_queue);
        self.next_queue += 1;
        self.names.insert(Arc::from(name), id);
        self.queues.insert(id, Queue::new(id, name, config));
        Ok(true)
    }

    /// The queue to publish to, created with the default config if auto-create is on.
    pub(crate) fn publish_target(&mut self, name: &str) -> Result<(&mut Queue, &mut Ctx), Error> {
        if !self.names.contains_key(name) && self.config.auto_create_queues {
            self.create_queue(name, None)?;
        }
        self.queue_mut(name)
    }

    pub(crate) fn delete_queue(&mut self, name: &str) -> bool {
        let Some(id) = self.names.remove(name) else {
            return false;
        };
        let mut queue = self.queues.remove(&id).expect("named queue exists");
        let (waiters, sessions) = queue.teardown(&mut self.ctx);
        queue.forget_kept(&mut self.ctx);
        for (sid, s) in &queue.schedules {
            if let Some(at) = s.next_run_at {
                self.ctx.timers.remove(
                    at,
                    TimerKind::Schedule {
                        queue: id,
                        id: sid.clone(),
                    },
                );
            }
        }
        // Jobs purged or settled by the teardown are gone with the queue.
        self.ctx.finished.retain(|f| f.queue != id);
        self.forget_queue_jobs(id);
        self.flows_queue_deleted(id);
        let held = queue.held;
        queue.let_go(&mut self.ctx, held);
        for waiter in waiters {
            self.waiter_queues.remove(&waiter);
            self.ctx
                .events
                .push_back(Event::WaitTimedOut { waiter_id: waiter });
        }
        for session in sessions {
            self.session_queues.remove(&session);
            self.ctx.events.push_back(Event::SessionEnded {
                session_id: session,
            });
        }
        true
    }

    /// A hash of the whole state: two engines with equal digests hold the same queues,
    /// messages, leases, timers, KV, subscribers, counters and PRNG state.
    #[must_use]
    pub fn state_digest(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        crate::digest::hash_json(&mut hasher, self);
        hasher.digest()
    }

    /// Approximate bytes held by queued messages across all queues (for benchmarks).
    #[must_use]
    pub fn message_footprint(&self) -> usize {
        self.queues.values().map(Queue::footprint).sum()
    }

    /// Message bytes held across all queues (bodies and headers of queued and dead-lettered
    /// messages, and what flows hold: waiting parents' messages, results kept for parents
    /// yet to run), the figure the memory budget (`Limits::max_held_bytes`) bounds.
    #[must_use]
    pub fn held_bytes(&self) -> u64 {
        self.ctx.held_bytes
    }

    /// Bytes of finished jobs kept for lookup across all queues (bodies, headers, results,
    /// progress), the figure `Limits::max_kept_bytes` bounds.
    #[must_use]
    pub fn kept_bytes(&self) -> u64 {
        self.ctx.kept_bytes
    }

    /// Pending timers (for tests and benchmarks).
    #[must_use]
    pub fn timer_count(&self) -> usize {
        self.ctx.timers.len()
    }

    /// Whether a message is known to a queue (ready, delayed or in flight).
    #[must_use]
    pub fn holds_message(&self, queue: &str, id: MessageId) -> bool {
        self.queue(queue)
            .is_ok_and(|q| q.messages.contains_key(&id))
    }
}
