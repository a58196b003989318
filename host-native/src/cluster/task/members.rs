//! The cluster task's side of membership: proposing the changes asked over HTTP, answering
//! them once applied, following the membership (the transport's peers, the addresses clients
//! are sent to) and publishing it in the view.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use synap_cluster::{Answer, ChangeRefused, Refused};
use tracing::{info, warn};

use super::{ClusterTask, role_name};
use crate::cluster::members::{
    self, ChangeFailure, ChangeReply, ChangeRequest, Standing, address_clash, to_member_change,
};
use crate::cluster::{ClusterView, NotServing, PeerView};
use crate::handle::Failure;

impl ClusterTask {
    /// A membership change asked: proposed on the leader, refused elsewhere.
    pub(super) fn on_change(&mut self, req: ChangeRequest, reply: ChangeReply) {
        if !self.node.is_leader() {
            let _ = reply.send(Err(self.not_serving_change()));
            return;
        }
        if let ChangeRequest::Add(new) = &req {
            let others: Vec<_> = self
                .members
                .iter()
                .filter(|m| m.id != new.id)
                .cloned()
                .collect();
            if let Some(clash) = address_clash(&others, new) {
                let _ = reply.send(Err(ChangeFailure::AddressInUse(clash)));
                return;
            }
        }
        info!(change = ?req, "membership change asked");
        match self
            .node
            .propose_change(self.clock.now(), to_member_change(&req))
        {
            Ok(p) => {
                self.changes.insert(p, reply);
            }
            Err(ChangeRefused::Refused(_)) => {
                let _ = reply.send(Err(self.not_serving_change()));
            }
            Err(e) => {
                let _ = reply.send(Err(ChangeFailure::Refused(e)));
            }
        }
    }

    fn not_serving_change(&self) -> ChangeFailure {
        match self.not_serving() {
            Failure::Cluster(n) => ChangeFailure::Cluster(n),
            _ => ChangeFailure::Cluster(NotServing::NoLeader),
        }
    }

    /// The answer to a membership change, if `a` is one: true when it was.
    pub(super) fn on_change_answer(&mut self, a: &Answer) -> bool {
        let Some(reply) = self.changes.remove(&a.proposal) else {
            return false;
        };
        let outcome = match &a.outcome {
            Ok(turn) => Ok(turn.index),
            Err(Refused::Rejected { reason }) => Err(ChangeFailure::Rejected(reason.clone())),
            Err(_) => {
                let leader = self.leader_addr().filter(|l| l.id != self.cfg.node_id);
                Err(ChangeFailure::Cluster(NotServing::Lost(leader)))
            }
        };
        let _ = reply.send(outcome);
        true
    }

    /// Follows a membership the node changed (a conf change applied, a snapshot installed):
    /// the transport's peers and the members shown.
    pub(super) fn refresh_members(&mut self) {
        let version = self.node.membership_version();
        if self.seen_membership == Some(version) {
            return;
        }
        self.seen_membership = Some(version);
        self.members = members::members(&self.cfg, &self.node);
        let book = self.node.address_book();
        let peers = if book.removed.contains(&self.cfg.node_id) {
            // This node was removed: it has nobody to talk to (its peers refuse it anyway).
            std::collections::BTreeMap::new()
        } else {
            members::peers(&self.cfg, &self.members, book)
        };
        self.transport.set_peers(&peers, &book.removed);
        let member = self.node.is_member();
        info!(
            voters = ?self.node.voters(),
            learners = ?self.node.learners(),
            member,
            "cluster membership"
        );
        if self.was_member && !member {
            warn!(
                node_id = self.cfg.node_id,
                "this node was removed from the cluster: it takes no part any more; stop it"
            );
        }
        self.was_member = member;
    }

    pub(super) fn publish_view(&self) {
        if self.node.applied_index() > 0 || self.node.commit_index() > 0 {
            self.empty.store(false, Ordering::Release);
        }
        let role = role_name(self.node.role());
        let matched: HashMap<u64, u64> = self.node.match_indexes().into_iter().collect();
        let leader = self.node.leader();
        let me = self.cfg.node_id;
        let nodes = self
            .members
            .iter()
            .map(|m| PeerView {
                id: m.id,
                raft: m
                    .addrs
                    .as_ref()
                    .map_or(String::new(), |a| a.raft.to_string()),
                http: m
                    .addrs
                    .as_ref()
                    .map_or(String::new(), |a| format!("http://{}", a.http)),
                role: match m.standing {
                    _ if m.id == me => role,
                    _ if Some(m.id) == leader => "leader",
                    Standing::Voter => "follower",
                    Standing::Learner => "learner",
                },
                match_index: matched.get(&m.id).copied(),
                reachable: m.id == me || self.transport.reachable(m.id),
            })
            .collect();
        self.inbox.publish(ClusterView {
            node_id: me,
            role,
            term: self.node.term(),
            leader: self.leader_addr(),
            commit_index: self.node.commit_index(),
            applied_index: self.node.applied_index(),
            elections_total: self.elections,
            nodes,
            voters: self.node.voters(),
            learners: self.node.learners(),
            member: self.node.is_member(),
        });
    }
}
