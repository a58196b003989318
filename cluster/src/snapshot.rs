//! A Raft snapshot's data: the engine's whole state at the snapshot's index, and the
//! replicated address book (the nodes added at runtime and the ids removed).
//!
//! A version byte ([`SNAPSHOT_VERSION`]) then MessagePack (rmp-serde, as the single server's
//! snapshot files) of `{book, engine}`: the engine's state has internally tagged enums and
//! flattened fields, which only a self-describing format decodes. Version 1 held the engine
//! alone (no nodes added at runtime); it is still read. Index, term and the voters and
//! learners (raft-rs's `ConfState`) travel in raft-rs's snapshot metadata.

use serde::{Deserialize, Serialize};
use synap_core::Engine;

use crate::members::AddressBook;

/// Version of the snapshot data encoding.
pub const SNAPSHOT_VERSION: u8 = 2;
/// The version before the address book: the engine alone.
const ENGINE_ONLY: u8 = 1;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    book: &'a AddressBook,
    engine: &'a Engine,
}

#[derive(Deserialize)]
struct SnapshotData {
    book: AddressBook,
    engine: Engine,
}

/// The snapshot data of `engine` and `book`.
#[must_use]
pub fn encode(engine: &Engine, book: &AddressBook) -> Vec<u8> {
    let mut out = vec![SNAPSHOT_VERSION];
    let data = SnapshotRef { book, engine };
    rmp_serde::encode::write_named(&mut out, &data).expect("the engine encodes to MessagePack");
    out
}

/// The engine and address book of a snapshot's data.
pub fn decode(data: &[u8]) -> Result<(Engine, AddressBook), String> {
    let bad = |e: rmp_serde::decode::Error| format!("undecodable snapshot: {e}");
    match data.split_first() {
        Some((&SNAPSHOT_VERSION, body)) => {
            let d: SnapshotData = rmp_serde::from_slice(body).map_err(bad)?;
            Ok((d.engine, d.book))
        }
        Some((&ENGINE_ONLY, body)) => rmp_serde::from_slice(body)
            .map(|engine| (engine, AddressBook::default()))
            .map_err(bad),
        Some((v, _)) => Err(format!(
            "snapshot version {v}, this node reads {ENGINE_ONLY} and {SNAPSHOT_VERSION}"
        )),
        None => Err("empty snapshot data".into()),
    }
}

#[cfg(test)]
mod tests {
    use synap_core::{Command, EngineConfig, Millis};

    use super::*;
    use crate::members::MemberAddrs;

    #[test]
    fn snapshots_round_trip_and_version_1_is_still_read() {
        let mut engine = Engine::new(EngineConfig::default(), 3);
        let create = Command::CreateQueue {
            queue: "q".into(),
            config: None,
        };
        engine.handle(Millis(5), create).unwrap();
        let mut book = AddressBook::default();
        book.added.insert(
            4,
            MemberAddrs {
                raft: "127.0.0.1:1".into(),
                http: "127.0.0.1:2".into(),
                rpc: Some("127.0.0.1:3".into()),
            },
        );
        book.removed.insert(2);
        let (back, back_book) = decode(&encode(&engine, &book)).unwrap();
        assert_eq!(back.state_digest(), engine.state_digest());
        assert_eq!(back_book, book);
        let mut v1 = vec![ENGINE_ONLY];
        rmp_serde::encode::write_named(&mut v1, &engine).unwrap();
        let (old, old_book) = decode(&v1).unwrap();
        assert_eq!(old.state_digest(), engine.state_digest());
        assert_eq!(old_book, AddressBook::default());
        assert!(decode(&[9, 1]).unwrap_err().contains("version 9"));
        assert!(decode(&[]).is_err());
    }
}
