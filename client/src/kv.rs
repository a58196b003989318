//! Key-value operations (DESIGN.md §4): JSON values with an optional TTL, used by workers for
//! task status, progress and heartbeats.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use synap_wire as wire;

use crate::client::SynapClient;
use crate::error::Result;
use crate::types::opt_secs;

impl SynapClient {
    /// Sets `key` to `value` (any `Serialize` value, stored as JSON), replacing any value and
    /// TTL. With `ttl`, the key disappears that long from now.
    ///
    /// # Errors
    /// `payload_too_large` for an oversized key or value, or transport errors.
    pub async fn kv_set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let body = wire::SetRequest {
            key: key.to_owned(),
            value: Some(serde_json::to_value(value)?),
            ttl: opt_secs(ttl),
        };
        let _: wire::Success = self.call(Method::POST, &["kv", "set"], Some(&body)).await?;
        Ok(())
    }

    /// The value of `key` decoded as `T`; `None` when it is missing or expired.
    ///
    /// # Errors
    /// [`SynapError::Decode`](crate::SynapError::Decode) when the value is not a `T`.
    pub async fn kv_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let r: wire::KvGet = self
            .call(Method::GET, &["kv", "get", key], None::<&()>)
            .await?;
        match r {
            wire::KvGet::Found { value, .. } => Ok(Some(serde_json::from_value(value)?)),
            wire::KvGet::Missing => Ok(None),
        }
    }

    /// Deletes `key`; `false` if there was no live key.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn kv_del(&self, key: &str) -> Result<bool> {
        let r: wire::Deleted = self
            .call(Method::DELETE, &["kv", "del", key], None::<&()>)
            .await?;
        Ok(r.deleted)
    }

    /// Whether a live (unexpired) `key` exists.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn kv_exists(&self, key: &str) -> Result<bool> {
        let r: wire::Exists = self
            .call(Method::GET, &["kv", "exists", key], None::<&()>)
            .await?;
        Ok(r.exists)
    }

    /// Adds `by` (may be negative) to the integer at `key` (a missing key counts as 0) and
    /// returns the new value. An existing TTL is kept.
    ///
    /// # Errors
    /// `not_an_integer` when the value is not an integer.
    pub async fn kv_incr(&self, key: &str, by: i64) -> Result<i64> {
        let body = wire::IncrRequest {
            key: key.to_owned(),
            by: Some(by),
        };
        let r: wire::IntValue = self
            .call(Method::POST, &["kv", "incr"], Some(&body))
            .await?;
        Ok(r.value)
    }

    /// Live keys starting with `prefix` (all keys for `""`), sorted.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut url = self.url(&["kv", "keys"]);
        url.query_pairs_mut().append_pair("prefix", prefix);
        let r: wire::KeysResponse = self.send_get(url).await?;
        Ok(r.keys)
    }
}
