//! Topic pub/sub (DESIGN.md §4): publish over REST, subscribe over the `/pubsub/ws` WebSocket.
//! Delivery is at-most-once to subscribers connected at publish time.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use reqwest::Method;
use serde::Serialize;
use synap_wire as wire;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::types::{Headers, PubSubMessage};
use crate::ws::{Socket, frame_error, next_json};

/// What a publish reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubPublished {
    /// The message's id.
    pub message_id: String,
    /// Live subscribers with at least one matching pattern.
    pub subscribers_matched: u64,
}

impl SynapClient {
    /// Publishes `message` to `topic` (`.`-separated, no wildcards) and returns how many live
    /// subscribers matched.
    ///
    /// # Errors
    /// `invalid_argument` for an empty or wildcard topic, or transport errors.
    pub async fn pubsub_publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
    ) -> Result<u64> {
        Ok(self
            .pubsub_publish_with(topic, message, &Headers::new())
            .await?
            .subscribers_matched)
    }

    /// [`pubsub_publish`](Self::pubsub_publish) with headers, returning the message id too.
    ///
    /// # Errors
    /// As [`pubsub_publish`](Self::pubsub_publish).
    pub async fn pubsub_publish_with<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
        headers: &Headers,
    ) -> Result<PubSubPublished> {
        let body = wire::PubsubPublishRequest {
            message: Some(serde_json::to_value(message)?),
            headers: (!headers.is_empty()).then(|| headers.clone()),
            ..wire::PubsubPublishRequest::default()
        };
        let r: wire::PubsubPublished = self
            .call(Method::POST, &["pubsub", topic, "publish"], Some(&body))
            .await?;
        Ok(PubSubPublished {
            message_id: r.message_id,
            subscribers_matched: r.subscribers_matched,
        })
    }

    /// Subscribes to topic `patterns` (`*` matches one segment, a trailing `#` any number) and
    /// returns the stream of matching messages. The subscription is registered on the server
    /// when this returns, so messages published afterwards are delivered.
    ///
    /// # Errors
    /// `invalid_argument` for a malformed pattern, `unauthorized` without a valid key, or
    /// transport errors.
    pub async fn pubsub_subscribe(&self, patterns: &[&str]) -> Result<Subscription> {
        let topics = patterns.join(",");
        self.open_ws(
            &["pubsub", "ws"],
            &[("topics", topics.as_str())],
            async |mut socket| {
                let first = wait_connected(&mut socket).await?;
                Ok(Subscription::new(socket, first))
            },
        )
        .await
    }
}

/// The outcome of waiting for the server's greeting.
struct Greeting {
    subscriber_id: Option<String>,
    /// A message that arrived in place of a greeting (servers that send none).
    early: Option<PubSubMessage>,
}

/// Waits for the server's `connected` frame, which it sends once the subscription is
/// registered; returning earlier would race with the caller's first publish.
async fn wait_connected(socket: &mut Socket) -> Result<Greeting> {
    let Some(frame) = next_json(socket).await? else {
        return Err(SynapError::Closed("subscription refused".into()));
    };
    if let Some(err) = frame_error(&frame) {
        return Err(err);
    }
    if let Some(msg) = parse_message(&frame) {
        return Ok(Greeting {
            subscriber_id: None,
            early: Some(msg),
        });
    }
    if let Ok(hello) = serde_json::from_value::<wire::PubsubConnected>(frame.clone()) {
        return Ok(Greeting {
            subscriber_id: Some(hello.subscriber_id),
            early: None,
        });
    }
    let subscriber_id = frame
        .get("subscriber_id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok(Greeting {
        subscriber_id,
        early: None,
    })
}

/// Reads a delivery frame: our server's through its wire type; otherwise leniently, with bodies
/// accepted as `message`, or `payload`/`data` as Synap's reference server names them. Frames
/// without a topic (greetings, stats) are not messages.
fn parse_message(frame: &serde_json::Value) -> Option<PubSubMessage> {
    if let Ok(m) = serde_json::from_value::<wire::PubsubMessage>(frame.clone()) {
        return Some(PubSubMessage {
            topic: m.topic,
            message_id: m.message_id,
            message: m.message,
            headers: m.headers,
            published_at: m.published_at,
        });
    }
    let topic = frame.get("topic")?.as_str()?.to_owned();
    let body = ["message", "payload", "data"]
        .iter()
        .find_map(|k| frame.get(*k))?
        .clone();
    let text = |k: &str| frame.get(k).and_then(serde_json::Value::as_str);
    let headers = ["headers", "metadata"]
        .iter()
        .find_map(|k| frame.get(*k))
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default();
    Some(PubSubMessage {
        topic,
        message_id: text("message_id").unwrap_or_default().to_owned(),
        message: body,
        headers,
        published_at: frame
            .get("published_at")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
    })
}

/// A live subscription: a [`Stream`] of [`PubSubMessage`]s. Dropping it closes the socket and
/// the server forgets the subscriber.
pub struct Subscription {
    subscriber_id: Option<String>,
    inner: BoxStream<'static, Result<PubSubMessage>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("subscriber_id", &self.subscriber_id)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    fn new(socket: Socket, greeting: Greeting) -> Self {
        let early = greeting.early.map(Ok);
        let rest = futures_util::stream::unfold(Some(socket), |socket| async move {
            let mut socket = socket?;
            loop {
                match next_json(&mut socket).await {
                    Ok(Some(frame)) => {
                        if let Some(err) = frame_error(&frame) {
                            return Some((Err(err), None));
                        }
                        if let Some(msg) = parse_message(&frame) {
                            return Some((Ok(msg), Some(socket)));
                        }
                    }
                    Ok(None) => return None,
                    // After a transport error the socket is unusable: report it, then end.
                    Err(e) => return Some((Err(e), None)),
                }
            }
        });
        let inner = Box::pin(futures_util::stream::iter(early).chain(rest));
        Self {
            subscriber_id: greeting.subscriber_id,
            inner,
        }
    }

    /// The server's id for this subscriber, when its greeting carried one.
    #[must_use]
    pub fn subscriber_id(&self) -> Option<&str> {
        self.subscriber_id.as_deref()
    }
}

impl Stream for Subscription {
    type Item = Result<PubSubMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_our_frames_and_synap_frames() {
        let ours = serde_json::json!({"topic": "a.b", "message": {"x": 1},
            "message_id": "m", "published_at": 5, "headers": {"h": "v"}});
        let m = parse_message(&ours).unwrap();
        assert_eq!((m.topic.as_str(), m.published_at), ("a.b", 5));
        assert_eq!(m.headers.get("h").map(String::as_str), Some("v"));
        let synap = serde_json::json!({"type": "message", "topic": "t", "payload": [1],
            "metadata": null, "message_id": "n"});
        assert_eq!(
            parse_message(&synap).unwrap().message,
            serde_json::json!([1])
        );
        let hello = serde_json::json!({"type": "connected", "subscriber_id": "s"});
        assert!(parse_message(&hello).is_none());
    }
}
