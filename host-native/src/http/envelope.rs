//! `POST /api/v1/command`: the command envelope of Synap's official SDKs.
//!
//! Request `{command, request_id, payload}`; response `{success, request_id, payload, error}`
//! with both `payload` and `error` always present, HTTP 200 for every envelope that parsed.
//! Payload fields are read leniently: `null` and wrong types count as absent. Shapes follow
//! SYNAP_WIRE.md; semantics are Synap's own (DESIGN.md §3).
//!
//! The envelope is read without building a JSON tree of its payload first: `payload` stays
//! raw text until the command is known, and `queue.publish` decodes its byte array straight
//! into bytes (see `byte_array`), so a large message costs its size, not 16–32 times it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use synap_core::{Command, Delivery, Error, PublishMessage, Reply};

use super::AppState;
use super::auth::Who;
use super::byte_array::ByteArray;
use super::error::{ApiError, body_bytes};
use super::{envelope_kv, envelope_pubsub};
use crate::handle::{Failure, StorageFault};
use crate::permissions::Principal;
use crate::settings::{ApplySettings as _, QueueSettings};

// The flow-control commands: a child module, its file beside the envelope's others.
#[path = "envelope_flow.rs"]
mod flow;

/// A command's outcome: the response payload, or why it failed.
pub(super) type Outcome = Result<Value, Refusal>;

/// A failed command: the error text the SDKs read, and the machine code REST answers for the
/// same error (`None` only where REST has no such error: an unknown command, an engine reply
/// that cannot be).
#[derive(Debug)]
pub(super) struct Refusal {
    /// The `error` string.
    pub(super) error: String,
    /// The `code`.
    pub(super) code: Option<&'static str>,
}

impl From<String> for Refusal {
    /// An error the envelope made itself: its text's fixed prefix names its code.
    fn from(error: String) -> Self {
        let code = [
            ("Invalid request: ", "invalid_argument"),
            ("Invalid value: ", "invalid_argument"),
            ("Message not found: ", "message_not_found"),
            ("payload too large", "payload_too_large"),
            (FORBIDDEN, "forbidden"),
        ]
        .into_iter()
        .find_map(|(prefix, code)| error.starts_with(prefix).then_some(code));
        Self { error, code }
    }
}

impl From<&str> for Refusal {
    fn from(error: &str) -> Self {
        error.to_owned().into()
    }
}

impl From<Failure> for Refusal {
    /// An engine failure: its text as the SDKs read it, its code as REST answers it.
    fn from(f: Failure) -> Self {
        let code = ApiError::from(f.clone()).code();
        Self {
            error: wire_error(f),
            code: Some(code),
        }
    }
}

/// Lenient reads of a payload object.
pub(super) struct Fields<'a>(pub(super) &'a Value);

impl<'a> Fields<'a> {
    pub(super) fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    /// A field that is present, even as `null` (for fields where null is a value, such as a
    /// pub/sub message).
    pub(super) fn present(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k)
    }
    pub(super) fn str(&self, k: &str) -> Option<&'a str> {
        self.get(k).and_then(Value::as_str)
    }
    /// A non-negative integer.
    pub(super) fn uint(&self, k: &str) -> Option<u64> {
        self.get(k).and_then(Value::as_u64)
    }
    /// A non-negative number (integer or fraction).
    pub(super) fn number(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(Value::as_f64).filter(|n| *n >= 0.0)
    }
    pub(super) fn bool(&self, k: &str) -> Option<bool> {
        self.get(k).and_then(Value::as_bool)
    }
    pub(super) fn object(&self, k: &str) -> Option<&'a Map<String, Value>> {
        self.get(k).and_then(Value::as_object)
    }
    /// A TTL in seconds, strictly: absent or `null` is `None`; anything but a positive number
    /// of seconds (up to 1e9) is an error, as on every transport (`synap_core::input`).
    pub(super) fn ttl_ms(&self, k: &str) -> Result<Option<u64>, String> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let ms = match (v.as_i64(), v.as_f64()) {
            (Some(whole), _) => synap_core::input::whole_ttl_secs_to_ms(k, whole),
            (None, Some(secs)) => synap_core::input::ttl_secs_to_ms(k, secs),
            (None, None) => return Err(format!("Invalid value: {k}: must be a number of seconds")),
        };
        ms.map(Some).map_err(|e| wire_error(e.into()))
    }
    /// A duration in seconds, strictly: absent or `null` is `None`; a negative, non-number or
    /// absurd value is an error.
    pub(super) fn secs_ms(&self, k: &str) -> Result<Option<u64>, String> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let secs = v
            .as_f64()
            .ok_or_else(|| format!("Invalid value: {k}: must be a number of seconds"))?;
        synap_core::input::secs_to_ms(k, secs)
            .map(Some)
            .map_err(|e| wire_error(e.into()))
    }
    /// An integer amount, strictly: absent is `None`; a non-integer or one outside the 64-bit
    /// signed range is an error.
    pub(super) fn int(&self, k: &str) -> Result<Option<i64>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                format!("Invalid value: {k}: must be an integer in the 64-bit signed range")
            }),
        }
    }
    /// An optional string, strictly (for Synap's own fields): absent or `null` is `None`,
    /// another type an error.
    pub(super) fn opt_text(&self, k: &str) -> Result<Option<&'a str>, String> {
        self.get(k)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("Invalid value: {k}: must be a string"))
            })
            .transpose()
    }
    /// An optional boolean, strictly (for Synap's own fields): absent or `null` is `None`,
    /// another type an error.
    pub(super) fn opt_flag(&self, k: &str) -> Result<Option<bool>, String> {
        self.get(k)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| format!("Invalid value: {k}: must be true or false"))
            })
            .transpose()
    }
    /// A required string field.
    pub(super) fn need(&self, k: &str) -> Result<&'a str, String> {
        self.str(k)
            .ok_or_else(|| format!("Invalid request: Missing '{k}' field"))
    }
}

/// How a refusal's error text starts.
const FORBIDDEN: &str = "Forbidden: ";

/// An engine error as the SDKs expect to read it (SYNAP_WIRE.md §10).
pub(crate) fn wire_error(f: Failure) -> String {
    match f {
        Failure::Forbidden(d) => format!("{FORBIDDEN}{d}"),
        Failure::Unavailable => "Service unavailable: the server is shutting down".into(),
        Failure::Storage(StorageFault::Full) => {
            "Storage full: the disk is full, writes are refused until space returns".into()
        }
        Failure::Storage(StorageFault::Failed(why)) => format!("Storage failed: {why}"),
        Failure::Cluster(n) => format!("Service unavailable: {} ({})", n.message(), n.code()),
        Failure::Core(e) => match e {
            Error::QueueNotFound { queue } => format!("Queue not found: {queue}"),
            Error::MessageNotFound { message_id } => format!("Message not found: {message_id}"),
            Error::QueueFull { queue, .. } => format!("Queue is full: {queue}"),
            e @ Error::MemoryFull { .. } => format!("Memory full: {e}"),
            Error::KeyNotFound { key } => format!("Key not found: {key}"),
            Error::InvalidArgument { field, reason } => {
                format!(
                    "Invalid value: {}: {reason}",
                    super::error::api_field(&field)
                )
            }
            other => other.to_string(),
        },
    }
}

/// A reply variant the command cannot produce.
pub(super) fn odd(reply: &Reply) -> Refusal {
    Refusal {
        error: format!("Internal error: unexpected engine reply {reply:?}"),
        code: None,
    }
}

/// What a command runs with: the server's state and the caller.
pub(super) struct Env<'a> {
    s: &'a AppState,
    /// Who sent the envelope.
    pub(super) who: &'a Principal,
}

impl std::ops::Deref for Env<'_> {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        self.s
    }
}

/// Runs a command through the engine as the caller (checked, its reply filtered; see
/// `EngineHandle::call_as`), with envelope error strings.
pub(super) async fn call(s: &Env<'_>, cmd: Command) -> Result<Reply, Refusal> {
    s.engine.call_as(s.who, cmd).await.map_err(Refusal::from)
}

/// The envelope, its fields kept as raw JSON text (borrowed from the body) until needed.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    command: Option<&'a RawValue>,
    #[serde(default)]
    request_id: Value,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

/// Parses the envelope object; the error is the 400 to answer.
fn parse_envelope(bytes: &[u8]) -> Result<Envelope<'_>, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::bad(format!("invalid JSON body: {e}"));
    // Checked first: serde would also take an array as the struct's fields in order.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        serde_json::from_slice::<IgnoredAny>(bytes).map_err(invalid)?;
        return Err(ApiError::bad("the envelope must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

/// `POST /api/v1/command`.
pub(crate) async fn command(State(s): State<AppState>, Who(who): Who, req: Request) -> Response {
    let bytes = match body_bytes(req, &s).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let envelope = match parse_envelope(&bytes) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let name = envelope
        .command
        .and_then(|c| serde_json::from_str::<String>(c.get()).ok());
    let Some(name) = name else {
        return ApiError::bad("missing `command` (a string such as \"queue.publish\")")
            .into_response();
    };
    let request_id = envelope.request_id;
    let payload = envelope.payload.filter(|p| p.get() != "null");
    let env = Env { s: &s, who: &who };
    let body = match dispatch(&env, &name, payload).await {
        Ok(payload) => {
            json!({"success": true, "request_id": request_id, "payload": payload, "error": null})
        }
        // A failure also carries the machine code REST answers for the same error.
        Err(Refusal {
            error,
            code: Some(code),
        }) => json!({
            "success": false, "request_id": request_id, "payload": null, "error": error,
            "code": code,
        }),
        Err(Refusal { error, code: None }) => {
            json!({"success": false, "request_id": request_id, "payload": null, "error": error})
        }
    };
    Json(body).into_response()
}

async fn dispatch(s: &Env<'_>, name: &str, raw: Option<&RawValue>) -> Outcome {
    // The one command whose payload may be large; every other payload is small.
    if name == "queue.publish" {
        return publish(s, raw).await;
    }
    let p = match raw {
        None => Value::Object(Map::new()),
        Some(r) => match serde_json::from_str::<Value>(r.get()) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err("Invalid request: the payload must be a JSON object".into()),
            // serde_json stops at 128 levels of nesting: say so, not "missing field".
            Err(e) => return Err(format!("Invalid request: payload: {e}").into()),
        },
    };
    let f = Fields(&p);
    let unknown = || {
        Err(Refusal {
            error: format!("Unknown command: {name}"),
            code: None,
        })
    };
    if name == "ping" {
        return Ok(json!("PONG"));
    }
    match name.split_once('.') {
        Some(("queue", op)) => match queue_op(s, op, &f).await {
            Some(outcome) => outcome,
            None => unknown(),
        },
        Some(("kv", op)) => envelope_kv::run(s, op, &f).await.unwrap_or_else(unknown),
        Some(("pubsub", op)) => envelope_pubsub::run(s, op, &f)
            .await
            .unwrap_or_else(unknown),
        _ => unknown(),
    }
}

async fn queue_op(s: &Env<'_>, op: &str, f: &Fields<'_>) -> Option<Outcome> {
    Some(match op {
        "create" => create(s, f).await,
        "consume" => consume(s, f).await,
        "ack" | "nack" => ack_or_nack(s, op == "ack", f).await,
        "stats" => stats(s, f).await,
        "list" => match call(s, Command::ListQueues).await {
            Ok(Reply::Queues { queues }) => Ok(json!({ "queues": queues })),
            Ok(r) => Err(odd(&r)),
            Err(e) => Err(e),
        },
        "purge" => {
            let queue = f.need("queue");
            match queue {
                Ok(q) => match call(s, Command::Purge { queue: q.into() }).await {
                    Ok(Reply::Purged { purged }) => Ok(json!({ "purged": purged })),
                    Ok(r) => Err(odd(&r)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            }
        }
        "delete" => delete(s, f).await,
        "configure" => flow::configure(s, f).await,
        "pause" | "resume" => flow::pause(s, f, op == "pause").await,
        "rate_limit" => flow::rate_limit(s, f).await,
        "groups" => flow::groups(s, f).await,
        _ => return None,
    })
}

/// Queue options from `config` (TS, Rust) or the top level (Python), under either name.
fn queue_settings(f: &Fields<'_>) -> QueueSettings {
    let nested = f.object("config").map(|m| Value::Object(m.clone()));
    let inner = nested.as_ref().map(Fields);
    let pick_u = |k: &str| inner.as_ref().and_then(|c| c.uint(k)).or_else(|| f.uint(k));
    let pick_n = |k: &str| {
        inner
            .as_ref()
            .and_then(|c| c.number(k))
            .or_else(|| f.number(k))
    };
    let pick_b = |k: &str| inner.as_ref().and_then(|c| c.bool(k)).or_else(|| f.bool(k));
    let clamp32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    QueueSettings {
        max_retries: pick_u("default_max_retries")
            .or_else(|| pick_u("max_retries"))
            .map(clamp32),
        ack_deadline_secs: pick_n("ack_deadline_secs"),
        max_depth: pick_u("max_depth"),
        prefetch: pick_u("prefetch_limit")
            .or_else(|| pick_u("prefetch"))
            .map(clamp32),
        default_priority: pick_u("default_priority").map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
        dead_letter: pick_b("dead_letter"),
        dlq_max: pick_u("dlq_max"),
        message_ttl: pick_n("message_ttl"),
        ..QueueSettings::default()
    }
}

async fn create(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let name = f.str("name").or_else(|| f.str("queue"));
    let name = name.ok_or("Invalid request: Missing 'name' field")?;
    let mut settings = queue_settings(f);
    flow::merge(&mut settings, flow::create_settings(f)?);
    let config = if settings.is_empty() {
        None
    } else {
        Some(
            settings
                .apply(&s.default_queue)
                .map_err(|e| Refusal::from(Failure::Core(e)))?,
        )
    };
    let cmd = Command::CreateQueue {
        queue: name.into(),
        config: config.map(Box::new),
    };
    match call(s, cmd).await? {
        Reply::QueueCreated { created, .. } => Ok(json!({"success": true, "created": created})),
        r => Err(odd(&r)),
    }
}

/// Splits a `queue.publish` payload into its byte array, still as text, and its other (small)
/// fields as a `Value`.
fn split_publish(raw: Option<&RawValue>) -> Result<(Option<&RawValue>, Value), String> {
    // A payload that is not an object has no fields, as when it was read as a `Value`.
    let mut fields: BTreeMap<String, &RawValue> = match raw {
        Some(r) if r.get().starts_with('{') => {
            serde_json::from_str(r.get()).map_err(|e| format!("Invalid request: {e}"))?
        }
        _ => BTreeMap::new(),
    };
    let array = fields
        .remove("payload")
        .filter(|p| p.get().starts_with('['));
    let rest = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k, serde_json::from_str(v.get()).ok()?)))
        .collect();
    Ok((array, Value::Object(rest)))
}

async fn publish(s: &Env<'_>, raw: Option<&RawValue>) -> Outcome {
    let (array, rest) = split_publish(raw)?;
    let f = &Fields(&rest);
    let queue = f.need("queue")?;
    let array = array.ok_or("Invalid request: Missing 'payload' field")?;
    // Integers are cast to bytes (wrapping), other elements dropped; past the message limit,
    // decoding stops with a `payload too large` error.
    let payload = ByteArray {
        max: s.max_message_bytes,
    }
    .decode(array.get())?;
    let headers = f
        .object("headers")
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let message = PublishMessage {
        payload: Some(payload.into()),
        priority: f
            .uint("priority")
            .map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
        max_retries: f
            .uint("max_retries")
            .map(|r| u32::try_from(r).unwrap_or(u32::MAX)),
        headers,
        idempotency_key: f.str("idempotency_key").map(str::to_owned),
        group: f.opt_text("group")?.map(str::to_owned),
        ..PublishMessage::default()
    };
    let cmd = Command::Publish {
        queue: queue.into(),
        message,
    };
    match call(s, cmd).await? {
        Reply::Published(p) if p.duplicate => Ok(json!({
            "message_id": p.message_id, "position": p.position, "duplicate": true
        })),
        Reply::Published(p) => Ok(json!({"message_id": p.message_id, "position": p.position})),
        r => Err(odd(&r)),
    }
}

/// A delivery in the SDK shape: the body as a byte array (JSON bodies as their JSON text),
/// `group` only for a message published with one.
fn sdk_message(d: &Delivery) -> Value {
    let bytes: Vec<u8> = match (&d.payload, &d.message) {
        (Some(p), _) => p.to_vec(),
        (None, Some(m)) => m.as_str().as_bytes().to_vec(),
        (None, None) => Vec::new(),
    };
    let mut message = json!({
        "id": d.message_id,
        "payload": bytes,
        "priority": d.priority,
        "retry_count": d.retry_count,
        "max_retries": d.max_retries,
        "headers": d.headers,
        "lease": d.lease,
        "deadline": d.lease_deadline.0 / 1000,
        "timestamp": d.published_at.0 / 1000,
    });
    if let Some(group) = &d.group {
        message["group"] = json!(group.as_ref());
    }
    message
}

async fn consume(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let queue = f.need("queue")?;
    let cmd = Command::Consume {
        queue: queue.into(),
        wait_ms: f.secs_ms("timeout")?.unwrap_or(0),
        lease_ms: f.secs_ms("ack_deadline")?,
        max_messages: 1,
        consumer_id: f.str("consumer_id").map(String::from),
    };
    match s.engine.consume_as(s.who, cmd).await {
        Ok(messages) => Ok(json!({"message": messages.first().map(sdk_message)})),
        // Consuming from a queue that does not exist yet finds nothing, as in Synap's SDKs.
        Err(Failure::Core(Error::QueueNotFound { .. })) => Ok(json!({ "message": null })),
        Err(e) => Err(e.into()),
    }
}

async fn ack_or_nack(s: &Env<'_>, ack: bool, f: &Fields<'_>) -> Outcome {
    let queue = f.need("queue")?.to_owned();
    let id_text = f.need("message_id")?;
    let message_id = synap_core::MessageId::parse_str(id_text)
        .map_err(|_| format!("Message not found: {id_text}"))?;
    let lease = f.uint("lease").map(synap_core::LeaseToken);
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
            requeue: f.bool("requeue").unwrap_or(true),
            delay_ms: f.secs_ms("delay")?,
            error: f.str("error").map(String::from),
            lease,
            snooze: f.opt_flag("snooze")?.unwrap_or(false),
        }
    };
    match call(s, cmd).await? {
        Reply::Acked => Ok(json!({"success": true})),
        Reply::Nacked { action } => Ok(json!({"success": true, "action": action})),
        r => Err(odd(&r)),
    }
}

async fn stats(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let queue = f.need("queue")?;
    match call(
        s,
        Command::Stats {
            queue: queue.into(),
        },
    )
    .await?
    {
        Reply::Stats(st) => {
            let mut v = super::wire::to_json(&super::wire::queue_stats(&st));
            v["published"] = json!(st.published_total);
            v["consumed"] = json!(st.consumed_total);
            v["acked"] = json!(st.acked_total);
            v["nacked"] = json!(st.nacked_total);
            v["dead_lettered"] = json!(st.dead_lettered_total);
            Ok(v)
        }
        r => Err(odd(&r)),
    }
}

async fn delete(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let queue = f.str("queue").or_else(|| f.str("name"));
    let queue = queue.ok_or("Invalid request: Missing 'queue' field")?;
    match call(
        s,
        Command::DeleteQueue {
            queue: queue.into(),
        },
    )
    .await?
    {
        Reply::QueueDeleted { deleted } => Ok(json!({ "deleted": deleted })),
        r => Err(odd(&r)),
    }
}
