//! Clients of the cluster: producers that publish with idempotency keys, workers that consume
//! (at once or by long-poll), ack and nack through whichever node leads. Each has at most one
//! request out; on `NotLeader` it moves to the named leader, on a lost reply or a timeout it
//! tries another node and sends the same request again.

use std::collections::VecDeque;

use synap_core::{Command, Delivery, Json, PublishMessage, QueueConfig, Reply, WaiterId};

use super::world::{Outcome, World};

/// The queue every client uses.
pub(crate) const QUEUE: &str = "video-processing";
/// A request without an answer for this long is given up (and resent elsewhere).
const TIMEOUT_MS: u64 = 2_000;

/// A client's connection: the node it talks to and its one request out.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) client: usize,
    pub(crate) target: u64,
    pub(crate) next_at: u64,
    /// `(request id, give up at)`.
    pub(crate) out: Option<(u64, u64)>,
    next_req: u64,
}

impl Conn {
    pub(crate) fn new(client: usize, target: u64, start: u64) -> Self {
        Self {
            client,
            target,
            next_at: start,
            out: None,
            next_req: 1,
        }
    }

    fn send(&mut self, w: &mut World, cmd: Command, extra_wait_ms: u64) {
        let req = self.next_req;
        self.next_req += 1;
        self.out = Some((req, w.now + TIMEOUT_MS + extra_wait_ms));
        w.submit((self.client, req), self.target, cmd);
    }

    /// Whether an outcome answers the request out (late answers to given-up ones do not).
    pub(crate) fn is_current(&self, req: u64) -> bool {
        self.out.is_some_and(|(r, _)| r == req)
    }

    pub(crate) fn ready(&self, now: u64) -> bool {
        self.out.is_none() && self.next_at <= now
    }

    pub(crate) fn next_at(&self) -> u64 {
        self.out.map_or(self.next_at, |(_, t)| t)
    }

    /// Gives up a request that timed out; true if it did.
    fn timed_out(&mut self, w: &mut World) -> bool {
        if self.out.is_some_and(|(_, t)| t <= w.now) {
            self.out = None;
            self.target = w.any_node();
            self.next_at = w.now;
            return true;
        }
        false
    }

    /// Handles a refusal or loss; true if it was one (the request is to be sent again).
    fn redirect(&mut self, w: &mut World, outcome: &Outcome) -> bool {
        match outcome {
            Outcome::NotLeader(Some(l)) if *l != self.target => {
                self.target = *l;
                self.next_at = w.now + 1;
            }
            Outcome::NotLeader(_) => {
                self.target = w.any_node();
                self.next_at = w.now + w.pick(20, 200);
            }
            Outcome::Lost | Outcome::Busy => {
                self.next_at = w.now + w.pick(1, 100);
            }
            _ => return false,
        }
        self.out = None;
        true
    }
}

/// Creates the queue, retrying until it is acknowledged.
#[derive(Debug)]
pub(crate) struct Admin {
    pub(crate) conn: Conn,
    pub(crate) done: bool,
}

impl Admin {
    pub(crate) fn act(&mut self, w: &mut World) {
        self.conn.timed_out(w);
        if self.done || !self.conn.ready(w.now) {
            return;
        }
        let config = QueueConfig {
            max_retries: w.cfg.max_retries,
            ack_deadline_ms: 2_000,
            retry_delays_ms: vec![100, 400],
            ..QueueConfig::default()
        };
        let cmd = Command::CreateQueue {
            queue: QUEUE.into(),
            config: Some(Box::new(config)),
        };
        self.conn.send(w, cmd, 0);
    }

    pub(crate) fn on(&mut self, w: &mut World, outcome: Outcome) {
        if self.conn.redirect(w, &outcome) {
            return;
        }
        self.conn.out = None;
        match outcome {
            Outcome::Reply {
                result: Ok(Reply::QueueCreated { .. }),
                ..
            } => self.done = true,
            other => panic!("create queue answered {other:?}"),
        }
    }
}

/// A producer: publishes its keys one by one, each until acknowledged.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) conn: Conn,
    id: usize,
    next: usize,
    total: usize,
}

impl Publisher {
    pub(crate) fn new(id: usize, conn: Conn, total: usize) -> Self {
        Self {
            conn,
            id,
            next: 0,
            total,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.next >= self.total
    }

    fn key(&self) -> String {
        format!("p{}-{}", self.id, self.next)
    }

    pub(crate) fn act(&mut self, w: &mut World) {
        self.conn.timed_out(w);
        if self.done() || !self.conn.ready(w.now) {
            return;
        }
        let key = self.key();
        let body = format!(r#"{{"video_id":"{key}","resolution":"1080p"}}"#);
        let cmd = Command::Publish {
            queue: QUEUE.into(),
            message: PublishMessage {
                message: Some(Json::from_trusted_text(body)),
                priority: Some(w.pick(0, 9) as u8),
                idempotency_key: Some(key),
                ..PublishMessage::default()
            },
        };
        self.conn.send(w, cmd, 0);
    }

    /// The answer to the request out. (The oracle already saw it, and every other answer
    /// to a publish, when the node gave it: `World::answer`.)
    pub(crate) fn on(&mut self, w: &mut World, outcome: Outcome) {
        if self.conn.redirect(w, &outcome) {
            return;
        }
        self.conn.out = None;
        match outcome {
            Outcome::Reply {
                result: Ok(Reply::Published(_)),
                ..
            } => {
                self.next += 1;
                self.conn.next_at = w.now + w.pick(1, 300);
            }
            other => panic!("publish answered {other:?}"),
        }
    }
}

/// What a worker does with a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Ack,
    Retry,
    Reject,
    /// Crashes holding it: the lease runs out.
    Abandon,
}

/// What a worker's request out is.
#[derive(Clone, Debug)]
enum Doing {
    Consume,
    Settle(Delivery, Verdict),
}

/// A worker: consumes, works a while, then acks or nacks (or abandons the delivery).
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) conn: Conn,
    id: usize,
    held: VecDeque<(u64, Delivery, Verdict)>,
    doing: Option<Doing>,
}

impl Consumer {
    pub(crate) fn new(id: usize, conn: Conn) -> Self {
        Self {
            conn,
            id,
            held: VecDeque::new(),
            doing: None,
        }
    }

    pub(crate) fn next_at(&self) -> u64 {
        match self.held.front() {
            Some((t, ..)) if self.conn.out.is_none() => (*t).max(self.conn.next_at),
            _ => self.conn.next_at(),
        }
    }

    pub(crate) fn act(&mut self, w: &mut World) {
        if self.conn.timed_out(w) {
            self.retry_doing();
        }
        if !self.conn.ready(w.now) {
            return;
        }
        if let Some((t, ..)) = self.held.front() {
            if *t > w.now {
                return;
            }
            let (_, d, verdict) = self.held.pop_front().expect("checked");
            self.settle(w, d, verdict);
            return;
        }
        let wait_ms = if w.chance(w.cfg.p_long_poll) {
            w.pick(200, 3_000)
        } else {
            0
        };
        let cmd = Command::Consume {
            queue: QUEUE.into(),
            wait_ms,
            lease_ms: Some(w.pick(300, 2_500)),
            max_messages: w.pick(1, 3) as u32,
            consumer_id: Some(format!("c{}", self.id)),
        };
        self.doing = Some(Doing::Consume);
        self.conn.send(w, cmd, wait_ms);
    }

    fn settle(&mut self, w: &mut World, d: Delivery, verdict: Verdict) {
        let (queue, message_id, lease) = (QUEUE.to_owned(), d.message_id, Some(d.lease));
        let cmd = match verdict {
            Verdict::Abandon => return,
            Verdict::Ack => Command::Ack {
                queue,
                message_id,
                lease,
                result: None,
            },
            Verdict::Retry | Verdict::Reject => Command::Nack {
                queue,
                message_id,
                requeue: verdict == Verdict::Retry,
                delay_ms: None,
                error: Some("worker failed".into()),
                lease,
                snooze: false,
            },
        };
        self.doing = Some(Doing::Settle(d, verdict));
        self.conn.send(w, cmd, 0);
    }

    /// A request that got no answer is sent again (an ack or nack), or dropped (a consume).
    fn retry_doing(&mut self) {
        if let Some(Doing::Settle(d, v)) = self.doing.take() {
            self.held.push_front((0, d, v));
        }
    }

    pub(crate) fn on(&mut self, w: &mut World, outcome: Outcome) {
        if self.conn.redirect(w, &outcome) {
            self.retry_doing();
            return;
        }
        self.conn.out = None;
        let doing = self.doing.take();
        match (outcome, doing) {
            (Outcome::Reply { result, index }, Some(Doing::Consume)) => match result {
                Ok(Reply::Messages { messages }) => self.take(w, messages, index, None),
                other => panic!("consume answered {other:?}"),
            },
            (
                Outcome::Delivered {
                    messages,
                    index,
                    waiter,
                },
                Some(Doing::Consume),
            ) => {
                self.take(w, messages, index, Some(waiter));
            }
            (Outcome::WaitEnded, Some(Doing::Consume)) => self.conn.next_at = w.now,
            (Outcome::Reply { result, index }, Some(Doing::Settle(d, v))) => {
                match result {
                    Ok(Reply::Acked) => w.oracle.ack_acknowledged(d.message_id, index),
                    Ok(Reply::Nacked { .. }) => {}
                    // The lease ran out (and the message may be with another worker now).
                    Err(synap_core::Error::LeaseMismatch { .. })
                    | Err(synap_core::Error::MessageNotFound { .. }) => {}
                    other => panic!("{v:?} answered {other:?}"),
                }
                self.conn.next_at = w.now;
            }
            (other, doing) => panic!("unexpected {other:?} while {doing:?}"),
        }
    }

    fn take(
        &mut self,
        w: &mut World,
        messages: Vec<Delivery>,
        index: u64,
        waiter: Option<WaiterId>,
    ) {
        if messages.is_empty() {
            self.conn.next_at = w.now + w.pick(50, 400);
            return;
        }
        for d in messages {
            w.oracle.delivered_to_client(&d, index, waiter);
            let roll = w.pick(0, 99);
            let verdict = match roll {
                0..=69 => Verdict::Ack,
                70..=84 => Verdict::Retry,
                85..=89 => Verdict::Reject,
                _ if w.faults => Verdict::Abandon,
                _ => Verdict::Ack,
            };
            let at = w.now + w.pick(5, 600);
            self.held.push_back((at, d, verdict));
        }
        self.held.make_contiguous().sort_by_key(|(t, ..)| *t);
        self.conn.next_at = w.now;
    }
}
