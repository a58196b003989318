//! Server configuration: command-line flags over the YAML config file over defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use synap_core::{EngineConfig, QueueConfig, validate_queue_name};

use crate::cluster::config::{ClusterConfig, ClusterSection, SECRET_ENV};
use crate::settings::{ApplySettings as _, QueueSettings, secs_to_ms};

mod auth;
use auth::{KeySection, UserSection, load_keys, load_users};

/// Default listen address.
pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:15500";
/// Default SynapRPC listen address.
pub(crate) const DEFAULT_RPC_BIND: &str = "127.0.0.1:15501";
/// Default largest HTTP request body: room for a full batch of typical messages.
pub(crate) const DEFAULT_MAX_BODY: usize = 8 << 20;
/// Default time shutdown waits for open requests before cutting them.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// When the command log is flushed to disk; replies wait for their record per the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Fsync {
    /// fsync before replying (one fsync covers every turn written since the last one).
    Always,
    /// Reply once written; fsync every `--fsync-interval-ms` (10 ms by default).
    #[default]
    Interval,
    /// Reply once written; leave flushing to the OS.
    Never,
}

/// Synap's task-queue server.
#[derive(Debug, Parser)]
#[command(
    name = "synap-server",
    version,
    about,
    long_about = None,
    after_help = "Environment: SYNAP_API_KEY (API keys, comma-separated; turns auth on), \
                  SYNAP_CLUSTER_SECRET (a cluster's secret), \
                  RUST_LOG (log filter) [default: info].\n\
                  Every flag has a config-file key; see docs/configuration.md."
)]
pub(crate) struct Cli {
    /// YAML config file: server settings, limits, queues (see docs/configuration.md).
    #[arg(long, value_name = "FILE", help_heading = "Config file")]
    pub(crate) config: Option<PathBuf>,
    /// HTTP address to listen on [default: 127.0.0.1:15500].
    #[arg(long, value_name = "ADDR", help_heading = "Network")]
    pub(crate) bind: Option<SocketAddr>,
    /// SynapRPC (`synap://`) address, or `off` [default: 127.0.0.1:15501].
    #[arg(long, value_name = "ADDR|off", help_heading = "Network")]
    pub(crate) rpc_bind: Option<RpcBind>,
    /// Do not serve SynapRPC (same as `--rpc-bind off`) [default: served].
    #[arg(long, conflicts_with = "rpc_bind", help_heading = "Network")]
    pub(crate) no_rpc: bool,
    /// A browser origin allowed to call the server, `http://host:port`; repeatable [default: none].
    #[arg(
        long = "allowed-origin",
        value_name = "ORIGIN",
        help_heading = "Network"
    )]
    pub(crate) allowed_origins: Vec<String>,
    /// Data directory for the command log and snapshots [default: ./synap-data].
    #[arg(long, value_name = "DIR", help_heading = "Storage")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Keep all state in memory: nothing on disk, a restart loses everything [default: off].
    #[arg(long, help_heading = "Storage")]
    pub(crate) in_memory: bool,
    /// When the command log is synced to disk [default: interval].
    #[arg(long, value_enum, help_heading = "Storage")]
    pub(crate) fsync: Option<Fsync>,
    /// The `interval` policy's period in milliseconds [default: 10].
    #[arg(long, value_name = "MS", help_heading = "Storage")]
    pub(crate) fsync_interval_ms: Option<u64>,
    /// Cut a command log damaged before its end at the damage, instead of refusing to start [default: off].
    #[arg(long, help_heading = "Storage")]
    pub(crate) repair_log: bool,
    /// Seconds a request head may take from its first byte [default: 10].
    #[arg(long, value_name = "SECS", help_heading = "Limits and timeouts")]
    pub(crate) header_timeout: Option<f64>,
    /// Seconds a request body may take once its route reads it [default: 30].
    #[arg(long, value_name = "SECS", help_heading = "Limits and timeouts")]
    pub(crate) body_timeout: Option<f64>,
    /// Seconds an HTTP keep-alive connection may wait for its next request [default: 60].
    #[arg(long, value_name = "SECS", help_heading = "Limits and timeouts")]
    pub(crate) idle_timeout: Option<f64>,
    /// Seconds a SynapRPC connection with nothing in flight may stay silent [default: 300].
    #[arg(long, value_name = "SECS", help_heading = "Limits and timeouts")]
    pub(crate) rpc_idle_timeout: Option<f64>,
    /// Most HTTP connections open at once; lowered at start to fit the open-file limit [default: 10000].
    #[arg(long, value_name = "N", help_heading = "Limits and timeouts")]
    pub(crate) max_connections: Option<usize>,
    /// Seconds shutdown waits for open requests to finish before cutting them [default: 10].
    #[arg(long, value_name = "SECS", help_heading = "Limits and timeouts")]
    pub(crate) shutdown_grace: Option<f64>,
    /// Memory budget: message bytes held across queues [default: 40% of the machine's memory].
    #[arg(long, value_name = "BYTES", help_heading = "Limits and timeouts")]
    pub(crate) max_held_bytes: Option<u64>,
    /// Worker threads of the async runtime; the engine is one task either way [default: one per core].
    #[arg(long, value_name = "N", help_heading = "Runtime")]
    pub(crate) threads: Option<usize>,
    /// This node's id in the config file's `cluster.nodes` (required with a `cluster:` section).
    #[arg(long, value_name = "N", help_heading = "Cluster")]
    pub(crate) node_id: Option<u64>,
    /// Subcommand.
    #[command(subcommand)]
    pub(crate) command: Option<Sub>,
}

/// Where SynapRPC listens: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RpcBind {
    /// Listen here.
    At(SocketAddr),
    /// No SynapRPC listener.
    Off,
}

impl std::str::FromStr for RpcBind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse()
            .map(Self::At)
            .map_err(|e| format!("{s:?} is neither an address (host:port) nor `off`: {e}"))
    }
}

impl<'de> Deserialize<'de> for RpcBind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Sub {
    /// Print the Argon2id hash of a password for the config file's `server.users`. The
    /// password is read from standard input (one line), so it stays out of shell history.
    HashPassword,
    /// Run the workload simulator (arguments are passed to it; try `simulate --help`).
    Simulate {
        /// Simulator arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Read a data directory: `data inspect DIR` (snapshot, segments, queues) or
    /// `data export DIR` (the command log as JSON lines).
    Data {
        /// `inspect DIR` or `export DIR`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The `server:` section of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerSection {
    bind: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    in_memory: Option<bool>,
    fsync: Option<Fsync>,
    fsync_interval_ms: Option<u64>,
    threads: Option<usize>,
    segment_bytes: Option<u64>,
    snapshot_bytes: Option<u64>,
    api_keys: Vec<KeySection>,
    users: Vec<UserSection>,
    rpc_bind: Option<RpcBind>,
    rpc_max_connections: Option<usize>,
    rpc_max_frame_bytes: Option<usize>,
    auto_create_queues: Option<bool>,
    max_body_bytes: Option<usize>,
    observe: Option<bool>,
    header_timeout_secs: Option<f64>,
    body_timeout_secs: Option<f64>,
    idle_timeout_secs: Option<f64>,
    max_connections: Option<usize>,
    rpc_idle_timeout_secs: Option<f64>,
    shutdown_grace_secs: Option<f64>,
    allowed_origins: Vec<String>,
    /// How long a publish idempotency key is remembered, in seconds.
    idempotency_window_secs: Option<f64>,
}

/// The `limits:` section: the engine limits most worth tuning.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitSection {
    max_message_bytes: Option<usize>,
    max_batch: Option<usize>,
    max_wait_secs: Option<f64>,
    max_waiters: Option<usize>,
    max_queues: Option<u64>,
    max_kv_keys: Option<usize>,
    max_key_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
    max_subscribers: Option<usize>,
    subscriber_buffer: Option<usize>,
    max_held_bytes: Option<u64>,
    max_idempotency_keys: Option<usize>,
    max_groups_per_queue: Option<usize>,
    max_flows: Option<usize>,
    max_flow_jobs: Option<usize>,
    max_flow_depth: Option<usize>,
}

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: ServerSection,
    limits: LimitSection,
    default_queue: QueueSettings,
    #[serde(alias = "queue")]
    queues: BTreeMap<String, QueueSettings>,
    /// Replication (DESIGN.md §11): absent for a single server.
    cluster: Option<ClusterSection>,
}

/// Most worker threads `--threads` accepts.
const MAX_THREADS: usize = 1024;

/// Everything the server runs with.
#[derive(Debug)]
pub(crate) struct ServerConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) in_memory: bool,
    pub(crate) fsync: Fsync,
    pub(crate) fsync_interval_ms: u64,
    /// Worker threads of the async runtime (`None`: one per core).
    pub(crate) threads: Option<usize>,
    pub(crate) segment_bytes: u64,
    pub(crate) snapshot_bytes: u64,
    pub(crate) repair_log: bool,
    pub(crate) api_keys: Vec<crate::http::ApiKey>,
    /// Users who sign in with a password.
    pub(crate) users: Vec<crate::http::User>,
    /// Where SynapRPC listens (`None`: off).
    pub(crate) rpc_bind: Option<SocketAddr>,
    /// Most SynapRPC connections (`None`: the default).
    pub(crate) rpc_max_connections: Option<usize>,
    /// Largest SynapRPC frame (`None`: sized from the message and value limits).
    pub(crate) rpc_max_frame_bytes: Option<usize>,
    pub(crate) max_body_bytes: usize,
    /// The HTTP listener's timeouts and connection cap.
    pub(crate) http: crate::listen::Limits,
    /// A SynapRPC connection with nothing in flight and no subscription or stream is closed
    /// after this long.
    pub(crate) rpc_idle_timeout: std::time::Duration,
    /// How long shutdown waits for open requests before cutting them.
    pub(crate) shutdown_grace: std::time::Duration,
    /// Browser origins allowed besides the server's own (`server.allowed_origins`).
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) engine: EngineConfig,
    /// Queues to create (or reconfigure) at start.
    pub(crate) queues: BTreeMap<String, QueueConfig>,
    /// This node's cluster, when the config file has a `cluster:` section.
    pub(crate) cluster: Option<ClusterConfig>,
}

impl ServerConfig {
    /// Builds the configuration from flags, the config file they name, and `SYNAP_API_KEY`.
    pub(crate) fn load(cli: &Cli, env_keys: Option<&str>) -> Result<Self, String> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut engine = EngineConfig::default();
        engine.limits.max_held_bytes = crate::memory::default_budget(
            crate::memory::machine_memory(),
            engine.limits.max_held_bytes,
        );
        apply_limits(&mut engine, &file.limits)?;
        if let Some(v) = cli.max_held_bytes {
            engine.limits.max_held_bytes = v;
        }
        if engine.limits.max_held_bytes == 0 {
            return Err("the memory budget (max_held_bytes) must be positive".into());
        }
        if let Some(v) = file.server.auto_create_queues {
            engine.auto_create_queues = v;
        }
        if let Some(v) = file.server.observe {
            engine.observe = v;
        }
        if let Some(v) = file.server.idempotency_window_secs {
            engine.idempotency_window_ms =
                secs_to_ms("server.idempotency_window_secs", v).map_err(|e| e.to_string())?;
        }
        engine.default_queue = file
            .default_queue
            .apply(&engine.default_queue)
            .map_err(|e| format!("default_queue: {e}"))?;
        engine
            .default_queue
            .validate(&engine.limits)
            .map_err(|e| format!("default_queue: {e}"))?;
        let mut queues = BTreeMap::new();
        for (name, settings) in &file.queues {
            validate_queue_name(name).map_err(|e| format!("queue {name:?}: {e}"))?;
            let config = settings
                .apply(&engine.default_queue)
                .and_then(|c| c.validate(&engine.limits).map(|()| c))
                .map_err(|e| format!("queue {name:?}: {e}"))?;
            queues.insert(name.clone(), config);
        }
        let api_keys = load_keys(file.server.api_keys, env_keys)?;
        let net = crate::hardening::NetSettings {
            header_timeout: cli.header_timeout.or(file.server.header_timeout_secs),
            body_timeout: cli.body_timeout.or(file.server.body_timeout_secs),
            idle_timeout: cli.idle_timeout.or(file.server.idle_timeout_secs),
            rpc_idle_timeout: cli.rpc_idle_timeout.or(file.server.rpc_idle_timeout_secs),
            max_connections: cli.max_connections.or(file.server.max_connections),
        };
        let (http, rpc_idle_timeout) = net.resolve()?;
        let shutdown_grace = crate::hardening::timeout(
            "shutdown_grace",
            cli.shutdown_grace.or(file.server.shutdown_grace_secs),
            DEFAULT_SHUTDOWN_GRACE,
        )?;
        let mut allowed_origins = file.server.allowed_origins;
        allowed_origins.extend(cli.allowed_origins.iter().cloned());
        let allowed_origins = crate::hardening::origins(allowed_origins)?;
        let users = load_users(file.server.users)?;
        let cluster = match file.cluster {
            Some(section) => {
                let env = std::env::var(SECRET_ENV).ok();
                Some(ClusterConfig::resolve(
                    section,
                    cli.node_id,
                    env.as_deref(),
                )?)
            }
            None if cli.node_id.is_some() => {
                return Err("--node-id needs a config file with a cluster: section".into());
            }
            None => None,
        };
        // A cluster node binds the addresses of its own entry unless the flags say otherwise.
        let node = cluster.as_ref().map(ClusterConfig::me);
        let rpc = if cli.no_rpc {
            RpcBind::Off
        } else {
            cli.rpc_bind
                .or(node.and_then(|n| n.rpc).map(RpcBind::At))
                .or(file.server.rpc_bind)
                .unwrap_or_else(|| RpcBind::At(DEFAULT_RPC_BIND.parse().expect("valid default")))
        };
        let bind = cli
            .bind
            .or(node.map(|n| n.http))
            .or(file.server.bind)
            .unwrap_or_else(|| DEFAULT_BIND.parse().expect("valid default address"));
        if file.server.rpc_max_connections == Some(0) {
            return Err("server.rpc_max_connections must be positive".into());
        }
        if file.server.rpc_max_frame_bytes.is_some_and(|b| b < 1024) {
            return Err("server.rpc_max_frame_bytes must be at least 1024".into());
        }
        let max_body_bytes = file.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        let fsync_interval_ms = cli
            .fsync_interval_ms
            .or(file.server.fsync_interval_ms)
            .unwrap_or(crate::storage::writer::DEFAULT_INTERVAL.as_millis() as u64);
        if !(1..=10_000).contains(&fsync_interval_ms) {
            return Err("the fsync interval must be between 1 and 10000 ms".into());
        }
        let threads = cli.threads.or(file.server.threads);
        if threads.is_some_and(|n| !(1..=MAX_THREADS).contains(&n)) {
            return Err(format!(
                "the number of threads must be between 1 and {MAX_THREADS}"
            ));
        }
        let segment_bytes = file
            .server
            .segment_bytes
            .unwrap_or(crate::storage::DEFAULT_SEGMENT_BYTES);
        let snapshot_bytes = file
            .server
            .snapshot_bytes
            .unwrap_or(crate::storage::DEFAULT_SNAPSHOT_BYTES);
        if segment_bytes < 4096 || snapshot_bytes < 4096 {
            return Err(
                "server.segment_bytes and server.snapshot_bytes must be at least 4096".into(),
            );
        }
        let in_memory = cli.in_memory || file.server.in_memory.unwrap_or(false);
        if cluster.is_some() && in_memory {
            return Err("a cluster node keeps its Raft log on disk: drop --in-memory".into());
        }
        Ok(Self {
            bind,
            data_dir: cli
                .data_dir
                .clone()
                .or(file.server.data_dir)
                .unwrap_or_else(|| PathBuf::from("./synap-data")),
            in_memory,
            fsync: cli.fsync.or(file.server.fsync).unwrap_or_default(),
            fsync_interval_ms,
            threads,
            segment_bytes,
            snapshot_bytes,
            repair_log: cli.repair_log,
            api_keys,
            users,
            rpc_bind: match rpc {
                RpcBind::At(addr) => Some(addr),
                RpcBind::Off => None,
            },
            rpc_max_connections: file.server.rpc_max_connections,
            rpc_max_frame_bytes: file.server.rpc_max_frame_bytes,
            max_body_bytes,
            http,
            rpc_idle_timeout,
            shutdown_grace,
            allowed_origins,
            engine,
            queues,
            cluster,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    serde_norway::from_str(&text)
        .map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

/// Most jobs `limits.max_flow_jobs` may allow in one flow.
const MAX_FLOW_JOBS_CEILING: usize = 100_000;
/// Most levels `limits.max_flow_depth` may allow (the request's JSON nests two levels per
/// flow level, within the JSON reader's own nesting limit).
const MAX_FLOW_DEPTH_CEILING: usize = 32;

fn apply_limits(engine: &mut EngineConfig, l: &LimitSection) -> Result<(), String> {
    let lim = &mut engine.limits;
    let positive = |name: &str, v: usize| {
        if v == 0 {
            Err(format!("limits.{name} must be positive"))
        } else {
            Ok(v)
        }
    };
    if let Some(v) = l.max_message_bytes {
        lim.max_payload_bytes = positive("max_message_bytes", v)?;
    }
    if let Some(v) = l.max_batch {
        lim.max_batch = positive("max_batch", v)?;
    }
    if let Some(v) = l.max_wait_secs {
        lim.max_wait_ms = secs_to_ms("limits.max_wait_secs", v).map_err(|e| e.to_string())?;
    }
    if let Some(v) = l.max_waiters {
        lim.max_waiters = positive("max_waiters", v)?;
    }
    if let Some(v) = l.max_queues {
        lim.max_queues = v.max(1);
    }
    if let Some(v) = l.max_kv_keys {
        lim.max_kv_keys = positive("max_kv_keys", v)?;
    }
    if let Some(v) = l.max_key_bytes {
        lim.max_key_bytes = positive("max_key_bytes", v)?;
    }
    if let Some(v) = l.max_value_bytes {
        lim.max_value_bytes = positive("max_value_bytes", v)?;
    }
    if let Some(v) = l.max_subscribers {
        lim.max_subscribers = positive("max_subscribers", v)?;
    }
    if let Some(v) = l.max_idempotency_keys {
        lim.max_idempotency_keys = positive("max_idempotency_keys", v)?;
    }
    if let Some(v) = l.max_groups_per_queue {
        lim.max_groups_per_queue = positive("max_groups_per_queue", v)?;
    }
    if let Some(v) = l.max_flows {
        lim.max_flows = positive("max_flows", v)?;
    }
    // A flow is read and checked recursively: its size and depth have hard ceilings.
    if let Some(v) = l.max_flow_jobs {
        if v > MAX_FLOW_JOBS_CEILING {
            return Err(format!(
                "limits.max_flow_jobs must be at most {MAX_FLOW_JOBS_CEILING}"
            ));
        }
        lim.max_flow_jobs = positive("max_flow_jobs", v)?;
    }
    if let Some(v) = l.max_flow_depth {
        if v > MAX_FLOW_DEPTH_CEILING {
            return Err(format!(
                "limits.max_flow_depth must be at most {MAX_FLOW_DEPTH_CEILING}"
            ));
        }
        lim.max_flow_depth = positive("max_flow_depth", v)?;
    }
    if let Some(v) = l.subscriber_buffer {
        lim.subscriber_buffer = positive("subscriber_buffer", v)?;
    }
    if let Some(v) = l.max_held_bytes {
        lim.max_held_bytes = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
