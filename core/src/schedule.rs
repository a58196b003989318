//! Schedules: a queue publishes a message every `every_ms` or on a 5-field UTC cron pattern.
//!
//! A schedule is engine state: its next run is a timer (`TimerKind::Schedule`) at the run's
//! slot, so a run happens at its own deadline however late the host calls, and replaying the
//! log repeats it exactly. Each run publishes with the idempotency key
//! `schedule:{id}:{slot}`, so one slot never yields two jobs. After downtime the host sends
//! `Command::Resume` first: each schedule that missed slots moves its timer to the latest
//! missed one, so it makes one catch-up run, not one per missed slot. Cron patterns are
//! evaluated by `croner` on the time the engine is given; no clock is read.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{MessageId, PublishMessage, Published, Reply, ScheduleInfo, ScheduleSpec};
use crate::config::{Limits, check_headers};
use crate::engine::Engine;
use crate::ids::QueueId;
use crate::time::Millis;
use crate::timers::TimerKind;

/// Shortest interval of an `every_ms` schedule.
pub const MIN_EVERY_MS: u64 = 1_000;
/// Longest schedule id, in bytes.
const MAX_SCHEDULE_ID_BYTES: usize = 128;

/// One schedule and its history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Schedule {
    pub(crate) spec: ScheduleSpec,
    /// Where an `every_ms` timetable counts from: `start_at`, or when it was created.
    pub(crate) anchor: Millis,
    pub(crate) next_run_at: Option<Millis>,
    pub(crate) last_run_at: Option<Millis>,
    pub(crate) runs: u64,
    pub(crate) last_message_id: Option<MessageId>,
    pub(crate) last_error: Option<String>,
}

fn cron_of(pattern: &str) -> Result<Cron, Error> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| Error::invalid("cron", format!("not a 5-field cron pattern: {e}")))
}

fn utc(t: Millis) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(i64::try_from(t.0).ok()?).single()
}

fn millis(t: &DateTime<Utc>) -> Option<Millis> {
    u64::try_from(t.timestamp_millis()).ok().map(Millis)
}

/// The first cron slot strictly after `t`.
fn cron_after(pattern: &str, t: Millis) -> Option<Millis> {
    let cron = cron_of(pattern).ok()?;
    let next = cron.find_next_occurrence(&utc(t)?, false).ok()?;
    millis(&next).filter(|n| *n > t)
}

/// The latest cron slot at or before `t`.
fn cron_at_or_before(pattern: &str, t: Millis) -> Option<Millis> {
    let cron = cron_of(pattern).ok()?;
    let prev = cron.find_previous_occurrence(&utc(t)?, true).ok()?;
    millis(&prev).filter(|p| *p <= t)
}

impl Schedule {
    /// The first slot strictly after `t` within `start_at`..=`end_at`, unless `max_runs` are
    /// made.
    pub(crate) fn slot_after(&self, t: Millis) -> Option<Millis> {
        if self.spec.max_runs.is_some_and(|m| self.runs >= m) {
            return None;
        }
        let next = match (&self.spec.cron, self.spec.every_ms) {
            (Some(pattern), _) => match self.spec.start_at {
                Some(start) if start > t => cron_after(pattern, Millis(start.0 - 1))?,
                _ => cron_after(pattern, t)?,
            },
            (None, Some(_)) if t < self.anchor => self.anchor,
            (None, Some(every)) => self
                .anchor
                .add_ms(((t.0 - self.anchor.0) / every + 1).saturating_mul(every)),
            (None, None) => return None,
        };
        self.spec.end_at.is_none_or(|e| next <= e).then_some(next)
    }

    /// The latest slot at or before `t` (and `end_at`), not before `start_at`.
    fn slot_at_or_before(&self, t: Millis) -> Option<Millis> {
        let t = self.spec.end_at.map_or(t, |e| e.min(t));
        let slot = match (&self.spec.cron, self.spec.every_ms) {
            (Some(pattern), _) => cron_at_or_before(pattern, t)?,
            (None, Some(_)) if t < self.anchor => return None,
            (None, Some(every)) => self.anchor.add_ms((t.0 - self.anchor.0) / every * every),
            (None, None) => return None,
        };
        self.spec.start_at.is_none_or(|s| slot >= s).then_some(slot)
    }

    fn info(&self, id: &str) -> ScheduleInfo {
        ScheduleInfo {
            schedule_id: id.to_owned(),
            spec: self.spec.clone(),
            next_run_at: self.next_run_at,
            last_run_at: self.last_run_at,
            runs: self.runs,
            last_message_id: self.last_message_id,
            last_error: self.last_error.clone(),
        }
    }
}

/// Checks a schedule's id and spec.
fn check(id: &str, spec: &ScheduleSpec, limits: &Limits) -> Result<(), Error> {
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if id.is_empty() || id.len() > MAX_SCHEDULE_ID_BYTES || !ok_chars {
        return Err(Error::invalid(
            "schedule_id",
            format!("1-{MAX_SCHEDULE_ID_BYTES} characters of A-Z a-z 0-9 . _ : -"),
        ));
    }
    match (&spec.cron, spec.every_ms) {
        (Some(pattern), None) => {
            cron_of(pattern)?;
        }
        (None, Some(every)) if (MIN_EVERY_MS..=limits.max_ttl_ms).contains(&every) => {}
        (None, Some(_)) => {
            return Err(Error::invalid(
                "every_ms",
                format!("between {MIN_EVERY_MS} and {} ms", limits.max_ttl_ms),
            ));
        }
        _ => {
            return Err(Error::invalid(
                "schedule",
                "give exactly one of `every_ms` or `cron`",
            ));
        }
    }
    if spec.message.len() > limits.max_payload_bytes {
        return Err(Error::too_large(
            "message",
            spec.message.len(),
            limits.max_payload_bytes,
        ));
    }
    if spec.priority.is_some_and(|p| p > 9) {
        return Err(Error::invalid("priority", "must be 0..=9"));
    }
    check_headers(limits, &spec.headers)?;
    if let (Some(s), Some(e)) = (spec.start_at, spec.end_at)
        && e < s
    {
        return Err(Error::invalid("end_at", "must not be before start_at"));
    }
    if spec.max_runs == Some(0) {
        return Err(Error::invalid("max_runs", "must be positive"));
    }
    Ok(())
}

impl Engine {
    fn schedule_count(&self) -> usize {
        self.queues.values().map(|q| q.schedules.len()).sum()
    }

    /// Creates or replaces a schedule; a replaced one keeps its history.
    pub(crate) fn put_schedule(
        &mut self,
        queue: &str,
        id: String,
        spec: ScheduleSpec,
    ) -> Result<Reply, Error> {
        check(&id, &spec, &self.ctx.limits)?;
        let max = self.ctx.limits.max_schedules;
        let count = self.schedule_count();
        let now = self.ctx.now;
        let (q, ctx) = self.publish_target(queue)?;
        let key: Arc<str> = id.as_str().into();
        let old = q.schedules.remove(&key);
        if old.is_none() && count >= max {
            return Err(Error::limit("schedules", max as u64));
        }
        let created = old.is_none();
        let mut s = match old {
            Some(old) => {
                if let Some(at) = old.next_run_at {
                    ctx.timers.remove(at, schedule_timer(q.id, &key));
                }
                Schedule {
                    anchor: spec.start_at.unwrap_or(old.anchor),
                    spec,
                    ..old
                }
            }
            None => Schedule {
                anchor: spec.start_at.unwrap_or(now),
                spec,
                next_run_at: None,
                last_run_at: None,
                runs: 0,
                last_message_id: None,
                last_error: None,
            },
        };
        s.next_run_at = s.slot_after(now);
        if let Some(at) = s.next_run_at {
            ctx.timers.add(at, schedule_timer(q.id, &key));
        }
        let next_run_at = s.next_run_at;
        q.schedules.insert(key, s);
        Ok(Reply::ScheduleSet {
            schedule_id: id,
            next_run_at,
            created,
        })
    }

    pub(crate) fn list_schedules(&self, queue: &str) -> Result<Reply, Error> {
        let q = self.queue(queue)?;
        Ok(Reply::Schedules {
            schedules: q.schedules.iter().map(|(id, s)| s.info(id)).collect(),
        })
    }

    pub(crate) fn delete_schedule(&mut self, queue: &str, id: &str) -> Result<Reply, Error> {
        let (q, ctx) = self.queue_mut(queue)?;
        let Some(s) = q.schedules.remove(id) else {
            return Ok(Reply::ScheduleDeleted { deleted: false });
        };
        if let Some(at) = s.next_run_at {
            ctx.timers.remove(at, schedule_timer(q.id, id));
        }
        Ok(Reply::ScheduleDeleted { deleted: true })
    }

    /// Publishes one run now, outside the timetable (slot = now).
    pub(crate) fn run_schedule(&mut self, queue: &str, id: &str) -> Result<Reply, Error> {
        let q = self.queue(queue)?;
        let qid = q.id;
        if !q.schedules.contains_key(id) {
            return Err(Error::ScheduleNotFound {
                schedule_id: id.to_owned(),
            });
        }
        let now = self.ctx.now;
        self.run_once(qid, id, now).map(Reply::Published)
    }

    /// Publishes the run of slot `slot` and records it in the schedule's history.
    fn run_once(&mut self, qid: QueueId, id: &str, slot: Millis) -> Result<Published, Error> {
        let q = &self.queues[&qid];
        let s = &q.schedules[id];
        let name = q.name.clone();
        let message = PublishMessage {
            message: Some(s.spec.message.clone()),
            priority: s.spec.priority,
            headers: s.spec.headers.clone(),
            idempotency_key: Some(format!("schedule:{id}:{}", slot.0)),
            ..PublishMessage::default()
        };
        let result = self.publish_one(&name, message);
        let now = self.ctx.now;
        let s = self
            .queues
            .get_mut(&qid)
            .and_then(|q| q.schedules.get_mut(id))
            .expect("the schedule exists");
        match &result {
            Ok(p) if !p.duplicate => {
                s.runs += 1;
                s.last_run_at = Some(now);
                s.last_message_id = Some(p.message_id);
                s.last_error = None;
            }
            Ok(_) => {}
            Err(e) => s.last_error = Some(e.to_string()),
        }
        result
    }

    /// A schedule's timer fired at its slot (`ctx.now`): run it, and set the next slot.
    pub(crate) fn fire_schedule(&mut self, qid: QueueId, id: &str) {
        let slot = self.ctx.now;
        let due = self
            .queues
            .get(&qid)
            .and_then(|q| q.schedules.get(id))
            .is_some_and(|s| s.next_run_at == Some(slot));
        if !due {
            return;
        }
        // A refused run is recorded in the schedule's `last_error`; the timetable goes on.
        let _ = self.run_once(qid, id, slot);
        let q = self.queues.get_mut(&qid).expect("the queue exists");
        let s = q.schedules.get_mut(id).expect("the schedule exists");
        s.next_run_at = s.slot_after(slot);
        if let Some(at) = s.next_run_at {
            self.ctx.timers.add(at, schedule_timer(qid, id));
        }
    }

    /// The host was down: each schedule whose next run is before `now` moves it to its latest
    /// slot at or before `now`, so the timers make one catch-up run. Returns how many moved or
    /// are due.
    pub(crate) fn resume(&mut self, now: Millis) -> u64 {
        let mut caught_up = 0;
        for q in self.queues.values_mut() {
            for (id, s) in &mut q.schedules {
                let Some(due) = s.next_run_at.filter(|d| *d < now) else {
                    continue;
                };
                caught_up += 1;
                let Some(latest) = s.slot_at_or_before(now).filter(|l| *l > due) else {
                    continue;
                };
                self.ctx.timers.remove(due, schedule_timer(q.id, id));
                self.ctx.timers.add(latest, schedule_timer(q.id, id));
                s.next_run_at = Some(latest);
            }
        }
        caught_up
    }
}

fn schedule_timer(queue: QueueId, id: &str) -> TimerKind {
    TimerKind::Schedule {
        queue,
        id: id.into(),
    }
}
