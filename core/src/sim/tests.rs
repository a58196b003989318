//! Simulator tests. Goal: the simulator is deterministic, loses no task, and responds to its
//! knobs the way queueing sense says it must. Method: run presets and variations of them and
//! compare reports; cross-check the simulator's own counters against the engine's `Stats`.

use super::*;
use crate::{Command, Reply};

fn video() -> Scenario {
    preset("video-processing").unwrap()
}

fn run(s: Scenario) -> Report {
    Simulation::new(s).unwrap().run()
}

fn prio(r: &Report, p: u8) -> &PriorityStats {
    r.summary
        .by_priority
        .iter()
        .find(|x| x.priority == p)
        .unwrap()
}

#[test]
fn same_seed_same_report_and_different_seed_different_hash() {
    let a = run(video());
    let b = run(video());
    assert_eq!(a, b);
    assert_eq!(a.summary.run_hash.len(), 16);
    let mut other = video();
    other.seed = 43;
    let c = run(other);
    assert_ne!(a.summary.run_hash, c.summary.run_hash);
    assert_ne!(a.summary.published, 0);
}

#[test]
fn every_task_is_completed_dead_lettered_or_still_queued() {
    let mut sim = Simulation::from_preset("video-processing").unwrap();
    let r = sim.run();
    let s = &r.summary;
    assert!(r.finished);
    assert!(s.completed > 1000 && s.dead_lettered > 0, "{s:?}");
    assert_eq!(
        s.published,
        s.completed + s.dead_lettered + s.still_in_system
    );
    let last = r.series.last().unwrap();
    assert_eq!(last.t_ms, 3_600_000);
    assert_eq!(
        s.still_in_system,
        last.ready + last.delayed + last.in_flight
    );
    // The engine's own counters agree with what the simulator observed.
    let mut engine = sim.engine().clone();
    let stats = match engine.handle(
        crate::Millis(3_600_000),
        Command::Stats {
            queue: "video-processing".into(),
        },
    ) {
        Ok(Reply::Stats(st)) => st,
        other => panic!("{other:?}"),
    };
    assert_eq!(stats.published_total, s.published);
    assert_eq!(stats.acked_total, s.completed);
    assert_eq!(stats.dead_lettered_total, s.dead_lettered);
    assert_eq!(stats.consumed_total, s.deliveries);
    assert_eq!(stats.dead_letter_count, last.dead_letter);
    // Interval counts add up to the totals.
    let completed: u64 = r.series.iter().map(|p| p.completed).sum();
    assert_eq!(completed, s.completed);
    let by_priority: u64 = s.by_priority.iter().map(|p| p.published).sum();
    assert_eq!(by_priority, s.published);
}

#[test]
fn crashes_expire_leases_and_failures_are_retried() {
    let r = run(video());
    let spot = r
        .summary
        .workers
        .iter()
        .find(|w| w.name == "spot-encoder")
        .unwrap();
    assert!(spot.crashes > 0 && spot.failed > 0, "{spot:?}");
    assert!(r.summary.lease_expired > 0);
    assert!(
        r.summary.retries >= r.summary.nacked - r.summary.dead_letter_reasons.max_retries_exceeded
    );
    assert!(r.summary.utilisation > 0.5 && r.summary.utilisation <= 1.0);
}

#[test]
fn dead_letters_rise_with_failure_probability() {
    let base = run(video()).summary.dead_lettered;
    let mut flaky = video();
    flaky.task_types[0].failure_probability = 0.4;
    let more = run(flaky).summary.dead_lettered;
    assert!(more > base * 2, "dead letters {base} -> {more}");
}

#[test]
fn dead_letters_fall_when_retries_increase() {
    let mut s = video();
    s.task_types[0].poison_probability = 0.0;
    s.task_types[0].failure_probability = 0.3;
    s.queue_config.max_retries = 1;
    let few = run(s.clone()).summary.dead_lettered;
    s.queue_config.max_retries = 4;
    let many = run(s).summary.dead_lettered;
    assert!(
        many * 3 < few,
        "dead letters with 1 retry {few}, with 4 retries {many}"
    );
}

#[test]
fn high_priority_waits_less_under_load() {
    let r = run(video());
    let (p9, p5) = (prio(&r, 9), prio(&r, 5));
    assert!(p9.wait_ms.count > 100 && p5.wait_ms.count > 100);
    assert!(
        p9.wait_ms.mean * 2.0 < p5.wait_ms.mean,
        "{:?} vs {:?}",
        p9.wait_ms,
        p5.wait_ms
    );
    assert!(p9.wait_ms.p90 < p5.wait_ms.p90);
    assert!(p9.latency_ms.p50 < p5.latency_ms.p50);
}

#[test]
fn steps_then_run_equal_one_run() {
    let whole = run(video());
    let mut sim = Simulation::from_preset("video-processing").unwrap();
    let mut last_t = 0;
    for until in [0, 1, 59_999, 60_000, 777_777, 1_800_000, 1_800_000] {
        let partial = sim.step(until);
        assert!(!partial.finished);
        assert_eq!(partial.summary.simulated_ms, until);
        assert!(partial.series.iter().all(|p| p.t_ms <= until));
        last_t = last_t.max(partial.series.len());
    }
    assert_eq!(last_t, 30);
    assert_eq!(sim.run(), whole);
}

#[test]
fn workers_long_poll_through_waiters() {
    let mut s = preset("steady").unwrap();
    s.workers[0].count = 5;
    let r = run(s);
    // Five workers for a light load: most are parked in long-polls at any sample.
    assert!(r.series.iter().all(|p| p.waiters >= 3), "{:?}", r.series[0]);
    assert_eq!(
        r.summary.published,
        r.summary.completed + r.summary.still_in_system
    );
    assert_eq!(r.summary.dead_lettered, 0);
    let tp: f64 =
        r.series.iter().map(|p| p.throughput_per_sec).sum::<f64>() / r.series.len() as f64;
    assert!((tp - 3.0).abs() < 0.3, "mean throughput {tp}");
}

#[test]
fn bad_scenarios_get_clear_errors() {
    type Edit = fn(&mut Scenario);
    let cases: Vec<(Edit, &str)> = vec![
        (|s| s.workers[0].count = 2000, "at most 1000 workers"),
        (
            |s| s.producers[0].mix[0].task_type = "nope".into(),
            "unknown task type \"nope\"",
        ),
        (
            |s| s.workers[1].crash_probability = 1.5,
            "crash_probability must be between 0 and 1",
        ),
        (|s| s.duration_ms = 0, "duration_ms"),
        (|s| s.queue_config.ack_deadline_ms = 0, "queue_config"),
        (
            |s| s.producers[0].mix[0].priority = Some(10),
            "priority must be 0..=9",
        ),
        (
            |s| {
                s.producers[0].arrival = Arrival::Poisson {
                    rate_per_sec: 5000.0,
                }
            },
            "limit",
        ),
    ];
    for (edit, needle) in cases {
        let mut s = video();
        edit(&mut s);
        let err = Simulation::new(s).err().expect("refused").to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
    assert!(Simulation::from_preset("nope").is_err());
    let err = Simulation::from_json(r#"{"duration_ms": 1000, "bogus": 1}"#)
        .err()
        .unwrap();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn scenario_json_round_trips_and_seed_may_be_a_string() {
    let text = serde_json::to_string(&video()).unwrap();
    let back: Scenario = serde_json::from_str(&text).unwrap();
    assert_eq!(back, video());
    let s: Scenario = serde_json::from_str(r#"{"seed": "18446744073709551615"}"#).unwrap();
    assert_eq!(s.seed, u64::MAX);
    assert!(serde_json::from_str::<Scenario>(r#"{"seed": "-1"}"#).is_err());
}

fn log() -> String {
    [
        r#"{"at": 1000, "command": {"type": "create_queue", "queue": "q", "config": {"ack_deadline_ms": 5000, "max_retries": 0}}}"#,
        r#"{"at": 1000, "command": {"type": "publish", "queue": "q", "message": {"n": 1}, "priority": 9}}"#,
        "",
        r#"{"at": 2000, "command": {"type": "publish", "queue": "q", "message": {"n": 2}}}"#,
        r#"{"at": 3000, "command": {"type": "consume", "queue": "q", "max_messages": 2}}"#,
        r#"{"at": 4000, "command": {"type": "ack", "queue": "q", "message_id": "00000000-0000-0000-0000-000000000000"}}"#,
    ]
    .join("\n")
}

#[test]
fn replay_reports_a_recorded_log() {
    let records = parse_log(&log()).unwrap();
    assert_eq!(records.records.len(), 5);
    let options = ReplayOptions {
        until_ms: Some(20_000),
        sample_interval_ms: 1000,
        ..ReplayOptions::default()
    };
    let r = replay(&records, &options).unwrap();
    let s = &r.summary;
    // Both messages were leased at 3 s and never acked: the leases expire at 8 s and with
    // max_retries 0 both are dead-lettered.
    assert_eq!((s.published, s.deliveries, s.lease_expired), (2, 2, 2));
    assert_eq!((s.completed, s.dead_lettered, s.still_in_system), (0, 2, 0));
    assert_eq!(
        s.commands as usize,
        records.records.len() + 2 * r.series.len()
    );
    assert_eq!(r.series.first().unwrap().t_ms, 2000);
    assert_eq!(r.series.last().unwrap().t_ms, 20_000);
    assert_eq!(r.series.last().unwrap().dead_letter, 2);
    assert_eq!(replay(&records, &options).unwrap(), r);
    let other = replay(&records, &ReplayOptions { seed: 5, ..options }).unwrap();
    assert_ne!(other.summary.run_hash, s.run_hash);
}

#[test]
fn replay_rejects_bad_logs_with_line_numbers() {
    let err = parse_log("{\"at\": 1, \"command\": {\"type\": \"list_queues\"}}\n{\"at\": 2}")
        .unwrap_err();
    assert!(err.starts_with("line 2:"), "{err}");
    let mut records = parse_log(&log()).unwrap();
    records.records[3].at = 10;
    let err = replay(&records, &ReplayOptions::default()).unwrap_err();
    assert!(err.contains("record 4"), "{err}");
}

// Flow control runs in the simulator as in the server: the queue config's limits hold the
// workers back, and producers may spread their tasks over message groups.
#[test]
fn flow_limits_and_groups_shape_a_simulated_run() {
    let base = run(video());
    let mut limited = video();
    limited.queue_config.max_in_flight = Some(1);
    limited.queue_config.group_concurrency = Some(1);
    limited.queue_config.fair_groups = true;
    for p in &mut limited.producers {
        p.groups = ProducerGroups::uniform(20);
    }
    let a = run(limited.clone());
    assert_eq!(a, run(limited.clone()), "deterministic");
    let s = &a.summary;
    assert_eq!(
        s.published,
        s.completed + s.dead_lettered + s.still_in_system
    );
    assert!(
        s.completed > 0 && s.completed < base.summary.completed,
        "{s:?}"
    );
    assert!(s.utilisation < base.summary.utilisation);
    let text = serde_json::to_string(&limited).unwrap();
    assert!(text.contains(r#""groups":20"#), "{text}");
    assert!(
        !serde_json::to_string(&video())
            .unwrap()
            .contains(r#""groups":"#)
    );
    limited.producers[0].groups = ProducerGroups::uniform(MAX_PRODUCER_GROUPS + 1);
    assert!(Simulation::new(limited).is_err());
}
