//! A pub/sub subscriber: subscribes to topic patterns with some credit, grants more, polls
//! its buffer, unsubscribes some patterns or all; what it receives the oracle checks.

use synap_core::Command;

use crate::swarm::harness::Harness;

/// Topics the swarm publishes to.
pub(crate) const TOPICS: [&str; 4] = ["news.sport", "news.tech", "video.up", "video.up.hd"];
/// Patterns subscribers pick from.
const PATTERNS: [&str; 6] = [
    "news.*",
    "news.sport",
    "video.#",
    "#",
    "*.up",
    "video.up.hd",
];

/// A subscriber.
#[derive(Debug)]
pub(crate) struct Listener {
    id: String,
    next: u64,
    /// Messages pushed to it.
    pub(crate) received: usize,
}

impl Listener {
    pub(crate) fn new(i: usize) -> Self {
        Self {
            id: format!("listener-{i}"),
            next: 1_000,
            received: 0,
        }
    }

    /// Whether `id` names this subscriber.
    pub(crate) fn is(&self, id: &str) -> bool {
        self.id == id
    }

    pub(crate) fn next_at(&self, h: &Harness) -> Option<u64> {
        h.faults.then_some(self.next)
    }

    /// One pub/sub move, chosen at random.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        self.next = h.now + h.pick(10, 600);
        let id = self.id.clone();
        let pattern = |h: &mut Harness| PATTERNS[h.pick(0, PATTERNS.len() as u64 - 1) as usize];
        let cmd = match h.pick(0, 9) {
            0..=2 => Command::Subscribe {
                subscriber_id: Some(id),
                patterns: vec![pattern(h).to_owned()],
                credit: h.pick(0, 2) as u32,
                idle_ms: None,
            },
            3..=4 => Command::PubsubCredit {
                subscriber_id: id,
                credit: h.pick(1, 3) as u32,
            },
            5..=6 => Command::PubsubPoll {
                subscriber_id: id,
                max: h.pick(1, 4) as u32,
            },
            7 => Command::Unsubscribe {
                subscriber_id: id,
                patterns: Some(vec![pattern(h).to_owned()]),
            },
            8 if h.chance(0.3) => Command::Unsubscribe {
                subscriber_id: id,
                patterns: None,
            },
            _ => Command::PubsubStats,
        };
        // The oracle predicts and checks every answer, errors included.
        let _ = h.exec(cmd);
    }
}
