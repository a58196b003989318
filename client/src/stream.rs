//! The streaming consumer over `GET /queue/{name}/ws`: the server pushes up to `prefetch`
//! unacked messages (each ack or nack earns the credit back), and the same socket carries ack,
//! nack, extend and publish frames, each answered by one confirm. Publishes can be pipelined:
//! send many, then await their confirms.
//!
//! One reader task splits what arrives into deliveries (for [`QueueStream::next`]) and confirms
//! (matched to the waiting call by the frame's `id`), so consuming and answering never block
//! each other.

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

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>>;

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
        let consumer_id = hello
            .get("consumer_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
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

/// Routes every frame: deliveries to the channel, confirms to their waiting call. When the
/// socket ends, dropping the waiters' senders tells every pending call the connection closed.
async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Socket>,
    waiters: Waiters,
    deliveries: mpsc::UnboundedSender<Result<RawDelivery>>,
) {
    loop {
        let frame = match read_frame(&mut stream).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                let _ = deliveries.send(Err(e));
                break;
            }
        };
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "message" {
            let d = serde_json::from_value(frame).map_err(SynapError::from);
            let _ = deliveries.send(d);
            continue;
        }
        let id = frame.get("id").and_then(Value::as_u64);
        let waiter = id.and_then(|id| waiters.lock().ok()?.remove(&id));
        let result = frame_error(&frame).map_or(Ok(frame), Err);
        match waiter {
            Some(w) => {
                let _ = w.send(result);
            }
            // An error that answers no call (a failed consume) ends the stream for `next`.
            None => {
                if let Err(e) = result {
                    let _ = deliveries.send(Err(e));
                }
            }
        }
    }
    if let Ok(mut w) = waiters.lock() {
        w.clear();
    }
}

async fn read_frame(
    stream: &mut futures_util::stream::SplitStream<Socket>,
) -> Result<Option<Value>> {
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
pub struct PublishConfirm(oneshot::Receiver<Result<Value>>);

impl PublishConfirm {
    /// Waits for the server's confirm: the message is accepted once this returns `Ok`.
    ///
    /// # Errors
    /// The publish's server error, or [`SynapError::Closed`] if the connection ended first.
    pub async fn wait(self) -> Result<PublishResult> {
        let frame = confirm(self.0).await?;
        Ok(serde_json::from_value(frame)?)
    }
}

async fn confirm(rx: oneshot::Receiver<Result<Value>>) -> Result<Value> {
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
        let frame = json!({"op": "ack", "message_id": message_id, "lease": lease});
        confirm(self.send(frame).await?).await.map(drop)
    }

    /// Rejects a delivery; see [`SynapClient::queue_nack_with`].
    ///
    /// # Errors
    /// As [`ack`](Self::ack).
    pub async fn nack(&self, message_id: &str, opts: &NackOptions) -> Result<NackAction> {
        let mut frame = serde_json::to_value(opts)?;
        frame["op"] = json!("nack");
        frame["message_id"] = json!(message_id);
        let reply = confirm(self.send(frame).await?).await?;
        let action = reply.get("action").cloned().unwrap_or(Value::Null);
        Ok(serde_json::from_value(action)?)
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
        let frame = json!({"op": "extend", "message_id": message_id,
            "ack_deadline": ack_deadline.as_secs_f64(), "lease": lease});
        confirm(self.send(frame).await?).await.map(drop)
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
        let mut frame = serde_json::to_value(PublishBody {
            message,
            opts: &opts,
        })?;
        frame["op"] = json!("publish");
        Ok(PublishConfirm(self.send(frame).await?))
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

    /// Tags `frame` with a fresh id, registers the waiter, then sends it. Registering first
    /// means even an instant confirm finds its waiter.
    async fn send(&self, mut frame: Value) -> Result<oneshot::Receiver<Result<Value>>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        frame["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .map_err(|_| SynapError::Closed("connection state poisoned".into()))?
            .insert(id, tx);
        let sent = self
            .sink
            .lock()
            .await
            .send(Message::text(frame.to_string()))
            .await;
        if let Err(e) = sent {
            if let Ok(mut w) = self.waiters.lock() {
                w.remove(&id);
            }
            return Err(e.into());
        }
        Ok(rx)
    }
}
