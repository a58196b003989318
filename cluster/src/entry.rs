//! What a Raft entry carries: one engine turn, a timer tick, or a new leader's first word.
//!
//! An entry's data is a version byte ([`ENTRY_VERSION`]) and then MessagePack (rmp-serde, maps
//! with field names), the encoding the single server's command log uses for a turn: `Command`
//! is an internally tagged enum with a flattened field, which only a self-describing format
//! decodes. Empty data is the empty entry raft-rs appends when a leader is elected; it applies
//! nothing.

use serde::{Deserialize, Serialize};
use synap_core::{Command, Millis};

/// Version of the entry encoding, the first byte of every non-empty entry.
pub const ENTRY_VERSION: u8 = 1;

/// Who proposed an entry: the node and its proposal number, so the proposer can match the
/// applied entry to the request waiting for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    /// The proposing node.
    pub node: u64,
    /// The proposal's number on that node (see [`crate::ProposalId`]).
    pub seq: u64,
}

/// The replicated content of one entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// One engine turn: every command runs at `now`, in order (group commit: one entry, many
    /// requests).
    Turn {
        /// The turn's time, stamped by the leader.
        now: Millis,
        /// The commands, in order.
        commands: Vec<Command>,
    },
    /// The leader's clock reached an engine deadline: run the timers due at `now`.
    Tick {
        /// The time the timers run up to.
        now: Millis,
    },
    /// A new leader's first entry: long-poll waiters and streaming sessions of earlier terms
    /// belonged to connections on the old leader, so they are dropped
    /// (`Command::DropConsumers`); their leases run to their deadlines.
    NewTerm {
        /// The time the new term starts at.
        now: Millis,
    },
}

impl Payload {
    /// The time the entry runs at.
    #[must_use]
    pub fn now(&self) -> Millis {
        match self {
            Self::Turn { now, .. } | Self::Tick { now } | Self::NewTerm { now } => *now,
        }
    }
}

/// An entry's data: who proposed it (none for entries the leader makes itself) and what it
/// carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryData {
    /// The proposer, for turns proposed by a client request.
    pub origin: Option<Origin>,
    /// What the entry carries.
    pub payload: Payload,
}

/// Borrowed twin of [`EntryData`] for encoding without cloning commands.
#[derive(Serialize)]
struct EntryRef<'a> {
    origin: Option<Origin>,
    payload: PayloadRef<'a>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PayloadRef<'a> {
    Turn {
        now: Millis,
        commands: &'a [Command],
    },
}

impl EntryData {
    /// The entry's bytes: the version byte, then MessagePack.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENTRY_VERSION];
        rmp_serde::encode::write_named(&mut out, self).expect("entries encode to MessagePack");
        out
    }

    /// Reads an entry's bytes; `Ok(None)` for the empty entry of a new leader.
    pub fn decode(data: &[u8]) -> Result<Option<Self>, String> {
        let Some((&version, body)) = data.split_first() else {
            return Ok(None);
        };
        if version != ENTRY_VERSION {
            return Err(format!(
                "entry version {version}, this node reads {ENTRY_VERSION}"
            ));
        }
        rmp_serde::from_slice(body)
            .map(Some)
            .map_err(|e| format!("undecodable entry: {e}"))
    }
}

/// The bytes of a turn entry, encoded from borrowed commands (the same bytes
/// [`EntryData::encode`] writes for the equal value).
#[must_use]
pub fn encode_turn(origin: Option<Origin>, now: Millis, commands: &[Command]) -> Vec<u8> {
    let entry = EntryRef {
        origin,
        payload: PayloadRef::Turn { now, commands },
    };
    let mut out = vec![ENTRY_VERSION];
    rmp_serde::encode::write_named(&mut out, &entry).expect("entries encode to MessagePack");
    out
}

#[cfg(test)]
mod tests {
    use synap_core::{Json, PublishMessage};

    use super::*;

    #[test]
    fn entries_round_trip_and_borrowed_turns_encode_the_same() {
        let commands = vec![
            Command::Publish {
                queue: "q".into(),
                message: PublishMessage {
                    message: Some(Json::from_trusted_text(r#"{"a":1}"#.to_owned())),
                    idempotency_key: Some("k".into()),
                    ..PublishMessage::default()
                },
            },
            Command::Stats { queue: "q".into() },
        ];
        let origin = Some(Origin { node: 2, seq: 7 });
        let turn = EntryData {
            origin,
            payload: Payload::Turn {
                now: Millis(5),
                commands: commands.clone(),
            },
        };
        let bytes = turn.encode();
        assert_eq!(bytes, encode_turn(origin, Millis(5), &commands));
        let back = EntryData::decode(&bytes).unwrap().unwrap();
        assert_eq!(back.origin, origin);
        assert_eq!(back.payload.now(), Millis(5));
        for payload in [
            Payload::Tick { now: Millis(9) },
            Payload::NewTerm { now: Millis(10) },
        ] {
            let e = EntryData {
                origin: None,
                payload,
            };
            assert_eq!(EntryData::decode(&e.encode()).unwrap(), Some(e));
        }
        assert_eq!(EntryData::decode(&[]), Ok(None));
        assert!(EntryData::decode(&[9, 1, 2]).is_err());
    }
}
