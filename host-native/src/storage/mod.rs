//! Durability: the command log, snapshots and recovery of the engine (DESIGN.md §6).
//!
//! The data directory holds `LOCK`, log segments `<first index>.log` and snapshots
//! `<index>.snap`. The engine task calls `Storage::append` once per turn with the turn's `now`
//! and its accepted mutating commands; the record goes to the writer thread (`writer`), and
//! the task holds the turn's replies until `Storage::durable` reaches its index. Past
//! `snapshot_bytes` of log the task clones the engine and `start_snapshot` encodes and installs
//! it on a thread of its own, after which the segments it covers are deleted.

pub(crate) mod fs;
pub(crate) mod log;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod snapshot;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use synap_core::{Command, Engine, EngineConfig, Millis};
use tokio::sync::watch;
use tracing::{info, warn};

use self::fs::{DirLock, Fs};
use self::log::LogWriter;
use self::recovery::Recovered;
use self::snapshot::HostState;
use self::writer::{Durability, SyncPolicy, ToWriter, Writer};

/// Default size at which a log segment is closed and a new one started.
pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default log growth after which a snapshot is taken.
pub(crate) const DEFAULT_SNAPSHOT_BYTES: u64 = 256 << 20;

/// How storage runs.
#[derive(Clone, Debug)]
pub(crate) struct StorageConfig {
    /// The data directory.
    pub(crate) dir: PathBuf,
    /// When the log is synced.
    pub(crate) policy: SyncPolicy,
    /// Segment size.
    pub(crate) segment_bytes: u64,
    /// Log growth between snapshots.
    pub(crate) snapshot_bytes: u64,
    /// Cut the log at damage before its tail instead of refusing to start.
    pub(crate) repair: bool,
}

/// The engine task's side of storage.
pub(crate) struct Storage {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    seed: u64,
    tx: Option<mpsc::Sender<ToWriter>>,
    status: watch::Receiver<Durability>,
    writer: Option<JoinHandle<()>>,
    next_index: u64,
    last_now: Millis,
    since_snapshot: u64,
    snapshot_bytes: u64,
    snapshotting: Option<JoinHandle<()>>,
    _lock: DirLock,
}

/// Makes sure `dir` exists (creating it, but not its parents) and is a directory.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("data directory {} is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(dir)
            .map_err(|e| {
                format!(
                    "cannot create data directory {}: {e} (its parent directory must exist)",
                    dir.display()
                )
            }),
        Err(e) => Err(format!("cannot use data directory {}: {e}", dir.display())),
    }
}

impl Storage {
    /// Locks the data directory, recovers the engine from it and starts the log writer.
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        cfg: &StorageConfig,
        engine_config: &EngineConfig,
        fresh_seed: u64,
    ) -> Result<(Self, Recovered), String> {
        prepare_dir(&cfg.dir)?;
        let lock = DirLock::acquire(&cfg.dir)?;
        let recovered =
            recovery::recover(fs.as_ref(), &cfg.dir, engine_config, fresh_seed, cfg.repair)?;
        for w in &recovered.warnings {
            warn!("{w}");
        }
        let seed = recovered.host.seed;
        let log = LogWriter::open(
            Arc::clone(&fs),
            &cfg.dir,
            seed,
            recovered.next_index,
            cfg.segment_bytes,
        )
        .map_err(|e| {
            format!(
                "cannot write to data directory {}: {e}",
                cfg.dir.display()
            )
        })?;
        let durable = Durability {
            durable: recovered.next_index - 1,
            ..Durability::default()
        };
        let (status_tx, status) = watch::channel(durable);
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(log, cfg.policy, status_tx)
            .spawn(rx)
            .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
        info!(
            dir = %cfg.dir.display(),
            snapshot = ?recovered.snapshot_index,
            replayed = recovered.replayed,
            next_index = recovered.next_index,
            "recovered from the data directory"
        );
        let storage = Self {
            fs,
            dir: cfg.dir.clone(),
            seed,
            tx: Some(tx),
            status,
            writer: Some(writer),
            next_index: recovered.next_index,
            last_now: recovered.last_now,
            since_snapshot: 0,
            snapshot_bytes: cfg.snapshot_bytes.max(1),
            snapshotting: None,
            _lock: lock,
        };
        Ok((storage, recovered))
    }

    /// Logs one turn: its time and accepted mutating commands. Returns the record's index, the
    /// durable index its replies wait for.
    pub(crate) fn append(&mut self, now: Millis, commands: &[Command]) -> u64 {
        let index = self.next_index;
        let mut bytes = Vec::new();
        record::encode_record(&mut bytes, index, now, commands);
        self.since_snapshot += bytes.len() as u64;
        self.send(ToWriter::Frames { bytes, count: 1 });
        self.next_index += 1;
        self.last_now = now;
        index
    }

    fn send(&self, m: ToWriter) {
        if let Some(tx) = &self.tx {
            // The writer only stops when `tx` is dropped; a send error means it panicked, and
            // `durable` then never advances: replies wait and the failure shows in `status`.
            let _ = tx.send(m);
        }
    }

    /// The index of the last record appended (0 if none).
    pub(crate) fn last_index(&self) -> u64 {
        self.next_index - 1
    }

    /// What the writer reports, to wait on with `changed`.
    pub(crate) fn status(&self) -> watch::Receiver<Durability> {
        self.status.clone()
    }

    /// True when the log has grown enough for a snapshot and none is being written.
    pub(crate) fn wants_snapshot(&mut self) -> bool {
        if self.snapshotting.as_ref().is_some_and(JoinHandle::is_finished) {
            if let Some(Err(_)) = self.snapshotting.take().map(JoinHandle::join) {
                warn!("the snapshot thread panicked");
            }
        }
        self.snapshotting.is_none()
            && self.since_snapshot >= self.snapshot_bytes
            && self.status.borrow().failed.is_none()
    }

    /// Writes a snapshot of `engine` (a clone taken after the last appended record) on a
    /// thread of its own; the segments it covers are deleted once it is in place.
    pub(crate) fn start_snapshot(&mut self, engine: Engine, host: HostState) {
        let index = self.last_index();
        let now = self.last_now.0;
        self.since_snapshot = 0;
        self.send(ToWriter::Roll);
        let fs = Arc::clone(&self.fs);
        let dir = self.dir.clone();
        let host = HostState {
            seed: self.seed,
            ..host
        };
        let spawned = std::thread::Builder::new()
            .name("synap-snapshot".into())
            .spawn(move || write_snapshot(fs.as_ref(), &dir, index, now, &engine, &host));
        match spawned {
            Ok(handle) => self.snapshotting = Some(handle),
            Err(e) => warn!(error = %e, "cannot start the snapshot thread"),
        }
    }

    /// Waits for the snapshot being written, if any.
    #[cfg(test)]
    pub(crate) fn wait_snapshot(&mut self) {
        if let Some(h) = self.snapshotting.take() {
            h.join().expect("snapshot thread");
        }
    }

    /// Stops the writer (writing and syncing what it holds), then, if storage is healthy,
    /// writes a final snapshot of `engine` so the next start replays nothing.
    pub(crate) fn close(mut self, engine: &Engine, host: HostState) {
        if let Some(h) = self.snapshotting.take() {
            let _ = h.join();
        }
        self.tx = None;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        let status = self.status.borrow().clone();
        if status.failed.is_some() || status.full || status.durable < self.last_index() {
            warn!("no shutdown snapshot: the command log is not fully written");
            return;
        }
        let host = HostState {
            seed: self.seed,
            ..host
        };
        let (index, now) = (self.last_index(), self.last_now.0);
        write_snapshot(self.fs.as_ref(), &self.dir, index, now, engine, &host);
    }
}

/// Encodes and installs a snapshot, logging the outcome.
fn write_snapshot(fs: &dyn Fs, dir: &Path, index: u64, now: u64, engine: &Engine, host: &HostState) {
    let started = std::time::Instant::now();
    let bytes = snapshot::encode(index, now, engine, host);
    match snapshot::install(fs, dir, index, &bytes) {
        Ok(freed) => info!(
            index,
            bytes = bytes.len(),
            freed,
            ms = started.elapsed().as_millis(),
            "snapshot written"
        ),
        // The log still holds everything: the next snapshot tries again.
        Err(e) => warn!(index, error = %e, "snapshot failed; the command log is kept"),
    }
}

#[cfg(test)]
mod tests;
