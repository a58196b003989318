//! Flows in the simulator (DESIGN.md §14): a task type with `children` fans out into child
//! task types and a join. Publishing a task of such a type (a producer's arrival, or a
//! worker's follow-up) sends one `AddFlow` with the whole tree: the task itself is the root,
//! each child entry adds `count` tasks of its type, each with its own children, and so on.
//! The engine publishes the tasks without children at once and holds every parent
//! (`waiting_children`) until its children are finished; the workers of each task type's
//! queue then take them like any task, with their service times, failures and retries.
//!
//! A task type may also name its own `queue`, and a worker group the `queue` it consumes, so
//! each stage of a pipeline has its own workers. Every queue is created at time 0 with the
//! scenario's `queue_config`.

use serde::{Deserialize, Serialize};

use super::grouping::GroupClass;
use super::producer::TaskCatalog;
use super::scenario::{Scenario, priority};
use super::world::Stage;
use crate::{Command, FlowJobRef, FlowTree, MessageId, OnChildFailure, Reply, Rng};

/// Most child entries of one task type.
pub const MAX_CHILD_ENTRIES: usize = 8;

/// Tasks a task type waits for: `count` tasks of `task_type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChildTasks {
    /// Their task type (which may have children of its own).
    pub task_type: String,
    /// How many (at least 1).
    pub count: u32,
    /// Their priority; the parent's when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

impl Default for ChildTasks {
    fn default() -> Self {
        Self {
            task_type: String::new(),
            count: 1,
            priority: None,
        }
    }
}

/// `on_child_failure` is left out of a task type's JSON when it is the default.
pub(crate) fn is_fail(mode: &OnChildFailure) -> bool {
    *mode == OnChildFailure::Fail
}

/// Where the depth-first walk of the task types stands with one type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Open,
    /// Levels and jobs of a flow rooted at it.
    Done(usize, u64),
}

impl Scenario {
    /// The queue of task type `kind`.
    pub(crate) fn queue_of(&self, kind: usize) -> &str {
        self.task_types[kind]
            .queue
            .as_deref()
            .unwrap_or(&self.queue)
    }

    /// The queue worker group `group` consumes.
    pub(crate) fn worker_queue(&self, group: usize) -> &str {
        self.workers[group].queue.as_deref().unwrap_or(&self.queue)
    }

    /// Every queue of the scenario, each once: its `queue` first, then the task types' own in
    /// the order they are listed.
    pub(crate) fn queues(&self) -> Vec<&str> {
        let mut out = vec![self.queue.as_str()];
        for t in &self.task_types {
            if let Some(q) = t.queue.as_deref()
                && !out.contains(&q)
            {
                out.push(q);
            }
        }
        out
    }

    /// Whether any task type has children (the run then adds flows and reports them).
    pub(crate) fn has_flows(&self) -> bool {
        self.task_types.iter().any(|t| !t.children.is_empty())
    }

    /// Jobs a task of type `kind` brings: 1, or its whole flow. On a validated scenario (no
    /// cycle, at most `max_flow_jobs`).
    pub(crate) fn flow_jobs(&self, kind: usize) -> u64 {
        self.jobs_below(kind, 0)
    }

    fn jobs_below(&self, kind: usize, depth: usize) -> u64 {
        if depth > MAX_CHILD_ENTRIES * super::MAX_TASK_TYPES {
            return u64::MAX;
        }
        self.task_types[kind].children.iter().fold(1u64, |n, c| {
            let below = self
                .task_index(&c.task_type)
                .map_or(0, |k| self.jobs_below(k, depth + 1));
            n.saturating_add(below.saturating_mul(u64::from(c.count)))
        })
    }

    /// Checks task types' queues and children: known types, counts, no cycle, and every flow
    /// within the engine's depth and size limits.
    pub(super) fn validate_flows(&self) -> Result<(), String> {
        let limits = &self.engine.limits;
        for (i, t) in self.task_types.iter().enumerate() {
            let at = format!("task_types[{i}] ({})", t.name);
            if let Some(q) = &t.queue {
                crate::validate_queue_name(q).map_err(|e| format!("{at}.queue: {e}"))?;
            }
            if t.children.len() > MAX_CHILD_ENTRIES {
                return Err(format!(
                    "{at}.children: at most {MAX_CHILD_ENTRIES} entries"
                ));
            }
            for c in &t.children {
                self.known_type(&format!("{at}.children"), &c.task_type)?;
                priority(&format!("{at}.children.priority"), c.priority)?;
                if c.count == 0 || c.count as usize > limits.max_flow_jobs {
                    return Err(format!(
                        "{at}.children.count must be 1..={}",
                        limits.max_flow_jobs
                    ));
                }
            }
        }
        let mut seen = vec![Visit::New; self.task_types.len()];
        for i in 0..self.task_types.len() {
            let (levels, jobs) = self.visit(i, &mut seen, &mut Vec::new())?;
            let at = format!("task_types[{i}] ({})", self.task_types[i].name);
            if levels > limits.max_flow_depth {
                return Err(format!(
                    "{at}.children: its flow has {levels} levels; the engine takes at most {} \
                     (engine.limits.max_flow_depth)",
                    limits.max_flow_depth
                ));
            }
            if jobs > limits.max_flow_jobs as u64 {
                return Err(format!(
                    "{at}.children: its flow has {jobs} tasks; the engine takes at most {} \
                     (engine.limits.max_flow_jobs)",
                    limits.max_flow_jobs
                ));
            }
        }
        Ok(())
    }

    /// Levels and jobs of the flow of type `kind`, refusing a cycle (`path`: the types being
    /// walked).
    fn visit(
        &self,
        kind: usize,
        seen: &mut [Visit],
        path: &mut Vec<usize>,
    ) -> Result<(usize, u64), String> {
        match seen[kind] {
            Visit::Done(levels, jobs) => return Ok((levels, jobs)),
            Visit::Open => {
                let from = path.iter().position(|k| *k == kind).unwrap_or(0);
                let names: Vec<&str> = (path[from..].iter().chain([&kind]))
                    .map(|k| self.task_types[*k].name.as_str())
                    .collect();
                return Err(format!(
                    "task_types[{kind}] ({}).children: {} is a cycle; a task cannot wait for itself",
                    self.task_types[kind].name,
                    names.join(" → ")
                ));
            }
            Visit::New => {}
        }
        seen[kind] = Visit::Open;
        path.push(kind);
        let (mut levels, mut jobs) = (1usize, 1u64);
        for c in &self.task_types[kind].children {
            let child = self.task_index(&c.task_type).expect("checked above");
            let (l, j) = self.visit(child, seen, path)?;
            levels = levels.max(l + 1);
            jobs = jobs.saturating_add(j.saturating_mul(u64::from(c.count)));
        }
        path.pop();
        seen[kind] = Visit::Done(levels, jobs);
        Ok((levels, jobs))
    }

    /// A worker group's queue must be one the scenario's tasks go to.
    pub(super) fn validate_worker_queue(
        &self,
        at: &str,
        queue: Option<&str>,
    ) -> Result<(), String> {
        match queue {
            Some(q) if !self.queues().contains(&q) => Err(format!(
                "{at}.queue: no task goes to {q:?}; give the scenario's queue or a task type's"
            )),
            _ => Ok(()),
        }
    }
}

/// A flow ready to add: its tree and each job's task type, in pre-order (the root first, each
/// job before its children).
pub(crate) struct FlowDraft {
    pub(crate) tree: FlowTree,
    pub(crate) kinds: Vec<usize>,
}

impl TaskCatalog {
    /// The flow of a task of type `kind`: every job drawn as a single task of its type would
    /// be (numbered in pre-order, poison drawn per job).
    pub(crate) fn flow(
        &self,
        kind: usize,
        priority: Option<u8>,
        made: &mut u64,
        rng: &mut Rng,
    ) -> FlowDraft {
        let mut kinds = Vec::new();
        let tree = self.flow_node(kind, priority, made, rng, &mut kinds);
        FlowDraft { tree, kinds }
    }

    fn flow_node(
        &self,
        kind: usize,
        priority: Option<u8>,
        made: &mut u64,
        rng: &mut Rng,
        kinds: &mut Vec<usize>,
    ) -> FlowTree {
        *made += 1;
        kinds.push(kind);
        let m = self.message(kind, priority, *made, rng);
        let mut children = Vec::new();
        for &(child, count, p) in &self.children[kind] {
            for _ in 0..count {
                children.push(self.flow_node(child, p.or(priority), made, rng, kinds));
            }
        }
        FlowTree {
            queue: self.queue(kind).to_owned(),
            message: m.message.expect("a simulated task has a JSON body"),
            priority: m.priority,
            group: None,
            headers: m.headers,
            ttl_ms: None,
            max_retries: None,
            on_child_failure: self.on_child_failure[kind],
            children,
        }
    }
}

/// A flow's job ids in pre-order, each with whether it is a parent.
fn jobs_of(root: &FlowJobRef, out: &mut Vec<(MessageId, bool)>) {
    out.push((root.message_id, !root.children.is_empty()));
    for c in &root.children {
        jobs_of(c, out);
    }
}

impl Stage {
    /// Adds a flow at `now`. Accepted, its jobs are counted (the flow's metrics, and each job's
    /// cancellation draw); refused (`limit_exceeded` when too many flows are held, a full
    /// queue), all its jobs count as rejected publishes.
    pub(crate) fn add_flow(&mut self, now: u64, draft: FlowDraft) {
        let jobs = draft.kinds.len() as u64;
        match self
            .driver
            .handle(now, Command::AddFlow { flow: draft.tree })
        {
            Ok(Reply::FlowAdded(added)) => {
                let mut ids = Vec::with_capacity(draft.kinds.len());
                jobs_of(&added.root, &mut ids);
                self.driver.metrics.flow_added(now, &ids);
                for ((id, _), kind) in ids.into_iter().zip(draft.kinds) {
                    self.published(now, id, kind, GroupClass::Ungrouped);
                }
            }
            Ok(_) => {}
            Err(_) => {
                self.driver.rejected_publishes += jobs;
                self.driver.metrics.flow_rejected();
            }
        }
    }
}
