//! `AddFlow`: the whole tree is checked first (its shape, then against the engine: queues,
//! room, memory, groups, the flow limit), and only then is anything changed, so a refused
//! flow leaves no trace (a refused command is not logged, so it must change nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::tree::{Flat, FlowTree, flatten};
use super::{FlowAdded, FlowId, FlowJobRef, Ix, Node, NodeState, Pending, Record};
use crate::Error;
use crate::api::{Command, MessageId, Reply};
use crate::engine::Engine;
use crate::ids::QueueId;
use crate::queue::{Queue, check_server_memory};

/// What one queue receives from a flow: its jobs without children (published at once).
#[derive(Default)]
struct Arrivals<'a> {
    jobs: u64,
    bytes: u64,
    groups: Vec<&'a str>,
}

impl Engine {
    /// Runs a flows command.
    pub(crate) fn dispatch_flows(&mut self, cmd: Command) -> Result<Reply, Error> {
        match cmd {
            Command::AddFlow { flow } => Ok(Reply::FlowAdded(Box::new(self.add_flow(&flow)?))),
            Command::GetFlow { flow_id } => Ok(Reply::Flow(Box::new(self.get_flow(flow_id)?))),
            other => unreachable!("{other:?} is not a flows command"),
        }
    }

    /// Checks a flow whole, then adds it: jobs without children are published, parents wait.
    pub(crate) fn add_flow(&mut self, tree: &FlowTree) -> Result<FlowAdded, Error> {
        let flat = flatten(tree, &self.ctx.limits)?;
        self.check_arrivals(&flat)?;
        let swept = self.flows_to_sweep();
        let max = self.ctx.limits.max_flows;
        if self.flows.len() - swept.len() >= max {
            return Err(Error::limit("flows", max as u64));
        }
        // Checked: from here on nothing is refused.
        for fid in swept {
            self.remove_flow(fid);
        }
        for f in &flat {
            if !self.names.contains_key(f.tree.queue.as_str()) {
                self.create_queue(&f.tree.queue, None)
                    .expect("a flow's queue was checked");
            }
        }
        let fid = FlowId(self.ctx.new_id());
        let ids: Vec<MessageId> = flat.iter().map(|_| self.ctx.new_id()).collect();
        let mut nodes = Vec::with_capacity(flat.len());
        let mut touched = BTreeSet::new();
        for (f, id) in flat.iter().zip(&ids) {
            let qid = self.names[f.tree.queue.as_str()];
            let state = if f.children.is_empty() {
                let q = self.queues.get_mut(&qid).expect("named queue exists");
                q.publish_as(&mut self.ctx, &mut f.tree.as_publish(), false, *id);
                touched.insert(qid);
                NodeState::Queued
            } else {
                NodeState::Waiting {
                    pending: f.children.len() as u32,
                    job: Box::new(pending_of(f.tree)),
                }
            };
            nodes.push(Node {
                id: *id,
                queue: qid,
                queue_name: self.queues[&qid].name.clone(),
                parent: f.parent,
                children: f.children.clone(),
                on_child_failure: f.tree.on_child_failure,
                state,
            });
        }
        let record = Record {
            created_at: self.ctx.now,
            finished_at: None,
            nodes,
        };
        self.flows_edit(|flows| flows.insert(fid, record));
        for qid in touched {
            let q = self.queues.get_mut(&qid).expect("a touched queue exists");
            q.serve(&mut self.ctx);
        }
        Ok(FlowAdded {
            flow_id: fid,
            root: job_ref(&flat, &ids, 0),
        })
    }

    /// Checks what the flow brings against the engine: every queue exists or may be created
    /// (as a publish would create it), each has room, memory and groups for its jobs without
    /// children, and the server's memory budget holds every job's message.
    fn check_arrivals(&self, flat: &[Flat<'_>]) -> Result<(), Error> {
        let mut per_queue: BTreeMap<&str, Arrivals<'_>> = BTreeMap::new();
        let mut total = 0u64;
        for f in flat {
            let a = per_queue.entry(f.tree.queue.as_str()).or_default();
            let bytes = f.tree.bytes();
            total += bytes;
            if f.children.is_empty() {
                a.jobs += 1;
                a.bytes += bytes;
                a.groups.extend(f.tree.group.as_deref());
            }
        }
        let new = per_queue
            .keys()
            .filter(|name| !self.names.contains_key(**name))
            .count() as u64;
        if new > 0 {
            if !self.config.auto_create_queues {
                let name = per_queue.keys().find(|n| !self.names.contains_key(**n));
                return Err(Error::QueueNotFound {
                    queue: name.expect("a new queue").to_string(),
                });
            }
            let max = self.ctx.limits.max_queues;
            if self.names.len() as u64 + new > max {
                return Err(Error::limit("queues", max));
            }
            self.config.default_queue.validate(&self.ctx.limits)?;
        }
        for (name, a) in &per_queue {
            let fresh;
            let q = match self.names.get(*name) {
                Some(id) => &self.queues[id],
                None => {
                    fresh = Queue::new(QueueId(u32::MAX), name, self.config.default_queue.clone());
                    &fresh
                }
            };
            q.check_room(a.jobs)?;
            q.check_memory(&self.ctx, a.bytes)?;
            q.check_groups(&self.ctx.limits, a.groups.iter().copied())?;
        }
        check_server_memory(&self.ctx, total)
    }

    /// Applies an edit to the flows, keeping the engine's `held_bytes` in step with the bytes
    /// they hold.
    pub(crate) fn flows_edit<R>(&mut self, edit: impl FnOnce(&mut super::Flows) -> R) -> R {
        let before = self.flows.held_bytes();
        let r = edit(&mut self.flows);
        let after = self.flows.held_bytes();
        self.ctx.held_bytes = (self.ctx.held_bytes + after)
            .checked_sub(before)
            .expect("the engine holds the flows' bytes");
        r
    }

    /// Forgets a flow record (swept: finished, and none of its jobs can be looked up).
    fn remove_flow(&mut self, fid: FlowId) {
        self.flows_edit(|flows| flows.remove(fid));
    }
}

/// A parent's message, held while it waits.
fn pending_of(tree: &FlowTree) -> Pending {
    Pending {
        body: tree.message.clone(),
        priority: tree.priority,
        headers: tree.headers.clone(),
        group: tree.group.as_deref().map(Arc::from),
        ttl_ms: tree.ttl_ms,
        max_retries: tree.max_retries,
    }
}

/// The reply's tree from the flattened nodes and their ids.
fn job_ref(flat: &[Flat<'_>], ids: &[MessageId], ix: Ix) -> FlowJobRef {
    let f = &flat[ix as usize];
    FlowJobRef {
        message_id: ids[ix as usize],
        queue: f.tree.queue.clone(),
        children: f.children.iter().map(|c| job_ref(flat, ids, *c)).collect(),
    }
}
