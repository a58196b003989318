//! What happens to a flow as its jobs finish: a finished child tells its parent; a parent
//! whose children are all finished is published; a failed child under `fail` dead-letters its
//! parent and cancels the parent's other unfinished children; a cancelled parent cancels its
//! unfinished descendants; a deleted queue ends its flow jobs.
//!
//! A node is ended (`mark_ended`) before anything it sets off runs, so the cancellations a
//! failing parent starts never reach it again, and each parent hears of each child once.

use super::{Ended, FlowId, FlowJobState, Ix, NodeState, OnChildFailure, Pending};
use crate::Error;
use crate::api::{DeadLetterReason, JobState, MessageId, PublishMessage, Reply};
use crate::ctx::{Finished, Outcome};
use crate::engine::Engine;
use crate::ids::QueueId;
use crate::queue::{Body, Message, NewMessage};

/// How a waiting parent that will not run leaves its flow.
#[derive(Clone, Copy)]
enum Settle {
    /// Kept for lookup as cancelled.
    Cancel,
    /// Dead-lettered in its queue's DLQ, reason `child_failed`.
    DeadLetter,
}

impl Engine {
    /// A job finished in its queue (`Engine::settle_finished`): if it is a flow job its queue
    /// held, its flow goes on.
    pub(crate) fn flow_job_finished(&mut self, f: &Finished) {
        let Some((fid, ix)) = self.flows.member(f.id) else {
            return;
        };
        let node = self.flows.node(fid, ix);
        if node.queue != f.queue || !matches!(node.state, NodeState::Queued) {
            // A redriven flow job finishing again, or a parent the flow settled itself.
            return;
        }
        let (state, reason, result) = match &f.outcome {
            Outcome::Completed(r) => (FlowJobState::Completed, None, r.clone()),
            Outcome::Cancelled(r) => (FlowJobState::Cancelled, None, r.clone()),
            Outcome::DeadLettered(DeadLetterReason::Expired) => {
                (FlowJobState::Expired, Some(DeadLetterReason::Expired), None)
            }
            Outcome::DeadLettered(r) => (FlowJobState::DeadLettered, Some(*r), None),
            Outcome::Purged => (FlowJobState::Purged, None, None),
        };
        let at = self.ctx.now;
        self.mark_ended(fid, ix, ended(state, reason, result, at));
        self.propagate(fid, ix);
    }

    /// Ends a node; returns its old state. The children's results are dropped (nothing needs
    /// them once their parent has finished), and a job whose parent will not run (a root, or
    /// a child settling after its parent ended) keeps none.
    fn mark_ended(&mut self, fid: FlowId, ix: Ix, mut end: Ended) -> NodeState {
        let node = self.flows.node(fid, ix);
        let parent_open = node
            .parent
            .is_some_and(|p| self.flows.node(fid, p).state.is_open());
        if !parent_open {
            end.result = None;
        }
        let children = node.children.clone();
        self.flows_edit(|flows| {
            let old = flows.set_state(fid, ix, NodeState::Ended(Box::new(end)));
            for c in children {
                flows.drop_result(fid, c);
            }
            old
        })
    }

    /// Tells an ended node's parent.
    fn propagate(&mut self, fid: FlowId, ix: Ix) {
        let node = self.flows.node(fid, ix);
        let Some(parent) = node.parent else {
            return;
        };
        let failed = node.state.ended().is_some_and(|e| e.state.is_failure());
        self.child_ended(fid, parent, failed);
    }

    /// One of a waiting parent's children finished.
    fn child_ended(&mut self, fid: FlowId, parent: Ix, failed: bool) {
        let node = self.flows.node(fid, parent);
        let NodeState::Waiting { pending, .. } = &node.state else {
            // The parent ended already (failed, cancelled, its queue deleted).
            return;
        };
        if failed && node.on_child_failure == OnChildFailure::Fail {
            self.fail_parent(fid, parent);
        } else if *pending > 1 {
            let left = pending - 1;
            self.flows.set_pending(fid, parent, left);
        } else {
            self.release(fid, parent);
        }
    }

    /// Every child of a waiting parent is finished: it is published to its queue, under the
    /// queue's flow control like any message (never refused: it was accepted with its flow).
    fn release(&mut self, fid: FlowId, ix: Ix) {
        let old = self.flows_edit(|flows| flows.set_state(fid, ix, NodeState::Queued));
        let NodeState::Waiting { job, .. } = old else {
            unreachable!("only a waiting parent is released");
        };
        let node = self.flows.node(fid, ix);
        let (id, qid) = (node.id, node.queue);
        let created_at = self.flows.record(fid).expect("the flow exists").created_at;
        let job = *job;
        let mut m = PublishMessage {
            message: Some(job.body),
            priority: job.priority,
            headers: job.headers,
            ttl_ms: job.ttl_ms,
            max_retries: job.max_retries,
            group: job.group.map(|g| g.to_string()),
            ..PublishMessage::default()
        };
        let q = self
            .queues
            .get_mut(&qid)
            .expect("a waiting parent's queue exists: its deletion ends the parent");
        q.publish_as(&mut self.ctx, &mut m, false, id);
        if let Some(msg) = q.messages.get_mut(&id) {
            // Published with its flow: a lookup showed this time while it waited.
            msg.published_at = created_at;
        }
        q.serve(&mut self.ctx);
    }

    /// A child failed under `fail`: the parent is dead-lettered (`child_failed`) and its
    /// unfinished children are cancelled, with their descendants.
    fn fail_parent(&mut self, fid: FlowId, ix: Ix) {
        let at = self.ctx.now;
        let end = ended(
            FlowJobState::DeadLettered,
            Some(DeadLetterReason::ChildFailed),
            None,
            at,
        );
        let NodeState::Waiting { job, .. } = self.mark_ended(fid, ix, end) else {
            unreachable!("only a waiting parent fails");
        };
        self.cancel_children(fid, ix);
        self.settle_pending(fid, ix, *job, Settle::DeadLetter);
        self.propagate(fid, ix);
    }

    /// Cancels a node's unfinished children and their descendants.
    fn cancel_children(&mut self, fid: FlowId, ix: Ix) {
        let children = self.flows.node(fid, ix).children.clone();
        for c in children {
            self.cancel_node(fid, c);
        }
    }

    /// Cancels an unfinished flow job: one in its queue as a `Cancel` would (at once if ready
    /// or delayed, when its delivery ends if in flight); a waiting parent at once, with its
    /// unfinished descendants.
    fn cancel_node(&mut self, fid: FlowId, ix: Ix) {
        let node = self.flows.node(fid, ix);
        match &node.state {
            NodeState::Ended(_) => {}
            NodeState::Queued => {
                let (id, qid) = (node.id, node.queue);
                let q = self
                    .queues
                    .get_mut(&qid)
                    .expect("a queued flow job's queue exists");
                // A job that left its queue earlier in this same call (a purge of several, a
                // detach giving several back) has its end on the way: it is not cancelled
                // again, and its end reaches a parent that has ended already.
                if q.cancel(&mut self.ctx, id).is_ok() {
                    q.serve(&mut self.ctx);
                }
            }
            NodeState::Waiting { .. } => {
                let end = ended(FlowJobState::Cancelled, None, None, self.ctx.now);
                let NodeState::Waiting { job, .. } = self.mark_ended(fid, ix, end) else {
                    unreachable!("matched a waiting parent");
                };
                self.cancel_children(fid, ix);
                self.settle_pending(fid, ix, *job, Settle::Cancel);
                self.propagate(fid, ix);
            }
        }
    }

    /// `Cancel` of a job that is a waiting parent: it is cancelled with its unfinished
    /// descendants. `None` when the job is not a waiting parent of `queue` (a `Cancel` as
    /// usual).
    pub(crate) fn cancel_waiting_parent(
        &mut self,
        queue: &str,
        id: MessageId,
    ) -> Option<Result<Reply, Error>> {
        let (fid, ix) = self.flows.member(id)?;
        let node = self.flows.node(fid, ix);
        let qid = *self.names.get(queue)?;
        if node.queue != qid || !matches!(node.state, NodeState::Waiting { .. }) {
            return None;
        }
        self.cancel_node(fid, ix);
        Some(Ok(Reply::Cancelled {
            state: JobState::Cancelled,
        }))
    }

    /// A queue was deleted: its unfinished flow jobs end as `queue_deleted`, the children of
    /// its waiting parents are cancelled, and their parents hear of it.
    pub(crate) fn flows_queue_deleted(&mut self, qid: QueueId) {
        let open = self.flows.open_in(qid);
        if open.is_empty() {
            return;
        }
        let at = self.ctx.now;
        let mut parents = Vec::new();
        for &(fid, ix) in &open {
            let end = ended(FlowJobState::QueueDeleted, None, None, at);
            if let NodeState::Waiting { .. } = self.mark_ended(fid, ix, end) {
                parents.push((fid, ix));
            }
        }
        for (fid, ix) in parents {
            self.cancel_children(fid, ix);
        }
        for (fid, ix) in open {
            self.propagate(fid, ix);
        }
    }

    /// A waiting parent that will not run leaves through its queue, so lookups, retention,
    /// waits and the DLQ treat it as any job: its message moves from the flow to its queue,
    /// which keeps it as cancelled or dead-letters it.
    fn settle_pending(&mut self, fid: FlowId, ix: Ix, job: Pending, how: Settle) {
        let node = self.flows.node(fid, ix);
        let (id, qid) = (node.id, node.queue);
        let created_at = self.flows.record(fid).expect("the flow exists").created_at;
        let Some(q) = self.queues.get_mut(&qid) else {
            return;
        };
        let bytes = job.bytes();
        // `mark_ended` let the flow's hold on these bytes go; the queue takes them over, and
        // lets them go itself (or keeps them in its DLQ).
        q.held += bytes;
        self.ctx.held_bytes += bytes;
        let mut msg = Message::new(NewMessage {
            id,
            seq: 0,
            body: Body::Json(job.body),
            priority: job.priority.unwrap_or(q.config.default_priority),
            headers: job.headers,
            now: created_at,
            max_retries: job.max_retries.unwrap_or(q.config.max_retries),
            ttl_ms: job.ttl_ms.or(q.config.message_ttl_ms),
            group: None,
        });
        msg.set_group_name(job.group);
        match how {
            Settle::Cancel => q.settle_cancelled(&mut self.ctx, msg, None, None),
            Settle::DeadLetter => {
                q.dead_letter(&mut self.ctx, msg, DeadLetterReason::ChildFailed);
            }
        }
    }
}

fn ended(
    state: FlowJobState,
    reason: Option<DeadLetterReason>,
    result: Option<crate::Json>,
    at: crate::Millis,
) -> Ended {
    Ended {
        state,
        reason,
        result,
        at,
    }
}
