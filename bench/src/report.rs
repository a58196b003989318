//! Results: each scenario's measure per run, their medians, the ratios to the peers, and the
//! tables (Markdown, so they paste into docs/benchmarks.md) or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::Scenario;
use crate::harness::{RunResult, quantile_ms};

/// One scenario of one run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Measure {
    /// Messages counted per second (published in A, acked otherwise).
    pub(crate) rate: f64,
    pub(crate) done: u64,
    pub(crate) target: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) timed_out: bool,
    /// Publish→ack latency percentiles (C and open loop).
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p999_ms: Option<f64>,
    pub(crate) errors: Vec<String>,
    /// The queue's `max_in_flight` (`--flow`'s cap runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_in_flight: Option<u64>,
    /// The most messages in flight and held back the queue's stats showed during the run
    /// (`--flow`: polled on Synap's C runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) peaks: Option<Peaks>,
}

/// The largest `in_flight` and `held_back` seen in a queue's stats during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Peaks {
    pub(crate) in_flight: u64,
    pub(crate) held_back: u64,
}

impl From<&RunResult> for Measure {
    fn from(r: &RunResult) -> Self {
        let q = |p: f64| r.latency.as_ref().map(|h| quantile_ms(h, p));
        Self {
            rate: r.rate(),
            done: r.done,
            target: r.target,
            elapsed_s: r.elapsed.as_secs_f64(),
            timed_out: r.timed_out,
            p50_ms: q(0.50),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            errors: r.errors.iter().take(5).cloned().collect(),
            max_in_flight: None,
            peaks: None,
        }
    }
}

/// A row of the table: one system, path and mode, with every run's measures.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) system: &'static str,
    pub(crate) path: String,
    pub(crate) mode: &'static str,
    /// The peers' storage this row compares with: memory, or durable.
    pub(crate) durable: bool,
    pub(crate) runs: Vec<BTreeMap<Scenario, Measure>>,
    /// Why a run failed before measuring, if one did.
    pub(crate) failures: Vec<String>,
}

/// The median of each figure over the runs.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Median {
    pub(crate) rate: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p999_ms: Option<f64>,
    /// Some run did not finish (time limit or errors).
    pub(crate) incomplete: bool,
}

/// The median of `xs` (the mean of the middle two for an even count).
pub(crate) fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        f64::midpoint(xs[n / 2 - 1], xs[n / 2])
    })
}

impl Row {
    pub(crate) fn median(&self, s: Scenario) -> Option<Median> {
        let ms: Vec<&Measure> = self.runs.iter().filter_map(|r| r.get(&s)).collect();
        if ms.is_empty() {
            return None;
        }
        let of =
            |f: &dyn Fn(&Measure) -> Option<f64>| median(ms.iter().filter_map(|m| f(m)).collect());
        Some(Median {
            rate: of(&|m| Some(m.rate)).unwrap_or_default(),
            p50_ms: of(&|m| m.p50_ms),
            p99_ms: of(&|m| m.p99_ms),
            p999_ms: of(&|m| m.p999_ms),
            incomplete: ms.iter().any(|m| m.timed_out || !m.errors.is_empty()),
        })
    }
}

/// The peers' figures every row is divided by: NATS windowed A, NATS fetch-100 B,
/// beanstalkd C and its open-loop p99, for memory and for durable storage.
#[derive(Default)]
struct Refs {
    a: Option<f64>,
    b: Option<f64>,
    c: Option<f64>,
    open_p99: Option<f64>,
}

fn refs(rows: &[Row], durable: bool) -> Refs {
    let find = |path: &str| rows.iter().find(|r| r.path == path && r.durable == durable);
    let nats = find("nats-w100");
    let bean = find("beanstalkd");
    Refs {
        a: nats.and_then(|r| r.median(Scenario::A)).map(|m| m.rate),
        b: nats.and_then(|r| r.median(Scenario::B)).map(|m| m.rate),
        c: bean.and_then(|r| r.median(Scenario::C)).map(|m| m.rate),
        open_p99: bean
            .and_then(|r| r.median(Scenario::Open))
            .and_then(|m| m.p99_ms),
    }
}

/// `1234567.8` → `1,234,568`; thousands as `k` above 10,000.
pub(crate) fn rate_text(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.1}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

pub(crate) fn ms_text(ms: Option<f64>) -> String {
    ms.map_or("–".into(), |v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    })
}

pub(crate) fn ratio_text(x: Option<f64>, reference: Option<f64>) -> String {
    match (x, reference) {
        (Some(x), Some(r)) if r > 0.0 => format!("{:.2}×", x / r),
        _ => "–".into(),
    }
}

pub(crate) fn cell(m: Option<&Median>) -> String {
    m.map_or("–".into(), |m| {
        let star = if m.incomplete { "*" } else { "" };
        format!("{}{star}", rate_text(m.rate))
    })
}

/// The closed-loop table: msgs/s of A, B and C, C's latency, and the ratios to the peers.
pub(crate) fn closed_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| system | path | mode | A msgs/s | B msgs/s | C msgs/s | C p50 ms | C p99 ms | C p99.9 ms \
         | A ÷ NATS w100 | B ÷ NATS fetch 100 | C ÷ beanstalkd |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let (mem, dur) = (refs(rows, false), refs(rows, true));
    for r in rows {
        let (a, b, c) = (
            r.median(Scenario::A),
            r.median(Scenario::B),
            r.median(Scenario::C),
        );
        if a.is_none() && b.is_none() && c.is_none() {
            continue;
        }
        let refs = if r.durable { &dur } else { &mem };
        let lat = |f: fn(&Median) -> Option<f64>| ms_text(c.as_ref().and_then(f));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.path,
            r.mode,
            cell(a.as_ref()),
            cell(b.as_ref()),
            cell(c.as_ref()),
            lat(|m| m.p50_ms),
            lat(|m| m.p99_ms),
            lat(|m| m.p999_ms),
            ratio_text(a.map(|m| m.rate), refs.a),
            ratio_text(b.map(|m| m.rate), refs.b),
            ratio_text(c.map(|m| m.rate), refs.c),
        );
    }
    t
}

/// The open-loop table: offered and achieved rates, publish→ack latency from the intended
/// send time, and the p99 as a multiple of beanstalkd's.
pub(crate) fn open_table(rows: &[Row], offered: f64) -> String {
    let mut t = String::from(
        "| system | path | mode | offered msgs/s | achieved msgs/s | p50 ms | p99 ms | p99.9 ms \
         | p99 ÷ beanstalkd p99 |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let (mem, dur) = (refs(rows, false), refs(rows, true));
    for r in rows {
        let Some(m) = r.median(Scenario::Open) else {
            continue;
        };
        let refs = if r.durable { &dur } else { &mem };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.path,
            r.mode,
            rate_text(offered),
            cell(Some(&m)),
            ms_text(m.p50_ms),
            ms_text(m.p99_ms),
            ms_text(m.p999_ms),
            ratio_text(m.p99_ms, refs.open_p99),
        );
    }
    t
}

/// Each cluster row's A, B and C rates as a share of the single server's on the same path
/// and mode.
pub(crate) fn cluster_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| system | path | mode | A ÷ single | B ÷ single | C ÷ single | C p99 ms (single) |\n\
         |---|---|---|---:|---:|---:|---:|\n",
    );
    for r in rows.iter().filter(|r| r.system.starts_with("synap ×")) {
        let Some(single) = rows
            .iter()
            .find(|x| x.system == "synap" && x.path == r.path && x.mode == r.mode)
        else {
            continue;
        };
        let rate = |row: &Row, s| row.median(s).map(|m| m.rate);
        let p99 = |row: &Row| row.median(Scenario::C).and_then(|m| m.p99_ms);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} ({}) |",
            r.system,
            r.path,
            r.mode,
            ratio_text(rate(r, Scenario::A), rate(single, Scenario::A)),
            ratio_text(rate(r, Scenario::B), rate(single, Scenario::B)),
            ratio_text(rate(r, Scenario::C), rate(single, Scenario::C)),
            ms_text(p99(r)),
            ms_text(p99(single)),
        );
    }
    t
}

/// The failover measurement: each kill's time, their median and maximum, and the count check.
pub(crate) fn failover_text(f: &crate::cluster::Failover) -> String {
    let times: Vec<String> = f.times_ms.iter().map(|t| format!("{t:.0}")).collect();
    let verdict = if f.depth == f.answered {
        "nothing lost or doubled"
    } else if f.depth < f.answered {
        "ANSWERED PUBLISHES LOST"
    } else {
        "PUBLISHES DOUBLED"
    };
    format!(
        "Failover, {} nodes, --fsync always, leader SIGKILLed {} times under one publisher \
         (kill → next answered publish):\n\n\
         p50 {:.0} ms, max {:.0} ms (each: {} ms)\n\
         {} publishes answered ({} resends answered `duplicate`), queue depth {}: {verdict}\n",
        f.nodes,
        f.times_ms.len(),
        f.p50_ms(),
        f.max_ms(),
        times.join(", "),
        f.answered,
        f.resent_duplicates,
        f.depth,
    )
}

/// Failures and incomplete runs, one line each.
pub(crate) fn notes(rows: &[Row]) -> String {
    let mut t = String::new();
    for r in rows {
        for f in &r.failures {
            let _ = writeln!(t, "- {} {} {}: {f}", r.system, r.path, r.mode);
        }
        for (i, run) in r.runs.iter().enumerate() {
            for (s, m) in run {
                if m.timed_out || !m.errors.is_empty() {
                    let why = m
                        .errors
                        .first()
                        .map_or("time limit".to_owned(), Clone::clone);
                    let _ = writeln!(
                        t,
                        "- {} {} {} {s:?} run {}: {} of {} in {:.1} s ({why})",
                        r.system,
                        r.path,
                        r.mode,
                        i + 1,
                        m.done,
                        m.target,
                        m.elapsed_s
                    );
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(rate: f64, p99: Option<f64>) -> Measure {
        Measure {
            rate,
            done: 10,
            target: 10,
            elapsed_s: 1.0,
            timed_out: false,
            p50_ms: p99.map(|p| p / 2.0),
            p99_ms: p99,
            p999_ms: p99,
            errors: Vec::new(),
            max_in_flight: None,
            peaks: None,
        }
    }

    fn row(system: &'static str, path: &str, runs: Vec<(Scenario, f64)>) -> Row {
        Row {
            system,
            path: path.into(),
            mode: "in-memory",
            durable: false,
            runs: runs
                .into_iter()
                .map(|(s, rate)| BTreeMap::from([(s, measure(rate, Some(1.0)))]))
                .collect(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn medians_take_the_middle_run() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        let r = row(
            "synap",
            "rpc",
            vec![(Scenario::C, 5.0), (Scenario::C, 9.0), (Scenario::C, 7.0)],
        );
        assert_eq!(r.median(Scenario::C).map(|m| m.rate), Some(7.0));
        assert!(r.median(Scenario::A).is_none());
    }

    #[test]
    fn cluster_rows_are_divided_by_the_single_server() {
        let rows = vec![
            row("synap", "rpc-pipe", vec![(Scenario::C, 40_000.0)]),
            row("synap ×3", "rpc-pipe", vec![(Scenario::C, 30_000.0)]),
        ];
        let table = cluster_table(&rows);
        let line = table.lines().find(|l| l.contains("×3")).expect("the row");
        assert!(line.contains("| – | – | 0.75× |"), "{line}");
    }

    #[test]
    fn ratios_divide_by_the_peers_figures() {
        let rows = vec![
            row("synap", "rpc", vec![(Scenario::C, 30_000.0)]),
            row("beanstalkd", "beanstalkd", vec![(Scenario::C, 20_000.0)]),
        ];
        let table = closed_table(&rows);
        let synap = table
            .lines()
            .find(|l| l.contains("| rpc |"))
            .expect("the rpc row");
        assert!(synap.contains("30.0k"), "{synap}");
        assert!(synap.ends_with("| – | – | 1.50× |"), "{synap}");
    }
}
