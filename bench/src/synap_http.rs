//! Synap over HTTP through `synap-client`: REST one message per request, REST batches of 100,
//! and the queue WebSocket (pipelined publishes, pushed deliveries with prefetch 64).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use synap_client::{ConsumeOptions, PublishOptions, QueueStream, StreamOptions, SynapClient};

use crate::harness::{Hist, Shared, Target, Task, ctx, hist};

/// Messages per `publish_batch` and per batch consume.
pub(crate) const BATCH: u64 = 100;
/// Publishes in flight per WebSocket producer.
const WINDOW: usize = 256;
/// Unacked messages the server pushes to each WebSocket worker.
pub(crate) const PREFETCH: u32 = 64;
/// How long a worker waits for a message before checking whether it is done.
const POLL: Duration = Duration::from_millis(250);

/// The body as the client serializes it: the same JSON as `Shared::body`.
#[derive(Clone, Serialize)]
struct Body<'a> {
    t: u64,
    pad: &'a str,
}

/// What a worker reads back.
#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

/// How messages travel over HTTP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Http {
    /// One message per POST (publish, consume, ack).
    Rest,
    /// 100 per `publish_batch`, up to 100 per consume, one `ack_batch`.
    Batch,
    /// The queue WebSocket.
    Ws,
}

pub(crate) struct SynapHttp {
    pub(crate) how: Http,
    pub(crate) client: SynapClient,
}

impl Target for SynapHttp {
    fn producer(&self, sh: Arc<Shared>, index: usize, quota: u64) -> Task {
        let (how, client) = (self.how, self.client.clone());
        Box::pin(async move {
            match how {
                Http::Ws => ws_producer(&sh, &client, index, quota).await?,
                _ => rest_producer(&sh, &client, how, index, quota).await?,
            }
            Ok(hist())
        })
    }

    fn worker(&self, sh: Arc<Shared>, index: usize) -> Task {
        let (how, client) = (self.how, self.client.clone());
        Box::pin(async move {
            match how {
                Http::Ws => ws_worker(&sh, &client, index).await,
                _ => rest_worker(&sh, &client, how, index).await,
            }
        })
    }
}

/// A publish's options: the scenario's next group, if it spreads messages over groups.
fn options(sh: &Shared) -> PublishOptions {
    PublishOptions {
        group: sh.group(),
        ..PublishOptions::default()
    }
}

async fn rest_producer(
    sh: &Shared,
    c: &SynapClient,
    how: Http,
    index: usize,
    quota: u64,
) -> Result<(), String> {
    let (q, pad) = (sh.queue.as_str(), sh.pad());
    let mut ticks = sh.ticker(index);
    let mut left = quota;
    while left > 0 && !sh.late() {
        if how == Http::Batch {
            // A batch leaves when its first message is due; the rest ride along.
            let Some(t) = ticks.next().await else { break };
            let mut batch = vec![(Body { t, pad }, options(sh))];
            while (batch.len() as u64) < left.min(BATCH) {
                match ticks.ready() {
                    Some(t) => batch.push((Body { t, pad }, options(sh))),
                    None => break,
                }
            }
            let r = c.queue_publish_batch(q, &batch).await;
            let n = r.map_err(ctx("publish_batch"))?.len() as u64;
            sh.count_published(n);
            left -= n;
        } else {
            let Some(t) = ticks.next().await else { break };
            let body = Body { t, pad };
            c.queue_publish(q, &body, options(sh))
                .await
                .map_err(ctx("publish"))?;
            sh.count_published(1);
            left -= 1;
        }
    }
    Ok(())
}

async fn rest_worker(sh: &Shared, c: &SynapClient, how: Http, w: usize) -> Result<Hist, String> {
    let q = sh.queue.as_str();
    let opts = Some(ConsumeOptions {
        timeout: Some(POLL),
        ack_deadline: None,
        consumer_id: Some(format!("bench-w{w}")),
    });
    let mut lat = hist();
    while !sh.workers_done() {
        if how == Http::Batch {
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
            for m in &ms {
                sh.record(&mut lat, m.body.t);
            }
            sh.count_acked(ms.len() as u64);
        } else {
            let m = c.queue_consume::<Stamp>(q, opts.clone()).await;
            let Some(m) = m.map_err(ctx("consume"))? else {
                continue;
            };
            c.queue_ack_with_lease(q, &m.id, m.lease)
                .await
                .map_err(ctx("ack"))?;
            sh.record(&mut lat, m.body.t);
            sh.count_acked(1);
        }
    }
    Ok(lat)
}

async fn open(
    sh: &Shared,
    c: &SynapClient,
    prefetch: u32,
    id: Option<String>,
) -> Result<QueueStream<Stamp>, String> {
    let opts = StreamOptions {
        consumer_id: id,
        prefetch: Some(prefetch),
        ack_deadline: None,
    };
    c.queue_stream(&sh.queue, opts)
        .await
        .map_err(ctx("ws connect"))
}

async fn ws_producer(sh: &Shared, c: &SynapClient, index: usize, quota: u64) -> Result<(), String> {
    let s = open(sh, c, 0, None).await?;
    let pad = sh.pad();
    let mut ticks = sh.ticker(index);
    let mut window = VecDeque::with_capacity(WINDOW);
    for _ in 0..quota {
        if sh.late() {
            break;
        }
        // Open loop: confirms pile up while the producer waits for a slot; only the scenario
        // that publishes alone (A, closed loop) ends on them.
        let Some(t) = ticks.next().await else { break };
        let body = Body { t, pad };
        let confirm = s.publish_pipelined(&body, options(sh)).await;
        window.push_back(confirm.map_err(ctx("ws publish"))?);
        if window.len() >= WINDOW {
            let oldest = window.pop_front().expect("the window is full");
            oldest.wait().await.map_err(ctx("ws publish"))?;
            sh.count_published(1);
        }
    }
    for confirm in window {
        confirm.wait().await.map_err(ctx("ws publish"))?;
        sh.count_published(1);
    }
    let _ = s.close().await;
    Ok(())
}

async fn ws_worker(sh: &Shared, c: &SynapClient, w: usize) -> Result<Hist, String> {
    let mut s = open(sh, c, PREFETCH, Some(format!("bench-w{w}"))).await?;
    let mut lat = hist();
    while !sh.workers_done() {
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
        for m in &ms {
            sh.record(&mut lat, m.body.t);
        }
        sh.count_acked(ms.len() as u64);
    }
    let _ = s.close().await;
    Ok(lat)
}
