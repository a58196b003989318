//! Whole-engine properties: determinism from the seed, serialization round trips, the
//! command vocabulary's JSON form, clock clamping and observability events.

use serde_json::json;

use super::Rig;
use crate::{Command, Engine, EngineConfig, Event, Millis, ObservedKind, QueueConfig, Reply};

fn workload(r: &mut Rig) {
    r.create(
        "q",
        QueueConfig {
            retry_delays_ms: vec![50],
            backoff: None,
            max_retries: 1,
            ..QueueConfig::default()
        },
    );
    for n in 0..6 {
        r.publish("q", n, (n % 10) as u8);
    }
    let got = r.consume_as("q", 3, Some(100), Some("w"));
    r.ack("q", &got[0]).unwrap();
    r.nack("q", &got[1], true);
    r.ok(Command::KvSet {
        key: "k".into(),
        value: crate::Json::from_value(&json!({"a": 1})),
        ttl_ms: Some(500),
    });
}

#[test]
fn same_seed_same_ids_and_digest() {
    let mut a = Rig::new();
    let mut b = Rig::new();
    workload(&mut a);
    workload(&mut b);
    assert_eq!(a.engine.state_digest(), b.engine.state_digest());
    let mut c = Rig::new();
    c.engine = Engine::new(EngineConfig::default(), 8);
    workload(&mut c);
    assert_ne!(a.engine.state_digest(), c.engine.state_digest());
}

#[test]
fn a_restored_engine_has_the_same_digest_and_future() {
    let mut a = Rig::new();
    workload(&mut a);
    a.events();
    let text = serde_json::to_string(&a.engine).unwrap();
    let restored: Engine = serde_json::from_str(&text).unwrap();
    assert_eq!(restored.state_digest(), a.engine.state_digest());
    let mut b = Rig {
        engine: restored,
        now: a.now,
    };
    for r in [&mut a, &mut b] {
        r.advance(100);
        r.publish("q", 99, 5);
        let got = r.consume("q", 10);
        for d in &got {
            r.ack("q", d).unwrap();
        }
    }
    assert_eq!(a.engine.state_digest(), b.engine.state_digest());
    assert_eq!(a.events(), b.events());
}

#[test]
fn commands_have_a_snake_case_json_form() {
    let cmd: Command = serde_json::from_value(json!({
        "type": "publish", "queue": "video-processing", "message": {"video_id": 7},
        "priority": 9, "headers": {"tenant": "acme"}, "delay_ms": null
    }))
    .unwrap();
    let Command::Publish { queue, message } = &cmd else {
        panic!()
    };
    assert_eq!(queue, "video-processing");
    assert_eq!(message.priority, Some(9));
    assert_eq!(
        message.message.as_ref().unwrap().to_value(),
        json!({"video_id": 7})
    );
    let back = serde_json::to_value(&cmd).unwrap();
    assert_eq!(back["message"], json!({"video_id": 7}));
    let consume: Command =
        serde_json::from_value(json!({"type": "consume", "queue": "q"})).unwrap();
    assert_eq!(
        consume,
        Command::Consume {
            queue: "q".into(),
            wait_ms: 0,
            lease_ms: None,
            max_messages: 1,
            consumer_id: None
        }
    );
    let err = crate::Error::QueueNotFound { queue: "q".into() };
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"code": "queue_not_found", "queue": "q"})
    );
}

#[test]
fn time_never_goes_backwards() {
    let mut e = Engine::new(EngineConfig::default(), 1);
    e.handle_timeout(Millis(1_000));
    let reply = e.handle(
        Millis(500),
        Command::Publish {
            queue: "q".into(),
            message: crate::json_message(json!(1)),
        },
    );
    assert!(reply.is_ok());
    assert_eq!(e.now(), Millis(1_000));
    let Ok(Reply::Messages { messages }) = e.handle(
        Millis(10),
        Command::Consume {
            queue: "q".into(),
            wait_ms: 0,
            lease_ms: Some(100),
            max_messages: 1,
            consumer_id: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(messages[0].published_at, Millis(1_000));
    assert_eq!(messages[0].lease_deadline, Millis(1_100));
}

#[test]
fn handle_catches_up_on_skipped_timers() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_as("q", 1, Some(100), None).remove(0);
    // No handle_timeout call: the ack at the deadline must still see the lease as expired.
    r.now += 100;
    assert_eq!(r.ack("q", &d).unwrap_err().code(), "lease_mismatch");
}

#[test]
fn every_state_change_is_observed() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 0,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.nack("q", &d, true);
    r.ok(Command::DlqRetry {
        queue: "q".into(),
        message_ids: None,
    });
    let d = r.consume_one("q");
    r.ack("q", &d).unwrap();
    let kinds: Vec<ObservedKind> = std::iter::from_fn(|| r.engine.poll_event())
        .filter_map(|e| match e {
            Event::Observed(o) => Some(o.kind),
            _ => None,
        })
        .collect();
    use ObservedKind::*;
    assert_eq!(
        kinds,
        vec![
            Published,
            Delivered,
            Nacked,
            DeadLettered,
            Redriven,
            Delivered,
            Acked
        ]
    );
}

#[test]
fn timers_run_at_their_deadline_however_late_the_host_is() {
    let run = |late_ms: u64| {
        let mut r = Rig::new();
        r.create(
            "q",
            QueueConfig {
                retry_delays_ms: vec![1_000],
                ..QueueConfig::default()
            },
        );
        r.publish("q", 1, 5);
        r.consume_as("q", 1, Some(100), None);
        r.advance(100 + late_ms);
        (r.engine.poll_timeout(), r.stats("q").delayed)
    };
    let on_time = run(0);
    assert_eq!(on_time, (Some(Millis(1_000 + 100 + 1_000)), 1));
    assert_eq!(
        run(500),
        on_time,
        "the retry is due 1 s after the lease ended"
    );
}

#[test]
fn replaying_commands_alone_rebuilds_the_state() {
    let mut live = Rig::new();
    let mut log = Vec::new();
    let mut run = |r: &mut Rig, cmd: Command| {
        log.push((r.now, cmd.clone()));
        r.cmd(cmd)
    };
    run(
        &mut live,
        Command::CreateQueue {
            queue: "q".into(),
            config: Some(Box::new(QueueConfig {
                retry_delays_ms: vec![70],
                ..QueueConfig::default()
            })),
        },
    )
    .unwrap();
    for n in 0..4 {
        run(
            &mut live,
            Command::Publish {
                queue: "q".into(),
                message: crate::json_message(json!(n)),
            },
        )
        .unwrap();
    }
    run(
        &mut live,
        Command::Consume {
            queue: "q".into(),
            wait_ms: 0,
            lease_ms: Some(50),
            max_messages: 3,
            consumer_id: None,
        },
    )
    .unwrap();
    live.advance(55);
    live.advance(20);
    live.advance(100);
    run(
        &mut live,
        Command::Consume {
            queue: "q".into(),
            wait_ms: 0,
            lease_ms: Some(50),
            max_messages: 1,
            consumer_id: Some("w".into()),
        },
    )
    .unwrap();
    live.advance(10);
    live.events();
    let mut replayed = Engine::new(EngineConfig::default(), 7);
    for (now, cmd) in log {
        let _ = replayed.handle(Millis(now), cmd);
    }
    replayed.handle_timeout(Millis(live.now));
    while replayed.poll_event().is_some() {}
    assert_eq!(replayed.state_digest(), live.engine.state_digest());
}
