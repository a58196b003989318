//! # synap-cluster
//!
//! Replication for Synap (DESIGN.md §11): a sans-IO Raft node. [`Node`] wraps tikv's raft-rs
//! `RawNode` (consensus is raft-rs's, not ours) around the deterministic
//! [`synap_core::Engine`]. The replicated log holds engine turns ([`entry::Payload`]): a
//! `Turn {now, commands}` per batch of client requests (group commit), a `Tick {now}` when the
//! leader's clock reaches an engine deadline (followers run no timers of their own), and a
//! `NewTerm {now}` as each new leader's first entry, which drops the long-poll waiters and
//! streaming sessions of earlier terms. Every replica applies the committed entries to its
//! own engine, so replicas are equal at equal applied index.
//!
//! Like the engine, the node does no I/O, reads no clock and draws no OS randomness: time
//! comes in as [`Millis`] with every input, and the election jitter comes from a PRNG seeded
//! by [`NodeConfig::jitter_seed`] (raft-rs draws its own from an unseeded RNG; the node
//! replaces it on every change of term or role). So a test drives several nodes in one thread
//! and a seed replays exactly.
//!
//! ## Where to begin
//!
//! [`node`] has the API; [`entry`] the entry encoding; [`storage`] what the host persists and
//! hands back at start. The host's loop (the swarm in `tests/src/cluster_swarm/` is one):
//!
//! 1. Inputs, each with the host's `now`: [`Node::tick`] when [`Node::poll_timeout`] is due,
//!    [`Node::step`] for every Raft message received (only the types peers send, see
//!    [`from_peer`]), [`Node::propose`] for a turn of client commands (refused with
//!    [`Refused::NotLeader`] and the leader's id on a follower, [`Refused::Busy`] on a leader
//!    that cannot take proposals right now).
//! 2. After each input drain the outputs:
//!    - [`Node::poll_message`]: send to the peer named by `to`. Messages that must wait for
//!      persistence (a follower's votes and append answers) are only released here after
//!      their batch is confirmed, so every message handed out may be sent at once.
//!    - [`Node::poll_persist`]: store the [`Persist`] batch durably, in order (snapshot, then
//!      entries, then hard state; [`MemDisk::apply`] is the reference), then confirm it with
//!      [`Node::on_persisted`] (which may release more messages and answers).
//!    - [`Node::poll_answer`]: a proposal's [`Answer`], released only after its entry is
//!      committed and applied, with one reply per command; or [`Refused::Lost`] when the
//!      leader stepped down or the entry was overwritten first (outcome unknown: the client
//!      resends with its idempotency key). Never a false success: a proposal is matched to
//!      its entry by index and term.
//!    - [`Node::poll_event`]: engine events from applied entries (long-poll deliveries,
//!      session pushes, observability), the same on every replica.
//! 3. On restart, build the node again from what was stored ([`Recovered`]): it installs the
//!    snapshot's engine and applies the committed entries after it again; their events come
//!    tagged [`EntryEvent::replayed`] and must not be delivered again.
//! 4. [`Node::halted`]: a node that met state it cannot go on from (a snapshot from the
//!    leader that does not decode) stops and says why; the host reports it and takes the
//!    node down.
//!
//! Reads go through the log (a read command is proposed like a mutation and answered after
//! commit and apply), so a deposed or partitioned leader never answers from stale state.
//! Log compaction: every [`NodeConfig::snapshot_entries`] applied entries the node snapshots
//! its engine ([`snapshot`]) and drops the covered entries; a follower that is too far
//! behind is sent that snapshot by raft-rs.
//!
//! Membership ([`members`]): the founding voters are [`NodeConfig::voters`]; the leader adds a
//! node ([`Node::propose_change`]) as a learner, promotes it to voter once it caught up, and
//! removes nodes, one conf change at a time. The addresses of nodes added at runtime travel in
//! their conf changes and are kept, with the ids removed, in an [`AddressBook`] that is part
//! of every snapshot; [`Node::voters`], [`Node::learners`] and [`Node::membership_version`]
//! tell a host whom to connect to.

#![warn(missing_docs)]

mod apply;
pub mod entry;
mod getters;
pub mod members;
pub mod node;
mod ready;
pub mod snapshot;
pub mod storage;
#[cfg(test)]
mod tests;
mod types;

pub use members::{AddressBook, ChangeRefused, MemberAddrs, MemberChange};
pub use node::{
    Answer, Applied, AppliedKind, EntryEvent, Node, NodeConfig, ProposalId, Refused, TurnResult,
    from_peer,
};
pub use raft::StateRole;
pub use raft::eraftpb::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
pub use storage::{MemDisk, Persist, Recovered, SnapshotKind};
pub use synap_core::Millis;

/// A Raft message as bytes (raft-rs's protobuf codec), for a transport.
#[must_use]
pub fn encode_message(msg: &Message) -> Vec<u8> {
    protobuf::Message::write_to_bytes(msg).expect("raft messages encode")
}

/// A Raft message read from bytes.
pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
    <Message as protobuf::Message>::parse_from_bytes(bytes).map_err(|e| e.to_string())
}
