//! Raw HTTP/1.1 over TCP for the hardening tests: requests no client library sends (half
//! heads, short bodies, huge headers) and answers read as they come.

#![allow(dead_code, unreachable_pub)] // Each test uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any one wait of these tests lasts: generous, the timeouts under test are short.
pub const WAIT: Duration = Duration::from_secs(15);

/// Connects to the server.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the peer closes (or `WAIT` passes, which fails the test); returns the bytes.
pub async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the server closes the connection in time");
    out
}

/// Reads one answer with a `content-length` body (`WAIT` at most): status and body.
pub async fn read_answer(tcp: &mut TcpStream) -> (u16, String) {
    let mut data = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(answer) = parse_answer(&data) {
                return Some(answer);
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return parse_answer(&data),
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an answer in time")
        .unwrap_or_else(|| panic!("no complete answer in {:?}", String::from_utf8_lossy(&data)))
}

/// Status and body of a complete answer with a `content-length` body; `None` while incomplete.
pub fn parse_answer(data: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (body.len() >= len).then(|| (status, body[..len].to_owned()))
}

/// Sends raw bytes and reads one answer.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut tcp = connect(addr).await;
    tcp.write_all(request).await.expect("write");
    read_answer(&mut tcp).await
}

/// Asserts an answer is `status` with a JSON `{"error", "code": code}` body.
pub fn assert_json_error(answer: &(u16, String), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["code"], code, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

/// Sends `request` and asserts it is refused with `status` and a JSON error of `code`.
pub async fn refused(addr: SocketAddr, request: &str, status: u16, code: &str) {
    assert_json_error(&exchange(addr, request.as_bytes()).await, status, code);
}

/// The resident memory of a process, in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}
