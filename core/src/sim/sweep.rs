//! Sweeps: a scenario run once per value of one parameter, for the capacity planner
//! (`synap-server simulate --sweep`, and the web app's planner).
//!
//! Every point is a whole simulation of the scenario with that one parameter changed, same
//! seed; its summary holds wait p99 by priority and by group class, dead-lettered tasks and
//! utilisation. Flow-control settings sweep like the rest: `max_in_flight`,
//! `group_concurrency`, `rate_limit` and `group_rate_limit` (deliveries per window), and
//! `fair_groups` / `ordered_groups` (0 and 1, off and on: a side-by-side comparison).
//!
//! A sweep may carry a target, such as "flow p99 at most 60 s" ([`SweepTarget`]): each point
//! then says whether it meets it, and the report names the value a planner would pick (the
//! fewest workers meeting it, for a `workers` sweep).

use serde::{Deserialize, Serialize};

use super::report::Summary;
use super::scenario::Scenario;
use super::{ScenarioError, Simulation};
use crate::RateLimit;

/// Most points in one sweep.
pub const MAX_SWEEP_POINTS: usize = 25;

/// Window of a swept rate limit when the scenario has none: one second.
pub const DEFAULT_RATE_WINDOW_MS: u64 = 1_000;

/// A parameter a sweep may vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepParam {
    /// Workers in one worker group (`worker_group`).
    Workers,
    /// Multiplies every retry delay (`retry_delays_ms`, and `backoff`'s `initial_ms` and
    /// `max_ms`).
    RetryScale,
    /// The queue's `ack_deadline_ms`, and the `lease_ms` of worker groups that give one.
    AckDeadlineMs,
    /// Multiplies every producer's `rate_per_sec` and burst `size` (schedules unchanged).
    RateScale,
    /// The queue's `max_in_flight`.
    MaxInFlight,
    /// The queue's `group_concurrency`.
    GroupConcurrency,
    /// `rate_limit.max`: deliveries per window (the scenario's window, else 1 s).
    RateLimit,
    /// `group_rate_limit.max`, per group (the scenario's window, else 1 s).
    GroupRateLimit,
    /// `fair_groups`: 0 off, 1 on.
    FairGroups,
    /// `ordered_groups`: 0 off, 1 on.
    OrderedGroups,
}

/// What kind of number a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A whole number, at least the given one.
    Whole(u32),
    /// A positive factor.
    Factor,
    /// 0 (off) or 1 (on).
    Flag,
}

impl SweepParam {
    /// Every parameter.
    pub const ALL: [Self; 10] = [
        Self::Workers,
        Self::RetryScale,
        Self::AckDeadlineMs,
        Self::RateScale,
        Self::MaxInFlight,
        Self::GroupConcurrency,
        Self::RateLimit,
        Self::GroupRateLimit,
        Self::FairGroups,
        Self::OrderedGroups,
    ];

    /// Its name (as in JSON and on the command line).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Workers => "workers",
            Self::RetryScale => "retry_scale",
            Self::AckDeadlineMs => "ack_deadline_ms",
            Self::RateScale => "rate_scale",
            Self::MaxInFlight => "max_in_flight",
            Self::GroupConcurrency => "group_concurrency",
            Self::RateLimit => "rate_limit",
            Self::GroupRateLimit => "group_rate_limit",
            Self::FairGroups => "fair_groups",
            Self::OrderedGroups => "ordered_groups",
        }
    }

    /// The parameter of that name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown sweep parameter {name:?}; known: {}",
                    names.join(", ")
                )
            })
    }

    /// The numbers it takes.
    #[must_use]
    pub fn kind(self) -> ValueKind {
        match self {
            Self::Workers => ValueKind::Whole(0),
            Self::RetryScale | Self::RateScale => ValueKind::Factor,
            Self::FairGroups | Self::OrderedGroups => ValueKind::Flag,
            _ => ValueKind::Whole(1),
        }
    }

    fn check(self, x: f64) -> Result<(), String> {
        let ok = match self.kind() {
            ValueKind::Whole(min) => {
                x.is_finite() && x.fract() == 0.0 && x >= f64::from(min) && x <= f64::from(u32::MAX)
            }
            ValueKind::Factor => x.is_finite() && x > 0.0 && x <= 1000.0,
            ValueKind::Flag => x == 0.0 || x == 1.0,
        };
        if ok {
            return Ok(());
        }
        Err(match self.kind() {
            ValueKind::Whole(min) => format!("{}: {x} is not a whole number ≥ {min}", self.name()),
            ValueKind::Factor => format!("{}: {x} is not a factor in (0, 1000]", self.name()),
            ValueKind::Flag => format!("{}: {x} is not 0 (off) or 1 (on)", self.name()),
        })
    }
}

/// A figure of a run's summary that a sweep's target bounds, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMetric {
    /// Median end-to-end latency of completed flows.
    FlowP50,
    /// 99th percentile end-to-end latency of completed flows.
    FlowP99,
    /// The largest wait p99 among the priorities.
    WaitP99,
}

impl SweepMetric {
    /// Every metric.
    pub const ALL: [Self; 3] = [Self::FlowP50, Self::FlowP99, Self::WaitP99];

    /// Its name (as in JSON and on the command line).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::FlowP50 => "flow_p50",
            Self::FlowP99 => "flow_p99",
            Self::WaitP99 => "wait_p99",
        }
    }

    /// The metric of that name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown target metric {name:?}; known: {}",
                    names.join(", ")
                )
            })
    }

    /// Its value in a run's summary; `None` when the run has none (no flow completed, no
    /// delivery).
    #[must_use]
    pub fn of(self, s: &Summary) -> Option<u64> {
        let flows = s.flows.as_ref().filter(|f| f.completed > 0);
        match self {
            Self::FlowP50 => flows.map(|f| f.latency_ms.p50),
            Self::FlowP99 => flows.map(|f| f.latency_ms.p99),
            Self::WaitP99 => (s.by_priority.iter())
                .filter(|p| p.wait_ms.count > 0)
                .map(|p| p.wait_ms.p99)
                .max(),
        }
    }
}

/// What a sweep looks for: runs whose `metric` is at most `max_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepTarget {
    /// The figure bounded.
    pub metric: SweepMetric,
    /// Its largest acceptable value.
    pub max_ms: u64,
}

impl SweepTarget {
    /// Whether a run meets it (a run without the figure does not).
    #[must_use]
    pub fn met_by(&self, s: &Summary) -> bool {
        self.metric.of(s).is_some_and(|v| v <= self.max_ms)
    }
}

/// A sweep: `param` set to each of `values` in turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// What varies.
    pub param: SweepParam,
    /// For `workers`: the index of the worker group.
    #[serde(default)]
    pub worker_group: usize,
    /// The values, 1 to 25 of them.
    pub values: Vec<f64>,
    /// What the runs should meet, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SweepTarget>,
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The parameter's value.
    pub value: f64,
    /// The run's summary.
    pub summary: Summary,
    /// With a target: whether this run meets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meets_target: Option<bool>,
}

/// Every run of a sweep, in the order of its values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The scenario's name.
    pub name: String,
    /// Its seed, as decimal digits.
    pub seed: String,
    /// What varied.
    pub param: SweepParam,
    /// For `workers`: the worker group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_group: Option<String>,
    /// One per value.
    pub points: Vec<SweepPoint>,
    /// The sweep's target, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SweepTarget>,
    /// With a target: the value to pick among those meeting it, the largest for `rate_scale`
    /// (the most load) and the smallest for any other parameter (the fewest workers, the
    /// tightest cap); `None` when no run meets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<f64>,
}

/// `from`..=`to`: every whole number for whole and flag parameters, else `points` values
/// evenly spaced (rounded to 6 significant digits).
pub fn sweep_values(
    param: SweepParam,
    from: f64,
    to: f64,
    points: u32,
) -> Result<Vec<f64>, String> {
    if !(from.is_finite() && to.is_finite() && from >= 0.0 && from <= to) {
        return Err(format!(
            "{}: the range must satisfy 0 ≤ from ≤ to",
            param.name()
        ));
    }
    let values: Vec<f64> = if param.kind() == ValueKind::Factor {
        let n = points as usize;
        if !(2..=MAX_SWEEP_POINTS).contains(&n) {
            return Err(format!("{}: 2 to {MAX_SWEEP_POINTS} points", param.name()));
        }
        (0..n)
            .map(|i| significant(from + (to - from) * i as f64 / (n - 1) as f64))
            .collect()
    } else {
        let (lo, hi) = (from.ceil(), to.floor());
        if hi - lo + 1.0 > MAX_SWEEP_POINTS as f64 {
            return Err(format!(
                "{}: at most {MAX_SWEEP_POINTS} points",
                param.name()
            ));
        }
        let n = (hi - lo + 1.0).max(0.0) as u32;
        (0..n).map(|i| lo + f64::from(i)).collect()
    };
    values.iter().try_for_each(|&x| param.check(x))?;
    Ok(values)
}

/// `x` to 6 significant digits, so a range prints as typed (0.1, not 0.10000000000000003).
fn significant(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// `base` with `param` set to `x`.
pub fn apply(
    base: &Scenario,
    param: SweepParam,
    worker_group: usize,
    x: f64,
) -> Result<Scenario, String> {
    param.check(x)?;
    let mut s = base.clone();
    let whole = x as u32;
    let qc = &mut s.queue_config;
    let rate = |old: Option<RateLimit>| RateLimit {
        max: whole,
        per_ms: old.map_or(DEFAULT_RATE_WINDOW_MS, |r| r.per_ms),
    };
    match param {
        SweepParam::Workers => {
            let n = s.workers.len();
            let group = s.workers.get_mut(worker_group).ok_or_else(|| {
                format!("workers: the scenario has {n} worker groups, no group {worker_group}")
            })?;
            group.count = whole;
        }
        SweepParam::RetryScale => {
            let scale = |ms: u64| (ms as f64 * x).round() as u64;
            for d in &mut qc.retry_delays_ms {
                *d = scale(*d);
            }
            if let Some(b) = &mut qc.backoff {
                b.initial_ms = scale(b.initial_ms);
                b.max_ms = scale(b.max_ms);
            }
        }
        SweepParam::AckDeadlineMs => {
            qc.ack_deadline_ms = u64::from(whole);
            for g in &mut s.workers {
                if g.lease_ms.is_some() {
                    g.lease_ms = Some(u64::from(whole));
                }
            }
        }
        SweepParam::RateScale => scale_rates(&mut s, x),
        SweepParam::MaxInFlight => qc.max_in_flight = Some(whole),
        SweepParam::GroupConcurrency => qc.group_concurrency = Some(whole),
        SweepParam::RateLimit => qc.rate_limit = Some(rate(qc.rate_limit)),
        SweepParam::GroupRateLimit => qc.group_rate_limit = Some(rate(qc.group_rate_limit)),
        SweepParam::FairGroups => qc.fair_groups = x == 1.0,
        SweepParam::OrderedGroups => qc.ordered_groups = x == 1.0,
    }
    Ok(s)
}

fn scale_rates(s: &mut Scenario, x: f64) {
    use super::scenario::Arrival;
    for p in &mut s.producers {
        match &mut p.arrival {
            Arrival::Constant { rate_per_sec } | Arrival::Poisson { rate_per_sec } => {
                *rate_per_sec = (*rate_per_sec * x).max(1e-6);
            }
            Arrival::Bursts { size, .. } => {
                *size = ((f64::from(*size) * x).round() as u32).clamp(1, 1000);
            }
            Arrival::Schedule { .. } => {}
        }
    }
}

/// Runs the sweep: one whole simulation per value, in order. An invalid value or scenario is
/// refused before anything runs, naming the value.
pub fn sweep(base: &Scenario, spec: &Sweep) -> Result<SweepReport, ScenarioError> {
    if spec.values.is_empty() || spec.values.len() > MAX_SWEEP_POINTS {
        return Err(ScenarioError(format!(
            "a sweep takes 1 to {MAX_SWEEP_POINTS} values"
        )));
    }
    let name = spec.param.name();
    let mut sims = Vec::with_capacity(spec.values.len());
    for &x in &spec.values {
        let s = apply(base, spec.param, spec.worker_group, x).map_err(ScenarioError)?;
        let sim =
            Simulation::new(s).map_err(|e| ScenarioError(format!("{name} = {x}: {}", e.0)))?;
        sims.push((x, sim));
    }
    let points: Vec<SweepPoint> = sims
        .into_iter()
        .map(|(value, mut sim)| {
            let summary = sim.run().summary;
            SweepPoint {
                value,
                meets_target: spec.target.map(|t| t.met_by(&summary)),
                summary,
            }
        })
        .collect();
    let meeting = (points.iter())
        .filter(|p| p.meets_target == Some(true))
        .map(|p| p.value);
    let answer = if spec.param == SweepParam::RateScale {
        meeting.reduce(f64::max)
    } else {
        meeting.reduce(f64::min)
    };
    Ok(SweepReport {
        name: base.name.clone(),
        seed: base.seed.to_string(),
        param: spec.param,
        worker_group: (spec.param == SweepParam::Workers)
            .then(|| base.workers.get(spec.worker_group).map(|g| g.name.clone()))
            .flatten(),
        points,
        target: spec.target,
        answer,
    })
}
