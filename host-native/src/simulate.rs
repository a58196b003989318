//! `synap-server simulate`: runs the workload simulator (or replays a command log) and prints
//! its report as JSON, or as a readable table with `--summary`.

use std::io::Read;
use std::process::ExitCode;

use synap_core::sim::{self, Report, Scenario, Simulation};

const HELP: &str = "\
Usage:
  synap-server simulate SCENARIO.json [options]    simulate a scenario file ('-' = stdin)
  synap-server simulate --preset NAME [options]    simulate a built-in scenario
  synap-server simulate --replay LOG|DIR [opts]    replay a command log or a data directory
  synap-server simulate --list-presets             list the built-in scenarios
  synap-server simulate (SCENARIO.json | --preset NAME) --sweep PARAM=VALUES
                                                   one run per value, side by side

Options:
  --seed N          override the scenario's seed (replay: the engine seed of the log)
  --summary         print a readable table instead of the JSON report
  --pretty          indent the JSON report
  --interval MS     replay only: time between samples (default 60000)
  --until MS        replay only: keep running timers until this time
  --print-scenario  print the (preset or file) scenario as JSON instead of running it
  --sweep P=VALUES  run the scenario once per value of parameter P (at most 25 values):
                    workers (workers.NAME for a group other than the first), retry_scale,
                    ack_deadline_ms, rate_scale, max_in_flight, group_concurrency,
                    rate_limit, group_rate_limit (deliveries per window, 1 s when the
                    scenario sets none), fair_groups, ordered_groups (false,true).
                    VALUES: a list (1,2,4), a range of whole numbers (1..8) or a range
                    in N points (0.5..2:4)
  --target M=MS     with --sweep: mark the runs whose metric M is at most MS milliseconds
                    and name the value to pick (the fewest workers meeting it); M is
                    flow_p50, flow_p99 (end-to-end flow latency) or wait_p99
  -h, --help        this help

The report (JSON on stdout) and the scenario format are described in docs/simulator.md.
A replay log has one {\"at\": ms, \"command\": {...}} object per line, or is the output of
`synap-server data export DIR` (its head gives the seed, config and starting state). A replay's
report carries the final `state_digest`, equal to the server's at the same time (--until MS).";

/// Parsed command line.
#[derive(Default)]
struct Options {
    scenario: Option<String>,
    preset: Option<String>,
    replay: Option<String>,
    seed: Option<u64>,
    summary: bool,
    pretty: bool,
    interval: Option<u64>,
    until: Option<u64>,
    print_scenario: bool,
    sweep: Option<String>,
    target: Option<String>,
    list_presets: bool,
    help: bool,
}

/// Entry point of the `simulate` subcommand; `args` are the arguments after `simulate`.
pub fn main(args: Vec<String>) -> ExitCode {
    match parse(args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("synap-server simulate: {message}");
            eprintln!("Try 'synap-server simulate --help'.");
            ExitCode::from(2)
        }
    }
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => o.help = true,
            "--summary" => o.summary = true,
            "--pretty" => o.pretty = true,
            "--print-scenario" => o.print_scenario = true,
            "--list-presets" => o.list_presets = true,
            "--preset" => o.preset = Some(value("--preset")?),
            "--replay" => o.replay = Some(value("--replay")?),
            "--seed" => o.seed = Some(sim::parse_seed(&value("--seed")?)?),
            "--interval" => o.interval = Some(number("--interval", &value("--interval")?)?),
            "--until" => o.until = Some(number("--until", &value("--until")?)?),
            "--sweep" => o.sweep = Some(value("--sweep")?),
            "--target" => o.target = Some(value("--target")?),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if o.scenario.is_none() => o.scenario = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let sources = [&o.scenario, &o.preset, &o.replay]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if sources > 1 {
        return Err("give one of SCENARIO.json, --preset or --replay".into());
    }
    if sources == 0 && !o.help && !o.list_presets {
        return Err("no scenario: give SCENARIO.json, --preset NAME or --replay LOG.jsonl".into());
    }
    if o.sweep.is_some() && (o.replay.is_some() || o.print_scenario) {
        return Err("--sweep runs a scenario: not with --replay or --print-scenario".into());
    }
    if o.target.is_some() && o.sweep.is_none() {
        return Err("--target goes with --sweep".into());
    }
    Ok(o)
}

fn number(name: &str, text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{name} must be a whole number of milliseconds, got {text:?}"))
}

fn read(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

fn run(o: Options) -> Result<(), String> {
    if o.help {
        println!("{HELP}");
        return Ok(());
    }
    if o.list_presets {
        for p in sim::presets() {
            println!("{:<18} {}", p.name, p.description);
        }
        return Ok(());
    }
    let report = if let Some(path) = &o.replay {
        replay(&o, path)?
    } else {
        let mut scenario = load_scenario(&o)?;
        if let Some(seed) = o.seed {
            scenario.seed = seed;
        }
        if o.print_scenario {
            return print_json(&scenario, true);
        }
        if let Some(text) = &o.sweep {
            let mut spec = parse_sweep(text, &scenario)?;
            spec.target = o.target.as_deref().map(parse_target).transpose()?;
            let report = sim::sweep(&scenario, &spec).map_err(|e| e.to_string())?;
            if o.summary {
                print!("{}", sweep_table(&report));
                return Ok(());
            }
            return print_json(&report, o.pretty);
        }
        Simulation::new(scenario).map_err(|e| e.to_string())?.run()
    };
    if o.summary {
        print!("{}", summary_table(&report));
        Ok(())
    } else {
        print_json(&report, o.pretty)
    }
}

fn load_scenario(o: &Options) -> Result<Scenario, String> {
    if let Some(name) = &o.preset {
        return sim::preset(name);
    }
    let path = o.scenario.as_deref().unwrap_or("-");
    let text = read(path)?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: invalid scenario: {e}"))
}

fn replay(o: &Options, path: &str) -> Result<Report, String> {
    // A data directory replays as its export would (it is only read: a running server's works).
    let text = if std::path::Path::new(path).is_dir() {
        let mut out = Vec::new();
        crate::storage::inspect::export(std::path::Path::new(path), &mut out)?;
        String::from_utf8(out).map_err(|e| format!("{path}: {e}"))?
    } else {
        read(path)?
    };
    let records = sim::parse_log(&text).map_err(|e| format!("{path}: {e}"))?;
    let options = sim::ReplayOptions {
        seed: o.seed.unwrap_or(0),
        sample_interval_ms: o.interval.unwrap_or(60_000),
        until_ms: o.until,
        ..sim::ReplayOptions::default()
    };
    sim::replay(&records, &options).map_err(|e| format!("{path}: {e}"))
}

fn print_json<T: serde::Serialize>(value: &T, pretty: bool) -> Result<(), String> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    println!("{}", text.map_err(|e| e.to_string())?);
    Ok(())
}

/// The report as a few aligned tables.
fn summary_table(r: &Report) -> String {
    use std::fmt::Write as _;
    let s = &r.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}  seed {}  simulated {:.0} s  run_hash {}",
        r.name,
        r.seed,
        s.simulated_ms as f64 / 1000.0,
        s.run_hash
    );
    let _ = writeln!(
        out,
        "published {}  completed {}  dead-lettered {}  cancelled {}  still in system {}  retries {}  lease expiries {}",
        s.published,
        s.completed,
        s.dead_lettered,
        s.cancelled,
        s.still_in_system,
        s.retries,
        s.lease_expired
    );
    let _ = writeln!(
        out,
        "worker utilisation {:.1}%  commands {}  events {}",
        s.utilisation * 100.0,
        s.commands,
        s.events_processed
    );
    let _ = writeln!(
        out,
        "\npriority  published  completed  dead  latency p50      p90      p99    wait p50      p99"
    );
    for p in &s.by_priority {
        let (l, w) = (&p.latency_ms, &p.wait_ms);
        let _ = writeln!(
            out,
            "{:>8}  {:>9}  {:>9}  {:>4}  {:>11} {:>8} {:>8} {:>11} {:>8}",
            p.priority,
            p.published,
            p.completed,
            p.dead_lettered,
            duration(l.p50),
            duration(l.p90),
            duration(l.p99),
            duration(w.p50),
            duration(w.p99)
        );
    }
    if !s.by_group_class.is_empty() {
        let _ = writeln!(
            out,
            "\ngroup class  groups  published  completed  dead  latency p50      p90      p99    wait p50      p99"
        );
        for c in &s.by_group_class {
            let (l, w) = (&c.latency_ms, &c.wait_ms);
            let _ = writeln!(
                out,
                "{:<11}  {:>6}  {:>9}  {:>9}  {:>4}  {:>11} {:>8} {:>8} {:>11} {:>8}",
                c.class.name(),
                c.groups,
                c.published,
                c.completed,
                c.dead_lettered,
                duration(l.p50),
                duration(l.p90),
                duration(l.p99),
                duration(w.p50),
                duration(w.p99)
            );
        }
    }
    if let Some(f) = &s.flows {
        let l = &f.latency_ms;
        let _ = writeln!(
            out,
            "\nflows  started  completed  failed  cancelled  running  latency p50      p90      p99      max"
        );
        let _ = writeln!(
            out,
            "       {:>7}  {:>9}  {:>6}  {:>9}  {:>7}  {:>11} {:>8} {:>8} {:>8}",
            f.started,
            f.completed,
            f.failed,
            f.cancelled,
            f.running,
            duration(l.p50),
            duration(l.p90),
            duration(l.p99),
            duration(l.max)
        );
        if f.completed_with_failures > 0 || f.rejected > 0 {
            let _ = writeln!(
                out,
                "       completed with failed jobs {}  refused by the engine {}",
                f.completed_with_failures, f.rejected
            );
        }
    }
    if !s.workers.is_empty() {
        let _ = writeln!(
            out,
            "\nworkers          count  completed  failed  crashes  late  utilisation"
        );
        for w in &s.workers {
            let _ = writeln!(
                out,
                "{:<16} {:>5}  {:>9}  {:>6}  {:>7}  {:>4}  {:>10.1}%",
                w.name,
                w.count,
                w.completed,
                w.failed,
                w.crashes,
                w.late,
                w.utilisation * 100.0
            );
        }
    }
    out
}

/// `PARAM=VALUES` of `--sweep`: `workers.NAME` picks a worker group by name; VALUES is a list
/// (`1,2,4`, or `false,true` for a flag), a range of whole numbers (`1..8`) or a range in N
/// points (`0.5..2:4`).
fn parse_sweep(text: &str, scenario: &Scenario) -> Result<sim::Sweep, String> {
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| format!("--sweep takes PARAM=VALUES, got {text:?}"))?;
    let (name, group) = match name.split_once('.') {
        Some(("workers", group)) => ("workers", Some(group)),
        _ => (name, None),
    };
    let param = sim::SweepParam::parse(name)?;
    let worker_group = match group {
        None => 0,
        Some(g) => (scenario.workers.iter().position(|w| w.name == g))
            .ok_or_else(|| format!("--sweep: the scenario has no worker group {g:?}"))?,
    };
    let value = |v: &str| -> Result<f64, String> {
        match v.trim() {
            "false" | "off" => Ok(0.0),
            "true" | "on" => Ok(1.0),
            v => v
                .parse::<f64>()
                .map_err(|_| format!("--sweep {name}: {v:?} is not a number")),
        }
    };
    let values = if let Some((from, rest)) = values.split_once("..") {
        let (to, points) = match rest.split_once(':') {
            Some((to, n)) => {
                let n = n
                    .parse()
                    .map_err(|_| format!("--sweep {name}: {n:?} is not a number of points"))?;
                (to, n)
            }
            None if param.kind() == sim::ValueKind::Factor => {
                return Err(format!(
                    "--sweep {name}: a factor's range needs a number of points (A..B:N)"
                ));
            }
            None => (rest, 0),
        };
        sim::sweep_values(param, value(from)?, value(to)?, points)?
    } else {
        values.split(',').map(value).collect::<Result<_, _>>()?
    };
    Ok(sim::Sweep {
        param,
        worker_group,
        values,
        target: None,
    })
}

/// `METRIC=MS` of `--target`: `flow_p99=60000`.
fn parse_target(text: &str) -> Result<sim::SweepTarget, String> {
    let (name, ms) = text
        .split_once('=')
        .ok_or_else(|| format!("--target takes METRIC=MS, got {text:?}"))?;
    let metric = sim::SweepMetric::parse(name.trim())?;
    let max_ms = ms
        .trim()
        .parse()
        .map_err(|_| format!("--target {name}: {ms:?} is not a whole number of milliseconds"))?;
    Ok(sim::SweepTarget { metric, max_ms })
}

/// A sweep as one table: a row per value with totals, wait p99 per priority and wait p50 and
/// p99 per group class.
fn sweep_table(r: &sim::SweepReport) -> String {
    use std::fmt::Write as _;
    let param = r.param.name();
    let mut out = String::new();
    let group = r
        .worker_group
        .as_deref()
        .map(|g| format!(" (group {g})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "scenario {}  seed {}  sweep {param}{group}: one whole run per value",
        r.name, r.seed
    );
    let mut priorities: Vec<u8> = Vec::new();
    let mut classes: Vec<sim::GroupClass> = Vec::new();
    for p in &r.points {
        priorities.extend(p.summary.by_priority.iter().map(|x| x.priority));
        classes.extend(p.summary.by_group_class.iter().map(|c| c.class));
    }
    priorities.sort_unstable_by(|a, b| b.cmp(a));
    priorities.dedup();
    classes.sort_unstable();
    classes.dedup();
    let flows = r.points.iter().any(|p| p.summary.flows.is_some());
    let width = param.len().max(8);
    let _ = write!(
        out,
        "\n{param:>width$}  completed   dead  in system  utilisation"
    );
    if flows {
        let _ = write!(out, "  flows done  failed  flow p50  flow p99");
    }
    if r.target.is_some() {
        let _ = write!(out, "  target");
    }
    for p in &priorities {
        let _ = write!(out, "  {:>10}", format!("p{p} wait p99"));
    }
    for c in &classes {
        let _ = write!(
            out,
            "  {:>16} {:>8}",
            format!("{} wait p50", c.name()),
            "p99"
        );
    }
    out.push('\n');
    for point in &r.points {
        let s = &point.summary;
        let value = match r.param.kind() {
            sim::ValueKind::Flag if point.value == 1.0 => "on".to_owned(),
            sim::ValueKind::Flag => "off".to_owned(),
            _ => point.value.to_string(),
        };
        let _ = write!(
            out,
            "{value:>width$}  {:>9}  {:>5}  {:>9}  {:>10.1}%",
            s.completed,
            s.dead_lettered,
            s.still_in_system,
            s.utilisation * 100.0
        );
        if flows {
            let f = s.flows.clone().unwrap_or_default();
            let (p50, p99) = match f.completed {
                0 => ("-".to_owned(), "-".to_owned()),
                _ => (duration(f.latency_ms.p50), duration(f.latency_ms.p99)),
            };
            let _ = write!(
                out,
                "  {:>10}  {:>6}  {p50:>8}  {p99:>8}",
                f.completed, f.failed
            );
        }
        if let Some(meets) = point.meets_target {
            let _ = write!(out, "  {:>6}", if meets { "yes" } else { "no" });
        }
        for p in &priorities {
            let wait = s.by_priority.iter().find(|x| x.priority == *p);
            let text = wait.map_or("-".to_owned(), |x| duration(x.wait_ms.p99));
            let _ = write!(out, "  {text:>10}");
        }
        for c in &classes {
            match s.by_group_class.iter().find(|x| x.class == *c) {
                Some(x) => {
                    let _ = write!(
                        out,
                        "  {:>16} {:>8}",
                        duration(x.wait_ms.p50),
                        duration(x.wait_ms.p99)
                    );
                }
                None => {
                    let _ = write!(out, "  {:>16} {:>8}", "-", "-");
                }
            }
        }
        out.push('\n');
    }
    if let Some(t) = &r.target {
        let goal = format!("{} ≤ {}", t.metric.name(), duration(t.max_ms));
        let pick = if r.param == sim::SweepParam::RateScale {
            "largest"
        } else {
            "smallest"
        };
        let _ = match r.answer {
            Some(v) => writeln!(
                out,
                "\n{goal}: {param} = {v}{group}, the {pick} value meeting it"
            ),
            None => writeln!(out, "\n{goal}: no value meets it"),
        };
    }
    out
}

/// A duration in the unit that reads best, as the web app's `fmtMs` (www/src/dom.ts) does but
/// keeping milliseconds up to 10 s: `850 ms`, `9999 ms`, `12.3 s`, `4.5 min`, `2.0 h`.
fn duration(ms: u64) -> String {
    let ms_f = ms as f64;
    match ms {
        0..10_000 => format!("{ms} ms"),
        10_000..60_000 => format!("{:.1} s", ms_f / 1_000.0),
        60_000..3_600_000 => format!("{:.1} min", ms_f / 60_000.0),
        _ => format!("{:.1} h", ms_f / 3_600_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, parse_sweep, parse_target, sim};

    #[test]
    fn durations_pick_their_unit() {
        let cases = [
            (0, "0 ms"),
            (4, "4 ms"),
            (850, "850 ms"),
            (9_999, "9999 ms"),
            (12_345, "12.3 s"),
            (270_000, "4.5 min"),
            (7_200_000, "2.0 h"),
        ];
        for (ms, text) in cases {
            assert_eq!(duration(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn sweeps_parse_lists_ranges_and_worker_groups() {
        let scenario = sim::preset("video-processing").unwrap();
        let parse = |text: &str| parse_sweep(text, &scenario);
        let s = parse("fair_groups=false,true").unwrap();
        assert_eq!(
            (s.param, s.values),
            (sim::SweepParam::FairGroups, vec![0.0, 1.0])
        );
        let s = parse("max_in_flight=1..4").unwrap();
        assert_eq!(s.values, [1.0, 2.0, 3.0, 4.0]);
        let s = parse("rate_scale=0.5..2:4").unwrap();
        assert_eq!(s.values, [0.5, 1.0, 1.5, 2.0]);
        let s = parse("workers.spot-encoder=1,2").unwrap();
        assert_eq!((s.param, s.worker_group), (sim::SweepParam::Workers, 1));
        for (bad, needle) in [
            ("max_in_flight", "PARAM=VALUES"),
            ("nope=1", "unknown sweep parameter"),
            ("workers.nope=1", "no worker group"),
            ("rate_scale=1..2", "number of points"),
            ("group_concurrency=one", "not a number"),
            ("rate_limit=1..40", "at most 25"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn targets_parse_a_metric_and_milliseconds() {
        let t = parse_target("flow_p99=60000").unwrap();
        assert_eq!((t.metric, t.max_ms), (sim::SweepMetric::FlowP99, 60_000));
        for (bad, needle) in [
            ("flow_p99", "METRIC=MS"),
            ("flow_p95=1", "unknown target metric"),
            ("flow_p50=1.5", "whole number"),
        ] {
            let err = parse_target(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
