//! Goal: `synap-client` drives the job lifecycle of DESIGN.md §13 against the real server:
//! lookup and waiting, progress with its cancelled flag, ack with a result, cancellation,
//! schedules, and the `dedup` / `debounce` publish options.
//! Method: each test starts its own in-memory `synap-server` on a free 127.0.0.1 port and uses
//! the client's public API only. Every wait has a generous upper bound and nothing asserts on
//! elapsed time.

use std::time::Duration;

use serde_json::{Value, json};
use synap_client::{
    ConsumeOptions, DedupMode, JobState, NackAction, PublishOptions, ScheduleOptions, SynapClient,
};
use synap_tests::server_harness::Server;

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

fn lease_for(secs: u64) -> Option<ConsumeOptions> {
    Some(ConsumeOptions {
        ack_deadline: Some(Duration::from_secs(secs)),
        ..ConsumeOptions::default()
    })
}

/// A producer waits for the job while a worker reports progress and acks with a result.
#[tokio::test]
async fn a_producer_waits_for_the_result_a_worker_reports_progress_on() {
    let server = Server::start();
    let c = client(&server).await;
    let published = c
        .queue_publish("videos", &json!({"video": 7}), PublishOptions::priority(8))
        .await
        .unwrap();
    let id = published.message_id;

    let job = c.job("videos", &id).await.unwrap();
    assert_eq!(job.state, JobState::Ready);
    assert_eq!((job.priority, job.attempts), (8, 0));
    assert_eq!(job.message, json!({"video": 7}));
    assert_eq!((job.progress, job.result), (None, None));

    let waiter = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move { c.wait_for("videos", &id, Duration::from_secs(20)).await })
    };

    let msg = c
        .queue_consume::<Value>("videos", lease_for(30))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(msg.id, id);
    let cancelled = c
        .progress(
            "videos",
            &id,
            msg.lease,
            &json!({"pct": 40, "stage": "1080p"}),
            Some(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert!(!cancelled);
    let job = c.job("videos", &id).await.unwrap();
    assert_eq!(job.state, JobState::InFlight);
    assert_eq!(job.progress, Some(json!({"pct": 40, "stage": "1080p"})));
    assert_eq!(job.attempts, 1);
    assert!(job.started_at.is_some());

    // Progress under a stale lease is refused like a stale extend.
    let stale = c
        .progress("videos", &id, msg.lease.map(|l| l + 1), &1, None)
        .await
        .unwrap_err();
    assert!(stale.is_lease_mismatch(), "{stale}");

    c.queue_ack_with_result("videos", &id, msg.lease, &json!({"url": "s3://v/7.mp4"}))
        .await
        .unwrap();
    let done = waiter.await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert!(done.state.is_finished());
    assert_eq!(done.result, Some(json!({"url": "s3://v/7.mp4"})));
    assert!(done.finished_at.is_some());
    assert_eq!(c.job("videos", &id).await.unwrap(), done);

    // A wait that ends first answers the job as it is.
    let later = c
        .queue_publish("videos", &json!({"video": 8}), PublishOptions::default())
        .await
        .unwrap();
    let still = c
        .wait_for("videos", &later.message_id, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(still.state, JobState::Ready);

    let missing = c
        .job("videos", "00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

/// Cancelling: a ready job at once; an in-flight one is marked, its worker learns of it and
/// its nack settles it as cancelled, never retried.
#[tokio::test]
async fn cancelled_jobs_are_never_delivered_and_a_worker_learns_of_it() {
    let server = Server::start();
    let c = client(&server).await;
    let ready = c
        .queue_publish("c", &1, PublishOptions::default())
        .await
        .unwrap()
        .message_id;
    let r = c.cancel("c", &ready).await.unwrap();
    assert_eq!(r.state, JobState::Cancelled);
    let again = c.cancel("c", &ready).await.unwrap_err();
    assert!(again.is_already_finished(), "{again}");
    assert_eq!(again.status(), Some(409));

    let running = c
        .queue_publish("c", &2, PublishOptions::default())
        .await
        .unwrap()
        .message_id;
    let msg = c
        .queue_consume::<u32>("c", None)
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(msg.id, running, "the cancelled job was skipped");
    let r = c.cancel("c", &running).await.unwrap();
    assert_eq!(r.state, JobState::InFlight);
    assert!(c.job("c", &running).await.unwrap().cancel_requested);
    let cancelled = c
        .progress("c", &running, msg.lease, &json!({"pct": 10}), None)
        .await
        .unwrap();
    assert!(cancelled, "the worker is told");
    let action = c
        .queue_nack_with(
            "c",
            &running,
            &synap_client::NackOptions {
                lease: msg.lease,
                ..synap_client::NackOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(action, NackAction::Cancelled);
    assert_eq!(
        c.job("c", &running).await.unwrap().state,
        JobState::Cancelled
    );
    assert!(
        c.queue_consume::<u32>("c", None).await.unwrap().is_none(),
        "never retried"
    );
}

/// `dedup: until_finished` holds the key while the job is unfinished; `debounce` replaces a
/// still-delayed job's message.
#[tokio::test]
async fn until_finished_keys_and_debounced_publishes() {
    let server = Server::start();
    let c = client(&server).await;
    let keyed = || PublishOptions {
        idempotency_key: Some("render-7".into()),
        dedup: Some(DedupMode::UntilFinished),
        ..PublishOptions::default()
    };
    let first = c.queue_publish("d", &1, keyed()).await.unwrap();
    let again = c.queue_publish("d", &1, keyed()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    let msg = c
        .queue_consume::<u32>("d", None)
        .await
        .unwrap()
        .expect("a message");
    c.queue_ack_with_lease("d", &msg.id, msg.lease)
        .await
        .unwrap();
    let next = c.queue_publish("d", &1, keyed()).await.unwrap();
    assert!(!next.duplicate, "the key is released once the job finished");
    assert_ne!(next.message_id, first.message_id);

    let debounced = || PublishOptions {
        idempotency_key: Some("reindex".into()),
        debounce: true,
        delay: Some(Duration::from_secs(60)),
        ..PublishOptions::default()
    };
    let a = c
        .queue_publish("e", &json!({"n": 1}), debounced())
        .await
        .unwrap();
    let b = c
        .queue_publish("e", &json!({"n": 2}), debounced())
        .await
        .unwrap();
    assert!(b.replaced && !a.replaced);
    assert_eq!(a.message_id, b.message_id);
    let job = c.job("e", &a.message_id).await.unwrap();
    assert_eq!(
        (job.state, job.message),
        (JobState::Delayed, json!({"n": 2}))
    );
    assert_eq!(c.queue_stats("e").await.unwrap().delayed, 1);
}

/// Schedules: put (create and replace), list, run now, delete.
#[tokio::test]
async fn schedules_are_put_listed_run_and_deleted() {
    let server = Server::start();
    let c = client(&server).await;
    let nightly = ScheduleOptions {
        priority: Some(7),
        ..ScheduleOptions::cron("0 3 * * *")
    };
    let set = c
        .schedule_put("reports", "nightly", &json!({"report": "daily"}), &nightly)
        .await
        .unwrap();
    assert_eq!(set.id, "nightly");
    assert!(set.created);
    assert!(set.next_run_at.is_some());
    let hourly = ScheduleOptions {
        max_runs: Some(10),
        ..ScheduleOptions::every(Duration::from_secs(3600))
    };
    c.schedule_put("reports", "hourly", &json!({"report": "hourly"}), &hourly)
        .await
        .unwrap();
    let replaced = c
        .schedule_put("reports", "nightly", &json!({"report": "daily"}), &nightly)
        .await
        .unwrap();
    assert!(!replaced.created);

    let list = c.schedule_list("reports").await.unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["hourly", "nightly"]);
    assert_eq!(list[0].every_secs, Some(3600.0));
    assert_eq!(list[0].max_runs, Some(10));
    assert_eq!(list[1].cron.as_deref(), Some("0 3 * * *"));
    assert_eq!((list[1].priority, list[1].runs), (Some(7), 0));

    let run = c.schedule_run("reports", "nightly").await.unwrap();
    let job = c.job("reports", &run.message_id).await.unwrap();
    assert_eq!(job.message, json!({"report": "daily"}));
    assert_eq!(job.priority, 7);
    let list = c.schedule_list("reports").await.unwrap();
    assert_eq!(list[1].runs, 1);
    assert_eq!(
        list[1].last_message_id.as_deref(),
        Some(run.message_id.as_str())
    );

    assert!(c.schedule_delete("reports", "nightly").await.unwrap());
    assert!(!c.schedule_delete("reports", "nightly").await.unwrap());
    let gone = c.schedule_run("reports", "nightly").await.unwrap_err();
    assert_eq!(gone.code(), Some("schedule_not_found"));
    let bad = c
        .schedule_put("reports", "bad", &1, &ScheduleOptions::default())
        .await
        .unwrap_err();
    assert!(bad.is_invalid_argument(), "{bad}");
    assert_eq!(c.schedule_list("reports").await.unwrap().len(), 1);
}
