//! Prefetch credit of a queue WebSocket connection.
//!
//! Each pushed delivery takes one credit until it is acked, nacked or its lease ends. A
//! delivery is named by its message id *and* lease token: when a lease runs out, the engine may
//! hand the same message straight back to the same connection (its consume was parked), before
//! the old lease has been noticed here, and the two deliveries must each hold their own credit.
//! Deadlines are engine time (the shared `Clock`), so "the lease ended" means the same thing
//! here as in the engine, whatever the wall clock does.

use std::collections::BTreeMap;

use synap_core::{MessageId, Millis};

/// Free credit and the deliveries holding the rest.
#[derive(Debug)]
pub(crate) struct Credit {
    free: u32,
    /// Unsettled deliveries by (message id, lease token), with their lease deadlines.
    held: BTreeMap<(MessageId, u64), Millis>,
}

impl Credit {
    /// `prefetch` credits, none held.
    pub(crate) fn new(prefetch: u32) -> Self {
        Self {
            free: prefetch,
            held: BTreeMap::new(),
        }
    }

    /// Deliveries the connection may still take.
    pub(crate) fn free(&self) -> u32 {
        self.free
    }

    /// A delivery was pushed: it holds one credit until settled or its lease ends.
    pub(crate) fn take(&mut self, id: MessageId, lease: u64, deadline: Millis) {
        // Lease tokens are never reused, so a repeat would be a bug upstream; it must not
        // take a second credit for one held entry either way.
        if self.held.insert((id, lease), deadline).is_none() {
            self.free = self.free.saturating_sub(1);
        }
    }

    /// An ack or nack of `id` answered (either way, the delivery is no longer held: a failed
    /// one means its lease already ended). With a lease token, that delivery is released;
    /// without one, the engine settled the current lease, and every older delivery of the same
    /// id has ended already, so all of them are released.
    pub(crate) fn settle(&mut self, id: MessageId, lease: Option<u64>) {
        let keys: Vec<(MessageId, u64)> = match lease {
            Some(lease) => vec![(id, lease)],
            None => self.leases_of(id).collect(),
        };
        for key in keys {
            if self.held.remove(&key).is_some() {
                self.free = self.free.saturating_add(1);
            }
        }
    }

    /// An extend of `id` succeeded: the delivery it named (the latest one without a token,
    /// which is the one the engine extends) holds its credit until `deadline`.
    pub(crate) fn extend(&mut self, id: MessageId, lease: Option<u64>, deadline: Millis) {
        let key = match lease {
            Some(lease) => Some((id, lease)),
            // Tokens grow with every lease, so the largest is the current one.
            None => self.leases_of(id).next_back(),
        };
        if let Some(d) = key.and_then(|k| self.held.get_mut(&k)) {
            *d = deadline;
        }
    }

    /// Releases the deliveries whose lease has ended by `now` (engine time): the engine takes
    /// them back at their deadline.
    pub(crate) fn reclaim(&mut self, now: Millis) {
        let before = self.held.len();
        self.held.retain(|_, deadline| *deadline > now);
        let freed = u32::try_from(before - self.held.len()).unwrap_or(u32::MAX);
        self.free = self.free.saturating_add(freed);
    }

    /// The earliest lease deadline held, if any.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.held.values().min().copied()
    }

    /// Empties the held set, returning every (message id, lease token) it had.
    pub(crate) fn drain(&mut self) -> Vec<(MessageId, u64)> {
        let held = std::mem::take(&mut self.held);
        self.free = self
            .free
            .saturating_add(u32::try_from(held.len()).unwrap_or(u32::MAX));
        held.into_keys().collect()
    }

    fn leases_of(&self, id: MessageId) -> impl DoubleEndedIterator<Item = (MessageId, u64)> + '_ {
        self.held.range((id, 0)..=(id, u64::MAX)).map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> MessageId {
        MessageId::from_u128(n)
    }

    #[test]
    fn a_redelivery_to_the_same_connection_holds_its_own_credit() {
        let mut c = Credit::new(2);
        c.take(id(1), 10, Millis(1_000));
        // The lease ends at 1 000 and the engine hands the message straight back (lease 11)
        // before this connection noticed the end of lease 10.
        c.take(id(1), 11, Millis(2_000));
        assert_eq!(c.free(), 0);
        c.reclaim(Millis(1_000));
        assert_eq!(c.free(), 1, "lease 10 ended: its credit is back");
        c.settle(id(1), Some(11));
        assert_eq!(c.free(), 2, "no credit is lost for good");
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn settling_without_a_token_releases_every_delivery_of_the_id() {
        let mut c = Credit::new(3);
        c.take(id(1), 10, Millis(1_000));
        c.take(id(1), 11, Millis(2_000));
        c.take(id(2), 12, Millis(3_000));
        c.settle(id(1), None);
        assert_eq!(c.free(), 2);
        c.settle(id(1), Some(11));
        assert_eq!(c.free(), 2, "already released");
        assert_eq!(c.drain(), vec![(id(2), 12)]);
        assert_eq!(c.free(), 3);
    }

    #[test]
    fn extend_moves_the_latest_or_named_deadline() {
        let mut c = Credit::new(2);
        c.take(id(1), 10, Millis(1_000));
        c.take(id(1), 11, Millis(1_500));
        c.extend(id(1), None, Millis(9_000));
        c.reclaim(Millis(2_000));
        assert_eq!(c.free(), 1, "lease 10 ended; lease 11 was extended");
        assert_eq!(c.next_deadline(), Some(Millis(9_000)));
        c.extend(id(1), Some(11), Millis(5_000));
        assert_eq!(c.next_deadline(), Some(Millis(5_000)));
    }

    #[test]
    fn a_repeated_delivery_takes_one_credit() {
        let mut c = Credit::new(2);
        c.take(id(1), 10, Millis(1_000));
        c.take(id(1), 10, Millis(1_000));
        assert_eq!(c.free(), 1);
    }
}
