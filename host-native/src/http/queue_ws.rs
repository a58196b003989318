//! `GET /queue/{name}/ws`: the streaming connection for workers and producers.
//!
//! A connection with `prefetch > 0` attaches a consumer session in the engine with that much
//! credit (like AMQP's basic.consume): the engine leases ready messages to it while it has
//! credit and takes each credit back when its delivery ends (ack, nack, lease expiry); this
//! module only writes what the engine pushes. The client sends `ack`, `nack`, `extend`,
//! `progress`, `credit` and `publish` frames and gets one confirm per frame, in order, so
//! producers can pipeline publishes. Frames that have already arrived together are answered together: their
//! commands reach the engine in one request, in order, and their confirms are written with one
//! flush. When the socket closes, the session is detached and the engine gives back the
//! messages it still holds. With `progress=true` the connection is also sent a `progress`
//! frame for each progress report of the queue's jobs. The frame format is documented in
//! docs/api.md.
//!
//! Every close the server starts has a status code (ws_close.rs): 1001 at shutdown, 1009
//! after a client frame over `max_body_bytes` (answered first with a `payload_too_large`
//! error frame), 1000 after an error frame that ends the connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use synap_core::{Command, Delivery, Event, SessionId};
use synap_wire::{self as w, QueueServerFrame as Frame};
use tokio::sync::{broadcast, mpsc};

use super::AppState;
use super::error::{ApiError, ApiQuery, QueueName, WsUpgrade};
use super::wire::{ack_command, delivery, extend_command, nack_command, publish_message};
use super::ws_close;
use crate::cluster::NotServing;
use crate::engine_task::{SESSION_SINK, SessionPush};
use crate::handle::Failure;
use crate::permissions::{Action, Kind};
use crate::settings::secs_to_ms;

mod frames;
use frames::{
    Call, End, FrameHead, Slot, answer, binary_frame, consume_error, error_frame, not_an_object,
    text,
};

/// Most credit one connection may ask for when it connects.
const MAX_PREFETCH: u32 = 1000;
/// Most client frames read and answered together.
const MAX_BATCH: usize = 256;
/// The WebSocket read buffer: tungstenite's default of 128 KiB is allocated per connection,
/// most of the memory an idle worker's connection held; frames larger than it still arrive.
pub(crate) const WS_READ_BUFFER: usize = 8 << 10;
/// Bytes of frames written before a write reaches the socket (the connection flushes after
/// each batch of confirms or pushes anyway).
pub(crate) const WS_WRITE_BUFFER: usize = 32 << 10;
/// Longest frame `id` (as JSON text): it is echoed back, so it is kept small.
const MAX_ID_BYTES: usize = 256;

/// Connection options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsQuery {
    #[serde(default)]
    consumer_id: Option<String>,
    /// Unacked messages pushed at most (default 16; 0 = publish-only connection).
    #[serde(default)]
    prefetch: Option<u32>,
    /// Lease seconds; the queue's ack deadline when absent.
    #[serde(default)]
    ack_deadline: Option<f64>,
    /// Also push a `progress` frame whenever a job of the queue reports progress (needs
    /// `read` on the queue).
    #[serde(default)]
    progress: bool,
    /// The API key, for browser clients that cannot set headers (read by the auth layer).
    #[allow(dead_code)]
    #[serde(default)]
    api_key: Option<String>,
}

struct Conn {
    s: AppState,
    /// Who connected: each frame's command is checked against it.
    who: crate::permissions::Caller,
    queue: String,
    consumer_id: String,
    lease_ms: Option<u64>,
    prefetch: u32,
    /// The engine session pushing to this connection, once attached.
    session: Option<SessionId>,
    /// The server's events, when the connection watches progress (`progress=true`).
    events: Option<broadcast::Receiver<Arc<Event>>>,
}

/// `GET /queue/{name}/ws?consumer_id=&prefetch=&ack_deadline=`.
pub(crate) async fn ws(
    State(s): State<AppState>,
    super::auth::Who(who): super::auth::Who,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<WsQuery>,
    WsUpgrade(upgrade): WsUpgrade,
) -> Result<Response, ApiError> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefetch = q.prefetch.unwrap_or(16);
    if prefetch > MAX_PREFETCH {
        return Err(ApiError::bad(format!("prefetch: at most {MAX_PREFETCH}")));
    }
    let lease_ms = q
        .ack_deadline
        .map(|d| secs_to_ms("ack_deadline", d))
        .transpose()?;
    // Connecting needs `consume` on the queue for a consuming connection, `publish` for a
    // publish-only one (refused with a 403 before the upgrade); each frame is checked too.
    let need = if prefetch > 0 {
        Action::Consume
    } else {
        Action::Publish
    };
    who.require(Kind::Queue, need, &queue)?;
    if q.progress {
        who.require(Kind::Queue, Action::Read, &queue)?;
    }
    // Connecting declares the queue (get-or-create, like AMQP's queue.declare), so a worker
    // may connect before the first publish; an existing queue keeps its config. Declaring is
    // creating: only for callers who may `admin` the queue (others need it to exist).
    if who.may(Kind::Queue, Action::Admin, &queue) {
        let declare = Command::CreateQueue {
            queue: queue.clone(),
            config: None,
        };
        s.engine.call(declare).await?;
    }
    if let Some(id) = &q.consumer_id {
        synap_core::input::check_id("consumer_id", id, s.max_id_bytes)?;
    }
    let consumer_id = q
        .consumer_id
        .unwrap_or_else(|| format!("ws-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    // A client frame is a request body by another route: the same limit applies, instead of
    // axum's defaults (16 MiB frames, 64 MiB messages).
    let limit = s.max_body_bytes;
    let events = q.progress.then(|| s.events.subscribe());
    let conn = Conn {
        events,
        s,
        who,
        queue,
        consumer_id,
        lease_ms,
        prefetch,
        session: None,
    };
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| conn.run(socket))
        .into_response())
}

impl Conn {
    async fn run(mut self, mut socket: WebSocket) {
        let mut pushes = match self.attach().await {
            Ok(pushes) => pushes,
            Err(f) => {
                // Attaching fails the same way on every retry (an unknown queue, too many
                // sessions, a bad lease), so report it and close.
                let e = ApiError::from(f);
                let frame = consume_error(e.message().to_owned(), e.code());
                ws_close::send_last(
                    &mut socket,
                    vec![text(&frame), ws_close::done("consume failed")],
                )
                .await;
                return;
            }
        };
        let hello = Frame::Connected {
            queue: self.queue.clone(),
            consumer_id: self.consumer_id.clone(),
            prefetch: self.prefetch,
        };
        if socket.send(text(&hello)).await.is_ok() {
            self.serve(&mut socket, pushes.as_mut()).await;
        }
        if let Some(session_id) = self.session {
            // The engine gives back every message the session still holds, written to the
            // socket or not, as AMQP requeues a closed channel's unacked deliveries.
            let detach = Command::Detach {
                session_id,
                give_back: true,
            };
            let _ = self.s.engine.call(detach).await;
        }
    }

    /// Attaches the connection's session when it consumes (`prefetch > 0`); the pushes it
    /// will receive.
    async fn attach(&mut self) -> Result<Option<mpsc::Receiver<SessionPush>>, Failure> {
        if self.prefetch == 0 {
            return Ok(None);
        }
        let (sink, pushes) = mpsc::channel(SESSION_SINK);
        let cmd = Command::Attach {
            queue: self.queue.clone(),
            consumer_id: Some(self.consumer_id.clone()),
            credit: self.prefetch,
            lease_ms: self.lease_ms,
        };
        self.who.check(&cmd)?;
        let (session_id, _) = self.s.engine.attach(cmd, sink).await?;
        self.session = Some(session_id);
        Ok(Some(pushes))
    }

    /// Moves frames both ways until the socket ends, the engine ends the session, or the
    /// server stops.
    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        mut pushes: Option<&mut mpsc::Receiver<SessionPush>>,
    ) {
        let mut shutdown = self.s.shutdown.clone();
        let mut events = self.events.take();
        loop {
            tokio::select! {
                event = async { events.as_mut().expect("guarded").recv().await }, if events.is_some() => {
                    match event {
                        Ok(event) => {
                            if let Some(frame) = progress_frame(&event, &self.queue)
                                && socket.send(text(&frame)).await.is_err()
                            {
                                break;
                            }
                        }
                        // A watcher too slow for the broadcast buffer misses progress reports
                        // (never jobs): later ones still come.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => events = None,
                    }
                }
                push = async { pushes.as_mut().expect("guarded").recv().await }, if pushes.is_some() => {
                    let rx = pushes.as_mut().expect("guarded");
                    let ended = match push {
                        Some(SessionPush::Messages(messages)) => {
                            match write_deliveries(socket, messages, rx).await {
                                Some(ended) => ended,
                                None => break,
                            }
                        }
                        Some(SessionPush::Ended) | None => true,
                    };
                    if ended {
                        self.session = None;
                        let (frame, why) = self.ended_frame();
                        let last = vec![text(&frame), ws_close::done(why)];
                        ws_close::send_last(socket, last).await;
                        break;
                    }
                }
                incoming = socket.recv() => {
                    let (frames, end) = match incoming {
                        Some(Ok(Message::Text(text))) => self.read_ready(socket, Some(text)).await,
                        Some(Ok(Message::Binary(_))) => (vec![None], None),
                        Some(Ok(Message::Close(_))) => (Vec::new(), Some(End::Closed)),
                        Some(Err(e)) if ws_close::is_too_big(&e) => (Vec::new(), Some(End::TooBig)),
                        Some(Err(_)) | None => (Vec::new(), Some(End::Failed)),
                        Some(Ok(_)) => continue,
                    };
                    if !frames.is_empty() && !self.on_frames(socket, frames).await {
                        break;
                    }
                    if let Some(end) = end {
                        self.end(socket, end).await;
                        break;
                    }
                }
                () = super::stopped(&mut shutdown) => {
                    ws_close::send_last(socket, vec![ws_close::going_away()]).await;
                    break;
                }
            }
        }
    }

    /// The last frame when the engine ended the session: on a cluster node that is no longer
    /// the leader, its sessions ended with the old term (`not_leader` naming the new leader,
    /// or `no_leader`, so a client reconnects there); otherwise the queue was deleted.
    fn ended_frame(&self) -> (Frame, &'static str) {
        if let Some(v) = self.s.engine.cluster_node().map(|c| c.view())
            && v.role != "leader"
        {
            let e = ApiError::not_serving(match v.leader {
                Some(l) => NotServing::NotLeader(l),
                None => NotServing::NoLeader,
            });
            return (
                consume_error(e.message().to_owned(), e.code()),
                "not leader",
            );
        }
        let error = format!("queue not found: {}", self.queue);
        (consume_error(error, "queue_not_found"), "queue not found")
    }

    /// Ends the connection after the client's side ended as `end` says.
    async fn end(&self, socket: &mut WebSocket, end: End) {
        match end {
            End::Closed => ws_close::answer_close(socket).await,
            End::TooBig => {
                let limit = self.s.max_body_bytes;
                let frame = Frame::Error {
                    op: None,
                    id: None,
                    error: format!(
                        "a client frame or message may be at most {limit} bytes (max_body_bytes); \
                         closing"
                    ),
                    code: Some("payload_too_large".into()),
                };
                ws_close::send_last(socket, vec![text(&frame), ws_close::too_big()]).await;
            }
            End::Failed => {}
        }
    }

    /// `first` and the frames that have already arrived after it (up to `MAX_BATCH` frames,
    /// or frames of `max_body_bytes` together), to be answered together (`None` for a binary
    /// frame); and how the socket ended after them, if it did.
    async fn read_ready(
        &self,
        socket: &mut WebSocket,
        first: Option<Utf8Bytes>,
    ) -> (Vec<Option<Utf8Bytes>>, Option<End>) {
        let mut bytes = first.as_ref().map_or(0, |t| t.len());
        let mut frames = vec![first];
        while frames.len() < MAX_BATCH && bytes < self.s.max_body_bytes {
            // Only what is ready: a pending read ends the batch.
            let ready = std::future::poll_fn(|cx| Poll::Ready(socket.poll_next_unpin(cx))).await;
            match ready {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(Message::Text(text)))) => {
                    bytes += text.len();
                    frames.push(Some(text));
                }
                Poll::Ready(Some(Ok(Message::Binary(_)))) => frames.push(None),
                Poll::Ready(Some(Ok(Message::Close(_)))) => return (frames, Some(End::Closed)),
                Poll::Ready(Some(Err(e))) if ws_close::is_too_big(&e) => {
                    return (frames, Some(End::TooBig));
                }
                Poll::Ready(Some(Err(_)) | None) => return (frames, Some(End::Failed)),
                Poll::Ready(Some(Ok(_))) => {}
            }
        }
        (frames, None)
    }

    /// Answers client frames read together: their commands go to the engine in one request,
    /// and their confirms are written in frame order with one flush. False when the connection
    /// should end.
    async fn on_frames(&mut self, socket: &mut WebSocket, frames: Vec<Option<Utf8Bytes>>) -> bool {
        let mut cmds = Vec::new();
        let slots: Vec<Slot> = frames
            .iter()
            .map(
                |text| match text.as_ref().map(|t| self.prepare(t.as_str())) {
                    None => Slot::Answer(Box::new(binary_frame())),
                    Some(Err(v)) => Slot::Answer(v),
                    Some(Ok((call, cmd))) => {
                        cmds.push(cmd);
                        Slot::Call(call)
                    }
                },
            )
            .collect();
        let mut replies = if cmds.is_empty() {
            Ok(Vec::new().into_iter())
        } else {
            match self.s.engine.call_many(cmds).await {
                Ok(r) => r.wait().await.map(Vec::into_iter),
                Err(f) => Err(f),
            }
        };
        for slot in slots {
            let answer = match slot {
                Slot::Answer(v) => *v,
                Slot::Call(call) => {
                    let reply = match &mut replies {
                        Ok(r) => r.next().unwrap_or(Err(Failure::Unavailable)),
                        Err(_) => Err(Failure::Unavailable),
                    };
                    answer(call, reply)
                }
            };
            if socket.feed(text(&answer)).await.is_err() {
                return false;
            }
        }
        socket.flush().await.is_ok()
    }

    /// Reads one client frame: the command it asks for, or (as the error) its answer when it
    /// asks for none the engine could run.
    fn prepare(&self, text: &str) -> Result<(Call, Command), Box<Frame>> {
        if !text.trim_start().starts_with('{') {
            return Err(Box::new(not_an_object()));
        }
        // A frame carries one message at most: past the limit of a one-message request body,
        // only its `op` and `id` are read (the rest is skipped, never built), to answer the
        // call with the error `POST /queue/{name}/publish` would give.
        let limit = super::single_body_bytes(self.s.max_body_bytes, self.s.max_message_bytes);
        let parsed = if text.len() > limit {
            serde_json::from_str::<FrameHead<'_>>(text).map(|head| (head, None))
        } else {
            // Fields stay raw text (borrowed from the frame) until their op's type reads them,
            // so a byte array becomes bytes, never a tree of 32-byte JSON values.
            serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
                .map(|mut fields| (FrameHead::take(&mut fields), Some(fields)))
        };
        let Ok((head, fields)) = parsed else {
            return Err(Box::new(not_an_object()));
        };
        let op = head.op();
        let id = match head.id() {
            Ok(id) => id,
            Err(e) => return Err(Box::new(error_frame(&op, Value::Null, &e))),
        };
        let command = match fields {
            Some(fields) => self.command(&op, &fields),
            None => Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("frame is {} bytes, the limit is {limit}", text.len()),
            )),
        };
        // The permission check of every command: a refused frame gets a `forbidden` error
        // frame and never reaches the engine.
        let command =
            command.and_then(|cmd| self.who.check(&cmd).map(|()| cmd).map_err(ApiError::from));
        match command {
            Ok(cmd) => Ok((Call { op, id }, cmd)),
            Err(e) => Err(Box::new(error_frame(&op, id, &e))),
        }
    }

    /// The command a frame's op and fields ask for.
    fn command(&self, op: &str, fields: &BTreeMap<String, &RawValue>) -> Result<Command, ApiError> {
        let parse_err = |e: serde_json::Error| ApiError::bad(format!("invalid {op} frame: {e}"));
        // The op's fields as one JSON object again (raw values are written back verbatim).
        let body = serde_json::to_string(fields).map_err(parse_err)?;
        let queue = self.queue.clone();
        match op {
            "publish" => {
                let p: w::PublishRequest = serde_json::from_str(&body).map_err(parse_err)?;
                let message = publish_message(p)?;
                Ok(Command::Publish { queue, message })
            }
            "ack" => {
                let f: w::AckRequest = serde_json::from_str(&body).map_err(parse_err)?;
                ack_command(&f, queue)
            }
            "nack" => {
                let f: w::NackRequest = serde_json::from_str(&body).map_err(parse_err)?;
                nack_command(f, queue)
            }
            "extend" => {
                let f: w::ExtendRequest = serde_json::from_str(&body).map_err(parse_err)?;
                extend_command(&f, queue)
            }
            "progress" => {
                let f: w::ProgressRequest = serde_json::from_str(&body).map_err(parse_err)?;
                Ok(Command::Progress {
                    queue,
                    message_id: super::wire::parse_message_id(&f.message_id)?,
                    lease: f.lease.map(synap_core::LeaseToken),
                    progress: synap_core::Json::from_value(&f.progress),
                    extend_ms: super::wire::opt_ms("extend", f.extend)?,
                })
            }
            "credit" => {
                let f: w::CreditRequest = serde_json::from_str(&body).map_err(parse_err)?;
                let session_id = self.session.ok_or_else(|| {
                    ApiError::bad("credit needs a consuming connection (prefetch > 0)")
                })?;
                Ok(Command::SessionCredit {
                    session_id,
                    credit: f.credit,
                })
            }
            _ => Err(ApiError::bad(
                "op must be ack, nack, extend, progress, credit or publish",
            )),
        }
    }
}

/// Writes pushed deliveries as `message` frames, with the pushes already waiting behind them,
/// and one flush. `None` when the socket failed (the session still holds the messages, so the
/// detach gives them back); otherwise whether the engine ended the session meanwhile.
async fn write_deliveries(
    socket: &mut WebSocket,
    first: Vec<Delivery>,
    rx: &mut mpsc::Receiver<SessionPush>,
) -> Option<bool> {
    // Pushes that are already waiting (one per ack the engine answered in the same turn, say)
    // are written behind the first with one flush.
    let mut batch = first;
    let mut ended = false;
    for _ in 0..MAX_BATCH {
        for m in &batch {
            socket.feed(text(&Frame::Message(delivery(m)))).await.ok()?;
        }
        match rx.try_recv() {
            Ok(SessionPush::Messages(more)) => batch = more,
            Ok(SessionPush::Ended) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    socket.flush().await.ok()?;
    Some(ended)
}

/// The `progress` frame of an engine event, when it is a progress report of `queue`.
fn progress_frame(event: &Event, queue: &str) -> Option<Frame> {
    match event {
        Event::Progress {
            queue: q,
            message_id,
            progress,
            at,
        } if &**q == queue => Some(Frame::Progress {
            message_id: message_id.to_string(),
            progress: progress.to_value(),
            at: at.0,
        }),
        _ => None,
    }
}

/// What the connection does with one client frame (`text`, or `None` for a binary frame): the
/// command it runs, or the answer it sends without one. For the property tests.
#[cfg(test)]
pub(crate) fn frame_outcome(s: AppState, text: Option<&str>) -> Result<Command, Box<Frame>> {
    let conn = Conn {
        s,
        who: crate::permissions::Principal::anonymous(),
        queue: "q".into(),
        consumer_id: "c".into(),
        lease_ms: None,
        prefetch: 0,
        session: None,
        events: None,
    };
    match text {
        None => Err(Box::new(binary_frame())),
        Some(t) => conn.prepare(t).map(|(_, cmd)| cmd),
    }
}
