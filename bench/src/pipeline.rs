//! A pipelined producer over one TCP connection, for protocols whose publishes are confirmed
//! one reply each (SynapRPC `QPUBLISH`, beanstalkd `put`): up to `window` publishes in flight,
//! requests buffered and written when the window is full or the next slot is not due yet, and
//! confirms read on their own future, each one returning its slot.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

use crate::harness::{Shared, ctx};

/// How long a confirm may take before the reader checks the time limit.
const POLL: Duration = Duration::from_millis(250);
/// Write the request buffer at this size even when more could be added.
const FLUSH_AT: usize = 32 << 10;

/// The read side of a pipelined connection.
pub(crate) trait Confirms: Send {
    /// Reads the next confirm: an error for a refused publish or a broken connection.
    /// Cancel-safe (a timed-out read loses nothing).
    fn next(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Publishes `quota` messages of producer `index`: `encode(out, seq, stamp)` appends the
/// request of message `seq` (from 1) stamped `stamp`.
pub(crate) async fn publish<C: Confirms>(
    sh: &Shared,
    (index, quota, window): (usize, u64, usize),
    mut wr: OwnedWriteHalf,
    mut confirms: C,
    mut encode: impl FnMut(&mut Vec<u8>, u64, u64) + Send,
) -> Result<(), String> {
    let slots = Arc::new(Semaphore::new(window));
    let returned = Arc::clone(&slots);
    let reading = async move {
        let mut confirmed = 0;
        while confirmed < quota {
            let Ok(next) = tokio::time::timeout(POLL, confirms.next()).await else {
                if sh.late() {
                    break;
                }
                continue;
            };
            next?;
            confirmed += 1;
            sh.count_published(1);
            returned.add_permits(1);
        }
        Ok::<(), String>(())
    };
    let sending = async move {
        let mut ticks = sh.ticker(index);
        let mut out = Vec::with_capacity(FLUSH_AT + 1024);
        for seq in 1..=quota {
            if sh.late() {
                break;
            }
            if let Ok(p) = slots.try_acquire() {
                p.forget();
            } else {
                flush(&mut wr, &mut out).await?;
                slots.acquire().await.map_err(ctx("window"))?.forget();
            }
            let t = match ticks.ready() {
                Some(t) => t,
                None => {
                    flush(&mut wr, &mut out).await?;
                    let Some(t) = ticks.next().await else { break };
                    t
                }
            };
            encode(&mut out, seq, t);
            if out.len() >= FLUSH_AT {
                flush(&mut wr, &mut out).await?;
            }
        }
        flush(&mut wr, &mut out).await.map(|()| wr)
    };
    // The write half stays open until every confirm is in: a server may take a closed write
    // side as the end of the connection and drop answers still on their way.
    let (sent, confirmed) = tokio::join!(sending, reading);
    let wr = sent?;
    confirmed?;
    drop(wr);
    Ok(())
}

/// Writes out and empties `out`.
pub(crate) async fn flush<W: AsyncWriteExt + Unpin>(
    wr: &mut W,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if !out.is_empty() {
        wr.write_all(out).await.map_err(ctx("write"))?;
        out.clear();
    }
    Ok(())
}
