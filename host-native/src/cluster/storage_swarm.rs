//! Goal: a cluster node's Raft storage (`RaftDisk`, written the way the writer thread writes
//! it) keeps replication safe through crashes and restarts on the fault-injecting file system.
//!
//! Method: three `synap_cluster::Node`s in one thread, each persisting through its own
//! `RaftDisk` on a `FaultyFs` in a temporary directory, on a seeded network that delays, drops
//! and reorders messages. Nodes crash at random (the node and its disk are dropped with the
//! batches not yet written) and restart from `RaftDisk::open_on`. Now and then a write group
//! runs under short writes (which must be completed), a failed fsync, a full disk or a write
//! that fails from its n-th call on (an error: the node crashes, as the server exits; a full
//! disk leaves a torn record for recovery to cut, and a failing write may stop the replacement
//! of the snapshot and log between the two files). A producer publishes keyed messages and a worker consumes and acks, through the
//! leader; after the faulty phase a calm one restarts every node and runs until every key is
//! published and acked.
//!
//! Oracle (`oracle`): at most one leader per term; a committed entry never changes (one
//! `(term, hash)` per index across nodes and restarts); replicas' `state_digest` agree at equal
//! index, and so do the events they produce; a restart after a clean crash recovers exactly
//! what was written (as `MemDisk` holds it), one after a failed write at least the hard state
//! and committed entries written before it; every key's publishes answer one message; at the
//! end every acknowledged publish was published once and acked once, and the replicas are
//! equal. Each seed runs twice with equal trace hashes. `SYNAP_RAFT_SWARM_SEEDS=n` runs n
//! seeds (default 16), `SYNAP_RAFT_SWARM_SEED=s` replays one.

mod client;
mod oracle;
mod seeds;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use synap_cluster::{
    AppliedKind, EntryEvent, MemDisk, Message, MessageType, Node, NodeConfig, Persist, ProposalId,
    Refused,
};
use synap_core::{Command, EngineConfig, Millis, Reply, Rng};

use super::storage::RaftDisk;
use super::writer::write_all;
use crate::storage::fs::{FaultyFs, Fs};
use crate::storage::writer::SyncPolicy;
use client::{Client, Req};
use oracle::{Oracle, kept_committed, same};

const NODES: u64 = 3;
const QUEUE: &str = "jobs";
/// Simulated milliseconds per loop step, and of the faulty phase.
const STEP_MS: u64 = 5;
const FAULTY_MS: u64 = 3_000;
/// The calm phase must settle everything within this.
const SETTLE_MS: u64 = 60_000;
/// A client request unanswered for this long is sent again.
const GIVE_UP_MS: u64 = 1_000;
/// Lease of each delivery: a delivery whose ack is lost comes back after it.
const LEASE_MS: u64 = 400;

/// What the faults did (summed over seeds, checked for coverage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    crashes: u64,
    torn_writes: u64,
    failed_syncs: u64,
    /// Write groups stopped by a failing write (`fail_from_write`), and those storing a
    /// snapshot.
    interrupted_groups: u64,
    interrupted_snapshots: u64,
    short_write_groups: u64,
    clean_restarts_checked: u64,
    snapshots_installed: u64,
    compactions: u64,
    lost_proposals: u64,
    dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Report {
    trace: u64,
    sim_ms: u64,
    tally: Tally,
}

struct Peer {
    cfg: NodeConfig,
    dir: PathBuf,
    fs: Arc<FaultyFs>,
    node: Option<Node>,
    disk: Option<RaftDisk>,
    /// Batches handed out and not yet written.
    queued: Vec<Persist>,
    /// Every batch written without error since the last restart: what a restart after a clean
    /// crash must recover.
    written: MemDisk,
    /// The last crash followed a failed write group (part of it may be on disk).
    failed_write: bool,
    dirty: bool,
    restart_at: Option<u64>,
    in_flight: BTreeMap<ProposalId, Vec<Req>>,
    events: VecDeque<EntryEvent>,
}

struct World {
    rng: Rng,
    now: u64,
    calm: bool,
    peers: Vec<Peer>,
    net: BTreeMap<(u64, u64), Message>,
    net_seq: u64,
    reports: Vec<(u64, u64, bool)>,
    client: Client,
    oracle: Oracle,
    tally: Tally,
    p_crash: f64,
    synced_at: Instant,
    _root: tempfile::TempDir,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5AF7);
        let root = tempfile::tempdir().expect("a temp dir");
        let engine = EngineConfig {
            idempotency_window_ms: 1 << 40,
            observe: true,
            ..EngineConfig::default()
        };
        let snapshot_entries = 8 + rng.next_u64() % 25;
        let voters: Vec<u64> = (1..=NODES).collect();
        let peers = voters
            .iter()
            .map(|&id| {
                let mut cfg = NodeConfig::new(id, voters.clone(), engine.clone(), seed);
                cfg.jitter_seed = seed ^ id.wrapping_mul(0xA24B_AED4_963E_E407);
                cfg.tick_ms = 10;
                cfg.snapshot_entries = snapshot_entries;
                cfg.observe_applied = true;
                cfg.digest_every = 4;
                let fs = Arc::new(FaultyFs::default());
                fs.faults.no_real_sync.store(true, Ordering::SeqCst);
                Peer {
                    cfg,
                    dir: root.path().join(format!("node{id}")).join("raft"),
                    fs,
                    node: None,
                    disk: None,
                    queued: Vec::new(),
                    written: MemDisk::default(),
                    failed_write: false,
                    dirty: false,
                    restart_at: Some(0),
                    in_flight: BTreeMap::new(),
                    events: VecDeque::new(),
                }
            })
            .collect();
        let keys = 30 + rng.next_u64() % 31;
        let p_crash = 1.0 / (80 + rng.next_u64() % 200) as f64;
        let client = Client {
            target: 1,
            // Publishes spread over the faulty phase: key k is first sent at its release time.
            keys: (0..keys)
                .map(|k| (None, k * (FAULTY_MS - 500) / keys))
                .collect(),
            ..Client::default()
        };
        Self {
            rng,
            now: 0,
            calm: false,
            peers,
            net: BTreeMap::new(),
            net_seq: 0,
            reports: Vec::new(),
            client,
            oracle: Oracle::default(),
            tally: Tally::default(),
            p_crash,
            synced_at: Instant::now(),
            _root: root,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.next_f64() < p
    }

    fn pick(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    fn clock(&self) -> Millis {
        Millis(self.now)
    }

    fn step(&mut self) {
        for i in 0..self.peers.len() {
            if self.peers[i].restart_at.is_some_and(|t| t <= self.now) {
                self.restart(i);
            }
        }
        self.deliver_due();
        self.write_queued();
        for i in 0..self.peers.len() {
            let clock = self.clock();
            if let Some(node) = self.peers[i].node.as_mut()
                && node.poll_timeout() <= clock
            {
                node.tick(clock);
                self.drain(i);
            }
        }
        if self.client.next_at <= self.now {
            self.act();
        }
        if !self.calm && self.chance(self.p_crash) {
            let up: Vec<usize> = (0..self.peers.len())
                .filter(|&i| self.peers[i].node.is_some())
                .collect();
            // Half the crashes take the leader, to make failovers right after commits.
            let leader = up
                .iter()
                .copied()
                .find(|&i| self.peers[i].node.as_ref().is_some_and(Node::is_leader));
            let pick = self.rng.next_u64() as usize;
            let victim = match leader {
                Some(l) if pick.is_multiple_of(2) => Some(l),
                _ => up.get(pick / 2 % up.len().max(1)).copied(),
            };
            if let Some(i) = victim {
                self.crash(i, false);
            }
        }
        for (from, to, ok) in std::mem::take(&mut self.reports) {
            let clock = self.clock();
            let i = (from - 1) as usize;
            if let Some(node) = self.peers[i].node.as_mut() {
                node.report_snapshot(clock, to, ok);
                self.drain(i);
            }
        }
        self.now += STEP_MS;
    }

    // ---- crashes and restarts -------------------------------------------------------------

    fn crash(&mut self, i: usize, failed_write: bool) {
        let p = &mut self.peers[i];
        p.node = None;
        p.disk = None;
        p.queued.clear();
        p.in_flight.clear();
        p.events.clear();
        p.dirty = false;
        p.failed_write = failed_write;
        self.tally.crashes += 1;
        let at = self.now + self.pick(20, 400);
        self.peers[i].restart_at = Some(at);
        self.oracle
            .note(&[3, i as u64, self.now, u64::from(failed_write)]);
    }

    fn restart(&mut self, i: usize) {
        let id = (i + 1) as u64;
        let p = &mut self.peers[i];
        p.restart_at = None;
        let fs: Arc<dyn Fs> = p.fs.clone();
        let (disk, recovered) = RaftDisk::open_on(fs, &p.dir)
            .unwrap_or_else(|e| panic!("node {id} cannot reopen its raft storage: {e}"));
        if p.failed_write {
            kept_committed(id, &recovered, &p.written);
        } else {
            same(id, &recovered, &p.written.recovered());
            self.tally.clean_restarts_checked += 1;
        }
        p.written = MemDisk {
            hard_state: recovered.hard_state.clone(),
            snapshot: recovered.snapshot.clone(),
            entries: recovered.entries.clone(),
        };
        let node = Node::new(p.cfg.clone(), recovered, Millis(self.now))
            .unwrap_or_else(|e| panic!("node {id} cannot start from its raft storage: {e}"));
        p.node = Some(node);
        p.disk = Some(disk);
        self.oracle.note(&[4, id, self.now]);
        self.drain(i);
    }

    // ---- disks ------------------------------------------------------------------------------

    /// Each node's queued batches are written now or a step later, as one group (the writer
    /// thread's group commit, under `--fsync always`), some under an injected fault.
    fn write_queued(&mut self) {
        for i in 0..self.peers.len() {
            if self.peers[i].queued.is_empty() || self.chance(0.3) {
                continue;
            }
            let batches = std::mem::take(&mut self.peers[i].queued);
            // A group storing a snapshot (several files replaced in turn) is interrupted more
            // often, to stop it between the snapshot's rename and the log's.
            let snapshot = batches.iter().any(|b| b.snapshot.is_some());
            let interrupt = if snapshot { 0.1 } else { 0.006 };
            let fault = if self.calm { 1.0 } else { self.rng.next_f64() };
            let faults = Arc::clone(&self.peers[i].fs.faults);
            if fault < interrupt {
                let n = self.pick(1, 3) as u32;
                faults.fail_from_write.store(n, Ordering::SeqCst);
            } else if fault < interrupt + 0.04 {
                let n = self.pick(1, 3) as u32;
                faults.short_writes.store(n, Ordering::SeqCst);
                self.tally.short_write_groups += 1;
            } else if fault < interrupt + 0.046 {
                faults.fail_sync.store(true, Ordering::SeqCst);
            } else if fault < interrupt + 0.052 {
                faults.disk_full.store(true, Ordering::SeqCst);
            }
            let p = &mut self.peers[i];
            let disk = p.disk.as_mut().expect("a live node has its disk");
            let r = write_all(
                disk,
                SyncPolicy::Always,
                &batches,
                &mut p.dirty,
                &mut self.synced_at,
            );
            let (full, sync) = (
                faults.disk_full.load(Ordering::SeqCst),
                faults.fail_sync.load(Ordering::SeqCst),
            );
            let cut = faults.fail_from_write.swap(0, Ordering::SeqCst) > 0;
            faults.short_writes.store(0, Ordering::SeqCst);
            faults.fail_sync.store(false, Ordering::SeqCst);
            faults.disk_full.store(false, Ordering::SeqCst);
            match r {
                // (A group with nothing to write or sync meets no fault.)
                Ok(ready) => {
                    for b in &batches {
                        self.peers[i].written.apply(b);
                    }
                    let clock = self.clock();
                    if let (Some(n), Some(node)) = (ready, self.peers[i].node.as_mut()) {
                        node.on_persisted(clock, n);
                        self.drain(i);
                    }
                }
                Err(e) => {
                    assert!(
                        full || sync || cut,
                        "node {} write failed unprompted: {e}",
                        i + 1
                    );
                    if cut {
                        self.tally.interrupted_groups += 1;
                        self.tally.interrupted_snapshots += u64::from(snapshot);
                    } else if full {
                        self.tally.torn_writes += 1;
                    } else {
                        self.tally.failed_syncs += 1;
                    }
                    // The server stops the node (the writer reports `Failed`, the process exits).
                    self.crash(i, true);
                }
            }
        }
    }

    // ---- network ----------------------------------------------------------------------------

    fn send(&mut self, m: Message) {
        let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
        if !self.calm && self.chance(0.02) {
            self.tally.dropped += 1;
            if snapshot {
                self.reports.push((m.from, m.to, false));
            }
            return;
        }
        let at = self.now + self.pick(1, 12);
        self.net_seq += 1;
        self.net.insert((at, self.net_seq), m);
    }

    /// Delivers every message due, in a random order.
    fn deliver_due(&mut self) {
        let mut due = Vec::new();
        while let Some(e) = self.net.first_entry() {
            if e.key().0 > self.now {
                break;
            }
            due.push(e.remove());
        }
        for k in (1..due.len()).rev() {
            let j = self.rng.next_u64() as usize % (k + 1);
            due.swap(k, j);
        }
        for m in due {
            let to = (m.to - 1) as usize;
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let (from, target) = (m.from, m.to);
            let clock = self.clock();
            let delivered = match self.peers[to].node.as_mut() {
                Some(node) => {
                    let _ = node.step(clock, m);
                    self.drain(to);
                    true
                }
                None => false,
            };
            if snapshot {
                self.reports.push((from, target, delivered));
            }
        }
    }

    // ---- a node's outputs -------------------------------------------------------------------

    fn drain(&mut self, i: usize) {
        let id = (i + 1) as u64;
        let p = &mut self.peers[i];
        let Some(node) = p.node.as_mut() else { return };
        if let Some(reason) = node.halted() {
            panic!("node {id} stopped: {reason}");
        }
        let mut msgs = Vec::new();
        while let Some(m) = node.poll_message() {
            msgs.push(m);
        }
        while let Some(b) = node.poll_persist() {
            p.queued.push(b);
        }
        let mut answers = Vec::new();
        while let Some(a) = node.poll_answer() {
            answers.push(a);
        }
        while let Some(e) = node.poll_event() {
            p.events.push_back(e);
        }
        let mut applied = Vec::new();
        while let Some(a) = node.poll_applied() {
            applied.push(a);
        }
        if node.is_leader() {
            self.oracle.leader(node.term(), id);
        }
        for a in applied {
            match a.kind {
                AppliedKind::Installed => self.tally.snapshots_installed += 1,
                AppliedKind::Compacted => self.tally.compactions += 1,
                AppliedKind::Entry => {}
            }
            let mut evs = Vec::new();
            while p.events.front().is_some_and(|e| e.index == a.index) {
                evs.push(p.events.pop_front().expect("checked").event);
            }
            self.oracle.applied(id, &a, &evs);
        }
        for m in msgs {
            self.send(m);
        }
        for a in answers {
            let Some(reqs) = self.peers[i].in_flight.remove(&a.proposal) else {
                continue;
            };
            match a.outcome {
                Ok(turn) => self.on_turn(&reqs, turn),
                Err(Refused::Lost { .. }) => {
                    self.tally.lost_proposals += 1;
                    self.oracle.note(&[5, id, a.proposal.0]);
                    for r in reqs {
                        self.client.forget(r);
                    }
                }
                Err(other) => panic!("node {id} answered a proposal {other:?}"),
            }
        }
    }

    // ---- the end ----------------------------------------------------------------------------

    fn settled(&self) -> bool {
        let c = &self.client;
        let nodes: Vec<&Node> = self.peers.iter().filter_map(|p| p.node.as_ref()).collect();
        let Some(leader) = nodes.iter().find(|n| n.is_leader()) else {
            return false;
        };
        c.created
            && c.keys.iter().all(|k| k.0.is_some())
            && self.oracle.acked() == c.keys.len()
            && nodes.len() == self.peers.len()
            && self.peers.iter().all(|p| p.queued.is_empty())
            && nodes
                .iter()
                .all(|n| n.applied_index() == leader.commit_index())
    }

    fn finish(&self) {
        let nodes: Vec<&Node> = self.peers.iter().filter_map(|p| p.node.as_ref()).collect();
        let states: Vec<(u64, u64)> = nodes
            .iter()
            .map(|n| (n.applied_index(), n.engine().state_digest()))
            .collect();
        assert!(
            states.windows(2).all(|w| w[0] == w[1]),
            "replicas differ at the end: {states:?}"
        );
        self.oracle.finish(&self.client.keys);
        let mut engine = nodes[0].engine().clone();
        let now = engine.now();
        match engine.handle(
            now,
            Command::Stats {
                queue: QUEUE.into(),
            },
        ) {
            Ok(Reply::Stats(s)) => {
                let k = self.client.keys.len() as u64;
                assert_eq!(
                    (s.published_total, s.acked_total, s.depth, s.in_flight),
                    (k, k, 0, 0),
                    "the final state holds every publish answered, acked once"
                );
            }
            other => panic!("stats: {other:?}"),
        }
    }
}
