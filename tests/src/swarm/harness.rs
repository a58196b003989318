//! The harness: the engine under a fake clock, its command log and trace hash, the oracle fed
//! with every command, reply and event, and the notes that route events to actors.

use std::collections::VecDeque;

use synap_core::{
    Command, Delivery, Engine, EngineConfig, Error, Event, Limits, Millis, QueueStats, Reply, Rng,
    SessionId, WaiterId,
};
use xxhash_rust::xxh3::Xxh3;

use super::config::SwarmConfig;
use super::oracle::Oracle;

/// Restarts by full log replay per run (the others round-trip a snapshot).
const MAX_REPLAYS: usize = 3;
/// Credit a session may hold, free and in use together, in the swarm's engine (small, so
/// grants past it are tried).
pub(crate) const SESSION_WINDOW: u32 = 6;

/// A host's storage for the swarm's restarts: the server's real command log and snapshots (on
/// a file system that injects faults), instead of the swarm's own in-memory replay.
pub trait Store {
    /// An engine call accepted `cmd`, a mutation, at `now`: log it as the server would.
    fn record(&mut self, now: u64, cmd: &Command);
    /// The host restarts: the engine as recovered from what was stored. `live` is the engine
    /// before the restart (a snapshot may be taken of it first); `draw` is a random number
    /// for the store's fault choices.
    fn restart(&mut self, live: &Engine, draw: u64) -> Engine;
}

/// An event addressed to one actor, routed after the command that caused it.
#[derive(Debug)]
pub(crate) enum Note {
    /// A parked waiter got messages.
    Delivered(WaiterId, Vec<Delivery>),
    /// A parked waiter's wait ended with nothing.
    TimedOut(WaiterId),
    /// A parked wait for a job was answered.
    JobWaited(WaiterId),
    /// A host restart withdrew every parked waiter.
    WaitersDropped,
    /// Deliveries pushed to a session.
    Pushed(SessionId, Vec<Delivery>),
    /// The engine ended a session.
    Ended(SessionId),
    /// A pub/sub message pushed to a subscriber.
    PubSub(String),
}

/// Counts of what a run exercised, for the closing line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Sessions attached.
    pub(crate) attaches: usize,
    /// Deliveries pushed to sessions.
    pub(crate) session_pushes: usize,
    /// Messages given back (by detach or give-back).
    pub(crate) given_back: usize,
    /// Keyed publishes answered as duplicates.
    pub(crate) duplicates: usize,
}

/// Engine, clock, log, trace and oracle of one run.
pub(crate) struct Harness {
    pub(crate) cfg: SwarmConfig,
    rng: Rng,
    engine_cfg: EngineConfig,
    engine: Engine,
    pub(crate) now: u64,
    log: Vec<(u64, Command)>,
    trace: Xxh3,
    pub(crate) oracle: Oracle,
    /// The faulty phase is on.
    pub(crate) faults: bool,
    calls: usize,
    next_restart: usize,
    pub(crate) restarts: usize,
    replays: usize,
    pub(crate) notes: VecDeque<Note>,
    pub(crate) tally: Tally,
    /// `SIM_TRACE` is set: print every command and event (to read a failing seed).
    verbose: bool,
    /// Restarts recover from this store when there is one.
    store: Option<Box<dyn Store>>,
}

impl Harness {
    pub(crate) fn new(cfg: SwarmConfig) -> Self {
        let engine_cfg = EngineConfig {
            limits: Limits {
                subscriber_buffer: cfg.subscriber_buffer,
                max_session_credit: SESSION_WINDOW,
                ..Limits::default()
            },
            // Longer than any run: a retried key always finds its first publish.
            idempotency_window_ms: 1 << 40,
            ..EngineConfig::default()
        };
        Self {
            rng: Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            engine: Engine::new(engine_cfg.clone(), cfg.seed),
            engine_cfg,
            now: cfg.start_ms,
            log: Vec::new(),
            trace: Xxh3::new(),
            oracle: Oracle::new(&cfg, SESSION_WINDOW),
            faults: true,
            calls: 0,
            next_restart: cfg.restart_every,
            restarts: 0,
            replays: 0,
            notes: VecDeque::new(),
            tally: Tally::default(),
            verbose: std::env::var_os("SIM_TRACE").is_some(),
            store: None,
            cfg,
        }
    }

    /// Restarts go through `store` from now on.
    pub(crate) fn set_store(&mut self, store: Box<dyn Store>) {
        self.store = Some(store);
    }

    /// The engine's configuration in this run.
    pub(crate) fn engine_config(&self) -> &EngineConfig {
        &self.engine_cfg
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.next_f64() < p
    }

    pub(crate) fn pick(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    /// A random queue index.
    pub(crate) fn any_queue(&mut self) -> usize {
        self.pick(0, self.cfg.queues.len() as u64 - 1) as usize
    }

    /// The trace hash so far.
    pub(crate) fn digest(&self) -> u64 {
        self.trace.digest()
    }

    /// When the engine's next timer is due.
    pub(crate) fn next_timer(&self) -> Option<u64> {
        self.engine.poll_timeout().map(|t| t.0)
    }

    /// Sends one command: logs it, checks invariants, hashes the trace, feeds the oracle the
    /// command, its reply and its events.
    pub(crate) fn exec(&mut self, cmd: Command) -> Result<Reply, Error> {
        // The engine runs overdue timers before a command. For the commands whose check needs
        // the state right before them, the host runs those timers itself first, so that their
        // events reach the oracle before the command's; other commands leave the catching up
        // to the engine.
        let needs_fresh_state = matches!(
            cmd,
            Command::Detach { .. }
                | Command::SessionCredit { .. }
                | Command::DropConsumers
                | Command::GiveBack { .. }
                | Command::DeleteQueue { .. }
                | Command::Cancel { .. }
        );
        if needs_fresh_state && self.next_timer().is_some_and(|t| t <= self.now) {
            self.timeout();
        }
        // A refused flow must change nothing: its call starts from a state with no timer due
        // and the clock caught up, whose digest it must leave as it found it.
        let flow = matches!(cmd, Command::AddFlow { .. });
        if flow
            && (self.next_timer().is_some_and(|t| t <= self.now) || self.engine.now().0 < self.now)
        {
            self.timeout();
        }
        let digest_before = flow.then(|| self.engine.state_digest());
        self.log.push((self.now, cmd.clone()));
        if self.verbose {
            eprintln!("{} {cmd:?}", self.now);
        }
        let result = self.engine.handle(Millis(self.now), cmd.clone());
        self.engine.check_invariants();
        if let Some(store) = &mut self.store
            && result.is_ok()
            && cmd.is_mutation()
        {
            store.record(self.now, &cmd);
        }
        let line = format!(
            "{} {} {}\n",
            self.now,
            serde_json::to_string(&cmd).expect("command serializes"),
            serde_json::to_string(&result).expect("reply serializes")
        );
        self.trace.update(line.as_bytes());
        self.oracle.before(self.now, &cmd, &result);
        let events = self.drain();
        if let (Some(digest), Err(e)) = (digest_before, &result) {
            assert_eq!(events, 0, "a refused flow ({e:?}) made events");
            let now = self.engine.state_digest();
            assert_eq!(
                now, digest,
                "a refused flow ({e:?}) changed the engine's state"
            );
        }
        self.oracle.after(&cmd, &result);
        if matches!(cmd, Command::DropConsumers) {
            self.notes.push_back(Note::WaitersDropped);
        }
        self.calls += 1;
        match &result {
            Ok(Reply::Attached { .. }) => self.tally.attaches += 1,
            Ok(Reply::Detached { returned } | Reply::GivenBack { returned }) => {
                self.tally.given_back += *returned as usize;
            }
            Ok(Reply::Published(p)) => self.tally.duplicates += usize::from(p.duplicate),
            Ok(Reply::PublishedBatch { messages }) => {
                self.tally.duplicates += messages.iter().filter(|p| p.duplicate).count();
            }
            _ => {}
        }
        result
    }

    /// Runs due timers and checks none survived.
    pub(crate) fn timeout(&mut self) {
        let now = Millis(self.now);
        self.oracle.now = self.now;
        self.engine.handle_timeout(now);
        self.trace
            .update(format!("{} timeout\n", self.now).as_bytes());
        self.engine.check_invariants();
        let _ = self.drain();
        self.oracle.end_of_call();
        if let Some(t) = self.engine.poll_timeout() {
            assert!(
                t > now,
                "rule 7: a timer due at {t} survived handle_timeout({now})"
            );
        }
    }

    /// Drains events into the oracle and the notes; how many there were.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(event) = self.engine.poll_event() {
            n += 1;
            let line = serde_json::to_string(&event).expect("event serializes");
            self.trace.update(line.as_bytes());
            if self.verbose {
                eprintln!("   event {event:?}");
            }
            self.oracle.event(&event);
            let note = match event {
                Event::Delivered {
                    waiter_id,
                    messages,
                } => Note::Delivered(waiter_id, messages),
                Event::WaitTimedOut { waiter_id } => Note::TimedOut(waiter_id),
                Event::Pushed {
                    session_id,
                    messages,
                } => {
                    self.tally.session_pushes += messages.len();
                    Note::Pushed(session_id, messages)
                }
                Event::SessionEnded { session_id } => Note::Ended(session_id),
                Event::PubSub { subscriber_id, .. } => Note::PubSub(subscriber_id),
                Event::JobWaited { waiter_id, .. } => Note::JobWaited(waiter_id),
                Event::Observed(_) | Event::KeyExpired { .. } | Event::Progress { .. } => continue,
            };
            self.notes.push_back(note);
        }
        n
    }

    /// Statistics of queue `q`. A read, so neither logged nor hashed: like `timeout`, it may
    /// run due timers (the host skipped them), whose events are drained as usual.
    pub(crate) fn stats(&mut self, q: usize) -> QueueStats {
        let queue = self.cfg.queues[q].name.clone();
        self.oracle.now = self.now;
        let reply = self
            .engine
            .handle(Millis(self.now), Command::Stats { queue });
        if self.drain() > 0 {
            self.engine.check_invariants();
            self.oracle.end_of_call();
        }
        match reply {
            Ok(Reply::Stats(s)) => *s,
            other => panic!("stats answered {other:?}"),
        }
    }

    /// Checks every queue's counts, waiters and sessions against the oracle.
    pub(crate) fn check_queues(&mut self) {
        for q in 0..self.cfg.queues.len() {
            let s = self.stats(q);
            let c = self.cfg.queue(q);
            assert!(
                s.kept_jobs <= c.keep_completed.count + c.keep_cancelled.count,
                "{}: retention kept {} jobs",
                s.queue,
                s.kept_jobs
            );
            if s.schedules > 0 {
                let queue = s.queue.clone();
                let Ok(Reply::Schedules { schedules }) =
                    self.exec(Command::ListSchedules { queue })
                else {
                    panic!("schedules of {} not listed", s.queue);
                };
                let runs: u64 = schedules.iter().map(|x| x.runs).sum();
                assert_eq!(
                    runs,
                    self.oracle.schedules.runs[q].len() as u64,
                    "{}: schedule runs against jobs published",
                    s.queue
                );
            }
            self.oracle.check_kept(q, s.kept_jobs);
            self.oracle.ledger.check_stats(q, &s);
            self.oracle.check_flow_stats(q, &s);
            self.oracle.check_waiting_children(q, &s);
            let prefetch = self.cfg.queue(q).prefetch;
            self.oracle
                .takers
                .check(q, prefetch, &s, &self.oracle.ledger);
        }
    }

    /// Restarts the host when it is due: the engine is rebuilt by replaying the command log
    /// or from a snapshot (the state must be the same), then, as the real server does after
    /// recovery, every waiter and session is dropped: their clients are gone.
    pub(crate) fn maybe_restart(&mut self) {
        if !self.faults || self.calls < self.next_restart {
            return;
        }
        self.next_restart = self.calls + self.cfg.restart_every;
        let digest = self.engine.state_digest();
        let rebuilt = if let Some(store) = &mut self.store {
            let draw = self.rng.next_u64();
            let mut e = store.restart(&self.engine, draw);
            e.handle_timeout(self.engine.now());
            while e.poll_event().is_some() {}
            e
        } else if self.replays < MAX_REPLAYS && self.chance(0.3) {
            self.replays += 1;
            let mut e = Engine::new(self.engine_cfg.clone(), self.cfg.seed);
            for (now, cmd) in &self.log {
                let _ = e.handle(Millis(*now), cmd.clone());
                while e.poll_event().is_some() {}
            }
            e.handle_timeout(self.engine.now());
            while e.poll_event().is_some() {}
            e
        } else {
            let text = serde_json::to_string(&self.engine).expect("engine serializes");
            serde_json::from_str(&text).expect("engine deserializes")
        };
        assert_eq!(rebuilt.state_digest(), digest, "restart changed the state");
        self.engine = rebuilt;
        self.restarts += 1;
        // The host was down a while; its first command says since when, so each schedule
        // makes one catch-up run for the slots it missed.
        let since = self.engine.now();
        if self.cfg.downtime_ms > 0 {
            self.now += self.pick(0, self.cfg.downtime_ms);
        }
        assert!(matches!(
            self.exec(Command::Resume { since }),
            Ok(Reply::Resumed { .. })
        ));
        assert!(matches!(
            self.exec(Command::DropConsumers),
            Ok(Reply::ConsumersDropped { .. })
        ));
    }
}
