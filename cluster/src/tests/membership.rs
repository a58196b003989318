//! Membership changes: a node added to a running cluster starts as a learner, catches up (from
//! a snapshot, or from the log when nothing was compacted) and is promoted to voter; a removed
//! node no longer counts; both survive restarts (from the log and from snapshots); changes
//! go one at a time and bad ones are refused with nothing done; a node waiting to join never
//! campaigns.

use super::*;
use crate::{ChangeRefused, MemberAddrs, MemberChange};

fn addrs(id: u64) -> MemberAddrs {
    MemberAddrs {
        raft: format!("10.0.0.{id}:17001"),
        http: format!("10.0.0.{id}:15500"),
        rpc: None,
    }
}

fn add(id: u64) -> MemberChange {
    MemberChange::Add {
        id,
        addrs: addrs(id),
    }
}

impl Cluster {
    /// Starts node `id`, not among the founding voters, with an empty disk.
    fn join(&mut self, id: u64) {
        self.ids.push(id);
        self.disks.insert(id, MemDisk::default());
        self.skew.insert(id, 0);
        self.start(id);
    }

    fn change(&mut self, id: u64, change: MemberChange) -> Result<ProposalId, ChangeRefused> {
        let clock = self.clock(id);
        let r = self.node_mut(id).propose_change(clock, change);
        self.pump();
        r
    }

    /// Voters and learners, the same on every live node in `on`.
    fn membership(&self, on: &[u64]) -> (Vec<u64>, Vec<u64>) {
        let first = self.node(on[0]);
        let m = (first.voters(), first.learners());
        for &id in on {
            let n = self.node(id);
            assert_eq!((n.voters(), n.learners()), m, "node {id} disagrees");
        }
        m
    }

    fn publish_all(&mut self, l: u64, from: usize, n: usize) {
        for i in from..from + n {
            let p = self.propose(l, &[publish(&format!("k{i}"))]).unwrap();
            assert!(self.answer(l, p).unwrap().outcome.is_ok());
        }
    }
}

#[test]
fn a_new_node_learns_catches_up_and_is_promoted_and_keeps_its_place_across_restarts() {
    for snapshot_entries in [20, 0] {
        let mut c = Cluster::new(3, snapshot_entries);
        let l = c.elect();
        c.publish_all(l, 0, 30);
        let compacted = c.node(l).snapshot_index();
        assert_eq!(compacted > 0, snapshot_entries > 0);
        // Node 4 starts with the founding list and an empty log: it waits.
        c.join(4);
        c.run_ms(500);
        assert!(!c.node(4).is_member() && c.node(4).term() == 0);
        // Added while cut off: a learner on the others, which commit without it.
        c.cut.insert(4);
        let p = c.change(l, add(4)).unwrap();
        let done = c.answer(l, p).expect("answered").outcome.as_ref().unwrap();
        assert!(done.replies.is_empty());
        assert_eq!(c.membership(&[1, 2, 3]), (vec![1, 2, 3], vec![4]));
        c.publish_all(l, 30, 3);
        // Reachable again: it catches up and the leader promotes it.
        c.cut.clear();
        c.run_ms(1_000);
        assert_eq!(c.membership(&[1, 2, 3, 4]), (vec![1, 2, 3, 4], vec![]));
        if snapshot_entries > 0 {
            assert!(
                c.node(4).snapshot_index() > compacted,
                "seeded from a snapshot made after it was added"
            );
        } else {
            assert_eq!(c.node(4).snapshot_index(), 0, "caught up from the log");
        }
        for id in 1..=4 {
            assert_eq!(c.node(id).address_book().added.get(&4), Some(&addrs(4)));
        }
        c.digests_agree();
        // Four voters: a quorum is three. With one founder down and node 4 cut off, the
        // leader and one follower cannot commit; with node 4 back they can.
        let f = [1, 2, 3].into_iter().find(|&i| i != l).unwrap();
        c.crash(f);
        c.cut.insert(4);
        let p = c.propose(l, &[publish("quorum")]).unwrap();
        c.run_ms(300);
        assert!(c.answer(l, p).is_none(), "committed without node 4's vote");
        c.cut.clear();
        c.start(f);
        let l = c.elect();
        c.publish_all(l, 40, 3);
        // Every node restarts from its disk and keeps the membership.
        for id in 1..=4 {
            c.crash(id);
            c.start(id);
        }
        assert_eq!(c.membership(&[1, 2, 3, 4]), (vec![1, 2, 3, 4], vec![]));
        assert_eq!(c.node(2).address_book().added.get(&4), Some(&addrs(4)));
        let l = c.elect();
        c.publish_all(l, 50, 3);
        c.run_ms(500);
        c.digests_agree();
    }
}

#[test]
fn a_removed_node_no_longer_counts_and_stays_removed_across_restarts() {
    for snapshot_entries in [0, 5] {
        let mut c = Cluster::new(3, snapshot_entries);
        let l = c.elect();
        c.publish_all(l, 0, 4);
        let f = [1, 2, 3].into_iter().find(|&i| i != l).unwrap();
        let g = [1, 2, 3].into_iter().find(|&i| i != l && i != f).unwrap();
        let p = c.change(l, MemberChange::Remove { id: f }).unwrap();
        assert!(c.answer(l, p).unwrap().outcome.is_ok());
        let mut rest = vec![l, g];
        rest.sort_unstable();
        assert_eq!(c.membership(&[l, g]), (rest.clone(), vec![]));
        c.crash(f);
        // Two voters: both are needed. Without g nothing commits; with it, everything does.
        c.cut.insert(g);
        let p = c.propose(l, &[publish("needs-g")]).unwrap();
        c.run_ms(200);
        assert!(c.answer(l, p).is_none());
        c.cut.clear();
        let l = c.elect();
        c.publish_all(l, 10, 8);
        for id in [l, g] {
            c.crash(id);
            c.start(id);
        }
        assert_eq!(c.membership(&[l, g]), (rest.clone(), vec![]));
        let l = c.elect();
        assert!(c.node(l).address_book().removed.contains(&f));
        assert_eq!(
            c.change(l, MemberChange::Remove { id: f }),
            Err(ChangeRefused::NotMember { id: f })
        );
        assert_eq!(
            c.change(l, add(f)),
            Err(ChangeRefused::Removed { id: f }),
            "a removed id is not taken back"
        );
        c.publish_all(l, 20, 2);
        c.digests_agree();
    }
}

#[test]
fn changes_go_one_at_a_time_and_bad_ones_are_refused() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    let f = [1, 2, 3].into_iter().find(|&i| i != l).unwrap();
    assert_eq!(
        c.change(f, add(4)),
        Err(ChangeRefused::Refused(Refused::NotLeader {
            leader: Some(l)
        }))
    );
    c.hold = true;
    let first = c.change(l, add(4)).unwrap();
    assert_eq!(c.change(l, add(5)), Err(ChangeRefused::Pending));
    assert_eq!(
        c.change(l, MemberChange::Remove { id: f }),
        Err(ChangeRefused::Pending)
    );
    c.release();
    assert!(c.answer(l, first).unwrap().outcome.is_ok());
    assert_eq!(c.membership(&[1, 2, 3]).1, vec![4]);
    assert_eq!(
        c.change(l, MemberChange::Remove { id: l }),
        Err(ChangeRefused::Leader { id: l })
    );
    assert_eq!(
        c.change(l, MemberChange::Remove { id: 9 }),
        Err(ChangeRefused::NotMember { id: 9 })
    );
    assert_eq!(c.change(l, add(0)), Err(ChangeRefused::InvalidId));
    // A removed id is not taken back; a member's id is taken.
    let p = c.change(l, MemberChange::Remove { id: f }).unwrap();
    assert!(c.answer(l, p).unwrap().outcome.is_ok());
    assert_eq!(c.change(l, add(f)), Err(ChangeRefused::Removed { id: f }));
    let lower = *[1, 2, 3].iter().find(|&&i| i != l && i != f).unwrap();
    assert_eq!(
        c.change(l, add(lower)),
        Err(ChangeRefused::Exists { id: lower })
    );
    assert_eq!(c.change(l, add(4)), Err(ChangeRefused::Exists { id: 4 }));
    let empty = MemberChange::Add {
        id: 5,
        addrs: MemberAddrs {
            raft: String::new(),
            ..addrs(5)
        },
    };
    assert!(matches!(
        c.change(l, empty),
        Err(ChangeRefused::InvalidAddress(_))
    ));
    // Learners that never start do not hold commits up; the membership is bounded.
    for id in 5..=(crate::members::MAX_MEMBERS as u64 + 1) {
        let p = c.change(l, add(id)).unwrap();
        assert!(c.answer(l, p).unwrap().outcome.is_ok(), "adding {id}");
    }
    assert_eq!(
        c.change(l, add(99)),
        Err(ChangeRefused::TooMany {
            max: crate::members::MAX_MEMBERS
        })
    );
    // A learner that never started may be removed, which makes room.
    let p = c.change(l, MemberChange::Remove { id: 4 }).unwrap();
    assert!(c.answer(l, p).unwrap().outcome.is_ok());
    assert!(!c.node(l).learners().contains(&4));
    let top = crate::members::MAX_MEMBERS as u64 + 1;
    assert_eq!(c.change(l, add(4)), Err(ChangeRefused::Removed { id: 4 }));
    let p = c.change(l, MemberChange::Remove { id: 6 }).unwrap();
    assert!(c.answer(l, p).unwrap().outcome.is_ok());
    assert_eq!(
        c.change(l, add(top - 1)),
        Err(ChangeRefused::Exists { id: top - 1 })
    );
    assert_eq!(
        c.change(l, add(top + 100)).map(|_| ()),
        Ok(()),
        "room again after a removal"
    );
    // A new node's id is above every member's.
    let mut low = Cluster::new(3, 0);
    let ll = low.elect();
    let p = low.change(ll, add(9)).unwrap();
    assert!(low.answer(ll, p).unwrap().outcome.is_ok());
    assert_eq!(
        low.change(ll, add(5)),
        Err(ChangeRefused::IdTooLow { id: 5, highest: 9 })
    );
    // The last voter is the leader, and stays.
    let mut one = Cluster::new(1, 0);
    one.elect();
    assert_eq!(
        one.change(1, MemberChange::Remove { id: 1 }),
        Err(ChangeRefused::LastVoter { id: 1 })
    );
}

#[test]
fn a_node_waiting_to_join_never_campaigns() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    let term = c.node(l).term();
    c.join(4);
    c.run_ms(5_000);
    let n = c.node(4);
    assert_eq!(
        (n.role(), n.term(), n.is_member()),
        (StateRole::Follower, 0, false)
    );
    assert_eq!(c.leader(), Some(l));
    assert_eq!(c.node(l).term(), term);
}
