//! A queue's messages: a slab of slots, and a hash index from id to slot.
//!
//! A map from id to message keeps the message itself in the hash table, whose buckets are
//! between half and seven eighths full: at 1 M messages every queued message paid for its
//! own size about twice. Here the table holds only a 4-byte slot number (the id to compare is
//! read from the slot), so its empty room costs 5 bytes a bucket, and the slab grows as a
//! `Vec` whose unused tail is never touched. Freed slots are reused first; a slab that has
//! drained to a quarter is rebuilt smaller.
//!
//! Serialized it is the id-sorted sequence of `(id, message)` pairs, so snapshots and
//! `state_digest` depend on what is queued, never on slot order or insertion history.

use std::hash::BuildHasher;
use std::ops::Index;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::COMPACT_MIN;
use super::message::Message;
use crate::api::MessageId;

#[derive(Clone, Debug, Default)]
pub(crate) struct Messages {
    slots: Vec<Option<Message>>,
    /// Empty slots, reused last-freed first.
    free: Vec<u32>,
    /// Slot numbers, hashed by the id of the message in the slot.
    index: HashTable<u32>,
}

fn hash(id: &MessageId) -> u64 {
    FxBuildHasher.hash_one(id.as_u128())
}

/// Whether an index entry names the slot holding `id`.
fn holds<'a>(slots: &'a [Option<Message>], id: &'a MessageId) -> impl Fn(&u32) -> bool + 'a {
    move |&s| slots[s as usize].as_ref().is_some_and(|m| m.id == *id)
}

impl Messages {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot holding `id`: valid until the next insert or remove (see `at`, `at_mut`).
    pub(crate) fn slot_of(&self, id: &MessageId) -> Option<usize> {
        self.index
            .find(hash(id), holds(&self.slots, id))
            .map(|&s| s as usize)
    }

    pub(crate) fn contains_key(&self, id: &MessageId) -> bool {
        self.slot_of(id).is_some()
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&Message> {
        let s = self.slot_of(id)?;
        self.slots[s].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut Message> {
        let s = self.slot_of(id)?;
        self.slots[s].as_mut()
    }

    /// The message in a slot `slot_of` gave, saving a second lookup.
    pub(crate) fn at(&self, slot: usize) -> &Message {
        self.slots[slot].as_ref().expect("a full slot")
    }

    pub(crate) fn at_mut(&mut self, slot: usize) -> &mut Message {
        self.slots[slot].as_mut().expect("a full slot")
    }

    /// Adds a message whose id is not here yet.
    pub(crate) fn insert(&mut self, msg: Message) {
        debug_assert!(!self.contains_key(&msg.id), "{} is queued twice", msg.id);
        let h = hash(&msg.id);
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(msg);
                s
            }
            None => {
                let s = u32::try_from(self.slots.len()).expect("fewer than 2^32 messages");
                self.slots.push(Some(msg));
                s
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(h, s, |&s| {
            hash(&slots[s as usize].as_ref().expect("indexed slot is full").id)
        });
    }

    pub(crate) fn remove(&mut self, id: &MessageId) -> Option<Message> {
        self.remove_then(id, |_| {})
    }

    /// Removes a message, letting `before` change it in its slot first: a message is bigger
    /// than what moves without a copy call, so it is changed where it lies and moved once.
    pub(crate) fn remove_then(
        &mut self,
        id: &MessageId,
        before: impl FnOnce(&mut Message),
    ) -> Option<Message> {
        let entry = self
            .index
            .find_entry(hash(id), holds(&self.slots, id))
            .ok()?;
        let (s, _) = entry.remove();
        self.free.push(s);
        let slot = &mut self.slots[s as usize];
        if let Some(m) = slot.as_mut() {
            before(m);
        }
        slot.take()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Message> {
        self.slots.iter().flatten()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.values().map(|m| m.id)
    }

    /// Gives back the room of a drained backlog: once at most a quarter of the slots are in
    /// use, the messages move to a slab (and index) of twice their number.
    pub(crate) fn compact(&mut self) {
        let len = self.len();
        if self.slots.len() <= COMPACT_MIN || len * 4 >= self.slots.len() {
            return;
        }
        let mut slots = Vec::with_capacity(len * 2);
        slots.extend(self.slots.drain(..).flatten().map(Some));
        self.slots = slots;
        self.free = Vec::new();
        self.reindex(len * 2);
    }

    fn reindex(&mut self, capacity: usize) {
        let mut index = HashTable::with_capacity(capacity);
        for (s, m) in self.slots.iter().enumerate() {
            if let Some(m) = m {
                let s = s as u32;
                index.insert_unique(hash(&m.id), s, |_| unreachable!("sized for every slot"));
            }
        }
        self.index = index;
    }

    /// Bytes of bookkeeping: the slab, the free list and the index (for the memory
    /// benchmark; the messages' own allocations are counted by `Message::footprint`).
    pub(crate) fn footprint(&self) -> usize {
        // A table sized for `capacity` entries has at least 8/7 as many buckets, each with a
        // control byte.
        let buckets = self.index.capacity() * 8 / 7;
        self.slots.capacity() * size_of::<Option<Message>>()
            + self.free.capacity() * size_of::<u32>()
            + buckets * (size_of::<u32>() + 1)
    }
}

impl Index<&MessageId> for Messages {
    type Output = Message;
    fn index(&self, id: &MessageId) -> &Message {
        self.get(id).expect("message exists")
    }
}

impl Serialize for Messages {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&MessageId, &Message)> = self.values().map(|m| (&m.id, m)).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_seq(entries)
    }
}

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let entries: Vec<(MessageId, Message)> = Vec::deserialize(d)?;
        let mut out = Self {
            slots: Vec::with_capacity(entries.len()),
            free: Vec::new(),
            index: HashTable::with_capacity(entries.len()),
        };
        for (id, m) in entries {
            if id != m.id {
                return Err(D::Error::custom(format!(
                    "message {} is filed under id {id}",
                    m.id
                )));
            }
            if out.contains_key(&id) {
                return Err(D::Error::custom(format!("message {id} appears twice")));
            }
            out.insert(m);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Json;
    use crate::queue::{Body, NewMessage};
    use crate::time::Millis;

    fn message(n: u128) -> Message {
        Message::new(NewMessage {
            id: MessageId::from_u128(n),
            seq: n as u64,
            body: Body::Json(Json::from_value(&serde_json::json!({ "n": n as u64 }))),
            priority: 4,
            headers: Default::default(),
            now: Millis(7),
            max_retries: 3,
            ttl_ms: None,
            group: None,
        })
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_plain_message_takes_a_small_slot() {
        // id 16, seq 8, body 24, three times 24, counts 8, flags and extras 16, state 48.
        assert!(
            size_of::<Option<Message>>() <= 144,
            "{}",
            size_of::<Option<Message>>()
        );
    }

    #[test]
    fn removed_slots_are_reused_and_a_drained_slab_shrinks() {
        let mut m = Messages::default();
        let n = (COMPACT_MIN * 4) as u128;
        for i in 1..=n {
            m.insert(message(i));
        }
        for i in (1..=n).filter(|i| i % 8 != 0) {
            assert_eq!(
                m.remove(&MessageId::from_u128(i)).map(|x| x.seq),
                Some(i as u64)
            );
        }
        assert!(
            m.remove(&MessageId::from_u128(1)).is_none(),
            "removed twice"
        );
        let slots = m.slots.len();
        m.insert(message(n + 1));
        assert_eq!(m.slots.len(), slots, "a freed slot was reused");
        m.remove(&MessageId::from_u128(n + 1));
        m.compact();
        assert_eq!(m.len(), (n / 8) as usize);
        assert_eq!(m.slots.len(), m.len(), "only full slots are kept");
        assert!(m.free.is_empty());
        for i in 1..=n {
            let id = MessageId::from_u128(i);
            assert_eq!(m.contains_key(&id), i % 8 == 0, "{i}");
            if i % 8 == 0 {
                assert_eq!(m[&id].seq, i as u64);
            }
        }
    }

    #[test]
    fn serialized_form_follows_ids_not_slots() {
        let (mut a, mut b) = (Messages::default(), Messages::default());
        for i in 1..=50 {
            a.insert(message(i));
            b.insert(message(51 - i));
        }
        b.remove(&MessageId::from_u128(7));
        b.insert(message(7));
        let a_text = serde_json::to_string(&a).unwrap();
        assert_eq!(a_text, serde_json::to_string(&b).unwrap());
        let back: Messages = serde_json::from_str(&a_text).unwrap();
        assert_eq!(back.len(), 50);
        assert_eq!(serde_json::to_string(&back).unwrap(), a_text);
    }

    #[test]
    fn a_message_serializes_every_field_in_its_established_order() {
        let text = serde_json::to_string(&message(1)).unwrap();
        let fields: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        assert!(text.starts_with(r#"{"id":"00000000-0000-0000-0000-000000000001","seq":1,"#));
        assert!(text.contains(r#""headers":{},"published_at":7,"#), "{text}");
        assert!(text.ends_with(r#""ttl_ms":null,"expires_at":null,"expired":false,"last_error":null,"state":"ready"}"#), "{text}");
        assert_eq!(fields.len(), 15);
    }

    #[test]
    fn bad_input_is_refused() {
        let one = serde_json::to_value(message(1)).unwrap();
        let wrong = serde_json::json!([["00000000-0000-0000-0000-000000000002", one]]);
        let err = serde_json::from_value::<Messages>(wrong).unwrap_err();
        assert!(err.to_string().contains("filed under"), "{err}");
        let id = "00000000-0000-0000-0000-000000000001";
        let twice = serde_json::json!([[id, one], [id, one]]);
        let err = serde_json::from_value::<Messages>(twice).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}
