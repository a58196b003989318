//! Membership: which nodes vote, which learn, and changing that one node at a time.
//!
//! The founding voters are [`crate::NodeConfig::voters`]: the membership a new cluster's log
//! starts from. Every later change is a raft-rs conf change (a `ConfChange`, one node per
//! change) proposed by the leader with [`crate::Node::propose_change`] and applied by every
//! replica when its entry commits, in log order, so replicas agree on the membership at equal
//! applied index:
//!
//! - **Adding a node** makes it a *learner*: the leader replicates to it (a snapshot, then the
//!   log) but its vote does not count yet, so a node that is still far behind cannot stall
//!   commits. Once its log is within [`PROMOTE_LAG`] entries of the commit index (and raft-rs
//!   is streaming entries to it), the leader promotes it to *voter* with a second conf change
//!   of its own.
//! - **Removing a node** takes it out of the voters (or learners). The leader refuses to
//!   remove itself ([`ChangeRefused::Leader`]: hand leadership over first), and so the last
//!   voter ([`ChangeRefused::LastVoter`]).
//! - **One at a time**: while a conf change is proposed and not applied, another is refused
//!   ([`ChangeRefused::Pending`]). A promotion counts as a change.
//! - **Ids only grow**: a new node's id is above every member's ([`ChangeRefused::IdTooLow`]),
//!   and a removed id is never taken back ([`ChangeRefused::Removed`]).
//!
//! A node added at runtime is not in the founding list, so its addresses travel in its conf
//! change (the `context` bytes: [`MemberAddrs`] in MessagePack) and are kept in the replica's
//! [`AddressBook`], which is part of every snapshot (see [`crate::snapshot`]); the voters and
//! learners themselves are raft-rs's `ConfState`, kept in the snapshot's metadata. A restart
//! rebuilds both: from the snapshot, then by applying the conf changes logged after it again.
//!
//! A node that is not among the founding voters starts outside the membership: raft-rs never
//! lets it campaign, and it waits for the leader to send it the snapshot (or the log) that
//! names it.

use std::collections::{BTreeMap, BTreeSet};

use protobuf::Message as _;
use raft::ProgressState;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType};
use serde::{Deserialize, Serialize};
use synap_core::Millis;

use crate::entry::Origin;
use crate::node::{Answer, Node, Pending, ProposalId, Refused, TurnResult};

/// Most members (voters and learners) a cluster may have.
pub const MAX_MEMBERS: usize = 16;
/// Most removed ids remembered (beyond it the lowest are forgotten); a removed id is not
/// taken back.
pub const MAX_REMOVED: usize = 256;
/// A learner whose log is within this many entries of the commit index is promoted to voter.
pub const PROMOTE_LAG: u64 = 64;
/// Longest address text a member may carry.
pub const MAX_ADDR_LEN: usize = 256;
/// Version byte of a conf change's context.
const CONTEXT_VERSION: u8 = 1;

/// Where a node added at runtime listens, as its host wrote it (the node does not read it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddrs {
    /// Its Raft address.
    pub raft: String,
    /// Its HTTP address.
    pub http: String,
    /// Its SynapRPC address, if it serves SynapRPC.
    pub rpc: Option<String>,
}

/// The replicated address book: the addresses of nodes added at runtime, and the ids removed
/// (never taken back: a replacement node takes a new id). Part of every snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressBook {
    /// Nodes added at runtime and still members, with their addresses.
    pub added: BTreeMap<u64, MemberAddrs>,
    /// Ids removed from the cluster (at most [`MAX_REMOVED`]: beyond it the lowest are
    /// forgotten).
    pub removed: BTreeSet<u64>,
}

impl AddressBook {
    fn add(&mut self, id: u64, addrs: Option<MemberAddrs>) {
        if let Some(a) = addrs {
            self.added.insert(id, a);
        }
    }

    fn remove(&mut self, id: u64) {
        self.added.remove(&id);
        self.removed.insert(id);
        while self.removed.len() > MAX_REMOVED {
            self.removed.pop_first();
        }
    }
}

/// A membership change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Add node `id` (as a learner, promoted to voter once caught up).
    Add {
        /// The new node's id.
        id: u64,
        /// Where it listens.
        addrs: MemberAddrs,
    },
    /// Remove node `id` (a voter or a learner).
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// Why a membership change was not proposed. Nothing was done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    /// Not the leader, the leader is busy (a leadership transfer), or the node stopped.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// A conf change is proposed and not yet applied (or a new leader has not yet applied
    /// its log): retry once it is.
    #[error("a membership change is in progress; retry once it is applied")]
    Pending,
    /// 0 is not a node id.
    #[error("0 is not a node id")]
    InvalidId,
    /// An address is empty or too long.
    #[error("{0}")]
    InvalidAddress(String),
    /// The node is a member already.
    #[error("node {id} is a member already")]
    Exists {
        /// The node.
        id: u64,
    },
    /// The id was removed from the cluster; a new node takes a new id.
    #[error("node {id} was removed from the cluster; a new node takes a new id")]
    Removed {
        /// The node.
        id: u64,
    },
    /// A new node's id must be above every member's: then every member dials it (the lower
    /// id of a pair dials), and it needs to know nobody's address before it has the state.
    #[error("node {id}: a new node takes an id above every member's (above {highest})")]
    IdTooLow {
        /// The node.
        id: u64,
        /// The highest member id.
        highest: u64,
    },
    /// The node is not a member.
    #[error("node {id} is not a member of the cluster")]
    NotMember {
        /// The node.
        id: u64,
    },
    /// The node to remove is the leader: hand leadership to another voter first.
    #[error("node {id} is the leader: transfer leadership to another voter first")]
    Leader {
        /// The node.
        id: u64,
    },
    /// The node to remove is the last voter (so the leader, with nobody to hand over to).
    #[error("node {id} is the last voter; a cluster keeps at least one")]
    LastVoter {
        /// The node.
        id: u64,
    },
    /// The cluster has the most members it may have.
    #[error("the cluster has {max} members, the most it may have")]
    TooMany {
        /// [`MAX_MEMBERS`].
        max: usize,
    },
}

/// What a conf change carries besides the change: who proposed it (to answer the proposal)
/// and, for an added node, its addresses.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChangeContext {
    origin: Option<Origin>,
    addrs: Option<MemberAddrs>,
}

impl ChangeContext {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![CONTEXT_VERSION];
        rmp_serde::encode::write_named(&mut out, self).expect("a context encodes");
        out
    }

    /// Empty bytes are an empty context (a promotion, or raft-rs's own entries).
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            None => Ok(Self::default()),
            Some((&CONTEXT_VERSION, body)) => {
                rmp_serde::from_slice(body).map_err(|e| format!("undecodable conf change: {e}"))
            }
            Some((v, _)) => Err(format!(
                "conf change context version {v}, this node reads {CONTEXT_VERSION}"
            )),
        }
    }
}

fn check_addrs(a: &MemberAddrs) -> Result<(), ChangeRefused> {
    let fields = [
        ("raft", Some(&a.raft)),
        ("http", Some(&a.http)),
        ("rpc", a.rpc.as_ref()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            if v.is_empty() || v.len() > MAX_ADDR_LEN {
                return Err(ChangeRefused::InvalidAddress(format!(
                    "{name} must be 1 to {MAX_ADDR_LEN} characters"
                )));
            }
        }
    }
    Ok(())
}

impl Node {
    /// Proposes a membership change (on the leader): one node added as a learner, or one
    /// removed. Answered through `poll_answer` like a turn (with no replies) once its entry
    /// is applied, or `Refused::Lost` / `Refused::Rejected`. Refused at once, with nothing
    /// done, when another change is pending or the change is not valid now (see
    /// [`ChangeRefused`]).
    pub fn propose_change(
        &mut self,
        now: Millis,
        change: MemberChange,
    ) -> Result<ProposalId, ChangeRefused> {
        self.observe_clock(now);
        if let Some(reason) = &self.halted {
            let reason = reason.clone();
            return Err(Refused::Stopped { reason }.into());
        }
        if !self.is_leader() {
            let leader = self.leader();
            return Err(Refused::NotLeader { leader }.into());
        }
        let (id, kind, addrs) = match change {
            MemberChange::Add { id, addrs } => {
                check_addrs(&addrs)?;
                (id, ConfChangeType::AddLearnerNode, Some(addrs))
            }
            MemberChange::Remove { id } => (id, ConfChangeType::RemoveNode, None),
        };
        if id == 0 {
            return Err(ChangeRefused::InvalidId);
        }
        if self.raw.raft.has_pending_conf() {
            return Err(ChangeRefused::Pending);
        }
        self.check_change(id, kind)?;
        let seq = self.next_seq;
        let ctx = ChangeContext {
            origin: Some(Origin {
                node: self.cfg.id,
                seq,
            }),
            addrs,
        };
        let mut cc = ConfChange {
            node_id: id,
            context: ctx.encode().into(),
            ..ConfChange::default()
        };
        cc.set_change_type(kind);
        if self.raw.propose_conf_change(Vec::new(), cc).is_err() {
            return Err(Refused::Busy.into());
        }
        let last = self.raw.raft.raft_log.last_index();
        if self.raw.raft.pending_conf_index != last {
            // raft-rs appended an empty entry in its place (it saw a change pending).
            self.after_input();
            return Err(ChangeRefused::Pending);
        }
        self.next_seq += 1;
        let term = self.raw.raft.term;
        self.pending.insert(
            seq,
            Pending {
                index: last,
                term,
                turn: None,
            },
        );
        self.after_input();
        Ok(ProposalId(seq))
    }

    /// Whether the change of node `id` is valid against the membership now.
    fn check_change(&self, id: u64, kind: ConfChangeType) -> Result<(), ChangeRefused> {
        let (voters, learners) = (self.voters(), self.learners());
        let member = voters.contains(&id) || learners.contains(&id);
        match kind {
            ConfChangeType::AddLearnerNode | ConfChangeType::AddNode => {
                if member {
                    return Err(ChangeRefused::Exists { id });
                }
                if self.book.removed.contains(&id) {
                    return Err(ChangeRefused::Removed { id });
                }
                let highest = voters.iter().chain(&learners).copied().max().unwrap_or(0);
                if id < highest {
                    return Err(ChangeRefused::IdTooLow { id, highest });
                }
                if voters.len() + learners.len() >= MAX_MEMBERS {
                    return Err(ChangeRefused::TooMany { max: MAX_MEMBERS });
                }
            }
            ConfChangeType::RemoveNode => {
                if !member {
                    return Err(ChangeRefused::NotMember { id });
                }
                if voters == [id] {
                    return Err(ChangeRefused::LastVoter { id });
                }
                if id == self.cfg.id {
                    return Err(ChangeRefused::Leader { id });
                }
            }
        }
        Ok(())
    }

    /// Applies a committed conf change entry: raft-rs's membership, the address book, and
    /// the answer to its proposal. A change raft-rs refuses changes nothing (on every
    /// replica alike). A conf change that does not decode is a corrupt entry (`Err`).
    pub(crate) fn apply_conf_entry(&mut self, e: &Entry) -> Result<(), String> {
        let bad = |err: protobuf::ProtobufError| format!("undecodable conf change: {err}");
        let (ctx, applied) = if e.get_entry_type() == EntryType::EntryConfChange {
            let cc = ConfChange::parse_from_bytes(&e.data).map_err(bad)?;
            let ctx = ChangeContext::decode(&cc.context)?;
            let changes = vec![(cc.get_change_type(), cc.node_id)];
            (ctx, self.raw.apply_conf_change(&cc).map(|cs| (cs, changes)))
        } else {
            let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(bad)?;
            let ctx = ChangeContext::decode(&cc.context)?;
            let changes = cc
                .get_changes()
                .iter()
                .map(|c| (c.get_change_type(), c.node_id))
                .collect();
            (ctx, self.raw.apply_conf_change(&cc).map(|cs| (cs, changes)))
        };
        let outcome = match applied {
            Ok((cs, changes)) => {
                self.raw.mut_store().set_conf_state(cs);
                for (kind, id) in changes {
                    match kind {
                        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                            self.book.add(id, ctx.addrs.clone());
                        }
                        ConfChangeType::RemoveNode => self.book.remove(id),
                    }
                }
                self.membership_version += 1;
                // A node added after the last snapshot cannot be seeded from it: make another.
                self.snapshot_behind |= !self.snapshot_names_every_member();
                Ok(())
            }
            Err(err) => Err(Refused::Rejected {
                reason: err.to_string(),
            }),
        };
        if let Some(proposal) = self.take_pending(ctx.origin, e.index, e.term) {
            let outcome = outcome.map(|()| TurnResult {
                index: e.index,
                now: self.max_now,
                replies: Vec::new(),
            });
            self.answers.push_back(Answer { proposal, outcome });
        }
        Ok(())
    }

    /// On the leader with no change pending: promotes the first learner whose log caught up
    /// (raft-rs streams entries to it and it is within [`PROMOTE_LAG`] of the commit index).
    pub(crate) fn maybe_promote(&mut self) -> bool {
        let no_learner = self.raw.raft.prs().conf().learners().is_empty();
        if !self.is_leader() || no_learner || self.raw.raft.has_pending_conf() {
            return false;
        }
        let committed = self.raw.raft.raft_log.committed;
        let prs = self.raw.raft.prs();
        let ready = self.learners().into_iter().find(|&id| {
            prs.get(id).is_some_and(|pr| {
                pr.state == ProgressState::Replicate
                    && pr.recent_active
                    && pr.matched + PROMOTE_LAG >= committed
            })
        });
        let Some(id) = ready else {
            return false;
        };
        let mut cc = ConfChange {
            node_id: id,
            ..ConfChange::default()
        };
        cc.set_change_type(ConfChangeType::AddNode);
        self.raw.propose_conf_change(Vec::new(), cc).is_ok()
    }

    // ---- getters ------------------------------------------------------------------------

    /// The voters, in id order (as this replica knows them: the founding voters until it
    /// learns of changes).
    #[must_use]
    pub fn voters(&self) -> Vec<u64> {
        let mut v = self.raw.raft.prs().conf().to_conf_state().voters;
        v.sort_unstable();
        v
    }

    /// The learners (added, not yet promoted), in id order.
    #[must_use]
    pub fn learners(&self) -> Vec<u64> {
        let mut v = self.raw.raft.prs().conf().to_conf_state().learners;
        v.sort_unstable();
        v
    }

    /// Whether this node is a voter or a learner (false while a new node waits for the
    /// leader, and after it was removed).
    #[must_use]
    pub fn is_member(&self) -> bool {
        let cs = self.raw.raft.prs().conf().to_conf_state();
        cs.voters.contains(&self.cfg.id) || cs.learners.contains(&self.cfg.id)
    }

    /// The addresses of the nodes added at runtime, and the ids removed.
    #[must_use]
    pub fn address_book(&self) -> &AddressBook {
        &self.book
    }

    /// Counts membership changes this replica applied or installed (from a snapshot): a host
    /// compares it to know when to look at the membership again.
    #[must_use]
    pub fn membership_version(&self) -> u64 {
        self.membership_version
    }

    /// Whether every member of the current membership is in the stored snapshot's (a
    /// snapshot that misses one cannot seed it: raft-rs refuses a snapshot that does not
    /// name the node).
    pub(crate) fn snapshot_names_every_member(&self) -> bool {
        let snap = self
            .raw
            .store()
            .snapshot_ref()
            .get_metadata()
            .get_conf_state();
        let known = |id: &u64| snap.voters.contains(id) || snap.learners.contains(id);
        let cs = self.raw.raft.prs().conf().to_conf_state();
        cs.voters.iter().chain(&cs.learners).all(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_round_trip_and_bad_ones_are_refused() {
        let ctx = ChangeContext {
            origin: Some(Origin { node: 1, seq: 9 }),
            addrs: Some(MemberAddrs {
                raft: "127.0.0.1:1".into(),
                http: "127.0.0.1:2".into(),
                rpc: None,
            }),
        };
        let back = ChangeContext::decode(&ctx.encode()).unwrap();
        assert_eq!(back.origin, ctx.origin);
        assert_eq!(back.addrs, ctx.addrs);
        let empty = ChangeContext::decode(&[]).unwrap();
        assert!(empty.origin.is_none() && empty.addrs.is_none());
        assert!(ChangeContext::decode(&[7, 1]).is_err());
        assert!(ChangeContext::decode(&[CONTEXT_VERSION, 0xc1]).is_err());
    }

    #[test]
    fn the_removed_ids_are_bounded() {
        let mut book = AddressBook::default();
        for id in 1..=(MAX_REMOVED as u64 + 10) {
            book.remove(id);
        }
        assert_eq!(book.removed.len(), MAX_REMOVED);
        assert!(
            !book.removed.contains(&1),
            "the lowest ids are forgotten first"
        );
    }
}
