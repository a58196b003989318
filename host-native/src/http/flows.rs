//! `POST /flows` and `GET /flows/{flow_id}` (DESIGN.md §14): a tree of jobs where each parent
//! waits for its children. The routes convert the wire shapes (seconds, ids as text) to the
//! core's and back; the engine decides everything else. Also the wire form of the children a
//! parent's delivery carries, which every delivery path uses (`super::wire::delivery`).
//!
//! Permissions: adding a flow publishes to every queue in it (`publish` on each, checked with
//! the command); reading one needs `read` on its root job's queue, known once it is found.

use axum::Json;
use axum::extract::State;
use synap_core::{
    Command, Error, FlowAdded, FlowChild, FlowId, FlowInfo, FlowJobRef, FlowJobState, FlowNodeInfo,
    FlowTree, Json as CoreJson, OnChildFailure, Reply,
};
use synap_wire as w;

use super::AppState;
use super::auth::Who;
use super::error::{ApiError, ApiJson, ApiPath, api_field};
use super::queue::unexpected;
use super::wire::dead_letter_reason;
use crate::handle::Failure;
use crate::permissions::{Action, Kind};
use crate::settings::ttl_secs_to_ms;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `POST /flows`: adds the whole tree or nothing.
pub(crate) async fn create(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::FlowRequest>,
) -> ApiResult<w::FlowCreated> {
    let flow = tree(body, "")?;
    match s
        .engine
        .call_as(&who, Command::AddFlow { flow })
        .await
        .map_err(flow_error)?
    {
        Reply::FlowAdded(a) => Ok(Json(created(&a))),
        other => Err(unexpected(&other)),
    }
}

/// `GET /flows/{flow_id}`: the tree with each job's state.
pub(crate) async fn get(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<w::Flow> {
    let flow_id: FlowId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad(format!("flow_id: {id:?} is not a valid flow id")))?;
    match s.engine.call_as(&who, Command::GetFlow { flow_id }).await? {
        Reply::Flow(f) => {
            who.require(Kind::Queue, Action::Read, &f.root.queue)?;
            Ok(Json(flow(&f)))
        }
        other => Err(unexpected(&other)),
    }
}

/// The core's tree of a request; `path` names the node in errors (`children[0].ttl`). A
/// `null` message is refused, as a publish refuses it (null reads as absent).
fn tree(r: w::FlowRequest, path: &str) -> Result<FlowTree, ApiError> {
    if r.message.is_null() {
        return Err(ApiError::bad(format!(
            "invalid argument: {path}message: missing (any JSON but null)"
        )));
    }
    let ttl_ms = r
        .ttl
        .map(|t| ttl_secs_to_ms(&format!("{path}ttl"), t))
        .transpose()?;
    let children = r
        .children
        .into_iter()
        .enumerate()
        .map(|(i, c)| tree(c, &format!("{path}children[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FlowTree {
        queue: r.queue,
        message: CoreJson::from_value(&r.message),
        priority: r.priority,
        group: r.group,
        headers: r.headers,
        ttl_ms,
        max_retries: r.max_retries,
        on_child_failure: match r.on_child_failure.unwrap_or_default() {
            w::OnChildFailure::Fail => OnChildFailure::Fail,
            w::OnChildFailure::Continue => OnChildFailure::Continue,
            w::OnChildFailure::Ignore => OnChildFailure::Ignore,
        },
        children,
    })
}

/// An engine refusal of a flow, the field named as the API names it (`children[1].ttl`, not
/// `children[1].ttl_ms`).
fn flow_error(f: Failure) -> ApiError {
    match f {
        Failure::Core(Error::InvalidArgument { field, reason }) => {
            let (path, last) = field
                .rfind('.')
                .map_or(("", field.as_str()), |i| field.split_at(i + 1));
            let field = format!("{path}{}", api_field(last));
            Error::InvalidArgument { field, reason }.into()
        }
        other => other.into(),
    }
}

fn created(a: &FlowAdded) -> w::FlowCreated {
    w::FlowCreated {
        flow_id: a.flow_id.to_string(),
        message_id: a.root.message_id.to_string(),
        queue: a.root.queue.clone(),
        children: a.root.children.iter().map(job).collect(),
    }
}

fn job(j: &FlowJobRef) -> w::FlowJob {
    w::FlowJob {
        message_id: j.message_id.to_string(),
        queue: j.queue.clone(),
        children: j.children.iter().map(job).collect(),
    }
}

/// A finished child as a parent's delivery carries it.
pub(crate) fn child(c: &FlowChild) -> w::FlowChild {
    w::FlowChild {
        message_id: c.message_id.to_string(),
        queue: c.queue.to_string(),
        state: state(c.state),
        result: c.result.as_ref().map(CoreJson::to_value),
        reason: c.reason.map(dead_letter_reason),
    }
}

fn flow(f: &FlowInfo) -> w::Flow {
    let root = node(&f.root);
    w::Flow {
        flow_id: f.flow_id.to_string(),
        created_at: f.created_at.0,
        finished_at: f.finished_at.map(|t| t.0),
        message_id: root.message_id,
        queue: root.queue,
        state: root.state,
        reason: root.reason,
        result: root.result,
        on_child_failure: root.on_child_failure,
        children: root.children,
    }
}

fn node(n: &FlowNodeInfo) -> w::FlowNode {
    w::FlowNode {
        message_id: n.message_id.to_string(),
        queue: n.queue.to_string(),
        state: state(n.state),
        reason: n.reason.map(dead_letter_reason),
        result: n.result.as_ref().map(CoreJson::to_value),
        finished_at: n.finished_at.map(|t| t.0),
        on_child_failure: match n.on_child_failure {
            OnChildFailure::Fail => w::OnChildFailure::Fail,
            OnChildFailure::Continue => w::OnChildFailure::Continue,
            OnChildFailure::Ignore => w::OnChildFailure::Ignore,
        },
        children: n.children.iter().map(node).collect(),
    }
}

const fn state(s: FlowJobState) -> w::FlowJobState {
    match s {
        FlowJobState::WaitingChildren => w::FlowJobState::WaitingChildren,
        FlowJobState::Delayed => w::FlowJobState::Delayed,
        FlowJobState::Ready => w::FlowJobState::Ready,
        FlowJobState::InFlight => w::FlowJobState::InFlight,
        FlowJobState::Completed => w::FlowJobState::Completed,
        FlowJobState::DeadLettered => w::FlowJobState::DeadLettered,
        FlowJobState::Expired => w::FlowJobState::Expired,
        FlowJobState::Cancelled => w::FlowJobState::Cancelled,
        FlowJobState::Purged => w::FlowJobState::Purged,
        FlowJobState::QueueDeleted => w::FlowJobState::QueueDeleted,
    }
}
