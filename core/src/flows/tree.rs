//! `FlowTree`, the input of `AddFlow`, and the checks of its shape that need no engine state:
//! depth, size, queue names, and each node as a publish would check it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::{Headers, PublishMessage};
use crate::config::{Limits, validate_queue_name};
use crate::queue::{check_publish, publish_bytes};
use crate::{Error, Json};

/// What a parent does when one of its children fails (is dead-lettered, expires, is
/// cancelled or purged, or its queue is deleted).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OnChildFailure {
    /// The parent is dead-lettered (reason `child_failed`) and its unfinished children, with
    /// their descendants, are cancelled.
    #[default]
    Fail,
    /// The parent runs once every child is finished; its delivery lists each child's state.
    Continue,
    /// As `continue`, but failed children are left out of the parent's delivery.
    Ignore,
}

/// One job of a flow and the jobs it waits for. A node with children is a parent: it is
/// `waiting_children` until every child is finished, then ready on its queue. Every node is
/// checked as a publish of its fields would be, and its queue is created as a publish would
/// create it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTree {
    /// The job's queue.
    pub queue: String,
    /// Its body (JSON).
    pub message: Json,
    /// 0–9; the queue's `default_priority` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Its group (1–255 bytes, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// String headers.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Dead-lettered (reason `expired`) if not acked this long after it becomes ready: at
    /// once for a job without children, when its children are finished for a parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Overrides the queue's `max_retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// What a failed child does to this job (for a parent).
    #[serde(default)]
    pub on_child_failure: OnChildFailure,
    /// The jobs this one waits for, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Self>,
}

impl FlowTree {
    /// A job without children on `queue`.
    #[must_use]
    pub fn job(queue: &str, message: serde_json::Value) -> Self {
        Self {
            queue: queue.to_owned(),
            message: Json::from_value(&message),
            priority: None,
            group: None,
            headers: Headers::new(),
            ttl_ms: None,
            max_retries: None,
            on_child_failure: OnChildFailure::Fail,
            children: Vec::new(),
        }
    }

    /// This job with `children` added.
    #[must_use]
    pub fn with_children(mut self, children: Vec<Self>) -> Self {
        self.children.extend(children);
        self
    }

    /// This job with another `on_child_failure`.
    #[must_use]
    pub fn on_failure(mut self, mode: OnChildFailure) -> Self {
        self.on_child_failure = mode;
        self
    }

    /// Every node's queue name, in pre-order (with repeats): what a host checks permissions
    /// on.
    #[must_use]
    pub fn queue_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            out.push(node.queue.as_str());
            stack.extend(node.children.iter().rev());
        }
        out
    }

    /// The publish this node's job amounts to.
    pub(crate) fn as_publish(&self) -> PublishMessage {
        PublishMessage {
            message: Some(self.message.clone()),
            priority: self.priority,
            headers: self.headers.clone(),
            ttl_ms: self.ttl_ms,
            max_retries: self.max_retries,
            group: self.group.clone(),
            ..PublishMessage::default()
        }
    }

    /// Message bytes this node's job holds (body and headers).
    pub(crate) fn bytes(&self) -> u64 {
        publish_bytes(&self.as_publish())
    }
}

/// A node of a checked tree, flattened in pre-order: the root first, each node before its
/// children, children in the order given.
pub(crate) struct Flat<'a> {
    pub(crate) tree: &'a FlowTree,
    /// The index of its parent in the flattened list.
    pub(crate) parent: Option<u32>,
    /// Its children's indexes, in order.
    pub(crate) children: Vec<u32>,
}

/// Checks the shape of a tree (depth, size, queue names, each node as a publish) and flattens
/// it in pre-order. Refuses with the path of the first bad node in the error's field
/// (`children[0].children[2].priority`).
pub(crate) fn flatten<'a>(tree: &'a FlowTree, limits: &Limits) -> Result<Vec<Flat<'a>>, Error> {
    let mut out: Vec<Flat<'a>> = Vec::new();
    // (node, its parent's index, its depth (root = 1), its path)
    let mut stack: Vec<(&FlowTree, Option<u32>, usize, Arc<str>)> =
        vec![(tree, None, 1, "".into())];
    while let Some((node, parent, depth, path)) = stack.pop() {
        if out.len() >= limits.max_flow_jobs {
            return Err(Error::limit("jobs per flow", limits.max_flow_jobs as u64));
        }
        if depth > limits.max_flow_depth {
            return Err(Error::limit("flow depth", limits.max_flow_depth as u64));
        }
        validate_queue_name(&node.queue).map_err(|e| at(&path, e))?;
        check_publish(limits, &node.as_publish()).map_err(|e| at(&path, e))?;
        let ix = out.len() as u32;
        if let Some(p) = parent {
            out[p as usize].children.push(ix);
        }
        out.push(Flat {
            tree: node,
            parent,
            children: Vec::new(),
        });
        for (i, child) in node.children.iter().enumerate().rev() {
            let child_path: Arc<str> = format!("{path}children[{i}].").into();
            stack.push((child, Some(ix), depth + 1, child_path));
        }
    }
    Ok(out)
}

/// Names the node a refusal is about: `children[1].ttl_ms` rather than `ttl_ms`.
pub(crate) fn at(path: &str, e: Error) -> Error {
    if path.is_empty() {
        return e;
    }
    match e {
        Error::InvalidArgument { field, reason } => Error::InvalidArgument {
            field: format!("{path}{field}"),
            reason,
        },
        Error::PayloadTooLarge { what, size, limit } => Error::PayloadTooLarge {
            what: format!("{path}{what}"),
            size,
            limit,
        },
        Error::LimitExceeded { what, limit } => Error::LimitExceeded {
            what: format!("{path}{what}"),
            limit,
        },
        other => other,
    }
}
