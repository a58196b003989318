//! Goal: a cluster of real `synap-server` processes grows and shrinks while it serves. A
//! fourth node, started with a `join: true` entry, is added with `POST /cluster/nodes`: it
//! catches up from a snapshot sent in chunks (1 KiB chunks, snapshots every 20 entries, so
//! the state it needs was compacted away), is promoted to voter, and holds the same state as
//! the others at equal applied index. A founding follower is removed with
//! `DELETE /cluster/nodes/{id}` and stopped; the three left keep serving, and node 4 restarted
//! from its disk knows the membership. Bad changes get their 4xx codes, whichever node they are
//! sent to (followers forward them to the leader).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synap_tests::cluster_harness::Cluster;

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// A request's status and JSON body.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The node that says it leads among `ids`, waiting up to 20 s for one.
async fn leader(cluster: &Cluster, http: &reqwest::Client, ids: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for &id in ids {
            let v = get(http, &cluster.url(id, "/cluster")).await;
            if v.is_some_and(|v| v["role"] == "leader") {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `keys` through the nodes in `via` in turn, resending on 503 (an election).
async fn publish(
    cluster: &Cluster,
    http: &reqwest::Client,
    via: &[u64],
    keys: std::ops::Range<u32>,
) {
    for k in keys {
        let body = json!({"message": {"k": k}, "idempotency_key": format!("k{k}")});
        let node = via[k as usize % via.len()];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = cluster.url(node, "/queue/jobs/publish");
            let (status, v) = send(http.post(url).json(&body)).await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "publish k{k} via node {node}: {v}");
            assert!(Instant::now() < deadline, "publish k{k} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `/cluster` on `on` shows these voters and no learner.
async fn wait_voters(cluster: &Cluster, http: &reqwest::Client, on: u64, voters: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get(http, &cluster.url(on, "/cluster"))
            .await
            .unwrap_or_default();
        if v["voters"] == json!(voters) && v["learners"] == json!([]) {
            return;
        }
        if Instant::now() > deadline {
            panic!("voters never became {voters:?} on node {on}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The nodes' digests once they agree on the applied index (20 s at most).
async fn converged(cluster: &Cluster, http: &reqwest::Client, ids: &[u64]) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ds = Vec::new();
        for &id in ids {
            if let Some(v) = get(http, &cluster.url(id, "/debug/state_digest")).await {
                ds.push((
                    v["applied_index"].as_u64().unwrap_or(0),
                    v["state_digest"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        if ds.len() == ids.len() && ds.windows(2).all(|w| w[0].0 == w[1].0) {
            return ds;
        }
        if Instant::now() > deadline {
            for &id in ids {
                eprintln!("node {id}:\n{}", cluster.log_tail(id, 30));
            }
            panic!("replicas never reached one applied index: {ds:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_added_and_another_removed_while_the_cluster_serves() {
    let settings = "  tick_ms: 50\n  snapshot_entries: 20\n  snapshot_chunk_bytes: 1024\n";
    let mut cluster = Cluster::start(3, settings, &["--fsync", "never"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    leader(&cluster, &http, &[1, 2, 3]).await;
    publish(&cluster, &http, &[1, 2, 3], 0..60).await;

    // Node 4 starts with its `join: true` entry and waits.
    let four = cluster.add_node();
    assert_eq!(four, 4);
    let n4 = &cluster.nodes[3];
    let (raft, addr, rpc) = (n4.raft.to_string(), n4.http.to_string(), n4.rpc.to_string());
    let v = get(&http, &cluster.url(4, "/cluster")).await.unwrap();
    assert_eq!(
        (v["member"].clone(), v["term"].clone()),
        (json!(false), json!(0)),
        "{v}"
    );

    // Bad changes, sent to each node in turn.
    let base: Vec<String> = (1..=4).map(|id| cluster.url(id, "")).collect();
    let url = |to: u64, path: &str| format!("{}{path}", base[to as usize - 1]);
    let add = |to: u64, body: Value| http.post(url(to, "/cluster/nodes")).json(&body);
    let node1_http = cluster.nodes[0].http.to_string();
    let bad = [
        (
            json!({"id": 0, "raft": raft, "http": addr}),
            400,
            "invalid_argument",
        ),
        (
            json!({"id": 4, "raft": "0.0.0.0:9", "http": addr}),
            400,
            "invalid_argument",
        ),
        (
            json!({"id": 4, "raft": raft, "http": raft}),
            400,
            "invalid_argument",
        ),
        (
            json!({"id": 4, "raft": "nowhere", "http": addr}),
            400,
            "invalid_argument",
        ),
        (
            json!({"id": 4, "raft": raft, "http": addr, "x": 1}),
            400,
            "invalid_argument",
        ),
        (
            json!({"id": 2, "raft": raft, "http": addr}),
            409,
            "node_exists",
        ),
        (
            json!({"id": 4, "raft": raft, "http": node1_http}),
            409,
            "address_in_use",
        ),
    ];
    for (i, (body, status, code)) in bad.into_iter().enumerate() {
        let (s, v) = send(add(1 + i as u64 % 3, body.clone())).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}: {v}");
    }

    // Added through a node in turn (a follower forwards it): a learner, then a voter.
    let body = json!({"id": 4, "raft": raft, "http": addr, "rpc": rpc});
    let (s, v) = send(add(2, body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["id"].clone(), v["role"].clone()),
        (json!(4), json!("learner"))
    );
    let l = leader(&cluster, &http, &[1, 2, 3]).await;
    wait_voters(&cluster, &http, l, &[1, 2, 3, 4]).await;
    wait_voters(&cluster, &http, 4, &[1, 2, 3, 4]).await;
    // It caught up from a snapshot, which the state of 60 messages (several KiB) made many
    // 1 KiB chunks.
    let received = cluster.log_lines(4, "snapshot received");
    let chunks: Vec<u64> = received
        .iter()
        .filter_map(|line| line.split("chunks=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        chunks.iter().any(|&n| n > 1),
        "no snapshot in chunks on node 4: {received:?}\n{}",
        cluster.log_tail(4, 40)
    );
    publish(&cluster, &http, &[4, 1, 2, 3], 60..70).await;
    let ds = converged(&cluster, &http, &[1, 2, 3, 4]).await;
    assert!(
        ds.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {ds:?}"
    );

    // Removing: not the leader, not a stranger; then a founding follower.
    let l = leader(&cluster, &http, &[1, 2, 3, 4]).await;
    let del = |to: u64, id: u64| http.delete(url(to, &format!("/cluster/nodes/{id}")));
    let (s, v) = send(del(l, l)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("node_is_leader")),
        "{v}"
    );
    let (s, v) = send(del(l, 9)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("node_not_found")),
        "{v}"
    );
    let (s, v) = send(del(l, 0)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    let victim = [1, 2, 3].into_iter().find(|&id| id != l).unwrap();
    let rest: Vec<u64> = (1..=4).filter(|&id| id != victim).collect();
    let via = rest.iter().copied().find(|&id| id != l).unwrap();
    let (s, v) = send(del(via, victim)).await;
    assert_eq!(s, 200, "{v}");
    cluster.kill(victim);
    wait_voters(&cluster, &http, l, &rest).await;
    let old = &cluster.nodes[victim as usize - 1];
    let back = json!({"id": victim, "raft": old.raft.to_string(), "http": old.http.to_string()});
    let (s, v) = send(add(l, back)).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("node_removed")), "{v}");

    // The three left keep serving.
    publish(&cluster, &http, &rest, 70..90).await;
    let ds = converged(&cluster, &http, &rest).await;
    assert!(
        ds.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {ds:?}"
    );
    let l = leader(&cluster, &http, &rest).await;
    let stats = get(&http, &cluster.url(l, "/queue/jobs/stats"))
        .await
        .unwrap();
    assert_eq!(stats["published_total"], 90, "{stats}");

    // Node 4 restarts from its disk (its conf changes are in its log and snapshot) and knows
    // the membership at once.
    cluster.kill(4);
    cluster.restart(4);
    let v = get(&http, &cluster.url(4, "/cluster")).await.unwrap();
    assert_eq!(
        (v["voters"].clone(), v["member"].clone()),
        (json!(rest), json!(true)),
        "{v}"
    );
    publish(&cluster, &http, &rest, 90..95).await;
    let ds = converged(&cluster, &http, &rest).await;
    assert!(
        ds.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {ds:?}"
    );
    let l = leader(&cluster, &http, &rest).await;
    let metrics = http.get(cluster.url(l, "/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("synap_cluster_voters 3"), "{text}");
    assert!(text.contains("synap_cluster_learners 0"), "{text}");
}
