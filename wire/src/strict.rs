//! Request fields that must be JSON objects. serde's derived structs also accept a JSON array
//! and map its elements to the fields in order (`[0, 3600, 2]` as a consume request); request
//! bodies are checked to be objects at the top (by the server), and these helpers refuse
//! arrays in place of the structs nested inside them.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A list whose every entry is a JSON object read as `T`.
pub(crate) fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Vec::<Value>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if !v.is_object() {
                return Err(D::Error::custom(format!("entry {i} must be a JSON object")));
            }
            serde_json::from_value(v).map_err(|e| D::Error::custom(format!("entry {i}: {e}")))
        })
        .collect()
}

/// An optional JSON object read as `T` (`null` is `None`).
pub(crate) fn opt_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("must be a JSON object")),
    }
}
