//! A connection's writer: one task that awaits what the reader handed it (fast-path batches
//! and `QCONSUME`s, answered as soon as the engine has), takes the frames other tasks send
//! (replies, pushes), and writes them to the socket, as one write for all that is ready.
//! The answers go from the engine to the socket without passing through another task.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use super::conn::Session;
use super::fast::Sent;
use super::queue::ConsumeWait;

/// Bytes waiting for the socket past which the writer takes nothing more and writes: a busy
/// stream of pushes still goes out in pieces of about this size, and a peer that stops
/// reading holds back the reader (through the bounded queues) instead of memory.
const MAX_UNWRITTEN: usize = 64 << 10;

/// What the reader hands the writer to answer once the engine has.
pub(super) enum Pending {
    /// A batch of fast commands (fast.rs); batches are answered in the order sent.
    Batch(Sent),
    /// A `QCONSUME`, answered when the engine has a message or its wait ends.
    Consume(ConsumeWait),
}

type Answering = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

/// The writer's state; `run` drives it.
pub(super) struct Writer {
    /// `None` once the reader is gone and every request it handed over is answered.
    session: Option<Arc<Session>>,
    /// Until the reader is gone.
    reading: bool,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    /// How much of `buf` is written.
    written: usize,
    pending: mpsc::Receiver<Pending>,
    batches: VecDeque<Sent>,
    consumes: FuturesUnordered<Answering>,
    /// Told once nothing the reader handed over is left unanswered.
    settled: Option<oneshot::Sender<()>>,
}

impl Writer {
    pub(super) fn new(
        session: Arc<Session>,
        wr: OwnedWriteHalf,
        pending: mpsc::Receiver<Pending>,
        settled: oneshot::Sender<()>,
    ) -> Self {
        Self {
            session: Some(session),
            reading: true,
            wr,
            buf: Vec::with_capacity(16 << 10),
            written: 0,
            pending,
            batches: VecDeque::new(),
            consumes: FuturesUnordered::new(),
            settled: Some(settled),
        }
    }

    /// Runs until every sender of `out` is gone (the connection closed) and all is written,
    /// or the socket fails.
    pub(super) async fn run(mut self, mut out: mpsc::Receiver<Vec<u8>>) {
        let mut out_open = true;
        loop {
            let room = self.buf.len() - self.written < MAX_UNWRITTEN;
            let unwritten = self.written < self.buf.len();
            if !out_open && self.session.is_none() && !unwritten {
                break;
            }
            tokio::select! {
                // Answers first, then new work, and the socket once nothing else is ready:
                // all that is ready goes in one write.
                biased;
                results = front(&mut self.batches), if room => {
                    let sent = self.batches.pop_front().expect("a batch was awaited");
                    let s = self.session.as_ref().expect("held while batches wait");
                    let n = sent.write(s, results, &mut self.buf);
                    s.fast_in_flight.fetch_sub(n, Ordering::Relaxed);
                }
                Some(frame) = self.consumes.next(), if room && !self.consumes.is_empty() => {
                    self.buf.extend_from_slice(&frame);
                    let s = self.session.as_ref().expect("held while consumes wait");
                    s.fast_in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                next = self.pending.recv(), if room && self.reading => self.take(next),
                frame = out.recv(), if room && out_open => match frame {
                    Some(frame) => self.buf.extend_from_slice(&frame),
                    None => out_open = false,
                },
                n = self.wr.write(&self.buf[self.written..]), if unwritten => match n {
                    Ok(n) if n > 0 => {
                        self.written += n;
                        if self.written == self.buf.len() {
                            self.buf.clear();
                            self.written = 0;
                        }
                    }
                    _ => return,
                },
                // Not reached: with room the front-batch branch is enabled, without room the
                // write is. Were it reached, the writer ends rather than spin.
                else => return,
            }
            self.settle();
        }
        let _ = self.wr.shutdown().await;
    }

    /// Takes a request from the reader; `None` means the reader is gone.
    fn take(&mut self, next: Option<Pending>) {
        let s = self.session.as_ref().expect("held while reading");
        match next {
            Some(Pending::Batch(sent)) => self.batches.push_back(sent),
            Some(Pending::Consume(wait)) => {
                self.consumes.push(Box::pin(wait.answer(Arc::clone(s))));
            }
            None => {
                self.reading = false;
                if !*s.eof.borrow() {
                    // Not an EOF: no answer is due; dropping the waiters withdraws them and
                    // gives back what they were leased.
                    self.consumes.clear();
                }
            }
        }
    }

    /// Once the reader is gone and every request it handed over is answered, says so and
    /// lets the session go (so `out` closes once the connection's other tasks end).
    fn settle(&mut self) {
        if self.reading || !self.batches.is_empty() || !self.consumes.is_empty() {
            return;
        }
        self.session = None;
        if let Some(settled) = self.settled.take() {
            let _ = settled.send(());
        }
    }
}

/// The front batch's replies (pending forever when there is none).
async fn front(batches: &mut VecDeque<Sent>) -> super::fast::Results {
    match batches.front_mut() {
        Some(sent) => sent.ready().await,
        None => std::future::pending().await,
    }
}
