//! The cluster's operations routes (DESIGN.md §11): `GET /cluster`, `GET /health/leader`,
//! `POST /cluster/transfer`, `POST /cluster/nodes` and `DELETE /cluster/nodes/{id}` (membership
//! changes), the `role` and `leader` of `GET /health`, and the cluster series of `/metrics`. On
//! a single server the `/cluster` routes answer 404. The routes that change the cluster need
//! full access; a follower forwards them to the leader like other writes.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use std::net::SocketAddr;

use super::AppState;
use super::auth::Who;
use super::error::{ApiError, ApiJson, ApiPath};
use crate::cluster::config::NodeAddrs;
use crate::cluster::members::{ChangeFailure, ChangeRequest};
use crate::cluster::{ClusterInbox, ClusterView, NotServing};
use crate::permissions::{Caller, Denied};
use synap_cluster::ChangeRefused;

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
        "voters": v.voters,
        "learners": v.learners,
        "member": v.member,
        "nodes": v.nodes,
    })))
}

/// Changing the cluster takes full access (no `permissions` list).
fn require_full(who: &Caller, what: &str) -> Result<(), ApiError> {
    if who.full_access() {
        return Ok(());
    }
    Err(ApiError::forbidden(Denied(format!(
        "{:?} may not {what} (it needs full access)",
        who.name
    ))))
}

/// This node's answer when it is not the leader.
fn not_leader(v: &ClusterView) -> ApiError {
    ApiError::not_serving(match v.leader.clone() {
        Some(l) => NotServing::NotLeader(l),
        None => NotServing::NoLeader,
    })
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
    Who(who): Who,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<Json<Value>, ApiError> {
    let c = node(&s)?;
    require_full(&who, "move the cluster's leadership")?;
    let v = c.view();
    if !v.voters.contains(&req.to) {
        return Err(ApiError::bad(format!(
            "node {} is not a voter of the cluster",
            req.to
        )));
    }
    if v.role != "leader" {
        return Err(not_leader(&v));
    }
    c.transfer(req.to);
    Ok(Json(json!({"success": true, "to": req.to})))
}

/// The body of `POST /cluster/nodes`: the new node's id and addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddNodeRequest {
    id: u64,
    raft: SocketAddr,
    http: SocketAddr,
    #[serde(default)]
    rpc: Option<SocketAddr>,
}

/// An address peers and clients can reach: a port, and not the wildcard address.
fn check_addr(field: &str, a: SocketAddr) -> Result<(), ApiError> {
    if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() {
        return Err(ApiError::bad(format!(
            "{field} {a} is not an address other nodes can reach (no wildcard, multicast or port 0)"
        )));
    }
    Ok(())
}

/// `POST /cluster/nodes {id, raft, http, rpc?}`: adds a node, as a learner; the leader makes
/// it a voter once it has caught up (`GET /cluster` shows when). Answered once the change is
/// applied on the leader.
pub(super) async fn add_node(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(req): ApiJson<AddNodeRequest>,
) -> Result<Json<Value>, ApiError> {
    let c = node(&s)?;
    require_full(&who, "change the cluster's membership")?;
    if req.id == 0 {
        return Err(ApiError::bad("id: node ids start at 1"));
    }
    check_addr("raft", req.raft)?;
    check_addr("http", req.http)?;
    if let Some(rpc) = req.rpc {
        check_addr("rpc", rpc)?;
    }
    let same = [Some(req.raft), Some(req.http), req.rpc];
    if same
        .iter()
        .flatten()
        .enumerate()
        .any(|(i, a)| same.iter().flatten().skip(i + 1).any(|b| a == b))
    {
        return Err(ApiError::bad(
            "raft, http and rpc must be three different addresses",
        ));
    }
    let v = c.view();
    if v.role != "leader" {
        return Err(not_leader(&v));
    }
    let addrs = NodeAddrs {
        id: req.id,
        raft: req.raft,
        http: req.http,
        rpc: req.rpc,
        join: true,
    };
    let index = c.change(ChangeRequest::Add(addrs)).await.map_err(failure)?;
    Ok(Json(json!({
        "success": true,
        "id": req.id,
        "role": "learner",
        "index": index,
    })))
}

/// `DELETE /cluster/nodes/{id}`: removes a voter or learner. Answered once applied on the
/// leader; the removed node's process should then be stopped.
pub(super) async fn remove_node(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Value>, ApiError> {
    let c = node(&s)?;
    require_full(&who, "change the cluster's membership")?;
    if id == 0 {
        return Err(ApiError::bad("id: node ids start at 1"));
    }
    let v = c.view();
    if v.role != "leader" {
        return Err(not_leader(&v));
    }
    let index = c.change(ChangeRequest::Remove(id)).await.map_err(failure)?;
    Ok(Json(json!({"success": true, "id": id, "index": index})))
}

/// A failed membership change as an HTTP error.
fn failure(f: ChangeFailure) -> ApiError {
    use axum::http::StatusCode as S;
    let conflict = |code, e: &ChangeRefused| ApiError::new(S::CONFLICT, code, e.to_string());
    match f {
        ChangeFailure::Cluster(n) => ApiError::not_serving(n),
        ChangeFailure::Unavailable => ApiError::new(
            S::SERVICE_UNAVAILABLE,
            "unavailable",
            "the cluster node has stopped",
        ),
        ChangeFailure::AddressInUse(why) => ApiError::new(S::CONFLICT, "address_in_use", why),
        ChangeFailure::Rejected(why) => ApiError::new(
            S::CONFLICT,
            "change_rejected",
            format!("raft refused the change: {why}"),
        ),
        ChangeFailure::Refused(e) => match &e {
            ChangeRefused::Pending => conflict("change_pending", &e),
            ChangeRefused::Exists { .. } => conflict("node_exists", &e),
            ChangeRefused::Removed { .. } => conflict("node_removed", &e),
            ChangeRefused::IdTooLow { .. } => conflict("node_id_too_low", &e),
            ChangeRefused::Leader { .. } => conflict("node_is_leader", &e),
            ChangeRefused::LastVoter { .. } => conflict("last_voter", &e),
            ChangeRefused::TooMany { .. } => conflict("too_many_nodes", &e),
            ChangeRefused::NotMember { .. } => {
                ApiError::new(S::NOT_FOUND, "node_not_found", e.to_string())
            }
            ChangeRefused::InvalidId | ChangeRefused::InvalidAddress(_) => {
                ApiError::bad(e.to_string())
            }
            ChangeRefused::Refused(_) => ApiError::not_serving(NotServing::NoLeader),
        },
    }
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
    let series: [(&str, &str, &str, u64); 7] = [
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
        (
            "synap_cluster_voters",
            "gauge",
            "Voters in the membership this node knows.",
            v.voters.len() as u64,
        ),
        (
            "synap_cluster_learners",
            "gauge",
            "Learners (nodes added and catching up) in the membership this node knows.",
            v.learners.len() as u64,
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
