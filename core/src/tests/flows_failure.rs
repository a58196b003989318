//! Flows when children fail (DESIGN.md §14): each `on_child_failure` mode, a child failing
//! while its siblings are in flight, retries before a child succeeds, a parent cancelled
//! mid-flow, a child's queue (and a parent's queue) deleted, a child expiring or purged. The
//! rule under test: whatever ends a job, its parent hears of it, so no parent waits forever.
//! Method: as `flows.rs`, with the invariants checked after every step.

use serde_json::json;

use super::Rig;
use super::flows::{
    ack_with, add, flow, job, lookup, name, nodes, pipeline_ids, state_of, video_pipeline,
};
use crate::{
    Command, DeadLetterReason, FlowJobState, FlowTree, JobState, OnChildFailure, QueueConfig, Reply,
};

fn three_children(mode: OnChildFailure) -> FlowTree {
    job("join", "parent")
        .with_children(vec![job("work", "a"), job("work", "b"), job("work", "c")])
        .on_failure(mode)
}

#[test]
fn under_fail_a_dead_lettered_child_fails_the_parent_and_cancels_its_siblings() {
    let mut r = Rig::new();
    let added = add(&mut r, three_children(OnChildFailure::Fail));
    let parent = added.root.message_id;
    let ds = r.consume("work", 2); // a and b in flight, c ready
    r.nack(&ds[0].queue.clone(), &ds[0], false);
    let info = flow(&mut r, added.flow_id);
    assert_eq!(info.root.state, FlowJobState::DeadLettered);
    assert_eq!(info.root.reason, Some(DeadLetterReason::ChildFailed));
    let [a, b, c] = [0, 1, 2].map(|i| info.root.children[i].state);
    assert_eq!(a, FlowJobState::DeadLettered);
    assert_eq!(
        info.root.children[0].reason,
        Some(DeadLetterReason::Rejected)
    );
    assert_eq!(
        b,
        FlowJobState::InFlight,
        "b settles when its delivery ends"
    );
    assert_eq!(c, FlowJobState::Cancelled, "c was ready: cancelled at once");
    // The parent is in its queue's DLQ, as a lookup and the DLQ listing show.
    let dead = lookup(&mut r, "join", parent);
    assert_eq!(dead.state, JobState::DeadLettered);
    assert_eq!(dead.dead_letter_reason, Some(DeadLetterReason::ChildFailed));
    assert_eq!(dead.message.unwrap().to_value(), json!({"name": "parent"}));
    let s = r.stats("join");
    assert_eq!(
        (s.dead_letter_count, s.waiting_children, s.depth),
        (1, 0, 0)
    );
    // b's worker learns of the cancel and its ack settles it as cancelled.
    let Reply::Progressed { cancelled, .. } = r.ok(Command::Progress {
        queue: "work".into(),
        message_id: ds[1].message_id,
        lease: Some(ds[1].lease),
        progress: crate::Json::from_value(&json!(50)),
        extend_ms: None,
    }) else {
        panic!("progress")
    };
    assert!(cancelled);
    ack_with(&mut r, &ds[1], json!("late"));
    let info = flow(&mut r, added.flow_id);
    assert_eq!(info.root.children[1].state, FlowJobState::Cancelled);
    assert!(
        r.consume("work", 5).is_empty(),
        "nothing of the flow runs on"
    );
    assert!(r.consume("join", 5).is_empty());
    assert_eq!(r.engine.flow_held_bytes(), 0);
}

#[test]
fn under_continue_the_parent_runs_with_every_childs_state() {
    let mut r = Rig::new();
    let added = add(&mut r, three_children(OnChildFailure::Continue));
    let ds = r.consume("work", 3);
    ack_with(&mut r, &ds[0], json!("ok-a"));
    r.nack(&ds[1].queue.clone(), &ds[1], false);
    assert!(r.consume("join", 1).is_empty(), "c is still in flight");
    assert_eq!(
        lookup(&mut r, "join", added.root.message_id).state,
        JobState::WaitingChildren
    );
    ack_with(&mut r, &ds[2], json!("ok-c"));
    let p = r.consume_one("join");
    let children = p.children.expect("children");
    let states: Vec<_> = children.iter().map(|c| c.state).collect();
    assert_eq!(
        states,
        [
            FlowJobState::Completed,
            FlowJobState::DeadLettered,
            FlowJobState::Completed
        ]
    );
    assert_eq!(children[1].reason, Some(DeadLetterReason::Rejected));
    assert_eq!(children[1].result, None);
    assert_eq!(
        children[2].result.as_ref().unwrap().to_value(),
        json!("ok-c")
    );
}

#[test]
fn under_ignore_failed_children_are_left_out() {
    let mut r = Rig::new();
    let added = add(&mut r, three_children(OnChildFailure::Ignore));
    let ds = r.consume("work", 3);
    r.nack(&ds[0].queue.clone(), &ds[0], false);
    r.ok(Command::Cancel {
        queue: "work".into(),
        message_id: ds[1].message_id,
    });
    r.nack(&ds[1].queue.clone(), &ds[1], true); // settles the cancel
    ack_with(&mut r, &ds[2], json!("only-c"));
    let p = r.consume_one("join");
    let children = p.children.expect("children");
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].message_id, added.root.children[2].message_id);
    // All failed: the parent still runs, with no children listed.
    let added = add(&mut r, three_children(OnChildFailure::Ignore));
    for d in r.consume("work", 3) {
        r.nack(&d.queue.clone(), &d, false);
    }
    let p = r.consume_one("join");
    assert_eq!(p.message_id, added.root.message_id);
    assert_eq!(p.children, Some(Vec::new()));
}

#[test]
fn a_child_retried_before_it_succeeds_is_completed_for_its_parent() {
    let mut r = Rig::new();
    r.create(
        "work",
        QueueConfig {
            max_retries: 3,
            ..QueueConfig::default()
        },
    );
    let added = add(&mut r, three_children(OnChildFailure::Fail));
    let mut ds = r.consume("work", 3);
    for d in &ds[1..] {
        ack_with(&mut r, d, json!(name(d)));
    }
    // a fails twice (a nack, a lease expiry) and then succeeds.
    r.nack(&ds[0].queue.clone(), &ds[0], true);
    ds[0] = r.consume_one("work");
    assert_eq!(ds[0].retry_count, 1);
    r.advance(30_000); // the default lease ends
    assert_eq!(
        lookup(&mut r, "join", added.root.message_id).state,
        JobState::WaitingChildren
    );
    let third = r.consume_one("work");
    assert_eq!(third.retry_count, 2);
    ack_with(&mut r, &third, json!("a at last"));
    let p = r.consume_one("join");
    let children = p.children.expect("children");
    assert!(children.iter().all(|c| c.state == FlowJobState::Completed));
    assert_eq!(
        children[0].result.as_ref().unwrap().to_value(),
        json!("a at last")
    );
}

#[test]
fn a_child_failing_while_its_siblings_are_in_flight_fails_the_chain_up_to_the_root() {
    let mut r = Rig::new();
    let added = add(&mut r, video_pipeline(OnChildFailure::Fail));
    let (notify, package, renditions) = pipeline_ids(&added);
    let ds = r.consume("transcode", 3);
    ack_with(&mut r, &ds[0], json!(1));
    // 720p is rejected while 1080p is in flight.
    r.nack(&ds[1].queue.clone(), &ds[1], false);
    let info = flow(&mut r, added.flow_id);
    assert_eq!(state_of(&info, package), FlowJobState::DeadLettered);
    assert_eq!(
        state_of(&info, notify),
        FlowJobState::DeadLettered,
        "the failure climbs"
    );
    assert_eq!(info.root.reason, Some(DeadLetterReason::ChildFailed));
    assert_eq!(state_of(&info, renditions[0]), FlowJobState::Completed);
    assert_eq!(state_of(&info, renditions[2]), FlowJobState::InFlight);
    assert!(info.finished_at.is_some(), "the flow ended with its root");
    r.advance(30_000); // 1080p's lease ends: it settles as cancelled, not retried
    let info = flow(&mut r, added.flow_id);
    assert_eq!(state_of(&info, renditions[2]), FlowJobState::Cancelled);
    assert_eq!(r.stats("notify").dead_letter_count, 1);
}

#[test]
fn cancelling_a_parent_mid_flow_cancels_its_unfinished_descendants() {
    let mut r = Rig::new();
    let added = add(&mut r, video_pipeline(OnChildFailure::Fail));
    let (notify, package, renditions) = pipeline_ids(&added);
    let ds = r.consume("transcode", 2);
    ack_with(&mut r, &ds[0], json!(1));
    let Reply::Cancelled { state } = r.ok(Command::Cancel {
        queue: "notify".into(),
        message_id: notify,
    }) else {
        panic!("cancel")
    };
    assert_eq!(state, JobState::Cancelled);
    let info = flow(&mut r, added.flow_id);
    assert_eq!(state_of(&info, notify), FlowJobState::Cancelled);
    assert_eq!(state_of(&info, package), FlowJobState::Cancelled);
    assert_eq!(state_of(&info, renditions[0]), FlowJobState::Completed);
    assert_eq!(state_of(&info, renditions[1]), FlowJobState::InFlight);
    assert_eq!(state_of(&info, renditions[2]), FlowJobState::Cancelled);
    assert_eq!(
        lookup(&mut r, "package", package).state,
        JobState::Cancelled
    );
    assert_eq!(lookup(&mut r, "notify", notify).state, JobState::Cancelled);
    let Err(e) = r.cmd(Command::Cancel {
        queue: "notify".into(),
        message_id: notify,
    }) else {
        panic!("a second cancel is refused")
    };
    assert_eq!(e.code(), "already_finished");
    r.nack(&ds[1].queue.clone(), &ds[1], true);
    let info = flow(&mut r, added.flow_id);
    assert!(nodes(&info).iter().all(|n| n.state.is_finished()));
    for q in ["transcode", "package", "notify"] {
        assert_eq!(r.stats(q).depth + r.stats(q).in_flight, 0, "{q}");
    }
}

#[test]
fn cancelling_a_middle_parent_is_a_failed_child_of_the_root() {
    let mut r = Rig::new();
    let added = add(&mut r, video_pipeline(OnChildFailure::Continue));
    let (notify, package, _) = pipeline_ids(&added);
    r.ok(Command::Cancel {
        queue: "package".into(),
        message_id: package,
    });
    assert_eq!(
        r.stats("transcode").depth,
        0,
        "the renditions were cancelled"
    );
    let n = r.consume_one("notify");
    assert_eq!(n.message_id, notify);
    assert_eq!(n.children.unwrap()[0].state, FlowJobState::Cancelled);
}

#[test]
fn a_childs_queue_deleted_counts_as_a_failure() {
    let mut r = Rig::new();
    let tree = job("join", "p").with_children(vec![job("gone", "a"), job("work", "b")]);
    let cont = add(&mut r, tree.clone().on_failure(OnChildFailure::Continue));
    let fail = add(&mut r, tree.on_failure(OnChildFailure::Fail));
    r.ok(Command::DeleteQueue {
        queue: "gone".into(),
    });
    let info = flow(&mut r, fail.flow_id);
    assert_eq!(info.root.state, FlowJobState::DeadLettered);
    assert_eq!(info.root.children[0].state, FlowJobState::QueueDeleted);
    assert_eq!(info.root.children[1].state, FlowJobState::Cancelled);
    let d = r.consume_one("work");
    assert_eq!(d.message_id, cont.root.children[1].message_id);
    ack_with(&mut r, &d, json!("b"));
    let p = r.consume_one("join");
    assert_eq!(p.message_id, cont.root.message_id);
    let states: Vec<_> = p.children.unwrap().iter().map(|c| c.state).collect();
    assert_eq!(
        states,
        [FlowJobState::QueueDeleted, FlowJobState::Completed]
    );
}

#[test]
fn a_parents_queue_deleted_cancels_its_children() {
    let mut r = Rig::new();
    let added = add(&mut r, video_pipeline(OnChildFailure::Continue));
    let (notify, package, renditions) = pipeline_ids(&added);
    let d = r.consume_one("transcode");
    r.ok(Command::DeleteQueue {
        queue: "package".into(),
    });
    let info = flow(&mut r, added.flow_id);
    assert_eq!(state_of(&info, package), FlowJobState::QueueDeleted);
    assert_eq!(state_of(&info, renditions[0]), FlowJobState::InFlight);
    assert_eq!(state_of(&info, renditions[1]), FlowJobState::Cancelled);
    assert_eq!(r.stats("transcode").depth, 0);
    // The root hears of its lost child and runs (continue).
    let n = r.consume_one("notify");
    assert_eq!(n.message_id, notify);
    assert_eq!(n.children.unwrap()[0].state, FlowJobState::QueueDeleted);
    ack_with(&mut r, &d, json!("late")); // the in-flight rendition settles as cancelled
    assert_eq!(
        state_of(&flow(&mut r, added.flow_id), renditions[0]),
        FlowJobState::Cancelled
    );
}

#[test]
fn a_child_that_expires_or_is_purged_fails() {
    let mut r = Rig::new();
    let tree = job("join", "p")
        .with_children(vec![
            FlowTree {
                ttl_ms: Some(500),
                ..job("slow", "a")
            },
            job("work", "b"),
        ])
        .on_failure(OnChildFailure::Continue);
    let added = add(&mut r, tree.clone());
    r.advance(600);
    assert_eq!(
        flow(&mut r, added.flow_id).root.children[0].state,
        FlowJobState::Expired
    );
    r.ok(Command::Purge {
        queue: "work".into(),
    });
    let p = r.consume_one("join");
    let children = p.children.unwrap();
    assert_eq!(
        children.iter().map(|c| c.state).collect::<Vec<_>>(),
        [FlowJobState::Expired, FlowJobState::Purged]
    );
    assert_eq!(children[0].reason, Some(DeadLetterReason::Expired));
    // Under fail, the expiry dead-letters the parent and cancels the sibling.
    let added = add(&mut r, tree.on_failure(OnChildFailure::Fail));
    r.advance(600);
    let info = flow(&mut r, added.flow_id);
    assert_eq!(info.root.reason, Some(DeadLetterReason::ChildFailed));
    assert_eq!(info.root.children[1].state, FlowJobState::Cancelled);
}

#[test]
fn a_purge_of_several_siblings_at_once_settles_each_once() {
    let mut r = Rig::new();
    let added = add(&mut r, three_children(OnChildFailure::Fail));
    let purged = r.ok(Command::Purge {
        queue: "work".into(),
    });
    assert_eq!(purged, Reply::Purged { purged: 3 });
    let info = flow(&mut r, added.flow_id);
    assert_eq!(info.root.state, FlowJobState::DeadLettered);
    assert!(
        info.root
            .children
            .iter()
            .all(|c| c.state == FlowJobState::Purged),
        "{:?}",
        info.root.children
    );
    assert_eq!(r.stats("join").dead_letter_count, 1);
}
