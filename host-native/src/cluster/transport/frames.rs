//! Frames between two nodes, and snapshots cut into chunks and put back together.
//!
//! A frame is `[len u32 LE][kind u8][body]` (`len` counts the kind byte and the body):
//!
//! - `MESSAGE`: a Raft message (raft-rs's protobuf), any type but `MsgSnapshot`; at most
//!   `cluster.max_frame_bytes`.
//! - `SNAPSHOT_START`: `[transfer id u64][data length u64][crc32c of the data u32]` and the
//!   `MsgSnapshot` with its snapshot data left out (at most `max_frame_bytes` too).
//! - `SNAPSHOT_CHUNK`: `[transfer id u64]` and the next bytes of the data, at most
//!   [`MAX_CHUNK_BYTES`] (the sender cuts `cluster.snapshot_chunk_bytes`).
//!
//! The sender writes a snapshot's chunks one after the other and lets ordinary messages
//! (heartbeats, appends) through between two chunks, so a long transfer does not silence the
//! leader. The receiver collects the chunks of one transfer per connection; when the data is
//! complete and its checksum matches, it puts the data back into the message and hands the
//! whole `MsgSnapshot` to the node. Limits: the data at most `cluster.max_snapshot_bytes`, and
//! at most [`MAX_INCOMING_SNAPSHOTS`] transfers being collected on a node at once. A transfer
//! over a limit is read and thrown away (the connection stays up); raft-rs sends the snapshot
//! again later. A new transfer starting before the last one finished replaces it. A chunk
//! of no transfer, of another transfer, past the announced length, a checksum that does not
//! match, or an unknown kind is a broken stream: the connection is closed, and the transfer
//! with it (the sender reports the snapshot failed, and raft-rs resends it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use synap_cluster::{Message, MessageType, decode_message, encode_message};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

pub(crate) use crate::cluster::config::MAX_CHUNK_BYTES;

/// A Raft message other than a snapshot.
pub(super) const KIND_MESSAGE: u8 = 1;
/// The start of a snapshot transfer.
pub(super) const KIND_SNAPSHOT_START: u8 = 2;
/// The next bytes of a snapshot's data.
pub(super) const KIND_SNAPSHOT_CHUNK: u8 = 3;
/// Snapshots a node collects at once (from all its peers).
pub(super) const MAX_INCOMING_SNAPSHOTS: usize = 2;
/// The fields before the message in a start frame: id, length, checksum.
const START_HEAD: usize = 8 + 8 + 4;
/// The field before the data in a chunk frame: the transfer id.
const CHUNK_HEAD: usize = 8;

/// The limits a connection checks (from the `cluster:` config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest message frame (`cluster.max_frame_bytes`).
    pub(crate) max_frame: usize,
    /// Largest snapshot data (`cluster.max_snapshot_bytes`).
    pub(crate) max_snapshot: u64,
    /// Size of the chunks this node sends (`cluster.snapshot_chunk_bytes`).
    pub(crate) chunk: usize,
}

fn push_frame(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let len = u32::try_from(len).expect("frames are checked under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Appends the frame of an ordinary message to `out`.
pub(super) fn push_message(out: &mut Vec<u8>, msg: &Message) {
    push_frame(out, KIND_MESSAGE, &[&encode_message(msg)]);
}

/// A snapshot being sent: its data, and how much of it went out.
pub(super) struct OutgoingSnapshot {
    id: u64,
    /// The peer it goes to.
    pub(super) to: u64,
    data: Bytes,
    sent: usize,
    chunk: usize,
    /// Whether a chunk went out (an empty data still sends one).
    chunked: bool,
}

impl OutgoingSnapshot {
    /// Appends the start frame of `msg` (a `MsgSnapshot`) as transfer `id` to `out`; the
    /// chunks follow through `push_chunk`.
    pub(super) fn start(id: u64, mut msg: Message, chunk: usize, out: &mut Vec<u8>) -> Self {
        debug_assert_eq!(msg.get_msg_type(), MessageType::MsgSnapshot);
        let data = msg.mut_snapshot().take_data();
        let head = encode_message(&msg);
        let total = data.len() as u64;
        let crc = crc32c::crc32c(&data);
        let fields = [
            &id.to_le_bytes()[..],
            &total.to_le_bytes(),
            &crc.to_le_bytes(),
        ];
        push_frame(out, KIND_SNAPSHOT_START, &[&fields.concat(), &head]);
        Self {
            id,
            to: msg.to,
            data,
            sent: 0,
            chunk: chunk.clamp(1, MAX_CHUNK_BYTES),
            chunked: false,
        }
    }

    /// Appends the next chunk's frame to `out`; true once the whole data went out.
    pub(super) fn push_chunk(&mut self, out: &mut Vec<u8>) -> bool {
        let end = (self.sent + self.chunk).min(self.data.len());
        let part = &self.data[self.sent..end];
        push_frame(out, KIND_SNAPSHOT_CHUNK, &[&self.id.to_le_bytes(), part]);
        self.sent = end;
        self.chunked = true;
        self.done()
    }

    /// Whether every byte went out, in one chunk at least.
    pub(super) fn done(&self) -> bool {
        self.chunked && self.sent == self.data.len()
    }

    /// The size of the snapshot's data.
    pub(super) fn len(&self) -> usize {
        self.data.len()
    }
}

/// The largest frame (kind byte included) of `kind` a connection accepts.
fn frame_limit(kind: u8, limits: &Limits) -> Option<usize> {
    match kind {
        KIND_MESSAGE => Some(1 + limits.max_frame),
        KIND_SNAPSHOT_START => Some(1 + START_HEAD + limits.max_frame),
        KIND_SNAPSHOT_CHUNK => Some(1 + CHUNK_HEAD + MAX_CHUNK_BYTES),
        _ => None,
    }
}

/// Reads one frame: its kind and body. Errors on a frame over its kind's limit (before its
/// body is read) or of an unknown kind.
pub(super) async fn read_frame(
    rd: &mut (impl AsyncReadExt + Unpin),
    limits: &Limits,
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    let mut kind = [0u8; 1];
    if len == 0 {
        return Err(std::io::Error::other("an empty frame"));
    }
    rd.read_exact(&mut kind).await?;
    let kind = kind[0];
    let Some(max) = frame_limit(kind, limits) else {
        return Err(std::io::Error::other(format!(
            "a frame of unknown kind {kind}"
        )));
    };
    if len > max {
        return Err(std::io::Error::other(format!(
            "a frame of {len} bytes (kind {kind}) over the limit of {max}"
        )));
    }
    let mut body = vec![0u8; len - 1];
    rd.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// A place among the snapshots a node collects at once; given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(slots: &Arc<AtomicUsize>) -> Option<Self> {
        slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_INCOMING_SNAPSHOTS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(slots)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A transfer being received.
enum Incoming {
    /// Collected: the message, and the data so far.
    Filling {
        id: u64,
        total: u64,
        crc: u32,
        msg: Box<Message>,
        data: Vec<u8>,
        chunks: u64,
        _slot: Slot,
    },
    /// Over a limit: its chunks are read and thrown away.
    Skipping { id: u64, total: u64, got: u64 },
}

/// Puts the snapshots of one connection back together.
pub(super) struct Assembler {
    limits: Limits,
    slots: Arc<AtomicUsize>,
    current: Option<Incoming>,
}

impl Assembler {
    /// An assembler under `limits`, sharing the node's `slots` with its other connections.
    pub(super) fn new(limits: Limits, slots: Arc<AtomicUsize>) -> Self {
        Self {
            limits,
            slots,
            current: None,
        }
    }

    /// One frame: a message when one is complete. `Err` is a broken stream (close it).
    pub(super) fn on_frame(&mut self, kind: u8, body: Vec<u8>) -> Result<Option<Message>, String> {
        match kind {
            KIND_MESSAGE => {
                let msg = decode_message(&body)?;
                if msg.get_msg_type() == MessageType::MsgSnapshot {
                    return Err("a snapshot outside a transfer".into());
                }
                Ok(Some(msg))
            }
            KIND_SNAPSHOT_START => self.start(&body).map(|()| None),
            KIND_SNAPSHOT_CHUNK => self.chunk(&body),
            k => Err(format!("a frame of unknown kind {k}")),
        }
    }

    fn start(&mut self, body: &[u8]) -> Result<(), String> {
        if body.len() < START_HEAD {
            return Err("a snapshot start cut short".into());
        }
        let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let total = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes"));
        let msg = decode_message(&body[START_HEAD..])?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(format!(
                "a snapshot start holding a {:?}",
                msg.get_msg_type()
            ));
        }
        if let Some(old) = self.current.take() {
            let old_id = match old {
                Incoming::Filling { id, .. } | Incoming::Skipping { id, .. } => id,
            };
            warn!(
                from = msg.from,
                transfer = old_id,
                "a snapshot transfer was replaced by a newer one before it completed"
            );
        }
        let slot = Slot::take(&self.slots);
        self.current = Some(match slot {
            Some(slot) if total <= self.limits.max_snapshot => Incoming::Filling {
                id,
                total,
                crc,
                msg: Box::new(msg),
                // Grown as chunks arrive: the announced length is not trusted with memory.
                data: Vec::with_capacity(MAX_CHUNK_BYTES.min(total as usize)),
                chunks: 0,
                _slot: slot,
            },
            slot => {
                if slot.is_none() {
                    warn!(
                        from = msg.from,
                        "{MAX_INCOMING_SNAPSHOTS} snapshots are being received already; this one is dropped (raft sends it again)"
                    );
                } else {
                    warn!(
                        from = msg.from,
                        bytes = total,
                        limit = self.limits.max_snapshot,
                        "a snapshot over cluster.max_snapshot_bytes is dropped; raise the limit on this node"
                    );
                }
                Incoming::Skipping { id, total, got: 0 }
            }
        });
        // Complete only on a chunk: even an empty data is followed by one (empty) chunk.
        Ok(())
    }

    fn chunk(&mut self, body: &[u8]) -> Result<Option<Message>, String> {
        if body.len() < CHUNK_HEAD {
            return Err("a snapshot chunk cut short".into());
        }
        let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let part = &body[CHUNK_HEAD..];
        let fits = |have: u64, total: u64| have + part.len() as u64 <= total;
        match &mut self.current {
            None => return Err(format!("a chunk of transfer {id}, which is not open")),
            Some(Incoming::Filling {
                id: open,
                total,
                data,
                chunks,
                ..
            }) => {
                if *open != id || !fits(data.len() as u64, *total) {
                    return Err(format!(
                        "a chunk of transfer {id} does not fit transfer {open}"
                    ));
                }
                data.extend_from_slice(part);
                *chunks += 1;
            }
            Some(Incoming::Skipping {
                id: open,
                total,
                got,
            }) => {
                if *open != id || !fits(*got, *total) {
                    return Err(format!(
                        "a chunk of transfer {id} does not fit transfer {open}"
                    ));
                }
                *got += part.len() as u64;
            }
        }
        self.finish()
    }

    /// Hands out the transfer once its data is complete (nothing for a skipped one).
    fn finish(&mut self) -> Result<Option<Message>, String> {
        let complete = match &self.current {
            Some(Incoming::Filling { total, data, .. }) => data.len() as u64 == *total,
            Some(Incoming::Skipping { total, got, .. }) => got == total,
            None => false,
        };
        if !complete {
            return Ok(None);
        }
        match self.current.take() {
            Some(Incoming::Filling {
                crc,
                msg,
                data,
                chunks,
                ..
            }) => {
                if crc32c::crc32c(&data) != crc {
                    return Err("a snapshot whose checksum does not match".into());
                }
                let meta = msg.get_snapshot().get_metadata();
                info!(
                    from = msg.from,
                    index = meta.index,
                    bytes = data.len(),
                    chunks,
                    "snapshot received"
                );
                let mut msg = *msg;
                msg.mut_snapshot().set_data(Bytes::from(data));
                Ok(Some(msg))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
