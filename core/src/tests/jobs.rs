//! The job lifecycle (DESIGN.md §13): lookup in every state, retention by count and age,
//! progress, results, waiting for a job, cancellation in each state, and the dedup modes.
//! Each rule is driven through `handle` with a hand-moved clock; every step checks invariants.

use serde_json::json;

use super::Rig;
use crate::{
    Command, DedupMode, EngineConfig, Error, Event, Job, JobState, Json, Keep, MessageId,
    NackAction, PublishMessage, Published, QueueConfig, Reply, json_message,
};

fn job(r: &mut Rig, id: MessageId) -> Result<Job, Error> {
    match r.cmd(Command::GetJob {
        queue: "q".into(),
        message_id: id,
    })? {
        Reply::Job(j) => Ok(*j),
        other => panic!("{other:?}"),
    }
}

fn state(r: &mut Rig, id: MessageId) -> JobState {
    job(r, id).expect("job found").state
}

fn ack_with(r: &mut Rig, d: &crate::Delivery, result: serde_json::Value) -> Result<Reply, Error> {
    r.cmd(Command::Ack {
        queue: "q".into(),
        message_id: d.message_id,
        lease: Some(d.lease),
        result: Some(Json::from_value(&result)),
    })
}

fn cancel(r: &mut Rig, id: MessageId) -> Result<JobState, Error> {
    match r.cmd(Command::Cancel {
        queue: "q".into(),
        message_id: id,
    })? {
        Reply::Cancelled { state } => Ok(state),
        other => panic!("{other:?}"),
    }
}

fn progress(r: &mut Rig, d: &crate::Delivery, p: serde_json::Value) -> Result<Reply, Error> {
    r.cmd(Command::Progress {
        queue: "q".into(),
        message_id: d.message_id,
        lease: Some(d.lease),
        progress: Json::from_value(&p),
        extend_ms: None,
    })
}

fn keep(count: u64, age_ms: u64) -> QueueConfig {
    QueueConfig {
        keep_completed: Keep { count, age_ms },
        keep_cancelled: Keep { count, age_ms },
        ..QueueConfig::default()
    }
}

#[test]
fn a_job_is_found_in_every_state_with_its_times_progress_and_result() {
    let mut r = Rig::new();
    let delayed = match r
        .publish_with(
            "q",
            PublishMessage {
                delay_ms: Some(500),
                ..json_message(json!({ "d": 1 }))
            },
        )
        .unwrap()
    {
        Reply::Published(p) => p.message_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(state(&mut r, delayed), JobState::Delayed);
    let id = r.publish("q", 1, 5);
    let j = job(&mut r, id).unwrap();
    assert_eq!(
        (j.state, j.attempts, j.started_at),
        (JobState::Ready, 0, None)
    );
    assert_eq!(j.message.unwrap().to_value(), json!({ "n": 1 }));
    r.now += 10;
    let d = r.consume_one("q");
    let j = job(&mut r, id).unwrap();
    assert_eq!(j.state, JobState::InFlight);
    assert_eq!(j.started_at, Some(crate::Millis(r.now)));
    assert_eq!(j.attempts, 1);
    progress(&mut r, &d, json!({ "pct": 50 })).unwrap();
    r.now += 5;
    ack_with(&mut r, &d, json!({ "url": "x" })).unwrap();
    let j = job(&mut r, id).unwrap();
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.result.unwrap().to_value(), json!({ "url": "x" }));
    assert_eq!(j.progress.unwrap().to_value(), json!({ "pct": 50 }));
    assert_eq!(j.finished_at, Some(crate::Millis(r.now)));
    assert_eq!(j.started_at, Some(crate::Millis(r.now - 5)));
    assert_eq!(r.stats("q").kept_jobs, 1);
    // A rejected job is found in the DLQ.
    r.advance(500);
    let d = r.consume_one("q");
    assert_eq!(d.message_id, delayed);
    r.nack("q", &d, false);
    let j = job(&mut r, delayed).unwrap();
    assert_eq!(j.state, JobState::DeadLettered);
    assert_eq!(j.last_error.as_deref(), Some("boom"));
    let unknown = MessageId::from_u128(7);
    assert_eq!(
        job(&mut r, unknown).unwrap_err().code(),
        "message_not_found"
    );
}

#[test]
fn retention_forgets_the_oldest_past_its_count_and_all_past_their_age() {
    let mut r = Rig::new();
    r.create("q", keep(2, 1_000));
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(r.publish("q", n, 5));
        let d = r.consume_one("q");
        r.ack("q", &d).unwrap();
        r.now += 100;
    }
    assert_eq!(job(&mut r, ids[0]).unwrap_err().code(), "message_not_found");
    assert_eq!(state(&mut r, ids[1]), JobState::Completed);
    assert_eq!(r.stats("q").kept_jobs, 2);
    // ids[1] finished 200 ms ago, ids[2] 100 ms ago: the timer forgets each at its age.
    r.advance(800);
    assert!(job(&mut r, ids[1]).is_err());
    assert_eq!(state(&mut r, ids[2]), JobState::Completed);
    r.advance(100);
    assert!(job(&mut r, ids[2]).is_err());
    assert_eq!(r.engine.timer_count(), 0, "no retention timer is left");
    // A count of 0 keeps nothing; lowering the count forgets at once.
    r.create("z", keep(0, 1_000));
    let id = r.publish("z", 1, 5);
    let d = r.consume_one("z");
    r.ack("z", &d).unwrap();
    assert!(
        r.cmd(Command::GetJob {
            queue: "z".into(),
            message_id: id
        })
        .is_err()
    );
}

#[test]
fn lowering_the_kept_count_forgets_at_once() {
    let mut r = Rig::new();
    for n in 0..3 {
        r.publish("q", n, 5);
        let d = r.consume_one("q");
        r.ack("q", &d).unwrap();
    }
    assert_eq!(r.stats("q").kept_jobs, 3);
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(keep(1, 60_000)),
    });
    assert_eq!(r.stats("q").kept_jobs, 1);
}

#[test]
fn progress_is_kept_reported_and_bounded() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.events();
    let reply = r
        .cmd(Command::Progress {
            queue: "q".into(),
            message_id: d.message_id,
            lease: Some(d.lease),
            progress: Json::from_value(&json!(42)),
            extend_ms: Some(60_000),
        })
        .unwrap();
    assert_eq!(
        reply,
        Reply::Progressed {
            cancelled: false,
            lease_deadline: crate::Millis(r.now + 60_000)
        }
    );
    assert!(r.events().iter().any(
        |e| matches!(e, Event::Progress { progress, .. } if progress.to_value() == json!(42))
    ));
    let big = json!("x".repeat(5_000));
    assert_eq!(
        progress(&mut r, &d, big).unwrap_err().code(),
        "payload_too_large"
    );
    let stale = crate::Delivery {
        lease: crate::LeaseToken(999),
        ..d.clone()
    };
    assert_eq!(
        progress(&mut r, &stale, json!(1)).unwrap_err().code(),
        "lease_mismatch"
    );
    let huge = json!("y".repeat(70_000));
    assert_eq!(
        ack_with(&mut r, &d, huge).unwrap_err().code(),
        "payload_too_large"
    );
    assert_eq!(r.stats("q").in_flight, 1, "a refused ack changes nothing");
}

fn wait(r: &mut Rig, id: MessageId, wait_ms: u64) -> Reply {
    r.ok(Command::WaitJob {
        queue: "q".into(),
        message_id: id,
        wait_ms,
    })
}

#[test]
fn a_wait_is_answered_when_the_job_finishes_or_its_time_is_up() {
    let mut r = Rig::new();
    let id = r.publish("q", 1, 5);
    let Reply::Waiting { waiter_id } = wait(&mut r, id, 10_000) else {
        panic!("parks")
    };
    let d = r.consume_one("q");
    r.events();
    ack_with(&mut r, &d, json!("done")).unwrap();
    let events = r.events();
    let Some(Event::JobWaited { waiter_id: w, job }) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(*w, waiter_id);
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result.as_ref().unwrap().to_value(), json!("done"));
    // A finished job answers at once.
    assert!(matches!(wait(&mut r, id, 10_000), Reply::Job(j) if j.state == JobState::Completed));
    // A wait that ends answers with the job as it is.
    let other = r.publish("q", 2, 5);
    let Reply::Waiting { waiter_id } = wait(&mut r, other, 100) else {
        panic!()
    };
    r.advance(100);
    assert!(matches!(
        r.events().as_slice(),
        [Event::JobWaited { waiter_id: w, job }] if *w == waiter_id && job.state == JobState::Ready
    ));
    // A purged job ends its wait with a timeout; a cancelled wait is withdrawn.
    let Reply::Waiting { waiter_id } = wait(&mut r, other, 1_000) else {
        panic!()
    };
    r.ok(Command::Purge { queue: "q".into() });
    assert_eq!(r.events(), vec![Event::WaitTimedOut { waiter_id }]);
    let third = r.publish("q", 3, 5);
    let Reply::Waiting { waiter_id } = wait(&mut r, third, 1_000) else {
        panic!()
    };
    assert_eq!(
        r.ok(Command::CancelWait { waiter_id }),
        Reply::WaitCancelled { cancelled: true }
    );
    assert_eq!(
        r.engine.timer_count(),
        1,
        "only the retention timer is left"
    );
}

#[test]
fn a_dead_lettered_job_answers_its_waiters() {
    let mut r = Rig::new();
    let id = r.publish("q", 1, 5);
    let Reply::Waiting { .. } = wait(&mut r, id, 10_000) else {
        panic!()
    };
    let d = r.consume_one("q");
    r.events();
    r.nack("q", &d, false);
    assert!(matches!(
        r.events().as_slice(),
        [Event::JobWaited { job, .. }] if job.state == JobState::DeadLettered
    ));
}

#[test]
fn ready_and_delayed_jobs_are_cancelled_at_once() {
    let mut r = Rig::new();
    let ready = r.publish("q", 1, 5);
    let delayed = match r
        .publish_with(
            "q",
            PublishMessage {
                delay_ms: Some(100),
                ..json_message(json!(2))
            },
        )
        .unwrap()
    {
        Reply::Published(p) => p.message_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(cancel(&mut r, ready).unwrap(), JobState::Cancelled);
    assert_eq!(cancel(&mut r, delayed).unwrap(), JobState::Cancelled);
    assert_eq!(state(&mut r, ready), JobState::Cancelled);
    r.advance(200);
    assert!(
        r.consume("q", 10).is_empty(),
        "a cancelled job is never delivered"
    );
    let s = r.stats("q");
    assert_eq!((s.depth, s.cancelled_total), (0, 2));
    let err = cancel(&mut r, ready).unwrap_err();
    assert_eq!(err.code(), "already_finished");
}

#[test]
fn an_in_flight_job_is_marked_and_settled_as_cancelled_by_its_delivery_end() {
    let mut r = Rig::new();
    // Settled by an ack (its result kept), a nack, and a lease expiry; never retried.
    for end in 0..3 {
        let id = r.publish("q", end, 5);
        let d = r.consume_one("q");
        assert_eq!(cancel(&mut r, id).unwrap(), JobState::InFlight);
        assert!(job(&mut r, id).unwrap().cancel_requested);
        assert_eq!(
            progress(&mut r, &d, json!(1)).unwrap(),
            Reply::Progressed {
                cancelled: true,
                lease_deadline: d.lease_deadline
            }
        );
        let extended = r.ok(Command::Extend {
            queue: "q".into(),
            message_id: id,
            lease_ms: 1_000,
            lease: Some(d.lease),
        });
        assert!(matches!(
            extended,
            Reply::Extended {
                cancelled: true,
                ..
            }
        ));
        match end {
            0 => {
                ack_with(&mut r, &d, json!("partial")).unwrap();
                let j = job(&mut r, id).unwrap();
                assert_eq!(j.result.unwrap().to_value(), json!("partial"));
            }
            1 => assert_eq!(
                r.nack("q", &d, true),
                Reply::Nacked {
                    action: NackAction::Cancelled
                }
            ),
            _ => r.advance(1_000),
        }
        assert_eq!(state(&mut r, id), JobState::Cancelled);
        assert!(r.consume("q", 10).is_empty(), "never retried");
    }
    assert_eq!(r.stats("q").cancelled_total, 3);
    assert_eq!(r.stats("q").acked_total, 0);
}

fn keyed(n: u64, key: &str, dedup: Option<DedupMode>) -> PublishMessage {
    PublishMessage {
        idempotency_key: Some(key.into()),
        dedup,
        ..json_message(json!({ "n": n }))
    }
}

fn published(r: &mut Rig, m: PublishMessage) -> Published {
    match r.publish_with("q", m).unwrap() {
        Reply::Published(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_until_finished_key_holds_past_the_window_and_is_released_when_the_job_ends() {
    let mut r = Rig::with(EngineConfig {
        idempotency_window_ms: 100,
        ..EngineConfig::default()
    });
    let first = published(&mut r, keyed(1, "k", Some(DedupMode::UntilFinished)));
    r.advance(1_000);
    let again = published(&mut r, keyed(2, "k", Some(DedupMode::UntilFinished)));
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    let d = r.consume_one("q");
    r.ack("q", &d).unwrap();
    let next = published(&mut r, keyed(3, "k", Some(DedupMode::UntilFinished)));
    assert!(!next.duplicate, "released when the job finished");
    assert_ne!(next.message_id, first.message_id);
    // Cancellation finishes a job too.
    cancel(&mut r, next.message_id).unwrap();
    assert!(!published(&mut r, keyed(4, "k", Some(DedupMode::UntilFinished))).duplicate);
    assert_eq!(r.engine.idempotency_keys(), 1);
    // Deleting the queue releases its keys.
    r.ok(Command::DeleteQueue { queue: "q".into() });
    assert_eq!(r.engine.idempotency_keys(), 0);
}

fn debounced(n: u64, delay_ms: u64) -> PublishMessage {
    PublishMessage {
        idempotency_key: Some("d".into()),
        debounce: true,
        delay_ms: Some(delay_ms),
        ..json_message(json!({ "n": n }))
    }
}

#[test]
fn a_debounced_publish_replaces_a_delayed_job_and_restarts_its_delay() {
    let mut r = Rig::new();
    let first = published(&mut r, debounced(1, 100));
    r.advance(80);
    let second = published(&mut r, debounced(2, 100));
    assert!(second.replaced);
    assert_eq!(second.message_id, first.message_id);
    r.advance(80);
    assert!(r.consume("q", 10).is_empty(), "the delay restarted");
    r.advance(20);
    let got = r.consume("q", 10);
    assert_eq!(got.len(), 1);
    assert_eq!(super::n_of(&got[0]), 2, "the trailing call wins");
    // Once the job runs, a debounced publish starts a new one.
    let third = published(&mut r, debounced(3, 100));
    assert!(!third.replaced && !third.duplicate);
    assert_ne!(third.message_id, first.message_id);
    assert_eq!(r.stats("q").depth, 1);
    let refused = r.publish_with(
        "q",
        PublishMessage {
            delay_ms: None,
            ..debounced(4, 1)
        },
    );
    assert_eq!(refused.unwrap_err().code(), "invalid_argument");
}

fn run(r: &mut Rig, log: &mut Vec<(u64, Command)>, cmd: Command) -> Reply {
    log.push((r.now, cmd.clone()));
    r.ok(cmd)
}

#[test]
fn lifecycle_state_survives_a_snapshot_and_a_replay() {
    let mut r = Rig::new();
    let log = &mut Vec::new();
    let publish = Command::Publish {
        queue: "q".into(),
        message: json_message(json!({ "n": 1 })),
    };
    let Reply::Published(p) = run(&mut r, log, publish) else {
        panic!()
    };
    let id = p.message_id;
    let consume = Command::Consume {
        queue: "q".into(),
        wait_ms: 0,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    };
    let Reply::Messages { messages } = run(&mut r, log, consume) else {
        panic!()
    };
    let lease = messages[0].lease;
    let steps = vec![
        Command::Progress {
            queue: "q".into(),
            message_id: id,
            lease: Some(lease),
            progress: Json::from_value(&json!(5)),
            extend_ms: None,
        },
        Command::PublishBatch {
            queue: "q".into(),
            messages: vec![keyed(9, "u", Some(DedupMode::UntilFinished))],
        },
        Command::WaitJob {
            queue: "q".into(),
            message_id: id,
            wait_ms: 5_000,
        },
        Command::Cancel {
            queue: "q".into(),
            message_id: id,
        },
        Command::Ack {
            queue: "q".into(),
            message_id: id,
            lease: Some(lease),
            result: Some(Json::from_value(&json!("r"))),
        },
    ];
    for cmd in steps {
        r.now += 7;
        run(&mut r, log, cmd);
    }
    assert_eq!(state(&mut r, id), JobState::Cancelled);
    let digest = r.engine.state_digest();
    let text = serde_json::to_string(&r.engine).unwrap();
    let restored: crate::Engine = serde_json::from_str(&text).unwrap();
    assert_eq!(restored.state_digest(), digest);
    restored.check_invariants();
    let bytes = rmp_serde::to_vec_named(&r.engine).unwrap();
    let restored: crate::Engine = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(restored.state_digest(), digest);
    // Snapshots encode structs as arrays: a field left out in the middle would shift the rest.
    let bytes = rmp_serde::to_vec(&r.engine).unwrap();
    let restored: crate::Engine = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(restored.state_digest(), digest);
    let mut replayed = crate::Engine::new(EngineConfig::default(), 7);
    for (now, cmd) in log.drain(..) {
        let _ = replayed.handle(crate::Millis(now), cmd);
    }
    assert_eq!(replayed.state_digest(), digest);
}
