//! A Raft snapshot's data: the engine's whole state at the snapshot's index.
//!
//! A version byte ([`SNAPSHOT_VERSION`]) then the engine in MessagePack (rmp-serde, as the
//! single server's snapshot files): the engine's state has internally tagged enums and
//! flattened fields, which only a self-describing format decodes. Index, term and membership
//! travel in raft-rs's snapshot metadata.

use synap_core::Engine;

/// Version of the snapshot data encoding.
pub const SNAPSHOT_VERSION: u8 = 1;

/// The snapshot data of `engine`.
#[must_use]
pub fn encode(engine: &Engine) -> Vec<u8> {
    let mut out = vec![SNAPSHOT_VERSION];
    rmp_serde::encode::write_named(&mut out, engine).expect("the engine encodes to MessagePack");
    out
}

/// The engine of a snapshot's data.
pub fn decode(data: &[u8]) -> Result<Engine, String> {
    match data.split_first() {
        Some((&SNAPSHOT_VERSION, body)) => {
            rmp_serde::from_slice(body).map_err(|e| format!("undecodable snapshot: {e}"))
        }
        Some((v, _)) => Err(format!(
            "snapshot version {v}, this node reads {SNAPSHOT_VERSION}"
        )),
        None => Err("empty snapshot data".into()),
    }
}
