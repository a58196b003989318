//! Bodies of the `/flows` routes (docs/api.md, "Flows"): a tree of jobs where each parent
//! waits for its children, what adding one answers, and a flow's tree with its jobs' states.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DeadLetterReason, Headers, present};

/// What a parent does when one of its children fails (is dead-lettered, expires, is
/// cancelled or purged, or its queue is deleted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChildFailure {
    /// The parent is dead-lettered (reason `child_failed`); its unfinished children are
    /// cancelled.
    #[default]
    Fail,
    /// The parent runs once all its children are finished, with each child's state.
    Continue,
    /// As `continue`, failed children left out of the parent's `children`.
    Ignore,
}

/// `POST /flows`, and each of its `children`: one job and the jobs it waits for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRequest {
    /// The job's queue (created as a publish would create it).
    pub queue: String,
    /// Its body, any JSON.
    pub message: Value,
    /// 0–9; the queue's `default_priority` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Its group (1–255 bytes, no control characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// String headers.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Seconds it may live unacked once ready (for a parent: once its children finished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<f64>,
    /// Overrides the queue's retry limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// What a failed child does to this job; `fail` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_child_failure: Option<OnChildFailure>,
    /// The jobs this one waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Self>,
}

/// One job a flow created: `{message_id, queue, children}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowJob {
    /// The job's message id.
    pub message_id: String,
    /// Its queue.
    pub queue: String,
    /// Its children's jobs, in the order given.
    pub children: Vec<Self>,
}

/// The answer of `POST /flows`: the flow's id and its root job with its children.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCreated {
    /// The flow.
    pub flow_id: String,
    /// The root job's message id.
    pub message_id: String,
    /// The root job's queue.
    pub queue: String,
    /// Its children's jobs.
    pub children: Vec<FlowJob>,
}

/// Where a job of a flow is, or how it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowJobState {
    /// A parent waiting for its children.
    WaitingChildren,
    /// Waiting for its delay or retry delay.
    Delayed,
    /// Deliverable now.
    Ready,
    /// Leased to a worker.
    InFlight,
    /// Acked.
    Completed,
    /// Dead-lettered (`reason` says why).
    DeadLettered,
    /// Dead-lettered because its TTL passed.
    Expired,
    /// Cancelled (by a caller, or by its flow).
    Cancelled,
    /// Purged from its queue while ready or delayed.
    Purged,
    /// Its queue was deleted before it finished.
    QueueDeleted,
}

impl FlowJobState {
    /// Finished in any way but `completed`.
    #[must_use]
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Self::Completed | Self::WaitingChildren | Self::Delayed | Self::Ready | Self::InFlight
        )
    }
}

/// A finished child as its parent's delivery carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowChild {
    /// The child's message id.
    pub message_id: String,
    /// Its queue.
    pub queue: String,
    /// How it finished.
    pub state: FlowJobState,
    /// What its ack carried; `null` if nothing.
    #[serde(deserialize_with = "present")]
    pub result: Option<Value>,
    /// Why it was dead-lettered (`dead_lettered` and `expired` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
}

/// One job of `GET /flows/{flow_id}`, with its children.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowNode {
    /// The job's message id.
    pub message_id: String,
    /// Its queue.
    pub queue: String,
    /// Where it is, or how it finished.
    pub state: FlowJobState,
    /// Why it was dead-lettered (`dead_lettered` and `expired` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
    /// Its result, while the flow or the job's retention keeps it; `null` otherwise.
    #[serde(deserialize_with = "present")]
    pub result: Option<Value>,
    /// When it finished, Unix ms; `null` while unfinished.
    #[serde(deserialize_with = "present")]
    pub finished_at: Option<u64>,
    /// What a failed child does to it.
    pub on_child_failure: OnChildFailure,
    /// Its children.
    pub children: Vec<Self>,
}

/// `GET /flows/{flow_id}`: the flow, its state (its root job's) and its tree of jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// The flow.
    pub flow_id: String,
    /// When it was added, Unix ms.
    pub created_at: u64,
    /// When its root job finished, Unix ms; `null` while it runs.
    #[serde(deserialize_with = "present")]
    pub finished_at: Option<u64>,
    /// The root job's message id.
    pub message_id: String,
    /// The root job's queue.
    pub queue: String,
    /// The root job's state: the flow's.
    pub state: FlowJobState,
    /// Why the root was dead-lettered (`child_failed` when a child failed under `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
    /// The root job's result, while kept; `null` otherwise.
    #[serde(deserialize_with = "present")]
    pub result: Option<Value>,
    /// What a failed child does to the root.
    pub on_child_failure: OnChildFailure,
    /// The root's children.
    pub children: Vec<FlowNode>,
}
