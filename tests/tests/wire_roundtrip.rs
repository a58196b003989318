//! Goal: every REST body and pub/sub frame of the real server goes through the `synap-wire`
//! types both ways, so a field renamed, dropped or added on one side fails this test (or the
//! build) instead of reading as a default.
//! Method: one in-memory server; every request is a typed wire value (the server refuses
//! unknown fields, so a renamed request field is a 400); every answer is decoded strictly into
//! its wire type, re-encoded, and compared with the JSON received (so the server cannot send a
//! field the type lacks), then each field's value is asserted.

mod server_common;

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use server_common::{SseReader, ws_connect, ws_next};
use synap_tests::server_harness::Server;
use synap_wire as w;

/// A server and a plain HTTP client speaking wire types.
struct Wire {
    srv: Server,
    http: reqwest::Client,
}

impl Wire {
    fn start() -> Self {
        Self {
            srv: Server::start(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `body` and returns the status with the answer as JSON.
    async fn raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, self.srv.url(path));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, v)
    }

    /// A 200 answer decoded as `R`, which must re-encode to exactly the JSON received.
    async fn call<B: Serialize, R: DeserializeOwned + Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> R {
        let (status, v) = self.raw(method, path, body).await;
        assert_eq!(status, 200, "{path}: {v}");
        strict(path, v)
    }

    async fn post<B: Serialize, R: DeserializeOwned + Serialize>(&self, path: &str, body: &B) -> R {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get<R: DeserializeOwned + Serialize>(&self, path: &str) -> R {
        self.call(Method::GET, path, None::<&()>).await
    }

    async fn delete<R: DeserializeOwned + Serialize>(&self, path: &str) -> R {
        self.call(Method::DELETE, path, None::<&()>).await
    }
}

/// `v` decoded as `R`; panics if a field is missing or `R` does not give back `v` exactly.
fn strict<R: DeserializeOwned + Serialize>(what: &str, v: Value) -> R {
    let typed: R = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}: {v}"));
    let back = serde_json::to_value(&typed).expect("re-encode");
    assert_eq!(
        back, v,
        "{what}: the wire type does not give back the answer"
    );
    typed
}

fn headers() -> w::Headers {
    BTreeMap::from([("h".to_owned(), "v".to_owned())])
}

/// Settings with every field set.
fn full_config() -> w::QueueConfig {
    w::QueueConfig {
        max_retries: Some(2),
        ack_deadline_secs: Some(1.5),
        retry_delays: Some(vec![0.25, 1.0]),
        backoff: Some(w::Backoff {
            initial: 0.5,
            multiplier: Some(3.0),
            max: 10.0,
            jitter: Some(0.0),
        }),
        max_depth: Some(50),
        message_ttl: Some(600.0),
        prefetch: Some(0),
        dead_letter: Some(true),
        dlq_max: Some(20),
        default_priority: Some(4),
        retry_position: Some(w::RetryPosition::Original),
        max_bytes: Some(1 << 20),
        keep_completed: Some(w::Keep {
            count: 10,
            age_secs: 60.0,
        }),
        keep_cancelled: Some(w::Keep {
            count: 0,
            age_secs: 1.5,
        }),
        max_result_bytes: Some(1024),
        max_in_flight: Some(10),
        group_concurrency: Some(2),
        ordered_groups: Some(false),
        fair_groups: Some(true),
        rate_limit: Some(w::Rate {
            max: 1000,
            per_secs: 1.0,
        }),
        group_rate_limit: Some(w::Rate {
            max: 100,
            per_secs: 0.5,
        }),
        max_snoozes: Some(5),
    }
}

fn publish(message: Value) -> w::PublishRequest {
    w::PublishRequest {
        message: Some(message),
        ..w::PublishRequest::default()
    }
}

#[tokio::test]
async fn queue_routes_round_trip_every_field() {
    let api = Wire::start();
    let created: w::QueueCreated = api.post("/queue/rt", &full_config()).await;
    assert_eq!(
        created,
        w::QueueCreated {
            success: true,
            queue: "rt".into(),
            created: true
        }
    );
    let list: w::QueueList = api.get("/queue/list").await;
    assert_eq!(list.queues, vec!["rt".to_owned()]);

    let a_req = w::PublishRequest {
        priority: Some(7),
        headers: headers(),
        ttl: Some(600.0),
        max_retries: Some(1),
        ..publish(json!({"n": 1}))
    };
    let a: w::Published = api.post("/queue/rt/publish", &a_req).await;
    assert_eq!(a.position, Some(1));
    let b_req = w::PublishRequest {
        payload: Some(b"[1,2]".to_vec()),
        ..w::PublishRequest::default()
    };
    let b: w::Published = api.post("/queue/rt/publish", &b_req).await;
    assert_eq!(b.position, Some(2));
    let delayed = w::PublishRequest {
        delay: Some(60.0),
        ..publish(json!("later"))
    };
    let c: w::Published = api.post("/queue/rt/publish", &delayed).await;
    assert_eq!(c.position, None);
    let low = |n| w::PublishRequest {
        priority: Some(1),
        ..publish(json!({"n": n}))
    };
    let batch = w::PublishBatchRequest {
        messages: vec![low(2), low(3)],
    };
    let batch: w::PublishedBatch = api.post("/queue/rt/publish_batch", &batch).await;
    let positions: Vec<_> = batch.messages.iter().map(|p| p.position).collect();
    assert_eq!(positions, vec![Some(3), Some(4)]);

    let consume = w::ConsumeRequest {
        timeout: Some(0.0),
        ack_deadline: Some(30.0),
        max_messages: Some(2),
        consumer_id: Some("w1".into()),
    };
    let got: w::Deliveries = api.post("/queue/rt/consume", &consume).await;
    let [da, db] = <[w::Delivery; 2]>::try_from(got.messages).expect("two deliveries");
    assert_eq!(da.message_id, a.message_id);
    assert_eq!((da.queue.as_str(), &da.message), ("rt", &json!({"n": 1})));
    assert_eq!(da.payload, None);
    assert_eq!((da.priority, da.retry_count, da.max_retries), (7, 0, 1));
    assert_eq!(da.headers, headers());
    assert!(da.published_at > 0);
    assert!(da.lease_deadline >= da.published_at + 30_000, "{da:?}");
    assert_eq!(db.message_id, b.message_id);
    assert_eq!(db.message, json!([1, 2]), "byte body read as JSON");
    assert_eq!(db.payload.as_deref(), Some(&b"[1,2]"[..]));
    assert_eq!((db.priority, db.max_retries), (4, 2), "queue defaults");
    assert_ne!(da.lease, db.lease);

    let extend = w::ExtendRequest {
        message_id: da.message_id.clone(),
        ack_deadline: 60.0,
        lease: Some(da.lease),
    };
    let ext: w::Extended = api.post("/queue/rt/extend", &extend).await;
    assert!(ext.success && ext.lease_deadline > da.lease_deadline);
    let ack = w::AckRequest {
        message_id: da.message_id.clone(),
        lease: Some(da.lease),
        result: None,
    };
    let acked: w::Success = api.post("/queue/rt/ack", &ack).await;
    assert_eq!(acked, w::Success::OK);
    let reject = w::NackRequest {
        message_id: db.message_id.clone(),
        requeue: Some(false),
        delay: None,
        error: Some("boom".into()),
        lease: Some(db.lease),
        snooze: None,
    };
    let nacked: w::Nacked = api.post("/queue/rt/nack", &reject).await;
    assert_eq!(
        (nacked.success, nacked.action),
        (true, w::NackAction::DeadLettered)
    );

    let q = "/queue/rt/consume/w2?timeout=0&max_messages=1&ack_deadline=30";
    let got: w::Deliveries = api.get(q).await;
    let d2 = &got.messages[0];
    assert_eq!((&d2.message, d2.priority), (&json!({"n": 2}), 1));
    let retry = w::NackRequest {
        message_id: d2.message_id.clone(),
        requeue: None,
        delay: Some(30.0),
        error: None,
        lease: Some(d2.lease),
        snooze: None,
    };
    let nacked: w::Nacked = api.post("/queue/rt/nack", &retry).await;
    assert_eq!(nacked.action, w::NackAction::Delayed);
    let got: w::Deliveries = api.get(q).await;
    let d3 = &got.messages[0];
    assert_eq!(d3.message, json!({"n": 3}));
    let acks = w::AckBatchRequest {
        acks: vec![
            w::AckRequest {
                message_id: d3.message_id.clone(),
                lease: Some(d3.lease),
                result: None,
            },
            w::AckRequest {
                message_id: "not-an-id".into(),
                lease: None,
                result: None,
            },
        ],
    };
    let res: w::AckBatchResult = api.post("/queue/rt/ack_batch", &acks).await;
    assert_eq!(res.acked, 1);
    assert_eq!(
        res.failed,
        vec![w::AckFailure {
            message_id: "not-an-id".into(),
            code: "invalid_argument".into()
        }]
    );

    let st: w::QueueStats = api.get("/queue/rt/stats").await;
    let counts = [
        st.depth,
        st.ready,
        st.delayed,
        st.in_flight,
        st.dead_letter_count,
        st.consumers,
        st.waiters,
    ];
    assert_eq!(counts, [2, 0, 2, 0, 1, 2, 0], "{st:?}");
    let totals = [
        st.published_total,
        st.consumed_total,
        st.acked_total,
        st.nacked_total,
        st.lease_expired_total,
        st.dead_lettered_total,
        st.expired_total,
        st.dlq_dropped_total,
    ];
    assert_eq!(totals, [5, 4, 2, 2, 0, 1, 0, 0], "{st:?}");
    assert_eq!((st.queue.as_str(), st.oldest_ready_age_ms), ("rt", 0));
    assert!(st.avg_wait_time_ms >= 0.0);
    assert_eq!(
        st.config,
        full_config(),
        "stats answer the settings as created"
    );

    dlq_routes(&api, &db).await;
    let purged: w::Purged = api.post("/queue/rt/purge", &w::Empty {}).await;
    assert_eq!(purged.purged, 3, "delayed, retried and redriven");
    let deleted: w::Deleted = api.delete("/queue/rt").await;
    assert!(deleted.deleted);
    let deleted: w::Deleted = api.delete("/queue/rt").await;
    assert!(!deleted.deleted);
    let (status, v) = api.raw(Method::GET, "/queue/rt/stats", None::<&()>).await;
    let err: w::ErrorBody = strict("error", v);
    assert_eq!((status, err.code.as_str()), (404, "queue_not_found"));
}

/// The DLQ page, redrive and purge, after `dead` was rejected with error `boom`.
async fn dlq_routes(api: &Wire, dead: &w::Delivery) {
    let page: w::DlqPage = api.get("/queue/rt/dlq?offset=0&limit=10").await;
    assert_eq!(page.total, 1);
    let e = &page.messages[0];
    assert_eq!(e.message_id, dead.message_id);
    assert_eq!(
        (&e.message, e.payload.as_deref()),
        (&json!([1, 2]), Some(&b"[1,2]"[..]))
    );
    assert_eq!((e.priority, e.headers.len()), (4, 0));
    assert_eq!((e.reason, e.attempts), (w::DeadLetterReason::Rejected, 1));
    assert_eq!(e.last_error.as_deref(), Some("boom"));
    assert_eq!(e.origin_queue, "rt");
    assert_eq!(e.published_at, dead.published_at);
    assert!(e.dead_lettered_at >= e.published_at);
    let redrive = w::DlqRetryRequest {
        message_ids: Some(vec![dead.message_id.clone()]),
    };
    let r: w::Retried = api.post("/queue/rt/dlq/retry", &redrive).await;
    assert_eq!(r.retried, 1);
    let p: w::Purged = api.post("/queue/rt/dlq/purge", &w::Empty {}).await;
    assert_eq!(p.purged, 0);
}

fn set(key: &str, value: Value, ttl: Option<f64>) -> w::SetRequest {
    w::SetRequest {
        key: key.into(),
        value: Some(value),
        ttl,
    }
}

#[tokio::test]
async fn kv_routes_round_trip_every_field() {
    let api = Wire::start();
    let ok: w::Success = api
        .post("/kv/set", &set("k1", json!({"a": 1}), Some(100.0)))
        .await;
    assert_eq!(ok, w::Success::OK);
    let got: w::KvGet = api.get("/kv/get/k1").await;
    let w::KvGet::Found { value, ttl } = got else {
        panic!("k1 missing");
    };
    assert_eq!(value, json!({"a": 1}));
    assert!(ttl.is_some_and(|t| t > 90.0 && t <= 100.0), "{ttl:?}");
    let missing: w::KvGet = api.get("/kv/get/nope").await;
    assert_eq!(missing, w::KvGet::Missing);
    let ex: w::Exists = api.get("/kv/exists/k1").await;
    assert!(ex.exists);
    let key = w::KeyRequest { key: "k1".into() };
    let up: w::Updated = api.post("/kv/persist", &key).await;
    assert!(up.updated);
    let t: w::KvTtl = api.get("/kv/ttl/k1").await;
    assert_eq!(t.ttl, None);
    let expire = w::ExpireRequest {
        key: "k1".into(),
        ttl: 50.0,
    };
    let up: w::Updated = api.post("/kv/expire", &expire).await;
    assert!(up.updated);
    let t: w::KvTtl = api.get("/kv/ttl/k1").await;
    assert!(t.ttl.is_some_and(|t| t > 40.0 && t <= 50.0), "{t:?}");
    let incr = |by| w::IncrRequest {
        key: "ctr".into(),
        by,
    };
    let v: w::IntValue = api.post("/kv/incr", &incr(Some(5))).await;
    assert_eq!(v.value, 5);
    let v: w::IntValue = api.post("/kv/incr", &incr(None)).await;
    assert_eq!(v.value, 6);
    let mset = w::MsetRequest {
        entries: vec![
            set("k2", json!("x"), None),
            set("k3", json!([1]), Some(10.0)),
        ],
    };
    let ok: w::Success = api.post("/kv/mset", &mset).await;
    assert!(ok.success);
    let keys: w::KeysResponse = api.get("/kv/keys?prefix=k&limit=10").await;
    assert_eq!(
        (keys.keys, keys.count),
        (vec!["k1".into(), "k2".into(), "k3".into()], 3)
    );
    let mget = w::MgetRequest {
        keys: vec!["k1".into(), "nope".into(), "k2".into()],
    };
    let vals: w::MgetResponse = api.post("/kv/mget", &mget).await;
    assert_eq!(
        vals.values,
        vec![Some(json!({"a": 1})), None, Some(json!("x"))]
    );
    let st: w::KvStats = api.get("/kv/stats").await;
    assert_eq!((st.total_keys, st.expired), (4, 0));
    assert!(st.total_memory_bytes > 0 && st.sets >= 4 && st.hits >= 1 && st.misses >= 1);
    #[allow(clippy::cast_precision_loss)] // Small counters.
    let rate = st.hits as f64 / (st.hits + st.misses) as f64;
    assert!((st.hit_rate - rate).abs() < 1e-9, "{st:?}");
    let del: w::Deleted = api.delete("/kv/del/k1").await;
    assert!(del.deleted);
    let del: w::Deleted = api.delete("/kv/del/k1").await;
    assert!(!del.deleted);
}

#[tokio::test]
async fn pubsub_routes_and_frames_round_trip_every_field() {
    let api = Wire::start();
    let health: w::Health = api.get("/health").await;
    assert_eq!(
        (health.status.as_str(), health.service.as_str()),
        ("healthy", "synap")
    );
    assert!(!health.version.is_empty() && health.code.is_none());

    let mut ws = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=rt.*")).await;
    let hello: w::PubsubConnected = strict("connected", ws_next(&mut ws).await.expect("hello"));
    assert!(!hello.subscriber_id.is_empty());
    assert_eq!(
        (hello.topics, hello.subscription_count),
        (vec!["rt.*".into()], 1)
    );
    let mut sse = SseReader::open(&api.srv.url("/pubsub/sse?topics=rt.a")).await;
    let sse_hello: w::SseConnected = strict("sse connected", sse.next_named("connected").await);
    assert_eq!(sse_hello.topics, vec!["rt.a".to_owned()]);

    let body = w::PubsubPublishRequest {
        message: Some(json!({"x": 1})),
        headers: Some(headers()),
        ..w::PubsubPublishRequest::default()
    };
    let p: w::PubsubPublished = api.post("/pubsub/rt.a/publish", &body).await;
    assert_eq!((p.topic.as_str(), p.subscribers_matched), ("rt.a", 2));
    let m: w::PubsubMessage = strict("message", ws_next(&mut ws).await.expect("message"));
    assert_eq!(
        (m.topic.as_str(), m.message_id.as_str()),
        ("rt.a", p.message_id.as_str())
    );
    assert_eq!(
        (&m.message, &m.payload),
        (&json!({"x": 1}), &json!({"x": 1}))
    );
    assert_eq!(
        (m.headers.clone(), m.metadata.clone()),
        (headers(), Some(headers()))
    );
    assert!(m.published_at > 0);
    assert_eq!(m.timestamp, m.published_at / 1000);
    let from_sse: w::PubsubMessage = strict("sse message", sse.next_named("message").await);
    assert_eq!(from_sse, m);

    let st: w::PubsubStats = api.get("/pubsub/stats").await;
    let counts = [st.subscribers, st.subscriptions, st.wildcard_subscriptions];
    assert_eq!(counts, [2, 2, 1], "{st:?}");
    assert_eq!(st.topics, vec!["rt.a".to_owned()]);
    let flow = [
        st.messages_published,
        st.messages_delivered,
        st.messages_dropped,
    ];
    assert_eq!(flow, [1, 2, 0], "{st:?}");
}

/// Sends a client frame and decodes the answer strictly.
async fn ws_call(ws: &mut server_common::Ws, frame: &w::QueueClientFrame) -> w::QueueServerFrame {
    server_common::ws_send(ws, &serde_json::to_value(frame).expect("frame")).await;
    strict("confirm", ws_next(ws).await.expect("confirm"))
}

#[tokio::test]
async fn queue_websocket_frames_round_trip_every_field() {
    let api = Wire::start();
    let url = api
        .srv
        .ws_url("/queue/ws/ws?consumer_id=c1&prefetch=1&ack_deadline=30");
    let mut ws = ws_connect(&url).await;
    let hello: w::QueueServerFrame = strict("connected", ws_next(&mut ws).await.expect("hello"));
    let connected = w::QueueServerFrame::Connected {
        queue: "ws".into(),
        consumer_id: "c1".into(),
        prefetch: 1,
    };
    assert_eq!(hello, connected);
    let publish = w::QueueClientFrame {
        id: Some(json!(1)),
        op: w::QueueOp::Publish(w::PublishRequest {
            headers: headers(),
            ..publish(json!({"n": 1}))
        }),
    };
    let published = ws_call(&mut ws, &publish).await;
    let w::QueueServerFrame::Published {
        op,
        id,
        message_id,
        position,
        duplicate,
    } = published
    else {
        panic!("not a publish confirm: {published:?}");
    };
    assert_eq!(
        (op.as_str(), id, position, duplicate),
        ("publish", Some(json!(1)), Some(1), false)
    );
    let pushed: w::QueueServerFrame = strict("message", ws_next(&mut ws).await.expect("push"));
    let w::QueueServerFrame::Message(d) = pushed else {
        panic!("not a message: {pushed:?}");
    };
    assert_eq!(
        (d.message_id.as_str(), d.queue.as_str()),
        (message_id.as_str(), "ws")
    );
    assert_eq!(
        (&d.message, &d.headers, d.retry_count),
        (&json!({"n": 1}), &headers(), 0)
    );
    assert!(d.lease_deadline >= d.published_at + 30_000);

    let extend = w::QueueClientFrame {
        id: Some(json!("e")),
        op: w::QueueOp::Extend(w::ExtendRequest {
            message_id: d.message_id.clone(),
            ack_deadline: 60.0,
            lease: Some(d.lease),
        }),
    };
    let w::QueueServerFrame::Ok {
        op,
        id,
        lease_deadline,
        ..
    } = ws_call(&mut ws, &extend).await
    else {
        panic!("extend refused");
    };
    assert_eq!((op.as_str(), id), ("extend", Some(json!("e"))));
    assert!(lease_deadline.is_some_and(|t| t > d.lease_deadline));
    let nack = w::QueueClientFrame {
        id: None,
        op: w::QueueOp::Nack(w::NackRequest {
            message_id: d.message_id.clone(),
            requeue: Some(false),
            delay: None,
            error: Some("no".into()),
            lease: Some(d.lease),
            snooze: None,
        }),
    };
    let nacked = ws_call(&mut ws, &nack).await;
    let expected = w::QueueServerFrame::Ok {
        op: "nack".into(),
        id: None,
        action: Some(w::NackAction::DeadLettered),
        lease_deadline: None,
        credit: None,
        cancelled: None,
    };
    assert_eq!(nacked, expected);
    let late_ack = w::QueueClientFrame {
        id: Some(json!(3)),
        op: w::QueueOp::Ack(w::AckRequest {
            message_id: d.message_id.clone(),
            lease: Some(d.lease),
            result: None,
        }),
    };
    let refused = ws_call(&mut ws, &late_ack).await;
    let w::QueueServerFrame::Error { op, id, code, .. } = refused else {
        panic!("a settled delivery acked: {refused:?}");
    };
    assert_eq!((op.as_deref(), id), (Some("ack"), Some(json!(3))));
    assert!(code.is_some_and(|c| c == "lease_mismatch" || c == "message_not_found"));
    let credit = w::QueueClientFrame {
        id: Some(json!(4)),
        op: w::QueueOp::Credit(w::CreditRequest { credit: 2 }),
    };
    let w::QueueServerFrame::Ok { op, credit, .. } = ws_call(&mut ws, &credit).await else {
        panic!("credit refused");
    };
    assert_eq!((op.as_str(), credit.is_some()), ("credit", true));
}
