//! The model of publish idempotency keys: the first publish of a key on a queue adds a message;
//! every later one (a retry after a lost reply) answers with that message's id and adds
//! nothing. The swarm's window is longer than any run, so a key never runs out; a deleted
//! queue forgets its keys.

use std::collections::BTreeMap;

use synap_core::{DedupMode, MessageId, PublishMessage, Published};

#[derive(Debug, Default)]
pub(crate) struct Keys {
    /// The id each key was first answered with, and whether it holds only while that job is
    /// unfinished (`dedup: until_finished`).
    first: BTreeMap<(String, String), (MessageId, bool)>,
}

impl Keys {
    /// Checks one published message's answer; true when it added a new message.
    ///
    /// An `until_finished` key holds while its job is unfinished (`unfinished`), whatever the
    /// window: a second publish is a duplicate then, and a new job once the first is done.
    pub(crate) fn fresh(
        &mut self,
        queue: &str,
        m: &PublishMessage,
        p: &Published,
        unfinished: impl Fn(MessageId) -> bool,
    ) -> bool {
        let Some(key) = &m.idempotency_key else {
            assert!(
                !p.duplicate,
                "a publish without a key answered as a duplicate"
            );
            return true;
        };
        let slot = (queue.to_owned(), key.clone());
        let held = m.dedup == Some(DedupMode::UntilFinished);
        let live = self
            .first
            .get(&slot)
            .filter(|(first, until)| !until || unfinished(*first));
        match live.map(|(first, _)| first) {
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
                self.first.insert(slot, (p.message_id, held));
                true
            }
        }
    }

    /// The queue was deleted: its keys are gone with it.
    pub(crate) fn forget_queue(&mut self, queue: &str) {
        self.first.retain(|(q, _), _| q != queue);
    }
}
