//! Goal: the sample as a flow (`client/examples/video_flow.rs`, DESIGN.md §14) runs two
//! uploads to completed flows (three renditions → package → notify), checked through
//! `synap-client` and a subscriber to the users' notifications.
//! Method: an in-memory `synap-server` on a free 127.0.0.1 port; the example is started against
//! it and killed by its PID if it outlives its bound. Every wait has a generous upper bound and
//! nothing asserts on elapsed time.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use synap_client::{FlowJobState, SynapClient};
use synap_tests::client_harness::{ChildGuard, client_example};
use synap_tests::server_harness::{Server, temp_file};

const NOTIFY: &str = "notify";
const PACKAGE: &str = "package";
const TRANSCODE: &str = "transcode";
const RENDITIONS: [&str; 3] = ["480p", "720p", "1080p"];

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_as_a_flow_completes_every_upload() {
    let server = Server::start();
    let c = client(&server).await;
    let mut sub = c.pubsub_subscribe(&["notifications.user.*"]).await.unwrap();
    let out_path = temp_file("log", "");
    let mut example = ChildGuard::spawn(
        Command::new(client_example("video_flow"))
            .args([
                "--url",
                &server.url(""),
                "--uploads",
                "2",
                "--work-scale",
                "0.01",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(Stdio::inherit()),
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = example.wait_timeout(Duration::from_secs(60));
        (status, example)
    })
    .await
    .unwrap()
    .0
    .expect("video_flow finished within 60 s");
    let out = std::fs::read_to_string(&out_path).unwrap();
    let _ = std::fs::remove_file(&out_path);
    assert!(status.success(), "{out}");

    let flows: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("flow ")?.split_once(' '))
        .collect();
    assert_eq!(
        flows.iter().map(|f| f.1).collect::<Vec<_>>(),
        ["completed"; 2],
        "{out}"
    );
    let transcodes = out
        .lines()
        .filter(|l| l.starts_with("      transcode ") && l.contains(" completed {\"resolution\""))
        .count();
    assert_eq!(transcodes, 6, "{out}");
    for (i, (flow_id, _)) in flows.iter().enumerate() {
        let video = format!("vid-{}", i + 1);
        let flow = c.flow_get(flow_id).await.unwrap();
        assert_eq!(flow.state, FlowJobState::Completed);
        let topic = format!("notifications.user.user-{}", i + 1);
        assert_eq!(flow.result, Some(json!({ "topic": topic })));
        let [package] = flow.children.as_slice() else {
            panic!("{flow:?}");
        };
        let urls: Vec<String> = RENDITIONS
            .iter()
            .map(|r| format!("s3://videos/{video}/{r}.mp4"))
            .collect();
        let manifest = format!("s3://videos/{video}/master.m3u8");
        assert_eq!(
            package.result,
            Some(json!({"manifest": manifest, "renditions": urls}))
        );
        let got: Vec<_> = package
            .children
            .iter()
            .map(|t| {
                (
                    t.queue.as_str(),
                    t.state,
                    t.result.as_ref().map(|r| r["resolution"].clone()),
                )
            })
            .collect();
        let want: Vec<_> = RENDITIONS
            .iter()
            .map(|r| (TRANSCODE, FlowJobState::Completed, Some(json!(r))))
            .collect();
        assert_eq!(got, want);
    }
    for (queue, acked) in [(TRANSCODE, 6), (PACKAGE, 2), (NOTIFY, 2)] {
        let s = c.queue_stats(queue).await.unwrap();
        let got = (s.acked_total, s.depth, s.in_flight, s.waiting_children);
        assert_eq!(got, (acked, 0, 0, 0), "{queue}");
    }
    let mut notes = Vec::new();
    for _ in 0..2 {
        let note = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a notification")
            .expect("subscription open")
            .unwrap();
        notes.push((note.topic, note.message["manifest"].clone()));
    }
    notes.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<_> = [1, 2]
        .map(|n| {
            let manifest = format!("s3://videos/vid-{n}/master.m3u8");
            (format!("notifications.user.user-{n}"), json!(manifest))
        })
        .to_vec();
    assert_eq!(notes, want);
}
