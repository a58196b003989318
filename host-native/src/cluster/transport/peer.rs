//! One peer's link: a task that holds the connection to that peer (dialling it when this
//! node has the lower id, taking the connections the accept loop hands over otherwise),
//! writes the messages queued for it and reads what it sends.
//!
//! The reader runs as a task of its own, so a long write (a snapshot's chunks) never keeps
//! this node from reading its peer, and two nodes writing to each other cannot block each
//! other. A snapshot goes out chunk by chunk, with the messages queued meanwhile written
//! between two chunks; it is reported delivered once its last chunk is flushed, and failed
//! when the connection ends first.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use synap_cluster::{Message, MessageType};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::NetEvent;
use super::frames::{Assembler, Limits, OutgoingSnapshot, push_message, read_frame};
use super::handshake::{Key, dial_handshake};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Snapshots queued behind the one being sent; more are reported failed (raft resends).
const SNAPSHOTS_QUEUED: usize = 2;

/// What a peer task is built from.
pub(super) struct PeerTask {
    pub(super) me: u64,
    pub(super) peer: u64,
    /// Where to dial it (when this node dials: the lower id dials the higher).
    pub(super) addr: Option<SocketAddr>,
    pub(super) key: Key,
    pub(super) limits: Limits,
    pub(super) out: mpsc::Receiver<Message>,
    /// Authenticated connections accepted from this peer, and whether its log is empty.
    pub(super) conns: mpsc::Receiver<(TcpStream, bool)>,
    pub(super) events: mpsc::Sender<NetEvent>,
    pub(super) connected: Arc<AtomicBool>,
    /// Whether this node's own log is empty (told to peers when connecting).
    pub(super) empty: Arc<AtomicBool>,
    /// The node's places for snapshots being received (shared by its connections).
    pub(super) slots: Arc<AtomicUsize>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PeerTask {
    pub(super) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut next: Option<(TcpStream, bool)> = None;
        let dials = self.me < self.peer;
        if dials && self.addr.is_none() {
            warn!(
                peer = self.peer,
                "no address known for peer; waiting for it to dial"
            );
        }
        loop {
            let (stream, peer_empty) = match (next.take(), self.addr.filter(|_| dials)) {
                (Some(s), _) => s,
                (None, Some(addr)) => match self.dial(addr).await {
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
                (None, None) => match self.conns.recv().await {
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

    async fn dial(&self, addr: SocketAddr) -> std::io::Result<(TcpStream, bool)> {
        let mut s = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
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
        let (rd, wr) = stream.into_split();
        let reader = tokio::spawn(read_loop(
            rd,
            (self.peer, self.me),
            self.limits,
            self.events.clone(),
            Arc::clone(&self.slots),
        ));
        let _stop_reader = AbortOnDrop(reader.abort_handle());
        let mut reader = reader;
        let mut w = Writer {
            wr: BufWriter::with_capacity(64 << 10, wr),
            buf: Vec::new(),
            sending: None,
            queued: VecDeque::new(),
            next_id: 1,
            limits: self.limits,
            finished: Vec::new(),
        };
        let next = loop {
            if w.sending.is_some() {
                // One chunk, after whatever else waits.
                while let Ok(m) = self.out.try_recv() {
                    w.queue(m);
                }
                w.chunk();
                if let Err(e) = w.flush().await {
                    debug!(peer = self.peer, error = %e, "cannot write to peer");
                    break None;
                }
                self.report(&mut w).await;
                if reader.is_finished() {
                    break None;
                }
                if let Ok(c) = self.conns.try_recv() {
                    break Some(c);
                }
                continue;
            }
            tokio::select! {
                r = &mut reader => {
                    match r {
                        Ok(Err(e)) => debug!(peer = self.peer, error = %e, "peer connection ended"),
                        Err(e) if !e.is_cancelled() => warn!(peer = self.peer, error = %e, "peer reader failed"),
                        _ => {}
                    }
                    break None;
                }
                msg = self.out.recv() => {
                    let Some(m) = msg else { break None };
                    w.queue(m);
                    while let Ok(m) = self.out.try_recv() {
                        w.queue(m);
                    }
                    if let Err(e) = w.flush().await {
                        debug!(peer = self.peer, error = %e, "cannot write to peer");
                        break None;
                    }
                    self.report(&mut w).await;
                }
                s = self.conns.recv() => break s,
            }
        };
        for to in w.abandon() {
            let _ = self.events.send(NetEvent::Snapshot { to, ok: false }).await;
        }
        next
    }

    /// Tells the node which snapshots went out whole.
    async fn report(&self, w: &mut Writer) {
        for (to, ok) in w.finished.drain(..) {
            let _ = self.events.send(NetEvent::Snapshot { to, ok }).await;
        }
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

/// The writing side of one connection: frames to write, and the snapshots on their way.
struct Writer {
    wr: BufWriter<OwnedWriteHalf>,
    buf: Vec<u8>,
    sending: Option<OutgoingSnapshot>,
    queued: VecDeque<Message>,
    next_id: u64,
    limits: Limits,
    /// Snapshots done since the last report: `(to, ok)`.
    finished: Vec<(u64, bool)>,
}

impl Writer {
    /// Frames `m` (a message at once; a snapshot's start, or queues it behind the one being
    /// sent).
    fn queue(&mut self, m: Message) {
        if m.get_msg_type() != MessageType::MsgSnapshot {
            push_message(&mut self.buf, &m);
            return;
        }
        if self.queued.len() >= SNAPSHOTS_QUEUED {
            self.finished.push((m.to, false));
            return;
        }
        self.queued.push_back(m);
        self.begin();
    }

    /// Starts the next queued snapshot when none is being sent.
    fn begin(&mut self) {
        while self.sending.is_none() {
            let Some(m) = self.queued.pop_front() else {
                return;
            };
            let len = m.get_snapshot().get_data().len() as u64;
            if len > self.limits.max_snapshot {
                warn!(
                    to = m.to,
                    bytes = len,
                    limit = self.limits.max_snapshot,
                    "a snapshot over cluster.max_snapshot_bytes is not sent; raise the limit on every node"
                );
                self.finished.push((m.to, false));
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let s = OutgoingSnapshot::start(id, m, self.limits.chunk, &mut self.buf);
            debug!(
                to = s.to,
                bytes = s.len(),
                transfer = id,
                "sending a snapshot"
            );
            self.sending = Some(s);
        }
    }

    /// Frames the next chunk of the snapshot being sent.
    fn chunk(&mut self) {
        let Some(s) = self.sending.as_mut() else {
            return;
        };
        if s.push_chunk(&mut self.buf) {
            self.finished.push((s.to, true));
            self.sending = None;
            self.begin();
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.wr.flush().await
    }

    /// The connection ended: the peers of the snapshots not reported delivered (those
    /// finished but not flushed are counted failed too).
    fn abandon(&mut self) -> Vec<u64> {
        let mut failed: Vec<u64> = self.finished.drain(..).map(|(to, _)| to).collect();
        failed.extend(self.sending.take().map(|s| s.to));
        failed.extend(self.queued.drain(..).map(|m| m.to));
        failed
    }
}

/// Reads frames from a peer until the connection ends or breaks the protocol; hands every
/// whole message to the node.
pub(super) async fn read_loop(
    mut rd: OwnedReadHalf,
    (peer, me): (u64, u64),
    limits: Limits,
    events: mpsc::Sender<NetEvent>,
    slots: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut asm = Assembler::new(limits, slots);
    loop {
        let (kind, body) = read_frame(&mut rd, &limits).await?;
        let Some(msg) = asm.on_frame(kind, body).map_err(std::io::Error::other)? else {
            continue;
        };
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
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Goal: through a real socket, a snapshot sent in chunks arrives whole and is reported
    //! delivered, and the heartbeats queued during it arrive too.
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn a_snapshot_crosses_a_socket_in_chunks() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (a, b) = (a.unwrap(), b.unwrap().0);
        let limits = Limits {
            max_frame: 1 << 20,
            max_snapshot: 8 << 20,
            chunk: 4096,
        };
        let (rx_events, mut received) = mpsc::channel(1024);
        let (rd, _keep) = b.into_split();
        let reader = tokio::spawn(read_loop(rd, (1, 2), limits, rx_events, Arc::default()));
        let (out_tx, out) = mpsc::channel(64);
        let (_conn_tx, conns) = mpsc::channel(1);
        let (tx_events, mut sent) = mpsc::channel(64);
        let mut task = PeerTask {
            me: 1,
            peer: 2,
            addr: None,
            key: [0; 32],
            limits,
            out,
            conns,
            events: tx_events,
            connected: Arc::default(),
            empty: Arc::default(),
            slots: Arc::default(),
        };
        let mut snap = Message::default();
        snap.set_msg_type(MessageType::MsgSnapshot);
        (snap.from, snap.to) = (1, 2);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        snap.mut_snapshot().set_data(data.clone().into());
        snap.mut_snapshot().mut_metadata().index = 9;
        out_tx.send(snap).await.unwrap();
        for commit in 1..=20 {
            let mut hb = Message::default();
            hb.set_msg_type(MessageType::MsgHeartbeat);
            (hb.from, hb.to, hb.commit) = (1, 2, commit);
            out_tx.send(hb).await.unwrap();
        }
        let serving = tokio::spawn(async move { task.serve(a).await.is_none() });
        assert_eq!(
            sent.recv().await.map(|e| format!("{e:?}")),
            Some("Snapshot { to: 2, ok: true }".into())
        );
        let mut heartbeats = 0;
        let mut whole = None;
        while whole.is_none() || heartbeats < 20 {
            match received.recv().await.expect("an event") {
                NetEvent::Received(m) if m.get_msg_type() == MessageType::MsgHeartbeat => {
                    heartbeats += 1;
                }
                NetEvent::Received(m) => whole = Some(m),
                other => panic!("{other:?}"),
            }
        }
        let whole = whole.unwrap();
        assert_eq!(whole.get_snapshot().get_data(), &data[..]);
        assert_eq!(whole.get_snapshot().get_metadata().index, 9);
        drop(out_tx);
        assert!(
            serving.await.unwrap(),
            "the link ends when its queue closes"
        );
        reader.abort();
    }
}
