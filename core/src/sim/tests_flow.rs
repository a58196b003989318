//! Flow control in the simulator. Goal: every flow setting of a scenario reaches the engine
//! and shapes the run as DESIGN.md §12 says; producers can name one heavy group among light
//! ones; the report's per-class waits are right (exactly, on a run small enough to work out by
//! hand); fair groups rescue the light groups of the noisy-neighbour preset; sweeps set what
//! they say; runs without groups report exactly what they did before.

use super::*;
use crate::{Command, Millis, QueueConfig, RateLimit, Reply};

fn run(s: Scenario) -> Report {
    Simulation::new(s).unwrap().run()
}

fn class(r: &Report, c: GroupClass) -> &GroupClassStats {
    r.summary
        .by_group_class
        .iter()
        .find(|x| x.class == c)
        .unwrap_or_else(|| panic!("no {c:?} in {:?}", r.summary.by_group_class))
}

fn noisy() -> Scenario {
    preset("noisy-neighbour").unwrap()
}

/// One task type of `ms`, `workers` workers, constant arrivals of `rate` a second.
fn busy(workers: u32, rate: f64, ms: u64) -> Scenario {
    Scenario {
        duration_ms: 120_000,
        sample_interval_ms: 100,
        task_types: vec![TaskType {
            name: "t".into(),
            service: Dist::Constant { ms },
            ..TaskType::default()
        }],
        producers: vec![Producer {
            arrival: Arrival::Constant { rate_per_sec: rate },
            mix: vec![MixEntry {
                task_type: "t".into(),
                ..MixEntry::default()
            }],
            ..Producer::default()
        }],
        workers: vec![WorkerGroup {
            count: workers,
            ..WorkerGroup::default()
        }],
        ..Scenario::default()
    }
}

#[test]
fn every_flow_setting_reaches_the_engine() {
    let mut s = noisy();
    s.queue_config = QueueConfig {
        max_in_flight: Some(3),
        group_concurrency: Some(1),
        ordered_groups: true,
        fair_groups: true,
        rate_limit: Some(RateLimit {
            max: 50,
            per_ms: 10_000,
        }),
        group_rate_limit: Some(RateLimit {
            max: 2,
            per_ms: 5_000,
        }),
        max_snoozes: 7,
        ..s.queue_config
    };
    // Through JSON, as a scenario file or the web app gives it.
    let text = serde_json::to_string(&s).unwrap();
    for field in [
        r#""max_in_flight":3"#,
        r#""group_concurrency":1"#,
        r#""ordered_groups":true"#,
        r#""fair_groups":true"#,
        r#""rate_limit":{"max":50,"per_ms":10000}"#,
        r#""group_rate_limit":{"max":2,"per_ms":5000}"#,
        r#""max_snoozes":7"#,
        r#""groups":{"count":200,"heavy_share":0.5}"#,
    ] {
        assert!(text.contains(field), "{field} missing from {text}");
    }
    let sim = Simulation::from_json(&text).unwrap();
    let mut engine = sim.engine().clone();
    let Ok(Reply::Stats(stats)) = engine.handle(
        Millis(0),
        Command::Stats {
            queue: "transcode".into(),
        },
    ) else {
        panic!("no stats");
    };
    assert_eq!(stats.config, s.queue_config);
}

#[test]
fn a_max_in_flight_run_never_leases_more_than_the_cap() {
    // Six workers and work for all of them: without a cap they hold up to six leases.
    let free = run(busy(6, 10.0, 500));
    let peak = |r: &Report| r.series.iter().map(|p| p.in_flight).max().unwrap();
    assert!(peak(&free) > 2, "peak {}", peak(&free));
    let mut capped = busy(6, 10.0, 500);
    capped.queue_config.max_in_flight = Some(2);
    let r = run(capped);
    assert_eq!(peak(&r), 2, "the cap is reached and never passed");
    assert!(r.series.iter().all(|p| p.in_flight <= 2));
    // Two tasks of 500 ms at a time: at most 4 completions a second, and the six workers
    // are together busy at most a third of the time.
    assert!(r.summary.completed <= 4 * 120, "{}", r.summary.completed);
    assert!(r.summary.completed >= 4 * 115, "{}", r.summary.completed);
    assert!(r.summary.utilisation <= 2.0 / 6.0 + 1e-9);
    assert!(free.summary.completed > r.summary.completed);
}

#[test]
fn a_rate_limit_bounds_the_deliveries_per_window() {
    let mut s = busy(6, 10.0, 100);
    s.queue_config.rate_limit = Some(RateLimit {
        max: 3,
        per_ms: 1_000,
    });
    let r = run(s);
    // Windows open with a delivery and last a second: at most 3 a second, and the backlog
    // keeps every window full.
    let d = r.summary.deliveries;
    assert!((3 * 115..=3 * 121).contains(&d), "{d} deliveries");
    // At 100 ms samples, no interval of one second holds more than 3 + 3 deliveries (two
    // windows may meet inside it), and most hold about 3.
    let per_interval: Vec<u64> = r.series.iter().map(|p| p.completed).collect();
    for w in per_interval.windows(10) {
        assert!(w.iter().sum::<u64>() <= 6, "{w:?}");
    }
}

/// Exact waits: at time 0 one producer publishes four heavy tasks, then another one light
/// task; one worker takes them one at a time, 1 s each.
fn heavy_then_light(fair: bool) -> Report {
    let burst = |name: &str, size, groups| Producer {
        name: name.into(),
        arrival: Arrival::Bursts {
            every_ms: 1_000_000,
            size,
        },
        mix: vec![MixEntry {
            task_type: "t".into(),
            ..MixEntry::default()
        }],
        groups,
        ..Producer::default()
    };
    let mut s = busy(1, 1.0, 1_000);
    s.duration_ms = 60_000;
    s.sample_interval_ms = 60_000;
    s.queue_config.fair_groups = fair;
    s.producers = vec![
        burst(
            "bulk",
            4,
            ProducerGroups {
                count: 0,
                heavy_share: 1.0,
            },
        ),
        burst("user", 1, ProducerGroups::uniform(1)),
    ];
    run(s)
}

#[test]
fn waits_per_group_class_are_exact_on_a_small_run() {
    // First come, first served: heavy waits 0, 1, 2, 3 s; the light task 4 s.
    let fifo = heavy_then_light(false);
    let (h, l) = (
        class(&fifo, GroupClass::Heavy),
        class(&fifo, GroupClass::Light),
    );
    assert_eq!((h.groups, h.published, h.completed), (1, 4, 4));
    assert_eq!((l.groups, l.published, l.completed), (1, 1, 1));
    assert_eq!(
        (h.wait_ms.p50, h.wait_ms.p99, h.wait_ms.max),
        (1_000, 3_000, 3_000)
    );
    assert_eq!((l.wait_ms.p50, l.wait_ms.p99), (4_000, 4_000));
    assert_eq!(fifo.summary.by_group_class.len(), 2, "no ungrouped class");
    // Fair groups: heavy, light, heavy, heavy, heavy.
    let fair = heavy_then_light(true);
    let (h, l) = (
        class(&fair, GroupClass::Heavy),
        class(&fair, GroupClass::Light),
    );
    assert_eq!((h.wait_ms.p50, h.wait_ms.p99), (2_000, 4_000));
    assert_eq!((l.wait_ms.p50, l.wait_ms.p99), (1_000, 1_000));
    assert_eq!(l.latency_ms.max, 2_000);
    // The interval waits say the same.
    let point = &fair.series[0];
    let waits: Vec<_> = point
        .group_wait_ms
        .iter()
        .map(|w| (w.class, w.count, w.p99))
        .collect();
    assert_eq!(
        waits,
        vec![(GroupClass::Heavy, 4, 4_000), (GroupClass::Light, 1, 1_000)]
    );
}

#[test]
fn group_classes_account_for_every_task() {
    // The video preset's follow-ups carry no group: three classes.
    let mut s = preset("video-processing").unwrap();
    for p in &mut s.producers {
        p.groups = ProducerGroups {
            count: 30,
            heavy_share: 0.25,
        };
    }
    let r = run(s);
    let sum = |f: fn(&GroupClassStats) -> u64| r.summary.by_group_class.iter().map(f).sum::<u64>();
    let classes: Vec<_> = r.summary.by_group_class.iter().map(|c| c.class).collect();
    assert_eq!(classes, GroupClass::ALL);
    assert_eq!(sum(|c| c.published), r.summary.published);
    assert_eq!(sum(|c| c.completed), r.summary.completed);
    assert_eq!(sum(|c| c.dead_lettered), r.summary.dead_lettered);
    assert_eq!(sum(|c| c.wait_ms.count), r.summary.deliveries);
    let interval: u64 = (r.series.iter())
        .flat_map(|p| &p.group_wait_ms)
        .map(|w| w.count)
        .sum();
    assert_eq!(interval, r.summary.deliveries);
    let (h, l) = (class(&r, GroupClass::Heavy), class(&r, GroupClass::Light));
    let share = h.published as f64 / (h.published + l.published) as f64;
    assert!((0.2..0.3).contains(&share), "heavy share {share}");
    assert_eq!(l.groups, 30);
}

#[test]
fn fair_groups_cut_the_light_groups_wait_in_the_noisy_neighbour() {
    let base = run(noisy());
    let mut s = noisy();
    s.queue_config.fair_groups = true;
    let fair = run(s);
    let light = |r: &Report| class(r, GroupClass::Light).wait_ms.clone();
    let heavy = |r: &Report| class(r, GroupClass::Heavy).wait_ms.clone();
    // First come, first served, everyone waits minutes behind the flood.
    assert!(light(&base).p99 > 5 * 60_000, "{:?}", light(&base));
    assert!(
        light(&fair).p99 * 10 < light(&base).p99,
        "{:?}",
        light(&fair)
    );
    assert!(light(&fair).p50 * 10 < light(&base).p50);
    // The backlog is the heavy uploader's own.
    assert!(heavy(&fair).p99 > heavy(&base).p99);
    assert_eq!(fair.summary.completed, base.summary.completed);
    // The sweep over fair_groups gives the same two runs.
    let spec = Sweep {
        param: SweepParam::FairGroups,
        worker_group: 0,
        values: vec![0.0, 1.0],
        target: None,
    };
    let swept = sweep(&noisy(), &spec).unwrap();
    assert_eq!(swept.points[0].summary, base.summary);
    assert_eq!(swept.points[1].summary, fair.summary);
}

#[test]
fn grouped_runs_are_deterministic() {
    let a = run(noisy());
    assert_eq!(a, run(noisy()));
    let mut other = noisy();
    other.seed += 1;
    assert_ne!(run(other).summary.run_hash, a.summary.run_hash);
    // Stepping gives the same report as one run, group waits included.
    let mut sim = Simulation::new(noisy()).unwrap();
    let partial = sim.step(1_200_000);
    assert!(!partial.finished && !partial.summary.by_group_class.is_empty());
    assert_eq!(sim.run(), a);
}

#[test]
fn runs_without_groups_report_no_group_figures() {
    let r = run(preset("video-processing").unwrap());
    assert!(r.summary.by_group_class.is_empty());
    let text = serde_json::to_string(&r).unwrap();
    assert!(!text.contains("group_wait_ms") && !text.contains("by_group_class"));
    // Uniform groups and no heavy share: a light class, plus the ungrouped follow-ups.
    let mut s = preset("video-processing").unwrap();
    s.producers[0].groups = ProducerGroups::uniform(5);
    let classes: Vec<_> = (run(s).summary.by_group_class.iter())
        .map(|c| (c.class, c.groups))
        .collect();
    assert_eq!(
        classes,
        vec![(GroupClass::Light, 5), (GroupClass::Ungrouped, 0)]
    );
}

#[test]
fn bad_flow_settings_get_clear_errors() {
    type Edit = fn(&mut Scenario);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |s| s.queue_config.max_in_flight = Some(0),
            "queue_config.max_in_flight: must be at least 1",
        ),
        (
            |s| s.queue_config.group_concurrency = Some(0),
            "queue_config.group_concurrency: must be at least 1",
        ),
        (
            |s| {
                s.queue_config.ordered_groups = true;
                s.queue_config.group_concurrency = Some(2);
            },
            "queue_config.ordered_groups",
        ),
        (
            |s| s.queue_config.rate_limit = Some(RateLimit { max: 0, per_ms: 1 }),
            "queue_config.rate_limit: max must be at least 1",
        ),
        (
            |s| s.queue_config.group_rate_limit = Some(RateLimit { max: 1, per_ms: 0 }),
            "queue_config.group_rate_limit: the window",
        ),
        (
            |s| s.queue_config.max_snoozes = 200_000,
            "queue_config.max_snoozes: at most 100000",
        ),
        (
            |s| s.producers[0].groups.heavy_share = 1.5,
            "producers[0] (uploads).groups.heavy_share must be between 0 and 1",
        ),
        (
            |s| s.producers[0].groups.count = MAX_PRODUCER_GROUPS + 1,
            "producers[0] (uploads).groups: at most 100000 groups",
        ),
        (
            |s| {
                s.producers[0].arrival = Arrival::Schedule {
                    every_ms: Some(60_000),
                    cron: None,
                }
            },
            "a schedule's runs carry no group",
        ),
    ];
    for (edit, needle) in cases {
        let mut s = noisy();
        edit(&mut s);
        let err = Simulation::new(s).err().expect("refused").to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
    let err =
        Simulation::from_json(r#"{"queue_config": {"rate_limit": {"max": 1, "per_secs": 1}}}"#)
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("per_secs") && err.contains("per_ms"), "{err}");
}

#[test]
fn sweeps_set_what_they_name() {
    let base = noisy();
    let at = |p, x| apply(&base, p, 0, x).unwrap();
    assert_eq!(
        at(SweepParam::MaxInFlight, 3.0).queue_config.max_in_flight,
        Some(3)
    );
    assert_eq!(
        at(SweepParam::GroupConcurrency, 2.0)
            .queue_config
            .group_concurrency,
        Some(2)
    );
    // A rate without a window gets one of a second; one with a window keeps it.
    assert_eq!(
        at(SweepParam::RateLimit, 5.0).queue_config.rate_limit,
        Some(RateLimit {
            max: 5,
            per_ms: DEFAULT_RATE_WINDOW_MS
        })
    );
    let mut windowed = base.clone();
    windowed.queue_config.group_rate_limit = Some(RateLimit {
        max: 1,
        per_ms: 60_000,
    });
    assert_eq!(
        apply(&windowed, SweepParam::GroupRateLimit, 0, 4.0)
            .unwrap()
            .queue_config
            .group_rate_limit,
        Some(RateLimit {
            max: 4,
            per_ms: 60_000
        })
    );
    assert!(at(SweepParam::FairGroups, 1.0).queue_config.fair_groups);
    assert!(
        at(SweepParam::OrderedGroups, 1.0)
            .queue_config
            .ordered_groups
    );
    assert_eq!(at(SweepParam::Workers, 7.0).workers[0].count, 7);
    assert_eq!(
        at(SweepParam::AckDeadlineMs, 9_000.0)
            .queue_config
            .ack_deadline_ms,
        9_000
    );
    let Arrival::Poisson { rate_per_sec } = at(SweepParam::RateScale, 0.5).producers[0].arrival
    else {
        panic!("poisson");
    };
    assert!((rate_per_sec - 0.6).abs() < 1e-12);
    // Values out of a parameter's range are refused with its name.
    for (p, x) in [
        (SweepParam::MaxInFlight, 0.0),
        (SweepParam::GroupConcurrency, 1.5),
        (SweepParam::FairGroups, 2.0),
        (SweepParam::RateScale, -1.0),
    ] {
        let err = apply(&base, p, 0, x).unwrap_err();
        assert!(err.starts_with(p.name()), "{err}");
    }
    assert!(apply(&base, SweepParam::Workers, 3, 2.0).is_err());
    assert_eq!(
        sweep_values(SweepParam::MaxInFlight, 1.0, 4.0, 0).unwrap(),
        [1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(
        sweep_values(SweepParam::RateScale, 0.1, 0.3, 3).unwrap(),
        [0.1, 0.2, 0.3]
    );
    assert!(sweep_values(SweepParam::MaxInFlight, 1.0, 30.0, 0).is_err());
    assert!(sweep_values(SweepParam::MaxInFlight, 0.0, 3.0, 0).is_err());
    let too_many = Sweep {
        param: SweepParam::Workers,
        worker_group: 0,
        values: vec![1.0; MAX_SWEEP_POINTS + 1],
        target: None,
    };
    assert!(sweep(&base, &too_many).is_err());
    assert_eq!(
        SweepParam::parse("group_rate_limit"),
        Ok(SweepParam::GroupRateLimit)
    );
    assert!(SweepParam::parse("nope").is_err());
}

#[test]
fn capping_the_heavy_group_frees_workers_for_the_light_ones() {
    let spec = Sweep {
        param: SweepParam::GroupConcurrency,
        worker_group: 0,
        values: vec![1.0, 4.0],
        target: None,
    };
    let r = sweep(&noisy(), &spec).unwrap();
    let light_p99 = |i: usize| {
        let s = &r.points[i].summary;
        s.by_group_class
            .iter()
            .find(|c| c.class == GroupClass::Light)
            .unwrap()
            .wait_ms
            .p99
    };
    // One heavy transcode at a time leaves three workers to the light users.
    assert!(
        light_p99(0) * 10 < light_p99(1),
        "{} {}",
        light_p99(0),
        light_p99(1)
    );
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""param":"group_concurrency""#), "{json}");
}
