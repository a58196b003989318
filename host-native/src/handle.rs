//! `EngineHandle`: how handlers talk to the engine task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use synap_core::{Command, Delivery, Error, Millis, PubMessage, QueueStats, Reply, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::ClusterInbox;
use crate::engine_task::{ConsumeResult, Request, SessionPush, Shared};

/// Why a call did not reach a reply.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The engine refused the command.
    Core(Error),
    /// The engine task is gone (the server is stopping).
    Unavailable,
    /// Storage cannot take the mutation (see `StorageFault`).
    Storage(StorageFault),
    /// The caller lacks a permission (see `permissions`); nothing reached the engine.
    Forbidden(crate::permissions::Denied),
    /// A cluster node cannot serve it: not the leader, no leader, or leadership changed.
    Cluster(crate::cluster::NotServing),
}

/// Why the command log cannot take a mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StorageFault {
    /// The disk is full; mutations are refused until space returns (reads go on).
    Full,
    /// Storage failed for good (a failed fsync, an I/O error): why. Nothing more is written.
    Failed(Arc<str>),
}

impl From<crate::permissions::Denied> for Failure {
    fn from(d: crate::permissions::Denied) -> Self {
        Self::Forbidden(d)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Core(e)
    }
}

/// Where requests go: the single server's engine task, or a cluster node's task.
#[derive(Clone)]
enum Backend {
    Local(Arc<Shared>),
    Cluster(Arc<ClusterInbox>),
}

impl Backend {
    async fn submit(&self, req: Request) -> Result<(), Failure> {
        match self {
            Self::Local(s) => s.submit(req).await,
            Self::Cluster(c) => c.submit(req).await,
        }
    }

    fn submit_now(&self, req: Request) {
        match self {
            Self::Local(s) => s.submit_now(req),
            Self::Cluster(c) => c.submit_now(req),
        }
    }
}

/// A cloneable way to the engine task (`EngineTask::start` makes it).
#[derive(Clone)]
pub(crate) struct EngineHandle {
    backend: Backend,
    next_token: Arc<AtomicU64>,
}

impl EngineHandle {
    /// A handle over the task's shared state.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            backend: Backend::Local(shared),
            next_token: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A handle over a cluster node's task.
    pub(crate) fn cluster(inbox: Arc<ClusterInbox>) -> Self {
        Self {
            backend: Backend::Cluster(inbox),
            next_token: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The cluster node behind this handle, if it is one.
    pub(crate) fn cluster_node(&self) -> Option<&ClusterInbox> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Cluster(c) => Some(c),
        }
    }

    /// True once the engine task is gone (it panicked, or the server is stopping): every
    /// request would fail.
    pub(crate) fn is_closed(&self) -> bool {
        match &self.backend {
            Backend::Local(s) => s.is_closed(),
            Backend::Cluster(c) => c.is_closed(),
        }
    }

    /// Puts `req` in the engine's inbox; if the engine's lock is free, runs what the inbox
    /// holds here, in this task.
    async fn send(&self, req: Request) -> Result<(), Failure> {
        self.backend.submit(req).await
    }

    /// Runs one command and returns its reply.
    pub(crate) async fn call(&self, cmd: Command) -> Result<Reply, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Call { cmd, reply }).await?;
        rx.await.map_err(|_| Failure::Unavailable)?
    }

    /// Runs one command for `who`: refused (before reaching the engine) without the
    /// permission it needs; a list reply keeps only what `who` may see.
    pub(crate) async fn call_as(
        &self,
        who: &crate::permissions::Principal,
        cmd: Command,
    ) -> Result<Reply, Failure> {
        who.check(&cmd)?;
        let mut reply = self.call(cmd).await?;
        who.filter(&mut reply);
        Ok(reply)
    }

    /// `consume` for `who`, checked as `call_as`.
    pub(crate) async fn consume_as(
        &self,
        who: &crate::permissions::Principal,
        cmd: Command,
    ) -> Result<Vec<Delivery>, Failure> {
        who.check(&cmd)?;
        self.consume(cmd).await
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

    /// Runs a `Command::WaitJob`, waiting while it is parked; dropping the future (the client
    /// hung up) withdraws the wait.
    pub(crate) async fn wait_job(&self, cmd: Command) -> Result<Reply, Failure> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.send(Request::WaitJob { cmd, token, reply }).await?;
        let mut guard = WaitGuard {
            backend: self.backend.clone(),
            token,
            armed: true,
        };
        let answer = rx.await.map_err(|_| Failure::Unavailable)?;
        guard.armed = false;
        answer
    }

    /// `wait_job` for `who`, checked as `call_as`.
    pub(crate) async fn wait_job_as(
        &self,
        who: &crate::permissions::Principal,
        cmd: Command,
    ) -> Result<Reply, Failure> {
        who.check(&cmd)?;
        self.wait_job(cmd).await
    }

    /// Sends a `Command::Consume` without waiting for its answer, which is read from what it
    /// returns; dropping that unread abandons the consume as dropping `consume` would.
    pub(crate) async fn start_consume(&self, cmd: Command) -> Result<Consuming, Failure> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.send(Request::Consume { cmd, token, reply }).await?;
        Ok(Consuming(AbandonGuard {
            backend: self.backend.clone(),
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

    /// The engine's state digest once time reaches `at` (see `Request::Digest`), and on a
    /// cluster node the log index applied.
    pub(crate) async fn digest(
        &self,
        at: Option<Millis>,
    ) -> Result<(u64, Millis, Option<u64>), Failure> {
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
    backend: Backend,
    token: u64,
    /// `None` once the reply was read.
    rx: Option<oneshot::Receiver<ConsumeResult>>,
}

/// Withdraws a job wait whose client hung up before the answer.
struct WaitGuard {
    backend: Backend,
    token: u64,
    armed: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.armed {
            self.backend.submit_now(Request::Abandon {
                token: self.token,
                returned: Vec::new(),
            });
        }
    }
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
        self.backend.submit_now(Request::Abandon {
            token: self.token,
            returned,
        });
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a consume dropped unread gives back what it was answered with, a parked one is
    //! withdrawn, and a read one leaves its lease alone; requests queued behind others still
    //! run in the order sent.

    use synap_core::{Engine, EngineConfig, Json, PublishMessage, QueueStats};
    use tokio::sync::broadcast;

    use super::*;
    use crate::clock::Clock;
    use crate::engine_task::EngineTask;

    fn start() -> EngineHandle {
        let (events, _) = broadcast::channel(16);
        let task = EngineTask::new(
            Engine::new(EngineConfig::default(), 7),
            events,
            Clock::new(),
        );
        task.start().0
    }

    fn consume_cmd(wait_ms: u64) -> Command {
        Command::Consume {
            queue: "q".into(),
            wait_ms,
            lease_ms: Some(60_000),
            max_messages: 1,
            consumer_id: None,
        }
    }

    fn publish_cmd() -> Command {
        Command::Publish {
            queue: "q".into(),
            message: PublishMessage {
                message: Some(Json::from_trusted_text("1")),
                ..PublishMessage::default()
            },
        }
    }

    async fn stats(h: &EngineHandle) -> QueueStats {
        match h.call(Command::Stats { queue: "q".into() }).await {
            Ok(Reply::Stats(s)) => *s,
            other => panic!("stats: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_sent_but_never_read_is_handed_back_on_drop() {
        let h = start();
        h.call(publish_cmd()).await.expect("published");
        let consuming = h.start_consume(consume_cmd(1_000)).await.expect("sent");
        assert_eq!(stats(&h).await.in_flight, 1, "leased by the unread answer");
        drop(consuming);
        let s = stats(&h).await;
        assert_eq!((s.ready, s.in_flight), (1, 0), "{s:?}");
    }

    #[tokio::test]
    async fn a_drop_before_the_answer_withdraws_the_waiter() {
        let h = start();
        let create = Command::ConfigureQueue {
            queue: "q".into(),
            config: Box::new(synap_core::QueueConfig::default()),
        };
        h.call(create).await.expect("created");
        let consuming = h.start_consume(consume_cmd(60_000)).await.expect("sent");
        assert_eq!(stats(&h).await.waiters, 1, "parked");
        drop(consuming);
        assert_eq!(stats(&h).await.waiters, 0, "withdrawn");
        h.call(publish_cmd()).await.expect("published");
        let s = stats(&h).await;
        assert_eq!((s.ready, s.in_flight, s.nacked_total), (1, 0, 0), "{s:?}");
    }

    #[tokio::test]
    async fn a_read_answer_abandons_nothing() {
        let h = start();
        h.call(publish_cmd()).await.expect("published");
        let got = h.consume(consume_cmd(1_000)).await.expect("answered");
        assert_eq!(got.len(), 1);
        let s = stats(&h).await;
        assert_eq!((s.ready, s.in_flight), (0, 1), "{s:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_queued_behind_a_busy_engine_run_in_the_order_sent() {
        let h = start();
        h.call(publish_cmd()).await.expect("published");
        // Many senders at once: some run in place, the rest queue; each sender's own
        // requests (a consume, then the ack of what it got) must still run in order.
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    h.call(publish_cmd()).await.expect("published");
                    let got = h.consume(consume_cmd(0)).await.expect("consumed");
                    for d in got {
                        let ack = Command::Ack {
                            queue: "q".into(),
                            message_id: d.message_id,
                            lease: Some(d.lease),
                            result: None,
                        };
                        h.call(ack).await.expect("acked while leased");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("no panic");
        }
        let s = stats(&h).await;
        assert_eq!(s.published_total, 1 + 64 * 20);
        assert_eq!(s.acked_total + s.ready, s.published_total, "{s:?}");
        assert_eq!(s.in_flight, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_pipelined_sender_keeps_its_order_while_other_threads_run_turns() {
        use std::sync::atomic::AtomicBool;
        let h = start();
        // Other threads keep taking the engine's lock, so many of this sender's requests
        // find it taken and are run by whichever thread holds it.
        let busy = Arc::new(AtomicBool::new(true));
        let mut noise = Vec::new();
        for _ in 0..6 {
            let (h, busy) = (h.clone(), Arc::clone(&busy));
            noise.push(tokio::spawn(async move {
                while busy.load(Ordering::Relaxed) {
                    let _ = h
                        .call(Command::Stats {
                            queue: "other".into(),
                        })
                        .await;
                }
            }));
        }
        // Each publish is sent (put in the inbox) when first polled, in index order, and
        // none waits for the one before it to be answered.
        let publishes = (0..2000).map(|i| {
            h.call(Command::Publish {
                queue: "q".into(),
                message: PublishMessage {
                    message: Some(Json::from_trusted_text(i.to_string())),
                    ..PublishMessage::default()
                },
            })
        });
        let replies = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            futures_util::future::join_all(publishes),
        )
        .await
        .expect("every request is answered: none is left in the inbox");
        busy.store(false, Ordering::Relaxed);
        for t in noise {
            t.await.expect("no panic");
        }
        assert!(replies.iter().all(Result::is_ok));
        let mut bodies = Vec::new();
        while bodies.len() < 2000 {
            let mut cmd = consume_cmd(0);
            if let Command::Consume { max_messages, .. } = &mut cmd {
                *max_messages = 100;
            }
            let got = h.consume(cmd).await.expect("consumed");
            assert!(!got.is_empty(), "only {} delivered", bodies.len());
            bodies.extend(got.iter().map(|d| {
                let m = d.message.as_ref().expect("JSON body");
                m.as_str().parse::<u32>().expect("a number")
            }));
        }
        assert_eq!(bodies, (0..2000).collect::<Vec<u32>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_request_that_finds_the_lock_taken_is_run_by_its_holder() {
        let h = start();
        // Rounds of eight senders at once and nothing after: a request pushed while another
        // thread held the lock is answered only if that holder looks at the inbox again
        // after letting go, since no later request comes to pick it up.
        for round in 0..300 {
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let senders: Vec<_> = (0..8)
                .map(|_| {
                    let (h, barrier) = (h.clone(), Arc::clone(&barrier));
                    tokio::spawn(async move {
                        barrier.wait().await;
                        h.call(Command::Stats {
                            queue: "other".into(),
                        })
                        .await
                    })
                })
                .collect();
            let all = futures_util::future::join_all(senders);
            let done = tokio::time::timeout(std::time::Duration::from_secs(10), all)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a request was never run"));
            assert!(done.into_iter().all(|r| r.is_ok()));
        }
    }

    #[tokio::test]
    async fn a_stopped_engine_answers_unavailable() {
        let h = start();
        h.stop().await;
        assert!(h.is_closed());
        assert!(matches!(
            h.call(publish_cmd()).await,
            Err(Failure::Unavailable)
        ));
    }
}
