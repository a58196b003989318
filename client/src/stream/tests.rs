//! The stream against fake servers: routing confirms, failing calls when the connection ends,
//! and (with failover) opening it again on another node.

use std::sync::Mutex as StdMutex;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use super::link::lock;
use super::*;

type Ws = WebSocketStream<TcpStream>;

const LIMIT: Duration = Duration::from_secs(10);

/// Accepts one WebSocket on `listener`, keeps its request path and query in `seen`, and
/// sends the `connected` frame.
async fn accept(listener: &TcpListener, seen: &StdMutex<Vec<String>>) -> Ws {
    let (tcp, _) = listener.accept().await.unwrap();
    // The callback's signature is tungstenite's, large error type and all.
    #[expect(clippy::result_large_err, reason = "signature imposed by tungstenite")]
    let record = |req: &Request, resp: Response| {
        lock(seen).push(req.uri().to_string());
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, record)
        .await
        .unwrap();
    let hello = json!({"type": "connected", "queue": "q", "consumer_id": "c", "prefetch": 16});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    ws
}

/// A stream connected to a fake server, and the server's side of the socket (after the
/// `connected` frame).
async fn fake() -> (QueueStream<u32>, JoinHandle<Ws>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { accept(&listener, &StdMutex::default()).await });
    let client = SynapClient::new(&format!("http://{addr}")).unwrap();
    let stream = client
        .queue_stream::<u32>("q", StreamOptions::default())
        .await
        .unwrap();
    (stream, server)
}

fn waiting(stream: &QueueStream<u32>) -> usize {
    lock(&stream.link.waiters).len()
}

/// The next text frame the client sent, as JSON.
async fn client_frame(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("no frame from the client: {other:?}"),
        }
    }
}

fn delivery(id: &str, lease: u64) -> Message {
    let d = json!({"type": "message", "message_id": id, "queue": "q", "message": 7,
        "priority": 0, "retry_count": 0, "max_retries": 3, "headers": {}, "lease": lease,
        "lease_deadline": 1, "published_at": 1});
    Message::text(d.to_string())
}

#[tokio::test]
async fn an_unreadable_frame_fails_pending_and_later_calls() {
    let (stream, server) = fake().await;
    let mut ws = server.await.unwrap();
    let pending = stream
        .publish_pipelined(&1u32, PublishOptions::default())
        .await
        .unwrap();
    // The server reads the publish, answers with garbage, and keeps the socket open.
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
    ws.send(Message::text("not json")).await.unwrap();
    let first = tokio::time::timeout(LIMIT, pending.wait()).await;
    assert!(matches!(first, Ok(Err(SynapError::Closed(_)))), "{first:?}");
    let later = tokio::time::timeout(LIMIT, stream.ack("m", None)).await;
    assert!(matches!(later, Ok(Err(SynapError::Closed(_)))), "{later:?}");
    assert_eq!(waiting(&stream), 0);
    drop(ws);
}

#[tokio::test]
async fn a_call_cancelled_before_sending_leaves_no_waiter() {
    let (stream, server) = fake().await;
    let _ws = server.await.unwrap();
    // Another call holds the socket, so this one registers its waiter and then waits.
    let held = stream.link.sink.lock().await;
    let mut call = Box::pin(stream.ack("m", None));
    assert!(futures_util::poll!(&mut call).is_pending());
    assert_eq!(waiting(&stream), 1);
    drop(call);
    assert_eq!(waiting(&stream), 0, "the cancelled call's waiter is gone");
    drop(held);
}

#[tokio::test]
async fn without_failover_a_dropped_connection_ends_the_stream() {
    let (mut stream, server) = fake().await;
    drop(server.await.unwrap());
    let end = tokio::time::timeout(LIMIT, async {
        while let Some(r) = stream.next().await {
            if r.is_err() {
                continue;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "next() ends with None");
    let later = tokio::time::timeout(LIMIT, stream.ack("m", None)).await;
    assert!(matches!(later, Ok(Err(SynapError::Closed(_)))), "{later:?}");
}

/// Node A pushes a delivery, takes the ack frame and dies without answering; the stream moves
/// to node B with the same consumer id, sends the ack again there (B answers that the message
/// is gone: A had acked it) and goes on receiving B's deliveries.
#[tokio::test]
async fn with_failover_the_stream_reconnects_and_resends_a_call_in_flight() {
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let urls = [a.local_addr().unwrap(), b.local_addr().unwrap()].map(|x| format!("http://{x}"));
    let seen: Arc<StdMutex<Vec<String>>> = Arc::default();
    let (seen_a, seen_b) = (Arc::clone(&seen), Arc::clone(&seen));
    let node_a = tokio::spawn(async move {
        let mut ws = accept(&a, &seen_a).await;
        ws.send(delivery("m1", 5)).await.unwrap();
        let ack = client_frame(&mut ws).await;
        // Node A dies: its listener and socket go without a close frame.
        drop((ws, a));
        ack
    });
    let node_b = tokio::spawn(async move {
        let mut ws = accept(&b, &seen_b).await;
        let ack = client_frame(&mut ws).await;
        let gone = json!({"type": "error", "op": "ack", "id": ack["id"],
            "error": "message not found: m1", "code": "message_not_found"});
        ws.send(Message::text(gone.to_string())).await.unwrap();
        ws.send(delivery("m2", 6)).await.unwrap();
        (ack, ws)
    });
    let client = SynapClient::new_many(&urls).unwrap();
    let mut stream = client
        .queue_stream::<u32>("q", StreamOptions::default())
        .await
        .unwrap();
    let first = tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((first.id.as_str(), first.lease), ("m1", Some(5)));
    tokio::time::timeout(LIMIT, stream.ack(&first.id, first.lease))
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.id, "m2");
    let ack_a = node_a.await.unwrap();
    let (ack_b, _ws) = node_b.await.unwrap();
    assert_eq!(
        (ack_a["op"].clone(), ack_a["message_id"].clone()),
        (json!("ack"), json!("m1"))
    );
    assert_eq!(ack_b["message_id"], "m1");
    assert_eq!(ack_b["lease"], 5);
    // Both connections carried the same consumer id, one the client made.
    let seen = lock(&seen).clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], seen[1]);
    assert!(seen[0].contains("consumer_id=rs-"), "{seen:?}");
}

/// Serves `GET /cluster` on `listener` with `view`, and hands each WebSocket it accepts (after
/// the `connected` frame, unless `greet` is false) to `ws`.
fn node(
    listener: TcpListener,
    view: Value,
    greet: bool,
    ws: impl Fn(Ws) -> JoinHandle<()> + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 12];
            let n = tcp.peek(&mut head).await.unwrap();
            if head[..n].starts_with(b"GET /cluster") {
                let body = view.to_string();
                let mut tcp = tcp;
                let mut buf = [0u8; 2048];
                let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, reply.as_bytes()).await;
                continue;
            }
            let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
            if greet {
                let hello =
                    json!({"type": "connected", "queue": "q", "consumer_id": "c", "prefetch": 16});
                socket.send(Message::text(hello.to_string())).await.unwrap();
            }
            ws(socket);
        }
    });
}

/// A consume error frame, then a close.
async fn refuse(mut ws: Ws, code: &str) {
    let e = json!({"type": "error", "op": "consume", "error": "refused", "code": code});
    let _ = ws.send(Message::text(e.to_string())).await;
    let _ = ws.close(None).await;
}

/// Node B, which greets and pushes delivery `m2`.
async fn leader_b() -> String {
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", b.local_addr().unwrap());
    node(b, json!({"role": "leader"}), true, |mut ws| {
        tokio::spawn(async move {
            ws.send(delivery("m2", 1)).await.unwrap();
            // Keep the socket open until the client goes.
            while ws.next().await.is_some() {}
        })
    });
    url
}

/// A node that refuses the stream in a frame that does not name the leader: the client asks
/// the node's `GET /cluster` and goes to the leader there, though it is not among its URLs.
#[tokio::test]
async fn a_refusal_in_a_frame_is_followed_through_the_nodes_cluster_view() {
    let b = leader_b().await;
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_url = format!("http://{}", a.local_addr().unwrap());
    let view = json!({"role": "follower", "leader": {"id": 2, "http": b}});
    node(a, view, false, |ws| tokio::spawn(refuse(ws, "not_leader")));
    let client = SynapClient::new_many([&a_url]).unwrap();
    let mut stream = client
        .queue_stream::<u32>("q", StreamOptions::default())
        .await
        .unwrap();
    let m = tokio::time::timeout(LIMIT, stream.next()).await.unwrap();
    assert_eq!(m.unwrap().unwrap().id, "m2");
    assert_eq!(client.current_url().as_str(), format!("{b}/"));
}

/// A node that stops leading ends its streams as if the queue were gone; the stream asks it,
/// learns it is a follower now, and goes on at the leader without reporting an error.
#[tokio::test]
async fn a_stream_ended_by_a_deposed_leader_goes_on_at_the_new_one() {
    let b = leader_b().await;
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_url = format!("http://{}", a.local_addr().unwrap());
    let view = json!({"role": "follower", "leader": {"id": 2, "http": b}});
    node(a, view, true, |ws| {
        tokio::spawn(refuse(ws, "queue_not_found"))
    });
    let client = SynapClient::new_many([&a_url, &b]).unwrap();
    let mut stream = client
        .queue_stream::<u32>("q", StreamOptions::default())
        .await
        .unwrap();
    let m = tokio::time::timeout(LIMIT, stream.next()).await.unwrap();
    assert_eq!(m.unwrap().unwrap().id, "m2");
}

/// The same end from a node that still leads is the queue being gone: reported, then the end.
#[tokio::test]
async fn a_stream_ended_by_its_leader_reports_why() {
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_url = format!("http://{}", a.local_addr().unwrap());
    node(a, json!({"role": "leader"}), true, |ws| {
        tokio::spawn(refuse(ws, "queue_not_found"))
    });
    let client = SynapClient::new_many([&a_url]).unwrap();
    let mut stream = client
        .queue_stream::<u32>("q", StreamOptions::default())
        .await
        .unwrap();
    let first = tokio::time::timeout(LIMIT, stream.next()).await.unwrap();
    let e = first.unwrap().unwrap_err();
    assert_eq!(e.code(), Some("queue_not_found"));
    assert!(
        tokio::time::timeout(LIMIT, stream.next())
            .await
            .unwrap()
            .is_none()
    );
}
