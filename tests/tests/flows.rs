//! Flows over REST against the real server (docs/pipelines-with-flows.md): the video pipeline
//! (three renditions, then the package, then the notification) run by workers long-polling
//! three queues; a failing child under each `on_child_failure` mode; a parent cancelled
//! mid-flow; `GET /flows/{id}`, job lookups and stats while parents wait; refusals (depth,
//! bad nodes named by their path, unknown flows) that create nothing; permissions; and a
//! persisted server restarted mid-flow that carries on exactly where it stopped.
//! Method: one server per test (in memory, or on a temporary data directory with
//! `--fsync always` for the restart), stopped by its PID; workers are tokio tasks.

mod server_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use server_common::{Api, Options, Server};

/// A job `{"name": name}` of a flow request.
fn job(queue: &str, name: &str) -> Value {
    json!({"queue": queue, "message": {"name": name}})
}

/// The video pipeline: `notify` waits for `package`, which waits for three renditions.
fn pipeline(mode: &str) -> Value {
    let renditions: Vec<Value> = ["480p", "720p", "1080p"]
        .iter()
        .map(|r| job("transcode", r))
        .collect();
    let mut package = job("package", "package");
    package["children"] = json!(renditions);
    package["on_child_failure"] = json!(mode);
    let mut notify = job("notify", "notify");
    notify["children"] = json!([package]);
    notify["on_child_failure"] = json!(mode);
    notify
}

fn id(v: &Value) -> String {
    v["message_id"].as_str().expect("message_id").to_owned()
}

/// Polls `GET /flows/{id}` until its state is `state` (20 s at most).
async fn flow_in(api: &Api, flow_id: &str, state: &str) -> Value {
    for _ in 0..400 {
        let f = api.ok_get(&format!("/flows/{flow_id}")).await;
        if f["state"] == state {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("flow {flow_id} never became {state}");
}

/// A worker: long-polls `queue`, records each delivery, and acks it with a result naming
/// the queue and the job, until told to stop.
fn worker(api: &Api, queue: &str, stop: Arc<AtomicBool>, seen: Arc<Mutex<Vec<Value>>>) {
    let (http, base, queue) = (api.http.clone(), api.srv.url(""), queue.to_owned());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let resp = http
                .post(format!("{base}/queue/{queue}/consume"))
                .json(&json!({"timeout": 0.5, "ack_deadline": 30}))
                .send()
                .await;
            let Ok(resp) = resp else { continue };
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            for d in body["messages"].as_array().cloned().unwrap_or_default() {
                let name = d["message"]["name"].clone();
                let ack = json!({
                    "message_id": d["message_id"], "lease": d["lease"],
                    "result": {"by": queue, "name": name},
                });
                seen.lock().unwrap().push(d);
                let r = http
                    .post(format!("{base}/queue/{queue}/ack"))
                    .json(&ack)
                    .send()
                    .await
                    .expect("ack");
                assert_eq!(r.status().as_u16(), 200);
            }
        }
    });
}

#[tokio::test]
async fn the_video_pipeline_runs_on_workers_of_three_queues() {
    let api = Api::start();
    let created = api.ok("/flows", pipeline("fail")).await;
    let flow_id = created["flow_id"].as_str().expect("flow_id").to_owned();
    assert_eq!(created["queue"], "notify");
    let package = &created["children"][0];
    assert_eq!(package["queue"], "package");
    let renditions: Vec<String> = package["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(renditions.len(), 3);
    // While the renditions wait, the parents are visible but not deliverable.
    let stats = api.stats("package").await;
    assert_eq!(
        (&stats["waiting_children"], &stats["depth"]),
        (&json!(1), &json!(0))
    );
    let looked = api
        .ok_get(&format!("/queue/package/messages/{}", id(package)))
        .await;
    assert_eq!(looked["state"], "waiting_children");
    assert_eq!(looked["flow_id"], json!(flow_id));
    assert_eq!(looked["parent_id"], created["message_id"]);
    assert_eq!(looked["children"], json!(renditions));
    let leaf = api
        .ok_get(&format!("/queue/transcode/messages/{}", renditions[0]))
        .await;
    assert_eq!(leaf["parent_id"], package["message_id"]);
    assert!(leaf.get("children").is_none(), "{leaf}");
    let f = api.ok_get(&format!("/flows/{flow_id}")).await;
    assert_eq!(f["state"], "waiting_children");
    assert_eq!(f["children"][0]["state"], "waiting_children");
    assert_eq!(f["children"][0]["children"][2]["state"], "ready");

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    for q in ["transcode", "package", "notify"] {
        worker(&api, q, Arc::clone(&stop), Arc::clone(&seen));
    }
    let done = flow_in(&api, &flow_id, "completed").await;
    stop.store(true, Ordering::Relaxed);
    assert!(done["finished_at"].as_u64().is_some(), "{done}");
    assert_eq!(done["result"], json!({"by": "notify", "name": "notify"}));
    let seen = seen.lock().unwrap().clone();
    let by_name = |n: &str| {
        seen.iter()
            .find(|d| d["message"]["name"] == n)
            .unwrap_or_else(|| panic!("{n} was delivered"))
            .clone()
    };
    // The package's delivery carried the renditions' results, in order; the notification's
    // carried the package's.
    let p = by_name("package");
    let children = p["children"].as_array().expect("children");
    let names: Vec<&Value> = children.iter().map(|c| &c["result"]["name"]).collect();
    assert_eq!(names, [&json!("480p"), &json!("720p"), &json!("1080p")]);
    assert!(
        children
            .iter()
            .all(|c| c["state"] == "completed" && c["queue"] == "transcode")
    );
    let n = by_name("notify");
    assert_eq!(n["children"][0]["message_id"], package["message_id"]);
    assert_eq!(
        n["children"][0]["result"],
        json!({"by": "package", "name": "package"})
    );
    assert!(by_name("480p").get("children").is_none());
    assert_eq!(api.stats("package").await["waiting_children"], 0);
}

/// Runs a parent with children a, b, c on `work-{mode}`: a is rejected while b and c are in
/// flight, then b and c are acked. Returns the flow and the parent's delivery, if any.
async fn one_child_fails(api: &Api, mode: &str) -> (Value, Option<Value>) {
    let (join, work) = (format!("join-{mode}"), format!("work-{mode}"));
    let tree = json!({
        "queue": join, "message": {"name": "parent"}, "on_child_failure": mode,
        "children": [job(&work, "a"), job(&work, "b"), job(&work, "c")],
    });
    let created = api.ok("/flows", tree).await;
    let ds = api
        .consume(&work, json!({"max_messages": 3, "ack_deadline": 30}))
        .await;
    assert_eq!(ds.len(), 3);
    let nack = json!({"message_id": id(&ds[0]), "lease": ds[0]["lease"], "requeue": false});
    api.ok(&format!("/queue/{work}/nack"), nack).await;
    for d in &ds[1..] {
        let ack = json!({"message_id": id(d), "lease": d["lease"], "result": d["message"]});
        api.ok(&format!("/queue/{work}/ack"), ack).await;
    }
    let f = api
        .ok_get(&format!("/flows/{}", created["flow_id"].as_str().unwrap()))
        .await;
    let parent = api.consume(&join, json!({})).await.pop();
    (f, parent)
}

#[tokio::test]
async fn a_failing_child_under_each_mode() {
    let api = Api::start();
    let (f, parent) = one_child_fails(&api, "fail").await;
    assert!(parent.is_none(), "a failed parent never runs");
    assert_eq!(
        (&f["state"], &f["reason"]),
        (&json!("dead_lettered"), &json!("child_failed"))
    );
    let states: Vec<&Value> = f["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["state"])
        .collect();
    assert_eq!(
        states,
        [
            &json!("dead_lettered"),
            &json!("cancelled"),
            &json!("cancelled")
        ]
    );
    assert_eq!(f["children"][0]["reason"], "rejected");
    let dlq = api.ok_get("/queue/join-fail/dlq").await;
    assert_eq!(dlq["messages"][0]["reason"], "child_failed", "{dlq}");
    assert_eq!(dlq["messages"][0]["message"], json!({"name": "parent"}));

    let (f, parent) = one_child_fails(&api, "continue").await;
    let parent = parent.expect("the parent runs");
    assert_eq!(f["state"], "ready");
    let states: Vec<&Value> = parent["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["state"])
        .collect();
    assert_eq!(
        states,
        [
            &json!("dead_lettered"),
            &json!("completed"),
            &json!("completed")
        ]
    );
    assert_eq!(parent["children"][0]["result"], Value::Null);
    assert_eq!(parent["children"][2]["result"], json!({"name": "c"}));

    let (_, parent) = one_child_fails(&api, "ignore").await;
    let children = parent.expect("the parent runs")["children"].clone();
    let names: Vec<&Value> = children
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["result"]["name"])
        .collect();
    assert_eq!(names, [&json!("b"), &json!("c")]);
}

#[tokio::test]
async fn cancelling_a_parent_cancels_what_is_left_of_its_flow() {
    let api = Api::start();
    let created = api.ok("/flows", pipeline("fail")).await;
    let flow_id = created["flow_id"].as_str().unwrap().to_owned();
    let running = api.consume("transcode", json!({"ack_deadline": 30})).await;
    let r = api
        .ok("/queue/notify/cancel", json!({"message_id": id(&created)}))
        .await;
    assert_eq!(r["state"], "cancelled");
    let f = api.ok_get(&format!("/flows/{flow_id}")).await;
    assert_eq!(f["state"], "cancelled");
    let package = &f["children"][0];
    assert_eq!(package["state"], "cancelled");
    let states: Vec<&Value> = package["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["state"])
        .collect();
    assert_eq!(
        states,
        [
            &json!("in_flight"),
            &json!("cancelled"),
            &json!("cancelled")
        ]
    );
    assert_eq!(api.stats("transcode").await["depth"], 0);
    // The running rendition's worker hears of it on its next progress report.
    let p = api
        .ok(
            "/queue/transcode/progress",
            json!({"message_id": id(&running[0]), "lease": running[0]["lease"], "progress": 50}),
        )
        .await;
    assert_eq!(p["cancelled"], true);
    let looked = api
        .ok_get(&format!("/queue/package/messages/{}", id(package)))
        .await;
    assert_eq!(looked["state"], "cancelled");
    let (status, again) = api
        .post("/queue/notify/cancel", json!({"message_id": id(&created)}))
        .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_finished"))
    );
}

#[tokio::test]
async fn refused_flows_create_nothing() {
    let api = Api::start();
    let mut deep = job("q", "leaf");
    for _ in 1..9 {
        deep = json!({"queue": "q", "message": 1, "children": [deep]});
    }
    let (status, body) = api.post("/flows", deep).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("limit_exceeded")),
        "{body}"
    );
    let mut bad = job("q", "p");
    bad["children"] = json!([{"queue": "q2", "message": 1, "children": [
        job("q3", "ok"), {"queue": "q4", "message": 1, "priority": 12}]}]);
    let (status, body) = api.post("/flows", bad).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("children[0].children[1].priority"), "{msg}");
    let mut ttl = job("q", "p");
    ttl["children"] = json!([{"queue": "q2", "message": 1, "ttl": 0}]);
    let (status, body) = api.post("/flows", ttl).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("children[0].ttl"),
        "{body}"
    );
    let (status, body) = api
        .post("/flows", json!({"queue": "q", "message": 1, "childs": []}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, _) = api.post("/flows", json!({"message": 1})).await;
    assert_eq!(status, 400);
    let mut null = job("q", "p");
    null["children"] = json!([{"queue": "q2", "message": null}]);
    let (status, body) = api.post("/flows", null).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("children[0].message"),
        "{body}"
    );
    assert_eq!(
        api.ok_get("/queue/list").await["queues"],
        json!([]),
        "nothing created"
    );
    let (status, body) = api.get("/flows/not-a-flow").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, body) = api.get("/flows/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("flow_not_found"))
    );
}

#[tokio::test]
async fn adding_needs_publish_on_every_queue_and_reading_needs_read_on_the_root() {
    let yaml = "server:\n  api_keys:\n    - admin-key\n\
        \x20   - { name: maker, key: maker-key, permissions: [\"queue:v-*:publish\"] }\n\
        \x20   - { name: narrow, key: narrow-key, permissions: [\"queue:v-transcode:publish\", \"queue:v-transcode:read\"] }\n\
        \x20   - { name: reader, key: reader-key, permissions: [\"queue:v-notify:read\"] }\n";
    let mut api = Api::with(Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    }));
    let tree = json!({"queue": "v-notify", "message": 1, "children": [job("v-transcode", "a")]});
    api.key = Some("narrow-key".into());
    let (status, body) = api.post("/flows", tree.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert!(
        body["error"].as_str().unwrap().contains("v-notify"),
        "{body}"
    );
    api.key = Some("admin-key".into());
    assert_eq!(
        api.ok_get("/queue/list").await["queues"],
        json!([]),
        "nothing created"
    );
    api.key = Some("maker-key".into());
    let created = api.ok("/flows", tree).await;
    let path = format!("/flows/{}", created["flow_id"].as_str().unwrap());
    let (status, _) = api.get(&path).await;
    assert_eq!(status, 403, "maker may not read");
    api.key = Some("narrow-key".into());
    let (status, body) = api.get(&path).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "read on a child's queue is not enough"
    );
    api.key = Some("reader-key".into());
    assert_eq!(api.ok_get(&path).await["state"], "waiting_children");
}

/// A fresh data directory under the system temp dir (removed on drop).
struct Dir(std::path::PathBuf);

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

#[tokio::test]
async fn a_flow_carries_on_across_a_restart() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = Dir(std::env::temp_dir().join(format!("synap-flows-{}-{nanos}", std::process::id())));
    let mut api = start_in(&dir);
    let created = api.ok("/flows", pipeline("fail")).await;
    let flow_path = format!("/flows/{}", created["flow_id"].as_str().unwrap());
    let ds = api
        .consume("transcode", json!({"max_messages": 3, "ack_deadline": 120}))
        .await;
    for d in &ds[..2] {
        let ack = json!({"message_id": id(d), "lease": d["lease"], "result": {"url": d["message"]["name"]}});
        api.ok("/queue/transcode/ack", ack).await;
    }
    let before = api.ok_get(&flow_path).await;
    assert_eq!(before["children"][0]["state"], "waiting_children");
    assert!(api.srv.terminate().success());
    let api = start_in(&dir);
    let after = api.ok_get(&flow_path).await;
    assert_eq!(after, before, "the flow is as it was");
    assert_eq!(api.stats("package").await["waiting_children"], 1);
    // The last rendition's lease outlived the restart: its ack releases the package, whose
    // delivery still carries the results acked before the restart.
    let last = &ds[2];
    let ack = json!({"message_id": id(last), "lease": last["lease"], "result": {"url": "1080p"}});
    api.ok("/queue/transcode/ack", ack).await;
    let p = api
        .consume("package", json!({}))
        .await
        .pop()
        .expect("the package");
    let urls: Vec<&Value> = p["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["result"]["url"])
        .collect();
    assert_eq!(urls, [&json!("480p"), &json!("720p"), &json!("1080p")]);
    api.ok(
        "/queue/package/ack",
        json!({"message_id": id(&p), "lease": p["lease"]}),
    )
    .await;
    let n = api
        .consume("notify", json!({}))
        .await
        .pop()
        .expect("the notification");
    assert_eq!(n["children"][0]["state"], "completed");
    api.ok(
        "/queue/notify/ack",
        json!({"message_id": id(&n), "lease": n["lease"], "result": "sent"}),
    )
    .await;
    let f = flow_in(&api, created["flow_id"].as_str().unwrap(), "completed").await;
    assert_eq!(f["result"], "sent");
}
