//! Internal invariants, checked after every step by tests and the simulation swarm.

use crate::api::JobState;
use crate::engine::Engine;
use crate::queue::{Queue, State, Taker};
use crate::timers::TimerKind;

impl Engine {
    /// Panics if the engine's internal bookkeeping is inconsistent: every message is in
    /// exactly one place, counters match contents, every deadline has its timer.
    pub fn check_invariants(&self) {
        let ctx = &self.ctx;
        let mut waiters = 0;
        let mut sessions = 0;
        let mut held_total = 0;
        for q in self.queues.values() {
            let held: u64 = q.messages.values().map(|m| m.held_bytes()).sum::<u64>()
                + q.dlq
                    .entries
                    .iter()
                    .map(|e| e.msg.held_bytes())
                    .sum::<u64>();
            assert_eq!(held, q.held, "{}: message bytes held", q.name);
            held_total += held;
            let (mut ready, mut delayed, mut in_flight) = (0u64, 0u64, 0u64);
            for m in q.messages.values() {
                let id = m.id;
                assert!(m.priority <= 9);
                match &m.state {
                    State::Ready => ready += 1,
                    State::Delayed { .. } => delayed += 1,
                    State::InFlight { .. } => {
                        in_flight += 1;
                        assert!(m.attempts >= 1 && m.attempts <= m.max_retries + 1);
                    }
                }
                if let Some((at, timer)) = q.state_timer(m) {
                    assert!(
                        ctx.timers.contains(at, &timer),
                        "{id}: no timer for {:?}",
                        m.state
                    );
                }
                if let (Some(at), false) = (m.expires_at(), m.expired) {
                    let t = TimerKind::MessageTtl { queue: q.id, id };
                    assert!(ctx.timers.contains(at, &t), "ttl of {id} has no timer");
                }
                assert!(!q.dlq.contains(id), "{id} is both queued and dead-lettered");
            }
            let stats = q.stats(ctx.now);
            assert_eq!(stats.ready, ready, "ready index size");
            assert_eq!(stats.delayed, delayed, "delayed count");
            assert_eq!(stats.in_flight, in_flight, "in-flight count");
            assert!(stats.dead_letter_count <= q.config.dlq_max.max(1));
            // A retry coming back from flight may exceed max_depth (nothing is refused or lost
            // for a message already accepted); publishes and redrives never do, so depth beyond
            // the limit is bounded by what was in flight.
            if q.config.prefetch > 0 || in_flight > 0 {
                let held: u64 = q
                    .messages
                    .values()
                    .filter(|m| {
                        matches!(
                            &m.state,
                            State::InFlight {
                                consumer: Some(_),
                                ..
                            }
                        )
                    })
                    .count() as u64;
                assert_eq!(held, q.consumers_held_total(), "consumer lease counts");
            }
            sessions += q.sessions.len();
            check_sessions(q, self, ctx.limits.max_session_credit);
            q.check_flow(ctx);
            for w in q.waiters() {
                waiters += 1;
                assert_eq!(self.waiter_queues.get(&w.id), Some(&q.id));
                assert!(
                    ctx.timers
                        .contains(w.deadline, &TimerKind::Wait { waiter: w.id })
                );
            }
        }
        assert_eq!(
            held_total + self.flows.held_bytes(),
            ctx.held_bytes,
            "message bytes held by the engine"
        );
        self.check_lifecycle();
        self.check_flows();
        assert_eq!(waiters, self.waiter_queues.len(), "waiter index size");
        assert_eq!(sessions, self.session_queues.len(), "session index size");
        self.kv.check(ctx);
    }
}

/// A session holds exactly the in-flight messages that name it, stands in its queue's line
/// once, and never holds more than its credit allows.
fn check_sessions(q: &Queue, engine: &Engine, max_credit: u32) {
    for (sid, s) in &q.sessions {
        assert_eq!(engine.session_queues.get(sid), Some(&q.id), "session index");
        let places = q
            .line
            .iter()
            .filter(|t| matches!(t, Taker::Session(x) if x == sid))
            .count();
        assert_eq!(places, 1, "session {sid:?} stands in the line once");
        assert!(s.window() <= u64::from(max_credit), "session window");
        for (id, lease) in &s.held {
            let m = q.messages.get(id).expect("a held message exists");
            assert!(
                matches!(&m.state, State::InFlight { lease: l, session: Some(x), .. }
                    if l == lease && x == sid),
                "{id}: held by {sid:?} but {:?}",
                m.state
            );
        }
    }
    for m in q.messages.values() {
        if let State::InFlight {
            session: Some(sid),
            lease,
            ..
        } = &m.state
        {
            let s = q
                .sessions
                .get(sid)
                .expect("an in-flight message names a live session");
            assert_eq!(
                s.held.get(&m.id),
                Some(lease),
                "{}: session's held set",
                m.id
            );
        }
    }
    let in_line = q
        .line
        .iter()
        .filter(|t| matches!(t, Taker::Session(_)))
        .count();
    assert_eq!(in_line, q.sessions.len(), "sessions in the line");
}

impl Engine {
    /// Kept jobs stay within their retention and byte budget; every schedule's next run and
    /// every job wait has its timer; held idempotency keys name unfinished jobs.
    fn check_lifecycle(&self) {
        let ctx = &self.ctx;
        let mut kept_bytes = 0;
        for q in self.queues.values() {
            let (completed, cancelled) = q.kept.counts();
            assert!(
                completed <= q.config.keep_completed.count,
                "{}: completed kept",
                q.name
            );
            assert!(
                cancelled <= q.config.keep_cancelled.count,
                "{}: cancelled kept",
                q.name
            );
            assert_eq!(
                completed + cancelled,
                q.kept.len(),
                "{}: kept index",
                q.name
            );
            for r in q.kept.records() {
                kept_bytes += r.bytes();
                assert!(r.state == JobState::Completed || r.state == JobState::Cancelled);
                assert!(
                    !q.messages.contains_key(&r.msg.id),
                    "{} kept and queued",
                    r.msg.id
                );
                assert!(
                    !q.dlq.contains(r.msg.id),
                    "{} kept and dead-lettered",
                    r.msg.id
                );
            }
            for (id, s) in &q.schedules {
                if let Some(at) = s.next_run_at {
                    let t = TimerKind::Schedule {
                        queue: q.id,
                        id: id.clone(),
                    };
                    assert!(ctx.timers.contains(at, &t), "schedule {id} has no timer");
                }
            }
        }
        assert_eq!(kept_bytes, ctx.kept_bytes, "bytes of kept jobs");
        assert!(ctx.kept_bytes <= ctx.limits.max_kept_bytes);
        for (w, (_, _, deadline)) in &ctx.job_waiters.by_waiter {
            let t = TimerKind::Wait { waiter: *w };
            assert!(
                ctx.timers.contains(*deadline, &t),
                "job waiter {w:?} has no timer"
            );
            assert!(!self.waiter_queues.contains_key(w), "{w:?} waits twice");
        }
        for (qid, id) in self.dedup.held() {
            let q = self.queues.get(&qid).expect("a held key's queue exists");
            assert!(
                q.messages.contains_key(&id),
                "{id}: a finished job holds its key"
            );
        }
    }
}
