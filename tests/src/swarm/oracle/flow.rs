//! Flow control's rules (DESIGN.md §12), checked at every delivery: a paused queue delivers
//! nothing, a worker's rate limit holds its queue back, leases never pass `max_in_flight` nor
//! a group's limit, no rate window (queue or group) passes its `max`, and an ordered group
//! delivers in publish order, one at a time, its retried message keeping the head. Snoozes
//! (kept in the ledger) spend no attempt and end in `snoozed_out` past `max_snoozes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use synap_core::{Command, Error, MessageId, NackAction, QueueStats, RateLimit, Reply};

use super::{Failing, Oracle, Place};

/// A rate window as the engine keeps it: opened by the first delivery after the previous one
/// closed, lasting `per_ms`.
#[derive(Clone, Copy, Debug)]
struct Window {
    end: u64,
    count: u32,
}

impl Window {
    /// Counts a delivery at `at` under `rate`, panicking past its `max`.
    fn count(w: &mut Option<Self>, rate: Option<&RateLimit>, at: u64, what: &str) {
        let Some(rate) = rate else { return };
        match w {
            Some(w) if at < w.end => {
                w.count += 1;
                assert!(
                    w.count <= rate.max,
                    "{what}: {} deliveries in a window of {rate:?} (ends at {})",
                    w.count,
                    w.end
                );
            }
            _ => {
                *w = Some(Self {
                    end: at + rate.per_ms,
                    count: 1,
                })
            }
        }
    }
}

/// What the oracle knows of one queue's flow state.
#[derive(Clone, Debug, Default)]
struct QueueFlow {
    paused: bool,
    limited_until: u64,
    window: Option<Window>,
    group_windows: BTreeMap<Arc<str>, Option<Window>>,
}

/// Every queue's flow state, and counts of what was exercised.
#[derive(Debug, Default)]
pub(crate) struct FlowModel {
    queues: BTreeMap<usize, QueueFlow>,
    /// Deliveries of grouped messages.
    pub(crate) grouped_deliveries: usize,
    /// Snoozes answered `snoozed`, and messages snoozed out.
    pub(crate) snoozes: usize,
    /// See `snoozes`.
    pub(crate) snoozed_out: usize,
    /// Stats that showed ready messages held back.
    pub(crate) held_back: usize,
}

impl Oracle {
    /// A pause, resume or worker rate limit was answered.
    pub(super) fn flow_command(&mut self, now: u64, cmd: &Command, result: &Result<Reply, Error>) {
        match cmd {
            Command::PauseQueue { queue } | Command::ResumeQueue { queue } => {
                let paused = matches!(cmd, Command::PauseQueue { .. });
                assert_eq!(result, &Ok(Reply::QueuePaused { paused }), "{cmd:?}");
                let q = self.cfg.queue_index(queue);
                self.flow.queues.entry(q).or_default().paused = paused;
            }
            Command::RateLimit { queue, for_ms } => {
                let q = self.cfg.queue_index(queue);
                let f = self.flow.queues.entry(q).or_default();
                f.limited_until = f.limited_until.max(now + for_ms);
                let until = synap_core::Millis(f.limited_until);
                assert_eq!(result, &Ok(Reply::RateLimited { until }), "{cmd:?}");
            }
            _ => unreachable!("not a flow command: {cmd:?}"),
        }
    }

    /// A queue was deleted: its flow state went with it.
    pub(super) fn flow_deleted(&mut self, q: usize) {
        self.flow.queues.remove(&q);
    }

    /// A snooze of `id` (a valid lease, not cancelled) answered `action`: dead-lettered when
    /// expired or past `max_snoozes`, else snoozed.
    pub(super) fn snoozed(&mut self, id: MessageId, now: u64, action: NackAction) {
        let e = &self.ledger.map[&id];
        let max = self.cfg.queue(e.queue).max_snoozes;
        let expired = e.expired || e.expires_at.is_some_and(|x| x <= now);
        let out = e.snoozes + 1 > max;
        self.ledger.snoozing = Some(id);
        if out && !expired {
            self.flow.snoozed_out += 1;
        } else if !out && !expired {
            self.flow.snoozes += 1;
        }
        let want = if expired || out {
            NackAction::DeadLettered
        } else {
            NackAction::Snoozed
        };
        assert_eq!(action, want, "snooze of {id}");
        self.ledger.failing = Some(Failing::Nack(id, true));
    }

    /// `id` of queue `q` was just delivered at `at` (the ledger holds it in flight already).
    pub(super) fn flow_delivered(&mut self, q: usize, id: MessageId, at: u64) {
        let cfg = self.cfg.queue(q).clone();
        let name = &self.cfg.queues[q].name;
        let ledger = &self.ledger;
        let f = self.flow.queues.entry(q).or_default();
        assert!(
            !f.paused,
            "{name}: {id} delivered while the queue is paused"
        );
        assert!(
            at >= f.limited_until,
            "{name}: {id} delivered at {at}, rate limited until {}",
            f.limited_until
        );
        let in_queue = || ledger.map.values().filter(|e| e.queue == q);
        let leased = |p: &Place| matches!(p, Place::InFlight { .. });
        if let Some(max) = cfg.max_in_flight {
            let n = in_queue().filter(|e| leased(&e.place)).count();
            assert!(
                n <= max as usize,
                "{name}: {n} in flight, max_in_flight {max}"
            );
        }
        Window::count(&mut f.window, cfg.rate_limit.as_ref(), at, name);
        let e = &ledger.map[&id];
        let Some(group) = e.group.clone() else { return };
        self.flow.grouped_deliveries += 1;
        let of_group = || in_queue().filter(|x| x.group.as_ref() == Some(&group));
        if let Some(limit) = cfg.group_limit() {
            let n = of_group().filter(|x| leased(&x.place)).count();
            assert!(
                n <= limit as usize,
                "{name}: group {group} holds {n} deliveries, its limit is {limit}"
            );
        }
        let w = f.group_windows.entry(Arc::clone(&group)).or_default();
        Window::count(
            w,
            cfg.group_rate_limit.as_ref(),
            at,
            &format!("{name}/{group}"),
        );
        if cfg.ordered_groups {
            // Earlier messages of the group still waiting (but those in their publish delay,
            // not yet in the group's order) must have gone first. A delayed publish joins the
            // order when its delay ends (a tie at that millisecond is not judged).
            let (order, ready_at) = (e.order, e.ready_at);
            let delayed = |x: &super::ledger::Entry| x.ready_at != x.published_at;
            let before = |x: &super::ledger::Entry| {
                x.ready_at < ready_at
                    || (x.ready_at == ready_at && !delayed(x) && !delayed(e) && x.order < order)
            };
            let ahead = ledger.map.iter().find(|(_, x)| {
                x.queue == q
                    && x.group.as_ref() == Some(&group)
                    && before(x)
                    && x.place == Place::Waiting
                    && x.delayed_until.is_none_or(|t| t < at)
            });
            if let Some((earlier, x)) = ahead {
                panic!(
                    "{name}: ordered group {group} delivered {id} (order {order}) before \
                     {earlier} (order {}, {} deliveries)",
                    x.order, x.deliveries
                );
            }
        }
    }

    /// Checks a queue's flow figures in its stats.
    pub(crate) fn check_flow_stats(&mut self, q: usize, s: &QueueStats) {
        let paused = self.flow.queues.get(&q).is_some_and(|f| f.paused);
        assert_eq!(s.paused, paused, "{}: paused", s.queue);
        let limited = self.flow.queues.get(&q).map_or(0, |f| f.limited_until);
        if limited > self.now {
            let until = s.rate_limited_until_ms.map(|m| m.0);
            assert!(
                until.is_some_and(|u| u >= limited),
                "{}: rate limited until {limited}, stats say {until:?}",
                s.queue
            );
        }
        self.flow.held_back += usize::from(s.held_back > 0);
    }
}
