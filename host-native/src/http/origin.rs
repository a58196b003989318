//! Browser-origin safety: what a web page on another origin may make the server do.
//!
//! A browser sends cross-origin "simple" requests (a `text/plain` or form POST, an `<img>`
//! GET) without asking first, so with auth off any page could publish, purge or set keys.
//! Before auth runs, every request passes these checks:
//!
//! 1. **Host** (only when the server listens on loopback): `localhost`, `127.0.0.1` or `[::1]`
//!    with the server's port, so a DNS-rebinding page (whose requests carry its own host name)
//!    is refused with 403 `host_not_allowed`.
//! 2. **Origin**: a request with an `Origin` is served when it is the server's own origin
//!    (`http://` + the request's `Host`, as the web app served at `/` sends) or one of the
//!    configured `allowed_origins`; otherwise 403 `origin_not_allowed`. A request that a
//!    browser marks `Sec-Fetch-Site: cross-site` or `same-site` without an allowed `Origin` is
//!    refused the same way. Requests without either header (curl, the SDKs) pass.
//! 3. **CORS**: allowed origins get `Access-Control-Allow-Origin` on every answer, and their
//!    preflight `OPTIONS` is answered 204 with the methods and headers the API takes.
//! 4. **Size**: a `Content-Length` over `max_body_bytes` is answered 413 before any read.
//! 5. **Content type**: a request with a body must say `application/json` (or `…+json`),
//!    else 415 `unsupported_media_type`; browsers cannot send that type cross-origin without
//!    a preflight, which step 3 answers only for allowed origins.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Methods and request headers a preflight may ask for.
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "authorization, content-type";
/// Seconds a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Which hosts and origins the server answers.
#[derive(Debug, Default)]
pub(crate) struct OriginPolicy {
    /// The port to expect in `Host`, when the server listens on loopback.
    loopback_port: Option<u16>,
    /// Origins allowed besides the server's own.
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// The policy of a server listening on `local`, with `allowed` origins.
    pub(crate) fn new(local: SocketAddr, allowed: Vec<String>) -> Self {
        Self {
            loopback_port: local.ip().is_loopback().then_some(local.port()),
            allowed,
        }
    }

    /// Whether `host` (a `Host` header) names this loopback server.
    fn host_ok(&self, host: Option<&str>) -> bool {
        let (Some(port), Some(host)) = (self.loopback_port, host) else {
            return true;
        };
        let (name, given) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(':') && !p.contains(']') => (n, p.parse::<u16>().ok()),
            _ => (host, None),
        };
        let name_ok = matches!(
            name.to_ascii_lowercase().as_str(),
            "localhost" | "127.0.0.1" | "[::1]"
        );
        let port_ok = given == Some(port) || (given.is_none() && port == 80);
        name_ok && port_ok
    }

    fn listed(&self, origin: &str) -> bool {
        self.allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    }
}

/// What the request's origin is to the server.
enum Caller {
    /// No `Origin` and no cross-site mark: not a browser page of another origin.
    Direct,
    /// The server's own origin.
    SameOrigin,
    /// An allowed origin: answers carry CORS headers for it.
    Allowed(HeaderValue),
    /// Any other origin.
    Refused,
}

fn caller(policy: &OriginPolicy, headers: &HeaderMap) -> Caller {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN);
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    match origin {
        Some(o) => {
            let text = o.to_str().unwrap_or("");
            if host.is_some_and(|h| text.eq_ignore_ascii_case(&format!("http://{h}"))) {
                Caller::SameOrigin
            } else if policy.listed(text) {
                Caller::Allowed(o.clone())
            } else {
                Caller::Refused
            }
        }
        None if cross_site => Caller::Refused,
        None => Caller::Direct,
    }
}

/// Whether a content type is JSON: `application/json` or `application/…+json`, any params.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// The request's `Content-Length`, if it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Whether the request carries a body.
fn has_body(headers: &HeaderMap) -> bool {
    content_length(headers).is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

/// The middleware (see the module docs).
pub(crate) async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let policy = &s.origins;
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !policy.host_ok(host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "the Host header does not name this server (localhost, 127.0.0.1 or [::1] with its port)",
        )
        .into_response();
    }
    let allowed = match caller(policy, headers) {
        Caller::Refused => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "requests from this browser origin are not allowed (see server.allowed_origins)",
            )
            .into_response();
        }
        Caller::Allowed(origin) => Some(origin),
        Caller::Direct | Caller::SameOrigin => None,
    };
    let preflight = req.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = &allowed {
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
            cors(h, origin);
        }
        return resp;
    }
    if content_length(headers).is_some_and(|n| n > s.max_body_bytes as u64) {
        // Answered before reading: the body could not be taken anyway.
        let mut resp = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body (Content-Length) is larger than the server's limit of {} bytes",
                s.max_body_bytes
            ),
        )
        .into_response();
        if let Some(origin) = &allowed {
            cors(resp.headers_mut(), origin);
        }
        return resp;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""));
    if has_body(headers) && !content_type.is_some_and(is_json) {
        let mut resp = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a request body must be JSON, sent with Content-Type: application/json",
        )
        .into_response();
        if let Some(origin) = &allowed {
            cors(resp.headers_mut(), origin);
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    if let Some(origin) = &allowed {
        cors(resp.headers_mut(), origin);
    }
    resp
}

fn cors(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> OriginPolicy {
        OriginPolicy::new(
            "127.0.0.1:15500".parse().unwrap(),
            vec!["http://app.test:3000".into()],
        )
    }

    #[test]
    fn loopback_hosts_need_the_port() {
        let p = loopback();
        for ok in [
            "localhost:15500",
            "127.0.0.1:15500",
            "[::1]:15500",
            "LOCALHOST:15500",
        ] {
            assert!(p.host_ok(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.test:15500",
            "localhost:80",
            "localhost",
            "127.0.0.1:1",
            "[::1]",
        ] {
            assert!(!p.host_ok(Some(bad)), "{bad}");
        }
        assert!(p.host_ok(None), "HTTP/1.0 without Host");
        let public = OriginPolicy::new("0.0.0.0:15500".parse().unwrap(), vec![]);
        assert!(public.host_ok(Some("synap.internal:15500")));
    }

    #[test]
    fn origins_are_sorted_out() {
        let p = loopback();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:15500"));
        assert!(matches!(caller(&p, &h), Caller::Direct));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:15500"),
        );
        assert!(matches!(caller(&p, &h), Caller::SameOrigin));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://app.test:3000"),
        );
        assert!(matches!(caller(&p, &h), Caller::Allowed(_)));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(matches!(caller(&p, &h), Caller::Refused));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(matches!(caller(&p, &h), Caller::Refused));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(matches!(caller(&p, &h), Caller::Refused));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.synap+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("multipart/form-data; boundary=x"));
        assert!(!is_json(""));
    }
}
