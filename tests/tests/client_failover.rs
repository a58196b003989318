//! Goal: `synap-client` given the URLs of a three-node cluster (real `synap-server` processes
//! on loopback) follows the leader, so a failover neither loses nor doubles a task.
//!
//! Method: each test starts its own cluster and finds the leader through `GET /cluster`.
//! - A client whose first URL is a follower publishes, consumes, acks, reads and opens a
//!   streaming consumer (refused on the follower with `not_leader`, so the client moves to the
//!   leader it names).
//! - A producer publishes in a loop while the leader is killed with SIGKILL: every publish is
//!   answered, the answers name distinct messages, and draining the queue afterwards yields
//!   each of them exactly once (no publish lost, none doubled by a resend).
//! - A streaming consumer holds two deliveries when the leader is killed: it acks them
//!   afterwards on its new connection (their leases outlive the old one) and keeps receiving
//!   what is published after the kill; then leadership moves by `POST /cluster/transfer`
//!   (the old leader, alive, ends the stream) and it keeps receiving still.
//!
//! Assertions are about what was delivered, never about how long the failover took; the
//! timeouts only keep a broken build from hanging.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synap_client::{ConsumeOptions, PublishOptions, QueueConfig, StreamOptions, SynapClient};
use synap_tests::cluster_harness::Cluster;

const NODES: u64 = 3;
/// Keeps a failing build from hanging; no assertion depends on it.
const HANG: Duration = Duration::from_secs(60);

fn start() -> Cluster {
    Cluster::start(NODES as usize, "  tick_ms: 50\n", &[])
}

/// The node that says it leads, waiting up to 30 s for one.
async fn leader(cluster: &Cluster) -> u64 {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in (1..=NODES).filter(|&id| cluster.is_up(id)) {
            let v: Option<Value> = async {
                let r = http.get(cluster.url(id, "/cluster")).send().await.ok()?;
                r.json().await.ok()
            }
            .await;
            if v.is_some_and(|v| v["role"] == "leader") {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Leases everything in `queue` and acks it, until a long-poll comes back empty: message id →
/// body, and how often each id was delivered.
async fn drain(c: &SynapClient, queue: &str) -> (BTreeMap<String, Value>, BTreeMap<String, u32>) {
    let (mut bodies, mut times) = (BTreeMap::new(), BTreeMap::new());
    let opts = ConsumeOptions {
        timeout: Some(Duration::from_millis(500)),
        ack_deadline: Some(Duration::from_secs(60)),
        consumer_id: None,
    };
    loop {
        let batch = c
            .queue_consume_batch::<Value>(queue, 100, Some(opts.clone()))
            .await
            .unwrap();
        if batch.is_empty() {
            return (bodies, times);
        }
        for m in batch {
            c.queue_ack_with_lease(queue, &m.id, m.lease).await.unwrap();
            *times.entry(m.id.clone()).or_insert(0) += 1;
            bodies.insert(m.id, m.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_first_url_is_a_follower_works() {
    let cluster = start();
    let l = leader(&cluster).await;
    let mut urls: Vec<String> = cluster.urls();
    // A follower first, the leader last.
    urls.sort_by_key(|u| *u == cluster.url(l, ""));
    assert_ne!(urls[0], cluster.url(l, ""));
    let c = SynapClient::connect_many(&urls).await.unwrap();
    assert_eq!(c.current_url().as_str(), format!("{}/", urls[0]));

    // REST calls work through the follower (it forwards them).
    c.queue_create("video", QueueConfig::default())
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    for n in 0..5 {
        let r = c
            .queue_publish("video", &json!({"n": n}), PublishOptions::default())
            .await
            .unwrap();
        assert!(!r.duplicate);
        ids.insert(r.message_id);
    }
    c.kv_set("k", &"v", None).await.unwrap();
    assert_eq!(c.kv_get::<String>("k").await.unwrap().as_deref(), Some("v"));
    let (bodies, times) = drain(&c, "video").await;
    assert_eq!(bodies.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(times.values().all(|&t| t == 1), "{times:?}");
    let stats = c.queue_stats("video").await.unwrap();
    assert_eq!((stats.acked_total, stats.depth), (5, 0));

    // The follower refuses a queue WebSocket with `not_leader`: the stream opens on the leader.
    let mut stream = c
        .queue_stream::<Value>("video", StreamOptions::default())
        .await
        .unwrap();
    assert_eq!(c.current_url().as_str(), format!("{}/", cluster.url(l, "")));
    let sent = c
        .queue_publish("video", &json!({"n": 5}), PublishOptions::default())
        .await
        .unwrap();
    let got = tokio::time::timeout(HANG, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.id, sent.message_id);
    stream.ack(&got.id, got.lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_while_the_leader_is_killed_loses_and_doubles_nothing() {
    const TOTAL: usize = 300;
    const KILL_AFTER: usize = 100;
    let mut cluster = start();
    let l = leader(&cluster).await;
    let c = SynapClient::connect_many(cluster.urls()).await.unwrap();
    c.queue_create("jobs", QueueConfig::default())
        .await
        .unwrap();

    // Two producers publish in turn-taking loops; the leader dies part-way.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for p in 0..2 {
        let (c, answered) = (c.clone(), Arc::clone(&answered));
        producers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for seq in (p..TOTAL).step_by(2) {
                let r = c
                    .queue_publish("jobs", &json!({"seq": seq}), PublishOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("publish {seq} was not answered: {e}"));
                assert!(!r.duplicate, "publish {seq}: a resend shows as one publish");
                ids.push((seq, r.message_id));
                answered.fetch_add(1, Ordering::Relaxed);
            }
            ids
        }));
    }
    let waited = Instant::now();
    while answered.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(
            waited.elapsed() < HANG,
            "the producers are stuck before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(l);
    let mut published: BTreeMap<String, usize> = BTreeMap::new();
    for p in producers {
        for (seq, id) in tokio::time::timeout(HANG, p).await.unwrap().unwrap() {
            assert!(
                published.insert(id.clone(), seq).is_none(),
                "two publishes answered with one message id {id}"
            );
        }
    }
    assert_eq!(published.len(), TOTAL);
    assert_ne!(
        c.current_url().as_str(),
        format!("{}/", cluster.url(l, "")),
        "the client moved off the killed node"
    );

    let (bodies, times) = tokio::time::timeout(HANG, drain(&c, "jobs")).await.unwrap();
    let doubled: Vec<_> = times.iter().filter(|&(_, &t)| t > 1).collect();
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    assert_eq!(
        bodies.keys().collect::<BTreeSet<_>>(),
        published.keys().collect::<BTreeSet<_>>(),
        "the queue holds exactly the answered publishes"
    );
    let mut seqs: Vec<u64> = bodies
        .values()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..TOTAL as u64).collect::<Vec<_>>(), "each seq once");
    for (id, seq) in &published {
        assert_eq!(bodies[id]["seq"], *seq, "message {id}");
    }
    let stats = c.queue_stats("jobs").await.unwrap();
    assert_eq!(stats.published_total, TOTAL as u64);
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_consumer_keeps_receiving_after_the_leader_is_killed() {
    let mut cluster = start();
    let l = leader(&cluster).await;
    let c = SynapClient::connect_many(cluster.urls()).await.unwrap();
    c.queue_create("live", QueueConfig::default())
        .await
        .unwrap();
    let opts = StreamOptions {
        prefetch: Some(8),
        ack_deadline: Some(Duration::from_secs(60)),
        ..StreamOptions::default()
    };
    let mut stream = c.queue_stream::<Value>("live", opts).await.unwrap();
    let consumer = stream.consumer_id().to_owned();

    let publish = async |c: &SynapClient, from: u64, to: u64| {
        let mut ids = BTreeSet::new();
        for n in from..to {
            let r = c
                .queue_publish("live", &json!({"n": n}), PublishOptions::default())
                .await
                .unwrap();
            ids.insert(r.message_id);
        }
        ids
    };
    let before = publish(&c, 0, 10).await;
    let mut acked = BTreeSet::new();
    let mut held = Vec::new();
    while acked.len() + held.len() < before.len() {
        let m = tokio::time::timeout(HANG, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // Two deliveries stay unacked across the kill.
        if held.len() < 2 {
            held.push(m);
        } else {
            stream.ack(&m.id, m.lease).await.unwrap();
            acked.insert(m.id);
        }
    }

    cluster.kill(l);
    // Leases of the old connection last until their deadlines: the held deliveries are acked
    // on the new one (the stream reconnects first).
    for m in &held {
        tokio::time::timeout(HANG, stream.ack(&m.id, m.lease))
            .await
            .unwrap()
            .unwrap();
        acked.insert(m.id.clone());
    }
    let after = publish(&c, 10, 20).await;
    let all: BTreeSet<String> = before.union(&after).cloned().collect();
    while acked.len() < all.len() {
        let m = tokio::time::timeout(HANG, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(all.contains(&m.id), "an unknown message {}", m.id);
        stream.ack(&m.id, m.lease).await.unwrap();
        acked.insert(m.id);
    }
    assert_eq!(acked, all);

    // A leader that hands over leadership ends its streams (as if the queue were gone); the
    // stream learns that the node no longer leads and goes on at the new leader.
    let from = leader(&cluster).await;
    let to = (1..=NODES)
        .find(|&id| id != from && cluster.is_up(id))
        .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(cluster.url(from, "/cluster/transfer"))
        .json(&json!({"to": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let waited = Instant::now();
    while leader(&cluster).await != to {
        assert!(
            waited.elapsed() < HANG,
            "the transfer to node {to} never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = publish(&c, 20, 30).await;
    let mut got = BTreeSet::new();
    while got.len() < last.len() {
        let m = tokio::time::timeout(HANG, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(last.contains(&m.id), "an unknown message {}", m.id);
        stream.ack(&m.id, m.lease).await.unwrap();
        got.insert(m.id);
    }
    assert_eq!(stream.consumer_id(), consumer);
    let stats = c.queue_stats("live").await.unwrap();
    assert_eq!(stats.acked_total, 30);
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}
