//! Where handlers meet the engine: the `EngineTask` behind one lock, run in place by the
//! handler that asks, or by the engine task's loop.
//!
//! A request whose sender finds nothing queued before it runs at once, in the sender's own
//! task, as a turn of its own: no hop to another task and back, which on a socket's round trip
//! was most of the cost. Requests queue (in order) while others wait, while the log writer is
//! backlogged, or when the lock is taken by the thread that asks (a `Drop` during a turn); the
//! loop runs those in batches. Because a request runs in place only when nothing is queued,
//! requests from one sender still run in the order sent.
//!
//! The loop also fires the engine's timer, releases replies the log writer made durable, and
//! stops the task. A turn in place that brings the next deadline forward, or stops the task,
//! wakes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use synap_core::Millis;
use tokio::sync::{Notify, watch};

use super::{BATCH, EngineTask, REQUEST_QUEUE, Request};
use crate::handle::Failure;
use crate::storage::writer::Durability;

/// The engine task's state and what waits for it.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the loop: requests queued, an earlier deadline, a stop.
    wake: Notify,
    /// Wakes senders waiting for room in the queue.
    room: Notify,
    /// Set once the loop has ended (or a turn panicked): every request fails.
    closed: AtomicBool,
    clock: crate::clock::Clock,
}

struct Inner {
    /// `None` once the loop has taken it to finish.
    task: Option<EngineTask>,
    /// Requests waiting for the loop, oldest first; at most `REQUEST_QUEUE` from senders
    /// that can wait.
    queued: VecDeque<Request>,
    /// The deadline the loop's timer is set for.
    armed: Option<Millis>,
}

/// What the loop does next.
enum Step {
    /// Run the loop again at once.
    Again,
    /// Give other tasks a turn, then run again (more requests are queued).
    Yield,
    /// Wait for a wake, the timer (set for this deadline) or the log writer.
    Wait(Option<Millis>),
    /// The task was stopped.
    Stop,
}

impl Shared {
    pub(crate) fn new(task: EngineTask) -> Self {
        Self {
            clock: task.clock,
            inner: Mutex::new(Inner {
                task: Some(task),
                queued: VecDeque::new(),
                armed: None,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The lock; `None` if a turn panicked while holding it (the task is then unusable).
    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        match self.inner.lock() {
            Ok(g) => Some(g),
            Err(_) => {
                self.closed.store(true, Ordering::Release);
                None
            }
        }
    }

    /// Runs `req` now or queues it, waiting while the queue is full.
    pub(crate) async fn submit(&self, mut req: Request) -> Result<(), Failure> {
        loop {
            let room = self.room.notified();
            {
                let mut g = self.lock().ok_or(Failure::Unavailable)?;
                match self.offer(&mut g, req, false) {
                    None => return Ok(()),
                    Some(back) => req = back,
                }
            }
            // Registered before the lock was let go, so a wake sent since is not missed.
            room.await;
        }
    }

    /// As `submit`, for a context that cannot wait (a `Drop`): past a full queue, or when
    /// the lock is busy (perhaps held by this very thread), a small task submits it.
    pub(crate) fn submit_now(self: &std::sync::Arc<Self>, req: Request) {
        let req = match self.inner.try_lock() {
            Ok(mut g) => match self.offer(&mut g, req, true) {
                None => return,
                Some(back) => back,
            },
            Err(TryLockError::Poisoned(_)) => return,
            Err(TryLockError::WouldBlock) => req,
        };
        let shared = std::sync::Arc::clone(self);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = shared.submit(req).await;
            });
        }
    }

    /// Runs `req` in place if nothing is queued before it, else queues it (past the limit
    /// only if `force`). Gives it back when the queue is full.
    fn offer(&self, g: &mut Inner, req: Request, force: bool) -> Option<Request> {
        let Some(task) = g.task.as_mut() else {
            // Dropped: its reply sender goes with it, and the caller reads `Unavailable`.
            return None;
        };
        if g.queued.is_empty() && !task.backlogged() {
            task.begin_turn();
            task.on_request(req);
            task.end_turn();
            let deadline = task.engine.poll_timeout();
            let earlier = deadline.is_some() && (g.armed.is_none() || deadline < g.armed);
            if earlier || task.stopped.is_some() {
                self.wake.notify_one();
            }
            return None;
        }
        if g.queued.len() >= REQUEST_QUEUE && !force {
            return Some(req);
        }
        g.queued.push_back(req);
        self.wake.notify_one();
        None
    }

    /// The loop's next step, taken under the lock.
    fn step(&self) -> Step {
        let mut g = self.lock().expect("an engine turn panicked");
        let g = &mut *g;
        let task = g.task.as_mut().expect("present until the loop ends");
        if task.stopped.is_some() {
            return Step::Stop;
        }
        let deadline = task.engine.poll_timeout();
        if deadline.is_some_and(|d| d <= task.clock.now()) {
            task.timeout_turn();
            return Step::Again;
        }
        if !g.queued.is_empty() && !task.backlogged() {
            let n = g.queued.len().min(BATCH);
            task.begin_turn();
            for req in g.queued.drain(..n) {
                task.on_request(req);
            }
            task.end_turn();
            self.room.notify_waiters();
            return if g.queued.is_empty() {
                Step::Again
            } else {
                Step::Yield
            };
        }
        g.armed = deadline;
        Step::Wait(deadline)
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
                Step::Wait(deadline) => deadline,
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
        let (task, queued) = {
            let mut g = self.lock().expect("an engine turn panicked");
            self.closed.store(true, Ordering::Release);
            (g.task.take(), std::mem::take(&mut g.queued))
        };
        // Their reply senders go: those callers read `Unavailable`.
        drop(queued);
        self.room.notify_waiters();
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
