//! Typed errors: what the server refused (with its HTTP status and machine code) kept apart from
//! transport and decoding failures, so callers can branch on `is_lease_mismatch()` and friends.

use serde::Deserialize;

/// Everything a Synap call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SynapError {
    /// The server answered with an error status and (usually) a `{"error", "code"}` body.
    #[error("server error {status} ({code}): {message}")]
    Server {
        /// HTTP status (400 bad input, 401 auth, 404 unknown, 409 lease mismatch, …), or 0 for
        /// an error the server reported inside a WebSocket frame.
        status: u16,
        /// Stable machine code such as `lease_mismatch` or `queue_not_found`; the status text
        /// when the body carried none.
        code: String,
        /// Human-readable message from the server.
        message: String,
    },
    /// The request never got an HTTP answer (connection refused, reset, timed out).
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// A WebSocket could not be opened or failed while open.
    #[error("websocket error: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A body could not be encoded, or a response or frame did not have the expected shape.
    #[error("decode error: {0}")]
    Decode(String),
    /// The base URL given to the client is not a usable `http://` URL.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// A streaming connection was closed (by the server or because the client shut it down).
    #[error("connection closed: {0}")]
    Closed(String),
    /// A client with failover ([`SynapClient::new_many`](crate::SynapClient::new_many)) gave
    /// up: no node served the call before the failover deadline. `last` is the last node's failure (a transport error, or a
    /// 503 `no_leader` / `not_leader`); [`code`](Self::code) and [`status`](Self::status) are
    /// its.
    #[error("no node served the request after {attempts} attempts: {last}")]
    Failover {
        /// Attempts made, on all nodes together.
        attempts: u32,
        /// The last attempt's failure.
        last: Box<Self>,
    },
    /// A call was sent again after a failover while its earlier attempt's outcome was unknown
    /// (the node failed mid-request), and the resend was refused in a way an applied earlier
    /// attempt explains: `lease_mismatch` or `message_not_found` for a nack,
    /// `already_finished` for a cancel. The earlier attempt most likely took effect.
    /// [`code`](Self::code), [`status`](Self::status) and the `is_*` helpers are the inner
    /// error's, so code that treats `lease_mismatch` as "move on" needs no change.
    #[error("refused after a resend (the earlier attempt may have taken effect): {0}")]
    Resent(Box<Self>),
}

/// Shorthand for results of this crate.
pub type Result<T, E = SynapError> = std::result::Result<T, E>;

impl SynapError {
    /// The HTTP status of a server error, `None` for other kinds.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Server { status, .. } => Some(*status),
            Self::Failover { last: e, .. } | Self::Resent(e) => e.status(),
            _ => None,
        }
    }

    /// The server's machine code (e.g. `lease_mismatch`), `None` for other kinds.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server { code, .. } => Some(code),
            Self::Failover { last: e, .. } | Self::Resent(e) => e.code(),
            _ => None,
        }
    }

    /// True when the call was resent after a failover and refused in a way an applied earlier
    /// attempt explains ([`SynapError::Resent`]).
    #[must_use]
    pub fn is_resent(&self) -> bool {
        matches!(self, Self::Resent(_))
    }

    /// True when a client with several nodes found none to serve the call before its failover
    /// deadline ([`SynapError::Failover`]).
    #[must_use]
    pub fn is_failover(&self) -> bool {
        matches!(self, Self::Failover { .. })
    }

    /// True when an ack, nack or extend carried a lease the message no longer holds: the message
    /// was redelivered (or is no longer leased), and the late answer was refused.
    #[must_use]
    pub fn is_lease_mismatch(&self) -> bool {
        self.code() == Some("lease_mismatch") || self.status() == Some(409)
    }

    /// True when the queue, message or key does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.code().is_some_and(|c| c.ends_with("_not_found"))
    }

    /// True when the queue is at `max_depth` or another server limit was hit.
    #[must_use]
    pub fn is_full(&self) -> bool {
        matches!(self.status(), Some(429 | 507))
            || matches!(self.code(), Some("queue_full" | "limit_exceeded"))
    }

    /// True when a cancel named a job that is already finished (`already_finished`).
    #[must_use]
    pub fn is_already_finished(&self) -> bool {
        self.code() == Some("already_finished")
    }

    /// True when the server refused the API key (or none was sent and one is required).
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// True when the server rejected the request as malformed or out of range.
    #[must_use]
    pub fn is_invalid_argument(&self) -> bool {
        self.code() == Some("invalid_argument") || self.status() == Some(400)
    }

    /// Builds a server error from a status and a raw body: Synap's `{"error", "code"}` (its
    /// wire type), else read leniently for proxies and other servers: a JSON object whose code
    /// may be a string or a number, or plain text.
    pub(crate) fn from_response(status: u16, reason: &str, body: &str) -> Self {
        if let Ok(b) = serde_json::from_str::<synap_wire::ErrorBody>(body) {
            return Self::Server {
                status,
                code: b.code,
                message: b.error,
            };
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            #[serde(default)]
            error: Option<serde_json::Value>,
            #[serde(default)]
            code: Option<serde_json::Value>,
        }
        let parsed = serde_json::from_str::<ErrorBody>(body).ok();
        let code = parsed
            .as_ref()
            .and_then(|b| b.code.as_ref())
            .map(|c| match c {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| reason.to_ascii_lowercase().replace(' ', "_"));
        let message = match parsed.and_then(|b| b.error) {
            Some(serde_json::Value::String(s)) => s,
            Some(other) => other.to_string(),
            None if body.is_empty() => reason.to_owned(),
            None => body.to_owned(),
        };
        Self::Server {
            status,
            code,
            message,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for SynapError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        // Boxed because tungstenite's error is large and would bloat every `Result`.
        Self::WebSocket(Box::new(e))
    }
}

impl From<serde_json::Error> for SynapError {
    fn from(e: serde_json::Error) -> Self {
        Self::Decode(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_and_numeric_codes() {
        let e = SynapError::from_response(
            409,
            "Conflict",
            r#"{"error":"lease mismatch for m","code":"lease_mismatch"}"#,
        );
        assert!(e.is_lease_mismatch());
        assert!(!e.is_not_found());
        assert_eq!(e.code(), Some("lease_mismatch"));

        let e = SynapError::from_response(404, "Not Found", r#"{"error":"x","code":404}"#);
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some("404"));
    }

    #[test]
    fn falls_back_to_status_text_for_empty_bodies() {
        let e = SynapError::from_response(401, "Unauthorized", "");
        assert!(e.is_unauthorized());
        assert_eq!(e.code(), Some("unauthorized"));
        assert_eq!(
            e.to_string(),
            "server error 401 (unauthorized): Unauthorized"
        );
    }
}
