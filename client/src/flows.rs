//! Flows of DESIGN.md §14 (docs/pipelines-with-flows.md): a tree of jobs in which each parent
//! waits for its children. [`SynapClient::flow_add`] adds the whole tree at once and answers
//! every job it made; [`SynapClient::flow_get`] reads the tree back with each job's state. A
//! parent's delivery carries its finished children
//! ([`QueueMessage::children`](crate::QueueMessage::children)), and a job lookup of a flow job
//! names its flow, parent and children ([`Job`](crate::Job)'s `flow_id`, `parent_id`,
//! `children`).
//!
//! The tree is the wire's [`FlowRequest`] (its `ttl` in seconds, as the wire has it); the
//! answers are the wire's [`FlowCreated`] and [`Flow`].

use reqwest::Method;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::types::{Flow, FlowCreated, FlowRequest};

impl SynapClient {
    /// Adds a flow: `flow` is the root job, each of its `children` a job it waits for (nested,
    /// on any queues). The whole tree is accepted or nothing is. Jobs without children are
    /// published at once; a parent is `waiting_children` until all its children finished, then
    /// published to its queue, its delivery carrying their states and results. Answers the
    /// flow's id and every job made, as a tree in the order given.
    ///
    /// Adding a flow is not idempotent and flows take no idempotency key, so on a client with
    /// failover an attempt left unanswered is never sent again (it could add a second flow);
    /// only a refused connection, which never carried it, moves it to another node.
    ///
    /// # Errors
    /// [`SynapError::Decode`] before sending for a `ttl` that is not a finite number (JSON has
    /// no NaN or infinity; it would be read as absent); from the server, `invalid_argument`
    /// for a bad node, named by its path (`children[1].children[0].priority`; a `null`
    /// message, a bad group, a priority above 9), `limit_exceeded` (429) past 8 levels, 1,000
    /// jobs or the server's flow limit, `queue_full` or `memory_full` (507),
    /// `queue_not_found` when queues are not created on first use, `forbidden` without
    /// `publish` on every queue of the flow.
    pub async fn flow_add(&self, flow: &FlowRequest) -> Result<FlowCreated> {
        check(flow)?;
        self.call_tracked(Method::POST, &["flows"], Some(flow), false)
            .await
            .result
    }

    /// The flow `flow_id` as it is now: its root job's state (the flow's), `created_at`,
    /// `finished_at`, and the tree of jobs with each one's state, `reason` (why it was
    /// dead-lettered), `result` (while kept) and `finished_at`.
    ///
    /// # Errors
    /// `flow_not_found` (404, see [`SynapError::is_not_found`]) for an unknown flow or one no
    /// longer kept (its root finished and none of its jobs can still be looked up),
    /// `invalid_argument` for a malformed id, `forbidden` without `read` on the root's queue.
    pub async fn flow_get(&self, flow_id: &str) -> Result<Flow> {
        self.call(Method::GET, &["flows", flow_id], None::<&()>)
            .await
    }
}

/// Refuses what would not survive the trip as JSON: a `ttl` that is NaN or infinite is
/// written as `null`, which the server reads as "no TTL". Everything else is the server's to
/// judge. Walks the tree with an explicit stack, naming a node by its path as the server does.
fn check(flow: &FlowRequest) -> Result<()> {
    let mut stack = vec![(String::new(), flow)];
    while let Some((path, node)) = stack.pop() {
        if let Some(ttl) = node.ttl.filter(|t| !t.is_finite()) {
            return Err(SynapError::Decode(format!(
                "{path}ttl: {ttl} is not a finite number of seconds"
            )));
        }
        for (i, child) in node.children.iter().enumerate().rev() {
            stack.push((format!("{path}children[{i}]."), child));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::OnChildFailure;

    fn node(queue: &str, children: Vec<FlowRequest>) -> FlowRequest {
        FlowRequest {
            queue: queue.into(),
            message: json!({"q": queue}),
            children,
            ..FlowRequest::default()
        }
    }

    #[test]
    fn a_tree_goes_out_in_the_wire_shape_with_unset_fields_left_out() {
        let mut root = node(
            "notify",
            vec![node("package", vec![node("transcode", vec![])])],
        );
        root.on_child_failure = Some(OnChildFailure::Continue);
        root.children[0].ttl = Some(1.5);
        let v = serde_json::to_value(&root).unwrap();
        assert_eq!(
            v,
            json!({"queue": "notify", "message": {"q": "notify"}, "on_child_failure": "continue",
                "children": [{"queue": "package", "message": {"q": "package"}, "ttl": 1.5,
                    "children": [{"queue": "transcode", "message": {"q": "transcode"}}]}]})
        );
        assert!(check(&root).is_ok());
    }

    #[test]
    fn a_ttl_json_cannot_carry_is_refused_with_its_path() {
        let mut root = node(
            "a",
            vec![node("b", vec![]), node("c", vec![node("d", vec![])])],
        );
        root.children[1].children[0].ttl = Some(f64::NAN);
        let e = check(&root).unwrap_err();
        assert!(
            matches!(&e, SynapError::Decode(m) if m.starts_with("children[1].children[0].ttl:")),
            "{e}"
        );
        root.children[1].children[0].ttl = None;
        root.ttl = Some(f64::INFINITY);
        let e = check(&root).unwrap_err();
        assert!(
            matches!(&e, SynapError::Decode(m) if m.starts_with("ttl:")),
            "{e}"
        );
    }
}
