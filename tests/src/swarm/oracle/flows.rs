//! Flows (DESIGN.md §14): the oracle's own model of every flow added, driven by the same
//! events as the ledger, and the rules checked against it.
//!
//! A flow job's end (acked, cancelled, dead-lettered, expired) reaches its flow once the step
//! that caused it is over, as in the engine. The model keeps those ends pending and applies
//! them one by one, in order, when an event shows their consequence (a parent published, a
//! job cancelled by its flow, a parent dead-lettered as `child_failed`), or at the end of the
//! call for consequences that show no event (a parent's count of unfinished children, an
//! in-flight job marked cancelled). Applying an end follows DESIGN.md §14: under `fail` a
//! failed child dead-letters its parent and cancels the parent's unfinished children; under
//! `continue` and `ignore` the parent is published once its children are all finished; a
//! cancelled waiting parent cancels its unfinished descendants; a deleted queue ends its flow
//! jobs as `queue_deleted` and cancels the children of its waiting parents.
//!
//! Rules, each failing on the first event or call that breaks it:
//! - a parent is published only once every child is finished, and a parent's delivery
//!   carries exactly its children's outcomes (state, reason, the result their ack carried),
//!   in order, failed ones left out under `ignore`;
//! - a child failing under `fail` dead-letters the parent (`child_failed`, and nothing else
//!   is dead-lettered so) and every unfinished sibling is cancelled at once, or marked so if
//!   in flight: none is left running unnoticed; the same for a cancelled parent's
//!   descendants; nothing of a flow is cancelled without one of these causes;
//! - a refused `AddFlow` adds no job (the harness also requires an unchanged state digest);
//! - lookups, `GetFlow`'s tree and `waiting_children` agree with the model; in the fault-free
//!   phase every flow ends (the swarm does not settle before).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use synap_core::{
    DeadLetterReason, Error, FlowAdded, FlowId, FlowJobRef, FlowJobState, FlowTree, MessageId,
    Observed, ObservedKind, OnChildFailure, PublishMessage, Reply,
};

use super::ledger::Entry;
use super::{Oracle, Place};

/// Whether a released parent may be delivered without its children when it ends later in
/// the same call (see `FlowBook::undecorated`). The engine fills in a delivery's children
/// after each timer, so never; the switch stays to show the rule being relaxed.
const LATE_DECORATION_ALLOWED: bool = false;

/// How a flow job finished, as its flow keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct End {
    pub(crate) state: FlowJobState,
    pub(crate) reason: Option<DeadLetterReason>,
    /// What the ack that settled it carried (completed, or cancelled while in flight).
    pub(crate) result: Option<Value>,
}

impl End {
    fn of(state: FlowJobState, reason: Option<DeadLetterReason>) -> Self {
        Self {
            state,
            reason,
            result: None,
        }
    }
}

/// Where a flow job is, in the model.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeState {
    /// A parent waiting for `pending` unfinished children, in no queue.
    Waiting { pending: usize },
    /// In its queue (the ledger has it).
    Queued,
    /// Finished, within its flow (a redrive later does not change it).
    Ended(End),
}

/// One job of a flow.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) id: MessageId,
    pub(crate) queue: usize,
    pub(crate) parent: Option<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) mode: OnChildFailure,
    pub(crate) body: Value,
    group: Option<String>,
    ttl_ms: Option<u64>,
    max_retries: Option<u32>,
    pub(crate) state: NodeState,
}

impl Node {
    pub(crate) fn ended(&self) -> Option<&End> {
        match &self.state {
            NodeState::Ended(e) => Some(e),
            _ => None,
        }
    }
}

/// Every flow added, and what the current call did to them.
#[derive(Debug, Default)]
pub(crate) struct FlowBook {
    /// Each flow's jobs in pre-order (the root first).
    pub(crate) flows: BTreeMap<FlowId, Vec<Node>>,
    members: BTreeMap<MessageId, (FlowId, usize)>,
    /// Ends seen in this call and not yet applied to their flows, in order.
    pending: VecDeque<(FlowId, usize, End)>,
    /// Jobs added or released whose `Published` event is due in this call.
    releasing: BTreeSet<MessageId>,
    /// Jobs their flow cancelled in this call: none may still be queued at its end.
    doomed: Vec<MessageId>,
    /// Flows touched in this call, checked whole at its end.
    dirty: BTreeSet<FlowId>,
    /// Released parents delivered in this call without their children, checked at its end
    /// (none may be: the engine fills them in after each timer).
    pub(crate) undecorated: Vec<MessageId>,
    /// See `undecorated`.
    pub(crate) late_decorations: usize,
    /// Flows added, and `AddFlow`s refused.
    pub(crate) added: usize,
    /// See `added`.
    pub(crate) refused: usize,
    /// Deliveries of parents carrying their children's outcomes.
    pub(crate) parent_deliveries: usize,
    /// Parents dead-lettered as `child_failed`.
    pub(crate) child_failed: usize,
    /// Jobs cancelled by their flow (a failed sibling, a cancelled ancestor, a deleted queue).
    pub(crate) cascaded: usize,
    /// `GetFlow` trees and flow-job lookups checked.
    pub(crate) queries: usize,
}

impl FlowBook {
    /// The flow and place of a flow job.
    pub(crate) fn member(&self, id: MessageId) -> Option<(FlowId, usize)> {
        self.members.get(&id).copied()
    }

    pub(crate) fn node(&self, fid: FlowId, ix: usize) -> &Node {
        &self.flows[&fid][ix]
    }

    fn node_mut(&mut self, fid: FlowId, ix: usize) -> &mut Node {
        &mut self.flows.get_mut(&fid).expect("a known flow")[ix]
    }
}

/// The deepest tree the engine takes.
fn depth(t: &FlowTree) -> usize {
    1 + t.children.iter().map(depth).max().unwrap_or(0)
}

fn any_node(t: &FlowTree, f: &impl Fn(&FlowTree) -> bool) -> bool {
    f(t) || t.children.iter().any(|c| any_node(c, f))
}

impl Oracle {
    /// An `AddFlow` was answered (its events not drained yet): a flow added whole enters the
    /// model, its jobs without children due to be published in this call; a refused one must
    /// be refused for the right reason (the harness checks that it changed nothing).
    pub(super) fn flow_added(&mut self, tree: &FlowTree, result: &Result<Reply, Error>) {
        let names: BTreeSet<&str> = self.cfg.queues.iter().map(|q| q.name.as_str()).collect();
        let too_deep = depth(tree) > synap_core::Limits::default().max_flow_depth;
        let bad_field = any_node(tree, &|n| {
            n.priority.is_some_and(|p| p > 9) || !names.contains(n.queue.as_str())
        });
        let budgeted = any_node(tree, &|n| {
            let q = self.cfg.queues.iter().find(|q| q.name == n.queue);
            q.is_some_and(|q| q.config.max_bytes.is_some())
        });
        let added = match result {
            Ok(Reply::FlowAdded(a)) => a,
            Err(e) => {
                let want = if too_deep {
                    Some("limit_exceeded")
                } else if bad_field {
                    Some("invalid_argument")
                } else {
                    None
                };
                match want {
                    Some(w) => assert_eq!(e.code(), w, "a bad flow refused as {e:?}"),
                    None => assert!(
                        budgeted && matches!(e, Error::MemoryFull { .. }),
                        "a flow refused: {e:?}"
                    ),
                }
                self.flows.refused += 1;
                return;
            }
            Ok(other) => panic!("AddFlow answered {other:?}"),
        };
        assert!(!too_deep && !bad_field, "a bad flow was added: {added:?}");
        let FlowAdded { flow_id, root } = &**added;
        let mut nodes = Vec::new();
        self.flow_nodes(*flow_id, tree, root, None, &mut nodes);
        assert!(
            self.flows.flows.insert(*flow_id, nodes).is_none(),
            "flow id {flow_id} reused"
        );
        self.flows.dirty.insert(*flow_id);
        self.flows.added += 1;
    }

    /// Adds one node of an added flow (and its children), in pre-order.
    fn flow_nodes(
        &mut self,
        fid: FlowId,
        tree: &FlowTree,
        r: &FlowJobRef,
        parent: Option<usize>,
        nodes: &mut Vec<Node>,
    ) -> usize {
        assert_eq!(
            r.queue, tree.queue,
            "AddFlow's reply: queue of {}",
            r.message_id
        );
        assert_eq!(
            r.children.len(),
            tree.children.len(),
            "AddFlow's reply: children of {}",
            r.message_id
        );
        let ix = nodes.len();
        let leaf = tree.children.is_empty();
        nodes.push(Node {
            id: r.message_id,
            queue: self.cfg.queue_index(&tree.queue),
            parent,
            children: Vec::new(),
            mode: tree.on_child_failure,
            body: tree.message.to_value(),
            group: tree.group.clone(),
            ttl_ms: tree.ttl_ms,
            max_retries: tree.max_retries,
            state: if leaf {
                NodeState::Queued
            } else {
                NodeState::Waiting {
                    pending: tree.children.len(),
                }
            },
        });
        assert!(
            self.flows.members.insert(r.message_id, (fid, ix)).is_none(),
            "job id {} reused",
            r.message_id
        );
        if leaf {
            self.expect_publish(&nodes[ix]);
        }
        for (c, cr) in tree.children.iter().zip(&r.children) {
            let cix = self.flow_nodes(fid, c, cr, Some(ix), nodes);
            nodes[ix].children.push(cix);
        }
        ix
    }

    /// A flow job is due to be published in this call, with its message and group.
    fn expect_publish(&mut self, n: &Node) {
        self.ledger.pending_bodies.insert(n.id, n.body.clone());
        let group = n.group.as_deref().map(Arc::from);
        self.ledger.pending_flow.insert(n.id, (group, None));
        self.flows.releasing.insert(n.id);
    }

    /// A `Cancel` was answered: of a waiting parent, it cancels it with its unfinished
    /// descendants. False when `id` is no waiting parent (a `Cancel` as usual).
    pub(super) fn flow_cancel(&mut self, id: MessageId, result: &Result<Reply, Error>) -> bool {
        let Some((fid, ix)) = self.flows.member(id) else {
            return false;
        };
        if !matches!(self.flows.node(fid, ix).state, NodeState::Waiting { .. }) {
            return false;
        }
        assert_eq!(
            result,
            &Ok(Reply::Cancelled {
                state: synap_core::JobState::Cancelled
            }),
            "cancel of waiting parent {id}"
        );
        self.flows.dirty.insert(fid);
        self.cancel_flow_node(fid, ix);
        true
    }

    /// Queue `q` is being deleted (its ledger entries go): its unfinished flow jobs end as
    /// `queue_deleted`, the children of its waiting parents are cancelled, and their parents
    /// hear of it. Every earlier end was applied at the end of the previous call.
    pub(super) fn flow_queue_deleted(&mut self, q: usize) {
        let mut open = Vec::new();
        for (fid, nodes) in &self.flows.flows {
            for (ix, n) in nodes.iter().enumerate() {
                if n.queue == q && n.ended().is_none() {
                    open.push((*fid, ix, matches!(n.state, NodeState::Waiting { .. })));
                }
            }
        }
        for &(fid, ix, _) in &open {
            self.flows.dirty.insert(fid);
            self.flows.node_mut(fid, ix).state =
                NodeState::Ended(End::of(FlowJobState::QueueDeleted, None));
        }
        for &(fid, ix, _) in open.iter().filter(|(_, _, waiting)| *waiting) {
            self.cancel_flow_children(fid, ix);
        }
        for (fid, ix, _) in open {
            self.flow_propagate(fid, ix);
        }
    }

    /// Before the ledger sees an event: an event that is the consequence of an end not yet
    /// applied (a parent published, a job cancelled by its flow, a parent dead-lettered as
    /// `child_failed`) applies the pending ends up to the one that explains it.
    pub(super) fn flow_before_observed(&mut self, o: &Observed) {
        let Some(id) = o.message_id else { return };
        let Some((fid, ix)) = self.flows.member(id) else {
            return;
        };
        self.flows.dirty.insert(fid);
        loop {
            let explained = match o.kind {
                ObservedKind::Published => {
                    !matches!(self.flows.node(fid, ix).state, NodeState::Waiting { .. })
                }
                ObservedKind::Cancelled => {
                    self.ledger.map.get(&id).is_some_and(|e| e.cancel_requested)
                }
                ObservedKind::DeadLettered if o.reason == Some(DeadLetterReason::ChildFailed) => {
                    self.ledger.child_failing.contains(&id)
                }
                _ => true,
            };
            if explained {
                return;
            }
            let Some((f, i, end)) = self.flows.pending.pop_front() else {
                let node = self.flows.node(fid, ix);
                match o.kind {
                    ObservedKind::Published => panic!(
                        "flow parent {id} published before its children finished: {:?}",
                        node.state
                    ),
                    ObservedKind::Cancelled => panic!(
                        "flow job {id} cancelled by nobody (no cancel of it, no parent failed \
                         or cancelled): {:?}",
                        node.state
                    ),
                    _ => panic!("{id} dead-lettered as child_failed, yet no child of it failed"),
                }
            };
            self.end_flow_node(f, i, end);
        }
    }

    /// After the ledger saw an event: a flow job published takes its overrides; one that
    /// finished in its queue has its end kept for its flow.
    pub(super) fn flow_after_observed(&mut self, o: &Observed) {
        let Some(id) = o.message_id else { return };
        let Some((fid, ix)) = self.flows.member(id) else {
            return;
        };
        let node = self.flows.node(fid, ix).clone();
        match o.kind {
            ObservedKind::Published => {
                assert!(
                    self.flows.releasing.remove(&id),
                    "flow job {id} published unexpectedly ({:?})",
                    node.state
                );
                self.unclaimed.retain(|u| *u != id);
                let m = PublishMessage {
                    ttl_ms: node.ttl_ms,
                    max_retries: node.max_retries,
                    ..PublishMessage::default()
                };
                self.ledger.published(id, &m);
            }
            ObservedKind::Acked | ObservedKind::Cancelled | ObservedKind::DeadLettered => {
                let queued = node.state == NodeState::Queued;
                if !queued
                    || self
                        .flows
                        .pending
                        .iter()
                        .any(|(f, i, _)| (*f, *i) == (fid, ix))
                {
                    // A redriven job finishing again, or a parent its flow settled.
                    return;
                }
                let result = self.ledger.map[&id].result.clone();
                let end = match (o.kind, o.reason) {
                    (ObservedKind::Acked, _) => End {
                        result,
                        ..End::of(FlowJobState::Completed, None)
                    },
                    (ObservedKind::Cancelled, _) => End {
                        result,
                        ..End::of(FlowJobState::Cancelled, None)
                    },
                    (_, Some(DeadLetterReason::Expired)) => {
                        End::of(FlowJobState::Expired, Some(DeadLetterReason::Expired))
                    }
                    (_, reason) => End::of(FlowJobState::DeadLettered, reason),
                };
                self.flows.pending.push_back((fid, ix, end));
            }
            _ => {}
        }
    }

    /// Applies one end to its flow.
    fn end_flow_node(&mut self, fid: FlowId, ix: usize, end: End) {
        let node = self.flows.node_mut(fid, ix);
        assert_eq!(node.state, NodeState::Queued, "{} ended twice", node.id);
        node.state = NodeState::Ended(end);
        self.flow_propagate(fid, ix);
    }

    /// An ended job tells its parent: a failed child under `fail` fails it, else the last
    /// child to finish releases it.
    fn flow_propagate(&mut self, fid: FlowId, ix: usize) {
        let node = self.flows.node(fid, ix);
        let failed = node.ended().expect("ended").state.is_failure();
        let Some(p) = node.parent else { return };
        let parent = self.flows.node(fid, p);
        let NodeState::Waiting { pending } = parent.state else {
            return;
        };
        if failed && parent.mode == OnChildFailure::Fail {
            self.flows.node_mut(fid, p).state = NodeState::Ended(End::of(
                FlowJobState::DeadLettered,
                Some(DeadLetterReason::ChildFailed),
            ));
            self.flows.child_failed += 1;
            self.cancel_flow_children(fid, p);
            self.settle_flow_parent(fid, p, true);
            self.flow_propagate(fid, p);
        } else if pending > 1 {
            self.flows.node_mut(fid, p).state = NodeState::Waiting {
                pending: pending - 1,
            };
        } else {
            self.flows.node_mut(fid, p).state = NodeState::Queued;
            let n = self.flows.node(fid, p).clone();
            self.expect_publish(&n);
        }
    }

    fn cancel_flow_children(&mut self, fid: FlowId, ix: usize) {
        for c in self.flows.node(fid, ix).children.clone() {
            self.cancel_flow_node(fid, c);
        }
    }

    /// The flow cancels one of its jobs: one in its queue as a `Cancel` does (at once unless
    /// in flight), a waiting parent at once with its unfinished descendants.
    fn cancel_flow_node(&mut self, fid: FlowId, ix: usize) {
        let node = self.flows.node(fid, ix);
        let id = node.id;
        match node.state {
            NodeState::Ended(_) => {}
            NodeState::Queued => {
                assert!(
                    !self.flows.releasing.contains(&id),
                    "{id} cancelled before its publish was seen"
                );
                let e = self.ledger.map.get_mut(&id);
                if let Some(e) =
                    e.filter(|e| matches!(e.place, Place::Waiting | Place::InFlight { .. }))
                    && !e.cancel_requested
                {
                    e.cancel_requested = true;
                    self.flows.doomed.push(id);
                    self.flows.cascaded += 1;
                }
            }
            NodeState::Waiting { .. } => {
                self.flows.node_mut(fid, ix).state =
                    NodeState::Ended(End::of(FlowJobState::Cancelled, None));
                self.flows.cascaded += 1;
                self.cancel_flow_children(fid, ix);
                self.settle_flow_parent(fid, ix, false);
                self.flow_propagate(fid, ix);
            }
        }
    }

    /// A waiting parent that will not run leaves through its queue: dead-lettered as
    /// `child_failed`, or cancelled (kept for lookup). The ledger learns of it now.
    fn settle_flow_parent(&mut self, fid: FlowId, ix: usize, failed: bool) {
        let n = self.flows.node(fid, ix).clone();
        let mut e = Entry::fresh(n.queue, self.cfg.queue(n.queue), self.now, Some(n.body));
        // Never published: it adds nothing to `published_total`.
        e.publishes = 0;
        e.group = n.group.as_deref().map(Arc::from);
        if let Some(r) = n.max_retries {
            e.max_retries = r;
        }
        if n.ttl_ms.is_some() {
            e.ttl_ms = n.ttl_ms;
        }
        if failed {
            self.ledger.child_failing.insert(n.id);
        } else {
            e.cancel_requested = true;
            self.flows.doomed.push(n.id);
        }
        assert!(
            self.ledger.map.insert(n.id, e).is_none(),
            "waiting parent {} known to the ledger",
            n.id
        );
    }

    /// The end of a call: the ends left are applied, every job due to be published was, every
    /// parent failed was dead-lettered, every job its flow cancelled is no longer queued, and
    /// each flow touched is consistent.
    pub(super) fn flows_end_of_call(&mut self) {
        while let Some((fid, ix, end)) = self.flows.pending.pop_front() {
            self.end_flow_node(fid, ix, end);
        }
        assert!(
            self.flows.releasing.is_empty(),
            "flow jobs never published: {:?}",
            self.flows.releasing
        );
        assert!(
            self.ledger.child_failing.is_empty(),
            "parents failed under fail, never dead-lettered: {:?}",
            self.ledger.child_failing
        );
        for id in std::mem::take(&mut self.flows.undecorated) {
            let (fid, ix) = self.flows.member(id).expect("a flow job");
            assert!(
                LATE_DECORATION_ALLOWED && self.flows.node(fid, ix).ended().is_some(),
                "{id}: a released parent delivered without its children"
            );
            self.flows.late_decorations += 1;
        }
        for id in std::mem::take(&mut self.flows.doomed) {
            if let Some(e) = self.ledger.map.get(&id) {
                assert!(
                    e.place != Place::Waiting,
                    "{id}: cancelled by its flow, yet still queued"
                );
            }
        }
        for fid in std::mem::take(&mut self.flows.dirty) {
            self.check_flow(fid);
        }
    }
}
