//! `GET /events`: the engine events the caller may see (`Principal::sees_event`: queues it may
//! read, topics it may subscribe to, keys it may read; all with full access) as server-sent
//! events, for the live dashboard.
//!
//! Each SSE event is named after the engine event's `type` (`observed`, `delivered`,
//! `wait_timed_out`, `pushed`, `session_ended`, `pub_sub`, `key_expired`, `progress`,
//! `job_waited`) and carries its JSON. A listener too slow for
//! the bounded broadcast buffer gets a `lagged` event with the number of events it missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use synap_core::Event;
use tokio::sync::broadcast::{self, error::RecvError};

use super::AppState;

fn sse_event(event: &Event) -> SseEvent {
    let name = match event {
        Event::Delivered { .. } => "delivered",
        Event::WaitTimedOut { .. } => "wait_timed_out",
        Event::PubSub { .. } => "pub_sub",
        Event::Observed(_) => "observed",
        Event::KeyExpired { .. } => "key_expired",
        Event::Pushed { .. } => "pushed",
        Event::SessionEnded { .. } => "session_ended",
        Event::Progress { .. } => "progress",
        Event::JobWaited { .. } => "job_waited",
    };
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default().event(name).data(data)
}

struct Listener {
    /// Only the events this caller may see are sent (see `Principal::sees_event`).
    who: crate::permissions::Caller,
    rx: broadcast::Receiver<Arc<Event>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    hello: bool,
}

/// `GET /events`.
pub(crate) async fn events(
    State(s): State<AppState>,
    super::auth::Who(who): super::auth::Who,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let state = Listener {
        who,
        rx: s.events.subscribe(),
        shutdown: s.shutdown.clone(),
        hello: true,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.hello {
            // An immediate first event lets clients know the stream is live.
            st.hello = false;
            let ev = SseEvent::default().event("connected").data("{}");
            return Some((Ok(ev), st));
        }
        let ev = loop {
            break tokio::select! {
                r = st.rx.recv() => match r {
                    Ok(event) if st.who.sees_event(&event) => sse_event(&event),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => SseEvent::default()
                        .event("lagged")
                        .data(json!({"skipped": n}).to_string()),
                    Err(RecvError::Closed) => return None,
                },
                () = super::stopped(&mut st.shutdown) => return None,
            };
        };
        Some((Ok(ev), st))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
