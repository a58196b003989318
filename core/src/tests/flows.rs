//! Flows (DESIGN.md §14), the happy path: the video pipeline (three renditions, then the
//! package, then the notification) as a 3-level tree across three queues; what parents show
//! while they wait (lookup, stats, nothing deliverable), and what their deliveries carry on
//! every delivery path (an immediate consume, a parked waiter, a session push).
//! Method: the engine driven through `handle` with a hand-moved clock (`Rig`), invariants
//! (flows' included) checked after every step; helpers here serve the other `flows_*` files.

use serde_json::{Value, json};

use super::Rig;
use crate::{
    Command, Delivery, Event, FlowAdded, FlowChild, FlowId, FlowInfo, FlowJobRef, FlowJobState,
    FlowNodeInfo, FlowTree, Job, JobState, Json, MessageId, OnChildFailure, Reply,
};

/// A job `{"name": name}` on `queue`, without children.
pub(super) fn job(queue: &str, name: &str) -> FlowTree {
    FlowTree::job(queue, json!({ "name": name }))
}

/// The video pipeline: `notify` waits for `package`, which waits for three renditions.
pub(super) fn video_pipeline(mode: OnChildFailure) -> FlowTree {
    let renditions = ["480p", "720p", "1080p"]
        .map(|r| job("transcode", r))
        .to_vec();
    job("notify", "notify")
        .with_children(vec![
            job("package", "package")
                .with_children(renditions)
                .on_failure(mode),
        ])
        .on_failure(mode)
}

pub(super) fn add(r: &mut Rig, tree: FlowTree) -> FlowAdded {
    match r.ok(Command::AddFlow { flow: tree }) {
        Reply::FlowAdded(a) => *a,
        other => panic!("unexpected reply {other:?}"),
    }
}

pub(super) fn flow(r: &mut Rig, flow_id: FlowId) -> FlowInfo {
    match r.ok(Command::GetFlow { flow_id }) {
        Reply::Flow(f) => *f,
        other => panic!("unexpected reply {other:?}"),
    }
}

pub(super) fn lookup(r: &mut Rig, queue: &str, id: MessageId) -> Job {
    match r.ok(Command::GetJob {
        queue: queue.into(),
        message_id: id,
    }) {
        Reply::Job(j) => *j,
        other => panic!("unexpected reply {other:?}"),
    }
}

pub(super) fn ack_with(r: &mut Rig, d: &Delivery, result: Value) {
    r.ok(Command::Ack {
        queue: d.queue.to_string(),
        message_id: d.message_id,
        lease: Some(d.lease),
        result: Some(Json::from_value(&result)),
    });
}

/// The name a flow job was published with.
pub(super) fn name(d: &Delivery) -> String {
    d.message.as_ref().expect("a JSON body").to_value()["name"]
        .as_str()
        .expect("name")
        .to_owned()
}

/// Every node of a flow's tree, pre-order.
pub(super) fn nodes(info: &FlowInfo) -> Vec<&FlowNodeInfo> {
    fn walk<'a>(n: &'a FlowNodeInfo, out: &mut Vec<&'a FlowNodeInfo>) {
        out.push(n);
        for c in &n.children {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    walk(&info.root, &mut out);
    out
}

/// The state of one job of a flow.
pub(super) fn state_of(info: &FlowInfo, id: MessageId) -> FlowJobState {
    nodes(info)
        .into_iter()
        .find(|n| n.message_id == id)
        .expect("a job of the flow")
        .state
}

/// The package and rendition ids of a pipeline's reply.
pub(super) fn pipeline_ids(a: &FlowAdded) -> (MessageId, MessageId, Vec<MessageId>) {
    let package: &FlowJobRef = &a.root.children[0];
    let renditions = package.children.iter().map(|c| c.message_id).collect();
    (a.root.message_id, package.message_id, renditions)
}

#[test]
fn the_video_pipeline_runs_renditions_then_package_then_notify() {
    let mut r = Rig::new();
    let added = add(&mut r, video_pipeline(OnChildFailure::Fail));
    let (notify, package, renditions) = pipeline_ids(&added);
    assert_eq!(added.root.queue, "notify");
    assert_eq!(added.root.children[0].queue, "package");
    assert_eq!(renditions.len(), 3);
    assert!(
        added.root.children[0]
            .children
            .iter()
            .all(|c| c.queue == "transcode")
    );
    // Only the renditions are deliverable; the parents wait, counted apart from depth.
    let t = r.stats("transcode");
    assert_eq!((t.ready, t.waiting_children), (3, 0));
    for q in ["package", "notify"] {
        let s = r.stats(q);
        assert_eq!(
            (s.depth, s.waiting_children, s.published_total),
            (0, 1, 0),
            "{q}"
        );
    }
    assert!(r.consume("package", 10).is_empty());
    let waiting = lookup(&mut r, "package", package);
    assert_eq!(waiting.state, JobState::WaitingChildren);
    assert_eq!(waiting.flow_id, Some(added.flow_id));
    assert_eq!(waiting.parent_id, Some(notify));
    assert_eq!(waiting.children, renditions);
    assert_eq!(
        waiting.message.unwrap().to_value(),
        json!({"name": "package"})
    );
    let leaf = lookup(&mut r, "transcode", renditions[1]);
    assert_eq!((leaf.parent_id, leaf.children.len()), (Some(package), 0));
    let root = lookup(&mut r, "notify", notify);
    assert_eq!(
        (root.parent_id, root.children.clone()),
        (None, vec![package])
    );

    let ds = r.consume("transcode", 3);
    assert_eq!(
        ds.iter().map(name).collect::<Vec<_>>(),
        ["480p", "720p", "1080p"]
    );
    assert!(
        ds.iter().all(|d| d.children.is_none()),
        "a leaf carries no children"
    );
    // Acked out of order: the package waits for the last one.
    for i in [2, 0] {
        r.now += 10;
        ack_with(
            &mut r,
            &ds[i],
            json!({"url": format!("s3://v/{}", name(&ds[i]))}),
        );
        assert_eq!(
            lookup(&mut r, "package", package).state,
            JobState::WaitingChildren
        );
        assert!(r.consume("package", 1).is_empty());
    }
    let info = flow(&mut r, added.flow_id);
    assert_eq!(state_of(&info, renditions[0]), FlowJobState::Completed);
    assert_eq!(state_of(&info, renditions[1]), FlowJobState::InFlight);
    assert_eq!(state_of(&info, package), FlowJobState::WaitingChildren);
    r.now += 10;
    ack_with(&mut r, &ds[1], json!({"url": "s3://v/720p"}));
    let s = r.stats("package");
    assert_eq!((s.ready, s.waiting_children, s.published_total), (1, 0, 1));

    let p = r.consume_one("package");
    assert_eq!(name(&p), "package");
    let children = p
        .children
        .clone()
        .expect("a parent's delivery carries its children");
    let urls: Vec<Value> = children
        .iter()
        .map(|c| c.result.as_ref().expect("a result").to_value()["url"].clone())
        .collect();
    assert_eq!(
        urls,
        [
            json!("s3://v/480p"),
            json!("s3://v/720p"),
            json!("s3://v/1080p")
        ]
    );
    assert!(
        children
            .iter()
            .all(|c| c.state == FlowJobState::Completed && &*c.queue == "transcode")
    );
    assert_eq!(
        children.iter().map(|c| c.message_id).collect::<Vec<_>>(),
        renditions
    );
    assert_eq!(p.published_at.0, 1_000, "published with its flow");
    r.now += 10;
    ack_with(&mut r, &p, json!({"manifest": "s3://v/master.m3u8"}));

    let n = r.consume_one("notify");
    assert_eq!(
        n.children,
        Some(vec![FlowChild {
            message_id: package,
            queue: "package".into(),
            state: FlowJobState::Completed,
            result: Some(Json::from_value(&json!({"manifest": "s3://v/master.m3u8"}))),
            reason: None,
        }])
    );
    assert!(flow(&mut r, added.flow_id).finished_at.is_none());
    r.now += 10;
    ack_with(&mut r, &n, json!("sent"));
    let info = flow(&mut r, added.flow_id);
    assert_eq!(info.finished_at, Some(crate::Millis(1_050)));
    assert_eq!(info.root.state, FlowJobState::Completed);
    assert!(
        nodes(&info)
            .iter()
            .all(|n| n.state == FlowJobState::Completed)
    );
    // Results come from the lookups once the flow no longer needs to keep them.
    assert_eq!(info.root.result, Some(Json::from_value(&json!("sent"))));
    assert_eq!(
        r.engine.flow_held_bytes(),
        0,
        "a finished flow holds nothing"
    );
    assert_eq!(r.engine.flow_of(renditions[0]), Some(added.flow_id));
}

#[test]
fn a_parent_delivery_carries_children_to_waiters_and_sessions_too() {
    let mut r = Rig::new();
    let tree = job("join", "j1").with_children(vec![job("work", "a"), job("work", "b")]);
    let first = add(&mut r, tree.clone());
    // A long-poll consumer parks on the parent's queue before the parent is ready.
    let waiter = r.park("join", 1, 60_000);
    for d in r.consume("work", 2) {
        ack_with(&mut r, &d, json!(name(&d)));
    }
    let events = r.events();
    let delivered = events
        .iter()
        .find_map(|e| match e {
            Event::Delivered {
                waiter_id,
                messages,
            } if *waiter_id == waiter => Some(messages),
            _ => None,
        })
        .expect("the waiter got the parent");
    let children = delivered[0].children.as_ref().expect("children");
    assert_eq!(delivered[0].message_id, first.root.message_id);
    let results: Vec<Value> = children
        .iter()
        .map(|c| c.result.as_ref().unwrap().to_value())
        .collect();
    assert_eq!(results, [json!("a"), json!("b")]);
    ack_with(&mut r, &delivered[0], json!(null));
    // A streaming session is pushed the next parent with its children.
    let Reply::Attached { session_id, .. } = r.ok(Command::Attach {
        queue: "join".into(),
        consumer_id: None,
        credit: 5,
        lease_ms: None,
    }) else {
        panic!("attach")
    };
    let second = add(&mut r, tree);
    for d in r.consume("work", 2) {
        ack_with(&mut r, &d, json!(1));
    }
    let pushed: Vec<Delivery> = r
        .events()
        .into_iter()
        .flat_map(|e| match e {
            Event::Pushed {
                session_id: s,
                messages,
            } if s == session_id => messages,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].message_id, second.root.message_id);
    assert_eq!(pushed[0].children.as_ref().map(Vec::len), Some(2));
}

#[test]
fn a_released_parent_obeys_its_queues_flow_control_and_keeps_its_fields() {
    let mut r = Rig::new();
    r.create("join", crate::QueueConfig::default());
    r.ok(Command::PauseQueue {
        queue: "join".into(),
    });
    let tree = FlowTree {
        priority: Some(8),
        group: Some("video-7".into()),
        headers: [("trace".to_owned(), "t1".to_owned())].into(),
        max_retries: Some(0),
        ..job("join", "j")
    }
    .with_children(vec![job("work", "a")]);
    let added = add(&mut r, tree);
    let waiting = lookup(&mut r, "join", added.root.message_id);
    assert_eq!(
        (waiting.priority, waiting.group.as_deref()),
        (8, Some("video-7"))
    );
    let d = r.consume_one("work");
    ack_with(&mut r, &d, json!(1));
    assert_eq!(r.stats("join").ready, 1);
    assert!(
        r.consume("join", 1).is_empty(),
        "a paused queue delivers no parent"
    );
    r.ok(Command::ResumeQueue {
        queue: "join".into(),
    });
    let p = r.consume_one("join");
    assert_eq!(
        (p.priority, p.group.as_deref(), p.max_retries),
        (8, Some("video-7"), 0)
    );
    assert_eq!(p.headers.get("trace").map(String::as_str), Some("t1"));
}

#[test]
fn waiting_for_a_parent_answers_when_it_completes() {
    let mut r = Rig::new();
    let added = add(
        &mut r,
        job("join", "j").with_children(vec![job("work", "a")]),
    );
    let root = added.root.message_id;
    let Reply::Waiting { waiter_id } = r.ok(Command::WaitJob {
        queue: "join".into(),
        message_id: root,
        wait_ms: 60_000,
    }) else {
        panic!("a waiting parent is unfinished: the wait parks")
    };
    let d = r.consume_one("work");
    ack_with(&mut r, &d, json!(1));
    let p = r.consume_one("join");
    ack_with(&mut r, &p, json!("joined"));
    let job = r
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::JobWaited { waiter_id: w, job } if w == waiter_id => Some(job),
            _ => None,
        })
        .expect("the wait is answered");
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.flow_id, Some(added.flow_id));
    assert_eq!(job.children, vec![added.root.children[0].message_id]);
}

#[test]
fn a_flow_of_one_job_is_a_plain_job_and_unknown_flows_are_not_found() {
    let mut r = Rig::new();
    let added = add(&mut r, job("solo", "s"));
    assert!(added.root.children.is_empty());
    let d = r.consume_one("solo");
    assert!(d.children.is_none());
    ack_with(&mut r, &d, json!(1));
    assert_eq!(
        flow(&mut r, added.flow_id).root.state,
        FlowJobState::Completed
    );
    let unknown = FlowId(uuid::Uuid::from_u128(7));
    assert_eq!(
        r.cmd(Command::GetFlow { flow_id: unknown }),
        Err(crate::Error::FlowNotFound {
            flow_id: unknown.to_string()
        })
    );
}
