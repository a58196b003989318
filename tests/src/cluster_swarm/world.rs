//! The simulated cluster: nodes with their disks and skewed clocks, a seeded network, a thin
//! host per node (group commit of client requests, routing of answers and long-poll
//! deliveries), and the faults: drops, duplicates, delays (and so reordering), partitions
//! that heal, crashes that lose whatever was not yet written, restarts from the disk.

use std::collections::{BTreeMap, VecDeque};

use synap_cluster::{EntryEvent, MemDisk, Node, NodeConfig, Persist, ProposalId, Refused};
use synap_core::{
    Command, Delivery, EngineConfig, Error, Event, Limits, Millis, Reply, Rng, WaiterId,
};
use xxhash_rust::xxh3::Xxh3;

use super::config::ClusterConfig;
use super::oracle::Oracle;

mod net;

/// What a client gets back for a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The engine's reply, from the entry at `index`.
    Reply {
        result: Result<Reply, Error>,
        index: u64,
    },
    /// A long-poll's deliveries, produced at `index` for `waiter`.
    Delivered {
        messages: Vec<Delivery>,
        index: u64,
        waiter: WaiterId,
    },
    /// A long-poll ended with nothing.
    WaitEnded,
    /// Not the leader (or the node is down); the leader it knows of.
    NotLeader(Option<u64>),
    /// The outcome is unknown: the proposal was lost, or the connection dropped.
    Lost,
    /// The leader took nothing (a leadership transfer): send it again shortly.
    Busy,
}

/// A client's request waiting in a host.
pub(crate) type Caller = (usize, u64);

/// The host of one node: it batches the requests of a step into one proposal.
#[derive(Debug, Default)]
pub(crate) struct Host {
    pub(crate) inbox: Vec<(Caller, Command)>,
    /// Each proposal's callers, with the idempotency key of a publish.
    pub(crate) in_flight: BTreeMap<ProposalId, Vec<(Caller, Option<String>)>>,
    pub(crate) parked: BTreeMap<WaiterId, Caller>,
    pub(crate) was_leader: bool,
}

pub(crate) struct Peer {
    pub(crate) cfg: NodeConfig,
    pub(crate) node: Option<Node>,
    pub(crate) disk: MemDisk,
    /// Batches being written: `(done_at, batch)`, in order.
    pub(crate) writes: VecDeque<(u64, Persist)>,
    pub(crate) skew: i64,
    pub(crate) restart_at: Option<u64>,
    pub(crate) host: Host,
    pub(crate) events: VecDeque<EntryEvent>,
}

/// Counts of what a run exercised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Node crashes.
    pub crashes: usize,
    /// Partitions made.
    pub partitions: usize,
    /// Messages dropped.
    pub dropped: usize,
    /// Messages duplicated.
    pub duplicated: usize,
    /// Replies lost on the way to a client.
    pub lost_replies: usize,
    /// Proposals answered `Lost`.
    pub lost_proposals: usize,
    /// Snapshot messages sent.
    pub snapshots_sent: usize,
}

/// The whole simulated cluster.
pub(crate) struct World {
    pub(crate) cfg: ClusterConfig,
    pub(crate) rng: Rng,
    pub(crate) now: u64,
    pub(crate) peers: Vec<Peer>,
    pub(crate) net: BTreeMap<(u64, u64), Vec<u8>>,
    pub(crate) net_seq: u64,
    /// Partition: nodes on different sides do not hear each other.
    pub(crate) side: Vec<bool>,
    pub(crate) partition_until: u64,
    pub(crate) next_partition_at: u64,
    pub(crate) next_crash_at: u64,
    pub(crate) faults: bool,
    pub(crate) oracle: Oracle,
    pub(crate) trace: Xxh3,
    pub(crate) outcomes: VecDeque<(Caller, Outcome)>,
    pub(crate) tally: Tally,
    /// Snapshot deliveries to report to their senders: `(sender, to, ok)`.
    pub(crate) reports: Vec<(u64, u64, bool)>,
}

/// Where the simulation's time starts (so skewed clocks stay positive).
const START_MS: u64 = 100_000;

impl World {
    pub(crate) fn new(cfg: ClusterConfig) -> Self {
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 1);
        let voters: Vec<u64> = (1..=cfg.nodes as u64).collect();
        let engine = EngineConfig {
            limits: Limits::default(),
            // Longer than any run: a retried key always finds its first publish.
            idempotency_window_ms: 1 << 40,
            observe: true,
            ..EngineConfig::default()
        };
        let peers = voters
            .iter()
            .map(|&id| {
                let mut nc = NodeConfig::new(id, voters.clone(), engine.clone(), cfg.seed);
                nc.jitter_seed = cfg.seed ^ id.wrapping_mul(0xA24B_AED4_963E_E407);
                nc.tick_ms = cfg.tick_ms;
                nc.snapshot_entries = cfg.snapshot_entries;
                nc.observe_applied = true;
                nc.digest_every = 4;
                let skew =
                    (rng.next_u64() % (2 * cfg.skew_ms_max + 1)) as i64 - cfg.skew_ms_max as i64;
                Peer {
                    cfg: nc,
                    node: None,
                    disk: MemDisk::default(),
                    writes: VecDeque::new(),
                    skew,
                    restart_at: Some(START_MS),
                    host: Host::default(),
                    events: VecDeque::new(),
                }
            })
            .collect();
        let mut w = Self {
            side: vec![false; cfg.nodes],
            partition_until: 0,
            next_partition_at: START_MS + cfg.partition_every_ms,
            next_crash_at: START_MS + cfg.crash_every_ms,
            cfg,
            rng,
            now: START_MS,
            peers,
            net: BTreeMap::new(),
            net_seq: 0,
            faults: true,
            oracle: Oracle::default(),
            trace: Xxh3::new(),
            outcomes: VecDeque::new(),
            tally: Tally::default(),
            reports: Vec::new(),
        };
        for i in 0..w.peers.len() {
            w.restart(i);
        }
        w
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.next_f64() < p
    }

    pub(crate) fn pick(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    pub(crate) fn clock(&self, i: usize) -> Millis {
        Millis((self.now as i64 + self.peers[i].skew) as u64)
    }

    pub(crate) fn trace_hash(&self) -> u64 {
        self.trace.digest()
    }

    pub(crate) fn note(&mut self, words: &[u64]) {
        for w in words {
            self.trace.update(&w.to_le_bytes());
        }
    }

    // ---- time ---------------------------------------------------------------------------

    /// The next time something in the cluster happens (never before `now + 1`).
    pub(crate) fn next_at(&self) -> u64 {
        let mut at = u64::MAX;
        if let Some(&(t, _)) = self.net.keys().next() {
            at = at.min(t);
        }
        for (i, p) in self.peers.iter().enumerate() {
            if let Some(&(t, _)) = p.writes.front() {
                at = at.min(t);
            }
            if let Some(t) = p.restart_at {
                at = at.min(t);
            }
            if let Some(n) = &p.node {
                let due = n.poll_timeout().0 as i64 - self.peers[i].skew;
                at = at.min(due.max(0) as u64);
            }
        }
        if self.faults {
            at = at.min(self.next_crash_at).min(self.next_partition_at);
            if self.partition_until > self.now {
                at = at.min(self.partition_until);
            }
        }
        at.max(self.now + 1)
    }

    /// Runs everything due at `now`.
    pub(crate) fn run_due(&mut self) {
        self.deliver_due();
        self.complete_writes();
        for i in 0..self.peers.len() {
            if self.peers[i].restart_at.is_some_and(|t| t <= self.now) {
                self.restart(i);
            }
            let clock = self.clock(i);
            let due = self.peers[i]
                .node
                .as_mut()
                .filter(|n| n.poll_timeout() <= clock);
            if let Some(node) = due {
                node.tick(clock);
                self.drain(i);
            }
        }
        if self.faults {
            self.faults_due();
        }
        self.flush_reports();
    }

    // ---- disks --------------------------------------------------------------------------

    fn complete_writes(&mut self) {
        for i in 0..self.peers.len() {
            while self.peers[i]
                .writes
                .front()
                .is_some_and(|(t, _)| *t <= self.now)
            {
                let (_, batch) = self.peers[i].writes.pop_front().expect("checked");
                self.peers[i].disk.apply(&batch);
                let clock = self.clock(i);
                if let (Some(n), Some(node)) = (batch.ready, self.peers[i].node.as_mut()) {
                    node.on_persisted(clock, n);
                    self.drain(i);
                }
            }
        }
    }

    // ---- a node's outputs -----------------------------------------------------------------

    /// Drains node `i`'s outputs: messages to the network, batches to its disk, answers and
    /// long-poll deliveries to clients, applied entries and events to the oracle.
    pub(crate) fn drain(&mut self, i: usize) {
        let id = (i + 1) as u64;
        let peer = &mut self.peers[i];
        let Some(node) = peer.node.as_mut() else {
            return;
        };
        let mut msgs = Vec::new();
        while let Some(m) = node.poll_message() {
            msgs.push(m);
        }
        let mut batches = Vec::new();
        while let Some(b) = node.poll_persist() {
            batches.push(b);
        }
        let mut answers = Vec::new();
        while let Some(a) = node.poll_answer() {
            answers.push(a);
        }
        if let Some(reason) = node.halted() {
            panic!("node {id} stopped: {reason}");
        }
        while let Some(ev) = node.poll_event() {
            peer.events.push_back(ev);
        }
        let mut applied = Vec::new();
        while let Some(a) = node.poll_applied() {
            applied.push(a);
        }
        let (leader, term) = (node.is_leader(), node.term());
        let leader_hint = node.leader();
        if leader {
            self.oracle.leader(term, id);
        }
        for m in &msgs {
            self.send(m);
        }
        for b in batches {
            let last = self.peers[i].writes.back().map_or(self.now, |(t, _)| *t);
            let at = last.max(self.now + self.pick(0, self.cfg.fsync_ms_max));
            self.peers[i].writes.push_back((at, b));
        }
        for a in answers {
            self.answer(i, a.proposal, a.outcome);
        }
        for a in applied {
            let mut evs = Vec::new();
            while self.peers[i]
                .events
                .front()
                .is_some_and(|e| e.index == a.index)
            {
                let e = self.peers[i].events.pop_front().expect("checked");
                assert_eq!(
                    e.replayed, a.replayed,
                    "event and entry {} disagree",
                    a.index
                );
                evs.push(e.event);
            }
            // A restarted node's replayed events were handed out before its crash: never
            // delivered again (its host holds no connection from before anyway).
            if !a.replayed {
                for e in &evs {
                    self.route_event(i, a.index, e);
                }
            }
            self.oracle.applied(id, &a, &evs);
            self.note(&[1, id, a.index, a.hash]);
        }
        let host = &mut self.peers[i].host;
        if host.was_leader && !leader {
            // A deposed leader's long-polls end: the new term drops their waiters.
            for (_, caller) in std::mem::take(&mut host.parked) {
                self.outcomes.push_back((caller, Outcome::Lost));
            }
            self.note(&[2, id, term, leader_hint.unwrap_or(0)]);
        }
        self.peers[i].host.was_leader = leader;
    }

    fn answer(
        &mut self,
        i: usize,
        p: ProposalId,
        outcome: Result<synap_cluster::TurnResult, Refused>,
    ) {
        let Some(callers) = self.peers[i].host.in_flight.remove(&p) else {
            return;
        };
        match outcome {
            Ok(turn) => {
                assert_eq!(turn.replies.len(), callers.len(), "one reply per command");
                for ((caller, key), result) in callers.into_iter().zip(turn.replies) {
                    // Every publish answer, whether or not it reaches a client still waiting.
                    if let (Some(key), Ok(Reply::Published(p))) = (&key, &result) {
                        self.oracle.publish_acknowledged(key, p.message_id);
                    }
                    if self.faults && self.chance(self.cfg.p_lose_reply) {
                        self.tally.lost_replies += 1;
                        continue;
                    }
                    if let Ok(Reply::Waiting { waiter_id }) = &result {
                        self.peers[i].host.parked.insert(*waiter_id, caller);
                        continue;
                    }
                    self.outcomes.push_back((
                        caller,
                        Outcome::Reply {
                            result,
                            index: turn.index,
                        },
                    ));
                }
            }
            Err(Refused::NotLeader { leader }) => {
                for (caller, _) in callers {
                    self.outcomes
                        .push_back((caller, Outcome::NotLeader(leader)));
                }
            }
            Err(Refused::Lost { .. }) => {
                self.tally.lost_proposals += 1;
                for (caller, _) in callers {
                    self.outcomes.push_back((caller, Outcome::Lost));
                }
            }
            Err(other @ (Refused::Busy | Refused::Stopped { .. } | Refused::Rejected { .. })) => {
                panic!("node {} answered a proposal {other:?}", i + 1)
            }
        }
    }

    fn route_event(&mut self, i: usize, index: u64, e: &Event) {
        let host = &mut self.peers[i].host;
        let (waiter, outcome) = match e {
            Event::Delivered {
                waiter_id,
                messages,
            } => (
                *waiter_id,
                Outcome::Delivered {
                    messages: messages.clone(),
                    index,
                    waiter: *waiter_id,
                },
            ),
            Event::WaitTimedOut { waiter_id } => (*waiter_id, Outcome::WaitEnded),
            _ => return,
        };
        if let Some(caller) = host.parked.remove(&waiter) {
            self.outcomes.push_back((caller, outcome));
        }
    }

    // ---- clients' side ------------------------------------------------------------------

    /// A client sends `cmd` to `node` (1-based); it is proposed with the step's other
    /// requests to that node.
    pub(crate) fn submit(&mut self, caller: Caller, node: u64, cmd: Command) {
        let i = (node - 1) as usize;
        if self.peers[i].node.is_none() {
            self.outcomes.push_back((caller, Outcome::NotLeader(None)));
            return;
        }
        self.peers[i].host.inbox.push((caller, cmd));
    }

    /// Proposes each host's batch: one entry per node per step, many requests in it.
    pub(crate) fn flush_hosts(&mut self) {
        for i in 0..self.peers.len() {
            let inbox = std::mem::take(&mut self.peers[i].host.inbox);
            if inbox.is_empty() {
                continue;
            }
            let clock = self.clock(i);
            let Some(node) = self.peers[i].node.as_mut() else {
                continue;
            };
            let (callers, cmds): (Vec<Caller>, Vec<Command>) = inbox.into_iter().unzip();
            match node.propose(clock, cmds.as_slice()) {
                Ok(p) => {
                    let keys = cmds.iter().map(|c| match c {
                        Command::Publish { message, .. } => message.idempotency_key.clone(),
                        _ => None,
                    });
                    let callers = callers.into_iter().zip(keys).collect();
                    self.peers[i].host.in_flight.insert(p, callers);
                }
                Err(Refused::NotLeader { leader } | Refused::Lost { leader }) => {
                    for caller in callers {
                        self.outcomes
                            .push_back((caller, Outcome::NotLeader(leader)));
                    }
                }
                Err(Refused::Busy) => {
                    for caller in callers {
                        self.outcomes.push_back((caller, Outcome::Busy));
                    }
                }
                Err(Refused::Stopped { reason }) => panic!("node {} stopped: {reason}", i + 1),
                Err(other @ Refused::Rejected { .. }) => {
                    panic!(
                        "node {} refused a turn as a membership change: {other:?}",
                        i + 1
                    )
                }
            }
            self.drain(i);
        }
    }

    // ---- checks -------------------------------------------------------------------------

    /// Every node is up and has applied everything the leader committed.
    pub(crate) fn converged(&self) -> bool {
        let nodes: Vec<&Node> = self.peers.iter().filter_map(|p| p.node.as_ref()).collect();
        if nodes.len() != self.peers.len() {
            return false;
        }
        let Some(leader) = nodes.iter().find(|n| n.is_leader()) else {
            return false;
        };
        let commit = leader.commit_index();
        nodes.iter().all(|n| n.applied_index() == commit)
    }

    /// The closing check: every replica holds the same engine.
    pub(crate) fn assert_replicas_equal(&self) {
        let digests: Vec<(u64, u64)> = self
            .peers
            .iter()
            .filter_map(|p| p.node.as_ref())
            .map(|n| (n.applied_index(), n.engine().state_digest()))
            .collect();
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "replicas differ at the end: {digests:?}"
        );
    }

    /// Every disk's committed entries are the ones the replicas applied.
    pub(crate) fn assert_disks_agree(&self) {
        for (i, p) in self.peers.iter().enumerate() {
            let commit = p.disk.hard_state.commit;
            for e in p.disk.entries.iter().filter(|e| e.index <= commit) {
                let hash = xxhash_rust::xxh3::xxh3_64(&e.data);
                if let Some(applied) = self.oracle.committed_at(e.index) {
                    assert_eq!(
                        applied,
                        (e.term, hash),
                        "node {}'s disk holds another entry {} than was committed",
                        i + 1,
                        e.index
                    );
                }
            }
        }
    }

    /// A node that is up, for a client to pick.
    pub(crate) fn any_node(&mut self) -> u64 {
        self.pick(1, self.peers.len() as u64)
    }
}
