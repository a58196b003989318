//! Simulator tests for schedules and cancellations. Goal: a scheduled producer makes exactly
//! the runs its interval or cron pattern gives over the run (time 0 being 1970-01-01 00:00
//! UTC, a Thursday); cancellations hit about their fraction of tasks, are deterministic, and
//! every cancelled task is counted as cancelled, never as completed. Method: small scenarios
//! whose outcome can be computed by hand, cross-checked against the engine's own schedule
//! history and queue counters.

use std::collections::BTreeMap;

use super::*;
use crate::{Command, Millis, QueueStats, Reply, ScheduleInfo};

fn task(name: &str, service_ms: u64) -> TaskType {
    TaskType {
        name: name.into(),
        service: Dist::Constant { ms: service_ms },
        ..TaskType::default()
    }
}

fn mix(task_type: &str) -> Vec<MixEntry> {
    vec![MixEntry {
        task_type: task_type.into(),
        priority: Some(5),
        weight: 1,
    }]
}

fn scheduled(every_ms: Option<u64>, cron: Option<&str>) -> Producer {
    Producer {
        name: "timer".into(),
        arrival: Arrival::Schedule {
            every_ms,
            cron: cron.map(Into::into),
        },
        mix: mix("job"),
        ..Producer::default()
    }
}

fn workers(count: u32) -> Vec<WorkerGroup> {
    vec![WorkerGroup {
        name: "w".into(),
        count,
        ..WorkerGroup::default()
    }]
}

/// One task type `job`, the given producers and workers.
fn scenario(duration_ms: u64, producers: Vec<Producer>, count: u32) -> Scenario {
    Scenario {
        duration_ms,
        sample_interval_ms: duration_ms / 10,
        task_types: vec![task("job", 1_000)],
        producers,
        workers: workers(count),
        ..Scenario::default()
    }
}

fn ask(sim: &Simulation, cmd: Command) -> Reply {
    let mut engine = sim.engine().clone();
    let now = engine.now();
    engine.handle(now, cmd).unwrap()
}

fn schedules(sim: &Simulation) -> Vec<ScheduleInfo> {
    match ask(
        sim,
        Command::ListSchedules {
            queue: sim.scenario().queue.clone(),
        },
    ) {
        Reply::Schedules { schedules } => schedules,
        other => panic!("{other:?}"),
    }
}

fn stats(sim: &Simulation) -> QueueStats {
    match ask(
        sim,
        Command::Stats {
            queue: sim.scenario().queue.clone(),
        },
    ) {
        Reply::Stats(s) => *s,
        other => panic!("{other:?}"),
    }
}

/// Runs `s` and returns the report, the runs of its first schedule and their last time.
fn runs_of(s: Scenario) -> (Report, u64, Option<Millis>) {
    let mut sim = Simulation::new(s).unwrap();
    let r = sim.run();
    let info = schedules(&sim).into_iter().next().expect("one schedule");
    (r, info.runs, info.last_run_at)
}

#[test]
fn an_every_schedule_runs_once_per_interval_after_its_start() {
    // Runs at 60 s, 120 s, … 3540 s: the one at 3600 s is the end of the run, not in it.
    let (r, runs, last) = runs_of(scenario(3_600_000, vec![scheduled(Some(60_000), None)], 2));
    assert_eq!((runs, last), (59, Some(Millis(3_540_000))));
    assert_eq!(r.summary.published, 59);
    assert_eq!(r.summary.completed, 59);
    let per_sample: Vec<u64> = r.series.iter().map(|p| p.published).collect();
    assert_eq!(per_sample, [6, 6, 6, 6, 6, 6, 6, 6, 6, 5]);
    // start_ms and stop_ms bound the runs: strictly after 30 s, before 600 s.
    let mut p = scheduled(Some(60_000), None);
    p.start_ms = 30_000;
    p.stop_ms = Some(600_000);
    let (r, runs, last) = runs_of(scenario(3_600_000, vec![p], 1));
    assert_eq!((runs, last), (9, Some(Millis(570_000))));
    assert_eq!(r.summary.published, 9);
}

#[test]
fn a_cron_schedule_runs_at_its_utc_slots_from_the_epoch() {
    // Every 5 minutes in one hour: 5, 10, … 55 minutes.
    let (r, runs, last) = runs_of(scenario(
        3_600_000,
        vec![scheduled(None, Some("*/5 * * * *"))],
        1,
    ));
    assert_eq!((runs, last), (11, Some(Millis(55 * 60_000))));
    assert_eq!(r.summary.completed, 11);
    // 02:00 UTC on the first day of a six-hour run.
    let (_, runs, last) = runs_of(scenario(
        6 * 3_600_000,
        vec![scheduled(None, Some("0 2 * * *"))],
        1,
    ));
    assert_eq!((runs, last), (1, Some(Millis(2 * 3_600_000))));
    // Time 0 is Thursday 1970-01-01 00:00 UTC: Thursday noon is at 12 h, once in a week.
    let week = 7 * 24 * 3_600_000;
    let s = scenario(week, vec![scheduled(None, Some("0 12 * * 4"))], 1);
    assert_eq!(runs_of(s).1, 1);
    let s = scenario(week, vec![scheduled(None, Some("0 12 * * 5"))], 1);
    assert_eq!(runs_of(s).2, Some(Millis(36 * 3_600_000)));
    // A slot at exactly time 0 (midnight) is not run: runs fall strictly after start_ms.
    let s = scenario(
        2 * 24 * 3_600_000,
        vec![scheduled(None, Some("0 0 * * *"))],
        1,
    );
    assert_eq!(runs_of(s).2, Some(Millis(24 * 3_600_000)));
}

#[test]
fn a_schedule_with_no_slot_in_its_active_time_puts_nothing() {
    let mut p = scheduled(Some(600_000), None);
    p.stop_ms = Some(600_000);
    let mut sim = Simulation::new(scenario(3_600_000, vec![p], 1)).unwrap();
    assert_eq!(sim.run().summary.published, 0);
    assert!(schedules(&sim).is_empty());
}

/// One `job` every 20 s (constant), service 10 s, cancelled with `fraction` after `after_ms`.
fn cancelling(count: u32, fraction: f64, after_ms: u64) -> Scenario {
    let mut s = scenario(
        600_000,
        vec![Producer {
            name: "users".into(),
            arrival: Arrival::Constant { rate_per_sec: 0.05 },
            mix: mix("job"),
            ..Producer::default()
        }],
        count,
    );
    s.task_types = vec![
        TaskType {
            follow_ups: vec![FollowUp {
                task_type: "notify".into(),
                ..FollowUp::default()
            }],
            cancel: Some(Cancellation {
                fraction,
                after: Dist::Constant { ms: after_ms },
            }),
            ..task("job", 10_000)
        },
        task("notify", 100),
    ];
    s
}

#[test]
fn a_job_cancelled_in_flight_is_settled_by_the_ack_as_cancelled_not_completed() {
    // 30 jobs; each is taken at once, cancelled 5 s in, acked at 10 s.
    let mut sim = Simulation::new(cancelling(1, 1.0, 5_000)).unwrap();
    let r = sim.run();
    let s = &r.summary;
    assert_eq!(
        (s.published, s.completed, s.cancelled),
        (30, 0, 30),
        "{s:?}"
    );
    assert_eq!(
        s.cancels,
        CancelStats {
            sent: 30,
            in_flight: 30,
            already_finished: 0,
            skipped: 0
        }
    );
    let w = &s.workers[0];
    assert_eq!((w.completed, w.cancelled, w.failed), (0, 30, 0));
    // No follow-up for a cancelled job.
    assert_eq!(s.by_priority.iter().map(|p| p.cancelled).sum::<u64>(), 30);
    assert_eq!(r.series.iter().map(|p| p.cancelled).sum::<u64>(), 30);
    let st = stats(&sim);
    assert_eq!((st.cancelled_total, st.acked_total), (30, 0));

    // A worker that fails them nacks: the nack settles them as cancelled, never retried.
    let mut s = cancelling(1, 1.0, 5_000);
    s.task_types[0].failure_probability = 1.0;
    let r = run(s);
    let w = &r.summary.workers[0];
    assert_eq!((w.failed, w.cancelled, r.summary.retries), (0, 30, 0));
    assert_eq!(r.summary.dead_lettered, 0);
}

#[test]
fn cancels_of_waiting_jobs_remove_them_and_of_finished_jobs_are_refused() {
    // No worker: every job is still ready when cancelled.
    let r = run(cancelling(0, 1.0, 5_000));
    let s = &r.summary;
    assert_eq!((s.published, s.cancelled, s.still_in_system), (30, 30, 0));
    assert_eq!((s.cancels.sent, s.cancels.in_flight), (30, 0));
    // Cancelled 15 s after publish, 5 s after the ack: too late, and the follow-up went out.
    let r = run(cancelling(1, 1.0, 15_000));
    let s = &r.summary;
    assert_eq!((s.completed, s.cancelled), (60, 0));
    assert_eq!((s.cancels.sent, s.cancels.already_finished), (30, 30));
}

fn busy_cancelling(fraction: f64) -> Scenario {
    let mut s = scenario(
        3_600_000,
        vec![Producer {
            name: "users".into(),
            arrival: Arrival::Poisson { rate_per_sec: 2.0 },
            mix: mix("job"),
            ..Producer::default()
        }],
        2,
    );
    s.seed = 11;
    s.task_types[0].service = Dist::Exponential { mean_ms: 900 };
    s.task_types[0].cancel = Some(Cancellation {
        fraction,
        after: Dist::Exponential { mean_ms: 3_000 },
    });
    s
}

fn run(s: Scenario) -> Report {
    Simulation::new(s).unwrap().run()
}

#[test]
fn about_the_fraction_of_jobs_is_cancelled_and_the_books_balance() {
    let mut sim = Simulation::new(busy_cancelling(0.25)).unwrap();
    let r = sim.run();
    let s = &r.summary;
    let c = &s.cancels;
    // About 7,200 jobs: 25% ± 2.5% is more than 10 standard deviations.
    let share = c.sent as f64 / s.published as f64;
    assert!((0.225..0.275).contains(&share), "{c:?} of {}", s.published);
    assert!(
        c.in_flight > 0 && c.already_finished > 0 && s.cancelled > c.in_flight,
        "{c:?}"
    );
    // Every cancel that was not refused ends cancelled, unless its delivery is still running.
    let settled = c.sent - c.already_finished;
    assert!(s.cancelled <= settled && s.cancelled + c.in_flight >= settled);
    assert_eq!(
        s.published,
        s.completed + s.dead_lettered + s.cancelled + s.still_in_system
    );
    let last = r.series.last().unwrap();
    assert_eq!(
        s.still_in_system,
        last.ready + last.delayed + last.in_flight
    );
    let st = stats(&sim);
    assert_eq!(
        (st.cancelled_total, st.acked_total, st.published_total),
        (s.cancelled, s.completed, s.published)
    );
    let w = &s.workers[0];
    assert_eq!(w.completed, s.completed);
    assert!(w.cancelled <= c.in_flight);
    assert_eq!(
        r.series.iter().map(|p| p.cancelled).sum::<u64>(),
        s.cancelled
    );
    // Same seed, same report; the cancellations' own PRNG leaves the producers' alone.
    assert_eq!(run(busy_cancelling(0.25)), r);
    let none = run(busy_cancelling(0.0));
    assert_eq!(none.summary.published, s.published);
    assert_eq!((none.summary.cancelled, none.summary.cancels.sent), (0, 0));
    let mut other = busy_cancelling(0.25);
    other.seed = 12;
    assert_ne!(run(other).summary.run_hash, s.run_hash);
}

#[test]
fn a_zero_fraction_changes_nothing() {
    let mut s = busy_cancelling(0.0);
    let with = run(s.clone());
    s.task_types[0].cancel = None;
    assert_eq!(run(s), with);
}

#[test]
fn scheduled_runs_are_cancelled_too() {
    // No worker: each run is cancelled 1 s after it is published, while it is still ready.
    let mut s = scenario(3_600_000, vec![scheduled(Some(60_000), None)], 0);
    s.task_types[0].cancel = Some(Cancellation {
        fraction: 1.0,
        after: Dist::Constant { ms: 1_000 },
    });
    let r = run(s);
    let s = &r.summary;
    assert_eq!((s.published, s.cancelled, s.cancels.sent), (59, 59, 59));
    assert_eq!(s.still_in_system, 0);
}

#[test]
fn the_nightly_reports_preset_runs_its_schedules_and_cancellations() {
    let mut sim = Simulation::from_preset("nightly-reports").unwrap();
    let r = sim.run();
    let runs: BTreeMap<String, u64> = schedules(&sim)
        .into_iter()
        .map(|s| (s.schedule_id, s.runs))
        .collect();
    // The report at 02:00; a cleanup every 10 minutes from 10 to 350 minutes.
    let expected = BTreeMap::from([("producer-1".to_owned(), 1), ("producer-2".to_owned(), 35)]);
    assert_eq!(runs, expected);
    let s = &r.summary;
    assert!(s.cancelled > 50 && s.cancels.in_flight > 0, "{s:?}");
    assert!(s.cancels.already_finished > 0, "{:?}", s.cancels);
    // Only exports (priority 5) have a `cancel`.
    assert!(
        s.by_priority
            .iter()
            .all(|p| p.priority == 5 || p.cancelled == 0),
        "only exports are cancelled"
    );
    assert_eq!(
        s.published,
        s.completed + s.dead_lettered + s.cancelled + s.still_in_system
    );
    assert_eq!(Simulation::from_preset("nightly-reports").unwrap().run(), r);
    let text = serde_json::to_string(sim.scenario()).unwrap();
    assert_eq!(
        &serde_json::from_str::<Scenario>(&text).unwrap(),
        sim.scenario()
    );
}

#[test]
fn bad_schedules_and_cancellations_get_clear_errors() {
    type Edit = fn(&mut Scenario);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |s| s.producers[0] = scheduled(Some(60_000), Some("* * * * *")),
            "exactly one of every_ms or cron",
        ),
        (
            |s| s.producers[0] = scheduled(None, None),
            "exactly one of every_ms or cron",
        ),
        (
            |s| s.producers[0] = scheduled(Some(999), None),
            "producers[0] (timer).arrival.every_ms must be 1000..=",
        ),
        (
            |s| s.producers[0] = scheduled(None, Some("61 * * * *")),
            "producers[0] (timer).arrival.cron: not a 5-field cron pattern",
        ),
        (
            |s| s.producers[0] = scheduled(None, Some("0 0 * * * *")),
            "not a 5-field cron pattern",
        ),
        (
            |s| {
                let long = format!("0 0 * * {}", "1,".repeat(80));
                s.producers[0] = Producer {
                    arrival: Arrival::Schedule {
                        every_ms: None,
                        cron: Some(long),
                    },
                    ..scheduled(None, None)
                };
            },
            "at most 128 bytes",
        ),
        (
            |s| {
                let again = s.producers[0].mix[0].clone();
                s.producers[0].mix.push(again);
            },
            "a schedule publishes one task type",
        ),
        (
            |s| {
                s.task_types[0].cancel = Some(Cancellation {
                    fraction: 1.5,
                    ..Cancellation::default()
                })
            },
            "task_types[0] (job).cancel.fraction must be between 0 and 1",
        ),
        (
            |s| {
                s.task_types[0].cancel = Some(Cancellation {
                    fraction: 0.5,
                    after: Dist::Uniform {
                        min_ms: 10,
                        max_ms: 1,
                    },
                })
            },
            "task_types[0] (job).cancel.after: min_ms must not exceed max_ms",
        ),
    ];
    for (edit, needle) in cases {
        let mut s = scenario(3_600_000, vec![scheduled(Some(60_000), None)], 1);
        edit(&mut s);
        let err = Simulation::new(s).err().expect("refused").to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
    for (json, needle) in [
        (
            r#"{"task_types": [{"name": "a", "cancel": {"fraction": 0.1, "delay": 5}}]}"#,
            "delay",
        ),
        (
            r#"{"producers": [{"arrival": {"process": "schedule", "every_secs": 60}}]}"#,
            "every_secs",
        ),
    ] {
        let err = Simulation::from_json(json).err().unwrap().to_string();
        assert!(err.contains(needle), "{err}");
    }
    // The engine's own limits apply: here, no room for a second schedule.
    let mut s = scenario(3_600_000, vec![scheduled(Some(60_000), None); 2], 1);
    s.engine.limits.max_schedules = 1;
    let err = Simulation::new(s).err().unwrap().to_string();
    assert!(err.contains("producers[1] (timer).arrival"), "{err}");
}

#[test]
fn the_documented_example_parses_and_runs() {
    let text = r#"{
  "name": "exports", "duration_ms": 21600000, "sample_interval_ms": 300000, "queue": "reports",
  "queue_config": { "ack_deadline_ms": 1800000 },
  "task_types": [
    { "name": "export", "service": { "dist": "normal", "mean_ms": 20000, "std_ms": 5000 },
      "cancel": { "fraction": 0.1, "after": { "dist": "uniform", "min_ms": 5000, "max_ms": 120000 } } },
    { "name": "nightly_report", "service": { "dist": "constant", "ms": 900000 } },
    { "name": "cleanup", "service": { "dist": "constant", "ms": 2000 } }
  ],
  "producers": [
    { "name": "users", "arrival": { "process": "poisson", "rate_per_sec": 0.1 },
      "mix": [ { "task_type": "export", "priority": 5 } ] },
    { "name": "nightly", "arrival": { "process": "schedule", "cron": "0 2 * * *" },
      "mix": [ { "task_type": "nightly_report", "priority": 3 } ] },
    { "name": "cleanup", "arrival": { "process": "schedule", "every_ms": 600000 },
      "mix": [ { "task_type": "cleanup", "priority": 1 } ] }
  ],
  "workers": [ { "name": "worker", "count": 3 } ]
}"#;
    let doc = include_str!("../../../docs/simulator.md");
    assert!(doc.contains(text), "docs/simulator.md shows this scenario");
    let mut sim = Simulation::from_json(text).unwrap();
    let r = sim.run();
    assert!(r.summary.cancelled > 0 && r.summary.completed > 0);
    // As the docs say: the nightly report once, at 2 h; the cleanup 35 times.
    let runs: Vec<(u64, Option<Millis>)> = schedules(&sim)
        .into_iter()
        .map(|s| (s.runs, s.last_run_at))
        .collect();
    assert_eq!(
        runs,
        [(1, Some(Millis(7_200_000))), (35, Some(Millis(21_000_000)))]
    );
}
