//! The streaming consumer over `GET /queue/{name}/ws`: the server pushes up to `prefetch`
//! unacked messages (each ack or nack earns the credit back), and the same socket carries ack,
//! nack, extend and publish frames, each answered by one confirm. Publishes can be pipelined:
//! send many, then await their confirms.
//!
//! The connection itself (reading, routing confirms, opening it again on the leader after a
//! failover) is link.rs. When the stream ends for good, every waiting call and every later one
//! fails with [`SynapError::Closed`] instead of waiting for a confirm no one will route.

mod link;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use synap_wire::{self as wire, QueueOp, QueueServerFrame as Frame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::failover::random_key;
use crate::queue::PublishBody;
use crate::types::{
    NackAction, NackOptions, PublishOptions, PublishResult, QueueMessage, RawDelivery,
};
use link::{Confirm, Link, SendError, Status};

/// Options of a streaming connection. `Default` takes 16 messages at a time under the queue's
/// ack deadline.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Identifies the worker (for `prefetch` and the `consumers` stat); when `None` the
    /// server picks one, or, on a client with failover, the client does (so it stays the same
    /// across reconnections).
    pub consumer_id: Option<String>,
    /// Unacked messages the server may push at once (default 16); `Some(0)` opens a
    /// publish-only connection.
    pub prefetch: Option<u32>,
    /// Lease length of pushed messages; the queue's default when `None`.
    pub ack_deadline: Option<Duration>,
}

/// A streaming connection to one queue. Dropping it closes the socket; the server gives back
/// the messages still leased to it at once (each counts as a delivery attempt).
///
/// On a client with failover ([`SynapClient::new_many`]) the stream outlives the node it is
/// connected to: when that node dies or stops leading, the stream connects to the leader again
/// with the same options and consumer id, deliveries go on, and calls in flight are sent again
/// (publishes with their idempotency key, acks, nacks with a lease, extends). Messages leased
/// on the old connection keep their leases until their deadlines and can be acked on the new
/// one.
pub struct QueueStream<T> {
    link: Arc<Link>,
    consumer_id: String,
    deliveries: mpsc::UnboundedReceiver<Result<RawDelivery>>,
    task: JoinHandle<()>,
    _body: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for QueueStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStream")
            .field("queue", &self.link.queue)
            .field("consumer_id", &self.consumer_id)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for QueueStream<T> {
    fn drop(&mut self) {
        self.task.abort();
        self.link.closing.store(true, Ordering::Relaxed);
        let reason = "the stream was dropped";
        self.link.ended(Status::Closed(reason.into()), reason);
        // Dropping the writing half (with the aborted reader) closes the socket; a call still
        // holding it (a publish confirm resending) drops it when it sees the stream closed.
        if let Ok(mut sink) = self.link.sink.try_lock() {
            sink.1 = None;
        }
    }
}

impl SynapClient {
    /// Opens a streaming connection to `queue` whose pushed messages decode as `T`.
    ///
    /// # Errors
    /// `invalid_argument` for a bad option, `unauthorized`, or transport errors (on a client
    /// with failover, [`SynapError::Failover`] when no node took the connection in time).
    pub async fn queue_stream<T: DeserializeOwned>(
        &self,
        queue: &str,
        opts: StreamOptions,
    ) -> Result<QueueStream<T>> {
        let mut query: Vec<(String, String)> = Vec::new();
        let consumer_id = opts
            .consumer_id
            .or_else(|| self.fails_over().then(|| format!("rs-{}", random_key())));
        if let Some(id) = consumer_id {
            query.push(("consumer_id".into(), id));
        }
        if let Some(p) = opts.prefetch {
            query.push(("prefetch".into(), p.to_string()));
        }
        if let Some(d) = opts.ack_deadline {
            query.push(("ack_deadline".into(), d.as_secs_f64().to_string()));
        }
        let link = Arc::new(Link::new(self.clone(), queue, query));
        let (sink, reader, consumer_id) = link.open().await?;
        link.install(1, sink).await;
        let (tx, deliveries) = mpsc::unbounded_channel();
        let task = tokio::spawn(link::run(Arc::clone(&link), reader, 1, tx));
        Ok(QueueStream {
            link,
            consumer_id,
            deliveries,
            task,
            _body: PhantomData,
        })
    }
}

/// A publish sent on a streaming connection whose confirm has not been awaited yet.
pub struct PublishConfirm {
    link: Arc<Link>,
    op: QueueOp,
    sent: Result<(u64, Confirm), SendError>,
    /// The publish carries a key and may be sent again on a new connection.
    resend: bool,
    /// The key is the client's own.
    generated: bool,
}

impl std::fmt::Debug for PublishConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishConfirm")
            .field("queue", &self.link.queue)
            .finish_non_exhaustive()
    }
}

impl PublishConfirm {
    /// Waits for the server's confirm: the message is accepted once this returns `Ok`. On a
    /// client with failover, a publish whose connection ended first is sent again on the next
    /// one with its idempotency key.
    ///
    /// # Errors
    /// The publish's server error, or [`SynapError::Closed`] if the connection ended first.
    pub async fn wait(self) -> Result<PublishResult> {
        let sent = self.link.finish(self.sent, &self.op, self.resend).await;
        match sent.result? {
            Frame::Published {
                message_id,
                position,
                duplicate,
                ..
            } => Ok(PublishResult {
                message_id,
                position,
                duplicate: duplicate && !self.generated,
                replaced: false,
            }),
            other => Err(SynapError::Decode(format!(
                "a publish answered with {other:?}"
            ))),
        }
    }
}

impl<T: DeserializeOwned> QueueStream<T> {
    /// The next pushed message; `None` once the connection has closed (on a client with
    /// failover: once no node took it back within the failover deadline).
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
        &self.link.queue
    }

    /// Acknowledges a delivery (with its lease, so a late ack is refused). As with
    /// [`SynapClient::queue_ack`], an ack sent again after a failover that finds the message
    /// gone counts as done.
    ///
    /// # Errors
    /// `lease_mismatch`, `message_not_found`, or [`SynapError::Closed`].
    pub async fn ack(&self, message_id: &str, lease: Option<u64>) -> Result<()> {
        let op = QueueOp::Ack(wire::AckRequest {
            message_id: message_id.to_owned(),
            lease,
            result: None,
        });
        let sent = self.request(op, true).await;
        match sent.result {
            Ok(_) => Ok(()),
            Err(e) if sent.resent && e.code() == Some("message_not_found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Rejects or snoozes a delivery ([`NackOptions::snooze`]); see
    /// [`SynapClient::queue_nack_with`] (also for what a resend after a failover answers).
    ///
    /// # Errors
    /// As [`ack`](Self::ack), and [`SynapError::Resent`].
    pub async fn nack(&self, message_id: &str, opts: &NackOptions) -> Result<NackAction> {
        let op = QueueOp::Nack(opts.request(message_id));
        let sent = self.request(op, opts.lease.is_some()).await;
        match sent.result {
            Ok(Frame::Ok {
                action: Some(action),
                ..
            }) => Ok(action),
            Ok(other) => Err(SynapError::Decode(format!(
                "a nack answered with {other:?}"
            ))),
            Err(e) if sent.resent && (e.is_lease_mismatch() || e.is_not_found()) => {
                Err(SynapError::Resent(Box::new(e)))
            }
            Err(e) => Err(e),
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
        self.request(op, true).await.result.map(drop)
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
    /// [`PublishConfirm`] to learn the outcome. Confirms arrive in the order sent (a publish
    /// sent again after a failover is answered on the new connection). On a client with
    /// failover a publish without an idempotency key gets one, as with
    /// [`SynapClient::queue_publish`].
    ///
    /// # Errors
    /// An unserializable message, or [`SynapError::Closed`] if the frame could not be sent.
    pub async fn publish_pipelined<M: Serialize + ?Sized>(
        &self,
        message: &M,
        opts: PublishOptions,
    ) -> Result<PublishConfirm> {
        let mut body = PublishBody {
            message,
            opts: &opts,
        }
        .request()?;
        let generated = self.link.client.ensure_key(&mut body);
        let resend = body.idempotency_key.is_some() && self.link.client.fails_over();
        let op = QueueOp::Publish(body);
        let sent = self.link.send(&op, 0).await;
        match sent {
            Err(SendError::Final(e)) => Err(e),
            Err(SendError::Unknown(_, e)) if !resend => Err(e),
            sent => Ok(PublishConfirm {
                link: Arc::clone(&self.link),
                op,
                sent,
                resend,
                generated,
            }),
        }
    }

    /// Closes the connection politely. The server gives back unacked deliveries at once (each
    /// counts as a delivery attempt).
    ///
    /// # Errors
    /// Transport errors while closing.
    pub async fn close(self) -> Result<()> {
        self.link.closing.store(true, Ordering::Relaxed);
        let mut sink = self.link.sink.lock().await;
        if let Some(s) = sink.1.as_mut() {
            s.close().await?;
        }
        Ok(())
    }

    /// Sends `op` and waits for its confirm, sending it again after a failover when `resend`.
    async fn request(&self, op: QueueOp, resend: bool) -> crate::failover::Sent<Frame> {
        let sent = self.link.send(&op, 0).await;
        self.link.finish(sent, &op, resend).await
    }
}
