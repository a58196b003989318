//! A client that waits for jobs (`WaitJob`): it picks a job the swarm published, mostly an
//! unfinished one, and waits for it with a timeout (sometimes 0 ms, a plain lookup). It holds
//! a few waits at once and now and then hangs up on one (`CancelWait`). A wait ends when its
//! job finishes, at its deadline, with its queue, or when a restart drops every waiter; the
//! oracle checks which.

use std::collections::BTreeSet;

use synap_core::{Command, Error, Reply, WaiterId};

use crate::swarm::harness::Harness;

/// Waits held at once at most.
const MAX_PARKED: usize = 4;

/// The waiting client.
#[derive(Debug, Default)]
pub(crate) struct JobWaiter {
    /// Its waits still parked.
    pub(crate) parked: BTreeSet<WaiterId>,
    /// Waits it parked.
    pub(crate) waits: usize,
}

impl JobWaiter {
    /// Whether `w` is one of its waits.
    pub(crate) fn owns(&self, w: WaiterId) -> bool {
        self.parked.contains(&w)
    }

    /// Its wait `w` was answered (or ended with its queue).
    pub(crate) fn answered(&mut self, w: WaiterId) {
        assert!(self.parked.remove(&w), "answer to a wait it does not hold");
    }

    /// A restart dropped every waiter.
    pub(crate) fn dropped(&mut self) {
        self.parked.clear();
    }

    /// Waits for a job, or hangs up on a wait.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        if !self.parked.is_empty() && h.chance(0.1) {
            let i = h.pick(0, self.parked.len() as u64 - 1) as usize;
            let w = *self.parked.iter().nth(i).expect("in range");
            // A wait answered by the timers this call runs first is not cancelled: its answer
            // is routed after the call.
            match h.exec(Command::CancelWait { waiter_id: w }) {
                Ok(Reply::WaitCancelled { cancelled: true }) => {
                    self.parked.remove(&w);
                }
                Ok(Reply::WaitCancelled { cancelled: false }) => {}
                other => panic!("cancel of a wait answered {other:?}"),
            }
            return;
        }
        let ledger = &h.oracle.ledger;
        if self.parked.len() >= MAX_PARKED || ledger.map.is_empty() {
            return;
        }
        let unfinished: Vec<_> = ledger
            .map
            .iter()
            .filter(|(id, _)| ledger.unfinished(**id))
            .map(|(id, e)| (*id, e.queue))
            .collect();
        let (id, q) = if !unfinished.is_empty() && h.chance(0.7) {
            unfinished[h.pick(0, unfinished.len() as u64 - 1) as usize]
        } else {
            let i = h.pick(0, h.oracle.ledger.map.len() as u64 - 1) as usize;
            let (id, e) = h.oracle.ledger.map.iter().nth(i).expect("in range");
            (*id, e.queue)
        };
        let wait_ms = if h.chance(0.1) {
            0
        } else {
            h.pick(1, h.cfg.wait_job_ms)
        };
        let cmd = Command::WaitJob {
            queue: h.cfg.queues[q].name.clone(),
            message_id: id,
            wait_ms,
        };
        match h.exec(cmd) {
            Ok(Reply::Waiting { waiter_id }) => {
                self.parked.insert(waiter_id);
                self.waits += 1;
            }
            Ok(Reply::Job(_)) | Err(Error::MessageNotFound { .. }) => {}
            other => panic!("a wait for {id} answered {other:?}"),
        }
    }
}
