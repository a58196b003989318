//! The flow maker (DESIGN.md §14): adds flows of jobs across the swarm's queues (up to four
//! levels, a few children per parent, each parent with its own `on_child_failure`, some jobs
//! with TTLs, retry overrides or groups), some refused on purpose (too deep, or a bad
//! priority or queue name deep in the tree, or past a queue's memory budget); it cancels
//! unfinished parents, looks flow jobs up (waiting parents too) and asks for flows' trees.
//! Workers run the jobs like any other; the oracle checks every answer.

use serde_json::json;
use synap_core::{Command, FlowTree, OnChildFailure};

use crate::swarm::harness::Harness;

/// Adds `total` flows, one per move, and meddles with them meanwhile.
#[derive(Debug)]
pub(crate) struct FlowMaker {
    total: usize,
    made: usize,
    jobs: u64,
    next: u64,
    /// Parents cancelled by the maker.
    pub(crate) cancels: usize,
}

impl FlowMaker {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            total,
            made: 0,
            jobs: 0,
            next: 1_000,
            cancels: 0,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.made >= self.total
    }

    pub(crate) fn next_at(&self) -> Option<u64> {
        (!self.done()).then_some(self.next)
    }

    /// Maybe cancels a parent or looks at a flow, then adds the next flow.
    pub(crate) fn act(&mut self, h: &mut Harness) {
        let gap = h.pick(0, h.cfg.flow_gap_ms);
        self.next = h.now + gap;
        if h.faults && h.chance(h.cfg.p_cancel_parent) {
            self.cancel_parent(h);
        }
        if h.chance(0.3) {
            look(h);
        }
        self.made += 1;
        let tree = if h.chance(h.cfg.p_bad_flow) {
            self.bad_tree(h)
        } else {
            let mut budget = h.cfg.flow_jobs - 1;
            self.node(h, 1, &mut budget)
        };
        // The oracle checks the answer: added whole, or refused for a reason and adding
        // nothing.
        let _ = h.exec(Command::AddFlow { flow: tree });
    }

    /// One job and, while depth and budget allow, its children (a root always has some).
    fn node(&mut self, h: &mut Harness, depth: usize, budget: &mut usize) -> FlowTree {
        let q = h.any_queue();
        self.jobs += 1;
        let body = json!({ "flow": self.made, "job": self.jobs });
        let mut t = FlowTree::job(&h.cfg.queues[q].name, body);
        if h.chance(0.5) {
            t.priority = Some(h.pick(0, 9) as u8);
        }
        if h.chance(h.cfg.p_flow_ttl) {
            t.ttl_ms = Some(h.pick(50, 5_000));
        }
        if h.chance(h.cfg.p_flow_ttl) {
            t.max_retries = Some(h.pick(0, 3) as u32);
        }
        if h.cfg.grouped[q] && h.chance(0.7) {
            t.group = Some(if h.chance(0.5) {
                "heavy".to_owned()
            } else {
                format!("light{}", h.pick(0, h.cfg.light_groups - 1))
            });
        }
        let wants = depth == 1 || (depth < h.cfg.flow_depth && h.chance(0.5));
        if wants && *budget > 0 {
            t.on_child_failure = [
                OnChildFailure::Fail,
                OnChildFailure::Continue,
                OnChildFailure::Ignore,
            ][h.pick(0, 2) as usize];
            let n = (h.pick(1, h.cfg.flow_fanout) as usize).min(*budget);
            *budget -= n;
            t.children = (0..n).map(|_| self.node(h, depth + 1, budget)).collect();
        }
        t
    }

    /// A flow the engine must refuse whole: nine levels deep, or a priority of 10 or a bad
    /// queue name on its last job, or (given a queue with a memory budget) a job too large
    /// for it.
    fn bad_tree(&mut self, h: &mut Harness) -> FlowTree {
        let mut budget = h.cfg.flow_jobs - 1;
        let mut tree = self.node(h, 1, &mut budget);
        let budgeted: Vec<usize> = (0..h.cfg.queues.len())
            .filter(|q| h.cfg.queues[*q].config.max_bytes.is_some())
            .collect();
        match h.pick(0, 3) {
            0 => {
                let mut chain = FlowTree::job(&h.cfg.queues[0].name, json!({ "deep": 9 }));
                for level in (1..9).rev() {
                    let q = h.any_queue();
                    let parent = FlowTree::job(&h.cfg.queues[q].name, json!({ "deep": level }));
                    chain = parent.with_children(vec![chain]);
                }
                tree.children.push(chain);
            }
            1 => last(&mut tree).priority = Some(10),
            3 if !budgeted.is_empty() => {
                let q = budgeted[h.pick(0, budgeted.len() as u64 - 1) as usize];
                let big = "x".repeat(600);
                let job = FlowTree::job(&h.cfg.queues[q].name, json!({ "big": big }));
                tree.children.push(job);
            }
            _ => last(&mut tree).queue = "bad queue!".to_owned(),
        }
        tree
    }

    /// Cancels an unfinished parent (waiting for its children, mostly).
    fn cancel_parent(&mut self, h: &mut Harness) {
        let open = h.oracle.flows.open_parents();
        if open.is_empty() {
            return;
        }
        let (message_id, q) = open[h.pick(0, open.len() as u64 - 1) as usize];
        let queue = h.cfg.queues[q].name.clone();
        self.cancels += 1;
        let _ = h.exec(Command::Cancel { queue, message_id });
    }
}

/// The last job of a tree in pre-order: its deepest-last leaf.
fn last(t: &mut FlowTree) -> &mut FlowTree {
    if t.children.is_empty() {
        return t;
    }
    last(t.children.last_mut().expect("a child"))
}

/// Looks a flow job up (a waiting parent's lookup included) or asks for a flow's tree.
fn look(h: &mut Harness) {
    let flows: Vec<_> = h.oracle.flows.flows.keys().copied().collect();
    if flows.is_empty() {
        return;
    }
    if h.chance(0.5) {
        let flow_id = flows[h.pick(0, flows.len() as u64 - 1) as usize];
        let _ = h.exec(Command::GetFlow { flow_id });
        return;
    }
    let jobs = h.oracle.flows.jobs();
    let (message_id, q) = jobs[h.pick(0, jobs.len() as u64 - 1) as usize];
    let queue = h.cfg.queues[q].name.clone();
    let _ = h.exec(Command::GetJob { queue, message_id });
}
