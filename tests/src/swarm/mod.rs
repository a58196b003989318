//! The simulation swarm: seeded runs of the real engine under a fake clock, over one to four
//! queues with their own settings. Long-poll consumers and streaming consumers (sessions with
//! credit) share the queues; they crash holding leases, ack late, twice or with stale leases,
//! nack and extend; sessions are granted credit, detach with and without give-back, and are
//! abandoned attached. Pub/sub subscribers take pushes within credit and poll bounded
//! buffers. Jobs are looked up, waited for and cancelled; publishes are keyed, held until
//! finished or debounced; queues have `every_ms` or cron schedules; flows of jobs wait for
//! their children across the queues, fail, are cancelled, and run. The host skips timer
//! calls, its clock jumps, and it restarts by command-log replay or snapshot, then drops every
//! waiter and session as the server does after recovery. An oracle outside the engine checks
//! every reply and event; a fault-free phase then requires every message to end acked or
//! dead-lettered, every wait for a job answered, every schedule's runs made and every flow
//! ended. Model: quinn's
//! `Pair::step`, TigerBeetle's VOPR.

mod actors;
mod config;
mod harness;
mod oracle;

use std::collections::BTreeMap;

use synap_core::Command;

pub use config::{QueueSpec, SwarmConfig};
pub use harness::Store;

use actors::{FlowMaker, JobWaiter, Listener, Operator, Poller, Publisher, Streamer, kv_user};
use harness::{Harness, Note};

/// Steps allowed for the fault-free phase to settle every message.
const LIVENESS_STEPS: usize = 50_000;
/// Steps of the faulty phase at most (it ends earlier once everything is published).
const SAFETY_STEPS: usize = 5_000;

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedReport {
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
    /// Messages removed with their queue.
    pub deleted: usize,
    /// Restarts performed.
    pub restarts: usize,
    /// Pub/sub messages pushed to subscribers.
    pub pushed: usize,
    /// Sessions attached.
    pub attaches: usize,
    /// Deliveries pushed to sessions.
    pub session_pushes: usize,
    /// Messages given back to their queue by a detach or a give-back.
    pub given_back: usize,
    /// Retried keyed publishes answered with their first publish.
    pub duplicates: usize,
    /// Jobs cancelled.
    pub cancelled: usize,
    /// Jobs published by schedules.
    pub scheduled: usize,
    /// Of those, jobs published by cron schedules.
    pub cron_runs: usize,
    /// Debounced publishes that replaced a delayed job's message.
    pub debounced: usize,
    /// Waits for a job parked, and those answered by the job or its deadline.
    pub job_waits: usize,
    /// See `job_waits`.
    pub waits_answered: usize,
    /// Deliveries of grouped messages.
    pub grouped: usize,
    /// Queue pauses, and worker rate limits applied.
    pub pauses: usize,
    /// See `pauses`.
    pub worker_limits: usize,
    /// Queues with a `rate_limit` or `group_rate_limit`.
    pub rate_limited: usize,
    /// Snoozes, and messages snoozed out.
    pub snoozes: usize,
    /// See `snoozes`.
    pub snoozed_out: usize,
    /// Stats that showed ready messages held back.
    pub held_back: usize,
    /// Flows added, and `AddFlow`s refused (nothing of them added).
    pub flows_added: usize,
    /// See `flows_added`.
    pub flows_refused: usize,
    /// Flows whose root completed, was cancelled, or failed otherwise (dead-lettered, expired,
    /// its queue deleted).
    pub flows_completed: usize,
    /// See `flows_completed`.
    pub flows_cancelled: usize,
    /// See `flows_completed`.
    pub flows_failed: usize,
    /// Parents delivered with their children's outcomes.
    pub parent_deliveries: usize,
    /// Parents dead-lettered as `child_failed`.
    pub child_failed: usize,
    /// Jobs cancelled by their flow, and parents the flow maker cancelled.
    pub flow_cancels: usize,
    /// See `flow_cancels`.
    pub parent_cancels: usize,
    /// Flow trees and flow-job lookups checked.
    pub flow_queries: usize,
    /// Parents delivered without their children because they ended later in the same call
    /// (see `oracle::flows`).
    pub late_decorations: usize,
}

/// One run: the harness and every actor.
struct Swarm {
    h: Harness,
    publisher: Publisher,
    pollers: Vec<Poller>,
    streamers: Vec<Streamer>,
    listeners: Vec<Listener>,
    waiter: JobWaiter,
    operator: Operator,
    flow_maker: FlowMaker,
}

/// Runs one seed to the end, panicking on any violation.
#[must_use]
pub fn run(seed: u64) -> SeedReport {
    Swarm::new(SwarmConfig::from_seed(seed)).run()
}

/// Runs one seed with its restarts recovering from a host's storage; `make` gets the engine
/// config and seed the store's fresh engine must have.
pub fn run_on_store(
    seed: u64,
    make: impl FnOnce(&synap_core::EngineConfig, u64) -> Box<dyn Store>,
) -> SeedReport {
    let mut swarm = Swarm::new(SwarmConfig::from_seed(seed));
    let store = make(swarm.h.engine_config(), seed);
    swarm.h.set_store(store);
    swarm.run()
}

impl Swarm {
    fn new(cfg: SwarmConfig) -> Self {
        Self {
            publisher: Publisher::new(cfg.messages, cfg.pubsub_messages),
            pollers: (0..cfg.pollers).map(|i| Poller::new(i, cfg.seed)).collect(),
            streamers: (0..cfg.streamers).map(Streamer::new).collect(),
            listeners: (0..cfg.subscribers).map(Listener::new).collect(),
            waiter: JobWaiter::default(),
            operator: Operator::default(),
            flow_maker: FlowMaker::new(cfg.flows),
            h: Harness::new(cfg),
        }
    }

    fn run(mut self) -> SeedReport {
        for q in self.h.cfg.queues.clone() {
            let cmd = Command::CreateQueue {
                queue: q.name,
                config: Some(Box::new(q.config)),
            };
            self.h.exec(cmd).expect("queue created");
        }
        for q in 0..self.h.cfg.queues.len() {
            let cfg = &self.h.cfg;
            let (every_ms, cron, max_runs) = match (&cfg.schedules[q], &cfg.crons[q]) {
                (Some((every, max)), _) => (Some(*every), None, *max),
                (None, Some((pattern, max))) => (None, Some(pattern.clone()), *max),
                (None, None) => continue,
            };
            let body = cfg.schedule_body(q).expect("a schedule's message");
            let cmd = Command::PutSchedule {
                queue: cfg.queues[q].name.clone(),
                schedule_id: format!("s{q}"),
                schedule: synap_core::ScheduleSpec {
                    every_ms,
                    cron,
                    message: synap_core::Json::from_value(&body),
                    priority: None,
                    headers: Default::default(),
                    start_at: None,
                    end_at: None,
                    max_runs: Some(max_runs),
                },
            };
            self.h.exec(cmd).expect("schedule put");
        }
        let mut steps = 0;
        while self.h.faults {
            steps += 1;
            let done = self.publisher.done() && self.flow_maker.done();
            if steps > SAFETY_STEPS || (done && self.h.chance(0.01)) {
                self.turn_faults_off();
            }
            self.step();
        }
        let mut calm = 0;
        while !self.settled() {
            calm += 1;
            assert!(
                calm < LIVENESS_STEPS,
                "liveness: not settled after {calm} fault-free steps: {}",
                self.unsettled()
            );
            self.step();
        }
        let (acked, dead) = self.h.oracle.ledger.settled_counts();
        let (cancelled, scheduled) = self.h.oracle.ledger.lifecycle_counts();
        let crons = &self.h.cfg.crons;
        let ledger = &self.h.oracle.ledger;
        let flows = &self.h.oracle.flows;
        let (flows_completed, flows_cancelled, flows_failed) = flows.outcomes();
        let cron_runs = ledger
            .map
            .values()
            .filter(|e| e.scheduled && crons[e.queue].is_some())
            .count();
        SeedReport {
            trace_hash: self.h.digest(),
            steps: steps + calm,
            published: self.h.oracle.ledger.map.len() + self.h.oracle.deleted,
            acked,
            dead,
            deleted: self.h.oracle.deleted,
            restarts: self.h.restarts,
            pushed: self.listeners.iter().map(|l| l.received).sum(),
            attaches: self.h.tally.attaches,
            session_pushes: self.h.tally.session_pushes,
            given_back: self.h.tally.given_back,
            duplicates: self.h.tally.duplicates,
            cancelled,
            scheduled,
            cron_runs,
            debounced: self.h.oracle.replacements,
            job_waits: self.waiter.waits,
            waits_answered: self.h.oracle.waits_answered,
            grouped: self.h.oracle.flow.grouped_deliveries,
            pauses: self.operator.pauses,
            worker_limits: self.operator.limits,
            rate_limited: (self.h.cfg.queues.iter())
                .filter(|q| q.config.rate_limit.is_some() || q.config.group_rate_limit.is_some())
                .count(),
            snoozes: self.h.oracle.flow.snoozes,
            snoozed_out: self.h.oracle.flow.snoozed_out,
            held_back: self.h.oracle.flow.held_back,
            flows_added: flows.added,
            flows_refused: flows.refused,
            flows_completed,
            flows_cancelled,
            flows_failed,
            parent_deliveries: flows.parent_deliveries,
            child_failed: flows.child_failed,
            flow_cancels: flows.cascaded,
            parent_cancels: self.flow_maker.cancels,
            flow_queries: flows.queries,
            late_decorations: flows.late_decorations,
        }
    }

    /// Everything published has ended, every wait for a job is answered, every schedule has
    /// made its runs and every flow has ended.
    fn settled(&mut self) -> bool {
        if !self.publisher.done() || !self.h.oracle.ledger.all_settled() {
            return false;
        }
        if !self.flow_maker.done() || !self.h.oracle.flows.all_ended() {
            return false;
        }
        let oracle = &self.h.oracle;
        let queues = self.h.cfg.queues.len();
        if !self.waiter.parked.is_empty() || (0..queues).any(|q| oracle.schedules.pending(q)) {
            return false;
        }
        (0..self.h.cfg.queues.len()).all(|q| {
            let s = self.h.stats(q);
            s.depth == 0 && s.in_flight == 0
        })
    }

    /// What keeps the run from settling, for the liveness failure.
    fn unsettled(&mut self) -> String {
        let o = &self.h.oracle;
        let open: Vec<_> = o
            .ledger
            .map
            .iter()
            .filter(|(id, _)| o.ledger.unfinished(**id))
            .map(|(id, e)| (*id, e.queue, e.place.clone()))
            .take(5)
            .collect();
        let pending: Vec<usize> = (0..self.h.cfg.queues.len())
            .filter(|q| o.schedules.pending(*q))
            .collect();
        let listed: Vec<_> = pending
            .iter()
            .map(|q| {
                let queue = self.h.cfg.queues[*q].name.clone();
                self.h.exec(Command::ListSchedules { queue })
            })
            .collect();
        format!(
            "publisher done {}, unfinished {open:?}, waits {:?}, schedules pending {listed:?}, \
             flow maker done {}, flow jobs unfinished {:?}",
            self.publisher.done(),
            self.waiter.parked,
            self.flow_maker.done(),
            self.h.oracle.flows.unfinished()
        )
    }

    fn turn_faults_off(&mut self) {
        self.h.faults = false;
        let now = self.h.now;
        self.pollers.iter_mut().for_each(|p| p.calm_down(now));
        self.streamers.iter_mut().for_each(|s| s.calm_down(now));
        self.operator.calm_down(&mut self.h);
        self.route();
    }

    /// When the next thing happens: a timer or an actor's move.
    fn next_at(&self) -> Option<u64> {
        let h = &self.h;
        [
            h.next_timer(),
            self.publisher.next_at(),
            self.pollers.iter().filter_map(Poller::next_at).min(),
            self.streamers.iter().filter_map(Streamer::next_at).min(),
            self.listeners.iter().filter_map(|l| l.next_at(h)).min(),
            self.operator.next_at(),
            self.flow_maker.next_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One step: jump the clock to the next event, run due timers (unless the host "skips"
    /// them), let every due actor act, route the events, check every queue, maybe restart.
    fn step(&mut self) {
        let Some(next) = self.next_at() else {
            assert!(
                self.publisher.done() && self.flow_maker.done(),
                "nothing scheduled but the publisher or the flow maker is not done"
            );
            // Nothing is scheduled: every consumer is parked or idle with nothing to do.
            self.h.now += 1_000;
            return;
        };
        let h = &mut self.h;
        h.now = h.now.max(next);
        if h.faults && h.chance(h.cfg.p_clock_jump) {
            h.now += h.pick(1, 3_000);
        }
        let due = h.next_timer().is_some_and(|t| t <= h.now);
        if due && !(h.faults && h.chance(h.cfg.p_skip_timer)) {
            h.timeout();
            self.route();
        }
        let now = self.h.now;
        if self.publisher.next_at().is_some_and(|t| t <= now) {
            self.publisher.act(&mut self.h);
            self.route();
        }
        if self.flow_maker.next_at().is_some_and(|t| t <= now) {
            self.flow_maker.act(&mut self.h);
            self.route();
        }
        for i in 0..self.pollers.len() {
            if self.pollers[i].next_at().is_some_and(|t| t <= now) {
                self.pollers[i].act(&mut self.h);
                self.route();
            }
        }
        for i in 0..self.streamers.len() {
            if self.streamers[i].next_at().is_some_and(|t| t <= now) {
                self.streamers[i].act(&mut self.h);
                self.route();
            }
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].next_at(&self.h).is_some_and(|t| t <= now) {
                self.listeners[i].act(&mut self.h);
                self.route();
            }
        }
        if self.h.faults && self.h.chance(self.h.cfg.p_wait_job) {
            self.waiter.act(&mut self.h);
            self.route();
        }
        self.host_chores();
        self.h.check_queues();
        self.h.maybe_restart();
        self.route();
        let parked: Vec<_> = self.h.oracle.job_waits.keys().copied().collect();
        assert!(
            self.waiter.parked.iter().eq(parked.iter()),
            "the waits the client holds are the waits the engine holds"
        );
    }

    /// KV traffic, DLQ redrives, pauses and rate limits.
    fn host_chores(&mut self) {
        self.operator.act(&mut self.h);
        self.route();
        let h = &mut self.h;
        if h.chance(h.cfg.p_kv) {
            kv_user::kv_op(h);
        }
        if h.faults && h.chance(h.cfg.p_redrive) {
            let q = h.any_queue();
            let queue = h.cfg.queues[q].name.clone();
            h.exec(Command::DlqRetry {
                queue,
                message_ids: None,
            })
            .expect("redrive");
        }
        if h.faults && h.chance(h.cfg.p_cancel) && !h.oracle.ledger.map.is_empty() {
            let i = h.pick(0, h.oracle.ledger.map.len() as u64 - 1) as usize;
            let (id, e) = h.oracle.ledger.map.iter().nth(i).expect("in range");
            let (message_id, queue) = (*id, h.cfg.queues[e.queue].name.clone());
            let _ = h.exec(Command::GetJob {
                queue: queue.clone(),
                message_id,
            });
            let _ = h.exec(Command::Cancel { queue, message_id });
        }
        if h.chance(h.cfg.p_delete) {
            // Half the time the queue of a parked wait for a job, which then ends.
            let waited = h.oracle.job_waits.values().next().map(|w| w.queue);
            let q = match waited {
                Some(q) if h.chance(0.5) => q,
                _ => h.any_queue(),
            };
            let spec = h.cfg.queues[q].clone();
            let deleted = h.exec(Command::DeleteQueue {
                queue: spec.name.clone(),
            });
            assert!(deleted.is_ok(), "delete answered {deleted:?}");
            let created = h.exec(Command::CreateQueue {
                queue: spec.name,
                config: Some(Box::new(spec.config)),
            });
            assert!(created.is_ok(), "create answered {created:?}");
        }
        self.route();
    }

    /// Hands every pending note to its actor.
    fn route(&mut self) {
        while let Some(note) = self.h.notes.pop_front() {
            match note {
                Note::Delivered(w, messages) => {
                    let p = poller_of(&mut self.pollers, w);
                    p.parked = None;
                    p.receive(&mut self.h, messages);
                }
                Note::TimedOut(w) if self.waiter.owns(w) => self.waiter.answered(w),
                Note::TimedOut(w) => {
                    let now = self.h.now;
                    poller_of(&mut self.pollers, w).unpark(now);
                }
                Note::JobWaited(w) => self.waiter.answered(w),
                Note::WaitersDropped => {
                    self.waiter.dropped();
                    let now = self.h.now;
                    for p in self.pollers.iter_mut().filter(|p| p.parked.is_some()) {
                        p.unpark(now);
                    }
                }
                Note::Pushed(s, messages) => {
                    // Pushes to a session detached meanwhile are left to their leases.
                    if let Some(st) = self.streamers.iter_mut().find(|st| st.owns(s)) {
                        st.pushed(&mut self.h, s, messages);
                    }
                }
                Note::Ended(s) => {
                    if let Some(st) = self.streamers.iter_mut().find(|st| st.owns(s)) {
                        st.ended(&mut self.h, s);
                    }
                }
                Note::PubSub(id) => {
                    let l = self.listeners.iter_mut().find(|l| l.is(&id));
                    l.expect("push to a listener").received += 1;
                }
            }
        }
    }
}

/// The poller that parked waiter `w`.
fn poller_of(pollers: &mut [Poller], w: synap_core::WaiterId) -> &mut Poller {
    pollers
        .iter_mut()
        .find(|p| p.parked == Some(w))
        .unwrap_or_else(|| panic!("waiter {w:?} belongs to no parked poller"))
}

/// Runs a seed twice, requiring equal traces; on a failure prints how to replay it.
pub fn check_seed(seed: u64) -> SeedReport {
    let first = std::panic::catch_unwind(|| run(seed));
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

/// A map of report figures over many seeds, for the test's closing line.
#[must_use]
pub fn summarize(reports: &[SeedReport]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for o in reports {
        *m.entry("published").or_default() += o.published;
        *m.entry("acked").or_default() += o.acked;
        *m.entry("dead_lettered").or_default() += o.dead;
        *m.entry("deleted").or_default() += o.deleted;
        *m.entry("restarts").or_default() += o.restarts;
        *m.entry("steps").or_default() += o.steps;
        *m.entry("pubsub_pushed").or_default() += o.pushed;
        *m.entry("attaches").or_default() += o.attaches;
        *m.entry("session_pushes").or_default() += o.session_pushes;
        *m.entry("given_back").or_default() += o.given_back;
        *m.entry("duplicates").or_default() += o.duplicates;
        *m.entry("cancelled").or_default() += o.cancelled;
        *m.entry("scheduled").or_default() += o.scheduled;
        *m.entry("cron_runs").or_default() += o.cron_runs;
        *m.entry("debounced").or_default() += o.debounced;
        *m.entry("job_waits").or_default() += o.job_waits;
        *m.entry("waits_answered").or_default() += o.waits_answered;
        *m.entry("grouped").or_default() += o.grouped;
        *m.entry("pauses").or_default() += o.pauses;
        *m.entry("worker_limits").or_default() += o.worker_limits;
        *m.entry("rate_limited_queues").or_default() += o.rate_limited;
        *m.entry("snoozes").or_default() += o.snoozes;
        *m.entry("snoozed_out").or_default() += o.snoozed_out;
        *m.entry("held_back").or_default() += o.held_back;
        *m.entry("flows_added").or_default() += o.flows_added;
        *m.entry("flows_refused").or_default() += o.flows_refused;
        *m.entry("flows_completed").or_default() += o.flows_completed;
        *m.entry("flows_cancelled").or_default() += o.flows_cancelled;
        *m.entry("flows_failed").or_default() += o.flows_failed;
        *m.entry("parent_deliveries").or_default() += o.parent_deliveries;
        *m.entry("child_failed").or_default() += o.child_failed;
        *m.entry("flow_cancels").or_default() += o.flow_cancels;
        *m.entry("parent_cancels").or_default() += o.parent_cancels;
        *m.entry("flow_queries").or_default() += o.flow_queries;
        *m.entry("late_decorations").or_default() += o.late_decorations;
    }
    m
}
