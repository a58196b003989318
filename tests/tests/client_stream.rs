//! Goal: the streaming consumer of `synap-client` (`GET /queue/{name}/ws`) receives pushed
//! messages within its prefetch credit, settles them with ack/nack/extend frames, and pipelines
//! publishes with in-order confirms.
//! Method: a fresh in-memory server per test. "No more than `prefetch` outstanding" is checked
//! by waiting a short while for an extra message that a correct server never sends, then
//! acking one and requiring the extra message to arrive (with a generous bound).

use std::time::Duration;

use synap_client::{
    NackAction, NackOptions, PublishOptions, QueueConfig, QueueMessage, QueueStream, RetryPosition,
    StreamOptions, SynapClient,
};
use synap_tests::server_harness::Server;

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

async fn next(stream: &mut QueueStream<u32>) -> QueueMessage<u32> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a pushed message within 10 s")
        .expect("stream open")
        .expect("a valid message")
}

#[tokio::test]
async fn pushes_within_credit_and_settles_over_the_socket() {
    let server = Server::start();
    let c = client(&server).await;
    let original = QueueConfig {
        retry_position: Some(RetryPosition::Original),
        ..QueueConfig::default()
    };
    c.queue_create("work", original).await.unwrap();
    for n in 0..5u32 {
        c.queue_publish("work", &n, PublishOptions::default())
            .await
            .unwrap();
    }
    let opts = StreamOptions {
        consumer_id: Some("streamer".into()),
        prefetch: Some(2),
        ack_deadline: Some(Duration::from_secs(30)),
    };
    let mut stream = c.queue_stream::<u32>("work", opts).await.unwrap();
    assert_eq!(stream.consumer_id(), "streamer");
    let a = next(&mut stream).await;
    let b = next(&mut stream).await;
    assert_eq!((a.body, b.body), (0, 1));
    let extra = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(
        extra.is_err(),
        "the server pushed beyond the prefetch credit"
    );
    let stats = c.queue_stats("work").await.unwrap();
    assert_eq!((stats.in_flight, stats.ready), (2, 3));

    // Each settled message earns one credit back.
    stream.ack(&a.id, a.lease).await.unwrap();
    let c2 = next(&mut stream).await;
    assert_eq!(c2.body, 2);
    let action = stream
        .nack(&b.id, &NackOptions::retry_with_error("flaky"))
        .await
        .unwrap();
    assert_eq!(action, NackAction::Requeued);
    // The retried message keeps its place ahead of 3 and 4.
    let b2 = next(&mut stream).await;
    assert_eq!(
        (b2.id.as_str(), b2.body, b2.retry_count),
        (b.id.as_str(), 1, 1)
    );

    stream
        .extend(&c2.id, Duration::from_secs(60), c2.lease)
        .await
        .unwrap();
    let stale = stream.ack(&b.id, b.lease).await.unwrap_err();
    assert!(stale.is_lease_mismatch(), "{stale}");
    stream.ack(&b2.id, b2.lease).await.unwrap();
    stream.ack(&c2.id, c2.lease).await.unwrap();
    for want in [3, 4] {
        let m = next(&mut stream).await;
        assert_eq!(m.body, want);
        stream.ack(&m.id, m.lease).await.unwrap();
    }
    let stats = c.queue_stats("work").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.acked_total), (0, 0, 5));
    stream.close().await.unwrap();
}

#[tokio::test]
async fn pipelined_publishes_confirm_in_order() {
    let server = Server::start();
    let c = client(&server).await;
    let producer = c
        .queue_stream::<u32>(
            "bulk",
            StreamOptions {
                prefetch: Some(0),
                ..StreamOptions::default()
            },
        )
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for n in 0..50u32 {
        let opts = PublishOptions::priority(if n % 10 == 0 { 9 } else { 5 });
        confirms.push(producer.publish_pipelined(&n, opts).await.unwrap());
    }
    let mut ids = Vec::new();
    for confirm in confirms {
        let r = confirm.wait().await.unwrap();
        assert!(r.position.is_some());
        ids.push(r.message_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every publish got its own message id");
    let bad = producer
        .publish(&1u32, PublishOptions::priority(11))
        .await
        .unwrap_err();
    assert!(bad.is_invalid_argument(), "{bad}");
    // The connection survives a refused frame.
    producer
        .publish(&99u32, PublishOptions::default())
        .await
        .unwrap();

    let stats = c.queue_stats("bulk").await.unwrap();
    assert_eq!((stats.published_total, stats.depth), (51, 51));
    let first = c.queue_consume_batch::<u32>("bulk", 6, None).await.unwrap();
    let bodies: Vec<u32> = first.iter().map(|m| m.body).collect();
    assert_eq!(
        bodies,
        [0, 10, 20, 30, 40, 1],
        "priority 9 first, then publish order"
    );
}

#[tokio::test]
async fn unacked_stream_messages_return_when_the_stream_drops() {
    let server = Server::start();
    let c = client(&server).await;
    c.queue_publish("drop", &7u32, PublishOptions::default())
        .await
        .unwrap();
    let opts = StreamOptions {
        ack_deadline: Some(Duration::from_secs(60)),
        ..StreamOptions::default()
    };
    let mut stream = c.queue_stream::<u32>("drop", opts).await.unwrap();
    let m = next(&mut stream).await;
    drop(stream);
    // The server gives the message back when the socket closes, long before its 60 s lease
    // would end, and another consumer gets it as a retry.
    let wait = synap_client::ConsumeOptions {
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let again = c
        .queue_consume::<u32>("drop", Some(wait))
        .await
        .unwrap()
        .expect("given back when the stream dropped");
    assert_eq!((again.id, again.retry_count), (m.id, 1));
}
