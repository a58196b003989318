//! `EngineHandle`: how handlers talk to the engine task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use synap_core::{Command, Delivery, Error, PubMessage, QueueStats, Reply};
use tokio::sync::{mpsc, oneshot};

use crate::engine_task::Request;

/// Why a call did not reach a reply.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The engine refused the command.
    Core(Error),
    /// The engine task is gone (the server is stopping).
    Unavailable,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Core(e)
    }
}

/// A cloneable sender of requests to the engine task.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    tx: mpsc::Sender<Request>,
    next_token: Arc<AtomicU64>,
}

impl EngineHandle {
    /// A handle over the task's request channel.
    pub(crate) fn new(tx: mpsc::Sender<Request>) -> Self {
        Self {
            tx,
            next_token: Arc::new(AtomicU64::new(1)),
        }
    }

    /// True once the engine task is gone (it panicked, or the server is stopping): every
    /// request would fail.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    async fn send(&self, req: Request) -> Result<(), Failure> {
        self.tx.send(req).await.map_err(|_| Failure::Unavailable)
    }

    /// Runs one command and returns its reply.
    pub(crate) async fn call(&self, cmd: Command) -> Result<Reply, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Call { cmd, reply }).await?;
        Ok(rx.await.map_err(|_| Failure::Unavailable)??)
    }

    /// Runs a `Command::Consume`, waiting while it is parked. Dropping the returned future
    /// (the client hung up) withdraws the waiter.
    pub(crate) async fn consume(&self, cmd: Command) -> Result<Vec<Delivery>, Failure> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.send(Request::Consume { cmd, token, reply }).await?;
        let mut guard = AbandonGuard {
            tx: self.tx.clone(),
            token,
            armed: true,
        };
        let result = rx.await;
        guard.armed = false;
        Ok(result.map_err(|_| Failure::Unavailable)??)
    }

    /// Subscribes a connection whose pushed messages arrive on `sink`; returns the subscriber id.
    pub(crate) async fn subscribe(
        &self,
        patterns: Vec<String>,
        sink: mpsc::Sender<PubMessage>,
    ) -> Result<String, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Subscribe {
            patterns,
            sink,
            reply,
        })
        .await?;
        Ok(rx.await.map_err(|_| Failure::Unavailable)??)
    }

    /// Stats of every queue.
    pub(crate) async fn snapshot(&self) -> Result<Vec<QueueStats>, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Snapshot { reply }).await?;
        rx.await.map_err(|_| Failure::Unavailable)
    }

    /// Answers every parked consumer and stops parking new ones.
    pub(crate) async fn drain(&self) {
        let _ = self.send(Request::Drain).await;
    }

    /// Fire-and-forget a command from a context that cannot wait (a `Drop`).
    pub(crate) fn spawn_call(&self, cmd: Command) {
        let handle = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = handle.call(cmd).await;
            });
        }
    }
}

/// Tells the engine task that a consume's client left, unless disarmed.
struct AbandonGuard {
    tx: mpsc::Sender<Request>,
    token: u64,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let req = Request::Abandon { token: self.token };
        if let Err(mpsc::error::TrySendError::Full(req)) = self.tx.try_send(req) {
            // The channel is busy; a Drop cannot wait, so a small task delivers it.
            let tx = self.tx.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(req).await;
                });
            }
        }
    }
}
