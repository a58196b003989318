//! The HTTP surface: REST, the command envelope, WebSocket and SSE routes, auth and metrics.

mod auth;
mod byte_array;
mod cluster;
mod debug;
mod envelope;
mod envelope_kv;
mod envelope_pubsub;
mod error;
mod events;
mod flows;
mod forward;
mod kv;
mod metrics;
mod origin;
pub(crate) mod passwords;
mod pubsub;
mod queue;
mod queue_flow;
mod queue_ws;
mod web;
mod wire;
mod ws_close;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use synap_core::{Event, QueueConfig};
use tokio::sync::{broadcast, watch};

pub(crate) use auth::{ApiKey, Auth, Secret, User};
pub(crate) use envelope::wire_error;
pub(crate) use metrics::HttpMetrics;
pub(crate) use origin::OriginPolicy;
#[cfg(test)]
pub(crate) use queue_ws::frame_outcome;

use crate::handle::EngineHandle;

/// What every handler shares: one `Arc`, so the clone each request's extractors and
/// middleware take is one counter increment.
#[derive(Clone)]
pub(crate) struct AppState(Arc<AppShared>);

impl AppState {
    /// The state of a server.
    pub(crate) fn new(shared: AppShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// The fields of `AppState`.
pub(crate) struct AppShared {
    /// The engine task.
    pub(crate) engine: EngineHandle,
    /// Every engine event, for `/events`.
    pub(crate) events: broadcast::Sender<Arc<Event>>,
    /// Becomes true when the server starts shutting down; streams end on it.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The config of queues created without one, base of `POST /queue/{name}` settings.
    pub(crate) default_queue: Arc<QueueConfig>,
    /// Most entries in one ack batch, mget or envelope batch.
    pub(crate) max_batch: usize,
    /// API keys (empty = no auth).
    pub(crate) auth: Arc<Auth>,
    /// Request counters and latency histogram.
    pub(crate) metrics: Arc<HttpMetrics>,
    /// Largest request body, and largest message a queue WebSocket client may send.
    pub(crate) max_body_bytes: usize,
    /// Largest message body (the engine's `max_payload_bytes`).
    pub(crate) max_message_bytes: usize,
    /// Largest KV value (the engine's `max_value_bytes`).
    pub(crate) max_value_bytes: usize,
    /// Longest consumer or subscriber id (the engine's `max_id_bytes`).
    pub(crate) max_id_bytes: usize,
    /// The memory budget (the engine's `max_held_bytes`), for `/metrics`.
    pub(crate) max_held_bytes: u64,
    /// The listener's connection counters, for `/metrics`.
    pub(crate) conns: Arc<crate::listen::ConnStats>,
    /// Hosts and browser origins answered.
    pub(crate) origins: Arc<OriginPolicy>,
}

/// Slack over the largest message in a one-message body: the other fields, whitespace.
const SINGLE_BODY_SLACK: usize = 64 << 10;

/// The body limit of a route that carries one message or value of at most `largest` bytes:
/// room for it in its most verbose form, a byte array (`255,` is 4 bytes of JSON per byte),
/// plus slack, and never more than `max_body_bytes`. JSON bodies are parsed into trees of
/// 32-byte nodes, so a limit near the content's size bounds their memory too; batch routes
/// keep `max_body_bytes`.
pub(crate) fn single_body_bytes(max_body_bytes: usize, largest: usize) -> usize {
    largest
        .saturating_mul(4)
        .saturating_add(SINGLE_BODY_SLACK)
        .min(max_body_bytes)
}

fn single_body_limit(max_body_bytes: usize, largest: usize) -> DefaultBodyLimit {
    DefaultBodyLimit::max(single_body_bytes(max_body_bytes, largest))
}

/// The application router with every route, auth and metrics layers, and the body limits.
pub(crate) fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let message = single_body_limit(max_body_bytes, state.max_message_bytes);
    let value = single_body_limit(max_body_bytes, state.max_value_bytes);
    // The envelope carries messages (`queue.publish`, `pubsub.publish`) and values (`kv.set`).
    let envelope = single_body_limit(
        max_body_bytes,
        state.max_message_bytes.max(state.max_value_bytes),
    );
    let queue = Router::new()
        .route("/queue/list", get(queue::list))
        .route("/queue/{name}", post(queue::create).delete(queue::delete))
        .route("/queue/{name}/publish", post(queue::publish).layer(message))
        .route("/queue/{name}/publish_batch", post(queue::publish_batch))
        .route("/queue/{name}/consume", post(queue::consume))
        .route(
            "/queue/{name}/consume/{consumer_id}",
            get(queue::consume_get),
        )
        .route("/queue/{name}/ack", post(queue::ack))
        .route("/queue/{name}/ack_batch", post(queue::ack_batch))
        .route("/queue/{name}/nack", post(queue::nack))
        .route("/queue/{name}/extend", post(queue::extend))
        .route("/queue/{name}/stats", get(queue::stats))
        .route("/queue/{name}/dlq", get(queue::dlq))
        .route("/queue/{name}/dlq/retry", post(queue::dlq_retry))
        .route("/queue/{name}/dlq/purge", post(queue::dlq_purge))
        .route("/queue/{name}/purge", post(queue::purge))
        .route("/queue/{name}/pause", post(queue_flow::pause))
        .route("/queue/{name}/resume", post(queue_flow::resume))
        .route("/queue/{name}/rate_limit", post(queue_flow::rate_limit))
        .route("/queue/{name}/groups", get(queue_flow::groups))
        .route("/queue/{name}/messages/{id}", get(queue::job))
        .route("/queue/{name}/messages/{id}/wait", get(queue::wait_job))
        .route("/queue/{name}/progress", post(queue::progress))
        .route("/queue/{name}/cancel", post(queue::cancel))
        .route("/queue/{name}/schedules", get(queue::list_schedules))
        .route(
            "/queue/{name}/schedules/{id}",
            axum::routing::put(queue::put_schedule).delete(queue::delete_schedule),
        )
        .route(
            "/queue/{name}/schedules/{id}/run",
            post(queue::run_schedule),
        )
        .route("/queue/{name}/ws", get(queue_ws::ws));
    let kv = Router::new()
        .route("/kv/set", post(kv::set).layer(value))
        .route("/kv/get/{key}", get(kv::get))
        .route("/kv/del/{key}", delete(kv::del))
        .route("/kv/exists/{key}", get(kv::exists))
        .route("/kv/ttl/{key}", get(kv::ttl))
        .route("/kv/expire", post(kv::expire))
        .route("/kv/persist", post(kv::persist))
        .route("/kv/incr", post(kv::incr))
        .route("/kv/keys", get(kv::keys))
        .route("/kv/mget", post(kv::mget))
        .route("/kv/mset", post(kv::mset))
        .route("/kv/stats", get(kv::stats));
    let other = Router::new()
        .route(
            "/pubsub/{topic}/publish",
            post(pubsub::publish).layer(message),
        )
        .route("/pubsub/ws", get(pubsub::ws))
        .route("/pubsub/sse", get(pubsub::sse))
        .route("/pubsub/stats", get(pubsub::stats))
        .route("/api/v1/command", post(envelope::command).layer(envelope))
        .route("/events", get(events::events))
        .route("/flows", post(flows::create))
        .route("/flows/{flow_id}", get(flows::get))
        .route("/auth/me", get(auth::me))
        .route("/metrics", get(metrics::metrics))
        .route("/health", get(health))
        .route("/health/leader", get(cluster::health_leader))
        .route("/cluster", get(cluster::status))
        .route("/cluster/transfer", post(cluster::transfer))
        .route("/cluster/nodes", post(cluster::add_node))
        .route("/cluster/nodes/{id}", delete(cluster::remove_node))
        .route("/debug/state_digest", get(debug::state_digest));
    let api = queue
        .merge(kv)
        .merge(other)
        // After every route is registered: it applies to the routes present when called.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    // A cluster follower forwards requests to the leader (after auth, which runs first).
    let api = if state.engine.cluster_node().is_some() {
        api.layer(middleware::from_fn_with_state(
            state.clone(),
            forward::to_leader,
        ))
    } else {
        api
    };
    // Keys and users are fixed at start: with none, the auth layer would only pass every
    // request on, at the cost of a boxed future per request.
    let api = if state.auth.enabled() {
        api.layer(middleware::from_fn_with_state(state.clone(), auth::require))
    } else {
        api
    };
    api
        // Browser-origin checks guard the API; the web app's static files stay reachable from
        // a link on any site (their API calls are checked).
        .layer(middleware::from_fn_with_state(state.clone(), origin::guard))
        // The web app, after the auth layer so that it stays public: the page loads, then
        // asks for an API key for the routes it calls.
        .merge(web::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// `GET /health`: public, for load balancers and SDK `health()` calls. 503 once the engine
/// task is gone, since every other request would fail too.
async fn health(State(s): State<AppState>) -> Response {
    if s.engine.is_closed() {
        let body = synap_wire::Health {
            status: "unhealthy".into(),
            service: "synap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            error: Some("the engine task has stopped".into()),
            code: Some("unavailable".into()),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let body = synap_wire::Health {
        status: "healthy".into(),
        service: "synap".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        error: None,
        code: None,
    };
    match cluster::health_fields(&s) {
        None => axum::Json(body).into_response(),
        Some((role, leader)) => {
            let mut v = serde_json::to_value(body).expect("health serializes");
            v["role"] = role.into();
            v["leader"] = leader;
            axum::Json(v).into_response()
        }
    }
}

async fn not_found() -> error::ApiError {
    error::ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route (see docs/api.md)",
    )
}

/// A known route asked with a method it does not answer; axum adds the `Allow` header.
async fn method_not_allowed() -> error::ApiError {
    error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not answer that method (see docs/api.md)",
    )
}

/// Resolves once the server starts shutting down (or the signal sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here: it must not be held across an await.
    let _ = rx.wait_for(|stop| *stop).await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A state over `engine` with default settings, for handler tests.
    pub(crate) fn state(engine: EngineHandle) -> AppState {
        AppState::new(shared(engine))
    }

    /// The fields of `state(engine)`, to change some before wrapping them.
    pub(crate) fn shared(engine: EngineHandle) -> AppShared {
        let (events, _) = broadcast::channel(16);
        let (_stop, shutdown) = watch::channel(false);
        AppShared {
            engine,
            events,
            shutdown,
            default_queue: Arc::new(QueueConfig::default()),
            max_batch: 1000,
            auth: Arc::new(Auth::default()),
            metrics: Arc::new(HttpMetrics::default()),
            max_body_bytes: 1 << 20,
            max_message_bytes: 1 << 18,
            max_value_bytes: 1 << 18,
            max_id_bytes: 255,
            max_held_bytes: 1 << 30,
            conns: Arc::default(),
            origins: Arc::default(),
        }
    }

    #[tokio::test]
    async fn health_is_503_once_the_engine_task_is_gone() {
        let (events, _) = broadcast::channel(16);
        let engine = synap_core::Engine::new(synap_core::EngineConfig::default(), 7);
        let task = crate::engine_task::EngineTask::new(engine, events, crate::clock::Clock::new());
        let s = state(task.start().0);
        assert_eq!(health(State(s.clone())).await.status(), StatusCode::OK);
        s.engine.stop().await;
        let resp = health(State(s)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
