//! The node's public data: its settings ([`NodeConfig`]) and what it hands out (answers to
//! proposals, applied records, engine events).

use synap_core::{Command, EngineConfig, Error, Event, Millis, Reply};

/// Settings of one node. Every node of a cluster has the same `voters`, `engine` and
/// `engine_seed` (so replicas draw the same message ids); `jitter_seed` differs per node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (not 0).
    pub id: u64,
    /// The founding voters: the membership the log starts from (later changes are in the log
    /// and in snapshots, see [`crate::members`]). A node not among them starts outside the
    /// membership and waits for the leader to add it.
    pub voters: Vec<u64>,
    /// The engine's config, the same on every node.
    pub engine: EngineConfig,
    /// The engine's seed, the same on every node.
    pub engine_seed: u64,
    /// Seed of the node's own PRNG (election jitter).
    pub jitter_seed: u64,
    /// Milliseconds per Raft tick.
    pub tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (jittered up to twice that).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries after which the node snapshots its engine and compacts its log; 0 never.
    pub snapshot_entries: u64,
    /// Hand out an [`Applied`] record per applied entry (for tests and metrics).
    pub observe_applied: bool,
    /// With `observe_applied`: include the engine's `state_digest` every this many indexes
    /// (0 never). The digest serializes the whole engine, so it is not free.
    pub digest_every: u64,
}

impl NodeConfig {
    /// Defaults: 100 ms ticks, elections after 10–20 ticks, heartbeats every 2, a snapshot
    /// every 10,000 entries.
    #[must_use]
    pub fn new(id: u64, voters: Vec<u64>, engine: EngineConfig, engine_seed: u64) -> Self {
        Self {
            id,
            voters,
            engine,
            engine_seed,
            jitter_seed: id,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_entries: 10_000,
            observe_applied: false,
            digest_every: 0,
        }
    }
}

/// Names one proposal on the node that took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId(pub u64);

/// Why a proposal was not (or may not have been) carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// This node is not the leader; `leader` is the one it knows of, if any. Nothing was done.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<u64>,
    },
    /// The node lost leadership (or its entry was overwritten) before the proposal was
    /// applied: it may or may not take effect. Resend it (with its idempotency key).
    #[error("proposal lost before commit; its outcome is unknown")]
    Lost {
        /// The leader this node knows of.
        leader: Option<u64>,
    },
    /// This node leads but Raft dropped the proposal (a leadership transfer is in progress).
    /// Nothing was done: resend it shortly, to this node or to the leader it then names.
    #[error("the leader is busy (leadership transfer); retry shortly")]
    Busy,
    /// A membership change Raft refused when its entry was applied (every replica refuses it
    /// alike). Nothing changed. The leader checks changes before it proposes them, so this
    /// answers only a change that raced with another one.
    #[error("the membership change was refused: {reason}")]
    Rejected {
        /// raft-rs's reason.
        reason: String,
    },
    /// The node stopped on an unrecoverable error (see [`crate::Node::halted`]). Nothing was done.
    #[error("the node stopped: {reason}")]
    Stopped {
        /// Why it stopped.
        reason: String,
    },
}

/// A proposal's committed and applied turn.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnResult {
    /// The log index of its entry.
    pub index: u64,
    /// The time the turn ran at.
    pub now: Millis,
    /// One result per command, in order.
    pub replies: Vec<Result<Reply, Error>>,
}

/// The answer to a proposal, released only after its entry is committed and applied (or
/// known lost).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The proposal.
    pub proposal: ProposalId,
    /// Its turn, or why it failed.
    pub outcome: Result<TurnResult, Refused>,
}

/// What an [`Applied`] record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppliedKind {
    /// A committed entry applied to the engine.
    Entry,
    /// A snapshot installed from the leader (the indexes up to it were skipped).
    Installed,
    /// A snapshot this node made of its engine at `index` (its log was compacted there).
    /// Nothing was applied: the record carries the engine's digest at that index.
    Compacted,
}

/// One entry applied to the engine, snapshot installed or snapshot made, when
/// `observe_applied` is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Log index.
    pub index: u64,
    /// The entry's term (the snapshot's for a snapshot).
    pub term: u64,
    /// xxh3 of the entry's data (of the snapshot's data for a snapshot).
    pub hash: u64,
    /// The engine's `state_digest` after it: every `digest_every` indexes, and always for
    /// snapshots (installed or made).
    pub digest: Option<u64>,
    /// Entry, installed snapshot or snapshot made.
    pub kind: AppliedKind,
    /// The entry's `now` (none for raft-rs's empty entries and for snapshots).
    pub now: Option<Millis>,
    /// The index is at or below the commit index the node recovered at start: this node
    /// applied it before its restart too (see [`EntryEvent::replayed`]).
    pub replayed: bool,
}

/// An engine event, from the entry applied at `index`.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryEvent {
    /// The index of the entry that produced it.
    pub index: u64,
    /// The event.
    pub event: Event,
    /// Produced again while a restarted node re-applied its committed log: `index` is at or
    /// below the commit index it recovered ([`crate::Recovered`]'s hard state, raised to the
    /// snapshot's index). The node produced (and handed out) this event before its restart,
    /// so a host must not deliver it again. Events of entries applied before the crash whose
    /// commit index was not yet stored come again untagged; they name waiters and sessions
    /// of the previous process, which a restarted host does not hold.
    pub replayed: bool,
}

/// A proposal waiting for its entry.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) index: u64,
    pub(crate) term: u64,
    /// A turn's time and commands as proposed, so the leader applies its own entry without
    /// decoding it again (the entry at this index and term is this proposal, by Raft's log
    /// matching); `None` for a membership change, or once taken.
    pub(crate) turn: Option<(Millis, Vec<Command>)>,
}
