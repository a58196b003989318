//! The transport between cluster nodes: one TCP connection per pair of nodes, carrying Raft
//! messages both ways as length-prefixed frames of `encode_message` bytes.
//!
//! - **Who dials.** The node with the lower id dials the higher; the higher accepts. So a pair
//!   has one connection and no duplicates to settle. A newer accepted connection from a peer
//!   replaces the one it had (the peer redialled after losing it first).
//! - **The secret.** A connection starts with a challenge–response on the cluster secret, both
//!   ways: each side sends a random nonce and proves it holds the secret with a keyed BLAKE2b
//!   MAC over the other's nonce and both ids, compared in constant time. The secret itself is
//!   never sent. A peer that fails is refused and logged.
//! - **Frames.** `[len u32 little-endian][bytes]`, at most `max_frame_bytes` (a larger frame
//!   closes the connection).
//! - **Faults.** A peer that is not connected gets nothing: its messages are dropped and the
//!   node is told (`report_unreachable`, and `report_snapshot` failure for a snapshot), as
//!   Raft expects of a lossy network. The dialer retries with backoff (50 ms doubling to 1 s).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use blake2::digest::consts::U32;
use blake2::digest::{Digest, Mac};
use subtle::ConstantTimeEq;
use synap_cluster::{Message, MessageType, decode_message, encode_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::config::ClusterConfig;

const MAGIC: &[u8; 8] = b"SYNAPRFT";
/// Messages waiting for one peer's connection; more are dropped (Raft resends).
const PEER_QUEUE: usize = 4096;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the transport hands the cluster task.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A message from a peer.
    Received(Message),
    /// A peer's connection is gone (or was never there).
    Unreachable(u64),
    /// A snapshot message was written to `to`'s connection (`ok`) or dropped.
    Snapshot { to: u64, ok: bool },
    /// A peer connected with an empty log: whatever it stored before is gone.
    PeerEmpty(u64),
}

struct Link {
    tx: mpsc::Sender<Message>,
    connected: Arc<AtomicBool>,
}

/// The links to every peer.
pub(crate) struct Transport {
    links: BTreeMap<u64, Link>,
}

/// The shared secret as a MAC key.
type Key = [u8; 32];

impl Transport {
    /// Starts a task per peer and the accept loop on `listener`; what arrives goes to
    /// `events`.
    pub(crate) fn start(
        cfg: &ClusterConfig,
        listener: TcpListener,
        events: mpsc::Sender<NetEvent>,
        empty: Arc<AtomicBool>,
    ) -> Self {
        let key: Key = blake2::Blake2b::<U32>::digest(cfg.secret.as_bytes()).into();
        let me = cfg.node_id;
        let mut links = BTreeMap::new();
        let mut accepted = BTreeMap::new();
        for peer in cfg.nodes.iter().filter(|n| n.id != me) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let connected = Arc::new(AtomicBool::new(false));
            let (conn_tx, conn_rx) = mpsc::channel(4);
            let p = PeerTask {
                me,
                peer: peer.id,
                addr: peer.raft,
                key,
                max_frame: cfg.max_frame_bytes,
                out: rx,
                conns: conn_rx,
                events: events.clone(),
                connected: Arc::clone(&connected),
                empty: Arc::clone(&empty),
            };
            tokio::spawn(p.run());
            accepted.insert(peer.id, conn_tx);
            links.insert(peer.id, Link { tx, connected });
        }
        tokio::spawn(accept_loop(listener, me, key, accepted, empty));
        Self { links }
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

struct PeerTask {
    me: u64,
    peer: u64,
    addr: SocketAddr,
    key: Key,
    max_frame: usize,
    out: mpsc::Receiver<Message>,
    /// Authenticated connections accepted from this peer (when it dials), and whether the
    /// peer said its log is empty.
    conns: mpsc::Receiver<(TcpStream, bool)>,
    events: mpsc::Sender<NetEvent>,
    connected: Arc<AtomicBool>,
    /// Whether this node's own log is empty (told to peers when connecting).
    empty: Arc<AtomicBool>,
}

impl PeerTask {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut next: Option<(TcpStream, bool)> = None;
        loop {
            let (stream, peer_empty) = match next.take() {
                Some(s) => s,
                None if self.me < self.peer => match self.dial().await {
                    Ok(s) => {
                        backoff = BACKOFF_MIN;
                        s
                    }
                    Err(e) => {
                        debug!(peer = self.peer, error = %e, "cannot reach peer");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                },
                None => match self.conns.recv().await {
                    Some(s) => s,
                    None => return,
                },
            };
            info!(peer = self.peer, empty_log = peer_empty, "peer connected");
            self.connected.store(true, Ordering::Release);
            if peer_empty {
                let _ = self.events.send(NetEvent::PeerEmpty(self.peer)).await;
            }
            next = self.serve(stream).await;
            self.connected.store(false, Ordering::Release);
            self.drop_queued().await;
            let _ = self.events.send(NetEvent::Unreachable(self.peer)).await;
            info!(peer = self.peer, "peer connection lost");
        }
    }

    async fn dial(&self) -> std::io::Result<(TcpStream, bool)> {
        let mut s = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        s.set_nodelay(true)?;
        let empty = self.empty.load(Ordering::Acquire);
        let shake = dial_handshake(&mut s, (self.me, self.peer), &self.key, empty);
        let peer_empty = tokio::time::timeout(HANDSHAKE_TIMEOUT, shake)
            .await
            .map_err(|_| std::io::Error::other("handshake timed out"))??;
        Ok((s, peer_empty))
    }

    /// Serves one connection until it fails; a replacement accepted meanwhile is returned.
    async fn serve(&mut self, stream: TcpStream) -> Option<(TcpStream, bool)> {
        let (mut rd, wr) = stream.into_split();
        let mut wr = BufWriter::with_capacity(64 << 10, wr);
        let (peer, me, max) = (self.peer, self.me, self.max_frame);
        let events = self.events.clone();
        let reader = async move {
            loop {
                let msg = read_frame(&mut rd, max).await?;
                let msg = decode_message(&msg).map_err(std::io::Error::other)?;
                if msg.from != peer || msg.to != me {
                    warn!(
                        peer,
                        from = msg.from,
                        to = msg.to,
                        "misaddressed raft message dropped"
                    );
                    continue;
                }
                if events.send(NetEvent::Received(msg)).await.is_err() {
                    return Ok::<(), std::io::Error>(());
                }
            }
        };
        tokio::pin!(reader);
        loop {
            tokio::select! {
                r = &mut reader => {
                    if let Err(e) = r {
                        debug!(peer, error = %e, "peer connection ended");
                    }
                    return None;
                }
                msg = self.out.recv() => {
                    let msg = msg?;
                    if let Err(e) = self.write(&mut wr, msg).await {
                        debug!(peer, error = %e, "cannot write to peer");
                        return None;
                    }
                }
                s = self.conns.recv() => return s,
            }
        }
    }

    /// Writes `first` and whatever else waits, then flushes.
    async fn write(
        &mut self,
        wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
        first: Message,
    ) -> std::io::Result<()> {
        let mut snapshots = Vec::new();
        let mut msg = Some(first);
        while let Some(m) = msg {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshots.push(m.to);
            }
            let bytes = encode_message(&m);
            let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
            wr.write_all(&len.to_le_bytes()).await?;
            wr.write_all(&bytes).await?;
            msg = self.out.try_recv().ok();
        }
        wr.flush().await?;
        for to in snapshots {
            let _ = self.events.send(NetEvent::Snapshot { to, ok: true }).await;
        }
        Ok(())
    }

    /// Drops what waited for a connection that is gone; snapshots are reported failed.
    async fn drop_queued(&mut self) {
        while let Ok(m) = self.out.try_recv() {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let ev = NetEvent::Snapshot {
                    to: m.to,
                    ok: false,
                };
                let _ = self.events.send(ev).await;
            }
        }
    }
}

async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes over the limit of {max}"
        )));
    }
    let mut buf = vec![0u8; len];
    rd.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn accept_loop(
    listener: TcpListener,
    me: u64,
    key: Key,
    peers: BTreeMap<u64, mpsc::Sender<(TcpStream, bool)>>,
    empty: Arc<AtomicBool>,
) {
    let peers = Arc::new(peers);
    loop {
        let (mut s, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "raft listener accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let peers = Arc::clone(&peers);
        let empty = empty.load(Ordering::Acquire);
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let known = |id: u64| id < me && peers.contains_key(&id);
            let shake = accept_handshake(&mut s, me, &key, known, empty);
            let shaken = tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await;
            match shaken {
                Ok(Ok((peer, peer_empty))) => {
                    if let Some(tx) = peers.get(&peer) {
                        let _ = tx.send((s, peer_empty)).await;
                    }
                }
                Ok(Err(e)) => warn!(%addr, error = %e, "refused a raft connection"),
                Err(_) => warn!(%addr, "refused a raft connection: handshake timed out"),
            }
        });
    }
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("OS randomness for a handshake nonce");
    n
}

/// The MAC a side sends: over its role, the other side's nonce and both ids.
fn mac(key: &Key, role: &[u8], nonce: &[u8; 32], dialer: u64, acceptor: u64) -> [u8; 32] {
    let mut m = blake2::Blake2bMac::<U32>::new_from_slice(key).expect("a 32-byte key fits");
    m.update(role);
    m.update(nonce);
    m.update(&dialer.to_le_bytes());
    m.update(&acceptor.to_le_bytes());
    m.finalize().into_bytes().into()
}

fn refused(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_owned())
}

/// The dialer's side; whether the peer's log is empty. `empty`: whether this node's is.
async fn dial_handshake(
    s: &mut TcpStream,
    (me, peer): (u64, u64),
    key: &Key,
    empty: bool,
) -> std::io::Result<bool> {
    let mine = nonce();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&me.to_le_bytes());
    hello.extend_from_slice(&peer.to_le_bytes());
    hello.extend_from_slice(&mine);
    hello.push(u8::from(empty));
    s.write_all(&hello).await?;
    let mut back = [0u8; 8 + 32 + 32 + 1];
    s.read_exact(&mut back).await?;
    if &back[..8] != MAGIC {
        return Err(refused("the peer does not speak Synap's raft protocol"));
    }
    let theirs: [u8; 32] = back[8..40].try_into().expect("32 bytes");
    let expected = mac(key, b"acceptor", &mine, me, peer);
    if !bool::from(expected.ct_eq(&back[40..72])) {
        return Err(refused("the peer does not hold the cluster secret"));
    }
    s.write_all(&mac(key, b"dialer", &theirs, me, peer)).await?;
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).await?;
    if ok[0] != 1 {
        return Err(refused("the peer refused this node"));
    }
    Ok(back[72] == 1)
}

/// The acceptor's side: the dialer's id and whether its log is empty.
async fn accept_handshake(
    s: &mut TcpStream,
    me: u64,
    key: &Key,
    known: impl Fn(u64) -> bool,
    empty: bool,
) -> std::io::Result<(u64, bool)> {
    let mut hello = [0u8; 8 + 8 + 8 + 32 + 1];
    s.read_exact(&mut hello).await?;
    if &hello[..8] != MAGIC {
        return Err(refused("not Synap's raft protocol"));
    }
    let from = u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes"));
    let to = u64::from_le_bytes(hello[16..24].try_into().expect("8 bytes"));
    if to != me || !known(from) {
        return Err(refused(&format!(
            "a connection from node {from} to node {to}: not a peer that dials this node"
        )));
    }
    let theirs: [u8; 32] = hello[24..56].try_into().expect("32 bytes");
    let mine = nonce();
    let mut back = MAGIC.to_vec();
    back.extend_from_slice(&mine);
    back.extend_from_slice(&mac(key, b"acceptor", &theirs, from, me));
    back.push(u8::from(empty));
    s.write_all(&back).await?;
    let mut proof = [0u8; 32];
    s.read_exact(&mut proof).await?;
    let expected = mac(key, b"dialer", &mine, from, me);
    if !bool::from(expected.ct_eq(&proof)) {
        let _ = s.write_all(&[0]).await;
        return Err(refused(&format!(
            "node {from} does not hold the cluster secret"
        )));
    }
    s.write_all(&[1]).await?;
    Ok((from, hello[56] == 1))
}

#[cfg(test)]
mod tests {
    //! Goal: the handshake admits a peer with the secret and refuses one without it, both ways.
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Runs both sides; each closes its socket when done, as the real callers do.
    async fn shake(
        dial_key: Key,
        dialer: u64,
        accept_key: Key,
    ) -> (std::io::Result<bool>, std::io::Result<(u64, bool)>) {
        let (mut d, mut a) = pair().await;
        tokio::join!(
            async move { dial_handshake(&mut d, (dialer, 2), &dial_key, true).await },
            async move { accept_handshake(&mut a, 2, &accept_key, |id| id == 1, false).await }
        )
    }

    #[tokio::test]
    async fn the_secret_admits_and_its_absence_refuses() {
        let good: Key = [7; 32];
        let bad: Key = [8; 32];
        let (x, y) = shake(good, 1, good).await;
        assert!(!x.unwrap(), "the acceptor's log is not empty");
        assert_eq!(y.unwrap(), (1, true), "the dialer's log is empty");
        let (x, y) = shake(bad, 1, good).await;
        assert!(
            x.is_err() && y.is_err(),
            "a wrong secret is refused both ways"
        );
        let (x, y) = shake(good, 3, good).await;
        assert!(
            x.is_err() && y.is_err(),
            "an unknown or higher id is refused"
        );
    }
}
