//! Flow-control routes: `POST /queue/{name}/pause`, `/resume` and `/rate_limit`, and
//! `GET /queue/{name}/groups`.

use serde::{Deserialize, Serialize};

/// `{success: true, paused}` of a pause or a resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// Always true in a 200 answer.
    pub success: bool,
    /// Whether the queue is paused now.
    pub paused: bool,
}

/// `POST /queue/{name}/rate_limit`: no deliveries from the queue for this long (a worker
/// whose downstream answered 429). A later call can lengthen the pause, never shorten it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRequest {
    /// Seconds without deliveries (more than 0).
    pub for_secs: f64,
}

/// `{success: true, rate_limited_until_ms}` of a rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimited {
    /// Always true in a 200 answer.
    pub success: bool,
    /// Nothing is delivered before this time, Unix ms.
    pub rate_limited_until_ms: u64,
}

/// The query of `GET /queue/{name}/groups`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsQuery {
    /// Most groups listed, 1–1000 (100 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `{groups}` of `GET /queue/{name}/groups`: the groups holding messages, largest first
/// (ready, delayed and in flight together), then by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    /// The groups.
    pub groups: Vec<GroupInfo>,
}

/// One group of a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group.
    pub group: String,
    /// Its ready messages.
    pub ready: u64,
    /// Its leased messages.
    pub in_flight: u64,
    /// Its messages waiting for a delay, a retry delay or a snooze.
    pub delayed: u64,
}
