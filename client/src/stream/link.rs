//! The connection behind a [`QueueStream`](super::QueueStream): one task reads every frame,
//! splitting deliveries (for `next`) from confirms (matched to the waiting call by the frame's
//! `id`), so consuming and answering never block each other.
//!
//! When a connection ends, every call waiting on it fails with [`SynapError::Closed`]. On a
//! client without failover that ends the stream: later calls fail the same way. On a client
//! with failover, a connection that ended because its node failed or stopped leading (the
//! socket dropped, the server went away, a `not_leader` refusal, or its session ended because
//! the node lost leadership) is opened again on the leader — the same queue, options and
//! consumer id — and the calls that were waiting are sent again on it when that is safe
//! ([`Link::finish`]). Deliveries keep coming through the same channel. The leases of the old
//! connection run to their deadlines (DESIGN.md §11); acks and nacks of them work on the new
//! connection until then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use synap_wire::{self as wire, QueueOp, QueueServerFrame as Frame};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::failover::{MOVE_ON, Sent};
use crate::types::RawDelivery;
use crate::ws::{Socket, frame_error, next_json};

pub(super) type Sink = SplitSink<Socket, Message>;
type Reader = SplitStream<Socket>;
pub(super) type Deliveries = mpsc::UnboundedSender<Result<RawDelivery>>;
pub(super) type Confirm = oneshot::Receiver<Result<Frame>>;

/// Where the stream's connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Status {
    /// Connection `n` (counted from 1) is open.
    Up(u64),
    /// Connection `n` ended; the next one is being opened.
    Down(u64),
    /// The stream ended for good, for this reason.
    Closed(String),
}

/// Why sending a frame failed.
pub(super) enum SendError {
    /// The frame may have gone out on connection `n` before it failed.
    Unknown(u64, SynapError),
    /// It did not go out, and no connection will come.
    Final(SynapError),
}

/// The shared side of a stream: the connection in use and the calls waiting for confirms.
pub(super) struct Link {
    pub(super) client: SynapClient,
    pub(super) queue: String,
    /// The connection's query (`consumer_id`, `prefetch`, `ack_deadline`).
    query: Vec<(String, String)>,
    /// Calls waiting for their confirm, by frame id. Status changes happen under this lock,
    /// so a call registers either before its connection ends (and is failed with it) or
    /// after (and sees the new status).
    pub(super) waiters: Mutex<HashMap<u64, oneshot::Sender<Result<Frame>>>>,
    status: watch::Sender<Status>,
    /// The open connection's number and its writing half.
    pub(super) sink: tokio::sync::Mutex<(u64, Option<Sink>)>,
    next_id: AtomicU64,
    /// Set once the stream is closed or dropped: the end of the connection is final.
    pub(super) closing: AtomicBool,
}

/// Locks a mutex whose data one panicking holder cannot leave inconsistent (each change is
/// one map operation), so a poisoned lock is still used.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a registered waiter unless disarmed: a call cancelled (or failed) before its frame
/// was sent must not leave its waiter behind.
struct WaiterGuard<'a> {
    link: &'a Link,
    id: u64,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.link.waiters).remove(&self.id);
        }
    }
}

/// How a connection ended.
struct End {
    reason: String,
    /// What `next` reports if the stream ends here for good.
    error: Option<SynapError>,
    /// The node may serve again elsewhere: open the connection on the leader.
    again: Again,
}

/// Whether a connection's end calls for a new one.
#[derive(PartialEq, Eq)]
enum Again {
    Yes,
    No,
    /// The server ended the session as if the queue were gone, which a node that stopped
    /// leading also does: ask it.
    IfDeposed,
}

/// One read from the socket.
enum Read {
    Frame(Frame),
    /// A close frame, with its code.
    Close(Option<CloseCode>),
    /// The socket failed or ended without a close frame.
    Failed(SynapError),
    /// A frame that is not a server frame.
    Broken(SynapError),
}

impl Link {
    pub(super) fn new(client: SynapClient, queue: &str, query: Vec<(String, String)>) -> Self {
        Self {
            client,
            queue: queue.to_owned(),
            query,
            waiters: Mutex::default(),
            status: watch::Sender::new(Status::Down(0)),
            sink: tokio::sync::Mutex::new((0, None)),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
        }
    }

    /// Opens a connection (on the leader, with failover) and reads its `connected` frame:
    /// the writing and reading halves and the consumer id.
    pub(super) async fn open(&self) -> Result<(Sink, Reader, String)> {
        let query: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let segments = ["queue", self.queue.as_str(), "ws"];
        self.client
            .open_ws(&segments, &query, async |mut socket| {
                let hello = next_json(&mut socket)
                    .await?
                    .ok_or_else(|| SynapError::Closed("streaming connection refused".into()))?;
                if let Some(err) = frame_error(&hello) {
                    return Err(err);
                }
                let Frame::Connected { consumer_id, .. } = serde_json::from_value(hello)? else {
                    return Err(SynapError::Decode(
                        "the first frame is not `connected`".into(),
                    ));
                };
                let (sink, reader) = socket.split();
                Ok((sink, reader, consumer_id))
            })
            .await
    }

    /// Makes `sink` connection `n`, the one calls use.
    pub(super) async fn install(&self, n: u64, sink: Sink) {
        *self.sink.lock().await = (n, Some(sink));
        let _w = lock(&self.waiters);
        self.status.send_replace(Status::Up(n));
    }

    /// Sets the status after a connection ended, failing every waiting call.
    pub(super) fn ended(&self, status: Status, reason: &str) {
        let mut waiters = lock(&self.waiters);
        for (_, w) in waiters.drain() {
            let _ = w.send(Err(SynapError::Closed(reason.to_owned())));
        }
        self.status.send_replace(status);
    }

    /// Waits for a connection newer than `after`.
    async fn wait_up(&self, after: u64) -> Result<u64> {
        let mut rx = self.status.subscribe();
        loop {
            let status = rx.borrow_and_update().clone();
            match status {
                Status::Up(n) if n > after => return Ok(n),
                Status::Closed(reason) => return Err(SynapError::Closed(reason)),
                _ => {}
            }
            // The sender lives in `self`, so this only waits.
            let _ = rx.changed().await;
        }
    }

    /// Sends `op` on a connection newer than `after`, in a frame with a fresh id, registering
    /// the waiter first: even an instant confirm finds it, and the guard removes it again if
    /// this call is cancelled or fails before the frame is out.
    pub(super) async fn send(&self, op: &QueueOp, after: u64) -> Result<(u64, Confirm), SendError> {
        loop {
            let n = self.wait_up(after).await.map_err(SendError::Final)?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let frame = wire::QueueClientFrame {
                id: Some(json!(id)),
                op: op.clone(),
            };
            let text = serde_json::to_string(&frame).map_err(|e| SendError::Final(e.into()))?;
            let (tx, rx) = oneshot::channel();
            {
                let mut waiters = lock(&self.waiters);
                if *self.status.borrow() != Status::Up(n) {
                    continue;
                }
                waiters.insert(id, tx);
            }
            let mut guard = WaiterGuard {
                link: self,
                id,
                armed: true,
            };
            let mut sink = self.sink.lock().await;
            let (current, Some(s)) = &mut *sink else {
                continue;
            };
            if *current != n {
                continue;
            }
            s.send(Message::text(text))
                .await
                .map_err(|e| SendError::Unknown(n, e.into()))?;
            guard.armed = false;
            return Ok((n, rx));
        }
    }

    /// Awaits the confirm of a frame (`sent`). When its connection ends first, or the frame
    /// could not be sent, and `resend` allows, it is sent again on the next connection
    /// (failover only), as often as connections fail; [`Sent::resent`] then says so.
    pub(super) async fn finish(
        &self,
        mut sent: Result<(u64, Confirm), SendError>,
        op: &QueueOp,
        resend: bool,
    ) -> Sent<Frame> {
        let resend = resend && self.client.fails_over();
        let mut resent = false;
        loop {
            let after = match sent {
                Ok((n, rx)) => match rx.await {
                    Ok(Err(SynapError::Closed(reason))) if !resend => {
                        return Sent {
                            result: Err(SynapError::Closed(reason)),
                            resent,
                        };
                    }
                    Ok(Err(SynapError::Closed(_))) => n,
                    Ok(result) => return Sent { result, resent },
                    Err(_) if !resend => {
                        let e = SynapError::Closed("connection ended before the confirm".into());
                        return Sent {
                            result: Err(e),
                            resent,
                        };
                    }
                    Err(_) => n,
                },
                Err(SendError::Unknown(n, _)) if resend => n,
                Err(SendError::Unknown(_, e) | SendError::Final(e)) => {
                    return Sent {
                        result: Err(e),
                        resent,
                    };
                }
            };
            resent = true;
            sent = self.send(op, after).await;
        }
    }

    /// Reads connection `n` until it ends, routing every frame.
    async fn read(&self, reader: &mut Reader, deliveries: &Deliveries) -> End {
        // A consume error (no id) comes just before the server closes; on a client with
        // failover it is held until the close says whether the stream goes on.
        let mut refused: Option<SynapError> = None;
        loop {
            let frame = match read_frame(reader).await {
                Read::Frame(frame) => frame,
                Read::Close(code) => {
                    let code_of = |e: &SynapError| e.code().map(str::to_owned);
                    let again = match refused.as_ref().and_then(code_of).as_deref() {
                        Some(c) if MOVE_ON.contains(&c) => Again::Yes,
                        Some("queue_not_found") => Again::IfDeposed,
                        Some(_) => Again::No,
                        None if code == Some(CloseCode::Away) => Again::Yes,
                        None => Again::No,
                    };
                    return End {
                        reason: "the server closed the connection".into(),
                        error: refused,
                        again,
                    };
                }
                Read::Failed(e) => {
                    return End {
                        reason: format!("the connection failed: {e}"),
                        error: refused.or(Some(e)),
                        again: Again::Yes,
                    };
                }
                Read::Broken(e) => {
                    return End {
                        reason: format!("the connection failed: {e}"),
                        error: Some(e),
                        again: Again::No,
                    };
                }
            };
            let (id, result) = match frame {
                Frame::Message(d) => {
                    let _ = deliveries.send(Ok(RawDelivery(d)));
                    continue;
                }
                Frame::Published { ref id, .. } | Frame::Ok { ref id, .. } => {
                    (id.as_ref().and_then(Value::as_u64), Ok(frame))
                }
                Frame::Error {
                    id, error, code, ..
                } => {
                    let e = SynapError::Server {
                        status: 0,
                        code: code.unwrap_or_else(|| "error".to_owned()),
                        message: error,
                    };
                    (id.as_ref().and_then(Value::as_u64), Err(e))
                }
                // Greetings and progress reports answer no call.
                _ => continue,
            };
            let waiter = id.and_then(|id| lock(&self.waiters).remove(&id));
            match (waiter, id, result) {
                (Some(w), _, result) => {
                    let _ = w.send(result);
                }
                // The answer to a call that gave up waiting: nobody wants it.
                (None, Some(_), _) | (None, None, Ok(_)) => {}
                // An error that answers no call (a failed consume) is reported to `next`.
                (None, None, Err(e)) if self.client.fails_over() => {
                    if let Some(earlier) = refused.replace(e) {
                        let _ = deliveries.send(Err(earlier));
                    }
                }
                (None, None, Err(e)) => {
                    let _ = deliveries.send(Err(e));
                }
            }
        }
    }

    /// Whether the connection's end calls for a new one.
    async fn again(&self, end: &End) -> bool {
        if !self.client.fails_over() || self.closing.load(Ordering::Relaxed) {
            return false;
        }
        match end.again {
            Again::Yes => true,
            Again::No => false,
            Again::IfDeposed => {
                let base = self.client.current_url();
                match self.client.role_of(&base).await {
                    Some((role, leader)) if role != "leader" => {
                        if let Some(leader) = leader {
                            self.client.nodes.move_on(&base, leader);
                        }
                        true
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Runs the stream's connections: reads connection `n` until it ends, then opens the next one
/// when the end calls for it, until the stream ends for good.
pub(super) async fn run(
    link: std::sync::Arc<Link>,
    mut reader: Reader,
    mut n: u64,
    tx: Deliveries,
) {
    loop {
        let end = link.read(&mut reader, &tx).await;
        if !link.again(&end).await {
            link.ended(Status::Closed(end.reason.clone()), &end.reason);
            if let Some(e) = end.error {
                let _ = tx.send(Err(e));
            }
            return;
        }
        link.ended(Status::Down(n), &end.reason);
        link.sink.lock().await.1 = None;
        match link.open().await {
            Ok((sink, next, _consumer_id)) => {
                n += 1;
                link.install(n, sink).await;
                reader = next;
            }
            Err(e) => {
                let reason = format!("could not reconnect: {e}");
                link.ended(Status::Closed(reason.clone()), &reason);
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// The next server frame, decoded strictly as its wire type.
async fn read_frame(reader: &mut Reader) -> Read {
    while let Some(msg) = reader.next().await {
        match msg {
            Ok(Message::Text(text)) => {
                return match serde_json::from_str(text.as_str()) {
                    Ok(frame) => Read::Frame(frame),
                    Err(e) => Read::Broken(e.into()),
                };
            }
            Ok(Message::Close(frame)) => return Read::Close(frame.map(|f| f.code)),
            Ok(_) => {}
            Err(e) => return Read::Failed(e.into()),
        }
    }
    Read::Failed(SynapError::Closed(
        "the connection ended without a close".into(),
    ))
}
