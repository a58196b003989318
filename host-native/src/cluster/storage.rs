//! A cluster node's Raft storage on disk: what `synap_cluster::Persist` batches ask for, kept
//! in `<data-dir>/raft/`, and what a restarted node is built from (`Recovered`).
//!
//! - `log`: a header, then records appended in order, each `[len u32][crc32c u32][kind u8]
//!   [body]` (len counts kind and body, the checksum covers them). An `entries` record holds
//!   raft-rs entries (protobuf) that replace every stored entry from their first index on —
//!   that is how an uncommitted suffix is truncated on conflict, by a later record and never
//!   by rewriting the file in place. A `hard_state` record holds term, vote and commit.
//! - `snapshot`: the latest snapshot (protobuf, with a checksum), written to a temporary file,
//!   synced and renamed. After a snapshot is stored the log is rewritten the same way to hold
//!   only the hard state and the entries after it, so the log stays as short as the node's
//!   in-memory log.
//!
//! Recovery replays the log over the snapshot. A record cut short at the end of the file (a
//! write the crash interrupted, past the last sync) is cut off. A whole record whose checksum
//! fails is damage inside the log: the node refuses to start and says so, since that record
//! may hold committed entries (delete the directory and the node is re-seeded by its peers).
//!
//! Every file operation goes through the single server's file-system interface
//! (`storage::fs::Fs`): the operating system's in production, the fault-injecting one in tests
//! (`storage_swarm` crashes and restarts whole nodes over it). A failed write or sync is an
//! error for the caller, and the disk refuses everything after it: the server stops the node
//! rather than go on from a file in an unknown state.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use synap_cluster::{Entry, HardState, MemDisk, Persist, Recovered, Snapshot, SnapshotKind};

use crate::storage::fs::{DirLock, Fs, FsFile, RealFs};

const LOG_MAGIC: &[u8; 8] = b"SYNRAFT1";
const SNAP_MAGIC: &[u8; 8] = b"SYNSNAP1";
const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
/// Record header: length and checksum.
const HEADER: usize = 8;

/// The Raft storage of one node, and a mirror of what it holds (the log is rewritten from it
/// after a snapshot).
pub(crate) struct RaftDisk {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    log: Box<dyn FsFile>,
    stored: MemDisk,
    /// Set by the first failed write or sync: nothing is written after it.
    failed: bool,
    _lock: DirLock,
}

impl RaftDisk {
    /// Opens (or creates) `dir` on the operating system's file system, recovering what it
    /// holds.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Recovered), String> {
        Self::open_on(Arc::new(RealFs), dir)
    }

    /// Opens (or creates) `dir` on `fs`, recovering what it holds.
    pub(crate) fn open_on(fs: Arc<dyn Fs>, dir: &Path) -> Result<(Self, Recovered), String> {
        fs.create_dir_all(dir)
            .map_err(|e| format!("cannot create raft directory {}: {e}", dir.display()))?;
        let lock = DirLock::acquire(dir)?;
        let mut stored = MemDisk {
            snapshot: read_snapshot(fs.as_ref(), &dir.join("snapshot"))?,
            ..MemDisk::default()
        };
        let log_path = dir.join("log");
        let valid = match fs.read(&log_path) {
            // Empty: created and never written (the header goes in with the first write).
            Ok(bytes) if bytes.is_empty() => None,
            Ok(bytes) => Some(replay(&log_path, &bytes, &mut stored)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", log_path.display())),
        };
        fix_up(&mut stored);
        let log = match valid {
            Some(len) => {
                let mut f = fs
                    .open_append(&log_path)
                    .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
                f.set_len(len)
                    .and_then(|()| f.sync())
                    .map_err(|e| format!("cannot cut {}: {e}", log_path.display()))?;
                f
            }
            None => new_log(fs.as_ref(), dir, &stored)
                .map_err(|e| format!("cannot create raft log: {e}"))?,
        };
        let recovered = stored.recovered();
        let disk = Self {
            fs,
            dir: dir.to_path_buf(),
            log,
            stored,
            failed: false,
            _lock: lock,
        };
        Ok((disk, recovered))
    }

    /// Writes one batch (not synced, unless it carried a snapshot).
    pub(crate) fn write(&mut self, batch: &Persist) -> io::Result<()> {
        self.check()?;
        let r = self.write_batch(batch);
        self.failed |= r.is_err();
        r
    }

    /// Syncs what was written.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.check()?;
        let r = self.log.sync();
        self.failed |= r.is_err();
        r
    }

    /// Refuses to go on after a failure: a failed sync may have dropped pages the file no
    /// longer shows as dirty, and a failed write left a torn record at the log's end.
    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(format!(
                "the raft storage in {} failed earlier; nothing more is written",
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &Persist) -> io::Result<()> {
        self.stored.apply(batch);
        if let Some((snap, kind)) = &batch.snapshot {
            let index = snap.get_metadata().index;
            let stored = self
                .stored
                .snapshot
                .as_ref()
                .map_or(0, |s| s.get_metadata().index);
            if index == stored || *kind == SnapshotKind::Received {
                write_snapshot(self.fs.as_ref(), &self.dir, snap)?;
                self.log = new_log(self.fs.as_ref(), &self.dir, &self.stored)?;
                return Ok(());
            }
        }
        let mut out = Vec::new();
        if !batch.entries.is_empty() {
            encode_entries(&mut out, &batch.entries);
        }
        if let Some(hs) = &batch.hard_state {
            encode_hard_state(&mut out, hs);
        }
        if !out.is_empty() {
            self.log.write_all(&out)?;
        }
        Ok(())
    }
}

/// Frames one record into `out`.
fn record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let len = u32::try_from(body.len() + 1).expect("a record under 4 GiB");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_entries(out: &mut Vec<u8>, entries: &[Entry]) {
    let mut body = Vec::new();
    for e in entries {
        let bytes = e.write_to_bytes().expect("entries encode");
        let len = u32::try_from(bytes.len()).expect("an entry under 4 GiB");
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&bytes);
    }
    record(out, KIND_ENTRIES, &body);
}

fn encode_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    record(
        out,
        KIND_HARD_STATE,
        &hs.write_to_bytes().expect("hard state encodes"),
    );
}

fn decode_entries(body: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("entry length cut".into());
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let bytes = rest.get(4..4 + len).ok_or_else(|| "entry cut".to_owned())?;
        out.push(Entry::parse_from_bytes(bytes).map_err(|e| e.to_string())?);
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Replays the log's records over `stored`; the length of its valid part.
fn replay(path: &Path, bytes: &[u8], stored: &mut MemDisk) -> Result<u64, String> {
    if bytes.len() < LOG_MAGIC.len() || &bytes[..8] != LOG_MAGIC {
        return Err(format!("{} is not a Synap raft log", path.display()));
    }
    let snap_index = stored
        .snapshot
        .as_ref()
        .map_or(0, |s| s.get_metadata().index);
    let snap_term = stored
        .snapshot
        .as_ref()
        .map_or(0, |s| s.get_metadata().term);
    // The term of the log's entry at the snapshot's index, when the log holds it.
    let mut term_at_snap = None;
    let mut at = LOG_MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = if rest.len() >= HEADER {
            u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize
        } else {
            usize::MAX
        };
        if len == usize::MAX || rest.len() - HEADER < len || len == 0 {
            tracing::warn!(
                path = %path.display(),
                offset = at,
                cut = bytes.len() - at,
                "raft log ends in a torn record; cutting it"
            );
            return Ok(at as u64);
        }
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let body = &rest[HEADER..HEADER + len];
        if crc32c::crc32c(body) != crc {
            return Err(corrupt(path, at, "checksum mismatch"));
        }
        match body[0] {
            KIND_ENTRIES => {
                let entries = decode_entries(&body[1..]).map_err(|e| corrupt(path, at, &e))?;
                if let Some(e) = entries.iter().find(|e| e.index == snap_index) {
                    term_at_snap = Some(e.term);
                }
                let kept: Vec<Entry> = entries
                    .into_iter()
                    .filter(|e| e.index > snap_index)
                    .collect();
                append(&mut stored.entries, kept, snap_index).map_err(|e| corrupt(path, at, &e))?;
            }
            KIND_HARD_STATE => {
                stored.hard_state = HardState::parse_from_bytes(&body[1..])
                    .map_err(|e| corrupt(path, at, &e.to_string()))?;
            }
            k => return Err(corrupt(path, at, &format!("unknown record kind {k}"))),
        }
        at += HEADER + len;
    }
    if term_at_snap.is_some_and(|t| t != snap_term) {
        // The log is older than the snapshot received from the leader and disagrees with it
        // at the snapshot's index: its later entries are not part of the leader's log.
        stored.entries.clear();
    }
    Ok(at as u64)
}

fn corrupt(path: &Path, offset: usize, why: &str) -> String {
    let dir = path
        .parent()
        .map_or_else(String::new, |d| d.display().to_string());
    format!(
        "raft log {} is damaged at byte {offset} ({why}), before its end: refusing to start \
         rather than drop entries that may be committed. Delete {dir} to have this node \
         re-seeded from its peers.",
        path.display()
    )
}

/// Appends `new` to `log` (entries after snapshot `base`), replacing from `new`'s first index.
fn append(log: &mut Vec<Entry>, new: Vec<Entry>, base: u64) -> Result<(), String> {
    let Some(first) = new.first().map(|e| e.index) else {
        return Ok(());
    };
    let head = log.first().map_or(base + 1, |e| e.index);
    let keep = first.checked_sub(head).map_or(0, |k| k as usize);
    if keep > log.len() {
        return Err(format!("a gap before entry {first}"));
    }
    log.truncate(keep);
    log.extend(new);
    Ok(())
}

/// Keeps the hard state consistent with a snapshot stored after it.
fn fix_up(stored: &mut MemDisk) {
    let (snap_index, snap_term) = stored
        .snapshot
        .as_ref()
        .map_or((0, 0), |s| (s.get_metadata().index, s.get_metadata().term));
    let hs = &mut stored.hard_state;
    if hs.term < snap_term {
        // The vote stored was cast in an older term (as `synap_cluster` does on recovery).
        hs.term = snap_term;
        hs.vote = 0;
    }
    hs.commit = hs.commit.max(snap_index);
    let last = stored.entries.last().map_or(snap_index, |e| e.index);
    hs.commit = hs.commit.min(last);
}

fn read_snapshot(fs: &dyn Fs, path: &Path) -> Result<Option<Snapshot>, String> {
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let bad = |why: &str| {
        format!(
            "raft snapshot {} is damaged ({why}): refusing to start. Delete its directory to \
             have this node re-seeded from its peers.",
            path.display()
        )
    };
    if bytes.len() < 12 || &bytes[..8] != SNAP_MAGIC {
        return Err(bad("no header"));
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[12..]) != crc {
        return Err(bad("checksum mismatch"));
    }
    Snapshot::parse_from_bytes(&bytes[12..])
        .map(Some)
        .map_err(|e| bad(&e.to_string()))
}

/// Writes `bytes` to `dir/name` through a synced temporary file and a rename. A temporary
/// file left by a crash is overwritten.
fn replace_file(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs.open_append(&tmp)?;
    f.set_len(0)?;
    f.write_all(bytes)?;
    f.sync()?;
    drop(f);
    fs.rename(&tmp, &dir.join(name))?;
    fs.sync_dir(dir)
}

fn write_snapshot(fs: &dyn Fs, dir: &Path, snap: &Snapshot) -> io::Result<()> {
    let body = snap.write_to_bytes().map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(body.len() + 12);
    bytes.extend_from_slice(SNAP_MAGIC);
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    replace_file(fs, dir, "snapshot", &bytes)
}

/// A log holding `stored`'s hard state and entries, replacing the old one; open to append.
fn new_log(fs: &dyn Fs, dir: &Path, stored: &MemDisk) -> io::Result<Box<dyn FsFile>> {
    let mut bytes = LOG_MAGIC.to_vec();
    encode_hard_state(&mut bytes, &stored.hard_state);
    if !stored.entries.is_empty() {
        encode_entries(&mut bytes, &stored.entries);
    }
    replace_file(fs, dir, "log", &bytes)?;
    fs.open_append(&dir.join("log"))
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
