//! `GET /queue/{name}/ws`: the streaming connection for workers and producers.
//!
//! A connection with `prefetch > 0` attaches a consumer session in the engine with that much
//! credit (like AMQP's basic.consume): the engine leases ready messages to it while it has
//! credit and takes each credit back when its delivery ends (ack, nack, lease expiry); this
//! module only writes what the engine pushes. The client sends `ack`, `nack`, `extend`,
//! `credit` and `publish` frames and gets one confirm per frame, in order, so producers can
//! pipeline publishes. Frames that have already arrived together are answered together: their
//! commands reach the engine in one request, in order, and their confirms are written with one
//! flush. When the socket closes, the session is detached and the engine gives back the
//! messages it still holds. The frame format is documented in docs/api.md.
//!
//! Every close the server starts has a status code (ws_close.rs): 1001 at shutdown, 1009
//! after a client frame over `max_body_bytes` (answered first with a `payload_too_large`
//! error frame), 1000 after an error frame that ends the connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use synap_core::{Command, Delivery, Reply, SessionId};
use synap_wire::{self as w, QueueServerFrame as Frame};
use tokio::sync::mpsc;

use super::AppState;
use super::error::{ApiError, ApiQuery, QueueName, WsUpgrade};
use super::wire::{
    ack_command, delivery, extend_command, nack_action, nack_command, publish_message, published,
};
use super::ws_close;
use crate::engine_task::{SESSION_SINK, SessionPush};
use crate::handle::Failure;
use crate::permissions::{Action, Kind};
use crate::settings::secs_to_ms;

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
    let conn = Conn {
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
        loop {
            tokio::select! {
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
                        let error = format!("queue not found: {}", self.queue);
                        let frame = consume_error(error, "queue_not_found");
                        let last = vec![text(&frame), ws_close::done("queue not found")];
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
                "op must be ack, nack, extend, credit or publish",
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

/// A server frame as a text message. Wire frames always serialize (string keys, numbers from
/// the engine), so the empty fallback is never sent.
fn text(frame: &Frame) -> Message {
    Message::text(serde_json::to_string(frame).unwrap_or_default())
}

/// The confirm of a frame the engine answered.
fn answer(call: Call, reply: Result<Reply, Failure>) -> Frame {
    let id = (!call.id.is_null()).then_some(call.id);
    let ok = |action, lease_deadline, credit| Frame::Ok {
        op: call.op.clone(),
        id: id.clone(),
        action,
        lease_deadline,
        credit,
    };
    let confirm = match reply {
        Ok(Reply::Published(p)) => {
            let p = published(&p);
            Ok(Frame::Published {
                op: call.op.clone(),
                id: id.clone(),
                message_id: p.message_id,
                position: p.position,
                duplicate: p.duplicate,
            })
        }
        Ok(Reply::Acked) => Ok(ok(None, None, None)),
        Ok(Reply::Nacked { action }) => Ok(ok(Some(nack_action(action)), None, None)),
        Ok(Reply::Extended { lease_deadline, .. }) => Ok(ok(None, Some(lease_deadline.0), None)),
        Ok(Reply::SessionCredited { credit }) => Ok(ok(None, None, Some(credit))),
        Ok(other) => Err(super::queue::unexpected(&other)),
        Err(f) => Err(ApiError::from(f)),
    };
    confirm.unwrap_or_else(|e| error_frame(&call.op, id.unwrap_or(Value::Null), &e))
}

/// The error confirm of a frame.
fn error_frame(op: &str, id: Value, e: &ApiError) -> Frame {
    Frame::Error {
        op: Some(op.to_owned()),
        id: Some(id),
        error: e.message().to_owned(),
        code: Some(e.code().to_owned()),
    }
}

/// The answer to a frame that is not a JSON object.
fn not_an_object() -> Frame {
    Frame::Error {
        op: None,
        id: None,
        error: "a frame must be a JSON object".into(),
        code: Some("invalid_frame".into()),
    }
}

/// The answer to a binary frame: the protocol is JSON text frames.
fn binary_frame() -> Frame {
    Frame::Error {
        op: None,
        id: None,
        error: "binary frames are not accepted: send JSON objects as text frames".into(),
        code: Some("invalid_argument".into()),
    }
}

/// The frame sent before closing when consuming fails.
fn consume_error(error: String, code: &str) -> Frame {
    Frame::Error {
        op: Some("consume".into()),
        id: None,
        error,
        code: Some(code.to_owned()),
    }
}

/// How the client's side of the socket ended.
enum End {
    /// The client sent a close frame.
    Closed,
    /// A frame or message over the limit arrived (it was not read).
    TooBig,
    /// The connection failed or ended without a close frame.
    Failed,
}

/// A frame whose command went to the engine, waiting for its reply.
struct Call {
    op: String,
    id: Value,
}

/// A frame's place among the confirms of frames read together.
enum Slot {
    Answer(Box<Frame>),
    Call(Call),
}

/// What every frame may carry besides its op's fields, as raw JSON text.
#[derive(Deserialize)]
struct FrameHead<'a> {
    #[serde(default, borrow)]
    op: Option<&'a RawValue>,
    #[serde(default, borrow)]
    command: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
}

impl<'a> FrameHead<'a> {
    /// Takes the head's fields out of a frame's fields.
    fn take(fields: &mut BTreeMap<String, &'a RawValue>) -> Self {
        Self {
            op: fields.remove("op"),
            command: fields.remove("command"),
            id: fields.remove("id"),
        }
    }

    /// `op` (or its alias `command`); empty when absent or not a string.
    fn op(&self) -> String {
        self.op
            .or(self.command)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or_default()
    }

    /// The `id` to echo back; refused when long, since it is copied into the answer.
    fn id(&self) -> Result<Value, ApiError> {
        match self.id {
            Some(raw) if raw.get().len() > MAX_ID_BYTES => Err(ApiError::bad(format!(
                "id: at most {MAX_ID_BYTES} bytes of JSON"
            ))),
            Some(raw) => Ok(serde_json::from_str(raw.get()).unwrap_or(Value::Null)),
            None => Ok(Value::Null),
        }
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
    };
    match text {
        None => Err(Box::new(binary_frame())),
        Some(t) => conn.prepare(t).map(|(_, cmd)| cmd),
    }
}
