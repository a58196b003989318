//! Replay of a recorded command log: the same engine, fed the recorded `(at, command)` pairs,
//! with timers run in between exactly as a server's timer would have run them.
//!
//! Record format (one JSON object per line): `{"at": <ms>, "command": <Command>}`, where
//! `command` is the core's `Command` in its serde form, e.g.
//! `{"at": 1000, "command": {"type": "publish", "queue": "q", "message": {"n": 1}}}`; or what
//! `synap-server data export` writes: a head line `{"type": "head", "seed", "snapshot_index",
//! "engine", "state"}` and one `{"index", "now", "commands": [<Command>…]}` line per engine
//! turn. Times must not go backwards. Blank lines are skipped.
//!
//! The engine is deterministic and every timer runs at its own deadline, so a replay of a
//! server's export ends in exactly the server's state: the report's `state_digest` equals the
//! server's at the same time.

use serde::{Deserialize, Serialize};

use super::driver::Driver;
use super::metrics::Metrics;
use super::report::Report;
use super::scenario::MAX_SAMPLES;
use super::world::summary_of;
use crate::{Command, Engine, EngineConfig};

/// One recorded input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRecord {
    /// The `now` the command was handled at, in milliseconds.
    pub at: u64,
    /// The command.
    pub command: Command,
}

/// How to replay a log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayOptions {
    /// The engine seed the log was recorded with (message ids are drawn from it).
    pub seed: u64,
    /// The engine configuration the log was recorded with.
    pub engine: EngineConfig,
    /// Virtual time between samples (widened if the log would need more than 10,000).
    pub sample_interval_ms: u64,
    /// Keep running timers until this time after the last record; the last record's time when
    /// absent.
    pub until_ms: Option<u64>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            engine: EngineConfig::default(),
            sample_interval_ms: 60_000,
            until_ms: None,
        }
    }
}

/// What an export's head line says: the engine seed, the engine config, and the state at the
/// snapshot the records follow (absent when they start from an empty engine).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportHead {
    /// The engine seed the log was written with.
    pub seed: Option<u64>,
    /// The index of the last record the snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The engine config at the snapshot.
    pub engine: Option<EngineConfig>,
    /// The whole engine state at the snapshot.
    pub state: Option<Box<Engine>>,
}

/// A parsed command log: the records, and the head line of a server's export if it had one.
#[derive(Clone, Debug, Default)]
pub struct ReplayLog {
    /// The inputs, in order.
    pub records: Vec<LogRecord>,
    /// The export's head.
    pub head: Option<ExportHead>,
}

/// One record of `synap-server data export`: an engine turn.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnRecord {
    #[allow(dead_code)]
    index: u64,
    now: u64,
    commands: Vec<Command>,
}

/// Parses JSON lines: either `{"at", "command"}` records, or the output of
/// `synap-server data export` (a `{"type": "head", …}` line, then `{"index", "now",
/// "commands"}` turns). Errors name the line.
pub fn parse_log(text: &str) -> Result<ReplayLog, String> {
    let mut out = ReplayLog::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at_line = |e: serde_json::Error| format!("line {}: {e}", i + 1);
        let value: serde_json::Value = serde_json::from_str(line).map_err(at_line)?;
        if value.get("type").and_then(|t| t.as_str()) == Some("head") {
            if out.head.is_some() || !out.records.is_empty() {
                return Err(format!("line {}: a head line comes first, once", i + 1));
            }
            let mut value = value;
            value.as_object_mut().expect("an object").remove("type");
            out.head = Some(serde_json::from_value(value).map_err(at_line)?);
        } else if value.get("commands").is_some() {
            let turn: TurnRecord = serde_json::from_value(value).map_err(at_line)?;
            out.records
                .extend(turn.commands.into_iter().map(|command| LogRecord {
                    at: turn.now,
                    command,
                }));
        } else {
            out.records
                .push(serde_json::from_value(value).map_err(at_line)?);
        }
    }
    Ok(out)
}

/// Replays a log and reports on it (no workers, so no utilisation). An export's head gives
/// the seed, the config and the starting state; `options.seed` and `options.engine` apply to
/// logs without one. The report's `state_digest` is the engine's once its timers have run up
/// to the end time, comparable with a server's `GET /debug/state_digest?at_ms=` at that time.
pub fn replay(log: &ReplayLog, options: &ReplayOptions) -> Result<Report, String> {
    let records = &log.records;
    if let Some(i) = records.windows(2).position(|w| w[1].at < w[0].at) {
        return Err(format!("record {}: time goes backwards", i + 2));
    }
    if options.sample_interval_ms == 0 {
        return Err("sample_interval_ms must be positive".into());
    }
    let head = log.head.clone().unwrap_or_default();
    if head.snapshot_index.is_some_and(|i| i > 0) && head.state.is_none() {
        return Err("the log starts after a snapshot, and its head holds no state".into());
    }
    let seed = head.seed.unwrap_or(options.seed);
    let engine = match head.state {
        Some(state) => *state,
        None => Engine::new(head.engine.unwrap_or_else(|| options.engine.clone()), seed),
    };
    let from = engine.now().0;
    let start = records.first().map_or(from, |r| r.at.max(from));
    let last = records.last().map_or(start, |r| r.at.max(start));
    let end = options.until_ms.unwrap_or(last).max(last);
    let interval = options
        .sample_interval_ms
        .max((end - start).div_ceil(MAX_SAMPLES));
    let metrics = Metrics::new(seed, 10_000);
    let mut driver = Driver::new(engine, metrics, start, interval, end);
    for record in records {
        run_internal_before(&mut driver, record.at);
        // Refused commands are part of the recorded history too; their errors are hashed.
        let _ = driver.handle(record.at, record.command.clone());
        driver.events_processed += 1;
        driver.inbox.clear();
    }
    run_internal_before(&mut driver, end.saturating_add(1));
    driver.engine.handle_timeout(crate::Millis(end));
    let mut summary = summary_of(&driver);
    summary.simulated_ms = end - start;
    Ok(Report {
        name: "replay".into(),
        seed: seed.to_string(),
        finished: true,
        sample_interval_ms: interval,
        series: driver.series.clone(),
        summary,
        state_digest: Some(format!("{:016x}", driver.engine.state_digest())),
    })
}

/// Runs the timers and samples due strictly before `t`, in time order.
fn run_internal_before(driver: &mut Driver, t: u64) {
    while let Some(next) = driver.next_internal().filter(|n| *n < t) {
        if driver.timer_due(next) {
            driver.fire_timers(next);
        } else {
            driver.sample(next);
        }
    }
}
