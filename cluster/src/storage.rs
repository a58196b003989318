//! The Raft log as the node sees it (`LogStore`, raft-rs's `Storage`), what the host must make
//! durable ([`Persist`]), and what it hands back at start ([`Recovered`]).
//!
//! The node keeps its log in memory (bounded by compaction) and reads nothing from disk: the
//! host is handed every change to store, in order, and builds the node again from what it
//! stored. [`MemDisk`] is the reference of how a host applies [`Persist`] batches: the swarm
//! uses it as each node's disk, and an on-disk host must behave the same.
//!
//! Ordering: a batch must not become durable before the batches handed out ahead of it. A
//! host that writes a commit-only hard state lazily (`must_sync == false`) must still not let
//! a later batch, in particular a compaction (`ready: None`, `must_sync == false`, which drops
//! the stored entries up to its index), survive a crash that the lazy hard state did not.
//! Should it happen anyway, [`Recovered`] would hold a commit index below the snapshot's; the
//! node then raises the commit index to the snapshot's index (everything a snapshot covers
//! was committed) rather than let raft-rs refuse to start.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// What the host had stored when the node starts: build the node from it.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Term, vote and commit index last persisted.
    pub hard_state: HardState,
    /// The latest snapshot persisted (engine state, index, term, membership).
    pub snapshot: Option<Snapshot>,
    /// The log entries after the snapshot, in index order without gaps.
    pub entries: Vec<Entry>,
}

/// How a persisted snapshot relates to the log already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Received from the leader: it replaces the whole log (entries after it may conflict).
    Received,
    /// Made by this node from its applied state: entries up to its index may be dropped,
    /// later ones kept.
    Compaction,
}

/// A change the host must store durably, in the order handed out, before confirming it with
/// `Node::on_persisted(ready)` (when `ready` is set). Apply it as [`MemDisk::apply`] does:
/// the snapshot first, then the entries (replacing any stored entries from the first new
/// index on), then the hard state.
#[derive(Clone, Debug, Default)]
pub struct Persist {
    /// The Raft ready this batch belongs to: confirm it once durable. `None` for a compaction,
    /// which needs no confirmation (it covers entries already persisted and applied).
    pub ready: Option<u64>,
    /// A snapshot to store, with how it relates to the stored log.
    pub snapshot: Option<(Snapshot, SnapshotKind)>,
    /// Entries to append; they replace stored entries from their first index on.
    pub entries: Vec<Entry>,
    /// The new hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// True when this must be synced before confirming (a new term or vote, entries or a
    /// snapshot); false when only the commit index moved, which may be written lazily, and
    /// for a compaction. Lazily or not, batches become durable in the order handed out: a
    /// compaction must not survive a crash that a batch queued ahead of it did not (see the
    /// module docs).
    pub must_sync: bool,
}

/// A host's durable state kept in memory: the reference semantics of [`Persist`], and the
/// swarm's disk (which survives a node's crash).
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    /// Last hard state stored.
    pub hard_state: HardState,
    /// Latest snapshot stored.
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl MemDisk {
    /// Stores one batch.
    pub fn apply(&mut self, batch: &Persist) {
        if let Some((snap, kind)) = &batch.snapshot {
            let index = snap.get_metadata().index;
            let stored = self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
            if index > stored || *kind == SnapshotKind::Received {
                match kind {
                    SnapshotKind::Received => self.entries.clear(),
                    SnapshotKind::Compaction => self.entries.retain(|e| e.index > index),
                }
                self.snapshot = Some(snap.clone());
            }
        }
        append(&mut self.entries, &batch.entries);
        if let Some(hs) = &batch.hard_state {
            self.hard_state = hs.clone();
        }
    }

    /// What a restarted node is built from.
    #[must_use]
    pub fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// Appends `new` to `log`, replacing every entry from `new`'s first index on.
fn append(log: &mut Vec<Entry>, new: &[Entry]) {
    let Some(first) = new.first() else { return };
    if let Some(head) = log.first() {
        let keep = first.index.saturating_sub(head.index) as usize;
        assert!(keep <= log.len(), "a gap before entry {}", first.index);
        log.truncate(keep);
    }
    log.extend_from_slice(new);
}

/// The node's in-memory Raft log: the latest snapshot (with the engine state it carries) and
/// the entries after it. raft-rs reads it through `Storage`; the node writes it as it hands
/// the same changes to the host.
#[derive(Debug)]
pub(crate) struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot; an empty one at index 0 before any.
    snapshot: Snapshot,
    /// Entries from `snapshot` index + 1 on, without gaps.
    entries: Vec<Entry>,
}

impl LogStore {
    /// A log rebuilt from what the host stored; `voters` is the membership when the host
    /// stored no snapshot.
    ///
    /// The hard state is raised to at least the snapshot's index (commit) and term: the
    /// snapshot holds only committed state, and raft-rs panics ("hs.commit out of range")
    /// on a commit index below its first index. That happens when a lazily written,
    /// commit-only hard state was lost but a compaction queued after it survived (a host
    /// that broke the write order; see the module docs).
    pub(crate) fn new(recovered: Recovered, voters: &[u64]) -> Self {
        let snapshot = recovered.snapshot.unwrap_or_default();
        let conf_state = if snapshot.get_metadata().index > 0 {
            snapshot.get_metadata().get_conf_state().clone()
        } else {
            ConfState::from((voters.to_vec(), vec![]))
        };
        let snap_index = snapshot.get_metadata().index;
        let mut hard_state = recovered.hard_state;
        let snap_term = snapshot.get_metadata().term;
        if hard_state.term < snap_term {
            // The vote stored was cast in an older term.
            hard_state.term = snap_term;
            hard_state.vote = 0;
        }
        hard_state.commit = hard_state.commit.max(snap_index);
        let entries: Vec<Entry> = recovered
            .entries
            .into_iter()
            .filter(|e| e.index > snap_index)
            .collect();
        if let Some(first) = entries.first() {
            assert_eq!(
                first.index,
                snap_index + 1,
                "stored entries start after the snapshot"
            );
        }
        Self {
            hard_state,
            conf_state,
            snapshot,
            entries,
        }
    }

    /// The latest snapshot (empty at index 0 before any).
    pub(crate) fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    pub(crate) fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The membership after a conf change was applied (snapshots made from now on carry it).
    pub(crate) fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    pub(crate) fn append(&mut self, new: &[Entry]) {
        if let Some(first) = new.first() {
            assert!(
                first.index > self.snapshot.get_metadata().index,
                "appending compacted entry {}",
                first.index
            );
            assert!(
                first.index <= self.last() + 1,
                "a gap before {}",
                first.index
            );
        }
        append(&mut self.entries, new);
    }

    /// Installs a snapshot received from the leader: the whole log is replaced.
    pub(crate) fn install(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata();
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.entries.clear();
        self.snapshot = snap;
    }

    /// Keeps `snap` (made from the applied state) and drops the entries it covers.
    pub(crate) fn compact(&mut self, snap: Snapshot) {
        let index = snap.get_metadata().index;
        assert!(index <= self.last(), "compacting past the log's end");
        self.entries.retain(|e| e.index > index);
        self.snapshot = snap;
    }

    fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.get_metadata().index, |e| e.index)
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last() + 1,
            "entries up to {high} asked, last {}",
            self.last()
        );
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if idx == meta.index {
            return Ok(meta.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// The latest snapshot, unless it is older than asked for or does not name `to` (a node
    /// added after it was made would refuse it): raft-rs then asks again later, by when the
    /// node has made a newer one (see `Node::maybe_compact`).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        let cs = meta.get_conf_state();
        let names_to = cs.voters.contains(&to) || cs.learners.contains(&to);
        if meta.index < request_index.max(1) || !names_to {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
