//! One SynapRPC connection: a reader that decodes frames, hands the commands sent most to the
//! engine itself (fast.rs) and starts one task for each other request; a writer (writer.rs)
//! that answers what the reader handed it and sends the other tasks' replies and pushes in
//! the order they are ready; and the connection's state (authentication, leases it holds,
//! subscriptions), all released when it closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use synap_core::{Command, LeaseRef, LeaseToken, MessageId, SessionId};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::debug;

use super::fast::{self, Batch};
use super::value::{BadFrame, PUSH_ID, Request, RpcResult, Value, decode_request, encode_frame};
use super::writer::{self, Pending};
use super::{MAX_IN_FLIGHT, RpcContext, flow, kv, pubsub, queue, stream};
use crate::permissions::{Caller, Principal};

/// Frames waiting for the writer; a peer that stops reading holds back replies and pushes.
const OUT_QUEUE: usize = 512;
/// Requests handed to the writer and not taken by it yet.
const PENDING_QUEUE: usize = 64;
/// Leases one connection may hold unsettled; `QCONSUME` past it is refused.
pub(super) const MAX_HELD_LEASES: usize = 65_536;
/// Subscriptions one connection may open.
pub(super) const MAX_SUBSCRIPTIONS: usize = 64;
/// How long a closing connection waits to flush its last frames to a peer that is not reading.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// What a connection's request tasks share.
pub(super) struct Session {
    /// The server's shared context.
    pub(super) ctx: Arc<RpcContext>,
    /// Encoded frames for the writer.
    pub(super) out: mpsc::Sender<Vec<u8>>,
    /// Leases taken by `QCONSUME` and not settled yet, given back when the connection closes.
    pub(super) leases: Mutex<HashMap<(String, MessageId), LeaseToken>>,
    /// Set (under the `leases` lock) once the close has given the leases back: a lease taken
    /// later is given back at once (see `hold`).
    leases_closed: AtomicBool,
    /// Subscriptions opened by `SUBSCRIBE`: subscriber id and the task forwarding its pushes.
    pub(super) subs: Mutex<Vec<(String, AbortHandle)>>,
    /// Consumer sessions opened by `QSTREAM`, and the tasks forwarding their deliveries.
    pub(super) streams: Mutex<Vec<(SessionId, AbortHandle)>>,
    /// Turns true once the peer has shut down its write side: long-polls in flight end now.
    pub(super) eof: watch::Sender<bool>,
    /// Requests handed to the writer (fast.rs, `QCONSUME`) and not answered yet.
    pub(super) fast_in_flight: AtomicUsize,
    /// Who the connection authenticated as (`AUTH`): full access with auth off, nothing
    /// before an `AUTH` with auth on.
    caller: Mutex<Caller>,
}

impl Session {
    /// Records the lease of a message delivered on this connection, so `QACK`/`QNACK` act
    /// under it and the close gives it back; once closed, gives it back at once.
    pub(super) fn hold(&self, queue: &str, message_id: MessageId, lease: LeaseToken) {
        let mut leases = self.leases.lock().expect("leases lock");
        if !self.leases_closed.load(Ordering::Relaxed) {
            leases.insert((queue.to_owned(), message_id), lease);
            return;
        }
        drop(leases);
        let cmd = Command::GiveBack {
            queue: queue.into(),
            leases: vec![LeaseRef { message_id, lease }],
        };
        self.ctx.engine.spawn_call(cmd);
    }
}

impl Session {
    /// Who is calling.
    pub(super) fn who(&self) -> Caller {
        Arc::clone(&self.caller.lock().expect("caller lock"))
    }

    /// Runs a command as the connection's caller (see `EngineHandle::call_as`), with
    /// SynapRPC error texts.
    pub(super) async fn call(&self, cmd: Command) -> Result<synap_core::Reply, String> {
        let who = self.who();
        self.ctx
            .engine
            .call_as(&who, cmd)
            .await
            .map_err(super::engine_error)
    }

    /// Checks `cmd` against the connection's caller, with the SynapRPC error text.
    pub(super) fn check(&self, cmd: &Command) -> Result<(), String> {
        self.who().check(cmd).map_err(|d| super::forbidden(&d))
    }
}

impl Session {
    /// Resolves once the peer has shut down its write side (never, before that).
    pub(super) async fn reading_ended(&self) {
        let mut rx = self.eof.subscribe();
        let _ = rx.wait_for(|eof| *eof).await;
    }
}

impl Session {
    /// Queues a frame for the writer (dropped if the connection is closing).
    pub(super) async fn send(&self, id: u32, outcome: &RpcResult) {
        let _ = self.out.send(encode_frame(id, outcome)).await;
    }
}

/// How reading a frame ended.
pub(super) enum ReadError {
    /// The peer closed the connection, or the socket failed.
    Closed,
    /// A zero length prefix, or one over the limit.
    BadLength(u32),
    /// A frame was started and not finished within the body timeout.
    Slow,
}

/// Reads one frame body, checking the length prefix against `max` before reading on. The
/// body grows as bytes arrive, so a prefix alone cannot make the server allocate `max`. Once
/// the first byte is in, the rest of the frame must arrive within `timeout`.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix[..1])
        .await
        .map_err(|_| ReadError::Closed)?;
    let rest = async {
        r.read_exact(&mut prefix[1..])
            .await
            .map_err(|_| ReadError::Closed)?;
        let len = u32::from_le_bytes(prefix);
        if len == 0 || len as usize > max {
            return Err(ReadError::BadLength(len));
        }
        let mut body = Vec::with_capacity((len as usize).min(64 << 10));
        r.take(u64::from(len))
            .read_to_end(&mut body)
            .await
            .map_err(|_| ReadError::Closed)?;
        if body.len() != len as usize {
            return Err(ReadError::Closed);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, rest)
        .await
        .unwrap_or(Err(ReadError::Slow))
}

/// Whether the connection is idle: nothing in flight, no subscription or stream, no lease
/// held (a worker may process a message for long without a frame).
fn idle(session: &Session, tasks: &JoinSet<()>) -> bool {
    tasks.is_empty()
        && session.fast_in_flight.load(Ordering::Relaxed) == 0
        && session.subs.lock().expect("subs lock").is_empty()
        && session.streams.lock().expect("streams lock").is_empty()
        && session.leases.lock().expect("leases lock").is_empty()
}

/// What waiting for the next frame gave.
enum Next {
    Frame(Result<Vec<u8>, ReadError>),
    /// The server stops, or the connection was idle past its timeout.
    Stop,
}

/// Serves one connection until the peer closes it, sends a malformed frame or `QUIT`, or the
/// server stops. A peer that only shuts down its write side gets every answer still due
/// before the connection closes.
pub(super) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<RpcContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (rd, wr) = tcp.into_split();
    let mut rd = BufReader::new(rd);
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let ctx_auth_enabled = ctx.auth.enabled();
    let session = Arc::new(Session {
        ctx,
        out,
        leases: Mutex::new(HashMap::new()),
        leases_closed: AtomicBool::new(false),
        subs: Mutex::new(Vec::new()),
        streams: Mutex::new(Vec::new()),
        eof: watch::Sender::new(false),
        fast_in_flight: AtomicUsize::new(0),
        caller: Mutex::new(if ctx_auth_enabled {
            Arc::new(Principal::new("unauthenticated", Some(&[])).expect("no permissions parse"))
        } else {
            Principal::anonymous()
        }),
    });
    let (sent, sent_rx) = mpsc::channel(PENDING_QUEUE);
    let (settled, mut settled_rx) = oneshot::channel();
    let writer = writer::Writer::new(Arc::clone(&session), wr, sent_rx, settled);
    let writer = tokio::spawn(writer.run(out_rx));
    let mut batch = Batch::default();
    let mut authed = !session.ctx.auth.enabled();
    let mut tasks = JoinSet::new();
    let max = session.ctx.limits.max_frame_bytes;
    let (idle_timeout, body_timeout) = (session.ctx.idle_timeout, session.ctx.body_timeout);
    let mut eof = false;
    // One timer and one stop signal for the connection's life, not one per frame: the timer
    // is moved on only when it fires early.
    let idle_timer = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle_timer);
    let mut stop_rx = shutdown.clone();
    let stop = crate::http::stopped(&mut stop_rx);
    tokio::pin!(stop);
    loop {
        let waiting_since = Instant::now();
        let next = {
            let read = read_frame(&mut rd, max, body_timeout);
            tokio::pin!(read);
            loop {
                while tasks.try_join_next().is_some() {}
                // Checked here since the read goes first below: a stream of frames cannot
                // keep a stopping server from seeing it.
                if *shutdown.borrow() {
                    break Next::Stop;
                }
                tokio::select! {
                    biased;
                    r = &mut read => break Next::Frame(r),
                    () = &mut stop => break Next::Stop,
                    () = &mut idle_timer => {
                        let (due, now) = (waiting_since + idle_timeout, Instant::now());
                        if now < due {
                            idle_timer.as_mut().reset(due);
                            continue;
                        }
                        if idle(&session, &tasks) {
                            let msg = "ERR idle timeout: no request for too long; closing";
                            debug!(%peer, "SynapRPC connection idle; closing");
                            session.send(0, &RpcResult::Err(msg.into())).await;
                            break Next::Stop;
                        }
                        idle_timer.as_mut().reset(now + idle_timeout);
                    },
                }
            }
        };
        let Next::Frame(read) = next else {
            break;
        };
        let body = match read {
            Ok(body) => body,
            Err(ReadError::Closed) => {
                eof = true;
                break;
            }
            Err(ReadError::Slow) => {
                let msg = "ERR frame not complete within the body timeout; closing";
                debug!(%peer, "{msg}");
                session.send(0, &RpcResult::Err(msg.into())).await;
                break;
            }
            Err(ReadError::BadLength(len)) => {
                let msg = format!("ERR frame length {len} is outside 1..={max} bytes");
                debug!(%peer, "{msg}; closing");
                session.send(0, &RpcResult::Err(msg)).await;
                break;
            }
        };
        let req = match decode_request(&body) {
            Ok(req) => req,
            Err(BadFrame::ReservedId) => {
                let msg = "ERR request id u32::MAX is reserved for server push frames";
                session.send(PUSH_ID, &RpcResult::Err(msg.into())).await;
                continue;
            }
            Err(BadFrame::Malformed(e)) => {
                debug!(%peer, error = %e, "malformed SynapRPC frame; closing");
                session
                    .send(0, &RpcResult::Err(format!("ERR malformed frame: {e}")))
                    .await;
                break;
            }
        };
        while tasks.try_join_next().is_some() {}
        let mut conn = Conn {
            session: &session,
            authed: &mut authed,
            tasks: &mut tasks,
            batch: &mut batch,
            sent: &sent,
        };
        if !conn.on_request(req).await {
            break;
        }
        // Batched while more whole frames wait in the buffer: they are read without waiting.
        if batch.len() >= fast::MAX_BATCH || !frame_buffered(rd.buffer(), max) {
            batch.flush(&session, &sent).await;
        }
    }
    batch.flush(&session, &sent).await;
    if eof {
        // The peer shut down its write side (or closed): it may still read. What it asked
        // is answered, long-polls end with nothing now, unless the server stops or the
        // writer finds the peer gone. (Set before the writer sees the reader gone.)
        session.eof.send_replace(true);
    }
    drop(sent);
    if eof {
        loop {
            tokio::select! {
                joined = tasks.join_next() => if joined.is_none() { break },
                () = crate::http::stopped(&mut shutdown) => break,
                () = session.out.closed() => break,
            }
        }
    }
    tasks.shutdown().await;
    // What the writer holds: after an EOF every answer, else the batches only (long-polls are
    // withdrawn), so the leases are all recorded before the close gives them back. A writer
    // stuck on a peer that does not read is not waited for long: a lease it records after
    // the close goes back at once (`Session::hold`).
    tokio::select! {
        _ = &mut settled_rx => {}
        () = crate::http::stopped(&mut shutdown) => {}
        () = session.out.closed() => {}
        () = tokio::time::sleep(FLUSH_GRACE) => {}
    }
    close(&session).await;
    drop(session);
    let abort = writer.abort_handle();
    if tokio::time::timeout(FLUSH_GRACE, writer).await.is_err() {
        debug!(%peer, "peer not reading; closing without flushing");
        abort.abort();
    }
}

/// What handling one request touches.
struct Conn<'a> {
    session: &'a Arc<Session>,
    authed: &'a mut bool,
    tasks: &'a mut JoinSet<()>,
    batch: &'a mut Batch,
    sent: &'a mpsc::Sender<Pending>,
}

/// Whether `buf` starts with a whole frame (or a length prefix `read_frame` refuses at once).
fn frame_buffered(buf: &[u8], max: usize) -> bool {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return false;
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    len == 0 || len > max || buf.len() - 4 >= len
}

impl Conn<'_> {
    /// Handles one decoded request; false when the connection must close (`QUIT`).
    async fn on_request(&mut self, req: Request) -> bool {
        let session = self.session;
        let Request {
            id,
            command,
            mut args,
        } = req;
        let command = command.to_ascii_uppercase();
        match command.as_str() {
            // Answered in order, before any later request runs: the SDKs wait for it anyway.
            "AUTH" => {
                let outcome = auth(session, self.authed, &args).await;
                session.send(id, &outcome).await;
                return true;
            }
            "QUIT" => {
                session.send(id, &RpcResult::Ok(Value::str("OK"))).await;
                return false;
            }
            "PING" => {
                let reply = args
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Value::str("PONG"));
                session.send(id, &RpcResult::Ok(reply)).await;
                return true;
            }
            _ => {}
        }
        if !*self.authed {
            let msg = "NOAUTH Authentication required.";
            session.send(id, &RpcResult::Err(msg.into())).await;
            return true;
        }
        let in_flight = self.tasks.len() + session.fast_in_flight.load(Ordering::Relaxed);
        if in_flight >= MAX_IN_FLIGHT {
            let msg = format!("ERR too many requests in flight (limit {MAX_IN_FLIGHT})");
            session.send(id, &RpcResult::Err(msg)).await;
            return true;
        }
        if self
            .batch
            .take(session, id, &command, &mut args)
            .await
            .is_some()
        {
            return true;
        }
        // Fast commands read before this one reach the engine first.
        self.batch.flush(session, self.sent).await;
        if command == "QCONSUME" {
            // Handed to the writer, which answers it when the engine does: no task of its own.
            match queue::start_consume(session, id, &args).await {
                Ok(wait) => {
                    session.fast_in_flight.fetch_add(1, Ordering::Relaxed);
                    let _ = self.sent.send(Pending::Consume(wait)).await;
                }
                Err(frame) => {
                    let _ = session.out.send(frame).await;
                }
            }
            return true;
        }
        let session = Arc::clone(session);
        self.tasks.spawn(async move {
            let outcome = match dispatch(&session, &command, args).await {
                Ok(v) => RpcResult::Ok(v),
                Err(e) => RpcResult::Err(e),
            };
            session.send(id, &outcome).await;
        });
        true
    }
}

/// `AUTH token` (an API key, or the password of user `default`) or `AUTH user password`;
/// with auth off every `AUTH` is answered OK.
async fn auth(session: &Session, authed: &mut bool, args: &[Value]) -> RpcResult {
    let texts: Option<Vec<&str>> = args.iter().map(Value::as_text).collect();
    let auth = &session.ctx.auth;
    let who = match texts.as_deref() {
        Some(_) if !auth.enabled() => Some(Principal::anonymous()),
        Some([token]) => match auth.check_key(token).await {
            Some(who) => Some(who),
            None => auth.check_user("default", token).await,
        },
        Some([user, pass]) => auth.check_user(user, pass).await,
        _ => return RpcResult::Err("ERR invalid arguments for 'AUTH'".into()),
    };
    if let Some(who) = who {
        *session.caller.lock().expect("caller lock") = who;
        *authed = true;
        RpcResult::Ok(Value::str("OK"))
    } else {
        RpcResult::Err("WRONGPASS invalid username-password pair or user is disabled.".into())
    }
}

/// Runs one command (other than the connection commands above).
async fn dispatch(session: &Arc<Session>, command: &str, args: Vec<Value>) -> super::Answer {
    if let Some(reply) = queue::run(session, command, &args).await {
        return reply;
    }
    if let Some(reply) = stream::run(session, command, &args).await {
        return reply;
    }
    if let Some(reply) = flow::run(session, command, &args).await {
        return reply;
    }
    if let Some(reply) = kv::run(session, command, &args).await {
        return reply;
    }
    match pubsub::run(session, command, &args).await {
        Some(reply) => reply,
        None => Err(format!("ERR unknown command '{command}'")),
    }
}

/// Releases what the connection held: its subscriptions end and its unsettled messages go
/// back to their queues at once (as when a queue WebSocket closes).
async fn close(session: &Session) {
    stream::close(session).await;
    let subs = std::mem::take(&mut *session.subs.lock().expect("subs lock"));
    for (subscriber_id, forwarder) in subs {
        forwarder.abort();
        let cmd = Command::Unsubscribe {
            subscriber_id,
            patterns: None,
        };
        let _ = session.ctx.engine.call(cmd).await;
    }
    let leases = {
        let mut held = session.leases.lock().expect("leases lock");
        session.leases_closed.store(true, Ordering::Relaxed);
        std::mem::take(&mut *held)
    };
    if !leases.is_empty() {
        debug!(
            count = leases.len(),
            "SynapRPC connection closed holding leases"
        );
    }
    let mut by_queue: HashMap<String, Vec<LeaseRef>> = HashMap::new();
    for ((queue, message_id), lease) in leases {
        by_queue
            .entry(queue)
            .or_default()
            .push(LeaseRef { message_id, lease });
    }
    for (queue, leases) in by_queue {
        // Deliveries that ended meanwhile (acked, expired, queue deleted) are skipped.
        for chunk in leases.chunks(session.ctx.max_batch.max(1)) {
            let cmd = Command::GiveBack {
                queue: queue.clone(),
                leases: chunk.to_vec(),
            };
            let _ = session.ctx.engine.call(cmd).await;
        }
    }
}

/// The argument at `i` as text: `ERR missing argument i` or `ERR argument i must be a string`.
pub(super) fn text_arg(args: &[Value], i: usize) -> Result<&str, String> {
    match args.get(i) {
        None => Err(format!("ERR missing argument {i}")),
        Some(v) => v
            .as_text()
            .ok_or_else(|| format!("ERR argument {i} must be a string")),
    }
}

/// The argument at `i` as an integer (an `Int` or a decimal `Str`).
pub(super) fn int_arg(args: &[Value], i: usize) -> Result<i64, String> {
    match args.get(i) {
        None => Err(format!("ERR missing argument {i}")),
        Some(v @ (Value::Int(_) | Value::Str(_))) => v
            .as_int()
            .ok_or_else(|| format!("ERR argument {i} is not an integer")),
        Some(_) => Err(format!("ERR argument {i} must be an integer")),
    }
}

/// An optional integer argument: absent or of another type counts as absent, as in Synap; a
/// `Str` that is not a decimal integer is an error.
pub(super) fn opt_int_arg(args: &[Value], i: usize) -> Result<Option<i64>, String> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(Some(*n)),
        Some(Value::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("ERR argument {i} is not an integer")),
        _ => Ok(None),
    }
}

/// An optional integer argument that must not be negative (durations, counts, priorities).
pub(super) fn opt_uint_arg(args: &[Value], i: usize) -> Result<Option<u64>, String> {
    opt_int_arg(args, i)?
        .map(|n| u64::try_from(n).map_err(|_| format!("ERR argument {i} must not be negative")))
        .transpose()
}

/// Converts a core input error (see `synap_core::input`) to the protocol's error text.
pub(super) fn input_error(e: synap_core::Error) -> String {
    crate::http::wire_error(crate::handle::Failure::Core(e))
}
