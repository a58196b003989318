//! `EngineHandle`: how handlers talk to the engine task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use synap_core::{Command, Delivery, Error, Millis, PubMessage, QueueStats, Reply, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::engine_task::{ConsumeResult, Request, SessionPush};

/// Why a call did not reach a reply.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The engine refused the command.
    Core(Error),
    /// The engine task is gone (the server is stopping).
    Unavailable,
    /// Storage cannot take the mutation (see `StorageFault`).
    Storage(StorageFault),
}

/// Why the command log cannot take a mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StorageFault {
    /// The disk is full; mutations are refused until space returns (reads go on).
    Full,
    /// Storage failed for good (a failed fsync, an I/O error): why. Nothing more is written.
    Failed(Arc<str>),
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
        rx.await.map_err(|_| Failure::Unavailable)?
    }

    /// Sends `cmds` to run in order in one engine turn, without waiting: the replies (one per
    /// command, in order) are read from what it returns. Requests from one sender reach the
    /// engine in the order sent, so a request sent after this one runs after these commands.
    pub(crate) async fn call_many(&self, cmds: Vec<Command>) -> Result<Replies, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::CallMany { cmds, reply }).await?;
        Ok(Replies(rx))
    }

    /// Runs a `Command::Consume`, waiting while it is parked. Dropping the returned future
    /// (the client hung up) withdraws the waiter and gives back any messages already leased to
    /// it: see `AbandonGuard`.
    pub(crate) async fn consume(&self, cmd: Command) -> Result<Vec<Delivery>, Failure> {
        self.start_consume(cmd).await?.wait().await
    }

    /// Sends a `Command::Consume` without waiting for its answer, which is read from what it
    /// returns; dropping that unread abandons the consume as dropping `consume` would.
    pub(crate) async fn start_consume(&self, cmd: Command) -> Result<Consuming, Failure> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.send(Request::Consume { cmd, token, reply }).await?;
        Ok(Consuming(AbandonGuard {
            tx: self.tx.clone(),
            token,
            rx: Some(rx),
        }))
    }

    /// Attaches a streaming consumer (`cmd` is a `Command::Attach`) whose pushes arrive on
    /// `sink`; returns its session id and consumer id. The caller detaches it
    /// (`Command::Detach`) when its connection ends; a sink found closed detaches it too.
    pub(crate) async fn attach(
        &self,
        cmd: Command,
        sink: mpsc::Sender<SessionPush>,
    ) -> Result<(SessionId, String), Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Attach { cmd, sink, reply }).await?;
        match rx.await.map_err(|_| Failure::Unavailable)?? {
            Reply::Attached {
                session_id,
                consumer_id,
            } => Ok((session_id, consumer_id)),
            other => unreachable!("attach replied {other:?}"),
        }
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
        rx.await.map_err(|_| Failure::Unavailable)?
    }

    /// Stats of every queue.
    pub(crate) async fn snapshot(&self) -> Result<Vec<QueueStats>, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Snapshot { reply }).await?;
        rx.await.map_err(|_| Failure::Unavailable)
    }

    /// Stops the engine task and waits until it has written the command log and the
    /// shutdown snapshot.
    pub(crate) async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.send(Request::Stop { done }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The engine's state digest once time reaches `at` (see `Request::Digest`).
    pub(crate) async fn digest(&self, at: Option<Millis>) -> Result<(u64, Millis), Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Digest { at, reply }).await?;
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

/// The replies of a `call_many`, once the engine has run its commands.
pub(crate) struct Replies(oneshot::Receiver<Vec<Result<Reply, Failure>>>);

impl Replies {
    /// One reply per command, in order.
    pub(crate) async fn wait(self) -> Result<Vec<Result<Reply, Failure>>, Failure> {
        self.0.await.map_err(|_| Failure::Unavailable)
    }

    /// As `wait`, by reference: dropped before the replies came, it can be awaited again.
    pub(crate) async fn recv(&mut self) -> Result<Vec<Result<Reply, Failure>>, Failure> {
        (&mut self.0).await.map_err(|_| Failure::Unavailable)
    }
}

/// A consume sent to the engine, its answer not read yet.
pub(crate) struct Consuming(AbandonGuard);

impl Consuming {
    /// Waits for the answer (while the consume is parked, if it is).
    pub(crate) async fn wait(mut self) -> Result<Vec<Delivery>, Failure> {
        let guard = &mut self.0;
        let result = guard.rx.as_mut().expect("set when sent").await;
        // Answered and read: nothing is left to abandon.
        guard.rx = None;
        result.map_err(|_| Failure::Unavailable)?
    }
}

/// Owns a consume's reply channel while it is awaited. Dropped before the reply was read (the
/// client hung up), it tells the engine task to withdraw the waiter, and hands back the
/// messages of a reply that had already been sent, which would otherwise die in the channel
/// while still leased.
struct AbandonGuard {
    tx: mpsc::Sender<Request>,
    token: u64,
    /// `None` once the reply was read.
    rx: Option<oneshot::Receiver<ConsumeResult>>,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // Closing first settles the race with the engine task: a reply sent before this is
        // in the channel and read here; one sent after fails, and the engine task gives
        // those messages back itself.
        rx.close();
        let returned = match rx.try_recv() {
            Ok(Ok(messages)) => messages,
            _ => Vec::new(),
        };
        let req = Request::Abandon {
            token: self.token,
            returned,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            queue: "q".into(),
            message_id: synap_core::MessageId::from_u128(1),
            message: None,
            payload: None,
            priority: 5,
            retry_count: 0,
            max_retries: 3,
            headers: synap_core::Headers::default(),
            lease: synap_core::LeaseToken(7),
            lease_deadline: Millis(60_000),
            published_at: Millis(0),
        }
    }

    fn consume_cmd() -> Command {
        Command::Consume {
            queue: "q".into(),
            wait_ms: 1_000,
            lease_ms: None,
            max_messages: 1,
            consumer_id: None,
        }
    }

    /// A consume future that has sent its request, and that request as the engine sees it.
    async fn sent_consume<'h>(
        handle: &'h EngineHandle,
        engine: &mut mpsc::Receiver<Request>,
    ) -> (
        std::pin::Pin<Box<impl Future<Output = Result<Vec<Delivery>, Failure>> + 'h>>,
        u64,
        oneshot::Sender<ConsumeResult>,
    ) {
        let mut fut = Box::pin(handle.consume(consume_cmd()));
        assert!(futures_util::poll!(&mut fut).is_pending());
        match engine.try_recv() {
            Ok(Request::Consume { token, reply, .. }) => (fut, token, reply),
            _ => panic!("expected the consume request"),
        }
    }

    #[tokio::test]
    async fn an_answer_sent_but_never_read_is_handed_back_on_drop() {
        let (tx, mut engine) = mpsc::channel(8);
        let handle = EngineHandle::new(tx);
        let (fut, token, reply) = sent_consume(&handle, &mut engine).await;
        reply.send(Ok(vec![delivery()])).expect("receiver open");
        drop(fut);
        match engine.try_recv() {
            Ok(Request::Abandon { token: t, returned }) => {
                assert_eq!((t, returned), (token, vec![delivery()]));
            }
            _ => panic!("expected an abandon carrying the unread messages"),
        }
    }

    #[tokio::test]
    async fn a_drop_before_the_answer_closes_the_reply_channel() {
        let (tx, mut engine) = mpsc::channel(8);
        let handle = EngineHandle::new(tx);
        let (fut, token, reply) = sent_consume(&handle, &mut engine).await;
        drop(fut);
        match engine.try_recv() {
            Ok(Request::Abandon { token: t, returned }) => {
                assert_eq!((t, returned.len()), (token, 0));
            }
            _ => panic!("expected an abandon"),
        }
        // A later answer fails to send, so the engine task keeps its messages to give back.
        assert!(reply.send(Ok(vec![delivery()])).is_err());
    }

    #[tokio::test]
    async fn a_read_answer_abandons_nothing() {
        let (tx, mut engine) = mpsc::channel(8);
        let handle = EngineHandle::new(tx);
        let (fut, _, reply) = sent_consume(&handle, &mut engine).await;
        reply.send(Ok(vec![delivery()])).expect("receiver open");
        assert_eq!(fut.await.expect("answered"), vec![delivery()]);
        assert!(engine.try_recv().is_err(), "no abandon after a read answer");
    }
}
