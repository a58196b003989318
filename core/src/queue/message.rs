//! A message and the states it moves through.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::groups::GroupSlot;
use crate::api::{Delivery, Headers, LeaseToken, MessageId, SessionId};
use crate::json::Json;
use crate::time::Millis;

/// A message body: JSON, or bytes as published by Synap's SDKs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Body {
    Json(#[serde(with = "crate::json::as_text")] Json),
    Bytes(#[serde(with = "crate::bytes::arc")] Arc<[u8]>),
}

impl Body {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Json(j) => j.len(),
            Self::Bytes(b) => b.len(),
        }
    }

    pub(crate) fn split(&self) -> (Option<Json>, Option<Arc<[u8]>>) {
        match self {
            Self::Json(j) => (Some(j.clone()), None),
            Self::Bytes(b) => (None, Some(b.clone())),
        }
    }
}

/// Where a message is. It is in exactly one state; leaving the queue (ack, dead-letter, purge)
/// removes it from the queue's map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// In the ready index.
    Ready,
    /// Waiting for `until` (a publish delay or a retry delay); a `Due` timer is set.
    Delayed { until: Millis },
    /// Leased; a `Lease` timer is set for `deadline`. `session` is the streaming consumer it
    /// was pushed to, which holds one credit for it.
    InFlight {
        lease: LeaseToken,
        deadline: Millis,
        consumer: Option<Arc<str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<SessionId>,
    },
}

/// A queued message. What most messages never have (headers, a TTL, an error) is kept in
/// `extra`, boxed, so a plain message stays small: the queue holds millions of them.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) id: MessageId,
    /// Publish order, kept across retries so a retried message keeps its place.
    pub(crate) seq: u64,
    pub(crate) body: Body,
    pub(crate) published_at: Millis,
    /// When it entered this queue (publish or redrive).
    pub(crate) enqueued_at: Millis,
    /// When it last became ready (for the wait-time statistic); in flight, when its current
    /// delivery began (a lookup's `started_at`).
    pub(crate) ready_since: Millis,
    /// Deliveries so far.
    pub(crate) attempts: u32,
    pub(crate) max_retries: u32,
    pub(crate) priority: u8,
    /// Its TTL passed while it was in flight: it is dead-lettered when the lease ends.
    pub(crate) expired: bool,
    /// Cancelled while in flight: its delivery's end settles it as cancelled.
    pub(crate) cancel_requested: bool,
    /// Its group, while it is in the queue's store (in room the slot had spare).
    group: Option<GroupSlot>,
    extra: Option<Box<Extra>>,
    pub(crate) state: State,
}

/// The rarer parts of a message; `None` in `Message::extra` when all are empty.
#[derive(Clone, Debug, Default)]
struct Extra {
    headers: Headers,
    /// Its TTL as published, so a redriven message gets a fresh expiry.
    ttl_ms: Option<u64>,
    expires_at: Option<Millis>,
    last_error: Option<String>,
    /// The last progress its worker reported.
    progress: Option<Json>,
    /// Its group's name, once it has left the queue's store (dead-lettered, kept).
    group_name: Option<Arc<str>>,
    /// Times it was snoozed.
    snoozes: u32,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.ttl_ms.is_none()
            && self.expires_at.is_none()
            && self.last_error.is_none()
            && self.progress.is_none()
            && self.group_name.is_none()
            && self.snoozes == 0
    }

    fn boxed(self) -> Option<Box<Self>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

/// What a new message is made of; the rest starts at its zero.
pub(crate) struct NewMessage {
    pub(crate) id: MessageId,
    pub(crate) seq: u64,
    pub(crate) body: Body,
    pub(crate) priority: u8,
    pub(crate) headers: Headers,
    pub(crate) now: Millis,
    pub(crate) max_retries: u32,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) group: Option<GroupSlot>,
}

static NO_HEADERS: Headers = Headers::new();

impl Message {
    /// A message just published: ready, never delivered.
    pub(crate) fn new(m: NewMessage) -> Self {
        let extra = Extra {
            headers: m.headers,
            ttl_ms: m.ttl_ms,
            expires_at: m.ttl_ms.map(|t| m.now.add_ms(t)),
            last_error: None,
            progress: None,
            group_name: None,
            snoozes: 0,
        };
        Self {
            id: m.id,
            seq: m.seq,
            body: m.body,
            published_at: m.now,
            enqueued_at: m.now,
            ready_since: m.now,
            attempts: 0,
            max_retries: m.max_retries,
            priority: m.priority,
            expired: false,
            cancel_requested: false,
            group: m.group,
            extra: extra.boxed(),
            state: State::Ready,
        }
    }

    pub(crate) fn headers(&self) -> &Headers {
        self.extra.as_ref().map_or(&NO_HEADERS, |x| &x.headers)
    }

    pub(crate) fn ttl_ms(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|x| x.ttl_ms)
    }

    pub(crate) fn expires_at(&self) -> Option<Millis> {
        self.extra.as_ref().and_then(|x| x.expires_at)
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|x| x.last_error.as_deref())
    }

    pub(crate) fn progress(&self) -> Option<&Json> {
        self.extra.as_ref().and_then(|x| x.progress.as_ref())
    }

    /// Its group's slot in the queue, while it is in the queue's store.
    pub(crate) fn group_slot(&self) -> Option<GroupSlot> {
        self.group
    }

    pub(crate) fn set_group_slot(&mut self, group: Option<GroupSlot>) {
        self.group = group;
    }

    /// Its group's name, once it has left the queue's store.
    pub(crate) fn group_name(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|x| x.group_name.as_ref())
    }

    pub(crate) fn set_group_name(&mut self, group: Option<Arc<str>>) {
        if group.is_some() || self.extra.is_some() {
            self.edit_extra(|x| x.group_name = group);
        }
    }

    /// Times it was snoozed.
    pub(crate) fn snoozes(&self) -> u32 {
        self.extra.as_ref().map_or(0, |x| x.snoozes)
    }

    pub(crate) fn set_snoozes(&mut self, snoozes: u32) {
        if snoozes > 0 || self.extra.is_some() {
            self.edit_extra(|x| x.snoozes = snoozes);
        }
    }

    /// Whether it was delivered before (a retry or a snooze waits in `Delayed`), as opposed
    /// to a message whose publish delay has not ended.
    pub(crate) fn was_delivered(&self) -> bool {
        self.attempts > 0 || self.snoozes() > 0
    }

    pub(crate) fn set_progress(&mut self, progress: Json) {
        self.edit_extra(|x| x.progress = Some(progress));
    }

    /// Changes the extras in place (boxing them when they were empty, dropping the box when
    /// they become so).
    fn edit_extra(&mut self, edit: impl FnOnce(&mut Extra)) {
        match &mut self.extra {
            Some(x) => {
                edit(x);
                if x.is_empty() {
                    self.extra = None;
                }
            }
            None => {
                let mut x = Extra::default();
                edit(&mut x);
                self.extra = x.boxed();
            }
        }
    }

    pub(crate) fn set_last_error(&mut self, error: Option<String>) {
        if error.is_some() || self.extra.is_some() {
            self.edit_extra(|x| x.last_error = error);
        }
    }

    /// Starts its TTL (if it has one) again from `now`.
    pub(crate) fn restart_ttl(&mut self, now: Millis) {
        if let Some(ttl) = self.ttl_ms() {
            self.edit_extra(|x| x.expires_at = Some(now.add_ms(ttl)));
        }
    }

    /// Its delivery, with its group's name.
    pub(crate) fn delivery(&self, queue: &Arc<str>, group: Option<&Arc<str>>) -> Delivery {
        let State::InFlight {
            lease, deadline, ..
        } = self.state
        else {
            panic!("delivery of a message that is not in flight");
        };
        let (message, payload) = self.body.split();
        Delivery {
            queue: queue.clone(),
            message_id: self.id,
            message,
            payload,
            priority: self.priority,
            retry_count: self.attempts.saturating_sub(1),
            max_retries: self.max_retries,
            headers: self.headers().clone(),
            lease,
            lease_deadline: deadline,
            published_at: self.published_at,
            group: group.cloned(),
            children: None,
        }
    }

    /// The bytes the memory budget counts for this message: its body and headers, which do
    /// not change while it lives.
    pub(crate) fn held_bytes(&self) -> u64 {
        let headers: usize = self.headers().iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.body.len() + headers) as u64
    }

    /// Approximate bytes this message's own allocations hold (the body with its shared
    /// counts, the boxed extras with their headers); its slot is counted by the store.
    pub(crate) fn footprint(&self) -> usize {
        let body = self.body.len() + 2 * size_of::<usize>();
        let extra = self.extra.as_ref().map_or(0, |x| {
            let headers: usize = x.headers.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
            // The group's name is shared with the queue's groups, which count it.
            size_of::<Extra>()
                + headers
                + x.last_error.as_ref().map_or(0, String::capacity)
                + x.progress.as_ref().map_or(0, Json::len)
        });
        body + extra
    }
}

/// The serialized form: every field, in the order snapshots and `state_digest` have always
/// used. Serializing borrows from the message; deserializing owns.
#[derive(Serialize, Deserialize)]
struct Form<'a> {
    id: MessageId,
    seq: u64,
    body: Cow<'a, Body>,
    priority: u8,
    headers: Cow<'a, Headers>,
    published_at: Millis,
    enqueued_at: Millis,
    ready_since: Millis,
    attempts: u32,
    max_retries: u32,
    ttl_ms: Option<u64>,
    expires_at: Option<Millis>,
    expired: bool,
    last_error: Option<Cow<'a, str>>,
    state: Cow<'a, State>,
    /// Last, and absent for a message that uses none of the job lifecycle, so a plain
    /// message serializes as it always has (snapshots encode structs as arrays: only a
    /// trailing field may be left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifecycle: Option<LifecycleForm>,
}

/// A message's job-lifecycle fields in the serialized form.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LifecycleForm {
    /// Its last progress report, as compact JSON text (as bodies are).
    #[serde(with = "crate::json::as_text_option")]
    progress: Option<Json>,
    cancel_requested: bool,
    /// Last, and absent for a message that uses no flow control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow: Option<FlowForm>,
}

/// A message's flow-control fields in the serialized form: its group's slot while it is in
/// the queue's store, its group's name once it has left.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FlowForm {
    group: Option<GroupSlot>,
    group_name: Option<Arc<str>>,
    snoozes: u32,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Form {
            id: self.id,
            seq: self.seq,
            body: Cow::Borrowed(&self.body),
            priority: self.priority,
            headers: Cow::Borrowed(self.headers()),
            published_at: self.published_at,
            enqueued_at: self.enqueued_at,
            ready_since: self.ready_since,
            attempts: self.attempts,
            max_retries: self.max_retries,
            ttl_ms: self.ttl_ms(),
            expires_at: self.expires_at(),
            expired: self.expired,
            last_error: self.last_error().map(Cow::Borrowed),
            state: Cow::Borrowed(&self.state),
            lifecycle: self.lifecycle_form(),
        }
        .serialize(s)
    }
}

impl Message {
    /// The serialized form's lifecycle part: absent for a plain message.
    fn lifecycle_form(&self) -> Option<LifecycleForm> {
        let grouped = self.group.is_some() || self.group_name().is_some();
        let flow = (grouped || self.snoozes() > 0).then(|| FlowForm {
            group: self.group,
            group_name: self.group_name().cloned(),
            snoozes: self.snoozes(),
        });
        (self.progress().is_some() || self.cancel_requested || flow.is_some()).then(|| {
            LifecycleForm {
                progress: self.progress().cloned(),
                cancel_requested: self.cancel_requested,
                flow,
            }
        })
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = Form::deserialize(d)?;
        let flow = m.lifecycle.as_ref().and_then(|l| l.flow.clone());
        let extra = Extra {
            headers: m.headers.into_owned(),
            ttl_ms: m.ttl_ms,
            expires_at: m.expires_at,
            last_error: m.last_error.map(Cow::into_owned),
            progress: m.lifecycle.as_ref().and_then(|l| l.progress.clone()),
            group_name: flow.as_ref().and_then(|f| f.group_name.clone()),
            snoozes: flow.as_ref().map_or(0, |f| f.snoozes),
        };
        Ok(Self {
            id: m.id,
            seq: m.seq,
            body: m.body.into_owned(),
            published_at: m.published_at,
            enqueued_at: m.enqueued_at,
            ready_since: m.ready_since,
            attempts: m.attempts,
            max_retries: m.max_retries,
            priority: m.priority,
            expired: m.expired,
            cancel_requested: m.lifecycle.is_some_and(|l| l.cancel_requested),
            group: flow.and_then(|f| f.group),
            extra: extra.boxed(),
            state: m.state.into_owned(),
        })
    }
}
