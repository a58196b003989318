//! Where handlers meet the engine: the `EngineTask` behind one lock, and an inbox in front of
//! it.
//!
//! A sender puts its request in the inbox (its lock is held only to push or take), then tries
//! the engine's lock without waiting. Whoever holds that lock runs what the inbox holds, in
//! order, as one turn per batch: the sender's own request in its own task when nobody else is
//! running turns (no hop to another task and back, which on a socket's round trip was most
//! of the cost), or another sender's requests along with its own. A sender that finds the
//! lock taken leaves at once: the holder looks at the inbox again after letting the lock go,
//! so nothing is stranded, and no worker thread sleeps on the lock. Requests from several
//! connections then share one turn and one log record. Because everything runs from one FIFO,
//! requests from one sender still run in the order sent.
//!
//! A sender runs at most one batch in place; more waiting, and while the log writer is
//! backlogged, the engine task's loop takes over. The loop also fires the engine's timer,
//! releases replies the log writer made durable, and stops the task. A turn that brings the
//! next deadline forward, or stops the task, wakes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use synap_core::Millis;
use tokio::sync::{Notify, watch};

use super::{BATCH, EngineTask, REQUEST_QUEUE, Request};
use crate::handle::Failure;
use crate::storage::writer::Durability;

/// The engine task's state and what waits for it.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Requests not yet run, oldest first: at most `REQUEST_QUEUE` from senders that can wait.
    inbox: Mutex<VecDeque<Request>>,
    /// How many the inbox holds, readable without its lock.
    waiting: AtomicUsize,
    /// Wakes the loop: requests left for it, an earlier deadline, a stop.
    wake: Notify,
    /// Wakes senders waiting for room in the inbox.
    room: Notify,
    /// Set once the loop has ended (or a turn panicked): every request fails.
    closed: AtomicBool,
    clock: crate::clock::Clock,
    /// Tests: run by the loop's step under the engine's lock, once, when it found nothing to
    /// run and is about to wait.
    #[cfg(test)]
    before_wait: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

struct Inner {
    /// `None` once the loop has taken it to finish.
    task: Option<EngineTask>,
    /// The deadline the loop's timer is set for.
    armed: Option<Millis>,
    /// The batch being run (kept to reuse its allocation).
    batch: Vec<Request>,
}

/// What the loop does next.
enum Step {
    /// Run the loop again at once.
    Again,
    /// Give other tasks a turn, then run again (more requests wait).
    Yield,
    /// Wait for a wake, the timer (set for `deadline`) or the log writer (`held`: the
    /// requests waiting wait for it).
    Wait {
        deadline: Option<Millis>,
        held: bool,
    },
    /// The task was stopped.
    Stop,
}

/// How a batch went.
#[derive(PartialEq, Eq)]
enum Ran {
    /// The inbox was empty: nothing ran.
    Nothing,
    /// A batch of this many ran.
    Batch(usize),
    /// The log writer is backlogged: the requests wait for it.
    Held,
}

impl Shared {
    pub(crate) fn new(task: EngineTask) -> Self {
        Self {
            clock: task.clock,
            inner: Mutex::new(Inner {
                task: Some(task),
                armed: None,
                batch: Vec::with_capacity(BATCH),
            }),
            inbox: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            #[cfg(test)]
            before_wait: Mutex::new(None),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The engine's lock, waiting for it (the loop only); `None` if a turn panicked while
    /// holding it.
    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        match self.inner.lock() {
            Ok(g) => Some(g),
            Err(_) => {
                self.poisoned();
                None
            }
        }
    }

    /// A turn panicked while holding the engine's lock: the task is unusable. The requests
    /// waiting go (their callers read `Unavailable`).
    fn poisoned(&self) {
        self.closed.store(true, Ordering::Release);
        self.drop_waiting();
    }

    fn inbox(&self) -> MutexGuard<'_, VecDeque<Request>> {
        // Only a push or a take runs under it, and neither stops halfway.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `req` at the end of the inbox; gives it back when the inbox is full, unless
    /// `force`.
    fn push(&self, req: Request, force: bool) -> Option<Request> {
        let mut q = self.inbox();
        if q.len() >= REQUEST_QUEUE && !force {
            return Some(req);
        }
        q.push_back(req);
        self.waiting.store(q.len(), Ordering::SeqCst);
        None
    }

    /// Moves up to `BATCH` requests from the inbox into `into`, waking senders waiting for
    /// room if the inbox was full.
    fn take(&self, into: &mut Vec<Request>) {
        let was = {
            let mut q = self.inbox();
            let was = q.len();
            into.extend(q.drain(..was.min(BATCH)));
            self.waiting.store(q.len(), Ordering::SeqCst);
            was
        };
        if was >= REQUEST_QUEUE {
            self.room.notify_waiters();
        }
    }

    /// Drops every waiting request: their reply senders go, and the callers read
    /// `Unavailable`.
    fn drop_waiting(&self) {
        let all = {
            let mut q = self.inbox();
            self.waiting.store(0, Ordering::SeqCst);
            std::mem::take(&mut *q)
        };
        drop(all);
        self.room.notify_waiters();
    }

    /// Puts `req` in the inbox and runs what waits there unless another thread is running
    /// turns; waits while the inbox is full.
    pub(crate) async fn submit(&self, mut req: Request) -> Result<(), Failure> {
        loop {
            if self.is_closed() {
                return Err(Failure::Unavailable);
            }
            let room = self.room.notified();
            match self.push(req, false) {
                None => {
                    self.run_waiting();
                    return Ok(());
                }
                Some(back) => req = back,
            }
            // Created before the push was refused, so a wake sent since is not missed.
            room.await;
        }
    }

    /// As `submit`, for a context that cannot wait (a `Drop`): past a full inbox too. If
    /// this very thread holds the engine's lock (a `Drop` during a turn), the request runs
    /// after that turn.
    pub(crate) fn submit_now(&self, req: Request) {
        if self.push(req, true).is_none() {
            self.run_waiting();
        }
    }

    /// Runs the waiting requests, up to `BATCH` of them, unless another thread holds the
    /// engine's lock; more than that is left to the loop.
    fn run_waiting(&self) {
        let mut ran = 0;
        loop {
            // With the fence after a holder lets the lock go: either this try finds the lock
            // free, or that holder finds this request in the inbox and runs it.
            fence(Ordering::SeqCst);
            let outcome = match self.inner.try_lock() {
                Ok(mut g) => self.run_batch(&mut g),
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(_)) => return self.poisoned(),
            };
            fence(Ordering::SeqCst);
            match outcome {
                // The loop runs them once the writer catches up.
                Ran::Held => return,
                Ran::Nothing | Ran::Batch(_) if self.waiting.load(Ordering::SeqCst) == 0 => {
                    return;
                }
                Ran::Nothing => {}
                Ran::Batch(n) => {
                    ran += n;
                    if ran >= BATCH {
                        self.wake.notify_one();
                        return;
                    }
                }
            }
        }
    }

    /// Runs one batch from the inbox as one turn, under the engine's lock.
    fn run_batch(&self, g: &mut Inner) -> Ran {
        let Some(task) = g.task.as_mut() else {
            // The task has finished.
            self.drop_waiting();
            return Ran::Nothing;
        };
        if task.backlogged() {
            return Ran::Held;
        }
        self.take(&mut g.batch);
        let n = g.batch.len();
        if n == 0 {
            return Ran::Nothing;
        }
        task.begin_turn();
        for req in g.batch.drain(..) {
            task.on_request(req);
        }
        task.end_turn();
        let deadline = task.engine.poll_timeout();
        let earlier = deadline.is_some() && (g.armed.is_none() || deadline < g.armed);
        if earlier || task.stopped.is_some() {
            self.wake.notify_one();
        }
        Ran::Batch(n)
    }

    /// The loop's next step, taken under the lock.
    fn step(&self) -> Step {
        let mut g = self.lock().expect("an engine turn panicked");
        let g = &mut *g;
        let (deadline, now) = {
            let task = g.task.as_mut().expect("present until the loop ends");
            if task.stopped.is_some() {
                return Step::Stop;
            }
            (task.engine.poll_timeout(), task.clock.now())
        };
        if deadline.is_some_and(|d| d <= now) {
            if let Some(task) = g.task.as_mut() {
                task.timeout_turn();
            }
            return Step::Again;
        }
        let held = match self.run_batch(g) {
            Ran::Batch(_) if self.waiting.load(Ordering::SeqCst) > 0 => return Step::Yield,
            Ran::Batch(_) => return Step::Again,
            Ran::Held => true,
            Ran::Nothing => false,
        };
        #[cfg(test)]
        if let Some(f) = self.before_wait.lock().expect("hook lock").take() {
            f();
        }
        g.armed = deadline;
        Step::Wait { deadline, held }
    }

    fn with_task(&self, f: impl FnOnce(&mut EngineTask)) {
        let mut g = self.lock().expect("an engine turn panicked");
        if let Some(task) = g.task.as_mut() {
            f(task);
        }
    }

    /// The engine task's loop: runs until a `Stop`, then writes what the log holds and the
    /// shutdown snapshot.
    pub(crate) async fn run(
        self: std::sync::Arc<Self>,
        mut status: Option<watch::Receiver<Durability>>,
    ) {
        self.with_task(|t| {
            t.begin_turn();
            t.cancel_stale();
            t.end_turn();
        });
        let sleep = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed_for = None;
        loop {
            let deadline = match self.step() {
                Step::Again => continue,
                Step::Yield => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Step::Stop => break,
                Step::Wait { deadline, held } => {
                    // As in `run_waiting`: a sender that found the lock taken by `step`.
                    fence(Ordering::SeqCst);
                    if !held && self.waiting.load(Ordering::SeqCst) > 0 {
                        continue;
                    }
                    deadline
                }
            };
            if deadline != armed_for {
                if let Some(at) = deadline {
                    sleep.as_mut().reset(self.clock.instant_at(at));
                }
                armed_for = deadline;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = &mut sleep, if armed_for.is_some() => {
                    self.with_task(EngineTask::timeout_turn);
                    // Set again next time even if the deadline did not change.
                    armed_for = None;
                }
                () = changed(&mut status) => self.with_task(EngineTask::release),
            }
        }
        let task = {
            let mut g = self.lock().expect("an engine turn panicked");
            self.closed.store(true, Ordering::Release);
            g.task.take()
        };
        self.drop_waiting();
        if let Some(mut task) = task {
            task.begin_turn();
            task.drain_parked();
            task.end_turn();
            task.finish().await;
        }
    }
}

/// Resolves when the log writer reports progress; never without storage.
async fn changed(status: &mut Option<watch::Receiver<Durability>>) {
    match status {
        Some(s) => {
            if s.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a request pushed while the loop's own step holds the engine's lock is not left
    //! in the inbox (the loop looks again before it waits).

    use std::sync::Arc;
    use std::time::Duration;

    use synap_core::{Command, Engine, EngineConfig};
    use tokio::sync::{broadcast, oneshot};

    use super::*;
    use crate::clock::Clock;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_sent_while_the_loop_holds_the_lock_is_run_by_the_loop() {
        let (events, _) = broadcast::channel(16);
        let task = EngineTask::new(
            Engine::new(EngineConfig::default(), 7),
            events,
            Clock::new(),
        );
        let shared = Arc::new(Shared::new(task));
        let (reply, answered) = oneshot::channel();
        let sender = Arc::clone(&shared);
        let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
            // A sender on another thread, while the step holds the lock: its try finds the
            // lock taken, so it leaves the request in the inbox and returns. Nothing else is
            // sent after it, and nothing wakes the loop.
            let cmd = Command::Stats { queue: "q".into() };
            std::thread::spawn(move || sender.submit_now(Request::Call { cmd, reply }))
                .join()
                .expect("the sender thread");
        });
        *shared.before_wait.lock().expect("hook lock") = Some(hook);
        let run = tokio::spawn(Arc::clone(&shared).run(None));
        tokio::time::timeout(Duration::from_secs(10), answered)
            .await
            .expect("the loop ran the request before waiting")
            .expect("a reply, not a dropped request")
            .expect_err("no queue named q");
        assert_eq!(shared.waiting.load(Ordering::SeqCst), 0);
        let (done, stopped) = oneshot::channel();
        shared.submit(Request::Stop { done }).await.expect("sent");
        stopped.await.expect("stopped");
        run.await.expect("the loop ended");
    }
}
