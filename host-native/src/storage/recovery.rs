//! Recovery: the newest valid snapshot, then the log after it, replayed through the engine.
//!
//! Replay also rebuilds the host state a restart must clean up: the long-poll waiters,
//! streaming sessions and connection-bound subscribers still registered at the end of the log (their clients are
//! gone). The engine task cancels them in its first turn; their leases run to their deadlines.

use std::path::Path;

use synap_core::{Command, Engine, EngineConfig, Event, Millis, Reply};

use super::fs::Fs;
use super::log::{Scan, scan};
use super::record::Record;
use super::snapshot::{HostState, load_newest};

/// What recovery rebuilt.
pub(crate) struct Recovered {
    /// The engine, as it was after the last durable record.
    pub(crate) engine: Engine,
    /// Waiters and subscribers to cancel, and the seed.
    pub(crate) host: HostState,
    /// Index the next record gets.
    pub(crate) next_index: u64,
    /// The latest recorded time: the clock must not start before it.
    pub(crate) last_now: Millis,
    /// The snapshot's index, if one was loaded.
    pub(crate) snapshot_index: Option<u64>,
    /// Records replayed after the snapshot.
    pub(crate) replayed: u64,
    /// What recovery had to skip or cut, for the log.
    pub(crate) warnings: Vec<String>,
}

/// Rebuilds the engine from `dir`. An empty directory gives a fresh engine on `config` with
/// `fresh_seed`. `repair` cuts the log at damage before its tail instead of refusing to start.
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    config: &EngineConfig,
    fresh_seed: u64,
    repair: bool,
) -> Result<Recovered, String> {
    let mut warnings = Vec::new();
    let snap = load_newest(fs, dir, &mut warnings)
        .map_err(|e| format!("cannot read snapshots in {}: {e}", dir.display()))?;
    let after = snap.as_ref().map_or(0, |s| s.index);
    let Scan {
        seed,
        records,
        last_index,
        warnings: log_warnings,
        ..
    } = scan(fs, dir, after, repair).map_err(|e| {
        format!("{e} (start with --repair-log to cut the log there, losing what follows)")
    })?;
    warnings.extend(log_warnings);
    if let Some(first) = records.first().filter(|r| r.index != after + 1) {
        return Err(format!(
            "command log of {} has a gap: the snapshot covers up to record {after}, the log \
             resumes at record {}",
            dir.display(),
            first.index
        ));
    }
    let snapshot_index = snap.as_ref().map(|s| s.index);
    let (mut engine, mut host, mut last_now) = match snap {
        Some(s) => (s.engine, s.host, Millis(s.now)),
        None => {
            let seed = seed.unwrap_or(fresh_seed);
            let host = HostState {
                seed,
                ..HostState::default()
            };
            (Engine::new(config.clone(), seed), host, Millis(0))
        }
    };
    let mut replayed = 0;
    let mut refused = 0;
    for rec in records {
        last_now = last_now.max(rec.now());
        refused += replay(&mut engine, &mut host, rec);
        replayed += 1;
    }
    if refused > 0 {
        warnings.push(format!(
            "{refused} logged commands were refused on replay (the state may differ from before)"
        ));
    }
    Ok(Recovered {
        engine,
        host,
        next_index: last_index + 1,
        last_now,
        snapshot_index,
        replayed,
        warnings,
    })
}

/// Applies one record; tracks waiters and connection-bound subscribers. Returns how many of
/// its commands the engine refused (none, for a log this server wrote).
pub(crate) fn replay(engine: &mut Engine, host: &mut HostState, rec: Record) -> u64 {
    let now = rec.now();
    let mut refused = 0;
    for cmd in rec.commands {
        let track = track_of(&cmd);
        match (track, engine.handle(now, cmd)) {
            (Track::Waiter, Ok(Reply::Waiting { waiter_id })) => {
                host.waiters.insert(waiter_id);
            }
            (Track::Cancel(w), _) => {
                host.waiters.remove(&w);
            }
            (Track::Subscriber, Ok(Reply::Subscribed { subscriber_id, .. })) => {
                host.subscribers.insert(subscriber_id);
            }
            (Track::Unsubscribe(id), _) => {
                host.subscribers.remove(&id);
            }
            (Track::Session, Ok(Reply::Attached { session_id, .. })) => {
                host.sessions.insert(session_id);
            }
            (Track::Detach(id), _) => {
                host.sessions.remove(&id);
            }
            (_, Err(_)) => refused += 1,
            _ => {}
        }
        while let Some(event) = engine.poll_event() {
            match event {
                Event::Delivered { waiter_id, .. }
                | Event::WaitTimedOut { waiter_id }
                | Event::JobWaited { waiter_id, .. } => {
                    host.waiters.remove(&waiter_id);
                }
                Event::SessionEnded { session_id } => {
                    host.sessions.remove(&session_id);
                }
                _ => {}
            }
        }
    }
    refused
}

enum Track {
    None,
    Waiter,
    Cancel(synap_core::WaiterId),
    Subscriber,
    Unsubscribe(String),
    Session,
    Detach(synap_core::SessionId),
}

/// Which host state a command may change. A connection's subscriber is the one the server
/// registers for a push connection: no idle timer and credit to push with.
fn track_of(cmd: &Command) -> Track {
    match cmd {
        Command::Consume { wait_ms, .. } | Command::WaitJob { wait_ms, .. } if *wait_ms > 0 => {
            Track::Waiter
        }
        Command::CancelWait { waiter_id } => Track::Cancel(*waiter_id),
        Command::Subscribe {
            subscriber_id: None,
            idle_ms: None,
            credit,
            ..
        } if *credit > 0 => Track::Subscriber,
        Command::Unsubscribe {
            subscriber_id,
            patterns: None,
        } => Track::Unsubscribe(subscriber_id.clone()),
        Command::Attach { .. } => Track::Session,
        Command::Detach { session_id, .. } => Track::Detach(*session_id),
        _ => Track::None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use synap_core::{Json, PublishMessage};

    use super::super::fs::RealFs;
    use super::super::log::LogWriter;
    use super::super::record::encode_record;
    use super::super::snapshot::{encode, install};
    use super::*;

    fn publish(n: u32) -> Command {
        Command::Publish {
            queue: "q".into(),
            message: PublishMessage {
                message: Some(Json::from_trusted_text(n.to_string())),
                ..PublishMessage::default()
            },
        }
    }

    fn consume(wait_ms: u64, queue: &str) -> Command {
        Command::Consume {
            queue: queue.into(),
            wait_ms,
            lease_ms: Some(10_000),
            max_messages: 1,
            consumer_id: None,
        }
    }

    /// A live engine and the log of its turns, as the engine task writes it.
    struct Live {
        engine: Engine,
        log: LogWriter,
        next: u64,
    }

    impl Live {
        fn new(dir: &Path) -> Self {
            Self {
                engine: Engine::new(EngineConfig::default(), 77),
                log: LogWriter::open(Arc::new(RealFs), dir, 77, 1, 1 << 20).unwrap(),
                next: 1,
            }
        }

        fn turn(&mut self, now: u64, cmds: Vec<Command>) {
            let mut logged = Vec::new();
            for c in cmds {
                if self.engine.handle(Millis(now), c.clone()).is_ok() && c.is_mutation() {
                    logged.push(c);
                }
                while self.engine.poll_event().is_some() {}
            }
            let mut buf = Vec::new();
            encode_record(&mut buf, self.next, Millis(now), &logged);
            self.log.append(&buf, 1).unwrap();
            self.next += 1;
        }
    }

    fn digest_at(mut e: Engine, now: u64) -> u64 {
        e.handle_timeout(Millis(now));
        e.state_digest()
    }

    #[test]
    fn replay_rebuilds_the_state_and_the_waiters_to_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Live::new(dir.path());
        live.turn(1_000, vec![publish(1), publish(2), publish(3)]);
        live.turn(1_500, vec![consume(0, "q")]);
        live.turn(
            2_000,
            vec![Command::CreateQueue {
                queue: "idle".into(),
                config: None,
            }],
        );
        live.turn(2_100, vec![consume(30_000, "idle")]);
        let r = recover(&RealFs, dir.path(), &EngineConfig::default(), 1, false).unwrap();
        assert_eq!(
            (r.next_index, r.last_now, r.replayed),
            (5, Millis(2_100), 4)
        );
        assert_eq!(r.host.seed, 77, "the seed comes from the log's head");
        assert_eq!(r.host.waiters.len(), 1, "the parked consumer is found");
        assert_eq!(
            digest_at(r.engine, 5_000),
            digest_at(live.engine.clone(), 5_000)
        );
    }

    #[test]
    fn replay_finds_the_streaming_sessions_still_attached() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Live::new(dir.path());
        let attach = |credit| Command::Attach {
            queue: "q".into(),
            consumer_id: None,
            credit,
            lease_ms: Some(60_000),
        };
        live.turn(1_000, vec![publish(1), attach(4), attach(2)]);
        let r = recover(&RealFs, dir.path(), &EngineConfig::default(), 1, false).unwrap();
        assert_eq!(r.host.sessions.len(), 2);
        let first = *r.host.sessions.first().unwrap();
        live.turn(
            1_100,
            vec![Command::Detach {
                session_id: first,
                give_back: false,
            }],
        );
        let r = recover(&RealFs, dir.path(), &EngineConfig::default(), 1, false).unwrap();
        assert_eq!(r.host.sessions.len(), 1, "a detached session is not stale");
        assert_eq!(
            digest_at(r.engine, 9_000),
            digest_at(live.engine.clone(), 9_000)
        );
    }

    #[test]
    fn a_snapshot_and_the_log_after_it_give_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Live::new(dir.path());
        live.turn(1_000, vec![publish(1), publish(2)]);
        live.turn(1_100, vec![consume(0, "q")]);
        let host = HostState {
            seed: 77,
            ..HostState::default()
        };
        let bytes = encode(2, 1_100, &live.engine, &host);
        live.log.roll().unwrap();
        install(&RealFs, dir.path(), 2, &bytes).unwrap();
        live.turn(40_000, vec![publish(3), consume(0, "q")]);
        let r = recover(&RealFs, dir.path(), &EngineConfig::default(), 1, false).unwrap();
        assert_eq!(
            (r.snapshot_index, r.replayed, r.next_index),
            (Some(2), 1, 4)
        );
        assert_eq!(
            digest_at(r.engine, 90_000),
            digest_at(live.engine.clone(), 90_000)
        );
    }

    #[test]
    fn an_empty_directory_gives_a_fresh_engine_on_the_fresh_seed() {
        let dir = tempfile::tempdir().unwrap();
        let r = recover(&RealFs, dir.path(), &EngineConfig::default(), 5, false).unwrap();
        assert_eq!((r.next_index, r.host.seed, r.snapshot_index), (1, 5, None));
        let fresh = Engine::new(EngineConfig::default(), 5);
        assert_eq!(r.engine.state_digest(), fresh.state_digest());
    }

    #[test]
    fn a_corrupt_middle_stops_recovery_with_file_offset_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Live::new(dir.path());
        for i in 0..4 {
            live.turn(1_000 + i, vec![publish(u32::try_from(i).unwrap())]);
        }
        let path = dir.path().join(super::super::log::segment_name(1));
        let mut b = std::fs::read(&path).unwrap();
        b[60] ^= 0xff;
        std::fs::write(&path, b).unwrap();
        let e = recover(&RealFs, dir.path(), &EngineConfig::default(), 1, false)
            .err()
            .expect("refused");
        assert!(e.contains("offset") && e.contains("--repair-log"), "{e}");
        let r = recover(&RealFs, dir.path(), &EngineConfig::default(), 1, true).unwrap();
        assert_eq!(r.warnings.len(), 1);
        assert!(r.next_index < 5);
    }
}
