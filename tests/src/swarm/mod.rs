//! The simulation swarm: seeded runs of the real engine under a fake clock, with consumers
//! that crash, ack late, twice or with stale leases, nack and extend; a host that skips timer
//! calls and whose clock jumps; restarts by command-log replay and by snapshot. An oracle
//! outside the engine checks every step; a fault-free phase then requires every message to
//! end acked or dead-lettered. Model: quinn's `Pair::step`, TigerBeetle's VOPR.

mod actors;
mod config;
mod oracle;

use std::collections::BTreeMap;

use synap_core::{Command, Engine, EngineConfig, Error, Event, Millis, Reply, Rng};
use xxhash_rust::xxh3::Xxh3;

pub use config::SwarmConfig;
pub use oracle::Oracle;

use actors::{Consumer, KvModel, Publisher};

/// The queue every swarm run uses.
pub const QUEUE: &str = "swarm";
/// Steps allowed for the fault-free phase to settle every message.
const LIVENESS_STEPS: usize = 50_000;
/// Steps of the faulty phase at most (it ends earlier once everything is published).
const SAFETY_STEPS: usize = 5_000;
/// Restarts by full log replay per run (the others round-trip a snapshot).
const MAX_REPLAYS: usize = 3;

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Hash of the whole `(now, command, reply, events)` trace.
    pub trace_hash: u64,
    /// Loop steps taken.
    pub steps: usize,
    /// Messages published.
    pub published: usize,
    /// Messages acked.
    pub acked: usize,
    /// Messages dead-lettered.
    pub dead: usize,
    /// Restarts performed.
    pub restarts: usize,
}

/// One run's whole world: engine, clock, actors, oracle and trace.
pub struct World {
    pub(crate) cfg: SwarmConfig,
    pub(crate) rng: Rng,
    engine: Engine,
    pub(crate) now: u64,
    log: Vec<(u64, Command)>,
    trace: Xxh3,
    pub(crate) oracle: Oracle,
    consumers: Vec<Consumer>,
    publisher: Publisher,
    kv: KvModel,
    pub(crate) faults: bool,
    calls: usize,
    restarts: usize,
    replays: usize,
}

/// Runs one seed to the end, panicking on any violation.
#[must_use]
pub fn run(seed: u64) -> Outcome {
    let cfg = SwarmConfig::from_seed(seed);
    let mut w = World::new(cfg);
    w.run()
}

impl World {
    fn new(cfg: SwarmConfig) -> Self {
        let consumers = (0..cfg.consumers)
            .map(|i| Consumer::new(i, cfg.seed))
            .collect();
        Self {
            rng: Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            engine: Engine::new(EngineConfig::default(), cfg.seed),
            now: 1_000,
            log: Vec::new(),
            trace: Xxh3::new(),
            oracle: Oracle::default(),
            consumers,
            publisher: Publisher::new(cfg.messages),
            kv: KvModel::default(),
            faults: true,
            calls: 0,
            restarts: 0,
            replays: 0,
            cfg,
        }
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.next_f64() < p
    }

    pub(crate) fn pick(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    fn run(&mut self) -> Outcome {
        let queue = Command::CreateQueue {
            queue: QUEUE.into(),
            config: Some(self.cfg.queue.clone()),
        };
        self.exec(queue).expect("queue created");
        let mut steps = 0;
        while self.faults {
            steps += 1;
            if steps > SAFETY_STEPS || (self.publisher.done() && self.chance(0.01)) {
                self.turn_faults_off();
            }
            self.step();
        }
        let mut calm = 0;
        while !self.settled() {
            calm += 1;
            assert!(
                calm < LIVENESS_STEPS,
                "liveness: not settled after {calm} fault-free steps"
            );
            self.step();
        }
        let (acked, dead) = self.oracle.settled_counts();
        Outcome {
            trace_hash: self.trace.digest(),
            steps: steps + calm,
            published: self.oracle.ledger.len(),
            acked,
            dead,
            restarts: self.restarts,
        }
    }

    fn settled(&mut self) -> bool {
        if !self.publisher.done() || !self.oracle.all_settled() {
            return false;
        }
        let s = self.stats();
        s.depth == 0 && s.in_flight == 0
    }

    fn turn_faults_off(&mut self) {
        self.faults = false;
        let now = self.now;
        for c in &mut self.consumers {
            c.calm_down(now);
        }
    }

    /// One step: jump the clock to the next event, run due timers (unless the host "skips"
    /// them), then let every due actor act.
    fn step(&mut self) {
        let next = [
            self.engine.poll_timeout().map(|t| t.0),
            self.publisher.next_at(),
            self.consumers.iter().filter_map(Consumer::next_at).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            assert!(
                self.publisher.done(),
                "nothing scheduled but the publisher is not done"
            );
            // Nothing is scheduled: every consumer is parked or idle with nothing to do.
            self.now += 1_000;
            return;
        };
        self.now = self.now.max(next);
        if self.faults && self.chance(self.cfg.p_clock_jump) {
            self.now += self.pick(1, 3_000);
        }
        let due = self.engine.poll_timeout().is_some_and(|t| t.0 <= self.now);
        if due && !(self.faults && self.chance(self.cfg.p_skip_timer)) {
            self.timeout();
        }
        if self.publisher.next_at().is_some_and(|t| t <= self.now) {
            self.publish();
        }
        for i in 0..self.consumers.len() {
            if self.consumers[i].next_at().is_some_and(|t| t <= self.now) {
                self.act(i);
            }
        }
        if self.chance(self.cfg.p_kv) {
            self.kv_op();
        }
        if self.faults && self.chance(self.cfg.p_redrive) {
            self.exec(Command::DlqRetry {
                queue: QUEUE.into(),
                message_ids: None,
            })
            .expect("redrive");
        }
        let s = self.stats();
        self.oracle.check_stats(&s);
    }

    fn stats(&mut self) -> synap_core::QueueStats {
        match self.exec(Command::Stats {
            queue: QUEUE.into(),
        }) {
            Ok(Reply::Stats(s)) => *s,
            other => panic!("stats answered {other:?}"),
        }
    }

    fn timeout(&mut self) {
        let now = Millis(self.now);
        self.engine.handle_timeout(now);
        self.trace
            .update(format!("{} timeout\n", self.now).as_bytes());
        self.engine.check_invariants();
        self.drain();
        if let Some(t) = self.engine.poll_timeout() {
            assert!(
                t > now,
                "rule 7: a timer due at {t} survived handle_timeout({now})"
            );
        }
    }

    /// Sends one command: logs it, checks invariants, hashes the trace, feeds the oracle.
    pub(crate) fn exec(&mut self, cmd: Command) -> Result<Reply, Error> {
        self.log.push((self.now, cmd.clone()));
        let result = self.engine.handle(Millis(self.now), cmd.clone());
        self.engine.check_invariants();
        let line = format!(
            "{} {} {}\n",
            self.now,
            serde_json::to_string(&cmd).expect("command serializes"),
            serde_json::to_string(&result).expect("reply serializes")
        );
        self.trace.update(line.as_bytes());
        self.drain();
        self.calls += 1;
        if self.faults && self.calls.is_multiple_of(self.cfg.restart_every) {
            self.restart();
        }
        result
    }

    /// Drains events into the oracle, the consumers and the KV model.
    fn drain(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            let line = serde_json::to_string(&event).expect("event serializes");
            self.trace.update(line.as_bytes());
            match event {
                Event::Observed(o) => self.oracle.observe(&o, &self.cfg.queue),
                Event::Delivered {
                    waiter_id,
                    messages,
                } => {
                    let now = self.now;
                    let c = self
                        .consumers
                        .iter()
                        .position(|c| c.parked.is_some_and(|(w, _)| w == waiter_id))
                        .expect("delivery to a parked consumer");
                    self.receive(c, messages, now);
                }
                Event::WaitTimedOut { waiter_id } => {
                    let c = self
                        .consumers
                        .iter_mut()
                        .find(|c| c.parked.is_some_and(|(w, _)| w == waiter_id))
                        .expect("timeout of a parked consumer");
                    c.parked = None;
                    c.next_consume = Some(self.now);
                }
                Event::KeyExpired { key, at } => self.kv.expired(&key, at.0),
                Event::PubSub { .. } => panic!("swarm does not use pub/sub"),
                Event::Pushed { .. } | Event::SessionEnded { .. } => {
                    panic!("swarm attaches no sessions")
                }
            }
        }
    }

    /// A restart: rebuild the engine by replaying the command log or from a snapshot, and
    /// check that the rebuilt state is the same.
    fn restart(&mut self) {
        let digest = self.engine.state_digest();
        let rebuilt = if self.replays < MAX_REPLAYS && self.chance(0.3) {
            self.replays += 1;
            let mut e = Engine::new(EngineConfig::default(), self.cfg.seed);
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
    }

    /// Hands delivered messages to consumer `c`.
    pub(crate) fn receive(&mut self, c: usize, messages: Vec<synap_core::Delivery>, now: u64) {
        let lease_ms = self.consumers[c]
            .parked
            .take()
            .map_or(self.consumers[c].lease_ms, |(_, l)| l);
        for d in &messages {
            self.oracle
                .delivered(d, lease_ms.unwrap_or(self.cfg.queue.ack_deadline_ms));
        }
        for d in messages {
            let plan = self.plan(&d);
            self.consumers[c].hold(d, plan);
        }
        self.consumers[c].next_consume = Some(now);
    }

    /// The model of what the KV answers; see `actors::KvModel`.
    pub(crate) fn kv_model(&mut self) -> &mut KvModel {
        &mut self.kv
    }

    pub(crate) fn consumer(&mut self, i: usize) -> &mut Consumer {
        &mut self.consumers[i]
    }

    pub(crate) fn publisher(&mut self) -> &mut Publisher {
        &mut self.publisher
    }
}

/// Runs a seed twice, requiring equal traces; on a failure prints how to replay it.
pub fn check_seed(seed: u64) -> Outcome {
    let run_once = || std::panic::catch_unwind(|| run(seed));
    let first = run_once();
    let first = match first {
        Ok(o) => o,
        Err(panic) => {
            eprintln!("{}", SwarmConfig::from_seed(seed));
            eprintln!("swarm seed {seed} failed; replay it with:");
            eprintln!("  SIM_SEED={seed} cargo test -p synap-tests --test swarm");
            std::panic::resume_unwind(panic);
        }
    };
    let second = run(seed);
    assert_eq!(first, second, "seed {seed}: two runs differ (trace hash)");
    first
}

/// Seeds to run from the environment: `SIM_SEED=n` pins one, `SIM_RUNS=k` runs
/// `base..base+k` (base `SIM_BASE`, default 0), else `default_runs` seeds from 0.
#[must_use]
pub fn seeds_from_env(default_runs: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("SIM_SEED") {
        return vec![seed];
    }
    let base = var("SIM_BASE").unwrap_or(0);
    let runs = var("SIM_RUNS").unwrap_or(default_runs);
    (base..base + runs).collect()
}

/// A map of outcome figures over many seeds, for the test's closing line.
#[must_use]
pub fn summarize(outcomes: &[Outcome]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        *m.entry("published").or_default() += o.published;
        *m.entry("acked").or_default() += o.acked;
        *m.entry("dead_lettered").or_default() += o.dead;
        *m.entry("restarts").or_default() += o.restarts;
        *m.entry("steps").or_default() += o.steps;
    }
    m
}
