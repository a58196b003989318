//! The operator: pauses a queue and resumes it a while later, and rate-limits a queue for a
//! while as a worker whose downstream answered 429 does (DESIGN.md §12). Before the run
//! settles every pause is resumed; worker rate limits end by themselves.

use std::collections::BTreeMap;

use synap_core::{Command, Reply};

use crate::swarm::harness::Harness;

/// Pauses and rate limits, and when each pause ends.
#[derive(Debug, Default)]
pub(crate) struct Operator {
    /// Paused queues and when they are resumed.
    resume_at: BTreeMap<usize, u64>,
    /// Pauses made.
    pub(crate) pauses: usize,
    /// Worker rate limits applied.
    pub(crate) limits: usize,
}

impl Operator {
    /// When the next pause ends.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.resume_at.values().min().copied()
    }

    /// Resumes the pauses that are due, then maybe pauses or rate-limits a queue.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        let due: Vec<usize> = self
            .resume_at
            .iter()
            .filter(|(_, t)| **t <= h.now)
            .map(|(q, _)| *q)
            .collect();
        for q in due {
            self.resume(h, q);
        }
        if !h.faults {
            return;
        }
        if h.chance(h.cfg.p_pause) {
            let q = h.any_queue();
            if !self.resume_at.contains_key(&q) {
                let queue = h.cfg.queues[q].name.clone();
                let reply = h.exec(Command::PauseQueue { queue });
                assert_eq!(reply, Ok(Reply::QueuePaused { paused: true }), "pause");
                self.pauses += 1;
                let until = h.now + h.pick(10, 3_000);
                self.resume_at.insert(q, until);
            }
        }
        if h.chance(h.cfg.p_worker_limit) {
            let q = h.any_queue();
            let queue = h.cfg.queues[q].name.clone();
            let for_ms = h.pick(1, 2_000);
            let reply = h.exec(Command::RateLimit { queue, for_ms });
            assert!(matches!(reply, Ok(Reply::RateLimited { .. })), "{reply:?}");
            self.limits += 1;
        }
    }

    fn resume(&mut self, h: &mut Harness, q: usize) {
        self.resume_at.remove(&q);
        let queue = h.cfg.queues[q].name.clone();
        let reply = h.exec(Command::ResumeQueue { queue });
        assert_eq!(reply, Ok(Reply::QueuePaused { paused: false }), "resume");
    }

    /// The faults end: every paused queue is resumed now.
    pub(crate) fn calm_down(&mut self, h: &mut Harness) {
        for q in self.resume_at.keys().copied().collect::<Vec<_>>() {
            self.resume(h, q);
        }
    }
}
