//! `Json`: a JSON value kept as compact text.
//!
//! Message bodies, KV values and pub/sub messages are stored and cloned often but inspected
//! rarely, so the engine keeps them as shared compact JSON text. On the wire (HTTP, wasm, the
//! command log) a `Json` is the JSON value itself, not a string holding it.

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

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(Self::from_value(&value))
    }
}
