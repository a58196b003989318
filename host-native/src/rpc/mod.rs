//! SynapRPC (`synap://`): Synap's binary protocol on TCP, as Synap's official SDKs speak it
//! (shared/SYNAP_RPC.md). Length-prefixed MessagePack frames carry `[id, command, args]`
//! requests, answered in any order (many in flight per connection); `SUBSCRIBE` pushes topic
//! messages on the same connection with the reserved id. Commands reach the engine through
//! the same `EngineHandle` as HTTP. See docs/api.md, "SynapRPC".

mod conn;
mod encode;
mod fast;
mod flow;
mod kv;
#[cfg(test)]
mod proptests;
mod pubsub;
mod queue;
mod stream;
mod value;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use synap_core::QueueConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::debug;

use crate::handle::{EngineHandle, Failure};
use crate::http::{Auth, wire_error};
use value::{RpcResult, encode_frame};

/// Requests one connection may have in flight (SYNAP_RPC.md §4).
pub(crate) const MAX_IN_FLIGHT: usize = 256;
/// Default most open connections.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections being refused at once (each gets an error frame); more wait in the OS's listen
/// queue for a turn.
pub(crate) const MAX_REFUSING: usize = 16;
/// How long a refusal may take to write its error frame.
const REFUSAL_WRITE: std::time::Duration = std::time::Duration::from_millis(200);
/// Room in a frame beyond its largest message or value: command, key, other arguments.
const FRAME_SLACK: usize = 64 << 10;

/// What the listener runs with.
#[derive(Clone, Debug)]
pub(crate) struct RpcLimits {
    /// Largest frame body accepted (checked on the length prefix).
    pub(crate) max_frame_bytes: usize,
    /// Most connections open at once; more are refused with an error frame.
    pub(crate) max_connections: usize,
}

impl RpcLimits {
    /// Limits sized for messages of `max_message_bytes` and values of `max_value_bytes`.
    pub(crate) fn for_engine(max_message_bytes: usize, max_value_bytes: usize) -> Self {
        Self {
            max_frame_bytes: max_message_bytes
                .max(max_value_bytes)
                .saturating_add(FRAME_SLACK),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What every connection shares.
pub(crate) struct RpcContext {
    /// The engine task.
    pub(crate) engine: EngineHandle,
    /// API keys and users (auth is off when both are empty).
    pub(crate) auth: Arc<Auth>,
    /// Config of queues created without one, base of `QCREATE` options.
    pub(crate) default_queue: Arc<QueueConfig>,
    /// Limits.
    pub(crate) limits: RpcLimits,
    /// Longest wait a `QCONSUME` may ask for (the engine's `max_wait_ms`).
    pub(crate) max_wait_ms: u64,
    /// Most entries the engine takes in one batch command (`max_batch`).
    pub(crate) max_batch: usize,
    /// A connection with nothing in flight and no subscription or stream is closed after
    /// this long without a frame.
    pub(crate) idle_timeout: std::time::Duration,
    /// A frame whose length prefix has arrived must be complete within this long.
    pub(crate) body_timeout: std::time::Duration,
    /// Connection counters (failed accepts) for `/metrics`.
    pub(crate) conns: Arc<crate::listen::ConnStats>,
}

/// A command's result before encoding.
type Answer = Result<value::Value, String>;

/// An engine failure as SynapRPC clients read it: the same text as over HTTP, except a
/// refusal, which starts `NOPERM forbidden:` (the prefix the SDKs read as an auth error, the
/// code as on the other transports).
fn engine_error(f: Failure) -> String {
    match f {
        Failure::Forbidden(d) => forbidden(&d),
        f => wire_error(f),
    }
}

/// A refusal's error text.
fn forbidden(d: &crate::permissions::Denied) -> String {
    format!("NOPERM forbidden: {d}")
}

/// A reply variant a command cannot produce.
fn odd(reply: &synap_core::Reply) -> String {
    format!("ERR unexpected engine reply {reply:?}")
}

/// Accepts connections until `shutdown` turns true, then closes the listener (new connections
/// are refused at once); each connection runs on its own task and ends with the server.
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<RpcContext>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut stop = shutdown.clone();
    let mut last_log = None;
    loop {
        let accepted = tokio::select! {
            // Stopping first: once it has begun, nothing more is accepted.
            biased;
            () = crate::http::stopped(&mut stop) => break,
            a = listener.accept() => a,
        };
        let (mut tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                let errors = &ctx.conns.rpc_accept_errors;
                crate::listen::accept_failed("rpc", &e, errors, &mut last_log).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "could not set TCP_NODELAY");
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Each refusal holds a file descriptor until written, so only a few run at once.
            let Ok(turn) = Arc::clone(&refusing).acquire_owned().await else {
                continue;
            };
            let limit = ctx.limits.max_connections;
            tokio::spawn(async move {
                let msg = format!("ERR too many connections (limit {limit})");
                let frame = encode_frame(0, &RpcResult::Err(msg));
                let _ = tokio::time::timeout(REFUSAL_WRITE, tcp.write_all(&frame)).await;
                drop(turn);
            });
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            conn::run(tcp, peer, ctx, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
}

/// Binds the SynapRPC address.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for SynapRPC on {addr}: {e}"))
}
