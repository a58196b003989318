//! The dead-letter queue: bounded, oldest dropped (and counted) when full.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::{DeadLetter, DeadLetterReason, MessageId, ObservedKind};
use crate::ctx::Ctx;
use crate::time::Millis;
use crate::timers::TimerKind;

use super::{Message, Queue, State};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) msg: Message,
    pub(crate) reason: DeadLetterReason,
    pub(crate) at: Millis,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct DeadLetters {
    pub(crate) entries: VecDeque<Entry>,
    /// The ids in `entries`, so an ack of a dead-lettered message is answered without a scan.
    ids: BTreeSet<MessageId>,
    /// Entries dropped because the DLQ was full or disabled.
    pub(crate) dropped: u64,
}

impl DeadLetters {
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub(crate) fn contains(&self, id: MessageId) -> bool {
        self.ids.contains(&id)
    }

    /// The entry of a dead-lettered message (a scan, only when it is here).
    pub(crate) fn find(&self, id: MessageId) -> Option<&Entry> {
        if !self.contains(id) {
            return None;
        }
        self.entries.iter().find(|e| e.msg.id == id)
    }

    /// Keeps `msg`, dropping the oldest entries to make room; returns the message bytes
    /// dropped (`msg`'s own when the DLQ has no room at all).
    #[must_use]
    pub(crate) fn push(
        &mut self,
        msg: Message,
        reason: DeadLetterReason,
        at: Millis,
        max: u64,
    ) -> u64 {
        if max == 0 {
            self.dropped += 1;
            return msg.held_bytes();
        }
        let dropped = self.trim(max - 1);
        self.ids.insert(msg.id);
        self.entries.push_back(Entry { msg, reason, at });
        dropped
    }

    /// Drops the oldest entries (counted) until at most `max` remain; returns the message
    /// bytes dropped.
    #[must_use]
    pub(crate) fn trim(&mut self, max: u64) -> u64 {
        let mut bytes = 0;
        while self.entries.len() as u64 > max {
            if let Some(e) = self.entries.pop_front() {
                self.ids.remove(&e.msg.id);
                self.dropped += 1;
                bytes += e.msg.held_bytes();
            }
        }
        bytes
    }

    pub(crate) fn page(&self, queue: &Arc<str>, offset: u64, limit: u64) -> Vec<DeadLetter> {
        self.entries
            .iter()
            .skip(offset.min(usize::MAX as u64) as usize)
            .take(limit as usize)
            .map(|e| {
                let (message, payload) = e.msg.body.split();
                DeadLetter {
                    message_id: e.msg.id,
                    message,
                    payload,
                    priority: e.msg.priority,
                    headers: e.msg.headers().clone(),
                    reason: e.reason,
                    attempts: e.msg.attempts,
                    last_error: e.msg.last_error().map(str::to_owned),
                    origin_queue: queue.clone(),
                    published_at: e.msg.published_at,
                    dead_lettered_at: e.at,
                }
            })
            .collect()
    }

    /// Empties the DLQ; returns how many entries it held and their message bytes.
    fn purge(&mut self) -> (u64, u64) {
        let n = self.len();
        let bytes = self.entries.iter().map(|e| e.msg.held_bytes()).sum();
        self.entries.clear();
        self.ids.clear();
        (n, bytes)
    }
}

impl Queue {
    /// Empties the DLQ; returns how many entries it held.
    pub(crate) fn purge_dlq(&mut self, ctx: &mut Ctx) -> u64 {
        let (n, bytes) = self.dlq.purge();
        self.let_go(ctx, bytes);
        n
    }

    /// Cuts the DLQ to `max` entries, dropping the oldest.
    pub(crate) fn trim_dlq(&mut self, ctx: &mut Ctx, max: u64) {
        let bytes = self.dlq.trim(max);
        self.let_go(ctx, bytes);
    }

    /// Moves DLQ entries (the given ids, or all) back to the queue with attempts (and
    /// snoozes) reset. Stops early when the queue is full; an entry whose group the queue has
    /// no room for (`max_groups_per_queue`) stays. Returns how many moved.
    pub(crate) fn redrive(&mut self, ctx: &mut Ctx, ids: Option<&[MessageId]>) -> u64 {
        let now = ctx.now;
        let wanted_ids: Option<BTreeSet<MessageId>> = ids.map(|ids| ids.iter().copied().collect());
        let mut moved = 0;
        let mut kept = VecDeque::with_capacity(self.dlq.entries.len());
        let mut full = false;
        while let Some(entry) = self.dlq.entries.pop_front() {
            let wanted = wanted_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&entry.msg.id));
            full = full || self.depth() >= self.config.max_depth;
            let no_group_room = entry.msg.group_name().is_some_and(|g| {
                self.check_groups(&ctx.limits, std::iter::once(&**g))
                    .is_err()
            });
            if !wanted || full || no_group_room {
                kept.push_back(entry);
                continue;
            }
            self.dlq.ids.remove(&entry.msg.id);
            let mut msg = entry.msg;
            msg.seq = ctx.seq();
            msg.attempts = 0;
            msg.set_snoozes(0);
            msg.enqueued_at = now;
            msg.ready_since = now;
            msg.expired = false;
            msg.restart_ttl(now);
            msg.state = State::Ready;
            if let Some(at) = msg.expires_at() {
                ctx.timers.add(
                    at,
                    TimerKind::MessageTtl {
                        queue: self.id,
                        id: msg.id,
                    },
                );
            }
            ctx.observe(|| self.observed(ObservedKind::Redriven, &msg, now));
            let group = msg.group_name().cloned().map(|g| self.group_enter(&g));
            msg.set_group_name(None);
            msg.set_group_slot(group);
            self.put_ready(ctx, (msg.priority, msg.seq, msg.id), group);
            self.messages.insert(msg);
            moved += 1;
        }
        self.dlq.entries = kept;
        if moved > 0 {
            self.serve(ctx);
        }
        moved
    }
}
