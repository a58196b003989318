//! REST errors and the extractors that turn bad input into them.
//!
//! Every error is `{"error": message, "code": machine_code}` with a status from the code; serde,
//! path, WebSocket-upgrade and body-limit rejections become `invalid_argument` (400),
//! `method_not_allowed` (405) and `payload_too_large` (413) instead of axum's plain-text
//! rejections.

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use synap_core::Error;

use crate::handle::{Failure, StorageFault};

/// An error answered to a REST client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// On a cluster node that cannot serve: the leader to retry on, if known (boxed: rare).
    cluster: Option<Box<crate::cluster::NotServing>>,
}

impl ApiError {
    /// A 400 `invalid_argument`.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// A 403 `forbidden`: the caller lacks a permission.
    pub(crate) fn forbidden(d: crate::permissions::Denied) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("forbidden: {d}"),
        )
    }

    /// An error with an explicit status and code.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cluster: None,
        }
    }

    /// A cluster node's 503: `not_leader` with the leader, or `no_leader`.
    pub(crate) fn not_serving(n: crate::cluster::NotServing) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: n.code(),
            message: n.message(),
            cluster: Some(Box::new(n)),
        }
    }

    /// The machine code.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The message text.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// The status each engine error code is answered with.
pub(crate) fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::QueueNotFound { .. }
        | Error::MessageNotFound { .. }
        | Error::KeyNotFound { .. }
        | Error::SubscriberNotFound { .. }
        | Error::SessionNotFound { .. }
        | Error::ScheduleNotFound { .. }
        | Error::FlowNotFound { .. } => StatusCode::NOT_FOUND,
        Error::LeaseMismatch { .. } | Error::AlreadyFinished { .. } => StatusCode::CONFLICT,
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::QueueFull { .. } | Error::MemoryFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        Error::InvalidArgument { .. } | Error::NotAnInteger { .. } => StatusCode::BAD_REQUEST,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e);
        let code = e.code();
        match e {
            // The engine names its own fields (`lease_ms`); clients wrote the API's names.
            Error::InvalidArgument { field, reason } => {
                let field = api_field(&field);
                Self::new(status, code, format!("invalid argument: {field}: {reason}"))
            }
            e => Self::new(status, code, e.to_string()),
        }
    }
}

/// The API's name of an engine field: durations are seconds on the wire, milliseconds in the
/// engine.
pub(crate) fn api_field(core: &str) -> &str {
    match core {
        "lease_ms" => "ack_deadline",
        "ack_deadline_ms" => "ack_deadline_secs",
        "delay_ms" => "delay",
        "ttl_ms" => "ttl",
        "message_ttl_ms" => "message_ttl",
        "retry_delays_ms" => "retry_delays",
        "backoff.max_ms" => "backoff.max",
        other => other,
    }
}

impl From<crate::permissions::Denied> for ApiError {
    fn from(d: crate::permissions::Denied) -> Self {
        Self::forbidden(d)
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Core(e) => e.into(),
            Failure::Forbidden(d) => Self::forbidden(d),
            Failure::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server is shutting down",
            ),
            Failure::Storage(StorageFault::Full) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                "the disk is full: the command log cannot take writes (reads still work)",
            ),
            Failure::Storage(StorageFault::Failed(why)) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_failed",
                format!("storage failed, no mutations are accepted until a restart: {why}"),
            ),
            Failure::Cluster(n) => Self::not_serving(n),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(n) = self.cluster {
            let leader = n
                .leader()
                .map(|l| serde_json::json!({"id": l.id, "http": format!("http://{}", l.http)}));
            let body = Json(serde_json::json!({
                "error": self.message,
                "code": self.code,
                "leader": leader,
            }));
            let retry = [(axum::http::header::RETRY_AFTER, "1")];
            return (self.status, retry, body).into_response();
        }
        let body = Json(synap_wire::ErrorBody {
            error: self.message,
            code: self.code.to_string(),
        });
        (self.status, body).into_response()
    }
}

/// Reads the whole body, mapping the body limit to 413, the body timeout to 408, and a body
/// cut short by the end of the shutdown grace period to 503 `shutting_down`.
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if cause::<crate::listen::ShuttingDown>(&r).is_some() {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; retry on another server or after its restart",
            )
        } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is larger than the server's limit",
            )
        } else if let Some(t) = cause::<crate::listen::BodyTimeout>(&r) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                t.to_string(),
            )
        } else {
            ApiError::bad(format!("could not read the request body: {r}"))
        }
    })
}

/// The error of type `E` behind a rejection (the body timeout, say), if that is why the body
/// could not be read.
fn cause<'a, E: std::error::Error + 'static>(
    r: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut e = Some(r);
    while let Some(err) = e {
        if let Some(t) = err.downcast_ref::<E>() {
            return Some(t);
        }
        e = err.source();
    }
    None
}

/// Parses a JSON object into `T`; an empty body counts as `{}` so routes whose fields are all
/// optional accept a bodiless POST. Anything but an object is refused before serde sees it:
/// serde would take an array as a struct's fields in order (`[0, 3600, 2]` as a consume).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let invalid = |e: serde_json::Error| ApiError::bad(format!("invalid JSON body: {e}"));
    if text.trim_ascii_start().first() != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(text).map_err(invalid)?;
        return Err(ApiError::bad("the request body must be a JSON object"));
    }
    serde_json::from_slice(text).map_err(invalid)
}

/// A JSON object body whose parse errors are `invalid_argument` 400s (the content type is
/// checked before, by `origin::guard`).
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A query string whose parse errors are `invalid_argument` 400s.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(q) = parts.uri.query()
            && !query_is_utf8(q)
        {
            return Err(ApiError::bad(
                "invalid query string: a percent-encoded value is not UTF-8",
            ));
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| ApiError::bad(format!("invalid query string: {}", e.body_text())))
    }
}

/// Whether every value of a query string is UTF-8 once percent-decoded (the form decoder
/// would replace bad bytes with U+FFFD, so `prefix=%FF` would silently become another prefix).
fn query_is_utf8(query: &str) -> bool {
    let bytes = query.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_ok()
}

/// Path parameters whose rejections (e.g. `%FF`, not UTF-8) are `invalid_argument` 400s.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| ApiError::bad(format!("invalid path: {}", e.body_text())))
    }
}

/// A WebSocket upgrade whose rejections (a plain GET without upgrade headers, another method)
/// are JSON errors with the rejection's status.
pub(crate) struct WsUpgrade(pub(crate) WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|r| {
                let status = r.status();
                let code = if status == StatusCode::METHOD_NOT_ALLOWED {
                    "method_not_allowed"
                } else {
                    "invalid_argument"
                };
                Self::Rejection::new(
                    status,
                    code,
                    format!("{} (a WebSocket route)", r.body_text()),
                )
            })
    }
}

/// The `{name}` path segment, checked to be a valid queue name (1–255 of `A-Za-z0-9._:-`).
pub(crate) struct QueueName(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for QueueName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiPath(params) =
            ApiPath::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await?;
        let name = params.get("name").cloned().unwrap_or_default();
        synap_core::validate_queue_name(&name)?;
        Ok(Self(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_must_decode_to_utf8() {
        assert!(query_is_utf8("prefix=user%3A&limit=5"));
        assert!(query_is_utf8("prefix=%C3%A9"));
        assert!(!query_is_utf8("prefix=%FF"));
        assert!(query_is_utf8("prefix=%"), "a lone % is kept as is");
    }

    #[test]
    fn bodies_must_be_objects() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Consume {
            timeout: Option<f64>,
        }
        assert!(parse_json::<Consume>(b"[0, 3600, 2]").is_err());
        assert!(parse_json::<Consume>(b"7").is_err());
        assert!(parse_json::<Consume>(b"  {\"timeout\": 1}").is_ok());
        assert!(parse_json::<Consume>(b"").is_ok(), "empty is {{}}");
    }

    #[test]
    fn engine_fields_are_named_as_the_api_names_them() {
        let e = ApiError::from(Error::InvalidArgument {
            field: "lease_ms".into(),
            reason: "must be positive".into(),
        });
        assert_eq!(e.code(), "invalid_argument");
        assert_eq!(
            e.message(),
            "invalid argument: ack_deadline: must be positive"
        );
        let other = ApiError::from(Error::InvalidArgument {
            field: "priority".into(),
            reason: "must be 0..=9".into(),
        });
        assert_eq!(other.message(), "invalid argument: priority: must be 0..=9");
    }
}
