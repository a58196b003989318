//! Bodies of the `/pubsub/` routes and the frames of its WebSocket and SSE streams.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Headers, present};

/// `POST /pubsub/{topic}/publish`. The body is `message`, or `payload`/`data` as Synap's SDKs
/// name it (the first given wins); headers are `headers` or `metadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubPublishRequest {
    /// The body as any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    /// The body, under the name Synap's SDKs use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The body, under another name Synap's SDKs use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// String headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// String headers, under the name Synap's SDKs use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Headers>,
}

/// `{message_id, topic, subscribers_matched}` of a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubsubPublished {
    /// The message's id.
    pub message_id: String,
    /// The topic published to.
    pub topic: String,
    /// Live subscribers with at least one matching pattern.
    pub subscribers_matched: u64,
}

/// `GET /pubsub/stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubsubStats {
    /// Subscribers registered.
    pub subscribers: u64,
    /// Patterns registered across subscribers.
    pub subscriptions: u64,
    /// Of those, patterns with `*` or `#`.
    pub wildcard_subscriptions: u64,
    /// Distinct exact (wildcard-free) topics subscribed to.
    pub topics: Vec<String>,
    /// Messages published.
    pub messages_published: u64,
    /// Deliveries to subscribers (pushed or polled).
    pub messages_delivered: u64,
    /// Messages dropped from full subscriber buffers.
    pub messages_dropped: u64,
}

/// The first frame of `GET /pubsub/ws`:
/// `{"type": "connected", subscriber_id, topics, subscription_count}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "connected")]
pub struct PubsubConnected {
    /// The server's id for this subscriber.
    pub subscriber_id: String,
    /// The patterns subscribed to.
    pub topics: Vec<String>,
    /// How many.
    pub subscription_count: u64,
}

/// An error frame of `GET /pubsub/ws`: `{"type": "error", error, code}`, sent for a client
/// frame the socket does not take (`invalid_frame`) or one over its limit
/// (`payload_too_large`, then the server closes with 1009).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "error")]
pub struct PubsubError {
    /// A human-readable message.
    pub error: String,
    /// The machine code.
    pub code: String,
}

/// The data of the first SSE event (`event: connected`) of `GET /pubsub/sse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "connected")]
pub struct SseConnected {
    /// The server's id for this subscriber.
    pub subscriber_id: String,
    /// The patterns subscribed to.
    pub topics: Vec<String>,
}

/// One pub/sub message, as a WebSocket text frame or the data of an SSE `message` event.
/// Besides Synap's `{topic, message, message_id, published_at, headers}` it carries the
/// fields Synap's SDKs read: `payload` (= `message`), `timestamp` (seconds) and `metadata`
/// (= `headers`, or `null` when there are none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "message")]
pub struct PubsubMessage {
    /// The topic published to (not the pattern that matched).
    pub topic: String,
    /// The body.
    pub message: Value,
    /// The body again, for Synap's SDKs.
    pub payload: Value,
    /// The message's id.
    pub message_id: String,
    /// Publish time, Unix ms.
    pub published_at: u64,
    /// Publish time, Unix seconds.
    pub timestamp: u64,
    /// Headers as published.
    pub headers: Headers,
    /// The headers again, or `null` when there are none, for Synap's SDKs.
    #[serde(deserialize_with = "present")]
    pub metadata: Option<Headers>,
}
