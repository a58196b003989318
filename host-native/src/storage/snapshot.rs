//! Snapshots: the whole engine state at a log index, written atomically.
//!
//! A snapshot file `<index:020>.snap` is a 40-byte header (magic `SYNAPSNP`, version u32, the
//! log index it covers u64, the turn's `now` u64, the body's length u64, and a CRC-32C (u32)
//! over the body and those first 36 header bytes) and a MessagePack body. MessagePack rather
//! than postcard or bincode because the engine's state has internally tagged enums and
//! flattened fields, which only a self-describing format decodes. It is written as a temp file, synced, renamed
//! into place and the directory synced, so a crash leaves either the old or the new snapshot.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use synap_core::{Engine, SessionId, WaiterId};

use super::fs::Fs;
use super::log::segments;

const MAGIC: &[u8; 8] = b"SYNAPSNP";
/// Version 2: JSON bodies are their compact text (a MessagePack string).
const VERSION: u32 = 2;
const HEADER: usize = 40;

/// What a snapshot holds besides the engine: host state recovery needs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct HostState {
    /// The engine's seed (also in the log's segment headers).
    pub(crate) seed: u64,
    /// Long-poll waiters parked at the snapshot: their clients are gone after a restart.
    pub(crate) waiters: BTreeSet<WaiterId>,
    /// Streaming sessions attached at the snapshot: gone after a restart too.
    #[serde(default)]
    pub(crate) sessions: BTreeSet<SessionId>,
    /// Subscribers bound to a connection: gone after a restart too.
    pub(crate) subscribers: BTreeSet<String>,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    host: &'a HostState,
    engine: &'a Engine,
}

#[derive(Deserialize)]
struct Body {
    host: HostState,
    engine: Engine,
}

/// A snapshot read back.
pub(crate) struct Snapshot {
    /// The log index it covers: replay starts after it.
    pub(crate) index: u64,
    /// The time of that index's turn.
    pub(crate) now: u64,
    /// The engine.
    pub(crate) engine: Engine,
    /// Host state.
    pub(crate) host: HostState,
    /// Its file.
    pub(crate) path: PathBuf,
    /// Its size in bytes.
    pub(crate) bytes: u64,
}

/// The file name of the snapshot covering `index`.
pub(crate) fn snapshot_name(index: u64) -> String {
    format!("{index:020}.snap")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".snap")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// The snapshot files of `dir`, newest first.
pub(crate) fn snapshots(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<(u64, String)>> {
    let mut found: Vec<_> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|n| parse_name(&n).map(|i| (i, n)))
        .collect();
    found.sort();
    found.reverse();
    Ok(found)
}

/// Encodes a snapshot file.
pub(crate) fn encode(index: u64, now: u64, engine: &Engine, host: &HostState) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    rmp_serde::encode::write(&mut out, &BodyRef { host, engine })
        .expect("the engine encodes to MessagePack");
    let body_len = (out.len() - HEADER) as u64;
    let body_crc = crc32c::crc32c(&out[HEADER..]);
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&index.to_le_bytes());
    out[20..28].copy_from_slice(&now.to_le_bytes());
    out[28..36].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(body_crc, &out[..36]);
    out[36..40].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a snapshot file; the error says what is wrong.
pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, u64, Engine, HostState), String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a snapshot".into());
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "snapshot version {version}, this server reads {VERSION}"
        ));
    }
    let (index, now, body_len) = (word(12), word(20), word(28));
    let body = &bytes[HEADER..];
    if body.len() as u64 != body_len {
        return Err(format!(
            "body is {} bytes, header says {body_len}",
            body.len()
        ));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(body), &bytes[..36]);
    if crc.to_le_bytes() != bytes[36..40] {
        return Err("checksum mismatch".into());
    }
    let b: Body = rmp_serde::from_slice(body).map_err(|e| format!("undecodable: {e}"))?;
    Ok((index, now, b.engine, b.host))
}

/// Writes `bytes` (an encoded snapshot for `index`) atomically into `dir`, then removes older
/// snapshots and the log segments it covers. Returns the bytes removed.
pub(crate) fn install(fs: &dyn Fs, dir: &Path, index: u64, bytes: &[u8]) -> io::Result<u64> {
    let tmp = dir.join(format!("{}.tmp", snapshot_name(index)));
    let path = dir.join(snapshot_name(index));
    let written = (|| {
        let mut f = fs.open_append(&tmp)?;
        f.set_len(0)?;
        f.write_all(bytes)?;
        f.sync()?;
        drop(f);
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir)
    })();
    if let Err(e) = written {
        let _ = fs.remove(&tmp);
        return Err(e);
    }
    let mut freed = 0;
    for (i, name) in snapshots(fs, dir)? {
        if i < index {
            freed += remove(fs, &dir.join(name))?;
        }
    }
    // A segment is covered when the next one starts at or before `index + 1`.
    let segs = segments(fs, dir)?;
    for pair in segs.windows(2) {
        if pair[1].0 <= index + 1 {
            freed += remove(fs, &dir.join(&pair[0].1))?;
        }
    }
    fs.sync_dir(dir)?;
    Ok(freed)
}

fn remove(fs: &dyn Fs, path: &Path) -> io::Result<u64> {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    fs.remove(path)?;
    Ok(len)
}

/// The newest snapshot of `dir` that reads back whole; damaged ones are skipped with a warning.
pub(crate) fn load_newest(
    fs: &dyn Fs,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> io::Result<Option<Snapshot>> {
    for (_, name) in snapshots(fs, dir)? {
        let path = dir.join(&name);
        let bytes = fs.read(&path)?;
        match decode(&bytes) {
            Ok((index, now, engine, host)) => {
                return Ok(Some(Snapshot {
                    index,
                    now,
                    engine,
                    host,
                    path,
                    bytes: bytes.len() as u64,
                }));
            }
            Err(e) => warnings.push(format!("snapshot {} skipped: {e}", path.display())),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use synap_core::{Command, EngineConfig, Json, Millis, PublishMessage};

    use super::super::fs::RealFs;
    use super::super::log::{LogWriter, segment_name};
    use super::*;

    fn engine() -> Engine {
        let mut e = Engine::new(EngineConfig::default(), 5);
        for i in 0..10 {
            let message = PublishMessage {
                message: Some(Json::from_trusted_text(format!("{{\"n\":{i}}}"))),
                payload: None,
                ..PublishMessage::default()
            };
            let cmd = Command::Publish {
                queue: "q".into(),
                message,
            };
            e.handle(Millis(1000 + i), cmd).unwrap();
        }
        let consume = Command::Consume {
            queue: "q".into(),
            wait_ms: 0,
            lease_ms: Some(5000),
            max_messages: 3,
            consumer_id: Some("c".into()),
        };
        e.handle(Millis(2000), consume).unwrap();
        let kv = Command::KvSet {
            key: "k".into(),
            value: Json::from_trusted_text("[1,2]"),
            ttl_ms: Some(60_000),
        };
        e.handle(Millis(2001), kv).unwrap();
        e
    }

    #[test]
    fn a_snapshot_round_trips_the_whole_state() {
        let e = engine();
        let host = HostState {
            seed: 5,
            waiters: [WaiterId(3)].into(),
            sessions: [SessionId(4)].into(),
            subscribers: ["s".to_owned()].into(),
        };
        let bytes = encode(12, 2001, &e, &host);
        let (index, now, back, host2) = decode(&bytes).unwrap();
        assert_eq!((index, now), (12, 2001));
        assert_eq!(back.state_digest(), e.state_digest());
        assert_eq!(
            (host2.waiters, host2.subscribers),
            (host.waiters, host.subscribers)
        );
        let mut bad = bytes;
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(&bad).unwrap_err().contains("checksum"));
    }

    #[test]
    fn install_replaces_older_snapshots_and_covered_segments() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut w = LogWriter::open(Arc::new(RealFs), d, 5, 1, 1 << 20).unwrap();
        let mut buf = Vec::new();
        for i in 1..=3 {
            super::super::record::encode_record(&mut buf, i, Millis(i), &[]);
        }
        w.append(&buf, 3).unwrap();
        w.roll().unwrap();
        let e = engine();
        install(&RealFs, d, 1, &encode(1, 1, &e, &HostState::default())).unwrap();
        install(&RealFs, d, 3, &encode(3, 3, &e, &HostState::default())).unwrap();
        let names = RealFs.list(d).unwrap();
        assert_eq!(names, vec![snapshot_name(3), segment_name(4)]);
        let mut warnings = Vec::new();
        let s = load_newest(&RealFs, d, &mut warnings).unwrap().unwrap();
        assert_eq!((s.index, warnings.len()), (3, 0));
    }

    #[test]
    fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = engine();
        std::fs::write(
            d.join(snapshot_name(2)),
            encode(2, 2, &e, &HostState::default()),
        )
        .unwrap();
        std::fs::write(d.join(snapshot_name(9)), b"SYNAPSNP garbage").unwrap();
        let mut warnings = Vec::new();
        let s = load_newest(&RealFs, d, &mut warnings).unwrap().unwrap();
        assert_eq!(s.index, 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
