//! The flows vocabulary that crosses the engine's boundary: a flow's id, the state of one of
//! its jobs, what `AddFlow` answers, what `GetFlow` answers, and the children a parent's
//! delivery carries.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::tree::OnChildFailure;
use crate::api::{DeadLetterReason, JobState, MessageId};
use crate::{Json, Millis};

/// A flow's id: a UUID drawn from the engine's seeded PRNG, like message ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlowId(pub Uuid);

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for FlowId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where one job of a flow is. The live states are the job lifecycle's (plus
/// `waiting_children`); the finished ones say how it ended, in more detail than a job lookup
/// does: a job whose TTL passed is `expired` (a lookup shows it `dead_lettered` with the
/// reason `expired`), and jobs that left their queue without finishing are `purged` or
/// `queue_deleted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowJobState {
    /// A parent waiting for its children to finish; not deliverable.
    WaitingChildren,
    /// Waiting for its delay or retry delay.
    Delayed,
    /// Deliverable now.
    Ready,
    /// Leased to a consumer.
    InFlight,
    /// Acked: done.
    Completed,
    /// Dead-lettered (`reason` says why; not its TTL, which is `expired`).
    DeadLettered,
    /// Dead-lettered because its TTL passed.
    Expired,
    /// Cancelled: by a caller, or by its flow (a sibling failed under `fail`, or an ancestor
    /// was cancelled or failed).
    Cancelled,
    /// Removed by a purge of its queue while ready or delayed.
    Purged,
    /// Its queue was deleted before it finished.
    QueueDeleted,
}

impl FlowJobState {
    /// Nothing more happens to it within its flow.
    #[must_use]
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            Self::WaitingChildren | Self::Delayed | Self::Ready | Self::InFlight
        )
    }

    /// Finished in any way but `completed`: what `on_child_failure` reacts to.
    #[must_use]
    pub fn is_failure(self) -> bool {
        self.is_finished() && self != Self::Completed
    }

    /// The flow state of a job the lifecycle looked up.
    pub(crate) fn of_job(state: JobState, reason: Option<DeadLetterReason>) -> Self {
        match state {
            JobState::WaitingChildren => Self::WaitingChildren,
            JobState::Delayed => Self::Delayed,
            JobState::Ready => Self::Ready,
            JobState::InFlight => Self::InFlight,
            JobState::Completed => Self::Completed,
            JobState::DeadLettered if reason == Some(DeadLetterReason::Expired) => Self::Expired,
            JobState::DeadLettered => Self::DeadLettered,
            JobState::Cancelled => Self::Cancelled,
        }
    }
}

/// One job `AddFlow` created, with its children in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowJobRef {
    /// The job's message id.
    pub message_id: MessageId,
    /// Its queue.
    pub queue: String,
    /// Its children's jobs.
    #[serde(default)]
    pub children: Vec<Self>,
}

/// What `AddFlow` answers: the flow's id and every job it made, as a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowAdded {
    /// The flow.
    pub flow_id: FlowId,
    /// The root job.
    pub root: FlowJobRef,
}

/// A finished child as its parent's delivery carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowChild {
    /// The child's message id.
    pub message_id: MessageId,
    /// Its queue.
    pub queue: Arc<str>,
    /// How it finished.
    pub state: FlowJobState,
    /// What its ack carried (a completed job's result; a cancelled job's, if its worker acked
    /// with one).
    #[serde(default)]
    pub result: Option<Json>,
    /// Why it was dead-lettered (`dead_lettered` and `expired` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
}

/// One job of a flow as `GetFlow` answers it, with its children.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowNodeInfo {
    /// The job's message id.
    pub message_id: MessageId,
    /// Its queue.
    pub queue: Arc<str>,
    /// Where it is, or how it finished.
    pub state: FlowJobState,
    /// Why it was dead-lettered (`dead_lettered` and `expired` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
    /// Its result: kept by the flow while its parent may still need it, else read from the
    /// job while the lifecycle's retention keeps it.
    #[serde(default)]
    pub result: Option<Json>,
    /// When it finished, within the flow.
    #[serde(default)]
    pub finished_at: Option<Millis>,
    /// What a failed child does to it (meaningful for parents).
    pub on_child_failure: OnChildFailure,
    /// Its children, in the order given.
    #[serde(default)]
    pub children: Vec<Self>,
}

/// A flow as `GetFlow` answers it: the tree of its jobs with their states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowInfo {
    /// The flow.
    pub flow_id: FlowId,
    /// When it was added.
    pub created_at: Millis,
    /// When its root job finished; `None` while it runs.
    #[serde(default)]
    pub finished_at: Option<Millis>,
    /// The root job (its state is the flow's).
    pub root: FlowNodeInfo,
}
