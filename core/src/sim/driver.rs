//! The part of a run shared by simulation and replay: the engine on a virtual clock, the trace
//! hash, the metrics and the time series sampler.
//!
//! Every input goes through `Driver::handle` or `Driver::fire_timers`, which hash the step,
//! drain the engine's events into the metrics and keep the events the actors must react to.

use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use super::metrics::Metrics;
use super::report::Sample;
use crate::{Command, Engine, Error, Event, MessageId, Millis, ObservedKind, Reply};

/// Tags separating the parts of the trace, so that different traces never concatenate to the
/// same bytes.
const TAG_COMMAND: u8 = 1;
const TAG_TIMERS: u8 = 2;
const TAG_EVENT: u8 = 3;

/// The engine plus everything measured about it.
pub(crate) struct Driver {
    pub(crate) engine: Engine,
    hasher: Xxh3,
    pub(crate) metrics: Metrics,
    /// Events the actors still have to see (long-poll answers).
    pub(crate) inbox: Vec<Event>,
    pub(crate) series: Vec<Sample>,
    pub(crate) now: u64,
    pub(crate) commands: u64,
    pub(crate) events_processed: u64,
    pub(crate) rejected_publishes: u64,
    /// When `Some`, the queues and ids of messages published while engine timers ran
    /// (schedule runs), until the world takes them.
    pub(crate) timer_published: Option<Vec<(Arc<str>, MessageId)>>,
    interval_ms: u64,
    next_sample: Option<u64>,
    end: u64,
    last_sample_at: u64,
}

impl Driver {
    /// A driver sampling every `interval_ms` from `start` and once more at `end`.
    pub(crate) fn new(
        engine: Engine,
        metrics: Metrics,
        start: u64,
        interval_ms: u64,
        end: u64,
    ) -> Self {
        Self {
            engine,
            hasher: Xxh3::new(),
            metrics,
            inbox: Vec::new(),
            series: Vec::new(),
            now: start,
            commands: 0,
            events_processed: 0,
            rejected_publishes: 0,
            timer_published: None,
            interval_ms,
            next_sample: Some(start.saturating_add(interval_ms).min(end)),
            end,
            last_sample_at: start,
        }
    }

    /// Applies a command at `now` and drains its events.
    pub(crate) fn handle(&mut self, now: u64, cmd: Command) -> Result<Reply, Error> {
        self.now = self.now.max(now);
        self.commands += 1;
        self.hasher.update(&[TAG_COMMAND]);
        self.hasher.update(&now.to_le_bytes());
        self.hash_json(&cmd);
        let result = self.engine.handle(Millis(now), cmd);
        match &result {
            Ok(reply) => self.hash_json(reply),
            Err(e) => self.hash_json(e),
        }
        self.drain(false);
        result
    }

    /// Runs the engine timers due at `now` and drains their events.
    pub(crate) fn fire_timers(&mut self, now: u64) {
        self.now = self.now.max(now);
        self.events_processed += 1;
        self.hasher.update(&[TAG_TIMERS]);
        self.hasher.update(&now.to_le_bytes());
        self.engine.handle_timeout(Millis(now));
        self.drain(true);
    }

    fn drain(&mut self, timers: bool) {
        while let Some(event) = self.engine.poll_event() {
            self.events_processed += 1;
            self.hasher.update(&[TAG_EVENT]);
            self.hash_json(&event);
            match event {
                Event::Observed(o) => {
                    self.metrics.observe(&o);
                    if let (true, ObservedKind::Published, Some(ids), Some(id)) =
                        (timers, o.kind, &mut self.timer_published, o.message_id)
                    {
                        ids.push((o.queue.clone(), id));
                    }
                }
                Event::Delivered { .. } | Event::WaitTimedOut { .. } => self.inbox.push(event),
                // The simulator's workers long-poll; they never attach sessions.
                Event::PubSub { .. }
                | Event::KeyExpired { .. }
                | Event::Pushed { .. }
                | Event::SessionEnded { .. }
                | Event::Progress { .. }
                | Event::JobWaited { .. } => {}
            }
        }
    }

    fn hash_json<T: serde::Serialize>(&mut self, value: &T) {
        crate::digest::hash_json(&mut self.hasher, value);
    }

    /// The trace hash so far.
    pub(crate) fn run_hash(&self) -> String {
        format!("{:016x}", self.hasher.digest())
    }

    /// The earliest of the engine's next timer and the next sample.
    pub(crate) fn next_internal(&self) -> Option<u64> {
        let timer = self.engine.poll_timeout().map(|m| m.0);
        match (timer, self.next_sample) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether an engine timer is due at or before `t`.
    pub(crate) fn timer_due(&self, t: u64) -> bool {
        self.engine.poll_timeout().is_some_and(|m| m.0 <= t)
    }

    /// Whether the sample at the end of the run has been taken.
    pub(crate) fn finished(&self) -> bool {
        self.next_sample.is_none()
    }

    /// Records one point of the time series: queue sizes summed over all queues, and the
    /// interval's counts. Reads go through `Stats` commands, so they are part of the trace.
    pub(crate) fn sample(&mut self, t: u64) {
        self.now = self.now.max(t);
        let mut point = Sample {
            t_ms: t,
            ready: 0,
            delayed: 0,
            in_flight: 0,
            dead_letter: 0,
            waiters: 0,
            published: 0,
            completed: 0,
            dead_lettered: 0,
            cancelled: 0,
            throughput_per_sec: 0.0,
            wait_ms: Vec::new(),
            group_wait_ms: Vec::new(),
            flows: None,
        };
        let mut waiting_children = 0;
        let queues = match self.handle(t, Command::ListQueues) {
            Ok(Reply::Queues { queues }) => queues,
            _ => Vec::new(),
        };
        for queue in queues {
            if let Ok(Reply::Stats(s)) = self.handle(t, Command::Stats { queue }) {
                point.ready += s.ready;
                point.delayed += s.delayed;
                point.in_flight += s.in_flight;
                point.dead_letter += s.dead_letter_count;
                point.waiters += s.waiters;
                waiting_children += s.waiting_children;
            }
        }
        let m = &mut self.metrics;
        let now = [m.published, m.completed, m.dead_lettered, m.cancelled];
        point.published = now[0] - m.last[0];
        point.completed = now[1] - m.last[1];
        point.dead_lettered = now[2] - m.last[2];
        point.cancelled = now[3] - m.last[3];
        m.last = now;
        let span_ms = t.saturating_sub(self.last_sample_at).max(1);
        point.throughput_per_sec = point.completed as f64 * 1000.0 / span_ms as f64;
        point.wait_ms = m.take_interval_waits();
        point.group_wait_ms = m.take_interval_class_waits();
        point.flows = m.take_interval_flows(waiting_children);
        self.series.push(point);
        self.last_sample_at = t;
        self.next_sample = if t >= self.end {
            None
        } else {
            Some(t.saturating_add(self.interval_ms).min(self.end))
        };
    }
}
