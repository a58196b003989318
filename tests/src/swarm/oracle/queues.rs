//! What goes with a deleted queue: its sessions end, its waiters (long-poll and job waits)
//! time out, its messages, idempotency and debounce keys, kept jobs and schedule are gone.

use synap_core::{Error, Reply, SessionId};

use super::Oracle;

impl Oracle {
    /// A queue is deleted: its sessions end, its waiters time out, its messages are gone.
    pub(super) fn delete(&mut self, queue: &str, result: &Result<Reply, Error>) {
        assert_eq!(
            result,
            &Ok(Reply::QueueDeleted { deleted: true }),
            "delete {queue}"
        );
        let q = self.cfg.queue_index(queue);
        self.flow_deleted(q);
        self.flow_queue_deleted(q);
        let ended: Vec<SessionId> = self
            .takers
            .sessions
            .iter()
            .filter(|(_, m)| m.queue == q)
            .map(|(s, _)| *s)
            .collect();
        for s in ended {
            self.takers.sessions.remove(&s);
            self.takers.ending.insert(s);
        }
        let before = self.ledger.map.len();
        self.ledger.map.retain(|_, e| e.queue != q);
        self.deleted += before - self.ledger.map.len();
    }

    /// The deletion's events are drained: no waiter of the queue is left.
    pub(super) fn deleted(&mut self, queue: &str) {
        self.keys.forget_queue(queue);
        let q = self.cfg.queue_index(queue);
        self.schedules.forget_queue(q);
        self.retention.forget_queue(q);
        self.debounce.retain(|(dq, _), _| *dq != q);
        let left = self
            .takers
            .waiters
            .values()
            .filter(|w| w.queue == q)
            .count();
        assert_eq!(left, 0, "waiters of deleted {queue} not timed out");
        let left = self.job_waits.values().filter(|w| w.queue == q).count();
        assert_eq!(left, 0, "job waits of deleted {queue} not ended");
    }
}
