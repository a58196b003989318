//! `synap-bench`: Synap's load benchmark: its paths and fsync modes beside beanstalkd and NATS
//! JetStream, closed and open loop. Start at `cli.rs` (the flags) and `harness.rs` (one
//! measurement); docs/benchmarks.md has the latest figures and how to read them.
//!
//! ```text
//! cargo build --release -p synap-server -p synap-bench
//! target/release/synap-bench [--all] [--peers] [--quick] [--path ...] [--mode ...]
//!     [--scenario A,B,C,open] [--runs 3] [--rate 10000] [--auth none|key|scoped]
//!     [--cluster 3|5] [--failover K] [--flow [--flow-groups 10000]] [--json]
//! ```
//!
//! Each measurement starts a fresh server (the release `synap-server` beside this binary,
//! `beanstalkd`, `nats-server`) on free loopback ports, with a temporary data directory where
//! it keeps one, and stops it by its PID afterwards. Scenarios, with ≈140-byte JSON bodies:
//! (A) `--producers` publish `--messages` into a fresh queue; (B) `--workers` drain what A left;
//! (C) producers and workers at once on another queue; (open) C with the producers paced to
//! `--rate` messages per second in total, latency taken from each message's intended send
//! time; with `--flow`, C again on flow-controlled queues (flow.rs). A closed-loop rate is the
//! messages counted over the time to the last one. The client runs on the same machine as the
//! server, so every figure is a lower bound of the server's.

mod beanstalk;
mod cli;
mod cluster;
mod flow;
mod harness;
mod machine;
mod nats;
mod pipeline;
mod procs;
mod report;
mod synap_http;
mod synap_rpc;
mod wire;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser as _;
use synap_client::{QueueConfig, SynapClient};

use cli::{PEER_PATHS, Scenario, Settings};
use harness::{Kind, Plan, Shared, Target};
use machine::{cores, date, load_average};
use procs::{Auth, Durability, Proc};
use report::{Measure, Row};

/// What the progress line shows: the measurement's label and its counters.
static PROGRESS: Mutex<Option<(String, Arc<Shared>)>> = Mutex::new(None);

fn main() {
    let settings = match cli::Cli::parse().settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("synap-bench: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("synap-bench: tokio runtime: {e}");
            std::process::exit(1);
        });
    if let Err(e) = runtime.block_on(bench(&settings)) {
        eprintln!("synap-bench: {e}");
        std::process::exit(1);
    }
}

/// The programs a run starts.
struct Tools {
    synap: PathBuf,
    /// `synap-server --threads`, if given.
    synap_threads: Option<usize>,
    /// How Synap's clients authenticate (`--auth`).
    auth: Auth,
    beanstalkd: Option<PathBuf>,
    nats: Option<PathBuf>,
}

/// The rows to measure, in table order: Synap's paths for each mode, then the peers'.
fn plan_rows(s: &Settings, tools: &Tools, notes: &mut Vec<String>) -> Vec<Row> {
    let mut rows = Vec::new();
    if !s.rows {
        return rows;
    }
    for &mode in &s.modes {
        for path in s.paths.iter().filter(|p| !PEER_PATHS.contains(&p.as_str())) {
            rows.push(row("synap", path, mode.label(), mode.durable()));
        }
    }
    if let Some(n) = s.cluster {
        let system = cluster_system(n);
        if s.modes.contains(&Durability::Memory) {
            notes.push(format!(
                "{system}: a cluster node keeps a Raft log, so it has no in-memory rows"
            ));
        }
        for &mode in s.modes.iter().filter(|m| m.durable()) {
            for path in s.paths.iter().filter(|p| !PEER_PATHS.contains(&p.as_str())) {
                rows.push(row(system, path, mode.label(), true));
            }
        }
    }
    if !s.peers {
        return rows;
    }
    let mut storages: Vec<bool> = s.modes.iter().map(|m| m.durable()).collect();
    storages.dedup();
    storages.sort_unstable();
    storages.dedup();
    for missing in [
        ("beanstalkd", &tools.beanstalkd),
        ("nats-server", &tools.nats),
    ] {
        if missing.1.is_none() {
            notes.push(format!(
                "{} is not installed (Debian: apt-get install -y {}); its rows are skipped",
                missing.0, missing.0
            ));
        }
    }
    for durable in storages {
        for path in s.paths.iter().filter(|p| PEER_PATHS.contains(&p.as_str())) {
            let (system, have) = if path.starts_with("nats") {
                ("nats", tools.nats.is_some())
            } else {
                ("beanstalkd", tools.beanstalkd.is_some())
            };
            let mode = match (system, durable) {
                (_, false) => "memory",
                ("nats", true) => "file storage",
                _ => "fsync every write",
            };
            if have {
                rows.push(row(system, path, mode, durable));
            }
        }
    }
    rows
}

/// The system name of an `n`-node cluster's rows.
fn cluster_system(n: usize) -> &'static str {
    if n == 5 { "synap ×5" } else { "synap ×3" }
}

fn row(system: &'static str, path: &str, mode: &'static str, durable: bool) -> Row {
    Row {
        system,
        path: path.to_owned(),
        mode,
        durable,
        runs: Vec::new(),
        failures: Vec::new(),
    }
}

async fn bench(s: &Settings) -> Result<(), String> {
    let tools = Tools {
        synap: procs::synap_binary()?,
        synap_threads: s.server_threads,
        auth: s.auth,
        beanstalkd: procs::find_program("beanstalkd"),
        nats: procs::find_program("nats-server"),
    };
    let mut notes = Vec::new();
    let mut rows = plan_rows(s, &tools, &mut notes);
    for n in &notes {
        eprintln!("synap-bench: {n}");
    }
    let started = Instant::now();
    let load_before = load_average();
    let ticker = tokio::spawn(progress_line());
    let n_rows = rows.len();
    let total = n_rows * s.runs;
    // Runs go round the rows, so a slow spell on the shared machine spreads over all of them.
    for run in 0..s.runs {
        for (i, r) in rows.iter_mut().enumerate() {
            let label = format!(
                "[{}/{total}] {} {} {} run {}/{}",
                run * n_rows + i + 1,
                r.system,
                r.path,
                r.mode,
                run + 1,
                s.runs
            );
            match measure_row(r, s, &tools, &label, run).await {
                Ok(m) => r.runs.push(m),
                Err(e) => {
                    eprintln!("\nsynap-bench: {label}: {e}");
                    r.failures.push(e);
                }
            }
        }
    }
    ticker.abort();
    eprint!("\r\x1b[K");
    let failover = match s.failover {
        None => None,
        Some(kills) => {
            let n = s.cluster.unwrap_or(3);
            let f = cluster::failover(&tools.synap, n, kills, s.server_threads, s.auth).await;
            Some(f.map_err(|e| format!("failover: {e}"))?)
        }
    };
    let took = started.elapsed();
    if s.json {
        let doc = serde_json::json!({
            "date": date(),
            "cores": cores(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "messages": s.messages,
            "producers": s.producers,
            "workers": s.workers,
            "runs": s.runs,
            "open_rate": s.rate,
            "open_messages": s.open_messages,
            "seconds": took.as_secs_f64(),
            "auth": s.auth,
            "notes": notes,
            "rows": rows,
            "failover": failover,
            "flow_groups": s.scenarios.contains(&Scenario::CFair).then_some(s.flow_groups),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "synap-bench, {}; {} cores shared by client and servers; load average {} before, {} after",
        date(),
        cores(),
        load_before,
        load_average()
    );
    if let Some(n) = s.server_threads {
        println!("synap-server runs with --threads {n}");
    }
    if s.auth != Auth::None {
        println!("Synap auth: {}", s.auth.label());
    }
    if let Some(f) = &failover {
        println!("took {:.0} s\n", took.as_secs_f64());
        println!("{}", report::failover_text(f));
    }
    if rows.is_empty() {
        return Ok(());
    }
    println!(
        "{} messages of ~140 B JSON, {} producers, {} workers; median of {} run(s); took {:.0} s\n",
        s.messages,
        s.producers,
        s.workers,
        s.runs,
        took.as_secs_f64()
    );
    println!(
        "Closed loop (C latency is publish→ack, mostly queueing when producers outrun workers):\n"
    );
    println!("{}", report::closed_table(&rows));
    if s.cluster.is_some() {
        println!("Cluster ÷ single server, same path and mode (clients on the leader):\n");
        println!("{}", report::cluster_table(&rows));
    }
    if flow::wanted(s) {
        println!("{}", flow::explain(s));
        println!("{}", flow::table(&rows, s));
    }
    if s.scenarios.contains(&Scenario::Open) {
        println!(
            "Open loop, C at {} msgs/s offered ({} messages), latency from the intended send time:\n",
            report::rate_text(s.rate),
            s.open_messages
        );
        println!("{}", report::open_table(&rows, s.rate));
    }
    println!("* = some run did not finish within --timeout or had errors.");
    let extra = report::notes(&rows);
    if !extra.is_empty() || !notes.is_empty() {
        println!("\nNotes:");
        for n in &notes {
            println!("- {n}");
        }
        print!("{extra}");
    }
    Ok(())
}

/// A running server of a row, and how to reach it.
enum Server {
    Synap {
        proc: Proc,
        client: SynapClient,
        rpc: std::net::SocketAddr,
        /// The key SynapRPC connections send with `AUTH`, if any.
        key: Option<&'static str>,
    },
    /// A cluster; the clients talk to `leader`.
    Cluster {
        cluster: cluster::SynapCluster,
        leader: usize,
        client: SynapClient,
        rpc: std::net::SocketAddr,
        /// The key SynapRPC connections send with `AUTH`, if any.
        key: Option<&'static str>,
    },
    Beanstalk {
        proc: Proc,
        addr: std::net::SocketAddr,
    },
    Nats {
        proc: Proc,
        url: String,
    },
}

impl Server {
    async fn start(r: &Row, tools: &Tools) -> Result<Self, String> {
        let mode = match r.mode {
            m if m == Durability::Memory.label() => Durability::Memory,
            m if m == Durability::Interval.label() => Durability::Interval,
            _ => Durability::Always,
        };
        let client_of = |http: std::net::SocketAddr| {
            let client =
                SynapClient::new(&format!("http://{http}")).map_err(|e| format!("client: {e}"))?;
            Ok::<_, String>(match tools.auth.key() {
                Some(key) => client.with_api_key(key),
                None => client,
            })
        };
        if r.system.starts_with("synap ×") {
            let n = if r.system.ends_with('5') { 5 } else { 3 };
            let cluster = cluster::SynapCluster::start(
                &tools.synap,
                n,
                mode,
                tools.synap_threads,
                tools.auth,
            )
            .await?;
            let leader = cluster.leader().await?;
            let node = &cluster.nodes[leader];
            return Ok(Self::Cluster {
                client: client_of(node.http)?,
                rpc: node.rpc,
                key: tools.auth.key(),
                leader,
                cluster,
            });
        }
        match r.system {
            "synap" => {
                let s = procs::start_synap(&tools.synap, mode, tools.synap_threads, tools.auth)?;
                Ok(Self::Synap {
                    proc: s.proc,
                    client: client_of(s.http)?,
                    rpc: s.rpc,
                    key: tools.auth.key(),
                })
            }
            "beanstalkd" => {
                let bin = tools
                    .beanstalkd
                    .as_ref()
                    .ok_or("beanstalkd is not installed")?;
                let (proc, addr) = procs::start_beanstalkd(bin, r.durable)?;
                Ok(Self::Beanstalk { proc, addr })
            }
            _ => {
                let bin = tools.nats.as_ref().ok_or("nats-server is not installed")?;
                let (proc, addr) = procs::start_nats(bin)?;
                Ok(Self::Nats {
                    proc,
                    url: format!("nats://{addr}"),
                })
            }
        }
    }

    fn proc(&self) -> Option<&Proc> {
        match self {
            Self::Synap { proc, .. } | Self::Beanstalk { proc, .. } | Self::Nats { proc, .. } => {
                Some(proc)
            }
            Self::Cluster {
                cluster, leader, ..
            } => cluster.proc(*leader),
        }
    }

    fn target(&self, path: &str) -> Arc<dyn Target> {
        use synap_http::{Http, SynapHttp};
        match self {
            Self::Synap {
                client, rpc, key, ..
            }
            | Self::Cluster {
                client, rpc, key, ..
            } => match path {
                "rest" | "rest-batch" | "ws" => Arc::new(SynapHttp {
                    how: match path {
                        "rest" => Http::Rest,
                        "rest-batch" => Http::Batch,
                        _ => Http::Ws,
                    },
                    client: client.clone(),
                }),
                _ => Arc::new(synap_rpc::SynapRpc {
                    addr: *rpc,
                    pipelined: path == "rpc-pipe",
                    key: *key,
                }),
            },
            Self::Beanstalk { addr, .. } => Arc::new(beanstalk::Beanstalk {
                addr: *addr,
                pipelined: path == "beanstalkd-pipe",
            }),
            Self::Nats { url, .. } => Arc::new(nats::Nats {
                url: url.clone(),
                window: if path == "nats-w1" { 1 } else { 100 },
            }),
        }
    }

    /// Synap's client, on a Synap row.
    fn client(&self) -> Option<&SynapClient> {
        match self {
            Self::Synap { client, .. } | Self::Cluster { client, .. } => Some(client),
            Self::Beanstalk { .. } | Self::Nats { .. } => None,
        }
    }

    /// Makes `queue` ready for a scenario (beanstalkd tubes need nothing), with the flow
    /// settings of `flow` on Synap.
    async fn prepare(
        &self,
        queue: &str,
        durable: bool,
        messages: u64,
        flow: flow::Variant,
    ) -> Result<(), String> {
        match self {
            Self::Synap { client, .. } | Self::Cluster { client, .. } => {
                let config = flow.config(QueueConfig {
                    max_depth: Some(messages.max(100_000) * 2),
                    ack_deadline: Some(Duration::from_secs(300)),
                    ..QueueConfig::default()
                });
                client
                    .queue_create(queue, config)
                    .await
                    .map_err(|e| format!("create queue: {e}"))
            }
            Self::Beanstalk { .. } => Ok(()),
            Self::Nats { url, .. } => nats::prepare(url, queue, durable).await,
        }
    }
}

/// One run of a row: a fresh server, then the scenarios asked for.
async fn measure_row(
    r: &Row,
    s: &Settings,
    tools: &Tools,
    label: &str,
    run: usize,
) -> Result<BTreeMap<Scenario, Measure>, String> {
    let server = Server::start(r, tools).await?;
    let label = match server.proc() {
        Some(p) => format!("{label} ({} pid {})", p.name(), p.pid()),
        None => label.to_owned(),
    };
    let label = label.as_str();
    let target = server.target(&r.path);
    let mut out = BTreeMap::new();
    let want = |x: Scenario| s.scenarios.contains(&x);
    let q = |tag: &str| format!("bench-{}-{run}-{tag}", std::process::id());
    let plan = |kind, target, producers, workers, rate| Plan {
        kind,
        target,
        producers,
        workers,
        limit: s.limit,
        rate,
        groups: None,
    };
    let plain = flow::Variant::default();
    if want(Scenario::A) || want(Scenario::B) {
        let queue = q("ab");
        server.prepare(&queue, r.durable, s.messages, plain).await?;
        let a_plan = plan(Kind::A, s.messages, s.producers, 0, None);
        let a = scenario(&target, &queue, &a_plan, &format!("{label} A")).await;
        if want(Scenario::A) {
            out.insert(Scenario::A, Measure::from(&a));
        }
        if want(Scenario::B) {
            // B drains exactly what A got confirmed.
            let b_plan = plan(Kind::B, a.done, 0, s.workers, None);
            let b = scenario(&target, &queue, &b_plan, &format!("{label} B")).await;
            out.insert(Scenario::B, Measure::from(&b));
        }
    }
    // C and, with --flow, its runs on flow-controlled queues, each on a queue of its own.
    for sc in flow::c_runs(s, r.system, run) {
        let queue = q(&format!("{sc:?}").to_ascii_lowercase());
        let variant = flow::Variant::of(sc, &r.path, s);
        server
            .prepare(&queue, r.durable, s.messages, variant)
            .await?;
        let c_plan = Plan {
            groups: variant.groups,
            ..plan(Kind::C, s.messages, s.producers, s.workers, None)
        };
        let watch = flow::Watch::start_for(s, server.client(), &queue);
        let c = scenario(&target, &queue, &c_plan, &format!("{label} {sc:?}")).await;
        out.insert(sc, flow::finish(Measure::from(&c), variant, watch).await);
    }
    if want(Scenario::Open) {
        let queue = q("open");
        server
            .prepare(&queue, r.durable, s.open_messages, plain)
            .await?;
        let o_plan = plan(
            Kind::C,
            s.open_messages,
            s.producers,
            s.workers,
            Some(s.rate),
        );
        let o = scenario(&target, &queue, &o_plan, &format!("{label} open")).await;
        out.insert(Scenario::Open, Measure::from(&o));
    }
    // The server process is stopped (by its PID) and its directory removed here.
    drop(target);
    drop(server);
    Ok(out)
}

async fn scenario(
    target: &Arc<dyn Target>,
    queue: &str,
    plan: &Plan,
    label: &str,
) -> harness::RunResult {
    let label = label.to_owned();
    let show = move |sh: Option<Arc<Shared>>| {
        *PROGRESS.lock().expect("progress lock") = sh.map(|sh| (label.clone(), sh));
    };
    harness::run(Arc::clone(target), queue, plan, &show).await
}

/// Redraws the progress line on stderr twice a second (every 5 s, one line each, when stderr
/// is not a terminal).
async fn progress_line() {
    let tty = std::io::stderr().is_terminal();
    let period = Duration::from_millis(if tty { 500 } else { 5000 });
    loop {
        tokio::time::sleep(period).await;
        let Some((label, sh)) = PROGRESS.lock().expect("progress lock").clone() else {
            continue;
        };
        let line = format!(
            "{label}: published {}, acked {} of {} ({:.1} s)",
            sh.published(),
            sh.acked(),
            sh.target,
            sh.started().elapsed().as_secs_f64()
        );
        if tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}
