//! `GET /metrics` in Prometheus text format: per-queue gauges and totals from the engine, and
//! HTTP request counts and latency per route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use synap_core::QueueStats;
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters keyed by (method, route template, status) and a latency histogram per
/// route template. Every key part comes from a fixed set (a method label, a route template or
/// `unmatched`, never the raw method or path), so clients cannot grow the maps: the metrics
/// layer runs before auth, so anyone who can connect can choose both.
#[derive(Default)]
pub(crate) struct HttpMetrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per route template.
    routes: BTreeMap<String, RouteMetrics>,
}

#[derive(Default)]
struct RouteMetrics {
    /// Requests by (method, status): a handful per route.
    counts: Vec<((&'static str, u16), u64)>,
    latency: Histogram,
}

/// The label of a request method: one of the methods Synap's routes can answer, else `other`.
/// Any token is a valid HTTP method (`curl -X FOO1`), so the raw method must not be a key.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

impl HttpMetrics {
    fn record(&self, method: &'static str, route: &str, status: u16, secs: f64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up by the borrowed template first: a route's key is allocated only the
        // first time it is seen, not on every request.
        let r = match inner.routes.get_mut(route) {
            Some(r) => r,
            None => inner.routes.entry(route.to_owned()).or_default(),
        };
        match r.counts.iter_mut().find(|(k, _)| *k == (method, status)) {
            Some((_, n)) => *n += 1,
            None => r.counts.push(((method, status), 1)),
        }
        let h = &mut r.latency;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn render(&self, out: &mut String) {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.push_str(
            "# HELP synap_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE synap_http_requests_total counter\n");
        let mut requests: Vec<_> = inner
            .routes
            .iter()
            .flat_map(|(route, r)| {
                r.counts
                    .iter()
                    .map(move |((method, status), n)| (*method, route, *status, *n))
            })
            .collect();
        requests.sort_unstable();
        for (method, route, status, n) in requests {
            let _ = writeln!(
                out,
                "synap_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP synap_http_request_duration_seconds HTTP request latency (long-polls included).\n");
        out.push_str("# TYPE synap_http_request_duration_seconds histogram\n");
        for (route, h) in inner.routes.iter().map(|(route, r)| (route, &r.latency)) {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "synap_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "synap_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "synap_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "synap_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
}

/// Middleware: counts every request and times it.
pub(crate) async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    // The matched template (e.g. `/queue/{name}/publish`), bounded by the route table; requests
    // no route matched share one label.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let secs = started.elapsed().as_secs_f64();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    s.metrics
        .record(method, route, response.status().as_u16(), secs);
    response
}

type Getter = fn(&QueueStats) -> f64;

/// Per-queue series: name, type, help, value.
#[allow(clippy::cast_precision_loss)] // Counters far below 2^52.
const QUEUE_SERIES: [(&str, &str, &str, Getter); 22] = [
    (
        "synap_queue_bytes",
        "gauge",
        "Message bytes held (bodies and headers, queued and dead-lettered).",
        |s| s.bytes as f64,
    ),
    (
        "synap_queue_depth",
        "gauge",
        "Ready plus delayed messages.",
        |s| s.depth as f64,
    ),
    (
        "synap_queue_ready",
        "gauge",
        "Messages deliverable now.",
        |s| s.ready as f64,
    ),
    (
        "synap_queue_delayed",
        "gauge",
        "Messages waiting for a delay.",
        |s| s.delayed as f64,
    ),
    (
        "synap_queue_in_flight",
        "gauge",
        "Leased, unacked messages.",
        |s| s.in_flight as f64,
    ),
    (
        "synap_queue_dead_letter",
        "gauge",
        "Entries in the dead-letter queue.",
        |s| s.dead_letter_count as f64,
    ),
    (
        "synap_queue_consumers",
        "gauge",
        "Distinct recent consumer ids.",
        |s| s.consumers as f64,
    ),
    (
        "synap_queue_waiters",
        "gauge",
        "Parked long-poll consumers.",
        |s| s.waiters as f64,
    ),
    (
        "synap_queue_published_total",
        "counter",
        "Messages published.",
        |s| s.published_total as f64,
    ),
    (
        "synap_queue_consumed_total",
        "counter",
        "Deliveries.",
        |s| s.consumed_total as f64,
    ),
    ("synap_queue_acked_total", "counter", "Acks.", |s| {
        s.acked_total as f64
    }),
    ("synap_queue_nacked_total", "counter", "Nacks.", |s| {
        s.nacked_total as f64
    }),
    (
        "synap_queue_lease_expired_total",
        "counter",
        "Leases that ran out.",
        |s| s.lease_expired_total as f64,
    ),
    (
        "synap_queue_dead_lettered_total",
        "counter",
        "Messages dead-lettered.",
        |s| s.dead_lettered_total as f64,
    ),
    (
        "synap_queue_cancelled_total",
        "counter",
        "Jobs cancelled.",
        |s| s.cancelled_total as f64,
    ),
    (
        "synap_queue_kept_jobs",
        "gauge",
        "Finished jobs kept for lookup.",
        |s| s.kept_jobs as f64,
    ),
    (
        "synap_queue_schedules",
        "gauge",
        "Schedules of the queue.",
        |s| s.schedules as f64,
    ),
    (
        "synap_queue_avg_wait_seconds",
        "gauge",
        "Mean ready-to-delivery time, last 1000 deliveries.",
        |s| s.avg_wait_time_ms / 1000.0,
    ),
    (
        "synap_queue_paused",
        "gauge",
        "1 while the queue is paused (it delivers nothing), else 0.",
        |s| f64::from(u8::from(s.paused)),
    ),
    (
        "synap_queue_held_back",
        "gauge",
        "Ready messages no consumer may take now (pause, rate limit, max_in_flight, group limits).",
        |s| s.held_back as f64,
    ),
    (
        "synap_queue_groups",
        "gauge",
        "Message groups holding messages.",
        |s| s.groups as f64,
    ),
    (
        "synap_queue_rate_limited_until_ms",
        "gauge",
        "Unix ms before which nothing is delivered (a worker's rate limit or a full rate window); 0 when not rate limited.",
        |s| s.rate_limited_until_ms.map_or(0.0, |t| t.0 as f64),
    ),
];

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(s): State<AppState>,
    super::auth::Who(who): super::auth::Who,
) -> Result<Response, ApiError> {
    // Every queue's figures: full access or `server:metrics:read`.
    who.require(
        crate::permissions::Kind::Server,
        crate::permissions::Action::Read,
        "metrics",
    )?;
    let queues = s.engine.snapshot().await?;
    let mut out = String::with_capacity(4096);
    for (name, kind, help, get) in QUEUE_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for q in &queues {
            let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", q.queue, get(q));
        }
    }
    let _ = writeln!(
        out,
        "# HELP synap_queues Queues held.\n# TYPE synap_queues gauge\nsynap_queues {}",
        queues.len()
    );
    let held: u64 = queues.iter().map(|q| q.bytes).sum();
    let c = &s.conns;
    let series: [(&str, &str, &str, u64); 5] = [
        (
            "synap_memory_held_bytes",
            "gauge",
            "Message bytes held across all queues.",
            held,
        ),
        (
            "synap_memory_limit_bytes",
            "gauge",
            "The memory budget: past it publishes are refused with memory_full.",
            s.max_held_bytes,
        ),
        (
            "synap_http_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
            c.accepted.load(Ordering::Relaxed),
        ),
        (
            "synap_http_connections_refused_total",
            "counter",
            "HTTP connections refused at the connection cap.",
            c.refused.load(Ordering::Relaxed),
        ),
        (
            "synap_http_connections_timed_out_total",
            "counter",
            "HTTP connections closed by the header or idle timeout.",
            c.timed_out.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP synap_accept_errors_total Failed accepts by listener (e.g. out of file \
         descriptors); each pauses that listener briefly.\n\
         # TYPE synap_accept_errors_total counter\n\
         synap_accept_errors_total{{listener=\"http\"}} {}\n\
         synap_accept_errors_total{{listener=\"rpc\"}} {}",
        c.accept_errors.load(Ordering::Relaxed),
        c.rpc_accept_errors.load(Ordering::Relaxed),
    );
    super::cluster::metrics(&s, &mut out);
    s.metrics.render(&mut out);
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for token in ["FOO1", "FOO2", "PROPFIND"] {
            let m = Method::from_bytes(token.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other");
        }
        let metrics = HttpMetrics::default();
        for token in ["FOO1", "FOO2", "FOO3"] {
            let m = Method::from_bytes(token.as_bytes()).unwrap();
            metrics.record(method_label(&m), "unmatched", 404, 0.001);
        }
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains(
                "synap_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 3"
            ),
            "{out}"
        );
        assert!(!out.contains("FOO"), "{out}");
    }

    #[test]
    fn flow_series_read_the_flow_stats() {
        let value = |stats: &QueueStats, name: &str| {
            let (_, _, _, get) = QUEUE_SERIES
                .iter()
                .find(|(n, ..)| *n == name)
                .unwrap_or_else(|| panic!("no series {name}"));
            get(stats)
        };
        let mut st = QueueStats::default();
        for name in [
            "synap_queue_paused",
            "synap_queue_held_back",
            "synap_queue_groups",
            "synap_queue_rate_limited_until_ms",
        ] {
            assert!(
                value(&st, name).abs() < f64::EPSILON,
                "{name} of an idle queue"
            );
        }
        st.paused = true;
        st.held_back = 3;
        st.groups = 2;
        st.rate_limited_until_ms = Some(synap_core::Millis(1_700_000_000_123));
        assert!((value(&st, "synap_queue_paused") - 1.0).abs() < f64::EPSILON);
        assert!((value(&st, "synap_queue_held_back") - 3.0).abs() < f64::EPSILON);
        assert!((value(&st, "synap_queue_groups") - 2.0).abs() < f64::EPSILON);
        let until = value(&st, "synap_queue_rate_limited_until_ms");
        assert_eq!(until.to_string(), "1700000000123", "whole ms, no exponent");
    }
}
