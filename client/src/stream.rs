//! The streaming consumer over `GET /queue/{name}/ws`: the server pushes up to `prefetch`
//! unacked messages (each ack or nack earns the credit back), and the same socket carries ack,
//! nack, extend and publish frames, each answered by one confirm. Publishes can be pipelined:
//! send many, then await their confirms.
//!
//! One reader task splits what arrives into deliveries (for [`QueueStream::next`]) and confirms
//! (matched to the waiting call by the frame's `id`), so consuming and answering never block
//! each other. When the reader stops (the socket closed, or a frame could not be read), the
//! connection counts as closed: every waiting call and every later one fails with
//! [`SynapError::Closed`] instead of waiting for a confirm no one will route.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use synap_wire::{self as wire, QueueOp, QueueServerFrame as Frame};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::queue::PublishBody;
use crate::types::{
    NackAction, NackOptions, PublishOptions, PublishResult, QueueMessage, RawDelivery,
};
use crate::ws::{Socket, frame_error, next_json};

/// Options of a streaming connection. `Default` takes 16 messages at a time under the queue's
/// ack deadline.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Identifies the worker (for `prefetch` and the `consumers` stat); the server picks one
    /// when `None`.
    pub consumer_id: Option<String>,
    /// Unacked messages the server may push at once (default 16); `Some(0)` opens a
    /// publish-only connection.
    pub prefetch: Option<u32>,
    /// Lease length of pushed messages; the queue's default when `None`.
    pub ack_deadline: Option<Duration>,
}

/// Calls waiting for their confirm, by frame id, and whether the reader has stopped. One lock
/// covers both, so a call either registers before the reader stops (and is failed by it) or
/// sees that it stopped.
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, oneshot::Sender<Result<Frame>>>,
    /// Why the reader stopped, once it has.
    closed: Option<String>,
}

type Waiters = Arc<Mutex<Pending>>;

/// Locks the pending calls. A panic while holding the lock cannot leave them inconsistent
/// (each change is one map operation), so a poisoned lock is still used.
fn lock(waiters: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    waiters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a registered waiter unless disarmed: a call cancelled (or failed) before its frame
/// was sent must not leave its waiter behind.
struct WaiterGuard<'a> {
    waiters: &'a Mutex<Pending>,
    id: u64,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.waiters).waiters.remove(&self.id);
        }
    }
}

/// A streaming connection to one queue. Dropping it closes the socket; the server gives back
/// the messages still leased to it at once (each counts as a delivery attempt).
pub struct QueueStream<T> {
    queue: String,
    consumer_id: String,
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    waiters: Waiters,
    next_id: AtomicU64,
    deliveries: mpsc::UnboundedReceiver<Result<RawDelivery>>,
    reader: JoinHandle<()>,
    _body: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for QueueStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStream")
            .field("queue", &self.queue)
            .field("consumer_id", &self.consumer_id)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for QueueStream<T> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SynapClient {
    /// Opens a streaming connection to `queue` whose pushed messages decode as `T`.
    ///
    /// # Errors
    /// `invalid_argument` for a bad option, `unauthorized`, or transport errors.
    pub async fn queue_stream<T: DeserializeOwned>(
        &self,
        queue: &str,
        opts: StreamOptions,
    ) -> Result<QueueStream<T>> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(id) = &opts.consumer_id {
            query.push(("consumer_id", id.clone()));
        }
        if let Some(p) = opts.prefetch {
            query.push(("prefetch", p.to_string()));
        }
        if let Some(d) = opts.ack_deadline {
            query.push(("ack_deadline", d.as_secs_f64().to_string()));
        }
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut socket = self.open_ws(&["queue", queue, "ws"], &pairs).await?;
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
        let (sink, stream) = socket.split();
        let waiters: Waiters = Arc::default();
        let (tx, deliveries) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(stream, Arc::clone(&waiters), tx));
        Ok(QueueStream {
            queue: queue.to_owned(),
            consumer_id,
            sink: tokio::sync::Mutex::new(sink),
            waiters,
            next_id: AtomicU64::new(1),
            deliveries,
            reader,
            _body: PhantomData,
        })
    }
}

/// Routes every frame: deliveries to the channel, confirms to their waiting call. When it
/// stops, it marks the connection closed and fails every pending call.
async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Socket>,
    waiters: Waiters,
    deliveries: mpsc::UnboundedSender<Result<RawDelivery>>,
) {
    let reason = loop {
        let frame = match read_frame(&mut stream).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "the server closed the connection".to_owned(),
            Err(e) => {
                let reason = format!("the connection failed: {e}");
                let _ = deliveries.send(Err(e));
                break reason;
            }
        };
        let (id, result) = match frame {
            Frame::Message(d) => {
                let _ = deliveries.send(Ok(RawDelivery(d)));
                continue;
            }
            Frame::Connected { .. } => continue,
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
        };
        let waiter = id.and_then(|id| lock(&waiters).waiters.remove(&id));
        match (waiter, id) {
            (Some(w), _) => {
                let _ = w.send(result);
            }
            // The answer to a call that gave up waiting: nobody wants it.
            (None, Some(_)) => {}
            // An error that answers no call (a failed consume) is reported to `next`.
            (None, None) => {
                if let Err(e) = result {
                    let _ = deliveries.send(Err(e));
                }
            }
        }
    };
    let mut pending = lock(&waiters);
    for (_, w) in pending.waiters.drain() {
        let _ = w.send(Err(SynapError::Closed(reason.clone())));
    }
    pending.closed = Some(reason);
}

/// The next server frame, decoded strictly as its wire type.
async fn read_frame(
    stream: &mut futures_util::stream::SplitStream<Socket>,
) -> Result<Option<Frame>> {
    while let Some(msg) = stream.next().await {
        match msg? {
            Message::Text(text) => return Ok(Some(serde_json::from_str(text.as_str())?)),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// A publish sent on a streaming connection whose confirm has not been awaited yet.
#[derive(Debug)]
pub struct PublishConfirm(oneshot::Receiver<Result<Frame>>);

impl PublishConfirm {
    /// Waits for the server's confirm: the message is accepted once this returns `Ok`.
    ///
    /// # Errors
    /// The publish's server error, or [`SynapError::Closed`] if the connection ended first.
    pub async fn wait(self) -> Result<PublishResult> {
        match confirm(self.0).await? {
            Frame::Published {
                message_id,
                position,
                duplicate,
                ..
            } => Ok(PublishResult {
                message_id,
                position,
                duplicate,
                replaced: false,
            }),
            other => Err(SynapError::Decode(format!(
                "a publish answered with {other:?}"
            ))),
        }
    }
}

async fn confirm(rx: oneshot::Receiver<Result<Frame>>) -> Result<Frame> {
    rx.await
        .map_err(|_| SynapError::Closed("connection ended before the confirm".into()))?
}

impl<T: DeserializeOwned> QueueStream<T> {
    /// The next pushed message; `None` once the connection has closed.
    ///
    /// # Errors
    /// A body that is not a `T` (the message stays leased until its deadline), or the error
    /// that ended the connection.
    pub async fn next(&mut self) -> Option<Result<QueueMessage<T>>> {
        let raw = self.deliveries.recv().await?;
        Some(raw.and_then(RawDelivery::decode))
    }

    /// The consumer id the server knows this connection by.
    #[must_use]
    pub fn consumer_id(&self) -> &str {
        &self.consumer_id
    }

    /// The queue this connection consumes from and publishes to.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Acknowledges a delivery (with its lease, so a late ack is refused).
    ///
    /// # Errors
    /// `lease_mismatch`, `message_not_found`, or [`SynapError::Closed`].
    pub async fn ack(&self, message_id: &str, lease: Option<u64>) -> Result<()> {
        let op = QueueOp::Ack(wire::AckRequest {
            message_id: message_id.to_owned(),
            lease,
            result: None,
        });
        confirm(self.send(op).await?).await.map(drop)
    }

    /// Rejects a delivery; see [`SynapClient::queue_nack_with`].
    ///
    /// # Errors
    /// As [`ack`](Self::ack).
    pub async fn nack(&self, message_id: &str, opts: &NackOptions) -> Result<NackAction> {
        let op = QueueOp::Nack(opts.request(message_id));
        match confirm(self.send(op).await?).await? {
            Frame::Ok {
                action: Some(action),
                ..
            } => Ok(action),
            other => Err(SynapError::Decode(format!(
                "a nack answered with {other:?}"
            ))),
        }
    }

    /// Extends a delivery's lease to `ack_deadline` from now.
    ///
    /// # Errors
    /// As [`ack`](Self::ack).
    pub async fn extend(
        &self,
        message_id: &str,
        ack_deadline: Duration,
        lease: Option<u64>,
    ) -> Result<()> {
        let op = QueueOp::Extend(wire::ExtendRequest {
            message_id: message_id.to_owned(),
            ack_deadline: ack_deadline.as_secs_f64(),
            lease,
        });
        confirm(self.send(op).await?).await.map(drop)
    }

    /// Publishes to this connection's queue and waits for the confirm.
    ///
    /// # Errors
    /// `queue_full`, `invalid_argument`, or [`SynapError::Closed`].
    pub async fn publish<M: Serialize + ?Sized>(
        &self,
        message: &M,
        opts: PublishOptions,
    ) -> Result<PublishResult> {
        self.publish_pipelined(message, opts).await?.wait().await
    }

    /// Sends a publish without waiting for its confirm, so many can be in flight; await each
    /// [`PublishConfirm`] to learn the outcome. Confirms arrive in the order sent.
    ///
    /// # Errors
    /// An unserializable message, or [`SynapError::Closed`] if the frame could not be sent.
    pub async fn publish_pipelined<M: Serialize + ?Sized>(
        &self,
        message: &M,
        opts: PublishOptions,
    ) -> Result<PublishConfirm> {
        let body = PublishBody {
            message,
            opts: &opts,
        }
        .request()?;
        Ok(PublishConfirm(self.send(QueueOp::Publish(body)).await?))
    }

    /// Closes the connection politely. The server gives back unacked deliveries at once (each
    /// counts as a delivery attempt).
    ///
    /// # Errors
    /// Transport errors while closing.
    pub async fn close(self) -> Result<()> {
        self.sink.lock().await.close().await?;
        Ok(())
    }

    /// Sends `op` in a frame with a fresh id, registering the waiter first. Registering first
    /// means even an instant confirm finds its waiter; the guard removes it again if this call
    /// is cancelled or fails before the frame is out.
    async fn send(&self, op: QueueOp) -> Result<oneshot::Receiver<Result<Frame>>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::QueueClientFrame {
            id: Some(json!(id)),
            op,
        };
        let text = serde_json::to_string(&frame)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.waiters);
            if let Some(reason) = &pending.closed {
                return Err(SynapError::Closed(reason.clone()));
            }
            pending.waiters.insert(id, tx);
        }
        let mut guard = WaiterGuard {
            waiters: &self.waiters,
            id,
            armed: true,
        };
        self.sink.lock().await.send(Message::text(text)).await?;
        guard.armed = false;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::WebSocketStream;

    use super::*;

    /// A stream connected to a fake server, and the server's side of the socket (after the
    /// `connected` frame).
    async fn fake() -> (QueueStream<u32>, JoinHandle<WebSocketStream<TcpStream>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let hello =
                json!({"type": "connected", "queue": "q", "consumer_id": "c", "prefetch": 16});
            ws.send(Message::text(hello.to_string())).await.unwrap();
            ws
        });
        let client = SynapClient::new(&format!("http://{addr}")).unwrap();
        let stream = client
            .queue_stream::<u32>("q", StreamOptions::default())
            .await
            .unwrap();
        (stream, server)
    }

    fn waiting(stream: &QueueStream<u32>) -> usize {
        lock(&stream.waiters).waiters.len()
    }

    #[tokio::test]
    async fn an_unreadable_frame_fails_pending_and_later_calls() {
        let (stream, server) = fake().await;
        let mut ws = server.await.unwrap();
        let pending = stream
            .publish_pipelined(&1u32, PublishOptions::default())
            .await
            .unwrap();
        // The server reads the publish, answers with garbage, and keeps the socket open.
        assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
        ws.send(Message::text("not json")).await.unwrap();
        let limit = Duration::from_secs(10);
        let first = tokio::time::timeout(limit, pending.wait()).await;
        assert!(matches!(first, Ok(Err(SynapError::Closed(_)))), "{first:?}");
        let later = tokio::time::timeout(limit, stream.ack("m", None)).await;
        assert!(matches!(later, Ok(Err(SynapError::Closed(_)))), "{later:?}");
        assert_eq!(waiting(&stream), 0);
        drop(ws);
    }

    #[tokio::test]
    async fn a_call_cancelled_before_sending_leaves_no_waiter() {
        let (stream, server) = fake().await;
        let _ws = server.await.unwrap();
        // Another call holds the socket, so this one registers its waiter and then waits.
        let held = stream.sink.lock().await;
        let mut call = Box::pin(stream.ack("m", None));
        assert!(futures_util::poll!(&mut call).is_pending());
        assert_eq!(waiting(&stream), 1);
        drop(call);
        assert_eq!(waiting(&stream), 0, "the cancelled call's waiter is gone");
        drop(held);
    }
}
