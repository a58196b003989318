//! Goal: keys and users limited by `permissions` (DESIGN.md §15) can do what they are granted
//! and nothing else, on every transport: REST, the command envelope, SynapRPC, the queue
//! WebSocket, the pub/sub WebSocket and SSE, and `/events`; a refusal is 403 `forbidden` (the
//! envelope's `code`, SynapRPC's `NOPERM forbidden:`) naming the action and resource, and
//! changes nothing; `GET /queue/list` and `/events` show only what the caller may see;
//! `/auth/me` says who the caller is; a key stored as an argon2id hash works; the official
//! Rust SDK works with a scoped key for what it allows and fails for the rest.
//! Method: one in-memory server with one key per action (each limited to names starting `q`,
//! `k` or `t.`), every route and command tried with every key: refused unless the key holds
//! the action, with the state compared before and after the refusals.

mod rpc_common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rpc_common::{Rpc, V, s};
use serde_json::{Value, json};
use synap_sdk::{SynapClient as Sdk, SynapConfig};
use synap_tests::server_harness::{Options, Server, server_binary};
use tokio_tungstenite::tungstenite::Message;

/// `synap-server hash-password` of `secret`.
fn hash(secret: &str) -> String {
    let mut child = Command::new(server_binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run hash-password");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{secret}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The scoped keys: name, permissions. The secret of each is `<name>-key`.
const KEYS: &[(&str, &[&str])] = &[
    ("pub", &["queue:q*:publish"]),
    ("con", &["queue:q*:consume"]),
    ("read", &["queue:q*:read"]),
    ("qadmin", &["queue:q*:admin"]),
    ("kvr", &["kv:k*:read"]),
    ("kvw", &["kv:k*:write"]),
    ("kvall", &["kv:*:read"]),
    ("tpub", &["topic:t.#:publish"]),
    ("tsub", &["topic:t.*:subscribe"]),
    ("tall", &["topic:#:subscribe"]),
    ("ops", &["server:*:read"]),
    ("none", &[]),
    (
        "worker",
        &["queue:q*:publish", "queue:q*:consume", "kv:k*:read"],
    ),
];

fn server() -> Server {
    let mut yaml = String::from("server:\n  api_keys:\n    - admin-key\n");
    for (name, perms) in KEYS {
        let perms: Vec<String> = perms.iter().map(|p| format!("\"{p}\"")).collect();
        let secret = if *name == "pub" {
            // One key stored as an argon2id hash.
            format!("key_hash: '{}'", hash("pub-key"))
        } else {
            format!("key: {name}-key")
        };
        yaml.push_str(&format!(
            "    - {{ name: {name}, {secret}, permissions: [{}] }}\n",
            perms.join(", ")
        ));
    }
    Server::start_with(Options {
        config_yaml: Some(&yaml),
        ..Options::default()
    })
}

fn bearer(name: &str) -> String {
    format!("Bearer {name}-key")
}

/// A REST call as `key`: (status, body).
async fn rest(
    http: &reqwest::Client,
    srv: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = srv.url(path);
    let mut rb = match method {
        "GET" => http.get(url),
        "POST" => http.post(url),
        "DELETE" => http.delete(url),
        "PUT" => http.put(url),
        m => panic!("method {m}"),
    };
    rb = rb.header("authorization", bearer(key));
    if let Some(b) = body {
        rb = rb.json(b);
    } else if method == "POST" {
        rb = rb.header("content-type", "application/json").body("{}");
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An envelope call as `key`: the response body.
async fn envelope(
    http: &reqwest::Client,
    srv: &Server,
    key: &str,
    cmd: &str,
    payload: &Value,
) -> Value {
    let body = json!({"command": cmd, "request_id": "r", "payload": payload});
    let resp = http
        .post(srv.url("/api/v1/command"))
        .header("authorization", bearer(key))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200, "{cmd} as {key}");
    resp.json().await.unwrap()
}

/// What a refusal must not change: q1's counters, the KV store, pub/sub counters.
async fn state(http: &reqwest::Client, srv: &Server) -> Value {
    let q = rest(http, srv, "admin", "GET", "/queue/q1/stats", None)
        .await
        .1;
    let kv = envelope(
        http,
        srv,
        "admin",
        "kv.mget",
        &json!({"keys": ["k1", "kn", "k2"]}),
    )
    .await;
    let keys = rest(http, srv, "admin", "GET", "/kv/keys", None).await.1;
    let ps = rest(http, srv, "admin", "GET", "/pubsub/stats", None)
        .await
        .1;
    let list = rest(http, srv, "admin", "GET", "/queue/list", None).await.1;
    let dlq = rest(http, srv, "admin", "GET", "/queue/q1/dlq", None)
        .await
        .1;
    json!({
        "depth": q["depth"], "in_flight": q["in_flight"], "published": q["published_total"],
        "consumed": q["consumed_total"], "acked": q["acked_total"], "nacked": q["nacked_total"],
        "dead": q["dead_lettered_total"], "dlq": dlq["total"], "config": q["config"],
        "kv": kv["payload"], "keys": keys, "published_topics": ps["messages_published"],
        "queues": list,
    })
}

async fn setup(http: &reqwest::Client, srv: &Server) {
    for q in ["q1", "qdel", "other"] {
        assert_eq!(
            rest(http, srv, "admin", "POST", &format!("/queue/{q}"), None)
                .await
                .0,
            200
        );
    }
    for i in 0..3 {
        let body = json!({"message": i});
        assert_eq!(
            rest(http, srv, "admin", "POST", "/queue/q1/publish", Some(&body))
                .await
                .0,
            200
        );
    }
    let body = json!({"key": "k1", "value": 1});
    assert_eq!(
        rest(http, srv, "admin", "POST", "/kv/set", Some(&body))
            .await
            .0,
        200
    );
    let body = json!({"key": "x1", "value": 1});
    assert_eq!(
        rest(http, srv, "admin", "POST", "/kv/set", Some(&body))
            .await
            .0,
        200
    );
}

const ID: &str = "00000000-0000-4000-8000-000000000001";

/// Every REST route that acts on a resource: method, path, body, the keys allowed.
fn rest_routes() -> Vec<(&'static str, String, Option<Value>, Vec<&'static str>)> {
    let id = json!({"message_id": ID});
    vec![
        (
            "POST",
            "/queue/q1".into(),
            Some(json!({"max_retries": 3})),
            vec!["qadmin"],
        ),
        (
            "POST",
            "/queue/q1/publish".into(),
            Some(json!({"message": 9})),
            vec!["pub", "worker"],
        ),
        (
            "POST",
            "/queue/q1/publish_batch".into(),
            Some(json!({"messages": [{"message": 9}]})),
            vec!["pub", "worker"],
        ),
        (
            "POST",
            "/queue/q1/consume".into(),
            Some(json!({"timeout": 0})),
            vec!["con", "worker"],
        ),
        (
            "GET",
            "/queue/q1/consume/c1?timeout=0".into(),
            None,
            vec!["con", "worker"],
        ),
        (
            "POST",
            "/queue/q1/ack".into(),
            Some(id.clone()),
            vec!["con", "worker"],
        ),
        (
            "POST",
            "/queue/q1/ack_batch".into(),
            Some(json!({"acks": [id.clone()]})),
            vec!["con", "worker"],
        ),
        (
            "POST",
            "/queue/q1/nack".into(),
            Some(id.clone()),
            vec!["con", "worker"],
        ),
        (
            "POST",
            "/queue/q1/extend".into(),
            Some(json!({"message_id": ID, "ack_deadline": 5})),
            vec!["con", "worker"],
        ),
        ("GET", "/queue/q1/stats".into(), None, vec!["read"]),
        ("GET", "/queue/q1/dlq".into(), None, vec!["read"]),
        ("POST", "/queue/q1/dlq/retry".into(), None, vec!["qadmin"]),
        ("POST", "/queue/q1/dlq/purge".into(), None, vec!["qadmin"]),
        ("POST", "/queue/q1/purge".into(), None, vec!["qadmin"]),
        ("DELETE", "/queue/qdel".into(), None, vec!["qadmin"]),
        (
            "POST",
            "/kv/set".into(),
            Some(json!({"key": "k2", "value": 2})),
            vec!["kvw"],
        ),
        (
            "GET",
            "/kv/get/k1".into(),
            None,
            vec!["kvr", "kvall", "worker"],
        ),
        (
            "GET",
            "/kv/exists/k1".into(),
            None,
            vec!["kvr", "kvall", "worker"],
        ),
        (
            "GET",
            "/kv/ttl/k1".into(),
            None,
            vec!["kvr", "kvall", "worker"],
        ),
        (
            "POST",
            "/kv/expire".into(),
            Some(json!({"key": "k1", "ttl": 1000})),
            vec!["kvw"],
        ),
        (
            "POST",
            "/kv/persist".into(),
            Some(json!({"key": "k1"})),
            vec!["kvw"],
        ),
        (
            "POST",
            "/kv/incr".into(),
            Some(json!({"key": "kn", "by": 1})),
            vec!["kvw"],
        ),
        (
            "POST",
            "/kv/mget".into(),
            Some(json!({"keys": ["k1"]})),
            vec!["kvr", "kvall", "worker"],
        ),
        (
            "POST",
            "/kv/mset".into(),
            Some(json!({"entries": [{"key": "k2", "value": 3}]})),
            vec!["kvw"],
        ),
        ("DELETE", "/kv/del/k2".into(), None, vec!["kvw"]),
        ("GET", "/kv/stats".into(), None, vec!["kvall"]),
        (
            "POST",
            "/pubsub/t.a/publish".into(),
            Some(json!({"message": 1})),
            vec!["tpub"],
        ),
        ("GET", "/pubsub/stats".into(), None, vec!["tall"]),
        ("GET", "/metrics".into(), None, vec!["ops"]),
        ("GET", "/debug/state_digest".into(), None, vec!["ops"]),
        // Names outside every scoped key's patterns.
        // Jobs: lookup and waiting need read, progress consume, cancel and schedules admin.
        (
            "GET",
            format!("/queue/q1/messages/{ID}"),
            None,
            vec!["read"],
        ),
        (
            "GET",
            format!("/queue/q1/messages/{ID}/wait?timeout=0"),
            None,
            vec!["read"],
        ),
        (
            "POST",
            "/queue/q1/progress".into(),
            Some(json!({"message_id": ID, "progress": 1})),
            vec!["con", "worker"],
        ),
        (
            "POST",
            "/queue/q1/cancel".into(),
            Some(id.clone()),
            vec!["qadmin"],
        ),
        (
            "PUT",
            "/queue/q1/schedules/s1".into(),
            Some(json!({"every_secs": 3600, "message": 1})),
            vec!["qadmin"],
        ),
        ("GET", "/queue/q1/schedules".into(), None, vec!["read"]),
        (
            "POST",
            "/queue/q1/schedules/s1/run".into(),
            None,
            vec!["qadmin"],
        ),
        (
            "DELETE",
            "/queue/q1/schedules/s1".into(),
            None,
            vec!["qadmin"],
        ),
        (
            "POST",
            "/queue/other/publish".into(),
            Some(json!({"message": 9})),
            vec![],
        ),
        ("GET", "/queue/other/stats".into(), None, vec![]),
        ("DELETE", "/queue/other".into(), None, vec![]),
        ("GET", "/kv/get/x1".into(), None, vec!["kvall"]),
        (
            "POST",
            "/pubsub/x.a/publish".into(),
            Some(json!({"message": 1})),
            vec![],
        ),
    ]
}

#[tokio::test]
async fn rest_routes_refuse_every_key_without_the_permission() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    let before = state(&http, &srv).await;
    let mut refusals = 0;
    for (method, path, body, allowed) in rest_routes() {
        for (key, _) in KEYS {
            if allowed.contains(key) {
                continue;
            }
            let (status, v) = rest(&http, &srv, key, method, &path, body.as_ref()).await;
            assert_eq!(status, 403, "{method} {path} as {key}: {v}");
            assert_eq!(v["code"], "forbidden", "{method} {path} as {key}: {v}");
            let msg = v["error"].as_str().unwrap();
            assert!(msg.contains(&format!("{key:?}")), "names the caller: {msg}");
            refusals += 1;
        }
    }
    assert_eq!(state(&http, &srv).await, before, "refusals changed nothing");
    assert!(refusals > 300, "{refusals}");
    // The message names the action and the resource.
    let (_, v) = rest(&http, &srv, "pub", "POST", "/queue/q1/purge", None).await;
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("admin") && msg.contains("\"q1\"") && msg.contains("queue:q1:admin"),
        "{msg}"
    );
    // Every route works for the keys that hold the permission (some answer 404 for the
    // made-up message id, never 401 or 403).
    for (method, path, body, allowed) in rest_routes() {
        for key in allowed.iter().chain(["admin"].iter()) {
            if path.contains("qdel") && *key == "admin" {
                continue;
            }
            let (status, v) = rest(&http, &srv, key, method, &path, body.as_ref()).await;
            assert!(
                ![401, 403].contains(&status),
                "{method} {path} as {key}: {status} {v}"
            );
        }
    }
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_see() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    let names = |v: &Value| -> Vec<String> {
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q.as_str().unwrap().to_owned())
            .collect()
    };
    let all = names(
        &rest(&http, &srv, "admin", "GET", "/queue/list", None)
            .await
            .1,
    );
    assert!(all.contains(&"other".to_owned()), "{all:?}");
    for key in ["pub", "con", "read", "qadmin", "worker"] {
        let (status, v) = rest(&http, &srv, key, "GET", "/queue/list", None).await;
        assert_eq!(status, 200);
        assert_eq!(names(&v), vec!["q1", "qdel"], "{key}");
    }
    for key in ["kvr", "none", "tsub"] {
        let (_, v) = rest(&http, &srv, key, "GET", "/queue/list", None).await;
        assert!(names(&v).is_empty(), "{key}: {v}");
    }
    let keys = |v: &Value| v["keys"].clone();
    assert_eq!(
        keys(&rest(&http, &srv, "kvr", "GET", "/kv/keys", None).await.1),
        json!(["k1"])
    );
    assert_eq!(
        keys(&rest(&http, &srv, "kvall", "GET", "/kv/keys", None).await.1),
        json!(["k1", "x1"])
    );
    assert_eq!(
        keys(&rest(&http, &srv, "kvw", "GET", "/kv/keys", None).await.1),
        json!([])
    );
    // The envelope's and SynapRPC's lists are filtered the same way.
    let v = envelope(&http, &srv, "pub", "queue.list", &json!({})).await;
    assert_eq!(v["payload"]["queues"], json!(["q1", "qdel"]), "{v}");
    let mut rpc = Rpc::connect(srv.rpc_addr.unwrap()).await;
    rpc.ok("AUTH", &[s("con-key")]).await;
    let list = rpc.ok("QLIST", &[]).await;
    assert_eq!(list, V::Array(vec![s("q1"), s("qdel")]));
    let keys = rpc.ok("KEYS", &[s("*")]).await;
    assert_eq!(keys, V::Array(vec![]));
}

#[tokio::test]
async fn auth_me_names_the_caller_and_its_permissions() {
    let srv = server();
    let http = reqwest::Client::new();
    let (status, v) = rest(&http, &srv, "worker", "GET", "/auth/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["name"], "worker");
    assert_eq!(v["full_access"], false);
    assert_eq!(
        v["permissions"],
        json!(["queue:q*:publish", "queue:q*:consume", "kv:k*:read"])
    );
    let (_, v) = rest(&http, &srv, "admin", "GET", "/auth/me", None).await;
    assert_eq!(v["full_access"], true);
    assert_eq!(v["permissions"], json!(["*"]));
    let (_, v) = rest(&http, &srv, "pub", "GET", "/auth/me", None).await;
    assert_eq!(v["name"], "pub", "the hashed key identifies its entry");
    let resp = http.get(srv.url("/auth/me")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let open = Server::start();
    let v: Value = http
        .get(open.url("/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["full_access"], true);
    assert_eq!(v["auth_enabled"], false);
}

/// Every envelope command: name, payload, the keys allowed.
fn envelope_commands() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        ("queue.create", json!({"name": "q1"}), vec!["qadmin"]),
        (
            "queue.publish",
            json!({"queue": "q1", "payload": [49]}),
            vec!["pub", "worker"],
        ),
        (
            "queue.consume",
            json!({"queue": "q1", "consumer_id": "c"}),
            vec!["con", "worker"],
        ),
        (
            "queue.ack",
            json!({"queue": "q1", "message_id": ID}),
            vec!["con", "worker"],
        ),
        (
            "queue.nack",
            json!({"queue": "q1", "message_id": ID}),
            vec!["con", "worker"],
        ),
        ("queue.stats", json!({"queue": "q1"}), vec!["read"]),
        ("queue.purge", json!({"queue": "q1"}), vec!["qadmin"]),
        ("queue.delete", json!({"queue": "qdel"}), vec!["qadmin"]),
        ("kv.set", json!({"key": "k2", "value": "v"}), vec!["kvw"]),
        (
            "kv.get",
            json!({"key": "k1"}),
            vec!["kvr", "kvall", "worker"],
        ),
        (
            "kv.exists",
            json!({"key": "k1"}),
            vec!["kvr", "kvall", "worker"],
        ),
        (
            "kv.ttl",
            json!({"key": "k1"}),
            vec!["kvr", "kvall", "worker"],
        ),
        ("kv.expire", json!({"key": "k1", "ttl": 1000}), vec!["kvw"]),
        ("kv.persist", json!({"key": "k1"}), vec!["kvw"]),
        ("kv.incr", json!({"key": "kn"}), vec!["kvw"]),
        ("kv.decr", json!({"key": "kn"}), vec!["kvw"]),
        (
            "kv.mget",
            json!({"keys": ["k1"]}),
            vec!["kvr", "kvall", "worker"],
        ),
        ("kv.mset", json!({"pairs": [["k2", "v"]]}), vec!["kvw"]),
        ("kv.mdel", json!({"keys": ["k2"]}), vec!["kvw"]),
        ("kv.del", json!({"key": "k2"}), vec!["kvw"]),
        ("kv.stats", json!({}), vec!["kvall"]),
        ("kv.dbsize", json!({}), vec!["kvall"]),
        (
            "pubsub.publish",
            json!({"topic": "t.a", "payload": 1}),
            vec!["tpub"],
        ),
        (
            "pubsub.subscribe",
            json!({"topics": ["t.a"]}),
            vec!["tsub", "tall"],
        ),
        ("pubsub.stats", json!({}), vec!["tall"]),
        (
            "queue.publish",
            json!({"queue": "other", "payload": [49]}),
            vec![],
        ),
        ("kv.get", json!({"key": "x1"}), vec!["kvall"]),
        ("pubsub.subscribe", json!({"topics": ["t.#"]}), vec!["tall"]),
    ]
}

#[tokio::test]
async fn envelope_commands_refuse_every_key_without_the_permission() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    let before = state(&http, &srv).await;
    for (cmd, payload, allowed) in envelope_commands() {
        for (key, _) in KEYS {
            if allowed.contains(key) {
                continue;
            }
            let v = envelope(&http, &srv, key, cmd, &payload).await;
            assert_eq!(v["success"], false, "{cmd} {payload} as {key}: {v}");
            assert_eq!(v["code"], "forbidden", "{cmd} as {key}: {v}");
            assert!(
                v["error"].as_str().unwrap().starts_with("Forbidden: "),
                "{v}"
            );
            assert_eq!(v["payload"], Value::Null);
        }
    }
    assert_eq!(state(&http, &srv).await, before, "refusals changed nothing");
    for (cmd, payload, allowed) in envelope_commands() {
        for key in allowed {
            let v = envelope(&http, &srv, key, cmd, &payload).await;
            assert_ne!(v["code"], "forbidden", "{cmd} as {key}: {v}");
            let err = v["error"].as_str().unwrap_or("");
            assert!(!err.starts_with("Forbidden"), "{cmd} as {key}: {v}");
        }
    }
}

/// Every SynapRPC command: name, arguments, the keys allowed.
fn rpc_commands() -> Vec<(&'static str, Vec<V>, Vec<&'static str>)> {
    vec![
        ("QCREATE", vec![s("q1")], vec!["qadmin"]),
        (
            "QPUBLISH",
            vec![s("q1"), V::Bytes(b"x".to_vec())],
            vec!["pub", "worker"],
        ),
        ("QCONSUME", vec![s("q1"), s("c")], vec!["con", "worker"]),
        ("QACK", vec![s("q1"), s(ID)], vec!["con", "worker"]),
        ("QNACK", vec![s("q1"), s(ID)], vec!["con", "worker"]),
        ("QSTATS", vec![s("q1")], vec!["read"]),
        ("QPURGE", vec![s("q1")], vec!["qadmin"]),
        ("QDELETE", vec![s("qdel")], vec!["qadmin"]),
        (
            "QSTREAM",
            vec![s("q1"), s("c"), V::Int(1)],
            vec!["con", "worker"],
        ),
        ("SET", vec![s("k2"), s("v")], vec!["kvw"]),
        ("GET", vec![s("k1")], vec!["kvr", "kvall", "worker"]),
        ("EXISTS", vec![s("k1")], vec!["kvr", "kvall", "worker"]),
        ("TTL", vec![s("k1")], vec!["kvr", "kvall", "worker"]),
        ("INCR", vec![s("kn")], vec!["kvw"]),
        ("INCRBY", vec![s("kn"), V::Int(2)], vec!["kvw"]),
        ("EXPIRE", vec![s("k1"), V::Int(1000)], vec!["kvw"]),
        ("PERSIST", vec![s("k1")], vec!["kvw"]),
        ("MGET", vec![s("k1")], vec!["kvr", "kvall", "worker"]),
        ("MSET", vec![s("k2"), s("v")], vec!["kvw"]),
        ("DEL", vec![s("k2")], vec!["kvw"]),
        ("KVSTATS", vec![], vec!["kvall"]),
        ("PUBLISH", vec![s("t.a"), s("1")], vec!["tpub"]),
        ("SUBSCRIBE", vec![s("t.a")], vec!["tsub", "tall"]),
        ("SUBSCRIBE", vec![s("t.#")], vec!["tall"]),
        ("TOPICS", vec![], vec!["tall"]),
        ("PSSTATS", vec![], vec!["tall"]),
        (
            "QPUBLISH",
            vec![s("other"), V::Bytes(b"x".to_vec())],
            vec![],
        ),
        ("GET", vec![s("x1")], vec!["kvall"]),
    ]
}

#[tokio::test]
async fn synap_rpc_commands_refuse_every_key_without_the_permission() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    let before = state(&http, &srv).await;
    for (key, _) in KEYS {
        let mut rpc = Rpc::connect(srv.rpc_addr.unwrap()).await;
        rpc.ok("AUTH", &[s(&format!("{key}-key"))]).await;
        for (cmd, args, allowed) in rpc_commands() {
            if allowed.contains(key) {
                continue;
            }
            let e = rpc.err(cmd, &args).await;
            assert!(e.starts_with("NOPERM forbidden: "), "{cmd} as {key}: {e}");
        }
    }
    assert_eq!(state(&http, &srv).await, before, "refusals changed nothing");
    for (cmd, args, allowed) in rpc_commands() {
        for key in allowed {
            let mut rpc = Rpc::connect(srv.rpc_addr.unwrap()).await;
            rpc.ok("AUTH", &[s(&format!("{key}-key"))]).await;
            if let Err(e) = rpc.call(cmd, &args).await {
                assert!(!e.starts_with("NOPERM"), "{cmd} as {key}: {e}");
            }
        }
    }
}

/// `ws://…{path}` with the key in the query (as browsers send it).
fn ws_url(srv: &Server, path: &str, key: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    srv.ws_url(&format!("{path}{sep}api_key={key}-key"))
}

async fn ws_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The next text frame as JSON.
async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn the_queue_websocket_checks_the_connection_and_each_frame() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    // Consuming needs consume; a publish-only connection needs publish.
    for (key, prefetch, ok) in [
        ("con", 1, true),
        ("worker", 1, true),
        ("pub", 1, false),
        ("read", 1, false),
        ("pub", 0, true),
        ("con", 0, false),
        ("qadmin", 1, false),
        ("none", 0, false),
    ] {
        let url = ws_url(&srv, &format!("/queue/q1/ws?prefetch={prefetch}"), key);
        let status = ws_status(&url).await;
        assert_eq!(
            status,
            if ok { 101 } else { 403 },
            "{key} prefetch={prefetch}"
        );
    }
    assert_eq!(
        ws_status(&ws_url(&srv, "/queue/other/ws?prefetch=0", "pub")).await,
        403
    );
    let before = state(&http, &srv).await;
    // A publish-only connection: publish frames work, ack frames are refused.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(&srv, "/queue/q1/ws?prefetch=0", "pub"))
            .await
            .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let ack = json!({"op": "ack", "id": 1, "message_id": ID});
    ws.send(Message::text(ack.to_string())).await.unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(v["code"], "forbidden", "{v}");
    assert_eq!(state(&http, &srv).await, before);
    let publish = json!({"op": "publish", "id": 2, "message": "hi"});
    ws.send(Message::text(publish.to_string())).await.unwrap();
    let v = next_json(&mut ws).await;
    assert!(v["message_id"].is_string(), "{v}");
    // A consuming connection without publish: publish frames are refused, acks work.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(&srv, "/queue/q1/ws?prefetch=1", "con"))
            .await
            .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let delivered = next_json(&mut ws).await;
    assert_eq!(delivered["type"], "message", "{delivered}");
    let before = state(&http, &srv).await;
    let publish = json!({"op": "publish", "id": 3, "message": "no"});
    ws.send(Message::text(publish.to_string())).await.unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(v["code"], "forbidden", "{v}");
    assert_eq!(state(&http, &srv).await, before);
    let ack = json!({"op": "ack", "id": 4, "message_id": delivered["message_id"], "lease": delivered["lease"]});
    ws.send(Message::text(ack.to_string())).await.unwrap();
    let v = next_json(&mut ws).await;
    assert!(v.get("code").is_none(), "{v}");
}

#[tokio::test]
async fn pubsub_websocket_and_sse_refuse_patterns_wider_than_the_grant() {
    let srv = server();
    let http = reqwest::Client::new();
    for (key, topics, ok) in [
        ("tsub", "t.a", true),
        ("tsub", "t.*", true),
        ("tsub", "t.a,t.b", true),
        ("tsub", "t.%23", false), // `t.#` matches `t` itself
        ("tsub", "%23", false),
        ("tsub", "x.a", false),
        ("tsub", "t.a,x.a", false),
        ("tall", "%23", true),
        ("tpub", "t.a", false),
        ("none", "t.a", false),
    ] {
        let path = format!("/pubsub/ws?topics={topics}");
        let status = ws_status(&ws_url(&srv, &path, key)).await;
        assert_eq!(status, if ok { 101 } else { 403 }, "ws {key} {topics}");
        let resp = http
            .get(srv.url(&format!("/pubsub/sse?topics={topics}")))
            .header("authorization", bearer(key))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            if ok { 200 } else { 403 },
            "sse {key} {topics}"
        );
        if !ok {
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["code"], "forbidden", "{v}");
        }
    }
    // No subscriber was left behind by the refusals.
    let ps = rest(&http, &srv, "admin", "GET", "/pubsub/stats", None)
        .await
        .1;
    assert_eq!(ps["subscribers"], 0, "{ps}");
    // An allowed subscription delivers.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(&srv, "/pubsub/ws?topics=t.*", "tsub"))
            .await
            .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let body = json!({"message": {"n": 1}});
    assert_eq!(
        rest(
            &http,
            &srv,
            "tpub",
            "POST",
            "/pubsub/t.x/publish",
            Some(&body)
        )
        .await
        .0,
        200
    );
    let v = next_json(&mut ws).await;
    assert_eq!(v["topic"], "t.x", "{v}");
}

#[tokio::test]
async fn events_show_only_readable_queues() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    let resp = http
        .get(srv.url("/events"))
        .header("authorization", bearer("read"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    for q in ["other", "q1"] {
        let body = json!({"message": q});
        assert_eq!(
            rest(
                &http,
                &srv,
                "admin",
                "POST",
                &format!("/queue/{q}/publish"),
                Some(&body)
            )
            .await
            .0,
            200
        );
    }
    let mut text = String::new();
    while !text.contains("\"queue\":\"q1\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event in time")
            .expect("open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!text.contains("\"queue\":\"other\""), "{text}");
}

#[tokio::test]
async fn the_rust_sdk_with_a_scoped_key() {
    let srv = server();
    let http = reqwest::Client::new();
    setup(&http, &srv).await;
    for url in [srv.url(""), srv.rpc_url()] {
        let sdk = Sdk::new(SynapConfig::new(url.clone()).with_auth_token("worker-key")).unwrap();
        // Allowed: publish, consume, ack on q*; read k*.
        let id = sdk
            .queue()
            .publish("q1", b"job", None, None)
            .await
            .expect("publish");
        assert!(!id.is_empty(), "{url}");
        let msg = sdk
            .queue()
            .consume("q1", "w1")
            .await
            .expect("consume")
            .expect("a message");
        sdk.queue().ack("q1", &msg.id).await.expect("ack");
        let v: Option<String> = sdk.kv().get("k1").await.expect("get");
        assert_eq!(v.as_deref(), Some("1"), "{url}");
        // Refused with the SDK's error.
        assert!(
            sdk.queue()
                .publish("other", b"x", None, None)
                .await
                .is_err(),
            "{url}"
        );
        assert!(sdk.queue().delete_queue("q1").await.is_err(), "{url}");
        assert!(sdk.queue().stats("q1").await.is_err(), "{url}");
        assert!(sdk.kv().set("k1", "2", None).await.is_err(), "{url}");
        let e = sdk.kv().set("k1", "2", None).await.unwrap_err().to_string();
        assert!(e.to_lowercase().contains("forbidden"), "{url}: {e}");
    }
    let v = envelope(&http, &srv, "admin", "kv.get", &json!({"key": "k1"})).await;
    assert_eq!(v["payload"], "1", "the refused sets changed nothing");
}

#[tokio::test]
async fn users_take_permissions_too() {
    let phc = hash("pw");
    let yaml = format!(
        "server:\n  users:\n    - {{ name: ops, password_hash: '{phc}', permissions: [\"queue:*:read\"] }}\n"
    );
    let srv = Server::start_with(Options {
        config_yaml: Some(&yaml),
        ..Options::default()
    });
    let http = reqwest::Client::new();
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:pw")
    );
    let get = |path: &str| {
        http.get(srv.url(path))
            .header("authorization", &basic)
            .send()
    };
    assert_eq!(get("/queue/list").await.unwrap().status().as_u16(), 200);
    let resp = http
        .post(srv.url("/queue/a"))
        .header("authorization", &basic)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let me: Value = get("/auth/me").await.unwrap().json().await.unwrap();
    assert_eq!(me["name"], "ops");
    assert_eq!(me["permissions"], json!(["queue:*:read"]));
}

#[test]
fn a_bad_permission_stops_the_server_naming_the_entry() {
    let yaml =
        "server:\n  api_keys:\n    - { name: broken, key: k, permissions: [\"queue:x:write\"] }\n";
    let path = synap_tests::server_harness::temp_file("yaml", yaml);
    let out = Command::new(server_binary())
        .args([
            "--in-memory",
            "--bind",
            "127.0.0.1:0",
            "--no-rpc",
            "--config",
        ])
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken") && err.contains("queue:x:write"),
        "{err}"
    );
}
