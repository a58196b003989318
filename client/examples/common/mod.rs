//! What the video producer and worker examples share: the task shapes, the queue's settings
//! and a tiny `--flag value` parser (the examples avoid a CLI dependency).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use synap_client::QueueConfig;

/// The queue of the reference workload.
pub(crate) const QUEUE: &str = "video-processing";

/// A task on `video-processing`; the `type` field tells the worker what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum VideoTask {
    /// Transcode an uploaded video; a thumbnail task follows on success.
    Transcode {
        /// The video.
        video_id: String,
        /// Its owner, notified on `notifications.user.{user_id}`.
        user_id: String,
        /// Premium uploads are published with priority 9, others with 5.
        premium: bool,
    },
    /// Render a thumbnail (priority 7).
    Thumbnail {
        /// The video.
        video_id: String,
        /// Its owner.
        user_id: String,
    },
}

impl VideoTask {
    /// The video this task is about.
    pub(crate) fn video_id(&self) -> &str {
        match self {
            Self::Transcode { video_id, .. } | Self::Thumbnail { video_id, .. } => video_id,
        }
    }

    /// `transcode` or `thumbnail`, as in the task's `type` field.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Transcode { .. } => "transcode",
            Self::Thumbnail { .. } => "thumbnail",
        }
    }

    /// The user to notify.
    pub(crate) fn user_id(&self) -> &str {
        match self {
            Self::Transcode { user_id, .. } | Self::Thumbnail { user_id, .. } => user_id,
        }
    }

    /// Priority by DESIGN.md's workload: premium transcodes 9, thumbnails 7, others 5.
    pub(crate) fn priority(&self) -> u8 {
        match self {
            Self::Transcode { premium: true, .. } => 9,
            Self::Transcode { premium: false, .. } => 5,
            Self::Thumbnail { .. } => 7,
        }
    }
}

/// The queue's settings in the reference workload: a 300 s lease, retries after 10 s, 60 s and
/// 300 s, then the DLQ.
pub(crate) fn queue_config() -> QueueConfig {
    QueueConfig {
        max_retries: Some(3),
        ack_deadline: Some(Duration::from_secs(300)),
        retry_delays: [10, 60, 300].map(Duration::from_secs).to_vec(),
        ..QueueConfig::default()
    }
}

/// `--name value` pairs from the command line.
pub(crate) struct Args(Vec<(String, String)>);

impl Args {
    /// Parses `std::env::args`, exiting with a usage line on a malformed flag.
    pub(crate) fn parse(usage: &str) -> Self {
        let mut pairs = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let (Some(name), Some(value)) = (flag.strip_prefix("--"), args.next()) else {
                eprintln!("usage: {usage}");
                std::process::exit(2);
            };
            pairs.push((name.to_owned(), value));
        }
        Self(pairs)
    }

    /// The value of `--name`, or `default`.
    pub(crate) fn get(&self, name: &str, default: &str) -> String {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or_else(|| default.to_owned(), |(_, v)| v.clone())
    }

    /// `--name` parsed as a number, or `default`; exits on garbage.
    pub(crate) fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.0.iter().rev().find(|(n, _)| n == name) {
            None => default,
            Some((_, v)) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: not a number: {v}");
                std::process::exit(2);
            }),
        }
    }

    /// `--name` as seconds (fractions allowed), or `default`.
    pub(crate) fn secs(&self, name: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.num(name, default))
    }
}
