//! The fast path of the commands sent most, `QPUBLISH`, `QACK` and `QNACK`: no task per
//! request. The reader parses them into a batch; once no further whole frame is buffered (or
//! the batch is full) the batch goes to the engine as one request (`call_many`, run in one
//! turn), and the connection's replier awaits the batches in order and writes each batch's
//! answers as one buffer. Answers are written straight as MessagePack (encode.rs).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use synap_core::Command;
use tokio::sync::mpsc;

use super::conn::Session;
use super::encode::FrameWriter;
use super::engine_error;
use super::queue::{self, Settling};
use super::value::Value;
use crate::handle::Replies;

/// Most commands in one batch.
pub(super) const MAX_BATCH: usize = 128;
/// Batches sent to the engine and not answered yet, per connection.
pub(super) const PENDING_BATCHES: usize = 64;

/// What an answer needs besides the engine's reply.
enum Kind {
    Publish,
    Settle(Settling),
}

/// Fast commands read and not sent to the engine yet.
#[derive(Default)]
pub(super) struct Batch {
    kinds: Vec<(u32, Kind)>,
    cmds: Vec<Command>,
}

/// A batch the engine has, for the replier.
pub(super) struct Sent {
    kinds: Vec<(u32, Kind)>,
    replies: Replies,
}

impl Batch {
    /// Commands waiting.
    pub(super) fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Takes `command` if it is a fast one: `None` when it is not. A request it cannot parse
    /// is answered at once with its error.
    pub(super) async fn take(
        &mut self,
        s: &Session,
        id: u32,
        command: &str,
        args: &mut [Value],
    ) -> Option<()> {
        let parsed = match command {
            "QPUBLISH" => queue::publish_command(args).map(|cmd| (cmd, Kind::Publish)),
            "QACK" | "QNACK" => queue::settle_command(s, args, command == "QACK")
                .map(|(cmd, settling)| (cmd, Kind::Settle(settling))),
            _ => return None,
        };
        match parsed {
            Ok((cmd, kind)) => {
                s.fast_in_flight.fetch_add(1, Ordering::Relaxed);
                self.kinds.push((id, kind));
                self.cmds.push(cmd);
            }
            Err(msg) => {
                let _ = s.out.send(FrameWriter::err(id, &msg)).await;
            }
        }
        Some(())
    }

    /// Sends what is waiting to the engine and hands it to the replier.
    pub(super) async fn flush(&mut self, s: &Session, replier: &mpsc::Sender<Sent>) {
        if self.cmds.is_empty() {
            return;
        }
        let cmds = std::mem::take(&mut self.cmds);
        let kinds = std::mem::take(&mut self.kinds);
        match s.ctx.engine.call_many(cmds).await {
            Ok(replies) => {
                let _ = replier.send(Sent { kinds, replies }).await;
            }
            Err(f) => {
                let mut out = Vec::new();
                for (id, _) in &kinds {
                    out.extend(FrameWriter::err(*id, &engine_error(f.clone())));
                }
                s.fast_in_flight.fetch_sub(kinds.len(), Ordering::Relaxed);
                let _ = s.out.send(out).await;
            }
        }
    }
}

/// Awaits the batches in the order sent and writes their answers, until the reader is done.
pub(super) async fn replier(s: Arc<Session>, mut sent: mpsc::Receiver<Sent>) {
    while let Some(Sent { kinds, replies }) = sent.recv().await {
        let n = kinds.len();
        let mut out = Vec::with_capacity(n * 56);
        match replies.wait().await {
            Ok(results) => {
                for ((id, kind), result) in kinds.into_iter().zip(results) {
                    out.extend(answer(&s, id, kind, result));
                }
            }
            Err(f) => {
                for (id, _) in kinds {
                    out.extend(FrameWriter::err(id, &engine_error(f.clone())));
                }
            }
        }
        s.fast_in_flight.fetch_sub(n, Ordering::Relaxed);
        if s.out.send(out).await.is_err() {
            return;
        }
    }
}

fn answer(
    s: &Session,
    id: u32,
    kind: Kind,
    result: Result<synap_core::Reply, crate::handle::Failure>,
) -> Vec<u8> {
    match kind {
        Kind::Publish => queue::publish_answer(id, result),
        Kind::Settle(settling) => queue::settle_answer(s, id, settling, result),
    }
}
