//! Async Rust client for Synap, a task-queue server: queues with leases, retries and a
//! dead-letter queue, a key-value store with TTL, and topic pub/sub. Start at [`SynapClient`]:
//! `connect`, then the `queue_*`, `kv_*` and `pubsub_*` calls, the job lifecycle (`job`,
//! `wait_for`, `progress`, `cancel`, `schedule_*`) and flow control (`queue_pause`,
//! `queue_resume`, `queue_rate_limit`, `queue_groups`, and the [`QueueConfig`] limits) and
//! flows, jobs that wait for other jobs (`flow_add`, `flow_get`, and a parent's
//! [`QueueMessage::children`]); docs/clients.md has the quick start and the video sample.
//!
//! Every call goes over HTTP (`reqwest`) to the REST routes of Synap's server; subscriptions
//! ([`SynapClient::pubsub_subscribe`]) and the streaming consumer
//! ([`SynapClient::queue_stream`]) use WebSockets. Durations are [`std::time::Duration`] here and
//! seconds (fractions allowed) on the wire. Errors are typed: [`SynapError::Server`] carries
//! the HTTP status and the server's machine code, with helpers such as
//! [`SynapError::is_lease_mismatch`].
//!
//! For a cluster, [`SynapClient::connect_many`] takes the URLs of several nodes: calls follow
//! the leader across a failover, and an unanswered publish is resent with its idempotency key
//! (docs/clients.md, "Several servers").
//!
//! ```no_run
//! use std::time::Duration;
//! use synap_client::{ConsumeOptions, PublishOptions, SynapClient};
//!
//! # async fn run() -> Result<(), synap_client::SynapError> {
//! let client = SynapClient::connect("http://127.0.0.1:15500").await?;
//!
//! // A producer publishes a task; premium work jumps the line with a higher priority.
//! let task = serde_json::json!({"videoId": "v1", "type": "transcode"});
//! client
//!     .queue_publish("video-processing", &task, PublishOptions::priority(9))
//!     .await?;
//!
//! // A worker long-polls for up to 30 s and holds the task under a 300 s lease.
//! let opts = ConsumeOptions {
//!     timeout: Some(Duration::from_secs(30)),
//!     ack_deadline: Some(Duration::from_secs(300)),
//!     consumer_id: Some("worker-1".into()),
//! };
//! if let Some(msg) = client
//!     .queue_consume::<serde_json::Value>("video-processing", Some(opts))
//!     .await?
//! {
//!     client
//!         .kv_set("video:v1:status", &"processing", Some(Duration::from_secs(3600)))
//!         .await?;
//!     // Acking with the lease token means a late ack after a redelivery is refused.
//!     client
//!         .queue_ack_with_lease("video-processing", &msg.id, msg.lease)
//!         .await?;
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod failover;
mod flow;
mod flows;
mod job;
mod kv;
mod pubsub;
mod queue;
mod stream;
mod types;
mod ws;

pub use client::SynapClient;
pub use error::{Result, SynapError};
pub use job::ScheduleOptions;
pub use pubsub::{PubSubPublished, Subscription};
pub use stream::{PublishConfirm, QueueStream, StreamOptions};
pub use types::{
    AckBatchResult, AckFailure, Backoff, Cancelled, ConsumeOptions, DeadLetter, DeadLetterReason,
    DedupMode, DlqPage, Flow, FlowChild, FlowCreated, FlowJob, FlowJobState, FlowNode, FlowRequest,
    GroupInfo, Headers, Job, JobState, Keep, NackAction, NackOptions, OnChildFailure,
    PubSubMessage, PublishOptions, PublishResult, QueueConfig, QueueMessage, QueueStats, Rate,
    RetryPosition, Schedule, ScheduleSet,
};
