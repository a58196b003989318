//! Goal: the on-disk Raft storage gives back what was stored, as `MemDisk` (the reference)
//! does: entries, conflicting suffixes replaced, hard state, snapshots of both kinds; a torn
//! tail is cut; damage inside the log or in the snapshot refuses to start; on the
//! fault-injecting file system, short writes are completed, and a full disk or a failed sync
//! is an error after which the disk writes nothing, and what it left is recovered.
//! Method: write batches, drop the disk, reopen the directory, compare with a `MemDisk` fed the
//! same batches; damage files by hand between the two.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::sync::atomic::Ordering;

use synap_cluster::{ConfState, SnapshotKind};

use super::*;
use crate::storage::fs::FaultyFs;

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Entry::default()
    }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

fn batch(entries: Vec<Entry>, hard_state: Option<HardState>) -> Persist {
    Persist {
        ready: Some(1),
        entries,
        hard_state,
        must_sync: true,
        ..Persist::default()
    }
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(vec![1, 2, 3].into());
    let m = s.mut_metadata();
    m.index = index;
    m.term = term;
    m.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    s
}

fn same(a: &Recovered, b: &Recovered) {
    assert_eq!(a.hard_state, b.hard_state);
    assert_eq!(a.snapshot, b.snapshot);
    assert_eq!(a.entries, b.entries);
}

/// Writes `batches` to a fresh disk in `dir` and to a `MemDisk`; reopens and compares.
fn round_trip(dir: &Path, batches: &[Persist]) -> Recovered {
    let mut reference = MemDisk::default();
    {
        let (mut disk, _) = RaftDisk::open(dir).unwrap();
        for b in batches {
            disk.write(b).unwrap();
            reference.apply(b);
        }
        disk.sync().unwrap();
    }
    let (_, back) = RaftDisk::open(dir).unwrap();
    same(&back, &reference.recovered());
    back
}

#[test]
fn entries_and_hard_state_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let back = round_trip(
        dir.path(),
        &[
            batch(
                vec![entry(1, 1, b"a"), entry(2, 1, b"b")],
                Some(hs(1, 1, 0)),
            ),
            batch(vec![entry(3, 1, b"c")], Some(hs(1, 1, 2))),
        ],
    );
    assert_eq!(back.entries.len(), 3);
    assert_eq!(back.hard_state.commit, 2);
}

#[test]
fn a_conflicting_suffix_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let back = round_trip(
        dir.path(),
        &[
            batch(
                vec![entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
                Some(hs(1, 1, 1)),
            ),
            batch(vec![entry(2, 2, b"B")], Some(hs(2, 2, 1))),
        ],
    );
    let terms: Vec<(u64, u64)> = back.entries.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(terms, vec![(1, 1), (2, 2)]);
    // And it stays so across a second reopen with more appended.
    let (mut disk, _) = RaftDisk::open(dir.path()).unwrap();
    disk.write(&batch(vec![entry(3, 2, b"C")], None)).unwrap();
    drop(disk);
    let (_, again) = RaftDisk::open(dir.path()).unwrap();
    assert_eq!(again.entries.len(), 3);
    assert_eq!(again.entries[2].data.as_ref(), b"C");
}

#[test]
fn snapshots_compact_and_replace_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1, b"x")).collect();
    let compaction = Persist {
        snapshot: Some((snapshot(3, 1), SnapshotKind::Compaction)),
        ..Persist::default()
    };
    let back = round_trip(dir.path(), &[batch(entries, Some(hs(1, 1, 4))), compaction]);
    assert_eq!(back.snapshot.unwrap().get_metadata().index, 3);
    assert_eq!(
        back.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [4, 5]
    );
    let received = Persist {
        ready: Some(2),
        snapshot: Some((snapshot(9, 2), SnapshotKind::Received)),
        hard_state: Some(hs(2, 0, 9)),
        must_sync: true,
        ..Persist::default()
    };
    let (mut disk, _) = RaftDisk::open(dir.path()).unwrap();
    disk.write(&received).unwrap();
    disk.write(&batch(vec![entry(10, 2, b"y")], None)).unwrap();
    drop(disk);
    let (_, back) = RaftDisk::open(dir.path()).unwrap();
    assert_eq!(back.snapshot.unwrap().get_metadata().index, 9);
    assert_eq!(
        back.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [10]
    );
    assert_eq!(back.hard_state.commit, 9);
}

#[test]
fn a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(
        dir.path(),
        &[batch(vec![entry(1, 1, b"a")], Some(hs(1, 1, 1)))],
    );
    let path = dir.path().join("log");
    let good = std::fs::metadata(&path).unwrap().len();
    // Half of a record: its header promises more bytes than the file holds.
    let mut tail = Vec::new();
    encode_entries(&mut tail, &[entry(2, 1, b"bbbbbbbb")]);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&tail[..tail.len() / 2]).unwrap();
    drop(f);
    let (mut disk, back) = RaftDisk::open(dir.path()).unwrap();
    assert_eq!(back.entries.len(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good, "cut");
    disk.write(&batch(vec![entry(2, 1, b"b")], None)).unwrap();
    drop(disk);
    assert_eq!(RaftDisk::open(dir.path()).unwrap().1.entries.len(), 2);
}

#[test]
fn damage_inside_the_log_or_snapshot_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(
        dir.path(),
        &[
            batch(vec![entry(1, 1, b"committed")], Some(hs(1, 1, 1))),
            batch(vec![entry(2, 1, b"later")], Some(hs(1, 1, 2))),
        ],
    );
    let path = dir.path().join("log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(9).position(|w| w == b"committed").unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = RaftDisk::open(dir.path()).err().expect("refused");
    assert!(
        err.contains("damaged") && err.contains("re-seeded"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");

    let dir = tempfile::tempdir().unwrap();
    let compaction = Persist {
        snapshot: Some((snapshot(1, 1), SnapshotKind::Compaction)),
        ..Persist::default()
    };
    round_trip(
        dir.path(),
        &[
            batch(vec![entry(1, 1, b"a")], Some(hs(1, 1, 1))),
            compaction,
        ],
    );
    let snap = dir.path().join("snapshot");
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();
    let err = RaftDisk::open(dir.path()).err().expect("refused");
    assert!(err.contains("snapshot"), "{err}");
}

#[test]
fn a_second_node_cannot_open_a_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (_disk, _) = RaftDisk::open(dir.path()).unwrap();
    let err = RaftDisk::open(dir.path()).err().expect("locked");
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn short_writes_are_completed_and_a_full_disk_or_failed_sync_stops_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::default());
    let faults = Arc::clone(&fs.faults);
    let open = || RaftDisk::open_on(fs.clone(), dir.path()).unwrap();
    let (mut disk, _) = open();
    faults.short_writes.store(3, Ordering::SeqCst);
    let first = batch(
        vec![entry(1, 1, b"a"), entry(2, 1, b"b")],
        Some(hs(1, 1, 1)),
    );
    disk.write(&first).unwrap();
    disk.sync().unwrap();
    assert_eq!(
        faults.short_writes.load(Ordering::SeqCst),
        0,
        "short writes ran"
    );

    // A full disk takes part of the record, then refuses: an error, and nothing after it.
    faults.disk_full.store(true, Ordering::SeqCst);
    let e = disk
        .write(&batch(vec![entry(3, 1, b"cccccccc")], Some(hs(1, 1, 2))))
        .unwrap_err();
    assert!(crate::storage::fs::is_full(&e), "{e}");
    faults.disk_full.store(false, Ordering::SeqCst);
    let e = disk
        .write(&batch(vec![entry(3, 1, b"c")], None))
        .unwrap_err();
    assert!(e.to_string().contains("failed earlier"), "{e}");
    assert!(disk.sync().is_err());
    drop(disk);
    // The torn record is cut: what was written whole comes back.
    let (mut disk, back) = open();
    assert_eq!(back.entries.len(), 2);
    assert_eq!(back.hard_state, hs(1, 1, 1));

    // A failed sync is an error too, and stops the disk; the record written before it is
    // whole, so a restart (a process crash keeps what was written) recovers it.
    disk.write(&batch(vec![entry(3, 1, b"c")], Some(hs(1, 1, 2))))
        .unwrap();
    faults.fail_sync.store(true, Ordering::SeqCst);
    assert!(disk.sync().is_err());
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(disk.write(&batch(vec![entry(4, 1, b"d")], None)).is_err());
    drop(disk);
    let (mut disk, back) = open();
    assert_eq!(back.entries.len(), 3);
    assert_eq!(back.hard_state.commit, 2);

    // A snapshot under a failed sync: an error; the previous snapshot and log stay readable.
    faults.fail_sync.store(true, Ordering::SeqCst);
    let compaction = Persist {
        snapshot: Some((snapshot(2, 1), SnapshotKind::Compaction)),
        ..Persist::default()
    };
    assert!(disk.write(&compaction).is_err());
    faults.fail_sync.store(false, Ordering::SeqCst);
    drop(disk);
    let (_, back) = open();
    assert!(back.snapshot.is_none());
    assert_eq!(back.entries.len(), 3);
}

#[test]
fn a_snapshot_stored_before_its_log_was_rewritten_wins_over_the_old_hard_state() {
    // A crash between the snapshot's rename and the log's rewrite: the log still holds the
    // hard state of an older term, with a vote cast in it.
    let dir = tempfile::tempdir().unwrap();
    round_trip(
        dir.path(),
        &[batch(
            vec![entry(1, 1, b"a"), entry(2, 1, b"b")],
            Some(hs(1, 2, 1)),
        )],
    );
    write_snapshot(&RealFs, dir.path(), &snapshot(5, 3)).unwrap();
    let (_, back) = RaftDisk::open(dir.path()).unwrap();
    assert_eq!(back.snapshot.unwrap().get_metadata().index, 5);
    assert!(
        back.entries.is_empty(),
        "entries the snapshot covers are dropped"
    );
    assert_eq!(
        back.hard_state,
        hs(3, 0, 5),
        "the term and commit of the snapshot, and no vote from the older term"
    );
}
