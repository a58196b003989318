//! The handshake that opens every connection between two nodes: a challenge–response on the
//! cluster secret, both ways. Each side sends a random nonce and proves it holds the secret
//! with a keyed BLAKE2b MAC over the other side's nonce and both ids, compared in constant
//! time; the secret itself never travels. The dialer also says which node it wants, and each
//! side says whether its Raft log is empty (a peer that lost its data is started over).

use blake2::digest::Mac;
use blake2::digest::consts::U32;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The shared secret as a MAC key.
pub(super) type Key = [u8; 32];

/// Opens every connection: Synap's Raft transport, version 2 (frames with a kind byte,
/// snapshots in chunks). A node of another version is refused at once.
const MAGIC: &[u8; 8] = b"SYNAPRF2";

/// The MAC key of a cluster secret.
pub(super) fn key(secret: &str) -> Key {
    use blake2::digest::Digest;
    blake2::Blake2b::<U32>::digest(secret.as_bytes()).into()
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("OS randomness for a handshake nonce");
    n
}

/// The MAC a side sends: over its role, the other side's nonce and both ids.
fn mac(key: &Key, role: &[u8], nonce: &[u8; 32], dialer: u64, acceptor: u64) -> [u8; 32] {
    let mut m = blake2::Blake2bMac::<U32>::new_from_slice(key).expect("a 32-byte key fits");
    m.update(role);
    m.update(nonce);
    m.update(&dialer.to_le_bytes());
    m.update(&acceptor.to_le_bytes());
    m.finalize().into_bytes().into()
}

fn refused(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_owned())
}

/// The dialer's side; whether the peer's log is empty. `empty`: whether this node's is.
pub(super) async fn dial_handshake(
    s: &mut TcpStream,
    (me, peer): (u64, u64),
    key: &Key,
    empty: bool,
) -> std::io::Result<bool> {
    let mine = nonce();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&me.to_le_bytes());
    hello.extend_from_slice(&peer.to_le_bytes());
    hello.extend_from_slice(&mine);
    hello.push(u8::from(empty));
    s.write_all(&hello).await?;
    let mut back = [0u8; 8 + 32 + 32 + 1];
    s.read_exact(&mut back).await?;
    if &back[..8] != MAGIC {
        return Err(refused(
            "the peer does not speak this version of Synap's raft protocol",
        ));
    }
    let theirs: [u8; 32] = back[8..40].try_into().expect("32 bytes");
    let expected = mac(key, b"acceptor", &mine, me, peer);
    if !bool::from(expected.ct_eq(&back[40..72])) {
        return Err(refused("the peer does not hold the cluster secret"));
    }
    s.write_all(&mac(key, b"dialer", &theirs, me, peer)).await?;
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).await?;
    if ok[0] != 1 {
        return Err(refused("the peer refused this node"));
    }
    Ok(back[72] == 1)
}

/// The acceptor's side: the dialer's id and whether its log is empty.
pub(super) async fn accept_handshake(
    s: &mut TcpStream,
    me: u64,
    key: &Key,
    known: impl Fn(u64) -> bool,
    empty: bool,
) -> std::io::Result<(u64, bool)> {
    let mut hello = [0u8; 8 + 8 + 8 + 32 + 1];
    s.read_exact(&mut hello).await?;
    if &hello[..8] != MAGIC {
        return Err(refused("not this version of Synap's raft protocol"));
    }
    let from = u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes"));
    let to = u64::from_le_bytes(hello[16..24].try_into().expect("8 bytes"));
    if to != me || !known(from) {
        return Err(refused(&format!(
            "a connection from node {from} to node {to}: not a peer that dials this node"
        )));
    }
    let theirs: [u8; 32] = hello[24..56].try_into().expect("32 bytes");
    let mine = nonce();
    let mut back = MAGIC.to_vec();
    back.extend_from_slice(&mine);
    back.extend_from_slice(&mac(key, b"acceptor", &theirs, from, me));
    back.push(u8::from(empty));
    s.write_all(&back).await?;
    let mut proof = [0u8; 32];
    s.read_exact(&mut proof).await?;
    let expected = mac(key, b"dialer", &mine, from, me);
    if !bool::from(expected.ct_eq(&proof)) {
        let _ = s.write_all(&[0]).await;
        return Err(refused(&format!(
            "node {from} does not hold the cluster secret"
        )));
    }
    s.write_all(&[1]).await?;
    Ok((from, hello[56] == 1))
}

#[cfg(test)]
mod tests {
    //! Goal: the handshake admits a peer with the secret and refuses one without it, both ways.
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Runs both sides; each closes its socket when done, as the real callers do.
    async fn shake(
        dial_key: Key,
        dialer: u64,
        accept_key: Key,
    ) -> (std::io::Result<bool>, std::io::Result<(u64, bool)>) {
        let (mut d, mut a) = pair().await;
        tokio::join!(
            async move { dial_handshake(&mut d, (dialer, 2), &dial_key, true).await },
            async move { accept_handshake(&mut a, 2, &accept_key, |id| id == 1, false).await }
        )
    }

    #[tokio::test]
    async fn the_secret_admits_and_its_absence_refuses() {
        let good: Key = [7; 32];
        let bad: Key = [8; 32];
        let (x, y) = shake(good, 1, good).await;
        assert!(!x.unwrap(), "the acceptor's log is not empty");
        assert_eq!(y.unwrap(), (1, true), "the dialer's log is empty");
        let (x, y) = shake(bad, 1, good).await;
        assert!(
            x.is_err() && y.is_err(),
            "a wrong secret is refused both ways"
        );
        let (x, y) = shake(good, 3, good).await;
        assert!(
            x.is_err() && y.is_err(),
            "an unknown or higher id is refused"
        );
    }
}
