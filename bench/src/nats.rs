//! The NATS JetStream peer through the async-nats crate: a work-queue stream (memory storage,
//! or file storage for the durable comparison), producers publishing with 1 or 100 publish
//! acks in flight, and workers on one shared durable pull consumer taking batches of up to 100
//! (waiting up to 250 ms) and acking each message. A JetStream ack is sent without waiting for
//! the server to confirm it, as clients do by default.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use crate::harness::{Hist, Shared, Target, Task, ctx, hist, stamp_of};

/// The durable consumer every worker pulls from.
const CONSUMER: &str = "work";
/// Messages per pull.
const FETCH: usize = 100;
/// How long a pull waits for messages.
const POLL: Duration = Duration::from_millis(250);

pub(crate) struct Nats {
    pub(crate) url: String,
    /// Publish acks in flight per producer.
    pub(crate) window: usize,
}

/// The stream of a queue name (stream names may not hold dots).
fn stream_name(queue: &str) -> String {
    queue.replace(['.', ' ', '*', '>'], "_")
}

async fn context(url: &str) -> Result<jetstream::Context, String> {
    let client = async_nats::connect(url)
        .await
        .map_err(ctx("NATS connect"))?;
    Ok(jetstream::new(client))
}

/// Creates the work-queue stream of `queue` and its shared pull consumer.
pub(crate) async fn prepare(url: &str, queue: &str, file: bool) -> Result<(), String> {
    let js = context(url).await?;
    let storage = if file {
        stream::StorageType::File
    } else {
        stream::StorageType::Memory
    };
    let st = js
        .create_stream(stream::Config {
            name: stream_name(queue),
            subjects: vec![queue.to_owned()],
            storage,
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .map_err(ctx("create stream"))?;
    st.create_consumer(consumer::pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(300),
        max_ack_pending: 100_000,
        ..Default::default()
    })
    .await
    .map_err(ctx("create consumer"))?;
    Ok(())
}

impl Target for Nats {
    fn producer(&self, sh: Arc<Shared>, index: usize, quota: u64) -> Task {
        let (url, window) = (self.url.clone(), self.window.max(1));
        Box::pin(async move {
            let js = context(&url).await?;
            let mut ticks = sh.ticker(index);
            let mut pending = VecDeque::with_capacity(window);
            for _ in 0..quota {
                if sh.late() {
                    break;
                }
                let Some(t) = ticks.next().await else { break };
                let ack = js.publish(sh.queue.clone(), sh.body(t).into()).await;
                pending.push_back(ack.map_err(ctx("publish"))?);
                if pending.len() >= window {
                    let oldest = pending.pop_front().expect("the window is full");
                    oldest.await.map_err(ctx("publish ack"))?;
                    sh.count_published(1);
                }
            }
            for ack in pending {
                ack.await.map_err(ctx("publish ack"))?;
                sh.count_published(1);
            }
            Ok(hist())
        })
    }

    fn worker(&self, sh: Arc<Shared>, _index: usize) -> Task {
        let url = self.url.clone();
        Box::pin(async move {
            let js = context(&url).await?;
            let st = js
                .get_stream(stream_name(&sh.queue))
                .await
                .map_err(ctx("get stream"))?;
            let pull: consumer::PullConsumer = st
                .get_consumer(CONSUMER)
                .await
                .map_err(ctx("get consumer"))?;
            let mut lat: Hist = hist();
            while !sh.workers_done() {
                let batch = pull.batch().max_messages(FETCH).expires(POLL);
                let mut messages = batch.messages().await.map_err(ctx("fetch"))?;
                while let Some(m) = messages.next().await {
                    let m = m.map_err(ctx("fetched message"))?;
                    let t = stamp_of(&m.payload)?;
                    m.ack().await.map_err(ctx("ack"))?;
                    sh.record(&mut lat, t);
                    sh.count_acked(1);
                }
            }
            Ok(lat)
        })
    }
}
