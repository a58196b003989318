//! Bodies around a request and its answer: the request body must arrive within the body
//! timeout (and before the shutdown grace period ends), and the answer's end (written or
//! dropped) tells the watchdog the request is over.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::track::Track;

/// The error a request body that did not arrive in time ends with; routes answer it with
/// 408 `request_timeout` (see `http::error::body_bytes`).
#[derive(Debug)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// The error a request body still arriving when the shutdown grace period ends with; routes
/// answer it with 503 `shutting_down` (see `http::error::body_bytes`).
#[derive(Debug)]
pub(crate) struct ShuttingDown;

impl std::fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server is shutting down and the request body did not arrive in time")
    }
}

impl std::error::Error for ShuttingDown {}

/// A request body with a deadline, which starts when the route first reads it, and cut short
/// when the shutdown grace period ends.
pub(crate) struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Turns true when the grace period is over.
    cut: watch::Receiver<bool>,
    /// Resolves once `cut` is true; made when the body first has to wait.
    cut_wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl TimedBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration, cut: watch::Receiver<bool>) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            cut,
            cut_wait: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))));
        }
        let cut = &this.cut;
        let cut_wait = this.cut_wait.get_or_insert_with(|| {
            let mut cut = cut.clone();
            Box::pin(async move {
                if cut.wait_for(|cut| *cut).await.is_err() {
                    // No one left to cut: the body timeout still applies.
                    std::future::pending::<()>().await;
                }
            })
        });
        if cut_wait.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(ShuttingDown))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body that tells the connection's watchdog when the answer is over.
pub(crate) struct AnswerBody {
    inner: axum::body::Body,
    track: Arc<Track>,
}

impl AnswerBody {
    /// Counts a request as being answered until this body is dropped.
    pub(crate) fn new(inner: axum::body::Body, track: Arc<Track>) -> Self {
        Self { inner, track }
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        self.track.request_ended();
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
