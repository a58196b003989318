//! The socket of one HTTP connection, as hyper sees it: it records activity for the idle and
//! header timeouts, holds the connection's slot (so an upgraded WebSocket keeps counting
//! against the cap until it closes), and gives hyper's own error answers a JSON body.
//!
//! hyper answers a request it cannot parse (431 header too large, 414 URI too long, 400 bad
//! request line, header or `Content-Length`) itself, before any route runs, with an empty
//! body. Every answer of the server's routes that is an error has a JSON body, so an error
//! head with `content-length: 0` and nothing after it can only be hyper's: it is replaced by
//! the same head with a `{"error", "code"}` body.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::track::Track;

/// One connection's socket.
pub(crate) struct ConnIo {
    tcp: TcpStream,
    track: Arc<Track>,
    /// A JSON error answer still to be written in place of hyper's empty one.
    pending: Vec<u8>,
    /// The connection's place under the cap, given back when the socket is dropped.
    _slot: OwnedSemaphorePermit,
}

impl ConnIo {
    pub(crate) fn new(tcp: TcpStream, track: Arc<Track>, slot: OwnedSemaphorePermit) -> Self {
        Self {
            tcp,
            track,
            pending: Vec::new(),
            _slot: slot,
        }
    }

    /// Writes what is left of a replaced answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.track.read_bytes();
        }
        r
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if !self.track.upgraded.load(Ordering::Relaxed)
            && let Some(answer) = json_answer(buf)
        {
            self.pending = answer;
            self.track.wrote_bytes();
            // hyper's bytes count as written; the replacement goes out now or on flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, buf))?;
        if n > 0 {
            self.track.wrote_bytes();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The JSON answer replacing `head` when it is an error head without a body, as hyper writes
/// for requests it cannot parse.
pub(crate) fn json_answer(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let code = std::str::from_utf8(rest.get(..3)?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    if !(400..600).contains(&code) || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    if !lower.windows(20).any(|w| w == b"\r\ncontent-length: 0\r") {
        return None;
    }
    let (code_name, message) = describe(code);
    let body = serde_json::json!({ "error": message, "code": code_name }).to_string();
    let reason = axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The machine code and message of an error hyper answered.
fn describe(code: u16) -> (&'static str, &'static str) {
    match code {
        431 => (
            "header_too_large",
            "the request's header fields are too large or too many",
        ),
        414 => ("uri_too_long", "the request URI is too long"),
        400 => (
            "bad_request",
            "malformed request: bad request line, path, header or Content-Length",
        ),
        505 => (
            "http_version_not_supported",
            "only HTTP/1.0 and HTTP/1.1 are served",
        ),
        _ => ("bad_request", "the request could not be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_get_a_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(json_answer(head).expect("replaced")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "header_too_large");
        assert!(answer.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn other_writes_pass_through() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(json_answer(ok).is_none(), "not an error");
        let with_body = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_answer(with_body).is_none(), "the app's own answer");
        let chunked = b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(json_answer(chunked).is_none(), "a streamed body follows");
        assert!(json_answer(b"\x81\x05hello").is_none(), "a WebSocket frame");
    }
}
