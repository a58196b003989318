//! Command line: what to run and how hard.

use std::time::Duration;

use clap::Parser;

use crate::procs::{Auth, Durability};

/// Synap's load benchmark: starts its own servers on free loopback ports and runs scenarios
/// A (4 producers publish), B (16 workers drain) and C (both at once) over every client path,
/// closed loop and open loop, optionally beside beanstalkd and NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "synap-bench", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Every Synap path, mode and scenario (the default when no filter is given).
    #[arg(long, conflicts_with_all = ["path", "mode", "scenario"])]
    pub(crate) all: bool,
    /// Also run beanstalkd and NATS JetStream (when installed) with the same workloads.
    #[arg(long)]
    pub(crate) peers: bool,
    /// Only these paths (comma-separated): rest, rest-batch, ws, rpc, rpc-pipe, and the
    /// peers' beanstalkd, beanstalkd-pipe, nats-w1, nats-w100.
    #[arg(long, value_delimiter = ',')]
    pub(crate) path: Vec<String>,
    /// Only these server modes: memory, interval, always (peers: memory, or durable for
    /// interval and always).
    #[arg(long, value_delimiter = ',')]
    pub(crate) mode: Vec<String>,
    /// Only these scenarios: A, B, C (closed loop) and open (C at `--rate`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) scenario: Vec<String>,
    /// A small, fast run: 20,000 messages, 1 run, 1 s of open loop.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Messages per closed-loop scenario [default: 100000; 20000 with --quick].
    #[arg(long)]
    pub(crate) messages: Option<u64>,
    /// Producers in A and C.
    #[arg(long, default_value_t = 4)]
    pub(crate) producers: usize,
    /// Workers in B and C.
    #[arg(long, default_value_t = 16)]
    pub(crate) workers: usize,
    /// Runs of each measurement; the table shows their median [default: 3; 1 with --quick].
    #[arg(long)]
    pub(crate) runs: Option<usize>,
    /// Open loop: messages offered per second.
    #[arg(long, default_value_t = 10_000.0)]
    pub(crate) rate: f64,
    /// Open loop: seconds of offered load [default: 3; 1 with --quick].
    #[arg(long)]
    pub(crate) open_secs: Option<f64>,
    /// Time limit of one scenario in seconds; what was done by then is reported.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) timeout: f64,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub(crate) json: bool,
    /// Worker threads of each `synap-server` (its `--threads`) [default: the server's own,
    /// one per core].
    #[arg(long, value_name = "N")]
    pub(crate) server_threads: Option<usize>,
    /// How Synap's clients authenticate, on every Synap path (REST, the queue WebSocket,
    /// SynapRPC): `none`, `key` (the server's config holds one full-access API key, sent as
    /// Bearer or `AUTH`) or `scoped` (one key limited to `queue:bench-*:*`, so every command
    /// also passes the permission check). Peers run without auth either way.
    #[arg(long, value_enum, default_value_t = Auth::None)]
    pub(crate) auth: Auth,
    /// Also run each durable Synap row on a Raft cluster of N nodes (3 or 5) on this machine,
    /// clients talking to the leader, beside the single server.
    #[arg(long, value_name = "N")]
    pub(crate) cluster: Option<usize>,
    /// Also run C on flow-controlled queues, beside plain C on the same server and printed as
    /// ratios to it: `max_in_flight` live (twice what the workers can hold, so it never
    /// binds), `max_in_flight` binding (a quarter of that) and `fair_groups` with the messages
    /// spread over `--flow-groups` groups. Implies scenario C; Synap rows only.
    #[arg(long)]
    pub(crate) flow: bool,
    /// Groups the `fair_groups` run of `--flow` spreads its messages over.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub(crate) flow_groups: u64,
    /// Kill the leader of a cluster (`--cluster` nodes, 3 by default; `--fsync always`) K
    /// times under a steady publisher and report the failover time (kill → next answered
    /// publish) and whether any answered publish was lost or doubled. Alone, it runs only
    /// this.
    #[arg(long, value_name = "K")]
    pub(crate) failover: Option<usize>,
}

/// A scenario to report.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, serde::Serialize)]
pub(crate) enum Scenario {
    A,
    B,
    C,
    /// C on a queue whose `max_in_flight` is above what the workers can hold (`--flow`).
    #[serde(rename = "C-cap-live")]
    CCapLive,
    /// C on a queue whose `max_in_flight` is below what the workers can hold (`--flow`).
    #[serde(rename = "C-cap-binding")]
    CCapBinding,
    /// C on a `fair_groups` queue, the messages spread over `--flow-groups` groups (`--flow`).
    #[serde(rename = "C-fair")]
    CFair,
    Open,
}

impl Scenario {
    /// The flow-control variants of C (`--flow`), in table order.
    pub(crate) const FLOW: [Self; 3] = [Self::CCapLive, Self::CCapBinding, Self::CFair];
}

/// Everything the run needs, with the defaults applied and the filters checked.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) peers: bool,
    pub(crate) paths: Vec<String>,
    pub(crate) modes: Vec<Durability>,
    pub(crate) scenarios: Vec<Scenario>,
    pub(crate) messages: u64,
    pub(crate) producers: usize,
    pub(crate) workers: usize,
    pub(crate) runs: usize,
    pub(crate) rate: f64,
    pub(crate) open_messages: u64,
    pub(crate) limit: Duration,
    pub(crate) json: bool,
    pub(crate) server_threads: Option<usize>,
    pub(crate) auth: Auth,
    /// Cluster rows' node count, if any.
    pub(crate) cluster: Option<usize>,
    /// Leader kills of the failover measurement, if any.
    pub(crate) failover: Option<usize>,
    /// Groups of the `fair_groups` run (`--flow`).
    pub(crate) flow_groups: u64,
    /// Whether the throughput rows run (not when `--failover` is given alone).
    pub(crate) rows: bool,
}

/// Synap's paths, in table order.
pub(crate) const SYNAP_PATHS: [&str; 5] = ["rest", "rest-batch", "ws", "rpc", "rpc-pipe"];
/// The peers' paths, in table order.
pub(crate) const PEER_PATHS: [&str; 4] = ["beanstalkd", "beanstalkd-pipe", "nats-w1", "nats-w100"];

impl Cli {
    pub(crate) fn settings(self) -> Result<Settings, String> {
        let known: Vec<&str> = SYNAP_PATHS.iter().chain(&PEER_PATHS).copied().collect();
        for p in &self.path {
            if !known.contains(&p.as_str()) {
                return Err(format!("unknown path {p:?}; known: {}", known.join(", ")));
            }
        }
        if let Some(n) = self.cluster
            && !matches!(n, 3 | 5)
        {
            return Err("--cluster takes 3 or 5 (nodes)".into());
        }
        if self.failover == Some(0) {
            return Err("--failover must be at least 1 (kills)".into());
        }
        let rows = self.failover.is_none()
            || self.all
            || self.peers
            || self.cluster.is_some()
            || !self.path.is_empty()
            || !self.mode.is_empty()
            || !self.scenario.is_empty();
        let names_peer = self.path.iter().any(|p| PEER_PATHS.contains(&p.as_str()));
        let mut paths: Vec<String> = if self.path.is_empty() {
            SYNAP_PATHS.iter().map(|p| (*p).to_owned()).collect()
        } else {
            self.path.clone()
        };
        if self.peers && !names_peer {
            paths.extend(PEER_PATHS.iter().map(|p| (*p).to_owned()));
        }
        let modes = if self.mode.is_empty() {
            vec![Durability::Memory, Durability::Interval, Durability::Always]
        } else {
            self.mode
                .iter()
                .map(|m| parse_mode(m))
                .collect::<Result<_, _>>()?
        };
        let mut scenarios: Vec<Scenario> = if self.scenario.is_empty() {
            vec![Scenario::A, Scenario::B, Scenario::C, Scenario::Open]
        } else {
            self.scenario
                .iter()
                .map(|s| parse_scenario(s))
                .collect::<Result<_, _>>()?
        };
        if self.flow {
            scenarios.push(Scenario::C);
            scenarios.extend(Scenario::FLOW);
        }
        scenarios.sort();
        scenarios.dedup();
        if self.flow_groups == 0 {
            return Err("--flow-groups must be at least 1".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err("--rate must be a positive number".into());
        }
        if self.producers == 0 || self.workers == 0 {
            return Err("--producers and --workers must be at least 1".into());
        }
        if self.server_threads == Some(0) {
            return Err("--server-threads must be at least 1".into());
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err("--timeout must be a positive number of seconds".into());
        }
        let open_secs = self.open_secs.unwrap_or(if self.quick { 1.0 } else { 3.0 });
        if !(open_secs.is_finite() && open_secs > 0.0) {
            return Err("--open-secs must be a positive number".into());
        }
        let messages = self
            .messages
            .unwrap_or(if self.quick { 20_000 } else { 100_000 });
        if messages == 0 {
            return Err("--messages must be at least 1".into());
        }
        Ok(Settings {
            peers: self.peers || names_peer,
            paths,
            modes,
            scenarios,
            messages,
            producers: self.producers,
            workers: self.workers,
            runs: self.runs.unwrap_or(if self.quick { 1 } else { 3 }).max(1),
            rate: self.rate,
            open_messages: ((self.rate * open_secs).round() as u64).max(1),
            limit: Duration::from_secs_f64(self.timeout),
            json: self.json,
            server_threads: self.server_threads,
            auth: self.auth,
            cluster: self.cluster,
            failover: self.failover,
            flow_groups: self.flow_groups,
            rows,
        })
    }
}

fn parse_mode(m: &str) -> Result<Durability, String> {
    match m {
        "memory" | "in-memory" => Ok(Durability::Memory),
        "interval" => Ok(Durability::Interval),
        "always" => Ok(Durability::Always),
        _ => Err(format!(
            "unknown mode {m:?}; known: memory, interval, always"
        )),
    }
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    match s.to_ascii_uppercase().as_str() {
        "A" => Ok(Scenario::A),
        "B" => Ok(Scenario::B),
        "C" => Ok(Scenario::C),
        "OPEN" => Ok(Scenario::Open),
        _ => Err(format!("unknown scenario {s:?}; known: A, B, C, open")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let argv = std::iter::once("synap-bench").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .settings()
    }

    #[test]
    fn defaults_run_every_synap_path_mode_and_scenario() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.paths, SYNAP_PATHS);
        assert_eq!(s.modes.len(), 3);
        assert_eq!(s.scenarios.len(), 4);
        assert_eq!((s.messages, s.runs, s.open_messages), (100_000, 3, 30_000));
        assert!(!s.peers);
        assert_eq!(s.auth, Auth::None);
    }

    #[test]
    fn auth_takes_none_key_or_scoped() {
        assert_eq!(settings(&["--auth", "key"]).expect("key").auth, Auth::Key);
        let s = settings(&[
            "--quick",
            "--path",
            "rest",
            "--scenario",
            "C",
            "--auth",
            "scoped",
        ]);
        assert_eq!(s.expect("scoped").auth, Auth::Scoped);
        assert!(settings(&["--auth", "password"]).is_err());
    }

    #[test]
    fn filters_and_quick_narrow_the_run() {
        let s = settings(&[
            "--quick",
            "--path",
            "rpc,nats-w100",
            "--mode",
            "always",
            "--scenario",
            "c,open",
        ])
        .expect("filters");
        assert_eq!(s.paths, ["rpc", "nats-w100"]);
        assert!(s.peers, "naming a peer path runs peers");
        assert_eq!(s.modes, [Durability::Always]);
        assert_eq!(s.scenarios, [Scenario::C, Scenario::Open]);
        assert_eq!((s.messages, s.runs, s.open_messages), (20_000, 1, 10_000));
        let p = settings(&["--peers", "--path", "ws"]).expect("peers");
        assert_eq!(p.paths.len(), 1 + PEER_PATHS.len());
    }

    #[test]
    fn cluster_and_failover_take_their_counts() {
        let s = settings(&["--cluster", "3", "--path", "rpc-pipe"]).expect("cluster");
        assert_eq!((s.cluster, s.failover, s.rows), (Some(3), None, true));
        let f = settings(&["--failover", "10"]).expect("failover alone");
        assert_eq!((f.failover, f.rows), (Some(10), false));
        let both = settings(&["--failover", "10", "--cluster", "5"]).expect("both");
        assert!(both.rows);
        assert!(settings(&["--cluster", "2"]).is_err());
        assert!(settings(&["--failover", "0"]).is_err());
    }

    #[test]
    fn flow_adds_the_c_variants_beside_c() {
        let s = settings(&["--scenario", "A", "--flow"]).expect("flow");
        assert_eq!(
            s.scenarios,
            [
                Scenario::A,
                Scenario::C,
                Scenario::CCapLive,
                Scenario::CCapBinding,
                Scenario::CFair
            ]
        );
        assert_eq!(s.flow_groups, 10_000);
        let plain = settings(&[]).expect("defaults");
        assert!(
            !plain.scenarios.contains(&Scenario::CFair),
            "only with --flow"
        );
        assert!(settings(&["--flow", "--flow-groups", "0"]).is_err());
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(settings(&["--path", "smtp"]).is_err());
        assert!(settings(&["--mode", "sometimes"]).is_err());
        assert!(settings(&["--scenario", "D"]).is_err());
        assert!(settings(&["--rate", "0"]).is_err());
        assert!(settings(&["--all", "--path", "ws"]).is_err());
    }
}
