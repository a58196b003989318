//! SynapRPC values and frames (SYNAP_RPC.md §1–§3).
//!
//! A frame is a `u32` little-endian body length, then a MessagePack body. Values are externally
//! tagged the way rmp-serde encodes an enum: `Null` is the bare string `"Null"`, every other
//! variant a one-key map such as `{"Int": 42}`; `Bytes` travel as MessagePack `bin` (an array
//! of integers also decodes), and a `Map` is an array of `[key, value]` pairs.

use serde::{Deserialize, Serialize};

use super::encode::FrameWriter;

/// The id of server push frames; a request may not use it.
pub(crate) const PUSH_ID: u32 = u32::MAX;

/// One SynapRPC value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A float (an integer also decodes).
    Float(f64),
    /// Raw bytes.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// UTF-8 text.
    Str(String),
    /// A list.
    Array(Vec<Self>),
    /// Ordered key/value pairs.
    Map(Vec<(Self, Self)>),
}

impl Value {
    /// A `Str`.
    pub(crate) fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// A `Map` with string keys.
    pub(crate) fn map<const N: usize>(pairs: [(&str, Self); N]) -> Self {
        Self::Map(pairs.into_iter().map(|(k, v)| (Self::str(k), v)).collect())
    }

    /// An `Int` from an unsigned count (saturating at `i64::MAX`).
    pub(crate) fn count(n: u64) -> Self {
        Self::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// The text of a `Str`, or of `Bytes` holding UTF-8.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An `Int`, or a `Str` holding a decimal integer.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            Self::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// A request: `[id, command, args]` (a `{id, command, args}` map decodes too).
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    /// Echoed in the response.
    pub(crate) id: u32,
    /// The command name, matched case-insensitively.
    pub(crate) command: String,
    /// Its arguments.
    #[serde(default)]
    pub(crate) args: Vec<Value>,
}

/// A command's result as it travels: `{"Ok": value}` or `{"Err": message}`.
#[derive(Debug, Serialize)]
pub(crate) enum RpcResult {
    /// Success.
    Ok(Value),
    /// Failure, with the message clients read verbatim.
    Err(String),
}

/// Encodes a whole frame (length prefix included) answering `id`.
pub(crate) fn encode_frame(id: u32, outcome: &RpcResult) -> Vec<u8> {
    match outcome {
        RpcResult::Ok(v) => {
            let mut w = FrameWriter::ok(id, 64);
            w.value(v);
            w.finish()
        }
        RpcResult::Err(msg) => FrameWriter::err(id, msg),
    }
}

/// Why a frame body could not be read as a request.
#[derive(Debug)]
pub(crate) enum BadFrame {
    /// Not MessagePack, or not a request's shape: the connection is closed.
    Malformed(String),
    /// A request with the reserved push id: answered with an error, the connection stays.
    ReservedId,
}

/// Decodes a frame body (without its length prefix).
pub(crate) fn decode_request(body: &[u8]) -> Result<Request, BadFrame> {
    let req: Request =
        rmp_serde::from_slice(body).map_err(|e| BadFrame::Malformed(e.to_string()))?;
    if req.id == PUSH_ID {
        return Err(BadFrame::ReservedId);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn golden_ping_and_pong() {
        let ping = [0x93, 0x01, 0xa4, b'P', b'I', b'N', b'G', 0x90];
        let req = decode_request(&ping).expect("decodes");
        assert_eq!(
            (req.id, req.command.as_str(), req.args.len()),
            (1, "PING", 0)
        );
        let reply = encode_frame(1, &RpcResult::Ok(Value::str("PONG")));
        assert_eq!(
            hex(&reply),
            "10 00 00 00 92 01 81 a2 4f 6b 81 a3 53 74 72 a4 50 4f 4e 47"
        );
    }

    #[test]
    fn variants_encode_as_tagged_values() {
        let enc = |v: &Value| hex(&rmp_serde::to_vec(v).unwrap());
        assert_eq!(enc(&Value::Null), "a4 4e 75 6c 6c");
        assert_eq!(enc(&Value::Bool(true)), "81 a4 42 6f 6f 6c c3");
        assert_eq!(enc(&Value::Int(42)), "81 a3 49 6e 74 2a");
        assert_eq!(
            enc(&Value::Bytes(b"hi".to_vec())),
            "81 a5 42 79 74 65 73 c4 02 68 69"
        );
        let push = encode_frame(PUSH_ID, &RpcResult::Ok(Value::Map(vec![])));
        assert_eq!(hex(&push[4..10]), "92 ce ff ff ff ff");
    }

    #[test]
    fn legacy_bytes_and_integer_floats_decode() {
        // {"Bytes": [104, 105]} and {"Float": 3}
        let bytes = [0x81, 0xa5, b'B', b'y', b't', b'e', b's', 0x92, 104, 105];
        let v: Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(v, Value::Bytes(b"hi".to_vec()));
        let float = [0x81, 0xa5, b'F', b'l', b'o', b'a', b't', 0x03];
        let v: Value = rmp_serde::from_slice(&float).unwrap();
        assert_eq!(v, Value::Float(3.0));
    }

    #[test]
    fn the_push_id_and_garbage_are_refused() {
        let reserved = rmp_serde::to_vec(&(u32::MAX, "PING", Vec::<Value>::new())).unwrap();
        assert!(matches!(
            decode_request(&reserved),
            Err(BadFrame::ReservedId)
        ));
        assert!(matches!(
            decode_request(&[0xc1]),
            Err(BadFrame::Malformed(_))
        ));
        assert!(matches!(
            decode_request(&[0x91, 0x01]),
            Err(BadFrame::Malformed(_))
        ));
    }
}
