//! # synap-core
//!
//! Synap's sans-IO engine: task queues with priorities, leases, retries with backoff and a
//! dead-letter queue; a KV store with TTL; topic pub/sub. It does no I/O, reads no clock and
//! draws no OS randomness, so the same engine runs in the native server, in WebAssembly and in
//! deterministic simulation tests.
//!
//! ## Driving the engine
//!
//! ```
//! use synap_core::{Command, Engine, EngineConfig, Millis, Reply, json_message};
//!
//! let mut engine = Engine::new(EngineConfig::default(), 42);
//! let reply = engine
//!     .handle(Millis(0), Command::Publish {
//!         queue: "video-processing".into(),
//!         message: json_message(serde_json::json!({"video_id": 1})),
//!     })
//!     .unwrap();
//! assert!(matches!(reply, Reply::Published(_)));
//! while let Some(_event) = engine.poll_event() {}
//! // Call `handle_timeout(now)` when `poll_timeout()` says, and drain events again.
//! assert_eq!(engine.poll_timeout(), None);
//! ```
//!
//! The loop every host runs: feed inputs with `handle(now, command)`, run timers with
//! `handle_timeout(now)` at (or after) the time `poll_timeout()` returns, and after each of the
//! two drain `poll_event()` until it returns `None`. `handle` first runs the timers already due
//! at `now`, so a late host timer delays events but never makes a reply wrong. Time never goes
//! backwards: an earlier `now` is treated as the latest seen.

#![warn(missing_docs)]

mod api;
mod bytes;
#[cfg(any(test, feature = "invariants"))]
mod check;
mod config;
mod control;
mod ctx;
mod dedup;
mod digest;
mod dispatch;
mod engine;
mod error;
mod flows;
mod fxmap;
mod ids;
pub mod input;
mod json;
mod kv;
mod lifecycle;
mod publish;
mod pubsub;
mod queue;
mod rng;
mod schedule;
pub mod sim;
#[cfg(test)]
mod tests;
mod time;
mod timers;

pub use api::{
    Command, DeadLetter, DeadLetterReason, DedupMode, Delivery, Event, GroupInfo, Headers, Job,
    JobState, KvEntry, KvStats, KvValue, LeaseRef, LeaseToken, MessageId, NackAction, Observed,
    ObservedKind, PubMessage, PublishMessage, Published, PubsubStats, QueueStats, Reply,
    ScheduleInfo, ScheduleSpec, SessionId, WaiterId,
};
pub use config::{
    Backoff, DEFAULT_IDEMPOTENCY_WINDOW_MS, EngineConfig, Keep, Limits, MAX_GROUP_BYTES,
    MAX_LEASE_MS, MAX_RESULT_BYTES, QueueConfig, RateLimit, RetryPosition, validate_queue_name,
};
pub use engine::Engine;
pub use error::Error;
pub use flows::{
    FlowAdded, FlowChild, FlowId, FlowInfo, FlowJobRef, FlowJobState, FlowNodeInfo, FlowTree,
    OnChildFailure,
};
pub use json::Json;
pub use queue::{QueueId, json_message};
pub use rng::Rng;
pub use schedule::MIN_EVERY_MS;
pub use time::Millis;
pub use timers::TimerKind;
