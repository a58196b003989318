//! The job lifecycle of DESIGN.md §13 (docs/tracking-jobs.md): look a job up or wait for it,
//! report progress on a leased job, cancel one, and run recurring work on a schedule. Acking
//! with a result is [`SynapClient::queue_ack_with_result`]; the `dedup` and `debounce` publish
//! options are in [`PublishOptions`](crate::PublishOptions).

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use synap_wire as wire;

use crate::client::SynapClient;
use crate::error::Result;
use crate::types::{Cancelled, Headers, Job, PublishResult, Schedule, ScheduleSet, opt_secs, secs};

/// When a schedule runs, and what each run publishes besides its body. Build one with
/// [`every`](Self::every) or [`cron`](Self::cron), then set the other fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleOptions {
    /// A run every this long (at least 1 s), counted from `start_at` or the schedule's creation.
    /// Exactly one of `every` and `cron` is set.
    pub every: Option<Duration>,
    /// A 5-field cron pattern (minute hour day-of-month month day-of-week), read in UTC.
    pub cron: Option<String>,
    /// 0–9 for each run's message; the queue's `default_priority` when `None`.
    pub priority: Option<u8>,
    /// Headers of each run's message.
    pub headers: Headers,
    /// No run before this time, Unix ms.
    pub start_at: Option<u64>,
    /// No run after this time, Unix ms.
    pub end_at: Option<u64>,
    /// Runs after which the schedule ends.
    pub max_runs: Option<u64>,
}

impl ScheduleOptions {
    /// A run every `interval`.
    #[must_use]
    pub fn every(interval: Duration) -> Self {
        Self {
            every: Some(interval),
            ..Self::default()
        }
    }

    /// Runs at the times a 5-field cron pattern names, in UTC (e.g. `"0 3 * * *"`).
    #[must_use]
    pub fn cron(pattern: impl Into<String>) -> Self {
        Self {
            cron: Some(pattern.into()),
            ..Self::default()
        }
    }

    /// The wire request of a schedule publishing `message`.
    pub(crate) fn request(&self, message: serde_json::Value) -> wire::ScheduleRequest {
        wire::ScheduleRequest {
            every_secs: opt_secs(self.every),
            cron: self.cron.clone(),
            message,
            priority: self.priority,
            headers: self.headers.clone(),
            start_at: self.start_at,
            end_at: self.end_at,
            max_runs: self.max_runs,
        }
    }
}

impl SynapClient {
    /// A job as it is now: its state, attempts, last progress, result and times.
    ///
    /// # Errors
    /// `message_not_found` (see [`SynapError::is_not_found`]) for an unknown id or a finished
    /// job the queue no longer keeps (`keep_completed` / `keep_cancelled`); dead-lettered jobs
    /// are found with [`dlq_list`](Self::dlq_list).
    ///
    /// [`SynapError::is_not_found`]: crate::SynapError::is_not_found
    pub async fn job(&self, queue: &str, message_id: &str) -> Result<Job> {
        self.call(
            Method::GET,
            &["queue", queue, "messages", message_id],
            None::<&()>,
        )
        .await
    }

    /// Waits up to `timeout` (capped by the server's `max_wait_secs`) for a job to finish
    /// (completed, dead-lettered or cancelled) and answers it then, or as it is when the wait
    /// ends: check [`JobState::is_finished`](crate::JobState::is_finished).
    ///
    /// # Errors
    /// As [`job`](Self::job); `limit_exceeded` when the server holds too many waits.
    pub async fn wait_for(&self, queue: &str, message_id: &str, timeout: Duration) -> Result<Job> {
        let mut url = self.url(&["queue", queue, "messages", message_id, "wait"]);
        url.query_pairs_mut()
            .append_pair("timeout", &secs(timeout).to_string());
        self.send_get_long(url, timeout).await
    }

    /// Reports `progress` (any `Serialize` value, up to 4 KiB of JSON) on the job held under
    /// `lease`; `extend` also moves the lease deadline to that long from now. Answers `true`
    /// when the job was cancelled: stop working on it and ack or nack it, which settles it as
    /// cancelled (never retried).
    ///
    /// # Errors
    /// `lease_mismatch` when `lease` is not the job's current lease, `invalid_argument` for
    /// progress over 4 KiB.
    pub async fn progress<P: Serialize + ?Sized>(
        &self,
        queue: &str,
        message_id: &str,
        lease: Option<u64>,
        progress: &P,
        extend: Option<Duration>,
    ) -> Result<bool> {
        let body = wire::ProgressRequest {
            message_id: message_id.to_owned(),
            lease,
            progress: serde_json::to_value(progress)?,
            extend: opt_secs(extend),
        };
        let r: wire::Progressed = self
            .call(Method::POST, &["queue", queue, "progress"], Some(&body))
            .await?;
        Ok(r.cancelled)
    }

    /// Cancels a job. A ready or delayed one is cancelled at once (`state: Cancelled`); an
    /// in-flight one is marked (`state: InFlight`): its worker's next progress or extend learns
    /// of it and its ack, nack or lease expiry settles it as cancelled.
    ///
    /// # Errors
    /// `already_finished` (409) for a finished job, `message_not_found` for an unknown one;
    /// after a failover's resend, `already_finished` comes as [`SynapError::Resent`] (an
    /// earlier attempt most likely cancelled the job).
    ///
    /// [`SynapError::Resent`]: crate::SynapError::Resent
    pub async fn cancel(&self, queue: &str, message_id: &str) -> Result<Cancelled> {
        let body = wire::CancelRequest {
            message_id: message_id.to_owned(),
        };
        let sent = self
            .call_tracked(Method::POST, &["queue", queue, "cancel"], Some(&body), true)
            .await;
        match sent.result {
            // Resent after a failover: an earlier attempt most likely cancelled it.
            Err(e) if sent.resent && e.is_already_finished() => {
                Err(crate::SynapError::Resent(Box::new(e)))
            }
            r => r,
        }
    }

    /// Creates or replaces the schedule `id` of `queue`: each run publishes `message` (any
    /// `Serialize` value) with the idempotency key `schedule:{id}:{slot}`. A replaced schedule
    /// keeps its `runs` and `last_run_at` (`created: false`).
    ///
    /// # Errors
    /// `invalid_argument` for neither or both of `every` and `cron`, a bad pattern or an
    /// interval under 1 s; `limit_exceeded` past the server's schedule limit.
    pub async fn schedule_put<T: Serialize + ?Sized>(
        &self,
        queue: &str,
        id: &str,
        message: &T,
        opts: &ScheduleOptions,
    ) -> Result<ScheduleSet> {
        let body = opts.request(serde_json::to_value(message)?);
        self.call(Method::PUT, &["queue", queue, "schedules", id], Some(&body))
            .await
    }

    /// The queue's schedules by id, with `next_run_at`, `last_run_at` and `runs`.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn schedule_list(&self, queue: &str) -> Result<Vec<Schedule>> {
        let r: wire::ScheduleList = self
            .call(Method::GET, &["queue", queue, "schedules"], None::<&()>)
            .await?;
        Ok(r.schedules)
    }

    /// Deletes a schedule; `false` if there was none with that id.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn schedule_delete(&self, queue: &str, id: &str) -> Result<bool> {
        let r: wire::Deleted = self
            .call(
                Method::DELETE,
                &["queue", queue, "schedules", id],
                None::<&()>,
            )
            .await?;
        Ok(r.deleted)
    }

    /// Publishes one run of a schedule now.
    ///
    /// # Errors
    /// `schedule_not_found`, or what a publish to the queue may answer.
    pub async fn schedule_run(&self, queue: &str, id: &str) -> Result<PublishResult> {
        self.call(
            Method::POST,
            &["queue", queue, "schedules", id, "run"],
            None::<&()>,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_go_out_in_seconds_with_unset_fields_left_out() {
        let opts = ScheduleOptions {
            max_runs: Some(3),
            ..ScheduleOptions::every(Duration::from_millis(1500))
        };
        let v = serde_json::to_value(opts.request(serde_json::json!({"n": 1}))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"every_secs": 1.5, "message": {"n": 1}, "max_runs": 3})
        );
        let v = serde_json::to_value(ScheduleOptions::cron("0 3 * * *").request(1.into())).unwrap();
        assert_eq!(v, serde_json::json!({"cron": "0 3 * * *", "message": 1}));
    }
}
