//! `pubsub.*` commands of the envelope (SYNAP_WIRE.md §8).
//!
//! `pubsub.subscribe` registers a subscriber without a connection: its messages wait in its
//! bounded buffer (oldest dropped) and can be fetched with `pubsub.poll`, a Synap extension.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use synap_core::{Command, Json as CoreJson, Reply};

use super::envelope::Env;
use super::envelope::{Fields, Outcome, call, odd};
use super::wire::pub_message_json;

/// Runs `pubsub.<op>`; `None` for an unknown op.
pub(super) async fn run(s: &Env<'_>, op: &str, f: &Fields<'_>) -> Option<Outcome> {
    Some(match op {
        "publish" => publish(s, f).await,
        "subscribe" => subscribe(s, f).await,
        "unsubscribe" => unsubscribe(s, f).await,
        "poll" => poll(s, f).await,
        "topics" | "stats" => stats(s, op == "topics").await,
        _ => return None,
    })
}

fn string_map(v: Option<&serde_json::Map<String, Value>>) -> BTreeMap<String, String> {
    v.map(|m| {
        m.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    })
    .unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|list| {
        list.iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect()
    })
}

async fn publish(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let topic = f.need("topic")?;
    if topic.is_empty() {
        return Err("Invalid value: Topic cannot be empty".into());
    }
    // A pub/sub message may be any JSON value, null included.
    let message = f
        .present("payload")
        .or_else(|| f.present("data"))
        .or_else(|| f.present("message"))
        .ok_or("Invalid request: Missing 'payload' field")?;
    let headers = string_map(f.object("metadata").or_else(|| f.object("headers")));
    let cmd = Command::PubsubPublish {
        topic: topic.to_owned(),
        message: CoreJson::from_value(message),
        headers,
    };
    match call(s, cmd).await? {
        Reply::PubsubPublished {
            message_id,
            topic,
            subscribers_matched,
        } => Ok(json!({
            "message_id": message_id,
            "topic": topic,
            "subscribers_matched": subscribers_matched,
        })),
        r => Err(odd(&r)),
    }
}

/// A subscriber registered over the envelope is removed after this long without a
/// `pubsub.poll` (or a renewed `pubsub.subscribe`).
const POLLING_SUBSCRIBER_IDLE_MS: u64 = 300_000;

async fn subscribe(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let topics = strings(f.get("topics")).ok_or("Invalid request: Missing 'topics' field")?;
    // As in Synap, the server names the subscriber; a client-chosen id is ignored. It has no
    // connection whose end would remove it, so it is removed after a quiet spell instead.
    let cmd = Command::Subscribe {
        subscriber_id: None,
        patterns: topics,
        credit: 0,
        idle_ms: Some(POLLING_SUBSCRIBER_IDLE_MS),
    };
    match call(s, cmd).await? {
        Reply::Subscribed {
            subscriber_id,
            patterns,
        } => Ok(json!({
            "subscriber_id": subscriber_id,
            "topics": patterns,
            "subscription_count": patterns.len(),
        })),
        r => Err(odd(&r)),
    }
}

async fn unsubscribe(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let id = f.need("subscriber_id")?;
    let cmd = Command::Unsubscribe {
        subscriber_id: id.to_owned(),
        patterns: strings(f.get("topics")),
    };
    match call(s, cmd).await? {
        Reply::Unsubscribed { removed } => Ok(json!({ "unsubscribed": removed })),
        r => Err(odd(&r)),
    }
}

async fn poll(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let id = f.need("subscriber_id")?;
    let max = f
        .uint("max")
        .map_or(100, |m| u32::try_from(m).unwrap_or(1000));
    let cmd = Command::PubsubPoll {
        subscriber_id: id.to_owned(),
        max,
    };
    match call(s, cmd).await? {
        Reply::PubsubMessages { messages, dropped } => {
            let list: Vec<Value> = messages.iter().map(pub_message_json).collect();
            Ok(json!({"messages": list, "dropped": dropped}))
        }
        r => Err(odd(&r)),
    }
}

async fn stats(s: &Env<'_>, topics_only: bool) -> Outcome {
    match call(s, Command::PubsubStats).await? {
        Reply::PubsubStats(st) if topics_only => {
            Ok(json!({"count": st.topics.len(), "topics": st.topics}))
        }
        Reply::PubsubStats(st) => Ok(json!({
            "total_topics": st.topics.len(),
            "total_subscribers": st.subscribers,
            "total_wildcard_subscriptions": st.wildcard_subscriptions,
            "messages_published": st.messages_published,
            "messages_delivered": st.messages_delivered,
            "slow_consumers_dropped": st.messages_dropped,
        })),
        r => Err(odd(&r)),
    }
}
