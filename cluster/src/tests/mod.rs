//! Node basics on a perfect in-thread network: elections, commits, refusals, answers only
//! after commit, lost proposals, time across a failover, the new term's consumer drop,
//! restarts from the stored disk (replayed events tagged, a stored commit index below the
//! snapshot's), catching up from a snapshot (and stopping, not panicking, on one that does
//! not decode), a busy leader during a leadership transfer, and message types peers may not
//! send.
//!
//! Method: `Cluster` drives a few nodes the way a host does (persist every batch at once,
//! deliver every message at once unless a node is cut off), on a fake clock with a per-node
//! skew. The wide, faulty version of this is the cluster swarm in `tests/`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use synap_core::{Command, EngineConfig, Millis, PublishMessage, Reply, json_message};

use crate::entry::{Origin, encode_turn};
use crate::{
    Answer, Applied, AppliedKind, EntryEvent, MemDisk, Message, MessageType, Node, NodeConfig,
    ProposalId, Refused, StateRole,
};

struct Cluster {
    ids: Vec<u64>,
    /// The founding voters (every node's `NodeConfig::voters`); `ids` grows as nodes join.
    founding: Vec<u64>,
    nodes: BTreeMap<u64, Option<Node>>,
    disks: BTreeMap<u64, MemDisk>,
    now: u64,
    skew: BTreeMap<u64, u64>,
    /// Nodes whose messages (both ways) are dropped.
    cut: BTreeSet<u64>,
    /// Hold every message in flight instead of delivering it.
    hold: bool,
    held: VecDeque<Message>,
    answers: BTreeMap<(u64, ProposalId), Answer>,
    /// Every event and applied record each node handed out.
    events: BTreeMap<u64, Vec<EntryEvent>>,
    applied: BTreeMap<u64, Vec<Applied>>,
    /// Replace the data of every snapshot message in flight with undecodable bytes.
    corrupt_snapshots: bool,
    snapshot_entries: u64,
}

fn config(id: u64, ids: &[u64], snapshot_entries: u64) -> NodeConfig {
    let engine = EngineConfig {
        observe: true,
        ..EngineConfig::default()
    };
    let mut cfg = NodeConfig::new(id, ids.to_vec(), engine, 7);
    cfg.snapshot_entries = snapshot_entries;
    cfg.observe_applied = true;
    cfg.digest_every = 1;
    cfg
}

impl Cluster {
    fn new(n: u64, snapshot_entries: u64) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let mut c = Self {
            nodes: BTreeMap::new(),
            disks: ids.iter().map(|&i| (i, MemDisk::default())).collect(),
            now: 1_000,
            skew: ids.iter().map(|&i| (i, 0)).collect(),
            cut: BTreeSet::new(),
            hold: false,
            held: VecDeque::new(),
            answers: BTreeMap::new(),
            events: BTreeMap::new(),
            applied: BTreeMap::new(),
            corrupt_snapshots: false,
            snapshot_entries,
            founding: ids.clone(),
            ids,
        };
        for id in c.ids.clone() {
            c.start(id);
        }
        c
    }

    fn clock(&self, id: u64) -> Millis {
        Millis(self.now + self.skew[&id])
    }

    fn start(&mut self, id: u64) {
        let cfg = config(id, &self.founding, self.snapshot_entries);
        let node = Node::new(cfg, self.disks[&id].recovered(), self.clock(id)).unwrap();
        self.nodes.insert(id, Some(node));
        self.pump();
    }

    fn crash(&mut self, id: u64) {
        self.nodes.insert(id, None);
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes[&id].as_ref().expect("node is up")
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .as_mut()
            .expect("node is up")
    }

    /// Drains every node's outputs until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut msgs = Vec::new();
            for id in self.ids.clone() {
                let clock = self.clock(id);
                let Some(Some(node)) = self.nodes.get_mut(&id) else {
                    continue;
                };
                let disk = self.disks.get_mut(&id).unwrap();
                while let Some(batch) = node.poll_persist() {
                    disk.apply(&batch);
                    if let Some(n) = batch.ready {
                        node.on_persisted(clock, n);
                    }
                }
                while let Some(m) = node.poll_message() {
                    msgs.push(m);
                }
                while let Some(a) = node.poll_answer() {
                    self.answers.insert((id, a.proposal), a);
                }
                while let Some(e) = node.poll_event() {
                    self.events.entry(id).or_default().push(e);
                }
                while let Some(a) = node.poll_applied() {
                    self.applied.entry(id).or_default().push(a);
                }
            }
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if self.cut.contains(&m.from) || self.cut.contains(&m.to) {
                    continue;
                }
                if self.hold {
                    self.held.push_back(m);
                    continue;
                }
                self.deliver(m);
            }
        }
    }

    fn deliver(&mut self, mut m: Message) {
        if self.corrupt_snapshots && m.get_msg_type() == MessageType::MsgSnapshot {
            m.mut_snapshot().set_data(vec![99, 1, 2, 3].into());
        }
        if !self.skew.contains_key(&m.to) {
            return; // a member that never started
        }
        let clock = self.clock(m.to);
        if let Some(Some(node)) = self.nodes.get_mut(&m.to) {
            let _ = node.step(clock, m);
        }
    }

    fn release(&mut self) {
        self.hold = false;
        while let Some(m) = self.held.pop_front() {
            self.deliver(m);
        }
        self.pump();
    }

    fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms / 10 {
            self.now += 10;
            for id in self.ids.clone() {
                let clock = self.clock(id);
                if let Some(Some(node)) = self.nodes.get_mut(&id) {
                    node.tick(clock);
                }
            }
            self.pump();
        }
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|(&id, n)| n.as_ref().filter(|n| n.is_leader()).map(|_| id))
            .filter(|id| !self.cut.contains(id))
            .collect();
        assert!(leaders.len() <= 1, "two leaders: {leaders:?}");
        leaders.first().copied()
    }

    fn elect(&mut self) -> u64 {
        for _ in 0..100 {
            self.run_ms(100);
            if let Some(l) = self.leader() {
                return l;
            }
        }
        panic!("no leader elected");
    }

    fn propose(&mut self, id: u64, cmds: &[Command]) -> Result<ProposalId, Refused> {
        let clock = self.clock(id);
        let r = self.node_mut(id).propose(clock, cmds);
        self.pump();
        r
    }

    fn answer(&self, id: u64, p: ProposalId) -> Option<&Answer> {
        self.answers.get(&(id, p))
    }

    fn digests_agree(&self) {
        let live: Vec<&Node> = self.nodes.values().flatten().collect();
        let applied = live[0].applied_index();
        for n in &live {
            assert_eq!(n.applied_index(), applied, "{n:?}");
            assert_eq!(n.engine().state_digest(), live[0].engine().state_digest());
        }
    }
}

fn publish(key: &str) -> Command {
    let mut message = json_message(serde_json::json!({ "k": key }));
    message.idempotency_key = Some(key.to_owned());
    Command::Publish {
        queue: "q".into(),
        message: PublishMessage { ..message },
    }
}

fn published(a: &Answer) -> synap_core::Published {
    let turn = a.outcome.as_ref().expect("committed");
    match &turn.replies[0] {
        Ok(Reply::Published(p)) => p.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_single_node_commits_its_own_proposals() {
    let mut c = Cluster::new(1, 0);
    let l = c.elect();
    assert_eq!(l, 1);
    let p = c.propose(1, &[publish("a"), publish("b")]).unwrap();
    let a = c.answer(1, p).expect("answered");
    let turn = a.outcome.as_ref().unwrap();
    assert_eq!(turn.replies.len(), 2);
    assert!(
        turn.replies
            .iter()
            .all(|r| matches!(r, Ok(Reply::Published(_))))
    );
    assert_eq!(c.node(1).commit_index(), turn.index);
}

#[test]
fn three_nodes_elect_one_leader_and_replicate_turns() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    let p = c.propose(l, &[publish("a")]).unwrap();
    let first = published(c.answer(l, p).unwrap());
    // The same key again answers with the first publish: the dedup state is replicated.
    let p = c.propose(l, &[publish("a")]).unwrap();
    let again = published(c.answer(l, p).unwrap());
    assert_eq!(again.message_id, first.message_id);
    assert!(again.duplicate);
    c.run_ms(500);
    c.digests_agree();
}

#[test]
fn election_jitter_comes_from_the_seed() {
    let run = || {
        let mut c = Cluster::new(3, 0);
        let l = c.elect();
        c.crash(l);
        let l2 = c.elect();
        let timeouts: Vec<(u64, usize)> = c
            .nodes
            .values()
            .flatten()
            .map(|n| (n.term(), n.raw.raft.randomized_election_timeout()))
            .collect();
        (l, l2, timeouts)
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first, "raft-rs's own RNG leaked into a run");
    }
}

#[test]
fn a_follower_refuses_a_proposal_naming_the_leader() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    let f = c.ids.iter().copied().find(|&i| i != l).unwrap();
    let r = c.propose(f, &[publish("a")]);
    assert_eq!(r, Err(Refused::NotLeader { leader: Some(l) }));
}

#[test]
fn an_answer_waits_for_commit() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    c.hold = true;
    let p = c.propose(l, &[publish("a")]).unwrap();
    assert!(
        c.answer(l, p).is_none(),
        "answered before a majority stored it"
    );
    c.run_ms(50);
    assert!(
        c.answer(l, p).is_none(),
        "answered before a majority stored it"
    );
    c.release();
    assert!(c.answer(l, p).unwrap().outcome.is_ok());
}

#[test]
fn a_proposal_lost_with_its_leader_is_answered_with_an_error() {
    let mut c = Cluster::new(3, 0);
    let old = c.elect();
    c.cut.insert(old);
    let p = c.propose(old, &[publish("lost")]).unwrap();
    assert!(c.answer(old, p).is_none());
    // The others elect a new leader and commit past the old leader's entry.
    let new = c.elect();
    assert_ne!(new, old);
    let q = c.propose(new, &[publish("kept")]).unwrap();
    assert!(c.answer(new, q).unwrap().outcome.is_ok());
    // The old leader steps down (check quorum) or learns the new term when the cut heals.
    c.run_ms(3_000);
    c.cut.clear();
    c.run_ms(1_000);
    let a = c.answer(old, p).expect("the lost proposal is answered");
    assert!(matches!(a.outcome, Err(Refused::Lost { .. })), "{a:?}");
    c.digests_agree();
    // Nothing of it was applied anywhere.
    let stats = Command::Stats { queue: "q".into() };
    let l = c.leader().unwrap();
    let s = c.propose(l, &[stats]).unwrap();
    match &c.answer(l, s).unwrap().outcome.as_ref().unwrap().replies[0] {
        Ok(Reply::Stats(st)) => assert_eq!(st.published_total, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn time_never_goes_backwards_across_a_failover() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    // The leader's clock runs 60 s ahead of the others.
    c.skew.insert(l, 60_000);
    let p = c.propose(l, &[publish("a")]).unwrap();
    let t1 = c.answer(l, p).unwrap().outcome.as_ref().unwrap().now;
    assert!(t1.0 >= c.now + 60_000);
    c.crash(l);
    let new = c.elect();
    let q = c.propose(new, &[publish("b")]).unwrap();
    let t2 = c.answer(new, q).unwrap().outcome.as_ref().unwrap().now;
    assert!(t2 >= t1, "time went back from {t1} to {t2}");
    assert!(c.node(new).engine().now() >= t1);
}

#[test]
fn a_new_leaders_first_entry_drops_old_consumers() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    let create = Command::CreateQueue {
        queue: "q".into(),
        config: None,
    };
    c.propose(l, &[create]).unwrap();
    let consume = Command::Consume {
        queue: "q".into(),
        wait_ms: 30_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    };
    let p = c.propose(l, &[consume]).unwrap();
    let a = c.answer(l, p).unwrap().outcome.as_ref().unwrap();
    assert!(matches!(a.replies[0], Ok(Reply::Waiting { .. })), "{a:?}");
    c.run_ms(200);
    for n in c.nodes.values().flatten() {
        assert_eq!(
            n.engine()
                .clone()
                .handle(Millis(0), Command::Stats { queue: "q".into() })
                .map(|r| match r {
                    Reply::Stats(s) => s.waiters,
                    _ => 99,
                }),
            Ok(1)
        );
    }
    c.crash(l);
    let new = c.elect();
    c.run_ms(200);
    let s = c
        .propose(new, &[Command::Stats { queue: "q".into() }])
        .unwrap();
    match &c.answer(new, s).unwrap().outcome.as_ref().unwrap().replies[0] {
        Ok(Reply::Stats(st)) => assert_eq!(st.waiters, 0, "the old leader's waiter is gone"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_node_replays_its_log_and_a_lagging_one_catches_up_from_a_snapshot() {
    let mut c = Cluster::new(3, 5);
    let l = c.elect();
    let f = c.ids.iter().copied().find(|&i| i != l).unwrap();
    c.crash(f);
    for i in 0..30 {
        let p = c.propose(l, &[publish(&format!("k{i}"))]).unwrap();
        assert!(c.answer(l, p).unwrap().outcome.is_ok());
    }
    assert!(
        c.node(l).snapshot_index() >= 25,
        "the leader compacted its log"
    );
    c.start(f);
    c.run_ms(1_000);
    assert!(c.node(f).snapshot_index() > 0, "caught up from a snapshot");
    c.digests_agree();
    // A full restart of the leader: it rebuilds from its disk.
    let digest = c.node(l).engine().state_digest();
    c.crash(l);
    c.start(l);
    assert_eq!(c.node(l).engine().state_digest(), digest);
    c.run_ms(2_000);
    c.digests_agree();
    assert_eq!(c.node(l).role() == StateRole::Leader, c.leader() == Some(l));
}

#[test]
fn after_the_whole_cluster_was_down_a_schedule_makes_one_catch_up_run() {
    let mut c = Cluster::new(3, 0);
    let l = c.elect();
    let every = Command::PutSchedule {
        queue: "q".into(),
        schedule_id: "s".into(),
        schedule: synap_core::ScheduleSpec {
            every_ms: Some(1_000),
            cron: None,
            message: synap_core::Json::from_value(&serde_json::json!("tick")),
            priority: None,
            headers: Default::default(),
            start_at: None,
            end_at: None,
            max_runs: None,
        },
    };
    c.propose(l, &[create_queue(), every]).unwrap();
    c.run_ms(3_500);
    let published = |c: &Cluster, id| match c
        .node(id)
        .engine()
        .clone()
        .handle(Millis(0), Command::Stats { queue: "q".into() })
    {
        Ok(Reply::Stats(s)) => s.published_total,
        other => panic!("{other:?}"),
    };
    let before = published(&c, l);
    assert!((3..=4).contains(&before), "runs while up: {before}");
    for id in c.ids.clone() {
        c.crash(id);
    }
    // A minute down: sixty slots missed.
    c.now += 60_000;
    for id in c.ids.clone() {
        c.start(id);
    }
    let l = c.elect();
    c.run_ms(300);
    let after = published(&c, l);
    assert!(
        (before + 1..=before + 2).contains(&after),
        "one catch-up run (and perhaps the next slot), not one per missed slot: {before} then {after}"
    );
    c.digests_agree();
}

fn create_queue() -> Command {
    Command::CreateQueue {
        queue: "q".into(),
        config: None,
    }
}

mod findings;
mod membership;
