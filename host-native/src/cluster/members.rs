//! The cluster's members as the host sees them, and the membership changes asked over HTTP.
//!
//! A member's addresses: a founding node's from its `cluster.nodes` entry (so moving a founding
//! node is an edit of the file, as before); a node added at runtime from the replicated address
//! book (what `POST /cluster/nodes` said, carried in its conf change), or, before the book
//! names it, from its `join: true` entry.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use synap_cluster::{AddressBook, ChangeRefused, MemberAddrs, Node};
use tokio::sync::oneshot;

use super::NotServing;
use super::config::{ClusterConfig, NodeAddrs};

/// A member's place in the membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Voter,
    Learner,
}

/// One member, with its addresses when they are known.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) id: u64,
    pub(crate) standing: Standing,
    pub(crate) addrs: Option<NodeAddrs>,
}

/// The members this replica knows, in id order.
pub(crate) fn members(cfg: &ClusterConfig, node: &Node) -> Vec<Member> {
    let book = node.address_book();
    let voters = node.voters().into_iter().map(|id| (id, Standing::Voter));
    let learners = node
        .learners()
        .into_iter()
        .map(|id| (id, Standing::Learner));
    let mut all: Vec<Member> = voters
        .chain(learners)
        .map(|(id, standing)| Member {
            id,
            standing,
            addrs: addrs_of(cfg, book, id),
        })
        .collect();
    all.sort_by_key(|m| m.id);
    all
}

/// Where node `id` listens: the founding entry, the book, or its own `join` entry.
pub(crate) fn addrs_of(cfg: &ClusterConfig, book: &AddressBook, id: u64) -> Option<NodeAddrs> {
    let entry = cfg.node(id);
    if let Some(n) = entry.filter(|n| !n.join) {
        return Some(n.clone());
    }
    if let Some(a) = book.added.get(&id) {
        let parse = |s: &str| s.parse::<SocketAddr>().ok();
        let rpc = a.rpc.as_deref().and_then(parse);
        if let (Some(raft), Some(http)) = (parse(&a.raft), parse(&a.http)) {
            return Some(NodeAddrs {
                id,
                raft,
                http,
                rpc,
                join: true,
            });
        }
    }
    entry.cloned()
}

/// The transport's peers: every member but `me`, and every other node of the config file
/// not removed. The file's nodes are there for a node that knows too little of the
/// membership (it restarted with an empty data directory): it reaches a node added since
/// (which it must dial when its own id is lower) through that node's `join` entry.
pub(crate) fn peers(
    cfg: &ClusterConfig,
    members: &[Member],
    book: &AddressBook,
) -> BTreeMap<u64, Option<SocketAddr>> {
    let me = cfg.node_id;
    let mut out: BTreeMap<u64, Option<SocketAddr>> = members
        .iter()
        .filter(|m| m.id != me)
        .map(|m| (m.id, m.addrs.as_ref().map(|a| a.raft)))
        .collect();
    for n in &cfg.nodes {
        if n.id != me && !book.removed.contains(&n.id) {
            out.entry(n.id).or_insert(Some(n.raft));
        }
    }
    out
}

/// A membership change asked through HTTP.
#[derive(Debug)]
pub(crate) enum ChangeRequest {
    /// `POST /cluster/nodes`: add this node (as a learner first).
    Add(NodeAddrs),
    /// `DELETE /cluster/nodes/{id}`.
    Remove(u64),
}

/// Why a membership change was not made.
#[derive(Debug)]
pub(crate) enum ChangeFailure {
    /// Not the leader, no leader, or leadership changed before the change applied (its
    /// outcome is then unknown).
    Cluster(NotServing),
    /// The node refused it before proposing (nothing was done).
    Refused(ChangeRefused),
    /// An address is a member's already.
    AddressInUse(String),
    /// Raft refused it when it applied (nothing changed).
    Rejected(String),
    /// The cluster task is gone.
    Unavailable,
}

/// Where the outcome of a change goes: the index of its entry, or why not.
pub(crate) type ChangeReply = oneshot::Sender<Result<u64, ChangeFailure>>;

/// A change as the node takes it.
pub(crate) fn to_member_change(req: &ChangeRequest) -> synap_cluster::MemberChange {
    match req {
        ChangeRequest::Add(a) => synap_cluster::MemberChange::Add {
            id: a.id,
            addrs: MemberAddrs {
                raft: a.raft.to_string(),
                http: a.http.to_string(),
                rpc: a.rpc.map(|r| r.to_string()),
            },
        },
        ChangeRequest::Remove(id) => synap_cluster::MemberChange::Remove { id: *id },
    }
}

/// The member already at one of `new`'s addresses, as a sentence.
pub(crate) fn address_clash(members: &[Member], new: &NodeAddrs) -> Option<String> {
    let mine = [Some(new.raft), Some(new.http), new.rpc];
    members.iter().find_map(|m| {
        let a = m.addrs.as_ref()?;
        let theirs = [Some(a.raft), Some(a.http), a.rpc];
        let shared = mine
            .iter()
            .flatten()
            .find(|x| theirs.iter().flatten().any(|y| y == *x))?;
        Some(format!("{shared} is node {}'s address", m.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(id: u64, port: u16) -> NodeAddrs {
        NodeAddrs {
            id,
            raft: SocketAddr::from(([127, 0, 0, 1], port)),
            http: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            rpc: None,
            join: true,
        }
    }

    #[test]
    fn a_clash_names_the_member_and_the_address() {
        let members = vec![Member {
            id: 2,
            standing: Standing::Voter,
            addrs: Some(addrs(2, 100)),
        }];
        assert!(address_clash(&members, &addrs(4, 200)).is_none());
        let e = address_clash(&members, &addrs(4, 101)).unwrap();
        assert!(e.contains("127.0.0.1:101") && e.contains("node 2"), "{e}");
    }

    #[test]
    fn founding_entries_win_then_the_book_then_a_join_entry() {
        let yaml = "secret: s\nnodes:\n  - { id: 1, raft: 127.0.0.1:1, http: 127.0.0.1:2 }\n  - { id: 4, raft: 127.0.0.1:7, http: 127.0.0.1:8, join: true }\n";
        let section = serde_norway::from_str(yaml).unwrap();
        let cfg = ClusterConfig::resolve(section, Some(1), None).unwrap();
        let mut book = AddressBook::default();
        book.added.insert(
            1,
            MemberAddrs {
                raft: "127.0.0.1:50".into(),
                http: "127.0.0.1:51".into(),
                rpc: None,
            },
        );
        assert_eq!(addrs_of(&cfg, &book, 1).unwrap().raft.port(), 1);
        assert_eq!(addrs_of(&cfg, &book, 4).unwrap().raft.port(), 7);
        book.added.insert(
            4,
            MemberAddrs {
                raft: "127.0.0.1:60".into(),
                http: "127.0.0.1:61".into(),
                rpc: Some("127.0.0.1:62".into()),
            },
        );
        let four = addrs_of(&cfg, &book, 4).unwrap();
        assert_eq!((four.raft.port(), four.rpc.unwrap().port()), (60, 62));
        assert!(addrs_of(&cfg, &book, 9).is_none());
    }

    #[test]
    fn peers_are_the_members_and_the_files_nodes_not_removed() {
        let yaml = "secret: s\nnodes:\n  - { id: 1, raft: 127.0.0.1:1, http: 127.0.0.1:2 }\n  - { id: 2, raft: 127.0.0.1:3, http: 127.0.0.1:4 }\n  - { id: 5, raft: 127.0.0.1:7, http: 127.0.0.1:8, join: true }\n";
        let cfg = ClusterConfig::resolve(serde_norway::from_str(yaml).unwrap(), Some(1), None);
        let cfg = cfg.unwrap();
        let member = |id, port| Member {
            id,
            standing: Standing::Voter,
            addrs: Some(addrs(id, port)),
        };
        let members = vec![member(1, 100), member(5, 500), member(6, 600)];
        let mut book = AddressBook::default();
        book.removed.insert(2);
        let p = peers(&cfg, &members, &book);
        let ports: Vec<(u64, u16)> = p.iter().map(|(&id, a)| (id, a.unwrap().port())).collect();
        // Not itself, not the removed node 2; node 5 at its replicated address.
        assert_eq!(ports, vec![(5, 500), (6, 600)]);
        book.removed.clear();
        assert!(peers(&cfg, &members, &book).contains_key(&2));
    }
}
