//! Simulated flows (DESIGN.md §14). Goal: a task type with children reaches the engine as a
//! real flow whose parents wait for their children; the report's end-to-end flow latency is
//! what the engine's own flow records say, and never below the critical path's service times;
//! a failing child under `fail` fails its flow while `continue` completes it; runs are
//! deterministic; sweeps find the workers a flow p99 needs; scenarios without flows report and
//! hash exactly as before. Method: small pipelines with constant service times, where every
//! latency is known by hand, checked against the report and against `Engine::flow`.

use serde_json::json;

use super::*;
use crate::{Command, FlowJobState, FlowNodeInfo, Millis, Reply};

/// notify ← package ← 3 × transcode, each on its own queue with its own workers, one flow a
/// second for a minute. Constant services: transcode 300 ms, package 100 ms, notify 50 ms.
fn pipeline(gpus: u32, mode: &str) -> Scenario {
    serde_json::from_value(json!({
        "name": "pipeline", "duration_ms": 60_000, "seed": 5, "sample_interval_ms": 10_000,
        "queue": "transcode",
        "queue_config": { "max_retries": 0 },
        "task_types": [
            { "name": "notify", "queue": "notify", "service": { "dist": "constant", "ms": 50 },
              "children": [ { "task_type": "package" } ], "on_child_failure": mode },
            { "name": "package", "queue": "package", "service": { "dist": "constant", "ms": 100 },
              "children": [ { "task_type": "transcode", "count": 3 } ], "on_child_failure": mode },
            { "name": "transcode", "service": { "dist": "constant", "ms": 300 } }
        ],
        "producers": [ { "name": "uploads", "arrival": { "process": "constant", "rate_per_sec": 1 },
                         "mix": [ { "task_type": "notify", "priority": 5 } ] } ],
        "workers": [
            { "name": "gpu", "count": gpus, "queue": "transcode" },
            { "name": "packager", "queue": "package" },
            { "name": "notifier", "queue": "notify" }
        ]
    }))
    .unwrap()
}

fn run(s: Scenario) -> Report {
    Simulation::new(s).unwrap().run()
}

fn flows(r: &Report) -> &FlowStats {
    r.summary.flows.as_ref().expect("a report with flows")
}

/// Every node of a flow, pre-order.
fn nodes(n: &FlowNodeInfo, out: &mut Vec<FlowNodeInfo>) {
    out.push(n.clone());
    for c in &n.children {
        nodes(c, out);
    }
}

/// Nearest-rank percentile, as the report computes it.
fn rank(sorted: &[u64], p: usize) -> u64 {
    sorted[(p * sorted.len()).div_ceil(100).max(1) - 1]
}

#[test]
fn the_tree_reaches_the_engine_and_parents_wait_for_their_children() {
    let mut sim = Simulation::new(pipeline(3, "fail")).unwrap();
    // Step 10 ms at a time over the first five flows: a parent is never ready, in flight or
    // done while a child of its is unfinished.
    let mut saw_waiting = false;
    for t in (0..5_000).step_by(10) {
        sim.step(t);
        let engine = sim.engine();
        for fid in engine.flow_ids() {
            let info = engine.flow(fid).unwrap();
            let mut all = Vec::new();
            nodes(&info.root, &mut all);
            assert_eq!(all.len(), 5);
            let queues: Vec<&str> = all.iter().map(|n| &*n.queue).collect();
            assert_eq!(
                queues,
                ["notify", "package", "transcode", "transcode", "transcode"]
            );
            for n in &all {
                saw_waiting |= n.state == FlowJobState::WaitingChildren;
                if !n.state.is_finished() && n.state != FlowJobState::WaitingChildren
                    || n.state == FlowJobState::Completed
                {
                    assert!(
                        n.children.iter().all(|c| c.state.is_finished()),
                        "at {t} ms a parent is {:?} before its children finished: {info:?}",
                        n.state
                    );
                }
            }
        }
    }
    assert!(saw_waiting);
    // Mid-flow (flow 2 started at 1000 ms; its transcodes run until 1300 ms) the engine shows
    // both parents waiting, and so does the series' flows.waiting_children at a sample.
    let mut sim = Simulation::new(pipeline(3, "fail")).unwrap();
    sim.step(1_150);
    let mut engine = sim.engine().clone();
    for (queue, waiting) in [("package", 1), ("notify", 1), ("transcode", 0)] {
        let Ok(Reply::Stats(s)) = engine.handle(
            Millis(1_150),
            Command::Stats {
                queue: queue.into(),
            },
        ) else {
            panic!("stats of {queue}");
        };
        assert_eq!(s.waiting_children, waiting, "{queue}");
    }
    let r = run(pipeline(3, "fail"));
    // Samples every 10 s fall on a flow's start, while its two parents wait.
    let first = r.series[0].flows.as_ref().unwrap();
    assert_eq!(first.waiting_children, 2);
}

#[test]
fn flow_latency_is_the_critical_path_without_contention() {
    // Three GPUs: the renditions run side by side: 300 + 100 + 50 ms.
    let r = run(pipeline(3, "fail"));
    let f = flows(&r);
    // Flows start at 0, 1, … 59 s; the last one ends 450 ms later, within the run.
    assert_eq!(
        (f.started, f.completed, f.failed, f.running),
        (60, 60, 0, 0)
    );
    let l = &f.latency_ms;
    assert_eq!((l.count, l.p50, l.p99, l.max), (60, 450, 450, 450));
    // One GPU: the renditions queue behind each other: 3 × 300 + 100 + 50 ms.
    let r = run(pipeline(1, "fail"));
    let l = &flows(&r).latency_ms;
    assert_eq!((l.p50, l.max), (1_050, 1_050));
    // The flow that starts at 59 s ends at 60.05 s, after the run: its notification is in
    // flight at the end. The books balance: 5 jobs a flow.
    assert_eq!((flows(&r).completed, flows(&r).running), (59, 1));
    let s = &r.summary;
    assert_eq!((s.published, s.completed, s.still_in_system), (300, 299, 1));
    // Each interval's flows add up to the totals.
    let done: u64 = r
        .series
        .iter()
        .map(|p| p.flows.as_ref().unwrap().completed)
        .sum();
    assert_eq!(done, 59);
    let p = r.series[2].flows.as_ref().unwrap();
    assert_eq!(
        (p.started, p.latency_ms.p50, p.latency_ms.p99),
        (10, 1_050, 1_050)
    );
}

#[test]
fn flow_latency_matches_the_engines_records_and_exceeds_the_critical_path() {
    // Random transcodes (200–400 ms) on two GPUs, so renditions sometimes queue.
    let mut s = pipeline(2, "fail");
    s.task_types[2].service = Dist::Uniform {
        min_ms: 200,
        max_ms: 400,
    };
    s.seed = 9;
    let mut sim = Simulation::new(s).unwrap();
    let r = sim.run();
    let f = flows(&r);
    assert!(f.completed >= 59, "{f:?}");
    // The engine's own flow records: created_at → finished_at of each completed flow.
    let engine = sim.engine();
    let mut latencies: Vec<u64> = (engine.flow_ids().into_iter())
        .map(|fid| engine.flow(fid).unwrap())
        .filter(|info| info.root.state == FlowJobState::Completed)
        .map(|info| info.finished_at.unwrap().0 - info.created_at.0)
        .collect();
    latencies.sort_unstable();
    assert_eq!(latencies.len() as u64, f.completed);
    let l = &f.latency_ms;
    assert_eq!(
        (l.p50, l.p90, l.p99, l.max),
        (
            rank(&latencies, 50),
            rank(&latencies, 90),
            rank(&latencies, 99),
            *latencies.last().unwrap()
        )
    );
    // No flow beats its critical path: the fastest rendition, the package, the notification.
    assert!(latencies[0] >= 200 + 100 + 50, "{latencies:?}");
    // Two GPUs for three renditions: the third waits for a free one, so the fastest flow
    // takes two transcodes back to back.
    assert!(latencies[0] >= 2 * 200 + 100 + 50, "{latencies:?}");
}

#[test]
fn a_failing_child_under_fail_fails_the_flow_and_under_continue_it_completes() {
    let poisoned = |mode: &str| {
        let mut s = pipeline(3, mode);
        s.task_types[2].poison_probability = 1.0;
        run(s)
    };
    // fail: the first dead rendition dead-letters the package and then the notification
    // (`child_failed`); the other renditions are cancelled, or fail on their own.
    let r = poisoned("fail");
    let f = flows(&r);
    assert_eq!(
        (f.started, f.completed, f.failed, f.running),
        (60, 0, 60, 0)
    );
    assert_eq!(f.latency_ms.count, 0);
    let s = &r.summary;
    assert_eq!(s.dead_letter_reasons.child_failed, 120);
    assert_eq!(s.completed, 0);
    // Parents that never ran count as published when they end, so the books balance.
    assert_eq!(s.published, 300);
    assert_eq!(
        s.published,
        s.completed + s.dead_lettered + s.cancelled + s.still_in_system
    );
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains(r#""child_failed":120"#), "{text}");
    // continue and ignore: the parents run anyway, after every rendition failed.
    for mode in ["continue", "ignore"] {
        let r = poisoned(mode);
        let f = flows(&r);
        assert_eq!(
            (f.completed, f.failed, f.completed_with_failures),
            (60, 0, 60)
        );
        assert_eq!(f.latency_ms.p50, 450, "{mode}");
        assert_eq!(r.summary.dead_letter_reasons.child_failed, 0);
        assert_eq!(r.summary.dead_lettered, 180, "{mode}: the renditions");
    }
}

#[test]
fn cancelling_a_root_cancels_its_whole_flow() {
    // Every notification is cancelled 100 ms after its flow starts, while it still waits:
    // the engine cancels its descendants with it.
    let mut s = pipeline(3, "fail");
    s.task_types[0].cancel = Some(Cancellation {
        fraction: 1.0,
        after: Dist::Constant { ms: 100 },
    });
    let r = run(s);
    let f = flows(&r);
    assert_eq!((f.started, f.cancelled, f.completed), (60, 60, 0));
    let s = &r.summary;
    assert_eq!(s.cancels.sent, 60);
    // Each flow's renditions were in flight: they settle as cancelled when the GPUs ack.
    assert_eq!(s.cancels.in_flight, 0);
    assert_eq!(s.cancelled, 300);
    assert_eq!(s.completed, 0);
}

#[test]
fn follow_ups_and_bursts_start_flows_and_reach_every_queue() {
    let mut s = pipeline(3, "fail");
    // An `upload` (its own queue, 10 ms) is followed by a whole pipeline; bursts of 4 mix
    // uploads with lone transcodes, one batch per queue.
    s.task_types.push(
        serde_json::from_value(json!({
            "name": "upload", "queue": "uploads", "service": { "dist": "constant", "ms": 10 },
            "follow_ups": [ { "task_type": "notify" } ]
        }))
        .unwrap(),
    );
    s.producers[0].arrival = Arrival::Bursts {
        every_ms: 4_000,
        size: 4,
    };
    s.producers[0].mix = serde_json::from_value(json!([
        { "task_type": "upload" }, { "task_type": "transcode" }
    ]))
    .unwrap();
    s.workers.push(WorkerGroup {
        name: "uploader".into(),
        queue: Some("uploads".into()),
        ..WorkerGroup::default()
    });
    let r = run(s);
    let uploads = r.summary.workers[3].completed;
    let f = flows(&r);
    assert!(uploads > 10, "{:?}", r.summary.workers);
    assert_eq!(f.started, uploads);
    assert_eq!(f.completed + f.running, f.started);
    let queues = match Simulation::new(pipeline(1, "fail"))
        .unwrap()
        .engine()
        .clone()
        .handle(Millis(0), Command::ListQueues)
    {
        Ok(Reply::Queues { queues }) => queues,
        other => panic!("{other:?}"),
    };
    assert_eq!(queues.len(), 3, "{queues:?}");
}

#[test]
fn flow_runs_are_deterministic() {
    let mut s = preset("video-pipeline").unwrap();
    s.duration_ms = 900_000;
    let a = run(s.clone());
    assert_eq!(a, run(s.clone()));
    let mut sim = Simulation::new(s.clone()).unwrap();
    sim.step(300_000);
    assert_eq!(sim.run(), a);
    let mut other = s;
    other.seed += 1;
    let b = run(other);
    assert_ne!(b.summary.run_hash, a.summary.run_hash);
    assert_ne!(flows(&b).latency_ms, flows(&a).latency_ms);
}

#[test]
fn the_video_pipeline_preset_runs_whole_flows() {
    // Its scenario reads back as written (`--print-scenario`, the web app's editor).
    let s = preset("video-pipeline").unwrap();
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Scenario>(&text).unwrap(), s);
    assert!(
        text.contains(r#""children":[{"task_type":"transcode","count":3}]"#),
        "{text}"
    );
    let r = Simulation::from_preset("video-pipeline").unwrap().run();
    let f = flows(&r);
    // About 0.2 uploads a second for an hour.
    assert!((600..840).contains(&f.started), "{f:?}");
    assert_eq!(f.started, f.completed + f.failed + f.cancelled + f.running);
    assert!(f.completed > f.started * 9 / 10, "{f:?}");
    // A flow takes at least its slowest rendition, the package and the notification.
    assert!(f.latency_ms.p50 > 15_000 + 3_000, "{f:?}");
    let names: Vec<&str> = r.summary.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["gpu", "packager", "notifier"]);
    assert!(r.summary.workers.iter().all(|w| w.completed > 0));
    assert!(r.series.iter().all(|p| p.flows.is_some()));
}

#[test]
fn a_sweep_finds_the_gpus_a_flow_p99_needs() {
    let mut s = preset("video-pipeline").unwrap();
    s.duration_ms = 1_200_000;
    let spec = Sweep {
        param: SweepParam::Workers,
        worker_group: 0,
        values: vec![8.0, 10.0, 14.0],
        target: Some(SweepTarget {
            metric: SweepMetric::FlowP99,
            max_ms: 90_000,
        }),
    };
    let r = sweep(&s, &spec).unwrap();
    let p99: Vec<u64> = (r.points.iter())
        .map(|p| SweepMetric::FlowP99.of(&p.summary).unwrap())
        .collect();
    // Eight GPUs cannot keep up (0.6 renditions/s × 15 s = 9 busy GPUs): flows queue for
    // minutes; more GPUs cut the p99.
    assert!(
        p99[0] > 120_000 && p99[0] > p99[1] && p99[1] > p99[2],
        "{p99:?}"
    );
    let meets: Vec<Option<bool>> = r.points.iter().map(|p| p.meets_target).collect();
    let expected: Vec<Option<bool>> = p99.iter().map(|v| Some(*v <= 90_000)).collect();
    assert_eq!(meets, expected);
    let first = r.points.iter().find(|p| p.meets_target == Some(true));
    assert_eq!(r.answer, first.map(|p| p.value));
    assert_eq!(r.answer, Some(10.0), "{p99:?}");
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains(r#""target":{"metric":"flow_p99","max_ms":90000}"#));
    // Without a target the report is as before.
    let plain = sweep(
        &s,
        &Sweep {
            target: None,
            ..spec
        },
    )
    .unwrap();
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("target") && !text.contains("answer"));
}

#[test]
fn scenarios_without_flows_report_and_hash_as_before() {
    // The run hashes of the presets before flows came to the simulator.
    let pinned = [
        ("video-processing", "31530751f9895f96"),
        ("steady", "a1cd8671e16e65e8"),
        ("nightly-reports", "e02673edadb3a0d7"),
        ("noisy-neighbour", "9d830de5d0eabeaa"),
    ];
    for (name, hash) in pinned {
        let scenario = preset(name).unwrap();
        let text = serde_json::to_string(&scenario).unwrap();
        for field in ["children", "on_child_failure", r#""queue":null"#] {
            assert!(!text.contains(field), "{name}: {field} in {text}");
        }
        let r = run(scenario);
        assert_eq!(r.summary.run_hash, hash, "{name}");
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains("flows") && !text.contains("child_failed"),
            "{name}"
        );
    }
}

#[test]
fn bad_flow_scenarios_get_clear_errors() {
    type Edit = fn(&mut Scenario);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |s| s.task_types[2].children = vec![child("notify", 1)],
            "task_types[0] (notify).children: notify → package → transcode → notify is a cycle",
        ),
        (
            |s| s.task_types[1].children = vec![child("nope", 1)],
            "task_types[1] (package).children: unknown task type \"nope\"",
        ),
        (
            |s| s.task_types[1].children[0].count = 0,
            "task_types[1] (package).children.count must be 1..=1000",
        ),
        (
            |s| s.task_types[1].children[0].count = 999,
            "task_types[0] (notify).children: its flow has 1001 tasks; the engine takes at most 1000",
        ),
        (
            |s| s.engine.limits.max_flow_depth = 2,
            "task_types[0] (notify).children: its flow has 3 levels; the engine takes at most 2",
        ),
        (
            |s| s.task_types[1].children = vec![child("transcode", 1); 9],
            "task_types[1] (package).children: at most 8 entries",
        ),
        (
            |s| s.task_types[0].queue = Some("bad queue!".into()),
            "task_types[0] (notify).queue:",
        ),
        (
            |s| s.workers[1].queue = Some("elsewhere".into()),
            "workers[1] (packager).queue: no task goes to \"elsewhere\"",
        ),
        (
            |s| {
                s.producers[0].arrival = Arrival::Schedule {
                    every_ms: Some(60_000),
                    cron: None,
                };
            },
            "producers[0] (uploads).mix: a schedule publishes single tasks, not flows",
        ),
    ];
    for (edit, needle) in cases {
        let mut s = pipeline(3, "fail");
        edit(&mut s);
        let err = Simulation::new(s).err().expect(needle).0;
        assert!(err.contains(needle), "{needle}\n  got: {err}");
    }
    let err = Simulation::from_json(
        r#"{"task_types": [{"name": "a", "children": [{"task_type": "a", "cnt": 1}]}]}"#,
    )
    .err()
    .unwrap();
    assert!(err.0.contains("unknown field `cnt`"), "{err}");
}

fn child(task_type: &str, count: u32) -> ChildTasks {
    ChildTasks {
        task_type: task_type.into(),
        count,
        priority: None,
    }
}

#[test]
fn the_documented_pipeline_parses_and_runs_as_shown() {
    let text = r#"{
  "name": "renditions", "duration_ms": 1800000, "seed": 4, "queue": "transcode",
  "queue_config": { "max_retries": 2, "ack_deadline_ms": 120000, "retry_delays_ms": [5000] },
  "task_types": [
    { "name": "notify", "queue": "notify", "service": { "dist": "constant", "ms": 200 },
      "children": [ { "task_type": "package" } ] },
    { "name": "package", "queue": "package", "service": { "dist": "normal", "mean_ms": 3000, "std_ms": 500 },
      "children": [ { "task_type": "transcode", "count": 3 } ], "on_child_failure": "continue" },
    { "name": "transcode", "service": { "dist": "normal", "mean_ms": 15000, "std_ms": 4000 },
      "failure_probability": 0.05 }
  ],
  "producers": [ { "name": "uploads", "arrival": { "process": "poisson", "rate_per_sec": 0.2 },
                   "mix": [ { "task_type": "notify", "priority": 5 } ] } ],
  "workers": [ { "name": "gpu", "count": 10, "queue": "transcode" },
               { "name": "packager", "queue": "package" },
               { "name": "notifier", "queue": "notify" } ]
}"#;
    let doc = include_str!("../../../docs/simulator.md");
    assert!(doc.contains(text), "docs/simulator.md shows this scenario");
    let r = Simulation::from_json(text).unwrap().run();
    let f = flows(&r);
    // The summary the docs print.
    assert_eq!(
        (f.started, f.completed, f.failed, f.running),
        (356, 353, 0, 3)
    );
    let line = format!(
        "{:>7}  {:>9}  {:>6}  {:>9}  {:>7}",
        f.started, f.completed, f.failed, f.cancelled, f.running
    );
    assert!(doc.contains(&line), "{line}");
}
