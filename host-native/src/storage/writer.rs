//! The log writer thread: group commit off the engine task.
//!
//! The engine task hands over one framed record per turn and goes on with the next turn; the
//! thread writes everything that has arrived since its last write in one write, syncs it per
//! policy, and publishes the highest durable index on a watch channel. Replies wait for that
//! index, so the task never blocks on a write or an fsync.
//!
//! Faults: a full disk keeps the unwritten records and retries them every `RETRY` (the
//! segment is cut back to its last whole record each time) and reports `full` until a write
//! succeeds. Any other write error and any failed fsync is final: the thread stops writing and
//! reports `failed`, since after a failed fsync the kernel may have dropped the dirty pages
//! and a retry that succeeds proves nothing.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::fs::is_full;
use super::log::LogWriter;

/// How often a full disk is probed again.
pub(crate) const RETRY: Duration = Duration::from_millis(100);

/// When the log is synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncPolicy {
    /// Before a record counts as durable (and its replies leave).
    Always,
    /// At most this long after a write; a record counts as durable once written.
    Interval(Duration),
    /// Never explicitly; a record counts as durable once written.
    Never,
}

/// A message to the writer thread.
#[derive(Debug)]
pub(crate) enum ToWriter {
    /// Framed records, `count` of them, in index order.
    Frames {
        /// The bytes.
        bytes: Vec<u8>,
        /// How many records.
        count: u64,
    },
    /// Start a new segment at the next index (a snapshot is being taken there).
    Roll,
}

/// What the writer reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Durability {
    /// The highest index written (and synced, under `Always`).
    pub(crate) durable: u64,
    /// The disk is full: records wait and are retried.
    pub(crate) full: bool,
    /// Storage failed for good: why.
    pub(crate) failed: Option<Arc<str>>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    log: LogWriter,
    policy: SyncPolicy,
    status: watch::Sender<Durability>,
    /// Records not yet written (a full disk), and how many.
    pending: Vec<u8>,
    pending_count: u64,
    /// A roll asked for once the pending records are written.
    roll_after: bool,
    /// Written but not yet synced (interval policy), since when.
    dirty_since: Option<Instant>,
}

impl Writer {
    /// A writer appending to `log`.
    pub(crate) fn new(
        log: LogWriter,
        policy: SyncPolicy,
        status: watch::Sender<Durability>,
    ) -> Self {
        Self {
            log,
            policy,
            status,
            pending: Vec::new(),
            pending_count: 0,
            roll_after: false,
            dirty_since: None,
        }
    }

    /// Runs until the sender side is dropped, then writes and syncs what is left.
    pub(crate) fn run(mut self, rx: &Receiver<ToWriter>) {
        loop {
            let msg = match self.wait() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => rx.recv_timeout(t),
            };
            let open = match msg {
                Ok(m) => {
                    self.take(m);
                    // Everything that arrived meanwhile goes into the same write.
                    while let Ok(m) = rx.try_recv() {
                        self.take(m);
                    }
                    true
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => false,
            };
            if self.failed() {
                if !open {
                    return;
                }
                continue;
            }
            self.flush();
            if !open {
                if self.dirty_since.is_some() {
                    self.sync();
                }
                if !self.pending.is_empty() {
                    warn!(
                        records = self.pending_count,
                        "stopping with unwritten log records (disk full)"
                    );
                }
                return;
            }
        }
    }

    /// How long to wait for the next message: `None` = until one comes.
    fn wait(&self) -> Option<Duration> {
        if self.failed() {
            return None;
        }
        if !self.pending.is_empty() || self.roll_after {
            return Some(RETRY);
        }
        match (self.policy, self.dirty_since) {
            (SyncPolicy::Interval(every), Some(since)) => {
                Some(every.saturating_sub(since.elapsed()))
            }
            _ => None,
        }
    }

    fn failed(&self) -> bool {
        self.status.borrow().failed.is_some()
    }

    fn take(&mut self, m: ToWriter) {
        match m {
            ToWriter::Frames { bytes, count } => {
                if self.roll_after {
                    // Records after a roll go to the new segment: write the old ones first.
                    self.flush();
                }
                self.pending.extend_from_slice(&bytes);
                self.pending_count += count;
            }
            ToWriter::Roll => {
                self.flush();
                self.roll_after = true;
            }
        }
    }

    /// Writes the pending records, syncs per policy, rolls if due, and reports.
    fn flush(&mut self) {
        if self.failed() {
            return;
        }
        if !self.pending.is_empty() {
            match self.log.append(&self.pending, self.pending_count) {
                Ok(()) => {
                    self.pending.clear();
                    self.pending_count = 0;
                    self.written();
                }
                Err(e) if is_full(&e) => return self.report_full(),
                Err(e) => return self.fail(format!("cannot write the command log: {e}")),
            }
        }
        if self.roll_after || self.log.is_full() {
            match self.log.roll() {
                Ok(()) => {
                    self.roll_after = false;
                    self.dirty_since = None;
                }
                Err(e) if is_full(&e) => {
                    self.roll_after = true;
                    self.report_full();
                }
                Err(e) => self.fail(format!("cannot start a log segment: {e}")),
            }
        }
        if let (SyncPolicy::Interval(every), Some(since)) = (self.policy, self.dirty_since)
            && since.elapsed() >= every
        {
            self.sync();
        }
    }

    fn written(&mut self) {
        let durable = self.log.next_index() - 1;
        match self.policy {
            SyncPolicy::Always => {
                if !self.sync() {
                    return;
                }
            }
            SyncPolicy::Interval(_) => {
                self.dirty_since.get_or_insert_with(Instant::now);
            }
            SyncPolicy::Never => {}
        }
        let was_full = self.status.borrow().full;
        if was_full {
            info!("disk space is back: the command log is being written again");
        }
        self.status.send_modify(|s| {
            s.durable = durable;
            s.full = false;
        });
    }

    /// Syncs the log; false (and failed for good) if the sync failed.
    fn sync(&mut self) -> bool {
        match self.log.sync() {
            Ok(()) => {
                self.dirty_since = None;
                true
            }
            Err(e) => {
                self.fail(format!("fsync of the command log failed: {e}"));
                false
            }
        }
    }

    fn report_full(&mut self) {
        if !self.status.borrow().full {
            warn!(
                "disk full: the command log cannot be written; mutations are refused until space returns"
            );
            self.status.send_modify(|s| s.full = true);
        }
    }

    fn fail(&mut self, why: String) {
        error!("{why}; the server accepts no more mutations (restart it once storage is fixed)");
        let why: Arc<str> = why.into();
        self.status.send_modify(|s| s.failed = Some(why));
    }

    /// Runs a writer on its own thread; dropping every sender of `rx` stops it.
    pub(crate) fn spawn(
        self,
        rx: Receiver<ToWriter>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("synap-log-writer".into())
            .spawn(move || self.run(&rx))
    }
}

/// `interval` policy's default period.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;

    use synap_core::{Command, Millis};

    use super::super::fs::{Faults, FaultyFs, Fs, RealFs};
    use super::super::log::scan;
    use super::super::record::encode_record;
    use super::*;

    struct Running {
        tx: Option<mpsc::Sender<ToWriter>>,
        status: watch::Receiver<Durability>,
        thread: Option<std::thread::JoinHandle<()>>,
        faults: Arc<Faults>,
        next: u64,
    }

    impl Running {
        fn start(dir: &std::path::Path, policy: SyncPolicy) -> Self {
            let fs = FaultyFs::default();
            let faults = Arc::clone(&fs.faults);
            let log = LogWriter::open(Arc::new(fs), dir, 1, 1, 1 << 20).unwrap();
            let (status_tx, status) = watch::channel(Durability::default());
            let (tx, rx) = mpsc::channel();
            let thread = Writer::new(log, policy, status_tx).spawn(rx).unwrap();
            Self {
                tx: Some(tx),
                status,
                thread: Some(thread),
                faults,
                next: 1,
            }
        }

        fn send(&mut self) -> u64 {
            let mut bytes = Vec::new();
            let cmd = Command::KvDel { key: "k".into() };
            encode_record(&mut bytes, self.next, Millis(self.next), &[cmd]);
            self.tx
                .as_ref()
                .unwrap()
                .send(ToWriter::Frames { bytes, count: 1 })
                .unwrap();
            self.next += 1;
            self.next - 1
        }

        /// Waits (up to 10 s) until the status satisfies `f`.
        fn wait_for(&mut self, f: impl Fn(&Durability) -> bool) -> Durability {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let s = self.status.borrow().clone();
                if f(&s) {
                    return s;
                }
                assert!(Instant::now() < deadline, "status stuck at {s:?}");
                std::thread::sleep(Duration::from_millis(2));
            }
        }

        fn stop(&mut self) {
            self.tx = None;
            self.thread.take().unwrap().join().unwrap();
        }
    }

    fn records(dir: &std::path::Path) -> u64 {
        scan(&RealFs as &dyn Fs, dir, 0, false).unwrap().last_index
    }

    #[test]
    fn every_policy_reports_what_it_wrote() {
        for policy in [
            SyncPolicy::Always,
            SyncPolicy::Interval(DEFAULT_INTERVAL),
            SyncPolicy::Never,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = Running::start(dir.path(), policy);
            for _ in 0..50 {
                w.send();
            }
            w.wait_for(|s| s.durable == 50);
            w.stop();
            assert_eq!(records(dir.path()), 50, "{policy:?}");
        }
    }

    #[test]
    fn a_full_disk_holds_records_and_writes_them_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Running::start(dir.path(), SyncPolicy::Always);
        w.send();
        w.wait_for(|s| s.durable == 1);
        w.faults.disk_full.store(true, Ordering::SeqCst);
        w.send();
        w.send();
        let s = w.wait_for(|s| s.full);
        assert_eq!(s.durable, 1, "nothing past the full disk counts as durable");
        w.faults.disk_full.store(false, Ordering::SeqCst);
        let s = w.wait_for(|s| s.durable == 3);
        assert!(!s.full && s.failed.is_none());
        w.stop();
        let found = scan(&RealFs as &dyn Fs, dir.path(), 0, false).unwrap();
        assert_eq!((found.last_index, found.warnings.len()), (3, 0));
    }

    #[test]
    fn a_failed_fsync_stops_writing_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Running::start(dir.path(), SyncPolicy::Always);
        w.send();
        w.wait_for(|s| s.durable == 1);
        w.faults.fail_sync.store(true, Ordering::SeqCst);
        w.send();
        let s = w.wait_for(|s| s.failed.is_some());
        assert_eq!(s.durable, 1, "the unsynced record is not durable");
        assert!(s.failed.unwrap().contains("fsync"));
        // Even with fsync working again, nothing more is written or confirmed.
        w.faults.fail_sync.store(false, Ordering::SeqCst);
        w.send();
        std::thread::sleep(RETRY * 2);
        assert_eq!(w.status.borrow().durable, 1);
        w.stop();
    }

    #[test]
    fn a_roll_starts_the_next_segment_at_the_next_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Running::start(dir.path(), SyncPolicy::Never);
        w.send();
        w.tx.as_ref().unwrap().send(ToWriter::Roll).unwrap();
        w.send();
        w.wait_for(|s| s.durable == 2);
        w.stop();
        let segs = super::super::log::segments(&RealFs, dir.path()).unwrap();
        assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(records(dir.path()), 2);
    }
}
