//! Goal: `synap-client` drives flows (DESIGN.md §14) against the real server: `flow_add`
//! answers every job it made, `flow_get` shows each job's state at every step, a parent's
//! delivery (REST consume and the streaming consumer) carries its children's states and
//! results, and a job lookup names its flow, parent and children; a failing child under
//! `fail` dead-letters its parent and cancels its siblings, `continue` and `ignore` deliver the
//! parent with and without the failed child; bad trees are refused and create nothing.
//! Method: each test starts its own in-memory `synap-server` on a free 127.0.0.1 port and uses
//! the client's public API only, acting as the workers itself. The video pipeline is the
//! guide's: `notify` waits for `package`, which waits for three `transcode` renditions.
//! (The sample as a flow is run by client_flows_example.rs.) Every wait has a generous upper bound and
//! nothing asserts on elapsed time.

use std::time::Duration;

use serde_json::{Value, json};
use synap_client::{
    ConsumeOptions, DeadLetterReason, Flow, FlowJobState, FlowNode, FlowRequest, JobState,
    NackOptions, OnChildFailure, PublishOptions, QueueMessage, StreamOptions, SynapClient,
};
use synap_tests::server_harness::Server;

const NOTIFY: &str = "notify";
const PACKAGE: &str = "package";
const TRANSCODE: &str = "transcode";
const RENDITIONS: [&str; 3] = ["480p", "720p", "1080p"];

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

fn node(queue: &str, message: Value, children: Vec<FlowRequest>) -> FlowRequest {
    FlowRequest {
        queue: queue.into(),
        message,
        children,
        ..FlowRequest::default()
    }
}

/// The video pipeline: notify ← package ← three transcodes.
fn pipeline(video: u64) -> FlowRequest {
    let transcodes = RENDITIONS
        .iter()
        .map(|r| node(TRANSCODE, json!({"video": video, "rendition": r}), vec![]))
        .collect();
    let package = node(
        PACKAGE,
        json!({"video": video, "step": "package"}),
        transcodes,
    );
    node(
        NOTIFY,
        json!({"video": video, "step": "notify"}),
        vec![package],
    )
}

/// Up to ten messages of `queue` under a 300 s lease, long-polling up to 10 s for the first.
async fn take(c: &SynapClient, queue: &str) -> Vec<QueueMessage<Value>> {
    let opts = ConsumeOptions {
        timeout: Some(Duration::from_secs(10)),
        ack_deadline: Some(Duration::from_secs(300)),
        ..ConsumeOptions::default()
    };
    c.queue_consume_batch(queue, 10, Some(opts))
        .await
        .expect("consume")
}

/// Nothing to take from `queue` right now.
async fn nothing_in(c: &SynapClient, queue: &str) {
    let got = c
        .queue_consume::<Value>(queue, None)
        .await
        .expect("consume");
    assert!(got.is_none(), "{queue} delivered {got:?}");
}

/// Every job of the flow below the root, depth first: (message id, state).
fn states(flow: &Flow) -> Vec<(String, FlowJobState)> {
    fn walk(nodes: &[FlowNode], out: &mut Vec<(String, FlowJobState)>) {
        for n in nodes {
            out.push((n.message_id.clone(), n.state));
            walk(&n.children, out);
        }
    }
    let mut out = Vec::new();
    walk(&flow.children, &mut out);
    out
}

fn url(rendition: &str) -> Value {
    json!({"url": format!("s3://videos/7/{rendition}.mp4")})
}

#[tokio::test]
async fn the_video_pipeline_runs_step_by_step_to_a_completed_tree() {
    use FlowJobState::{Completed, InFlight, WaitingChildren};
    let server = Server::start();
    let c = client(&server).await;
    let created = c.flow_add(&pipeline(7)).await.expect("flow_add");
    assert_eq!(created.queue, NOTIFY);
    let [package] = created.children.as_slice() else {
        panic!("one package job: {created:?}");
    };
    assert_eq!(package.queue, PACKAGE);
    let transcodes: Vec<String> = package
        .children
        .iter()
        .map(|t| {
            assert_eq!((t.queue.as_str(), t.children.len()), (TRANSCODE, 0));
            t.message_id.clone()
        })
        .collect();
    assert_eq!(transcodes.len(), 3);
    let (root, pkg) = (created.message_id.clone(), package.message_id.clone());

    // Added: the renditions are ready, package and notify wait.
    let flow = c.flow_get(&created.flow_id).await.expect("flow_get");
    assert_eq!(
        (flow.flow_id.as_str(), flow.message_id.as_str()),
        (created.flow_id.as_str(), root.as_str())
    );
    assert_eq!(
        (flow.state, flow.finished_at, flow.result.clone()),
        (WaitingChildren, None, None)
    );
    assert_eq!(flow.on_child_failure, OnChildFailure::Fail);
    let mut want = vec![(pkg.clone(), WaitingChildren)];
    want.extend(transcodes.iter().map(|t| (t.clone(), FlowJobState::Ready)));
    assert_eq!(states(&flow), want);

    // Lookups name the flow, the parent and the children.
    let job = c.job(PACKAGE, &pkg).await.unwrap();
    assert_eq!(job.state, JobState::WaitingChildren);
    assert_eq!(job.flow_id.as_deref(), Some(created.flow_id.as_str()));
    assert_eq!(job.parent_id.as_deref(), Some(root.as_str()));
    assert_eq!(job.children, transcodes);
    let job = c.job(NOTIFY, &root).await.unwrap();
    assert_eq!((job.parent_id, job.children), (None, vec![pkg.clone()]));
    let job = c.job(TRANSCODE, &transcodes[1]).await.unwrap();
    assert_eq!(
        (job.state, job.parent_id.as_deref()),
        (JobState::Ready, Some(pkg.as_str()))
    );
    assert!(job.children.is_empty());
    let stats = c.queue_stats(PACKAGE).await.unwrap();
    assert_eq!((stats.waiting_children, stats.depth), (1, 0));
    nothing_in(&c, PACKAGE).await;
    nothing_in(&c, NOTIFY).await;

    // The transcode workers: two finish, one is still at work.
    let mut renditions = take(&c, TRANSCODE).await;
    assert_eq!(renditions.len(), 3);
    renditions.sort_by_key(|m| transcodes.iter().position(|t| *t == m.id));
    for (m, r) in renditions.iter().zip(RENDITIONS) {
        assert_eq!(m.body["rendition"], r);
        assert!(m.children.is_none(), "a transcode has no children");
    }
    for (m, r) in renditions.iter().zip(RENDITIONS).take(2) {
        c.queue_ack_with_result(TRANSCODE, &m.id, m.lease, &url(r))
            .await
            .unwrap();
    }
    let flow = c.flow_get(&created.flow_id).await.unwrap();
    let s: Vec<FlowJobState> = states(&flow).into_iter().map(|(_, s)| s).collect();
    assert_eq!(s, [WaitingChildren, Completed, Completed, InFlight]);
    assert_eq!(flow.children[0].children[0].result, Some(url("480p")));
    nothing_in(&c, PACKAGE).await;
    let last = &renditions[2];
    c.queue_ack_with_result(TRANSCODE, &last.id, last.lease, &url("1080p"))
        .await
        .unwrap();

    // The package worker gets the three renditions' results, in the order given.
    let [delivery] = take(&c, PACKAGE)
        .await
        .try_into()
        .expect("one package delivery");
    assert_eq!(delivery.id, pkg);
    assert_eq!(delivery.body, json!({"video": 7, "step": "package"}));
    let children = delivery
        .children
        .clone()
        .expect("a parent's delivery has children");
    let got: Vec<_> = children
        .iter()
        .map(|ch| {
            (
                ch.message_id.clone(),
                ch.queue.as_str(),
                ch.state,
                ch.result.clone(),
                ch.reason,
            )
        })
        .collect();
    let want: Vec<_> = transcodes
        .iter()
        .zip(RENDITIONS)
        .map(|(t, r)| (t.clone(), TRANSCODE, Completed, Some(url(r)), None))
        .collect();
    assert_eq!(got, want);
    let flow = c.flow_get(&created.flow_id).await.unwrap();
    assert_eq!(
        (flow.state, flow.children[0].state),
        (WaitingChildren, InFlight)
    );
    let manifest = json!({"manifest": "s3://videos/7/master.m3u8"});
    c.queue_ack_with_result(PACKAGE, &delivery.id, delivery.lease, &manifest)
        .await
        .unwrap();

    // The notify worker streams: its delivery carries the package and its manifest.
    let opts = StreamOptions {
        prefetch: Some(1),
        ..StreamOptions::default()
    };
    let mut stream = c.queue_stream::<Value>(NOTIFY, opts).await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("notify delivered")
        .expect("stream open")
        .expect("a message");
    assert_eq!(note.id, root);
    let [child] = note
        .children
        .clone()
        .expect("children")
        .try_into()
        .expect("one child");
    assert_eq!((child.message_id, child.state), (pkg.clone(), Completed));
    assert_eq!(child.result, Some(manifest.clone()));
    stream.ack(&note.id, note.lease).await.unwrap();

    // The whole tree is completed, the results read back.
    let flow = c.flow_get(&created.flow_id).await.unwrap();
    assert_eq!(flow.state, Completed);
    assert!(flow.finished_at.is_some_and(|t| t >= flow.created_at));
    assert!(
        states(&flow).iter().all(|(_, s)| *s == Completed),
        "{flow:?}"
    );
    assert_eq!(flow.children[0].result, Some(manifest));
    let results: Vec<_> = flow.children[0]
        .children
        .iter()
        .map(|n| n.result.clone())
        .collect();
    assert_eq!(results, RENDITIONS.map(|r| Some(url(r))));
    let job = c.job(NOTIFY, &root).await.unwrap();
    assert_eq!(job.state, JobState::Completed);

    // A message outside any flow has no children and no flow.
    let plain = c
        .queue_publish(TRANSCODE, &json!({"video": 8}), PublishOptions::default())
        .await
        .unwrap();
    let [m] = take(&c, TRANSCODE).await.try_into().expect("one message");
    assert!(m.children.is_none());
    let job = c.job(TRANSCODE, &plain.message_id).await.unwrap();
    assert!(job.flow_id.is_none() && job.parent_id.is_none() && job.children.is_empty());
}

/// A parent with three children on their own queues, the last with a child of its own.
fn assembly(mode: Option<OnChildFailure>) -> FlowRequest {
    let leaf = |q: &str| node(q, json!({"part": q}), vec![]);
    let mut root = node(
        "assemble",
        json!({"step": "assemble"}),
        vec![
            leaf("part-a"),
            leaf("part-b"),
            node("part-c", json!({"part": "c"}), vec![leaf("part-g")]),
        ],
    );
    root.on_child_failure = mode;
    root
}

#[tokio::test]
async fn a_failing_child_under_fail_dead_letters_its_parent_and_cancels_the_rest() {
    let server = Server::start();
    let c = client(&server).await;
    let created = c.flow_add(&assembly(None)).await.unwrap();
    let ids: Vec<&str> = created
        .children
        .iter()
        .map(|j| j.message_id.as_str())
        .collect();
    let g = created.children[2].children[0].message_id.clone();

    // b is in flight when a fails: it is marked, and settles as cancelled.
    let [b] = take(&c, "part-b").await.try_into().expect("b");
    let [a] = take(&c, "part-a").await.try_into().expect("a");
    let reject = NackOptions {
        requeue: false,
        lease: a.lease,
        error: Some("corrupt input".into()),
        ..NackOptions::default()
    };
    c.queue_nack_with("part-a", &a.id, &reject).await.unwrap();

    let flow = c.flow_get(&created.flow_id).await.unwrap();
    use FlowJobState::{Cancelled, DeadLettered, InFlight};
    assert_eq!(
        (flow.state, flow.reason),
        (DeadLettered, Some(DeadLetterReason::ChildFailed))
    );
    assert!(flow.finished_at.is_some());
    let want = vec![
        (ids[0].to_owned(), DeadLettered),
        (ids[1].to_owned(), InFlight),
        (ids[2].to_owned(), Cancelled),
        (g.clone(), Cancelled),
    ];
    assert_eq!(states(&flow), want);
    assert_eq!(flow.children[0].reason, Some(DeadLetterReason::Rejected));
    assert_eq!(flow.children[1].reason, None);

    let cancelled = c
        .progress("part-b", &b.id, b.lease, &json!({"pct": 50}), None)
        .await
        .unwrap();
    assert!(cancelled, "b's worker learns that its job was cancelled");
    c.queue_ack_with_lease("part-b", &b.id, b.lease)
        .await
        .unwrap();
    let flow = c.flow_get(&created.flow_id).await.unwrap();
    assert_eq!(flow.children[1].state, Cancelled);

    // The parent is in its queue's DLQ, never delivered; the cancelled jobs neither.
    let job = c.job("assemble", &created.message_id).await.unwrap();
    assert_eq!(
        (job.state, job.dead_letter_reason),
        (JobState::DeadLettered, Some(DeadLetterReason::ChildFailed))
    );
    let dlq = c.dlq_list("assemble", 0, 10).await.unwrap();
    assert_eq!(dlq.messages.len(), 1);
    assert_eq!(
        (
            dlq.messages[0].message_id.as_str(),
            dlq.messages[0].reason.as_str()
        ),
        (created.message_id.as_str(), "child_failed")
    );
    for q in ["assemble", "part-c", "part-g"] {
        nothing_in(&c, q).await;
    }
    assert_eq!(
        c.job("part-g", &g).await.unwrap().state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn continue_delivers_the_parent_with_every_child_and_ignore_without_the_failed() {
    let server = Server::start();
    let c = client(&server).await;
    for mode in [OnChildFailure::Continue, OnChildFailure::Ignore] {
        let mut tree = node(
            "report",
            json!({"mode": format!("{mode:?}")}),
            vec![
                node("ok", json!({"n": 1}), vec![]),
                node("bad", json!({"n": 2}), vec![]),
            ],
        );
        tree.on_child_failure = Some(mode);
        let created = c.flow_add(&tree).await.unwrap();
        let [bad] = take(&c, "bad").await.try_into().expect("bad");
        let reject = NackOptions {
            requeue: false,
            lease: bad.lease,
            ..NackOptions::default()
        };
        c.queue_nack_with("bad", &bad.id, &reject).await.unwrap();
        let flow = c.flow_get(&created.flow_id).await.unwrap();
        assert_eq!(
            flow.state,
            FlowJobState::WaitingChildren,
            "{mode:?}: waits for ok"
        );
        let [ok] = take(&c, "ok").await.try_into().expect("ok");
        c.queue_ack_with_result("ok", &ok.id, ok.lease, &json!({"rows": 3}))
            .await
            .unwrap();

        let [parent] = take(&c, "report").await.try_into().expect("the parent");
        assert_eq!(parent.id, created.message_id);
        let children = parent.children.expect("children");
        let got: Vec<_> = children
            .iter()
            .map(|ch| {
                (
                    ch.message_id.as_str(),
                    ch.state,
                    ch.result.clone(),
                    ch.reason,
                )
            })
            .collect();
        let mut want = vec![(
            ok.id.as_str(),
            FlowJobState::Completed,
            Some(json!({"rows": 3})),
            None,
        )];
        if mode == OnChildFailure::Continue {
            want.push((
                bad.id.as_str(),
                FlowJobState::DeadLettered,
                None,
                Some(DeadLetterReason::Rejected),
            ));
        }
        assert_eq!(got, want, "{mode:?}");
        c.queue_ack_with_lease("report", &parent.id, parent.lease)
            .await
            .unwrap();
        let flow = c.flow_get(&created.flow_id).await.unwrap();
        assert_eq!(
            (flow.state, flow.on_child_failure),
            (FlowJobState::Completed, mode)
        );
        assert_eq!(
            flow.children[1].reason,
            Some(DeadLetterReason::Rejected),
            "the tree keeps it"
        );
    }
}

#[tokio::test]
async fn bad_trees_are_refused_and_create_nothing() {
    let server = Server::start();
    let c = client(&server).await;
    let refused = |e: synap_client::SynapError, code: &str, status: u16, path: &str| {
        assert_eq!((e.code(), e.status()), (Some(code), Some(status)), "{e}");
        assert!(e.to_string().contains(path), "{e} does not name {path}");
    };

    let null_message = node("a", json!(1), vec![node("b", Value::Null, vec![])]);
    let e = c.flow_add(&null_message).await.unwrap_err();
    refused(e, "invalid_argument", 400, "children[0].message");

    let mut bad_priority = pipeline(1);
    bad_priority.children[0].children[2].priority = Some(10);
    let e = c.flow_add(&bad_priority).await.unwrap_err();
    assert!(e.is_invalid_argument());
    refused(
        e,
        "invalid_argument",
        400,
        "children[0].children[2].priority",
    );

    let mut deep = node("deep", json!(9), vec![]);
    for level in (1..9).rev() {
        deep = node("deep", json!(level), vec![deep]);
    }
    let e = c.flow_add(&deep).await.unwrap_err();
    assert!(e.is_full(), "{e}");
    refused(e, "limit_exceeded", 429, "flow depth");

    let too_many = node(
        "wide",
        json!(0),
        (0..1000).map(|i| node("wide", json!(i), vec![])).collect(),
    );
    let e = c.flow_add(&too_many).await.unwrap_err();
    refused(e, "limit_exceeded", 429, "jobs per flow");

    // A TTL JSON cannot carry is refused before sending.
    let mut nan = pipeline(2);
    nan.children[0].ttl = Some(f64::NAN);
    let e = c.flow_add(&nan).await.unwrap_err();
    assert!(
        matches!(&e, synap_client::SynapError::Decode(m) if m.contains("children[0].ttl")),
        "{e}"
    );

    // Nothing above created a queue or a job.
    assert_eq!(c.queue_list().await.unwrap(), Vec::<String>::new());

    let e = c.flow_get("not-a-flow").await.unwrap_err();
    refused(e, "invalid_argument", 400, "flow_id");
    let e = c
        .flow_get("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    refused(e, "flow_not_found", 404, "flow not found");
}
