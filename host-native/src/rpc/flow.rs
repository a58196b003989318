//! Flow control over SynapRPC (DESIGN.md §12; Synap extensions, which no official SDK sends):
//!
//! - `QCONFIGURE queue settings` — `settings` a Map of what `POST /queue/{name}` takes (an
//!   empty Map is a get-or-create) → Map `{queue, created}`;
//! - `QPAUSE queue` / `QRESUME queue` → Map `{paused}`;
//! - `QRATELIMIT queue for_secs` → Map `{rate_limited_until_ms}` (Unix ms);
//! - `QGROUPS queue [limit]` → Array of Map `{group, ready, in_flight, delayed}`, largest
//!   first (`limit` 1–1000, 100 by default).
//!
//! The flow arguments of the SDK commands (`QPUBLISH`'s group, `QNACK`'s delay and snooze,
//! `QCREATE`'s settings) are read in queue.rs with the helpers here. Values of the wrong type
//! are refused, never dropped; engine refusals read as over HTTP (`Invalid value: …`).

use serde_json::Value as Json;
use synap_core::{Command, Reply};

use super::conn::{Session, input_error, text_arg};
use super::value::Value;
use super::{Answer, engine_error, odd};
use crate::handle::Failure;
use crate::settings::{ApplySettings as _, QueueSettings, invalid, secs_to_ms};

/// Nesting a settings Map may have (settings nest two levels: `rate_limit.max`).
const MAX_SETTINGS_DEPTH: usize = 4;

/// Runs `command` if it is a flow-control command.
pub(super) async fn run(s: &Session, command: &str, args: &[Value]) -> Option<Answer> {
    Some(match command {
        "QCONFIGURE" => configure(s, args).await,
        "QPAUSE" | "QRESUME" => pause(s, args, command == "QPAUSE").await,
        "QRATELIMIT" => rate_limit(s, args).await,
        "QGROUPS" => groups(s, args).await,
        _ => return None,
    })
}

/// A value as JSON, for the settings Map: keys must be text, floats finite.
fn json_of(v: &Value, depth: usize) -> Result<Json, String> {
    if depth > MAX_SETTINGS_DEPTH {
        return Err("Invalid value: settings: nested too deeply".into());
    }
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(n) => Json::from(*n),
        Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(Json::Number)
            .ok_or("Invalid value: settings: numbers must be finite")?,
        Value::Str(_) | Value::Bytes(_) => Json::String(
            v.as_text()
                .ok_or("Invalid value: settings: text must be UTF-8")?
                .to_owned(),
        ),
        Value::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| json_of(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(pairs) => {
            let mut m = serde_json::Map::new();
            for (k, v) in pairs {
                let k = k
                    .as_text()
                    .ok_or("Invalid value: settings: keys must be strings")?;
                m.insert(k.to_owned(), json_of(v, depth + 1)?);
            }
            Json::Object(m)
        }
    })
}

/// The settings Map at `i`, strictly (the shape and checks of `POST /queue/{name}`);
/// absent or `Null` is no settings.
pub(super) fn settings_arg(args: &[Value], i: usize) -> Result<QueueSettings, String> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(QueueSettings::default()),
        Some(v @ Value::Map(_)) => serde_json::from_value(json_of(v, 0)?)
            .map_err(|e| format!("Invalid value: settings: {e}")),
        Some(_) => Err(format!("ERR argument {i} must be a map")),
    }
}

/// An optional number of seconds at `i` (an `Int`, a `Float` or a decimal `Str`; absent or
/// `Null` is none), as milliseconds by the rule every transport shares.
pub(super) fn secs_arg(args: &[Value], i: usize, field: &str) -> Result<Option<u64>, String> {
    let secs = match args.get(i) {
        None | Some(Value::Null) => return Ok(None),
        #[allow(clippy::cast_precision_loss)] // Seconds far below 2^52.
        Some(Value::Int(n)) => *n as f64,
        Some(Value::Float(x)) => *x,
        Some(v) => v
            .as_text()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("ERR argument {i} must be a number of seconds"))?,
    };
    secs_to_ms(field, secs).map(Some).map_err(input_error)
}

/// An optional flag at `i`: `Bool`, `Int` (≠ 0 is true) or text (`true`/`false`, `1`/`0`,
/// any case); absent or `Null` is none, anything else an error.
pub(super) fn flag_arg(args: &[Value], i: usize) -> Result<Option<bool>, String> {
    let bad = || format!("ERR argument {i} must be a boolean");
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Int(n)) => Ok(Some(*n != 0)),
        Some(v) => match v
            .as_text()
            .map(|t| t.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            _ => Err(bad()),
        },
    }
}

/// An optional text at `i`: absent or `Null` is none, another type an error.
pub(super) fn opt_text_arg(args: &[Value], i: usize) -> Result<Option<String>, String> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text_arg(args, i).map(|t| Some(t.to_owned())),
    }
}

async fn configure(s: &Session, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    if args.len() < 2 {
        return Err("ERR missing argument 1".into());
    }
    let settings = settings_arg(args, 1)?;
    let cmd = if settings.is_empty() {
        Command::CreateQueue {
            queue,
            config: None,
        }
    } else {
        let config = settings
            .apply(&s.ctx.default_queue)
            .map_err(|e| engine_error(Failure::Core(e)))?;
        Command::ConfigureQueue {
            queue,
            config: Box::new(config),
        }
    };
    match s.call(cmd).await? {
        Reply::QueueCreated { queue, created } => Ok(Value::map([
            ("queue", Value::Str(queue)),
            ("created", Value::Bool(created)),
        ])),
        r => Err(odd(&r)),
    }
}

async fn pause(s: &Session, args: &[Value], pause: bool) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    let cmd = if pause {
        Command::PauseQueue { queue }
    } else {
        Command::ResumeQueue { queue }
    };
    match s.call(cmd).await? {
        Reply::QueuePaused { paused } => Ok(Value::map([("paused", Value::Bool(paused))])),
        r => Err(odd(&r)),
    }
}

async fn rate_limit(s: &Session, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    let for_ms = secs_arg(args, 1, "for_secs")?.ok_or("ERR missing argument 1")?;
    if for_ms == 0 {
        return Err(input_error(invalid("for_secs", "must be at least 1 ms")));
    }
    match s.call(Command::RateLimit { queue, for_ms }).await? {
        Reply::RateLimited { until } => Ok(Value::map([(
            "rate_limited_until_ms",
            Value::count(until.0),
        )])),
        r => Err(odd(&r)),
    }
}

async fn groups(s: &Session, args: &[Value]) -> Answer {
    let queue = text_arg(args, 0)?.to_owned();
    let limit = match args.get(1) {
        None | Some(Value::Null) => 100,
        Some(_) => u64::try_from(super::conn::int_arg(args, 1)?)
            .map_err(|_| "ERR argument 1 must not be negative".to_owned())?,
    };
    match s.call(Command::Groups { queue, limit }).await? {
        Reply::Groups { groups } => Ok(Value::Array(
            groups
                .into_iter()
                .map(|g| {
                    Value::map([
                        ("group", Value::Str(g.group)),
                        ("ready", Value::count(g.ready)),
                        ("in_flight", Value::count(g.in_flight)),
                        ("delayed", Value::count(g.delayed)),
                    ])
                })
                .collect(),
        )),
        r => Err(odd(&r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_maps_read_as_rest_bodies() {
        let rate = Value::map([("max", Value::Int(2)), ("per_secs", Value::Float(1.5))]);
        let map = Value::map([
            ("max_in_flight", Value::Int(2)),
            ("ordered_groups", Value::Bool(true)),
            ("rate_limit", rate),
        ]);
        let s = settings_arg(&[map], 0).unwrap();
        assert_eq!(s.max_in_flight, Some(2));
        assert_eq!(s.ordered_groups, Some(true));
        assert_eq!(s.rate_limit.map(|r| (r.max, r.per_secs)), Some((2, 1.5)));
        let unknown = Value::map([("max_in_fligth", Value::Int(2))]);
        let e = settings_arg(&[unknown], 0).unwrap_err();
        assert!(
            e.starts_with("Invalid value: settings: unknown field"),
            "{e}"
        );
        let wrong = Value::map([("max_in_flight", Value::str("two"))]);
        assert!(settings_arg(&[wrong], 0).is_err());
        assert!(
            settings_arg(&[Value::Int(1)], 0)
                .unwrap_err()
                .starts_with("ERR argument 0")
        );
        let mut deep = Value::Int(1);
        for _ in 0..10 {
            deep = Value::Array(vec![deep]);
        }
        let e = settings_arg(&[Value::map([("retry_delays", deep)])], 0).unwrap_err();
        assert!(e.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn flags_and_seconds_are_strict() {
        let args = [
            Value::Bool(true),
            Value::str("False"),
            Value::Int(0),
            Value::str("maybe"),
            Value::Float(0.25),
            Value::str("2"),
            Value::Int(-1),
        ];
        assert_eq!(flag_arg(&args, 0), Ok(Some(true)));
        assert_eq!(flag_arg(&args, 1), Ok(Some(false)));
        assert_eq!(flag_arg(&args, 2), Ok(Some(false)));
        assert!(flag_arg(&args, 3).is_err());
        assert_eq!(flag_arg(&args, 9), Ok(None));
        assert_eq!(secs_arg(&args, 4, "delay"), Ok(Some(250)));
        assert_eq!(secs_arg(&args, 5, "delay"), Ok(Some(2000)));
        let e = secs_arg(&args, 6, "delay").unwrap_err();
        assert!(e.starts_with("Invalid value: delay:"), "{e}");
        assert!(secs_arg(&args, 0, "delay").is_err());
    }
}
