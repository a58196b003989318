//! Goal: a snapshot cut into chunks comes back whole, with ordinary messages passing between
//! its chunks; every limit holds (frame sizes, snapshot size, transfers at once); a broken or
//! interleaved transfer is dropped, never handed to the node half done.

use super::*;

const LIMITS: Limits = Limits {
    max_frame: 4096,
    max_snapshot: 64 << 10,
    chunk: 1000,
};

fn snapshot_msg(from: u64, len: usize) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    m.from = from;
    m.to = 2;
    m.term = 7;
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let snap = m.mut_snapshot();
    snap.mut_metadata().index = 40;
    snap.mut_metadata().term = 6;
    snap.set_data(data.into());
    m
}

fn heartbeat(n: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = 1;
    m.to = 2;
    m.commit = n;
    m
}

/// Every frame in `bytes`, read as a connection reads them.
async fn frames(mut bytes: &[u8], limits: &Limits) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(read_frame(&mut bytes, limits).await.expect("a frame"));
    }
    out
}

/// Feeds `frames` to `asm`; the snapshot that came out whole, if one did.
fn feed(asm: &mut Assembler, frames: &[(u8, Vec<u8>)]) -> Option<Message> {
    let mut out = None;
    for (kind, body) in frames {
        let m = asm.on_frame(*kind, body.clone()).unwrap();
        out = out.or(m.filter(|m| m.get_msg_type() == MessageType::MsgSnapshot));
    }
    out
}

fn slots() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// The frames of `msg` sent as transfer `id`, a heartbeat after each chunk.
fn send(id: u64, msg: &Message, chunk: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut s = OutgoingSnapshot::start(id, msg.clone(), chunk, &mut out);
    let mut chunks = 0;
    while !s.done() {
        s.push_chunk(&mut out);
        chunks += 1;
        push_message(&mut out, &heartbeat(chunks));
    }
    (out, chunks as usize)
}

#[tokio::test]
async fn a_snapshot_in_chunks_comes_back_whole_between_other_messages() {
    let msg = snapshot_msg(1, 10_500);
    let (bytes, chunks) = send(5, &msg, 1000);
    assert_eq!(chunks, 11, "10,500 bytes in chunks of 1,000");
    let mut asm = Assembler::new(LIMITS, slots());
    let mut got = Vec::new();
    for (kind, body) in frames(&bytes, &LIMITS).await {
        assert!(body.len() <= CHUNK_HEAD + 1000 || kind != KIND_SNAPSHOT_CHUNK);
        if let Some(m) = asm.on_frame(kind, body).unwrap() {
            got.push(m);
        }
    }
    // Every heartbeat passed; the snapshot came whole after its last chunk.
    let kinds: Vec<MessageType> = got.iter().map(Message::get_msg_type).collect();
    assert_eq!(kinds.len(), 12);
    assert_eq!(kinds[10], MessageType::MsgSnapshot, "{kinds:?}");
    assert_eq!(got[9].commit, 10);
    assert_eq!(encode_message(&got[10]), encode_message(&msg));
    // An empty data still travels (one empty chunk).
    let empty = snapshot_msg(1, 0);
    let (bytes, chunks) = send(6, &empty, 1000);
    assert_eq!(chunks, 1);
    let out = feed(&mut asm, &frames(&bytes, &LIMITS).await).expect("the empty snapshot");
    assert_eq!(encode_message(&out), encode_message(&empty));
}

#[tokio::test]
async fn frames_over_their_limits_are_refused_before_their_body() {
    // A header announcing a huge message, with no body behind it: refused on the header.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    bytes.push(KIND_MESSAGE);
    let e = read_frame(&mut &bytes[..], &LIMITS).await.unwrap_err();
    assert!(e.to_string().contains("over the limit"), "{e}");
    // A chunk may be up to 1 MiB whatever max_frame says, not more.
    let mut big = Vec::new();
    push_frame(
        &mut big,
        KIND_SNAPSHOT_CHUNK,
        &[&[0; 8], &vec![0; MAX_CHUNK_BYTES]],
    );
    assert!(read_frame(&mut &big[..], &LIMITS).await.is_ok());
    let mut bigger = Vec::new();
    push_frame(
        &mut bigger,
        KIND_SNAPSHOT_CHUNK,
        &[&[0; 8], &vec![0; MAX_CHUNK_BYTES + 1]],
    );
    assert!(read_frame(&mut &bigger[..], &LIMITS).await.is_err());
    let e = read_frame(&mut &[1, 0, 0, 0, 9][..], &LIMITS)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown kind"), "{e}");
    assert!(read_frame(&mut &[0, 0, 0, 0][..], &LIMITS).await.is_err());
}

#[tokio::test]
async fn a_snapshot_over_the_size_limit_is_read_and_dropped() {
    let mut asm = Assembler::new(LIMITS, slots());
    let (mut bytes, _) = send(1, &snapshot_msg(1, 70 << 10), 1000);
    push_message(&mut bytes, &heartbeat(99));
    let mut got = Vec::new();
    for (kind, body) in frames(&bytes, &LIMITS).await {
        got.extend(asm.on_frame(kind, body).unwrap());
    }
    assert!(
        got.iter()
            .all(|m| m.get_msg_type() == MessageType::MsgHeartbeat)
    );
    assert_eq!(got.last().unwrap().commit, 99, "the connection goes on");
}

#[tokio::test]
async fn at_most_two_snapshots_are_collected_at_once() {
    let shared = slots();
    let mut a = Assembler::new(LIMITS, Arc::clone(&shared));
    let mut b = Assembler::new(LIMITS, Arc::clone(&shared));
    let mut c = Assembler::new(LIMITS, Arc::clone(&shared));
    let msg = snapshot_msg(1, 3000);
    let (bytes, _) = send(1, &msg, 1000);
    let fs = frames(&bytes, &LIMITS).await;
    // a and b start (two slots); c's transfer finds none and is dropped.
    for asm in [&mut a, &mut b, &mut c] {
        assert!(asm.on_frame(fs[0].0, fs[0].1.clone()).unwrap().is_none());
    }
    assert_eq!(shared.load(Ordering::Acquire), 2);
    let done = |asm: &mut Assembler| feed(asm, &fs[1..]);
    assert!(done(&mut c).is_none(), "no slot: read and dropped");
    assert!(done(&mut a).is_some());
    assert_eq!(
        shared.load(Ordering::Acquire),
        1,
        "a finished: its slot is back"
    );
    // Now c gets a slot.
    assert!(c.on_frame(fs[0].0, fs[0].1.clone()).unwrap().is_none());
    assert!(done(&mut c).is_some());
    drop(b);
    assert_eq!(
        shared.load(Ordering::Acquire),
        0,
        "a dropped connection frees its slot"
    );
}

#[tokio::test]
async fn broken_and_interleaved_transfers_are_dropped() {
    let msg = snapshot_msg(1, 2500);
    let (bytes, _) = send(1, &msg, 1000);
    let fs = frames(&bytes, &LIMITS).await;
    let (start, chunk1) = (fs[0].clone(), fs[1].clone());
    let fresh = || Assembler::new(LIMITS, slots());
    // A chunk with no transfer open.
    assert!(fresh().on_frame(chunk1.0, chunk1.1.clone()).is_err());
    // A chunk of another transfer.
    let mut asm = fresh();
    asm.on_frame(start.0, start.1.clone()).unwrap();
    let mut other = chunk1.1.clone();
    other[0] = 9;
    assert!(asm.on_frame(KIND_SNAPSHOT_CHUNK, other).is_err());
    // Data past the announced length.
    let mut asm = fresh();
    asm.on_frame(start.0, start.1.clone()).unwrap();
    let mut long = 1u64.to_le_bytes().to_vec();
    long.extend(vec![0; 2600]);
    assert!(asm.on_frame(KIND_SNAPSHOT_CHUNK, long).is_err());
    // A byte changed on the way: the checksum catches it.
    let mut asm = fresh();
    let mut results = Vec::new();
    for (i, (kind, body)) in fs.iter().enumerate() {
        let mut body = body.clone();
        if i == 1 {
            body[CHUNK_HEAD + 10] ^= 1;
        }
        results.push(asm.on_frame(*kind, body));
    }
    let mut snapshots = results.iter().flatten().flatten();
    assert!(
        snapshots.all(|m| m.get_msg_type() != MessageType::MsgSnapshot),
        "a corrupt snapshot is never handed out"
    );
    assert!(
        results.iter().any(Result::is_err),
        "and the stream is broken"
    );
    // A snapshot as an ordinary message.
    let mut plain = Vec::new();
    push_message(&mut plain, &msg);
    let (kind, body) = frames(
        &plain,
        &Limits {
            max_frame: 1 << 20,
            ..LIMITS
        },
    )
    .await
    .remove(0);
    assert!(fresh().on_frame(kind, body).is_err());
    // A new transfer replaces an unfinished one; the old one's chunks no longer fit.
    let newer = snapshot_msg(1, 1500);
    let (bytes2, _) = send(2, &newer, 1000);
    let fs2 = frames(&bytes2, &LIMITS).await;
    let mut asm = fresh();
    asm.on_frame(start.0, start.1.clone()).unwrap();
    asm.on_frame(chunk1.0, chunk1.1.clone()).unwrap();
    let out = feed(&mut asm, &fs2).expect("the newer snapshot");
    assert_eq!(encode_message(&out), encode_message(&newer));
    let old_chunk2 = &fs[3];
    assert_eq!(old_chunk2.0, KIND_SNAPSHOT_CHUNK);
    assert!(asm.on_frame(old_chunk2.0, old_chunk2.1.clone()).is_err());
}
