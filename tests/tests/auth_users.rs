//! Goal: users with passwords work the same on every transport as API keys do:
//! `Authorization: Basic` on REST, the command envelope, the WebSocket and SSE routes, and
//! SynapRPC's two-argument `AUTH`, with hashes made by `synap-server hash-password`; the
//! official Rust SDK's `with_basic_auth` works over http:// and synap://; wrong passwords,
//! unknown users and malformed headers are refused.
//! Method: one in-memory server with an API key and two users, driven by reqwest,
//! tokio-tungstenite and the SDK.

use std::io::Write;
use std::process::{Command, Stdio};

use synap_sdk::{SynapClient as Sdk, SynapConfig};
use synap_tests::server_harness::{Options, Server, server_binary};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `synap-server hash-password` with `input` on standard input: (exit code, stdout).
fn hash_password(input: &str) -> (i32, String) {
    let mut child = Command::new(server_binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (out.status.code().unwrap_or(-1), text)
}

fn server() -> Server {
    let (code, alice) = hash_password("s3cret\n");
    assert_eq!(code, 0);
    let (_, bob) = hash_password("hunter2\n");
    let yaml = format!(
        "server:\n  api_keys: [key-1]\n  users:\n    - name: alice\n      password_hash: '{alice}'\n    - name: bob\n      password_hash: '{bob}'\n"
    );
    Server::start_with(Options {
        config_yaml: Some(&yaml),
        ..Options::default()
    })
}

/// `Basic base64(user:pass)`.
fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    let raw = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn status(http: &reqwest::Client, url: &str, auth: Option<&str>) -> u16 {
    let mut rb = http.get(url);
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    rb.send().await.expect("request").status().as_u16()
}

#[test]
fn hash_password_prints_a_fresh_argon2id_hash() {
    let (code, one) = hash_password("pw\n");
    let (_, two) = hash_password("pw\n");
    assert_eq!(code, 0);
    assert!(one.starts_with("$argon2id$v=19$"), "{one}");
    assert_ne!(one, two, "a random salt each time");
    assert_eq!(hash_password("").0, 2, "an empty password is refused");
}

#[tokio::test]
async fn basic_auth_on_rest_and_the_envelope() {
    let srv = server();
    let http = reqwest::Client::new();
    let list = srv.url("/queue/list");
    assert_eq!(
        status(&http, &list, Some(&basic("alice", "s3cret"))).await,
        200
    );
    assert_eq!(
        status(&http, &list, Some(&basic("bob", "hunter2"))).await,
        200
    );
    // Twice: the second check is answered from the remembered digest, still correctly.
    assert_eq!(
        status(&http, &list, Some(&basic("alice", "s3cret"))).await,
        200
    );
    for refused in [
        basic("alice", "hunter2"),
        basic("carol", "s3cret"),
        basic("alice", ""),
        "Basic not-base64!".to_owned(),
        "Basic YWxpY2U=".to_owned(), // "alice", no colon
        "Bearer s3cret".to_owned(),
    ] {
        assert_eq!(status(&http, &list, Some(&refused)).await, 401, "{refused}");
    }
    assert_eq!(status(&http, &list, None).await, 401);
    assert_eq!(status(&http, &list, Some("Bearer key-1")).await, 200);
    // What load balancers probe is public: a single server is its own leader.
    assert_eq!(status(&http, &srv.url("/health"), None).await, 200);
    assert_eq!(status(&http, &srv.url("/health/leader"), None).await, 200);
    assert_eq!(status(&http, &srv.url("/cluster"), None).await, 401);
    let body = serde_json::json!({"command": "kv.set", "request_id": "r", "payload": {"key": "k", "value": 1}});
    let resp = http
        .post(srv.url("/api/v1/command"))
        .header("authorization", basic("alice", "s3cret"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");
}

#[tokio::test]
async fn basic_auth_on_websocket_and_sse() {
    let srv = server();
    let ws = |auth: String| {
        let mut req = srv
            .ws_url("/pubsub/ws?topics=a")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
        req
    };
    let (_socket, resp) = tokio_tungstenite::connect_async(ws(basic("alice", "s3cret")))
        .await
        .expect("upgraded with Basic auth");
    assert_eq!(resp.status().as_u16(), 101);
    match tokio_tungstenite::connect_async(ws(basic("alice", "nope"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401);
        }
        other => panic!("expected a 401 handshake, got {:?}", other.map(|_| ())),
    }
    let http = reqwest::Client::new();
    let sse = srv.url("/pubsub/sse?topics=a");
    let resp = http
        .get(&sse)
        .header("authorization", basic("bob", "hunter2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    drop(resp);
    assert_eq!(
        status(&http, &sse, Some(&basic("bob", "s3cret"))).await,
        401
    );
}

#[tokio::test]
async fn the_rust_sdk_signs_in_with_a_password_on_both_transports() {
    let srv = server();
    for url in [srv.url(""), srv.rpc_url()] {
        let sdk = Sdk::new(SynapConfig::new(url.clone()).with_basic_auth("alice", "s3cret"))
            .expect("sdk");
        sdk.kv().set("who", "alice", None).await.expect("set");
        let got: Option<String> = sdk.kv().get("who").await.expect("get");
        assert_eq!(got.as_deref(), Some("alice"), "{url}");
        let wrong =
            Sdk::new(SynapConfig::new(url.clone()).with_basic_auth("alice", "bad")).expect("sdk");
        assert!(
            wrong.kv().set("who", "mallory", None).await.is_err(),
            "{url}"
        );
        let token = Sdk::new(SynapConfig::new(url.clone()).with_auth_token("key-1")).unwrap();
        assert!(token.kv().exists("who").await.expect("exists"), "{url}");
    }
}
