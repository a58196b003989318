//! Applying committed entries to the engine, in log order, and answering the proposals they
//! carry.

use raft::eraftpb::{Entry, EntryType};
use synap_core::{Command, Error, Reply};

use crate::entry::{EntryData, Origin, Payload};
use crate::node::{Answer, Applied, AppliedKind, EntryEvent, Node, TurnResult};

impl Node {
    /// Applies committed entries in order; then tells raft-rs how far it got. A committed
    /// entry that does not decode stops the node ([`Node::halted`]).
    pub(crate) fn apply_entries(&mut self, entries: Vec<Entry>) {
        for e in entries {
            if self.halted.is_some() {
                return;
            }
            if e.index <= self.applied {
                continue;
            }
            assert_eq!(
                e.index,
                self.applied + 1,
                "entries apply in order without gaps"
            );
            if let Err(err) = self.apply_entry(&e) {
                self.halt(format!("committed entry {} is corrupt: {err}", e.index));
                return;
            }
            self.applied = e.index;
        }
        self.sync_raft_applied();
    }

    fn apply_entry(&mut self, e: &Entry) -> Result<(), String> {
        let index = e.index;
        let data = if e.get_entry_type() == EntryType::EntryNormal {
            match self.own_turn(index, e.term) {
                Some(data) => Some(data),
                None => EntryData::decode(&e.data)?,
            }
        } else {
            // A membership change (see `members`): raft-rs's membership and the address book.
            self.apply_conf_entry(e)?;
            None
        };
        let now = data.as_ref().map(|d| d.payload.now());
        if let Some(data) = data {
            let turn_now = data.payload.now();
            let replies = self.run(index, data.payload);
            if let Some(proposal) = self.take_pending(data.origin, index, e.term) {
                self.answers.push_back(Answer {
                    proposal,
                    outcome: Ok(TurnResult {
                        index,
                        now: turn_now,
                        replies,
                    }),
                });
            }
        }
        // Anything proposed here before this index and not matched was overwritten.
        self.lose_pending_through(index);
        self.clear_tick_through(index);
        if self.cfg.observe_applied {
            let every = self.cfg.digest_every;
            let digest = (every > 0 && index % every == 0).then(|| self.engine.state_digest());
            self.applied_log.push_back(Applied {
                index,
                term: e.term,
                hash: xxhash_rust::xxh3::xxh3_64(&e.data),
                digest,
                kind: AppliedKind::Entry,
                now,
                replayed: index <= self.replay_through,
            });
        }
        Ok(())
    }

    /// The leader's own proposal at `index` in `term`, taken from its pending proposals
    /// instead of decoded: by Raft's log matching, the entry at an index and term is the one
    /// proposed there.
    fn own_turn(&mut self, index: u64, term: u64) -> Option<EntryData> {
        let (&seq, p) = self
            .pending
            .iter_mut()
            .take_while(|(_, p)| p.index <= index)
            .find(|(_, p)| p.index == index && p.term == term)?;
        let (now, commands) = p.turn.take()?;
        Some(EntryData {
            origin: Some(Origin {
                node: self.cfg.id,
                seq,
            }),
            payload: Payload::Turn { now, commands },
        })
    }

    /// Runs one payload on the engine; the replies of a turn's commands.
    fn run(&mut self, index: u64, payload: Payload) -> Vec<Result<Reply, Error>> {
        let replies = match payload {
            Payload::Turn { now, commands } => commands
                .into_iter()
                .map(|cmd| {
                    let reply = self.engine.handle(now, cmd);
                    self.drain_events(index);
                    reply
                })
                .collect(),
            Payload::Tick { now } => {
                self.engine.handle_timeout(now);
                Vec::new()
            }
            Payload::NewTerm { now } => {
                // While no leader ran the engine's timers (an election, or every node down),
                // schedules missed slots: like a restarted single server, the new term makes
                // one catch-up run for each, not one per slot. Every replica applies the same
                // entry to the same state, so the runs are the same everywhere.
                let since = self.engine.now();
                let resumed = self.engine.handle(now, Command::Resume { since });
                debug_assert!(resumed.is_ok(), "resume: {resumed:?}");
                self.drain_events(index);
                let dropped = self.engine.handle(now, Command::DropConsumers);
                debug_assert!(dropped.is_ok(), "drop consumers: {dropped:?}");
                Vec::new()
            }
        };
        self.drain_events(index);
        replies
    }

    fn drain_events(&mut self, index: u64) {
        let replayed = index <= self.replay_through;
        while let Some(event) = self.engine.poll_event() {
            self.events.push_back(EntryEvent {
                index,
                event,
                replayed,
            });
        }
    }
}
