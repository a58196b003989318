//! `Node`: raft-rs's `RawNode` around the engine, driven like the engine (inputs with `now`,
//! outputs drained) so a host or the swarm runs it without I/O of its own.

use std::collections::{BTreeMap, VecDeque};

use raft::eraftpb::{Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use synap_core::{Command, Engine, EngineConfig, Error, Event, Millis, Reply, Rng};

use crate::entry::{EntryData, Origin, Payload, encode_turn};
use crate::snapshot;
use crate::storage::{LogStore, Persist, Recovered};

/// Settings of one node. Every node of a cluster has the same `voters`, `engine` and
/// `engine_seed` (so replicas draw the same message ids); `jitter_seed` differs per node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (not 0).
    pub id: u64,
    /// Every voter's id, this node's included.
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
    /// The node stopped on an unrecoverable error (see [`Node::halted`]). Nothing was done.
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
    /// below the commit index it recovered ([`Recovered`]'s hard state, raised to the
    /// snapshot's index). The node produced (and handed out) this event before its restart,
    /// so a host must not deliver it again. Events of entries applied before the crash whose
    /// commit index was not yet stored come again untagged; they name waiters and sessions
    /// of the previous process, which a restarted host does not hold.
    pub replayed: bool,
}

/// A proposal waiting for its entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub(crate) index: u64,
    pub(crate) term: u64,
}

/// Most Raft ticks one call runs (a host that slept long does not spin); the ticks beyond it
/// are dropped, not owed.
///
/// After a stall (the host paused for many tick lengths) the ticks still run back to back in
/// one call, with no message handled in between. That burst is longer than any election
/// timeout (`election_ticks` to twice that), so a follower campaigns (pre-vote) at once, and
/// a leader's check-quorum finds no peer heard from since its last check and steps down. A
/// node resuming from a stall thus behaves like one that was cut off: pre-vote keeps it from
/// deposing a healthy leader, and a deposed leader's proposals are answered `Lost`.
const MAX_TICKS_PER_CALL: usize = 64;

/// A replica: Raft consensus (tikv's raft-rs) over a log of engine turns, and the engine those
/// turns are applied to. See the crate docs for the driving loop.
pub struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) raw: RawNode<LogStore>,
    pub(crate) engine: Engine,
    pub(crate) rng: Rng,
    /// The latest host time seen.
    pub(crate) clock: Millis,
    pub(crate) next_tick_at: Millis,
    /// A failed `Tick` proposal is tried again no sooner than this (the next Raft tick), and
    /// `poll_timeout` offers no engine deadline before it.
    pub(crate) tick_retry_at: Millis,
    /// Set when the node stopped on an unrecoverable error; every input is then refused.
    pub(crate) halted: Option<String>,
    /// The commit index recovered at start: entries up to it are applied again (replayed).
    pub(crate) replay_through: u64,
    /// The highest `now` of any entry in the log or stamped by this node.
    pub(crate) max_now: Millis,
    /// Term and role last seen, to catch changes.
    pub(crate) term: u64,
    pub(crate) role: StateRole,
    pub(crate) next_seq: u64,
    pub(crate) pending: BTreeMap<u64, Pending>,
    /// Index of the `Tick` entry proposed and not yet applied.
    pub(crate) tick_in_flight: Option<u64>,
    /// Last index applied to the engine.
    pub(crate) applied: u64,
    /// Last applied index reported to raft-rs (it lags while a snapshot is unpersisted).
    pub(crate) raft_applied: u64,
    /// Ready numbers handed out to persist and not yet confirmed.
    pub(crate) unconfirmed: VecDeque<u64>,
    pub(crate) outbox: VecDeque<Message>,
    /// Messages to send only after their ready is persisted.
    pub(crate) held: VecDeque<(u64, Vec<Message>)>,
    pub(crate) persist: VecDeque<Persist>,
    pub(crate) answers: VecDeque<Answer>,
    pub(crate) events: VecDeque<EntryEvent>,
    pub(crate) applied_log: VecDeque<Applied>,
}

impl Node {
    /// A node built from what its host stored (`Recovered::default()` for a new cluster), at
    /// host time `now`. Committed entries after the stored snapshot are applied again at once;
    /// their events and applied records are tagged `replayed`.
    ///
    /// Errors: a stored snapshot or entry does not decode, or raft-rs refuses the state.
    pub fn new(cfg: NodeConfig, recovered: Recovered, now: Millis) -> Result<Self, String> {
        let snap_index = recovered
            .snapshot
            .as_ref()
            .map_or(0, |s| s.get_metadata().index);
        let engine = match &recovered.snapshot {
            Some(s) if snap_index > 0 => snapshot::decode(s.get_data())?,
            _ => Engine::new(cfg.engine.clone(), cfg.engine_seed),
        };
        let mut max_now = engine.now();
        for e in &recovered.entries {
            if let Some(d) = EntryData::decode(&e.data)? {
                max_now = max_now.max(d.payload.now());
            }
        }
        let store = LogStore::new(recovered, &cfg.voters);
        let replay_through = store
            .initial_state()
            .map_err(|e| e.to_string())?
            .hard_state
            .commit;
        let raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: snap_index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_cfg, store, &logger).map_err(|e| e.to_string())?;
        let mut node = Self {
            rng: Rng::new(cfg.jitter_seed ^ 0x5EED_CAFE_F00D_D00D),
            clock: now,
            next_tick_at: now.add_ms(cfg.tick_ms),
            tick_retry_at: Millis::ZERO,
            halted: None,
            replay_through,
            max_now,
            term: raw.raft.term,
            role: raw.raft.state,
            next_seq: 1,
            pending: BTreeMap::new(),
            tick_in_flight: None,
            applied: snap_index,
            raft_applied: snap_index,
            unconfirmed: VecDeque::new(),
            outbox: VecDeque::new(),
            held: VecDeque::new(),
            persist: VecDeque::new(),
            answers: VecDeque::new(),
            events: VecDeque::new(),
            applied_log: VecDeque::new(),
            cfg,
            raw,
            engine,
        };
        // raft-rs drew the first election timeout from an unseeded RNG: draw it again.
        node.rejitter();
        node.after_input();
        match node.halted {
            Some(reason) => Err(reason),
            None => Ok(node),
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    /// The host's clock reached `now`: run the Raft ticks due and, on the leader, propose a
    /// `Tick` entry when an engine timer is due. Call it at (or after) `poll_timeout()`.
    pub fn tick(&mut self, now: Millis) {
        self.observe_clock(now);
        if self.halted.is_some() {
            return;
        }
        let mut ticks = 0;
        while self.clock >= self.next_tick_at && ticks < MAX_TICKS_PER_CALL {
            self.raw.tick();
            self.observe_role();
            self.next_tick_at = self.next_tick_at.add_ms(self.cfg.tick_ms);
            ticks += 1;
        }
        if self.clock >= self.next_tick_at {
            self.next_tick_at = self.clock.add_ms(self.cfg.tick_ms);
        }
        self.after_input();
    }

    /// A Raft message from a peer. Errors change nothing: a message for another node, one
    /// from an unknown peer, or of a type peers do not send (see [`from_peer`]: proposals and
    /// raft-rs's local messages are refused, so a peer cannot inject entries), or the node
    /// stopped.
    pub fn step(&mut self, now: Millis, mut msg: Message) -> Result<(), String> {
        self.observe_clock(now);
        if let Some(reason) = &self.halted {
            return Err(format!("the node stopped: {reason}"));
        }
        if msg.to != self.cfg.id {
            return Err(format!(
                "a message for node {}, this is {}",
                msg.to, self.cfg.id
            ));
        }
        let kind = msg.get_msg_type();
        if !from_peer(kind) {
            return Err(format!("{kind:?} is not a message peers send"));
        }
        if kind == MessageType::MsgTimeoutNow
            && (Some(msg.from) != self.leader() || msg.term != self.term())
        {
            // Only the leader of this term hands over leadership.
            return Err(format!(
                "MsgTimeoutNow from node {} in term {}, which does not lead",
                msg.from, msg.term
            ));
        }
        if kind == MessageType::MsgHeartbeat {
            // A leader that still counts entries this node lost (its disk was wiped) sends a
            // commit index past the end of its log, on which raft-rs would panic: commit what
            // is here; the leader learns the rest from `peer_lost_its_log`.
            let last = self.raw.raft.raft_log.last_index();
            msg.commit = msg.commit.min(last);
        }
        let result = self.raw.step(msg).map_err(|e| e.to_string());
        self.after_input();
        result
    }

    /// Proposes one engine turn: `commands` run in order at the leader's `now` once the entry
    /// is committed, and the results come back as an [`Answer`] from `poll_answer`. Only the
    /// leader accepts; reads go through the log too, so every answer is linearizable.
    pub fn propose(&mut self, now: Millis, commands: &[Command]) -> Result<ProposalId, Refused> {
        self.observe_clock(now);
        if let Some(reason) = &self.halted {
            return Err(Refused::Stopped {
                reason: reason.clone(),
            });
        }
        if self.raw.raft.state != StateRole::Leader {
            return Err(Refused::NotLeader {
                leader: self.leader(),
            });
        }
        let seq = self.next_seq;
        let origin = Origin {
            node: self.cfg.id,
            seq,
        };
        let stamp = self.stamp();
        let data = encode_turn(Some(origin), stamp, commands);
        if self.raw.propose(Vec::new(), data).is_err() {
            // Still the leader, but raft-rs dropped it (a leadership transfer is under way).
            // Naming this node as the leader would send the client straight back here.
            return Err(Refused::Busy);
        }
        self.next_seq += 1;
        self.max_now = stamp;
        let pending = Pending {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
        };
        self.pending.insert(seq, pending);
        self.after_input();
        Ok(ProposalId(seq))
    }

    /// The host stored every [`Persist`] batch up to ready `number` durably: send the
    /// messages that waited for it and let Raft count the entries as persisted.
    pub fn on_persisted(&mut self, now: Millis, number: u64) {
        self.observe_clock(now);
        if self.halted.is_some() {
            return;
        }
        while self.unconfirmed.front().is_some_and(|&n| n <= number) {
            self.unconfirmed.pop_front();
        }
        self.confirm(number);
        self.after_input();
    }

    /// The transport delivered (`ok`) or failed to deliver a snapshot message to `to`.
    pub fn report_snapshot(&mut self, now: Millis, to: u64, ok: bool) {
        self.observe_clock(now);
        if self.halted.is_some() {
            return;
        }
        let status = if ok {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
        self.after_input();
    }

    /// The transport could not reach `to`.
    pub fn report_unreachable(&mut self, now: Millis, to: u64) {
        self.observe_clock(now);
        if self.halted.is_some() {
            return;
        }
        self.raw.report_unreachable(to);
        self.after_input();
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next message to send to a peer (its `to` field says which).
    pub fn poll_message(&mut self) -> Option<Message> {
        self.outbox.pop_front()
    }

    /// The next batch to store durably, in order; confirm those with a `ready` number through
    /// [`Node::on_persisted`].
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persist.pop_front()
    }

    /// The next proposal answered.
    pub fn poll_answer(&mut self) -> Option<Answer> {
        self.answers.pop_front()
    }

    /// The next engine event, with the index of the entry that produced it. Every replica
    /// produces the same events; a host routes those for connections it holds, and skips the
    /// ones tagged [`EntryEvent::replayed`] (re-applied after a restart).
    pub fn poll_event(&mut self) -> Option<EntryEvent> {
        self.events.pop_front()
    }

    /// The next applied record (with `observe_applied`).
    pub fn poll_applied(&mut self) -> Option<Applied> {
        self.applied_log.pop_front()
    }

    /// When to call [`Node::tick`] next: the next Raft tick, or sooner on a leader with an
    /// engine timer due. Never in the past for long: after a `Tick` proposal raft-rs dropped
    /// (a leadership transfer), the engine's deadline waits for the next Raft tick. A stopped
    /// node ([`Node::halted`]) has nothing to do (`Millis(u64::MAX)`).
    #[must_use]
    pub fn poll_timeout(&self) -> Millis {
        if self.halted.is_some() {
            return Millis(u64::MAX);
        }
        let mut at = self.next_tick_at;
        if self.is_leader() && self.tick_in_flight.is_none() {
            if let Some(deadline) = self.engine.poll_timeout() {
                at = at.min(deadline.max(self.tick_retry_at));
            }
        }
        at
    }

    // ---- getters ------------------------------------------------------------------------

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

    /// The host learned that peer `id` restarted with an empty log (its data was lost): on
    /// the leader, forget what it had stored and probe it from the start, so it is sent a
    /// snapshot and the log again instead of being trusted with entries it no longer holds.
    pub fn peer_lost_its_log(&mut self, now: Millis, id: u64) {
        self.observe_clock(now);
        if self.is_leader() && id != self.cfg.id {
            if let Some(pr) = self.raw.raft.mut_prs().get_mut(id) {
                pr.matched = 0;
                pr.pending_snapshot = 0;
                pr.become_probe();
            }
            self.raw.raft.send_append(id);
        }
        self.after_input();
    }

    /// Asks the leader to hand leadership to `to` (raft-rs's leader transfer): it stops taking
    /// proposals, brings `to` up to date and tells it to campaign at once. Ignored on a
    /// follower.
    pub fn transfer_leader(&mut self, now: Millis, to: u64) {
        self.observe_clock(now);
        if self.is_leader() {
            self.raw.transfer_leader(to);
        }
        self.after_input();
    }

    // ---- internals ----------------------------------------------------------------------

    fn observe_clock(&mut self, now: Millis) {
        self.clock = self.clock.max(now);
    }

    /// The `now` the leader stamps on a new entry: its clock, but never below the log's
    /// highest, so time never goes backwards across a failover.
    pub(crate) fn stamp(&self) -> Millis {
        self.clock.max(self.max_now)
    }

    /// After every input: process readies until none is left, then let a leader propose a
    /// due `Tick`.
    fn after_input(&mut self) {
        self.settle();
        if self.halted.is_none() && self.maybe_propose_tick() {
            self.settle();
        }
    }

    fn settle(&mut self) {
        loop {
            if self.halted.is_some() {
                return;
            }
            self.observe_role();
            if !self.raw.has_ready() {
                break;
            }
            self.handle_ready();
        }
        self.report_applied();
    }

    /// Stops the node: raft-rs is left mid-ready and never driven again. Proposals waiting
    /// are answered `Lost` (the cluster may still commit them).
    pub(crate) fn halt(&mut self, reason: String) {
        for (seq, _) in std::mem::take(&mut self.pending) {
            self.answers.push_back(Answer {
                proposal: ProposalId(seq),
                outcome: Err(Refused::Lost { leader: None }),
            });
        }
        self.tick_in_flight = None;
        self.halted = Some(reason);
    }

    /// Draws the randomized election timeout from the node's seeded PRNG, replacing the one
    /// raft-rs drew from its unseeded RNG in `reset` (called by `become_follower`,
    /// `become_candidate` and `become_leader`, each a change of term or role).
    pub(crate) fn rejitter(&mut self) {
        let base = self.cfg.election_ticks as u64;
        let t = base + self.rng.next_u64() % base;
        self.raw
            .raft
            .set_randomized_election_timeout(usize::try_from(t).expect("ticks fit usize"));
    }

    /// Catches term and role changes: re-draws the election timeout, fails the proposals of
    /// a leader that stepped down, and has a new leader propose its `NewTerm` entry.
    fn observe_role(&mut self) {
        let (term, role) = (self.raw.raft.term, self.raw.raft.state);
        if term == self.term && role == self.role {
            return;
        }
        let was_leader = self.role == StateRole::Leader;
        let term_changed = term != self.term;
        self.term = term;
        self.role = role;
        // raft-rs resets the timeout on every change but becoming a pre-candidate.
        if term_changed || role != StateRole::PreCandidate {
            self.rejitter();
        }
        if was_leader && (term_changed || role != StateRole::Leader) {
            self.tick_in_flight = None;
            let leader = self.leader();
            for (seq, _) in std::mem::take(&mut self.pending) {
                self.answers.push_back(Answer {
                    proposal: ProposalId(seq),
                    outcome: Err(Refused::Lost { leader }),
                });
            }
        }
        if role == StateRole::Leader && (term_changed || !was_leader) {
            let stamp = self.stamp();
            let data = EntryData {
                origin: None,
                payload: Payload::NewTerm { now: stamp },
            };
            if self.raw.propose(Vec::new(), data.encode()).is_ok() {
                self.max_now = stamp;
            }
        }
    }

    /// A leader whose engine has a timer due by its stamp proposes one `Tick` entry (one at
    /// a time).
    fn maybe_propose_tick(&mut self) -> bool {
        if !self.is_leader() || self.tick_in_flight.is_some() || self.clock < self.tick_retry_at {
            return false;
        }
        let stamp = self.stamp();
        if self.engine.poll_timeout().is_none_or(|d| d > stamp) {
            return false;
        }
        let data = EntryData {
            origin: None,
            payload: Payload::Tick { now: stamp },
        };
        if self.raw.propose(Vec::new(), data.encode()).is_err() {
            // Dropped (a leadership transfer is under way): try again at the next Raft tick,
            // and keep `poll_timeout` from offering the deadline already past meanwhile.
            self.tick_retry_at = self.next_tick_at;
            return false;
        }
        self.max_now = stamp;
        self.tick_in_flight = Some(self.raw.raft.raft_log.last_index());
        true
    }

    fn report_applied(&mut self) {
        self.maybe_compact();
    }
}

/// Whether a message of type `t` is one a peer sends. raft-rs's `RawNode::step` refuses only
/// its local types (`MsgHup`, `MsgBeat`, ...); it would take a `MsgPropose` from the wire
/// (entries the host never proposed) and a `MsgTransferLeader` (moving leadership). This node
/// proposes only on the leader and starts a transfer only on the leader itself
/// (`transfer_leader`), so its peers send none of those, nor read-index messages (reads go
/// through the log). `MsgTimeoutNow` (the leader's word to its chosen successor) is a peer's
/// message, taken only from the leader of the current term (see `step`).
#[must_use]
pub fn from_peer(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppend
            | MessageType::MsgAppendResponse
            | MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgSnapshot
            | MessageType::MsgHeartbeat
            | MessageType::MsgHeartbeatResponse
            // A leader handing over leadership (`transfer_leader`) tells its chosen successor
            // to campaign at once.
            | MessageType::MsgTimeoutNow
    )
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.cfg.id)
            .field("role", &self.raw.raft.state)
            .field("term", &self.raw.raft.term)
            .field("applied", &self.applied)
            .field("commit", &self.commit_index())
            .field("halted", &self.halted)
            .finish_non_exhaustive()
    }
}
