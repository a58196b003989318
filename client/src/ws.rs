//! WebSocket plumbing shared by pub/sub subscriptions and the streaming consumer: URL building
//! (`http` → `ws`), the auth header, and reading JSON text frames.

use futures_util::StreamExt;
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::SynapClient;
use crate::error::{Result, SynapError};

/// An open WebSocket to the server.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl SynapClient {
    /// Opens a WebSocket to `segments` with `query` pairs. The query is form-encoded, so a `#`
    /// in a topic pattern travels as `%23` instead of starting a URL fragment.
    pub(crate) async fn open_ws(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Socket> {
        let mut url: Url = self.url(segments);
        url.set_scheme("ws")
            .map_err(|()| SynapError::InvalidUrl(format!("{url}: cannot switch to ws://")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = url.as_str().into_client_request()?;
        if let Some(key) = self.api_key() {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|e| SynapError::InvalidUrl(format!("api key: {e}")))?;
            request.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _response)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                // A refused upgrade carries the server's usual error body; surface it as a
                // server error so `is_unauthorized()` and friends work for sockets too.
                let status = resp.status();
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                Err(SynapError::from_response(
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("error"),
                    &body,
                ))
            }
            Err(e) => Err(e.into()),
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
