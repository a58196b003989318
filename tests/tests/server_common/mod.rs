//! HTTP helpers shared by the `server_*` end-to-end tests.

#![allow(dead_code, unreachable_pub)] // Each test crate uses a different subset.

use std::time::Duration;

use serde_json::{Value, json};
pub use synap_tests::server_harness::{Options, Server};

/// A started server with an HTTP client.
pub struct Api {
    pub srv: Server,
    pub http: reqwest::Client,
    pub key: Option<String>,
}

impl Api {
    /// An in-memory server with default settings.
    pub fn start() -> Self {
        Self::with(Server::start())
    }

    /// Wraps a started server.
    pub fn with(srv: Server) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            srv,
            http,
            key: None,
        }
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = self.auth(rb).send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.srv.url(path)).json(&body))
            .await
    }

    /// POST raw bytes.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let rb = self
            .http
            .post(self.srv.url(path))
            .header("content-type", "application/json")
            .body(body);
        self.send(rb).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.srv.url(path))).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.srv.url(path))).await
    }

    /// POST expecting 200.
    pub async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post(path, body).await;
        assert_eq!(status, 200, "POST {path}: {v}");
        v
    }

    /// GET expecting 200.
    pub async fn ok_get(&self, path: &str) -> Value {
        let (status, v) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Publishes a JSON message; returns its id.
    pub async fn publish(&self, queue: &str, body: Value) -> String {
        let v = self.ok(&format!("/queue/{queue}/publish"), body).await;
        v["message_id"].as_str().expect("message_id").to_owned()
    }

    /// Consumes with the given options; returns the messages.
    pub async fn consume(&self, queue: &str, opts: Value) -> Vec<Value> {
        let v = self.ok(&format!("/queue/{queue}/consume"), opts).await;
        v["messages"].as_array().expect("messages").clone()
    }

    /// Queue stats.
    pub async fn stats(&self, queue: &str) -> Value {
        self.ok_get(&format!("/queue/{queue}/stats")).await
    }

    /// Sends an envelope command; returns the whole response (which must be HTTP 200).
    pub async fn cmd(&self, command: &str, payload: Value) -> Value {
        let body = json!({"command": command, "request_id": "req-1", "payload": payload});
        let (status, v) = self.post("/api/v1/command", body).await;
        assert_eq!(status, 200, "{command}: {v}");
        assert_eq!(v["request_id"], "req-1");
        assert!(
            v.get("payload").is_some() && v.get("error").is_some(),
            "{v}"
        );
        v
    }

    /// Polls `check` on the queue's stats until it holds (10 s at most).
    pub async fn wait_stats(
        &self,
        queue: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..200 {
            let s = self.stats(queue).await;
            if check(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what} on {queue}: {}",
            self.stats(queue).await
        );
    }
}
