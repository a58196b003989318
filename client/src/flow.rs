//! Flow control of DESIGN.md §12 (docs/controlling-throughput.md): pause and resume a queue,
//! hold its deliveries back for a while (a worker whose downstream answered 429), and list its
//! groups. The limits themselves (`max_in_flight`, `group_concurrency`, `ordered_groups`,
//! `fair_groups`, `rate_limit`, `group_rate_limit`, `max_snoozes`) are
//! [`QueueConfig`](crate::QueueConfig) settings, a message's group is
//! [`PublishOptions::group`](crate::PublishOptions::group), and a snooze is
//! [`NackOptions::snooze`](crate::NackOptions::snooze).

use std::time::Duration;

use reqwest::Method;
use synap_wire as wire;

use crate::client::SynapClient;
use crate::error::Result;
use crate::types::{GroupInfo, secs};

impl SynapClient {
    /// Pauses `queue`: it goes on taking publishes, acks, nacks and extends, and delivers
    /// nothing until resumed; consumers wait (long-poll) or get nothing. Pausing a paused
    /// queue is harmless. Answers whether the queue is paused now (`true`). Needs
    /// `queue:…:admin`. A paused queue stays paused across a server restart.
    ///
    /// # Errors
    /// `queue_not_found` (see [`SynapError::is_not_found`](crate::SynapError::is_not_found))
    /// when there is no such queue, `forbidden`, or transport errors.
    pub async fn queue_pause(&self, queue: &str) -> Result<bool> {
        self.set_paused(queue, "pause").await
    }

    /// Resumes a paused `queue`: the consumers waiting on it are served at once. Answers
    /// whether the queue is paused now (`false`). Needs `queue:…:admin`.
    ///
    /// # Errors
    /// As [`queue_pause`](Self::queue_pause).
    pub async fn queue_resume(&self, queue: &str) -> Result<bool> {
        self.set_paused(queue, "resume").await
    }

    async fn set_paused(&self, queue: &str, op: &str) -> Result<bool> {
        let r: wire::Paused = self
            .call(Method::POST, &["queue", queue, op], Some(&wire::Empty {}))
            .await?;
        Ok(r.paused)
    }

    /// Delivers nothing from `queue` for `duration` (at least 1 ms): what a worker does when
    /// its downstream answered 429. A later call can lengthen the pause, never shorten it.
    /// Answers the time deliveries start again, Unix ms (also in
    /// [`QueueStats::rate_limited_until_ms`](crate::QueueStats::rate_limited_until_ms)). Needs
    /// `queue:…:consume`, as a worker has.
    ///
    /// # Errors
    /// `invalid_argument` for a duration under 1 ms or over the server's limit,
    /// `queue_not_found`, or transport errors.
    pub async fn queue_rate_limit(&self, queue: &str, duration: Duration) -> Result<u64> {
        let body = wire::RateLimitRequest {
            for_secs: secs(duration),
        };
        let r: wire::RateLimited = self
            .call(Method::POST, &["queue", queue, "rate_limit"], Some(&body))
            .await?;
        Ok(r.rate_limited_until_ms)
    }

    /// The groups of `queue` holding messages, largest first (ready, delayed and in flight
    /// together), then by name; at most `limit` of them (1..=1000 with the server's default
    /// `limits.max_page`). How many groups there are in all is
    /// [`QueueStats::groups`](crate::QueueStats::groups). Needs `queue:…:read`.
    ///
    /// # Errors
    /// `invalid_argument` for a `limit` out of range, `queue_not_found`, or transport errors.
    pub async fn queue_groups(&self, queue: &str, limit: u64) -> Result<Vec<GroupInfo>> {
        let mut url = self.url(&["queue", queue, "groups"]);
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        let r: wire::GroupList = self.send_get(url).await?;
        Ok(r.groups)
    }
}
