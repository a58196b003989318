//! The workload simulator: the real `Engine` driven on a virtual clock by simulated producers
//! and workers, described by a `Scenario`.
//!
//! ```
//! use synap_core::sim::Simulation;
//!
//! let mut sim = Simulation::from_preset("steady").unwrap();
//! let partial = sim.step(60_000); // for live charts
//! assert!(!partial.finished);
//! let report = sim.run();
//! assert!(report.finished);
//! assert!(report.summary.completed > 0);
//! ```
//!
//! The clock jumps to the earliest of the engine's `poll_timeout()`, the next actor wake-up and
//! the next sample; it never ticks. Workers consume with long-poll `Consume { wait_ms }` and are
//! answered by `Event::Delivered` / `Event::WaitTimedOut`, exactly like the server's clients.
//! Metrics come from the engine's `Event::Observed` stream. A run is a pure function of the
//! scenario: same scenario and seed give the same report and `run_hash`, natively and in
//! WebAssembly (all arithmetic on random draws uses only correctly rounded IEEE operations).
//!
//! A producer may be an engine schedule (`every_ms` or a UTC cron pattern, virtual time 0 being
//! 1970-01-01 00:00 UTC) put at time 0, whose runs the engine's own timers publish; a task type
//! may have a fraction of its tasks cancelled some time after their publish (see `cancel`).
//!
//! Flow control runs as in the server: the scenario's `queue_config` carries every flow
//! setting, and a producer's `groups` spreads its tasks over message groups, optionally with one
//! heavy group taking a share of them ([`ProducerGroups`]); the report then gives waits per
//! [`GroupClass`]. [`sweep`] runs a scenario once per value of one parameter (the capacity
//! planner), flow settings included.
//!
//! A recorded command log can be replayed with [`replay`]; see that module for the format.

mod cancel;
mod class_metrics;
mod dist;
mod driver;
mod flow_metrics;
mod grouping;
mod metrics;
mod pipeline;
mod presets;
mod producer;
mod replay;
mod report;
mod scenario;
mod seed;
pub use seed::parse_seed;
mod sweep;
mod worker;
mod world;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_flow;
#[cfg(test)]
mod tests_flows;
#[cfg(test)]
mod tests_lifecycle;

pub use dist::Dist;
pub use grouping::{GroupClass, HEAVY_GROUP, ProducerGroups};
pub use pipeline::{ChildTasks, MAX_CHILD_ENTRIES};
pub use presets::{PresetInfo, preset, presets};
pub use replay::{ExportHead, LogRecord, ReplayLog, ReplayOptions, parse_log, replay};
pub use report::{
    CancelStats, ClassWait, DeadLetterReasons, FlowInterval, FlowSample, FlowStats,
    GroupClassStats, Percentiles, PriorityStats, PriorityWait, Report, Sample, Summary,
    WorkerStats,
};
pub use scenario::{
    Arrival, Cancellation, FollowUp, MAX_CRON_BYTES, MAX_DURATION_MS, MAX_EXPECTED_TASKS,
    MAX_PAYLOAD_BYTES, MAX_PRODUCER_GROUPS, MAX_PRODUCERS, MAX_SAMPLES, MAX_TASK_TYPES,
    MAX_WORKERS, MixEntry, Producer, Scenario, TaskType, WorkerGroup,
};

pub use sweep::{
    DEFAULT_RATE_WINDOW_MS, MAX_SWEEP_POINTS, Sweep, SweepMetric, SweepParam, SweepPoint,
    SweepReport, SweepTarget, ValueKind, apply, sweep, sweep_values,
};

use world::World;

/// Why a scenario was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid scenario: {0}")]
pub struct ScenarioError(pub String);

/// A simulation in progress.
pub struct Simulation {
    world: World,
}

impl Simulation {
    /// Validates the scenario and sets up the world at time 0 (the queue is created).
    pub fn new(scenario: Scenario) -> Result<Self, ScenarioError> {
        World::new(scenario)
            .map(|world| Self { world })
            .map_err(ScenarioError)
    }

    /// A simulation of a built-in scenario (see [`presets`]).
    pub fn from_preset(name: &str) -> Result<Self, ScenarioError> {
        Self::new(preset(name).map_err(ScenarioError)?)
    }

    /// Parses a scenario from JSON text and validates it.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario =
            serde_json::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        Self::new(scenario)
    }

    /// The scenario being simulated.
    #[must_use]
    pub fn scenario(&self) -> &Scenario {
        &self.world.stage.scenario
    }

    /// Simulates every event up to virtual time `until_ms` (capped at the duration) and returns
    /// the report so far. Steps may be repeated; a later `run()` gives the same final report as
    /// a single `run()`.
    pub fn step(&mut self, until_ms: u64) -> Report {
        self.world.step(until_ms);
        self.world.report()
    }

    /// Simulates to the end and returns the final report.
    pub fn run(&mut self) -> Report {
        let end = self.world.stage.scenario.duration_ms;
        self.step(end)
    }

    /// The report so far, without simulating further.
    #[must_use]
    pub fn report(&self) -> Report {
        self.world.report()
    }

    /// The engine being driven (for tests and inspection).
    #[must_use]
    pub fn engine(&self) -> &crate::Engine {
        &self.world.stage.driver.engine
    }
}
