//! Bodies of the `/kv/` routes. TTLs are seconds, in requests and responses.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// `POST /kv/set`, and one entry of `mset`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRequest {
    /// The key.
    pub key: String,
    /// Any JSON but `null` (a missing or `null` value is refused).
    pub value: Option<Value>,
    /// Seconds the key lives; forever when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<f64>,
}

/// `POST /kv/mset`: every entry is validated before any is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsetRequest {
    /// The entries.
    #[serde(deserialize_with = "crate::strict::objects")]
    pub entries: Vec<SetRequest>,
}

/// `GET /kv/get/{key}`: `{found: true, value, ttl}` or `{found: false}`.
#[derive(Clone, Debug, PartialEq)]
pub enum KvGet {
    /// A live key.
    Found {
        /// Its value.
        value: Value,
        /// Seconds left, `null` without expiry.
        ttl: Option<f64>,
    },
    /// No live key.
    Missing,
}

/// The JSON form of [`KvGet`]. `ttl` is `Some(None)` for a present `null`.
#[derive(Serialize, Deserialize)]
struct KvGetJson {
    found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_nullable"
    )]
    ttl: Option<Option<f64>>,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, by `default`).
fn some_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

impl Serialize for KvGet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let json = match self {
            Self::Found { value, ttl } => KvGetJson {
                found: true,
                value: Some(value.clone()),
                ttl: Some(*ttl),
            },
            Self::Missing => KvGetJson {
                found: false,
                value: None,
                ttl: None,
            },
        };
        json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for KvGet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = KvGetJson::deserialize(d)?;
        if !json.found {
            return Ok(Self::Missing);
        }
        match (json.value, json.ttl) {
            (Some(value), Some(ttl)) => Ok(Self::Found { value, ttl }),
            (None, _) => Err(D::Error::missing_field("value")),
            (_, None) => Err(D::Error::missing_field("ttl")),
        }
    }
}

/// `{exists}` of `GET /kv/exists/{key}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exists {
    /// Whether a live key exists.
    pub exists: bool,
}

/// `{ttl}` of `GET /kv/ttl/{key}`: seconds left, `null` without expiry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvTtl {
    /// Seconds left.
    #[serde(deserialize_with = "crate::present")]
    pub ttl: Option<f64>,
}

/// `POST /kv/expire`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireRequest {
    /// The key.
    pub key: String,
    /// Seconds from now.
    pub ttl: f64,
}

/// `POST /kv/persist`: a request naming one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// The key.
    pub key: String,
}

/// `{updated}` of expire and persist: false for a missing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updated {
    /// Whether a live key was changed.
    pub updated: bool,
}

/// `POST /kv/incr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrRequest {
    /// The key (a missing key counts as 0).
    pub key: String,
    /// Amount to add, may be negative; 1 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<i64>,
}

/// `{value}` of an incr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntValue {
    /// The new value.
    pub value: i64,
}

/// The query of `GET /kv/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Keys starting with this; all keys when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// At most this many (the server caps it at 10,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// An API key in the query: accepted so a URL carrying one still parses, but ignored
    /// (this route takes its key from the `Authorization` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// `{keys, count}` of `GET /kv/keys`, sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysResponse {
    /// The keys.
    pub keys: Vec<String>,
    /// How many.
    pub count: u64,
}

/// `POST /kv/mget`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgetRequest {
    /// The keys, at most `max_batch`.
    pub keys: Vec<String>,
}

/// `{values}` of an mget, in the order asked, `null` for missing keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MgetResponse {
    /// One per key.
    pub values: Vec<Option<Value>>,
}

/// `GET /kv/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvStats {
    /// Keys held (some may have expired and await removal).
    pub total_keys: u64,
    /// Bytes of keys and values.
    pub total_memory_bytes: u64,
    /// Reads.
    pub gets: u64,
    /// Writes.
    pub sets: u64,
    /// Deletes.
    pub dels: u64,
    /// Reads that found a live key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Keys removed by TTL.
    pub expired: u64,
    /// Hits over reads, 0 before any read.
    pub hit_rate: f64,
}
