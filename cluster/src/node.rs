//! `Node`: raft-rs's `RawNode` around the engine, driven like the engine (inputs with `now`,
//! outputs drained) so a host or the swarm runs it without I/O of its own.

use std::collections::{BTreeMap, VecDeque};

use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use synap_core::{Command, Engine, Millis, Rng};

use crate::entry::{EntryData, Origin, Payload, encode_turn};
use crate::members::AddressBook;
use crate::snapshot;
use crate::storage::{LogStore, Persist, Recovered};
pub(crate) use crate::types::Pending;
pub use crate::types::{
    Answer, Applied, AppliedKind, EntryEvent, NodeConfig, ProposalId, Refused, TurnResult,
};

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
    /// Addresses of the nodes added at runtime, and the ids removed (replicated).
    pub(crate) book: AddressBook,
    /// Membership changes applied or installed, for hosts to notice them.
    pub(crate) membership_version: u64,
    /// A member was added that the latest snapshot does not name: make a new one.
    pub(crate) snapshot_behind: bool,
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
        let (engine, book) = match &recovered.snapshot {
            Some(s) if snap_index > 0 => snapshot::decode(s.get_data())?,
            _ => (
                Engine::new(cfg.engine.clone(), cfg.engine_seed),
                AddressBook::default(),
            ),
        };
        let mut max_now = engine.now();
        for e in &recovered.entries {
            if e.get_entry_type() != EntryType::EntryNormal {
                continue; // a membership change carries no time
            }
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
            book,
            membership_version: 0,
            snapshot_behind: false,
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
    pub fn propose(
        &mut self,
        now: Millis,
        commands: impl Into<Vec<Command>>,
    ) -> Result<ProposalId, Refused> {
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
        let commands = commands.into();
        let data = encode_turn(Some(origin), stamp, &commands);
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
            turn: Some((stamp, commands)),
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

    /// The host learned that peer `id` restarted with an empty log (its data was lost): on
    /// the leader, forget what it had stored and probe it from the start, so it is sent a
    /// snapshot and the log again instead of being trusted with entries it no longer holds.
    pub fn peer_lost_its_log(&mut self, now: Millis, id: u64) {
        self.observe_clock(now);
        if self.is_leader() && id != self.cfg.id {
            // Only a member has progress to reset (a node not yet added is sent nothing).
            if let Some(pr) = self.raw.raft.mut_prs().get_mut(id) {
                pr.matched = 0;
                pr.pending_snapshot = 0;
                pr.become_probe();
                self.raw.raft.send_append(id);
            }
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

    // ---- internals ----------------------------------------------------------------------

    pub(crate) fn observe_clock(&mut self, now: Millis) {
        self.clock = self.clock.max(now);
    }

    /// The `now` the leader stamps on a new entry: its clock, but never below the log's
    /// highest, so time never goes backwards across a failover.
    pub(crate) fn stamp(&self) -> Millis {
        self.clock.max(self.max_now)
    }

    /// After every input: process readies until none is left, then let a leader propose a
    /// due `Tick` and promote a learner that caught up.
    pub(crate) fn after_input(&mut self) {
        self.settle();
        if self.halted.is_none() && self.maybe_propose_tick() {
            self.settle();
        }
        if self.halted.is_none() && self.maybe_promote() {
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
