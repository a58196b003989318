//! The Raft storage's writer thread: writes `Persist` batches in order, syncs them per the
//! fsync policy, and reports which ready is durable so the node may send the answers that
//! waited for it (a follower's append acknowledgements and votes, a leader's own count).
//!
//! Group commit: every batch waiting when the thread wakes is written, then one sync covers
//! them all. Under `always` a ready is reported only after that sync; under `interval` and
//! `never` once written (a killed process loses nothing written; a power cut may lose the
//! last interval, as for the single server).

use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use synap_cluster::Persist;
use tokio::sync::mpsc;
use tracing::error;

use super::storage::RaftDisk;
use crate::storage::writer::SyncPolicy;

/// What the writer thread reports to the cluster task.
#[derive(Debug)]
pub(crate) enum WriteDone {
    /// Every batch up to this ready number is durable (per the policy).
    Persisted(u64),
    /// Storage failed: the node must stop (nothing after this is written).
    Failed(String),
}

/// The sending side of the writer thread.
pub(crate) struct DiskWriter {
    tx: std_mpsc::Sender<Persist>,
}

impl DiskWriter {
    /// Starts the thread over `disk`.
    pub(crate) fn start(
        disk: RaftDisk,
        policy: SyncPolicy,
        done: mpsc::UnboundedSender<WriteDone>,
    ) -> Self {
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("synap-raft-writer".into())
            .spawn(move || run(disk, policy, &rx, &done))
            .expect("spawn the raft writer thread");
        Self { tx }
    }

    /// Hands a batch to the thread, in order.
    pub(crate) fn write(&self, batch: Persist) {
        // A send fails only after the thread stopped on a failure it already reported.
        let _ = self.tx.send(batch);
    }
}

fn run(
    mut disk: RaftDisk,
    policy: SyncPolicy,
    rx: &std_mpsc::Receiver<Persist>,
    done: &mpsc::UnboundedSender<WriteDone>,
) {
    let interval = match policy {
        SyncPolicy::Interval(d) => Some(d),
        _ => None,
    };
    let mut dirty = false;
    let mut synced_at = Instant::now();
    loop {
        let first = match interval.filter(|_| dirty) {
            Some(d) => match rx.recv_timeout(d.saturating_sub(synced_at.elapsed())) {
                Ok(b) => Some(b),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(b) => Some(b),
                Err(_) => return,
            },
        };
        let batches: Vec<Persist> = first.into_iter().chain(rx.try_iter()).collect();
        match write_all(&mut disk, policy, &batches, &mut dirty, &mut synced_at) {
            Ok(Some(ready)) => {
                let _ = done.send(WriteDone::Persisted(ready));
            }
            Ok(None) => {}
            Err(e) => {
                let why = format!("raft storage failed: {e}");
                error!("{why}");
                let _ = done.send(WriteDone::Failed(why));
                return;
            }
        }
    }
}

/// Writes `batches`, syncs per `policy`; the last ready number made durable. (The storage
/// swarm drives it directly, in one thread.)
pub(super) fn write_all(
    disk: &mut RaftDisk,
    policy: SyncPolicy,
    batches: &[Persist],
    dirty: &mut bool,
    synced_at: &mut Instant,
) -> std::io::Result<Option<u64>> {
    let mut must_sync = false;
    let mut ready = None;
    for b in batches {
        disk.write(b)?;
        must_sync |= b.must_sync;
        ready = b.ready.or(ready);
    }
    *dirty |= !batches.is_empty();
    let sync_now = match policy {
        SyncPolicy::Always => must_sync,
        SyncPolicy::Interval(d) => *dirty && synced_at.elapsed() >= d,
        SyncPolicy::Never => false,
    };
    if sync_now || (batches.is_empty() && *dirty) {
        disk.sync()?;
        *dirty = false;
        *synced_at = Instant::now();
    }
    Ok(ready)
}
