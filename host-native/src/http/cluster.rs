//! The cluster's operations routes (DESIGN.md §11): `GET /cluster`, `GET /health/leader`,
//! `POST /cluster/transfer`, the `role` and `leader` of `GET /health`, and the cluster series of
//! `/metrics`. On a single server `/cluster` and `/cluster/transfer` answer 404.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiJson};
use crate::cluster::{ClusterInbox, ClusterView};

fn node(s: &AppState) -> Result<&ClusterInbox, ApiError> {
    s.engine.cluster_node().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_cluster",
            "this server runs alone (no cluster: section in its config)",
        )
    })
}

fn leader_json(v: &ClusterView) -> Value {
    v.leader.as_ref().map_or(
        Value::Null,
        |l| json!({"id": l.id, "http": format!("http://{}", l.http)}),
    )
}

/// `GET /cluster`: this node's view of the cluster.
pub(super) async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let v = node(&s)?.view();
    Ok(Json(json!({
        "node_id": v.node_id,
        "role": v.role,
        "term": v.term,
        "leader": leader_json(&v),
        "commit_index": v.commit_index,
        "applied_index": v.applied_index,
        "elections_total": v.elections_total,
        "nodes": v.nodes,
    })))
}

/// `GET /health/leader`: 200 on the leader, 503 elsewhere (for load balancers). A single
/// server is its own leader.
pub(super) async fn health_leader(State(s): State<AppState>) -> Response {
    let (leader, body) = match s.engine.cluster_node() {
        None => (!s.engine.is_closed(), json!({"role": "leader"})),
        Some(c) => {
            let v = c.view();
            let body = json!({"role": v.role, "leader": leader_json(&v)});
            (v.role == "leader" && !c.is_closed(), body)
        }
    };
    let status = if leader {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The body of `POST /cluster/transfer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferRequest {
    to: u64,
}

/// `POST /cluster/transfer {to}`: the leader hands leadership to node `to`. Answered at once;
/// `GET /cluster` shows when the new leader is in place.
pub(super) async fn transfer(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<Json<Value>, ApiError> {
    let c = node(&s)?;
    let v = c.view();
    if !v.nodes.iter().any(|n| n.id == req.to) {
        return Err(ApiError::bad(format!(
            "node {} is not in the cluster",
            req.to
        )));
    }
    if v.role != "leader" {
        let f = match v.leader.clone() {
            Some(l) => crate::cluster::NotServing::NotLeader(l),
            None => crate::cluster::NotServing::NoLeader,
        };
        return Err(ApiError::not_serving(f));
    }
    c.transfer(req.to);
    Ok(Json(json!({"success": true, "to": req.to})))
}

/// The `role` and `leader` fields `GET /health` adds on a cluster node.
pub(super) fn health_fields(s: &AppState) -> Option<(String, Value)> {
    let v = s.engine.cluster_node()?.view();
    Some((v.role.to_owned(), leader_json(&v)))
}

/// The cluster series of `/metrics`.
pub(super) fn metrics(s: &AppState, out: &mut String) {
    let Some(c) = s.engine.cluster_node() else {
        return;
    };
    let v = c.view();
    let role = match v.role {
        "leader" => 2,
        "candidate" | "pre_candidate" => 1,
        _ => 0,
    };
    let series: [(&str, &str, &str, u64); 5] = [
        (
            "synap_cluster_term",
            "gauge",
            "The Raft term this node is in.",
            v.term,
        ),
        (
            "synap_cluster_role",
            "gauge",
            "This node's role: 0 follower, 1 candidate, 2 leader.",
            role,
        ),
        (
            "synap_cluster_commit_index",
            "gauge",
            "The highest log index this node knows committed.",
            v.commit_index,
        ),
        (
            "synap_cluster_applied_index",
            "gauge",
            "The highest log index this node applied to its engine.",
            v.applied_index,
        ),
        (
            "synap_cluster_elections_total",
            "counter",
            "Terms this node has seen begin since it started (one election each).",
            v.elections_total,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP synap_cluster_peer_lag Entries a peer's log is behind the leader's commit index (on the leader).\n\
         # TYPE synap_cluster_peer_lag gauge"
    );
    for n in &v.nodes {
        if let Some(m) = n.match_index {
            let lag = v.commit_index.saturating_sub(m);
            let _ = writeln!(out, "synap_cluster_peer_lag{{node=\"{}\"}} {lag}", n.id);
        }
    }
    let _ = writeln!(
        out,
        "# HELP synap_cluster_peer_reachable Whether this node is connected to a peer.\n\
         # TYPE synap_cluster_peer_reachable gauge"
    );
    for n in v.nodes.iter().filter(|n| n.id != v.node_id) {
        let _ = writeln!(
            out,
            "synap_cluster_peer_reachable{{node=\"{}\"}} {}",
            n.id,
            u8::from(n.reachable)
        );
    }
}
