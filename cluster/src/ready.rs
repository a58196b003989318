//! One raft-rs `Ready` at a time: what to send, what to persist, what to apply; and the
//! bookkeeping around it (persist confirmations, proposals matched or lost, compaction).

use raft::Storage;
use raft::eraftpb::{Entry, EntryType, Snapshot};

use crate::entry::{EntryData, Origin};
use crate::members::AddressBook;
use synap_core::Engine;

use crate::node::{Answer, Applied, AppliedKind, Node, ProposalId, Refused};
use crate::snapshot;
use crate::storage::{Persist, SnapshotKind};

impl Node {
    /// One raft-rs `Ready`, in the order raft-rs asks for: send a leader's messages now,
    /// install a snapshot, write entries and hard state to the in-memory log and hand them
    /// to the host, hold a follower's messages until that is persisted, advance, then apply
    /// the committed entries.
    ///
    /// A snapshot whose data does not decode stops the node ([`Node::halted`]) before
    /// anything of this ready is sent or handed out to persist: the bad snapshot never
    /// reaches the disk, so a restart does not meet it again (it asks the leader anew).
    pub(crate) fn handle_ready(&mut self) {
        let mut rd = self.raw.ready();
        let number = rd.number();
        let received = if rd.snapshot().is_empty() {
            None
        } else {
            let snap = rd.snapshot().clone();
            match snapshot::decode(snap.get_data()) {
                Ok(decoded) => Some((snap, decoded)),
                Err(e) => {
                    let meta = snap.get_metadata();
                    self.halt(format!(
                        "the snapshot at index {} (term {}) from the leader: {e}",
                        meta.index, meta.term
                    ));
                    return;
                }
            }
        };
        self.outbox.extend(rd.take_messages());
        let mut batch = Persist {
            ready: Some(number),
            must_sync: rd.must_sync(),
            ..Persist::default()
        };
        if let Some((snap, (engine, book))) = received {
            self.install_snapshot(&snap, engine, book);
            batch.snapshot = Some((snap, SnapshotKind::Received));
        }
        let committed = rd.take_committed_entries();
        if !rd.entries().is_empty() {
            let entries = rd.take_entries();
            self.note_entries(&entries);
            self.raw.mut_store().append(&entries);
            batch.entries = entries;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            batch.hard_state = Some(hs.clone());
        }
        let held = rd.take_persisted_messages();
        if !held.is_empty() {
            self.held.push_back((number, held));
        }
        self.raw.advance_append_async(rd);
        let nothing = batch.snapshot.is_none() && batch.entries.is_empty();
        if nothing && batch.hard_state.is_none() && self.unconfirmed.is_empty() {
            // Nothing to store and nothing stored before it waits: persisted already.
            self.confirm(number);
        } else {
            self.unconfirmed.push_back(number);
            self.persist.push_back(batch);
        }
        self.apply_entries(committed);
    }

    /// Ready `number` (and every one before it) is durable.
    pub(crate) fn confirm(&mut self, number: u64) {
        while self.held.front().is_some_and(|(n, _)| *n <= number) {
            let (_, msgs) = self.held.pop_front().expect("checked");
            self.outbox.extend(msgs);
        }
        self.raw.on_persist_ready(number);
        self.sync_raft_applied();
    }

    /// Tells raft-rs how far the engine applied, once its log agrees that far is persisted
    /// (after a snapshot install it is not until the snapshot is).
    pub(crate) fn sync_raft_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let limit = log.committed.min(log.persisted);
        if self.applied > self.raft_applied && self.applied <= limit {
            self.raw.advance_apply_to(self.applied);
            self.raft_applied = self.applied;
        }
    }

    pub(crate) fn note_entries(&mut self, entries: &[Entry]) {
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal {
                continue; // a membership change carries no time
            }
            if let Ok(Some(d)) = EntryData::decode(&e.data) {
                self.max_now = self.max_now.max(d.payload.now());
            }
        }
    }

    /// Replaces the engine and address book with a snapshot's (`engine` and `book`, decoded
    /// from it; raft-rs took the membership from its metadata): proposals at or below its
    /// index can no longer be matched to their entries, so they are answered as lost.
    pub(crate) fn install_snapshot(&mut self, snap: &Snapshot, engine: Engine, book: AddressBook) {
        let index = snap.get_metadata().index;
        self.engine = engine;
        self.book = book;
        self.membership_version += 1;
        self.snapshot_behind = false;
        self.max_now = self.max_now.max(self.engine.now());
        self.applied = index;
        self.raw.mut_store().install(snap.clone());
        self.lose_pending_through(index);
        if self.tick_in_flight.is_some_and(|i| i <= index) {
            self.tick_in_flight = None;
        }
        if self.cfg.observe_applied {
            self.applied_log.push_back(Applied {
                index,
                term: snap.get_metadata().term,
                hash: xxhash_rust::xxh3::xxh3_64(snap.get_data()),
                digest: Some(self.engine.state_digest()),
                kind: AppliedKind::Installed,
                now: None,
                replayed: false,
            });
        }
    }

    pub(crate) fn lose_pending_through(&mut self, index: u64) {
        while let Some((&seq, p)) = self.pending.first_key_value() {
            if p.index > index {
                break;
            }
            self.pending.remove(&seq);
            self.answers.push_back(Answer {
                proposal: ProposalId(seq),
                outcome: Err(Refused::Lost {
                    leader: self.leader(),
                }),
            });
        }
    }

    /// Answers the proposal whose entry this is, if it is this node's and still waiting.
    pub(crate) fn take_pending(
        &mut self,
        origin: Option<Origin>,
        index: u64,
        term: u64,
    ) -> Option<ProposalId> {
        let o = origin.filter(|o| o.node == self.cfg.id)?;
        let p = self.pending.get(&o.seq)?;
        if p.index != index || p.term != term {
            return None;
        }
        self.pending.remove(&o.seq);
        Some(ProposalId(o.seq))
    }

    pub(crate) fn clear_tick_through(&mut self, index: u64) {
        if self.tick_in_flight.is_some_and(|i| i <= index) {
            self.tick_in_flight = None;
        }
    }

    /// Compacts the log once `snapshot_entries` entries were applied since the last snapshot,
    /// or at once when the last snapshot does not name every member (a node was added since):
    /// the new node needs a snapshot that names it, since raft-rs refuses one that does not.
    pub(crate) fn maybe_compact(&mut self) {
        let every = self.cfg.snapshot_entries;
        let last = self.snapshot_index();
        let due = every > 0 && self.applied >= last + every;
        let stale = self.snapshot_behind && last > 0 && self.applied > last;
        if !(due || stale) || self.applied > self.raft_applied {
            return;
        }
        self.snapshot_behind = false;
        let index = self.applied;
        let term = self
            .raw
            .store()
            .term(index)
            .expect("the applied entry is in the log");
        let conf = self
            .raw
            .store()
            .initial_state()
            .expect("in memory")
            .conf_state;
        let mut snap = Snapshot::default();
        snap.set_data(snapshot::encode(&self.engine, &self.book).into());
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf);
        if self.cfg.observe_applied {
            // The digest at every snapshot made, so a follower installing it (at whatever
            // index) is compared against the replica that made it.
            self.applied_log.push_back(Applied {
                index,
                term,
                hash: xxhash_rust::xxh3::xxh3_64(snap.get_data()),
                digest: Some(self.engine.state_digest()),
                kind: AppliedKind::Compacted,
                now: None,
                replayed: index <= self.replay_through,
            });
        }
        self.raw.mut_store().compact(snap.clone());
        self.persist.push_back(Persist {
            ready: None,
            snapshot: Some((snap, SnapshotKind::Compaction)),
            ..Persist::default()
        });
    }
}
