//! Synap's wire vocabulary: every REST request and response body, and the frames of the queue
//! and pub/sub streams, as typed structs and enums, shared by `synap-server` and
//! `synap-client`, so the compiler compares the two sides.
//!
//! Units are the API's (docs/api.md): **durations are seconds** (`f64`, fractions allowed),
//! **timestamps in responses are Unix-epoch milliseconds** (`u64`), KV TTLs in responses are
//! seconds. Message ids travel as their text form.
//!
//! Conventions that keep the JSON byte-compatible with the documented shapes:
//! - request types refuse unknown fields; an optional request field is an `Option` and is left
//!   out when `None`, so a client sends only what it sets;
//! - a response field that is always present but may be `null` is an `Option` that must be
//!   present on decoding (a renamed or missing field is an error, never a silent `None`);
//! - a response field the server leaves out in some answers (`payload` of a text message) is
//!   an `Option` skipped when `None`.
//!
//! The command envelope of Synap's SDKs (`POST /api/v1/command`) is not here: its shapes are
//! Synap's own and the server keeps it as a separate adapter.
//!
//! Where to begin: `queue.rs` (publish, consume, ack and their answers), `queue_ws.rs` (the
//! queue WebSocket's frames), `kv.rs`, `pubsub.rs`, `config.rs` (a queue's settings),
//! `flow.rs` (pause, rate limits, groups), `flows.rs` (jobs that wait for other jobs).

#![warn(missing_docs)]

mod common;
mod config;
mod flow;
mod flows;
mod job;
mod kv;
mod pubsub;
mod queue;
mod queue_ws;
mod stats;
mod strict;

pub use common::{Deleted, Empty, ErrorBody, Health, Purged, Success};
pub use config::{Backoff, Keep, QueueConfig, Rate, RetryPosition};
pub use flow::{GroupInfo, GroupList, GroupsQuery, Paused, RateLimitRequest, RateLimited};
pub use flows::{
    Flow, FlowChild, FlowCreated, FlowJob, FlowJobState, FlowNode, FlowRequest, OnChildFailure,
};
pub use job::{
    CancelRequest, Cancelled, DedupMode, Job, JobState, ProgressRequest, Progressed, Schedule,
    ScheduleList, ScheduleRequest, ScheduleSet, WaitQuery,
};
pub use kv::{
    Exists, ExpireRequest, IncrRequest, IntValue, KeyRequest, KeysQuery, KeysResponse, KvGet,
    KvStats, KvTtl, MgetRequest, MgetResponse, MsetRequest, SetRequest, Updated,
};
pub use pubsub::{
    PubsubConnected, PubsubError, PubsubMessage, PubsubPublishRequest, PubsubPublished,
    PubsubStats, SseConnected,
};
pub use queue::{
    AckBatchRequest, AckBatchResult, AckFailure, AckRequest, ConsumeRequest, DeadLetter,
    DeadLetterReason, Deliveries, Delivery, DlqPage, DlqQuery, DlqRetryRequest, ExtendRequest,
    Extended, NackAction, NackRequest, Nacked, PublishBatchRequest, PublishRequest, Published,
    PublishedBatch, QueueCreated, QueueList, Retried,
};
pub use queue_ws::{CreditRequest, QueueClientFrame, QueueOp, QueueServerFrame};
pub use stats::{MemoryStats, QueueStats};

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// String headers carried with a message.
pub type Headers = BTreeMap<String, String>;

/// Decodes a field that must be present but may be `null`. serde reads a missing `Option`
/// field as `None`; naming this function in `deserialize_with` makes a missing one an error.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

#[cfg(test)]
mod tests;
