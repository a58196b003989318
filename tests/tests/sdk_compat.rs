//! Goal: Synap's official Rust SDK (crates.io `synap-sdk` 1.4.0) works unchanged against our
//! server over both of its transports: `http://` (queues, KV with TTL and pub/sub through
//! `POST /api/v1/command`, and its pub/sub WebSocket) and `synap://` (SynapRPC, its default:
//! the same calls as MessagePack frames, and pub/sub pushed on a connection of its own) — and
//! messages interoperate with `synap-client`.
//! Method: a fresh in-memory server per test; each scenario runs once per transport, with the
//! SDK configured exactly as its docs show (`SynapConfig::new("http://…")` or
//! `SynapConfig::new("synap://…")`); results are checked through the SDK and, where the SDK
//! cannot see it, through `synap-client`. Semantics are ours (DESIGN.md §3): a nacked message
//! is retried, not dropped.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use synap_sdk::{SynapClient as Sdk, SynapConfig};
use synap_tests::server_harness::Server;

/// The SDK's transport.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Http,
    Rpc,
}

fn sdk(server: &Server, t: Transport) -> Sdk {
    let url = match t {
        Transport::Http => server.url(""),
        Transport::Rpc => server.rpc_url(),
    };
    Sdk::new(SynapConfig::new(url)).expect("sdk client")
}

/// One `#[tokio::test]` per transport for the scenario `body`.
macro_rules! both_transports {
    ($body:ident, $http:ident, $rpc:ident) => {
        #[tokio::test]
        async fn $http() {
            $body(Transport::Http).await;
        }
        #[tokio::test]
        async fn $rpc() {
            $body(Transport::Rpc).await;
        }
    };
}

both_transports!(queue_scenario, sdk_queue_over_http, sdk_queue_over_rpc);
both_transports!(mixed_scenario, sdk_interop_over_http, sdk_interop_over_rpc);
both_transports!(kv_scenario, sdk_kv_over_http, sdk_kv_over_rpc);
both_transports!(pubsub_scenario, sdk_pubsub_over_http, sdk_pubsub_over_rpc);

async fn ours(server: &Server) -> synap_client::SynapClient {
    synap_client::SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    video_id: String,
    attempt: u32,
}

/// Create, publish, consume, ack, nack, stats, list, delete.
async fn queue_scenario(t: Transport) {
    let server = Server::start();
    let q = sdk(&server, t).queue();
    q.create_queue("sdk-q", Some(1000), Some(30)).await.unwrap();
    let low = q.publish("sdk-q", b"low", Some(1), None).await.unwrap();
    let high = q
        .publish("sdk-q", br#"{"n":1}"#, Some(9), Some(2))
        .await
        .unwrap();
    assert!(!low.is_empty() && !high.is_empty() && low != high);
    assert!(q.list().await.unwrap().contains(&"sdk-q".to_owned()));

    let m = q
        .consume("sdk-q", "sdk-worker")
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(
        (m.id.as_str(), m.priority, m.retry_count),
        (high.as_str(), 9, 0)
    );
    assert_eq!(m.payload, br#"{"n":1}"#);
    assert_eq!(m.max_retries, 2);
    q.nack("sdk-q", &m.id).await.unwrap();
    // Our semantics: a nacked message is retried and keeps its place ahead of lower priorities.
    let again = q
        .consume("sdk-q", "sdk-worker")
        .await
        .unwrap()
        .expect("retried");
    assert_eq!((again.id.as_str(), again.retry_count), (high.as_str(), 1));
    q.ack("sdk-q", &again.id).await.unwrap();
    let m = q
        .consume("sdk-q", "sdk-worker")
        .await
        .unwrap()
        .expect("low");
    assert_eq!(
        (m.id.as_str(), m.payload.as_slice()),
        (low.as_str(), &b"low"[..])
    );
    q.ack("sdk-q", &m.id).await.unwrap();
    assert!(q.consume("sdk-q", "sdk-worker").await.unwrap().is_none());
    assert!(
        q.ack("sdk-q", &m.id).await.is_err(),
        "a second ack must fail"
    );

    let stats = q.stats("sdk-q").await.unwrap();
    assert_eq!((stats.depth, stats.published, stats.consumed), (0, 2, 3));
    assert_eq!((stats.acked, stats.nacked, stats.dead_lettered), (2, 1, 0));
    q.delete_queue("sdk-q").await.unwrap();
    assert!(!q.list().await.unwrap().contains(&"sdk-q".to_owned()));
}

/// SDK and synap-client messages interoperate.
async fn mixed_scenario(t: Transport) {
    let server = Server::start();
    let q = sdk(&server, t).queue();
    let c = ours(&server).await;
    q.create_queue("mixed", None, None).await.unwrap();
    // SDK bytes holding JSON arrive typed in synap-client.
    let job = Job {
        video_id: "v9".into(),
        attempt: 1,
    };
    let bytes = serde_json::to_vec(&job).unwrap();
    let id = q.publish("mixed", &bytes, Some(7), None).await.unwrap();
    let got = c
        .queue_consume::<Job>("mixed", None)
        .await
        .unwrap()
        .expect("published by the SDK");
    assert_eq!(
        (got.id.as_str(), &got.body, got.priority),
        (id.as_str(), &job, 7)
    );
    c.queue_ack("mixed", &got.id).await.unwrap();

    // synap-client JSON arrives in the SDK as the JSON text's bytes.
    let r = c
        .queue_publish("mixed", &job, synap_client::PublishOptions::default())
        .await
        .unwrap();
    let m = q
        .consume("mixed", "sdk")
        .await
        .unwrap()
        .expect("published by synap-client");
    assert_eq!(m.id, r.message_id);
    assert_eq!(serde_json::from_slice::<Job>(&m.payload).unwrap(), job);
    q.ack("mixed", &m.id).await.unwrap();
    assert_eq!(c.queue_stats("mixed").await.unwrap().acked_total, 2);
}

/// KV set, get, exists, incr, delete, with a TTL.
async fn kv_scenario(t: Transport) {
    let server = Server::start();
    let kv = sdk(&server, t).kv();
    kv.set("user:1", "Ada", None).await.unwrap();
    kv.set("session:abc", "token", Some(1)).await.unwrap();
    let job = Job {
        video_id: "v1".into(),
        attempt: 3,
    };
    kv.set("job:1", &job, None).await.unwrap();
    assert_eq!(
        kv.get::<_, String>("user:1").await.unwrap().as_deref(),
        Some("Ada")
    );
    assert_eq!(kv.get::<_, Job>("job:1").await.unwrap(), Some(job));
    assert!(kv.exists("session:abc").await.unwrap());
    assert_eq!(kv.incr("hits").await.unwrap(), 1);

    // Values written by the SDK are plain JSON to synap-client too.
    let c = ours(&server).await;
    assert_eq!(
        c.kv_get::<String>("user:1").await.unwrap().as_deref(),
        Some("Ada")
    );

    let mut expired = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if kv.get::<_, String>("session:abc").await.unwrap().is_none() {
            expired = true;
            break;
        }
    }
    assert!(expired, "a 1 s TTL must expire within 10 s");
    assert!(!kv.exists("session:abc").await.unwrap());
    assert!(kv.delete("user:1").await.unwrap());
    assert!(!kv.delete("user:1").await.unwrap());
    assert_eq!(kv.get::<_, String>("user:1").await.unwrap(), None);
}

/// Publish to a synap-client subscriber; the SDK's own subscription (`observe`).
async fn pubsub_scenario(t: Transport) {
    let server = Server::start();
    let client = sdk(&server, t);
    let c = ours(&server).await;
    let mut sub = c.pubsub_subscribe(&["notifications.user.*"]).await.unwrap();
    let note = serde_json::json!({"event": "ready", "videoId": "v1"});
    let matched = client
        .pubsub()
        .publish("notifications.user.7", note.clone(), None, None)
        .await
        .unwrap();
    assert_eq!(matched, 1);
    let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("delivered")
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.topic.as_str(), got.message),
        ("notifications.user.7", note)
    );

    // The SDK's own subscription (a WebSocket over http://, whose URL loses the `#` of the
    // pattern; a SynapRPC connection of its own over synap://).
    let (mut stream, handle) = client.pubsub().observe("sdk-sub", vec!["events.#".into()]);
    let mut matched = 0;
    for _ in 0..100 {
        matched = c.pubsub_publish("events.video.done", &42).await.unwrap();
        if matched > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(matched, 1, "the SDK's subscription never registered");
    let m = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("SDK received")
        .expect("stream open");
    assert_eq!(
        (m.topic.as_str(), m.data),
        ("events.video.done", serde_json::json!(42))
    );
    handle.unsubscribe();
}
