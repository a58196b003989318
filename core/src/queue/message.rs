//! A message and the states it moves through.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::{Delivery, Headers, LeaseToken, MessageId, SessionId};
use crate::json::Json;
use crate::time::Millis;

/// A message body: JSON, or bytes as published by Synap's SDKs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Body {
    Json(#[serde(with = "crate::json::as_text")] Json),
    Bytes(#[serde(with = "crate::bytes::arc")] Arc<[u8]>),
}

impl Body {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Json(j) => j.len(),
            Self::Bytes(b) => b.len(),
        }
    }

    pub(crate) fn split(&self) -> (Option<Json>, Option<Arc<[u8]>>) {
        match self {
            Self::Json(j) => (Some(j.clone()), None),
            Self::Bytes(b) => (None, Some(b.clone())),
        }
    }
}

/// Where a message is. It is in exactly one state; leaving the queue (ack, dead-letter, purge)
/// removes it from the queue's map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// In the ready index.
    Ready,
    /// Waiting for `until` (a publish delay or a retry delay); a `Due` timer is set.
    Delayed { until: Millis },
    /// Leased; a `Lease` timer is set for `deadline`. `session` is the streaming consumer it
    /// was pushed to, which holds one credit for it.
    InFlight {
        lease: LeaseToken,
        deadline: Millis,
        consumer: Option<Arc<str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<SessionId>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) id: MessageId,
    /// Publish order, kept across retries so a retried message keeps its place.
    pub(crate) seq: u64,
    pub(crate) body: Body,
    pub(crate) priority: u8,
    pub(crate) headers: Headers,
    pub(crate) published_at: Millis,
    /// When it entered this queue (publish or redrive).
    pub(crate) enqueued_at: Millis,
    /// When it last became ready (for the wait-time statistic).
    pub(crate) ready_since: Millis,
    /// Deliveries so far.
    pub(crate) attempts: u32,
    pub(crate) max_retries: u32,
    /// Its TTL as published, so a redriven message gets a fresh expiry.
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) expires_at: Option<Millis>,
    /// Its TTL passed while it was in flight: it is dead-lettered when the lease ends.
    pub(crate) expired: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) state: State,
}

impl Message {
    pub(crate) fn delivery(&self, queue: &Arc<str>) -> Delivery {
        let State::InFlight {
            lease, deadline, ..
        } = self.state
        else {
            panic!("delivery of a message that is not in flight");
        };
        let (message, payload) = self.body.split();
        Delivery {
            queue: queue.clone(),
            message_id: self.id,
            message,
            payload,
            priority: self.priority,
            retry_count: self.attempts.saturating_sub(1),
            max_retries: self.max_retries,
            headers: self.headers.clone(),
            lease,
            lease_deadline: deadline,
            published_at: self.published_at,
        }
    }

    /// The bytes the memory budget counts for this message: its body and headers, which do
    /// not change while it lives.
    pub(crate) fn held_bytes(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.body.len() + headers) as u64
    }

    /// Approximate bytes held for this message (body, headers, bookkeeping).
    pub(crate) fn footprint(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        size_of::<Self>() + self.body.len() + headers
    }
}
