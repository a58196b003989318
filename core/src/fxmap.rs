//! A fast hash map with a fixed hasher whose serialized form is sorted by key.
//!
//! The idempotency keys are looked up on every keyed publish, so they live in an `FxHashMap` (a
//! fixed hasher, never std's `RandomState`). Hash order would make snapshots and
//! `state_digest` depend on insertion history, so serialization sorts the entries: two engines
//! with the same contents serialize to the same bytes. (A queue's messages have a store of
//! their own, `queue/store.rs`, serialized the same way.)

use std::hash::Hash;
use std::ops::{Deref, DerefMut};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `FxHashMap` that serializes as a key-sorted sequence of pairs.
#[derive(Clone, Debug)]
pub(crate) struct SortedMap<K, V>(FxHashMap<K, V>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self(FxHashMap::default())
    }
}

impl<K, V> Deref for SortedMap<K, V> {
    type Target = FxHashMap<K, V>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<K, V> DerefMut for SortedMap<K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<K: Ord + Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&K, &V)> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_seq(entries)
    }
}

impl<'de, K, V> Deserialize<'de> for SortedMap<K, V>
where
    K: Eq + Hash + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(Self(entries.into_iter().collect()))
    }
}

/// Serializes a `BTreeMap` as a sequence of `(key, value)` pairs, for keys (tuples) that JSON
/// cannot use as object keys.
pub(crate) mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(crate) fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Ord + Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let entries: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}
