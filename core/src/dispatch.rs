//! `Engine::handle`'s dispatch, one function per command family: queue administration,
//! publish and consume, leases, consumer sessions, the DLQ, KV and pub/sub.

use std::sync::Arc;

use crate::Error;
use crate::api::{Command, Event, KvEntry, Reply, SessionId};
use crate::engine::Engine;
use crate::queue::{Nack, Session, check_server_memory};

impl Engine {
    /// Runs one command (timers are caught up already).
    pub(crate) fn dispatch(&mut self, cmd: Command) -> Result<Reply, Error> {
        use Command as C;
        match cmd {
            c @ (C::CreateQueue { .. }
            | C::ConfigureQueue { .. }
            | C::DeleteQueue { .. }
            | C::ListQueues
            | C::Stats { .. }
            | C::Purge { .. }) => self.dispatch_queue(c),
            c @ (C::PauseQueue { .. }
            | C::ResumeQueue { .. }
            | C::RateLimit { .. }
            | C::Groups { .. }) => self.dispatch_control(c),
            c @ (C::Publish { .. }
            | C::PublishBatch { .. }
            | C::Consume { .. }
            | C::CancelWait { .. }) => self.dispatch_flow(c),
            c @ (C::Ack { .. } | C::Nack { .. } | C::Extend { .. }) => self.dispatch_lease(c),
            c @ (C::Attach { .. }
            | C::SessionCredit { .. }
            | C::Detach { .. }
            | C::GiveBack { .. }
            | C::DropConsumers) => self.dispatch_session(c),
            c @ (C::DlqList { .. } | C::DlqRetry { .. } | C::DlqPurge { .. }) => {
                self.dispatch_dlq(c)
            }
            c @ (C::GetJob { .. }
            | C::WaitJob { .. }
            | C::Progress { .. }
            | C::Cancel { .. }
            | C::PutSchedule { .. }
            | C::ListSchedules { .. }
            | C::DeleteSchedule { .. }
            | C::RunSchedule { .. }
            | C::Tick
            | C::Resume { .. }) => self.dispatch_job(c),
            c @ (C::AddFlow { .. } | C::GetFlow { .. }) => self.dispatch_flows(c),
            c @ (C::KvSet { .. }
            | C::KvGet { .. }
            | C::KvDel { .. }
            | C::KvExists { .. }
            | C::KvExpire { .. }
            | C::KvPersist { .. }
            | C::KvTtl { .. }
            | C::KvIncr { .. }
            | C::KvKeys { .. }
            | C::KvMget { .. }
            | C::KvMset { .. }
            | C::KvStats) => self.dispatch_kv(c),
            c @ (C::Subscribe { .. }
            | C::Unsubscribe { .. }
            | C::PubsubPublish { .. }
            | C::PubsubPoll { .. }
            | C::PubsubCredit { .. }
            | C::PubsubStats) => self.dispatch_pubsub(c),
        }
    }

    fn dispatch_queue(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::CreateQueue { queue, config } => {
                let created = self.create_queue(&queue, config.map(|c| *c))?;
                Reply::QueueCreated { queue, created }
            }
            Command::ConfigureQueue { queue, config } => {
                config.validate(&self.ctx.limits)?;
                let created = self.create_queue(&queue, Some((*config).clone()))?;
                let (q, ctx) = self.queue_mut(&queue)?;
                q.trim_dlq(ctx, config.dlq_max);
                q.reconfigure(ctx, *config);
                // A lowered retention forgets kept jobs now.
                q.apply_retention(ctx);
                // A raised prefetch or flow limit may let parked consumers take ready messages
                // now.
                q.serve(ctx);
                Reply::QueueCreated { queue, created }
            }
            Command::DeleteQueue { queue } => Reply::QueueDeleted {
                deleted: self.delete_queue(&queue),
            },
            Command::ListQueues => Reply::Queues {
                queues: self.names.keys().map(|n| n.to_string()).collect(),
            },
            Command::Stats { queue } => {
                let q = self.queue(&queue)?;
                let mut stats = q.stats(self.ctx.now);
                stats.waiting_children = self.flows.waiting_in(q.id);
                stats.server_held_bytes = self.ctx.held_bytes;
                stats.server_max_held_bytes = self.ctx.limits.max_held_bytes;
                Reply::Stats(Box::new(stats))
            }
            Command::Purge { queue } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                Reply::Purged {
                    purged: q.purge(ctx),
                }
            }
            other => unreachable!("{other:?} is not a queue command"),
        })
    }

    fn dispatch_flow(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::Publish { queue, message } if message.debounce => {
                Reply::Published(self.publish_debounced(&queue, message)?)
            }
            Command::Publish { queue, message } => {
                Reply::Published(self.publish_one(&queue, message)?)
            }
            Command::PublishBatch { queue, messages } => {
                let max = self.ctx.limits.max_batch;
                if messages.len() > max {
                    return Err(Error::limit("messages per batch", max as u64));
                }
                Reply::PublishedBatch {
                    messages: self.publish_all(&queue, messages, false)?,
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
                    None => self.cancel_job_wait(waiter_id),
                };
                Reply::WaitCancelled { cancelled }
            }
            other => unreachable!("{other:?} is not a publish or consume command"),
        })
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
        let spec = q.consume_spec(&ctx.limits, max_messages, lease_ms, consumer_id)?;
        q.touch_consumer(ctx, &spec.consumer)?;
        let messages = q.take(ctx, spec.max_messages, &spec.lessee());
        if !messages.is_empty() || wait_ms == 0 {
            return Ok(Reply::Messages { messages });
        }
        if waiting >= max_waiters {
            return Err(Error::limit("parked consumers", max_waiters as u64));
        }
        let qid = q.id;
        let waiter_id = q.park(
            ctx,
            spec.max_messages,
            &spec.lessee(),
            wait_ms.min(max_wait),
        );
        self.waiter_queues.insert(waiter_id, qid);
        Ok(Reply::Waiting { waiter_id })
    }

    fn dispatch_lease(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::Ack {
                queue,
                message_id,
                lease,
                result,
            } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                q.ack(ctx, message_id, lease, result)?;
                Reply::Acked
            }
            Command::Nack {
                queue,
                message_id,
                requeue,
                delay_ms,
                error,
                lease,
                snooze,
            } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                let nack = Nack {
                    requeue,
                    delay_ms,
                    error,
                    snooze,
                };
                let action = q.nack(ctx, message_id, lease, nack)?;
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
                let cancelled = q.messages[&message_id].cancel_requested;
                Reply::Extended {
                    lease_deadline,
                    cancelled,
                }
            }
            other => unreachable!("{other:?} is not a lease command"),
        })
    }

    fn dispatch_session(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::Attach {
                queue,
                consumer_id,
                credit,
                lease_ms,
            } => self.attach(&queue, consumer_id, credit, lease_ms)?,
            Command::SessionCredit { session_id, credit } => {
                let max = self.ctx.limits.max_session_credit;
                let (q, ctx) = self.session_queue(session_id)?;
                Reply::SessionCredited {
                    credit: q.grant(ctx, session_id, credit, max)?,
                }
            }
            Command::Detach {
                session_id,
                give_back,
            } => {
                let (q, ctx) = self.session_queue(session_id)?;
                let returned = q.detach(ctx, session_id, give_back).unwrap_or(0);
                self.session_queues.remove(&session_id);
                Reply::Detached { returned }
            }
            Command::GiveBack { queue, leases } => {
                let max = self.ctx.limits.max_batch;
                if leases.len() > max {
                    return Err(Error::limit("leases per give-back", max as u64));
                }
                let (q, ctx) = self.queue_mut(&queue)?;
                let returned = leases
                    .iter()
                    .filter(|l| q.give_back(ctx, l.message_id, l.lease))
                    .count() as u64;
                q.serve(ctx);
                Reply::GivenBack { returned }
            }
            Command::DropConsumers => self.drop_consumers(),
            other => unreachable!("{other:?} is not a session command"),
        })
    }

    fn attach(
        &mut self,
        queue: &str,
        consumer_id: Option<String>,
        credit: u32,
        lease_ms: Option<u64>,
    ) -> Result<Reply, Error> {
        let limits = &self.ctx.limits;
        if credit > limits.max_session_credit {
            return Err(Error::limit(
                "session credit",
                u64::from(limits.max_session_credit),
            ));
        }
        if self.session_queues.len() >= limits.max_sessions {
            return Err(Error::limit("sessions", limits.max_sessions as u64));
        }
        let id = SessionId(self.next_session);
        let consumer_id = consumer_id.unwrap_or_else(|| format!("session-{}", id.0));
        let (q, ctx) = self.queue_mut(queue)?;
        let spec = q.consume_spec(&ctx.limits, 1, lease_ms, Some(consumer_id.clone()))?;
        let consumer = spec.consumer.expect("given above");
        q.touch_consumer(ctx, &Some(Arc::clone(&consumer)))?;
        let qid = q.id;
        q.attach(
            ctx,
            Session {
                id,
                consumer,
                lease_ms: spec.lease_ms,
                credit,
                held: Default::default(),
            },
        );
        self.next_session += 1;
        self.session_queues.insert(id, qid);
        Ok(Reply::Attached {
            session_id: id,
            consumer_id,
        })
    }

    /// The queue an attached session consumes, with the shared context.
    fn session_queue(
        &mut self,
        id: SessionId,
    ) -> Result<(&mut crate::queue::Queue, &mut crate::ctx::Ctx), Error> {
        let qid = self
            .session_queues
            .get(&id)
            .ok_or(Error::SessionNotFound { session_id: id.0 })?;
        Ok((
            self.queues.get_mut(qid).expect("a session's queue exists"),
            &mut self.ctx,
        ))
    }

    /// Withdraws every waiter and detaches every session, leaving their leases to run out.
    fn drop_consumers(&mut self) -> Reply {
        let (mut waiters, mut sessions) = (0, 0);
        for q in self.queues.values_mut() {
            let ids: Vec<_> = q.waiters().map(|w| w.id).collect();
            for w in ids {
                q.unpark(&mut self.ctx, w);
                waiters += 1;
            }
            for s in q.session_ids() {
                q.detach(&mut self.ctx, s, false);
                self.ctx
                    .events
                    .push_back(Event::SessionEnded { session_id: s });
                sessions += 1;
            }
        }
        self.waiter_queues.clear();
        self.session_queues.clear();
        waiters += self.drop_job_waiters();
        Reply::ConsumersDropped { waiters, sessions }
    }

    fn dispatch_dlq(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::DlqList {
                queue,
                offset,
                limit,
            } => {
                let max = self.ctx.limits.max_page;
                if !(1..=max).contains(&limit) {
                    return Err(Error::invalid("limit", format!("must be 1..={max}")));
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
            Command::DlqPurge { queue } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                Reply::Purged {
                    purged: q.purge_dlq(ctx),
                }
            }
            other => unreachable!("{other:?} is not a DLQ command"),
        })
    }

    fn dispatch_kv(&mut self, cmd: Command) -> Result<Reply, Error> {
        let ctx = &mut self.ctx;
        let kv = &mut self.kv;
        Ok(match cmd {
            Command::KvSet { key, value, ttl_ms } => {
                kv.set(ctx, KvEntry { key, value, ttl_ms })?;
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
                let max = ctx.limits.max_batch;
                if entries.len() > max {
                    return Err(Error::limit("entries per mset", max as u64));
                }
                kv.set_all(ctx, entries)?;
                Reply::KvOk
            }
            Command::KvStats => Reply::KvStats(kv.stats()),
            other => unreachable!("{other:?} is not a KV command"),
        })
    }

    fn dispatch_pubsub(&mut self, cmd: Command) -> Result<Reply, Error> {
        let ctx = &mut self.ctx;
        let pubsub = &mut self.pubsub;
        Ok(match cmd {
            Command::Subscribe {
                subscriber_id,
                patterns,
                credit,
                idle_ms,
            } => {
                let (subscriber_id, patterns) =
                    pubsub.subscribe(ctx, subscriber_id, patterns, credit, idle_ms)?;
                Reply::Subscribed {
                    subscriber_id,
                    patterns,
                }
            }
            Command::Unsubscribe {
                subscriber_id,
                patterns,
            } => Reply::Unsubscribed {
                removed: pubsub.unsubscribe(ctx, &subscriber_id, patterns)?,
            },
            Command::PubsubPublish {
                topic,
                message,
                headers,
            } => {
                // Pub/sub messages wait in bounded subscriber buffers, not in the budget; a
                // server over its budget refuses them all the same, as it does queue publishes.
                check_server_memory(ctx, message.len() as u64)?;
                let (message_id, subscribers_matched) =
                    pubsub.publish(ctx, topic.clone(), message, headers)?;
                Reply::PubsubPublished {
                    message_id,
                    topic,
                    subscribers_matched,
                }
            }
            Command::PubsubPoll { subscriber_id, max } => {
                let (messages, dropped) = pubsub.poll(ctx, &subscriber_id, max)?;
                Reply::PubsubMessages { messages, dropped }
            }
            Command::PubsubCredit {
                subscriber_id,
                credit,
            } => Reply::PubsubCredited {
                credit: pubsub.credit(ctx, &subscriber_id, credit)?,
            },
            Command::PubsubStats => Reply::PubsubStats(pubsub.stats()),
            other => unreachable!("{other:?} is not a pub/sub command"),
        })
    }
}
