//! Property tests that throw generated and mutated input at the server's parsers: REST bodies
//! and SDK envelopes through the real router and engine task, queue WebSocket frames, and
//! command-log records (SynapRPC frames: `rpc::proptests`). Nothing may panic or hang; every
//! refusal is a clean error (a JSON 4xx, an error frame, a `Corrupt` or `Torn` record).
//!
//! The default case count is small so the suite stays fast; `PROPTEST_CASES=5000 cargo test
//! -p synap-server proptests` widens every one of them.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use proptest::prelude::*;
use serde_json::{Map, Value};
use synap_core::{Command, Engine, EngineConfig, Millis};
use tokio::sync::broadcast;
use tower_service::Service as _;

use crate::clock::Clock;
use crate::engine_task::EngineTask;
use crate::handle::EngineHandle;
use crate::http::{self, AppState};
use crate::storage::record::{Frame, decode_frame, encode_record};

/// Cases per property: `PROPTEST_CASES` when set, else a few dozen.
pub(crate) fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Field names the request types read, so generated objects hit real fields.
const FIELDS: &[&str] = &[
    "message",
    "payload",
    "priority",
    "headers",
    "delay",
    "ttl",
    "max_retries",
    "timeout",
    "ack_deadline",
    "max_messages",
    "consumer_id",
    "message_id",
    "lease",
    "requeue",
    "error",
    "key",
    "value",
    "by",
    "amount",
    "keys",
    "entries",
    "pairs",
    "messages",
    "acks",
    "prefix",
    "limit",
    "max_bytes",
    "max_depth",
    "backoff",
    "retry_delays",
    "idempotency_key",
    "queue",
    "name",
    "topic",
    "op",
    "id",
    "credit",
    "message_ids",
    "config",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0.0),
            Just(-1.0),
            Just(1e300),
            Just(-1e300),
            any::<f64>()
        ]
        .prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "[a-z0-9_.:*#\\x00-\\x1f\u{ff}-\u{10ff}-]{0,12}".prop_map(Value::String),
    ]
}

/// Any JSON value, nested a few levels, objects keyed mostly by real field names.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(FIELDS).prop_map(str::to_owned),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Bytes of `text` with a few random edits: bytes replaced, the end cut.
fn mutated(text: String, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut b = text.into_bytes();
    if b.is_empty() {
        return b;
    }
    for (at, byte) in edits {
        let i = at % b.len();
        b[i] = *byte;
    }
    b.truncate(cut % (b.len() + 1));
    b
}

/// A body: a generated JSON value's text, often mutated into broken JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        json(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<usize>(),
        any::<bool>(),
    )
        .prop_map(|(v, edits, cut, mutate)| {
            let text = v.to_string();
            if mutate {
                mutated(text, &edits, cut)
            } else {
                text.into_bytes()
            }
        })
}

/// A runtime with one server (router and engine task) shared by every case.
fn server() -> &'static (tokio::runtime::Runtime, Router, AppState) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Router, AppState)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = rt.block_on(async {
            let (events, _) = broadcast::channel(64);
            let task = EngineTask::new(
                Engine::new(EngineConfig::default(), 7),
                events.clone(),
                Clock::new(),
            );
            let mut s = http::tests::shared(task.start().0);
            s.events = events;
            AppState::new(s)
        });
        let app = http::router(state.clone());
        (rt, app, state)
    })
}

/// Sends one request; returns the status and body, checking the answer is well formed.
fn send(path: &str, body: Vec<u8>) -> Result<(u16, Value), TestCaseError> {
    let (rt, app, _) = server();
    let mut app = app.clone();
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, bytes) = rt.block_on(async {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), app.call(req))
            .await
            .expect("answered without hanging")
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        (status, bytes)
    });
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{path} answered {status} non-JSON: {e}")))?;
    prop_assert!(
        status < 500 || status == 507,
        "{path} answered {status}: {v}"
    );
    if status >= 400 {
        prop_assert!(
            v["code"].is_string() && v["error"].is_string(),
            "{path}: {v}"
        );
    }
    Ok((status, v))
}

const ROUTES: &[&str] = &[
    "/queue/q",
    "/queue/q/publish",
    "/queue/q/publish_batch",
    "/queue/q/consume",
    "/queue/q/ack",
    "/queue/q/ack_batch",
    "/queue/q/nack",
    "/queue/q/extend",
    "/queue/q/dlq/retry",
    "/kv/set",
    "/kv/incr",
    "/kv/expire",
    "/kv/persist",
    "/kv/mget",
    "/kv/mset",
    "/pubsub/t.a/publish",
];

const COMMANDS: &[&str] = &[
    "queue.create",
    "queue.publish",
    "queue.consume",
    "queue.ack",
    "queue.nack",
    "queue.stats",
    "queue.purge",
    "queue.delete",
    "kv.set",
    "kv.get",
    "kv.del",
    "kv.incr",
    "kv.decr",
    "kv.expire",
    "kv.ttl",
    "kv.keys",
    "kv.mget",
    "kv.mset",
    "kv.mdel",
    "pubsub.publish",
    "pubsub.subscribe",
    "pubsub.topics",
    "ping",
    "nope",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rest_bodies_get_an_answer_or_a_json_4xx(
        route in proptest::sample::select(ROUTES),
        body in body(),
    ) {
        send(route, body)?;
    }

    #[test]
    fn envelopes_get_an_answer_or_a_clean_error(
        command in proptest::sample::select(COMMANDS),
        payload in json(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        cut in any::<usize>(),
    ) {
        let envelope = serde_json::json!({"command": command, "request_id": 1, "payload": payload});
        let text = envelope.to_string();
        let bytes = if edits.is_empty() { text.into_bytes() } else { mutated(text, &edits, cut) };
        let (status, v) = send("/api/v1/command", bytes)?;
        if status == 200 {
            prop_assert!(v["success"].is_boolean(), "{v}");
            prop_assert!(v["success"] == true || v["error"].is_string(), "{v}");
        }
    }

    #[test]
    fn queue_socket_frames_get_a_command_or_an_error_frame(
        frame in body(),
        binary in proptest::bool::weighted(0.05),
    ) {
        let (_, _, state) = server();
        let text = String::from_utf8_lossy(&frame).into_owned();
        let outcome = http::frame_outcome(state.clone(), (!binary).then_some(text.as_str()));
        if let Err(frame) = outcome {
            let v = serde_json::to_value(&frame).unwrap();
            prop_assert_eq!(&v["type"], "error", "{}", v);
            prop_assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", v);
            prop_assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{}", v);
        }
    }

    #[test]
    fn log_records_decode_or_are_reported(
        keys in proptest::collection::vec("[a-z]{1,6}", 1..4),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let cmds: Vec<Command> = keys.into_iter().map(|key| Command::KvDel { key }).collect();
        let mut out = Vec::new();
        encode_record(&mut out, 3, Millis(99), &cmds);
        let clean = out.clone();
        for (at, byte) in &edits {
            let i = at % out.len();
            out[i] = *byte;
        }
        out.truncate(cut % (out.len() + 1));
        match decode_frame(&out) {
            Frame::Record(r, len) => {
                prop_assert!(len <= out.len());
                // A record that still passes its checksum is the one written.
                if len == clean.len() {
                    prop_assert_eq!(r.commands, cmds);
                }
            }
            Frame::Torn | Frame::Corrupt(_) | Frame::End => {}
        }
        let _ = decode_frame(&junk);
    }
}

/// The shared server's state, for checks after the properties ran.
#[test]
fn the_shared_server_stays_healthy() {
    let (_, _, state) = server();
    let handle: Arc<EngineHandle> = Arc::new(state.engine.clone());
    let (rt, _, _) = server();
    let alive = rt.block_on(async move { handle.call(Command::ListQueues).await.is_ok() });
    assert!(alive);
}
