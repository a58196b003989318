//! `--cluster N` and `--failover K`: Synap as a Raft cluster of N `synap-server` processes on
//! loopback (DESIGN.md §11), measured beside the single server, and the time a failover takes.
//!
//! Every node gets free ports (HTTP, SynapRPC, Raft) and its own data directory under one
//! temporary root; the config file is the same for every node, as in production. Scenario
//! clients talk to the leader directly (SynapRPC and the queue WebSocket are served by the
//! leader only; a follower would forward REST with one more hop). A failover is measured from
//! the leader's SIGKILL to the next publish answered by any node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::procs::{self, Auth, Durability, Proc, TempDir};

/// How long a cluster may take to elect its first leader, or a restarted node to catch up.
const SETTLE: Duration = Duration::from_secs(30);
/// How long one publish attempt of the failover publisher may take.
const ATTEMPT: Duration = Duration::from_secs(1);

/// One node's addresses, its data directory and (while it runs) its process.
pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) http: SocketAddr,
    pub(crate) rpc: SocketAddr,
    data: PathBuf,
    proc: Option<Proc>,
}

/// A running cluster; dropping it stops every node by its PID and removes the directories.
pub(crate) struct SynapCluster {
    bin: PathBuf,
    config: PathBuf,
    mode: Durability,
    threads: Option<usize>,
    pub(crate) nodes: Vec<Node>,
    http: reqwest::Client,
    key: Option<&'static str>,
    // Declared last: the processes above are stopped before their directories go.
    _root: TempDir,
}

/// What `GET /cluster` says that the benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    leader: Option<u64>,
    is_leader: bool,
    commit: u64,
    applied: u64,
}

/// The `cluster:` section (and the auth key, if any) for `nodes` `(id, raft, http, rpc)`.
fn config_yaml(
    auth: Auth,
    secret: &str,
    nodes: &[(u64, SocketAddr, SocketAddr, SocketAddr)],
) -> String {
    let mut yaml = auth.config().unwrap_or_default();
    yaml.push_str(&format!("cluster:\n  secret: \"{secret}\"\n  nodes:\n"));
    for (id, raft, http, rpc) in nodes {
        yaml.push_str(&format!(
            "    - {{ id: {id}, raft: \"{raft}\", http: \"{http}\", rpc: \"{rpc}\" }}\n"
        ));
    }
    yaml
}

impl SynapCluster {
    /// Starts `n` nodes in `mode` (a durable one: a cluster node keeps a Raft log) and waits
    /// until they agree on a leader.
    pub(crate) async fn start(
        bin: &Path,
        n: usize,
        mode: Durability,
        threads: Option<usize>,
        auth: Auth,
    ) -> Result<Self, String> {
        if mode == Durability::Memory {
            return Err("a cluster node keeps a Raft log: use --fsync interval or always".into());
        }
        let root = TempDir::new("cluster")?;
        let mut addrs = Vec::new();
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for id in 1..=n as u64 {
            addrs.push((
                id,
                loopback(procs::free_port()?),
                loopback(procs::free_port()?),
                loopback(procs::free_port()?),
            ));
        }
        let secret = format!("bench-cluster-{}", std::process::id());
        let config = root.path().join("cluster.yaml");
        std::fs::write(&config, config_yaml(auth, &secret, &addrs))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut c = Self {
            bin: bin.to_owned(),
            config,
            mode,
            threads,
            nodes: addrs
                .iter()
                .map(|&(id, _, http, rpc)| Node {
                    id,
                    http,
                    rpc,
                    data: root.path().join(format!("node{id}")),
                    proc: None,
                })
                .collect(),
            http,
            key: auth.key(),
            _root: root,
        };
        for i in 0..n {
            c.start_node(i)?;
        }
        c.wait_for_leader(None).await?;
        Ok(c)
    }

    /// Starts (or restarts, on its data directory) the node at `index`.
    fn start_node(&mut self, index: usize) -> Result<(), String> {
        let node = &self.nodes[index];
        let mut args: Vec<std::ffi::OsString> = vec![
            "--config".into(),
            self.config.clone().into_os_string(),
            "--node-id".into(),
            node.id.to_string().into(),
        ];
        if let Some(t) = self.threads {
            args.push("--threads".into());
            args.push(t.to_string().into());
        }
        args.extend(procs::mode_args(self.mode, Some(&node.data)));
        let s = procs::spawn_synap(&self.bin, &args, Vec::new())
            .map_err(|e| format!("node {}: {e}", node.id))?;
        self.nodes[index].proc = Some(s.proc);
        Ok(())
    }

    /// `GET /cluster` of one node.
    async fn view(&self, node: &Node) -> Option<View> {
        let mut req = self.http.get(format!("http://{}/cluster", node.http));
        if let Some(k) = self.key {
            req = req.bearer_auth(k);
        }
        let v: Value = req.send().await.ok()?.json().await.ok()?;
        Some(View {
            leader: v["leader"]["id"].as_u64(),
            is_leader: v["role"] == "leader",
            commit: v["commit_index"].as_u64()?,
            applied: v["applied_index"].as_u64()?,
        })
    }

    /// Waits until a running node is leader and every running node names it (and, with
    /// `caught_up`, until that node has applied what the leader had committed when asked).
    async fn wait_for_leader(&self, caught_up: Option<usize>) -> Result<usize, String> {
        let until = Instant::now() + SETTLE;
        let mut target = None;
        loop {
            if let Some(l) = self.agreed_leader().await {
                let Some(i) = caught_up else { return Ok(l) };
                let leader_view = self.view(&self.nodes[l]).await;
                let goal = *target.get_or_insert(leader_view.map_or(u64::MAX, |v| v.commit));
                if self
                    .view(&self.nodes[i])
                    .await
                    .is_some_and(|v| v.applied >= goal)
                {
                    return Ok(l);
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "the cluster did not settle within {} s",
                    SETTLE.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the leader every running node names, if they agree.
    async fn agreed_leader(&self) -> Option<usize> {
        let mut leader = None;
        for node in self.nodes.iter().filter(|n| n.proc.is_some()) {
            let v = self.view(node).await?;
            let id = v.leader?;
            if leader.is_some_and(|l| l != id) || (v.is_leader && id != node.id) {
                return None;
            }
            leader = Some(id);
        }
        let i = self.nodes.iter().position(|n| Some(n.id) == leader)?;
        let v = self.view(&self.nodes[i]).await?;
        v.is_leader.then_some(i)
    }

    /// The leader's index, after waiting for one.
    pub(crate) async fn leader(&self) -> Result<usize, String> {
        self.wait_for_leader(None).await
    }

    /// The leader's process (for the progress line).
    pub(crate) fn proc(&self, index: usize) -> Option<&Proc> {
        self.nodes[index].proc.as_ref()
    }
}

/// Failover times over `kills` SIGKILLs of the leader, and the check that nothing answered
/// was lost or doubled.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Failover {
    pub(crate) nodes: usize,
    /// Leader killed → next publish answered, per kill.
    pub(crate) times_ms: Vec<f64>,
    /// Publishes answered (distinct idempotency keys).
    pub(crate) answered: u64,
    /// Answers that said `duplicate`: a resend of a publish stored before its answer was lost.
    pub(crate) resent_duplicates: u64,
    /// The queue's depth at the end (equal to `answered` when nothing is lost or doubled).
    pub(crate) depth: u64,
}

impl Failover {
    pub(crate) fn p50_ms(&self) -> f64 {
        crate::report::median(self.times_ms.clone()).unwrap_or(f64::NAN)
    }
    pub(crate) fn max_ms(&self) -> f64 {
        self.times_ms.iter().copied().fold(f64::NAN, f64::max)
    }
}

/// What the failover publisher has had answered.
#[derive(Default)]
struct Answers {
    /// When each answered publish's last attempt was sent, and when it was answered, in order.
    at: Vec<(Instant, Instant)>,
    duplicates: u64,
}

/// Publishes one message after another, each with its own idempotency key, to the nodes in
/// turn: an attempt that fails (connection refused, 503, timeout) is resent with the same key
/// to the next node, as Synap's clients do.
async fn publisher(
    http: reqwest::Client,
    urls: Vec<String>,
    queue: String,
    key: Option<&'static str>,
    answers: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
) {
    let mut node = 0;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let body = json!({
            "message": { "seq": seq },
            "idempotency_key": format!("failover-{seq}"),
        });
        let mut req = http
            .post(format!("{}/queue/{queue}/publish", urls[node]))
            .json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let sent = Instant::now();
        let answer = match req.send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
            _ => None,
        };
        match answer {
            Some(v) => {
                let mut a = answers.lock().expect("answers lock");
                a.at.push((sent, Instant::now()));
                a.duplicates += u64::from(v["duplicate"] == true);
                seq += 1;
            }
            None => {
                node = (node + 1) % urls.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Kills the leader of an `n`-node `--fsync always` cluster `kills` times under a steady
/// publisher; after each kill, the node is restarted on its data directory and caught up
/// before the next.
pub(crate) async fn failover(
    bin: &Path,
    n: usize,
    kills: usize,
    threads: Option<usize>,
    auth: Auth,
) -> Result<Failover, String> {
    let mut c = SynapCluster::start(bin, n, Durability::Always, threads, auth).await?;
    let queue = format!("bench-{}-failover", std::process::id());
    let leader = c.leader().await?;
    let mut create = c
        .http
        .post(format!("http://{}/queue/{queue}", c.nodes[leader].http))
        .json(&json!({ "max_depth": 10_000_000 }));
    if let Some(k) = c.key {
        create = create.bearer_auth(k);
    }
    let r = create
        .send()
        .await
        .map_err(|e| format!("create queue: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("create queue: {}", r.status()));
    }
    let answers = Arc::new(Mutex::new(Answers::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let urls = c
        .nodes
        .iter()
        .map(|n| format!("http://{}", n.http))
        .collect();
    let task = tokio::spawn(publisher(
        c.http.clone(),
        urls,
        queue.clone(),
        c.key,
        Arc::clone(&answers),
        Arc::clone(&stop),
    ));
    let answered = || answers.lock().expect("answers lock").at.len();
    let mut times_ms = Vec::new();
    for k in 0..kills {
        // Let the cluster run steadily first: at least some publishes answered.
        let before = answered();
        tokio::time::sleep(Duration::from_millis(700)).await;
        if answered() == before {
            return Err(format!(
                "kill {}: no publish answered before the kill",
                k + 1
            ));
        }
        let leader = c.leader().await?;
        let killed = c.nodes[leader]
            .proc
            .take()
            .ok_or("the leader is not running")?;
        let pid = killed.pid();
        let t0 = Instant::now();
        // Dropping the `Proc` sends SIGKILL to exactly its PID and reaps it.
        drop(killed);
        // The first publish sent after the kill and answered (one the old leader answered
        // just before it died can arrive after `t0` and does not count).
        let after_kill = loop {
            let first = {
                let a = answers.lock().expect("answers lock");
                a.at.iter()
                    .rev()
                    .take_while(|(sent, _)| *sent > t0)
                    .last()
                    .map(|&(_, answered)| answered)
            };
            if let Some(t) = first {
                break t;
            }
            if t0.elapsed() > SETTLE {
                return Err(format!(
                    "kill {} (node {}, pid {pid}): no publish answered within {} s",
                    k + 1,
                    c.nodes[leader].id,
                    SETTLE.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        times_ms.push(after_kill.duration_since(t0).as_secs_f64() * 1000.0);
        eprintln!(
            "synap-bench: failover {}/{kills}: leader node {} killed, next publish answered after {:.0} ms",
            k + 1,
            c.nodes[leader].id,
            times_ms[k]
        );
        c.start_node(leader)?;
        c.wait_for_leader(Some(leader)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    task.await.map_err(|e| format!("publisher: {e}"))?;
    let leader = c.leader().await?;
    let mut stats = c.http.get(format!(
        "http://{}/queue/{queue}/stats",
        c.nodes[leader].http
    ));
    if let Some(k) = c.key {
        stats = stats.bearer_auth(k);
    }
    let stats: Value = stats
        .send()
        .await
        .map_err(|e| format!("stats: {e}"))?
        .json()
        .await
        .map_err(|e| format!("stats: {e}"))?;
    let a = answers.lock().expect("answers lock");
    Ok(Failover {
        nodes: n,
        times_ms,
        answered: a.at.len() as u64,
        resent_duplicates: a.duplicates,
        depth: stats["depth"].as_u64().ok_or("stats without depth")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_node_and_keeps_the_key() {
        let a = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let yaml = config_yaml(
            Auth::None,
            "s",
            &[(1, a(1), a(2), a(3)), (2, a(4), a(5), a(6))],
        );
        assert!(
            yaml.starts_with("cluster:\n  secret: \"s\"\n  nodes:\n"),
            "{yaml}"
        );
        assert!(yaml.contains(
            "- { id: 2, raft: \"127.0.0.1:4\", http: \"127.0.0.1:5\", rpc: \"127.0.0.1:6\" }"
        ));
        let keyed = config_yaml(Auth::Key, "s", &[(1, a(1), a(2), a(3))]);
        assert!(keyed.starts_with("server:\n  api_keys:"), "{keyed}");
        assert!(keyed.contains("cluster:\n"), "{keyed}");
    }

    #[test]
    fn failover_figures_are_the_median_and_the_max() {
        let f = Failover {
            nodes: 3,
            times_ms: vec![1500.0, 900.0, 2100.0],
            answered: 10,
            resent_duplicates: 0,
            depth: 10,
        };
        assert_eq!(f.p50_ms(), 1500.0);
        assert_eq!(f.max_ms(), 2100.0);
    }
}
