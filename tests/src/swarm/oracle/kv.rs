//! The KV model: value and expiry per key. A key is live while `expires_at > now`.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the KV holds, as the swarm's KV user believes.
#[derive(Debug, Default)]
pub(crate) struct KvModel {
    map: BTreeMap<String, (Value, Option<u64>)>,
}

impl KvModel {
    /// The live value of `key` at `now`.
    #[must_use]
    pub(crate) fn live(&self, key: &str, now: u64) -> Option<&Value> {
        self.map
            .get(key)
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(v, _)| v)
    }

    /// The expiry of `key`, if it has one.
    #[must_use]
    pub(crate) fn expiry(&self, key: &str) -> Option<u64> {
        self.map.get(key).and_then(|(_, e)| *e)
    }

    /// `key` now holds `value` until `expires_at`.
    pub(crate) fn set(&mut self, key: String, value: Value, expires_at: Option<u64>) {
        self.map.insert(key, (value, expires_at));
    }

    /// `key` was deleted.
    pub(crate) fn remove(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// The engine removed `key` at `at`: the model must agree it expired then.
    pub(crate) fn expired(&mut self, key: &str, at: u64) {
        let (_, exp) = self.map.remove(key).expect("expired key is in the model");
        assert_eq!(exp, Some(at), "key {key} expired at the wrong time");
    }
}
