//! SynapRPC frames written straight into one buffer, without building a `Value` tree first.
//!
//! The bytes are exactly those rmp-serde writes for `(id, RpcResult)` (value.rs): the frame is
//! an array `[id, {"Ok": value}]` or `[id, {"Err": message}]`, every value externally tagged
//! (`{"Str": ...}`, `{"Int": ...}`, the bare string `"Null"`), a `Map` an array of `[key,
//! value]` pairs. Pushed deliveries and replies, the frames sent most, are written this way.

use rmp::encode as mp;

use super::value::Value;

/// A frame being written; `finish` fills in its length prefix.
pub(crate) struct FrameWriter {
    buf: Vec<u8>,
}

// Writing MessagePack into a `Vec` cannot fail: the `let _ =` below discard an `Ok`.
impl FrameWriter {
    /// A success frame answering `id` (or `PUSH_ID`); its value is written next, once.
    pub(crate) fn ok(id: u32, capacity: usize) -> Self {
        let mut w = Self::start(id, capacity);
        w.tag("Ok");
        w
    }

    /// A whole failure frame answering `id`.
    pub(crate) fn err(id: u32, message: &str) -> Vec<u8> {
        let mut w = Self::start(id, message.len() + 16);
        w.tag("Err");
        w.raw_str(message);
        w.finish()
    }

    fn start(id: u32, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 16);
        buf.extend_from_slice(&[0; 4]);
        let _ = mp::write_array_len(&mut buf, 2);
        let _ = mp::write_uint(&mut buf, u64::from(id));
        Self { buf }
    }

    /// The frame with its length prefix.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len() - 4).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf
    }

    /// A one-key map `{variant: ...}`: how rmp-serde writes an enum's newtype variant.
    fn tag(&mut self, variant: &str) {
        let _ = mp::write_map_len(&mut self.buf, 1);
        self.raw_str(variant);
    }

    fn raw_str(&mut self, s: &str) {
        let _ = mp::write_str(&mut self.buf, s);
    }

    /// `Null`.
    pub(crate) fn null(&mut self) {
        self.raw_str("Null");
    }

    /// `Bool`.
    pub(crate) fn bool(&mut self, b: bool) {
        self.tag("Bool");
        let _ = mp::write_bool(&mut self.buf, b);
    }

    /// `Int`.
    pub(crate) fn int(&mut self, n: i64) {
        self.tag("Int");
        let _ = mp::write_sint(&mut self.buf, n);
    }

    /// An `Int` from an unsigned count (saturating at `i64::MAX`), as `Value::count`.
    pub(crate) fn count(&mut self, n: u64) {
        self.int(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `Float`.
    pub(crate) fn float(&mut self, x: f64) {
        self.tag("Float");
        let _ = mp::write_f64(&mut self.buf, x);
    }

    /// `Bytes`, as MessagePack `bin`.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.tag("Bytes");
        let _ = mp::write_bin(&mut self.buf, b);
    }

    /// `Str`.
    pub(crate) fn str(&mut self, s: &str) {
        self.tag("Str");
        self.raw_str(s);
    }

    /// An `Array` of `len` values, written next.
    pub(crate) fn array(&mut self, len: usize) {
        self.tag("Array");
        let _ = mp::write_array_len(&mut self.buf, u32::try_from(len).unwrap_or(u32::MAX));
    }

    /// A `Map` of `len` pairs, each written next as a `key` and then its value.
    pub(crate) fn map(&mut self, len: usize) {
        self.tag("Map");
        let _ = mp::write_array_len(&mut self.buf, u32::try_from(len).unwrap_or(u32::MAX));
    }

    /// A pair's string key; its value is written next.
    pub(crate) fn key(&mut self, key: &str) {
        let _ = mp::write_array_len(&mut self.buf, 2);
        self.str(key);
    }

    /// Any value.
    pub(crate) fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.null(),
            Value::Bool(b) => self.bool(*b),
            Value::Int(n) => self.int(*n),
            Value::Float(x) => self.float(*x),
            Value::Bytes(b) => self.bytes(b),
            Value::Str(s) => self.str(s),
            Value::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Map(pairs) => {
                self.map(pairs.len());
                for (k, v) in pairs {
                    let _ = mp::write_array_len(&mut self.buf, 2);
                    self.value(k);
                    self.value(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::value::{PUSH_ID, RpcResult};
    use super::*;

    /// What rmp-serde writes for the same frame.
    fn serde_frame(id: u32, outcome: &RpcResult) -> Vec<u8> {
        let body = rmp_serde::to_vec(&(id, outcome)).unwrap();
        let mut frame = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
        frame.extend(body);
        frame
    }

    fn every_variant() -> Value {
        let long = "x".repeat(300);
        Value::Array(vec![
            Value::Null,
            Value::Bool(false),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(-33),
            Value::Int(127),
            Value::Int(128),
            Value::Int(70_000),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(0.25),
            Value::Bytes(vec![]),
            Value::Bytes(vec![7; 300]),
            Value::str(""),
            Value::str(long),
            Value::Map(vec![
                (Value::str("k"), Value::Map(vec![])),
                (Value::Int(1), Value::Array(vec![])),
            ]),
        ])
    }

    #[test]
    fn values_write_the_bytes_rmp_serde_writes() {
        for (id, v) in [
            (1, every_variant()),
            (PUSH_ID, Value::Null),
            (70_000, Value::Int(5)),
        ] {
            let mut w = FrameWriter::ok(id, 0);
            w.value(&v);
            assert_eq!(w.finish(), serde_frame(id, &RpcResult::Ok(v)));
        }
        let msg = "ERR too many requests in flight (limit 256)";
        assert_eq!(
            FrameWriter::err(9, msg),
            serde_frame(9, &RpcResult::Err(msg.into()))
        );
    }

    #[test]
    fn counts_saturate_as_value_count_does() {
        for n in [0, 42, u64::MAX] {
            let mut w = FrameWriter::ok(3, 0);
            w.count(n);
            assert_eq!(w.finish(), serde_frame(3, &RpcResult::Ok(Value::count(n))));
        }
    }
}
