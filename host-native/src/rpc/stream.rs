//! Push consumers over SynapRPC (a Synap extension; no official SDK sends these): `QSTREAM`
//! attaches a consumer session of the engine to the connection, and its deliveries arrive as
//! push frames while it has credit, without a request per message.
//!
//! - `QSTREAM queue [consumer_id [prefetch [lease_secs]]]` → `{session_id, consumer_id,
//!   prefetch}`; prefetch (default 64) is the credit: deliveries pushed and not yet acked,
//!   nacked or expired.
//! - Each delivery is pushed as `[0xFFFFFFFF, {"Ok": {type: "message", session_id, queue, id,
//!   payload, priority, retry_count, max_retries, lease, deadline, timestamp, headers,
//!   group?}}]` (`group` only for a message published with one).
//!   `QACK`/`QNACK` settle it (under its lease) and return its credit to the session.
//! - `QCREDIT session_id n` grants more credit → the credit left after pushing what was ready.
//! - `QUNSTREAM session_id` detaches → Int messages given back to the queue.
//! - The engine ends a session whose queue is deleted: `{type: "ended", session_id}`.
//!
//! When the connection closes, its sessions detach and every message they hold is ready again
//! at once (counted as a failed delivery attempt), as for a queue WebSocket.

use std::sync::Arc;

use synap_core::{Command, Delivery, Reply, SessionId};
use tokio::sync::mpsc;

use super::conn::{Session, int_arg, opt_int_arg, text_arg};
use super::encode::FrameWriter;
use super::queue::{message_pairs, write_message_pairs};
use super::value::{PUSH_ID, RpcResult as Wire, Value};
use super::{Answer, engine_error, odd};
use crate::engine_task::{SESSION_SINK, SessionPush};

/// Consumer sessions one connection may open.
const MAX_STREAMS: usize = 16;
/// Credit of a `QSTREAM` that names none.
const DEFAULT_PREFETCH: i64 = 64;

/// Runs `command` if it is a streaming-consumer command.
pub(super) async fn run(s: &Arc<Session>, command: &str, args: &[Value]) -> Option<Answer> {
    Some(match command {
        "QSTREAM" => attach(s, args).await,
        "QCREDIT" => credit(s, args).await,
        "QUNSTREAM" => detach(s, args).await,
        _ => return None,
    })
}

/// A session id argument that names one of this connection's sessions.
fn own_session(s: &Session, args: &[Value]) -> Result<SessionId, String> {
    let id = int_arg(args, 0)?;
    let owned = s
        .streams
        .lock()
        .expect("streams lock")
        .iter()
        .find(|(sid, _)| i64::try_from(sid.0).ok() == Some(id))
        .map(|(sid, _)| *sid);
    owned.ok_or_else(|| format!("ERR no stream {id} on this connection"))
}

async fn attach(s: &Arc<Session>, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    let consumer = args
        .get(1)
        .and_then(Value::as_text)
        .filter(|c| !c.is_empty());
    let prefetch = opt_int_arg(args, 2)?.unwrap_or(DEFAULT_PREFETCH);
    let credit = u32::try_from(prefetch)
        .ok()
        .filter(|c| *c > 0)
        .ok_or("ERR argument 2 must be a positive integer")?;
    let lease_ms = opt_int_arg(args, 3)?
        .map(|secs| {
            u64::try_from(secs)
                .ok()
                .filter(|s| *s > 0)
                .map(|s| s.saturating_mul(1000))
                .ok_or("ERR argument 3 must be a positive integer")
        })
        .transpose()?;
    if s.streams.lock().expect("streams lock").len() >= MAX_STREAMS {
        return Err(format!(
            "ERR too many streams on this connection (limit {MAX_STREAMS})"
        ));
    }
    let (sink, pushes) = mpsc::channel(SESSION_SINK);
    let cmd = Command::Attach {
        queue: queue.clone(),
        consumer_id: consumer.map(String::from),
        credit,
        lease_ms,
    };
    s.check(&cmd)?;
    let (session_id, consumer_id) = s.ctx.engine.attach(cmd, sink).await.map_err(engine_error)?;
    let forwarder = tokio::spawn(forward(Arc::clone(s), session_id, pushes));
    s.streams
        .lock()
        .expect("streams lock")
        .push((session_id, forwarder.abort_handle()));
    Ok(Value::map([
        ("session_id", Value::count(session_id.0)),
        ("consumer_id", Value::Str(consumer_id)),
        ("prefetch", Value::Int(i64::from(credit))),
    ]))
}

/// A delivery's push frame, written straight from the delivery: `{type, session_id, queue}`
/// and then `message_value`'s pairs.
fn delivery_frame(session_id: SessionId, d: &Delivery) -> Vec<u8> {
    let group = d.group.as_ref().map_or(0, |g| g.len());
    let size = d.payload.as_ref().map_or(0, |p| p.len()) + d.queue.len() + group + 256;
    let mut w = FrameWriter::ok(PUSH_ID, size);
    w.map(3 + message_pairs(d));
    w.key("type");
    w.str("message");
    w.key("session_id");
    w.count(session_id.0);
    w.key("queue");
    w.str(&d.queue);
    write_message_pairs(&mut w, d);
    w.finish()
}

/// Writes a session's deliveries as push frames, each lease recorded so `QACK`/`QNACK` act
/// under it, until the engine ends the session or the connection closes.
async fn forward(s: Arc<Session>, session_id: SessionId, mut pushes: mpsc::Receiver<SessionPush>) {
    while let Some(push) = pushes.recv().await {
        match push {
            SessionPush::Messages(messages) => {
                for d in &messages {
                    s.hold(&d.queue, d.message_id, d.lease);
                    if s.out.send(delivery_frame(session_id, d)).await.is_err() {
                        return;
                    }
                }
            }
            SessionPush::Ended => break,
        }
    }
    // Ended by the engine (its queue was deleted) or its sink closed: say so, and forget it.
    s.streams
        .lock()
        .expect("streams lock")
        .retain(|(sid, _)| *sid != session_id);
    let ended = Value::map([
        ("type", Value::str("ended")),
        ("session_id", Value::count(session_id.0)),
    ]);
    s.send(PUSH_ID, &Wire::Ok(ended)).await;
}

async fn credit(s: &Session, args: &[Value]) -> Answer {
    let session_id = own_session(s, args)?;
    let n = u32::try_from(int_arg(args, 1)?)
        .ok()
        .filter(|n| *n > 0)
        .ok_or("ERR argument 1 must be a positive integer")?;
    let cmd = Command::SessionCredit {
        session_id,
        credit: n,
    };
    match s.ctx.engine.call(cmd).await.map_err(engine_error)? {
        Reply::SessionCredited { credit } => Ok(Value::Int(i64::from(credit))),
        r => Err(odd(&r)),
    }
}

async fn detach(s: &Session, args: &[Value]) -> Answer {
    let session_id = own_session(s, args)?;
    let forwarder = {
        let mut streams = s.streams.lock().expect("streams lock");
        let i = streams.iter().position(|(sid, _)| *sid == session_id);
        i.map(|i| streams.swap_remove(i).1)
    };
    if let Some(f) = forwarder {
        f.abort();
    }
    let cmd = Command::Detach {
        session_id,
        give_back: true,
    };
    match s.ctx.engine.call(cmd).await.map_err(engine_error)? {
        Reply::Detached { returned } => Ok(Value::count(returned)),
        r => Err(odd(&r)),
    }
}

/// Detaches every session of a closing connection, giving its messages back.
pub(super) async fn close(s: &Session) {
    let streams = std::mem::take(&mut *s.streams.lock().expect("streams lock"));
    for (session_id, forwarder) in streams {
        forwarder.abort();
        let cmd = Command::Detach {
            session_id,
            give_back: true,
        };
        let _ = s.ctx.engine.call(cmd).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::{message_frame, message_value};
    use super::super::value::encode_frame;
    use super::*;
    use synap_core::{Headers, LeaseToken, MessageId, Millis};

    /// The push frame built the slow way: a `Value` tree, then rmp-serde.
    fn tree_frame(session_id: SessionId, d: &Delivery) -> Vec<u8> {
        let mut fields = vec![
            (Value::str("type"), Value::str("message")),
            (Value::str("session_id"), Value::count(session_id.0)),
            (Value::str("queue"), Value::str(d.queue.as_ref())),
        ];
        if let Value::Map(rest) = message_value(d) {
            fields.extend(rest);
        }
        encode_frame(PUSH_ID, &Wire::Ok(Value::Map(fields)))
    }

    #[test]
    fn delivery_frames_have_the_bytes_of_their_value_trees() {
        let mut headers = Headers::default();
        headers.insert("trace".into(), "abc".into());
        headers.insert("kind".into(), "video".into());
        let mut d = Delivery {
            queue: "jobs".into(),
            message_id: MessageId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            message: None,
            payload: Some(vec![1u8; 200].into()),
            priority: 9,
            retry_count: 2,
            max_retries: 3,
            headers,
            lease: LeaseToken(u64::MAX),
            lease_deadline: Millis(1_700_000_123_456),
            published_at: Millis(1_700_000_000_999),
            group: None,
            children: None,
        };
        assert_eq!(
            delivery_frame(SessionId(7), &d),
            tree_frame(SessionId(7), &d)
        );
        assert_eq!(
            message_frame(5, &d),
            encode_frame(5, &Wire::Ok(message_value(&d))),
            "a QCONSUME answer"
        );
        d.payload = None;
        d.headers = Headers::default();
        assert_eq!(
            delivery_frame(SessionId(0), &d),
            tree_frame(SessionId(0), &d)
        );
        d.group = Some("user-7".into());
        assert_eq!(
            delivery_frame(SessionId(1), &d),
            tree_frame(SessionId(1), &d),
            "a grouped message"
        );
        assert_eq!(
            message_frame(6, &d),
            encode_frame(6, &Wire::Ok(message_value(&d)))
        );
    }
}
