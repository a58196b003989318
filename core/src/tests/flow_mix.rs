//! Flow-control rules together: priorities × groups × rate windows × pause × retries × lease
//! expiry × DLQ redrive, and "no stranding": a held-back message is delivered once room
//! appears, to a consumer already waiting, with no other command.
//!
//! Method: one hand-written scenario with every rule on, then seeded random runs. A random run
//! draws the queue's settings from its seed and drives publishes (grouped or not, delayed,
//! with TTLs), immediate and long-poll consumes, streaming sessions, acks, nacks, snoozes,
//! lease expiries, pause and resume, worker rate limits, redrives, cancels, purges and changes
//! of the concurrency and group settings. An oracle outside the engine follows the observed
//! deliveries and checks each against the rules of its moment: not paused, not rate limited,
//! below `max_in_flight` and the group's limit, within the rate windows. Then pause and rate
//! limit are lifted, every consumer is dropped, and one parked consumer must drain the queue
//! from timers and its own acks alone. Each seed also runs on from a snapshot taken halfway
//! and is replayed from its command log; all three must end with the same digest.
//! `check_invariants` runs after every step.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;

use super::{Rig, n_of};
use crate::{
    Command, Delivery, Engine, EngineConfig, Event, MessageId, Millis, ObservedKind,
    PublishMessage, QueueConfig, RateLimit, Reply, Rng, json_message,
};

fn ns(got: &[Delivery]) -> Vec<u64> {
    got.iter().map(n_of).collect()
}

#[test]
fn every_rule_at_once_by_hand() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            group_concurrency: Some(1),
            fair_groups: true,
            group_rate_limit: Some(RateLimit {
                max: 2,
                per_ms: 1_000,
            }),
            rate_limit: Some(RateLimit {
                max: 4,
                per_ms: 1_000,
            }),
            max_in_flight: Some(3),
            max_retries: 1,
            retry_delays_ms: vec![200],
            ack_deadline_ms: 500,
            ..QueueConfig::default()
        },
    );
    let t0 = r.now;
    for n in 1..=3 {
        r.publish_in("q", n, 5, Some("u1"));
    }
    r.publish_in("q", 4, 9, Some("u2"));
    r.publish_in("q", 5, 9, Some("u2"));
    r.publish_in("q", 6, 5, None);
    r.publish_in("q", 7, 1, Some("u3"));
    // Priority 9 first; then within priority 5 the ungrouped messages' turn, then u1's; one
    // per group; three in flight at most.
    let first = r.consume("q", 10);
    assert_eq!(ns(&first), vec![4, 6, 1]);
    r.ok(Command::PauseQueue { queue: "q".into() });
    r.ack("q", &first[0]).unwrap();
    assert!(r.consume("q", 10).is_empty(), "paused");
    r.park("q", 10, 60_000);
    r.ok(Command::ResumeQueue { queue: "q".into() });
    assert_eq!(
        ns(&r.delivered()),
        vec![5],
        "the resume serves the waiting consumer"
    );
    // The three leases run out together: each is retried after 200 ms, but the queue's window
    // (4 deliveries since t0) holds everything back until t0 + 1000.
    r.advance(500);
    let st = r.stats("q");
    assert_eq!((st.in_flight, st.delayed, st.ready), (0, 3, 3));
    assert_eq!(st.rate_limited_until_ms, Some(Millis(t0 + 1_000)));
    assert_eq!(st.held_back, 3);
    r.advance(200);
    assert_eq!(r.stats("q").held_back, 6);
    r.park("q", 10, 60_000);
    r.advance(299);
    assert!(r.delivered().is_empty());
    r.advance(1);
    // The windows of the queue and of u1 and u2 close together; u2's retry goes first
    // (priority 9), then the ungrouped retry's turn, then u1, whose retry went to the back of
    // its group.
    let second = r.delivered();
    assert_eq!(ns(&second), vec![5, 6, 2]);
    assert_eq!(
        second.iter().map(|d| d.retry_count).collect::<Vec<_>>(),
        vec![1, 1, 0]
    );
    // They fail again: the two retries are out of retries and dead-lettered. A redrive brings
    // them back fresh.
    r.advance(500);
    assert_eq!(r.stats("q").dead_letter_count, 2);
    let redriven = r.ok(Command::DlqRetry {
        queue: "q".into(),
        message_ids: None,
    });
    assert_eq!(redriven, Reply::Redriven { retried: 2 });
    // Drain: a consumer that acks what it gets, parked whenever nothing is free; an ack may
    // answer a parked consumer at once.
    let mut order = Vec::new();
    for _ in 0..100 {
        let mut got = r.consume("q", 10);
        if got.is_empty() {
            if r.stats("q").depth == 0 {
                break;
            }
            r.park("q", 10, 60_000);
            let next = r.engine.poll_timeout().expect("something pending");
            r.advance(next.0 - r.now);
            got = r.delivered();
        }
        while !got.is_empty() {
            for d in &got {
                r.ack("q", d).unwrap();
            }
            order.extend(ns(&got));
            got = r.delivered();
        }
    }
    order.sort_unstable();
    assert_eq!(order, vec![1, 2, 3, 5, 6, 7]);
    let st = r.stats("q");
    assert_eq!(
        (st.depth, st.in_flight, st.groups, st.held_back),
        (0, 0, 0, 0)
    );
}

/// The queue's settings a seed draws.
fn draw_config(rng: &mut Rng) -> QueueConfig {
    let mut pick = |n: u64| rng.next_u64() % n;
    let rate = |max: u64, per: u64| RateLimit {
        max: max as u32 + 1,
        per_ms: 100 + per,
    };
    let ordered = pick(4) == 0;
    QueueConfig {
        max_in_flight: (pick(2) == 0).then(|| pick(4) as u32 + 1),
        group_concurrency: if ordered {
            (pick(2) == 0).then_some(1)
        } else {
            (pick(2) == 0).then(|| pick(3) as u32 + 1)
        },
        ordered_groups: ordered,
        fair_groups: pick(2) == 0,
        rate_limit: (pick(3) == 0).then(|| rate(pick(5), pick(1_500))),
        group_rate_limit: (pick(3) == 0).then(|| rate(pick(3), pick(1_500))),
        max_retries: pick(3) as u32,
        max_snoozes: pick(3) as u32,
        retry_delays_ms: if pick(2) == 0 {
            vec![]
        } else {
            vec![pick(400)]
        },
        ack_deadline_ms: 300 + pick(1_500),
        prefetch: pick(3) as u32,
        ..QueueConfig::default()
    }
}

/// What the oracle knows of the queue, from the commands it sent and the events it saw.
#[derive(Clone, Default)]
struct Oracle {
    paused: bool,
    limited_until: u64,
    /// Deliveries not yet ended, by message: the delivery and its group.
    held: BTreeMap<MessageId, Delivery>,
    window: Option<(u64, u32)>,
    group_windows: BTreeMap<String, (u64, u32)>,
    deliveries: u64,
}

impl Oracle {
    /// Checks one delivery at `at` against the rules, then counts it.
    fn deliver(&mut self, cfg: &QueueConfig, d: Delivery, at: u64) {
        assert!(!self.paused, "delivered while paused");
        assert!(at >= self.limited_until, "delivered while rate limited");
        if let Some(max) = cfg.max_in_flight {
            assert!(
                self.held.len() < max as usize,
                "above max_in_flight at {at}"
            );
        }
        if let (Some(limit), Some(g)) = (cfg.group_limit(), d.group.as_deref()) {
            let busy = self.held.values().filter(|h| h.group.as_deref() == Some(g));
            assert!(busy.count() < limit as usize, "group {g} above its limit");
        }
        count_window(&mut self.window, cfg.rate_limit, at);
        if let (Some(g), Some(rate)) = (&d.group, cfg.group_rate_limit) {
            let w = self.group_windows.entry(g.to_string()).or_insert((0, 0));
            let mut opt = Some(*w);
            count_window(&mut opt, Some(rate), at);
            *w = opt.expect("counted");
        }
        self.deliveries += 1;
        self.held.insert(d.message_id, d);
    }
}

/// The oracle's own rate window: at most `max` deliveries from a window's first delivery
/// until `per_ms` later.
fn count_window(w: &mut Option<(u64, u32)>, rate: Option<RateLimit>, at: u64) {
    let Some(rate) = rate else { return };
    match w {
        Some((end, count)) if at < *end => *count += 1,
        _ => *w = Some((at + rate.per_ms, 1)),
    }
    assert!(w.expect("set").1 <= rate.max, "a rate window above its max");
}

/// A seeded random run on one queue.
struct Run {
    rig: Rig,
    rng: Rng,
    cfg: QueueConfig,
    oracle: Oracle,
    /// Every command sent, with its time, for the replay.
    log: Vec<(u64, Command)>,
    published: Vec<MessageId>,
    n: u64,
}

impl Run {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let cfg = draw_config(&mut rng);
        let mut run = Self {
            rig: Rig::new(),
            rng,
            cfg: cfg.clone(),
            oracle: Oracle::default(),
            log: Vec::new(),
            published: Vec::new(),
            n: 0,
        };
        run.send(Command::CreateQueue {
            queue: "q".into(),
            config: Some(Box::new(cfg)),
        });
        run
    }

    fn pick(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    /// Sends a command, then follows its reply and events.
    fn send(&mut self, cmd: Command) -> Option<Reply> {
        trace(|| format!("{} {cmd:?}", self.rig.now));
        self.log.push((self.rig.now, cmd.clone()));
        let resume = matches!(cmd, Command::ResumeQueue { .. });
        if resume {
            self.oracle.paused = false;
        }
        let after = match &cmd {
            Command::PauseQueue { .. } => Some(true),
            _ => None,
        };
        let reply = self.rig.cmd(cmd).ok();
        let mut got: Vec<Delivery> = match &reply {
            Some(Reply::Messages { messages }) => messages.clone(),
            _ => Vec::new(),
        };
        self.follow(&mut got);
        if let Some(paused) = after {
            self.oracle.paused = paused;
        }
        if let Some(Reply::RateLimited { until }) = &reply {
            self.oracle.limited_until = until.0;
        }
        if let Some(Reply::Published(p)) = &reply {
            self.published.push(p.message_id);
        }
        reply
    }

    /// Moves the clock and follows what the timers did.
    fn advance(&mut self, ms: u64) {
        trace(|| format!("{} advance {ms}", self.rig.now));
        self.rig.advance(ms);
        self.follow(&mut Vec::new());
    }

    /// Drains the events: deliveries (from the reply, then the events, in order) are checked
    /// and held; ended deliveries are let go.
    fn follow(&mut self, got: &mut Vec<Delivery>) {
        let events: Vec<Event> = std::iter::from_fn(|| self.rig.engine.poll_event()).collect();
        for e in &events {
            if let Event::Delivered { messages, .. } | Event::Pushed { messages, .. } = e {
                got.extend(messages.iter().cloned());
            }
        }
        let mut by_id: BTreeMap<MessageId, VecDeque<Delivery>> = BTreeMap::new();
        for d in got.drain(..) {
            by_id.entry(d.message_id).or_default().push_back(d);
        }
        for e in events {
            trace(|| format!("    {e:?}"));
            let Event::Observed(o) = e else { continue };
            let Some(id) = o.message_id else { continue };
            match o.kind {
                ObservedKind::Delivered => {
                    let d = by_id.get_mut(&id).and_then(VecDeque::pop_front);
                    let d = d.expect("an observed delivery was handed out");
                    self.oracle.deliver(&self.cfg, d, o.at.0);
                }
                ObservedKind::Acked
                | ObservedKind::Nacked
                | ObservedKind::LeaseExpired
                | ObservedKind::Cancelled => {
                    self.oracle.held.remove(&id);
                }
                _ => {}
            }
        }
    }

    fn held(&mut self) -> Option<Delivery> {
        let n = self.oracle.held.len() as u64;
        let i = (n > 0).then(|| self.pick(n))?;
        self.oracle.held.values().nth(i as usize).cloned()
    }

    fn publish(&mut self) {
        self.n += 1;
        let group = self.pick(7);
        let m = PublishMessage {
            priority: Some(self.pick(10) as u8),
            group: (group < 5).then(|| format!("g{group}")),
            delay_ms: (self.pick(10) == 0).then(|| self.pick(2_000)),
            ttl_ms: (self.pick(20) == 0).then(|| 500 + self.pick(5_000)),
            ..json_message(json!({ "n": self.n }))
        };
        self.send(Command::Publish {
            queue: "q".into(),
            message: m,
        });
    }

    fn end_one(&mut self) {
        let Some(d) = self.held() else { return };
        let how = self.pick(10);
        let cmd = if how < 6 {
            Command::Ack {
                queue: "q".into(),
                message_id: d.message_id,
                lease: Some(d.lease),
                result: None,
            }
        } else {
            Command::Nack {
                queue: "q".into(),
                message_id: d.message_id,
                requeue: how != 6,
                delay_ms: (how == 8).then(|| self.pick(500)),
                error: None,
                lease: Some(d.lease),
                snooze: how == 9,
            }
        };
        self.send(cmd);
    }

    /// One random step.
    fn step(&mut self) {
        let consumer = format!("c{}", self.pick(3));
        match self.pick(100) {
            0..=24 => self.publish(),
            25..=39 => self.end_one(),
            40..=49 => {
                let max = self.pick(4) as u32 + 1;
                self.send(consume(max, 0, Some(consumer)));
            }
            50..=56 => {
                let wait = 100 + self.pick(3_000);
                self.send(consume(2, wait, Some(consumer)));
            }
            57..=59 => {
                let credit = self.pick(3) as u32 + 1;
                self.send(Command::Attach {
                    queue: "q".into(),
                    consumer_id: Some(consumer),
                    credit,
                    lease_ms: None,
                });
            }
            60..=79 => {
                let ms = 1 + self.pick(700);
                self.advance(ms);
            }
            80..=82 => {
                self.send(Command::PauseQueue { queue: "q".into() });
            }
            83..=88 => {
                self.send(Command::ResumeQueue { queue: "q".into() });
            }
            89..=90 => {
                let for_ms = 1 + self.pick(1_500);
                self.send(Command::RateLimit {
                    queue: "q".into(),
                    for_ms,
                });
            }
            91..=93 => {
                self.send(Command::DlqRetry {
                    queue: "q".into(),
                    message_ids: None,
                });
            }
            94..=95 => {
                let n = self.published.len() as u64;
                if n > 0 {
                    let i = self.pick(n) as usize;
                    let id = self.published[i];
                    self.send(Command::Cancel {
                        queue: "q".into(),
                        message_id: id,
                    });
                }
            }
            96 => {
                self.send(Command::Purge { queue: "q".into() });
            }
            97 => self.reconfigure(),
            _ => {
                self.send(Command::Groups {
                    queue: "q".into(),
                    limit: 5,
                });
                let st = self.rig.stats("q");
                assert!(st.held_back <= st.ready);
            }
        }
    }

    /// Changes the concurrency and group settings (the oracle checks each delivery against
    /// the settings of its moment; the rate windows stay as they are).
    fn reconfigure(&mut self) {
        let drawn = draw_config(&mut self.rng);
        let cfg = QueueConfig {
            max_in_flight: drawn.max_in_flight,
            group_concurrency: drawn.group_concurrency,
            ordered_groups: drawn.ordered_groups,
            fair_groups: drawn.fair_groups,
            ..self.cfg.clone()
        };
        // No timer is due at this time (the clock moved through `advance`), so every
        // delivery the change makes follows the new settings.
        self.cfg = cfg.clone();
        self.send(Command::ConfigureQueue {
            queue: "q".into(),
            config: Box::new(cfg),
        });
    }

    /// Lifts pause and rate limit, drops every consumer, then parks one consumer that acks
    /// what it is given: the queue must drain from timers and acks alone.
    fn drain(&mut self) {
        self.send(Command::ResumeQueue { queue: "q".into() });
        self.send(Command::DropConsumers);
        for _ in 0..10_000 {
            let st = self.rig.stats("q");
            if st.depth == 0 && st.in_flight == 0 {
                return;
            }
            let ids: Vec<Delivery> = self.oracle.held.values().cloned().collect();
            for d in ids {
                self.send(Command::Ack {
                    queue: "q".into(),
                    message_id: d.message_id,
                    lease: Some(d.lease),
                    result: None,
                });
            }
            if self.rig.engine.waiter_queues.is_empty() {
                self.send(consume(10, 300_000, None));
            }
            if self.oracle.held.is_empty() {
                let next = self.rig.engine.poll_timeout().expect("a pending deadline");
                self.advance(next.0.saturating_sub(self.rig.now).max(1));
            }
        }
        panic!("stranded: {:?}", self.rig.stats("q"));
    }
}

fn consume(max: u32, wait_ms: u64, consumer: Option<String>) -> Command {
    Command::Consume {
        queue: "q".into(),
        wait_ms,
        lease_ms: None,
        max_messages: max,
        consumer_id: consumer,
    }
}

/// Prints each command and event when `FLOW_TRACE` is set.
fn trace(line: impl FnOnce() -> String) {
    if std::env::var_os("FLOW_TRACE").is_some() {
        eprintln!("{}", line());
    }
}

/// Says how to replay the seed that failed.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "replay with: FLOW_SEED={} FLOW_RUNS=1 FLOW_TRACE=1 cargo test -p synap-core \
                 --lib flow_mix::random",
                self.0
            );
        }
    }
}

fn replay(log: &[(u64, Command)], now: u64) -> Engine {
    let mut e = Engine::new(EngineConfig::default(), 7);
    for (at, cmd) in log {
        let _ = e.handle(Millis(*at), cmd.clone());
    }
    e.handle_timeout(Millis(now));
    e
}

#[test]
fn random_runs_keep_every_rule_and_strand_nothing() {
    // FLOW_RUNS=n runs n seeds from FLOW_SEED (0 by default).
    let seeds: u64 = std::env::var("FLOW_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut delivered = 0;
    let first: u64 = std::env::var("FLOW_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in first..first + seeds {
        let _guard = SeedGuard(seed);
        let mut run = Run::new(seed);
        for _ in 0..300 {
            run.step();
        }
        // A snapshot taken here (arrays, as the server writes them) has the same future.
        let text = serde_json::to_string(&run.rig.engine).expect("as JSON");
        let from_json: Engine = serde_json::from_str(&text).expect("from JSON");
        assert_eq!(from_json.state_digest(), run.rig.engine.state_digest());
        from_json.check_invariants();
        let bytes = rmp_serde::to_vec(&run.rig.engine).expect("snapshot");
        let restored: Engine = rmp_serde::from_slice(&bytes).expect("restore");
        assert_eq!(restored.state_digest(), run.rig.engine.state_digest());
        let mut twin = Run::new(seed);
        twin.rig.engine = restored;
        twin.rig.now = run.rig.now;
        twin.rng = run.rng.clone();
        twin.oracle = run.oracle.clone();
        twin.cfg = run.cfg.clone();
        twin.published = run.published.clone();
        twin.n = run.n;
        for r in [&mut run, &mut twin] {
            for _ in 0..300 {
                r.step();
            }
            r.drain();
        }
        let digest = run.rig.engine.state_digest();
        assert_eq!(
            twin.rig.engine.state_digest(),
            digest,
            "seed {seed}: restored"
        );
        let replayed = replay(&run.log, run.rig.now);
        assert_eq!(replayed.state_digest(), digest, "seed {seed}: replayed");
        delivered += run.oracle.deliveries;
    }
    assert!(delivered > seeds * 50, "the runs delivered {delivered}");
}
