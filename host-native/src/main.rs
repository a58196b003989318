//! `synap-server`: Synap's native server. The engine sits behind one lock with an inbox in front
//! of it (`engine_task`); axum serves REST, the SDK command envelope, WebSocket and SSE on top
//! of it (`http`), SynapRPC has its own listener (`rpc`), and `storage` keeps the command log
//! and snapshots. Start at `serve` below; docs/architecture.md draws the whole, docs/api.md is
//! the reference.

mod clock;
mod cluster;
mod config;
mod engine_task;
mod fdlimit;
mod handle;
mod hardening;
mod http;
mod listen;
mod memory;
mod permissions;
#[cfg(test)]
mod proptests;
mod rpc;
mod settings;
// The subcommand's entry point is `pub` for its own reasons; it is reached only from `main`.
#[allow(unreachable_pub)]
mod simulate;
mod storage;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use synap_core::{Command, Engine};
use tokio::sync::{broadcast, watch};
use tracing::{error, info, warn};

use crate::config::{Cli, Fsync, ServerConfig, Sub};
use crate::engine_task::{EVENT_BUFFER, EngineTask};
use crate::handle::EngineHandle;
use crate::http::{AppState, Auth};
use crate::storage::fs::RealFs;
use crate::storage::outbox::TaskStorage;
use crate::storage::writer::SyncPolicy;
use crate::storage::{Storage, StorageConfig};

/// How long, after the grace period, requests cut short have to write their 503 before the
/// process exits.
const CUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // `simulate` takes its own flags (including `--help`), so it is dispatched before clap.
    if args.get(1).map(String::as_str) == Some("simulate") {
        return simulate::main(args[2..].to_vec());
    }
    if args.get(1).map(String::as_str) == Some("data") {
        return storage::inspect::main(&args[2..]);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Simulate { args }) => return simulate::main(args),
        Some(Sub::Data { args }) => return storage::inspect::main(&args),
        Some(Sub::HashPassword) => return hash_password(),
        None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let env_keys = std::env::var("SYNAP_API_KEY").ok();
    let config = match ServerConfig::load(&cli, env_keys.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("synap-server: {e}");
            return ExitCode::from(2);
        }
    };
    memory::start_purging();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.threads {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synap-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `synap-server hash-password`: reads one line from standard input and prints its hash.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("synap-server: cannot read the password: {e}");
        return ExitCode::from(2);
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("synap-server: empty password (write it to standard input)");
        return ExitCode::from(2);
    }
    match http::passwords::hash(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synap-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A seed from the OS, so message ids differ between servers and runs.
fn os_seed() -> Result<u64, String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("no OS randomness for the engine seed: {e}"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The engine and, with persistence on, its storage: recovered from the data directory.
fn open_storage(
    config: &ServerConfig,
) -> Result<(Engine, clock::Clock, Option<TaskStorage>), String> {
    let clock = clock::Clock::new();
    if config.in_memory {
        info!("in-memory mode: nothing is written to disk");
        return Ok((Engine::new(config.engine.clone(), os_seed()?), clock, None));
    }
    let policy = sync_policy(config);
    let cfg = StorageConfig {
        dir: config.data_dir.clone(),
        policy,
        segment_bytes: config.segment_bytes,
        snapshot_bytes: config.snapshot_bytes,
        repair: config.repair_log,
    };
    let (storage, recovered) = Storage::open(Arc::new(RealFs), &cfg, &config.engine, os_seed()?)?;
    info!(data_dir = %cfg.dir.display(), fsync = ?policy, "persistence on");
    let clock = clock.not_before(recovered.last_now);
    let task_storage = TaskStorage::new(storage, recovered.host);
    Ok((recovered.engine, clock, Some(task_storage)))
}

/// The fsync policy of the config.
fn sync_policy(config: &ServerConfig) -> SyncPolicy {
    match config.fsync {
        Fsync::Always => SyncPolicy::Always,
        Fsync::Interval => {
            SyncPolicy::Interval(std::time::Duration::from_millis(config.fsync_interval_ms))
        }
        Fsync::Never => SyncPolicy::Never,
    }
}

/// Starts the engine: the single server's engine task over its storage, or with a `cluster:`
/// section, this node's cluster task. The handle and the task's join handle.
async fn start_engine(
    config: &ServerConfig,
    events: &broadcast::Sender<Arc<synap_core::Event>>,
) -> Result<(EngineHandle, tokio::task::JoinHandle<()>), String> {
    if let Some(c) = &config.cluster {
        let started = cluster::start(cluster::Start {
            cluster: c,
            engine: &config.engine,
            data_dir: &config.data_dir,
            policy: sync_policy(config),
            events: events.clone(),
            jitter_seed: os_seed()?,
        })
        .await?;
        tokio::spawn(configure_cluster_queues(
            started.0.clone(),
            config.queues.clone(),
        ));
        return Ok(started);
    }
    // One clock for the engine and the connections that track its lease deadlines.
    let (engine, clock, storage) = open_storage(config)?;
    let mut engine_task = EngineTask::new(engine, events.clone(), clock);
    if let Some(storage) = storage {
        engine_task = engine_task.with_storage(storage);
    }
    let started = engine_task.start();
    configure_queues(&started.0, config).await?;
    Ok(started)
}

/// On a cluster node: the config file's queues are configured through the log by whichever
/// node leads. Each node tries until it succeeds or learns of another leader.
async fn configure_cluster_queues(
    handle: EngineHandle,
    queues: std::collections::BTreeMap<String, synap_core::QueueConfig>,
) {
    use crate::cluster::NotServing;
    use crate::handle::Failure;
    if queues.is_empty() {
        return;
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut done = true;
        for (name, qc) in &queues {
            let cmd = Command::ConfigureQueue {
                queue: name.clone(),
                config: Box::new(qc.clone()),
            };
            match handle.call(cmd).await {
                Ok(_) => info!(queue = %name, "queue configured"),
                Err(Failure::Cluster(NotServing::NotLeader(_))) => return,
                Err(Failure::Cluster(_)) => done = false,
                Err(e) => {
                    warn!(queue = %name, error = ?e, "cannot configure queue");
                    return;
                }
            }
        }
        if done {
            return;
        }
    }
}

/// Creates (or reconfigures) the queues of the config file.
async fn configure_queues(handle: &EngineHandle, config: &ServerConfig) -> Result<(), String> {
    for (name, qc) in &config.queues {
        let cmd = Command::ConfigureQueue {
            queue: name.clone(),
            config: Box::new(qc.clone()),
        };
        handle
            .call(cmd)
            .await
            .map_err(|e| format!("cannot configure queue {name}: {e:?}"))?;
        info!(queue = %name, "queue configured");
    }
    Ok(())
}

/// Raises the open-file limit and lowers the connection caps if it cannot hold them.
fn fit_connection_caps(config: &mut ServerConfig) {
    let wanted = fdlimit::Caps {
        http: config.http.max_connections,
        rpc: config.rpc_bind.map(|_| {
            config
                .rpc_max_connections
                .unwrap_or(rpc::DEFAULT_MAX_CONNECTIONS)
        }),
    };
    let refusing = listen::MAX_REFUSING + rpc::MAX_REFUSING;
    let data_dir = (!config.in_memory).then_some(config.data_dir.as_path());
    let caps = fdlimit::apply(wanted, refusing, data_dir);
    config.http.max_connections = caps.http;
    if caps.rpc != wanted.rpc {
        config.rpc_max_connections = caps.rpc;
    }
}

async fn serve(mut config: ServerConfig) -> Result<(), String> {
    fit_connection_caps(&mut config);
    let (events_tx, _) = broadcast::channel(EVENT_BUFFER);
    let (handle, mut task) = start_engine(&config, &events_tx).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if !config.api_keys.is_empty() || !config.users.is_empty() {
        info!(
            keys = config.api_keys.len(),
            users = config.users.len(),
            "auth is on"
        );
    }
    let auth = Arc::new(Auth::new(config.api_keys.clone(), config.users.clone()));
    let conns = Arc::new(listen::ConnStats::default());
    let rpc = start_rpc(&config, &handle, &auth, &conns, &stop_rx).await?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let state_stop = stop_rx.clone();
    let state = AppState::new(http::AppShared {
        engine: handle.clone(),
        events: events_tx,
        shutdown: stop_rx.clone(),
        default_queue: Arc::new(config.engine.default_queue.clone()),
        max_batch: config.engine.limits.max_batch,
        auth,
        metrics: Arc::new(http::HttpMetrics::default()),
        max_body_bytes: config.max_body_bytes,
        max_message_bytes: config.engine.limits.max_payload_bytes,
        max_value_bytes: config.engine.limits.max_value_bytes,
        max_id_bytes: config.engine.limits.max_id_bytes,
        max_held_bytes: config.engine.limits.max_held_bytes,
        conns: Arc::clone(&conns),
        origins: Arc::new(http::OriginPolicy::new(
            local,
            config.allowed_origins.clone(),
        )),
    });
    let app = http::router(state);
    info!(
        addr = %local,
        memory_budget = config.engine.limits.max_held_bytes,
        max_connections = config.http.max_connections,
        "synap-server listening"
    );
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_handle = handle.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down: answering parked consumers and draining connections");
        let _ = stop_tx.send(true);
        drain_handle.drain().await;
        let _ = fired_tx.send(());
    });
    // Turns true when the grace period is over: request bodies still arriving are answered
    // 503 `shutting_down`, which they have `CUT_GRACE` to write.
    let (cut_tx, cut_rx) = watch::channel(false);
    let shutdown = listen::Shutdown {
        stop: state_stop,
        cut: cut_rx,
    };
    let server = listen::serve(listener, app, config.http, conns, shutdown);
    let grace_period = config.shutdown_grace;
    let grace = async {
        let _ = fired_rx.await;
        tokio::time::sleep(grace_period).await;
        info!("shutdown grace period over: cutting the requests still open");
        let _ = cut_tx.send(true);
        tokio::time::sleep(CUT_GRACE).await;
    };
    let served = supervise(
        async {
            server.await;
            Ok(())
        },
        grace,
        &mut task,
    )
    .await;
    if let Some(rpc) = rpc {
        rpc.abort();
    }
    // The engine task writes what the log holds and the shutdown snapshot before it ends.
    if !task.is_finished() {
        handle.stop().await;
    }
    drop(handle);
    task.abort();
    served?;
    info!("stopped");
    Ok(())
}

/// Binds and starts the SynapRPC listener unless it is off. Its address is logged before the
/// HTTP one, so whoever waits for `synap-server listening` knows both.
async fn start_rpc(
    config: &ServerConfig,
    handle: &EngineHandle,
    auth: &Arc<Auth>,
    conns: &Arc<listen::ConnStats>,
    stop: &watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(addr) = config.rpc_bind else {
        info!("SynapRPC is off");
        return Ok(None);
    };
    let lim = &config.engine.limits;
    let mut limits = rpc::RpcLimits::for_engine(lim.max_payload_bytes, lim.max_value_bytes);
    if let Some(n) = config.rpc_max_connections {
        limits.max_connections = n;
    }
    if let Some(n) = config.rpc_max_frame_bytes {
        limits.max_frame_bytes = n;
    }
    let listener = rpc::bind(addr).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    info!(rpc = %local, "SynapRPC accepting connections");
    let ctx = Arc::new(rpc::RpcContext {
        engine: handle.clone(),
        auth: Arc::clone(auth),
        default_queue: Arc::new(config.engine.default_queue.clone()),
        limits,
        max_wait_ms: lim.max_wait_ms,
        max_batch: lim.max_batch,
        idle_timeout: config.rpc_idle_timeout,
        body_timeout: config.http.body_timeout,
        conns: Arc::clone(conns),
    });
    Ok(Some(tokio::spawn(rpc::serve(listener, ctx, stop.clone()))))
}

/// Serves until the server stops (or the shutdown grace period ends), or until the engine task
/// ends first. The engine task only ends early by panicking; every request would then fail
/// with 503 for good, so the process exits with an error instead of limping on, and a
/// supervisor can restart it.
async fn supervise(
    server: impl Future<Output = std::io::Result<()>>,
    grace: impl Future<Output = ()>,
    engine: &mut tokio::task::JoinHandle<()>,
) -> Result<(), String> {
    tokio::select! {
        r = server => r.map_err(|e| format!("server error: {e}")),
        () = grace => {
            warn!("connections still open after the grace period; exiting");
            Ok(())
        }
        r = engine => Err(match r {
            Err(e) if e.is_panic() => format!("the engine task panicked ({e}); exiting"),
            Err(e) => format!("the engine task failed ({e}); exiting"),
            Ok(()) => "the engine task stopped unexpectedly; exiting".to_owned(),
        }),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use super::*;

    #[tokio::test]
    async fn a_panicked_engine_task_ends_serving_with_an_error() {
        let mut engine = tokio::spawn(async { panic!("engine bug") });
        let served = supervise(pending(), pending(), &mut engine).await;
        let e = served.expect_err("a dead engine is an error");
        assert!(e.contains("panicked"), "{e}");
    }

    #[tokio::test]
    async fn a_stopped_server_is_a_clean_exit() {
        let mut engine = tokio::spawn(pending::<()>());
        let served = supervise(async { Ok(()) }, pending(), &mut engine).await;
        assert_eq!(served, Ok(()));
        engine.abort();
    }
}
