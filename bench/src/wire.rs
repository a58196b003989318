//! Byte-level client plumbing shared by the SynapRPC and beanstalkd clients: a read buffer
//! that is safe to cancel (a timed-out read loses nothing), SynapRPC values and frames
//! (shared/SYNAP_RPC.md §1–§3), and beanstalkd reply lines.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The id of SynapRPC server pushes.
pub(crate) const PUSH_ID: u32 = u32::MAX;
/// Largest frame or reply accepted (a corrupt length cannot make the buffer grow without end).
const MAX_FRAME: usize = 16 << 20;

/// Bytes read from a socket and not parsed yet.
pub(crate) struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

impl InBuf {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(64 << 10),
            start: 0,
        }
    }

    /// The unparsed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks `n` bytes as parsed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes; an error at end of stream. Cancel-safe: `read_buf` either appended
    /// or did nothing.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(), String> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() - self.start > MAX_FRAME {
            return Err("reply larger than 16 MiB".into());
        }
        self.buf.reserve(32 << 10);
        match r.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// A whole SynapRPC frame body at the front, if one is buffered (its length is consumed
    /// with it by `take_frame`).
    fn frame_len(&self) -> Option<usize> {
        let d = self.data();
        let len = u32::from_le_bytes(d.get(..4)?.try_into().ok()?) as usize;
        (d.len() >= 4 + len).then_some(len)
    }

    /// Whether a whole frame is buffered.
    pub(crate) fn has_frame(&self) -> bool {
        self.frame_len().is_some()
    }

    /// Decodes the buffered frame at the front, if there is a whole one.
    pub(crate) fn take_frame(&mut self) -> Option<Result<Frame, String>> {
        let len = self.frame_len()?;
        let body = &self.data()[4..4 + len];
        let decoded = rmp_serde::from_slice::<(u32, RpcResult)>(body)
            .map(|(id, r)| match r {
                RpcResult::Ok(v) => (id, Ok(v)),
                RpcResult::Err(e) => (id, Err(e)),
            })
            .map_err(|e| format!("undecodable frame: {e}"));
        self.consume(4 + len);
        Some(decoded)
    }

    /// Reads until a whole frame is buffered and decodes it.
    pub(crate) async fn frame<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Frame, String> {
        loop {
            if let Some(f) = self.take_frame() {
                return f;
            }
            self.fill(r).await?;
        }
    }

    /// A `\r\n`-ended line at the front (without its ending), if one is buffered.
    pub(crate) fn take_line(&mut self) -> Option<String> {
        let d = self.data();
        let end = d.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&d[..end]).into_owned();
        self.consume(end + 2);
        Some(line)
    }

    /// Reads until a whole line is buffered and returns it.
    pub(crate) async fn line<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<String, String> {
        loop {
            if let Some(l) = self.take_line() {
                return Ok(l);
            }
            self.fill(r).await?;
        }
    }

    /// Reads `n` bytes and the `\r\n` after them (a beanstalkd job body).
    pub(crate) async fn body<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        n: usize,
    ) -> Result<Vec<u8>, String> {
        if n > MAX_FRAME {
            return Err(format!("job of {n} bytes"));
        }
        while self.data().len() < n + 2 {
            self.fill(r).await?;
        }
        let body = self.data()[..n].to_vec();
        if &self.data()[n..n + 2] != b"\r\n" {
            return Err("job body not followed by CRLF".into());
        }
        self.consume(n + 2);
        Ok(body)
    }
}

/// A SynapRPC value, externally tagged as rmp-serde writes an enum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Str(String),
    Array(Vec<Self>),
    Map(Vec<(Self, Self)>),
}

impl V {
    /// The value under `key` of a `Map`.
    pub(crate) fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Self::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            Self::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
enum RpcResult {
    Ok(V),
    Err(String),
}

/// One frame from the server: its id and result.
pub(crate) type Frame = (u32, Result<V, String>);

/// Appends the frame of request `[id, command, args]` to `out`.
pub(crate) fn put_request(out: &mut Vec<u8>, id: u32, command: &str, args: &[V]) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write(out, &(id, command, args)).expect("a request encodes into a Vec");
    let len = u32::try_from(out.len() - at - 4).expect("a request under 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_encodes_to_the_golden_bytes() {
        let mut out = Vec::new();
        put_request(&mut out, 1, "PING", &[]);
        assert_eq!(
            out,
            [
                0x08, 0, 0, 0, 0x93, 0x01, 0xa4, b'P', b'I', b'N', b'G', 0x90
            ]
        );
    }

    #[test]
    fn frames_and_lines_are_taken_whole_only() {
        let reply = [
            0x10, 0, 0, 0, 0x92, 0x01, 0x81, 0xa2, b'O', b'k', 0x81, 0xa3, b'S', b't', b'r', 0xa4,
            b'P', b'O', b'N', b'G',
        ];
        let mut b = InBuf::new();
        b.buf.extend_from_slice(&reply[..10]);
        assert!(!b.has_frame());
        assert!(b.take_frame().is_none());
        b.buf.extend_from_slice(&reply[10..]);
        b.buf.extend_from_slice(b"INSERTED 7\r\nDELE");
        let (id, v) = b.take_frame().expect("a whole frame").expect("decodes");
        assert_eq!((id, v), (1, Ok(V::Str("PONG".into()))));
        assert_eq!(b.take_line().as_deref(), Some("INSERTED 7"));
        assert_eq!(b.take_line(), None);
        b.buf.extend_from_slice(b"TED\r\n");
        assert_eq!(b.take_line().as_deref(), Some("DELETED"));
        assert!(b.data().is_empty());
    }

    #[test]
    fn map_lookup_reads_string_keys() {
        let m = V::Map(vec![
            (V::Str("id".into()), V::Str("abc".into())),
            (V::Str("payload".into()), V::Bytes(b"{}".to_vec())),
        ]);
        assert_eq!(m.get("id").and_then(V::text), Some("abc"));
        assert_eq!(m.get("payload").and_then(V::bytes), Some(&b"{}"[..]));
        assert!(m.get("lease").is_none());
    }
}
