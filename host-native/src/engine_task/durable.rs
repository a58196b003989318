//! The engine task's turns with persistence: one `now` per turn, accepted mutations logged,
//! replies and pushes sent (or held for the log) through `Outgoing`, and the clean-up of what
//! recovery found registered for clients that are gone.

use synap_core::{Command, Engine, Error, Millis, Reply};
use tracing::{info, warn};

use super::EngineTask;
use crate::handle::Failure;
use crate::storage::outbox::{Outgoing, TaskStorage, Undelivered};
use crate::storage::snapshot::HostState;

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
        // Encoded before it runs (the engine takes it by value), taken back if refused.
        let mark = storage.record(&cmd);
        let result = self.engine.handle(self.now, cmd);
        if result.is_err() {
            storage.unrecord(mark);
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
        // The server was down since the latest time the recovered engine saw: schedules that
        // missed slots meanwhile make one catch-up run each, not one per slot.
        let since = self.engine.now();
        match self.apply(Command::Resume { since }) {
            Ok(Reply::Resumed { caught_up }) if caught_up > 0 => {
                info!(
                    caught_up,
                    "schedules that missed runs while down run once now"
                );
            }
            _ => {}
        }
        self.route_events();
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
        digest_at(&self.engine, at)
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

/// The digest of `engine`'s state once time reaches `at` (on a copy when timers must run).
pub(crate) fn digest_at(engine: &Engine, at: Option<Millis>) -> (u64, Millis) {
    match at {
        Some(at) if at > engine.now() => {
            let mut copy = engine.clone();
            copy.handle_timeout(at);
            (copy.state_digest(), copy.now())
        }
        _ => (engine.state_digest(), engine.now()),
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the engine task over storage on the fault-injecting file system: replies wait for
    //! the log; a full disk refuses mutations (reads go on) until space returns; a failed fsync
    //! refuses them for good and fails the replies that were waiting.

    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use synap_core::{EngineConfig, Json, PublishMessage};
    use tokio::sync::{broadcast, oneshot};

    use super::*;
    use crate::clock::Clock;
    use crate::engine_task::Request;
    use crate::handle::StorageFault;
    use crate::storage::fs::{Faults, FaultyFs};
    use crate::storage::writer::SyncPolicy;
    use crate::storage::{Storage, StorageConfig};

    fn task(dir: &std::path::Path) -> (EngineTask, Arc<Faults>) {
        let fs = FaultyFs::default();
        let faults = Arc::clone(&fs.faults);
        let cfg = StorageConfig {
            dir: dir.to_path_buf(),
            policy: SyncPolicy::Always,
            segment_bytes: 1 << 20,
            snapshot_bytes: 1 << 30,
            repair: false,
        };
        let (storage, recovered) =
            Storage::open(Arc::new(fs), &cfg, &EngineConfig::default(), 3).unwrap();
        let (events, _) = broadcast::channel(16);
        let t = EngineTask::new(recovered.engine, events, Clock::new())
            .with_storage(TaskStorage::new(storage, recovered.host));
        (t, faults)
    }

    fn publish() -> Command {
        Command::Publish {
            queue: "q".into(),
            message: PublishMessage {
                message: Some(Json::from_trusted_text("1")),
                ..PublishMessage::default()
            },
        }
    }

    /// Runs `cmd` as one turn; the reply's receiver.
    fn turn(t: &mut EngineTask, cmd: Command) -> oneshot::Receiver<Result<Reply, Failure>> {
        let (reply, rx) = oneshot::channel();
        t.begin_turn();
        t.on_request(Request::Call { cmd, reply });
        t.end_turn();
        rx
    }

    /// Releases durable replies until `rx` is answered (10 s at most).
    fn answer(
        t: &mut EngineTask,
        mut rx: oneshot::Receiver<Result<Reply, Failure>>,
    ) -> Result<Reply, Failure> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            t.release();
            if let Ok(r) = rx.try_recv() {
                return r;
            }
            assert!(Instant::now() < deadline, "never answered");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `cmd` as one turn and waits for its answer.
    fn run(t: &mut EngineTask, cmd: Command) -> Result<Reply, Failure> {
        let rx = turn(t, cmd);
        answer(t, rx)
    }

    fn refusal_within(t: &EngineTask, f: impl Fn(&Option<StorageFault>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f(&t.storage.as_ref().unwrap().refusal()) {
            assert!(Instant::now() < deadline, "storage state never changed");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_reply_waits_for_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, _) = task(dir.path());
        let mut rx = turn(&mut t, publish());
        assert!(rx.try_recv().is_err(), "held until the writer reports");
        assert!(matches!(answer(&mut t, rx), Ok(Reply::Published { .. })));
    }

    #[test]
    fn a_full_disk_refuses_mutations_keeps_reads_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, faults) = task(dir.path());
        run(&mut t, publish()).unwrap();
        faults.disk_full.store(true, Ordering::SeqCst);
        // This one is accepted before the writer finds the disk full: it waits, then lands.
        let pending = turn(&mut t, publish());
        refusal_within(&t, |r| *r == Some(StorageFault::Full));
        let refused = run(&mut t, publish());
        assert!(
            matches!(refused, Err(Failure::Storage(StorageFault::Full))),
            "{refused:?}"
        );
        let stats = run(&mut t, Command::Stats { queue: "q".into() });
        assert!(matches!(stats, Ok(Reply::Stats(_))), "reads go on");
        faults.disk_full.store(false, Ordering::SeqCst);
        assert!(matches!(
            answer(&mut t, pending),
            Ok(Reply::Published { .. })
        ));
        refusal_within(&t, Option::is_none);
        assert!(run(&mut t, publish()).is_ok(), "writes resume");
    }

    #[test]
    fn a_failed_fsync_refuses_mutations_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, faults) = task(dir.path());
        run(&mut t, publish()).unwrap();
        faults.fail_sync.store(true, Ordering::SeqCst);
        let unsynced = run(&mut t, publish());
        match unsynced {
            Err(Failure::Storage(StorageFault::Failed(why))) => {
                assert!(why.contains("fsync"), "{why}");
            }
            other => panic!("an unsynced publish must not be confirmed: {other:?}"),
        }
        faults.fail_sync.store(false, Ordering::SeqCst);
        let later = run(&mut t, publish());
        assert!(
            matches!(later, Err(Failure::Storage(StorageFault::Failed(_)))),
            "{later:?}"
        );
        let stats = run(&mut t, Command::Stats { queue: "q".into() });
        assert!(stats.is_ok(), "reads still work: {stats:?}");
    }
}
