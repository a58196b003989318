//! Segment files of the command log: appending (`LogWriter`) and reading back (`scan`).
//!
//! Segments are named by the index of their first record (`00000000000000000001.log`), so
//! sorting names sorts the log. Only the last segment is ever written.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{Fs, FsFile, FsSync};
use super::record::{Frame, HEADER_LEN, Record, SegmentHeader, decode_frame};

/// The file name of the segment starting at `first_index`.
pub(crate) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.log")
}

/// The first index of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// The segments of `dir`, sorted: `(first_index, file name)`.
pub(crate) fn segments(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<(u64, String)>> {
    let mut segs: Vec<_> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|i| (i, n)))
        .collect();
    segs.sort();
    Ok(segs)
}

/// Appends records to the last segment, rolling to a new one past a size.
pub(crate) struct LogWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    seed: u64,
    segment_bytes: u64,
    file: Box<dyn FsFile>,
    /// A handle that syncs the current segment from another thread.
    syncer: Arc<dyn FsSync>,
    /// Bytes of the current segment known to be whole (header and complete records).
    len: u64,
    /// Index of the next record.
    next_index: u64,
}

impl LogWriter {
    /// Starts a fresh segment at `next_index` (recovery has read everything before it).
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        seed: u64,
        next_index: u64,
        segment_bytes: u64,
    ) -> io::Result<Self> {
        let file = new_segment(fs.as_ref(), dir, seed, next_index)?;
        Ok(Self {
            fs,
            dir: dir.to_path_buf(),
            seed,
            segment_bytes: segment_bytes.max(HEADER_LEN as u64 + 1),
            syncer: file.syncer()?,
            file,
            len: HEADER_LEN as u64,
            next_index,
        })
    }

    /// Index the next record gets.
    pub(crate) fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Writes framed records (`count` of them, the next indexes) in one write. On failure the
    /// segment is cut back to its last whole record, so a retry cannot leave a torn frame in
    /// the middle of the log.
    pub(crate) fn append(&mut self, frames: &[u8], count: u64) -> io::Result<()> {
        if let Err(e) = self.file.write_all(frames) {
            if let Err(cut) = self.file.set_len(self.len) {
                return Err(io::Error::new(
                    cut.kind(),
                    format!("{e}; cutting the partial write failed too: {cut}"),
                ));
            }
            return Err(e);
        }
        self.len += frames.len() as u64;
        self.next_index += count;
        Ok(())
    }

    /// Makes everything appended durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }

    /// A handle that syncs what has been appended to the current segment, for a thread that
    /// syncs while appends go on.
    pub(crate) fn syncer(&self) -> Arc<dyn FsSync> {
        Arc::clone(&self.syncer)
    }

    /// True once the segment has passed its size: time to `roll`.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.segment_bytes
    }

    /// Syncs the current segment and starts a new one at the next index.
    pub(crate) fn roll(&mut self) -> io::Result<()> {
        self.file.sync()?;
        self.roll_unsynced()?;
        self.file.sync()?;
        self.fs.sync_dir(&self.dir)
    }

    /// Starts a new segment at the next index without syncing anything, for a caller that
    /// must not wait for the disk: the returned handle syncs the old segment, and the old
    /// segment, the new one (`syncer`) and the directory (`dir_handle`) must be synced soon after.
    pub(crate) fn roll_unsynced(&mut self) -> io::Result<Arc<dyn FsSync>> {
        let file = create_segment(self.fs.as_ref(), &self.dir, self.seed, self.next_index)?;
        let syncer = file.syncer()?;
        self.file = file;
        self.len = HEADER_LEN as u64;
        Ok(std::mem::replace(&mut self.syncer, syncer))
    }

    /// The file system and directory, to make a new segment's entry durable from another
    /// thread.
    pub(crate) fn dir_handle(&self) -> (Arc<dyn Fs>, PathBuf) {
        (Arc::clone(&self.fs), self.dir.clone())
    }
}

/// Creates (or resets: recovery found no record in it) the segment at `first_index`, writes its
/// header and makes its directory entry durable.
fn new_segment(
    fs: &dyn Fs,
    dir: &Path,
    seed: u64,
    first_index: u64,
) -> io::Result<Box<dyn FsFile>> {
    let mut file = create_segment(fs, dir, seed, first_index)?;
    file.sync()?;
    fs.sync_dir(dir)?;
    Ok(file)
}

/// Creates (or resets) the segment at `first_index` and writes its header, syncing nothing.
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    seed: u64,
    first_index: u64,
) -> io::Result<Box<dyn FsFile>> {
    let path = dir.join(segment_name(first_index));
    let mut file = fs.open_append(&path)?;
    file.set_len(0)?;
    file.write_all(&SegmentHeader { seed, first_index }.encode())?;
    Ok(file)
}

/// What reading the log found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The seed of the first segment's header.
    pub(crate) seed: Option<u64>,
    /// Every valid record after `after`, in order.
    pub(crate) records: Vec<Record>,
    /// Index of the last valid record (`after` if none is newer).
    pub(crate) last_index: u64,
    /// Warnings (a torn tail cut off, a repaired corruption).
    pub(crate) warnings: Vec<String>,
    /// Segments read and their total bytes.
    pub(crate) segments: usize,
    /// Bytes of all segments read.
    pub(crate) bytes: u64,
}

/// Where reading stopped on damage before the log's end.
#[derive(Debug)]
pub(crate) struct Damage {
    /// The segment.
    pub(crate) file: PathBuf,
    /// Byte offset of the bad record.
    pub(crate) offset: u64,
    /// What is wrong.
    pub(crate) reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "corrupt command log: {} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.reason
        )
    }
}

/// Why a log could not be read.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// A file could not be read.
    Io(String),
    /// Damage before the tail; `repair` cuts the log there instead.
    Corrupt(Damage),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => f.write_str(e),
            Self::Corrupt(d) => d.fmt(f),
        }
    }
}

/// Reads the log of `dir`, keeping the records after index `after`. A torn tail (the last
/// segment ends inside a record) is cut off with a warning. Damage elsewhere is an error,
/// unless `repair`: then the log is cut at the damage (later segments removed) with a warning.
pub(crate) fn scan(fs: &dyn Fs, dir: &Path, after: u64, repair: bool) -> Result<Scan, ScanError> {
    let io_err = |what: &str, p: &Path, e: io::Error| {
        ScanError::Io(format!("cannot {what} {}: {e}", p.display()))
    };
    let segs = segments(fs, dir).map_err(|e| io_err("list", dir, e))?;
    let mut scan = Scan {
        last_index: after,
        ..Scan::default()
    };
    let mut expected: Option<u64> = None;
    for (k, (first, name)) in segs.iter().enumerate() {
        let path = dir.join(name);
        let last_segment = k + 1 == segs.len();
        let bytes = fs.read(&path).map_err(|e| io_err("read", &path, e))?;
        scan.segments += 1;
        scan.bytes += bytes.len() as u64;
        let stop = read_segment(&bytes, *first, &mut expected, after, &mut scan);
        let Some((offset, torn, reason)) = stop else {
            continue;
        };
        let damage = Damage {
            file: path.clone(),
            offset,
            reason,
        };
        if !(repair || torn && last_segment) {
            return Err(ScanError::Corrupt(damage));
        }
        let cut = |p: &Path, len: u64| fs.truncate(p, len).map_err(|e| io_err("truncate", p, e));
        if offset < HEADER_LEN as u64 {
            fs.remove(&path).map_err(|e| io_err("remove", &path, e))?;
        } else {
            cut(&path, offset)?;
        }
        for (_, later) in &segs[k + 1..] {
            let p = dir.join(later);
            fs.remove(&p).map_err(|e| io_err("remove", &p, e))?;
        }
        let what = if torn { "torn tail" } else { "damage" };
        scan.warnings
            .push(format!("{damage}; the log was cut there ({what})"));
        break;
    }
    Ok(scan)
}

/// Reads one segment into `scan`. Returns where and why it stopped early, with whether that
/// looks like an unfinished write (the bytes end inside the record).
fn read_segment(
    bytes: &[u8],
    first: u64,
    expected: &mut Option<u64>,
    after: u64,
    scan: &mut Scan,
) -> Option<(u64, bool, String)> {
    let Some(header) = SegmentHeader::decode(bytes) else {
        let torn = bytes.len() < HEADER_LEN;
        return Some((0, torn, SegmentHeader::problem(bytes)));
    };
    if header.first_index != first || expected.is_some_and(|e| e != first) {
        return Some((
            0,
            false,
            format!("segment starts at index {first}, out of order"),
        ));
    }
    scan.seed.get_or_insert(header.seed);
    let mut at = HEADER_LEN;
    let mut next = first;
    loop {
        match decode_frame(&bytes[at..]) {
            Frame::End => break,
            Frame::Torn => return Some((at as u64, true, "incomplete record".into())),
            Frame::Corrupt(reason) => return Some((at as u64, false, reason)),
            Frame::Record(rec, len) => {
                if rec.index != next {
                    let why = format!("record index {} where {next} was expected", rec.index);
                    return Some((at as u64, false, why));
                }
                next += 1;
                at += len;
                if rec.index > after {
                    scan.last_index = rec.index;
                    scan.records.push(*rec);
                } else {
                    scan.last_index = scan.last_index.max(rec.index);
                }
            }
        }
    }
    *expected = Some(next);
    None
}

/// Reads records `after + 1 ..= upto` without changing any file (the writer may be appending
/// past `upto` meanwhile). Any damage or gap before `upto` is an error.
pub(crate) fn read_range(
    fs: &dyn Fs,
    dir: &Path,
    after: u64,
    upto: u64,
) -> Result<Vec<Record>, String> {
    let segs = segments(fs, dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    let mut next = after + 1;
    for (k, (first, name)) in segs.iter().enumerate() {
        let later = segs.get(k + 1).map(|s| s.0);
        if *first > upto || later.is_some_and(|l| l <= next) {
            continue;
        }
        let path = dir.join(name);
        let bytes = fs
            .read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut at = HEADER_LEN;
        while next <= upto {
            match decode_frame(bytes.get(at..).unwrap_or_default()) {
                Frame::Record(rec, len) => {
                    at += len;
                    if rec.index >= next {
                        if rec.index != next {
                            return Err(format!(
                                "{}: gap before record {}",
                                path.display(),
                                rec.index
                            ));
                        }
                        next += 1;
                        out.push(*rec);
                    }
                }
                Frame::End => break,
                Frame::Torn | Frame::Corrupt(_) => {
                    return Err(format!(
                        "{} at offset {at}: unreadable record",
                        path.display()
                    ));
                }
            }
        }
    }
    if next <= upto {
        return Err(format!(
            "records {next}..={upto} are missing from {}",
            dir.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use synap_core::{Command, Millis};

    use super::super::fs::{FaultyFs, RealFs};
    use super::super::record::encode_record;
    use super::*;

    fn kv(i: u64) -> Command {
        Command::KvDel {
            key: format!("k{i}"),
        }
    }

    /// Writes records 1..=n, one per append.
    fn write(fs: Arc<dyn Fs>, dir: &Path, n: u64, segment_bytes: u64) {
        let mut w = LogWriter::open(fs, dir, 9, 1, segment_bytes).unwrap();
        for i in 1..=n {
            let mut buf = Vec::new();
            encode_record(&mut buf, i, Millis(i * 10), &[kv(i)]);
            w.append(&buf, 1).unwrap();
            if w.is_full() {
                w.roll().unwrap();
            }
        }
        w.sync().unwrap();
    }

    fn indexes(scan: &Scan) -> Vec<u64> {
        scan.records.iter().map(|r| r.index).collect()
    }

    #[test]
    fn records_read_back_across_segments_after_an_index() {
        let dir = tempfile::tempdir().unwrap();
        write(Arc::new(RealFs), dir.path(), 20, 100);
        let segs = segments(&RealFs, dir.path()).unwrap();
        assert!(segs.len() > 3, "rolled at 100 bytes: {segs:?}");
        let scan = scan(&RealFs, dir.path(), 5, false).unwrap();
        assert_eq!(indexes(&scan), (6..=20).collect::<Vec<_>>());
        assert_eq!((scan.seed, scan.last_index), (Some(9), 20));
        assert_eq!(scan.records[0].now, 60);
        assert!(scan.warnings.is_empty());
    }

    #[test]
    fn a_range_reads_across_segments_and_reports_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        write(Arc::new(RealFs), dir.path(), 30, 100);
        let got = read_range(&RealFs, dir.path(), 4, 17).unwrap();
        assert_eq!(
            got.iter().map(|r| r.index).collect::<Vec<_>>(),
            (5..=17).collect::<Vec<_>>()
        );
        assert!(read_range(&RealFs, dir.path(), 0, 31).is_err());
    }

    #[test]
    fn a_torn_tail_is_cut_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write(Arc::new(RealFs), dir.path(), 5, 1 << 20);
        let path = dir.path().join(segment_name(1));
        let len = std::fs::metadata(&path).unwrap().len();
        RealFs.truncate(&path, len - 3).unwrap();
        let s = scan(&RealFs, dir.path(), 0, false).unwrap();
        assert_eq!(indexes(&s), vec![1, 2, 3, 4]);
        assert!(s.warnings[0].contains("torn tail"), "{:?}", s.warnings);
        // Cut for good: a second read finds a clean log.
        let again = scan(&RealFs, dir.path(), 0, false).unwrap();
        assert_eq!((again.records.len(), again.warnings.len()), (4, 0));
    }

    #[test]
    fn damage_before_the_tail_names_file_and_offset_unless_repaired() {
        let dir = tempfile::tempdir().unwrap();
        write(Arc::new(RealFs), dir.path(), 5, 1 << 20);
        let path = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER_LEN + (bytes.len() - HEADER_LEN) / 5;
        bytes[second + 10] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = scan(&RealFs, dir.path(), 0, false).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&segment_name(1)), "{text}");
        assert!(text.contains(&format!("offset {second}")), "{text}");
        let repaired = scan(&RealFs, dir.path(), 0, true).unwrap();
        assert_eq!(indexes(&repaired), vec![1]);
        assert_eq!(repaired.warnings.len(), 1);
    }

    #[test]
    fn a_damaged_earlier_segment_is_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(Arc::new(RealFs), dir.path(), 10, 100);
        let first = dir.path().join(segment_name(1));
        let len = std::fs::metadata(&first).unwrap().len();
        RealFs.truncate(&first, len - 2).unwrap();
        assert!(matches!(
            scan(&RealFs, dir.path(), 0, false),
            Err(ScanError::Corrupt(_))
        ));
    }

    #[test]
    fn a_failed_append_leaves_no_partial_record() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::default();
        let faults = Arc::clone(&fs.faults);
        let mut w = LogWriter::open(Arc::new(fs), dir.path(), 1, 1, 1 << 20).unwrap();
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, Millis(1), &[kv(1)]);
        faults
            .disk_full
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(w.append(&buf, 1).is_err());
        assert_eq!(w.next_index(), 1);
        faults
            .disk_full
            .store(false, std::sync::atomic::Ordering::SeqCst);
        w.append(&buf, 1).unwrap();
        let s = scan(&RealFs, dir.path(), 0, false).unwrap();
        assert_eq!((indexes(&s), s.warnings.len()), (vec![1], 0));
    }
}
