//! Flow-control routes under `/queue/` (DESIGN.md §12): pause and resume, a worker's rate
//! limit, and the listing of a queue's groups. The limits themselves are queue settings
//! (`POST /queue/{name}`) and are applied by the engine.

use axum::Json;
use axum::extract::State;
use synap_core::{Command, Reply};
use synap_wire as w;

use super::AppState;
use super::auth::Who;
use super::error::{ApiError, ApiJson, ApiQuery, QueueName};
use super::queue::unexpected;
use crate::settings::{invalid, secs_to_ms};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `POST /queue/{name}/pause`: the queue takes publishes, acks and nacks, and delivers
/// nothing until resumed.
pub(crate) async fn pause(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::Paused> {
    paused(&s, &who, Command::PauseQueue { queue }).await
}

/// `POST /queue/{name}/resume`: waiting consumers are served at once.
pub(crate) async fn resume(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::Paused> {
    paused(&s, &who, Command::ResumeQueue { queue }).await
}

async fn paused(
    s: &AppState,
    who: &crate::permissions::Principal,
    cmd: Command,
) -> ApiResult<w::Paused> {
    match s.engine.call_as(who, cmd).await? {
        Reply::QueuePaused { paused } => Ok(Json(w::Paused {
            success: true,
            paused,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/rate_limit {for_secs}`: no deliveries for that long.
pub(crate) async fn rate_limit(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::RateLimitRequest>,
) -> ApiResult<w::RateLimited> {
    let for_ms = secs_to_ms("for_secs", body.for_secs)?;
    if for_ms == 0 {
        return Err(invalid("for_secs", "must be at least 1 ms").into());
    }
    match s
        .engine
        .call_as(&who, Command::RateLimit { queue, for_ms })
        .await?
    {
        Reply::RateLimited { until } => Ok(Json(w::RateLimited {
            success: true,
            rate_limited_until_ms: until.0,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/{name}/groups?limit=`: the groups holding messages, largest first.
pub(crate) async fn groups(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<w::GroupsQuery>,
) -> ApiResult<w::GroupList> {
    let cmd = Command::Groups {
        queue,
        limit: q.limit.unwrap_or(100),
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::Groups { groups } => Ok(Json(w::GroupList {
            groups: groups
                .into_iter()
                .map(|g| w::GroupInfo {
                    group: g.group,
                    ready: g.ready,
                    in_flight: g.in_flight,
                    delayed: g.delayed,
                })
                .collect(),
        })),
        other => Err(unexpected(&other)),
    }
}
