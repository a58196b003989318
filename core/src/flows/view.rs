//! What flows show: a job lookup's flow fields and a waiting parent's lookup, `GetFlow`'s
//! tree, the children a parent's delivery carries, and which flow records are still worth
//! keeping (retention).

use super::{FlowChild, FlowId, FlowInfo, FlowJobState, FlowNodeInfo, Flows, Ix, NodeState};
use super::{OnChildFailure, Record};
use crate::Error;
use crate::api::{Delivery, Event, Job, JobState, MessageId, Reply};
use crate::engine::Engine;
use crate::queue::Queue;

/// Finished flows looked at for the sweep on each `AddFlow` (all of them when the flows are
/// at their limit).
const SWEEP_STEP: usize = 16;

impl Flows {
    /// The children a parent's delivery carries: for a flow job that was published once its
    /// children finished, each child's outcome (failed ones left out under `ignore`). `None`
    /// for any other message.
    pub(crate) fn delivered_children(&self, id: MessageId) -> Option<Vec<FlowChild>> {
        let (fid, ix) = self.member(id)?;
        let node = self.node(fid, ix);
        if node.children.is_empty() || !matches!(node.state, NodeState::Queued) {
            return None;
        }
        let ignore = node.on_child_failure == OnChildFailure::Ignore;
        let children = node
            .children
            .iter()
            .map(|c| self.node(fid, *c))
            .filter_map(|c| {
                let e = c
                    .state
                    .ended()
                    .expect("a published parent's children are finished");
                (!(ignore && e.state.is_failure())).then(|| FlowChild {
                    message_id: c.id,
                    queue: c.queue_name.clone(),
                    state: e.state,
                    result: e.result.clone(),
                    reason: e.reason,
                })
            })
            .collect();
        Some(children)
    }

    /// Fills in the children of the parents' deliveries among `deliveries`.
    fn decorate(&self, deliveries: &mut [Delivery]) {
        for d in deliveries {
            if d.children.is_none() {
                d.children = self.delivered_children(d.message_id);
            }
        }
    }
}

impl Engine {
    /// A job by id, as `GetJob` answers it: from its queue, or a parent waiting in its flow;
    /// with its flow's fields.
    pub(crate) fn lookup_job(&self, queue: &str, id: MessageId) -> Result<Job, Error> {
        self.lookup_job_in(self.queue(queue)?, id)
    }

    pub(crate) fn lookup_job_in(&self, q: &Queue, id: MessageId) -> Result<Job, Error> {
        let mut job = match q.job(id) {
            Ok(job) => job,
            Err(e) => self.waiting_job(q, id).ok_or(e)?,
        };
        self.annotate_job(&mut job);
        Ok(job)
    }

    /// A parent waiting for its children, as a lookup answers it.
    fn waiting_job(&self, q: &Queue, id: MessageId) -> Option<Job> {
        let (fid, ix) = self.flows.member(id)?;
        let node = self.flows.node(fid, ix);
        let NodeState::Waiting { job, .. } = &node.state else {
            return None;
        };
        if node.queue != q.id {
            return None;
        }
        let created_at = self.flows.record(fid)?.created_at;
        Some(Job {
            message_id: id,
            queue: q.name.clone(),
            state: JobState::WaitingChildren,
            priority: job.priority.unwrap_or(q.config.default_priority),
            attempts: 0,
            progress: None,
            result: None,
            last_error: None,
            published_at: created_at,
            started_at: None,
            finished_at: None,
            message: Some(job.body.clone()),
            payload: None,
            headers: job.headers.clone(),
            cancel_requested: false,
            dead_letter_reason: None,
            group: job.group.clone(),
            flow_id: None,
            parent_id: None,
            children: Vec::new(),
        })
    }

    /// Adds a flow job's flow, parent and children to its lookup.
    pub(crate) fn annotate_job(&self, job: &mut Job) {
        let Some((fid, ix)) = self.flows.member(job.message_id) else {
            return;
        };
        let node = self.flows.node(fid, ix);
        job.flow_id = Some(fid);
        job.parent_id = node.parent.map(|p| self.flows.node(fid, p).id);
        job.children = node
            .children
            .iter()
            .map(|c| self.flows.node(fid, *c).id)
            .collect();
    }

    /// Fills in the children of the parents' deliveries in a reply.
    pub(crate) fn decorate_reply(&self, reply: &mut Result<Reply, Error>) {
        if self.flows.is_empty() {
            return;
        }
        if let Ok(Reply::Messages { messages }) = reply {
            self.flows.decorate(messages);
        }
    }

    /// Fills in the children of the parents' deliveries in the events not yet drained.
    pub(crate) fn decorate_events(&mut self) {
        self.decorate_events_from(0);
    }

    /// As `decorate_events`, for the events from index `first` on (those one timer made).
    pub(crate) fn decorate_events_from(&mut self, first: usize) {
        if self.flows.is_empty() {
            return;
        }
        let flows = &self.flows;
        for e in self.ctx.events.iter_mut().skip(first) {
            if let Event::Delivered { messages, .. } | Event::Pushed { messages, .. } = e {
                flows.decorate(messages);
            }
        }
    }

    /// `GetFlow`: the tree with each job's state. A flow that finished and none of whose
    /// jobs can be looked up any more is not found, like a forgotten job.
    pub(crate) fn get_flow(&self, fid: FlowId) -> Result<FlowInfo, Error> {
        let not_found = || Error::FlowNotFound {
            flow_id: fid.to_string(),
        };
        let record = self.flows.record(fid).ok_or_else(not_found)?;
        if !self.flow_retained(record) {
            return Err(not_found());
        }
        Ok(FlowInfo {
            flow_id: fid,
            created_at: record.created_at,
            finished_at: record.finished_at,
            root: self.node_info(record, 0),
        })
    }

    fn node_info(&self, record: &Record, ix: Ix) -> FlowNodeInfo {
        let node = &record.nodes[ix as usize];
        let job = || {
            self.queues
                .get(&node.queue)
                .and_then(|q| q.job(node.id).ok())
        };
        let (state, reason, result, finished_at) = match &node.state {
            NodeState::Waiting { .. } => (FlowJobState::WaitingChildren, None, None, None),
            NodeState::Queued => {
                let state = job().map_or(FlowJobState::Ready, |j| {
                    FlowJobState::of_job(j.state, j.dead_letter_reason)
                });
                (state, None, None, None)
            }
            NodeState::Ended(e) => {
                let result = e.result.clone().or_else(|| job().and_then(|j| j.result));
                (e.state, e.reason, result, Some(e.at))
            }
        };
        FlowNodeInfo {
            message_id: node.id,
            queue: node.queue_name.clone(),
            state,
            reason,
            result,
            finished_at,
            on_child_failure: node.on_child_failure,
            children: node
                .children
                .iter()
                .map(|c| self.node_info(record, *c))
                .collect(),
        }
    }

    /// Whether a flow record is still worth keeping: its root is unfinished, or one of its
    /// jobs can still be looked up (queued, kept by its queue's retention, or in a DLQ).
    fn flow_retained(&self, record: &Record) -> bool {
        record.finished_at.is_none()
            || record.nodes.iter().any(|n| {
                self.queues.get(&n.queue).is_some_and(|q| {
                    q.messages.contains_key(&n.id)
                        || q.kept.get(&n.id).is_some()
                        || q.dlq.contains(n.id)
                })
            })
    }

    /// The finished flows no longer retained, to forget: among the oldest few, or among all
    /// when the flows are at their limit.
    pub(crate) fn flows_to_sweep(&self) -> Vec<FlowId> {
        let full = self.flows.len() >= self.ctx.limits.max_flows;
        let look = if full { usize::MAX } else { SWEEP_STEP };
        self.flows
            .done()
            .take(look)
            .filter(|fid| {
                self.flows
                    .record(*fid)
                    .is_some_and(|r| !self.flow_retained(r))
            })
            .collect()
    }

    /// A flow with its jobs' states, as `GetFlow` answers it; `None` when there is no such
    /// flow (or it is no longer kept).
    #[must_use]
    pub fn flow(&self, flow_id: FlowId) -> Option<FlowInfo> {
        self.get_flow(flow_id).ok()
    }

    /// The flow a job belongs to.
    #[must_use]
    pub fn flow_of(&self, message_id: MessageId) -> Option<FlowId> {
        self.flows.member(message_id).map(|(fid, _)| fid)
    }

    /// The ids of the flow records held (finished ones included until they are swept).
    #[must_use]
    pub fn flow_ids(&self) -> Vec<FlowId> {
        self.flows.ids().collect()
    }

    /// Flow records held.
    #[must_use]
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Message bytes held by flows: the messages of parents waiting for their children and
    /// the results kept for parents yet to run (part of `held_bytes`).
    #[must_use]
    pub fn flow_held_bytes(&self) -> u64 {
        self.flows.held_bytes()
    }
}
