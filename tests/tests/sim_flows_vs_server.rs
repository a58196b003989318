//! The simulator against the real server on one pipeline (DESIGN.md §14): the same flows
//! (a notification waiting for a package waiting for three transcodes) published at the same
//! rate, worked by the same workers (two for the transcodes, one each for the package and the
//! notification) with the same constant service times, give the same end-to-end flow latency.
//! Method: the simulator runs the scenario on its virtual clock; a real in-memory
//! `synap-server` (stopped by its PID) gets the flows from this test over REST on a fixed
//! schedule, and tokio workers long-poll each queue, sleep the service time and ack. Each
//! server flow's latency is its own record's `finished_at - created_at` (`GET /flows/{id}`),
//! the simulator's is the report's. The medians must agree within 10% (in one of up to three
//! rounds of the same flows, as a loaded machine can slow a round); the server's also
//! cannot beat the critical path (two rounds of transcodes on two workers, the package, the
//! notification), which is what the simulator gives exactly, since its flows never overlap.
//! No other timing is asserted.

mod server_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use server_common::Api;
use synap_core::sim::{Scenario, Simulation};

/// Flows published, one every `EVERY_MS`.
const FLOWS: u64 = 8;
const EVERY_MS: u64 = 1_000;
/// Every task's service time: long enough that each stage's HTTP round trips on a debug
/// build (a few ms) stay well inside the 10%.
const SERVICE_MS: u64 = 200;
/// Workers on the transcode queue (the other two queues have one each).
const GPUS: u32 = 2;

/// The pipeline as a scenario: the same arrivals, workers and service times.
fn scenario() -> Scenario {
    let service = json!({ "dist": "constant", "ms": SERVICE_MS });
    serde_json::from_value(json!({
        "name": "sim-vs-server", "duration_ms": 12_000, "seed": 1, "sample_interval_ms": 1_000,
        "queue": "transcode",
        "task_types": [
            { "name": "notify", "queue": "notify", "service": service,
              "children": [ { "task_type": "package" } ] },
            { "name": "package", "queue": "package", "service": service,
              "children": [ { "task_type": "transcode", "count": 3 } ] },
            { "name": "transcode", "service": service }
        ],
        "producers": [ { "name": "uploads",
                         "arrival": { "process": "constant", "rate_per_sec": 1000.0 / EVERY_MS as f64 },
                         "stop_ms": FLOWS * EVERY_MS,
                         "mix": [ { "task_type": "notify" } ] } ],
        "workers": [
            { "name": "gpu", "count": GPUS, "queue": "transcode", "wait_ms": 1_000 },
            { "name": "packager", "queue": "package", "wait_ms": 1_000 },
            { "name": "notifier", "queue": "notify", "wait_ms": 1_000 }
        ]
    }))
    .expect("a valid scenario")
}

/// The same flow as a `POST /flows` body.
fn flow(n: u64) -> Value {
    let job = |queue: &str, name: String| json!({ "queue": queue, "message": { "name": name } });
    let renditions: Vec<Value> = (0..3)
        .map(|r| job("transcode", format!("{n}-{r}")))
        .collect();
    let mut package = job("package", format!("{n}"));
    package["children"] = json!(renditions);
    let mut notify = job("notify", format!("{n}"));
    notify["children"] = json!([package]);
    notify
}

/// A worker: long-polls `queue`, sleeps the service time per task, acks; until `stop`.
fn worker(api: &Api, queue: &'static str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let (http, base) = (api.http.clone(), api.srv.url(""));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let resp = http
                .post(format!("{base}/queue/{queue}/consume"))
                .json(&json!({ "timeout": 1, "ack_deadline": 30 }))
                .send()
                .await
                .expect("consume");
            assert_eq!(resp.status().as_u16(), 200, "consume on {queue}");
            let body: Value = resp.json().await.expect("consume body");
            for d in body["messages"].as_array().cloned().unwrap_or_default() {
                tokio::time::sleep(Duration::from_millis(SERVICE_MS)).await;
                let ack = json!({ "message_id": d["message_id"], "lease": d["lease"] });
                let r = http
                    .post(format!("{base}/queue/{queue}/ack"))
                    .json(&ack)
                    .send()
                    .await
                    .expect("ack");
                assert_eq!(r.status().as_u16(), 200, "ack on {queue}");
            }
        }
    })
}

/// Nearest-rank median.
fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len().div_ceil(2) - 1]
}

#[tokio::test]
async fn the_simulators_flow_latency_matches_the_servers_on_one_pipeline() {
    // The simulator.
    let report = Simulation::new(scenario()).unwrap().run();
    let sim = report.summary.flows.expect("flows in the report");
    assert_eq!((sim.started, sim.completed), (FLOWS, FLOWS), "{sim:?}");
    let critical_path = 2 * SERVICE_MS + SERVICE_MS + SERVICE_MS;
    assert_eq!(sim.latency_ms.p50, critical_path, "{sim:?}");

    // The server, with the same workers.
    let api = Api::start();
    for queue in ["transcode", "package", "notify"] {
        api.ok(&format!("/queue/{queue}"), json!({})).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for queue in ["transcode"; GPUS as usize]
        .into_iter()
        .chain(["package", "notify"])
    {
        workers.push(worker(&api, queue, Arc::clone(&stop)));
    }
    // Let every worker park its first long-poll, as the simulator's do at time 0.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A loaded machine can slow one round's HTTP round trips: up to three rounds of the same
    // flows, and the first whose median agrees passes.
    let (sim_p50, mut rounds) = (sim.latency_ms.p50, Vec::new());
    for _ in 0..3 {
        let latencies = server_round(&api).await;
        assert!(
            latencies.iter().all(|l| *l >= critical_path),
            "a flow beat its critical path of {critical_path} ms: {latencies:?}"
        );
        let server_p50 = median(latencies.clone());
        eprintln!(
            "flow p50: simulator {sim_p50} ms, server {server_p50} ms; server flows {latencies:?}"
        );
        rounds.push(server_p50);
        if server_p50.abs_diff(sim_p50) * 10 <= sim_p50 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let last = *rounds.last().expect("a round");
    assert!(
        last.abs_diff(sim_p50) * 10 <= sim_p50,
        "flow p50: simulator {sim_p50} ms, server {rounds:?} ms over {} rounds",
        rounds.len()
    );
}

/// Adds the flows one `EVERY_MS` apart and waits for each to complete; their latencies.
async fn server_round(api: &Api) -> Vec<u64> {
    let start = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for n in 0..FLOWS {
        tokio::time::sleep_until(start + Duration::from_millis(n * EVERY_MS)).await;
        let created = api.ok("/flows", flow(n)).await;
        ids.push(created["flow_id"].as_str().expect("flow_id").to_owned());
    }
    let mut latencies = Vec::new();
    for id in &ids {
        let mut f = Value::Null;
        for _ in 0..600 {
            f = api.ok_get(&format!("/flows/{id}")).await;
            if f["state"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(f["state"], "completed", "{f}");
        let (created, finished) = (f["created_at"].as_u64(), f["finished_at"].as_u64());
        latencies.push(finished.expect("finished_at") - created.expect("created_at"));
    }
    latencies
}
