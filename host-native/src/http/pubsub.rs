//! Pub/sub: `POST /pubsub/{topic}/publish`, and live delivery over WebSocket
//! (`GET /pubsub/ws?topics=`) and SSE (`GET /pubsub/sse?topics=`).
//!
//! A connection subscribes with credit equal to its channel's capacity; the engine pushes that
//! many messages at most, and the connection grants credit back as it writes frames, so a slow
//! client's backlog stays in the engine's bounded per-subscriber buffer (oldest dropped).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use synap_core::{Command, Json as CoreJson, PubMessage, Reply};
use synap_wire as w;
use tokio::sync::mpsc;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, WsUpgrade};
use super::queue::unexpected;
use super::wire::pub_message;
use super::ws_close;
use crate::handle::EngineHandle;

/// Messages a connection may hold between the engine and its socket (its credit).
const SINK_CAPACITY: usize = 256;
/// Largest frame or message a subscriber may send. Subscribers send nothing but control
/// frames (ping, close), so anything bigger is refused instead of buffered (axum's default
/// would accept 64 MiB per message).
const CLIENT_MESSAGE_LIMIT: usize = 4096;

/// `POST /pubsub/{topic}/publish`.
pub(crate) async fn publish(
    State(s): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    ApiJson(body): ApiJson<w::PubsubPublishRequest>,
) -> Result<Json<w::PubsubPublished>, ApiError> {
    let message = body
        .message
        .or(body.payload)
        .or(body.data)
        .ok_or_else(|| ApiError::bad("missing `message` (any JSON)"))?;
    let cmd = Command::PubsubPublish {
        topic,
        message: CoreJson::from_value(&message),
        headers: body.headers.or(body.metadata).unwrap_or_default(),
    };
    match s.engine.call(cmd).await? {
        Reply::PubsubPublished {
            message_id,
            topic,
            subscribers_matched,
        } => Ok(Json(w::PubsubPublished {
            message_id: message_id.to_string(),
            topic: topic.to_string(),
            subscribers_matched,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /pubsub/stats`.
pub(crate) async fn stats(State(s): State<AppState>) -> Result<Json<w::PubsubStats>, ApiError> {
    match s.engine.call(Command::PubsubStats).await? {
        Reply::PubsubStats(st) => Ok(Json(w::PubsubStats {
            subscribers: st.subscribers,
            subscriptions: st.subscriptions,
            wildcard_subscriptions: st.wildcard_subscriptions,
            topics: st.topics,
            messages_published: st.messages_published,
            messages_delivered: st.messages_delivered,
            messages_dropped: st.messages_dropped,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `?topics=a.*,b.#`.
#[derive(Deserialize)]
pub(crate) struct TopicsQuery {
    #[serde(default)]
    topics: Option<String>,
}

/// Splits the comma-separated list. A pattern ending in `.` is read as ending in `.#`: Synap's
/// Rust SDK puts patterns in the URL unencoded, so `logs.#` arrives as `logs.` with the `#`
/// taken for a URL fragment.
pub(crate) fn parse_topics(raw: Option<&str>) -> Result<Vec<String>, ApiError> {
    let topics: Vec<String> = raw
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.ends_with('.') {
                format!("{t}#")
            } else {
                t.to_owned()
            }
        })
        .collect();
    if topics.is_empty() {
        return Err(ApiError::bad(
            "at least one topic required in query param: ?topics=topic1,topic2",
        ));
    }
    Ok(topics)
}

/// Unsubscribes when the connection ends, however it ends.
struct Subscription {
    engine: EngineHandle,
    id: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.engine.spawn_call(Command::Unsubscribe {
            subscriber_id: self.id.clone(),
            patterns: None,
        });
    }
}

async fn subscribe(
    s: &AppState,
    topics: Vec<String>,
) -> Result<(Subscription, mpsc::Receiver<PubMessage>), ApiError> {
    let (tx, rx) = mpsc::channel(SINK_CAPACITY);
    let id = s.engine.subscribe(topics, tx).await?;
    let sub = Subscription {
        engine: s.engine.clone(),
        id,
    };
    Ok((sub, rx))
}

/// Grants back credit for `written` frames once the channel has drained or enough piled up, so
/// busy streams cost one engine round trip per batch rather than per message.
async fn regrant(sub: &Subscription, rx: &mpsc::Receiver<PubMessage>, written: &mut u32) {
    if *written > 0 && (rx.is_empty() || *written as usize >= SINK_CAPACITY / 4) {
        let cmd = Command::PubsubCredit {
            subscriber_id: sub.id.clone(),
            credit: *written,
        };
        let _ = sub.engine.call(cmd).await;
        *written = 0;
    }
}

/// `GET /pubsub/ws?topics=a.*,b.#`: first frame `{"type":"connected", subscriber_id, topics}`,
/// then one text frame per message. The client sends nothing but control frames (pings are
/// answered): a text or binary frame gets an `invalid_frame` error frame, and a message over
/// `CLIENT_MESSAGE_LIMIT` a `payload_too_large` one and close 1009. Shutdown closes with 1001.
/// A client's close unsubscribes at once.
pub(crate) async fn ws(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<TopicsQuery>,
    WsUpgrade(upgrade): WsUpgrade,
) -> Result<Response, ApiError> {
    let topics = parse_topics(q.topics.as_deref())?;
    let (sub, rx) = subscribe(&s, topics.clone()).await?;
    let shutdown = s.shutdown.clone();
    Ok(upgrade
        .max_message_size(CLIENT_MESSAGE_LIMIT)
        .read_buffer_size(super::queue_ws::WS_READ_BUFFER)
        .write_buffer_size(super::queue_ws::WS_WRITE_BUFFER)
        .max_frame_size(CLIENT_MESSAGE_LIMIT)
        .on_upgrade(move |socket| ws_loop(socket, sub, rx, topics, shutdown))
        .into_response())
}

/// A frame's JSON text. Wire types always serialize (string keys, finite numbers from the
/// engine), so the empty fallback is never sent.
fn to_text<T: serde::Serialize>(frame: &T) -> String {
    serde_json::to_string(frame).unwrap_or_default()
}

async fn ws_loop(
    mut socket: WebSocket,
    sub: Subscription,
    mut rx: mpsc::Receiver<PubMessage>,
    topics: Vec<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let hello = w::PubsubConnected {
        subscriber_id: sub.id.clone(),
        subscription_count: topics.len() as u64,
        topics,
    };
    if socket.send(Message::text(to_text(&hello))).await.is_err() {
        return;
    }
    let mut written = 0u32;
    let last: Vec<Message> = loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break Vec::new() };
                let frame = to_text(&pub_message(&m));
                if socket.send(Message::text(frame)).await.is_err() {
                    break Vec::new();
                }
                written += 1;
                regrant(&sub, &rx, &mut written).await;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    let frame = client_frame_error(
                        "invalid_frame",
                        "the pub/sub WebSocket takes no client frames but ping and close \
                         (choose topics with ?topics= when connecting)",
                    );
                    if socket.send(frame).await.is_err() {
                        break Vec::new();
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // Unsubscribed before the close is answered, so a publish from now on
                    // no longer counts this subscriber.
                    drop(sub);
                    ws_close::answer_close(&mut socket).await;
                    return;
                }
                Some(Err(e)) if ws_close::is_too_big(&e) => {
                    let error = client_frame_error(
                        "payload_too_large",
                        &format!(
                            "a client message may be at most {CLIENT_MESSAGE_LIMIT} bytes; closing"
                        ),
                    );
                    break vec![error, ws_close::too_big()];
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break Vec::new(),
            },
            () = super::stopped(&mut shutdown) => break vec![ws_close::going_away()],
        }
    };
    drop(sub);
    if !last.is_empty() {
        ws_close::send_last(&mut socket, last).await;
    }
}

/// An error frame answering a client frame: `{"type": "error", "error", "code"}`.
fn client_frame_error(code: &str, error: &str) -> Message {
    let frame = w::PubsubError {
        error: error.to_owned(),
        code: code.to_owned(),
    };
    Message::text(to_text(&frame))
}

/// `GET /pubsub/sse?topics=...`: a `connected` event, then `message` events whose data is the
/// same JSON as the WebSocket frames.
pub(crate) async fn sse(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<TopicsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let topics = parse_topics(q.topics.as_deref())?;
    let (sub, rx) = subscribe(&s, topics.clone()).await?;
    let hello = w::SseConnected {
        subscriber_id: sub.id.clone(),
        topics,
    };
    let first = SseEvent::default().event("connected").data(to_text(&hello));
    let state = SseState {
        sub,
        rx,
        written: 0,
        shutdown: s.shutdown.clone(),
        first: Some(first),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(first) = st.first.take() {
            return Some((Ok(first), st));
        }
        regrant(&st.sub, &st.rx, &mut st.written).await;
        let m = tokio::select! {
            m = st.rx.recv() => m?,
            () = super::stopped(&mut st.shutdown) => return None,
        };
        st.written += 1;
        let ev = SseEvent::default()
            .event("message")
            .data(to_text(&pub_message(&m)));
        Some((Ok(ev), st))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct SseState {
    sub: Subscription,
    rx: mpsc::Receiver<PubMessage>,
    written: u32,
    shutdown: tokio::sync::watch::Receiver<bool>,
    first: Option<SseEvent>,
}
