//! What a node shows of itself: role, term, indexes, its replica's engine, its peers' progress.

use raft::StateRole;
use synap_core::{Engine, Millis};

use crate::node::Node;

impl Node {
    /// This node's id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The node's Raft role.
    #[must_use]
    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    /// True on the leader.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The current term.
    #[must_use]
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The leader this node knows of.
    #[must_use]
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != raft::INVALID_ID)
    }

    /// The highest index known committed.
    #[must_use]
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The last index applied to the engine.
    #[must_use]
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// The replica's engine (read it; never drive it directly).
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The highest `now` in the log as this node knows it.
    #[must_use]
    pub fn max_now(&self) -> Millis {
        self.max_now
    }

    /// The latest snapshot the node holds (index 0 when none).
    #[must_use]
    pub fn snapshot_index(&self) -> u64 {
        self.raw.store().snapshot_ref().get_metadata().index
    }

    /// Why the node stopped, if it did: state it cannot go on from. Every input is refused
    /// from then on (`poll_timeout` is `Millis(u64::MAX)`); the host should report the reason
    /// and take the node down. Causes:
    /// - a snapshot from the leader whose data does not decode (another snapshot version):
    ///   it is not handed out to persist, so a restart from the disk asks the leader again;
    /// - a committed entry that does not decode: it is stored already, so a restart fails
    ///   with the same error from [`Node::new`] (never a panic).
    #[must_use]
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Proposals waiting for their entry.
    #[must_use]
    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }

    /// On the leader, each voter's id and the highest log index known stored on it (the
    /// leader's own last index for itself); empty on other nodes.
    #[must_use]
    pub fn match_indexes(&self) -> Vec<(u64, u64)> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut out: Vec<(u64, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(&id, p)| (id, p.matched))
            .collect();
        out.sort_unstable();
        out
    }
}
