//! Bodies of the job lifecycle routes (docs/api.md, "Tracking jobs"): lookup and waiting,
//! progress, cancellation, schedules.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Headers, present};

/// How long a publish's idempotency key holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupMode {
    /// For the server's idempotency window after the first publish (five minutes by default).
    #[default]
    Window,
    /// While the job it names is unfinished, whatever the window.
    UntilFinished,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// A flow parent waiting for its children to finish.
    WaitingChildren,
    /// Waiting for its delay or retry delay.
    Delayed,
    /// Deliverable now.
    Ready,
    /// Leased to a worker.
    InFlight,
    /// Acked: done.
    Completed,
    /// In the dead-letter queue.
    DeadLettered,
    /// Cancelled before it completed.
    Cancelled,
}

impl JobState {
    /// Completed, dead-lettered or cancelled.
    #[must_use]
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::DeadLettered | Self::Cancelled)
    }
}

/// `GET /queue/{name}/messages/{id}` (and its `/wait`): a job as it is now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's message id.
    pub message_id: String,
    /// Its queue.
    pub queue: String,
    /// Where it is.
    pub state: JobState,
    /// 0–9.
    pub priority: u8,
    /// Its group; `null` for a job published without one.
    #[serde(default)]
    pub group: Option<String>,
    /// Deliveries so far.
    pub attempts: u32,
    /// The last progress its worker reported, `null` if none.
    #[serde(deserialize_with = "present")]
    pub progress: Option<Value>,
    /// The result its ack carried, `null` if none.
    #[serde(deserialize_with = "present")]
    pub result: Option<Value>,
    /// The last nack's error text (or `lease expired`), `null` if none.
    #[serde(deserialize_with = "present")]
    pub last_error: Option<String>,
    /// Publish time, Unix ms.
    pub published_at: u64,
    /// When its latest delivery began, Unix ms (`null` before any, or when cancelled while
    /// waiting).
    #[serde(deserialize_with = "present")]
    pub started_at: Option<u64>,
    /// When it finished, Unix ms (`null` while unfinished).
    #[serde(deserialize_with = "present")]
    pub finished_at: Option<u64>,
    /// The body as JSON (a byte body parsed as JSON, `null` when it is not).
    pub message: Value,
    /// The body as bytes, for a message published as bytes; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<u8>>,
    /// Headers as published.
    pub headers: Headers,
    /// In flight and cancelled: it settles as cancelled when its delivery ends (absent
    /// otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Why it was dead-lettered (dead-lettered jobs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<crate::DeadLetterReason>,
    /// The flow it belongs to (flow jobs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// Its parent in its flow, the job waiting for it (flow jobs with a parent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Its children in its flow, the jobs it waits for (flow parents only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

/// The query of `GET /queue/{name}/messages/{id}/wait`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Longest wait in seconds (capped at `max_wait_secs`); 30 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
}

/// `POST /queue/{name}/progress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// The job.
    pub message_id: String,
    /// The lease of the delivery reporting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// Any JSON up to 4 KiB.
    pub progress: Value,
    /// Also extend the lease to now + this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extend: Option<f64>,
}

/// `{success, cancelled, lease_deadline}` of a progress report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progressed {
    /// Always true in a 200 answer.
    pub success: bool,
    /// The job was cancelled: stop working on it and ack or nack it.
    pub cancelled: bool,
    /// The lease deadline, Unix ms.
    pub lease_deadline: u64,
}

/// `POST /queue/{name}/cancel`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// The job.
    pub message_id: String,
}

/// `{success, state}` of a cancel: `cancelled`, or `in_flight` for a job that settles as
/// cancelled when its delivery ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// Always true in a 200 answer.
    pub success: bool,
    /// `cancelled` or `in_flight`.
    pub state: JobState,
}

/// `PUT /queue/{name}/schedules/{id}`: exactly one of `every_secs` and `cron`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// A run every this many seconds (at least 1), from `start_at` or now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<f64>,
    /// A 5-field cron pattern (minute hour day-of-month month day-of-week), in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The body each run publishes (any JSON).
    pub message: Value,
    /// 0–9; the queue's `default_priority` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Headers of each run's message.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// No run before this time, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// No run after this time, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<u64>,
    /// Runs after which the schedule ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u64>,
}

/// `{id, next_run_at, created}` of a schedule put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSet {
    /// The schedule.
    pub id: String,
    /// Its next run, Unix ms (`null` if it will never run).
    #[serde(deserialize_with = "present")]
    pub next_run_at: Option<u64>,
    /// False when it replaced a schedule with the same id (which keeps its history).
    pub created: bool,
}

/// One schedule of `GET /queue/{name}/schedules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its id.
    pub id: String,
    /// Seconds between runs (`null` for a cron schedule).
    #[serde(deserialize_with = "present")]
    pub every_secs: Option<f64>,
    /// Its cron pattern (`null` for an interval schedule).
    #[serde(deserialize_with = "present")]
    pub cron: Option<String>,
    /// The body each run publishes.
    pub message: Value,
    /// Priority of each run's message (`null`: the queue's default).
    #[serde(deserialize_with = "present")]
    pub priority: Option<u8>,
    /// Headers of each run's message.
    pub headers: Headers,
    /// No run before this time, Unix ms.
    #[serde(deserialize_with = "present")]
    pub start_at: Option<u64>,
    /// No run after this time, Unix ms.
    #[serde(deserialize_with = "present")]
    pub end_at: Option<u64>,
    /// Runs after which it ends.
    #[serde(deserialize_with = "present")]
    pub max_runs: Option<u64>,
    /// Its next run, Unix ms (`null` once it has ended).
    #[serde(deserialize_with = "present")]
    pub next_run_at: Option<u64>,
    /// Its latest run, Unix ms.
    #[serde(deserialize_with = "present")]
    pub last_run_at: Option<u64>,
    /// Runs made.
    pub runs: u64,
    /// The message its latest run published.
    #[serde(deserialize_with = "present")]
    pub last_message_id: Option<String>,
    /// Why its latest run published nothing.
    #[serde(deserialize_with = "present")]
    pub last_error: Option<String>,
}

/// `{schedules: [schedule]}`, by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleList {
    /// The queue's schedules.
    pub schedules: Vec<Schedule>,
}
