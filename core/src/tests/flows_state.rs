//! Flows are engine state (DESIGN.md §14): a snapshot taken mid-flow (as JSON, as MessagePack
//! maps, and as MessagePack arrays as the server writes them) restores to the same digest and
//! the same future, and replaying the command log from the start rebuilds the same state.
//! Method: a run of flows in every stage (parents waiting, results kept for them, a failed
//! parent with a sibling still in flight, a cancelled parent) whose commands are logged; the
//! live engine, the restored ones and the replayed one then take the same further commands.

use serde_json::json;

use super::Rig;
use super::flows::{job, pipeline_ids, video_pipeline};
use crate::{
    Command, Delivery, Engine, EngineConfig, FlowJobState, Json, Millis, OnChildFailure, Reply,
};

/// A rig that logs every command with its time.
struct Logged {
    r: Rig,
    log: Vec<(u64, Command)>,
}

impl Logged {
    fn cmd(&mut self, cmd: Command) -> Reply {
        self.log.push((self.r.now, cmd.clone()));
        self.r.ok(cmd)
    }

    fn consume(&mut self, queue: &str, n: u32) -> Vec<Delivery> {
        match self.cmd(Command::Consume {
            queue: queue.into(),
            wait_ms: 0,
            lease_ms: Some(10_000),
            max_messages: n,
            consumer_id: None,
        }) {
            Reply::Messages { messages } => messages,
            other => panic!("{other:?}"),
        }
    }

    fn ack(&mut self, d: &Delivery, result: serde_json::Value) {
        self.cmd(Command::Ack {
            queue: d.queue.to_string(),
            message_id: d.message_id,
            lease: Some(d.lease),
            result: Some(Json::from_value(&result)),
        });
    }
}

/// The commands after the snapshot: every open flow runs to its end.
fn finish(e: &mut Engine, mut now: u64) -> u64 {
    let mut step = |e: &mut Engine, cmd: Command| {
        now += 100;
        e.handle(Millis(now), cmd)
    };
    for round in 0..6 {
        for q in ["transcode", "package", "notify", "work", "join"] {
            let reply = step(
                e,
                Command::Consume {
                    queue: q.into(),
                    wait_ms: 0,
                    lease_ms: Some(10_000),
                    max_messages: 10,
                    consumer_id: None,
                },
            );
            let Ok(Reply::Messages { messages }) = reply else {
                continue;
            };
            for d in messages {
                let children = d.children.as_ref().map_or(0, Vec::len);
                let ack = Command::Ack {
                    queue: d.queue.to_string(),
                    message_id: d.message_id,
                    lease: Some(d.lease),
                    result: Some(Json::from_value(
                        &json!({ "round": round, "children": children }),
                    )),
                };
                step(e, ack).expect("ack");
            }
        }
        e.check_invariants();
    }
    now
}

#[test]
fn a_flow_across_a_snapshot_and_a_replay_continues_exactly() {
    let mut l = Logged {
        r: Rig::with(EngineConfig::default()),
        log: Vec::new(),
    };
    let pipeline = match l.cmd(Command::AddFlow {
        flow: video_pipeline(OnChildFailure::Continue),
    }) {
        Reply::FlowAdded(a) => *a,
        other => panic!("{other:?}"),
    };
    let (_, package, _) = pipeline_ids(&pipeline);
    let failing = job("join", "f")
        .with_children(vec![job("work", "a"), job("work", "b")])
        .on_failure(OnChildFailure::Fail);
    l.cmd(Command::AddFlow { flow: failing });
    let cancelled = job("join", "x").with_children(vec![job("work", "c")]);
    let Reply::FlowAdded(cancelled) = l.cmd(Command::AddFlow { flow: cancelled }) else {
        panic!("add")
    };
    l.r.now += 50;
    let ds = l.consume("transcode", 2);
    l.ack(&ds[0], json!({"url": "s3://480p"}));
    l.ack(&ds[1], json!({"url": "s3://720p"}));
    let work = l.consume("work", 2);
    l.cmd(Command::Nack {
        queue: "work".into(),
        message_id: work[0].message_id,
        requeue: false,
        delay_ms: None,
        error: Some("bad input".into()),
        lease: Some(work[0].lease),
        snooze: false,
    });
    l.cmd(Command::Cancel {
        queue: "join".into(),
        message_id: cancelled.root.message_id,
    });
    l.r.advance(50);
    assert!(
        l.r.engine.flow_held_bytes() > 0,
        "waiting parents and kept results are held"
    );
    let info = l.r.engine.flow(pipeline.flow_id).expect("the flow");
    assert_eq!(
        super::flows::state_of(&info, package),
        FlowJobState::WaitingChildren
    );

    let digest = l.r.engine.state_digest();
    let now = l.r.now;
    let text = serde_json::to_string(&l.r.engine).expect("JSON");
    let from_json: Engine = serde_json::from_str(&text).expect("from JSON");
    let named: Engine =
        rmp_serde::from_slice(&rmp_serde::to_vec_named(&l.r.engine).unwrap()).expect("named");
    // Snapshots encode structs as arrays: a field left out in the middle would shift the rest.
    let arrays: Engine =
        rmp_serde::from_slice(&rmp_serde::to_vec(&l.r.engine).unwrap()).expect("arrays");
    let mut replayed = Engine::new(EngineConfig::default(), 7);
    for (at, cmd) in &l.log {
        replayed.handle(Millis(*at), cmd.clone()).expect("replays");
    }
    replayed.handle_timeout(Millis(now));
    let mut engines = vec![l.r.engine.clone(), from_json, named, arrays, replayed];
    for (i, e) in engines.iter().enumerate() {
        if e.state_digest() != digest {
            let a = serde_json::to_value(&l.r.engine).unwrap();
            let b = serde_json::to_value(e).unwrap();
            for (k, v) in a.as_object().unwrap() {
                if b[k] != *v {
                    panic!("engine {i}: {k} differs:\n{v}\n{}", b[k]);
                }
            }
        }
        assert_eq!(e.state_digest(), digest);
        e.check_invariants();
        assert_eq!(e.flow_held_bytes(), l.r.engine.flow_held_bytes());
    }
    let mut ends = Vec::new();
    for e in &mut engines {
        let end = finish(e, now);
        while e.poll_event().is_some() {}
        ends.push((e.state_digest(), end));
    }
    assert!(
        ends.iter().all(|x| *x == ends[0]),
        "the futures differ: {ends:?}"
    );
    // And the futures did run the flows to their ends.
    let e = &engines[0];
    let info = e.flow(pipeline.flow_id).expect("kept");
    assert_eq!(info.root.state, FlowJobState::Completed);
    assert!(
        super::flows::nodes(&info)
            .iter()
            .all(|n| n.state.is_finished())
    );
    assert_eq!(e.flow_held_bytes(), 0);
}

#[test]
fn flow_commands_round_trip_as_the_log_and_the_wasm_api_write_them() {
    let tree = crate::FlowTree {
        priority: Some(9),
        group: Some("user-7".into()),
        headers: [("trace".to_owned(), "t".to_owned())].into(),
        ttl_ms: Some(60_000),
        max_retries: Some(2),
        ..video_pipeline(OnChildFailure::Ignore)
    };
    let flow_id = crate::FlowId(uuid::Uuid::from_u128(42));
    for cmd in [
        Command::AddFlow { flow: tree },
        Command::GetFlow { flow_id },
    ] {
        let named: Command =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&cmd).unwrap()).expect("named");
        assert_eq!(named, cmd);
        let text = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), cmd);
        assert_eq!(cmd.is_mutation(), matches!(cmd, Command::AddFlow { .. }));
    }
    let v = serde_json::to_value(Command::AddFlow {
        flow: job("q", "a"),
    })
    .unwrap();
    assert_eq!(
        v,
        json!({"type": "add_flow", "flow": {"queue": "q", "message": {"name": "a"}, "on_child_failure": "fail"}})
    );
}
