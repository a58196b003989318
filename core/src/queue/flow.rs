//! Flow control of one queue (DESIGN.md §12): pause, a worker's rate limit, `max_in_flight`,
//! the queue's rate window, and the choice of the next message to deliver among the
//! ungrouped ones (the lanes of `ready.rs`) and the groups' (`groups.rs`).
//!
//! A queue that uses none of it keeps no flow state (`Queue::flow` is `None`) and delivers
//! straight from its lanes. Every limit is checked at the moment of a delivery, in the one
//! delivery path (`deliver.rs`), so long-poll waiters and streaming sessions are held back
//! alike, and served by the same `serve` as soon as room appears: an ack or any other end of a
//! delivery, a window's end (an engine timer), a resume.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::groups::{GroupSlot, Groups};
use super::{Message, Queue};
use crate::Error;
use crate::api::{MessageId, QueueStats};
use crate::config::{Limits, QueueConfig, RateLimit};
use crate::ctx::Ctx;
use crate::time::Millis;
use crate::timers::TimerKind;

/// A rate window: it opens with the first delivery after the previous one closed, lasts the
/// rate's `per_ms`, and allows `cap` deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Window {
    /// When it closes.
    pub(crate) end: Millis,
    /// Deliveries made in it.
    pub(crate) count: u32,
    /// Deliveries it allows: the rate's `max` when it opened, lowered (never raised) when the
    /// setting changes while it is open.
    pub(crate) cap: u32,
}

impl Window {
    /// Whether it is still open at `now`.
    pub(crate) fn live(w: Option<&Self>, now: Millis) -> bool {
        w.is_some_and(|w| now < w.end)
    }

    /// Whether it holds back deliveries at `now`: open, full, and its rate still set.
    pub(crate) fn full(w: Option<&Self>, rate: Option<&RateLimit>, now: Millis) -> bool {
        rate.is_some() && w.is_some_and(|w| now < w.end && w.count >= w.cap)
    }

    /// Counts a delivery under `rate`; returns the end of the window it opened, if it opened
    /// one (the caller sets its timer).
    pub(crate) fn count(
        w: &mut Option<Self>,
        rate: Option<&RateLimit>,
        now: Millis,
    ) -> Option<Millis> {
        let rate = rate?;
        match w {
            Some(w) if now < w.end => {
                w.count += 1;
                None
            }
            _ => {
                let end = now.add_ms(rate.per_ms);
                *w = Some(Self {
                    end,
                    count: 1,
                    cap: rate.max,
                });
                Some(end)
            }
        }
    }

    /// The rate changed while the window is open: a lower `max` applies at once.
    pub(crate) fn reconfigure(w: Option<&mut Self>, rate: Option<&RateLimit>) {
        if let (Some(w), Some(rate)) = (w, rate) {
            w.cap = w.cap.min(rate.max.max(w.count));
        }
    }
}

/// A queue's flow-control state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Flow {
    /// While paused: the queue's delivery count when it was paused (the invariants check
    /// that nothing was delivered since).
    paused: Option<u64>,
    /// A worker's `RateLimit`: nothing is delivered before this.
    limited_until: Option<Millis>,
    /// The queue's `rate_limit` window.
    window: Option<Window>,
    /// Deliveries the queue held beyond `max_in_flight` when the setting was last changed; 0
    /// after its next delivery (which is made only below the limit).
    floor: u64,
    /// Its message groups.
    pub(crate) groups: Groups,
}

impl Flow {
    /// Whether the queue may deliver at all now: not paused, not rate limited, below
    /// `max_in_flight`.
    fn open(&self, cfg: &QueueConfig, in_flight: u64, now: Millis) -> bool {
        self.paused.is_none()
            && self.limited_until.is_none_or(|t| now >= t)
            && !Window::full(self.window.as_ref(), cfg.rate_limit.as_ref(), now)
            && cfg.max_in_flight.is_none_or(|m| in_flight < u64::from(m))
    }
}

impl Queue {
    /// The queue's flow state, made on first use.
    pub(crate) fn flow_mut(&mut self) -> &mut Flow {
        self.flow.get_or_insert_with(Box::default)
    }

    /// Takes the next message a consumer may have now out of the ready index, counting it
    /// against the queue's limits: highest priority first, then publish order (or, under
    /// `fair_groups`, the groups' turns). `None` when nothing may be delivered.
    pub(crate) fn next_ready(&mut self, ctx: &mut Ctx) -> Option<MessageId> {
        let Some(flow) = self.flow.as_deref_mut() else {
            return self.ready.pop();
        };
        let (cfg, now) = (&self.config, ctx.now);
        if !flow.open(cfg, self.in_flight, now) {
            return None;
        }
        let plain = self.ready.peek().map(|(p, seq)| {
            let order = if cfg.fair_groups {
                flow.groups.plain_turn()
            } else {
                seq
            };
            (9 - p, order)
        });
        let id = match (plain, flow.groups.first()) {
            (None, None) => return None,
            (Some(plain), Some(group)) if plain < group => None,
            (Some(_), None) => None,
            (_, Some(_)) => {
                let (id, opened) = flow.groups.pop(cfg, now).expect("a group is listed");
                if let Some((group, end)) = opened {
                    let timer = TimerKind::GroupWindow {
                        queue: self.id,
                        group,
                    };
                    ctx.timers.add(end, timer);
                }
                Some(id)
            }
        };
        let id = match id {
            Some(id) => id,
            None => {
                if cfg.fair_groups {
                    flow.groups.served_plain();
                }
                self.ready.pop().expect("a ready ungrouped message")
            }
        };
        flow.floor = 0;
        if let Some(end) = Window::count(&mut flow.window, cfg.rate_limit.as_ref(), now) {
            ctx.timers
                .add(end, TimerKind::RateWindow { queue: self.id });
        }
        Some(id)
    }

    /// Whether a consumer with room could be given a message now.
    pub(crate) fn deliverable(&self, now: Millis) -> bool {
        match self.flow.as_deref() {
            None => !self.ready.is_empty(),
            Some(f) => {
                f.open(&self.config, self.in_flight, now)
                    && (!self.ready.is_empty() || f.groups.first().is_some())
            }
        }
    }

    /// Ready messages, ungrouped and grouped.
    pub(crate) fn ready_len(&self) -> u64 {
        self.ready.len() + self.flow.as_ref().map_or(0, |f| f.groups.ready())
    }

    /// Pauses the queue: it goes on taking publishes, acks and nacks, and delivers nothing.
    pub(crate) fn pause(&mut self) {
        let consumed = self.counters.consumed;
        let f = self.flow_mut();
        f.paused.get_or_insert(consumed);
    }

    /// Resumes a paused queue and serves its waiting consumers.
    pub(crate) fn resume(&mut self, ctx: &mut Ctx) {
        if let Some(f) = self.flow.as_deref_mut() {
            f.paused = None;
        }
        self.serve(ctx);
    }

    /// No deliveries for `for_ms` from now (a later end than one already set wins); returns
    /// the end.
    pub(crate) fn rate_limit(&mut self, ctx: &mut Ctx, for_ms: u64) -> Millis {
        let until = ctx.now.add_ms(for_ms);
        let timer = TimerKind::RateLimitEnd { queue: self.id };
        let f = self.flow_mut();
        match f.limited_until {
            Some(t) if t >= until => t,
            old => {
                if let Some(t) = old {
                    ctx.timers.remove(t, timer.clone());
                }
                f.limited_until = Some(until);
                ctx.timers.add(until, timer);
                until
            }
        }
    }

    /// The rate windows of `groups` closed: what they held back may go now.
    pub(crate) fn on_group_windows(&mut self, ctx: &mut Ctx, groups: &[Arc<str>]) {
        if let Some(f) = self.flow.as_deref_mut() {
            for group in groups {
                f.groups.window_closed(group, &self.config, ctx.now);
            }
        }
        self.serve(ctx);
    }

    /// A worker's rate limit ended.
    pub(crate) fn on_rate_limit_end(&mut self, ctx: &mut Ctx) {
        if let Some(f) = self.flow.as_deref_mut()
            && f.limited_until.is_some_and(|t| t <= ctx.now)
        {
            f.limited_until = None;
        }
        self.serve(ctx);
    }

    /// Replaces the queue's settings; the caller serves the line afterwards (a raised limit
    /// may let waiting consumers take messages now).
    pub(crate) fn reconfigure(&mut self, ctx: &mut Ctx, config: QueueConfig) {
        let old = std::mem::replace(&mut self.config, config);
        if self.flow.is_none() && !self.config.controls_flow() {
            return;
        }
        let in_flight = self.in_flight;
        let f = self.flow.get_or_insert_with(Box::default);
        f.floor = in_flight;
        Window::reconfigure(f.window.as_mut(), self.config.rate_limit.as_ref());
        f.groups.reconfigure(&old, &self.config, ctx.now);
    }

    /// The flow-control fields of the queue's statistics.
    pub(crate) fn flow_stats(&self, now: Millis, stats: &mut QueueStats) {
        let Some(f) = self.flow.as_deref() else {
            return;
        };
        stats.paused = f.paused.is_some();
        let limited = f.limited_until.filter(|t| *t > now);
        let window = f
            .window
            .filter(|w| Window::full(Some(w), self.config.rate_limit.as_ref(), now))
            .map(|w| w.end);
        stats.rate_limited_until_ms = limited.max(window);
        stats.groups = f.groups.holding();
        stats.held_back = if f.open(&self.config, self.in_flight, now) {
            f.groups.held_back()
        } else {
            self.ready_len()
        };
    }

    /// Removes the flow timers of a queue being deleted.
    pub(crate) fn flow_teardown(&self, ctx: &mut Ctx) {
        let Some(f) = self.flow.as_deref() else {
            return;
        };
        let (now, queue) = (ctx.now, self.id);
        if let Some(t) = f.limited_until.filter(|t| *t > now) {
            ctx.timers.remove(t, TimerKind::RateLimitEnd { queue });
        }
        if let Some(w) = f.window.filter(|w| w.end > now) {
            ctx.timers.remove(w.end, TimerKind::RateWindow { queue });
        }
        for (group, end) in f.groups.windows(now) {
            ctx.timers
                .remove(end, TimerKind::GroupWindow { queue, group });
        }
    }

    /// Puts a message in the ready index (its group's, or the lanes); returns its 1-based
    /// place in priority order among every ready message, flow limits aside.
    pub(crate) fn put_ready(
        &mut self,
        ctx: &Ctx,
        (priority, seq, id): (u8, u64, MessageId),
        group: Option<GroupSlot>,
    ) -> u64 {
        match (self.flow.as_deref_mut(), group) {
            (Some(f), Some(g)) => {
                let place = self.ready.ahead(priority) + f.groups.ahead(priority) + 1;
                f.groups.put(g, (priority, seq, id), &self.config, ctx.now);
                place
            }
            (Some(f), None) => self.ready.insert(priority, seq, id) + f.groups.ahead(priority),
            (None, g) => {
                debug_assert!(g.is_none(), "a grouped message in a queue without groups");
                self.ready.insert(priority, seq, id)
            }
        }
    }

    /// Takes a message that left the store out of the ready index; false if it was not
    /// there.
    pub(crate) fn pull_ready(&mut self, ctx: &Ctx, msg: &Message) -> bool {
        match (self.flow.as_deref_mut(), msg.group_slot()) {
            (Some(f), Some(g)) => f
                .groups
                .pull(g, (msg.priority, msg.seq), &self.config, ctx.now),
            _ => self.ready.remove(msg.priority, msg.seq),
        }
    }

    /// A message of the group named `name` joins the queue's store: its group's slot.
    pub(crate) fn group_enter(&mut self, name: &str) -> GroupSlot {
        self.flow_mut().groups.enter(name)
    }

    /// A message that left the queue's store (and its ready index) leaves its group, and
    /// from now on carries its group's name (for the DLQ and lookups), not its slot.
    pub(crate) fn group_leave(&mut self, ctx: &Ctx, msg: &mut Message) {
        leave_group(self.flow.as_deref_mut(), &self.config, ctx.now, msg);
    }

    /// A delivery of a message of the group in `slot` ended.
    pub(crate) fn group_released(&mut self, ctx: &Ctx, slot: GroupSlot) {
        if let Some(f) = self.flow.as_deref_mut() {
            f.groups.released(slot, &self.config, ctx.now);
        }
    }

    /// A delivered message of `group` starts or ends waiting for its retry or snooze.
    pub(crate) fn group_retry_wait(&mut self, ctx: &Ctx, group: Option<GroupSlot>, waiting: bool) {
        if let (Some(f), Some(g)) = (self.flow.as_deref_mut(), group) {
            f.groups.retry_wait(g, waiting, &self.config, ctx.now);
        }
    }

    /// Whether a message of `group` keeps its `seq` when it is ready again: in an ordered
    /// group a retried message keeps its group's head.
    pub(crate) fn keeps_place(&self, group: Option<GroupSlot>) -> bool {
        self.config.ordered_groups && group.is_some()
    }

    /// The name of a message's group: by its slot while it is in the store, else the name it
    /// carries.
    pub(crate) fn group_of<'a>(&'a self, msg: &'a Message) -> Option<&'a Arc<str>> {
        match (msg.group_slot(), self.flow.as_deref()) {
            (Some(slot), Some(f)) => Some(f.groups.name(slot)),
            _ => msg.group_name(),
        }
    }

    /// Refuses messages that would start more groups than `max_groups_per_queue`.
    pub(crate) fn check_groups<'a>(
        &self,
        limits: &Limits,
        groups: impl Iterator<Item = &'a str>,
    ) -> Result<(), Error> {
        let known = |g: &str| {
            self.flow
                .as_ref()
                .is_some_and(|f| f.groups.slot_of(g).is_some())
        };
        let mut new: Vec<&str> = groups.filter(|g| !known(g)).collect();
        if new.is_empty() {
            return Ok(());
        }
        new.sort_unstable();
        new.dedup();
        let held = self.flow.as_ref().map_or(0, |f| f.groups.len());
        let max = limits.max_groups_per_queue;
        if held + new.len() > max {
            return Err(Error::limit("groups per queue", max as u64));
        }
        Ok(())
    }

    /// The queue's groups holding messages, largest first.
    pub(crate) fn list_groups(&self, limit: usize) -> Vec<crate::api::GroupInfo> {
        self.flow
            .as_ref()
            .map_or_else(Vec::new, |f| f.groups.list(limit))
    }
}

/// A message leaving the queue's store leaves its group, and from now on carries its group's
/// name, not its slot (a free function, so the store can apply it to a message in place).
pub(crate) fn leave_group(
    flow: Option<&mut Flow>,
    cfg: &QueueConfig,
    now: Millis,
    msg: &mut Message,
) {
    let Some(slot) = msg.group_slot() else {
        return;
    };
    let f = flow.expect("a grouped message's queue has groups");
    msg.set_group_name(Some(Arc::clone(f.groups.name(slot))));
    msg.set_group_slot(None);
    f.groups.leave(slot, cfg, now);
}

#[cfg(any(test, feature = "invariants"))]
impl Queue {
    /// Panics unless the queue's flow state agrees with its messages and limits: the groups'
    /// counts and listing, nothing delivered while paused, no window above its rate, no more
    /// in flight than `max_in_flight`, and every open window and rate limit with its timer.
    pub(crate) fn check_flow(&self, ctx: &Ctx) {
        // A message out of the store names its group, never a slot another group may take.
        let dead = self.dlq.entries.iter().map(|e| &e.msg);
        for m in dead.chain(self.kept.records().map(|r| &r.msg)) {
            assert!(
                m.group_slot().is_none(),
                "{}: a group slot out of the store",
                m.id
            );
        }
        let Some(f) = self.flow.as_deref() else {
            return;
        };
        let (now, queue) = (ctx.now, self.id);
        f.groups.check(self.messages.values(), &self.config, now);
        if let Some(consumed) = f.paused {
            assert_eq!(
                self.counters.consumed, consumed,
                "{}: delivered while paused",
                self.name
            );
        }
        if let Some(m) = self.config.max_in_flight {
            assert!(
                self.in_flight <= u64::from(m).max(f.floor),
                "{}: {} in flight, max_in_flight is {m}",
                self.name,
                self.in_flight
            );
        }
        if let Some(t) = f.limited_until {
            assert!(t > now, "{}: an ended rate limit", self.name);
            assert!(ctx.timers.contains(t, &TimerKind::RateLimitEnd { queue }));
        }
        if let Some(w) = f.window.filter(|w| w.end > now) {
            assert!(w.count <= w.cap, "{}: window above its rate", self.name);
            let timer = TimerKind::RateWindow { queue };
            assert!(ctx.timers.contains(w.end, &timer), "{timer:?} at {}", w.end);
        }
        for (group, end) in f.groups.windows(now) {
            let timer = TimerKind::GroupWindow { queue, group };
            assert!(ctx.timers.contains(end, &timer), "{timer:?} at {end}");
        }
    }
}
