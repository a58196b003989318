//! The ready index: delivery order is highest priority first, then publish order.
//!
//! One deque per priority holds `(seq, id)` sorted by `seq`, the message's publish number. A new
//! message has the highest `seq` so far and goes to the back in O(1); a retried message keeps
//! its `seq` and is put back in its place by binary search, so it does not lose its turn.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::api::MessageId;

pub(crate) const PRIORITIES: usize = 10;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Ready {
    lanes: [VecDeque<(u64, MessageId)>; PRIORITIES],
    len: u64,
}

impl Ready {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts in `seq` order and returns the 1-based delivery position.
    pub(crate) fn insert(&mut self, priority: u8, seq: u64, id: MessageId) -> u64 {
        let lane = &mut self.lanes[usize::from(priority)];
        let at = match lane.back() {
            Some(&(last, _)) if last > seq => lane.partition_point(|&(s, _)| s < seq),
            _ => lane.len(),
        };
        lane.insert(at, (seq, id));
        self.len += 1;
        let ahead: usize = self.lanes[usize::from(priority) + 1..]
            .iter()
            .map(VecDeque::len)
            .sum();
        (ahead + at + 1) as u64
    }

    /// Gives back the room of lanes that have emptied out (after a backlog drained): a lane
    /// holding less than a quarter of its capacity shrinks to twice its length.
    pub(crate) fn compact(&mut self) {
        for lane in &mut self.lanes {
            let len = lane.len();
            if lane.capacity() > super::COMPACT_MIN && len * 4 < lane.capacity() {
                lane.shrink_to(len * 2);
            }
        }
    }

    /// Bytes the lanes hold (for the memory benchmark).
    pub(crate) fn footprint(&self) -> usize {
        let slots: usize = self.lanes.iter().map(VecDeque::capacity).sum();
        slots * size_of::<(u64, MessageId)>()
    }

    /// Messages at `priority` or higher.
    pub(crate) fn ahead(&self, priority: u8) -> u64 {
        self.lanes[usize::from(priority)..]
            .iter()
            .map(|l| l.len() as u64)
            .sum()
    }

    /// The priority and `seq` of the next message to deliver.
    pub(crate) fn peek(&self) -> Option<(u8, u64)> {
        let (p, lane) = self
            .lanes
            .iter()
            .enumerate()
            .rev()
            .find(|(_, l)| !l.is_empty())?;
        lane.front().map(|&(seq, _)| (p as u8, seq))
    }

    /// Takes the next message to deliver.
    pub(crate) fn pop(&mut self) -> Option<MessageId> {
        let lane = self.lanes.iter_mut().rev().find(|l| !l.is_empty())?;
        self.len -= 1;
        lane.pop_front().map(|(_, id)| id)
    }

    /// Removes a specific message (TTL expiry); false if it is not here.
    pub(crate) fn remove(&mut self, priority: u8, seq: u64) -> bool {
        let lane = &mut self.lanes[usize::from(priority)];
        let at = lane.partition_point(|&(s, _)| s < seq);
        if lane.get(at).is_some_and(|&(s, _)| s == seq) {
            lane.remove(at);
            self.len -= 1;
            true
        } else {
            false
        }
    }

    /// Removes everything, returning the ids.
    pub(crate) fn drain(&mut self) -> Vec<MessageId> {
        self.len = 0;
        self.lanes
            .iter_mut()
            .rev()
            .flat_map(|l| l.drain(..).map(|(_, id)| id))
            .collect()
    }

    /// The smallest `seq` at the head of any lane: the message that entered first.
    pub(crate) fn heads(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.lanes
            .iter()
            .filter_map(|l| l.front().map(|&(_, id)| id))
    }
}
