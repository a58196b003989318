//! Goal: `synap-client`'s KV calls honour TTLs and its pub/sub subscription stream delivers
//! exactly the topics its `*`/`#` patterns match (DESIGN.md §4).
//! Method: a fresh in-memory server per test; TTLs of a few hundred milliseconds are polled
//! with a generous bound; a pattern's non-matches are proven by publishing a matching marker
//! last and checking it is the very next message (delivery is in publish order).

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use synap_client::{Headers, PubSubMessage, Subscription, SynapClient};
use synap_tests::server_harness::Server;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Progress {
    percent: u8,
    worker: String,
}

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

/// The next message, or a panic naming the subscription if none comes within 10 s.
async fn next(sub: &mut Subscription, who: &str) -> PubSubMessage {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap_or_else(|_| panic!("{who}: no message within 10 s"))
        .unwrap_or_else(|| panic!("{who}: stream ended"))
        .unwrap_or_else(|e| panic!("{who}: {e}"))
}

#[tokio::test]
async fn kv_values_round_trip_and_expire() {
    let server = Server::start();
    let c = client(&server).await;
    let p = Progress {
        percent: 50,
        worker: "w1".into(),
    };
    c.kv_set("video:1:progress", &p, None).await.unwrap();
    assert_eq!(
        c.kv_get::<Progress>("video:1:progress").await.unwrap(),
        Some(p)
    );
    c.kv_set(
        "video:1:status",
        &"processing",
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert_eq!(
        c.kv_get::<String>("video:1:status")
            .await
            .unwrap()
            .as_deref(),
        Some("processing")
    );
    assert!(c.kv_exists("video:1:status").await.unwrap());
    let mut keys = c.kv_keys("video:1:").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["video:1:progress", "video:1:status"]);

    // Expired keys are never returned; poll rather than trust a single sleep.
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.kv_get::<String>("video:1:status")
            .await
            .unwrap()
            .is_none()
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "a key with a 300 ms TTL must expire within 10 s");
    assert!(!c.kv_exists("video:1:status").await.unwrap());
    assert_eq!(c.kv_keys("video:1:").await.unwrap(), ["video:1:progress"]);
    assert!(
        c.kv_get::<u8>("video:1:progress").await.is_err(),
        "wrong type must not decode"
    );

    assert_eq!(c.kv_incr("counter", 1).await.unwrap(), 1);
    assert_eq!(c.kv_incr("counter", 41).await.unwrap(), 42);
    assert_eq!(c.kv_incr("counter", -2).await.unwrap(), 40);
    let not_int = c.kv_incr("video:1:progress", 1).await.unwrap_err();
    assert_eq!(not_int.status(), Some(400), "{not_int}");

    // Keys are path segments: `/`, `?` and `#` must not change the route.
    c.kv_set("odd/key?x#y", &1, None).await.unwrap();
    assert_eq!(c.kv_get::<i32>("odd/key?x#y").await.unwrap(), Some(1));
    assert!(c.kv_del("odd/key?x#y").await.unwrap());
    assert!(!c.kv_del("odd/key?x#y").await.unwrap());
    assert_eq!(c.kv_get::<i32>("odd/key?x#y").await.unwrap(), None);
}

#[tokio::test]
async fn subscriptions_follow_star_and_hash_patterns() {
    let server = Server::start();
    let c = client(&server).await;
    let mut users = c.pubsub_subscribe(&["notifications.user.*"]).await.unwrap();
    let mut all = c.pubsub_subscribe(&["notifications.#"]).await.unwrap();

    let note = serde_json::json!({"event": "transcoded", "videoId": "v1"});
    assert_eq!(
        c.pubsub_publish("notifications.user.42", &note)
            .await
            .unwrap(),
        2
    );
    // `#` matches zero segments too; `*` needs exactly one.
    assert_eq!(c.pubsub_publish("notifications", &"bare").await.unwrap(), 1);
    assert_eq!(
        c.pubsub_publish("notifications.user.42.x", &"deep")
            .await
            .unwrap(),
        1
    );
    assert_eq!(c.pubsub_publish("elsewhere", &"none").await.unwrap(), 0);
    let mut headers = Headers::new();
    headers.insert("trace".into(), "t-1".into());
    let marker = c
        .pubsub_publish_with("notifications.user.end", &"marker", &headers)
        .await
        .unwrap();
    assert_eq!(marker.subscribers_matched, 2);

    let m = next(&mut users, "user.*").await;
    assert_eq!(
        (m.topic.as_str(), &m.message),
        ("notifications.user.42", &note)
    );
    let v: serde_json::Value = m.decode().unwrap();
    assert_eq!(v["videoId"], "v1");
    let m = next(&mut users, "user.*").await;
    assert_eq!(
        m.topic, "notifications.user.end",
        "user.* got a non-matching topic"
    );
    assert_eq!(
        (
            m.message_id.as_str(),
            m.headers.get("trace").map(String::as_str)
        ),
        (marker.message_id.as_str(), Some("t-1"))
    );

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut all, "notifications.#").await.topic);
    }
    assert_eq!(
        seen,
        [
            "notifications.user.42",
            "notifications",
            "notifications.user.42.x",
            "notifications.user.end"
        ]
    );
}

#[tokio::test]
async fn several_patterns_per_subscription_and_drop_unsubscribes() {
    let server = Server::start();
    let c = client(&server).await;
    let mut other = c.pubsub_subscribe(&["billing.*", "audit.#"]).await.unwrap();
    assert_eq!(
        c.pubsub_publish("billing.invoice.paid", &0).await.unwrap(),
        0
    );
    assert_eq!(c.pubsub_publish("audit.login.ok", &1).await.unwrap(), 1);
    assert_eq!(c.pubsub_publish("billing.invoice", &2).await.unwrap(), 1);
    assert_eq!(
        next(&mut other, "billing/audit").await.topic,
        "audit.login.ok"
    );
    assert_eq!(
        next(&mut other, "billing/audit").await.topic,
        "billing.invoice"
    );

    // A dropped subscription is forgotten by the server.
    drop(other);
    let mut matched = 1;
    for _ in 0..100 {
        matched = c.pubsub_publish("audit.x", &1).await.unwrap();
        if matched == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(matched, 0, "the closed subscriber still matched");
}

#[tokio::test]
async fn bad_patterns_and_topics_are_refused() {
    let server = Server::start();
    let c = client(&server).await;
    let err = c.pubsub_subscribe(&["a.#.b"]).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    let err = c.pubsub_publish("a.*", &1).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
}
