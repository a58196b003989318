//! The on-disk shapes of the command log: segment headers and checksummed records.
//!
//! A segment starts with a 32-byte header: magic `SYNAPLOG`, format version (u32), the engine's
//! seed (u64), the index of its first record (u64) and a CRC-32C of those 28 bytes. Records
//! follow, each `[len: u32][crc32c(payload): u32][payload]`, little-endian. The payload is one
//! engine turn: `{index, now, commands}` in MessagePack.
//!
//! Why MessagePack (rmp-serde, maps with field names): `Command` is an internally tagged enum
//! with a flattened field, which only self-describing formats decode (postcard and bincode
//! cannot). A JSON body travels as its compact text, a MessagePack byte string (see
//! `synap_core::Json`), so logging a command neither parses nor builds a JSON tree; a byte payload
//! is a byte string too. The engine task encodes each accepted command as it runs
//! (`TurnLog`), so a turn's commands are never cloned to be logged. `measure_encodings` below compares sizes and decode times
//! with JSON records (run it with `--ignored --nocapture`).

use serde::{Deserialize, Serialize};
use synap_core::{Command, Millis};

/// The magic bytes a segment starts with.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SYNAPLOG";
/// Version of the segment and record format.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes of a segment header.
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes before a record's payload (length and checksum).
pub(crate) const FRAME_LEN: usize = 8;
/// The largest record payload accepted when reading: anything larger is corruption.
pub(crate) const MAX_RECORD: usize = 256 << 20;

/// A segment's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The engine's seed, so a log without a snapshot rebuilds the same ids.
    pub(crate) seed: u64,
    /// Index of the segment's first record.
    pub(crate) first_index: u64,
}

impl SegmentHeader {
    /// The 32 header bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.seed.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Why `b` is not a valid header of this version.
    pub(crate) fn problem(b: &[u8]) -> String {
        if b.len() >= 12 && &b[..8] == SEGMENT_MAGIC && u32_at(b, 8) != FORMAT_VERSION {
            let v = u32_at(b, 8);
            format!("segment format version {v}; this server reads version {FORMAT_VERSION}")
        } else {
            "bad segment header".into()
        }
    }

    /// Reads a header; `None` when the bytes are not a valid header of this version.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..HEADER_LEN)?;
        if &b[..8] != SEGMENT_MAGIC || u32_at(b, 8) != FORMAT_VERSION {
            return None;
        }
        if crc32c::crc32c(&b[..28]) != u32_at(b, 28) {
            return None;
        }
        Some(Self {
            seed: u64_at(b, 12),
            first_index: u64_at(b, 20),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One engine turn as logged, borrowed for encoding (what `TurnLog` writes by hand).
#[cfg(test)]
#[derive(Serialize)]
struct RecordRef<'a> {
    index: u64,
    now: u64,
    commands: &'a [Command],
}

/// One engine turn read back from the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Position in the log, from 1, without gaps.
    pub(crate) index: u64,
    /// The turn's time: every command ran at it.
    pub(crate) now: u64,
    /// The accepted mutating commands, in order.
    pub(crate) commands: Vec<Command>,
}

impl Record {
    /// The turn's time.
    pub(crate) fn now(&self) -> Millis {
        Millis(self.now)
    }
}

/// Appends the framed record of one turn to `out` (the engine task streams its turns through
/// `TurnLog` instead).
#[cfg(test)]
pub(crate) fn encode_record(out: &mut Vec<u8>, index: u64, now: Millis, commands: &[Command]) {
    let mut turn = TurnLog::default();
    for cmd in commands {
        turn.push(cmd);
    }
    turn.frame_into(out, index, now);
}

/// The commands of one turn, encoded as they are accepted (the record's `commands` array,
/// without its header), then framed as one record: the bytes are exactly those of
/// `RecordRef` written by rmp-serde (a test checks it).
#[derive(Debug, Default)]
pub(crate) struct TurnLog {
    encoded: Vec<u8>,
    count: u32,
}

/// Where a `TurnLog` stood before a command, to take it back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark(usize);

impl TurnLog {
    /// Encodes `cmd` as the turn's next command; the mark takes it back.
    pub(crate) fn push(&mut self, cmd: &Command) -> Mark {
        let mark = Mark(self.encoded.len());
        rmp_serde::encode::write_named(&mut self.encoded, cmd)
            .expect("commands encode to MessagePack");
        self.count += 1;
        mark
    }

    /// Takes back the command pushed at `mark` (the engine refused it).
    pub(crate) fn undo(&mut self, mark: Mark) {
        self.encoded.truncate(mark.0);
        self.count -= 1;
    }

    /// No command was logged this turn.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends the framed record `{index, now, commands}` to `out` and starts over.
    pub(crate) fn frame_into(&mut self, out: &mut Vec<u8>, index: u64, now: Millis) {
        let start = out.len();
        out.reserve(FRAME_LEN + 40 + self.encoded.len());
        out.extend_from_slice(&[0u8; FRAME_LEN]);
        // Writing to a Vec cannot fail.
        let _ = rmp::encode::write_map_len(out, 3);
        let _ = rmp::encode::write_str(out, "index");
        let _ = rmp::encode::write_uint(out, index);
        let _ = rmp::encode::write_str(out, "now");
        let _ = rmp::encode::write_uint(out, now.0);
        let _ = rmp::encode::write_str(out, "commands");
        let _ = rmp::encode::write_array_len(out, self.count);
        out.extend_from_slice(&self.encoded);
        self.encoded.clear();
        self.count = 0;
        let len = u32::try_from(out.len() - start - FRAME_LEN).expect("a record under 4 GiB");
        let crc = crc32c::crc32c(&out[start + FRAME_LEN..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What is found at an offset of a segment.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// A valid record taking `len` bytes (frame included).
    Record(Box<Record>, usize),
    /// The bytes end inside a frame: a write that never completed.
    Torn,
    /// A complete frame whose checksum or content is wrong.
    Corrupt(String),
    /// No bytes left.
    End,
}

/// Reads the frame at the start of `b`.
pub(crate) fn decode_frame(b: &[u8]) -> Frame {
    if b.is_empty() {
        return Frame::End;
    }
    if b.len() < FRAME_LEN {
        return Frame::Torn;
    }
    let len = u32_at(b, 0) as usize;
    if len > MAX_RECORD {
        return Frame::Corrupt(format!("record length {len} exceeds {MAX_RECORD}"));
    }
    let Some(payload) = b.get(FRAME_LEN..FRAME_LEN + len) else {
        return Frame::Torn;
    };
    if crc32c::crc32c(payload) != u32_at(b, 4) {
        return Frame::Corrupt("checksum mismatch".into());
    }
    match rmp_serde::from_slice::<Record>(payload) {
        Ok(r) => Frame::Record(Box::new(r), FRAME_LEN + len),
        Err(e) => Frame::Corrupt(format!("undecodable record: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use synap_core::{Json, PublishMessage};

    use super::*;

    fn publish(i: usize) -> Command {
        Command::Publish {
            queue: "videos".into(),
            message: PublishMessage {
                message: Some(Json::from_trusted_text(format!(
                    r#"{{"video_id":"v-{i:06}","resolution":"1080p","source":"s3://bucket/raw/{i}.mp4"}}"#
                ))),
                priority: Some(7),
                ..PublishMessage::default()
            },
        }
    }

    fn bytes_publish() -> Command {
        Command::Publish {
            queue: "q".into(),
            message: PublishMessage {
                payload: Some(Arc::from(vec![200u8; 100])),
                ..PublishMessage::default()
            },
        }
    }

    #[test]
    fn a_record_round_trips_with_json_and_byte_bodies() {
        let cmds = vec![publish(1), bytes_publish(), Command::KvStats];
        let mut out = Vec::new();
        encode_record(&mut out, 7, Millis(1234), &cmds);
        match decode_frame(&out) {
            Frame::Record(r, len) => {
                assert_eq!(len, out.len());
                assert_eq!((r.index, r.now), (7, 1234));
                // Bodies come back JSON-equal (object keys in sorted order, as `Json` serializes).
                let json = |c: &[Command]| serde_json::to_value(c).unwrap();
                assert_eq!(json(&r.commands), json(&cmds));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_streamed_turn_is_the_record_serde_writes() {
        let cmds = [
            publish(1),
            bytes_publish(),
            Command::KvDel { key: "k".into() },
        ];
        for n in [0, 1, 3] {
            let mut streamed = Vec::new();
            encode_record(&mut streamed, 300, Millis(1 << 40), &cmds[..n]);
            let rec = RecordRef {
                index: 300,
                now: 1 << 40,
                commands: &cmds[..n],
            };
            let payload = rmp_serde::to_vec_named(&rec).unwrap();
            assert_eq!(&streamed[FRAME_LEN..], &payload[..], "{n} commands");
        }
        // A command taken back leaves no trace.
        let mut turn = TurnLog::default();
        turn.push(&cmds[0]);
        let mark = turn.push(&cmds[1]);
        turn.undo(mark);
        let mut out = Vec::new();
        turn.frame_into(&mut out, 1, Millis(1));
        let mut expected = Vec::new();
        encode_record(&mut expected, 1, Millis(1), &cmds[..1]);
        assert_eq!(out, expected);
        assert!(turn.is_empty());
    }

    #[test]
    fn a_json_body_is_logged_as_its_text() {
        let cmd = publish(1);
        let Command::Publish { message, .. } = &cmd else {
            unreachable!()
        };
        let text = message.message.as_ref().unwrap().as_str().to_owned();
        let mut out = Vec::new();
        encode_record(&mut out, 1, Millis(1), std::slice::from_ref(&cmd));
        assert!(
            out.windows(text.len()).any(|w| w == text.as_bytes()),
            "the compact text is in the record as it is"
        );
    }

    #[test]
    fn a_cut_frame_is_torn_and_a_flipped_bit_is_corrupt() {
        let mut out = Vec::new();
        encode_record(&mut out, 1, Millis(1), &[publish(1)]);
        for cut in [1, FRAME_LEN - 1, FRAME_LEN, out.len() - 1] {
            assert_eq!(decode_frame(&out[..cut]), Frame::Torn, "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[FRAME_LEN + 3] ^= 0x10;
        assert!(matches!(decode_frame(&bad), Frame::Corrupt(_)));
        let mut huge = out;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_frame(&huge), Frame::Corrupt(_)));
    }

    #[test]
    fn a_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            seed: 42,
            first_index: 9,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Some(h));
        b[13] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), None);
        assert_eq!(SegmentHeader::decode(&b[..10]), None);
    }

    /// Sizes and timings behind the choice of MessagePack; run with `--ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_encodings() {
        let cmds: Vec<Command> = (0..64).map(publish).collect();
        let bytes: Vec<Command> = (0..64).map(|_| bytes_publish()).collect();
        for (name, cmds) in [("json bodies", &cmds), ("byte bodies", &bytes)] {
            let t = std::time::Instant::now();
            let mut mp = Vec::new();
            for _ in 0..100 {
                mp.clear();
                encode_record(&mut mp, 1, Millis(1), cmds);
            }
            let mp_enc = t.elapsed();
            let t = std::time::Instant::now();
            for _ in 0..100 {
                assert!(matches!(decode_frame(&mp), Frame::Record(..)));
            }
            let mp_dec = t.elapsed();
            let t = std::time::Instant::now();
            let mut js = Vec::new();
            for _ in 0..100 {
                js = serde_json::to_vec(cmds).unwrap();
            }
            let js_enc = t.elapsed();
            let t = std::time::Instant::now();
            for _ in 0..100 {
                let _: Vec<Command> = serde_json::from_slice(&js).unwrap();
            }
            let js_dec = t.elapsed();
            println!(
                "{name}: msgpack {} B enc {mp_enc:?} dec {mp_dec:?}; json {} B enc {js_enc:?} dec {js_dec:?}",
                mp.len(),
                js.len()
            );
        }
    }
}
