//! Goal: three real `synap-server` processes replicate a queue so that nothing acknowledged is
//! lost or doubled when the leader dies.
//!
//! Method: a cluster on loopback (`--fsync always`) under concurrent publishes (each with an
//! idempotency key, resent until answered), long-poll consumes and acks, every request sent to
//! a node in turn (followers forward it to the leader) and following `not_leader` to the leader
//! when a follower cannot. Meanwhile the leader is killed with
//! SIGKILL and restarted (3 times; `CLUSTER_KILLS=10` for a wide run), paused with SIGSTOP
//! past an election and resumed, and a follower's data directory is deleted before it
//! restarts (it catches up from a snapshot). Then the workers drain the queue, and:
//! - every publish that was answered was acked (or is still held: ready, in flight, DLQ);
//! - no idempotency key became two messages;
//! - nothing acked was delivered again (no delivery of it with a later attempt number);
//! - the three replicas' state digests agree at equal applied index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synap_tests::cluster_harness::Cluster;

const NODES: u64 = 3;
const PRODUCERS: usize = 4;
const CONSUMERS: usize = 3;

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    /// Idempotency key → message id, from every answered publish.
    published: BTreeMap<String, BTreeSet<String>>,
    /// Message id → key, from deliveries.
    delivered_key: BTreeMap<String, String>,
    /// Message id → attempt numbers (`retry_count`) delivered.
    deliveries: BTreeMap<String, BTreeSet<u64>>,
    /// Message id → the attempt whose ack was answered 200.
    acked: BTreeMap<String, u64>,
    /// Message ids whose ack had an unknown outcome.
    maybe_acked: BTreeSet<String>,
}

/// Where a client sends its next request, and how it follows the leader.
struct Client {
    http: reqwest::Client,
    urls: Vec<String>,
    leader: Mutex<Option<String>>,
}

/// How one request went.
enum Sent {
    /// A definitive answer (any status but the cluster's 503s).
    Answer(u16, Value),
    /// Not answered, or answered with a retryable 503: the outcome is unknown.
    Unknown,
}

impl Client {
    fn new(urls: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Self {
            http,
            urls,
            leader: Mutex::new(None),
        }
    }

    fn pick(&self) -> String {
        if let Some(l) = self.leader.lock().unwrap().clone() {
            return l;
        }
        self.urls[spread() % self.urls.len()].clone()
    }

    /// One POST; a `not_leader` answer points the next request at the leader.
    async fn post(&self, path: &str, body: &Value) -> Sent {
        let base = self.pick();
        let resp = match self
            .http
            .post(format!("{base}{path}"))
            .json(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                *self.leader.lock().unwrap() = None;
                return Sent::Unknown;
            }
        };
        let status = resp.status().as_u16();
        let Ok(v) = resp.json::<Value>().await else {
            *self.leader.lock().unwrap() = None;
            return Sent::Unknown;
        };
        if status == 503 {
            let leader = v["leader"]["http"].as_str().map(str::to_owned);
            *self.leader.lock().unwrap() = leader.filter(|l| *l != base);
            if leader_is_none(&v) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Sent::Unknown;
        }
        Sent::Answer(status, v)
    }
}

fn leader_is_none(v: &Value) -> bool {
    v["leader"].is_null()
}

/// Spreads requests without a known leader over the nodes in turn.
fn spread() -> usize {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn producer(c: Arc<Client>, ledger: Arc<Mutex<Ledger>>, p: usize, stop: Arc<AtomicBool>) {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("p{p}-{seq}");
        let body = json!({"message": {"key": key}, "idempotency_key": key});
        // Resent with its key until answered: the outcome of an unanswered one is unknown.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "publish {key} never answered");
            match c.post("/queue/jobs/publish", &body).await {
                Sent::Answer(200, v) => {
                    let id = v["message_id"].as_str().unwrap().to_owned();
                    ledger
                        .lock()
                        .unwrap()
                        .published
                        .entry(key.clone())
                        .or_default()
                        .insert(id);
                    break;
                }
                Sent::Answer(s, v) => panic!("publish {key}: {s} {v}"),
                Sent::Unknown => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        seq += 1;
    }
}

/// Consumes and acks until `stop`; then until the queue has been empty for a while.
async fn consumer(c: Arc<Client>, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut idle_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed)
            && idle_since.is_some_and(|t| t.elapsed() > Duration::from_secs(8))
        {
            return;
        }
        let body = json!({"timeout": 1, "ack_deadline": 3, "max_messages": 8});
        let messages = match c.post("/queue/jobs/consume", &body).await {
            Sent::Answer(200, v) => v["messages"].as_array().cloned().unwrap_or_default(),
            Sent::Answer(s, v) => panic!("consume: {s} {v}"),
            Sent::Unknown => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if messages.is_empty() {
            idle_since.get_or_insert_with(Instant::now);
            continue;
        }
        idle_since = None;
        for m in messages {
            let id = m["message_id"].as_str().unwrap().to_owned();
            let attempt = m["retry_count"].as_u64().unwrap();
            let lease = m["lease"].as_u64().unwrap();
            {
                let mut l = ledger.lock().unwrap();
                let key = m["message"]["key"].as_str().unwrap().to_owned();
                l.delivered_key.insert(id.clone(), key);
                l.deliveries.entry(id.clone()).or_default().insert(attempt);
            }
            ack(&c, &ledger, &id, attempt, lease).await;
        }
    }
}

async fn ack(c: &Client, ledger: &Mutex<Ledger>, id: &str, attempt: u64, lease: u64) {
    let body = json!({"message_id": id, "lease": lease});
    let mut unknown = false;
    for _ in 0..50 {
        match c.post("/queue/jobs/ack", &body).await {
            Sent::Answer(200, _) => {
                ledger.lock().unwrap().acked.insert(id.to_owned(), attempt);
                return;
            }
            // The lease ran out (it will be delivered again), or an earlier try of this very
            // ack took effect.
            Sent::Answer(404 | 409, _) => break,
            Sent::Answer(s, v) => panic!("ack {id}: {s} {v}"),
            Sent::Unknown => {
                unknown = true;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    if unknown {
        ledger.lock().unwrap().maybe_acked.insert(id.to_owned());
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// The node that says it leads, waiting up to 30 s for one.
async fn leader(cluster: &Cluster, http: &reqwest::Client) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in (1..=NODES).filter(|&id| cluster.is_up(id)) {
            let v = get(http, &cluster.url(id, "/cluster")).await;
            if v.is_some_and(|v| v["role"] == "leader") {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the faults: kills of the leader, a pause, a wiped follower.
async fn faults(cluster: &mut Cluster, http: &reqwest::Client, kills: usize) {
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let l = leader(cluster, http).await;
        eprintln!("kill {}: SIGKILL leader {l}", k + 1);
        cluster.kill(l);
        tokio::time::sleep(Duration::from_millis(800)).await;
        cluster.restart(l);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let l = leader(cluster, http).await;
    eprintln!("SIGSTOP leader {l} for 3 s");
    cluster.pause(l);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.resume(l);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let l = leader(cluster, http).await;
    let follower = (1..=NODES).find(|&id| id != l).unwrap();
    eprintln!("wiping follower {follower}");
    cluster.wipe(follower);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart(follower);
}

/// Digests of every node once they agree on the applied index (20 s at most).
async fn converged_digests(cluster: &Cluster, http: &reqwest::Client) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ds = Vec::new();
        for id in 1..=NODES {
            if let Some(v) = get(http, &cluster.url(id, "/debug/state_digest")).await {
                ds.push((
                    v["applied_index"].as_u64().unwrap_or(0),
                    v["state_digest"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        if ds.len() == NODES as usize && ds.windows(2).all(|w| w[0].0 == w[1].0) {
            return ds;
        }
        if Instant::now() > deadline {
            for id in 1..=NODES {
                let v = get(http, &cluster.url(id, "/cluster")).await;
                eprintln!("node {id}: {v:?}\n{}", cluster.log_tail(id, 30));
            }
            panic!("replicas never reached one applied index: {ds:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_loses_nothing_acknowledged_when_its_leader_dies() {
    let kills: usize = std::env::var("CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let settings = "  tick_ms: 50\n  snapshot_entries: 300\n";
    let mut cluster = Cluster::start(NODES as usize, settings, &["--fsync", "always"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let urls: Vec<String> = (1..=NODES).map(|id| cluster.url(id, "")).collect();
    let first = leader(&cluster, &http).await;
    let create = http
        .post(cluster.url(first, "/queue/jobs"))
        .json(&json!({"max_retries": 1000, "ack_deadline_secs": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 200, "{:?}", create.text().await);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for p in 0..PRODUCERS {
        let c = Arc::new(Client::new(urls.clone()));
        workers.push(tokio::spawn(producer(
            c,
            Arc::clone(&ledger),
            p,
            Arc::clone(&stop),
        )));
    }
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let c = Arc::new(Client::new(urls.clone()));
        consumers.push(tokio::spawn(consumer(
            c,
            Arc::clone(&ledger),
            Arc::clone(&stop),
        )));
    }
    let started = Instant::now();
    faults(&mut cluster, &http, kills).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("producer");
    }
    for c in consumers {
        c.await.expect("consumer");
    }
    eprintln!("workload and faults took {:?}", started.elapsed());
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    check(&ledger, &cluster, &http).await;
    let ds = converged_digests(&cluster, &http).await;
    assert!(
        ds.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {ds:?}"
    );
    eprintln!("replicas agree: {ds:?}");
}

async fn check(l: &Ledger, cluster: &Cluster, http: &reqwest::Client) {
    let id = leader(cluster, http).await;
    let stats = get(http, &cluster.url(id, "/queue/jobs/stats"))
        .await
        .unwrap();
    let held = stats["ready"].as_u64().unwrap()
        + stats["in_flight"].as_u64().unwrap()
        + stats["delayed"].as_u64().unwrap()
        + stats["dead_letter_count"].as_u64().unwrap();
    let acked_keys: BTreeSet<&String> = l
        .acked
        .keys()
        .chain(l.maybe_acked.iter())
        .filter_map(|id| l.delivered_key.get(id))
        .collect();
    let mut missing = Vec::new();
    for (key, ids) in &l.published {
        assert_eq!(
            ids.len(),
            1,
            "key {key} answered with two message ids: {ids:?}"
        );
        if !acked_keys.contains(key) {
            missing.push(key.clone());
        }
    }
    // Whatever was not acked must still be held by the queue.
    assert!(
        missing.len() as u64 <= held,
        "{} answered publishes neither acked nor held (held {held}): {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let mut ids_per_key: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
    for (id, key) in &l.delivered_key {
        ids_per_key.entry(key).or_default().insert(id);
    }
    for (key, ids) in &ids_per_key {
        assert_eq!(ids.len(), 1, "key {key} became two messages: {ids:?}");
    }
    for (id, &attempt) in &l.acked {
        let later: Vec<&u64> = l.deliveries[id].iter().filter(|&&a| a > attempt).collect();
        assert!(
            later.is_empty(),
            "{id} acked at attempt {attempt} came back: {later:?}"
        );
    }
    eprintln!(
        "published {} keys, acked {} (+{} unknown), held {held}, deliveries {}",
        l.published.len(),
        l.acked.len(),
        l.maybe_acked.len(),
        l.deliveries.values().map(BTreeSet::len).sum::<usize>()
    );
    assert!(
        l.published.len() > 100,
        "too little traffic: {}",
        l.published.len()
    );
}
