//! `Json`: a JSON value kept as compact text.
//!
//! Message bodies, KV values and pub/sub messages are stored and cloned often but inspected
//! rarely, so the engine keeps them as shared compact JSON text. In commands and replies a
//! `Json` serializes as the JSON value itself; in the engine's own state (snapshots) as its
//! text (`as_text`).

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JSON value stored as compact text; serializes as the value it holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Json(Arc<str>);

impl Json {
    /// Wraps a parsed value.
    #[must_use]
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(value.to_string().into())
    }

    /// Parses JSON text, keeping its compact form.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        Ok(Self::from_value(&value))
    }

    /// Wraps text that the caller guarantees is valid compact JSON (e.g. produced by
    /// `serde_json::to_string`).
    #[must_use]
    pub fn from_trusted_text(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    /// Text read back from storage (written as this type's compact text): checked to be one
    /// JSON value, without building it, then kept as it is.
    fn checked_text(text: &str) -> Result<Self, String> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| format!("a JSON body that does not parse: {e}"))?;
        Ok(Self::from_trusted_text(text))
    }

    /// The compact JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length of the compact text in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty text (never produced by the constructors above).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parsed value.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        // The text is always produced from a parsed value, so it parses back.
        serde_json::from_str(&self.0).expect("Json holds valid JSON text")
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Self::from_value(&value)
    }
}

// In human-readable formats (JSON, JS values) a `Json` is the value itself. In binary formats
// (the server's MessagePack log records) it is its compact text as a byte string: no
// `serde_json::Value` is built when a command is logged, and reading one back only checks the
// text. Bytes, not a string, because serde hands internally tagged enums (`Command`) buffered
// content that claims to be human-readable: a byte string still tells the two forms apart, since
// no JSON value reads as bytes. A structured value is still read in either format.
impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.to_value().serialize(s)
        } else {
            s.serialize_bytes(self.0.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// Reads a value (building its compact text) or the compact text as bytes (checking it).
struct JsonVisitor;

impl JsonVisitor {
    fn value<E>(v: serde_json::Value) -> Result<Json, E> {
        Ok(Json::from_value(&v))
    }
}

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Json, E> {
        let text = std::str::from_utf8(b).map_err(E::custom)?;
        Json::checked_text(text).map_err(E::custom)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Self::value(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Self::value(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Self::value(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Self::value(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Self::value(v.into())
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Self::value(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Self::value(serde_json::Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Ok(Json::from_value(&serde_json::Value::deserialize(d)?))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            items.push(v);
        }
        Self::value(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
            out.insert(k, v);
        }
        Self::value(serde_json::Value::Object(out))
    }
}

/// `#[serde(with = "crate::json::as_text")]`: a `Json` held in engine state serializes as its
/// compact text, one string, so a snapshot of a million messages neither builds nor walks a
/// `serde_json::Value` per body (several times faster to write and to read back). Text read
/// back is checked to be one JSON value before it is trusted. (Not `is_human_readable`: serde
/// loses it inside internally tagged enums and flattened fields.)
pub(crate) mod as_text {
    use std::borrow::Cow;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Json;

    pub(crate) fn serialize<S: Serializer>(j: &Json, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&j.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        Json::checked_text(&text).map_err(serde::de::Error::custom)
    }
}

/// `Option<Json>` as its compact text, for the engine's own state.
pub(crate) mod as_text_option {
    use std::borrow::Cow;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Json;

    pub(crate) fn serialize<S: Serializer>(j: &Option<Json>, s: S) -> Result<S::Ok, S::Error> {
        match j {
            Some(j) => s.serialize_some(&*j.0),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
        let text = <Option<Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| Json::checked_text(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
