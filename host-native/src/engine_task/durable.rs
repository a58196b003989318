//! The engine task's turns with persistence: one `now` per turn, accepted mutations logged,
//! replies and pushes sent (or held for the log) through `Outgoing`, and the clean-up of what
//! recovery found registered for clients that are gone.

use synap_core::{Command, Error, Millis, Reply};
use tracing::{info, warn};

use super::EngineTask;
use crate::handle::Failure;
use crate::storage::outbox::{Outgoing, TaskStorage, Undelivered};
use crate::storage::snapshot::HostState;

/// Resolves when the log writer reports progress; never without storage.
pub(super) async fn changed(storage: &mut Option<TaskStorage>) {
    match storage {
        Some(s) => s.changed().await,
        None => std::future::pending().await,
    }
}

impl EngineTask {
    /// Logs every turn to `storage`; the stale waiters, sessions and subscribers it recovered
    /// are cancelled in the first turn.
    pub(crate) fn with_storage(mut self, storage: TaskStorage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Starts a turn: one `now` for everything it runs.
    pub(super) fn begin_turn(&mut self) {
        self.now = self.clock.now();
    }

    /// Ends a turn: logs its mutations and sends (or holds) its replies.
    pub(super) fn end_turn(&mut self) {
        let now = self.now;
        if let Some(s) = &mut self.storage {
            let ready = s.end_turn(now);
            self.send_all(ready);
        }
    }

    /// Sends replies the writer has made durable (a turn of its own: a reply nobody
    /// receives gives its messages back).
    pub(super) fn release(&mut self) {
        let ready = self
            .storage
            .as_mut()
            .map(TaskStorage::released)
            .unwrap_or_default();
        self.begin_turn();
        self.send_all(ready);
        self.end_turn();
    }

    fn send_all(&mut self, outs: Vec<Outgoing>) {
        for out in outs {
            let undelivered = out.send();
            self.settle(undelivered);
        }
    }

    /// Handles what a send could not deliver.
    fn settle(&mut self, undelivered: Undelivered) {
        match undelivered {
            Undelivered::Nothing => {}
            Undelivered::Messages(messages) => self.give_back(messages),
            Undelivered::Session(session_id) => self.detach(session_id),
        }
    }

    /// Sends a reply now, or with persistence on, once its turn's record is durable.
    pub(super) fn answer(&mut self, out: Outgoing) {
        match &mut self.storage {
            Some(s) => s.answer(out),
            None => {
                let undelivered = out.send();
                self.settle(undelivered);
            }
        }
    }

    /// Runs a command at the turn's time, logging it if it is an accepted mutation.
    pub(super) fn apply(&mut self, cmd: Command) -> Result<Reply, Error> {
        let Some(storage) = self.storage.as_mut().filter(|_| cmd.is_mutation()) else {
            return self.engine.handle(self.now, cmd);
        };
        let copy = cmd.clone();
        let result = self.engine.handle(self.now, cmd);
        if result.is_ok() {
            storage.record(copy);
        }
        result
    }

    /// Why a client's mutation must be refused now (full disk, failed storage).
    pub(super) fn refusal(&self, cmd: &Command) -> Option<Failure> {
        let s = self.storage.as_ref()?;
        if !cmd.is_mutation() {
            return None;
        }
        s.refusal().map(Failure::Storage)
    }

    /// Cancels what recovery found registered for clients that are gone: long-poll waiters,
    /// streaming sessions and connection-bound subscribers. Their leases run to their
    /// deadlines.
    pub(super) fn cancel_stale(&mut self) {
        let Some(s) = &mut self.storage else {
            return;
        };
        let stale = std::mem::take(&mut s.stale);
        let count = stale.waiters.len() + stale.sessions.len() + stale.subscribers.len();
        if count == 0 {
            return;
        }
        info!(
            waiters = stale.waiters.len(),
            sessions = stale.sessions.len(),
            subscribers = stale.subscribers.len(),
            "cancelling what clients from before the restart had registered"
        );
        let mut cmds: Vec<Command> = Vec::with_capacity(count);
        cmds.extend(
            stale
                .waiters
                .into_iter()
                .map(|waiter_id| Command::CancelWait { waiter_id }),
        );
        cmds.extend(
            stale
                .sessions
                .into_iter()
                .map(|session_id| Command::Detach {
                    session_id,
                    give_back: false,
                }),
        );
        cmds.extend(
            stale
                .subscribers
                .into_iter()
                .map(|subscriber_id| Command::Unsubscribe {
                    subscriber_id,
                    patterns: None,
                }),
        );
        for cmd in cmds {
            let _ = self.apply(cmd);
        }
        self.route_events();
    }

    /// What a snapshot needs besides the engine.
    fn host_state(&self) -> HostState {
        HostState {
            seed: 0,
            waiters: self.parked.keys().copied().collect(),
            sessions: self.sessions.keys().copied().collect(),
            subscribers: self.sinks.keys().cloned().collect(),
        }
    }

    /// The digest of the state once time reaches `at`.
    pub(super) fn digest(&self, at: Option<Millis>) -> (u64, Millis) {
        match at {
            Some(at) if at > self.engine.now() => {
                let mut copy = self.engine.clone();
                copy.handle_timeout(at);
                (copy.state_digest(), copy.now())
            }
            _ => (self.engine.state_digest(), self.engine.now()),
        }
    }

    /// Closes storage (writing the shutdown snapshot) off the async threads, then reports
    /// stopped.
    pub(super) async fn finish(self) {
        let host = self.host_state();
        if let Some(storage) = self.storage {
            let engine = self.engine;
            let closed = tokio::task::spawn_blocking(move || storage.close(&engine, host)).await;
            if closed.is_err() {
                warn!("closing storage failed");
            }
        }
        if let Some(done) = self.stopped {
            let _ = done.send(());
        }
    }
}
