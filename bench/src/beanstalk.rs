//! The beanstalkd peer, over its text protocol (beanstalkd's protocol.txt) with a client
//! written here: `use`/`put` for producers, `watch`/`reserve-with-timeout`/`delete` for
//! workers. One call at a time, or pipelined where the protocol allows: up to 100 `put`s in
//! flight (replies come in order), and each `delete` sent together with the next `reserve`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::harness::{Hist, Shared, Target, Task, ctx, hist, stamp_of};
use crate::pipeline::{self, Confirms};
use crate::wire::InBuf;

/// `put`s in flight per pipelined producer.
const WINDOW: usize = 100;
/// Time-to-run of a job: as long as Synap's ack deadline in the benchmark.
const TTR_SECS: u32 = 300;

pub(crate) struct Beanstalk {
    pub(crate) addr: SocketAddr,
    pub(crate) pipelined: bool,
}

impl Target for Beanstalk {
    fn producer(&self, sh: Arc<Shared>, index: usize, quota: u64) -> Task {
        let (addr, pipelined) = (self.addr, self.pipelined);
        Box::pin(async move {
            producer(&sh, addr, index, quota, pipelined).await?;
            Ok(hist())
        })
    }

    fn worker(&self, sh: Arc<Shared>, _index: usize) -> Task {
        let (addr, pipelined) = (self.addr, self.pipelined);
        Box::pin(async move { worker(&sh, addr, pipelined).await })
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(ctx("beanstalkd connect"))?;
    tcp.set_nodelay(true).map_err(ctx("TCP_NODELAY"))?;
    Ok(tcp)
}

/// Sends `command` and checks that the reply line starts with `want`.
async fn command(
    tcp: &mut TcpStream,
    inbuf: &mut InBuf,
    command: &str,
    want: &str,
) -> Result<String, String> {
    tcp.write_all(command.as_bytes())
        .await
        .map_err(ctx("write"))?;
    let line = inbuf.line(tcp).await?;
    expect(&line, want)?;
    Ok(line)
}

fn expect(line: &str, want: &str) -> Result<(), String> {
    if line.starts_with(want) {
        Ok(())
    } else {
        Err(format!("beanstalkd answered {line:?}, expected {want}"))
    }
}

/// Appends `put` of `body` to `out`.
fn put(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(format!("put 0 0 {TTR_SECS} {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

async fn producer(
    sh: &Shared,
    addr: SocketAddr,
    index: usize,
    quota: u64,
    pipelined: bool,
) -> Result<(), String> {
    let mut tcp = connect(addr).await?;
    let mut inbuf = InBuf::new();
    command(
        &mut tcp,
        &mut inbuf,
        &format!("use {}\r\n", sh.queue),
        "USING",
    )
    .await?;
    if !pipelined {
        let mut ticks = sh.ticker(index);
        let mut out = Vec::with_capacity(256);
        for _ in 0..quota {
            if sh.late() {
                break;
            }
            let Some(t) = ticks.next().await else { break };
            out.clear();
            put(&mut out, &sh.body(t));
            tcp.write_all(&out).await.map_err(ctx("write"))?;
            expect(&inbuf.line(&mut tcp).await?, "INSERTED")?;
            sh.count_published(1);
        }
        return Ok(());
    }
    let (rd, wr) = tcp.into_split();
    let confirms = PutConfirms { rd, inbuf };
    let encode = |out: &mut Vec<u8>, _seq: u64, t: u64| put(out, &sh.body(t));
    pipeline::publish(sh, (index, quota, WINDOW), wr, confirms, encode).await
}

/// The read side of a pipelined `put` connection (replies come in order).
struct PutConfirms {
    rd: OwnedReadHalf,
    inbuf: InBuf,
}

impl Confirms for PutConfirms {
    async fn next(&mut self) -> Result<(), String> {
        expect(&self.inbuf.line(&mut self.rd).await?, "INSERTED")
    }
}

/// A `RESERVED <id> <bytes>` line's id and size; `None` for `TIMED_OUT`/`DEADLINE_SOON`.
fn reserved(line: &str) -> Result<Option<(u64, usize)>, String> {
    if line == "TIMED_OUT" || line == "DEADLINE_SOON" {
        return Ok(None);
    }
    let mut words = line.split(' ');
    let parsed = match (words.next(), words.next(), words.next()) {
        (Some("RESERVED"), Some(id), Some(n)) => id.parse().ok().zip(n.parse().ok()),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("beanstalkd answered {line:?} to reserve"))
}

async fn worker(sh: &Shared, addr: SocketAddr, pipelined: bool) -> Result<Hist, String> {
    let mut tcp = connect(addr).await?;
    let mut inbuf = InBuf::new();
    let watch = format!("watch {}\r\n", sh.queue);
    command(&mut tcp, &mut inbuf, &watch, "WATCHING").await?;
    command(&mut tcp, &mut inbuf, "ignore default\r\n", "WATCHING").await?;
    let mut lat = hist();
    const RESERVE: &[u8] = b"reserve-with-timeout 1\r\n";
    tcp.write_all(RESERVE).await.map_err(ctx("write"))?;
    // With `pipelined`, the next reserve is already out when a delete is answered.
    let mut out = Vec::with_capacity(128);
    while !sh.workers_done() {
        let line = inbuf.line(&mut tcp).await?;
        let Some((id, n)) = reserved(&line)? else {
            tcp.write_all(RESERVE).await.map_err(ctx("write"))?;
            continue;
        };
        let t = stamp_of(&inbuf.body(&mut tcp, n).await?)?;
        out.clear();
        out.extend_from_slice(format!("delete {id}\r\n").as_bytes());
        if pipelined {
            out.extend_from_slice(RESERVE);
        }
        tcp.write_all(&out).await.map_err(ctx("write"))?;
        expect(&inbuf.line(&mut tcp).await?, "DELETED")?;
        sh.record(&mut lat, t);
        sh.count_acked(1);
        if !pipelined && !sh.workers_done() {
            tcp.write_all(RESERVE).await.map_err(ctx("write"))?;
        }
    }
    Ok(lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_replies_parse() {
        assert_eq!(reserved("RESERVED 12 140"), Ok(Some((12, 140))));
        assert_eq!(reserved("TIMED_OUT"), Ok(None));
        assert!(reserved("RESERVED x 1").is_err());
        assert!(reserved("NOT_FOUND").is_err());
    }

    #[test]
    fn a_put_frames_its_body() {
        let mut out = Vec::new();
        put(&mut out, b"{\"t\":1}");
        assert_eq!(out, b"put 0 0 300 7\r\n{\"t\":1}\r\n");
    }
}
