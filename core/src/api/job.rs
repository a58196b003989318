//! The job lifecycle vocabulary (DESIGN.md §13): what a lookup answers, schedules, dedup modes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DeadLetterReason, Headers, MessageId};
use crate::flows::FlowId;
use crate::{Json, Millis};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// A flow parent waiting for its children to finish (DESIGN.md §14); not deliverable.
    WaitingChildren,
    /// Waiting for its delay or retry delay.
    Delayed,
    /// Deliverable now.
    Ready,
    /// Leased to a consumer.
    InFlight,
    /// Acked: done.
    Completed,
    /// In the dead-letter queue.
    DeadLettered,
    /// Cancelled before it completed.
    Cancelled,
}

impl JobState {
    /// Completed, dead-lettered or cancelled: nothing more happens to it.
    #[must_use]
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::DeadLettered | Self::Cancelled)
    }
}

/// A job as a lookup answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub message_id: MessageId,
    /// Its queue.
    pub queue: Arc<str>,
    /// Where it is.
    pub state: JobState,
    /// 0–9.
    pub priority: u8,
    /// Deliveries so far.
    pub attempts: u32,
    /// The last progress its worker reported.
    #[serde(default)]
    pub progress: Option<Json>,
    /// What the ack that completed it carried.
    #[serde(default)]
    pub result: Option<Json>,
    /// The last nack's error text (or `lease expired`).
    #[serde(default)]
    pub last_error: Option<String>,
    /// Publish time.
    pub published_at: Millis,
    /// When its latest delivery began (in flight, or finished after a delivery).
    #[serde(default)]
    pub started_at: Option<Millis>,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<Millis>,
    /// The body, when published as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Json>,
    /// The body, when published as bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Arc<[u8]>>,
    /// Headers as published.
    #[serde(default)]
    pub headers: Headers,
    /// In flight and asked to cancel: its worker's next progress or extend says so, and its
    /// ack, nack or lease expiry settles it as cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Why it was dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<DeadLetterReason>,
    /// Its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Arc<str>>,
    /// The flow it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<FlowId>,
    /// Its parent in its flow (the job that waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// Its children in its flow (the jobs it waits for), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<MessageId>,
}

/// How long a publish's idempotency key holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupMode {
    /// For the engine's idempotency window after the first publish.
    #[default]
    Window,
    /// While the job it names is unfinished, whatever the window; released when it finishes.
    UntilFinished,
}

/// A recurring publish: every `every_ms`, or on a 5-field UTC cron pattern. Every field is
/// serialized (snapshots encode structs as arrays, where a left-out field would shift the
/// others).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A run every this long (at least 1 s), counted from `start_at` or the schedule's creation.
    #[serde(default)]
    pub every_ms: Option<u64>,
    /// A 5-field cron pattern (minute hour day-of-month month day-of-week), in UTC.
    #[serde(default)]
    pub cron: Option<String>,
    /// The body each run publishes.
    pub message: Json,
    /// 0–9; the queue's `default_priority` when absent.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Headers each run's message carries.
    #[serde(default)]
    pub headers: Headers,
    /// No run before this time.
    #[serde(default)]
    pub start_at: Option<Millis>,
    /// No run after this time.
    #[serde(default)]
    pub end_at: Option<Millis>,
    /// Runs after which the schedule ends.
    #[serde(default)]
    pub max_runs: Option<u64>,
}

/// A schedule as a listing answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Its id within the queue.
    pub schedule_id: String,
    /// What it publishes and when.
    pub spec: ScheduleSpec,
    /// Its next run; `None` once it has ended (`end_at` or `max_runs` reached).
    pub next_run_at: Option<Millis>,
    /// Its latest run.
    pub last_run_at: Option<Millis>,
    /// Runs made (each one message published).
    pub runs: u64,
    /// The message its latest run published.
    pub last_message_id: Option<MessageId>,
    /// Why its latest run published nothing (the queue was full, …).
    pub last_error: Option<String>,
}
