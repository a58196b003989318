//! Unit tests of the engine's rules, driven through the public `handle`/`handle_timeout`
//! contract with an explicit clock. Every step also runs `check_invariants`.

mod edge_cases;
mod flow;
mod flow_mix;
mod flows;
mod flows_failure;
mod flows_input;
mod flows_state;
mod groups;
mod idempotency;
mod input;
mod jobs;
mod kv;
mod lease;
mod memory;
mod pubsub;
mod queue;
mod retry_order;
mod schedules;
mod session;
mod state;

use serde_json::json;

use crate::{
    Command, Delivery, Engine, EngineConfig, Error, Event, MessageId, Millis, PublishMessage,
    QueueConfig, QueueStats, Reply, json_message,
};

/// An engine with a hand-moved clock.
pub(crate) struct Rig {
    pub(crate) engine: Engine,
    pub(crate) now: u64,
}

impl Rig {
    pub(crate) fn new() -> Self {
        Self::with(EngineConfig::default())
    }

    pub(crate) fn with(config: EngineConfig) -> Self {
        Self {
            engine: Engine::new(config, 7),
            now: 1_000,
        }
    }

    pub(crate) fn cmd(&mut self, cmd: Command) -> Result<Reply, Error> {
        let reply = self.engine.handle(Millis(self.now), cmd);
        self.engine.check_invariants();
        reply
    }

    pub(crate) fn ok(&mut self, cmd: Command) -> Reply {
        self.cmd(cmd).expect("command succeeds")
    }

    /// Moves the clock forward and runs due timers.
    pub(crate) fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.engine.handle_timeout(Millis(self.now));
        self.engine.check_invariants();
        if let Some(next) = self.engine.poll_timeout() {
            assert!(next.0 > self.now, "a due timer survived handle_timeout");
        }
    }

    /// Drains events, keeping all but observability ones.
    pub(crate) fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.engine.poll_event())
            .filter(|e| !matches!(e, Event::Observed(_)))
            .collect()
    }

    pub(crate) fn create(&mut self, queue: &str, config: QueueConfig) {
        self.ok(Command::CreateQueue {
            queue: queue.into(),
            config: Some(Box::new(config)),
        });
    }

    pub(crate) fn publish_with(&mut self, queue: &str, m: PublishMessage) -> Result<Reply, Error> {
        self.cmd(Command::Publish {
            queue: queue.into(),
            message: m,
        })
    }

    pub(crate) fn publish(&mut self, queue: &str, n: u64, priority: u8) -> MessageId {
        let m = PublishMessage {
            priority: Some(priority),
            ..json_message(json!({ "n": n }))
        };
        match self.publish_with(queue, m).expect("publish succeeds") {
            Reply::Published(p) => p.message_id,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub(crate) fn consume_as(
        &mut self,
        queue: &str,
        max: u32,
        lease_ms: Option<u64>,
        consumer: Option<&str>,
    ) -> Vec<Delivery> {
        match self.ok(Command::Consume {
            queue: queue.into(),
            wait_ms: 0,
            lease_ms,
            max_messages: max,
            consumer_id: consumer.map(str::to_owned),
        }) {
            Reply::Messages { messages } => messages,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub(crate) fn consume(&mut self, queue: &str, max: u32) -> Vec<Delivery> {
        self.consume_as(queue, max, None, None)
    }

    pub(crate) fn consume_one(&mut self, queue: &str) -> Delivery {
        let mut got = self.consume(queue, 1);
        assert_eq!(got.len(), 1, "expected one message");
        got.remove(0)
    }

    pub(crate) fn ack(&mut self, queue: &str, d: &Delivery) -> Result<Reply, Error> {
        self.cmd(Command::Ack {
            queue: queue.into(),
            message_id: d.message_id,
            lease: Some(d.lease),
            result: None,
        })
    }

    pub(crate) fn nack(&mut self, queue: &str, d: &Delivery, requeue: bool) -> Reply {
        self.ok(Command::Nack {
            queue: queue.into(),
            message_id: d.message_id,
            requeue,
            delay_ms: None,
            error: Some("boom".into()),
            lease: Some(d.lease),
            snooze: false,
        })
    }

    /// Publishes `{"n": n}` in `group` (none when `None`).
    pub(crate) fn publish_in(
        &mut self,
        queue: &str,
        n: u64,
        priority: u8,
        group: Option<&str>,
    ) -> MessageId {
        let m = PublishMessage {
            priority: Some(priority),
            group: group.map(str::to_owned),
            ..json_message(json!({ "n": n }))
        };
        match self.publish_with(queue, m).expect("publish succeeds") {
            Reply::Published(p) => p.message_id,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// A long-poll consume that must park; its waiter.
    pub(crate) fn park(&mut self, queue: &str, max: u32, wait_ms: u64) -> crate::WaiterId {
        match self.ok(Command::Consume {
            queue: queue.into(),
            wait_ms,
            lease_ms: None,
            max_messages: max,
            consumer_id: None,
        }) {
            Reply::Waiting { waiter_id } => waiter_id,
            other => panic!("expected to park, got {other:?}"),
        }
    }

    /// Deliveries answered to waiters and pushed to sessions since the events were last
    /// drained, in order.
    pub(crate) fn delivered(&mut self) -> Vec<Delivery> {
        self.events()
            .into_iter()
            .flat_map(|e| match e {
                Event::Delivered { messages, .. } | Event::Pushed { messages, .. } => messages,
                _ => Vec::new(),
            })
            .collect()
    }

    pub(crate) fn stats(&mut self, queue: &str) -> QueueStats {
        match self.ok(Command::Stats {
            queue: queue.into(),
        }) {
            Reply::Stats(s) => *s,
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

/// The body number of a delivery published by `Rig::publish`.
pub(crate) fn n_of(d: &Delivery) -> u64 {
    d.message.as_ref().expect("json body").to_value()["n"]
        .as_u64()
        .expect("n")
}
