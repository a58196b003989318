//! Flows (DESIGN.md §14): jobs that wait for other jobs.
//!
//! `AddFlow` takes a tree of jobs. Every job without children is published to its queue at
//! once; every parent waits here, `waiting_children`, holding its message, until each of its
//! children is finished; then it is published to its queue (ready, under the queue's flow
//! control like any message) and its delivery carries its children's outcomes. The whole tree
//! is checked before anything changes, so a flow is added whole or not at all. (Not to be
//! confused with flow *control*, `queue/flow.rs`: pause, rate limits, groups.)
//!
//! The engine tells a flow that one of its jobs finished through the lifecycle's `finished`
//! list (`Engine::settle_finished`): an ack, a cancel, a dead-letter (a nack, a lease expiry,
//! a TTL) or a purge. A queue deleted ends its flow jobs as `queue_deleted`. Whatever ends a
//! job, its parent hears of it, so no parent waits forever: under `fail` a failed child
//! dead-letters the parent (reason `child_failed`) and cancels its unfinished children;
//! under `continue` and `ignore` the parent runs once all are finished. Cancelling a parent
//! cancels its unfinished descendants.
//!
//! A flow is engine state like the rest: its record is in snapshots and the state digest, and
//! replaying the command log rebuilds it. The indexes below are rebuilt from the records when
//! a snapshot is read. A record lives while its root is unfinished or any of its jobs can
//! still be looked up (queued, kept by the lifecycle's retention, or in a DLQ); records past
//! that are swept when flows are added (`limits.max_flows` bounds them).
//!
//! Source map: `tree.rs` (the input and its shape checks), `types.rs` (ids, states, replies),
//! `add.rs` (`AddFlow`), `run.rs` (what a finished job does to its flow), `view.rs` (lookups,
//! `GetFlow`, the children a delivery carries, retention), `check.rs` (invariants).

mod add;
#[cfg(any(test, feature = "invariants"))]
mod check;
mod run;
mod tree;
mod types;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::{DeadLetterReason, Headers, MessageId};
use crate::fxmap::SortedMap;
use crate::ids::QueueId;
use crate::{Json, Millis};

pub use tree::{FlowTree, OnChildFailure};
pub use types::{FlowAdded, FlowChild, FlowId, FlowInfo, FlowJobRef, FlowJobState, FlowNodeInfo};

/// A node's place in its flow: its index in the record's pre-order list.
type Ix = u32;

/// One flow: its jobs in pre-order (the root first).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) created_at: Millis,
    /// When the root finished.
    pub(crate) finished_at: Option<Millis>,
    pub(crate) nodes: Vec<Node>,
}

/// One job of a flow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Node {
    pub(crate) id: MessageId,
    pub(crate) queue: QueueId,
    pub(crate) queue_name: Arc<str>,
    pub(crate) parent: Option<Ix>,
    pub(crate) children: Vec<Ix>,
    pub(crate) on_child_failure: OnChildFailure,
    pub(crate) state: NodeState,
}

/// Where a flow job is, as its flow sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NodeState {
    /// A parent waiting for `pending` unfinished children; its message waits here.
    Waiting { pending: u32, job: Box<Pending> },
    /// In its queue: ready, delayed or in flight.
    Queued,
    /// Finished.
    Ended(Box<Ended>),
}

/// A waiting parent's message, published when its children are finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) body: Json,
    pub(crate) priority: Option<u8>,
    pub(crate) headers: Headers,
    pub(crate) group: Option<Arc<str>>,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) max_retries: Option<u32>,
}

impl Pending {
    /// Message bytes it holds (body and headers), as a queued message would.
    pub(crate) fn bytes(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.body.len() + headers) as u64
    }
}

/// How a flow job finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Ended {
    pub(crate) state: FlowJobState,
    pub(crate) reason: Option<DeadLetterReason>,
    /// Its result, kept while its parent may still run (dropped when the parent finishes).
    pub(crate) result: Option<Json>,
    pub(crate) at: Millis,
}

impl Ended {
    fn bytes(&self) -> u64 {
        self.result.as_ref().map_or(0, |r| r.len() as u64)
    }
}

impl NodeState {
    /// Bytes the flow holds for this node: a waiting parent's message, a kept result.
    fn bytes(&self) -> u64 {
        match self {
            Self::Waiting { job, .. } => job.bytes(),
            Self::Queued => 0,
            Self::Ended(e) => e.bytes(),
        }
    }

    pub(crate) fn ended(&self) -> Option<&Ended> {
        match self {
            Self::Ended(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        !matches!(self, Self::Ended(_))
    }
}

/// Every flow, with indexes rebuilt from the records: by job, open jobs by queue, waiting
/// parents per queue, finished flows by finish time. Serialized as the records alone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flows {
    records: BTreeMap<FlowId, Record>,
    /// Each flow job's flow and place.
    members: SortedMap<MessageId, (FlowId, Ix)>,
    /// Unfinished flow jobs (waiting or queued) by queue, so a queue's deletion finds its own.
    open: BTreeSet<(QueueId, FlowId, Ix)>,
    /// Waiting parents per queue (the `waiting_children` statistic).
    waiting: BTreeMap<QueueId, u64>,
    /// Flows whose root finished, oldest first: the candidates for the retention sweep.
    done: BTreeSet<(Millis, FlowId)>,
    /// Bytes held for flows (waiting parents' messages, kept results), counted in the
    /// engine's `held_bytes` too.
    held_bytes: u64,
}

impl Serialize for Flows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.records.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Flows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let records = BTreeMap::<FlowId, Record>::deserialize(d)?;
        let mut flows = Self::default();
        for (fid, record) in records {
            flows.insert(fid, record);
        }
        Ok(flows)
    }
}

impl Flows {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    pub(crate) fn record(&self, fid: FlowId) -> Option<&Record> {
        self.records.get(&fid)
    }

    pub(crate) fn node(&self, fid: FlowId, ix: Ix) -> &Node {
        &self.records[&fid].nodes[ix as usize]
    }

    /// The flow and place of a flow job.
    pub(crate) fn member(&self, id: MessageId) -> Option<(FlowId, Ix)> {
        if self.members.is_empty() {
            return None;
        }
        self.members.get(&id).copied()
    }

    /// Waiting parents of a queue.
    pub(crate) fn waiting_in(&self, queue: QueueId) -> u64 {
        self.waiting.get(&queue).copied().unwrap_or(0)
    }

    /// The unfinished flow jobs of a queue.
    pub(crate) fn open_in(&self, queue: QueueId) -> Vec<(FlowId, Ix)> {
        let from = (queue, FlowId(uuid::Uuid::nil()), 0);
        self.open
            .range(from..)
            .take_while(|(q, _, _)| *q == queue)
            .map(|(_, f, i)| (*f, *i))
            .collect()
    }

    /// Adds a record and indexes it.
    pub(crate) fn insert(&mut self, fid: FlowId, record: Record) {
        for (ix, node) in record.nodes.iter().enumerate() {
            let ix = ix as Ix;
            self.members.insert(node.id, (fid, ix));
            self.index(fid, ix, Share::of(node), true);
        }
        if let Some(at) = record.finished_at {
            self.done.insert((at, fid));
        }
        self.records.insert(fid, record);
    }

    /// Removes a record and its index entries.
    pub(crate) fn remove(&mut self, fid: FlowId) {
        let Some(record) = self.records.remove(&fid) else {
            return;
        };
        for (ix, node) in record.nodes.iter().enumerate() {
            self.members.remove(&node.id);
            self.index(fid, ix as Ix, Share::of(node), false);
        }
        if let Some(at) = record.finished_at {
            self.done.remove(&(at, fid));
        }
    }

    /// Adds (or removes) what a node contributes to the indexes.
    fn index(&mut self, fid: FlowId, ix: Ix, share: Share, add: bool) {
        if share.open {
            let key = (share.queue, fid, ix);
            if add {
                self.open.insert(key);
            } else {
                self.open.remove(&key);
            }
        }
        if share.waiting {
            let n = self.waiting.entry(share.queue).or_default();
            if add {
                *n += 1;
            } else {
                *n -= 1;
                if *n == 0 {
                    self.waiting.remove(&share.queue);
                }
            }
        }
        if add {
            self.held_bytes += share.bytes;
        } else {
            self.held_bytes -= share.bytes;
        }
    }

    /// Moves a node to `state`; returns its old state. The root's end finishes the flow.
    pub(crate) fn set_state(&mut self, fid: FlowId, ix: Ix, state: NodeState) -> NodeState {
        let before = Share::of(self.node(fid, ix));
        self.index(fid, ix, before, false);
        let record = self.records.get_mut(&fid).expect("the flow exists");
        let node = &mut record.nodes[ix as usize];
        let old = std::mem::replace(&mut node.state, state);
        let after = Share::of(node);
        if ix == 0
            && let Some(e) = node.state.ended()
        {
            record.finished_at = Some(e.at);
            self.done.insert((e.at, fid));
        }
        self.index(fid, ix, after, true);
        old
    }

    /// Sets a waiting parent's count of unfinished children.
    pub(crate) fn set_pending(&mut self, fid: FlowId, ix: Ix, left: u32) {
        let record = self.records.get_mut(&fid).expect("the flow exists");
        if let NodeState::Waiting { pending, .. } = &mut record.nodes[ix as usize].state {
            *pending = left;
        }
    }

    /// Drops the result an ended node keeps (its parent has finished).
    pub(crate) fn drop_result(&mut self, fid: FlowId, ix: Ix) {
        let record = self.records.get_mut(&fid).expect("the flow exists");
        if let NodeState::Ended(e) = &mut record.nodes[ix as usize].state
            && let Some(r) = e.result.take()
        {
            self.held_bytes -= r.len() as u64;
        }
    }

    /// Finished flows, oldest first.
    pub(crate) fn done(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.done.iter().map(|(_, f)| *f)
    }

    /// Every flow's id, in order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.records.keys().copied()
    }
}

/// What one node contributes to the indexes.
#[derive(Clone, Copy)]
struct Share {
    queue: QueueId,
    open: bool,
    waiting: bool,
    bytes: u64,
}

impl Share {
    fn of(node: &Node) -> Self {
        Self {
            queue: node.queue,
            open: node.state.is_open(),
            waiting: matches!(node.state, NodeState::Waiting { .. }),
            bytes: node.state.bytes(),
        }
    }
}
