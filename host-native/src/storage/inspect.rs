//! `synap-server data inspect DIR` and `synap-server data export DIR`: read a data directory
//! without changing it (a server may even be running on it).
//!
//! `inspect` prints what the directory holds: the snapshot, each segment with its records and
//! where reading stopped, and the queues of the state they rebuild. `export` prints the
//! command log as JSON lines: a `head` line (seed, snapshot index), then one line per record
//! `{"index", "now", "commands"}` with commands in the JSON shape of the command envelope.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use synap_core::{Command, Engine, EngineConfig, Reply};

use super::fs::{Fs, RealFs};
use super::log::segments;
use super::record::{Frame, HEADER_LEN, Record, SegmentHeader, decode_frame};
use super::recovery::replay;
use super::snapshot::{HostState, Snapshot, load_newest};

/// One segment as read.
struct SegmentReport {
    name: String,
    bytes: usize,
    records: Vec<Record>,
    /// Where and why reading stopped before the end, if it did.
    stopped: Option<String>,
    seed: Option<u64>,
}

fn read_segment(fs: &dyn Fs, dir: &Path, name: &str) -> Result<SegmentReport, String> {
    let path = dir.join(name);
    let bytes = fs
        .read(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut report = SegmentReport {
        name: name.to_owned(),
        bytes: bytes.len(),
        records: Vec::new(),
        stopped: None,
        seed: None,
    };
    let Some(header) = SegmentHeader::decode(&bytes) else {
        report.stopped = Some(format!("{} at offset 0", SegmentHeader::problem(&bytes)));
        return Ok(report);
    };
    report.seed = Some(header.seed);
    let mut at = HEADER_LEN;
    loop {
        match decode_frame(&bytes[at..]) {
            Frame::End => break,
            Frame::Record(rec, len) => {
                report.records.push(*rec);
                at += len;
            }
            Frame::Torn => {
                report.stopped = Some(format!("incomplete record at offset {at} (a torn tail)"));
                break;
            }
            Frame::Corrupt(why) => {
                report.stopped = Some(format!("corrupt record at offset {at}: {why}"));
                break;
            }
        }
    }
    Ok(report)
}

/// A directory's newest snapshot, the warnings of reading snapshots, and its segments.
type DirContents = (Option<Snapshot>, Vec<String>, Vec<SegmentReport>);

/// The snapshot and segments of `dir`.
fn read_dir(dir: &Path) -> Result<DirContents, String> {
    let fs = RealFs;
    let mut warnings = Vec::new();
    let snap = load_newest(&fs, dir, &mut warnings)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let segs = segments(&fs, dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let reports = segs
        .iter()
        .map(|(_, name)| read_segment(&fs, dir, name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((snap, warnings, reports))
}

/// `data inspect DIR`.
pub(crate) fn inspect(dir: &Path) -> Result<String, String> {
    let (snap, warnings, segs) = read_dir(dir)?;
    let mut out = format!("data directory {}\n", dir.display());
    for w in &warnings {
        out += &format!("warning: {w}\n");
    }
    let after = snap.as_ref().map_or(0, |s| s.index);
    let seed = snap
        .as_ref()
        .map(|s| s.host.seed)
        .or_else(|| segs.iter().find_map(|s| s.seed));
    let mut engine = match &snap {
        Some(s) => {
            out += &format!(
                "snapshot {}: {} bytes, covers records up to {}, time {}\n",
                s.path.display(),
                s.bytes,
                s.index,
                s.now
            );
            s.engine.clone()
        }
        None => {
            out += "snapshot: none\n";
            Engine::new(EngineConfig::default(), seed.unwrap_or(0))
        }
    };
    let mut host = HostState::default();
    let mut replayed = 0;
    for s in &segs {
        let (first, last) = match (s.records.first(), s.records.last()) {
            (Some(f), Some(l)) => (f.index.to_string(), l.index.to_string()),
            _ => ("-".into(), "-".into()),
        };
        out += &format!(
            "segment {}: {} bytes, {} records ({first}..{last})",
            s.name,
            s.bytes,
            s.records.len()
        );
        if let Some(why) = &s.stopped {
            out += &format!("; stopped: {why}");
        }
        out += "\n";
        for rec in s.records.iter().filter(|r| r.index > after) {
            replay(&mut engine, &mut host, rec.clone());
            replayed += 1;
        }
    }
    out += &format!("records after the snapshot: {replayed}\n");
    out += &queues(&mut engine);
    Ok(out)
}

/// One line per queue of the rebuilt state.
fn queues(engine: &mut Engine) -> String {
    let now = engine.now();
    let Ok(Reply::Queues { queues }) = engine.handle(now, Command::ListQueues) else {
        return String::new();
    };
    let mut out = format!("queues: {}\n", queues.len());
    for queue in queues {
        if let Ok(Reply::Stats(s)) = engine.handle(now, Command::Stats { queue }) {
            out += &format!(
                "  {}: ready {}, delayed {}, in flight {}, dead-lettered {}, published {}\n",
                s.queue, s.ready, s.delayed, s.in_flight, s.dead_letter_count, s.published_total
            );
        }
    }
    out
}

/// `data export DIR`: writes JSON lines to `w`.
pub(crate) fn export(dir: &Path, w: &mut impl Write) -> Result<(), String> {
    let (snap, _, segs) = read_dir(dir)?;
    let seed = snap
        .as_ref()
        .map(|s| s.host.seed)
        .or_else(|| segs.iter().find_map(|s| s.seed));
    // The state the records follow, so a replay of the export starts where they do.
    let head = json!({
        "type": "head",
        "seed": seed,
        "snapshot_index": snap.as_ref().map(|s| s.index),
        "engine": snap.as_ref().map(|s| s.engine.config()),
        "state": snap.as_ref().map(|s| &s.engine),
    });
    let io = |e: std::io::Error| format!("cannot write: {e}");
    writeln!(w, "{head}").map_err(io)?;
    let after = snap.as_ref().map_or(0, |s| s.index);
    for s in &segs {
        for rec in s.records.iter().filter(|r| r.index > after) {
            let line = serde_json::to_string(rec).map_err(|e| e.to_string())?;
            writeln!(w, "{line}").map_err(io)?;
        }
        if let Some(why) = &s.stopped {
            eprintln!("synap-server: {}: {why}", s.name);
        }
    }
    Ok(())
}

/// `synap-server data --help`.
const DATA_HELP: &str = "\
Read a data directory (the server may be stopped or running; nothing is written).

Usage: synap-server data <COMMAND> DIR

Commands:
  inspect DIR  The snapshot, the log segments and their records, and each queue's counts
  export DIR   A head line (seed, config, the snapshot's state), then the command log as JSON lines

Replay an export, or the directory itself, with `synap-server simulate --replay DIR`.";

/// Entry point of `synap-server data …`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let usage = "usage: synap-server data inspect DIR | synap-server data export DIR";
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{DATA_HELP}");
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let result = match args {
        [cmd, dir] if cmd == "inspect" => inspect(Path::new(dir)).map(|text| print!("{text}")),
        [cmd, dir] if cmd == "export" => export(Path::new(dir), &mut std::io::stdout().lock()),
        _ => Err(usage.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synap-server: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use synap_core::Millis;

    use super::super::log::LogWriter;
    use super::super::record::encode_record;
    use super::*;

    #[test]
    fn inspect_and_export_read_a_log_without_changing_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(Arc::new(RealFs), dir.path(), 8, 1, 1 << 20).unwrap();
        let create = Command::CreateQueue {
            queue: "jobs".into(),
            config: None,
        };
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, Millis(10), &[create]);
        buf.extend_from_slice(&[1, 2, 3]); // a torn tail
        w.append(&buf, 1).unwrap();
        let before = std::fs::read(dir.path().join(super::super::log::segment_name(1))).unwrap();
        let text = inspect(dir.path()).unwrap();
        assert!(text.contains("1 records (1..1)"), "{text}");
        assert!(text.contains("torn tail"), "{text}");
        assert!(text.contains("jobs: ready 0"), "{text}");
        let mut out = Vec::new();
        export(dir.path(), &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["seed"], json!(8));
        assert_eq!(lines[1]["commands"][0]["type"], json!("create_queue"));
        let after = std::fs::read(dir.path().join(super::super::log::segment_name(1))).unwrap();
        assert_eq!(before, after, "read only");
    }
}
