//! Decoding a JSON byte array (`[104, 105, …]`, how Synap's SDKs send message bodies) straight
//! into bytes.
//!
//! Read through `serde_json::Value`, every element would first become a 32-byte `Value` in a
//! growing `Vec` (an 8 MB body of `0,` costs ~160 MB) before any size check. This visitor
//! keeps one byte per element and stops as soon as the array passes the message limit.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Reads a byte array of at most `max` bytes. Elements are read as the envelope always read
/// them: integers are cast to a byte (wrapping), anything else is skipped.
pub(super) struct ByteArray {
    pub(super) max: usize,
}

impl ByteArray {
    /// Decodes `text`, which must be a JSON array; the error is the envelope's error string.
    pub(super) fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        let max = self.max;
        let mut de = serde_json::Deserializer::from_str(text);
        self.deserialize(&mut de).map_err(|e| {
            if e.to_string().starts_with(TOO_LARGE) {
                format!("payload too large: message is over {max} bytes, the limit is {max}")
            } else {
                format!("Invalid request: 'payload' must be a byte array ({e})")
            }
        })
    }
}

/// The marker of the early stop, told apart from JSON errors by `decode`.
const TOO_LARGE: &str = "byte array over the message limit";

impl<'de> DeserializeSeed<'de> for ByteArray {
    type Value = Vec<u8>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ByteArray {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        while let Some(LenientByte(b)) = seq.next_element()? {
            let Some(b) = b else { continue };
            if out.len() == self.max {
                return Err(de::Error::custom(TOO_LARGE));
            }
            out.push(b);
        }
        Ok(out)
    }
}

/// One element: `Some` for an integer (cast to a byte), `None` for anything else.
struct LenientByte(Option<u8>);

impl<'de> de::Deserialize<'de> for LenientByte {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientByteVisitor)
    }
}

struct LenientByteVisitor;

// Wrapping to a byte is the documented reading of out-of-range integers.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
impl<'de> Visitor<'de> for LenientByteVisitor {
    type Value = LenientByte;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientByte, E> {
        Ok(LenientByte(Some(v as u8)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientByte, E> {
        Ok(LenientByte(Some(v as u8)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientByte, E> {
        Ok(LenientByte(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientByte, E> {
        Ok(LenientByte(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<LenientByte, E> {
        Ok(LenientByte(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<LenientByte, E> {
        Ok(LenientByte(None))
    }

    // Nested values are skipped without being built.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientByte, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LenientByte(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientByte, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientByte(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_wrap_and_other_elements_are_skipped() {
        let text = r#"[104, 105, 256, -1, 1.5, "x", null, true, [1, 2], {"a": 3}, 33]"#;
        let bytes = ByteArray { max: 100 }.decode(text).unwrap();
        assert_eq!(bytes, [104, 105, 0, 255, 33]);
    }

    #[test]
    fn decoding_stops_past_the_limit() {
        let exact = format!("[{}]", vec!["7"; 1000].join(","));
        assert_eq!(ByteArray { max: 1000 }.decode(&exact).unwrap().len(), 1000);
        // Skipped elements do not count; one byte over does, however much follows.
        let over = format!(
            "[\"x\", {}, 1, 2, 3, \"not even valid JSON",
            vec!["0"; 1000].join(",")
        );
        let e = ByteArray { max: 1000 }.decode(&over).unwrap_err();
        assert_eq!(
            e,
            "payload too large: message is over 1000 bytes, the limit is 1000"
        );
    }

    #[test]
    fn a_non_array_is_an_error() {
        let e = ByteArray { max: 10 }.decode("\"abc\"").unwrap_err();
        assert!(
            e.starts_with("Invalid request: 'payload' must be a byte array"),
            "{e}"
        );
    }
}
