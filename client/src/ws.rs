//! WebSocket plumbing shared by pub/sub subscriptions and the streaming consumer: URL building
//! (`http` → `ws`), the auth header, moving to the leader when a node refuses the connection,
//! and reading JSON text frames.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::failover::{Failure, MOVE_ON, Pacer};

/// An open WebSocket to the server.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long opening a WebSocket (TCP connect and upgrade) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why opening a WebSocket on one node failed.
enum Refused {
    /// Worth trying on another node.
    Again(Failure),
    /// The same on every node (a bad option, a refused key).
    Fatal(SynapError),
}

/// Whether an error while greeting a new WebSocket is the node's and not the request's: the
/// connection failed or ended, or the node is not the leader.
fn greeting_moves_on(e: &SynapError) -> bool {
    match e {
        SynapError::Server { code, .. } => MOVE_ON.contains(&code.as_str()),
        SynapError::Transport(_) | SynapError::WebSocket(_) | SynapError::Closed(_) => true,
        _ => false,
    }
}

impl SynapClient {
    /// Opens a WebSocket to `segments` with `query` pairs and reads its greeting with `greet`.
    /// The query is form-encoded, so a `#` in a topic pattern travels as `%23` instead of
    /// starting a URL fragment. On a client with failover, a node that cannot take the
    /// connection (unreachable, or refusing it with `not_leader` / `no_leader`, before the
    /// upgrade or in the greeting) sends it to the leader, else to the next node, paced as
    /// calls are (failover.rs).
    pub(crate) async fn open_ws<T>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        greet: impl AsyncFn(Socket) -> Result<T>,
    ) -> Result<T> {
        let mut pacer = Pacer::new();
        loop {
            let base = self.nodes.current();
            let failure = match self.open_ws_at(&base, segments, query).await {
                Ok(socket) => match greet(socket).await {
                    Ok(t) => return Ok(t),
                    Err(e) if self.fails_over() && greeting_moves_on(&e) => {
                        // A refusal in a frame does not name the leader: ask the node.
                        let leader = self.leader_of(&base).await;
                        Failure {
                            leader,
                            ..Failure::plain(e, false)
                        }
                    }
                    Err(e) => return Err(e),
                },
                Err(Refused::Again(f)) => f,
                Err(Refused::Fatal(e)) => return Err(e),
            };
            pacer.again(self, &base, failure).await?;
        }
    }

    /// One attempt to open the WebSocket on node `base`.
    async fn open_ws_at(
        &self,
        base: &Url,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Socket, Refused> {
        let mut url: Url = self.rebase(&self.url(segments), base);
        url.set_scheme("ws").map_err(|()| {
            Refused::Fatal(SynapError::InvalidUrl(format!(
                "{url}: cannot switch to ws://"
            )))
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Refused::Fatal(e.into()))?;
        if let Some(key) = self.api_key() {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|e| Refused::Fatal(SynapError::InvalidUrl(format!("api key: {e}"))))?;
            request.headers_mut().insert("authorization", value);
        }
        let opened =
            tokio::time::timeout(OPEN_TIMEOUT, tokio_tungstenite::connect_async(request)).await;
        match opened {
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                // A refused upgrade carries the server's usual error body; surface it as a
                // server error so `is_unauthorized()` and friends work for sockets too.
                let status = resp.status();
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let err = SynapError::from_response(
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("error"),
                    &body,
                );
                if status.as_u16() != 503 || !err.code().is_some_and(|c| MOVE_ON.contains(&c)) {
                    return Err(Refused::Fatal(err));
                }
                let leader = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["leader"]["http"].as_str().map(str::to_owned))
                    .and_then(|h| self.leader_base(&h));
                Err(Refused::Again(Failure {
                    leader,
                    ..Failure::plain(err, false)
                }))
            }
            Ok(Err(e)) => Err(Refused::Again(Failure::plain(e.into(), false))),
            Err(_) => Err(Refused::Again(Failure::plain(
                SynapError::Closed(format!("opening {url} took over {OPEN_TIMEOUT:?}")),
                false,
            ))),
        }
    }
}

/// Reads the next JSON text frame, skipping pings, pongs and binary frames. `Ok(None)` when the
/// socket closed cleanly.
pub(crate) async fn next_json(socket: &mut Socket) -> Result<Option<serde_json::Value>> {
    while let Some(frame) = socket.next().await {
        match frame? {
            Message::Text(text) => {
                let value = serde_json::from_str(text.as_str()).map_err(|e| {
                    SynapError::Decode(format!("websocket frame ({e}): {}", text.as_str()))
                })?;
                return Ok(Some(value));
            }
            Message::Close(_) => return Ok(None),
            // tungstenite answers pings itself; nothing else carries data for us.
            _ => {}
        }
    }
    Ok(None)
}

/// A server error carried in a frame (`{"error": "...", "code": "..."}`), if this is one.
pub(crate) fn frame_error(frame: &serde_json::Value) -> Option<SynapError> {
    let error = frame.get("error")?;
    let message = error
        .as_str()
        .map_or_else(|| error.to_string(), str::to_owned);
    let code = match frame.get("code") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "error".to_owned(),
    };
    Some(SynapError::Server {
        status: 0,
        code,
        message,
    })
}
