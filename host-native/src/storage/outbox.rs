//! The engine task's side of durability: which replies wait for which log record.
//!
//! Each turn's accepted mutating commands become one record; the turn's replies (and any
//! reply of a later turn without mutations, which must not show state that is not yet
//! durable) are held until the writer reports that record durable. While the disk is full,
//! reads and refusals answer at once (they may show accepted mutations still waiting for
//! space). A storage failure answers
//! every held reply with the failure: the commands ran in memory, but were never confirmed.

use std::collections::VecDeque;

use synap_core::{Command, Delivery, Millis, QueueStats, Reply, SessionId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::Storage;
use super::record::{Mark, TurnLog};
use super::snapshot::HostState;
use super::writer::Durability;
use crate::engine_task::{ConsumeResult, SessionPush};
use crate::handle::{Failure, StorageFault};

/// Turns whose replies may wait for the writer before the task stops taking requests.
pub(crate) const MAX_HELD_TURNS: usize = 4096;

/// A reply on its way out.
pub(crate) enum Outgoing {
    /// A `Call`'s reply.
    Call(
        oneshot::Sender<Result<Reply, Failure>>,
        Result<Reply, Failure>,
    ),
    /// A `CallMany`'s replies.
    Many(
        oneshot::Sender<Vec<Result<Reply, Failure>>>,
        Vec<Result<Reply, Failure>>,
    ),
    /// A consume's answer (leased messages).
    Consume(oneshot::Sender<ConsumeResult>, ConsumeResult),
    /// A subscription's id.
    Subscribed(
        oneshot::Sender<Result<String, Failure>>,
        Result<String, Failure>,
    ),
    /// Stats of every queue.
    Stats(oneshot::Sender<Vec<QueueStats>>, Vec<QueueStats>),
    /// An attach's answer.
    Attached(
        oneshot::Sender<Result<Reply, Failure>>,
        Result<Reply, Failure>,
    ),
    /// A push to a streaming session's connection.
    Push(SessionId, mpsc::Sender<SessionPush>, SessionPush),
}

/// What a send could not deliver, for the engine task to settle.
#[derive(Debug)]
pub(crate) enum Undelivered {
    /// Everything arrived (or nothing needs undoing).
    Nothing,
    /// Leased messages nobody received: give them back.
    Messages(Vec<Delivery>),
    /// A session whose connection is gone or cannot keep up: detach it.
    Session(SessionId),
}

impl Outgoing {
    /// Sends it; says what could not be delivered.
    pub(crate) fn send(self) -> Undelivered {
        match self {
            Self::Call(tx, r) | Self::Attached(tx, r) => {
                if let Err(Ok(Reply::Attached { session_id, .. })) = tx.send(r) {
                    return Undelivered::Session(session_id);
                }
            }
            Self::Many(tx, r) => drop(tx.send(r)),
            Self::Consume(tx, r) => {
                if let Err(Ok(messages)) = tx.send(r) {
                    return Undelivered::Messages(messages);
                }
            }
            Self::Subscribed(tx, r) => drop(tx.send(r)),
            Self::Stats(tx, r) => drop(tx.send(r)),
            Self::Push(session_id, sink, push) => {
                let ended = matches!(push, SessionPush::Ended);
                match sink.try_send(push) {
                    Ok(()) => {}
                    Err(_) if ended => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        warn!(?session_id, "session sink full; session detached");
                        return Undelivered::Session(session_id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        return Undelivered::Session(session_id);
                    }
                }
            }
        }
        Undelivered::Nothing
    }

    /// Answers with `f` instead: the command ran but was never made durable.
    fn fail(self, f: &Failure) {
        match self {
            Self::Call(tx, _) => drop(tx.send(Err(f.clone()))),
            Self::Many(tx, r) => drop(tx.send(r.iter().map(|_| Err(f.clone())).collect())),
            Self::Consume(tx, _) => drop(tx.send(Err(f.clone()))),
            Self::Subscribed(tx, _) => drop(tx.send(Err(f.clone()))),
            Self::Stats(tx, r) => drop(tx.send(r)),
            Self::Attached(tx, _) => drop(tx.send(Err(f.clone()))),
            // The session's connection learns it from its next answer.
            Self::Push(..) => {}
        }
    }
}

/// Storage as the engine task drives it.
pub(crate) struct TaskStorage {
    storage: Storage,
    status: watch::Receiver<Durability>,
    /// This turn's accepted mutating commands, encoded.
    log: TurnLog,
    /// This turn's replies.
    turn: Vec<Outgoing>,
    /// Replies waiting for a record index to be durable, oldest first.
    held: VecDeque<(u64, Vec<Outgoing>)>,
    /// Waiters and subscribers recovered from before the restart, to cancel.
    pub(crate) stale: HostState,
}

impl TaskStorage {
    /// Wraps opened storage; `stale` lists what recovery found to cancel.
    pub(crate) fn new(storage: Storage, stale: HostState) -> Self {
        Self {
            status: storage.status(),
            storage,
            log: TurnLog::default(),
            turn: Vec::new(),
            held: VecDeque::new(),
            stale,
        }
    }

    /// Why mutations are refused now, if they are.
    pub(crate) fn refusal(&self) -> Option<StorageFault> {
        let s = self.status.borrow();
        match (&s.failed, s.full) {
            (Some(why), _) => Some(StorageFault::Failed(why.clone())),
            (None, true) => Some(StorageFault::Full),
            (None, false) => None,
        }
    }

    /// Logs a mutating command of this turn before it runs; `unrecord` takes it back if the
    /// engine refuses it.
    pub(crate) fn record(&mut self, cmd: &Command) -> Mark {
        self.log.push(cmd)
    }

    /// Takes back a command the engine refused.
    pub(crate) fn unrecord(&mut self, mark: Mark) {
        self.log.undo(mark);
    }

    /// Queues a reply of this turn.
    pub(crate) fn answer(&mut self, out: Outgoing) {
        self.turn.push(out);
    }

    /// True when so many turns wait for the writer that no more requests should be taken.
    pub(crate) fn backlogged(&self) -> bool {
        self.held.len() >= MAX_HELD_TURNS
    }

    /// Ends a turn at `now`: logs its commands as one record, holds its replies behind the
    /// newest record, starts a snapshot if one is due. Returns what can be sent at once.
    pub(crate) fn end_turn(&mut self, now: Millis) -> Vec<Outgoing> {
        if !self.log.is_empty() {
            let index = self.storage.append(now, &mut self.log);
            self.held.push_back((index, std::mem::take(&mut self.turn)));
            // Under `interval` and `never` the record is written by now (the writer updates
            // its report without waking this task): the turn's replies leave at once.
            let ready = self.released();
            self.snapshot_if_due();
            return ready;
        } else if !self.turn.is_empty() {
            // Replies without mutations wait behind the newest record, so they never show
            // state that is not durable yet; but not while the disk is full or storage failed,
            // when that record may wait long: then reads and refusals answer at once.
            let healthy = self.refusal().is_none();
            match self.held.back_mut() {
                Some((_, outs)) if healthy => outs.append(&mut self.turn),
                _ => return std::mem::take(&mut self.turn),
            }
        }
        self.snapshot_if_due();
        Vec::new()
    }

    fn snapshot_if_due(&mut self) {
        if self.storage.wants_snapshot() {
            self.storage.start_snapshot();
        }
    }

    /// The writer's reports, to wait on for replies to release.
    pub(crate) fn watch(&self) -> watch::Receiver<Durability> {
        self.status.clone()
    }

    /// The replies the writer's latest report releases. After a storage failure, the held
    /// replies of records that never became durable are answered with it here.
    pub(crate) fn released(&mut self) -> Vec<Outgoing> {
        let durable = self.status.borrow_and_update().durable;
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(i, _)| *i <= durable) {
            out.extend(self.held.pop_front().map(|(_, o)| o).into_iter().flatten());
        }
        if let Some(fault @ StorageFault::Failed(_)) = self.refusal() {
            let f = Failure::Storage(fault);
            for o in self.held.drain(..).flat_map(|(_, o)| o) {
                o.fail(&f);
            }
        }
        out
    }

    /// Stops the writer (which writes and syncs what it holds), answers what is left per
    /// its final report, and writes the shutdown snapshot.
    pub(crate) fn close(mut self, engine: &synap_core::Engine, host: HostState) {
        let status = self.storage.status();
        self.storage.close(engine, host);
        let durable = status.borrow().durable;
        let lost = Failure::Storage(StorageFault::Failed(
            "the server stopped before the command log was written".into(),
        ));
        for (index, outs) in self.held.drain(..) {
            for o in outs {
                if index <= durable {
                    o.send();
                } else {
                    o.fail(&lost);
                }
            }
        }
    }
}
