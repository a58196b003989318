//! Durability of the real server: the state after a graceful restart and after a kill -9 is
//! the state before (the engine's `state_digest`, taken at one fixed future time so pending
//! timers run alike), and a crash loop under concurrent publish, consume and ack with
//! `--fsync always` and `--fsync interval` in turn (a killed process loses nothing the page
//! cache holds, and `interval` answers once a record is written) loses no answered publish (each is still queued, dead-lettered, or was
//! acked) and never delivers a message again after its ack was answered. Its producers publish
//! with idempotency keys and retry an unanswered publish with its key after the restart: each
//! key ends as exactly one task.
//!
//! The crash loop runs 3 rounds by default; `SYNAP_CRASH_ROUNDS=n` runs more.

mod server_common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use server_common::{Api, Options, Server};

/// A fresh data directory under the system temp dir (removed by `Dir`'s drop).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "synap-durability-{name}-{}-{nanos}",
            std::process::id()
        ));
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Dir, extra: &[&str]) -> Api {
    Api::with(Server::start_with(Options {
        data_dir: Some(&dir.0),
        args: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    }))
}

/// An hour from now, in Unix-epoch ms: past every timer the tests set, the same for both runs.
fn future_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(now.as_millis()).unwrap() + 3_600_000
}

async fn digest(api: &Api, at: u64) -> String {
    let v = api.ok_get(&format!("/debug/state_digest?at_ms={at}")).await;
    assert_eq!(v["at_ms"], json!(at), "{v}");
    v["state_digest"].as_str().expect("digest").to_owned()
}

/// Messages ready, delayed, leased and dead-lettered; a retry timer; KV keys with and without
/// a TTL.
async fn build_state(api: &Api) {
    for i in 0..5 {
        api.publish("jobs", json!({"message": {"n": i}, "priority": i}))
            .await;
    }
    api.publish("jobs", json!({"message": "later", "delay": 600}))
        .await;
    api.publish("jobs", json!({"message": "short-lived", "ttl": 900}))
        .await;
    let leased = api
        .consume("jobs", json!({"max_messages": 3, "ack_deadline": 120}))
        .await;
    assert_eq!(leased.len(), 3);
    let id = |d: &Value| d["message_id"].as_str().unwrap().to_owned();
    api.ok("/queue/jobs/ack", json!({"message_id": id(&leased[0])}))
        .await;
    api.ok(
        "/queue/jobs/nack",
        json!({"message_id": id(&leased[1]), "requeue": true, "delay": 30}),
    )
    .await;
    api.publish("fails", json!({"message": "bad"})).await;
    let bad = api.consume("fails", json!({})).await;
    api.ok(
        "/queue/fails/nack",
        json!({"message_id": id(&bad[0]), "requeue": false, "error": "boom"}),
    )
    .await;
    api.ok(
        "/kv/set",
        json!({"key": "session", "value": {"u": 1}, "ttl": 600}),
    )
    .await;
    api.ok("/kv/set", json!({"key": "config", "value": [1, 2, 3]}))
        .await;
    api.ok("/kv/incr", json!({"key": "counter", "by": 5})).await;
}

#[tokio::test]
async fn a_graceful_restart_keeps_the_whole_state() {
    let dir = Dir::new("graceful");
    let at = future_ms();
    let mut api = start(&dir, &[]);
    build_state(&api).await;
    let before = digest(&api, at).await;
    let stats = api.stats("jobs").await;
    let status = api.srv.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        api.srv.log().iter().any(|l| l.contains("snapshot written")),
        "a shutdown snapshot: {:?}",
        api.srv.log()
    );
    let api = start(&dir, &[]);
    assert_eq!(
        digest(&api, at).await,
        before,
        "state after a graceful restart"
    );
    let again = api.stats("jobs").await;
    for k in [
        "ready",
        "delayed",
        "in_flight",
        "published_total",
        "acked_total",
    ] {
        assert_eq!(again[k], stats[k], "{k}");
    }
    let kv = api.ok_get("/kv/get/session").await;
    assert_eq!(kv["value"], json!({"u": 1}));
    assert!(kv["ttl"].as_f64().is_some(), "the TTL survives: {kv}");
}

#[tokio::test]
async fn a_kill_keeps_every_answered_change() {
    let dir = Dir::new("kill");
    let at = future_ms();
    let mut api = start(&dir, &["--fsync", "always"]);
    build_state(&api).await;
    let before = digest(&api, at).await;
    api.srv.kill();
    let mut api = start(&dir, &["--fsync", "always"]);
    assert_eq!(digest(&api, at).await, before, "state after kill -9");
    // And once more, from a restart that itself was killed.
    api.srv.kill();
    let api = start(&dir, &[]);
    assert_eq!(digest(&api, at).await, before, "state after a second kill");
}

#[tokio::test]
async fn a_long_poll_from_before_a_crash_is_cancelled_and_leases_stay_held() {
    let dir = Dir::new("waiter");
    let mut api = start(&dir, &["--fsync", "always"]);
    api.publish("w", json!({"message": 1})).await;
    let leased = api.consume("w", json!({"ack_deadline": 600})).await;
    assert_eq!(leased.len(), 1);
    let url = api.srv.url("/queue/w/consume");
    let parked = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .json(&json!({"timeout": 60}))
            .send()
            .await;
    });
    api.wait_stats("w", "a parked consumer", |s| s["waiters"] == json!(1))
        .await;
    api.srv.kill();
    parked.await.unwrap();
    let api = start(&dir, &[]);
    let stats = api.stats("w").await;
    assert_eq!(
        stats["waiters"],
        json!(0),
        "the dead client's wait is gone: {stats}"
    );
    assert_eq!(
        stats["in_flight"],
        json!(1),
        "the lease is still held: {stats}"
    );
    let ack = json!({"message_id": leased[0]["message_id"], "lease": leased[0]["lease"]});
    api.ok("/queue/w/ack", ack).await;
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_refuses_to_start() {
    let dir = Dir::new("lock");
    let _first = start(&dir, &[]);
    let out = std::process::Command::new(synap_tests::server_harness::server_binary())
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .output()
        .expect("run a second server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
}

/// What the crash-loop clients saw answered.
#[derive(Default)]
struct Seen {
    published: HashSet<String>,
    acked: HashSet<String>,
    /// Messages an ack was sent for, answered or not (an unanswered ack may have happened).
    ack_sent: HashSet<String>,
    /// Deliveries of a message whose ack had been answered before: must stay empty.
    redelivered_after_ack: Vec<String>,
    /// Each producer's next message number: an unanswered publish is sent again with its key.
    next: HashMap<usize, u64>,
    /// The id each key's publish was answered with.
    answered: HashMap<String, String>,
    /// Every message id seen carrying each key (deliveries, what is left, the DLQ).
    ids_by_key: HashMap<String, HashSet<String>>,
}

impl Seen {
    fn saw(&mut self, d: &Value) {
        let id = d["message_id"].as_str().expect("id").to_owned();
        if let Some(key) = d["message"]["key"].as_str() {
            self.ids_by_key
                .entry(key.to_owned())
                .or_default()
                .insert(id);
        }
    }
}

/// `Err` when the server is gone; `Ok(None)` when it refused (e.g. an ack after the lease
/// ended); `Ok(Some(reply))` when it answered.
async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<Option<Value>, ()> {
    let resp = http.post(url).json(&body).send().await.map_err(|_| ())?;
    let ok = resp.status().is_success();
    let v: Value = resp.json().await.map_err(|_| ())?;
    Ok(ok.then_some(v))
}

/// Publishes with idempotency keys until the server dies; records each answered publish. The
/// publish the crash left unanswered is the first one sent to the next server, with its key.
async fn producer(http: reqwest::Client, base: String, seen: Arc<Mutex<Seen>>, p: usize) {
    let mut n = seen.lock().unwrap().next.get(&p).copied().unwrap_or(0);
    loop {
        let key = format!("p{p}-{n}");
        let body = json!({"message": {"p": p, "n": n, "key": key}, "idempotency_key": key});
        let Ok(reply) = post(&http, format!("{base}/queue/crash/publish"), body).await else {
            seen.lock().unwrap().next.insert(p, n);
            return;
        };
        let v = reply.expect("publish accepted");
        let id = v["message_id"].as_str().expect("id").to_owned();
        let mut seen = seen.lock().unwrap();
        seen.published.insert(id.clone());
        if let Some(first) = seen.answered.insert(key.clone(), id.clone()) {
            assert_eq!(first, id, "{key} answered with two ids");
        }
        n += 1;
    }
}

/// Consumes and acks until the server dies; records each answered ack.
async fn consumer(http: reqwest::Client, base: String, seen: Arc<Mutex<Seen>>) {
    loop {
        let body = json!({"max_messages": 10, "ack_deadline": 1});
        let Ok(reply) = post(&http, format!("{base}/queue/crash/consume"), body).await else {
            return;
        };
        let v = reply.expect("consume accepted");
        for d in v["messages"].as_array().expect("messages") {
            let id = d["message_id"].as_str().unwrap().to_owned();
            seen.lock().unwrap().saw(d);
            if seen.lock().unwrap().acked.contains(&id) {
                seen.lock().unwrap().redelivered_after_ack.push(id.clone());
            }
            seen.lock().unwrap().ack_sent.insert(id.clone());
            let ack = json!({"message_id": id, "lease": d["lease"]});
            match post(&http, format!("{base}/queue/crash/ack"), ack).await {
                Err(()) => return,
                Ok(Some(_)) => {
                    seen.lock().unwrap().acked.insert(id);
                }
                // The lease ended first (a slow turn): the message is redelivered, not acked.
                Ok(None) => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_loses_no_answered_publish_and_redelivers_no_acked_message() {
    let rounds: usize = std::env::var("SYNAP_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = Dir::new("crash");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for round in 0..rounds {
        let policy = if round % 2 == 0 { "always" } else { "interval" };
        let mut api = start(&dir, &["--fsync", policy]);
        api.ok("/queue/crash", json!({})).await;
        let base = api.srv.url("");
        let mut tasks = Vec::new();
        for p in 0..3 {
            let s = Arc::clone(&seen);
            tasks.push(tokio::spawn(producer(http.clone(), base.clone(), s, p)));
        }
        for _ in 0..2 {
            let s = Arc::clone(&seen);
            tasks.push(tokio::spawn(consumer(http.clone(), base.clone(), s)));
        }
        // Let traffic flow, a little longer each round, then crash mid-flight.
        tokio::time::sleep(Duration::from_millis(300 + 100 * round as u64)).await;
        api.srv.kill();
        for t in tasks {
            t.await.unwrap();
        }
    }
    // Recover once more; once every lease of the last round has ended and every retry delay
    // has passed, each message is ready or dead-lettered.
    let api = start(&dir, &["--fsync", "always"]);
    // Each producer sends its unanswered publish once more, then stops.
    let pending: Vec<usize> = seen.lock().unwrap().next.keys().copied().collect();
    for p in pending {
        let (s, base) = (Arc::clone(&seen), api.srv.url(""));
        let n = s.lock().unwrap().next[&p];
        let key = format!("p{p}-{n}");
        let body = json!({"message": {"p": p, "n": n, "key": key}, "idempotency_key": key});
        let v = post(&http, format!("{base}/queue/crash/publish"), body)
            .await
            .expect("the server is up")
            .expect("publish accepted");
        let id = v["message_id"].as_str().expect("id").to_owned();
        let mut s = s.lock().unwrap();
        s.published.insert(id.clone());
        s.answered.insert(key, id);
    }
    let settled = |s: &Value| s["in_flight"] == json!(0) && s["delayed"] == json!(0);
    let stats = api
        .wait_stats("crash", "leases and delays over", settled)
        .await;
    let mut left = HashSet::new();
    loop {
        let got = api
            .consume("crash", json!({"max_messages": 100, "ack_deadline": 600}))
            .await;
        if got.is_empty() {
            break;
        }
        for d in got {
            left.insert(d["message_id"].as_str().unwrap().to_owned());
            seen.lock().unwrap().saw(&d);
        }
    }
    let dlq = api.ok_get("/queue/crash/dlq?limit=1000").await;
    for e in dlq["messages"].as_array().into_iter().flatten() {
        left.insert(e["message_id"].as_str().unwrap().to_owned());
        seen.lock().unwrap().saw(e);
    }
    let seen = seen.lock().unwrap();
    let twice: Vec<_> = seen
        .ids_by_key
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(twice.is_empty(), "keys that made two tasks: {twice:?}");
    for (key, id) in &seen.answered {
        let ids = seen.ids_by_key.get(key);
        assert!(
            ids.is_none_or(|ids| ids.contains(id)),
            "{key} answered {id}, but its task is {ids:?}"
        );
    }
    assert!(
        seen.published.len() > 10,
        "traffic flowed: {}",
        seen.published.len()
    );
    assert!(!seen.acked.is_empty(), "consumers acked");
    assert!(
        seen.redelivered_after_ack.is_empty(),
        "acked messages came back: {:?}",
        seen.redelivered_after_ack
    );
    let back: Vec<_> = left.intersection(&seen.acked).collect();
    assert!(back.is_empty(), "acked messages still queued: {back:?}");
    let lost: Vec<_> = seen
        .published
        .iter()
        .filter(|id| !seen.ack_sent.contains(*id) && !left.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "answered publishes lost: {lost:?}; {stats}; dlq {dlq}"
    );
}

/// Runs `synap-server simulate --replay DIR --until AT` and returns its report.
fn replay_dir(dir: &Dir, at: u64) -> Value {
    let out = std::process::Command::new(synap_tests::server_harness::server_binary())
        .args(["simulate", "--replay"])
        .arg(&dir.0)
        .args(["--until", &at.to_string()])
        .output()
        .expect("run the simulator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[tokio::test]
async fn a_replay_of_the_data_directory_ends_in_the_servers_state() {
    let dir = Dir::new("replay");
    let at = future_ms();
    let mut api = start(&dir, &["--fsync", "always"]);
    build_state(&api).await;
    // A snapshot (the graceful stop's), then more traffic on the log after it.
    assert!(api.srv.terminate().success());
    let api = start(&dir, &["--fsync", "always"]);
    for key in ["a", "b", "a"] {
        api.publish("keyed", json!({"message": key, "idempotency_key": key}))
            .await;
    }
    let leased = api.consume("jobs", json!({"ack_deadline": 60})).await;
    api.ok(
        "/queue/jobs/ack",
        json!({"message_id": leased[0]["message_id"]}),
    )
    .await;
    api.ok("/kv/set", json!({"key": "later", "value": 2, "ttl": 30}))
        .await;
    let live = digest(&api, at).await;
    // The directory of the running server is only read.
    let report = replay_dir(&dir, at);
    assert_eq!(report["state_digest"], json!(live), "{}", report["summary"]);
    assert!(report["summary"]["published"].as_u64().unwrap() >= 2);
    assert_eq!(
        api.stats("keyed").await["published_total"],
        json!(2),
        "the repeated key added nothing"
    );
}

#[tokio::test]
async fn a_restart_applies_the_new_config_to_the_recovered_state() {
    let dir = Dir::new("config");
    let mut api = start(&dir, &["--max-held-bytes", "1000000"]);
    api.publish("jobs", json!({"message": 1})).await;
    let limit = |s: &Value| s["memory"]["limit_bytes"].clone();
    assert_eq!(limit(&api.stats("jobs").await), json!(1_000_000));
    api.srv.kill();
    let mut api = start(&dir, &["--max-held-bytes", "2000000"]);
    assert_eq!(
        limit(&api.stats("jobs").await),
        json!(2_000_000),
        "the budget of this start, not the recovered one"
    );
    assert!(
        api.srv
            .log()
            .iter()
            .any(|l| l.contains("engine config differs")),
        "{:?}",
        api.srv.log()
    );
    // And it is kept by the next crash too (a snapshot holds it).
    api.srv.kill();
    let api = start(&dir, &["--max-held-bytes", "2000000"]);
    assert_eq!(limit(&api.stats("jobs").await), json!(2_000_000));
    assert_eq!(api.stats("jobs").await["depth"], json!(1));
}
