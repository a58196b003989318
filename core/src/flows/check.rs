//! The flows' invariants, checked after every step by the unit tests and the swarm.

use super::{Flows, NodeState, OnChildFailure};
use crate::engine::Engine;

impl Engine {
    /// Panics unless every flow agrees with itself and with the queues: a queued flow job is
    /// in its queue, a waiting parent is in none and counts its unfinished children, a
    /// published parent's children are all finished, no parent under `fail` waits on a failed
    /// child, and the indexes and held bytes match the records.
    pub(crate) fn check_flows(&self) {
        let flows = &self.flows;
        let mut rebuilt = Flows::default();
        for (fid, record) in &flows.records {
            rebuilt.insert(*fid, record.clone());
        }
        assert_eq!(rebuilt.held_bytes, flows.held_bytes, "bytes held by flows");
        assert_eq!(rebuilt.open, flows.open, "open flow jobs");
        assert_eq!(rebuilt.waiting, flows.waiting, "waiting parents per queue");
        assert_eq!(rebuilt.done, flows.done, "finished flows");
        assert_eq!(rebuilt.members.len(), flows.members.len(), "flow jobs");
        for (fid, record) in &flows.records {
            assert_eq!(
                record.finished_at,
                record.nodes[0].state.ended().map(|e| e.at),
                "{fid}: finish time"
            );
            for (ix, node) in record.nodes.iter().enumerate() {
                assert_eq!(
                    flows.member(node.id),
                    Some((*fid, ix as u32)),
                    "{}",
                    node.id
                );
                let q = self.queues.get(&node.queue);
                let children = node.children.iter().map(|c| &record.nodes[*c as usize]);
                match &node.state {
                    NodeState::Queued => {
                        let q = q.expect("a queued flow job's queue exists");
                        assert!(
                            q.messages.contains_key(&node.id),
                            "{}: queued, not in its queue",
                            node.id
                        );
                        for c in children {
                            assert!(
                                c.state.ended().is_some(),
                                "{}: published before {}",
                                node.id,
                                c.id
                            );
                        }
                    }
                    NodeState::Waiting { pending, .. } => {
                        let q = q.expect("a waiting parent's queue exists");
                        assert!(
                            !q.messages.contains_key(&node.id),
                            "{}: waiting and queued",
                            node.id
                        );
                        let mut open = 0;
                        for c in children {
                            match c.state.ended() {
                                None => open += 1,
                                Some(e) => assert!(
                                    !(e.state.is_failure()
                                        && node.on_child_failure == OnChildFailure::Fail),
                                    "{}: waits on under `fail` after {} failed",
                                    node.id,
                                    c.id
                                ),
                            }
                        }
                        assert!(
                            open > 0 && open == *pending,
                            "{}: {pending} pending, {open} open",
                            node.id
                        );
                    }
                    NodeState::Ended(e) => {
                        assert!(e.state.is_finished(), "{}: ended as {:?}", node.id, e.state);
                        let parent_open = node
                            .parent
                            .is_some_and(|p| record.nodes[p as usize].state.is_open());
                        assert!(
                            e.result.is_none() || parent_open,
                            "{}: a result kept with no parent to run",
                            node.id
                        );
                    }
                }
                if let Some(p) = node.parent {
                    assert!(record.nodes[p as usize].children.contains(&(ix as u32)));
                }
            }
        }
    }
}
