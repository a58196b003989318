//! `Engine`: the driving contract. `handle` dispatches a command, `handle_timeout` runs due
//! timers, `poll_timeout` tells the host when to call back, `poll_event` drains output.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{Command, Event, MessageId, Reply, WaiterId};
use crate::config::{EngineConfig, QueueConfig, validate_queue_name};
use crate::ctx::Ctx;
use crate::kv::Kv;
use crate::pubsub::PubSub;
use crate::queue::{Queue, QueueId, check_publish};
use crate::time::Millis;
use crate::timers::TimerKind;

/// The sans-IO engine: queues, KV and pub/sub as one deterministic state machine.
///
/// A run is a pure function of `(config, seed, [(now, command)])`. The whole state is
/// serde-serializable; a restored engine behaves exactly as the original would have.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Engine {
    config: EngineConfig,
    pub(crate) ctx: Ctx,
    names: BTreeMap<Arc<str>, QueueId>,
    pub(crate) queues: BTreeMap<QueueId, Queue>,
    next_queue: u32,
    /// Which queue each parked waiter waits on.
    pub(crate) waiter_queues: BTreeMap<WaiterId, QueueId>,
    pub(crate) kv: Kv,
    pubsub: PubSub,
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
            kv: Kv::default(),
            pubsub: PubSub::default(),
        }
    }

    /// The configuration the engine was built with.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The latest time the engine has seen.
    #[must_use]
    pub fn now(&self) -> Millis {
        self.ctx.now
    }

    /// Applies one command at `now`, after running every timer already due.
    pub fn handle(&mut self, now: Millis, cmd: Command) -> Result<Reply, Error> {
        self.handle_timeout(now);
        self.dispatch(cmd)
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
    }

    /// The earliest pending deadline; `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.ctx.timers.next().map(|(at, _)| *at)
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
        match timer {
            TimerKind::Lease { queue, id, lease } => {
                self.with_queue_id(queue, |q, ctx| q.on_lease_expiry(ctx, id, lease));
            }
            TimerKind::Due { queue, id } => self.with_queue_id(queue, |q, ctx| q.on_due(ctx, id)),
            TimerKind::MessageTtl { queue, id } => {
                self.with_queue_id(queue, |q, ctx| q.on_ttl(ctx, id));
            }
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
        }
        self.forget_answered_waiters();
    }

    fn with_queue_id(&mut self, id: QueueId, f: impl FnOnce(&mut Queue, &mut Ctx)) {
        if let Some(q) = self.queues.get_mut(&id) {
            f(q, &mut self.ctx);
        }
    }

    /// Waiters answered by `serve_waiters` left their queue; drop them from the index too.
    fn forget_answered_waiters(&mut self) {
        for w in self.ctx.answered.drain(..) {
            self.waiter_queues.remove(&w);
        }
    }

    /// The named queue together with the shared context.
    fn queue_mut(&mut self, name: &str) -> Result<(&mut Queue, &mut Ctx), Error> {
        let id = self.names.get(name).ok_or_else(|| Error::QueueNotFound {
            queue: name.to_owned(),
        })?;
        Ok((
            self.queues.get_mut(id).expect("named queue exists"),
            &mut self.ctx,
        ))
    }

    fn queue(&self, name: &str) -> Result<&Queue, Error> {
        let id = self.names.get(name).ok_or_else(|| Error::QueueNotFound {
            queue: name.to_owned(),
        })?;
        Ok(&self.queues[id])
    }

    /// Creates a queue; `Ok(false)` if it exists already.
    fn create_queue(&mut self, name: &str, config: Option<QueueConfig>) -> Result<bool, Error> {
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
    fn publish_target(&mut self, name: &str) -> Result<(&mut Queue, &mut Ctx), Error> {
        if !self.names.contains_key(name) && self.config.auto_create_queues {
            self.create_queue(name, None)?;
        }
        self.queue_mut(name)
    }

    fn delete_queue(&mut self, name: &str) -> bool {
        let Some(id) = self.names.remove(name) else {
            return false;
        };
        let mut queue = self.queues.remove(&id).expect("named queue exists");
        for waiter in queue.teardown(&mut self.ctx) {
            self.waiter_queues.remove(&waiter);
            self.ctx
                .events
                .push_back(Event::WaitTimedOut { waiter_id: waiter });
        }
        true
    }

    fn dispatch(&mut self, cmd: Command) -> Result<Reply, Error> {
        let reply = match cmd {
            Command::CreateQueue { queue, config } => {
                let created = self.create_queue(&queue, config)?;
                Reply::QueueCreated { queue, created }
            }
            Command::ConfigureQueue { queue, config } => {
                config.validate(&self.ctx.limits)?;
                let created = self.create_queue(&queue, Some(config.clone()))?;
                let (q, ctx) = self.queue_mut(&queue)?;
                q.dlq.trim(config.dlq_max);
                q.config = config;
                // A raised prefetch may let parked waiters take ready messages now.
                q.serve_waiters(ctx);
                Reply::QueueCreated { queue, created }
            }
            Command::DeleteQueue { queue } => Reply::QueueDeleted {
                deleted: self.delete_queue(&queue),
            },
            Command::ListQueues => Reply::Queues {
                queues: self.names.keys().map(|n| n.to_string()).collect(),
            },
            Command::Publish { queue, message } => {
                check_publish(&self.ctx.limits, &message)?;
                let (q, ctx) = self.publish_target(&queue)?;
                q.check_room(1)?;
                Reply::Published(q.publish(ctx, message, true))
            }
            Command::PublishBatch { queue, messages } => {
                if messages.len() > self.ctx.limits.max_batch {
                    return Err(Error::limit(
                        "messages per batch",
                        self.ctx.limits.max_batch as u64,
                    ));
                }
                for m in &messages {
                    check_publish(&self.ctx.limits, m)?;
                }
                let (q, ctx) = self.publish_target(&queue)?;
                q.check_room(messages.len() as u64)?;
                let published = messages
                    .into_iter()
                    .map(|m| q.publish(ctx, m, false))
                    .collect();
                q.serve_waiters(ctx);
                Reply::PublishedBatch {
                    messages: published,
                }
            }
            Command::Consume {
                queue,
                wait_ms,
                lease_ms,
                max_messages,
                consumer_id,
            } => self.consume(&queue, wait_ms, lease_ms, max_messages, consumer_id)?,
            Command::CancelWait { waiter_id } => {
                let cancelled = match self.waiter_queues.remove(&waiter_id) {
                    Some(q) => self
                        .queues
                        .get_mut(&q)
                        .and_then(|q| q.unpark(&mut self.ctx, waiter_id))
                        .is_some(),
                    None => false,
                };
                Reply::WaitCancelled { cancelled }
            }
            cmd => return self.dispatch_more(cmd),
        };
        self.forget_answered_waiters();
        Ok(reply)
    }

    fn consume(
        &mut self,
        queue: &str,
        wait_ms: u64,
        lease_ms: Option<u64>,
        max_messages: u32,
        consumer_id: Option<String>,
    ) -> Result<Reply, Error> {
        let max_wait = self.ctx.limits.max_wait_ms;
        let max_waiters = self.ctx.limits.max_waiters;
        let waiting = self.waiter_queues.len();
        let (q, ctx) = self.queue_mut(queue)?;
        let spec = q.consume_spec(max_messages, lease_ms, consumer_id)?;
        q.touch_consumer(ctx, &spec.consumer)?;
        let messages = q.take(ctx, &spec);
        if !messages.is_empty() || wait_ms == 0 {
            return Ok(Reply::Messages { messages });
        }
        if waiting >= max_waiters {
            return Err(Error::limit("parked consumers", max_waiters as u64));
        }
        let qid = q.id;
        let waiter_id = q.park(ctx, spec, wait_ms.min(max_wait));
        self.waiter_queues.insert(waiter_id, qid);
        Ok(Reply::Waiting { waiter_id })
    }

    fn dispatch_more(&mut self, cmd: Command) -> Result<Reply, Error> {
        let reply = match cmd {
            Command::Ack {
                queue,
                message_id,
                lease,
            } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                q.ack(ctx, message_id, lease)?;
                Reply::Acked
            }
            Command::Nack {
                queue,
                message_id,
                requeue,
                delay_ms,
                error,
                lease,
            } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                let action = q.nack(ctx, message_id, lease, requeue, delay_ms, error)?;
                Reply::Nacked { action }
            }
            Command::Extend {
                queue,
                message_id,
                lease_ms,
                lease,
            } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                let lease_deadline = q.extend(ctx, message_id, lease, lease_ms)?;
                Reply::Extended { lease_deadline }
            }
            Command::Stats { queue } => {
                Reply::Stats(Box::new(self.queue(&queue)?.stats(self.ctx.now)))
            }
            Command::DlqList {
                queue,
                offset,
                limit,
            } => {
                if !(1..=1000).contains(&limit) {
                    return Err(Error::invalid("limit", "must be 1..=1000"));
                }
                let q = self.queue(&queue)?;
                Reply::DeadLetters {
                    total: q.dlq.len(),
                    messages: q.dlq.page(&q.name, offset, limit),
                }
            }
            Command::DlqRetry { queue, message_ids } => {
                let max = self.ctx.limits.max_batch;
                if message_ids.as_ref().is_some_and(|ids| ids.len() > max) {
                    return Err(Error::limit("message ids per redrive", max as u64));
                }
                let (q, ctx) = self.queue_mut(&queue)?;
                let retried = q.redrive(ctx, message_ids.as_deref());
                Reply::Redriven { retried }
            }
            Command::DlqPurge { queue } => Reply::Purged {
                purged: self.queue_mut(&queue)?.0.dlq.purge(),
            },
            Command::Purge { queue } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                Reply::Purged {
                    purged: q.purge(ctx),
                }
            }
            cmd => return self.dispatch_kv_pubsub(cmd),
        };
        self.forget_answered_waiters();
        Ok(reply)
    }

    fn dispatch_kv_pubsub(&mut self, cmd: Command) -> Result<Reply, Error> {
        let ctx = &mut self.ctx;
        let kv = &mut self.kv;
        Ok(match cmd {
            Command::KvSet { key, value, ttl_ms } => {
                kv.set(ctx, crate::api::KvEntry { key, value, ttl_ms })?;
                Reply::KvOk
            }
            Command::KvGet { key } => Reply::KvValue(kv.get(ctx, &key)?),
            Command::KvDel { key } => Reply::KvDeleted {
                deleted: kv.del(ctx, &key)?,
            },
            Command::KvExists { key } => Reply::KvExists {
                exists: kv.exists(ctx, &key)?,
            },
            Command::KvExpire { key, ttl_ms } => Reply::KvUpdated {
                updated: kv.expire(ctx, &key, Some(ttl_ms))?,
            },
            Command::KvPersist { key } => Reply::KvUpdated {
                updated: kv.expire(ctx, &key, None)?,
            },
            Command::KvTtl { key } => Reply::KvTtl {
                ttl_ms: kv.ttl(ctx, &key)?,
            },
            Command::KvIncr { key, by } => Reply::KvInt {
                value: kv.incr(ctx, &key, by)?,
            },
            Command::KvKeys { prefix, limit } => Reply::KvKeys {
                keys: kv.keys(ctx, &prefix, limit),
            },
            Command::KvMget { keys } => Reply::KvValues {
                values: kv.mget(ctx, &keys)?,
            },
            Command::KvMset { entries } => {
                if entries.len() > ctx.limits.max_batch {
                    return Err(Error::limit(
                        "entries per mset",
                        ctx.limits.max_batch as u64,
                    ));
                }
                kv.set_all(ctx, entries)?;
                Reply::KvOk
            }
            Command::KvStats => Reply::KvStats(kv.stats()),
            Command::Subscribe {
                subscriber_id,
                patterns,
                credit,
                idle_ms,
            } => {
                let (subscriber_id, patterns) =
                    self.pubsub
                        .subscribe(ctx, subscriber_id, patterns, credit, idle_ms)?;
                Reply::Subscribed {
                    subscriber_id,
                    patterns,
                }
            }
            Command::Unsubscribe {
                subscriber_id,
                patterns,
            } => Reply::Unsubscribed {
                removed: self.pubsub.unsubscribe(ctx, &subscriber_id, patterns)?,
            },
            Command::PubsubPublish {
                topic,
                message,
                headers,
            } => {
                let (message_id, subscribers_matched) =
                    self.pubsub.publish(ctx, topic.clone(), message, headers)?;
                Reply::PubsubPublished {
                    message_id,
                    topic,
                    subscribers_matched,
                }
            }
            Command::PubsubPoll { subscriber_id, max } => {
                let (messages, dropped) = self.pubsub.poll(ctx, &subscriber_id, max)?;
                Reply::PubsubMessages { messages, dropped }
            }
            Command::PubsubCredit {
                subscriber_id,
                credit,
            } => Reply::PubsubCredited {
                credit: self.pubsub.credit(ctx, &subscriber_id, credit)?,
            },
            Command::PubsubStats => Reply::PubsubStats(self.pubsub.stats()),
            other => unreachable!("command {other:?} is dispatched earlier"),
        })
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
