//! The model of finished-job retention: per queue, the completed and the cancelled jobs kept
//! for lookup, oldest first. A finished job is kept unless its queue keeps none; the oldest
//! goes when `count` is reached, and each goes `age_ms` after it finished (the retention timer
//! runs at that deadline). Dead-lettered jobs are in the DLQ, not kept.

use std::collections::VecDeque;

use synap_core::{Keep, MessageId};

/// Jobs kept in one state: (finished at, id), oldest first.
type Kept = VecDeque<(u64, MessageId)>;

#[derive(Debug)]
pub(crate) struct Retention {
    /// Per queue: its `keep_completed` and `keep_cancelled`.
    keep: Vec<[Keep; 2]>,
    /// Per queue: the completed and the cancelled jobs kept.
    kept: Vec<[Kept; 2]>,
}

/// Which of a queue's two lists a finished job goes to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Finish {
    Completed = 0,
    Cancelled = 1,
}

impl Retention {
    pub(crate) fn new(keep: Vec<[Keep; 2]>) -> Self {
        let kept = keep.iter().map(|_| Default::default()).collect();
        Self { keep, kept }
    }

    /// Job `id` of `queue` finished at `at`.
    pub(crate) fn finished(&mut self, queue: usize, how: Finish, at: u64, id: MessageId) {
        let keep = self.keep[queue][how as usize];
        let kept = &mut self.kept[queue][how as usize];
        if keep.count == 0 {
            return;
        }
        while kept.len() as u64 >= keep.count {
            kept.pop_front();
        }
        kept.push_back((at, id));
    }

    /// Forgets what is past its age at `now` (every call runs the timers due first).
    pub(crate) fn prune(&mut self, now: u64) {
        for (keep, kept) in self.keep.iter().zip(&mut self.kept) {
            for (k, list) in keep.iter().zip(kept.iter_mut()) {
                while list.front().is_some_and(|(at, _)| at + k.age_ms <= now) {
                    list.pop_front();
                }
            }
        }
    }

    /// Whether finished job `id` of `queue` is kept (call `prune` first).
    pub(crate) fn holds(&self, queue: usize, id: MessageId) -> bool {
        self.kept[queue]
            .iter()
            .any(|list| list.iter().any(|(_, k)| *k == id))
    }

    /// Jobs `queue` keeps (call `prune` first), each list within its count.
    pub(crate) fn count(&self, queue: usize) -> u64 {
        let keep = &self.keep[queue];
        self.kept[queue]
            .iter()
            .zip(keep)
            .map(|(list, k)| {
                assert!(
                    list.len() as u64 <= k.count,
                    "retention model over its count"
                );
                list.len() as u64
            })
            .sum()
    }

    /// The queue was deleted: its kept jobs are gone.
    pub(crate) fn forget_queue(&mut self, queue: usize) {
        self.kept[queue] = Default::default();
    }
}
