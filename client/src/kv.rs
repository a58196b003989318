//! Key-value operations (DESIGN.md §4): JSON values with an optional TTL, used by workers for
//! task status, progress and heartbeats.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::SynapClient;
use crate::error::Result;
use crate::types::opt_secs;

#[derive(Serialize)]
struct SetBody<'a, T: ?Sized> {
    key: &'a str,
    value: &'a T,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    ttl: Option<Duration>,
}

#[derive(Deserialize)]
struct GetReply {
    found: bool,
    #[serde(default)]
    value: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Deleted {
    deleted: bool,
}

#[derive(Deserialize)]
struct Exists {
    exists: bool,
}

#[derive(Deserialize)]
struct IntValue {
    value: i64,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct Ignored {}

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
        let body = SetBody { key, value, ttl };
        let _: Ignored = self.call(Method::POST, &["kv", "set"], Some(&body)).await?;
        Ok(())
    }

    /// The value of `key` decoded as `T`; `None` when it is missing or expired.
    ///
    /// # Errors
    /// [`SynapError::Decode`](crate::SynapError::Decode) when the value is not a `T`.
    pub async fn kv_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let r: GetReply = self
            .call(Method::GET, &["kv", "get", key], None::<&()>)
            .await?;
        if !r.found {
            return Ok(None);
        }
        let value = r.value.unwrap_or(serde_json::Value::Null);
        Ok(Some(serde_json::from_value(value)?))
    }

    /// Deletes `key`; `false` if there was no live key.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn kv_del(&self, key: &str) -> Result<bool> {
        let r: Deleted = self
            .call(Method::DELETE, &["kv", "del", key], None::<&()>)
            .await?;
        Ok(r.deleted)
    }

    /// Whether a live (unexpired) `key` exists.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn kv_exists(&self, key: &str) -> Result<bool> {
        let r: Exists = self
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
        #[derive(Serialize)]
        struct Body<'a> {
            key: &'a str,
            by: i64,
        }
        let r: IntValue = self
            .call(Method::POST, &["kv", "incr"], Some(&Body { key, by }))
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
        let r: Keys = self.send_get(url).await?;
        Ok(r.keys)
    }
}
