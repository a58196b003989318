//! The frames of the queue WebSocket: the server's answers and errors, and how a client
//! frame's head (`op`, `id`) is read.

use std::collections::BTreeMap;

use axum::extract::ws::Message;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use synap_core::Reply;
use synap_wire::QueueServerFrame as Frame;

use super::super::error::ApiError;
use super::super::wire::{nack_action, published};
use super::MAX_ID_BYTES;
use crate::handle::Failure;

/// A server frame as a text message. Wire frames always serialize (string keys, numbers from
/// the engine), so the empty fallback is never sent.
pub(super) fn text(frame: &Frame) -> Message {
    Message::text(serde_json::to_string(frame).unwrap_or_default())
}

/// The confirm of a frame the engine answered.
pub(super) fn answer(call: Call, reply: Result<Reply, Failure>) -> Frame {
    let id = (!call.id.is_null()).then_some(call.id);
    let ok = |action, lease_deadline, credit, cancelled| Frame::Ok {
        op: call.op.clone(),
        id: id.clone(),
        action,
        lease_deadline,
        credit,
        cancelled,
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
        Ok(Reply::Acked) => Ok(ok(None, None, None, None)),
        Ok(Reply::Nacked { action }) => Ok(ok(Some(nack_action(action)), None, None, None)),
        Ok(Reply::Extended { lease_deadline, .. }) => {
            Ok(ok(None, Some(lease_deadline.0), None, None))
        }
        Ok(Reply::SessionCredited { credit }) => Ok(ok(None, None, Some(credit), None)),
        Ok(Reply::Progressed {
            cancelled,
            lease_deadline,
        }) => Ok(ok(None, Some(lease_deadline.0), None, Some(cancelled))),
        Ok(other) => Err(super::super::queue::unexpected(&other)),
        Err(f) => Err(ApiError::from(f)),
    };
    confirm.unwrap_or_else(|e| error_frame(&call.op, id.unwrap_or(Value::Null), &e))
}

/// The error confirm of a frame.
pub(super) fn error_frame(op: &str, id: Value, e: &ApiError) -> Frame {
    Frame::Error {
        op: Some(op.to_owned()),
        id: Some(id),
        error: e.message().to_owned(),
        code: Some(e.code().to_owned()),
    }
}

/// The answer to a frame that is not a JSON object.
pub(super) fn not_an_object() -> Frame {
    Frame::Error {
        op: None,
        id: None,
        error: "a frame must be a JSON object".into(),
        code: Some("invalid_frame".into()),
    }
}

/// The answer to a binary frame: the protocol is JSON text frames.
pub(super) fn binary_frame() -> Frame {
    Frame::Error {
        op: None,
        id: None,
        error: "binary frames are not accepted: send JSON objects as text frames".into(),
        code: Some("invalid_argument".into()),
    }
}

/// The frame sent before closing when consuming fails.
pub(super) fn consume_error(error: String, code: &str) -> Frame {
    Frame::Error {
        op: Some("consume".into()),
        id: None,
        error,
        code: Some(code.to_owned()),
    }
}

/// How the client's side of the socket ended.
pub(super) enum End {
    /// The client sent a close frame.
    Closed,
    /// A frame or message over the limit arrived (it was not read).
    TooBig,
    /// The connection failed or ended without a close frame.
    Failed,
}

/// A frame whose command went to the engine, waiting for its reply.
pub(super) struct Call {
    pub(super) op: String,
    pub(super) id: Value,
}

/// A frame's place among the confirms of frames read together.
pub(super) enum Slot {
    Answer(Box<Frame>),
    Call(Call),
}

/// What every frame may carry besides its op's fields, as raw JSON text.
#[derive(Deserialize)]
pub(super) struct FrameHead<'a> {
    #[serde(default, borrow)]
    op: Option<&'a RawValue>,
    #[serde(default, borrow)]
    command: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
}

impl<'a> FrameHead<'a> {
    /// Takes the head's fields out of a frame's fields.
    pub(super) fn take(fields: &mut BTreeMap<String, &'a RawValue>) -> Self {
        Self {
            op: fields.remove("op"),
            command: fields.remove("command"),
            id: fields.remove("id"),
        }
    }

    /// `op` (or its alias `command`); empty when absent or not a string.
    pub(super) fn op(&self) -> String {
        self.op
            .or(self.command)
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or_default()
    }

    /// The `id` to echo back; refused when long, since it is copied into the answer.
    pub(super) fn id(&self) -> Result<Value, ApiError> {
        match self.id {
            Some(raw) if raw.get().len() > MAX_ID_BYTES => Err(ApiError::bad(format!(
                "id: at most {MAX_ID_BYTES} bytes of JSON"
            ))),
            Some(raw) => Ok(serde_json::from_str(raw.get()).unwrap_or(Value::Null)),
            None => Ok(Value::Null),
        }
    }
}
