//! Goal: the simulation swarm (synap-tests) with every restart recovering through this
//! server's real storage code. Method: each accepted mutation is one record of the command log
//! (`encode_record`, `LogWriter`) on the fault-injecting file system, with short writes and a
//! full disk injected now and then (the append is retried as the writer thread does); a
//! restart may first snapshot the live engine (`snapshot::encode` and `install`), sometimes
//! under a failed fsync or a full disk, which must leave the previous state readable, may
//! leave a torn record at the log's tail (a crash in mid-write), and then rebuilds the engine
//! with `recovery::recover`. The swarm asserts the rebuilt state's digest equals the live one
//! and its oracle checks every reply after. `SIM_STORE_RUNS=n` runs more seeds (default 40).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use synap_core::{Command, Engine, EngineConfig, Millis};
use synap_tests::swarm::{Store, run_on_store};

use super::fs::{FaultyFs, Fs, is_full};
use super::log::{LogWriter, segments};
use super::record::encode_record;
use super::recovery;
use super::snapshot::{self, HostState};

/// Small segments, so logs roll and snapshots delete covered segments.
const SEGMENT_BYTES: u64 = 16 * 1024;

struct RealStore {
    dir: tempfile::TempDir,
    fs: Arc<FaultyFs>,
    log: Option<LogWriter>,
    config: EngineConfig,
    seed: u64,
    appended: u64,
    frame: Vec<u8>,
    /// What the faults did, to check every kind happened.
    tally: Arc<std::sync::Mutex<Tally>>,
}

#[derive(Debug, Default)]
struct Tally {
    full_appends: u64,
    snapshots: u64,
    failed_snapshots: u64,
    torn_tails: u64,
    restarts: u64,
}

impl RealStore {
    fn new(config: &EngineConfig, seed: u64, tally: Arc<std::sync::Mutex<Tally>>) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fs = Arc::new(FaultyFs::default());
        let log = LogWriter::open(fs.clone(), dir.path(), seed, 1, SEGMENT_BYTES).expect("log");
        Self {
            dir,
            fs,
            log: Some(log),
            config: config.clone(),
            seed,
            appended: 0,
            frame: Vec::new(),
            tally,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Appends a partial frame to the newest segment: a length promising more than follows.
    fn tear_tail(&self) {
        let (_, name) = segments(self.fs.as_ref(), self.path())
            .expect("segments")
            .pop()
            .expect("a segment");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path().join(name))
            .expect("open the segment");
        let mut torn = 1_000u32.to_le_bytes().to_vec();
        torn.extend_from_slice(&[0xAB; 9]);
        f.write_all(&torn).expect("write a torn frame");
    }
}

impl Store for RealStore {
    fn record(&mut self, now: u64, cmd: &Command) {
        let log = self.log.as_mut().expect("the log is open");
        self.frame.clear();
        encode_record(
            &mut self.frame,
            log.next_index(),
            Millis(now),
            std::slice::from_ref(cmd),
        );
        self.appended += 1;
        let faults = &self.fs.faults;
        if self.appended.is_multiple_of(61) {
            faults.short_writes.store(2, Ordering::SeqCst);
        }
        if self.appended.is_multiple_of(97) {
            faults.disk_full.store(true, Ordering::SeqCst);
            let e = log.append(&self.frame, 1).expect_err("a full disk refuses");
            assert!(is_full(&e), "{e}");
            faults.disk_full.store(false, Ordering::SeqCst);
            self.tally.lock().unwrap().full_appends += 1;
        }
        log.append(&self.frame, 1).expect("append");
        if log.is_full() {
            log.roll().expect("roll");
        }
    }

    fn restart(&mut self, live: &Engine, draw: u64) -> Engine {
        let mut log = self.log.take().expect("the log is open");
        log.sync().expect("sync");
        let upto = log.next_index() - 1;
        drop(log);
        let host = HostState {
            seed: self.seed,
            ..HostState::default()
        };
        let faults = &self.fs.faults;
        let mut tally = self.tally.lock().unwrap();
        tally.restarts += 1;
        match draw % 4 {
            0 => {
                let bytes = snapshot::encode(upto, live.now().0, live, &host);
                snapshot::install(self.fs.as_ref(), self.path(), upto, &bytes).expect("install");
                tally.snapshots += 1;
            }
            n @ (1 | 2) => {
                let flag = if n == 1 {
                    &faults.fail_sync
                } else {
                    &faults.disk_full
                };
                flag.store(true, Ordering::SeqCst);
                let bytes = snapshot::encode(upto, live.now().0, live, &host);
                let r = snapshot::install(self.fs.as_ref(), self.path(), upto, &bytes);
                flag.store(false, Ordering::SeqCst);
                assert!(r.is_err(), "a snapshot under a storage fault must fail");
                tally.failed_snapshots += 1;
            }
            _ => {}
        }
        let torn = (draw / 4).is_multiple_of(2);
        if torn {
            self.tear_tail();
            tally.torn_tails += 1;
        }
        let r = recovery::recover(
            self.fs.as_ref(),
            self.path(),
            &self.config,
            self.seed,
            false,
        )
        .unwrap_or_else(|e| panic!("recovery failed: {e}"));
        assert_eq!(r.next_index, upto + 1, "every record recovered");
        if torn {
            assert!(
                r.warnings.iter().any(|w| w.contains("torn tail")),
                "{:?}",
                r.warnings
            );
        }
        let fs: Arc<dyn Fs> = self.fs.clone();
        self.log = Some(
            LogWriter::open(fs, self.path(), self.seed, r.next_index, SEGMENT_BYTES)
                .expect("reopen the log"),
        );
        r.engine
    }
}

#[test]
fn the_swarm_restarts_through_the_real_log_and_snapshots() {
    let runs: u64 = std::env::var("SIM_STORE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut restarts = 0;
    for seed in 0..runs {
        let t = Arc::clone(&tally);
        let report = run_on_store(seed, |config, seed| {
            Box::new(RealStore::new(config, seed, t))
        });
        restarts += report.restarts;
    }
    let t = tally.lock().unwrap();
    println!("swarm on real storage: {runs} seeds, {t:?}");
    assert_eq!(t.restarts as usize, restarts);
    if runs >= 20 {
        assert!(
            t.snapshots > 0 && t.failed_snapshots > 0 && t.torn_tails > 0,
            "{t:?}"
        );
        assert!(t.full_appends > 0, "{t:?}");
    }
}
