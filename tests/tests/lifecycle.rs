//! The job lifecycle over REST against the real server (docs/tracking-jobs.md): a producer
//! looks a job up and waits for it, a worker reports progress and acks with a result, an
//! operator cancels ready and in-flight jobs, `until_finished` and debounced publishes, and a
//! schedule that survives a restart of a persisted server without a doubled or lost slot and
//! with one catch-up run for the slots missed while it was down.

mod server_common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use server_common::{Api, Options, Server};

fn id(v: &Value) -> String {
    v["message_id"].as_str().expect("message_id").to_owned()
}

async fn put(api: &Api, path: &str, body: Value) -> (u16, Value) {
    let resp = api
        .http
        .put(api.srv.url(path))
        .json(&body)
        .send()
        .await
        .expect("put");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

#[tokio::test]
async fn a_producer_waits_for_the_result_a_worker_reports_progress_on() {
    let api = Api::start();
    let job = api
        .publish("videos", json!({"message": {"video": 7}}))
        .await;
    let looked = api.ok_get(&format!("/queue/videos/messages/{job}")).await;
    assert_eq!(looked["state"], "ready");
    assert_eq!(looked["message"], json!({"video": 7}));
    assert_eq!(looked["progress"], Value::Null);
    let url = api
        .srv
        .url(&format!("/queue/videos/messages/{job}/wait?timeout=20"));
    let waiter = tokio::spawn(async move {
        let resp = reqwest::get(url).await.expect("wait");
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    let d = api.consume("videos", json!({"ack_deadline": 30})).await;
    let lease = d[0]["lease"].clone();
    let p = api
        .ok(
            "/queue/videos/progress",
            json!({"message_id": job, "lease": lease, "progress": {"pct": 40}, "extend": 120}),
        )
        .await;
    assert_eq!(p["cancelled"], false);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(p["lease_deadline"].as_u64().unwrap() > now + 100_000, "{p}");
    let looked = api.ok_get(&format!("/queue/videos/messages/{job}")).await;
    assert_eq!(looked["state"], "in_flight");
    assert_eq!(looked["progress"], json!({"pct": 40}));
    assert!(looked["started_at"].as_u64().is_some());
    api.ok(
        "/queue/videos/ack",
        json!({"message_id": job, "lease": lease, "result": {"url": "s3://out/7.mp4"}}),
    )
    .await;
    let (status, done) = waiter.await.unwrap();
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"], json!({"url": "s3://out/7.mp4"}));
    assert!(done["finished_at"].as_u64().is_some());
    // A finished job answers a wait at once; an unknown one is 404.
    let again = api
        .ok_get(&format!("/queue/videos/messages/{job}/wait?timeout=20"))
        .await;
    assert_eq!(again["state"], "completed");
    let (status, body) = api
        .get("/queue/videos/messages/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("message_not_found"))
    );
    // A wait that ends answers the job as it is.
    let other = api.publish("videos", json!({"message": 2})).await;
    let open = api
        .ok_get(&format!("/queue/videos/messages/{other}/wait?timeout=0.2"))
        .await;
    assert_eq!(open["state"], "ready");
}

#[tokio::test]
async fn cancelled_jobs_are_never_delivered_and_a_worker_learns_of_it() {
    let api = Api::start();
    let ready = api.publish("c", json!({"message": 1})).await;
    let r = api
        .ok("/queue/c/cancel", json!({"message_id": ready}))
        .await;
    assert_eq!(r["state"], "cancelled");
    let (status, body) = api
        .post("/queue/c/cancel", json!({"message_id": ready}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_finished"))
    );
    let running = api.publish("c", json!({"message": 2})).await;
    let d = api.consume("c", json!({})).await;
    assert_eq!(id(&d[0]), running, "the cancelled job was skipped");
    let lease = d[0]["lease"].clone();
    let r = api
        .ok("/queue/c/cancel", json!({"message_id": running}))
        .await;
    assert_eq!(r["state"], "in_flight");
    let p = api
        .ok(
            "/queue/c/progress",
            json!({"message_id": running, "lease": lease, "progress": 1}),
        )
        .await;
    assert_eq!(p["cancelled"], true);
    let n = api
        .ok(
            "/queue/c/nack",
            json!({"message_id": running, "lease": lease, "requeue": true}),
        )
        .await;
    assert_eq!(n["action"], "cancelled");
    let looked = api.ok_get(&format!("/queue/c/messages/{running}")).await;
    assert_eq!(looked["state"], "cancelled");
    assert!(
        api.consume("c", json!({})).await.is_empty(),
        "never retried"
    );
    let stats = api.stats("c").await;
    assert_eq!(stats["depth"], 0);
    assert_eq!(
        (&stats["cancelled_total"], &stats["kept_jobs"]),
        (&json!(2), &json!(2)),
        "both cancelled jobs are counted and kept for lookup: {stats}"
    );
}

#[tokio::test]
async fn until_finished_keys_and_debounced_publishes() {
    let api = Api::start();
    let body = json!({"message": 1, "idempotency_key": "render-7", "dedup": "until_finished"});
    let first = api.ok("/queue/d/publish", body.clone()).await;
    let again = api.ok("/queue/d/publish", body.clone()).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(id(&again), id(&first));
    let d = api.consume("d", json!({})).await;
    api.ok("/queue/d/ack", json!({"message_id": id(&d[0])}))
        .await;
    let next = api.ok("/queue/d/publish", body).await;
    assert!(next.get("duplicate").is_none(), "{next}");
    assert_ne!(id(&next), id(&first));
    let debounced = |n: u64| json!({"message": {"n": n}, "idempotency_key": "reindex", "debounce": true, "delay": 60});
    let a = api.ok("/queue/e/publish", debounced(1)).await;
    let b = api.ok("/queue/e/publish", debounced(2)).await;
    assert_eq!(b["replaced"], true);
    assert_eq!(id(&a), id(&b));
    let looked = api.ok_get(&format!("/queue/e/messages/{}", id(&a))).await;
    assert_eq!(
        (looked["state"].as_str(), &looked["message"]),
        (Some("delayed"), &json!({"n": 2}))
    );
    assert_eq!(api.stats("e").await["delayed"], 1);
}

#[tokio::test]
async fn retention_settings_are_queue_config() {
    let api = Api::start();
    api.ok(
        "/queue/r",
        json!({"keep_completed": {"count": 1, "age_secs": 600}, "max_result_bytes": 10}),
    )
    .await;
    let (status, body) = {
        let a = api.publish("r", json!({"message": 1})).await;
        let d = api.consume("r", json!({})).await;
        assert_eq!(id(&d[0]), a);
        api.post(
            "/queue/r/ack",
            json!({"message_id": a, "result": "far too long a result"}),
        )
        .await
    };
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let stats = api.stats("r").await;
    assert_eq!(
        stats["config"]["keep_completed"],
        json!({"count": 1, "age_secs": 600.0})
    );
}

/// A fresh data directory under the system temp dir (removed by `Dir`'s drop).
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_in(dir: &Dir) -> Api {
    Api::with(Server::start_with(Options {
        data_dir: Some(&dir.0),
        args: vec!["--fsync".into(), "always".into()],
        ..Options::default()
    }))
}

async fn schedule_runs(api: &Api) -> u64 {
    let list = api.ok_get("/queue/ticks/schedules").await;
    list["schedules"][0]["runs"].as_u64().expect("runs")
}

#[tokio::test]
async fn a_schedule_survives_a_restart_with_one_catch_up_run() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        Dir(std::env::temp_dir().join(format!("synap-lifecycle-{}-{nanos}", std::process::id())));
    let mut api = start_in(&dir);
    let (status, set) = put(
        &api,
        "/queue/ticks/schedules/every-second",
        json!({"every_secs": 1, "message": {"tick": true}, "max_runs": 1000}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["created"], true);
    assert!(set["next_run_at"].as_u64().is_some());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let before = schedule_runs(&api).await;
    assert!(
        (2..=3).contains(&before),
        "runs before the restart: {before}"
    );
    assert!(api.srv.terminate().success());
    // Down for six slots.
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    let api = start_in(&dir);
    let after = schedule_runs(&api).await;
    assert!(
        (before + 1..=before + 2).contains(&after),
        "the runs before the restart kept, then one catch-up run (and perhaps the next \
         slot), not one per missed slot: {before} then {after}"
    );
    // Every run made exactly one job, each at its own slot.
    let stats = api.stats("ticks").await;
    let runs = schedule_runs(&api).await;
    assert_eq!(stats["published_total"].as_u64(), Some(runs), "{stats}");
    assert_eq!(stats["schedules"], 1, "{stats}");
    let jobs = api.consume("ticks", json!({"max_messages": 100})).await;
    let mut slots: Vec<u64> = jobs
        .iter()
        .map(|d| d["published_at"].as_u64().unwrap())
        .collect();
    assert!(
        jobs.len() as u64 >= runs,
        "{} jobs, {runs} runs",
        jobs.len()
    );
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), jobs.len(), "a slot yielded two jobs");
    let (status, deleted) = api.delete("/queue/ticks/schedules/every-second").await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)));
}

#[tokio::test]
async fn a_websocket_worker_reports_progress_and_a_watcher_sees_it() {
    use server_common::{ws_connect, ws_next, ws_send};
    let api = Api::start();
    let mut watcher = ws_connect(&api.srv.ws_url("/queue/p/ws?prefetch=0&progress=true")).await;
    assert_eq!(
        ws_next(&mut watcher).await.expect("hello")["type"],
        "connected"
    );
    let mut worker = ws_connect(&api.srv.ws_url("/queue/p/ws?prefetch=1")).await;
    assert_eq!(
        ws_next(&mut worker).await.expect("hello")["type"],
        "connected"
    );
    let job = api.publish("p", json!({"message": {"video": 1}})).await;
    let d = ws_next(&mut worker).await.expect("delivery");
    assert_eq!((d["type"].as_str(), id(&d)), (Some("message"), job.clone()));
    let report = json!({"op": "progress", "id": 1, "message_id": job, "lease": d["lease"],
        "progress": {"pct": 40}, "extend": 30});
    ws_send(&mut worker, &report).await;
    let ok = ws_next(&mut worker).await.expect("confirm");
    assert_eq!(
        (&ok["type"], &ok["op"], &ok["cancelled"]),
        (&json!("ok"), &json!("progress"), &json!(false)),
        "{ok}"
    );
    assert!(ok["lease_deadline"].as_u64().is_some(), "{ok}");
    let seen = ws_next(&mut watcher).await.expect("progress frame");
    assert_eq!(
        (&seen["type"], &seen["message_id"], &seen["progress"]),
        (&json!("progress"), &json!(job), &json!({"pct": 40})),
        "{seen}"
    );
    let looked = api.ok_get(&format!("/queue/p/messages/{job}")).await;
    assert_eq!(looked["progress"], json!({"pct": 40}));
    // After a cancel, the worker's next report says so.
    api.ok("/queue/p/cancel", json!({"message_id": job})).await;
    ws_send(
        &mut worker,
        &json!({"op": "progress", "message_id": job, "progress": 2}),
    )
    .await;
    let ok = ws_next(&mut worker).await.expect("confirm");
    assert_eq!(ok["cancelled"], true, "{ok}");
    // A bad report is an error frame, and the connection goes on.
    ws_send(&mut worker, &json!({"op": "progress", "message_id": job})).await;
    let bad = ws_next(&mut worker).await.expect("error");
    assert_eq!(
        (&bad["type"], &bad["code"]),
        (&json!("error"), &json!("invalid_argument")),
        "{bad}"
    );
}
