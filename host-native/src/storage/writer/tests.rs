//! Goal: the writer under each policy: what it reports, a full disk held and resumed, a failed
//! fsync final, rolls, and inline writing with syncs on the thread.

use std::sync::atomic::Ordering;

use synap_core::{Command, Millis};

use super::super::fs::{Faults, FaultyFs, Fs, RealFs};
use super::super::log::scan;
use super::super::record::encode_record;
use super::*;

struct Running {
    sink: Option<LogSink>,
    status: watch::Receiver<Durability>,
    faults: Arc<Faults>,
    next: u64,
}

impl Running {
    fn start(dir: &std::path::Path, policy: SyncPolicy) -> Self {
        let fs = FaultyFs::default();
        let faults = Arc::clone(&fs.faults);
        let log = LogWriter::open(Arc::new(fs), dir, 1, 1, 1 << 20).unwrap();
        let (status_tx, status) = watch::channel(Durability::default());
        let sink = LogSink::start(log, policy, status_tx).unwrap();
        Self {
            sink: Some(sink),
            status,
            faults,
            next: 1,
        }
    }

    fn send(&mut self) -> u64 {
        let mut bytes = Vec::new();
        let cmd = Command::KvDel { key: "k".into() };
        encode_record(&mut bytes, self.next, Millis(self.next), &[cmd]);
        self.sink.as_mut().unwrap().frames(bytes, 1);
        self.next += 1;
        self.next - 1
    }

    /// Waits (up to 10 s) until the status satisfies `f`.
    fn wait_for(&mut self, f: impl Fn(&Durability) -> bool) -> Durability {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status.borrow().clone();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "status stuck at {s:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(&mut self) {
        self.sink.take().unwrap().stop();
    }
}

fn records(dir: &std::path::Path) -> u64 {
    scan(&RealFs as &dyn Fs, dir, 0, false).unwrap().last_index
}

#[test]
fn every_policy_reports_what_it_wrote() {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Interval(DEFAULT_INTERVAL),
        SyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Running::start(dir.path(), policy);
        for _ in 0..50 {
            w.send();
        }
        w.wait_for(|s| s.durable == 50);
        w.stop();
        assert_eq!(records(dir.path()), 50, "{policy:?}");
    }
}

#[test]
fn a_full_disk_holds_records_and_writes_them_when_space_returns() {
    for policy in [SyncPolicy::Always, SyncPolicy::Interval(DEFAULT_INTERVAL)] {
        full_disk_under(policy);
    }
}

fn full_disk_under(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Running::start(dir.path(), policy);
    w.send();
    w.wait_for(|s| s.durable == 1);
    w.faults.disk_full.store(true, Ordering::SeqCst);
    w.send();
    w.send();
    let s = w.wait_for(|s| s.full);
    assert_eq!(s.durable, 1, "nothing past the full disk counts as durable");
    w.faults.disk_full.store(false, Ordering::SeqCst);
    let s = w.wait_for(|s| s.durable == 3);
    assert!(!s.full && s.failed.is_none());
    w.stop();
    let found = scan(&RealFs as &dyn Fs, dir.path(), 0, false).unwrap();
    assert_eq!((found.last_index, found.warnings.len()), (3, 0));
}

#[test]
fn a_failed_fsync_stops_writing_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Running::start(dir.path(), SyncPolicy::Always);
    w.send();
    w.wait_for(|s| s.durable == 1);
    w.faults.fail_sync.store(true, Ordering::SeqCst);
    w.send();
    let s = w.wait_for(|s| s.failed.is_some());
    assert_eq!(s.durable, 1, "the unsynced record is not durable");
    assert!(s.failed.unwrap().contains("fsync"));
    // Even with fsync working again, nothing more is written or confirmed.
    w.faults.fail_sync.store(false, Ordering::SeqCst);
    w.send();
    std::thread::sleep(RETRY * 2);
    assert_eq!(w.status.borrow().durable, 1);
    w.stop();
}

#[test]
fn interval_writes_in_the_caller_and_syncs_on_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Running::start(dir.path(), SyncPolicy::Interval(DEFAULT_INTERVAL));
    w.send();
    assert_eq!(
        w.status.borrow().durable,
        1,
        "written before frames() returns"
    );
    assert_eq!(records(dir.path()), 1);
    // A sync that fails on the thread stops writing for good.
    w.faults.fail_sync.store(true, Ordering::SeqCst);
    w.send();
    let s = w.wait_for(|s| s.failed.is_some());
    assert_eq!(s.durable, 2, "interval counts a written record as durable");
    assert!(s.failed.unwrap().contains("fsync"));
    w.faults.fail_sync.store(false, Ordering::SeqCst);
    w.send();
    assert_eq!(
        w.status.borrow().durable,
        2,
        "nothing is written after the failure"
    );
    w.stop();
    assert_eq!(records(dir.path()), 2);
}

#[test]
fn a_roll_starts_the_next_segment_at_the_next_index() {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Interval(DEFAULT_INTERVAL),
        SyncPolicy::Never,
    ] {
        roll_under(policy);
    }
}

#[test]
fn a_failed_sync_after_an_inline_roll_stops_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Running::start(dir.path(), SyncPolicy::Never);
    w.send();
    w.faults.fail_sync.store(true, Ordering::SeqCst);
    // The roll itself does not wait for the disk; the thread's sync of it fails.
    w.sink.as_mut().unwrap().roll();
    let s = w.wait_for(|s| s.failed.is_some());
    assert_eq!(s.durable, 1);
    w.send();
    assert_eq!(
        w.status.borrow().durable,
        1,
        "nothing is written after the failure"
    );
    w.stop();
}

fn roll_under(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Running::start(dir.path(), policy);
    w.send();
    w.sink.as_mut().unwrap().roll();
    w.send();
    w.wait_for(|s| s.durable == 2);
    w.stop();
    let segs = super::super::log::segments(&RealFs, dir.path()).unwrap();
    assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(records(dir.path()), 2);
}
