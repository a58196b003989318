//! The transport between cluster nodes: one TCP connection per pair of nodes, carrying Raft
//! messages both ways as length-prefixed frames.
//!
//! - **Who dials.** The node with the lower id dials the higher; the higher accepts. So a pair
//!   has one connection and no duplicates to settle. A newer accepted connection from a peer
//!   replaces the one it had (the peer redialled after losing it first).
//! - **Who the peers are.** The members of the membership this node knows (the founding
//!   voters, then whatever the log says): the cluster task calls [`Transport::set_peers`]
//!   whenever it changes, and the transport dials the members added and drops the links of
//!   the members removed. A node that holds the secret and dials with a lower id is accepted
//!   even when this node does not know it yet (a node that has not received the membership,
//!   dialled by a leader added after the founders), unless its id was removed.
//! - **The secret.** A connection starts with a challenge–response on the cluster secret,
//!   both ways ([`handshake`]). A peer that fails is refused and logged.
//! - **Frames** ([`frames`]): ordinary messages in one frame of at most `max_frame_bytes`
//!   (a larger one closes the connection); a snapshot in chunks of at most 1 MiB, put back
//!   together and checked before it reaches the node, within `max_snapshot_bytes` and two
//!   transfers at once.
//! - **Faults.** A peer that is not connected gets nothing: its messages are dropped and the
//!   node is told (`report_unreachable`, and `report_snapshot` failure for a snapshot), as
//!   Raft expects of a lossy network. The dialer retries with backoff (50 ms doubling to 1 s).

mod frames;
mod handshake;
mod peer;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use synap_cluster::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub(crate) use self::frames::Limits;
use self::handshake::{Key, accept_handshake};
use self::peer::{BACKOFF_MIN, PeerTask};
use super::config::ClusterConfig;

/// Messages waiting for one peer's connection; more are dropped (Raft resends).
const PEER_QUEUE: usize = 4096;
/// Most links a node holds (members, and nodes that dialled it before it knew them).
const MAX_LINKS: usize = 64;
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the transport hands the cluster task.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A message from a peer.
    Received(Message),
    /// A peer's connection is gone (or was never there).
    Unreachable(u64),
    /// A snapshot message was written whole to `to`'s connection (`ok`) or dropped.
    Snapshot { to: u64, ok: bool },
    /// A peer connected with an empty log: whatever it stored before is gone.
    PeerEmpty(u64),
    /// A node this one has no link for dialled it and proved the secret: give it a link
    /// ([`Transport::adopt`]).
    Accepted {
        peer: u64,
        stream: TcpStream,
        empty: bool,
    },
}

struct Link {
    tx: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
    addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the accept loop reads of the links: where to hand a peer's connection, and the ids
/// to refuse.
#[derive(Default)]
struct Accepting {
    conns: BTreeMap<u64, mpsc::Sender<(TcpStream, bool)>>,
    removed: BTreeSet<u64>,
}

/// The links to every peer.
pub(crate) struct Transport {
    me: u64,
    key: Key,
    limits: Limits,
    events: mpsc::Sender<NetEvent>,
    empty: Arc<AtomicBool>,
    slots: Arc<AtomicUsize>,
    links: BTreeMap<u64, Link>,
    accepting: Arc<Mutex<Accepting>>,
}

impl Transport {
    /// Starts the accept loop on `listener`; what arrives goes to `events`. No peer yet:
    /// [`Transport::set_peers`] says who they are.
    pub(crate) fn start(
        cfg: &ClusterConfig,
        listener: TcpListener,
        events: mpsc::Sender<NetEvent>,
        empty: Arc<AtomicBool>,
    ) -> Self {
        let key = handshake::key(&cfg.secret);
        let accepting = Arc::new(Mutex::new(Accepting::default()));
        tokio::spawn(accept_loop(
            listener,
            cfg.node_id,
            key,
            Arc::clone(&accepting),
            events.clone(),
            Arc::clone(&empty),
        ));
        Self {
            me: cfg.node_id,
            key,
            limits: Limits {
                max_frame: cfg.max_frame_bytes,
                max_snapshot: cfg.max_snapshot_bytes,
                chunk: cfg.snapshot_chunk_bytes,
            },
            events,
            empty,
            slots: Arc::default(),
            links: BTreeMap::new(),
            accepting,
        }
    }

    /// The peers are now `peers` (id → Raft address, if known) and `removed` are refused: links
    /// to new peers are made (dialled when this node has the lower id), links to others
    /// dropped, and a link whose address changed is made again.
    pub(crate) fn set_peers(
        &mut self,
        peers: &BTreeMap<u64, Option<SocketAddr>>,
        removed: &BTreeSet<u64>,
    ) {
        let stale: Vec<u64> = self
            .links
            .iter()
            .filter(|(id, l)| peers.get(id).is_none_or(|a| *a != l.addr && **id > self.me))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            info!(
                peer = id,
                "dropping the link to a node no longer a peer (or moved)"
            );
            self.drop_link(id);
        }
        for (&id, &addr) in peers {
            if id != self.me && !self.links.contains_key(&id) {
                self.add_link(id, addr);
            }
        }
        let mut a = self
            .accepting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        a.removed.clone_from(removed);
    }

    /// Gives a link to a node that dialled before this one knew it, with its connection.
    pub(crate) fn adopt(&mut self, peer: u64, stream: TcpStream, empty: bool) {
        if self.links.len() >= MAX_LINKS {
            warn!(
                peer,
                "too many links; a connection from an unknown node is refused"
            );
            return;
        }
        if !self.links.contains_key(&peer) {
            info!(peer, "a node not known as a member dialled in; linking it");
            self.add_link(peer, None);
        }
        let a = self
            .accepting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = a.conns.get(&peer) {
            let _ = tx.try_send((stream, empty));
        }
    }

    fn add_link(&mut self, id: u64, addr: Option<SocketAddr>) {
        let (tx, out) = mpsc::channel(PEER_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let (conn_tx, conns) = mpsc::channel(4);
        let p = PeerTask {
            me: self.me,
            peer: id,
            addr,
            key: self.key,
            limits: self.limits,
            out,
            conns,
            events: self.events.clone(),
            connected: Arc::clone(&connected),
            empty: Arc::clone(&self.empty),
            slots: Arc::clone(&self.slots),
        };
        let task = tokio::spawn(p.run());
        self.accepting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .conns
            .insert(id, conn_tx);
        self.links.insert(
            id,
            Link {
                tx,
                connected,
                addr,
                task,
            },
        );
    }

    fn drop_link(&mut self, id: u64) {
        self.links.remove(&id);
        self.accepting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .conns
            .remove(&id);
    }

    /// Sends `msg` to its `to`; false when it was dropped (the peer is not connected, or
    /// too far behind): the caller reports it unreachable.
    pub(crate) fn send(&self, msg: Message) -> bool {
        let Some(link) = self.links.get(&msg.to) else {
            return false;
        };
        if !link.connected.load(Ordering::Acquire) {
            return false;
        }
        link.tx.try_send(msg).is_ok()
    }

    /// Whether a peer is connected now.
    pub(crate) fn reachable(&self, id: u64) -> bool {
        self.links
            .get(&id)
            .is_some_and(|l| l.connected.load(Ordering::Acquire))
    }
}

async fn accept_loop(
    listener: TcpListener,
    me: u64,
    key: Key,
    accepting: Arc<Mutex<Accepting>>,
    events: mpsc::Sender<NetEvent>,
    empty: Arc<AtomicBool>,
) {
    loop {
        let (mut s, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "raft listener accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let accepting = Arc::clone(&accepting);
        let events = events.clone();
        let empty = empty.load(Ordering::Acquire);
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            // Lower ids dial; a removed node is refused.
            let known = |id: u64| {
                let a = accepting.lock().unwrap_or_else(PoisonError::into_inner);
                id != 0 && id < me && !a.removed.contains(&id)
            };
            let shake = accept_handshake(&mut s, me, &key, known, empty);
            let shaken = tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await;
            match shaken {
                Ok(Ok((peer, peer_empty))) => {
                    let tx = accepting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .conns
                        .get(&peer)
                        .cloned();
                    match tx {
                        Some(tx) => {
                            let _ = tx.send((s, peer_empty)).await;
                        }
                        None => {
                            let ev = NetEvent::Accepted {
                                peer,
                                stream: s,
                                empty: peer_empty,
                            };
                            let _ = events.send(ev).await;
                        }
                    }
                }
                Ok(Err(e)) => warn!(%addr, error = %e, "refused a raft connection"),
                Err(_) => warn!(%addr, "refused a raft connection: handshake timed out"),
            }
        });
    }
}
