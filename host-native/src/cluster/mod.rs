//! The host side of replication (DESIGN.md §11): a `synap_cluster::Node` driven by a tokio task
//! (`task`), its Raft storage on disk (`storage`, written by `writer`), the TCP transport
//! between nodes (`transport`), the `cluster:` config section (`config`), the members and
//! their addresses (`members`), and what the HTTP side reads of it (`ClusterView`,
//! `NotServing`) and asks of it (leader transfers, membership changes). docs/cluster.md is
//! the operator's guide.
//!
//! Without a `cluster:` section none of this runs: the single server's engine task and storage
//! serve as before.

pub(crate) mod config;
pub(crate) mod members;
pub(crate) mod storage;
#[cfg(test)]
mod storage_swarm;
mod task;
mod transport;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use synap_cluster::{Node, NodeConfig};
use synap_core::EngineConfig;
use tokio::sync::{broadcast, mpsc};
use tracing::info;

use crate::clock::Clock;
use crate::engine_task::{REQUEST_QUEUE, Request};
use crate::handle::{EngineHandle, Failure};
use crate::storage::writer::SyncPolicy;
pub(crate) use config::ClusterConfig;
use members::{ChangeFailure, ChangeReply, ChangeRequest};

/// Membership changes waiting for the cluster task (one is proposed at a time).
const CHANGE_QUEUE: usize = 16;

/// A leader's address as clients are told it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeaderAddr {
    pub(crate) id: u64,
    pub(crate) http: SocketAddr,
    pub(crate) rpc: Option<SocketAddr>,
}

/// Why a cluster node did not serve a request; the client may retry (on the leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NotServing {
    /// This node is a follower; the leader is there.
    NotLeader(LeaderAddr),
    /// No leader is known (an election is on).
    NoLeader,
    /// Leadership changed before the request's entry was applied: it may or may not have
    /// taken effect (resend a publish with its idempotency key). The leader known now, if any.
    Lost(Option<LeaderAddr>),
}

impl NotServing {
    /// The machine code: `not_leader` when a leader is known, else `no_leader`.
    pub(crate) fn code(&self) -> &'static str {
        match self.leader() {
            Some(_) => "not_leader",
            None => "no_leader",
        }
    }

    /// The leader to go to, if known.
    pub(crate) fn leader(&self) -> Option<&LeaderAddr> {
        match self {
            Self::NotLeader(l) => Some(l),
            Self::NoLeader => None,
            Self::Lost(l) => l.as_ref(),
        }
    }

    /// A sentence for the client.
    pub(crate) fn message(&self) -> String {
        let lost = "leadership changed before the request was applied; its outcome is unknown (resend it, a publish with its idempotency key)";
        match (self, self.leader()) {
            (Self::Lost(_), Some(l)) => {
                format!("{lost}; the leader is node {} at {}", l.id, l.http)
            }
            (Self::Lost(_), None) => format!("{lost}; no leader yet"),
            (_, Some(l)) => match l.rpc {
                Some(rpc) => format!(
                    "not the leader: the leader is node {} at http://{} (synap://{rpc})",
                    l.id, l.http
                ),
                None => format!(
                    "not the leader: the leader is node {} at http://{}",
                    l.id, l.http
                ),
            },
            (_, None) => "no leader: an election is in progress, retry shortly".into(),
        }
    }
}

/// One member as `GET /cluster` shows it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct PeerView {
    pub(crate) id: u64,
    pub(crate) raft: String,
    pub(crate) http: String,
    /// `leader`, `follower` (a voter), `learner` (added, catching up), or this node's own
    /// Raft role.
    pub(crate) role: &'static str,
    /// Highest index known stored on it (known on the leader only).
    pub(crate) match_index: Option<u64>,
    pub(crate) reachable: bool,
}

/// What the cluster task publishes after every step, for `/cluster`, `/health` and metrics.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterView {
    pub(crate) node_id: u64,
    pub(crate) role: &'static str,
    pub(crate) term: u64,
    pub(crate) leader: Option<LeaderAddr>,
    pub(crate) commit_index: u64,
    pub(crate) applied_index: u64,
    pub(crate) elections_total: u64,
    /// The members (voters and learners).
    pub(crate) nodes: Vec<PeerView>,
    pub(crate) voters: Vec<u64>,
    pub(crate) learners: Vec<u64>,
    /// Whether this node is a voter or learner (not while it waits to join, nor once
    /// removed).
    pub(crate) member: bool,
}

/// The cluster task's side of `EngineHandle`: its inbox and its published view.
pub(crate) struct ClusterInbox {
    tx: mpsc::Sender<Request>,
    view: Mutex<ClusterView>,
    /// Leader transfers asked for (`POST /cluster/transfer`).
    transfer: mpsc::UnboundedSender<u64>,
    /// Membership changes asked for (`POST /cluster/nodes`, `DELETE /cluster/nodes/{id}`).
    changes: mpsc::Sender<(ChangeRequest, ChangeReply)>,
}

impl ClusterInbox {
    /// Puts a request in the task's inbox, waiting while it is full.
    pub(crate) async fn submit(&self, req: Request) -> Result<(), Failure> {
        self.tx.send(req).await.map_err(|_| Failure::Unavailable)
    }

    /// As `submit`, from a context that cannot wait (a `Drop`).
    pub(crate) fn submit_now(&self, req: Request) {
        match self.tx.try_send(req) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(req)) => {
                let tx = self.tx.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move { tx.send(req).await });
                }
            }
        }
    }

    /// True once the task is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The latest view of the node.
    pub(crate) fn view(&self) -> ClusterView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether this node leads, and the leader it knows of (cheaper than `view`).
    pub(crate) fn route(&self) -> (bool, Option<LeaderAddr>) {
        let v = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        (v.role == "leader", v.leader.clone())
    }

    fn publish(&self, view: ClusterView) {
        *self.view.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }

    /// Asks the node (if leader) to hand leadership to `to`.
    pub(crate) fn transfer(&self, to: u64) {
        let _ = self.transfer.send(to);
    }

    /// Asks the node (the leader) for a membership change; the index of its entry once it
    /// is applied. Changes go one at a time: with others waiting, it is refused `Pending`.
    pub(crate) async fn change(&self, req: ChangeRequest) -> Result<u64, ChangeFailure> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.changes.try_send((req, tx)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(ChangeFailure::Refused(
                    synap_cluster::ChangeRefused::Pending,
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ChangeFailure::Unavailable),
        }
        rx.await.unwrap_or(Err(ChangeFailure::Unavailable))
    }
}

/// What a cluster node starts with.
pub(crate) struct Start<'a> {
    pub(crate) cluster: &'a ClusterConfig,
    pub(crate) engine: &'a EngineConfig,
    pub(crate) data_dir: &'a std::path::Path,
    pub(crate) policy: SyncPolicy,
    pub(crate) events: broadcast::Sender<Arc<synap_core::Event>>,
    pub(crate) jitter_seed: u64,
}

/// Opens the node's Raft storage, binds its Raft address, connects to its peers and starts
/// the cluster task; the handle handlers use and the task's join handle.
pub(crate) async fn start(
    s: Start<'_>,
) -> Result<(EngineHandle, tokio::task::JoinHandle<()>), String> {
    let c = s.cluster;
    let dir = s.data_dir.join("raft");
    let (disk, recovered) = storage::RaftDisk::open(&dir)?;
    info!(
        node_id = c.node_id,
        entries = recovered.entries.len(),
        snapshot = recovered.snapshot.as_ref().map_or(0, |s| s.get_metadata().index),
        term = recovered.hard_state.term,
        commit = recovered.hard_state.commit,
        dir = %dir.display(),
        "raft storage recovered"
    );
    let started_empty = recovered.snapshot.is_none()
        && recovered.entries.is_empty()
        && recovered.hard_state.term == 0;
    // The founding voters: the membership the log starts from. A node that is not one of
    // them (a `join: true` entry) starts outside the membership and waits for the leader.
    let founding = c.founding();
    if started_empty && !founding.contains(&c.node_id) {
        info!(
            node_id = c.node_id,
            "joining a running cluster: waiting for its leader to add this node (POST /cluster/nodes) and send it the state"
        );
    }
    let mut nc = NodeConfig::new(c.node_id, founding, s.engine.clone(), c.engine_seed());
    nc.jitter_seed = s.jitter_seed;
    nc.tick_ms = c.tick_ms;
    nc.election_ticks = c.election_ticks;
    nc.heartbeat_ticks = c.heartbeat_ticks;
    nc.snapshot_entries = c.snapshot_entries;
    let clock = Clock::new();
    let node = Node::new(nc, recovered, clock.now())
        .map_err(|e| format!("cannot build the raft node from {}: {e}", dir.display()))?;
    let raft_addr = c.me().raft;
    let listener = tokio::net::TcpListener::bind(raft_addr)
        .await
        .map_err(|e| format!("cannot listen for peers on {raft_addr}: {e}"))?;
    info!(raft = %raft_addr, node_id = c.node_id, "cluster node listening for peers");
    let (net_tx, net_rx) = mpsc::channel(8192);
    // A node that starts with nothing stored says so to its peers: a leader that counted
    // entries on it (its data directory was lost) starts it over.
    let empty = Arc::new(AtomicBool::new(started_empty));
    let transport = transport::Transport::start(c, listener, net_tx, Arc::clone(&empty));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let writer = writer::DiskWriter::start(disk, s.policy, done_tx);
    let (tx, inbox_rx) = mpsc::channel(REQUEST_QUEUE);
    let (transfer, transfer_rx) = mpsc::unbounded_channel();
    let (changes, changes_rx) = mpsc::channel(CHANGE_QUEUE);
    let inbox = Arc::new(ClusterInbox {
        tx,
        view: Mutex::new(ClusterView::default()),
        transfer,
        changes,
    });
    let t = task::ClusterTask::new(task::Parts {
        node,
        clock,
        cfg: c.clone(),
        writer,
        transport,
        events: s.events,
        inbox: Arc::clone(&inbox),
        empty,
    });
    let join = tokio::spawn(t.run(task::Inputs {
        requests: inbox_rx,
        net: net_rx,
        disk: done_rx,
        transfers: transfer_rx,
        changes: changes_rx,
    }));
    Ok((EngineHandle::cluster(inbox), join))
}
