//! The publisher: queue messages to every queue (some in batches, with delays, TTLs and
//! retry overrides, some debounced under a few shared keys, grouped on queues using groups)
//! and pub/sub messages to the topics.

use serde_json::json;
use synap_core::{Command, Error, Json, PublishMessage, Reply};

use super::listener::TOPICS;
use crate::swarm::harness::Harness;

/// Publishes `total` queue messages and `topic_total` pub/sub messages.
#[derive(Debug)]
pub(crate) struct Publisher {
    total: usize,
    sent: usize,
    topic_total: usize,
    topic_sent: usize,
    next: u64,
    /// A keyed publish whose reply was lost: sent again (the same command) at a later turn.
    retry: Option<Command>,
}

impl Publisher {
    pub(crate) fn new(total: usize, topic_total: usize) -> Self {
        Self {
            total,
            sent: 0,
            topic_total,
            topic_sent: 0,
            next: 1_000,
            retry: None,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.sent >= self.total && self.topic_sent >= self.topic_total && self.retry.is_none()
    }

    pub(crate) fn next_at(&self) -> Option<u64> {
        (!self.done()).then_some(self.next)
    }

    /// Publishes the next queue message(s) or pub/sub message.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        let gap = h.pick(0, h.cfg.publish_gap_ms);
        self.next = h.now + gap;
        if self.retry.is_some() && (self.sent >= self.total || h.chance(0.5)) {
            // The oracle checks that every keyed message answers with its first id.
            let cmd = self.retry.take().expect("a retry is pending");
            let budgeted = match &cmd {
                Command::Publish { queue, .. } | Command::PublishBatch { queue, .. } => h
                    .cfg
                    .queues
                    .iter()
                    .any(|q| &q.name == queue && q.config.max_bytes.is_some()),
                _ => false,
            };
            match h.exec(cmd) {
                Ok(Reply::Published(_) | Reply::PublishedBatch { .. }) => {}
                // Messages of the batch without a key (or past the key window) are new, and a
                // budgeted queue may be full by now.
                Err(Error::MemoryFull { .. }) if budgeted => {}
                other => panic!("a retried publish answered {other:?}"),
            }
            return;
        }
        let topic_left = self.topic_total - self.topic_sent;
        let queue_left = self.total - self.sent;
        if topic_left > 0 && (queue_left == 0 || h.chance(0.4)) {
            self.topic_sent += 1;
            let topic = TOPICS[h.pick(0, TOPICS.len() as u64 - 1) as usize];
            let _ = h.exec(Command::PubsubPublish {
                topic: topic.to_owned(),
                message: Json::from_value(&json!({ "t": self.topic_sent })),
                headers: Default::default(),
            });
            return;
        }
        self.publish_queue(h, queue_left);
    }

    fn publish_queue(&mut self, h: &mut Harness, left: usize) {
        if h.chance(h.cfg.p_debounce) {
            return self.publish_debounced(h);
        }
        let batch = if h.chance(h.cfg.p_batch) {
            h.pick(2, 5) as usize
        } else {
            1
        };
        let n = batch.min(left);
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.sent;
            self.sent += 1;
            let mut m = PublishMessage {
                message: Some(Json::from_value(&json!({ "n": k }))),
                priority: Some(h.pick(0, 9) as u8),
                ..PublishMessage::default()
            };
            if h.chance(h.cfg.p_delay) {
                m.delay_ms = Some(h.pick(1, 1_000));
            }
            if h.chance(h.cfg.p_ttl) {
                m.ttl_ms = Some(h.pick(50, 5_000));
            }
            if h.chance(h.cfg.p_override_retries) {
                m.max_retries = Some(h.pick(0, 3) as u32);
            }
            if h.chance(h.cfg.p_keyed) {
                m.idempotency_key = Some(format!("k{k}"));
                if h.chance(h.cfg.p_until_finished) {
                    m.dedup = Some(synap_core::DedupMode::UntilFinished);
                }
            }
            messages.push(m);
        }
        let q = h.any_queue();
        if h.cfg.grouped[q] {
            for m in &mut messages {
                m.group = draw_group(h);
            }
        }
        let queue = h.cfg.queues[q].name.clone();
        let budgeted = h.cfg.queues[q].config.max_bytes.is_some();
        let cmd = if n == 1 {
            Command::Publish {
                queue,
                message: messages.remove(0),
            }
        } else {
            Command::PublishBatch { queue, messages }
        };
        let keyed = match &cmd {
            Command::Publish { message, .. } => message.idempotency_key.is_some(),
            Command::PublishBatch { messages, .. } => {
                messages.iter().any(|m| m.idempotency_key.is_some())
            }
            _ => false,
        };
        let lost = keyed && self.retry.is_none() && h.chance(h.cfg.p_lost_reply);
        let again = lost.then(|| cmd.clone());
        let accepted = match h.exec(cmd) {
            Ok(Reply::Published(_) | Reply::PublishedBatch { .. }) => true,
            // A queue with `max_bytes` refuses what would pass it; nothing of it is kept.
            Err(Error::MemoryFull { .. }) if budgeted => false,
            other => panic!("publish answered {other:?}"),
        };
        // Only an accepted publish has a reply to lose.
        self.retry = again.filter(|_| accepted);
    }

    /// A debounced publish (never grouped, so an ordered group's publish order is the order
    /// of its `Published` events): one of a few keys, with a delay. While the key's job is still
    /// delayed this replaces its message (the oracle checks which happened); its reply is
    /// never "lost", as sending it again is not a retry but another call.
    fn publish_debounced(&mut self, h: &mut Harness) {
        let k = self.sent;
        self.sent += 1;
        let key = format!("deb{}", h.pick(0, h.cfg.debounce_keys - 1));
        let mut m = PublishMessage {
            message: Some(Json::from_value(&json!({ "n": k, "key": key }))),
            priority: Some(h.pick(0, 9) as u8),
            delay_ms: Some(h.pick(50, 3_000)),
            idempotency_key: Some(key),
            debounce: true,
            ..PublishMessage::default()
        };
        if h.chance(h.cfg.p_ttl) {
            m.ttl_ms = Some(h.pick(50, 5_000));
        }
        if h.chance(h.cfg.p_override_retries) {
            m.max_retries = Some(h.pick(0, 3) as u32);
        }
        let q = h.any_queue();
        let queue = h.cfg.queues[q].name.clone();
        let budgeted = h.cfg.queues[q].config.max_bytes.is_some();
        match h.exec(Command::Publish { queue, message: m }) {
            Ok(Reply::Published(_)) => {}
            Err(Error::MemoryFull { .. }) if budgeted => {}
            other => panic!("a debounced publish answered {other:?}"),
        }
    }
}

/// A group from a skewed draw: half the messages go to the heavy group, most of the rest to
/// a few light ones, some to none.
fn draw_group(h: &mut Harness) -> Option<String> {
    if h.chance(0.5) {
        return Some("heavy".to_owned());
    }
    if h.chance(0.2) {
        return None;
    }
    Some(format!("light{}", h.pick(0, h.cfg.light_groups - 1)))
}
