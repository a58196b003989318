//! Every input the engine accepts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DedupMode, Headers, LeaseToken, MessageId, ScheduleSpec, SessionId, WaiterId};
use crate::Json;
use crate::config::QueueConfig;
use crate::flows::{FlowId, FlowTree};

/// One message to publish: a JSON `message` or a byte `payload` (exactly one of the two).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishMessage {
    /// The body as any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Json>,
    /// The body as raw bytes.
    #[serde(
        default,
        with = "crate::bytes::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub payload: Option<Arc<[u8]>>,
    /// 0–9, higher first; the queue's `default_priority` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// String headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: Headers,
    /// Not deliverable before `now + delay_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Dead-lettered (reason `expired`) if not acked by `now + ttl_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Overrides the queue's `max_retries` for this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// A publish with a key already seen on this queue within the idempotency window answers
    /// with the first publish's id and position and adds nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How long the idempotency key holds: the window (the default), or until the job it
    /// names is finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupMode>,
    /// With an idempotency key and a delay: a publish whose key names a job still delayed
    /// replaces that job's message and restarts its delay (the trailing call wins).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub debounce: bool,
    /// The message's group (1–255 bytes, no control characters): a user, a tenant, a video.
    /// The queue's group settings (`group_concurrency`, `ordered_groups`, `fair_groups`,
    /// `group_rate_limit`) apply per group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Every input the engine accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Creates a queue if it does not exist (an existing queue keeps its config and messages).
    CreateQueue {
        /// Queue name.
        queue: String,
        /// Settings; the engine's default queue config when absent. (Boxed, as in
        /// `ConfigureQueue`: a queue's settings are the largest thing a command carries, and
        /// every command moves as big as its largest kind.)
        #[serde(default)]
        config: Option<Box<QueueConfig>>,
    },
    /// Sets the config of a queue, creating it if needed. Messages already queued keep their
    /// per-message settings.
    ConfigureQueue {
        /// Queue name.
        queue: String,
        /// New settings.
        config: Box<QueueConfig>,
    },
    /// Removes a queue with its messages and DLQ; parked waiters time out.
    DeleteQueue {
        /// Queue name.
        queue: String,
    },
    /// Names of all queues, sorted.
    ListQueues,
    /// Publishes one message.
    Publish {
        /// Queue name.
        queue: String,
        /// The message.
        #[serde(flatten)]
        message: PublishMessage,
    },
    /// Publishes several messages atomically: all are accepted or none.
    PublishBatch {
        /// Queue name.
        queue: String,
        /// The messages, in order.
        messages: Vec<PublishMessage>,
    },
    /// Leases up to `max_messages` ready messages, or parks until one is ready or `wait_ms` ends.
    Consume {
        /// Queue name.
        queue: String,
        /// Long-poll wait; 0 returns at once (capped at `limits.max_wait_ms`).
        #[serde(default)]
        wait_ms: u64,
        /// Lease length (ack deadline); the queue's `ack_deadline_ms` when absent.
        #[serde(default)]
        lease_ms: Option<u64>,
        /// 1..=100.
        #[serde(default = "one")]
        max_messages: u32,
        /// Identifies the consumer for `prefetch` and the `consumers` stat.
        #[serde(default)]
        consumer_id: Option<String>,
    },
    /// Withdraws a parked waiter (its client hung up).
    CancelWait {
        /// The waiter.
        waiter_id: WaiterId,
    },
    /// Attaches a streaming consumer to a queue: while it has credit, ready messages are
    /// leased to it and pushed as `Event::Pushed`; each delivery's end (ack, nack, lease
    /// expiry) returns its credit.
    Attach {
        /// Queue name.
        queue: String,
        /// Identifies the consumer for `prefetch` and the `consumers` stat; `session-<id>` when
        /// absent.
        #[serde(default)]
        consumer_id: Option<String>,
        /// Deliveries that may be pushed before any ends (`limits.max_session_credit` at most).
        credit: u32,
        /// Lease length of each delivery; the queue's `ack_deadline_ms` when absent.
        #[serde(default)]
        lease_ms: Option<u64>,
    },
    /// Grants an attached session more credit.
    SessionCredit {
        /// The session.
        session_id: SessionId,
        /// Additional deliveries it may be pushed.
        credit: u32,
    },
    /// Detaches a session. With `give_back` (the default) the messages it holds are ready
    /// again at once, each counted as a failed delivery attempt; without, their leases run to
    /// their deadlines.
    Detach {
        /// The session.
        session_id: SessionId,
        /// Give its messages back now.
        #[serde(default = "yes")]
        give_back: bool,
    },
    /// Gives back deliveries whose consumer is gone (a long-poll answer nobody read): each is
    /// ready again at once, counted as a failed attempt. Deliveries that already ended are
    /// skipped.
    GiveBack {
        /// Queue name.
        queue: String,
        /// The deliveries.
        leases: Vec<LeaseRef>,
    },
    /// Withdraws every parked waiter and detaches every session without giving their messages
    /// back: the host restarted, so their clients are gone, and their leases run to their
    /// deadlines.
    DropConsumers,
    /// Acknowledges a leased message: it is done.
    Ack {
        /// Queue name.
        queue: String,
        /// The message.
        message_id: MessageId,
        /// The lease token of the delivery being acked; any current lease when absent.
        #[serde(default)]
        lease: Option<LeaseToken>,
        /// The job's result, kept with the completed job (up to the queue's
        /// `max_result_bytes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Json>,
    },
    /// Rejects a leased message: retry it (`requeue`) or dead-letter it.
    Nack {
        /// Queue name.
        queue: String,
        /// The message.
        message_id: MessageId,
        /// Retry (subject to `max_retries`) rather than dead-letter at once.
        #[serde(default = "yes")]
        requeue: bool,
        /// Retry delay overriding the queue's policy.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// Error text kept with the message (and in the DLQ).
        #[serde(default)]
        error: Option<String>,
        /// The lease token of the delivery being nacked.
        #[serde(default)]
        lease: Option<LeaseToken>,
        /// Snooze: the message comes back after `delay_ms` (at once when absent) without
        /// spending an attempt; past the queue's `max_snoozes` it is dead-lettered
        /// (`snoozed_out`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        snooze: bool,
    },
    /// Extends a lease: the new deadline is `now + lease_ms`.
    Extend {
        /// Queue name.
        queue: String,
        /// The message.
        message_id: MessageId,
        /// New lease length from now.
        lease_ms: u64,
        /// The lease token of the delivery being extended.
        #[serde(default)]
        lease: Option<LeaseToken>,
    },
    /// A job by id: queued, in flight, or finished and still kept.
    GetJob {
        /// Queue name.
        queue: String,
        /// The job.
        message_id: MessageId,
    },
    /// Waits until a job is finished: answers at once with a finished job (or with any job
    /// when `wait_ms` is 0), else parks (`Reply::Waiting`), answered by `Event::JobWaited` when
    /// it finishes or the wait ends.
    WaitJob {
        /// Queue name.
        queue: String,
        /// The job.
        message_id: MessageId,
        /// Longest wait (capped at `limits.max_wait_ms`).
        #[serde(default)]
        wait_ms: u64,
    },
    /// A worker reports progress on a job it holds, optionally extending its lease.
    Progress {
        /// Queue name.
        queue: String,
        /// The job.
        message_id: MessageId,
        /// The lease token of the delivery.
        #[serde(default)]
        lease: Option<LeaseToken>,
        /// Any JSON up to `limits.max_progress_bytes`.
        progress: Json,
        /// Also extends the lease to `now + extend_ms`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extend_ms: Option<u64>,
    },
    /// Cancels a job: a ready or delayed job at once; an in-flight job is marked, and settles
    /// as cancelled when its delivery ends.
    Cancel {
        /// Queue name.
        queue: String,
        /// The job.
        message_id: MessageId,
    },
    /// Creates or replaces a schedule of the queue.
    PutSchedule {
        /// Queue name (created as a publish would create it).
        queue: String,
        /// Its id: 1–128 characters of `A-Za-z0-9._:-`.
        schedule_id: String,
        /// What it publishes and when.
        schedule: ScheduleSpec,
    },
    /// The queue's schedules, by id.
    ListSchedules {
        /// Queue name.
        queue: String,
    },
    /// Removes a schedule.
    DeleteSchedule {
        /// Queue name.
        queue: String,
        /// The schedule.
        schedule_id: String,
    },
    /// Publishes one run of a schedule now, outside its timetable.
    RunSchedule {
        /// Queue name.
        queue: String,
        /// The schedule.
        schedule_id: String,
    },
    /// Runs the timers due at `now`, as `handle_timeout` does, as a command a host can log:
    /// the server logs one when a schedule's run is due, so the job that run publishes is in
    /// the log and a restart replays it.
    Tick,
    /// The host has started again after being down since `since`: timers due by `since` run
    /// first, then each schedule that missed slots after it makes one catch-up run now, not
    /// one per missed slot. A host sends it first after recovery, with `since` = the
    /// recovered engine's `now()`; it is logged, so a replay makes the same runs.
    Resume {
        /// When the host went down (the latest time the engine had seen).
        since: crate::Millis,
    },
    /// Adds a flow (DESIGN.md §14): a tree of jobs where each parent waits for its children.
    /// The whole tree is checked first and added whole or not at all: jobs without children
    /// are published at once, each parent when its children are finished.
    AddFlow {
        /// The root job, with its children.
        flow: FlowTree,
    },
    /// A flow's tree with each job's state.
    GetFlow {
        /// The flow.
        flow_id: FlowId,
    },
    /// Queue statistics.
    Stats {
        /// Queue name.
        queue: String,
    },
    /// Pauses a queue: it accepts publishes, acks and nacks, and delivers nothing until
    /// resumed.
    PauseQueue {
        /// Queue name.
        queue: String,
    },
    /// Resumes a paused queue: waiting consumers are served at once.
    ResumeQueue {
        /// Queue name.
        queue: String,
    },
    /// No deliveries from the queue for `for_ms` (a worker whose downstream answered 429). A
    /// later call can lengthen the pause, never shorten it.
    RateLimit {
        /// Queue name.
        queue: String,
        /// How long nothing is delivered.
        for_ms: u64,
    },
    /// The queue's groups holding messages, largest first.
    Groups {
        /// Queue name.
        queue: String,
        /// Most groups listed (1..=`limits.max_page`, default 100).
        #[serde(default = "hundred")]
        limit: u64,
    },
    /// A page of the dead-letter queue, oldest first.
    DlqList {
        /// Queue name.
        queue: String,
        /// Entries to skip.
        #[serde(default)]
        offset: u64,
        /// Page size (1..=1000, default 100).
        #[serde(default = "hundred")]
        limit: u64,
    },
    /// Moves dead-lettered messages back to the queue with attempts reset.
    DlqRetry {
        /// Queue name.
        queue: String,
        /// Which entries; all when absent.
        #[serde(default)]
        message_ids: Option<Vec<MessageId>>,
    },
    /// Empties the dead-letter queue.
    DlqPurge {
        /// Queue name.
        queue: String,
    },
    /// Removes ready and delayed messages (not in-flight ones).
    Purge {
        /// Queue name.
        queue: String,
    },
    /// Sets a key, replacing any value and TTL.
    KvSet {
        /// The key.
        key: String,
        /// Any JSON value.
        value: Json,
        /// Expires after this long; never when absent.
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    /// Reads a key.
    KvGet {
        /// The key.
        key: String,
    },
    /// Deletes a key.
    KvDel {
        /// The key.
        key: String,
    },
    /// Whether a live key exists.
    KvExists {
        /// The key.
        key: String,
    },
    /// Sets a live key's TTL.
    KvExpire {
        /// The key.
        key: String,
        /// Expires after this long.
        ttl_ms: u64,
    },
    /// Removes a live key's TTL.
    KvPersist {
        /// The key.
        key: String,
    },
    /// Remaining TTL of a live key.
    KvTtl {
        /// The key.
        key: String,
    },
    /// Adds `by` to an integer value (a missing key counts as 0); keeps the TTL.
    KvIncr {
        /// The key.
        key: String,
        /// Amount to add (may be negative).
        #[serde(default = "one_i64")]
        by: i64,
    },
    /// Live keys starting with `prefix`, sorted, at most `limit`.
    KvKeys {
        /// Key prefix; all keys when empty.
        #[serde(default)]
        prefix: String,
        /// Most keys returned (default and cap 10,000).
        #[serde(default)]
        limit: Option<u64>,
    },
    /// Reads several keys.
    KvMget {
        /// The keys.
        keys: Vec<String>,
    },
    /// Sets several keys atomically (all are validated first).
    KvMset {
        /// The entries.
        entries: Vec<KvEntry>,
    },
    /// KV statistics.
    KvStats,
    /// Registers (or extends) a subscriber's patterns.
    Subscribe {
        /// The subscriber; a fresh UUID when absent.
        #[serde(default)]
        subscriber_id: Option<String>,
        /// Topic patterns: `.`-separated, `*` = one segment, trailing `#` = zero or more.
        patterns: Vec<String>,
        /// Messages the engine may push as events right away; the rest wait in the bounded
        /// buffer until `PubsubCredit` or `PubsubPoll`.
        #[serde(default)]
        credit: u32,
        /// For a subscriber with no connection (one that polls): it is removed after this long
        /// without a `Subscribe`, `PubsubPoll` or `PubsubCredit`. Never when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_ms: Option<u64>,
    },
    /// Removes some patterns (all, and the subscriber itself, when absent).
    Unsubscribe {
        /// The subscriber.
        subscriber_id: String,
        /// Patterns to remove.
        #[serde(default)]
        patterns: Option<Vec<String>>,
    },
    /// Publishes to a topic.
    PubsubPublish {
        /// The topic (no wildcards).
        topic: String,
        /// Any JSON value.
        message: Json,
        /// String headers.
        #[serde(default)]
        headers: Headers,
    },
    /// Takes up to `max` buffered messages of a subscriber.
    PubsubPoll {
        /// The subscriber.
        subscriber_id: String,
        /// Most messages returned (1..=1000).
        #[serde(default = "hundred_u32")]
        max: u32,
    },
    /// Grants a subscriber credit: buffered messages up to it are pushed as events now, later
    /// ones as they are published.
    PubsubCredit {
        /// The subscriber.
        subscriber_id: String,
        /// Additional messages the host can take.
        credit: u32,
    },
    /// Pub/sub statistics.
    PubsubStats,
}

fn one() -> u32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn yes() -> bool {
    true
}
fn hundred() -> u64 {
    100
}
fn hundred_u32() -> u32 {
    100
}

impl Command {
    /// True for commands that change state (and so belong in a command log). Reads such as
    /// `Stats` or `KvGet` are still replayable, but hosts may skip logging them.
    #[must_use]
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            Self::ListQueues
                | Self::Stats { .. }
                | Self::Groups { .. }
                | Self::DlqList { .. }
                | Self::GetJob { .. }
                | Self::GetFlow { .. }
                | Self::ListSchedules { .. }
                | Self::KvGet { .. }
                | Self::KvExists { .. }
                | Self::KvTtl { .. }
                | Self::KvKeys { .. }
                | Self::KvMget { .. }
                | Self::KvStats
                | Self::PubsubStats
        )
    }
}

/// One delivery, named by message id and lease token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRef {
    /// The message.
    pub message_id: MessageId,
    /// The lease token of the delivery.
    pub lease: LeaseToken,
}

/// One KV entry of `KvMset`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// Any JSON value.
    pub value: Json,
    /// Expires after this long; never when absent.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}
