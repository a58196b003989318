//! Swarm configuration: every knob is drawn from the seed, so one number reproduces a run.

use std::fmt;

use synap_core::{Backoff, Keep, QueueConfig, RetryPosition, Rng};

/// One queue of a run: its name and settings.
#[derive(Clone, Debug)]
pub struct QueueSpec {
    /// Queue name.
    pub name: String,
    /// Its settings.
    pub config: QueueConfig,
}

/// What one swarm run does: the queues' settings, the workload and the fault rates.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// The run's seed (also the engine's seed).
    pub seed: u64,
    /// The queues under test (1–4), each with its own settings.
    pub queues: Vec<QueueSpec>,
    /// Messages published over the run, across the queues.
    pub messages: usize,
    /// Largest gap between two publishes.
    pub publish_gap_ms: u64,
    /// Long-poll consumers.
    pub pollers: usize,
    /// Streaming consumers (consumer sessions).
    pub streamers: usize,
    /// Pub/sub subscribers, and pub/sub messages published over the run.
    pub subscribers: usize,
    /// See `subscribers`.
    pub pubsub_messages: usize,
    /// Subscriber buffer size the engine runs with (small, so drops happen).
    pub subscriber_buffer: usize,
    /// Longest simulated service time.
    pub service_ms: u64,
    /// Per-message chance a publish carries a TTL / a delay / a max_retries override.
    pub p_ttl: f64,
    /// See `p_ttl`.
    pub p_delay: f64,
    /// See `p_ttl`.
    pub p_override_retries: f64,
    /// Chance a publish is a batch.
    pub p_batch: f64,
    /// A published message carries an idempotency key.
    pub p_keyed: f64,
    /// A keyed publish's reply is "lost": the publisher sends it again, later.
    pub p_lost_reply: f64,
    /// Chance a consume long-polls rather than returning at once.
    pub p_long_poll: f64,
    /// Per-delivery fault chances: the consumer crashes (holds its leases and goes silent),
    /// acks after the deadline, acks twice, acks with an older lease token, nacks, rejects
    /// (nack without requeue), extends first.
    pub p_crash: f64,
    /// See `p_crash`.
    pub p_late_ack: f64,
    /// See `p_crash`.
    pub p_dup_ack: f64,
    /// See `p_crash`.
    pub p_stale_ack: f64,
    /// See `p_crash`.
    pub p_nack: f64,
    /// See `p_crash`.
    pub p_reject: f64,
    /// See `p_crash`.
    pub p_extend: f64,
    /// Per-action chance an attached streamer detaches (with or without give-back).
    pub p_detach: f64,
    /// Per-step chance a queue is deleted (its sessions end, its waiters time out, its
    /// messages are gone) and created again at once.
    pub p_delete: f64,
    /// Per-step chance the host skips its `handle_timeout` call.
    pub p_skip_timer: f64,
    /// Per-step chance the clock jumps forward past the next event.
    pub p_clock_jump: f64,
    /// Chance per step of a KV operation.
    pub p_kv: f64,
    /// Chance per step of a DLQ redrive.
    pub p_redrive: f64,
    /// Engine calls between restarts (log replay or snapshot round trip).
    pub restart_every: usize,
    /// Per-step chance a job is looked up and then cancelled.
    pub p_cancel: f64,
    /// Per-delivery chance a worker reports progress first / acks with a result.
    pub p_progress: f64,
    /// See `p_progress`.
    pub p_result: f64,
    /// A keyed publish holds its key until its job is finished (`dedup: until_finished`).
    pub p_until_finished: f64,
    /// Per queue: a schedule `(every_ms, max_runs)` put at the start, if any.
    pub schedules: Vec<Option<(u64, u64)>>,
    /// Longest downtime before a restart (the host then sends `Resume`).
    pub downtime_ms: u64,
    /// Per queue without an `every_ms` schedule: a cron schedule `(pattern, max_runs)` put at
    /// the start, if any. The patterns fire every 1, 2 or 3 minutes.
    pub crons: Vec<Option<(String, u64)>>,
    /// The clock's start: just before a whole minute when a cron schedule is drawn.
    pub start_ms: u64,
    /// Chance a single publish is debounced (a key from a small pool, with a delay).
    pub p_debounce: f64,
    /// Keys the debounced publishes share.
    pub debounce_keys: u64,
    /// Per-step chance the job waiter waits for a job (`WaitJob`).
    pub p_wait_job: f64,
    /// Longest wait it asks for.
    pub wait_job_ms: u64,
    /// Per queue: its messages carry a group (drawn skewed: one heavy group, a few light).
    pub grouped: Vec<bool>,
    /// Light groups besides the heavy one.
    pub light_groups: u64,
    /// Per-step chance a queue is paused (and resumed a while later).
    pub p_pause: f64,
    /// Per-step chance a worker rate-limits a queue (`RateLimit {for_ms}`).
    pub p_worker_limit: f64,
    /// Per-delivery chance the worker snoozes it.
    pub p_snooze: f64,
    /// Flows (DESIGN.md §14) the flow maker adds over the run; 0 for about a third of the
    /// seeds.
    pub flows: usize,
    /// Levels of a flow at most (2–4, the root's included) and children per parent at most
    /// (1–3).
    pub flow_depth: usize,
    /// See `flow_depth`.
    pub flow_fanout: u64,
    /// Jobs per flow at most.
    pub flow_jobs: usize,
    /// Largest gap between two moves of the flow maker.
    pub flow_gap_ms: u64,
    /// Per flow: it is refused on purpose (too deep, or a bad priority or queue name deep in
    /// the tree), so nothing of it may be added.
    pub p_bad_flow: f64,
    /// Per flow job: it carries a TTL; and (apart) a `max_retries` override.
    pub p_flow_ttl: f64,
    /// Per move of the flow maker: it cancels an unfinished parent.
    pub p_cancel_parent: f64,
}

/// Flow control of one queue (DESIGN.md §12), drawn from its own PRNG: whether its messages
/// carry groups, then the limits.
fn flow_config(config: &mut QueueConfig, pick: &mut impl FnMut(u64, u64) -> u64) -> bool {
    let grouped = pick(0, 2) > 0;
    if pick(0, 2) == 0 {
        config.max_in_flight = Some(pick(1, 4) as u32);
    }
    if grouped && pick(0, 1) == 0 {
        config.ordered_groups = pick(0, 2) == 0;
        config.group_concurrency = Some(if config.ordered_groups {
            1
        } else {
            pick(1, 3) as u32
        });
    }
    config.fair_groups = grouped && pick(0, 2) == 0;
    let rate = |pick: &mut dyn FnMut(u64, u64) -> u64| synap_core::RateLimit {
        max: pick(1, 5) as u32,
        per_ms: pick(20, 1_500),
    };
    if pick(0, 3) == 0 {
        config.rate_limit = Some(rate(pick));
    }
    if grouped && pick(0, 2) == 0 {
        config.group_rate_limit = Some(rate(pick));
    }
    config.max_snoozes = [0, 1, 3, 100][pick(0, 3) as usize];
    grouped
}

/// The cron patterns drawn, each with its period: their slots are the multiples of it.
pub(crate) const CRON_PATTERNS: [(&str, u64); 3] = [
    ("* * * * *", 60_000),
    ("*/2 * * * *", 120_000),
    ("*/3 * * * *", 180_000),
];

fn queue_config(pick: &mut impl FnMut(u64, u64) -> u64) -> QueueConfig {
    let ack_deadline_ms = pick(20, 2_000);
    let policy = pick(0, 2);
    let max_retries = pick(0, 4) as u32;
    let prefetch = [0, 0, 1, 2, 3][pick(0, 4) as usize];
    let retry_position = if pick(0, 1) == 0 {
        RetryPosition::Back
    } else {
        RetryPosition::Original
    };
    let ttl = pick(0, 3) == 0;
    let ttl_ms = pick(100, 20_000);
    let retry_delays_ms = (0..pick(1, 4)).map(|_| pick(0, 500)).collect();
    let backoff = Backoff {
        initial_ms: pick(2, 200),
        multiplier: [1.0, 1.5, 2.0, 3.0][pick(0, 3) as usize],
        max_ms: pick(200, 3_000),
        jitter: [0.0, 0.1, 0.5][pick(0, 2) as usize],
    };
    QueueConfig {
        max_retries,
        ack_deadline_ms,
        retry_delays_ms: if policy == 1 {
            retry_delays_ms
        } else {
            Vec::new()
        },
        backoff: (policy == 2).then_some(backoff),
        max_depth: 10_000,
        message_ttl_ms: ttl.then_some(ttl_ms),
        prefetch,
        dead_letter: true,
        dlq_max: 10_000,
        default_priority: 5,
        retry_position,
        max_bytes: None,
        ..QueueConfig::default()
    }
}

/// The period of one of the swarm's cron patterns.
#[must_use]
pub(crate) fn cron_period(pattern: &str) -> u64 {
    CRON_PATTERNS
        .iter()
        .find(|(p, _)| *p == pattern)
        .unwrap_or_else(|| panic!("{pattern} is not a swarm cron pattern"))
        .1
}

impl SwarmConfig {
    /// Draws a configuration from `seed`.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_C0FF_EE00_0000);
        let mut pick = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
        let queues: Vec<QueueSpec> = (0..pick(1, 4))
            .map(|i| QueueSpec {
                name: format!("swarm-{i}"),
                config: queue_config(&mut pick),
            })
            .collect();
        let longest = queues
            .iter()
            .map(|q| q.config.ack_deadline_ms)
            .max()
            .unwrap_or(1_000);
        let messages = pick(5, 60) as usize;
        let pollers = pick(0, 4) as usize;
        let streamers = pick(u64::from(pollers == 0), 3) as usize;
        let subscribers = pick(0, 3) as usize;
        let pubsub_messages = if subscribers == 0 {
            0
        } else {
            pick(5, 40) as usize
        };
        let subscriber_buffer = pick(1, 8) as usize;
        let publish_gap_ms = pick(1, 300);
        let service_ms = pick(1, longest * 2);
        let faults = pick(0, 4) > 0;
        let f = |x: u64| if faults { x as f64 / 100.0 } else { 0.0 };
        let rates: Vec<u64> = (0..11).map(|_| pick(0, 15)).collect();
        let restart_every = if faults {
            pick(20, 200) as usize
        } else {
            usize::MAX
        };
        // Drawn last, so the draws above (and the seeds of regressions.rs) are unchanged: a
        // quarter of the queues get a small memory budget that refuses some publishes.
        let mut queues = queues;
        for q in &mut queues {
            q.config.max_bytes = (pick(0, 3) == 0).then(|| pick(60, 400));
        }
        // The job lifecycle's knobs come from a PRNG of their own, so the draws above (and the
        // seeds of regressions.rs) are unchanged.
        let mut rng3 = Rng::new(seed ^ 0x11FE_C7C1_E000_0000);
        let mut pick3 = |lo: u64, hi: u64| lo + rng3.next_u64() % (hi - lo + 1);
        for q in &mut queues {
            q.config.keep_completed = Keep {
                count: pick3(0, 6),
                age_ms: pick3(100, 5_000),
            };
            q.config.keep_cancelled = Keep {
                count: pick3(0, 3),
                age_ms: pick3(100, 5_000),
            };
        }
        let schedules: Vec<Option<(u64, u64)>> = queues
            .iter()
            .map(|_| (pick3(0, 2) == 0).then(|| (pick3(1_000, 4_000), pick3(1, 5))))
            .collect();
        let lifecycle = pick3(0, 3) > 0;
        let p3 = |x: f64| if lifecycle { x } else { 0.0 };
        let (p_cancel, p_progress, p_result, p_until_finished) =
            (p3(pick3(0, 10) as f64 / 100.0), p3(0.2), p3(0.3), p3(0.5));
        let mut downtime_ms = [0, 2_000, 10_000][pick3(0, 2) as usize];
        // Waits for jobs, debounced publishes and cron schedules draw from a fourth PRNG, so
        // the draws above are unchanged too; each is off for some seeds.
        let mut rng4 = Rng::new(seed ^ 0xDEB0_C4A0_0000_0000);
        let mut pick4 = |lo: u64, hi: u64| lo + rng4.next_u64() % (hi - lo + 1);
        let p_debounce = [0.0, 0.1, 0.3][pick4(0, 2) as usize];
        let debounce_keys = pick4(1, 4);
        let p_wait_job = [0.0, 0.03, 0.15][pick4(0, 2) as usize];
        let wait_job_ms = pick4(50, 8_000);
        let crons: Vec<Option<(String, u64)>> = schedules
            .iter()
            .map(|every| {
                let pattern = CRON_PATTERNS[pick4(0, 2) as usize].0;
                let max_runs = pick4(1, 3);
                (every.is_none() && pick4(0, 2) == 0).then(|| (pattern.to_owned(), max_runs))
            })
            .collect();
        // A cron run needs whole minutes: the clock starts shortly before one, and restarts
        // may be down for minutes, so catch-up runs happen too.
        let mut start_ms = 1_000;
        if crons.iter().any(Option::is_some) {
            start_ms = 120_000 - pick4(1_000, 20_000);
            downtime_ms = [0, 2_000, 10_000, 70_000, 200_000][pick4(0, 4) as usize];
        }
        // Flow control draws from a fifth PRNG, so the draws above are unchanged; it is off
        // for about half of the seeds, whose queues keep their default (unlimited) settings.
        let mut rng5 = Rng::new(seed ^ 0xF10C_0A7A_0000_0000);
        let mut pick5 = |lo: u64, hi: u64| lo + rng5.next_u64() % (hi - lo + 1);
        let flow = pick5(0, 1) == 0;
        let mut grouped = vec![false; queues.len()];
        let (mut p_pause, mut p_worker_limit, mut p_snooze) = (0.0, 0.0, 0.0);
        let light_groups = pick5(1, 5);
        if flow {
            for (q, g) in queues.iter_mut().zip(&mut grouped) {
                *g = flow_config(&mut q.config, &mut pick5);
            }
            p_pause = [0.0, 0.002, 0.01][pick5(0, 2) as usize];
            p_worker_limit = [0.0, 0.002, 0.01][pick5(0, 2) as usize];
            p_snooze = [0.0, 0.03, 0.1][pick5(0, 2) as usize];
        }
        // Flows draw from a sixth PRNG, so the draws above are unchanged; about a third of the
        // seeds add none.
        let mut rng6 = Rng::new(seed ^ 0xF1_0A5E_0000_0000);
        let mut pick6 = |lo: u64, hi: u64| lo + rng6.next_u64() % (hi - lo + 1);
        let flows = if pick6(0, 2) > 0 {
            pick6(1, 6) as usize
        } else {
            0
        };
        let flow_depth = pick6(2, 4) as usize;
        let flow_fanout = pick6(1, 3);
        let flow_jobs = pick6(3, 12) as usize;
        let flow_gap_ms = pick6(50, 1_500);
        let p_bad_flow = [0.0, 0.1, 0.25][pick6(0, 2) as usize];
        let p_flow_ttl = [0.0, 0.1, 0.3][pick6(0, 2) as usize];
        let p_cancel_parent = [0.0, 0.1, 0.3][pick6(0, 2) as usize];
        let mut rng2 = Rng::new(seed);
        let mut chance = move || rng2.next_f64();
        Self {
            seed,
            queues,
            messages,
            publish_gap_ms,
            pollers,
            streamers,
            subscribers,
            pubsub_messages,
            subscriber_buffer,
            service_ms,
            p_ttl: if chance() < 0.3 { 0.2 } else { 0.0 },
            p_delay: if chance() < 0.5 { 0.2 } else { 0.0 },
            p_override_retries: if chance() < 0.3 { 0.3 } else { 0.0 },
            p_batch: 0.2,
            p_keyed: 0.3,
            p_lost_reply: 0.3,
            p_long_poll: 0.6,
            p_crash: f(rates[0]) / 3.0,
            p_late_ack: f(rates[1]),
            p_dup_ack: f(rates[2]),
            p_stale_ack: f(rates[3]),
            p_nack: f(rates[4]) * 2.0,
            p_reject: f(rates[5]),
            p_extend: f(rates[6]),
            p_skip_timer: f(rates[7]) * 2.0,
            p_clock_jump: f(rates[8]),
            p_kv: 0.1,
            p_redrive: f(rates[9]) / 5.0,
            p_detach: f(rates[10]) / 2.0,
            p_delete: if faults {
                [0.0, 0.0003, 0.001][(seed % 3) as usize]
            } else {
                0.0
            },
            restart_every,
            p_cancel,
            p_progress,
            p_result,
            p_until_finished,
            schedules,
            downtime_ms,
            crons,
            start_ms,
            p_debounce,
            debounce_keys,
            p_wait_job,
            wait_job_ms,
            grouped,
            light_groups,
            p_pause,
            p_worker_limit,
            p_snooze,
            flows,
            flow_depth,
            flow_fanout,
            flow_jobs,
            flow_gap_ms,
            p_bad_flow,
            p_flow_ttl,
            p_cancel_parent,
        }
    }

    /// The settings of queue `i`.
    #[must_use]
    pub fn queue(&self, i: usize) -> &QueueConfig {
        &self.queues[i].config
    }

    /// The message queue `q`'s schedule publishes, if it has one.
    #[must_use]
    pub fn schedule_body(&self, q: usize) -> Option<serde_json::Value> {
        match (&self.schedules[q], &self.crons[q]) {
            (Some(_), _) => Some(serde_json::json!({ "scheduled": q })),
            (None, Some(_)) => Some(serde_json::json!({ "cron": q })),
            (None, None) => None,
        }
    }

    /// The index of the queue named `name`.
    #[must_use]
    pub fn queue_index(&self, name: &str) -> usize {
        self.queues
            .iter()
            .position(|q| q.name == name)
            .unwrap_or_else(|| panic!("no swarm queue named {name}"))
    }
}

impl fmt::Display for SwarmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "SEED={}", self.seed)?;
        for q in &self.queues {
            writeln!(f, "  queue {}: {:?}", q.name, q.config)?;
        }
        writeln!(
            f,
            "  messages={} pollers={} streamers={} publish_gap_ms={} service_ms={}",
            self.messages, self.pollers, self.streamers, self.publish_gap_ms, self.service_ms
        )?;
        writeln!(
            f,
            "  pubsub: subscribers={} messages={} buffer={}",
            self.subscribers, self.pubsub_messages, self.subscriber_buffer
        )?;
        writeln!(
            f,
            "  p_ttl={} p_delay={} p_override_retries={} p_batch={} p_long_poll={}",
            self.p_ttl, self.p_delay, self.p_override_retries, self.p_batch, self.p_long_poll
        )?;
        writeln!(
            f,
            "  faults: crash={:.3} late_ack={:.2} dup_ack={:.2} stale_ack={:.2} nack={:.2} reject={:.2} extend={:.2} detach={:.3}",
            self.p_crash,
            self.p_late_ack,
            self.p_dup_ack,
            self.p_stale_ack,
            self.p_nack,
            self.p_reject,
            self.p_extend,
            self.p_detach
        )?;
        write!(
            f,
            "  host: skip_timer={:.2} clock_jump={:.2} kv={} redrive={:.3} delete={} restart_every={}",
            self.p_skip_timer,
            self.p_clock_jump,
            self.p_kv,
            self.p_redrive,
            self.p_delete,
            self.restart_every
        )?;
        write!(
            f,
            "\n  lifecycle: cancel={:.2} progress={} result={} until_finished={} schedules={:?} downtime_ms={}",
            self.p_cancel,
            self.p_progress,
            self.p_result,
            self.p_until_finished,
            self.schedules,
            self.downtime_ms
        )?;
        write!(
            f,
            "\n  jobs: debounce={} keys={} wait_job={} wait_ms={} crons={:?} start_ms={}",
            self.p_debounce,
            self.debounce_keys,
            self.p_wait_job,
            self.wait_job_ms,
            self.crons,
            self.start_ms
        )?;
        write!(
            f,
            "\n  flow: grouped={:?} light_groups={} pause={} worker_limit={} snooze={}",
            self.grouped, self.light_groups, self.p_pause, self.p_worker_limit, self.p_snooze
        )?;
        write!(
            f,
            "\n  flows: {} depth={} fanout={} jobs={} gap_ms={} bad={} ttl={} cancel_parent={}",
            self.flows,
            self.flow_depth,
            self.flow_fanout,
            self.flow_jobs,
            self.flow_gap_ms,
            self.p_bad_flow,
            self.p_flow_ttl,
            self.p_cancel_parent
        )
    }
}
