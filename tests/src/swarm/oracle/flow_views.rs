//! What flows show, checked against the oracle's model of them (`flows`): a parent's
//! delivery and its children's outcomes, a flow job's lookup (a waiting parent's too) with its
//! flow, parent and children, `GetFlow`'s tree, `waiting_children`; and each flow's own
//! consistency with the ledger at the end of a call.

use synap_core::{
    Delivery, Error, FlowId, FlowInfo, FlowJobState, FlowNodeInfo, Job, JobState, MessageId,
    OnChildFailure, Reply,
};

use super::flows::{FlowBook, Node, NodeState};
use super::{Oracle, Place};

impl Oracle {
    /// A delivery: a flow parent is delivered only once its children are all finished, with
    /// their outcomes in order (failed ones left out under `ignore`); any other delivery, a
    /// redriven parent's included, carries none.
    pub(super) fn flow_delivery(&mut self, d: &Delivery) {
        let id = d.message_id;
        let Some((fid, ix)) = self.flows.member(id) else {
            assert!(d.children.is_none(), "{id}: no flow parent, yet children");
            return;
        };
        let nodes = &self.flows.flows[&fid];
        let node = &nodes[ix];
        if node.children.is_empty() || node.ended().is_some() {
            assert!(
                d.children.is_none(),
                "{id}: children in a delivery of no released parent ({:?})",
                node.state
            );
            return;
        }
        assert_eq!(
            node.state,
            NodeState::Queued,
            "{id} delivered while waiting for its children"
        );
        let mut want = Vec::new();
        for c in node.children.iter().map(|c| &nodes[*c]) {
            let end = c
                .ended()
                .unwrap_or_else(|| panic!("{id} delivered before its child {} finished", c.id));
            let ledger = self.ledger.map.get(&c.id).map(|e| &e.place);
            // A finished child's queue may have been deleted since (the ledger forgot it), a
            // dead-lettered one redriven.
            let agrees = match end.state {
                FlowJobState::Completed => ledger.is_none_or(|p| *p == Place::Acked),
                FlowJobState::Cancelled => ledger.is_none_or(|p| *p == Place::Cancelled),
                FlowJobState::QueueDeleted => ledger.is_none(),
                _ => true,
            };
            assert!(agrees, "{}: ended {:?}, ledger {ledger:?}", c.id, end.state);
            if node.mode == OnChildFailure::Ignore && end.state.is_failure() {
                continue;
            }
            want.push((c.id, c.queue, end.state, end.reason, end.result.clone()));
        }
        let Some(got) = d.children.as_ref() else {
            // Checked at the end of the call: see `FlowBook::undecorated`.
            self.flows.undecorated.push(id);
            return;
        };
        let got: Vec<_> = got
            .iter()
            .map(|c| {
                let q = self.cfg.queue_index(&c.queue);
                let result = c.result.as_ref().map(synap_core::Json::to_value);
                (c.message_id, q, c.state, c.reason, result)
            })
            .collect();
        assert_eq!(got, want, "{id}: the children its delivery carries");
        self.flows.parent_deliveries += 1;
    }

    /// A lookup of a parent waiting for its children (which the ledger does not have): it is
    /// `waiting_children` with its message. False for any other job.
    pub(super) fn flow_lookup(&mut self, id: MessageId, result: &Result<Reply, Error>) -> bool {
        let Some((fid, ix)) = self.flows.member(id) else {
            return false;
        };
        if !matches!(self.flows.node(fid, ix).state, NodeState::Waiting { .. }) {
            return false;
        }
        let Ok(Reply::Job(job)) = result else {
            panic!("lookup of waiting parent {id} answered {result:?}");
        };
        assert_eq!(job.state, JobState::WaitingChildren, "waiting parent {id}");
        let body = job.message.as_ref().map(synap_core::Json::to_value);
        assert_eq!(body.as_ref(), Some(&self.flows.node(fid, ix).body));
        self.check_flow_fields(job);
        self.flows.queries += 1;
        true
    }

    /// A flow job's lookup names its flow, parent and children; any other job's none.
    pub(super) fn check_flow_fields(&self, job: &Job) {
        let Some((fid, ix)) = self.flows.member(job.message_id) else {
            assert!(
                job.flow_id.is_none(),
                "{}: a flow, yet none",
                job.message_id
            );
            return;
        };
        let nodes = &self.flows.flows[&fid];
        let n = &nodes[ix];
        assert_eq!(job.flow_id, Some(fid), "{}: its flow", n.id);
        assert_eq!(
            job.parent_id,
            n.parent.map(|p| nodes[p].id),
            "{}: parent",
            n.id
        );
        let children: Vec<MessageId> = n.children.iter().map(|c| nodes[*c].id).collect();
        assert_eq!(job.children, children, "{}: children", n.id);
    }

    /// `GetFlow` answered: the tree and every job's state agree with the model; a flow is not
    /// found only once its root finished and none of its jobs can be looked up.
    pub(super) fn check_flow_info(&mut self, flow_id: FlowId, result: &Result<Reply, Error>) {
        self.retention.prune(self.now);
        let nodes = &self.flows.flows[&flow_id];
        match result {
            Ok(Reply::Flow(info)) => {
                let FlowInfo {
                    flow_id: f,
                    finished_at,
                    root,
                    ..
                } = &**info;
                assert_eq!(*f, flow_id);
                assert_eq!(
                    finished_at.is_some(),
                    nodes[0].ended().is_some(),
                    "flow {flow_id}: finished"
                );
                self.check_flow_node(nodes, 0, root);
            }
            Err(Error::FlowNotFound { .. }) => {
                assert!(
                    nodes[0].ended().is_some(),
                    "flow {flow_id} running, not found"
                );
                for n in nodes {
                    let found = self.ledger.map.get(&n.id).is_some_and(|e| match e.place {
                        Place::Acked | Place::Cancelled => self.retention.holds(e.queue, n.id),
                        _ => true,
                    });
                    assert!(!found, "flow {flow_id} forgotten while {} is kept", n.id);
                }
            }
            other => panic!("GetFlow {flow_id} answered {other:?}"),
        }
        self.flows.queries += 1;
    }

    fn check_flow_node(&self, nodes: &[Node], ix: usize, info: &FlowNodeInfo) {
        let n = &nodes[ix];
        assert_eq!(info.message_id, n.id, "GetFlow: pre-order");
        assert_eq!(
            &*info.queue, self.cfg.queues[n.queue].name,
            "{}: queue",
            n.id
        );
        assert_eq!(info.on_child_failure, n.mode, "{}: on_child_failure", n.id);
        let ok = match &n.state {
            NodeState::Waiting { .. } => info.state == FlowJobState::WaitingChildren,
            NodeState::Queued => match self.ledger.map.get(&n.id).map(|e| &e.place) {
                Some(Place::Waiting) => {
                    matches!(info.state, FlowJobState::Ready | FlowJobState::Delayed)
                }
                Some(Place::InFlight { .. }) => info.state == FlowJobState::InFlight,
                _ => false,
            },
            NodeState::Ended(e) => info.state == e.state && info.reason == e.reason,
        };
        assert!(
            ok,
            "GetFlow: {} is {:?}, model {:?}",
            n.id, info.state, n.state
        );
        assert_eq!(info.finished_at.is_some(), n.ended().is_some());
        assert_eq!(info.children.len(), n.children.len(), "{}: children", n.id);
        for (c, ci) in n.children.iter().zip(&info.children) {
            self.check_flow_node(nodes, *c, ci);
        }
    }

    /// One flow agrees with itself and with the ledger.
    pub(super) fn check_flow(&self, fid: FlowId) {
        let nodes = &self.flows.flows[&fid];
        for n in nodes {
            let kids = n.children.iter().map(|c| &nodes[*c]);
            match &n.state {
                NodeState::Waiting { pending } => {
                    let open = kids.clone().filter(|c| c.ended().is_none()).count();
                    assert!(open > 0 && open == *pending, "{}: {pending} pending", n.id);
                    if n.mode == OnChildFailure::Fail {
                        let failed = kids.filter_map(Node::ended).any(|e| e.state.is_failure());
                        assert!(!failed, "{} waits under fail after a child failed", n.id);
                    }
                }
                NodeState::Queued => {
                    for c in kids {
                        assert!(c.ended().is_some(), "{} queued before {}", n.id, c.id);
                    }
                    let e = self.ledger.map.get(&n.id);
                    assert!(
                        e.is_some_and(|e| matches!(
                            e.place,
                            Place::Waiting | Place::InFlight { .. }
                        )),
                        "{}: queued in its flow, ledger {:?}",
                        n.id,
                        e.map(|e| &e.place)
                    );
                }
                NodeState::Ended(_) => {}
            }
            // A job whose parent ended without running is finished, or cancelled in flight.
            if n.parent.is_some_and(|p| nodes[p].ended().is_some()) && n.ended().is_none() {
                let e = &self.ledger.map[&n.id];
                assert!(
                    e.cancel_requested && matches!(e.place, Place::InFlight { .. }),
                    "{}: left running ({:?}) after its parent {} ended",
                    n.id,
                    e.place,
                    nodes[n.parent.unwrap_or(0)].id
                );
            }
        }
    }

    /// Checks `queue`'s `waiting_children` against the model.
    pub(crate) fn check_waiting_children(&self, q: usize, s: &synap_core::QueueStats) {
        assert_eq!(
            s.waiting_children,
            self.flows.waiting_in(q),
            "{}: waiting_children",
            s.queue
        );
    }
}

/// What the swarm reads of the flows as a whole.
impl FlowBook {
    /// Every job of every flow has finished.
    pub(crate) fn all_ended(&self) -> bool {
        self.flows
            .values()
            .all(|nodes| nodes.iter().all(|n| n.ended().is_some()))
    }

    /// Flows whose root ended in each way: (completed, cancelled, failed otherwise).
    pub(crate) fn outcomes(&self) -> (usize, usize, usize) {
        let mut out = (0, 0, 0);
        for nodes in self.flows.values() {
            match nodes[0].ended().map(|e| e.state) {
                Some(FlowJobState::Completed) => out.0 += 1,
                Some(FlowJobState::Cancelled) => out.1 += 1,
                Some(_) => out.2 += 1,
                None => {}
            }
        }
        out
    }

    /// Parents not finished: (id, queue).
    pub(crate) fn open_parents(&self) -> Vec<(MessageId, usize)> {
        let nodes = self.flows.values().flatten();
        nodes
            .filter(|n| !n.children.is_empty() && n.ended().is_none())
            .map(|n| (n.id, n.queue))
            .collect()
    }

    /// Every flow job: (id, queue).
    pub(crate) fn jobs(&self) -> Vec<(MessageId, usize)> {
        let nodes = self.flows.values().flatten();
        nodes.map(|n| (n.id, n.queue)).collect()
    }

    /// Waiting parents on queue `q`.
    pub(crate) fn waiting_in(&self, q: usize) -> u64 {
        let nodes = self.flows.values().flatten();
        nodes
            .filter(|n| n.queue == q && matches!(n.state, NodeState::Waiting { .. }))
            .count() as u64
    }

    /// What keeps flows from ending, for the liveness failure.
    pub(crate) fn unfinished(&self) -> Vec<(MessageId, NodeState)> {
        let nodes = self.flows.values().flatten();
        nodes
            .filter(|n| n.ended().is_none())
            .map(|n| (n.id, n.state.clone()))
            .take(5)
            .collect()
    }
}
