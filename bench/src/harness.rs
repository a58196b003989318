//! One scenario run, whatever the system: producer and worker tasks, the counters that end it,
//! the pacing of the open loop and the latency histograms.
//!
//! Every message body is `{"t":<µs>,"pad":"…"}` (about 140 bytes of JSON), where `t` is the
//! message's *intended* send time in µs since the scenario began: in the closed loop the moment
//! it is sent, in the open loop its slot in the fixed schedule. A worker takes publish→ack
//! latency as the time from `t` to the moment the system confirmed the ack, so in the open loop
//! a message delayed behind a slow one is charged its wait (coordinated omission corrected).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Padding that brings a body to about 140 bytes of JSON.
const PAD_LEN: usize = 118;
/// How long tasks may run past the time limit before they are aborted.
const GRACE: Duration = Duration::from_secs(5);
/// The largest latency recorded (longer ones are clamped to it): one hour in µs.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// (A) publish only, (B) drain what A left, (C) both at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub(crate) enum Kind {
    A,
    B,
    C,
}

/// Latencies in µs.
pub(crate) type Hist = Histogram<u64>;

/// An empty latency histogram (1 µs to an hour, 3 significant digits).
pub(crate) fn hist() -> Hist {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// A producer or worker task: its latencies (workers in C), or why it failed.
pub(crate) type Task = Pin<Box<dyn Future<Output = Result<Hist, String>> + Send>>;

/// A system under test on one path: makes the tasks of a scenario on one queue.
pub(crate) trait Target: Send + Sync {
    /// Publishes `quota` messages, each stamped by `sh.ticker(index)`.
    fn producer(&self, sh: Arc<Shared>, index: usize, quota: u64) -> Task;
    /// Consumes and acks until `sh.workers_done()`.
    fn worker(&self, sh: Arc<Shared>, index: usize) -> Task;
}

/// What the body's stamp is read back as.
#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

/// The stamp of a body, if it is one of ours.
pub(crate) fn stamp_of(body: &[u8]) -> Result<u64, String> {
    serde_json::from_slice::<Stamp>(body)
        .map(|s| s.t)
        .map_err(|e| format!("body without a stamp: {e}"))
}

/// Labels an error with what failed.
pub(crate) fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// What every task of one scenario run shares.
pub(crate) struct Shared {
    pub(crate) kind: Kind,
    /// Queue, tube or subject name.
    pub(crate) queue: String,
    pub(crate) target: u64,
    t0: Instant,
    deadline: Instant,
    published: AtomicU64,
    acked: AtomicU64,
    end: OnceLock<Instant>,
    pad: String,
    /// Groups the messages are spread over, round robin (`--flow`'s `fair_groups` run).
    groups: Option<u64>,
    /// The next message's place in that round.
    next_group: AtomicU64,
    /// Open loop: each producer's schedule of stamps, taken by that producer.
    ticks: Mutex<Vec<Option<mpsc::UnboundedReceiver<u64>>>>,
}

impl Shared {
    /// µs since the scenario began.
    pub(crate) fn micros(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
    pub(crate) fn late(&self) -> bool {
        Instant::now() >= self.deadline
    }
    pub(crate) fn workers_done(&self) -> bool {
        self.acked.load(Ordering::Relaxed) >= self.target || self.late()
    }
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    pub(crate) fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    pub(crate) fn started(&self) -> Instant {
        self.t0
    }
    /// Counts `n` confirmed publishes (they end scenario A).
    pub(crate) fn count_published(&self, n: u64) {
        let before = self.published.fetch_add(n, Ordering::Relaxed);
        if self.kind == Kind::A && before + n >= self.target {
            self.end.get_or_init(Instant::now);
        }
    }
    /// Counts `n` confirmed acks (they end scenarios B and C).
    pub(crate) fn count_acked(&self, n: u64) {
        let before = self.acked.fetch_add(n, Ordering::Relaxed);
        if self.kind != Kind::A && before + n >= self.target {
            self.end.get_or_init(Instant::now);
        }
    }
    /// Records the publish→ack latency of a message stamped `t`, acked just now (C only).
    pub(crate) fn record(&self, hist: &mut Hist, t: u64) {
        if self.kind == Kind::C {
            hist.saturating_record(self.micros().saturating_sub(t).max(1));
        }
    }
    /// The body of a message stamped `t`.
    pub(crate) fn body(&self, t: u64) -> Vec<u8> {
        format!("{{\"t\":{t},\"pad\":\"{}\"}}", self.pad).into_bytes()
    }
    /// The group of the next message published: `None`, or the next of the plan's groups in
    /// turn (`g0`, `g1`, …), so each group gets an equal share.
    pub(crate) fn group(&self) -> Option<String> {
        let n = self.groups?;
        let k = self.next_group.fetch_add(1, Ordering::Relaxed);
        Some(format!("g{}", k % n))
    }
    /// The padding, for clients that serialize the body themselves.
    pub(crate) fn pad(&self) -> &str {
        &self.pad
    }
    /// Producer `index`'s stamps: now (closed loop) or its next slot (open loop).
    pub(crate) fn ticker(&self, index: usize) -> Ticker<'_> {
        let rx = self
            .ticks
            .lock()
            .expect("ticks lock")
            .get_mut(index)
            .and_then(Option::take);
        Ticker { sh: self, rx }
    }
}

/// Hands a producer the stamp of its next message.
pub(crate) struct Ticker<'a> {
    sh: &'a Shared,
    rx: Option<mpsc::UnboundedReceiver<u64>>,
}

impl Ticker<'_> {
    /// The next stamp if it is due now (closed loop: always), without waiting.
    pub(crate) fn ready(&mut self) -> Option<u64> {
        match &mut self.rx {
            None => Some(self.sh.micros()),
            Some(rx) => rx.try_recv().ok(),
        }
    }
    /// The next stamp, waiting for its slot in the open loop; `None` when the schedule ended.
    pub(crate) async fn next(&mut self) -> Option<u64> {
        match &mut self.rx {
            None => Some(self.sh.micros()),
            Some(rx) => rx.recv().await,
        }
    }
}

/// What a scenario run measured.
#[derive(Clone, Debug)]
pub(crate) struct RunResult {
    /// Messages counted (published in A, acked in B and C).
    pub(crate) done: u64,
    pub(crate) target: u64,
    /// From the start to the last message counted (or to the time limit).
    pub(crate) elapsed: Duration,
    pub(crate) timed_out: bool,
    /// Publish→ack latencies (C), in µs.
    pub(crate) latency: Option<Hist>,
    pub(crate) errors: Vec<String>,
}

impl RunResult {
    pub(crate) fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How a scenario runs.
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    pub(crate) target: u64,
    pub(crate) producers: usize,
    pub(crate) workers: usize,
    pub(crate) limit: Duration,
    /// Open loop: messages offered per second across all producers.
    pub(crate) rate: Option<f64>,
    /// Groups the messages are spread over (paths that carry a group), if any.
    pub(crate) groups: Option<u64>,
}

/// Runs `plan` against `target` on `queue`; `progress` receives the shared state to watch.
pub(crate) async fn run(
    target: Arc<dyn Target>,
    queue: &str,
    plan: &Plan,
    progress: &dyn Fn(Option<Arc<Shared>>),
) -> RunResult {
    let t0 = Instant::now();
    let deadline = t0 + plan.limit;
    let (txs, rxs) = schedule_channels(plan);
    let sh = Arc::new(Shared {
        kind: plan.kind,
        queue: queue.to_owned(),
        target: plan.target,
        t0,
        deadline,
        published: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        end: OnceLock::new(),
        pad: "x".repeat(PAD_LEN),
        groups: plan.groups,
        next_group: AtomicU64::new(0),
        ticks: Mutex::new(rxs),
    });
    progress(Some(Arc::clone(&sh)));
    let pacer = plan.rate.map(|rate| {
        let (target, deadline) = (plan.target, deadline);
        std::thread::spawn(move || pace(&txs, rate, target, t0, deadline))
    });
    let mut set = JoinSet::new();
    for w in 0..plan.workers {
        set.spawn(target.worker(Arc::clone(&sh), w));
    }
    let producers = plan.producers as u64;
    for i in 0..plan.producers {
        let i64_ = i as u64;
        let quota = plan.target / producers + u64::from(i64_ < plan.target % producers);
        set.spawn(target.producer(Arc::clone(&sh), i, quota));
    }
    let mut latency = hist();
    let mut errors = Vec::new();
    let joined = tokio::time::timeout_at((deadline + GRACE).into(), async {
        while let Some(r) = set.join_next().await {
            match r.map_err(ctx("task")).and_then(|r| r) {
                Ok(h) => latency.add(&h).unwrap_or_default(),
                Err(e) => errors.push(e),
            }
        }
    });
    if joined.await.is_err() {
        errors.push("tasks still running past the time limit were aborted".into());
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    if let Some(p) = pacer {
        let _ = p.join();
    }
    progress(None);
    let done = if plan.kind == Kind::A {
        sh.published()
    } else {
        sh.acked()
    };
    let end = sh.end.get().copied();
    RunResult {
        done,
        target: plan.target,
        elapsed: end.unwrap_or_else(|| Instant::now().min(deadline)) - t0,
        timed_out: end.is_none(),
        latency: (plan.kind == Kind::C && !latency.is_empty()).then_some(latency),
        errors,
    }
}

type Schedules = (
    Vec<mpsc::UnboundedSender<u64>>,
    Vec<Option<mpsc::UnboundedReceiver<u64>>>,
);

/// One channel per producer in the open loop, none in the closed loop.
fn schedule_channels(plan: &Plan) -> Schedules {
    if plan.rate.is_none() {
        return (Vec::new(), Vec::new());
    }
    (0..plan.producers)
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            (tx, Some(rx))
        })
        .unzip()
}

/// The open loop's clock, on its own thread (a thread sleep is far finer than tokio's 1 ms
/// timer): message `n` is due at `n / rate` s and goes to producer `n % producers`, stamped
/// with that due time however late its producer takes it.
fn pace(txs: &[mpsc::UnboundedSender<u64>], rate: f64, total: u64, t0: Instant, end: Instant) {
    for n in 0..total {
        let due_us = (n as f64 * 1e6 / rate) as u64;
        let due = t0 + Duration::from_micros(due_us);
        let now = Instant::now();
        if due >= end {
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
        }
        let tx = &txs[(n % txs.len() as u64) as usize];
        if tx.send(due_us).is_err() && txs.iter().all(mpsc::UnboundedSender::is_closed) {
            break;
        }
    }
}

/// The `q` quantile of `h` in ms.
pub(crate) fn quantile_ms(h: &Hist, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_about_140_bytes_and_its_stamp_reads_back() {
        let (txs, rxs) = schedule_channels(&Plan {
            kind: Kind::C,
            target: 1,
            producers: 1,
            workers: 1,
            limit: Duration::from_secs(1),
            rate: None,
            groups: None,
        });
        assert!(txs.is_empty() && rxs.is_empty());
        let sh = Shared {
            kind: Kind::C,
            queue: "q".into(),
            target: 1,
            t0: Instant::now(),
            deadline: Instant::now(),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            end: OnceLock::new(),
            pad: "x".repeat(PAD_LEN),
            groups: Some(3),
            next_group: AtomicU64::new(0),
            ticks: Mutex::new(rxs),
        };
        let body = sh.body(12_345_678);
        assert_eq!(stamp_of(&body), Ok(12_345_678));
        assert!((130..=150).contains(&body.len()), "{} bytes", body.len());
        assert!(stamp_of(b"{\"x\":1}").is_err());
        let groups: Vec<_> = (0..4).filter_map(|_| sh.group()).collect();
        assert_eq!(groups, ["g0", "g1", "g2", "g0"]);
    }

    #[test]
    fn the_pacer_spreads_due_times_over_the_producers() {
        let (txs, mut rxs) = schedule_channels(&Plan {
            kind: Kind::C,
            target: 6,
            producers: 2,
            workers: 0,
            limit: Duration::from_secs(5),
            rate: Some(1000.0),
            groups: None,
        });
        let t0 = Instant::now();
        pace(&txs, 1000.0, 6, t0, t0 + Duration::from_secs(5));
        let mut got = |i: usize| {
            let rx = rxs[i].as_mut().expect("receiver");
            std::iter::from_fn(|| rx.try_recv().ok()).collect::<Vec<_>>()
        };
        assert_eq!(got(0), vec![0, 2000, 4000]);
        assert_eq!(got(1), vec![1000, 3000, 5000]);
    }
}
