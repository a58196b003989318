//! The groups' invariants, against a recount from the queue's messages (`check_invariants`).

use std::collections::BTreeMap;

use super::{Group, GroupSlot, Groups, Key, Window};
use crate::api::MessageId;
use crate::config::QueueConfig;
use crate::queue::{Message, State};
use crate::time::Millis;

/// What the messages of one group add up to.
#[derive(Default)]
struct Recount {
    ready: BTreeMap<Key, (MessageId, u8)>,
    held: u32,
    in_flight: u32,
    retrying: u32,
    first_deliveries: Vec<u64>,
}

impl Groups {
    /// Panics unless every count, index and listing matches the messages and the limits.
    pub(crate) fn check<'a>(
        &self,
        messages: impl Iterator<Item = &'a Message>,
        cfg: &QueueConfig,
        now: Millis,
    ) {
        let mut counts: BTreeMap<GroupSlot, Recount> = BTreeMap::new();
        for m in messages {
            assert!(m.group_name().is_none(), "{}: a queued message names", m.id);
            let Some(slot) = m.group_slot() else { continue };
            let c = counts.entry(slot).or_default();
            c.held += 1;
            match &m.state {
                State::Ready => {
                    c.ready
                        .insert((super::rank(cfg, m.priority), m.seq), (m.id, m.priority));
                    if !m.was_delivered() {
                        c.first_deliveries.push(m.seq);
                    }
                }
                State::InFlight { .. } => c.in_flight += 1,
                State::Delayed { .. } => c.retrying += u32::from(m.was_delivered()),
            }
        }
        let (mut held_back, mut holding, mut listed) = (0, 0, 0);
        let mut by_priority = [0u64; super::PRIORITIES];
        for (i, g) in self.slots.iter().enumerate() {
            let slot = GroupSlot::of(i);
            let Some(g) = g else {
                assert!(self.free.contains(&(i as u32)), "slot {i} is lost");
                continue;
            };
            assert_eq!(self.index.get(&g.name), Some(&slot), "{}: index", g.name);
            let c = counts.remove(&slot).unwrap_or_default();
            check_group(g, &c, cfg, now);
            if let Some(key) = g.listed {
                assert_eq!(self.listing.get(&key), Some(&slot), "{}: listed", g.name);
                listed += 1;
            }
            held_back += u64::from(g.counted);
            holding += u64::from(g.held > 0);
            for (_, p) in g.ready.values() {
                by_priority[usize::from(*p)] += 1;
            }
        }
        let unknown: Vec<_> = counts.keys().collect();
        assert!(unknown.is_empty(), "messages of empty slots: {unknown:?}");
        assert_eq!(self.index.len(), self.slots.len() - self.free.len());
        assert_eq!(listed, self.listing.len(), "listing size");
        assert_eq!(held_back, self.held_back, "held-back count");
        assert_eq!(holding, self.holding, "groups holding messages");
        assert_eq!(by_priority, self.by_priority, "grouped ready by priority");
        assert!(
            self.plain_turn <= self.turns,
            "the ungrouped turn was drawn"
        );
    }
}

fn check_group(g: &Group, c: &Recount, cfg: &QueueConfig, now: Millis) {
    let name = &g.name;
    assert_eq!(g.ready, c.ready, "{name}: ready index");
    assert_eq!(
        (g.held, g.in_flight, g.retrying),
        (c.held, c.in_flight, c.retrying),
        "{name}: held, in flight, retrying"
    );
    let blocked = g.blocked(cfg, now);
    assert_eq!(
        g.listed.is_some(),
        !g.ready.is_empty() && !blocked,
        "{name}: listed iff ready and at no limit"
    );
    if let (Some(key), Some((&(_, seq), &(_, p)))) = (g.listed, g.ready.first_key_value()) {
        assert_eq!(key.0, 9 - p, "{name}: listed at its head's priority");
        assert!(
            cfg.fair_groups || key.1 == seq,
            "{name}: listed by its head"
        );
    }
    let counted = if g.listed.is_some() {
        0
    } else {
        g.ready.len() as u32
    };
    assert_eq!(g.counted, counted, "{name}: held-back count");
    assert!(
        g.held > 0 || Window::live(g.window.as_ref(), now),
        "{name}: kept empty"
    );
    if let Some(limit) = cfg.group_limit() {
        assert!(
            g.occupancy(cfg) <= limit.max(g.floor),
            "{name}: {} deliveries held, the limit is {limit}",
            g.occupancy(cfg)
        );
    }
    if let Some(w) = &g.window {
        assert!(w.count <= w.cap, "{name}: window above its rate");
    }
    if cfg.ordered_groups {
        assert!(
            c.first_deliveries.iter().all(|seq| *seq > g.last_seq),
            "{name}: an ordered group delivered past a ready message"
        );
    }
}
