//! Pub/sub commands (SYNAP_RPC.md §7, §9): `PUBLISH`, `SUBSCRIBE`, `UNSUBSCRIBE`, `TOPICS`,
//! `PSSTATS`.
//!
//! `SUBSCRIBE` pushes matching messages on its own connection as
//! `[0xFFFFFFFF, {"Ok": {topic, payload, id, timestamp}}]`, `payload` the message's compact
//! JSON text. The subscriber's credit is its channel's room: a peer that stops reading stops
//! the pushes, and the engine keeps its backlog in the bounded per-subscriber buffer (oldest
//! dropped, counted in `PSSTATS` as `messages_dropped`). The subscription ends with the
//! connection; subscription connections have no idle timeout.

use std::sync::Arc;

use synap_core::{Command, Json, PubMessage, Reply};
use tokio::sync::mpsc;

use super::conn::{MAX_SUBSCRIPTIONS, Session, text_arg};
use super::value::{PUSH_ID, RpcResult as Wire, Value, encode_frame};
use super::{Answer, engine_error, odd};
use crate::handle::EngineHandle;

/// Messages a subscription may hold between the engine and the connection's writer.
const SINK_CAPACITY: usize = 256;

/// Runs `command` if it is a pub/sub command.
pub(super) async fn run(s: &Arc<Session>, command: &str, args: &[Value]) -> Option<Answer> {
    Some(match command {
        "PUBLISH" => publish(s, args).await,
        "SUBSCRIBE" => subscribe(s, args).await,
        "UNSUBSCRIBE" => unsubscribe(s, args).await,
        "TOPICS" | "PSSTATS" => stats(s, command == "TOPICS").await,
        _ => return None,
    })
}

/// `PUBLISH topic payload`: the payload is parsed as JSON, or kept as a JSON string.
async fn publish(ctx: &Session, args: &[Value]) -> Answer {
    let topic = text_arg(args, 0)?;
    if topic.is_empty() {
        return Err("Invalid value: Topic cannot be empty".into());
    }
    let text = match args.get(1) {
        None => return Err("ERR missing argument 1".into()),
        Some(v @ (Value::Str(_) | Value::Bytes(_))) => {
            v.as_text().ok_or("ERR argument 1 must be UTF-8 text")?
        }
        Some(_) => return Err("ERR argument 1 must be bytes".into()),
    };
    let json =
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()));
    let cmd = Command::PubsubPublish {
        topic: topic.to_owned(),
        message: Json::from_value(&json),
        headers: synap_core::Headers::default(),
    };
    match ctx.call(cmd).await? {
        Reply::PubsubPublished {
            message_id,
            topic,
            subscribers_matched,
        } => Ok(Value::map([
            ("message_id", Value::Str(message_id.to_string())),
            ("subscribers_matched", Value::count(subscribers_matched)),
            ("topic", Value::Str(topic)),
        ])),
        r => Err(odd(&r)),
    }
}

/// A pushed message's value.
fn push_value(m: &PubMessage) -> Value {
    Value::map([
        ("topic", Value::str(m.topic.as_ref())),
        ("payload", Value::str(m.message.as_str())),
        ("id", Value::Str(m.message_id.to_string())),
        ("timestamp", Value::count(m.published_at.0 / 1000)),
    ])
}

/// `SUBSCRIBE topic…` → `{subscriber_id, subscription_count, topics}`; pushes follow.
async fn subscribe(s: &Arc<Session>, args: &[Value]) -> Answer {
    let topics: Vec<String> = args
        .iter()
        .filter_map(Value::as_text)
        .map(String::from)
        .collect();
    if topics.is_empty() {
        return Err("ERR SUBSCRIBE requires at least one topic".into());
    }
    if s.subs.lock().expect("subs lock").len() >= MAX_SUBSCRIPTIONS {
        return Err(format!(
            "ERR too many subscriptions on this connection (limit {MAX_SUBSCRIPTIONS})"
        ));
    }
    s.who()
        .check_subscribe(&topics)
        .map_err(|d| super::forbidden(&d))?;
    let (tx, rx) = mpsc::channel(SINK_CAPACITY);
    let id = s
        .ctx
        .engine
        .subscribe(topics.clone(), tx)
        .await
        .map_err(engine_error)?;
    let forwarder = tokio::spawn(forward(s.ctx.engine.clone(), id.clone(), rx, s.out.clone()));
    s.subs
        .lock()
        .expect("subs lock")
        .push((id.clone(), forwarder.abort_handle()));
    Ok(Value::map([
        ("subscriber_id", Value::Str(id)),
        ("subscription_count", Value::count(topics.len() as u64)),
        (
            "topics",
            Value::Array(topics.into_iter().map(Value::Str).collect()),
        ),
    ]))
}

/// Writes a subscription's messages as push frames, granting credit back as they are handed to
/// the writer (per batch: when the channel has drained or a quarter of it was written).
async fn forward(
    engine: EngineHandle,
    id: String,
    mut rx: mpsc::Receiver<PubMessage>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let mut written = 0u32;
    while let Some(m) = rx.recv().await {
        let frame = encode_frame(PUSH_ID, &Wire::Ok(push_value(&m)));
        if out.send(frame).await.is_err() {
            return;
        }
        written += 1;
        if rx.is_empty() || written as usize >= SINK_CAPACITY / 4 {
            let cmd = Command::PubsubCredit {
                subscriber_id: id.clone(),
                credit: written,
            };
            let _ = engine.call(cmd).await;
            written = 0;
        }
    }
}

/// `UNSUBSCRIBE subscriber_id [topic…]` → patterns removed; with no topics the subscriber
/// ends (and its pushes stop, when it is this connection's).
async fn unsubscribe(s: &Session, args: &[Value]) -> Answer {
    let id = text_arg(args, 0)?.to_owned();
    let topics: Vec<String> = args[1..]
        .iter()
        .filter_map(Value::as_text)
        .map(String::from)
        .collect();
    let all = topics.is_empty();
    let cmd = Command::Unsubscribe {
        subscriber_id: id.clone(),
        patterns: (!all).then_some(topics),
    };
    let reply = s.call(cmd).await?;
    if all {
        let mut subs = s.subs.lock().expect("subs lock");
        if let Some(i) = subs.iter().position(|(sid, _)| *sid == id) {
            subs.swap_remove(i).1.abort();
        }
    }
    match reply {
        Reply::Unsubscribed { removed } => Ok(Value::count(removed)),
        r => Err(odd(&r)),
    }
}

async fn stats(ctx: &Session, topics_only: bool) -> Answer {
    let st = match ctx.call(Command::PubsubStats).await? {
        Reply::PubsubStats(st) => st,
        r => return Err(odd(&r)),
    };
    if topics_only {
        return Ok(Value::Array(
            st.topics.into_iter().map(Value::Str).collect(),
        ));
    }
    Ok(Value::map([
        ("total_topics", Value::count(st.topics.len() as u64)),
        ("total_subscribers", Value::count(st.subscribers)),
        (
            "total_wildcard_subscriptions",
            Value::count(st.wildcard_subscriptions),
        ),
        ("messages_published", Value::count(st.messages_published)),
        ("messages_delivered", Value::count(st.messages_delivered)),
        ("messages_dropped", Value::count(st.messages_dropped)),
    ]))
}
