//! Message groups of one queue (DESIGN.md §12): each group's ready messages in an index of
//! their own, and the listing of the groups a consumer may take from now.
//!
//! A grouped message waits in its group's index, ordered by priority and then publish order
//! (publish order alone in an ordered group). The groups that hold ready messages and are at
//! none of their limits are *listed*, keyed by their head: its priority first, then its
//! publish order, or under `fair_groups` the group's turn, a number drawn each time the group
//! is served, so the groups of one priority take turns. A delivery takes the head of the
//! listing's first group: O(log n) however many groups are held back. A group at a limit
//! (`group_concurrency`, an ordered group's delivery or retry, a full `group_rate_limit`
//! window) leaves the listing and returns when a delivery of it ends, its retry is due, or its
//! window closes. Ungrouped messages stay in the queue's lanes (`ready.rs`) and compete with
//! the listing's first group.
//!
//! Groups live in slots, and a message in the queue's store names its group by slot: four
//! bytes its own slot had spare, so a grouped message costs no more than a plain one but its
//! entry in the group's index. The name is looked up once, when a message joins the queue. A
//! message that leaves the store for the DLQ or the kept jobs carries its group's name
//! instead (`Message::group_name`), since its group may be gone by the time it is read.
//!
//! A group lives while it holds messages (ready, delayed or in flight) and while its rate
//! window is open, so emptying a group and refilling it cannot reset its window. Slots and
//! their reuse are state (snapshotted, in the digest), so a restored engine decides as the
//! live one did.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize};

use super::flow::Window;
use super::ready::PRIORITIES;
use crate::api::{GroupInfo, MessageId};
use crate::config::QueueConfig;
use crate::fxmap::pairs;
use crate::time::Millis;

/// A place in a ready index or in the listing: `(9 - priority, order)`, smallest first.
type Key = (u8, u64);

/// A group's rate window that a delivery opened: the group and the window's end.
pub(crate) type Opened = (Arc<str>, Millis);

/// How a message in the queue's store names its group: the group's slot, plus one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct GroupSlot(NonZeroU32);

impl GroupSlot {
    fn of(index: usize) -> Self {
        let n = u32::try_from(index + 1).expect("fewer than 2^32 groups");
        Self(NonZeroU32::new(n).expect("one more than an index"))
    }

    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// One group of a queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Group {
    name: Arc<str>,
    /// Ready messages by `(rank, seq)`, with their priority. The rank is `9 - priority`, or 0
    /// for every message of an ordered group (publish order alone).
    #[serde(with = "pairs")]
    ready: BTreeMap<Key, (MessageId, u8)>,
    /// Its messages in the queue: ready, delayed and in flight.
    held: u32,
    /// Its leased messages.
    in_flight: u32,
    /// Its delayed messages that were delivered before (retries, snoozes): an ordered group
    /// delivers nothing else until they are done.
    retrying: u32,
    /// Its `group_rate_limit` window.
    window: Option<Window>,
    /// Its key in the listing, while listed.
    listed: Option<Key>,
    /// Ready messages it counts as held back (all of them while it is not listed).
    counted: u32,
    /// Deliveries it held beyond `group_concurrency` when the setting was last changed; 0
    /// after its next delivery (which is made only below the limit).
    floor: u32,
    /// The `seq` of its latest delivery (for the ordered-group invariant).
    last_seq: u64,
}

impl Group {
    fn new(name: Arc<str>) -> Self {
        Self {
            name,
            ready: BTreeMap::new(),
            held: 0,
            in_flight: 0,
            retrying: 0,
            window: None,
            listed: None,
            counted: 0,
            floor: 0,
            last_seq: 0,
        }
    }

    /// Deliveries it holds against its concurrency limit: leases, and in an ordered group the
    /// retries it waits for.
    fn occupancy(&self, cfg: &QueueConfig) -> u32 {
        self.in_flight + if cfg.ordered_groups { self.retrying } else { 0 }
    }

    /// Whether a limit keeps its ready messages from consumers now.
    fn blocked(&self, cfg: &QueueConfig, now: Millis) -> bool {
        cfg.group_limit()
            .is_some_and(|limit| self.occupancy(cfg) >= limit)
            || Window::full(self.window.as_ref(), cfg.group_rate_limit.as_ref(), now)
    }
}

/// Where a message stands within its group's index.
fn rank(cfg: &QueueConfig, priority: u8) -> u8 {
    if cfg.ordered_groups { 0 } else { 9 - priority }
}

/// The groups of one queue, their listing and the counts behind the statistics.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Groups {
    /// Groups by slot; freed slots are reused, last freed first.
    slots: Vec<Option<Group>>,
    free: Vec<u32>,
    /// The slot of each group, by name (rebuilt from the slots when restored).
    #[serde(skip)]
    index: FxHashMap<Arc<str>, GroupSlot>,
    /// The groups a consumer may take from now, by their head.
    #[serde(with = "pairs")]
    listing: BTreeMap<Key, GroupSlot>,
    /// Turns drawn so far (`fair_groups`).
    turns: u64,
    /// The ungrouped messages' turn: under `fair_groups` they take turns as one group.
    plain_turn: u64,
    /// Ready messages of groups that are not listed.
    held_back: u64,
    /// Groups holding messages.
    holding: u64,
    /// Grouped ready messages by priority.
    by_priority: [u64; PRIORITIES],
}

/// The serialized form of `Groups`: its fields in the same order, without the index.
#[derive(Deserialize)]
struct GroupsForm {
    slots: Vec<Option<Group>>,
    free: Vec<u32>,
    #[serde(with = "pairs")]
    listing: BTreeMap<Key, GroupSlot>,
    turns: u64,
    plain_turn: u64,
    held_back: u64,
    holding: u64,
    by_priority: [u64; PRIORITIES],
}

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = GroupsForm::deserialize(d)?;
        let index = f
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (Arc::clone(&g.name), GroupSlot::of(i))))
            .collect();
        Ok(Self {
            slots: f.slots,
            free: f.free,
            index,
            listing: f.listing,
            turns: f.turns,
            plain_turn: f.plain_turn,
            held_back: f.held_back,
            holding: f.holding,
            by_priority: f.by_priority,
        })
    }
}

impl Groups {
    /// Groups kept: those holding messages and those whose rate window is open.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn holding(&self) -> u64 {
        self.holding
    }

    pub(crate) fn held_back(&self) -> u64 {
        self.held_back
    }

    /// Grouped ready messages.
    pub(crate) fn ready(&self) -> u64 {
        self.by_priority.iter().sum()
    }

    /// Grouped ready messages at `priority` or higher.
    pub(crate) fn ahead(&self, priority: u8) -> u64 {
        self.by_priority[usize::from(priority)..].iter().sum()
    }

    /// The slot of the group named `name`, if the queue holds it.
    pub(crate) fn slot_of(&self, name: &str) -> Option<GroupSlot> {
        self.index.get(name).copied()
    }

    /// The name of the group in `slot`.
    pub(crate) fn name(&self, slot: GroupSlot) -> &Arc<str> {
        &self.at(slot).name
    }

    /// The listing's first key: the next group a consumer may take from.
    pub(crate) fn first(&self) -> Option<Key> {
        self.listing.first_key_value().map(|(k, _)| *k)
    }

    pub(crate) fn plain_turn(&self) -> u64 {
        self.plain_turn
    }

    /// The ungrouped messages were served: their turn goes to the back.
    pub(crate) fn served_plain(&mut self) {
        self.turns += 1;
        self.plain_turn = self.turns;
    }

    /// A message of the group named `name` joined the queue; its group's slot (a new group
    /// when the queue holds none of that name).
    pub(crate) fn enter(&mut self, name: &str) -> GroupSlot {
        let slot = match self.index.get(name) {
            Some(slot) => *slot,
            None => {
                let name: Arc<str> = Arc::from(name);
                let group = Some(Group::new(Arc::clone(&name)));
                let slot = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = group;
                        GroupSlot::of(i as usize)
                    }
                    None => {
                        self.slots.push(group);
                        GroupSlot::of(self.slots.len() - 1)
                    }
                };
                self.index.insert(name, slot);
                slot
            }
        };
        let g = self.at_mut(slot);
        g.held += 1;
        if g.held == 1 {
            self.holding += 1;
        }
        slot
    }

    /// A message of the group in `slot` left the queue (out of the ready index already).
    pub(crate) fn leave(&mut self, slot: GroupSlot, cfg: &QueueConfig, now: Millis) {
        let g = self.at_mut(slot);
        g.held -= 1;
        if g.held == 0 {
            self.holding -= 1;
        }
        self.refresh(slot, cfg, now, false);
    }

    /// A message of the group in `slot` is ready.
    pub(crate) fn put(
        &mut self,
        slot: GroupSlot,
        (priority, seq, id): (u8, u64, MessageId),
        cfg: &QueueConfig,
        now: Millis,
    ) {
        let before = self
            .at_mut(slot)
            .ready
            .insert((rank(cfg, priority), seq), (id, priority));
        debug_assert!(before.is_none(), "{id} is ready twice");
        self.by_priority[usize::from(priority)] += 1;
        self.refresh(slot, cfg, now, false);
    }

    /// Takes a ready message of the group in `slot` out of its index (TTL, cancel, replace);
    /// false if it is not there.
    pub(crate) fn pull(
        &mut self,
        slot: GroupSlot,
        (priority, seq): (u8, u64),
        cfg: &QueueConfig,
        now: Millis,
    ) -> bool {
        let key = (rank(cfg, priority), seq);
        let found = self.at_mut(slot).ready.remove(&key).is_some();
        if found {
            self.by_priority[usize::from(priority)] -= 1;
            self.refresh(slot, cfg, now, false);
        }
        found
    }

    /// Takes the head of the listing's first group for a delivery, counting it in flight and
    /// in the group's rate window. Returns the message and, when the delivery opened a
    /// window, the group and the window's end (a timer to set).
    pub(crate) fn pop(
        &mut self,
        cfg: &QueueConfig,
        now: Millis,
    ) -> Option<(MessageId, Option<Opened>)> {
        let slot = *self.listing.first_key_value()?.1;
        let g = self.at_mut(slot);
        debug_assert!(!g.blocked(cfg, now), "a listed group is at a limit");
        let ((_, seq), (id, priority)) = g.ready.pop_first().expect("a listed group is ready");
        g.in_flight += 1;
        g.floor = 0;
        g.last_seq = g.last_seq.max(seq);
        let opened = Window::count(&mut g.window, cfg.group_rate_limit.as_ref(), now)
            .map(|end| (Arc::clone(&g.name), end));
        self.by_priority[usize::from(priority)] -= 1;
        self.refresh(slot, cfg, now, true);
        Some((id, opened))
    }

    /// A delivery of the group in `slot` ended (ack, nack, lease expiry, give-back).
    pub(crate) fn released(&mut self, slot: GroupSlot, cfg: &QueueConfig, now: Millis) {
        self.at_mut(slot).in_flight -= 1;
        self.refresh(slot, cfg, now, false);
    }

    /// A delivered message of the group in `slot` starts (`true`) or ends (`false`) waiting
    /// for its retry or snooze.
    pub(crate) fn retry_wait(
        &mut self,
        slot: GroupSlot,
        waiting: bool,
        cfg: &QueueConfig,
        now: Millis,
    ) {
        let g = self.at_mut(slot);
        if waiting {
            g.retrying += 1;
        } else {
            g.retrying -= 1;
        }
        self.refresh(slot, cfg, now, false);
    }

    /// The rate window of the group named `name` has closed: it may be listed again, or
    /// forgotten.
    pub(crate) fn window_closed(&mut self, name: &str, cfg: &QueueConfig, now: Millis) {
        if let Some(slot) = self.slot_of(name) {
            self.refresh(slot, cfg, now, false);
        }
    }

    /// The queue's settings changed: re-key the ready indexes (when `ordered_groups` changed)
    /// and the listing (when it or `fair_groups` changed), note what each group holds beyond
    /// a lowered limit, and re-list every group under the new limits, in slot order.
    pub(crate) fn reconfigure(&mut self, old: &QueueConfig, cfg: &QueueConfig, now: Millis) {
        let rekey = old.ordered_groups != cfg.ordered_groups;
        if rekey || old.fair_groups != cfg.fair_groups {
            // Keys of the old kind (turns, or publish order) must all leave before any of the
            // new kind is listed: a turn and a `seq` may be the same number.
            self.listing.clear();
            for g in self.slots.iter_mut().flatten() {
                g.listed = None;
            }
        }
        for i in 0..self.slots.len() {
            let Some(g) = self.slots[i].as_mut() else {
                continue;
            };
            if rekey {
                let ready = std::mem::take(&mut g.ready);
                g.ready = ready
                    .into_iter()
                    .map(|((_, seq), (id, p))| ((rank(cfg, p), seq), (id, p)))
                    .collect();
                g.last_seq = 0;
            }
            g.floor = g.occupancy(cfg);
            Window::reconfigure(g.window.as_mut(), cfg.group_rate_limit.as_ref());
            self.refresh(GroupSlot::of(i), cfg, now, false);
        }
    }

    /// Empties every group's ready index (a purge); returns the ids, sorted.
    pub(crate) fn drain_ready(&mut self) -> Vec<MessageId> {
        let mut ids = Vec::with_capacity(self.ready() as usize);
        for g in self.slots.iter_mut().flatten() {
            ids.extend(g.ready.values().map(|(id, _)| *id));
            g.ready.clear();
            g.listed = None;
            g.counted = 0;
        }
        self.listing.clear();
        self.held_back = 0;
        self.by_priority = [0; PRIORITIES];
        ids.sort_unstable();
        ids
    }

    /// The open rate windows of the groups, with their group (to find their timers).
    pub(crate) fn windows(&self, now: Millis) -> Vec<(Arc<str>, Millis)> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|g| g.window.filter(|w| w.end > now).map(|w| (&g.name, w.end)))
            .map(|(name, end)| (Arc::clone(name), end))
            .collect()
    }

    /// Of each group and priority, the ready message that entered first (for the age of the
    /// oldest ready message).
    pub(crate) fn heads(&self) -> impl Iterator<Item = MessageId> + '_ {
        // One lookup per rank a group holds, not one per rank there could be.
        self.slots.iter().flatten().flat_map(|g| {
            let first = g.ready.first_key_value();
            std::iter::successors(first, move |(key, _)| {
                let next = key.0.checked_add(1)?;
                g.ready.range((next, 0)..).next()
            })
            .map(|(_, (id, _))| *id)
        })
    }

    /// Groups holding messages, largest first (ready, delayed and in flight together), then
    /// by name; at most `limit`.
    pub(crate) fn list(&self, limit: usize) -> Vec<GroupInfo> {
        let mut held: Vec<&Group> = self.slots.iter().flatten().filter(|g| g.held > 0).collect();
        held.sort_unstable_by(|a, b| b.held.cmp(&a.held).then_with(|| a.name.cmp(&b.name)));
        held.into_iter()
            .take(limit)
            .map(|g| {
                let ready = g.ready.len() as u64;
                let in_flight = u64::from(g.in_flight);
                GroupInfo {
                    group: g.name.to_string(),
                    ready,
                    in_flight,
                    delayed: u64::from(g.held) - ready - in_flight,
                }
            })
            .collect()
    }

    /// Approximate bytes of the groups' bookkeeping (for the memory benchmark): the slots,
    /// the names with their index, the ready indexes and the listing. A tree entry is
    /// counted at twice its size (nodes are between half full and full).
    pub(crate) fn footprint(&self) -> usize {
        let entry = size_of::<(Key, (MessageId, u8))>() * 2;
        let groups = self.slots.iter().flatten();
        let names: usize = groups.clone().map(|g| g.name.len() + 16).sum();
        let ready: usize = groups.map(|g| g.ready.len() * entry).sum();
        self.slots.capacity() * size_of::<Option<Group>>()
            + self.index.capacity() * (size_of::<(Arc<str>, GroupSlot)>() + 1)
            + names
            + ready
            + self.listing.len() * size_of::<(Key, GroupSlot)>() * 2
    }

    fn at(&self, slot: GroupSlot) -> &Group {
        self.slots[slot.index()].as_ref().expect("a held group")
    }

    fn at_mut(&mut self, slot: GroupSlot) -> &mut Group {
        self.slots[slot.index()].as_mut().expect("a held group")
    }

    /// Re-lists the group in `slot` after a change (with a new turn under `fair_groups` when
    /// `served`), updates the held-back count, and forgets the group once it holds nothing
    /// and its rate window has closed.
    fn refresh(&mut self, slot: GroupSlot, cfg: &QueueConfig, now: Millis, served: bool) {
        let g = self.slots[slot.index()]
            .as_mut()
            .expect("a group to refresh");
        let key = match g.ready.first_key_value() {
            Some((&(_, seq), &(_, priority))) if !g.blocked(cfg, now) => {
                let order = match g.listed {
                    _ if !cfg.fair_groups => seq,
                    Some((_, turn)) if !served => turn,
                    _ => {
                        self.turns += 1;
                        self.turns
                    }
                };
                Some((9 - priority, order))
            }
            _ => None,
        };
        if key != g.listed {
            if let Some(old) = g.listed {
                self.listing.remove(&old);
            }
            if let Some(new) = key {
                self.listing.insert(new, slot);
            }
            g.listed = key;
        }
        let counted = if key.is_some() {
            0
        } else {
            g.ready.len() as u32
        };
        self.held_back = self.held_back + u64::from(counted) - u64::from(g.counted);
        g.counted = counted;
        if g.held == 0 && !Window::live(g.window.as_ref(), now) {
            debug_assert!(g.ready.is_empty() && g.listed.is_none());
            self.index.remove(&g.name);
            self.slots[slot.index()] = None;
            self.free.push(slot.index() as u32);
        }
    }
}

#[cfg(any(test, feature = "invariants"))]
mod check;
