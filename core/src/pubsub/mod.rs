//! Topic pub/sub with wildcard patterns and bounded per-subscriber buffers.
//!
//! Delivery is at-most-once to subscribers registered at publish time. A subscriber has
//! *credit*, granted by its host (the room its connection has): while it has credit, a
//! message is pushed as `Event::PubSub` at once; without credit it waits in the subscriber's
//! bounded buffer, which drops its oldest message (counted) when full, so a publisher is never
//! blocked. Hosts that poll instead of being pushed to (`PubsubPoll`) simply never grant credit;
//! such a subscriber, having no connection whose end would remove it, is registered with
//! `idle_ms` and removed when it has not been heard from for that long. Buffered messages are
//! shared between subscribers, so a message matched by many costs one copy.

mod pattern;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{Event, Headers, MessageId, PubMessage, PubsubStats};
use crate::ctx::Ctx;
use crate::json::Json;
use crate::time::Millis;
use crate::timers::TimerKind;

pub(crate) use pattern::{matches, validate_pattern, validate_topic};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Subscriber {
    patterns: BTreeSet<String>,
    buffer: VecDeque<Arc<PubMessage>>,
    dropped: u64,
    credit: u32,
    idle: Option<Idle>,
}

/// The idle deadline of a subscriber registered with `idle_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Idle {
    ms: u64,
    at: Millis,
    version: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PubSub {
    subscribers: BTreeMap<String, Subscriber>,
    published: u64,
    delivered: u64,
    dropped: u64,
    next_version: u64,
}

impl PubSub {
    pub(crate) fn subscribe(
        &mut self,
        ctx: &mut Ctx,
        id: Option<String>,
        patterns: Vec<String>,
        credit: u32,
        idle_ms: Option<u64>,
    ) -> Result<(String, Vec<String>), Error> {
        let limits = &ctx.limits;
        if idle_ms.is_some_and(|ms| ms == 0 || ms > limits.max_ttl_ms) {
            return Err(Error::invalid(
                "idle",
                format!("must be between 1 and {} ms", limits.max_ttl_ms),
            ));
        }
        if patterns.is_empty() {
            return Err(Error::invalid(
                "patterns",
                "give at least one topic pattern",
            ));
        }
        for p in &patterns {
            validate_pattern(p, limits.max_topic_bytes)?;
        }
        if let Some(id) = &id {
            crate::queue::check_id("subscriber_id", id, limits.max_id_bytes)?;
        }
        let existing = id.as_ref().and_then(|id| self.subscribers.get(id));
        if existing.is_none() && self.subscribers.len() >= limits.max_subscribers {
            return Err(Error::limit("subscribers", limits.max_subscribers as u64));
        }
        let mut all: BTreeSet<String> = existing.map(|s| s.patterns.clone()).unwrap_or_default();
        all.extend(patterns);
        if all.len() > limits.max_patterns_per_subscriber {
            return Err(Error::limit(
                "patterns per subscriber",
                limits.max_patterns_per_subscriber as u64,
            ));
        }
        let id = id.unwrap_or_else(|| ctx.new_id().to_string());
        let sub = self.subscribers.entry(id.clone()).or_default();
        sub.patterns = all;
        if let Some(ms) = idle_ms {
            let old = sub.idle.replace(Idle {
                ms,
                at: Millis::ZERO,
                version: 0,
            });
            cancel_idle(ctx, &id, old.as_ref());
        }
        let listed = sub.patterns.iter().cloned().collect();
        self.touch(ctx, &id);
        if credit > 0 {
            self.credit(ctx, &id, credit)?;
        }
        Ok((id, listed))
    }

    /// Restarts an idle subscriber's clock.
    fn touch(&mut self, ctx: &mut Ctx, id: &str) {
        let Some(idle) = self.subscribers.get_mut(id).and_then(|s| s.idle.as_mut()) else {
            return;
        };
        cancel_idle(ctx, id, Some(idle));
        self.next_version += 1;
        idle.version = self.next_version;
        idle.at = ctx.now.add_ms(idle.ms);
        let subscriber = id.to_owned();
        let version = idle.version;
        ctx.timers.add(
            idle.at,
            TimerKind::SubscriberIdle {
                subscriber,
                version,
            },
        );
    }

    /// An idle timer fired: remove the subscriber unless it was heard from since.
    pub(crate) fn on_idle(&mut self, id: &str, version: u64) {
        let current = self.subscribers.get(id).and_then(|s| s.idle.as_ref());
        if current.is_some_and(|idle| idle.version == version) {
            self.subscribers.remove(id);
        }
    }

    /// Removes the given patterns, or the subscriber with all of them when `None`.
    pub(crate) fn unsubscribe(
        &mut self,
        ctx: &mut Ctx,
        id: &str,
        patterns: Option<Vec<String>>,
    ) -> Result<u64, Error> {
        let sub = self.subscribers.get_mut(id).ok_or_else(|| not_found(id))?;
        let removed = match patterns {
            Some(ps) => ps.iter().filter(|p| sub.patterns.remove(*p)).count() as u64,
            None => {
                let n = sub.patterns.len() as u64;
                sub.patterns.clear();
                n
            }
        };
        if sub.patterns.is_empty() {
            cancel_idle(ctx, id, sub.idle.as_ref());
            self.subscribers.remove(id);
        }
        Ok(removed)
    }

    pub(crate) fn publish(
        &mut self,
        ctx: &mut Ctx,
        topic: String,
        message: Json,
        headers: Headers,
    ) -> Result<(MessageId, u64), Error> {
        validate_topic(&topic, ctx.limits.max_topic_bytes)?;
        crate::config::check_headers(&ctx.limits, &headers)?;
        if message.len() > ctx.limits.max_payload_bytes {
            return Err(Error::too_large(
                "message",
                message.len(),
                ctx.limits.max_payload_bytes,
            ));
        }
        let id = ctx.new_id();
        let msg = Arc::new(PubMessage {
            message_id: id,
            topic: Arc::from(topic.as_str()),
            message,
            headers,
            published_at: ctx.now,
        });
        self.published += 1;
        let cap = ctx.limits.subscriber_buffer;
        let mut matched = 0;
        for (sid, sub) in &mut self.subscribers {
            if !sub.patterns.iter().any(|p| matches(p, &topic)) {
                continue;
            }
            matched += 1;
            if sub.credit > 0 {
                sub.credit -= 1;
                self.delivered += 1;
                ctx.events.push_back(Event::PubSub {
                    subscriber_id: sid.clone(),
                    message: PubMessage::clone(&msg),
                });
            } else {
                if sub.buffer.len() >= cap {
                    sub.buffer.pop_front();
                    sub.dropped += 1;
                    self.dropped += 1;
                }
                if cap > 0 {
                    sub.buffer.push_back(msg.clone());
                }
            }
        }
        Ok((id, matched))
    }

    pub(crate) fn poll(
        &mut self,
        ctx: &mut Ctx,
        id: &str,
        max: u32,
    ) -> Result<(Vec<PubMessage>, u64), Error> {
        let page = ctx.limits.max_page;
        if !(1..=page).contains(&u64::from(max)) {
            return Err(Error::invalid("max", format!("must be 1..={page}")));
        }
        self.touch(ctx, id);
        let sub = self.subscribers.get_mut(id).ok_or_else(|| not_found(id))?;
        let n = sub.buffer.len().min(max as usize);
        let out: Vec<PubMessage> = sub.buffer.drain(..n).map(Arc::unwrap_or_clone).collect();
        self.delivered += out.len() as u64;
        Ok((out, sub.dropped))
    }

    /// Adds credit and pushes buffered messages while it lasts; returns the credit left.
    pub(crate) fn credit(&mut self, ctx: &mut Ctx, id: &str, credit: u32) -> Result<u32, Error> {
        self.touch(ctx, id);
        let sub = self.subscribers.get_mut(id).ok_or_else(|| not_found(id))?;
        sub.credit = sub.credit.saturating_add(credit);
        while sub.credit > 0 {
            let Some(message) = sub.buffer.pop_front() else {
                break;
            };
            sub.credit -= 1;
            self.delivered += 1;
            ctx.events.push_back(Event::PubSub {
                subscriber_id: id.to_owned(),
                message: Arc::unwrap_or_clone(message),
            });
        }
        Ok(sub.credit)
    }

    pub(crate) fn stats(&self) -> PubsubStats {
        let patterns = self.subscribers.values().flat_map(|s| s.patterns.iter());
        let wildcard = patterns.clone().filter(|p| pattern::is_wildcard(p)).count();
        let topics: BTreeSet<&String> = patterns
            .clone()
            .filter(|p| !pattern::is_wildcard(p))
            .collect();
        PubsubStats {
            subscribers: self.subscribers.len() as u64,
            subscriptions: patterns.count() as u64,
            wildcard_subscriptions: wildcard as u64,
            topics: topics.into_iter().cloned().collect(),
            messages_published: self.published,
            messages_delivered: self.delivered,
            messages_dropped: self.dropped,
        }
    }
}

fn cancel_idle(ctx: &mut Ctx, id: &str, idle: Option<&Idle>) {
    if let Some(idle) = idle {
        let subscriber = id.to_owned();
        let version = idle.version;
        ctx.timers.remove(
            idle.at,
            TimerKind::SubscriberIdle {
                subscriber,
                version,
            },
        );
    }
}

fn not_found(id: &str) -> Error {
    Error::SubscriberNotFound {
        subscriber_id: id.to_owned(),
    }
}
