//! Schedules (DESIGN.md §13): `every_ms` and cron timetables, upsert, list, delete, run now,
//! `start_at`/`end_at`/`max_runs`, one catch-up run after downtime (`Resume`), and a slot that
//! never yields two jobs across a replay. Driven through `handle` with a hand-moved clock.

use serde_json::json;

use super::Rig;
use crate::{Command, Engine, EngineConfig, Json, Millis, Reply, ScheduleInfo, ScheduleSpec};

fn every(ms: u64) -> ScheduleSpec {
    ScheduleSpec {
        every_ms: Some(ms),
        cron: None,
        message: Json::from_value(&json!({ "report": true })),
        priority: Some(7),
        headers: Default::default(),
        start_at: None,
        end_at: None,
        max_runs: None,
    }
}

fn put(r: &mut Rig, id: &str, spec: ScheduleSpec) -> Option<Millis> {
    match r.ok(Command::PutSchedule {
        queue: "q".into(),
        schedule_id: id.into(),
        schedule: spec,
    }) {
        Reply::ScheduleSet { next_run_at, .. } => next_run_at,
        other => panic!("{other:?}"),
    }
}

fn list(r: &mut Rig) -> Vec<ScheduleInfo> {
    match r.ok(Command::ListSchedules { queue: "q".into() }) {
        Reply::Schedules { schedules } => schedules,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_every_schedule_publishes_once_per_slot() {
    let mut r = Rig::new();
    let start = r.now;
    assert_eq!(
        put(&mut r, "hourly", every(1_000)),
        Some(Millis(start + 1_000))
    );
    r.advance(999);
    assert_eq!(r.stats("q").depth, 0);
    r.advance(1);
    r.advance(1_000);
    let got = r.consume("q", 10);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].priority, 7);
    let s = &list(&mut r)[0];
    assert_eq!((s.runs, s.last_run_at), (2, Some(Millis(start + 2_000))));
    assert_eq!(s.next_run_at, Some(Millis(start + 3_000)));
    assert_eq!(s.last_message_id, Some(got[1].message_id));
}

#[test]
fn a_cron_schedule_runs_on_its_utc_minutes() {
    let mut r = Rig::new();
    r.now = 0;
    let spec = ScheduleSpec {
        every_ms: None,
        cron: Some("*/5 * * * *".into()),
        ..every(1)
    };
    assert_eq!(put(&mut r, "c", spec), Some(Millis(300_000)));
    r.advance(600_000);
    assert_eq!(r.stats("q").depth, 2);
    assert_eq!(list(&mut r)[0].next_run_at, Some(Millis(900_000)));
    let bad = ScheduleSpec {
        every_ms: None,
        cron: Some("* * * * * *".into()),
        ..every(1)
    };
    let err = r
        .cmd(Command::PutSchedule {
            queue: "q".into(),
            schedule_id: "bad".into(),
            schedule: bad,
        })
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    let impossible = ScheduleSpec {
        every_ms: None,
        cron: Some("0 0 30 2 *".into()),
        ..every(1)
    };
    assert_eq!(put(&mut r, "never", impossible), None);
}

#[test]
fn upsert_list_delete_run_now_and_the_bounds() {
    let mut r = Rig::new();
    let start = r.now;
    let bounded = ScheduleSpec {
        start_at: Some(Millis(start + 5_000)),
        max_runs: Some(2),
        ..every(1_000)
    };
    assert_eq!(put(&mut r, "b", bounded), Some(Millis(start + 5_000)));
    r.advance(10_000);
    let s = &list(&mut r)[0];
    assert_eq!((s.runs, s.next_run_at), (2, None), "max_runs ends it");
    // Replacing keeps the history; `end_at` ends the timetable.
    let ended = ScheduleSpec {
        end_at: Some(Millis(r.now + 1_500)),
        max_runs: None,
        start_at: None,
        ..every(1_000)
    };
    assert!(put(&mut r, "b", ended).is_some());
    r.advance(5_000);
    let s = &list(&mut r)[0];
    assert_eq!((s.runs, s.next_run_at), (3, None));
    // Run now publishes one, keyed by the slot `now`, and counts it.
    let Reply::Published(p) = r.ok(Command::RunSchedule {
        queue: "q".into(),
        schedule_id: "b".into(),
    }) else {
        panic!()
    };
    assert!(!p.duplicate);
    let again = r.ok(Command::RunSchedule {
        queue: "q".into(),
        schedule_id: "b".into(),
    });
    assert!(
        matches!(again, Reply::Published(p) if p.duplicate),
        "one job per slot"
    );
    assert_eq!(list(&mut r)[0].runs, 4);
    assert_eq!(
        r.ok(Command::DeleteSchedule {
            queue: "q".into(),
            schedule_id: "b".into()
        }),
        Reply::ScheduleDeleted { deleted: true }
    );
    assert!(list(&mut r).is_empty());
    let err = r
        .cmd(Command::RunSchedule {
            queue: "q".into(),
            schedule_id: "b".into(),
        })
        .unwrap_err();
    assert_eq!(err.code(), "schedule_not_found");
}

#[test]
fn the_schedule_count_is_bounded() {
    let mut config = EngineConfig::default();
    config.limits.max_schedules = 2;
    let mut r = Rig::with(config);
    put(&mut r, "a", every(1_000));
    put(&mut r, "b", every(1_000));
    put(&mut r, "a", every(2_000));
    let err = r
        .cmd(Command::PutSchedule {
            queue: "q".into(),
            schedule_id: "c".into(),
            schedule: every(1_000),
        })
        .unwrap_err();
    assert_eq!(err.code(), "limit_exceeded");
}

#[test]
fn after_downtime_one_catch_up_run_is_made_not_one_per_missed_slot() {
    let mut r = Rig::new();
    put(&mut r, "s", every(1_000));
    r.advance(1_000);
    assert_eq!(r.stats("q").depth, 1);
    // Down for an hour: the host resumes with `Resume`.
    let since = r.engine.now();
    r.now += 3_600_000;
    assert_eq!(
        r.ok(Command::Resume { since }),
        Reply::Resumed { caught_up: 1 }
    );
    assert_eq!(r.stats("q").depth, 2, "one catch-up run");
    let s = &list(&mut r)[0];
    assert_eq!(s.runs, 2);
    assert!(s.next_run_at.unwrap().0 > r.now);
    // Without `Resume`, every slot's timer runs at its own deadline.
    r.now += 10_000;
    r.advance(0);
    assert_eq!(r.stats("q").depth, 12);
}

#[test]
fn a_replayed_log_makes_the_same_runs() {
    let mut r = Rig::new();
    let mut log = vec![(
        r.now,
        Command::PutSchedule {
            queue: "q".into(),
            schedule_id: "s".into(),
            schedule: every(1_000),
        },
    )];
    r.cmd(log[0].1.clone()).unwrap();
    // The host ran its timers (unlogged) through two slots, then went down.
    r.advance(2_500);
    let resume = Command::Resume {
        since: r.engine.now(),
    };
    r.now += 100_000;
    log.push((r.now, resume.clone()));
    assert_eq!(r.ok(resume), Reply::Resumed { caught_up: 1 });
    r.advance(1_000);
    assert_eq!(r.stats("q").depth, 4, "two slots, one catch-up, one more");
    let digest = r.engine.state_digest();
    let mut e = Engine::new(EngineConfig::default(), 7);
    for (now, cmd) in log {
        e.handle(Millis(now), cmd).unwrap();
    }
    e.handle_timeout(Millis(r.now));
    assert_eq!(e.state_digest(), digest);
    let text = serde_json::to_string(&r.engine).unwrap();
    let back: Engine = serde_json::from_str(&text).unwrap();
    assert_eq!(back.state_digest(), digest);
    back.check_invariants();
    let bytes = rmp_serde::to_vec(&r.engine).unwrap();
    let back: Engine = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back.state_digest(), digest);
}
