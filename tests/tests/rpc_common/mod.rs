//! A raw SynapRPC client for the `rpc` end-to-end tests: frames written and read by hand, so
//! tests can send what no SDK sends (pipelined bursts, the reserved id, garbage) and see every
//! frame the server writes, pushes included.

#![allow(dead_code, unreachable_pub)] // Each test uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The id of server pushes.
pub const PUSH_ID: u32 = u32::MAX;
/// How long a test waits for any one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(20);

/// A SynapRPC value, tagged as SYNAP_RPC.md §3 describes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Str(String),
    Array(Vec<Self>),
    Map(Vec<(Self, Self)>),
}

/// `V::Str`.
pub fn s(text: &str) -> V {
    V::Str(text.to_owned())
}

impl V {
    /// The value under `key` of a `Map`.
    pub fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| *k == Self::Str(key.to_owned()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a `Str` (or UTF-8 `Bytes`).
    pub fn text(&self) -> &str {
        match self {
            Self::Str(t) => t,
            Self::Bytes(b) => std::str::from_utf8(b).expect("UTF-8 bytes"),
            other => panic!("not text: {other:?}"),
        }
    }

    /// The number of an `Int`.
    pub fn int(&self) -> i64 {
        match self {
            Self::Int(n) => *n,
            other => panic!("not an Int: {other:?}"),
        }
    }
}

/// A result as it travels.
#[derive(Debug, Deserialize)]
enum RpcResult {
    Ok(V),
    Err(String),
}

/// One frame from the server.
pub type Frame = (u32, Result<V, String>);

/// One connection.
pub struct Rpc {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    next_id: u32,
    /// Frames read while waiting for another id (pushes and early answers).
    pub stash: Vec<Frame>,
}

/// The bytes of a frame holding `body`.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The frame of request `[id, command, args]`.
pub fn request(id: u32, command: &str, args: &[V]) -> Vec<u8> {
    framed(&rmp_serde::to_vec(&(id, command, args)).unwrap())
}

impl Rpc {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect to SynapRPC");
        tcp.set_nodelay(true).unwrap();
        let (rd, wr) = tcp.into_split();
        Self {
            rd: BufReader::new(rd),
            wr,
            next_id: 1,
            stash: Vec::new(),
        }
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.expect("write");
    }

    /// Shuts down the write side (a half-close): the server reads EOF, answers stay readable.
    pub async fn shutdown_write(&mut self) {
        self.wr.shutdown().await.expect("shutdown the write side");
    }

    /// Sends a request with the next id and returns that id.
    pub async fn send(&mut self, command: &str, args: &[V]) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.write(&request(id, command, args)).await;
        id
    }

    /// Reads the next frame; `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Option<Frame> {
        let read = async {
            let mut prefix = [0u8; 4];
            self.rd.read_exact(&mut prefix).await.ok()?;
            let mut body = vec![0u8; u32::from_le_bytes(prefix) as usize];
            self.rd.read_exact(&mut body).await.ok()?;
            let (id, outcome): (u32, RpcResult) =
                rmp_serde::from_slice(&body).expect("a well-formed response frame");
            Some(match outcome {
                RpcResult::Ok(v) => (id, Ok(v)),
                RpcResult::Err(e) => (id, Err(e)),
            })
        };
        tokio::time::timeout(FRAME_WAIT, read)
            .await
            .expect("a frame (or the close) within the wait")
    }

    /// Reads frames until the one answering `id`, stashing the others.
    pub async fn answer(&mut self, id: u32) -> Result<V, String> {
        if let Some(i) = self.stash.iter().position(|(fid, _)| *fid == id) {
            return self.stash.remove(i).1;
        }
        loop {
            let (fid, result) = self.recv().await.expect("connection open");
            if fid == id {
                return result;
            }
            self.stash.push((fid, result));
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn call(&mut self, command: &str, args: &[V]) -> Result<V, String> {
        let id = self.send(command, args).await;
        self.answer(id).await
    }

    /// Sends a request that must succeed and returns its value.
    pub async fn ok(&mut self, command: &str, args: &[V]) -> V {
        self.call(command, args)
            .await
            .unwrap_or_else(|e| panic!("{command} {args:?} failed: {e}"))
    }

    /// Sends a request that must fail and returns its message.
    pub async fn err(&mut self, command: &str, args: &[V]) -> String {
        match self.call(command, args).await {
            Err(e) => e,
            Ok(v) => panic!("{command} {args:?} succeeded with {v:?}"),
        }
    }

    /// Whether the server has closed the connection (reads until the close, failing on data).
    pub async fn closed(&mut self) -> bool {
        self.recv().await.is_none()
    }
}
