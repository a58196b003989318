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

Options:
  --seed N          override the scenario's seed (replay: the engine seed of the log)
  --summary         print a readable table instead of the JSON report
  --pretty          indent the JSON report
  --interval MS     replay only: time between samples (default 60000)
  --until MS        replay only: keep running timers until this time
  --print-scenario  print the (preset or file) scenario as JSON instead of running it
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
    use super::duration;

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
}
