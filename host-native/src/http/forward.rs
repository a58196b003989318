//! A cluster follower forwards HTTP requests to the leader (DESIGN.md §11), so a client or
//! SDK pointed at any node works: REST routes and the SDK envelope, long-polls included. The
//! request goes over a new connection to the leader's HTTP address with a
//! `x-synap-forwarded` header, and the leader's answer comes back as it is. A request that
//! was forwarded once is never forwarded again (it is answered `not_leader` instead), so two
//! nodes that each think the other leads cannot bounce it between them.
//!
//! Not forwarded: routes about the node itself (`/cluster`, `/health`, `/metrics`,
//! `/debug/…`, `/events`) and WebSockets (`…/ws`) and SSE streams, which are refused with
//! `not_leader` naming the leader. With no leader known, the request runs here and is answered
//! 503 `no_leader`. The layer is installed on cluster nodes only.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::debug;

use super::AppState;
use super::error::ApiError;
use crate::cluster::NotServing;

/// Marks a request a follower forwarded.
static FORWARDED: HeaderName = HeaderName::from_static("x-synap-forwarded");

/// Whether a path is about the node that answers it (never forwarded).
fn local(path: &str) -> bool {
    path == "/cluster"
        || path.starts_with("/health")
        || path == "/metrics"
        || path.starts_with("/debug/")
        || path == "/events"
        || path.ends_with("/ws")
        || path == "/pubsub/sse"
}

/// Middleware: on a follower that knows the leader, forwards the request there.
pub(super) async fn to_leader(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(node) = s.engine.cluster_node() else {
        return next.run(req).await;
    };
    let (leading, leader) = node.route();
    if leading || local(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(leader) = leader else {
        return next.run(req).await;
    };
    if req.headers().contains_key(&FORWARDED) {
        return ApiError::not_serving(NotServing::NotLeader(leader)).into_response();
    }
    match forward(req, leader.http).await {
        Ok(resp) => resp,
        Err(e) => {
            debug!(leader = leader.id, error = %e, "forwarding to the leader failed");
            ApiError::not_serving(NotServing::NotLeader(leader)).into_response()
        }
    }
}

async fn forward(req: Request, to: SocketAddr) -> Result<Response, String> {
    let stream = tokio::net::TcpStream::connect(to)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = req.into_parts();
    let h = &mut parts.headers;
    h.insert(FORWARDED.clone(), HeaderValue::from_static("1"));
    // This node checked the caller's host and origin; the leader checks its own name.
    h.insert(
        header::HOST,
        HeaderValue::from_str(&to.to_string()).map_err(|e| e.to_string())?,
    );
    h.remove(header::ORIGIN);
    h.remove("sec-fetch-site");
    h.remove(header::CONNECTION);
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}
