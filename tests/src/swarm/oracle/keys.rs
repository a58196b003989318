//! The model of publish idempotency keys: the first publish of a key on a queue adds a message;
//! every later one (a retry after a lost reply) answers with that message's id and adds
//! nothing. The swarm's window is longer than any run, so a key never runs out; a deleted
//! queue forgets its keys.

use std::collections::BTreeMap;

use synap_core::{MessageId, PublishMessage, Published};

#[derive(Debug, Default)]
pub(crate) struct Keys {
    first: BTreeMap<(String, String), MessageId>,
}

impl Keys {
    /// Checks one published message's answer; true when it added a new message.
    pub(crate) fn fresh(&mut self, queue: &str, m: &PublishMessage, p: &Published) -> bool {
        let Some(key) = &m.idempotency_key else {
            assert!(
                !p.duplicate,
                "a publish without a key answered as a duplicate"
            );
            return true;
        };
        let slot = (queue.to_owned(), key.clone());
        match self.first.get(&slot) {
            Some(first) => {
                assert!(
                    p.duplicate,
                    "key {key} on {queue} published a second message"
                );
                assert_eq!(p.message_id, *first, "key {key} answered another id");
                false
            }
            None => {
                assert!(!p.duplicate, "key {key} on {queue} answered as seen before");
                self.first.insert(slot, p.message_id);
                true
            }
        }
    }

    /// The queue was deleted: its keys are gone with it.
    pub(crate) fn forget_queue(&mut self, queue: &str) {
        self.first.retain(|(q, _), _| q != queue);
    }
}
