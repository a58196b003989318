//! The cluster task: the one owner of a cluster node's `synap_cluster::Node`.
//!
//! Its loop waits for the first of: a batch of requests from the inbox, messages from peers,
//! the Raft writer's progress, a leader-transfer or membership request, or the node's timer
//! (one `Sleep` re-armed from `poll_timeout()`). After each input it drains the node: messages
//! to the transport, batches to the writer thread, answers to the requests waiting for them,
//! and engine events to the connections this node holds (long-poll answers, session pushes,
//! pub/sub pushes), as the single server's engine task routes them.
//!
//! On the leader each batch of requests becomes one proposal (group commit): one entry, one
//! turn, one `now`. The replies leave only when the node answers the proposal, after the entry
//! is committed (stored on a majority) and applied. A follower (or a node between leaders)
//! answers at once with `NotServing`, naming the leader when it knows one.
//!
//! Membership changes (`members`) come on their own channel and are proposed one at a time;
//! whenever the node's membership changes the task hands the transport the new peers.

mod members;
mod route;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use synap_cluster::{Node, ProposalId, StateRole};
use synap_core::{Command, Event, PubMessage, Reply, SessionId, WaiterId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, info, warn};

use super::config::ClusterConfig;
use super::members::{ChangeReply, ChangeRequest, Member};
use super::transport::{NetEvent, Transport};
use super::writer::{DiskWriter, WriteDone};
use super::{ClusterInbox, LeaderAddr, NotServing};
use crate::clock::Clock;
use crate::engine_task::{ConsumeResult, Request, SessionPush};
use crate::handle::Failure;

/// Requests taken per proposal.
const BATCH: usize = 256;
/// Peer messages taken per step before the node's outputs are drained.
const NET_BATCH: usize = 256;

/// What the task is built from.
pub(super) struct Parts {
    pub(super) node: Node,
    pub(super) clock: Clock,
    pub(super) cfg: ClusterConfig,
    pub(super) writer: DiskWriter,
    pub(super) transport: Transport,
    pub(super) events: broadcast::Sender<Arc<Event>>,
    pub(super) inbox: Arc<ClusterInbox>,
    /// Whether this node's log is empty, as the transport tells peers; cleared once it is not.
    pub(super) empty: Arc<AtomicBool>,
}

/// The task's inputs.
pub(super) struct Inputs {
    pub(super) requests: mpsc::Receiver<Request>,
    pub(super) net: mpsc::Receiver<NetEvent>,
    pub(super) disk: mpsc::UnboundedReceiver<WriteDone>,
    pub(super) transfers: mpsc::UnboundedReceiver<u64>,
    pub(super) changes: mpsc::Receiver<(ChangeRequest, ChangeReply)>,
}

/// Who waits for one command's reply in a proposal.
enum Waiting {
    Call(oneshot::Sender<Result<Reply, Failure>>),
    /// A `CallMany` of `n` commands: its replies are gathered in order.
    Many {
        reply: oneshot::Sender<Vec<Result<Reply, Failure>>>,
        n: usize,
    },
    Consume {
        token: u64,
        reply: oneshot::Sender<ConsumeResult>,
    },
    /// A `Command::WaitJob`, parked when the job is unfinished.
    WaitJob {
        token: u64,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    },
    Attach {
        sink: mpsc::Sender<SessionPush>,
        reply: oneshot::Sender<Result<Reply, Failure>>,
    },
    Subscribe {
        sink: mpsc::Sender<PubMessage>,
        reply: oneshot::Sender<Result<String, Failure>>,
    },
    /// A command the host proposed itself (a give-back, a cancelled wait, a detach).
    Internal,
}

/// A parked long-poll consumer.
struct Parked {
    token: u64,
    reply: oneshot::Sender<ConsumeResult>,
}

/// State of the cluster task.
pub(super) struct ClusterTask {
    node: Node,
    clock: Clock,
    cfg: ClusterConfig,
    writer: DiskWriter,
    transport: Transport,
    events: broadcast::Sender<Arc<Event>>,
    inbox: Arc<ClusterInbox>,
    empty: Arc<AtomicBool>,
    in_flight: HashMap<ProposalId, Vec<Waiting>>,
    parked: HashMap<WaiterId, Parked>,
    /// Parked job waits: answered by `Event::JobWaited` or at their deadline.
    parked_jobs: HashMap<WaiterId, (u64, oneshot::Sender<Result<Reply, Failure>>)>,
    by_token: HashMap<u64, WaiterId>,
    /// Consumes proposed and not yet answered, by token.
    consuming: HashSet<u64>,
    /// Consumes whose client left before the answer: what they get is given back.
    abandoned: HashSet<u64>,
    /// Waiters this node cancelled: a delivery to one of them is given back.
    cancelled: HashSet<WaiterId>,
    sinks: HashMap<String, mpsc::Sender<PubMessage>>,
    sessions: HashMap<SessionId, mpsc::Sender<SessionPush>>,
    /// Commands the host must propose itself, at the end of the step.
    internal: Vec<Command>,
    draining: bool,
    was_leader: bool,
    term: u64,
    elections: u64,
    stopped: Option<oneshot::Sender<()>>,
    /// Membership changes proposed and not yet answered.
    changes: HashMap<ProposalId, ChangeReply>,
    /// The members, as of the membership version last seen.
    members: Vec<Member>,
    seen_membership: Option<u64>,
    was_member: bool,
}

impl ClusterTask {
    pub(super) fn new(p: Parts) -> Self {
        let term = p.node.term();
        Self {
            node: p.node,
            clock: p.clock,
            cfg: p.cfg,
            writer: p.writer,
            transport: p.transport,
            events: p.events,
            inbox: p.inbox,
            empty: p.empty,
            in_flight: HashMap::new(),
            parked: HashMap::new(),
            parked_jobs: HashMap::new(),
            by_token: HashMap::new(),
            consuming: HashSet::new(),
            abandoned: HashSet::new(),
            cancelled: HashSet::new(),
            sinks: HashMap::new(),
            sessions: HashMap::new(),
            internal: Vec::new(),
            draining: false,
            was_leader: false,
            term,
            elections: 0,
            stopped: None,
            changes: HashMap::new(),
            members: Vec::new(),
            seen_membership: None,
            was_member: false,
        }
    }

    /// The loop: one input at a time, then the node's outputs; until a `Stop`, the inbox
    /// closing, or a storage failure.
    pub(super) async fn run(mut self, mut i: Inputs) {
        let sleep = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(sleep);
        let mut batch = Vec::with_capacity(BATCH);
        self.drain();
        loop {
            let deadline = self.node.poll_timeout();
            sleep.as_mut().reset(self.clock.instant_at(deadline));
            tokio::select! {
                biased;
                Some(done) = i.disk.recv() => match done {
                    WriteDone::Persisted(n) => self.node.on_persisted(self.clock.now(), n),
                    WriteDone::Failed(why) => {
                        error!("{why}; this node stops");
                        break;
                    }
                },
                Some(ev) = i.net.recv() => {
                    self.on_net(ev);
                    for _ in 1..NET_BATCH {
                        match i.net.try_recv() {
                            Ok(ev) => self.on_net(ev),
                            Err(_) => break,
                        }
                    }
                }
                Some(to) = i.transfers.recv() => {
                    info!(to, "leadership transfer asked");
                    self.node.transfer_leader(self.clock.now(), to);
                }
                Some((req, reply)) = i.changes.recv() => self.on_change(req, reply),
                n = i.requests.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.on_requests(&mut batch);
                }
                () = &mut sleep => self.node.tick(self.clock.now()),
            }
            self.drain();
            if self.stopped.is_some() {
                break;
            }
        }
        self.finish();
    }

    fn on_net(&mut self, ev: NetEvent) {
        let now = self.clock.now();
        match ev {
            NetEvent::Received(msg) => {
                if let Err(e) = self.node.step(now, msg) {
                    warn!(error = %e, "raft message refused");
                }
            }
            NetEvent::Unreachable(id) => self.node.report_unreachable(now, id),
            NetEvent::Snapshot { to, ok } => self.node.report_snapshot(now, to, ok),
            NetEvent::Accepted {
                peer,
                stream,
                empty,
            } => self.transport.adopt(peer, stream, empty),
            NetEvent::PeerEmpty(id) => {
                if self.node.is_leader() {
                    warn!(
                        peer = id,
                        "peer restarted with an empty log; sending it everything again"
                    );
                }
                self.node.peer_lost_its_log(now, id);
            }
        }
    }

    /// The leader this node knows of, with its addresses.
    fn leader_addr(&self) -> Option<LeaderAddr> {
        let id = self.node.leader()?;
        let member = self.members.iter().find(|m| m.id == id);
        let n = member
            .and_then(|m| m.addrs.as_ref())
            .or(self.cfg.node(id))?;
        Some(LeaderAddr {
            id,
            http: n.http,
            rpc: n.rpc,
        })
    }

    /// Why this node does not take requests now.
    fn not_serving(&self) -> Failure {
        Failure::Cluster(match self.leader_addr() {
            Some(l) if l.id != self.cfg.node_id => NotServing::NotLeader(l),
            _ => NotServing::NoLeader,
        })
    }

    /// One batch of requests: those that need the log become one proposal.
    fn on_requests(&mut self, batch: &mut Vec<Request>) {
        let mut cmds = Vec::with_capacity(batch.len());
        let mut waits = Vec::with_capacity(batch.len());
        for req in batch.drain(..) {
            self.on_request(req, &mut cmds, &mut waits);
        }
        self.propose(cmds, waits);
    }

    fn on_request(&mut self, req: Request, cmds: &mut Vec<Command>, waits: &mut Vec<Waiting>) {
        match req {
            Request::Call { cmd, reply } => {
                cmds.push(cmd);
                waits.push(Waiting::Call(reply));
            }
            Request::CallMany { cmds: many, reply } => {
                waits.push(Waiting::Many {
                    reply,
                    n: many.len(),
                });
                cmds.extend(many);
            }
            Request::Consume {
                mut cmd,
                token,
                reply,
            } => {
                if let (true, Command::Consume { wait_ms, .. }) = (self.draining, &mut cmd) {
                    *wait_ms = 0;
                }
                cmds.push(cmd);
                waits.push(Waiting::Consume { token, reply });
            }
            Request::WaitJob {
                mut cmd,
                token,
                reply,
            } => {
                if let (true, Command::WaitJob { wait_ms, .. }) = (self.draining, &mut cmd) {
                    // No new waiters while shutting down: answer with the job as it is.
                    *wait_ms = 0;
                }
                cmds.push(cmd);
                waits.push(Waiting::WaitJob { token, reply });
            }
            Request::Abandon { token, returned } => self.abandon(token, returned),
            Request::Attach { cmd, sink, reply } => {
                cmds.push(cmd);
                waits.push(Waiting::Attach { sink, reply });
            }
            Request::Subscribe {
                patterns,
                sink,
                reply,
            } => {
                let credit = u32::try_from(sink.capacity()).unwrap_or(u32::MAX);
                cmds.push(Command::Subscribe {
                    subscriber_id: None,
                    patterns,
                    credit,
                    idle_ms: None,
                });
                waits.push(Waiting::Subscribe { sink, reply });
            }
            Request::Snapshot { reply } => {
                let _ = reply.send(route::stats(self.node.engine()));
            }
            Request::Digest { at, reply } => {
                let (digest, at) = crate::engine_task::digest_at(self.node.engine(), at);
                let _ = reply.send((digest, at, Some(self.node.applied_index())));
            }
            Request::Stop { done } => {
                self.draining = true;
                self.stopped = Some(done);
            }
            Request::Drain => {
                self.draining = true;
                self.end_parked(|| Ok(Vec::new()));
            }
        }
    }

    /// Proposes `cmds` as one turn, or refuses them all when this node is not the leader.
    fn propose(&mut self, cmds: Vec<Command>, waits: Vec<Waiting>) {
        if cmds.is_empty() {
            return;
        }
        if !self.node.is_leader() {
            let f = self.not_serving();
            self.refuse(waits, &f);
            return;
        }
        match self.node.propose(self.clock.now(), cmds) {
            Ok(p) => {
                self.consuming.extend(waits.iter().filter_map(|w| match w {
                    Waiting::Consume { token, .. } => Some(*token),
                    _ => None,
                }));
                self.in_flight.insert(p, waits);
            }
            Err(_) => {
                let f = self.not_serving();
                self.refuse(waits, &f);
            }
        }
    }

    /// Answers every request of a proposal with `f`.
    fn refuse(&mut self, waits: Vec<Waiting>, f: &Failure) {
        for w in waits {
            match w {
                Waiting::Call(tx)
                | Waiting::Attach { reply: tx, .. }
                | Waiting::WaitJob { reply: tx, .. } => {
                    let _ = tx.send(Err(f.clone()));
                }
                Waiting::Many { reply, n } => {
                    let _ = reply.send(vec![Err(f.clone()); n]);
                }
                Waiting::Consume { token, reply } => {
                    self.consuming.remove(&token);
                    self.abandoned.remove(&token);
                    let _ = reply.send(Err(f.clone()));
                }
                Waiting::Subscribe { reply, .. } => {
                    let _ = reply.send(Err(f.clone()));
                }
                Waiting::Internal => {}
            }
        }
    }

    /// The client of consume `token` hung up.
    fn abandon(&mut self, token: u64, returned: Vec<synap_core::Delivery>) {
        if let Some(waiter_id) = self.by_token.remove(&token) {
            self.parked.remove(&waiter_id);
            self.parked_jobs.remove(&waiter_id);
            self.cancelled.insert(waiter_id);
            self.internal.push(Command::CancelWait { waiter_id });
        } else if self.consuming.contains(&token) {
            self.abandoned.insert(token);
        }
        self.give_back(returned);
    }

    /// Drains the node until it has nothing more to hand out, then publishes the view.
    fn drain(&mut self) {
        for _ in 0..64 {
            let mut unreachable = Vec::new();
            while let Some(m) = self.node.poll_message() {
                let (to, snapshot) = (
                    m.to,
                    m.get_msg_type() == synap_cluster::MessageType::MsgSnapshot,
                );
                if !self.transport.send(m) {
                    unreachable.push((to, snapshot));
                }
            }
            while let Some(b) = self.node.poll_persist() {
                self.writer.write(b);
            }
            let mut busy = false;
            while let Some(a) = self.node.poll_answer() {
                self.on_answer(a);
                busy = true;
            }
            while let Some(ev) = self.node.poll_event() {
                // Events of entries replayed at start were answered before the restart, to
                // clients this process does not hold.
                if !ev.replayed {
                    self.on_event(ev.event);
                }
                busy = true;
            }
            self.observe_role();
            self.refresh_members();
            let now = self.clock.now();
            for (to, snapshot) in unreachable {
                if snapshot {
                    self.node.report_snapshot(now, to, false);
                }
                self.node.report_unreachable(now, to);
            }
            if !self.internal.is_empty() && self.node.is_leader() {
                let cmds = std::mem::take(&mut self.internal);
                let waits = cmds.iter().map(|_| Waiting::Internal).collect();
                self.propose(cmds, waits);
                busy = true;
            } else if !self.node.is_leader() {
                // A follower cannot propose: the new leader's first entry ends them anyway.
                self.internal.clear();
            }
            if !busy {
                break;
            }
        }
        self.publish_view();
    }

    /// Catches leadership changes: a deposed leader's parked consumers and sessions end
    /// (the new term's first entry drops them from the engine).
    fn observe_role(&mut self) {
        let term = self.node.term();
        if term != self.term {
            self.term = term;
            self.elections += 1;
        }
        let leader = self.node.is_leader();
        if self.was_leader && !leader {
            info!(term, leader = ?self.node.leader(), "this node is no longer the leader");
            let f = self.not_serving();
            let lost = match f {
                Failure::Cluster(NotServing::NotLeader(l)) => NotServing::Lost(Some(l)),
                _ => NotServing::Lost(None),
            };
            self.end_parked(|| Err(Failure::Cluster(lost.clone())));
            for (_, sink) in self.sessions.drain() {
                let _ = sink.try_send(SessionPush::Ended);
            }
            self.sinks.clear();
            self.consuming.clear();
            self.abandoned.clear();
            self.cancelled.clear();
        } else if leader && !self.was_leader {
            info!(term, node_id = self.cfg.node_id, "this node is the leader");
        }
        self.was_leader = leader;
    }

    /// Answers every parked consumer with `answer()`.
    fn end_parked(&mut self, answer: impl Fn() -> ConsumeResult) {
        for (waiter_id, p) in std::mem::take(&mut self.parked) {
            if self.node.is_leader() {
                self.internal.push(Command::CancelWait { waiter_id });
            }
            let _ = p.reply.send(answer());
        }
        self.by_token.clear();
    }

    fn finish(mut self) {
        self.end_parked(|| Ok(Vec::new()));
        info!("cluster node stopped");
        if let Some(done) = self.stopped.take() {
            let _ = done.send(());
        }
    }
}

/// The name of a Raft role in `/cluster` and metrics.
pub(super) fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre_candidate",
    }
}
