//! Synap over SynapRPC (shared/SYNAP_RPC.md), with a client written here on the raw frames:
//! one call at a time (`QPUBLISH`, then `QCONSUME` + `QACK`, each awaited), or pipelined
//! (`QPUBLISH` with up to 128 in flight; workers on a `QSTREAM` push consumer with prefetch 64,
//! answering each delivery with a pipelined `QACK`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::harness::{Hist, Shared, Target, Task, ctx, hist, stamp_of};
use crate::pipeline::{self, Confirms, flush};
use crate::wire::{InBuf, PUSH_ID, V, put_request};

/// `QPUBLISH`es in flight per pipelined producer (the server allows 256 per connection).
const WINDOW: usize = 128;
/// Deliveries a `QSTREAM` worker holds unacked.
pub(crate) const PREFETCH: i64 = 64;
/// How long a worker waits for a frame before checking whether it is done.
const POLL: Duration = Duration::from_millis(250);

pub(crate) struct SynapRpc {
    pub(crate) addr: SocketAddr,
    pub(crate) pipelined: bool,
    /// Sent with `AUTH` as each connection's first frame, if any.
    pub(crate) key: Option<&'static str>,
}

impl Target for SynapRpc {
    fn producer(&self, sh: Arc<Shared>, index: usize, quota: u64) -> Task {
        let (addr, pipelined, key) = (self.addr, self.pipelined, self.key);
        Box::pin(async move {
            if pipelined {
                pipelined_producer(&sh, (addr, key), index, quota).await?;
            } else {
                simple_producer(&sh, (addr, key), index, quota).await?;
            }
            Ok(hist())
        })
    }

    fn worker(&self, sh: Arc<Shared>, index: usize) -> Task {
        let (addr, pipelined, key) = (self.addr, self.pipelined, self.key);
        Box::pin(async move {
            if pipelined {
                stream_worker(&sh, (addr, key), index).await
            } else {
                simple_worker(&sh, (addr, key), index).await
            }
        })
    }
}

/// Where a connection goes: the server's address and the key to `AUTH` with, if any.
type Dest = (SocketAddr, Option<&'static str>);

/// Connects and, with a key, authenticates (`AUTH key`, answered before anything else is
/// sent, so the connection's later ids may start at 1 again).
async fn connect((addr, key): Dest) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(ctx("SynapRPC connect"))?;
    tcp.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
    if let Some(key) = key {
        let mut out = Vec::with_capacity(64);
        put_request(&mut out, 1, "AUTH", &[V::Str(key.to_owned())]);
        tcp.write_all(&out).await.map_err(ctx("AUTH"))?;
        let (_, result) = InBuf::new().frame(&mut tcp).await?;
        result.map_err(ctx("AUTH"))?;
    }
    Ok(tcp)
}

/// A connection making one call at a time.
struct Conn {
    tcp: TcpStream,
    inbuf: InBuf,
    out: Vec<u8>,
    next_id: u32,
}

impl Conn {
    async fn open(dest: Dest) -> Result<Self, String> {
        Ok(Self {
            tcp: connect(dest).await?,
            inbuf: InBuf::new(),
            out: Vec::with_capacity(1024),
            next_id: 1,
        })
    }

    async fn call(&mut self, command: &str, args: &[V]) -> Result<V, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.out.clear();
        put_request(&mut self.out, id, command, args);
        self.tcp.write_all(&self.out).await.map_err(ctx("write"))?;
        loop {
            let (got, result) = self.inbuf.frame(&mut self.tcp).await?;
            if got == id {
                return result;
            }
        }
    }
}

async fn simple_producer(sh: &Shared, dest: Dest, index: usize, quota: u64) -> Result<(), String> {
    let mut conn = Conn::open(dest).await?;
    let mut ticks = sh.ticker(index);
    for _ in 0..quota {
        if sh.late() {
            break;
        }
        let Some(t) = ticks.next().await else { break };
        conn.call("QPUBLISH", &publish_args(sh, t))
            .await
            .map_err(ctx("QPUBLISH"))?;
        sh.count_published(1);
    }
    Ok(())
}

/// The arguments of a `QPUBLISH` of the message stamped `t`: `queue payload`, and when the
/// scenario spreads messages over groups, `Null` priority, max_retries and key, then the group.
fn publish_args(sh: &Shared, t: u64) -> Vec<V> {
    let mut args = vec![V::Str(sh.queue.clone()), V::Bytes(sh.body(t))];
    if let Some(group) = sh.group() {
        args.extend([V::Null, V::Null, V::Null, V::Str(group)]);
    }
    args
}

async fn simple_worker(sh: &Shared, dest: Dest, w: usize) -> Result<Hist, String> {
    let mut conn = Conn::open(dest).await?;
    let mut lat = hist();
    let (queue, consumer) = (V::Str(sh.queue.clone()), V::Str(format!("bench-w{w}")));
    while !sh.workers_done() {
        // Long-polls up to a second (a Synap extension), so an empty queue costs no spinning.
        let args = [queue.clone(), consumer.clone(), V::Int(1)];
        let m = conn
            .call("QCONSUME", &args)
            .await
            .map_err(ctx("QCONSUME"))?;
        if m == V::Null {
            continue;
        }
        let id = m.get("id").and_then(V::text).ok_or("QCONSUME: no id")?;
        let t = stamp_of(m.get("payload").and_then(V::bytes).unwrap_or_default())?;
        let args = [queue.clone(), V::Str(id.to_owned())];
        conn.call("QACK", &args).await.map_err(ctx("QACK"))?;
        sh.record(&mut lat, t);
        sh.count_acked(1);
    }
    Ok(lat)
}

/// The read side of a pipelined `QPUBLISH` connection.
struct PublishConfirms {
    rd: OwnedReadHalf,
    inbuf: InBuf,
}

impl Confirms for PublishConfirms {
    async fn next(&mut self) -> Result<(), String> {
        let (_, result) = self.inbuf.frame(&mut self.rd).await?;
        result.map(drop).map_err(ctx("QPUBLISH"))
    }
}

async fn pipelined_producer(
    sh: &Shared,
    dest: Dest,
    index: usize,
    quota: u64,
) -> Result<(), String> {
    let (rd, wr) = connect(dest).await?.into_split();
    let confirms = PublishConfirms {
        rd,
        inbuf: InBuf::new(),
    };
    let encode = |out: &mut Vec<u8>, seq: u64, t: u64| {
        let args = publish_args(sh, t);
        // Ids from 1, never the push id (a producer sends far fewer than 2^32 - 1).
        let id = u32::try_from(seq % u64::from(PUSH_ID)).unwrap_or(1).max(1);
        put_request(out, id, "QPUBLISH", &args);
    };
    pipeline::publish(sh, (index, quota, WINDOW), wr, confirms, encode).await
}

/// A delivery pushed by a `QSTREAM` session: its id and stamp.
fn delivery(v: &V) -> Result<Option<(String, u64)>, String> {
    match v.get("type").and_then(V::text) {
        Some("message") => {
            let id = v.get("id").and_then(V::text).ok_or("push without an id")?;
            let t = stamp_of(v.get("payload").and_then(V::bytes).unwrap_or_default())?;
            Ok(Some((id.to_owned(), t)))
        }
        Some("ended") => Err("the stream was ended by the server".into()),
        _ => Ok(None),
    }
}

async fn stream_worker(sh: &Shared, dest: Dest, w: usize) -> Result<Hist, String> {
    let mut tcp = connect(dest).await?;
    let mut inbuf = InBuf::new();
    let mut out = Vec::with_capacity(8 << 10);
    let queue = V::Str(sh.queue.clone());
    let args = [
        queue.clone(),
        V::Str(format!("bench-w{w}")),
        V::Int(PREFETCH),
    ];
    put_request(&mut out, 1, "QSTREAM", &args);
    flush(&mut tcp, &mut out).await?;
    let mut lat = hist();
    // Acks in flight: request id → the message's stamp.
    let mut acks: HashMap<u32, u64> = HashMap::new();
    let mut next_id = 2u32;
    while !sh.workers_done() {
        let Ok(frame) = tokio::time::timeout(POLL, next_frame(&mut inbuf, &mut tcp)).await else {
            continue;
        };
        match frame? {
            (PUSH_ID, result) => {
                if let Some((id, t)) = delivery(&result.map_err(ctx("push"))?)? {
                    put_request(&mut out, next_id, "QACK", &[queue.clone(), V::Str(id)]);
                    acks.insert(next_id, t);
                    next_id = next_id.wrapping_add(1).max(2);
                }
            }
            (1, result) => drop(result.map_err(ctx("QSTREAM"))?),
            (id, result) => {
                result.map_err(ctx("QACK"))?;
                let t = acks.remove(&id).ok_or("an answer to no request")?;
                sh.record(&mut lat, t);
                sh.count_acked(1);
            }
        }
        // Acks leave once every frame already here has been read.
        if !inbuf.has_frame() {
            flush(&mut tcp, &mut out).await?;
        }
    }
    Ok(lat)
}

async fn next_frame<R: AsyncRead + Unpin>(
    inbuf: &mut InBuf,
    r: &mut R,
) -> Result<crate::wire::Frame, String> {
    inbuf.frame(r).await
}
