//! Queue commands: `QCREATE`, `QDELETE`, `QLIST`, `QPUBLISH`, `QCONSUME`, `QACK`, `QNACK`,
//! `QSTATS`, `QPURGE` (SYNAP_RPC.md §7), with Synap's flow-control arguments (flow.rs).
//! `QPUBLISH`, `QACK` and `QNACK` take the fast path
//! (fast.rs), and `QCONSUME` is answered by the connection's writer: parsed here, answered
//! without a task of their own. Priorities and retry limits are read from an `Int`
//! or a decimal `Str` (Python and TypeScript send strings), and `requeue` false in every
//! spelling the SDKs use. A message `QCONSUME` leases stays with the connection until it is
//! acked or nacked; the connection's close gives it back.

use std::sync::Arc;

use synap_core::{Command, Delivery, Error, MessageId, PublishMessage, QueueStats, Reply};

use super::conn::{MAX_HELD_LEASES, Session, opt_uint_arg, text_arg};
use super::encode::FrameWriter;
use super::value::Value;
use super::{Answer, engine_error, flow, odd};
use crate::handle::{Consuming, Failure};
use crate::settings::ApplySettings as _;

/// Runs `command` if it is a queue command.
pub(super) async fn run(s: &Arc<Session>, command: &str, args: &[Value]) -> Option<Answer> {
    Some(match command {
        "QCREATE" => create(s, args).await,
        "QDELETE" => delete(s, args).await,
        "QLIST" => list(s).await,
        "QSTATS" => stats(s, args).await,
        "QPURGE" => purge(s, args).await,
        _ => return None,
    })
}

async fn call(s: &Session, cmd: Command) -> Result<Reply, String> {
    s.call(cmd).await
}

/// `QCREATE name [max_depth [ack_deadline_secs [settings]]]`: the options Python and
/// TypeScript send as strings are applied (a `max_depth` of 0 means the default); `settings`,
/// a Synap extension, is a Map of what `POST /queue/{name}` takes (flow control included),
/// the two options before it filling what it leaves out. Get-or-create: an existing queue
/// keeps its config (`QCONFIGURE` sets it).
async fn create(s: &Session, args: &[Value]) -> Answer {
    let name = text_arg(args, 0)?;
    let depth = opt_uint_arg(args, 1)?.filter(|d| *d > 0);
    let deadline = opt_uint_arg(args, 2)?.filter(|d| *d > 0);
    let mut settings = flow::settings_arg(args, 3)?;
    settings.max_depth = settings.max_depth.or(depth);
    #[allow(clippy::cast_precision_loss)] // Deadlines are far below 2^52 seconds.
    let deadline = deadline.map(|d| d as f64);
    settings.ack_deadline_secs = settings.ack_deadline_secs.or(deadline);
    let config = if settings.is_empty() {
        None
    } else {
        let config = settings
            .apply(&s.ctx.default_queue)
            .map_err(|e| engine_error(e.into()))?;
        Some(config)
    };
    let cmd = Command::CreateQueue {
        queue: name.into(),
        config: config.map(Box::new),
    };
    match call(s, cmd).await? {
        Reply::QueueCreated { .. } => Ok(Value::str("OK")),
        r => Err(odd(&r)),
    }
}

async fn delete(s: &Session, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    match call(s, Command::DeleteQueue { queue }).await? {
        Reply::QueueDeleted { deleted } => Ok(Value::Bool(deleted)),
        r => Err(odd(&r)),
    }
}

async fn list(s: &Session) -> Answer {
    match call(s, Command::ListQueues).await? {
        Reply::Queues { queues } => Ok(Value::Array(queues.into_iter().map(Value::Str).collect())),
        r => Err(odd(&r)),
    }
}

/// The payload argument, taken out of `args`: `Bytes`, or a `Str`'s UTF-8.
fn payload_arg(args: &mut [Value], i: usize) -> Result<Vec<u8>, String> {
    match args.get_mut(i) {
        None => Err(format!("ERR missing argument {i}")),
        Some(Value::Bytes(b)) => Ok(std::mem::take(b)),
        Some(Value::Str(t)) => Ok(std::mem::take(t).into_bytes()),
        Some(_) => Err(format!("ERR argument {i} must be bytes")),
    }
}

/// `QPUBLISH queue payload [priority [max_retries [idempotency_key [group]]]]` → the message
/// id (the first publish's id when the key was seen already). The key and the group are our
/// extensions; a `Null` or absent one publishes without it. The payload is moved out of
/// `args`, not copied.
pub(super) fn publish_command(args: &mut [Value]) -> Result<Command, String> {
    let queue = text_arg(args, 0)?.to_owned();
    let payload = payload_arg(args, 1)?;
    // Out-of-range values are refused by the engine (priority 0–9, `max_retries` limit).
    let priority = opt_uint_arg(args, 2)?.map(|p| u8::try_from(p).unwrap_or(u8::MAX));
    let max_retries = opt_uint_arg(args, 3)?.map(|r| u32::try_from(r).unwrap_or(u32::MAX));
    let idempotency_key = match args.get(4) {
        None | Some(Value::Null) => None,
        Some(_) => Some(text_arg(args, 4)?.to_owned()),
    };
    let message = PublishMessage {
        payload: Some(payload.into()),
        priority,
        max_retries,
        idempotency_key,
        group: flow::opt_text_arg(args, 5)?,
        ..PublishMessage::default()
    };
    Ok(Command::Publish { queue, message })
}

/// The answer frame of a `QPUBLISH`: the message id as a `Str`.
pub(super) fn publish_answer(id: u32, result: Result<Reply, Failure>) -> Vec<u8> {
    match result {
        Ok(Reply::Published(p)) => {
            let mut w = FrameWriter::ok(id, 64);
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            w.str(p.message_id.hyphenated().encode_lower(&mut text));
            w.finish()
        }
        Ok(r) => FrameWriter::err(id, &odd(&r)),
        Err(f) => FrameWriter::err(id, &engine_error(f)),
    }
}

/// A leased message as the SDKs read it: `{id, payload, priority, retry_count}` as in Synap,
/// plus `max_retries`, `lease`, `deadline` and `timestamp` (seconds) and `headers`, and
/// `group` for a message published with one.
#[cfg(test)] // The frames are written straight (`write_message_pairs`); tests compare.
pub(super) fn message_value(d: &Delivery) -> Value {
    let bytes: Vec<u8> = match (&d.payload, &d.message) {
        (Some(p), _) => p.to_vec(),
        (None, Some(m)) => m.as_str().as_bytes().to_vec(),
        (None, None) => Vec::new(),
    };
    let headers = d
        .headers
        .iter()
        .map(|(k, v)| (Value::str(k), Value::str(v)))
        .collect();
    let mut value = Value::map([
        ("id", Value::Str(d.message_id.to_string())),
        ("payload", Value::Bytes(bytes)),
        ("priority", Value::Int(i64::from(d.priority))),
        ("retry_count", Value::Int(i64::from(d.retry_count))),
        ("max_retries", Value::Int(i64::from(d.max_retries))),
        ("lease", Value::count(d.lease.0)),
        ("deadline", Value::count(d.lease_deadline.0 / 1000)),
        ("timestamp", Value::count(d.published_at.0 / 1000)),
        ("headers", Value::Map(headers)),
    ]);
    if let (Value::Map(pairs), Some(group)) = (&mut value, &d.group) {
        pairs.push((Value::str("group"), Value::str(group.as_ref())));
    }
    value
}

/// Pairs `message_value(d)` holds.
pub(super) fn message_pairs(d: &Delivery) -> usize {
    9 + usize::from(d.group.is_some())
}

/// The pairs of `message_value`, written straight into a frame (after a map header counting
/// them), in the same order and to the same bytes.
pub(super) fn write_message_pairs(w: &mut FrameWriter, d: &Delivery) {
    let payload: &[u8] = match (&d.payload, &d.message) {
        (Some(p), _) => p,
        (None, Some(m)) => m.as_str().as_bytes(),
        (None, None) => &[],
    };
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    w.key("id");
    w.str(d.message_id.hyphenated().encode_lower(&mut id));
    w.key("payload");
    w.bytes(payload);
    w.key("priority");
    w.int(i64::from(d.priority));
    w.key("retry_count");
    w.int(i64::from(d.retry_count));
    w.key("max_retries");
    w.int(i64::from(d.max_retries));
    w.key("lease");
    w.count(d.lease.0);
    w.key("deadline");
    w.count(d.lease_deadline.0 / 1000);
    w.key("timestamp");
    w.count(d.published_at.0 / 1000);
    w.key("headers");
    w.map(d.headers.len());
    for (k, v) in &d.headers {
        w.key(k);
        w.str(v);
    }
    if let Some(group) = &d.group {
        w.key("group");
        w.str(group);
    }
}

/// A `QCONSUME` the engine has, its answer not written yet.
pub(super) struct ConsumeWait {
    id: u32,
    queue: String,
    /// Whether it long-polls (and so ends with nothing once the peer stops sending).
    long: bool,
    consuming: Consuming,
}

/// `QCONSUME queue consumer_id [wait_secs]` → a message or `Null`, sent to the engine; the
/// answer is written by `ConsumeWait::answer`. The third argument, a Synap extension,
/// long-polls up to that many seconds (capped by the server's limit). A request refused here
/// gets its error frame.
pub(super) async fn start_consume(
    s: &Session,
    id: u32,
    args: &[Value],
) -> Result<ConsumeWait, Vec<u8>> {
    let (queue, consumer, wait_ms) = consume_args(s, args).map_err(|e| FrameWriter::err(id, &e))?;
    let cmd = Command::Consume {
        queue: queue.into(),
        wait_ms,
        lease_ms: None,
        max_messages: 1,
        consumer_id: (!consumer.is_empty()).then(|| consumer.to_owned()),
    };
    s.check(&cmd).map_err(|e| FrameWriter::err(id, &e))?;
    match s.ctx.engine.start_consume(cmd).await {
        Ok(consuming) => Ok(ConsumeWait {
            id,
            queue: queue.to_owned(),
            long: wait_ms > 0,
            consuming,
        }),
        Err(e) => Err(FrameWriter::err(id, &engine_error(e))),
    }
}

/// `QCONSUME`'s queue, consumer id and wait in milliseconds, checked.
fn consume_args<'a>(s: &Session, args: &'a [Value]) -> Result<(&'a str, &'a str, u64), String> {
    let queue = text_arg(args, 0)?;
    let consumer = args.get(1).and_then(Value::as_text).unwrap_or("");
    let wait_ms = opt_uint_arg(args, 2)?
        .map_or(0, |w| w.saturating_mul(1000))
        .min(s.ctx.max_wait_ms);
    if s.leases.lock().expect("leases lock").len() >= MAX_HELD_LEASES {
        return Err(format!(
            "ERR too many unsettled messages on this connection (limit {MAX_HELD_LEASES})"
        ));
    }
    Ok((queue, consumer, wait_ms))
}

impl ConsumeWait {
    /// Waits for the engine's answer and writes it as a whole frame, straight from the
    /// delivery, the lease recorded first. Dropped before the answer, it withdraws the waiter
    /// and gives back what it may have been leased (see `Consuming`).
    pub(super) async fn answer(self, s: Arc<Session>) -> Vec<u8> {
        let consumed = if self.long {
            // A peer that shut down its write side ends its long-polls with nothing.
            tokio::select! {
                r = self.consuming.wait() => r,
                () = s.reading_ended() => Ok(Vec::new()),
            }
        } else {
            self.consuming.wait().await
        };
        match consumed {
            Ok(messages) => match messages.into_iter().next() {
                Some(d) => {
                    s.hold(&self.queue, d.message_id, d.lease);
                    message_frame(self.id, &d)
                }
                None => null_frame(self.id),
            },
            // As over HTTP: a queue that does not exist yet has nothing to consume.
            Err(Failure::Core(Error::QueueNotFound { .. })) => null_frame(self.id),
            Err(e) => FrameWriter::err(self.id, &engine_error(e)),
        }
    }
}

fn null_frame(id: u32) -> Vec<u8> {
    let mut w = FrameWriter::ok(id, 8);
    w.null();
    w.finish()
}

/// The frame answering `id` with `message_value(d)`, written straight from the delivery.
pub(super) fn message_frame(id: u32, d: &Delivery) -> Vec<u8> {
    let group = d.group.as_ref().map_or(0, |g| g.len());
    let size = d.payload.as_ref().map_or(0, |p| p.len()) + group + 256;
    let mut w = FrameWriter::ok(id, size);
    w.map(message_pairs(d));
    write_message_pairs(&mut w, d);
    w.finish()
}

/// `requeue`: `Bool`, `Int` ≠ 0, or text; `false`, `0`, `no` and `off` in any case are false.
fn requeue_arg(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Int(n)) => *n != 0,
        Some(v) => v.as_text().is_none_or(|t| {
            !matches!(
                t.trim().to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            )
        }),
        None => true,
    }
}

/// A `QACK` or `QNACK` on its way to the engine: the message it settles, and whether it
/// went under a lease this connection holds.
pub(super) struct Settling {
    key: (String, MessageId),
    held: bool,
}

/// `QACK queue id` / `QNACK queue id [requeue [delay_secs [snooze]]]`, under the connection's
/// lease when it holds one. The delay and the snooze are Synap extensions: a snooze brings the
/// message back after the delay without spending an attempt.
pub(super) fn settle_command(
    s: &Session,
    args: &[Value],
    ack: bool,
) -> Result<(Command, Settling), String> {
    let queue = text_arg(args, 0)?.to_owned();
    let id_text = text_arg(args, 1)?;
    let message_id = MessageId::parse_str(id_text.trim())
        .map_err(|_| format!("Message not found: {id_text}"))?;
    let (delay_ms, snooze) = if ack {
        (None, false)
    } else {
        let delay_ms = flow::secs_arg(args, 3, "delay")?;
        (delay_ms, flow::flag_arg(args, 4)?.unwrap_or(false))
    };
    let key = (queue.clone(), message_id);
    let lease = s.leases.lock().expect("leases lock").get(&key).copied();
    let cmd = if ack {
        Command::Ack {
            queue,
            message_id,
            lease,
            result: None,
        }
    } else {
        Command::Nack {
            queue,
            message_id,
            requeue: requeue_arg(args.get(2)),
            delay_ms,
            error: None,
            lease,
            snooze,
        }
    };
    let held = lease.is_some();
    Ok((cmd, Settling { key, held }))
}

/// The answer frame of a `QACK` or `QNACK`; a lease it settled (or that is over either way)
/// is forgotten, one whose settling was refused as invalid is kept.
pub(super) fn settle_answer(
    s: &Session,
    id: u32,
    settling: Settling,
    result: Result<Reply, Failure>,
) -> Vec<u8> {
    // A refused argument (a snooze without requeue) leaves the delivery as it was.
    let refused = matches!(result, Err(Failure::Core(Error::InvalidArgument { .. })));
    if result.is_ok() || (settling.held && !refused) {
        s.leases.lock().expect("leases lock").remove(&settling.key);
    }
    match result {
        Ok(Reply::Acked | Reply::Nacked { .. }) => {
            let mut w = FrameWriter::ok(id, 8);
            w.str("OK");
            w.finish()
        }
        Ok(r) => FrameWriter::err(id, &odd(&r)),
        Err(f) => FrameWriter::err(id, &engine_error(f)),
    }
}

/// Queue statistics as a map of numbers: Synap's seven, then the rest of ours.
fn stats_value(st: &QueueStats) -> Value {
    Value::map([
        ("depth", Value::count(st.depth)),
        ("consumers", Value::count(st.consumers)),
        ("published", Value::count(st.published_total)),
        ("consumed", Value::count(st.consumed_total)),
        ("acked", Value::count(st.acked_total)),
        ("nacked", Value::count(st.nacked_total)),
        ("dead_lettered", Value::count(st.dead_lettered_total)),
        ("ready", Value::count(st.ready)),
        ("delayed", Value::count(st.delayed)),
        ("in_flight", Value::count(st.in_flight)),
        ("dead_letter_count", Value::count(st.dead_letter_count)),
        ("waiters", Value::count(st.waiters)),
        ("lease_expired_total", Value::count(st.lease_expired_total)),
        ("expired_total", Value::count(st.expired_total)),
        ("dlq_dropped_total", Value::count(st.dlq_dropped_total)),
        ("oldest_ready_age_ms", Value::count(st.oldest_ready_age_ms)),
        ("avg_wait_time_ms", Value::Float(st.avg_wait_time_ms)),
        ("paused", Value::Bool(st.paused)),
        (
            "rate_limited_until_ms",
            st.rate_limited_until_ms
                .map_or(Value::Null, |t| Value::count(t.0)),
        ),
        ("groups", Value::count(st.groups)),
        ("held_back", Value::count(st.held_back)),
    ])
}

async fn stats(s: &Session, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    match call(s, Command::Stats { queue }).await? {
        Reply::Stats(st) => Ok(stats_value(&st)),
        r => Err(odd(&r)),
    }
}

async fn purge(s: &Session, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    match call(s, Command::Purge { queue }).await? {
        Reply::Purged { purged } => Ok(Value::count(purged)),
        r => Err(odd(&r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_false_in_every_spelling() {
        for v in [
            Value::Bool(false),
            Value::Int(0),
            Value::str("false"),
            Value::str("False"),
            Value::str("0"),
        ] {
            assert!(!requeue_arg(Some(&v)), "{v:?}");
        }
        for v in [
            Value::Bool(true),
            Value::Int(1),
            Value::str("True"),
            Value::Null,
        ] {
            assert!(requeue_arg(Some(&v)), "{v:?}");
        }
        assert!(requeue_arg(None));
    }
}
