//! HTTP helpers shared by the `server_*` end-to-end tests.

#![allow(dead_code, unreachable_pub, unused_imports)] // Each test crate uses a different subset.

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
        let resp = self
            .auth(rb)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request: {e:?}"));
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

/// A minimal server-sent-events reader over a streaming response.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    /// Opens `url` (GET) as an event stream.
    pub async fn open(url: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("open SSE");
        assert_eq!(resp.status().as_u16(), 200, "SSE status");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next `(event, data)`, skipping comments (keep-alives); `None` at end of stream.
    /// Gives up after 20 s.
    pub async fn next(&mut self) -> Option<(String, String)> {
        tokio::time::timeout(Duration::from_secs(20), self.next_inner())
            .await
            .expect("SSE event within 20 s")
    }

    async fn next_inner(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some((event, data.join("\n")));
            }
            let chunk = self.resp.chunk().await.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event named `name`, as JSON.
    pub async fn next_named(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.next().await.expect("stream ended");
            if event == name {
                return serde_json::from_str(&data).expect("JSON data");
            }
        }
    }
}

/// A WebSocket client connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a WebSocket.
pub async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
        .0
}

/// The next text frame as JSON (20 s at most); `None` when the socket closed.
pub async fn ws_next(ws: &mut Ws) -> Option<Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("frame within 20 s");
        match frame {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Sends a JSON text frame.
pub async fn ws_send(ws: &mut Ws, v: &Value) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(v.to_string()))
        .await
        .expect("send frame");
}
