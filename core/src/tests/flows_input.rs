//! Flows refused whole (DESIGN.md §14): depth and size limits, bad nodes anywhere in the
//! tree (named by their path), queues that may not be created, a full queue, the memory
//! budget, the `max_flows` limit and the sweep of finished flows that frees it. The rule under
//! test: a refused flow changes nothing (no queue, no job, no id drawn: the state digest is
//! unchanged), since a refused command is not logged.
//! Method: as `flows.rs`; the digest is compared before and after each refusal.

use serde_json::json;

use super::Rig;
use super::flows::{ack_with, add, job};
use crate::{Command, EngineConfig, Error, FlowTree, Keep, Limits, QueueConfig, Reply};

/// A chain `levels` deep on queue `q`.
fn chain(levels: usize) -> FlowTree {
    let mut tree = job("q", "leaf");
    for _ in 1..levels {
        tree = job("q", "link").with_children(vec![tree]);
    }
    tree
}

/// Refuses `tree` and checks that nothing changed.
fn refused(r: &mut Rig, tree: FlowTree) -> Error {
    // Time moving on is not the command's doing.
    r.engine.handle_timeout(crate::Millis(r.now));
    let before = r.engine.state_digest();
    let err = r
        .cmd(Command::AddFlow { flow: tree })
        .expect_err("the flow is refused");
    assert_eq!(
        r.engine.state_digest(),
        before,
        "a refused flow changed the state"
    );
    err
}

#[test]
fn depth_and_size_are_limited() {
    let mut r = Rig::new();
    add(&mut r, chain(8));
    assert_eq!(
        refused(&mut r, chain(9)),
        Error::LimitExceeded {
            what: "flow depth".into(),
            limit: 8
        }
    );
    let wide = |n: usize| job("q", "root").with_children((1..n).map(|_| job("q", "c")).collect());
    let added = add(&mut r, wide(1_000));
    assert_eq!(added.root.children.len(), 999);
    assert_eq!(
        refused(&mut r, wide(1_001)),
        Error::LimitExceeded {
            what: "jobs per flow".into(),
            limit: 1_000
        }
    );
}

#[test]
fn a_bad_node_deep_in_the_tree_refuses_the_whole_flow_and_names_it() {
    let mut r = Rig::new();
    let with_bad = |bad: FlowTree| {
        job("top", "root").with_children(vec![
            job("fresh-a", "a"),
            job("fresh-b", "b").with_children(vec![job("fresh-c", "c"), bad]),
        ])
    };
    let cases = [
        (
            FlowTree {
                priority: Some(10),
                ..job("fresh-d", "d")
            },
            "children[1].children[1].priority",
        ),
        (
            FlowTree {
                ttl_ms: Some(0),
                ..job("fresh-d", "d")
            },
            "children[1].children[1].ttl_ms",
        ),
        (job("bad name!", "d"), "children[1].children[1].queue"),
        (
            FlowTree {
                group: Some(String::new()),
                ..job("fresh-d", "d")
            },
            "children[1].children[1].group",
        ),
        (
            FlowTree {
                max_retries: Some(1_000_000),
                ..job("fresh-d", "d")
            },
            "children[1].children[1].max_retries",
        ),
    ];
    for (bad, field) in cases {
        match refused(&mut r, with_bad(bad)) {
            Error::InvalidArgument { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let big = FlowTree {
        message: crate::Json::from_value(&json!("x".repeat(2 << 20))),
        ..job("fresh-d", "d")
    };
    match refused(&mut r, with_bad(big)) {
        Error::PayloadTooLarge { what, .. } => assert_eq!(what, "children[1].children[1].message"),
        other => panic!("{other:?}"),
    }
    // Nothing was created: not even the queues of the good nodes.
    assert_eq!(r.ok(Command::ListQueues), Reply::Queues { queues: vec![] });
}

#[test]
fn queues_are_created_as_a_publish_would_create_them_or_the_flow_is_refused() {
    let mut r = Rig::with(EngineConfig {
        auto_create_queues: false,
        ..EngineConfig::default()
    });
    r.create("known", QueueConfig::default());
    let tree = job("known", "p").with_children(vec![job("known", "a"), job("unknown", "b")]);
    assert_eq!(
        refused(&mut r, tree),
        Error::QueueNotFound {
            queue: "unknown".into()
        }
    );
    assert_eq!(r.stats("known").depth, 0);
    let mut r = Rig::with(EngineConfig {
        limits: Limits {
            max_queues: 2,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    r.create("one", QueueConfig::default());
    let tree = job("one", "p").with_children(vec![job("two", "a"), job("three", "b")]);
    assert_eq!(
        refused(&mut r, tree),
        Error::LimitExceeded {
            what: "queues".into(),
            limit: 2
        }
    );
}

#[test]
fn a_full_queue_or_memory_budget_refuses_the_whole_flow() {
    let mut r = Rig::new();
    r.create(
        "small",
        QueueConfig {
            max_depth: 2,
            ..QueueConfig::default()
        },
    );
    let three = job("other", "p").with_children(vec![
        job("small", "a"),
        job("small", "b"),
        job("small", "c"),
    ]);
    assert!(matches!(refused(&mut r, three), Error::QueueFull { .. }));
    // Parents are not in `depth`: a full parent queue still takes a waiting parent.
    let fits = job("small", "p").with_children(vec![job("small", "a"), job("small", "b")]);
    add(&mut r, fits);
    let mut r = Rig::with(EngineConfig {
        limits: Limits {
            max_held_bytes: 100,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    let body = json!("y".repeat(40));
    let heavy_job = |n: &str| FlowTree {
        message: crate::Json::from_value(&body),
        ..job("m", n)
    };
    let heavy = heavy_job("p").with_children(vec![heavy_job("a"), heavy_job("b")]);
    assert!(matches!(refused(&mut r, heavy), Error::MemoryFull { .. }));
}

#[test]
fn max_flows_is_a_limit_and_forgotten_flows_make_room() {
    let mut r = Rig::with(EngineConfig {
        limits: Limits {
            max_flows: 2,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    let no_keep = Keep {
        count: 0,
        age_ms: 1,
    };
    r.create(
        "q",
        QueueConfig {
            keep_completed: no_keep,
            keep_cancelled: no_keep,
            ..QueueConfig::default()
        },
    );
    let tree = |q: &str| job(q, "p").with_children(vec![job(q, "c")]);
    let first = add(&mut r, tree("q"));
    add(&mut r, tree("other"));
    assert_eq!(
        refused(&mut r, tree("q")),
        Error::LimitExceeded {
            what: "flows".into(),
            limit: 2
        }
    );
    // The first flow finishes; its queue keeps no finished jobs, so nothing of it can be
    // looked up any more: it is not found, and its record makes room.
    let child = r.consume_one("q");
    assert_eq!(child.message_id, first.root.children[0].message_id);
    ack_with(&mut r, &child, json!(1));
    let parent = r.consume_one("q");
    ack_with(&mut r, &parent, json!(2));
    assert_eq!(r.engine.flow_count(), 2, "kept until a sweep");
    assert!(matches!(
        r.cmd(Command::GetFlow {
            flow_id: first.flow_id
        }),
        Err(Error::FlowNotFound { .. })
    ));
    let third = add(&mut r, tree("q"));
    assert_eq!(r.engine.flow_count(), 2);
    assert!(r.engine.flow(first.flow_id).is_none());
    assert!(r.engine.flow(third.flow_id).is_some());
    assert_eq!(
        r.engine.flow_of(first.root.message_id),
        None,
        "its index went with it"
    );
}

#[test]
fn a_finished_flow_is_kept_while_a_job_of_it_can_be_looked_up() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            keep_completed: Keep {
                count: 10,
                age_ms: 60_000,
            },
            ..QueueConfig::default()
        },
    );
    let added = add(&mut r, job("q", "p").with_children(vec![job("q", "c")]));
    let c = r.consume_one("q");
    ack_with(&mut r, &c, json!("c"));
    let p = r.consume_one("q");
    ack_with(&mut r, &p, json!("p"));
    r.advance(30_000);
    let info = r.engine.flow(added.flow_id).expect("kept: its jobs are");
    // The child's result, no longer needed by the flow, is read from the kept job.
    assert_eq!(
        info.root.children[0].result.as_ref().unwrap().to_value(),
        json!("c")
    );
    r.advance(31_000);
    assert!(
        r.engine.flow(added.flow_id).is_none(),
        "its jobs were forgotten"
    );
    add(&mut r, job("q", "next"));
    assert_eq!(r.engine.flow_count(), 1, "the sweep forgot the old record");
}
