//! The model of schedules' timetables (one schedule per queue at most). The slots of an
//! `every_ms` schedule are its creation time plus multiples of `every_ms`; those of the swarm's
//! cron patterns (`*/k` minutes, UTC) are the multiples of k minutes since the epoch. A run
//! happens exactly at the next slot, publishing one job; a slot never yields two. After
//! downtime, `Resume` moves a schedule whose next slot passed to the latest slot at or before
//! the host's time: one catch-up run, not one per missed slot. A schedule ends after
//! `max_runs` runs.

use synap_core::Millis;

/// One schedule's timetable.
#[derive(Clone, Debug)]
struct Timetable {
    /// Slots are `anchor + k * period`.
    anchor: u64,
    period: u64,
    /// The slot of the next run; none once the schedule has ended.
    next: Option<u64>,
    runs_left: u64,
    /// The queue has a memory budget: a refused run skips its slot, so `next` is only a
    /// lower bound.
    loose: bool,
}

impl Timetable {
    /// The latest slot at or before `t` (`t` is at least the anchor).
    fn slot_at_or_before(&self, t: u64) -> u64 {
        self.anchor + (t - self.anchor) / self.period * self.period
    }
}

#[derive(Debug)]
pub(crate) struct Schedules {
    tables: Vec<Option<Timetable>>,
    /// Per queue, the publish times of its schedule's runs (each slot at most once).
    pub(crate) runs: Vec<Vec<u64>>,
}

/// What a schedule put: slot grid, runs, and whether its queue has a memory budget.
pub(crate) struct Put {
    /// The grid's origin: `None` for the time it is put (`every_ms`).
    pub(crate) anchor: Option<u64>,
    pub(crate) period: u64,
    pub(crate) max_runs: u64,
    pub(crate) loose: bool,
}

impl Schedules {
    pub(crate) fn new(queues: usize) -> Self {
        Self {
            tables: vec![None; queues],
            runs: vec![Vec::new(); queues],
        }
    }

    /// A schedule of `queue` was put at `now`; the engine answered its first slot.
    pub(crate) fn put(&mut self, queue: usize, p: &Put, now: u64, answered: Option<Millis>) {
        let anchor = p.anchor.unwrap_or(now);
        let mut t = Timetable {
            anchor,
            period: p.period,
            next: None,
            runs_left: p.max_runs,
            loose: p.loose,
        };
        let first = t.slot_at_or_before(now) + p.period;
        t.next = Some(first);
        assert_eq!(
            answered.map(|m| m.0),
            Some(first),
            "queue {queue}: the first slot of a schedule put at {now}"
        );
        self.tables[queue] = Some(t);
    }

    /// A run of `queue`'s schedule published a job at `at`.
    pub(crate) fn ran(&mut self, queue: usize, at: u64) {
        let runs = &mut self.runs[queue];
        assert!(
            !runs.contains(&at),
            "the slot at {at} of queue {queue} yielded two jobs"
        );
        runs.push(at);
        let t = self.tables[queue]
            .as_mut()
            .unwrap_or_else(|| panic!("a run of queue {queue}, which has no schedule"));
        let next = t
            .next
            .unwrap_or_else(|| panic!("queue {queue}: a run at {at} after its last one"));
        assert_eq!(
            (at - t.anchor) % t.period,
            0,
            "queue {queue}: a run at {at}, off the slots (every {} ms from {})",
            t.period,
            t.anchor
        );
        if t.loose {
            assert!(
                at >= next,
                "queue {queue}: a run at {at} before its slot {next}"
            );
        } else {
            assert_eq!(at, next, "queue {queue}: a run off its next slot");
        }
        t.runs_left -= 1;
        t.next = (t.runs_left > 0).then_some(at + t.period);
    }

    /// The host resumed at `now` after downtime.
    pub(crate) fn resumed(&mut self, now: u64) {
        for t in self.tables.iter_mut().flatten() {
            if let Some(next) = t.next.filter(|n| *n < now) {
                let latest = t.slot_at_or_before(now);
                t.next = Some(latest.max(next));
            }
        }
    }

    /// Whether `queue`'s schedule has runs left that must happen: a queue with a memory
    /// budget may refuse its runs for good (its dead letters count too), so it is not waited
    /// for.
    pub(crate) fn pending(&self, queue: usize) -> bool {
        self.tables[queue]
            .as_ref()
            .is_some_and(|t| t.next.is_some() && !t.loose)
    }

    /// The queue was deleted, its schedule with it.
    pub(crate) fn forget_queue(&mut self, queue: usize) {
        self.tables[queue] = None;
        self.runs[queue].clear();
    }
}
