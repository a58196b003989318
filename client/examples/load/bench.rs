//! One scenario run: producers and/or workers over one transport, counted until the target is
//! reached or the time limit passes.

use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use synap_client::{ConsumeOptions, PublishOptions, QueueStream, StreamOptions, SynapClient};
use tokio::task::JoinSet;

/// Messages per `publish_batch` and per batch consume.
const BATCH: u64 = 100;
/// Publishes in flight per WebSocket producer.
const WINDOW: usize = 256;
/// Unacked messages the server pushes to each WebSocket worker.
const PREFETCH: u32 = 64;
/// How long a worker waits for a message before checking whether it is done.
const POLL: Duration = Duration::from_millis(250);
/// How long tasks may run past the time limit before they are aborted.
const GRACE: Duration = Duration::from_secs(5);
/// Padding that brings a message body to about 150 bytes of JSON.
pub(crate) const PAD_LEN: usize = 126;

/// How messages travel: one per POST, 100 per POST, or the queue WebSocket.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Http,
    Batch,
    Ws,
}

/// (A) publish only, (B) drain a full queue, (C) both at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    A,
    B,
    C,
}

/// The message body: publish time in µs since the scenario began, and padding.
#[derive(Clone, Serialize)]
pub(crate) struct Body<'a> {
    pub(crate) t: u64,
    pub(crate) pad: &'a str,
}

/// What a worker reads back from the body.
#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

/// What a scenario measured.
pub(crate) struct ScenarioRun {
    /// Messages counted (published in A, acked in B and C) out of the target.
    pub(crate) done: u64,
    pub(crate) target: u64,
    /// From the start to the last message counted (or to the end, when not all were).
    pub(crate) elapsed: Duration,
    pub(crate) timed_out: bool,
    /// Publish→ack latencies in µs (scenario C only).
    pub(crate) latencies: Vec<u64>,
    pub(crate) errors: Vec<String>,
}

struct Shared {
    mode: Mode,
    kind: Kind,
    client: SynapClient,
    queue: String,
    t0: Instant,
    deadline: Instant,
    target: u64,
    published: AtomicU64,
    acked: AtomicU64,
    end: OnceLock<Instant>,
}

impl Shared {
    fn micros(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
    fn late(&self) -> bool {
        Instant::now() >= self.deadline
    }
    fn workers_done(&self) -> bool {
        self.acked.load(Ordering::Relaxed) >= self.target || self.late()
    }
    /// Adds `n` to `counter`; the scenario ends when its own counter reaches the target.
    fn count(&self, counter: &AtomicU64, n: u64, finishes: bool) {
        if counter.fetch_add(n, Ordering::Relaxed) + n >= self.target && finishes {
            self.end.get_or_init(Instant::now);
        }
    }
    /// A WebSocket to the queue in `ws` mode (`prefetch` 0: publish only), else `None`.
    async fn open(&self, prefetch: u32, id: Option<String>) -> Result<Option<Stream>, String> {
        if self.mode != Mode::Ws {
            return Ok(None);
        }
        let opts = StreamOptions {
            consumer_id: id,
            prefetch: Some(prefetch),
            ack_deadline: None,
        };
        let stream = self.client.queue_stream(&self.queue, opts).await;
        stream.map(Some).map_err(ctx("ws connect"))
    }
}

type Stream = QueueStream<Stamp>;

/// Labels an error with what failed.
fn ctx<E: Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Runs `kind` over `mode` on `queue` with `producers` and `workers` tasks (either may be 0)
/// until `target` messages are counted or `limit` has passed.
pub(crate) async fn run(
    client: &SynapClient,
    (mode, kind, queue): (Mode, Kind, &str),
    (target, producers, workers): (u64, u64, usize),
    limit: Duration,
) -> ScenarioRun {
    let (t0, client, queue) = (Instant::now(), client.clone(), queue.to_owned());
    let deadline = t0 + limit;
    let sh = Arc::new(Shared {
        mode,
        kind,
        client,
        queue,
        t0,
        deadline,
        target,
        published: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        end: OnceLock::new(),
    });
    let mut set = JoinSet::new();
    for w in 0..workers {
        set.spawn(worker(Arc::clone(&sh), w));
    }
    for i in 0..producers {
        let quota = target / producers + u64::from(i < target % producers);
        let task = producer(Arc::clone(&sh), quota);
        set.spawn(async move { task.await.map(|()| Vec::new()) });
    }
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    // In-flight calls get a grace period past the deadline, then are aborted.
    let joined = tokio::time::timeout_at((deadline + GRACE).into(), async {
        while let Some(r) = set.join_next().await {
            match r.map_err(ctx("task")).and_then(|r| r) {
                Ok(l) => latencies.extend(l),
                Err(e) => errors.push(e),
            }
        }
    });
    if joined.await.is_err() {
        errors.push("tasks still running after the time limit were aborted".into());
        set.abort_all();
    }
    let counter = if kind == Kind::A {
        &sh.published
    } else {
        &sh.acked
    };
    ScenarioRun {
        done: counter.load(Ordering::Relaxed),
        target,
        elapsed: sh
            .end
            .get()
            .copied()
            .unwrap_or_else(|| Instant::now().min(deadline))
            - t0,
        timed_out: sh.end.get().is_none() && sh.late(),
        latencies,
        errors,
    }
}

/// Publishes `quota` messages: one per POST, 100 per POST, or pipelined on a WebSocket.
async fn producer(sh: Arc<Shared>, quota: u64) -> Result<(), String> {
    let (q, c, pad) = (sh.queue.as_str(), &sh.client, "x".repeat(PAD_LEN));
    let finishes = sh.kind == Kind::A;
    let stream = sh.open(0, None).await?;
    let mut window = VecDeque::with_capacity(WINDOW);
    let mut left = quota;
    while left > 0 && !sh.late() {
        let (body, opts) = (
            Body {
                t: sh.micros(),
                pad: &pad,
            },
            PublishOptions::default(),
        );
        // (messages sent, messages confirmed)
        let (sent, confirmed) = match (sh.mode, &stream) {
            (Mode::Batch, _) => {
                let batch = vec![(body, opts); left.min(BATCH) as usize];
                let r = c.queue_publish_batch(q, &batch).await;
                let n = r.map_err(ctx("publish_batch"))?.len() as u64;
                (n, n)
            }
            (_, Some(s)) => {
                let confirm = s.publish_pipelined(&body, opts).await;
                window.push_back(confirm.map_err(ctx("ws publish"))?);
                if window.len() < WINDOW {
                    (1, 0)
                } else {
                    let oldest = window.pop_front().expect("the window is full");
                    oldest.wait().await.map_err(ctx("ws publish"))?;
                    (1, 1)
                }
            }
            _ => {
                c.queue_publish(q, &body, opts)
                    .await
                    .map_err(ctx("publish"))?;
                (1, 1)
            }
        };
        sh.count(&sh.published, confirmed, finishes);
        left -= sent;
    }
    for confirm in window {
        confirm.wait().await.map_err(ctx("ws publish"))?;
        sh.count(&sh.published, 1, finishes);
    }
    if let Some(s) = stream {
        let _ = s.close().await;
    }
    Ok(())
}

/// Consumes and acks until the scenario's target is acked; returns publish→ack latencies (µs)
/// in scenario C, taken once the server has confirmed the ack.
async fn worker(sh: Arc<Shared>, w: usize) -> Result<Vec<u64>, String> {
    let (q, c, id) = (sh.queue.as_str(), &sh.client, format!("load-w{w}"));
    let opts = Some(ConsumeOptions {
        timeout: Some(POLL),
        ack_deadline: None,
        consumer_id: Some(id.clone()),
    });
    let mut stream = sh.open(PREFETCH, Some(id)).await?;
    let mut lat = Vec::new();
    while !sh.workers_done() {
        let stamps: Vec<u64> = match (sh.mode, stream.as_mut()) {
            (Mode::Batch, _) => {
                let ms = c
                    .queue_consume_batch::<Stamp>(q, BATCH as u32, opts.clone())
                    .await;
                let ms = ms.map_err(ctx("consume"))?;
                if ms.is_empty() {
                    continue;
                }
                let acks: Vec<_> = ms.iter().map(|m| (m.id.as_str(), m.lease)).collect();
                let r = c
                    .queue_ack_batch(q, &acks)
                    .await
                    .map_err(ctx("ack_batch"))?;
                if let Some(f) = r.failed.first() {
                    return Err(format!("ack_batch: {} failed, first {f:?}", r.failed.len()));
                }
                ms.iter().map(|m| m.body.t).collect()
            }
            (_, Some(s)) => {
                let Ok(first) = tokio::time::timeout(POLL, s.next()).await else {
                    continue;
                };
                // Take whatever else has arrived, then ack it all with pipelined frames.
                let mut got = vec![first.ok_or("ws worker: connection closed")?];
                while got.len() < PREFETCH as usize {
                    let Some(Some(m)) = s.next().now_or_never() else {
                        break;
                    };
                    got.push(m);
                }
                let ms: Result<Vec<_>, _> = got.into_iter().collect();
                let ms = ms.map_err(ctx("ws delivery"))?;
                for acked in join_all(ms.iter().map(|m| s.ack(&m.id, m.lease))).await {
                    acked.map_err(ctx("ws ack"))?;
                }
                ms.iter().map(|m| m.body.t).collect()
            }
            _ => {
                let m = c.queue_consume::<Stamp>(q, opts.clone()).await;
                let Some(m) = m.map_err(ctx("consume"))? else {
                    continue;
                };
                c.queue_ack_with_lease(q, &m.id, m.lease)
                    .await
                    .map_err(ctx("ack"))?;
                vec![m.body.t]
            }
        };
        let now = sh.micros();
        if sh.kind == Kind::C {
            lat.extend(stamps.iter().map(|&t| now.saturating_sub(t)));
        }
        sh.count(&sh.acked, stamps.len() as u64, true);
    }
    if let Some(s) = stream {
        let _ = s.close().await;
    }
    Ok(lat)
}
