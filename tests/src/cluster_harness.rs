//! Starts a cluster of real `synap-server` processes on loopback and hurts them: SIGKILL,
//! SIGSTOP/SIGCONT, a data directory wiped. Every process is signalled by its own PID.
//!
//! Ports (HTTP, SynapRPC and Raft for each node) are picked by binding port 0 and releasing
//! it; if a node then cannot bind one (another process took it meanwhile), the whole cluster
//! is started again on new ports. Each node's log is kept for failure messages.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server_harness::server_binary;

/// One node of the cluster.
pub struct ClusterNode {
    /// Its id in `cluster.nodes`.
    pub id: u64,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its SynapRPC address.
    pub rpc: SocketAddr,
    /// Its Raft address.
    pub raft: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

/// A cluster of `synap-server` processes.
pub struct Cluster {
    /// The nodes, by id (node `i + 1` at index `i`).
    pub nodes: Vec<ClusterNode>,
    config: PathBuf,
    root: PathBuf,
    extra: Vec<String>,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr")
}

/// Why a node did not start.
enum StartError {
    /// An address was taken: start again on new ports.
    AddrInUse,
    Other(String),
}

impl Cluster {
    /// Starts `n` nodes with the given `cluster:` settings (YAML lines indented by 2, e.g.
    /// `  tick_ms: 50`) and extra flags for every node; waits until each listens.
    pub fn start(n: usize, settings: &str, extra: &[&str]) -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        for attempt in 0..5 {
            let run = RUN.fetch_add(1, Ordering::Relaxed);
            let root = std::env::temp_dir().join(format!(
                "synap-cluster-{}-{run}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&root).expect("create the cluster's directory");
            let nodes: Vec<ClusterNode> = (1..=n as u64)
                .map(|id| ClusterNode {
                    id,
                    http: free_port(),
                    rpc: free_port(),
                    raft: free_port(),
                    data_dir: root.join(format!("node{id}")),
                    child: None,
                    log: Arc::default(),
                })
                .collect();
            let mut yaml =
                format!("cluster:\n  secret: \"test-secret-{run}\"\n{settings}  nodes:\n");
            for node in &nodes {
                yaml.push_str(&format!(
                    "    - {{ id: {}, raft: \"{}\", http: \"{}\", rpc: \"{}\" }}\n",
                    node.id, node.raft, node.http, node.rpc
                ));
            }
            let config = root.join("cluster.yaml");
            std::fs::write(&config, yaml).expect("write the cluster config");
            let mut c = Self {
                nodes,
                config,
                root,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            };
            let mut clash = false;
            for id in 1..=n as u64 {
                match c.try_start(id) {
                    Ok(()) => {}
                    Err(StartError::AddrInUse) => {
                        clash = true;
                        break;
                    }
                    Err(StartError::Other(why)) => panic!("node {id} did not start: {why}"),
                }
            }
            if !clash {
                return c;
            }
            drop(c);
        }
        panic!("could not find free ports for the cluster in 5 attempts");
    }

    fn node(&mut self, id: u64) -> &mut ClusterNode {
        &mut self.nodes[(id - 1) as usize]
    }

    fn try_start(&mut self, id: u64) -> Result<(), StartError> {
        let config = self.config.clone();
        let extra = self.extra.clone();
        let node = self.node(id);
        let mut cmd = Command::new(server_binary());
        cmd.arg("--config")
            .arg(&config)
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&extra)
            .env("RUST_LOG", "info")
            .env_remove("SYNAP_API_KEY")
            .env_remove("SYNAP_CLUSTER_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn synap-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::clone(&node.log);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let listening = line.contains("synap-server listening");
                log.lock().expect("log lock").push(line);
                if listening {
                    let _ = tx.send(());
                }
            }
        });
        for _ in 0..600 {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                node.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(_)) = child.try_wait() {
                // Give the reader a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                let log = node.log.lock().expect("log lock").join("\n");
                if log.contains("Address already in use") || log.contains("in use") {
                    return Err(StartError::AddrInUse);
                }
                return Err(StartError::Other(log));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(StartError::Other("no listening line within 60 s".into()))
    }

    /// Starts node `id` again (after a kill), on its ports and data directory.
    pub fn restart(&mut self, id: u64) {
        assert!(self.node(id).child.is_none(), "node {id} is running");
        for _ in 0..50 {
            match self.try_start(id) {
                Ok(()) => return,
                // The port the killed process held may take a moment to be free again.
                Err(StartError::AddrInUse) => std::thread::sleep(Duration::from_millis(200)),
                Err(StartError::Other(why)) => panic!("node {id} did not restart: {why}"),
            }
        }
        panic!("node {id} could not bind its addresses again");
    }

    /// Adds a node to the running cluster's processes: the next id, on free ports, with an
    /// empty data directory and an entry marked `join: true` appended to the config file (the
    /// founding nodes read it only at a restart, and take nothing from it). Starts it and
    /// returns its id: it waits for the leader until `POST /cluster/nodes` adds it.
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        for attempt in 0..5 {
            let node = ClusterNode {
                id,
                http: free_port(),
                rpc: free_port(),
                raft: free_port(),
                data_dir: self.root.join(format!("node{id}-{attempt}")),
                child: None,
                log: Arc::default(),
            };
            let entry = format!(
                "    - {{ id: {}, raft: \"{}\", http: \"{}\", rpc: \"{}\", join: true }}\n",
                node.id, node.raft, node.http, node.rpc
            );
            let mut yaml = std::fs::read_to_string(&self.config).expect("read the config");
            let kept = yaml.clone();
            yaml.push_str(&entry);
            std::fs::write(&self.config, yaml).expect("write the config");
            self.nodes.push(node);
            match self.try_start(id) {
                Ok(()) => return id,
                Err(StartError::AddrInUse) => {
                    self.nodes.pop();
                    std::fs::write(&self.config, kept).expect("write the config");
                }
                Err(StartError::Other(why)) => panic!("node {id} did not start: {why}"),
            }
        }
        panic!("could not find free ports for node {id} in 5 attempts");
    }

    /// Kills node `id` with SIGKILL (sent to its PID) and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node(id).child.take() {
            signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pauses node `id` (SIGSTOP to its PID).
    pub fn pause(&mut self, id: u64) {
        let pid = self.node(id).child.as_ref().expect("running").id();
        signal(pid, "STOP");
    }

    /// Resumes node `id` (SIGCONT to its PID).
    pub fn resume(&mut self, id: u64) {
        let pid = self.node(id).child.as_ref().expect("running").id();
        signal(pid, "CONT");
    }

    /// Kills node `id` and deletes its data directory.
    pub fn wipe(&mut self, id: u64) {
        self.kill(id);
        let dir = self.node(id).data_dir.clone();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Whether node `id` runs.
    pub fn is_up(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].child.is_some()
    }

    /// `http://addr{path}` of node `id`.
    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://{}{path}", self.nodes[(id - 1) as usize].http)
    }

    /// The HTTP base URLs of every node (`http://addr`), node 1 first.
    pub fn urls(&self) -> Vec<String> {
        (1..=self.nodes.len() as u64)
            .map(|id| self.url(id, ""))
            .collect()
    }

    /// The log lines of node `id` that contain `needle`.
    pub fn log_lines(&self, id: u64, needle: &str) -> Vec<String> {
        let log = self.nodes[(id - 1) as usize].log.lock().expect("log lock");
        log.iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// The last `n` log lines of node `id`.
    pub fn log_tail(&self, id: u64, n: usize) -> String {
        let log = self.nodes[(id - 1) as usize].log.lock().expect("log lock");
        log[log.len().saturating_sub(n)..].join("\n")
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill(id);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
