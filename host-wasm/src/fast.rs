//! The engine's fast paths for JS callers that drive it hard (simulations, the dashboard):
//! every command of `handle` crosses the JS/wasm boundary as an object converted field by
//! field, which costs far more than the engine's own work. These calls cross once per batch.
//!
//! - `handleBatch(nowMs, commandsJson)`: a JSON array of commands (the same objects `handle`
//!   takes) in one string; returns one string, a JSON array with `{"ok": reply}` or
//!   `{"error": error}` per command, in order — the reply and error objects `handle` returns
//!   and throws. The commands run one after the other at `nowMs`; one failing does not stop
//!   the rest. A string that is not an array of commands throws before any runs.
//! - `drainEventsJson()`: `drainEvents()` as one JSON string.
//! - `cycles(nowMs, queue, count, messageJson?, batch?)`: `count` publish → consume → ack
//!   cycles run inside the engine, `batch` messages at a time (1 to 100, default 1), each
//!   message the body `messageJson` (JSON text, default `{}`), each delivery acked under its
//!   lease. Returns `{published, consumed, acked, events}`; the event queue is drained along
//!   the way (what it held before the call too) and `events` counts what was drained.

use serde::Serialize;
use synap_core::{Command, Error, Json, Millis, PublishMessage, Reply};
use wasm_bindgen::prelude::*;

use crate::{WasmEngine, error_to_js, invalid, millis, to_js};

/// Most messages one cycle publishes and consumes (the engine's consume limit).
const MAX_BATCH: u32 = 100;

#[wasm_bindgen(typescript_custom_section)]
const CYCLES_RESULT: &str = r#"
/** What `Engine.cycles` did: messages published, consumed and acked, and events drained. */
export interface CyclesResult {
  published: number;
  consumed: number;
  acked: number;
  events: number;
}
"#;

/// One command's outcome in `handleBatch`'s answer.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok(Reply),
    Error(serde_json::Value),
}

/// The core error as `handle` throws it: its serde form (with `code`) plus `message`.
fn error_value(error: &Error) -> serde_json::Value {
    let mut value = serde_json::to_value(error).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("message".into(), error.to_string().into());
    }
    value
}

/// A whole number in `1..=max` given as a JS number.
fn count_arg(field: &str, n: f64, max: f64) -> Result<u64, JsValue> {
    if (1.0..=max).contains(&n) && n.fract() == 0.0 {
        Ok(n as u64)
    } else {
        Err(invalid(
            field,
            &format!("must be a whole number in 1..={max}"),
        ))
    }
}

/// What `cycles` counted.
#[derive(Serialize, Default)]
struct Cycles {
    published: u64,
    consumed: u64,
    acked: u64,
    events: u64,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// Applies a JSON array of commands at `nowMs`; returns a JSON array of
    /// `{"ok": reply}` / `{"error": error}`, one per command, in order.
    #[wasm_bindgen(js_name = handleBatch)]
    pub fn handle_batch(&mut self, now_ms: f64, commands_json: &str) -> Result<String, JsValue> {
        let now = Millis(millis("now", now_ms)?);
        let commands: Vec<Command> =
            serde_json::from_str(commands_json).map_err(|e| invalid("commands", &e.to_string()))?;
        let outcomes: Vec<Outcome> = commands
            .into_iter()
            .map(|c| match self.inner.handle(now, c) {
                Ok(reply) => Outcome::Ok(reply),
                Err(e) => Outcome::Error(error_value(&e)),
            })
            .collect();
        serde_json::to_string(&outcomes).map_err(|e| invalid("replies", &e.to_string()))
    }

    /// Every pending event, oldest first, as a JSON array.
    #[wasm_bindgen(js_name = drainEventsJson)]
    pub fn drain_events_json(&mut self) -> Result<String, JsValue> {
        let mut events = Vec::new();
        while let Some(e) = self.inner.poll_event() {
            events.push(e);
        }
        serde_json::to_string(&events).map_err(|e| invalid("events", &e.to_string()))
    }

    /// Runs `count` publish → consume → ack cycles on `queue` at `nowMs`, `batch` messages at
    /// a time, each carrying `messageJson`; throws the first engine error.
    #[wasm_bindgen(unchecked_return_type = "CyclesResult")]
    pub fn cycles(
        &mut self,
        now_ms: f64,
        queue: &str,
        count: f64,
        message_json: Option<String>,
        batch: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let now = Millis(millis("now", now_ms)?);
        let count = count_arg("count", count, crate::MAX_SAFE)?;
        let batch = count_arg("batch", batch.unwrap_or(1.0), f64::from(MAX_BATCH))?;
        let body: serde_json::Value = serde_json::from_str(message_json.as_deref().unwrap_or("{}"))
            .map_err(|e| invalid("message", &e.to_string()))?;
        let message = PublishMessage {
            message: Some(Json::from_value(&body)),
            ..PublishMessage::default()
        };
        let mut done = Cycles::default();
        let mut left = count;
        while left > 0 {
            let n = left.min(batch);
            self.publish(now, queue, &message, n)?;
            done.published += n;
            let consume = Command::Consume {
                queue: queue.to_owned(),
                wait_ms: 0,
                lease_ms: None,
                max_messages: u32::try_from(n).unwrap_or(MAX_BATCH),
                consumer_id: None,
            };
            let messages = match self.inner.handle(now, consume) {
                Ok(Reply::Messages { messages }) => messages,
                Ok(other) => return Err(invalid("queue", &format!("consume answered {other:?}"))),
                Err(e) => return Err(error_to_js(&e)),
            };
            done.consumed += messages.len() as u64;
            for d in messages {
                let ack = Command::Ack {
                    queue: queue.to_owned(),
                    message_id: d.message_id,
                    lease: Some(d.lease),
                    result: None,
                };
                self.inner.handle(now, ack).map_err(|e| error_to_js(&e))?;
                done.acked += 1;
            }
            while self.inner.poll_event().is_some() {
                done.events += 1;
            }
            left -= n;
        }
        to_js(&done)
    }
}

impl WasmEngine {
    /// Publishes `n` copies of `message`: one `Publish`, or a `PublishBatch` for more.
    fn publish(
        &mut self,
        now: Millis,
        queue: &str,
        message: &PublishMessage,
        n: u64,
    ) -> Result<(), JsValue> {
        let cmd = if n == 1 {
            Command::Publish {
                queue: queue.to_owned(),
                message: message.clone(),
            }
        } else {
            Command::PublishBatch {
                queue: queue.to_owned(),
                messages: (0..n).map(|_| message.clone()).collect(),
            }
        };
        self.inner
            .handle(now, cmd)
            .map(drop)
            .map_err(|e| error_to_js(&e))
    }
}
