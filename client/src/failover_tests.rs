//! Failover against fake nodes: small HTTP servers on loopback that answer each request as a
//! test says (or hang up without answering), recording what they got.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::PublishOptions;

/// What a fake node answers to one request (its raw text): `None` hangs up without a word.
type Answer = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A fake node: its URL and the requests it got (raw text).
struct Fake {
    url: String,
    got: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    async fn start(answer: Answer) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = Arc::clone(&got);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let Some(request) = read_request(&mut s).await else {
                    continue;
                };
                seen.lock().unwrap().push(request.clone());
                if let Some(reply) = answer(&request) {
                    let _ = s.write_all(reply.as_bytes()).await;
                }
                let _ = s.shutdown().await;
            }
        });
        Self { url, got }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// The JSON body of the `i`th request.
    fn body(&self, i: usize) -> Value {
        let got = self.got.lock().unwrap();
        let (_, body) = got[i].split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }
}

/// Reads one request: the head, then as many body bytes as `content-length` says.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Some(text);
            }
        }
    }
}

fn reply(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn always(status: &'static str, body: String) -> Answer {
    Arc::new(move |_| Some(reply(status, &body)))
}

/// A URL nothing listens on (connections are refused).
fn dead() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn not_leader(leader: &str) -> String {
    json!({"error": "not the leader", "code": "not_leader", "leader": {"id": 2, "http": leader}})
        .to_string()
}

const PUBLISHED: &str = r#"{"message_id":"m1","position":1}"#;

#[test]
fn only_safe_requests_are_resent() {
    assert!(retry_safe(&Method::GET, &["kv", "get", "k"]));
    assert!(retry_safe(&Method::POST, &["queue", "q", "ack"]));
    assert!(retry_safe(&Method::POST, &["queue", "q", "consume"]));
    assert!(!retry_safe(&Method::POST, &["queue", "q", "publish"]));
    assert!(!retry_safe(&Method::POST, &["queue", "q", "nack"]));
    assert!(!retry_safe(&Method::POST, &["kv", "incr"]));
    assert!(retry_safe(&Method::POST, &["queue", "q", "pause"]));
    assert!(retry_safe(&Method::POST, &["queue", "q", "resume"]));
    assert!(retry_safe(&Method::POST, &["queue", "q", "rate_limit"]));
    assert!(retry_safe(&Method::GET, &["queue", "q", "groups"]));
    assert!(!retry_safe(&Method::POST, &["pubsub", "t", "publish"]));
    assert!(!retry_safe(&Method::POST, &["queue", "q", "purge"]));
    assert!(!retry_safe(
        &Method::POST,
        &["queue", "q", "schedules", "s", "run"]
    ));
    assert!(!retry_safe(&Method::POST, &["flows"]));
    assert!(retry_safe(&Method::GET, &["flows", "f"]));
    let k = random_key();
    assert_eq!(k.len(), 36);
    assert_eq!(&k[14..15], "4");
    assert_ne!(k, random_key());
}

#[test]
fn a_named_leader_maps_to_the_url_given_for_it() {
    let c = SynapClient::new_many(["http://a:1/p/", "http://b:2"]).unwrap();
    assert_eq!(c.leader_base("http://b:2").unwrap().as_str(), "http://b:2/");
    // A leader not among the URLs keeps the first URL's path.
    assert_eq!(
        c.leader_base("http://c:3").unwrap().as_str(),
        "http://c:3/p/"
    );
    assert!(c.leader_base("not a url").is_none());
}

#[tokio::test]
async fn a_not_leader_answer_sends_the_call_to_the_leader() {
    let leader = Fake::start(always("200 OK", r#"{"success":true}"#.into())).await;
    let follower = Fake::start(always("503 Service Unavailable", not_leader(&leader.url))).await;
    // A dead node first (refused), then the follower, which names the leader.
    let c = SynapClient::new_many([dead(), follower.url.clone(), leader.url.clone()]).unwrap();
    c.queue_ack("q", "m").await.unwrap();
    assert_eq!((follower.count(), leader.count()), (1, 1));
    assert_eq!(c.current_url().as_str(), format!("{}/", leader.url));
    // The next call goes straight to the leader.
    c.queue_ack("q", "m").await.unwrap();
    assert_eq!((follower.count(), leader.count()), (1, 2));
}

#[tokio::test]
async fn an_unsafe_call_is_not_resent_after_an_unknown_outcome() {
    let leader = Fake::start(always("200 OK", r#"{"value":1}"#.into())).await;
    let follower = Fake::start(always("503 Service Unavailable", not_leader(&leader.url))).await;
    let c = SynapClient::new_many([&follower.url, &leader.url]).unwrap();
    let e = c.kv_incr("k", 1).await.unwrap_err();
    assert_eq!(e.code(), Some("not_leader"));
    assert_eq!(leader.count(), 0);
    // Refused connections never carried it, so even an unsafe call moves on.
    let c = SynapClient::new_many([dead(), leader.url.clone()]).unwrap();
    assert_eq!(c.kv_incr("k", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn a_single_url_client_sends_once() {
    let follower = Fake::start(always("503 Service Unavailable", not_leader("http://x:1"))).await;
    let c = SynapClient::new(&follower.url).unwrap();
    let e = c.health().await.unwrap_err();
    assert!(matches!(e, SynapError::Server { status: 503, .. }), "{e}");
    assert_eq!(follower.count(), 1);
}

#[tokio::test]
async fn the_client_gives_up_at_its_deadline() {
    let c = SynapClient::new_many([dead(), dead()])
        .unwrap()
        .with_failover_deadline(Duration::from_millis(300));
    let e = c.health().await.unwrap_err();
    let SynapError::Failover { attempts, last } = &e else {
        panic!("{e}");
    };
    assert!(*attempts >= 2, "{attempts}");
    assert!(matches!(**last, SynapError::Transport(_)), "{last}");
    assert!(e.is_failover());
}

#[tokio::test]
async fn an_unanswered_publish_is_resent_with_one_generated_key() {
    // The first node takes the request and hangs up without an answer.
    let hangs_up = Fake::start(Arc::new(|_| None)).await;
    let leader = Fake::start(always("200 OK", PUBLISHED.into())).await;
    let c = SynapClient::new_many([&hangs_up.url, &leader.url]).unwrap();
    let r = c
        .queue_publish("q", &json!({"n": 1}), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(r.message_id, "m1");
    let (first, second) = (hangs_up.body(0), leader.body(0));
    let key = first["idempotency_key"].as_str().unwrap();
    assert_eq!(key.len(), 36);
    assert_eq!(second["idempotency_key"], key);
    // Each publish gets its own key; a key the caller gave is kept.
    c.queue_publish("q", &1, PublishOptions::default())
        .await
        .unwrap();
    assert_ne!(leader.body(1)["idempotency_key"], key);
    let opts = PublishOptions {
        idempotency_key: Some("mine".into()),
        ..PublishOptions::default()
    };
    c.queue_publish("q", &1, opts).await.unwrap();
    assert_eq!(leader.body(2)["idempotency_key"], "mine");
}

#[tokio::test]
async fn a_keyless_publish_is_not_resent_when_keys_are_off() {
    let hangs_up = Fake::start(Arc::new(|_| None)).await;
    let leader = Fake::start(always("200 OK", PUBLISHED.into())).await;
    let c = SynapClient::new_many([&hangs_up.url, &leader.url])
        .unwrap()
        .with_generated_keys(false);
    let e = c
        .queue_publish("q", &1, PublishOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, SynapError::Transport(_)), "{e}");
    assert_eq!(leader.count(), 0);
    assert!(hangs_up.body(0).get("idempotency_key").is_none());
    // A single-URL client never adds a key.
    let c = SynapClient::new(&leader.url).unwrap();
    c.queue_publish("q", &1, PublishOptions::default())
        .await
        .unwrap();
    assert!(leader.body(0).get("idempotency_key").is_none());
}

#[tokio::test]
async fn a_resent_ack_that_finds_the_message_gone_succeeded() {
    let hangs_up = Fake::start(Arc::new(|_| None)).await;
    let gone = r#"{"error":"message not found: m","code":"message_not_found"}"#;
    let leader = Fake::start(always("404 Not Found", gone.into())).await;
    let c = SynapClient::new_many([&hangs_up.url, &leader.url]).unwrap();
    c.queue_ack_with_lease("q", "m", Some(3)).await.unwrap();
    // Without a resend the same answer is an error.
    let c = SynapClient::new_many([&leader.url]).unwrap();
    let e = c.queue_ack_with_lease("q", "m", Some(3)).await.unwrap_err();
    assert!(e.is_not_found() && !e.is_resent(), "{e}");
}

#[tokio::test]
async fn a_resent_nack_refused_for_its_lease_says_so() {
    let hangs_up = Fake::start(Arc::new(|_| None)).await;
    let mismatch = r#"{"error":"lease mismatch","code":"lease_mismatch"}"#;
    let leader = Fake::start(always("409 Conflict", mismatch.into())).await;
    let c = SynapClient::new_many([&hangs_up.url, &leader.url]).unwrap();
    let opts = crate::NackOptions {
        lease: Some(3),
        ..crate::NackOptions::default()
    };
    let e = c.queue_nack_with("q", "m", &opts).await.unwrap_err();
    assert!(e.is_resent() && e.is_lease_mismatch(), "{e}");
    // A nack without a lease is not resent: it could reject another worker's delivery.
    let c = SynapClient::new_many([&hangs_up.url, &leader.url]).unwrap();
    let e = c
        .queue_nack_with("q", "m", &crate::NackOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, SynapError::Transport(_)), "{e}");
}

#[tokio::test]
async fn an_unanswered_flow_add_is_not_resent() {
    let hangs_up = Fake::start(Arc::new(|_| None)).await;
    let created = json!({"flow_id": "f1", "message_id": "m1", "queue": "q", "children": []});
    let leader = Fake::start(always("200 OK", created.to_string())).await;
    let flow = crate::FlowRequest {
        queue: "q".into(),
        message: json!({"n": 1}),
        ..crate::FlowRequest::default()
    };
    // A resend could add a second flow: the unknown outcome is the caller's.
    let c = SynapClient::new_many([&hangs_up.url, &leader.url]).unwrap();
    let e = c.flow_add(&flow).await.unwrap_err();
    assert!(matches!(e, SynapError::Transport(_)), "{e}");
    assert_eq!((hangs_up.count(), leader.count()), (1, 0));
    // A refused connection never carried it, so it moves on.
    let c = SynapClient::new_many([dead(), leader.url.clone()]).unwrap();
    assert_eq!(c.flow_add(&flow).await.unwrap().flow_id, "f1");
    assert_eq!(leader.body(0)["queue"], "q");
}
