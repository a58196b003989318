//! `--flow`: scenario C on flow-controlled queues, run on the same server as plain C and shown
//! as ratios to it (docs/controlling-throughput.md). Three queues beside the plain one:
//!
//! - `max_in_flight` **live**: twice what the workers can hold leased at once on the path, so
//!   the engine checks the cap on every delivery but it never holds one back: the cost of the
//!   check.
//! - `max_in_flight` **binding**: a quarter of what the workers can hold, so consumers that
//!   could take more wait for an ack to make room: the held-back path (a waiter served on each
//!   ack, a stream pushed when room appears), with the rate bounded by the cap.
//! - `fair_groups`: the messages spread round robin over `--flow-groups` groups, taken round
//!   robin across groups.
//!
//! Each C run of a Synap row has its queue's stats polled, so the table shows the most
//! messages in flight and held back: the live cap stays above what plain C reached, the
//! binding one is met.

use std::fmt::Write as _;
use std::time::Duration;

use synap_client::{QueueConfig, SynapClient};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::{Scenario, Settings};
use crate::report::{Measure, Peaks, Row, cell, ms_text, ratio_text};
use crate::{synap_http, synap_rpc};

/// How often a watched queue's stats are read.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Messages one worker of `path` can hold leased at once: one per call one at a time, a REST
/// batch, or the push paths' prefetch.
pub(crate) fn held_per_worker(path: &str) -> u64 {
    match path {
        "rest-batch" => synap_http::BATCH,
        "ws" => u64::from(synap_http::PREFETCH),
        "rpc-pipe" => synap_rpc::PREFETCH.unsigned_abs(),
        _ => 1,
    }
}

/// Whether the run compares flow variants (`--flow`).
pub(crate) fn wanted(s: &Settings) -> bool {
    s.scenarios.iter().any(|x| Scenario::FLOW.contains(x))
}

/// The C runs of one measurement of a row: plain C, and the flow variants on a Synap row,
/// rotated by `run` so that no kind always goes first on a fresh server.
pub(crate) fn c_runs(s: &Settings, system: &str, run: usize) -> Vec<Scenario> {
    let synap = system.starts_with("synap");
    let mut runs: Vec<Scenario> = std::iter::once(Scenario::C)
        .chain(Scenario::FLOW)
        .filter(|x| s.scenarios.contains(x))
        .filter(|&x| x == Scenario::C || synap)
        .collect();
    if !runs.is_empty() {
        let n = run % runs.len();
        runs.rotate_left(n);
    }
    runs
}

/// The queue settings and the groups of one C run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Variant {
    pub(crate) max_in_flight: Option<u32>,
    pub(crate) fair_groups: bool,
    /// Groups the messages are spread over.
    pub(crate) groups: Option<u64>,
}

impl Variant {
    /// The variant of scenario `sc` on `path` with the settings' workers.
    pub(crate) fn of(sc: Scenario, path: &str, s: &Settings) -> Self {
        let can_hold = s.workers as u64 * held_per_worker(path);
        let cap = |n: u64| Self {
            max_in_flight: Some(u32::try_from(n.max(1)).unwrap_or(u32::MAX)),
            ..Self::default()
        };
        match sc {
            Scenario::CCapLive => cap(2 * can_hold),
            Scenario::CCapBinding => cap(can_hold / 4),
            Scenario::CFair => Self {
                fair_groups: true,
                groups: Some(s.flow_groups),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    /// `base` with this variant's flow settings.
    pub(crate) fn config(self, base: QueueConfig) -> QueueConfig {
        QueueConfig {
            max_in_flight: self.max_in_flight,
            fair_groups: self.fair_groups.then_some(true),
            ..base
        }
    }
}

/// A queue's stats polled in the background until [`stop`](Self::stop).
pub(crate) struct Watch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Peaks>,
}

impl Watch {
    /// Watches `queue` on a Synap server (`client`) when the run compares flow variants.
    pub(crate) fn start_for(
        s: &Settings,
        client: Option<&SynapClient>,
        queue: &str,
    ) -> Option<Self> {
        client
            .filter(|_| wanted(s))
            .map(|c| Self::start(c.clone(), queue.to_owned()))
    }

    /// Starts polling `queue`'s stats every 200 ms.
    pub(crate) fn start(client: SynapClient, queue: String) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks = Peaks::default();
            loop {
                if let Ok(st) = client.queue_stats(&queue).await {
                    peaks.in_flight = peaks.in_flight.max(st.in_flight);
                    peaks.held_back = peaks.held_back.max(st.held_back);
                }
                tokio::select! {
                    _ = &mut stopped => return peaks,
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops polling and answers the peaks seen (`None` if the poller failed).
    pub(crate) async fn stop(self) -> Option<Peaks> {
        let _ = self.stop.send(());
        self.task.await.ok()
    }
}

/// `n` with commas between thousands: `10000` → `10,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `m` with the cap of `variant` and the peaks `watch` saw.
pub(crate) async fn finish(mut m: Measure, variant: Variant, watch: Option<Watch>) -> Measure {
    m.max_in_flight = variant.max_in_flight.map(u64::from);
    if let Some(w) = watch {
        m.peaks = w.stop().await;
    }
    m
}

/// What the flow table's runs are, for the text above it.
pub(crate) fn explain(s: &Settings) -> String {
    let w = s.workers;
    format!(
        "Flow control: C on flow-controlled queues beside plain C, each on a fresh queue of \
         the same server, their order rotated from run to run; ÷ plain C divides by that row's \
         plain C.\n\
         - max_in_flight (live): twice what the {w} workers can hold leased at once (each: 1 \
         on rest and rpc, 100 on rest-batch, a prefetch of 64 on ws and rpc-pipe), so every \
         delivery checks the cap and none waits for it: the cost of the check.\n\
         - max_in_flight (binding): a quarter of what the workers can hold, so workers that \
         could take more wait for an ack to make room: the held-back path, the rate bounded \
         by the cap.\n\
         - fair_groups: the messages spread round robin over {} groups and taken round robin \
         across them.\n\
         Most in flight / held back: the largest in_flight and held_back of the queue's stats, \
         polled every 200 ms during the runs.\n",
        thousands(s.flow_groups)
    )
}

/// The flow table: for each Synap row with flow runs, plain C and each variant, with the
/// variant's rate as a share of plain C's.
pub(crate) fn table(rows: &[Row], s: &Settings) -> String {
    let mut t = String::from(
        "| system | path | mode | queue | C msgs/s | ÷ plain C | p50 ms | p99 ms \
         | most in flight | most held back |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        if !Scenario::FLOW.iter().any(|&x| r.median(x).is_some()) {
            continue;
        }
        let plain = r.median(Scenario::C).map(|m| m.rate);
        for sc in std::iter::once(Scenario::C).chain(Scenario::FLOW) {
            let Some(m) = r.median(sc) else { continue };
            let measures = r.runs.iter().filter_map(|run| run.get(&sc));
            let cap = measures.clone().find_map(|m| m.max_in_flight);
            let peaks: Vec<Peaks> = measures.filter_map(|m| m.peaks).collect();
            let peak = |f: fn(&Peaks) -> u64| {
                peaks
                    .iter()
                    .map(f)
                    .max()
                    .map_or("–".into(), |p| p.to_string())
            };
            let cap = cap.map_or(String::new(), |c| c.to_string());
            let queue = match sc {
                Scenario::CCapLive => format!("max_in_flight {cap} (live)"),
                Scenario::CCapBinding => format!("max_in_flight {cap} (binding)"),
                Scenario::CFair => format!("fair_groups, {} groups", thousands(s.flow_groups)),
                _ => "plain".to_owned(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {queue} | {} | {} | {} | {} | {} | {} |",
                r.system,
                r.path,
                r.mode,
                cell(Some(&m)),
                ratio_text(Some(m.rate), plain),
                ms_text(m.p50_ms),
                ms_text(m.p99_ms),
                peak(|p| p.in_flight),
                peak(|p| p.held_back),
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser as _;

    use super::*;
    use crate::cli::Cli;

    fn settings(args: &[&str]) -> Settings {
        let argv = std::iter::once("synap-bench").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .expect("flags")
            .settings()
            .expect("settings")
    }

    #[test]
    fn caps_sit_above_and_below_what_the_workers_can_hold() {
        let s = settings(&["--flow", "--workers", "16"]);
        let cap = |sc, path| Variant::of(sc, path, &s).max_in_flight;
        assert_eq!(cap(Scenario::CCapLive, "rest"), Some(32));
        assert_eq!(cap(Scenario::CCapBinding, "rest"), Some(4));
        assert_eq!(cap(Scenario::CCapLive, "ws"), Some(2048));
        assert_eq!(cap(Scenario::CCapBinding, "rpc-pipe"), Some(256));
        assert_eq!(cap(Scenario::CCapBinding, "rest-batch"), Some(400));
        let fair = Variant::of(Scenario::CFair, "ws", &s);
        assert_eq!((fair.fair_groups, fair.groups), (true, Some(10_000)));
        assert_eq!(Variant::of(Scenario::C, "ws", &s), Variant::default());
        let one = settings(&["--flow", "--workers", "1"]);
        let bound = Variant::of(Scenario::CCapBinding, "rpc", &one).max_in_flight;
        assert_eq!(bound, Some(1), "never a cap of 0");
        let cfg = fair.config(QueueConfig::default());
        assert_eq!((cfg.fair_groups, cfg.max_in_flight), (Some(true), None));
    }

    #[test]
    fn flow_runs_are_synap_only_and_their_order_rotates() {
        let s = settings(&["--flow"]);
        let all = c_runs(&s, "synap", 0);
        assert_eq!(
            all,
            [
                Scenario::C,
                Scenario::CCapLive,
                Scenario::CCapBinding,
                Scenario::CFair
            ]
        );
        assert_eq!(c_runs(&s, "synap", 1)[0], Scenario::CCapLive);
        assert_eq!(c_runs(&s, "synap ×3", 5)[0], Scenario::CCapLive);
        assert_eq!(c_runs(&s, "beanstalkd", 2), [Scenario::C]);
        let plain = settings(&["--scenario", "C"]);
        assert_eq!(c_runs(&plain, "synap", 3), [Scenario::C]);
    }

    #[test]
    fn the_table_divides_each_variant_by_plain_c() {
        let s = settings(&["--flow"]);
        let measure = |rate: f64, cap: Option<u64>, held_back: u64| Measure {
            rate,
            done: 10,
            target: 10,
            elapsed_s: 1.0,
            timed_out: false,
            p50_ms: Some(1.0),
            p99_ms: Some(2.0),
            p999_ms: Some(3.0),
            errors: Vec::new(),
            max_in_flight: cap,
            peaks: Some(Peaks {
                in_flight: 7,
                held_back,
            }),
        };
        let row = Row {
            system: "synap",
            path: "ws".into(),
            mode: "in-memory",
            durable: false,
            runs: vec![BTreeMap::from([
                (Scenario::C, measure(40_000.0, None, 0)),
                (Scenario::CCapBinding, measure(10_000.0, Some(256), 900)),
            ])],
            failures: Vec::new(),
        };
        let t = table(&[row], &s);
        let line = t.lines().find(|l| l.contains("binding")).expect("a line");
        assert!(
            line.contains("max_in_flight 256 (binding) | 10.0k | 0.25× |"),
            "{line}"
        );
        assert!(line.ends_with("| 7 | 900 |"), "{line}");
        let plain = t.lines().find(|l| l.contains("| plain |")).expect("plain");
        assert_eq!(
            [thousands(7), thousands(10_000), thousands(1_234_567)],
            ["7", "10,000", "1,234,567"]
        );
        assert!(plain.contains("| 1.00× |"), "{plain}");
    }
}
