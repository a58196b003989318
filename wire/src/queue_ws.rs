//! Frames of the queue WebSocket, `GET /queue/{name}/ws` (docs/api.md, Streaming consumer).
//! A client frame is the REST body of its op (`AckRequest`, `NackRequest`, `ExtendRequest`,
//! `PublishRequest`) with `op` and an optional `id` beside it; every client frame gets one
//! server frame back, in order, echoing `op` and `id`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{
    AckRequest, Delivery, ExtendRequest, NackAction, NackRequest, ProgressRequest, PublishRequest,
    present,
};

/// A client → server frame: `{"op": …, "id"?: …, …the op's REST body}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueClientFrame {
    /// Any JSON of at most 256 bytes, echoed in the answer; absent when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The op and its fields.
    #[serde(flatten)]
    pub op: QueueOp,
}

/// The op of a client frame and its body. The server reads `op` (or `command`) and `id` first,
/// then the body as the op's REST request type, which refuses unknown fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum QueueOp {
    /// Settle a delivery as done.
    Ack(AckRequest),
    /// Reject a delivery.
    Nack(NackRequest),
    /// Extend a delivery's lease.
    Extend(ExtendRequest),
    /// Publish to the connection's queue.
    Publish(PublishRequest),
    /// Grant the connection's session more deliveries.
    Credit(CreditRequest),
    /// Report a delivery's progress (and perhaps extend its lease).
    Progress(ProgressRequest),
}

/// The body of a `credit` frame: more deliveries the connection may be pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// How many more.
    pub credit: u32,
}

impl QueueOp {
    /// The op's name on the wire.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Ack(_) => "ack",
            Self::Nack(_) => "nack",
            Self::Extend(_) => "extend",
            Self::Publish(_) => "publish",
            Self::Credit(_) => "credit",
            Self::Progress(_) => "progress",
        }
    }
}

/// A server → client frame, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueueServerFrame {
    /// The first frame: the connection is registered.
    Connected {
        /// The queue.
        queue: String,
        /// This connection's consumer id.
        consumer_id: String,
        /// Unsettled messages the server pushes at most.
        prefetch: u32,
    },
    /// A pushed delivery.
    Message(Delivery),
    /// The answer of a `publish` frame.
    Published {
        /// Always `publish`.
        op: String,
        /// The frame's `id`, or `null` when it had none.
        #[serde(deserialize_with = "present")]
        id: Option<Value>,
        /// The new message's id.
        message_id: String,
        /// Its place in delivery order; `null` for a delayed message.
        #[serde(deserialize_with = "present")]
        position: Option<u64>,
        /// `true` when the idempotency key was seen already and nothing was added.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A job of the queue reported progress (sent to connections opened with
    /// `progress=true`).
    Progress {
        /// The job.
        message_id: String,
        /// What its worker reported.
        progress: Value,
        /// When, Unix ms.
        at: u64,
    },
    /// The answer of an `ack`, `nack`, `extend`, `credit` or `progress` frame.
    Ok {
        /// The frame's op.
        op: String,
        /// The frame's `id`, or `null` when it had none.
        #[serde(deserialize_with = "present")]
        id: Option<Value>,
        /// What a nack did; absent for other ops.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<NackAction>,
        /// The new lease end of an extend, Unix ms; absent for other ops.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_deadline: Option<u64>,
        /// The session's credit after a `credit` frame; absent for other ops.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credit: Option<u32>,
        /// Whether the job was cancelled, after a `progress` frame; absent for other ops.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancelled: Option<bool>,
    },
    /// A frame refused, or consuming failed (op `consume`; then the server closes).
    Error {
        /// The frame's op, or `consume`; absent for a frame that is not a JSON object.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        op: Option<String>,
        /// The frame's `id` (`null` when it had none); absent when there is no frame to
        /// answer (a consume failure, a frame that is not an object).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "some_value"
        )]
        id: Option<Value>,
        /// A human-readable message.
        error: String,
        /// The machine code. Synap's server always sends one (`invalid_frame` for a frame
        /// that is not a JSON object, `payload_too_large` for one over the limit); it is
        /// optional here so frames of older servers, which left it out, still read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

/// Tells a present `null` (`Some(Null)`) from an absent field (`None`, by `default`).
fn some_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_client_frame_is_the_rest_body_with_op_and_id() {
        let f = QueueClientFrame {
            id: Some(json!(2)),
            op: QueueOp::Ack(AckRequest {
                message_id: "m".into(),
                lease: Some(7),
                result: None,
            }),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            json!({"op": "ack", "id": 2, "message_id": "m", "lease": 7})
        );
        let publish = QueueClientFrame {
            id: None,
            op: QueueOp::Publish(PublishRequest {
                message: Some(json!({"a": 1})),
                priority: Some(9),
                ..PublishRequest::default()
            }),
        };
        let v = serde_json::to_value(&publish).unwrap();
        assert_eq!(
            v,
            json!({"op": "publish", "message": {"a": 1}, "priority": 9})
        );
    }

    #[test]
    fn server_frames_keep_null_ids_and_absent_fields_apart() {
        let ok = QueueServerFrame::Ok {
            op: "nack".into(),
            id: None,
            action: Some(NackAction::Delayed),
            lease_deadline: None,
            credit: None,
            cancelled: None,
        };
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(
            v,
            json!({"type": "ok", "op": "nack", "id": null, "action": "delayed"})
        );
        assert_eq!(serde_json::from_value::<QueueServerFrame>(v).unwrap(), ok);
        let refused = json!({"type": "error", "op": "ack", "id": null, "error": "e", "code": "c"});
        let f: QueueServerFrame = serde_json::from_value(refused.clone()).unwrap();
        assert_eq!(serde_json::to_value(&f).unwrap(), refused);
        let closing = json!({"type": "error", "op": "consume", "error": "too many waiters"});
        let f: QueueServerFrame = serde_json::from_value(closing.clone()).unwrap();
        assert_eq!(serde_json::to_value(&f).unwrap(), closing);
        let missing_id = json!({"type": "published", "op": "publish", "message_id": "m",
            "position": 1});
        assert!(serde_json::from_value::<QueueServerFrame>(missing_id).is_err());
    }

    #[test]
    fn a_message_frame_is_a_delivery_with_its_type() {
        let v = json!({"type": "message", "message_id": "m", "queue": "q", "message": null,
            "priority": 5, "retry_count": 0, "max_retries": 3, "headers": {}, "lease": 1,
            "lease_deadline": 2, "published_at": 1});
        let f: QueueServerFrame = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(&f, QueueServerFrame::Message(d) if d.lease == 1));
        assert_eq!(serde_json::to_value(&f).unwrap(), v);
    }
}
