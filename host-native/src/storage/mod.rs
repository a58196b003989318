//! Durability: the command log, snapshots and recovery of the engine (DESIGN.md §6).
//!
//! The data directory holds `LOCK`, log segments `<first index>.log` and snapshots
//! `<index>.snap`. The engine task calls `Storage::append` once per turn with the turn's `now`
//! and its accepted mutating commands; the writer (`writer`) writes the record, syncs it per
//! policy and reports the durable index, and the task holds the turn's replies until that
//! index reaches the record's. Past `snapshot_bytes` of log, `start_snapshot` rolls the log and
//! builds the snapshot on a thread of its own from the previous one and the closed segments;
//! once installed, the segments it covers are deleted.

pub(crate) mod fs;
pub(crate) mod log;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod snapshot;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use synap_core::{Engine, EngineConfig, Millis};
use tokio::sync::watch;
use tracing::{info, warn};

use self::fs::{DirLock, Fs};
use self::log::LogWriter;
use self::recovery::Recovered;
use self::snapshot::HostState;
use self::writer::{Durability, LogSink, SyncPolicy};

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
    sink: LogSink,
    status: watch::Receiver<Durability>,
    next_index: u64,
    last_now: Millis,
    since_snapshot: u64,
    snapshot_bytes: u64,
    snapshotting: Option<JoinHandle<()>>,
    engine_config: EngineConfig,
    _lock: DirLock,
}

/// Makes sure `dir` exists (creating it, but not its parents) and is a directory.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "data directory {} is not a directory",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(|e| {
                format!(
                    "cannot create data directory {}: {e} (its parent directory must exist)",
                    dir.display()
                )
            })
        }
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
        let mut recovered =
            recovery::recover(fs.as_ref(), &cfg.dir, engine_config, fresh_seed, cfg.repair)?;
        for w in &recovered.warnings {
            warn!("{w}");
        }
        // The log replays under the config it was written with, which a snapshot holds: a new
        // directory, or a config that differs from the recovered one, starts with a snapshot
        // of the state under this start's config.
        if recovered.snapshot_index.is_none() || recovered.engine.config() != engine_config {
            if recovered.snapshot_index.is_some() {
                info!(
                    "the engine config differs from the data directory's; it applies from now on"
                );
            }
            recovered.engine.set_config(engine_config.clone());
            let index = recovered.next_index - 1;
            write_snapshot(
                fs.as_ref(),
                &cfg.dir,
                index,
                recovered.last_now.0,
                &recovered.engine,
                &recovered.host,
            )
            .map_err(|e| format!("cannot write to data directory {}: {e}", cfg.dir.display()))?;
            recovered.snapshot_index = Some(index);
        }
        let seed = recovered.host.seed;
        let log = LogWriter::open(
            Arc::clone(&fs),
            &cfg.dir,
            seed,
            recovered.next_index,
            cfg.segment_bytes,
        )
        .map_err(|e| format!("cannot write to data directory {}: {e}", cfg.dir.display()))?;
        let durable = Durability {
            durable: recovered.next_index - 1,
            ..Durability::default()
        };
        let (status_tx, status) = watch::channel(durable);
        let sink = LogSink::start(log, cfg.policy, status_tx)
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
            sink,
            status,
            next_index: recovered.next_index,
            last_now: recovered.last_now,
            since_snapshot: 0,
            snapshot_bytes: cfg.snapshot_bytes.max(1),
            snapshotting: None,
            engine_config: engine_config.clone(),
            _lock: lock,
        };
        Ok((storage, recovered))
    }

    /// Logs one turn: its time and accepted mutating commands. Returns the record's index, the
    /// durable index its replies wait for (under `interval` and `never` it is written, and so
    /// durable, when this returns, unless the disk is full).
    pub(crate) fn append(&mut self, now: Millis, turn: &mut record::TurnLog) -> u64 {
        let index = self.next_index;
        let mut bytes = Vec::new();
        turn.frame_into(&mut bytes, index, now);
        self.since_snapshot += bytes.len() as u64;
        self.sink.frames(bytes, 1);
        self.next_index += 1;
        self.last_now = now;
        index
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
        if let Some(h) = self.snapshotting.take_if(|h| h.is_finished())
            && h.join().is_err()
        {
            warn!("the snapshot thread panicked");
        }
        self.snapshotting.is_none()
            && self.since_snapshot >= self.snapshot_bytes
            && self.status.borrow().failed.is_none()
    }

    /// Starts a snapshot at the last appended record, built off the engine task: a thread
    /// waits until that record is durable, loads the previous snapshot, replays the closed
    /// segments up to it (the engine is deterministic, so this is the task's state at that
    /// record), then writes and installs the result. The task only sends a segment roll, so
    /// its pause does not grow with the state; the price is a second engine in memory while
    /// the snapshot is built. (Cloning the live engine instead paused the task 1.2–2 s at
    /// 1 M queued messages.)
    pub(crate) fn start_snapshot(&mut self) {
        let upto = self.last_index();
        self.since_snapshot = 0;
        self.sink.roll();
        let job = Compaction {
            fs: Arc::clone(&self.fs),
            dir: self.dir.clone(),
            config: self.engine_config.clone(),
            seed: self.seed,
            upto,
            status: self.status.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("synap-snapshot".into())
            .spawn(move || {
                if let Err(e) = job.run() {
                    // The log still holds everything: the next snapshot tries again.
                    warn!(index = upto, error = %e, "snapshot failed; the command log is kept");
                }
            });
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
        self.sink.stop();
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
        if let Err(e) = write_snapshot(self.fs.as_ref(), &self.dir, index, now, engine, &host) {
            warn!(index, error = %e, "shutdown snapshot failed; the command log is kept");
        }
    }
}

impl Drop for Storage {
    /// The writer thread ends with its `Storage` (writing what it holds), so the lock is only
    /// released once nothing writes to the directory any more.
    fn drop(&mut self) {
        self.sink.stop();
        if let Some(h) = self.snapshotting.take() {
            let _ = h.join();
        }
    }
}

/// Encodes and installs a snapshot.
fn write_snapshot(
    fs: &dyn Fs,
    dir: &Path,
    index: u64,
    now: u64,
    engine: &Engine,
    host: &HostState,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let bytes = snapshot::encode(index, now, engine, host);
    let freed = snapshot::install(fs, dir, index, &bytes)
        .map_err(|e| format!("cannot install the snapshot: {e}"))?;
    info!(
        index,
        bytes = bytes.len(),
        freed,
        ms = started.elapsed().as_millis(),
        "snapshot written"
    );
    Ok(())
}

/// A snapshot built from the previous one and the log (see `Storage::start_snapshot`).
struct Compaction {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    config: EngineConfig,
    seed: u64,
    upto: u64,
    status: watch::Receiver<Durability>,
}

impl Compaction {
    fn run(self) -> Result<(), String> {
        // Wait until every record up to `upto` is on disk (or storage failed).
        loop {
            let s = self.status.borrow().clone();
            if let Some(why) = s.failed {
                return Err(format!("storage failed: {why}"));
            }
            if s.durable >= self.upto {
                break;
            }
            if self.status.has_changed().is_err() {
                return Err("the log writer stopped".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let fs = self.fs.as_ref();
        let mut ignored = Vec::new();
        let prev = snapshot::load_newest(fs, &self.dir, &mut ignored)
            .map_err(|e| format!("cannot read snapshots: {e}"))?;
        let (after, mut now, mut engine, mut host) = match prev {
            Some(s) => (s.index, s.now, s.engine, s.host),
            None => {
                let host = HostState {
                    seed: self.seed,
                    ..HostState::default()
                };
                (0, 0, Engine::new(self.config.clone(), self.seed), host)
            }
        };
        if after >= self.upto {
            return Ok(());
        }
        for rec in log::read_range(fs, &self.dir, after, self.upto)? {
            now = now.max(rec.now);
            recovery::replay(&mut engine, &mut host, rec);
        }
        write_snapshot(fs, &self.dir, self.upto, now, &engine, &host)
    }
}

pub(crate) mod inspect;
pub(crate) mod outbox;
#[cfg(test)]
mod swarm;
#[cfg(test)]
mod tests;
