//! The HTTP listener: serves the router over hyper's HTTP/1.1 connections with the server's
//! timeouts and a cap on open connections.
//!
//! - **Header timeout**: a request head must be complete within `header` of its first byte.
//! - **Body timeout**: a request body must arrive within `body` of the route starting to read
//!   it, else the route answers 408 `request_timeout` (a `Content-Length` larger than the bytes
//!   sent cannot hold a connection).
//! - **Idle timeout**: a keep-alive connection with no request for `idle` is closed. A request
//!   being answered (a parked long-poll, an SSE stream) is not idle; a WebSocket is not timed.
//! - **Connection cap**: past `max_connections` open connections (WebSockets included), a new
//!   connection is answered 503 `too_many_connections` with a JSON body and closed.
//! - **Shutdown**: once `stop` turns true the listener is closed at once (new connections are
//!   refused by the OS instead of waiting in its queue), idle keep-alive connections close,
//!   and requests being answered finish. When `cut` turns true (the grace period is over), a
//!   request body still arriving ends with `ShuttingDown`, which routes answer with 503
//!   `shutting_down`.
//!
//! A watchdog per connection enforces the header and idle timeouts from what the socket and
//! the requests record (`track`); hyper itself runs without timers.

mod body;
mod io;
mod track;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service as _;
use tracing::{debug, warn};

use body::{AnswerBody, TimedBody};
pub(crate) use body::{BodyTimeout, ShuttingDown};
use io::ConnIo;
use track::{Timeouts, Track, Verdict};

/// Default header timeout.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default body timeout.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default keep-alive idle timeout.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default most open connections.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Connections being refused at once; more wait (in the OS's listen queue) for a turn.
pub(crate) const MAX_REFUSING: usize = 64;
/// How long a refusal waits for the request before answering (so the peer reads the answer
/// instead of a reset).
const REFUSAL_READ: Duration = Duration::from_millis(200);
/// How long the accept loop pauses after `accept` fails (out of file descriptors, say), so a
/// persistent failure neither spins a core nor floods the log.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Failed accepts are logged at most once per this period, with the count since the last.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The listener's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// From a request head's first byte to its end.
    pub(crate) header_timeout: Duration,
    /// For a request body, from when the route starts reading it.
    pub(crate) body_timeout: Duration,
    /// A keep-alive connection without a request for this long is closed.
    pub(crate) idle_timeout: Duration,
    /// Most connections open at once.
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Connection counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Connections accepted and served.
    pub(crate) accepted: AtomicU64,
    /// Connections refused at the cap.
    pub(crate) refused: AtomicU64,
    /// Connections closed by the header or idle timeout.
    pub(crate) timed_out: AtomicU64,
    /// Failed `accept` calls of the HTTP listener (e.g. out of file descriptors).
    pub(crate) accept_errors: AtomicU64,
    /// Failed `accept` calls of the SynapRPC listener.
    pub(crate) rpc_accept_errors: AtomicU64,
}

/// Counts a failed `accept`, logs it (at most once per `ACCEPT_LOG_EVERY`), and pauses.
pub(crate) async fn accept_failed(
    listener: &'static str,
    error: &std::io::Error,
    counter: &AtomicU64,
    last_log: &mut Option<(tokio::time::Instant, u64)>,
) {
    let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
    let now = tokio::time::Instant::now();
    let due = last_log.is_none_or(|(at, _)| now.duration_since(at) >= ACCEPT_LOG_EVERY);
    if due {
        let since = total - last_log.map_or(0, |(_, n)| n);
        warn!(
            listener,
            %error,
            failed_since_last_report = since,
            "accept failed; pausing {} ms before the next (see synap_accept_errors_total)",
            ACCEPT_BACKOFF.as_millis()
        );
        *last_log = Some((now, total));
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// When the server stops accepting and when it cuts what is left.
#[derive(Clone)]
pub(crate) struct Shutdown {
    /// Turns true when shutdown starts: the listener closes, connections finish.
    pub(crate) stop: watch::Receiver<bool>,
    /// Turns true when the grace period is over: bodies still arriving end with
    /// `ShuttingDown`.
    pub(crate) cut: watch::Receiver<bool>,
}

/// Serves `app` until `stop` turns true, then closes the listener and lets open connections
/// finish their requests (the caller bounds how long).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut stop = shutdown.stop.clone();
    let mut last_log = None;
    loop {
        let accepted = tokio::select! {
            // Stopping first: once it has begun, nothing more is accepted.
            biased;
            () = crate::http::stopped(&mut stop) => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_failed("http", &e, &stats.accept_errors, &mut last_log).await;
                continue;
            }
        };
        // Replies and pushes are small writes; without TCP_NODELAY the kernel holds each back
        // (Nagle) until the peer acknowledges the previous one, up to ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "could not set TCP_NODELAY");
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            // A refusal takes twice `REFUSAL_READ` at most, so waiting for a turn is short
            // (the connections behind this one wait in the listen queue meanwhile), and every
            // connection over the cap is answered.
            let Ok(permit) = Arc::clone(&refusing).acquire_owned().await else {
                continue;
            };
            let max = limits.max_connections;
            tokio::spawn(async move {
                refuse(tcp, peer, max).await;
                drop(permit);
            });
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let track = Arc::new(Track::new());
        let io = ConnIo::new(tcp, Arc::clone(&track), slot);
        tokio::spawn(connection(
            io,
            peer,
            app.clone(),
            track,
            limits,
            Arc::clone(&stats),
            shutdown.clone(),
        ));
    }
    // Closed now, not when the open connections are done: a client connecting during the
    // drain is refused at once instead of waiting in the listen queue until it gives up.
    drop(listener);
    // Every slot back means every connection (WebSockets too) has closed.
    let _ = slots
        .acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
        .await;
}

/// Serves one connection until it closes, times out, or the server stops.
async fn connection(
    io: ConnIo,
    peer: SocketAddr,
    app: Router,
    track: Arc<Track>,
    limits: Limits,
    stats: Arc<ConnStats>,
    shutdown: Shutdown,
) {
    let svc_track = Arc::clone(&track);
    let body_timeout = limits.body_timeout;
    let cut = shutdown.cut;
    let mut stop = shutdown.stop;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        svc_track.request_started();
        let track = Arc::clone(&svc_track);
        let cut = cut.clone();
        let req = req.map(|b| axum::body::Body::new(TimedBody::new(b, body_timeout, cut)));
        let mut app = app.clone();
        async move {
            let resp = app.call(req).await?;
            if resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                track.upgraded.store(true, Ordering::Relaxed);
            }
            Ok::<_, std::convert::Infallible>(resp.map(|b| AnswerBody::new(b, track)))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let timeouts = Timeouts {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
    };
    let mut check_at = tokio::time::Instant::now() + timeouts.header.min(timeouts.idle);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(check_at) => match track.verdict(timeouts) {
                Verdict::CheckAt(at) => check_at = at,
                Verdict::Close(why) => {
                    debug!(%peer, "closing HTTP connection: {why}");
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            () = crate::http::stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a connection over the cap with 503 `too_many_connections` and closes it.
async fn refuse(mut tcp: TcpStream, peer: SocketAddr, max: usize) {
    debug!(%peer, "connection cap of {max} reached; refusing");
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_READ, tcp.read(&mut scratch)).await;
    let body = serde_json::json!({
        "error": format!("the server has {max} connections open, its limit; retry later"),
        "code": "too_many_connections",
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_READ, write).await;
}
