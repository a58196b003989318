//! Replay of a recorded command log: the same engine, fed the recorded `(at, command)` pairs,
//! with timers run in between exactly as a server's timer would have run them.
//!
//! Record format (one JSON object per line): `{"at": <ms>, "command": <Command>}`, where
//! `command` is the core's `Command` in its serde form, e.g.
//! `{"at": 1000, "command": {"type": "publish", "queue": "q", "message": {"n": 1}}}`.
//! Times must not go backwards. Blank lines are skipped.

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

/// Parses JSON lines into records; errors name the line.
pub fn parse_log(text: &str) -> Result<Vec<LogRecord>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: LogRecord =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(record);
    }
    Ok(out)
}

/// Replays `records` and reports on them (no workers, so no utilisation).
pub fn replay(records: &[LogRecord], options: &ReplayOptions) -> Result<Report, String> {
    if let Some(i) = records.windows(2).position(|w| w[1].at < w[0].at) {
        return Err(format!("record {}: time goes backwards", i + 2));
    }
    if options.sample_interval_ms == 0 {
        return Err("sample_interval_ms must be positive".into());
    }
    let start = records.first().map_or(0, |r| r.at);
    let last = records.last().map_or(0, |r| r.at);
    let end = options.until_ms.unwrap_or(last).max(last);
    let interval = options
        .sample_interval_ms
        .max((end - start).div_ceil(MAX_SAMPLES));
    let engine = Engine::new(options.engine.clone(), options.seed);
    let metrics = Metrics::new(options.seed, 10_000);
    let mut driver = Driver::new(engine, metrics, start, interval, end);
    for record in records {
        run_internal_before(&mut driver, record.at);
        // Refused commands are part of the recorded history too; their errors are hashed.
        let _ = driver.handle(record.at, record.command.clone());
        driver.events_processed += 1;
        driver.inbox.clear();
    }
    run_internal_before(&mut driver, end.saturating_add(1));
    let mut summary = summary_of(&driver);
    summary.simulated_ms = end - start;
    Ok(Report {
        name: "replay".into(),
        seed: options.seed.to_string(),
        finished: true,
        sample_interval_ms: interval,
        series: driver.series.clone(),
        summary,
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
