//! The oracle's rules for publishes: the message of each new job (or replaced one), keyed
//! publishes (a retried key answers with its first publish, an `until_finished` key holds
//! while its job is unfinished) and debounced ones: a publish whose key's job is still
//! delayed (never delivered, its delay not over) replaces that job's message and restarts its
//! delay, keeping its id; otherwise it publishes a new job. A key never yields a second job
//! while its first is still delayed.

use std::sync::Arc;

use synap_core::{Command, Error, PublishMessage, Published, Reply};

use super::Oracle;

impl Oracle {
    /// A publish answered `p` for message `m`: a new job (or a replaced message) carries `m`.
    pub(super) fn publish_body(&mut self, m: &PublishMessage, p: &Published) {
        if !p.duplicate {
            let group = m.group.as_deref().map(Arc::from);
            self.ledger
                .pending_flow
                .insert(p.message_id, (group, m.delay_ms));
        }
        if let (false, Some(body)) = (p.duplicate, &m.message) {
            self.ledger
                .pending_bodies
                .insert(p.message_id, body.to_value());
        }
    }

    /// A debounced publish was answered (its events are drained).
    pub(super) fn debounced(&mut self, queue: &str, m: &PublishMessage, p: &Published) {
        let q = self.cfg.queue_index(queue);
        let key = m
            .idempotency_key
            .clone()
            .expect("a debounced publish has a key");
        assert!(!p.duplicate, "debounced key {key} answered as a duplicate");
        let slot = (q, key);
        let first = self.debounce.get(&slot).copied();
        let republished = self.ledger.replaced.contains(&p.message_id);
        if p.replaced {
            assert_eq!(
                first,
                Some(p.message_id),
                "key {} replaced another job",
                slot.1
            );
            assert!(
                republished,
                "a replace of {} without its publish",
                p.message_id
            );
            self.replacements += 1;
        } else {
            assert!(
                !republished,
                "{} replaced, yet answered as new",
                p.message_id
            );
            if let Some(first) = first {
                assert!(
                    !self
                        .ledger
                        .map
                        .get(&first)
                        .is_some_and(|e| e.still_delayed(self.now)),
                    "key {} on {queue} yielded a second job while {first} is still delayed",
                    slot.1
                );
            }
            self.debounce.insert(slot, p.message_id);
        }
        self.ledger.published(p.message_id, m);
    }

    /// Checks `queue`'s count of kept jobs (its stats at `now`) against retention.
    pub(crate) fn check_kept(&mut self, queue: usize, kept_jobs: u64) {
        self.retention.prune(self.now);
        assert_eq!(
            kept_jobs,
            self.retention.count(queue),
            "{}: finished jobs kept",
            self.cfg.queues[queue].name
        );
    }

    /// A publish or batch was answered (its events are drained).
    pub(super) fn after_publish(&mut self, cmd: &Command, result: &Result<Reply, Error>) {
        match (cmd, result) {
            (Command::Publish { queue, message }, Ok(Reply::Published(p))) => {
                self.unclaimed.retain(|id| *id != p.message_id);
                if message.debounce {
                    self.debounced(queue, message, p);
                } else {
                    let ledger = &self.ledger;
                    let fresh = self
                        .keys
                        .fresh(queue, message, p, |id| ledger.holds_key(id));
                    if fresh {
                        self.ledger.published(p.message_id, message);
                    }
                }
            }
            (
                Command::PublishBatch {
                    queue,
                    messages: sent,
                },
                Ok(Reply::PublishedBatch { messages }),
            ) => {
                for (m, p) in sent.iter().zip(messages) {
                    self.unclaimed.retain(|id| *id != p.message_id);
                    let ledger = &self.ledger;
                    if self.keys.fresh(queue, m, p, |id| ledger.holds_key(id)) {
                        self.ledger.published(p.message_id, m);
                    }
                }
            }
            _ => {}
        }
    }
}
