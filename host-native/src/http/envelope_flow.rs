//! Flow control over the envelope (DESIGN.md §12), Synap's own `queue.*` commands beside the
//! SDKs': `queue.configure` (the settings `POST /queue/{name}` takes), `queue.pause`,
//! `queue.resume`, `queue.rate_limit` and `queue.groups`, and the flow settings of
//! `queue.create`. The answers have the REST routes' shapes; the limits themselves are
//! applied by the engine.
//!
//! The SDKs' fields are read leniently (a wrong type counts as absent), but these fields are
//! Synap's own: a value of the wrong type is refused (`Invalid value: …`,
//! `invalid_argument`) rather than silently dropped.

use serde_json::{Map, Value, json};
use synap_core::{Command, Reply};

use super::{Env, Fields, Outcome, Refusal, call, odd};
use crate::handle::Failure;
use crate::settings::{ApplySettings as _, QueueSettings, invalid};

/// The flow settings `queue.create` reads besides the SDKs' options.
const FLOW_KEYS: [&str; 7] = [
    "max_in_flight",
    "group_concurrency",
    "ordered_groups",
    "fair_groups",
    "rate_limit",
    "group_rate_limit",
    "max_snoozes",
];

/// Queue settings from JSON, strictly: the shape and errors of `POST /queue/{name}`.
fn settings_from(v: Value) -> Result<QueueSettings, Refusal> {
    serde_json::from_value(v).map_err(|e| format!("Invalid value: config: {e}").into())
}

/// The flow settings of a `queue.create` payload, from `config` or the top level (as the
/// other options), strictly.
pub(super) fn create_settings(f: &Fields<'_>) -> Result<QueueSettings, Refusal> {
    let nested = f.object("config");
    let mut picked = Map::new();
    for k in FLOW_KEYS {
        let inner = nested.and_then(|c| c.get(k)).filter(|v| !v.is_null());
        if let Some(v) = inner.or_else(|| f.get(k)) {
            picked.insert(k.to_owned(), v.clone());
        }
    }
    settings_from(Value::Object(picked))
}

/// Sets the flow settings of `flow` on `into`.
pub(super) fn merge(into: &mut QueueSettings, flow: QueueSettings) {
    into.max_in_flight = flow.max_in_flight;
    into.group_concurrency = flow.group_concurrency;
    into.ordered_groups = flow.ordered_groups;
    into.fair_groups = flow.fair_groups;
    into.rate_limit = flow.rate_limit;
    into.group_rate_limit = flow.group_rate_limit;
    into.max_snoozes = flow.max_snoozes;
}

/// The queue a command names (`queue`, or `name`).
fn queue_of(f: &Fields<'_>) -> Result<String, Refusal> {
    let queue = f.str("queue").or_else(|| f.str("name"));
    Ok(queue
        .ok_or("Invalid request: Missing 'queue' field")?
        .to_owned())
}

/// `queue.configure {queue, config}`: as `POST /queue/{name}` with `config` as its body —
/// the settings over the server's defaults; an empty or absent `config` is a get-or-create.
/// → `{success, queue, created}`.
pub(super) async fn configure(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let queue = queue_of(f)?;
    let settings = match f.get("config") {
        Some(v) => settings_from(v.clone())?,
        None => QueueSettings::default(),
    };
    let cmd = if settings.is_empty() {
        Command::CreateQueue {
            queue,
            config: None,
        }
    } else {
        let config = settings
            .apply(&s.default_queue)
            .map_err(|e| Refusal::from(Failure::Core(e)))?;
        Command::ConfigureQueue {
            queue,
            config: Box::new(config),
        }
    };
    match call(s, cmd).await? {
        Reply::QueueCreated { queue, created } => {
            Ok(json!({"success": true, "queue": queue, "created": created}))
        }
        r => Err(odd(&r)),
    }
}

/// `queue.pause {queue}` / `queue.resume {queue}` → `{success, paused}`.
pub(super) async fn pause(s: &Env<'_>, f: &Fields<'_>, pause: bool) -> Outcome {
    let queue = queue_of(f)?;
    let cmd = if pause {
        Command::PauseQueue { queue }
    } else {
        Command::ResumeQueue { queue }
    };
    match call(s, cmd).await? {
        Reply::QueuePaused { paused } => Ok(json!({"success": true, "paused": paused})),
        r => Err(odd(&r)),
    }
}

/// `queue.rate_limit {queue, for_secs}` → `{success, rate_limited_until_ms}`.
pub(super) async fn rate_limit(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let queue = queue_of(f)?;
    let for_ms = f
        .secs_ms("for_secs")?
        .ok_or("Invalid request: Missing 'for_secs' field")?;
    if for_ms == 0 {
        let e = invalid("for_secs", "must be at least 1 ms");
        return Err(Failure::Core(e).into());
    }
    match call(s, Command::RateLimit { queue, for_ms }).await? {
        Reply::RateLimited { until } => {
            Ok(json!({"success": true, "rate_limited_until_ms": until.0}))
        }
        r => Err(odd(&r)),
    }
}

/// `queue.groups {queue, limit?}` → `{groups: [{group, ready, in_flight, delayed}]}`, largest
/// first (`limit` 1–1000, 100 when absent).
pub(super) async fn groups(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let queue = queue_of(f)?;
    let limit = match f.get("limit") {
        None => 100,
        Some(v) => v
            .as_u64()
            .ok_or("Invalid value: limit: must be a whole number")?,
    };
    match call(s, Command::Groups { queue, limit }).await? {
        Reply::Groups { groups } => {
            let list: Vec<Value> = groups
                .into_iter()
                .map(|g| {
                    json!({
                        "group": g.group, "ready": g.ready,
                        "in_flight": g.in_flight, "delayed": g.delayed,
                    })
                })
                .collect();
            Ok(json!({ "groups": list }))
        }
        r => Err(odd(&r)),
    }
}
