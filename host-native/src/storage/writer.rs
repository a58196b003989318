//! The command log's writer: group commit beside the engine task.
//!
//! Under `--fsync always` the engine task hands over one framed record per turn and goes on
//! with the next turn; a thread writes everything that has arrived since its last write in one
//! write, syncs it, and publishes the highest durable index on a watch channel. Replies wait
//! for that index, so the task never blocks on an fsync.
//!
//! Under `interval` and `never` a record counts as durable once written, so the task writes
//! it itself (one `write` per turn into the page cache, a few microseconds) and its replies
//! leave in the same turn: no thread hop on the reply path. The thread then only syncs, at
//! most `interval` after a write, through a second handle on the segment, so the task never
//! waits for an fsync either; and it retries records a full disk held back.
//!
//! Faults: a full disk keeps the unwritten records and retries them every `RETRY` (the
//! segment is cut back to its last whole record each time) and reports `full` until a write
//! succeeds. Any other write error and any failed fsync is final: writing stops and `failed`
//! is reported, since after a failed fsync the kernel may have dropped the dirty pages and a
//! retry that succeeds proves nothing.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::fs::FsSync;
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

/// The writer's state (on its thread, or shared with the engine task under `interval` and
/// `never`).
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
    /// The engine task writes and the thread only syncs and retries.
    inline: bool,
    /// The thread has something new to wait for (inline mode): a first unsynced write, or
    /// records a full disk held back.
    wake: bool,
    /// The engine task is writing (inline mode): it reads the durable index itself when the
    /// write returns, so the report is updated without waking it.
    quiet: bool,
    /// Segments closed by a roll in inline mode, still to be synced with the new segment and
    /// the directory (by the thread, at once).
    closed: Vec<Arc<dyn FsSync>>,
}

/// What the thread syncs in inline mode.
struct SyncJob {
    /// Files, in order.
    files: Vec<Arc<dyn FsSync>>,
    /// Then the directory (after a roll).
    dir: Option<(Arc<dyn super::fs::Fs>, std::path::PathBuf)>,
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
            inline: false,
            wake: false,
            quiet: false,
            closed: Vec::new(),
        }
    }

    /// Runs until the sender side is dropped, then writes and syncs what is left.
    fn run(mut self, rx: &Receiver<ToWriter>) {
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
                self.warn_unwritten();
                return;
            }
        }
    }

    /// How long to wait for the next message: `None` = until one comes.
    fn wait(&self) -> Option<Duration> {
        if self.failed() {
            return None;
        }
        if !self.closed.is_empty() {
            return Some(Duration::ZERO);
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
            // Inline, the engine task must not wait for the disk: the thread syncs the closed
            // segment, the new one and the directory right after.
            let rolled = if self.inline {
                self.log.roll_unsynced().map(|old| {
                    self.closed.push(old);
                    self.wake = true;
                })
            } else {
                self.log.roll()
            };
            match rolled {
                Ok(()) => {
                    self.roll_after = false;
                    if !self.inline {
                        self.dirty_since = None;
                    }
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
            && !self.inline
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
                if self.dirty_since.is_none() {
                    self.dirty_since = Some(Instant::now());
                    self.wake = true;
                }
            }
            SyncPolicy::Never => {}
        }
        let was_full = self.status.borrow().full;
        if was_full {
            info!("disk space is back: the command log is being written again");
        }
        let quiet = self.quiet && !was_full;
        // A quiet update is a documented silent modification: the new index shows in every
        // later `borrow`, but no receiver is woken for it.
        self.status.send_if_modified(|s| {
            s.durable = durable;
            s.full = false;
            !quiet
        });
    }

    /// Syncs the log; false (and failed for good) if the sync failed.
    fn sync(&mut self) -> bool {
        let result = self.log.sync();
        let ok = result.is_ok();
        if ok {
            self.dirty_since = None;
        }
        self.synced(result);
        ok
    }

    /// At the end: says what a full disk kept from being written.
    fn warn_unwritten(&self) {
        if !self.pending.is_empty() {
            warn!(
                records = self.pending_count,
                "stopping with unwritten log records (disk full)"
            );
        }
    }

    fn report_full(&mut self) {
        self.wake = true;
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

    /// What a thread should sync now, if anything (inline mode; `force` when stopping): the
    /// segments a roll closed, with the new one and the directory, at once; otherwise the
    /// current segment once the interval has passed since its first unsynced write. A sync
    /// covers every write made before it starts; later writes mark the log dirty again.
    fn due_sync(&mut self, force: bool) -> Option<SyncJob> {
        if self.failed() {
            return None;
        }
        if !self.closed.is_empty() {
            let mut files = std::mem::take(&mut self.closed);
            files.push(self.log.syncer());
            self.dirty_since = None;
            return Some(SyncJob {
                files,
                dir: Some(self.log.dir_handle()),
            });
        }
        let (SyncPolicy::Interval(every), Some(since)) = (self.policy, self.dirty_since) else {
            return None;
        };
        if !(force || since.elapsed() >= every) {
            return None;
        }
        self.dirty_since = None;
        Some(SyncJob {
            files: vec![self.log.syncer()],
            dir: None,
        })
    }

    /// Notes the outcome of a sync (a failure is final).
    fn synced(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            self.fail(format!("fsync of the command log failed: {e}"));
        }
    }

    /// The thread of inline mode: syncs when due, retries held-back records, and at the end
    /// writes and syncs what is left.
    fn run_inline(shared: &Mutex<Self>, rx: &Receiver<()>) {
        loop {
            let wait = lock(shared).wait();
            let open = match wait {
                None => rx.recv().is_ok(),
                Some(t) => !matches!(rx.recv_timeout(t), Err(RecvTimeoutError::Disconnected)),
            };
            while rx.try_recv().is_ok() {}
            let due = {
                let mut w = lock(shared);
                w.wake = false;
                w.flush();
                w.due_sync(!open)
            };
            if let Some(job) = due {
                // Outside the lock: the engine task goes on writing meanwhile.
                let mut result = job.files.iter().try_for_each(|f| f.sync());
                if let (Ok(()), Some((fs, dir))) = (&result, &job.dir) {
                    result = fs.sync_dir(dir);
                }
                lock(shared).synced(result);
            }
            if !open {
                lock(shared).warn_unwritten();
                return;
            }
        }
    }
}

fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    // A panic while holding the lock leaves the writer's fields consistent (each step is
    // complete or not started), so the state is used as it is.
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the engine task hands records to the writer.
enum Sink {
    /// `always`: to the writer thread.
    Thread(mpsc::Sender<ToWriter>),
    /// `interval`, `never`: written in the task; the thread is woken to sync or retry.
    Inline {
        writer: Arc<Mutex<Writer>>,
        wake: mpsc::Sender<()>,
    },
}

/// The engine task's end of the log writer. Dropping it (or `stop`) writes and syncs what is
/// left and ends the thread.
pub(crate) struct LogSink {
    sink: Option<Sink>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogSink {
    /// Starts the writer for `log` under `policy`, reporting on `status`.
    pub(crate) fn start(
        log: LogWriter,
        policy: SyncPolicy,
        status: watch::Sender<Durability>,
    ) -> std::io::Result<Self> {
        let mut writer = Writer::new(log, policy, status);
        let thread = std::thread::Builder::new().name("synap-log-writer".into());
        let (sink, thread) = if policy == SyncPolicy::Always {
            let (tx, rx) = mpsc::channel();
            (Sink::Thread(tx), thread.spawn(move || writer.run(&rx))?)
        } else {
            writer.inline = true;
            let writer = Arc::new(Mutex::new(writer));
            let (wake, rx) = mpsc::channel();
            let shared = Arc::clone(&writer);
            let handle = thread.spawn(move || Writer::run_inline(&shared, &rx))?;
            (Sink::Inline { writer, wake }, handle)
        };
        Ok(Self {
            sink: Some(sink),
            thread: Some(thread),
        })
    }

    /// Hands over `count` framed records (the next indexes). Inline, they are written before
    /// this returns and the status says so.
    pub(crate) fn frames(&mut self, bytes: Vec<u8>, count: u64) {
        self.send(ToWriter::Frames { bytes, count });
    }

    /// Starts a new segment at the next index (after the records handed over so far).
    pub(crate) fn roll(&mut self) {
        self.send(ToWriter::Roll);
    }

    fn send(&mut self, m: ToWriter) {
        match &self.sink {
            // The thread only stops when the sender is dropped; a send error means it
            // panicked, and `durable` then never advances: replies wait.
            Some(Sink::Thread(tx)) => drop(tx.send(m)),
            Some(Sink::Inline { writer, wake }) => {
                let mut w = lock(writer);
                w.quiet = true;
                w.take(m);
                w.flush();
                w.quiet = false;
                if std::mem::take(&mut w.wake) {
                    let _ = wake.send(());
                }
            }
            None => {}
        }
    }

    /// Writes and syncs what is left and waits for the thread to end.
    pub(crate) fn stop(&mut self) {
        self.sink = None;
        if let Some(h) = self.thread.take()
            && h.join().is_err()
        {
            warn!("the log writer thread panicked");
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `interval` policy's default period.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests;
