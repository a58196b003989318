//! The fast path of the commands sent most, `QPUBLISH`, `QACK` and `QNACK`: no task per
//! request. The reader parses them into a batch; once no further whole frame is buffered (or
//! the batch is full) the batch goes to the engine as one request (`call_many`, run in one
//! turn), and the connection's writer (writer.rs) awaits the batches in order and writes each
//! batch's answers at once. Answers are written straight as MessagePack (encode.rs).

use std::sync::atomic::Ordering;

use synap_core::Command;
use tokio::sync::mpsc;

use super::conn::Session;
use super::encode::FrameWriter;
use super::engine_error;
use super::queue::{self, Settling};
use super::value::Value;
use super::writer::Pending;
use crate::handle::{Failure, Replies};

/// Most commands in one batch.
pub(super) const MAX_BATCH: usize = 128;

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

/// A batch the engine has, for the writer.
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
        // Refused here, before the engine sees it: the permission check of every command.
        let parsed = parsed.and_then(|(cmd, kind)| s.check(&cmd).map(|()| (cmd, kind)));
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

    /// Sends what is waiting to the engine and hands it to the writer.
    pub(super) async fn flush(&mut self, s: &Session, writer: &mpsc::Sender<Pending>) {
        if self.cmds.is_empty() {
            return;
        }
        let cmds = std::mem::take(&mut self.cmds);
        let kinds = std::mem::take(&mut self.kinds);
        match s.ctx.engine.call_many(cmds).await {
            Ok(replies) => {
                let _ = writer.send(Pending::Batch(Sent { kinds, replies })).await;
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

/// The engine's replies to a batch, one per command.
pub(super) type Results = Result<Vec<Result<synap_core::Reply, Failure>>, Failure>;

impl Sent {
    /// Waits for the engine's replies; dropped before they came, nothing is lost.
    pub(super) async fn ready(&mut self) -> Results {
        self.replies.recv().await
    }

    /// Appends the answers to `out`; returns how many requests it answered.
    pub(super) fn write(self, s: &Session, results: Results, out: &mut Vec<u8>) -> usize {
        let n = self.kinds.len();
        match results {
            Ok(results) => {
                for ((id, kind), result) in self.kinds.into_iter().zip(results) {
                    out.extend(answer(s, id, kind, result));
                }
            }
            Err(f) => {
                for (id, _) in self.kinds {
                    out.extend(FrameWriter::err(id, &engine_error(f.clone())));
                }
            }
        }
        n
    }
}

fn answer(s: &Session, id: u32, kind: Kind, result: Result<synap_core::Reply, Failure>) -> Vec<u8> {
    match kind {
        Kind::Publish => queue::publish_answer(id, result),
        Kind::Settle(settling) => queue::settle_answer(s, id, settling, result),
    }
}
