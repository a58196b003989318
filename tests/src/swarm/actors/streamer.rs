//! A streaming consumer: attaches a session to a queue with a credit and lease length, works
//! what is pushed to it, grants more credit, detaches with or without give-back, and on a
//! crash vanishes holding its leases, leaving its session attached (a zombie) until it is
//! detached later, or never, when the leases simply run out.

use synap_core::{Command, Delivery, Reply, SessionId};

use super::hands::{Hands, Plan};
use crate::swarm::harness::{Harness, SESSION_WINDOW};

/// Largest window a streamer asks for: past the engine's limit, so refusals are tried.
const WANTED_WINDOW: u64 = SESSION_WINDOW as u64 + 2;

/// The session a streamer has attached.
#[derive(Debug)]
struct Link {
    session: SessionId,
    queue: usize,
    /// Credit granted so far (attach plus grants), as the streamer counts it.
    window: u64,
}

/// A streaming worker.
#[derive(Debug)]
pub(crate) struct Streamer {
    index: usize,
    hands: Hands,
    link: Option<Link>,
    /// Sessions it abandoned in a crash, still attached.
    zombies: Vec<SessionId>,
    next_move: u64,
    crashed_until: Option<u64>,
    attaches: u64,
}

impl Streamer {
    pub(crate) fn new(index: usize) -> Self {
        Self {
            index,
            hands: Hands::default(),
            link: None,
            zombies: Vec::new(),
            next_move: 1_000,
            crashed_until: None,
            attaches: 0,
        }
    }

    pub(crate) fn next_at(&self) -> Option<u64> {
        let t = self.crashed_until.unwrap_or(self.next_move);
        Some(self.hands.next_at().map_or(t, |a| a.min(t)))
    }

    /// Whether `s` is (or was) this streamer's session.
    pub(crate) fn owns(&self, s: SessionId) -> bool {
        self.link.as_ref().is_some_and(|l| l.session == s) || self.zombies.contains(&s)
    }

    /// Deliveries were pushed to one of its sessions; a zombie's are ignored.
    pub(crate) fn pushed(&mut self, h: &mut Harness, s: SessionId, messages: Vec<Delivery>) {
        if self.zombies.contains(&s) {
            return;
        }
        for d in messages {
            self.hands.hold(h, d);
        }
    }

    /// The engine ended one of its sessions (a restart dropped it).
    pub(crate) fn ended(&mut self, h: &mut Harness, s: SessionId) {
        self.zombies.retain(|z| *z != s);
        if self.link.as_ref().is_some_and(|l| l.session == s) {
            self.link = None;
            self.next_move = h.now + h.pick(0, 200);
        }
    }

    /// Fault-free phase: revive and ack everything promptly.
    pub(crate) fn calm_down(&mut self, now: u64) {
        self.crashed_until = self.crashed_until.map(|_| now);
        self.hands.calm_down(now);
        self.next_move = self.next_move.min(now);
    }

    /// Does whatever is due: revive, work held deliveries, or move its session.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        let now = h.now;
        if let Some(t) = self.crashed_until {
            if t > now {
                return;
            }
            self.crashed_until = None;
            self.revive(h);
        }
        if !h.faults && !self.zombies.is_empty() {
            self.revive(h);
        }
        for held in self.hands.due(now) {
            if held.plan == Plan::Crash {
                self.crash(h);
                return;
            }
            self.hands.settle(h, held);
        }
        if self.next_move <= now {
            self.next_move = now + h.pick(20, 1_000);
            self.step_session(h);
        }
    }

    /// Back from a crash: its zombies are detached now (either way), or left for later,
    /// except in the fault-free phase, which detaches them all.
    fn revive(&mut self, h: &mut Harness) {
        for z in std::mem::take(&mut self.zombies) {
            if h.faults && h.chance(0.5) {
                self.zombies.push(z);
                continue;
            }
            let give_back = !h.faults || h.chance(0.5);
            let _ = h.exec(Command::Detach {
                session_id: z,
                give_back,
            });
        }
    }

    fn crash(&mut self, h: &mut Harness) {
        self.hands.drop_all();
        if let Some(l) = self.link.take() {
            self.zombies.push(l.session);
        }
        let longest = h.cfg.queues.iter().map(|q| q.config.ack_deadline_ms).max();
        let silence = h.pick(1, 3 * longest.unwrap_or(1_000));
        self.crashed_until = Some(h.now + silence);
    }

    /// Attach, grant, detach or (in the fault-free phase) move to the next queue.
    fn step_session(&mut self, h: &mut Harness) {
        let Some(link) = &self.link else {
            return self.attach(h);
        };
        let (session, queue, window) = (link.session, link.queue, link.window);
        if !h.faults {
            if self.hands.len() == 0 && h.cfg.queues.len() > 1 {
                self.detach(h, true);
                self.attach_to(h, (queue + 1) % h.cfg.queues.len());
            } else if window == 0 {
                self.grant(h, session, 2);
            }
            return;
        }
        if h.chance(h.cfg.p_detach) {
            let give_back = h.chance(0.5);
            return self.detach(h, give_back);
        }
        if window < WANTED_WINDOW && h.chance(0.5) {
            let more = h.pick(1, 3) as u32;
            self.grant(h, session, more);
        }
    }

    fn grant(&mut self, h: &mut Harness, session: SessionId, credit: u32) {
        let cmd = Command::SessionCredit {
            session_id: session,
            credit,
        };
        if let (Ok(Reply::SessionCredited { .. }), Some(l)) = (h.exec(cmd), &mut self.link) {
            l.window += u64::from(credit);
        }
    }

    /// Detaches its session; with give-back, the deliveries it holds are gone from its hands.
    fn detach(&mut self, h: &mut Harness, give_back: bool) {
        let Some(l) = self.link.take() else { return };
        let _ = h.exec(Command::Detach {
            session_id: l.session,
            give_back,
        });
        if give_back {
            self.hands.drop_all();
        }
    }

    fn attach(&mut self, h: &mut Harness) {
        let q = h.any_queue();
        self.attach_to(h, q);
    }

    fn attach_to(&mut self, h: &mut Harness, q: usize) {
        let credit = if h.faults { h.pick(0, 4) } else { h.pick(1, 4) } as u32;
        let lease_ms = if h.chance(0.5) {
            None
        } else {
            Some(h.pick(10, 3_000))
        };
        self.attaches += 1;
        let consumer_id = h
            .chance(0.5)
            .then(|| format!("stream-{}-{}", self.index, self.attaches));
        let cmd = Command::Attach {
            queue: h.cfg.queues[q].name.clone(),
            consumer_id,
            credit,
            lease_ms,
        };
        let Ok(Reply::Attached { session_id, .. }) = h.exec(cmd) else {
            panic!("attach refused");
        };
        self.link = Some(Link {
            session: session_id,
            queue: q,
            window: u64::from(credit),
        });
    }
}
