//! How the queue and pub/sub WebSockets end: each close the server starts carries a status
//! code (RFC 6455 §7.4), never the empty close a client reads as 1005 "no status".
//!
//! - 1000 (normal): the connection has nothing more to do (its queue was deleted, consuming
//!   failed); an error frame saying why comes first.
//! - 1001 (going away): the server is shutting down.
//! - 1009 (message too big): a client frame or message over the socket's limit; an error
//!   frame with code `payload_too_large` comes first.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::SinkExt;

/// How long the server waits to write its last frames to a client that does not read.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// A close frame with `code` and a short `reason`.
fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The close of a server shutting down: 1001.
pub(crate) fn going_away() -> Message {
    close(close_code::AWAY, "server shutting down")
}

/// The close after a client frame over the limit: 1009.
pub(crate) fn too_big() -> Message {
    close(close_code::SIZE, "frame too large")
}

/// The close after an error frame that ends the connection: 1000.
pub(crate) fn done(reason: &'static str) -> Message {
    close(close_code::NORMAL, reason)
}

/// Whether a read failed because a client frame or message was over the socket's limit.
/// axum wraps tungstenite's error, whose type this crate does not name; its text is
/// `Space limit exceeded: Message too long: N > M`. The end-to-end tests (tests/edges.rs)
/// check that such a frame is still answered with 1009.
pub(crate) fn is_too_big(e: &axum::Error) -> bool {
    e.to_string().starts_with("Space limit exceeded")
}

/// Writes `frames` (the last one a close, say) within `CLOSE_WRITE`; a client that does not
/// read is given up on.
pub(crate) async fn send_last(socket: &mut WebSocket, frames: Vec<Message>) {
    let write = async {
        for f in frames {
            socket.feed(f).await?;
        }
        socket.flush().await
    };
    let _ = tokio::time::timeout(CLOSE_WRITE, write).await;
}

/// After the client's close frame: writes the close reply tungstenite has queued, so the
/// client reads its own code back instead of an abnormal end.
pub(crate) async fn answer_close(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WRITE, socket.flush()).await;
}
