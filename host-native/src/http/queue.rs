//! REST routes under `/queue/`: bodies and answers are `synap-wire` types, converted to and
//! from the core's in `super::wire`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use synap_core::{Command, Reply};
use synap_wire as w;

use super::AppState;
use super::auth::Who;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, QueueName};
use super::wire::{
    ack_command, consume_command, dead_letter, delivery, extend_command, job as job_of, job_state,
    nack_action, nack_command, parse_message_id, publish_message, published, queue_stats, schedule,
    schedule_spec,
};
use crate::permissions::Principal;
use crate::settings::{ApplySettings as _, QueueSettings};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Answers an unexpected reply variant; the engine's replies are fixed per command, so this
/// only guards against a mismatch between host and core versions.
pub(crate) fn unexpected(reply: &Reply) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("unexpected engine reply: {reply:?}"),
    )
}

/// `POST /queue/{name}`: create the queue, or set its config when settings are given.
pub(crate) async fn create(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(name): QueueName,
    ApiJson(settings): ApiJson<QueueSettings>,
) -> ApiResult<w::QueueCreated> {
    let cmd = if settings.is_empty() {
        Command::CreateQueue {
            queue: name.clone(),
            config: None,
        }
    } else {
        let config = settings.apply(&s.default_queue)?;
        Command::ConfigureQueue {
            queue: name.clone(),
            config: Box::new(config),
        }
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::QueueCreated { queue, created } => Ok(Json(w::QueueCreated {
            success: true,
            queue,
            created,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/list`.
pub(crate) async fn list(State(s): State<AppState>, Who(who): Who) -> ApiResult<w::QueueList> {
    match s.engine.call_as(&who, Command::ListQueues).await? {
        Reply::Queues { queues } => Ok(Json(w::QueueList { queues })),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /queue/{name}`.
pub(crate) async fn delete(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::Deleted> {
    match s
        .engine
        .call_as(&who, Command::DeleteQueue { queue })
        .await?
    {
        Reply::QueueDeleted { deleted } => Ok(Json(w::Deleted { deleted })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/publish`.
pub(crate) async fn publish(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::PublishRequest>,
) -> ApiResult<w::Published> {
    let message = publish_message(body)?;
    match s
        .engine
        .call_as(&who, Command::Publish { queue, message })
        .await?
    {
        Reply::Published(p) => Ok(Json(published(&p))),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/publish_batch`: all messages are accepted or none.
pub(crate) async fn publish_batch(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::PublishBatchRequest>,
) -> ApiResult<w::PublishedBatch> {
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            publish_message(m).map_err(|e| ApiError::bad(format!("messages[{i}]: {}", e.message())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match s
        .engine
        .call_as(&who, Command::PublishBatch { queue, messages })
        .await?
    {
        Reply::PublishedBatch { messages } => Ok(Json(w::PublishedBatch {
            messages: messages.iter().map(published).collect(),
        })),
        other => Err(unexpected(&other)),
    }
}

async fn consume_with(s: &AppState, who: &Principal, cmd: Command) -> ApiResult<w::Deliveries> {
    let messages = s.engine.consume_as(who, cmd).await?;
    Ok(Json(w::Deliveries {
        messages: messages.iter().map(delivery).collect(),
    }))
}

/// `POST /queue/{name}/consume`.
pub(crate) async fn consume(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::ConsumeRequest>,
) -> ApiResult<w::Deliveries> {
    let cmd = consume_command(body, queue)?;
    consume_with(&s, &who, cmd).await
}

/// `GET /queue/{name}/consume/{consumer_id}` with the options in the query string.
pub(crate) async fn consume_get(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiPath(params): ApiPath<HashMap<String, String>>,
    ApiQuery(mut body): ApiQuery<w::ConsumeRequest>,
) -> ApiResult<w::Deliveries> {
    body.consumer_id = params.get("consumer_id").cloned();
    let cmd = consume_command(body, queue)?;
    consume_with(&s, &who, cmd).await
}

/// `POST /queue/{name}/ack`.
pub(crate) async fn ack(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::AckRequest>,
) -> ApiResult<w::Success> {
    match s.engine.call_as(&who, ack_command(&body, queue)?).await? {
        Reply::Acked => Ok(Json(w::Success::OK)),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/ack_batch`: each ack succeeds or fails on its own.
pub(crate) async fn ack_batch(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::AckBatchRequest>,
) -> ApiResult<w::AckBatchResult> {
    if body.acks.len() > s.max_batch {
        return Err(ApiError::bad(format!(
            "acks: at most {} per batch",
            s.max_batch
        )));
    }
    let fail = |message_id: &str, code: &str| w::AckFailure {
        message_id: message_id.to_owned(),
        code: code.to_owned(),
    };
    let mut failed = Vec::new();
    let mut ids = Vec::with_capacity(body.acks.len());
    let mut cmds = Vec::with_capacity(body.acks.len());
    for a in body.acks {
        match ack_command(&a, queue.clone()) {
            Ok(cmd) => {
                who.check(&cmd)?;
                ids.push(a.message_id);
                cmds.push(cmd);
            }
            Err(_) => failed.push(fail(&a.message_id, "invalid_argument")),
        }
    }
    // One engine turn for the whole batch: one log record and one sync (one Raft entry on a
    // cluster), instead of one per ack.
    let replies = if cmds.is_empty() {
        Vec::new()
    } else {
        s.engine.call_many(cmds).await?.wait().await?
    };
    let mut acked = 0u64;
    for (id, reply) in ids.iter().zip(replies) {
        match reply {
            Ok(_) => acked += 1,
            Err(crate::handle::Failure::Core(e)) => failed.push(fail(id, e.code())),
            Err(f) => return Err(f.into()),
        }
    }
    Ok(Json(w::AckBatchResult { acked, failed }))
}

/// `POST /queue/{name}/nack`.
pub(crate) async fn nack(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::NackRequest>,
) -> ApiResult<w::Nacked> {
    match s.engine.call_as(&who, nack_command(body, queue)?).await? {
        Reply::Nacked { action } => Ok(Json(w::Nacked {
            success: true,
            action: nack_action(action),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/extend`.
pub(crate) async fn extend(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::ExtendRequest>,
) -> ApiResult<w::Extended> {
    match s
        .engine
        .call_as(&who, extend_command(&body, queue)?)
        .await?
    {
        Reply::Extended { lease_deadline, .. } => Ok(Json(w::Extended {
            success: true,
            lease_deadline: lease_deadline.0,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/{name}/stats`: the engine's stats, the config in seconds as
/// `POST /queue/{name}` takes it.
pub(crate) async fn stats(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::QueueStats> {
    match s.engine.call_as(&who, Command::Stats { queue }).await? {
        Reply::Stats(st) => Ok(Json(queue_stats(&st))),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/{name}/dlq?offset=&limit=`.
pub(crate) async fn dlq(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<w::DlqQuery>,
) -> ApiResult<w::DlqPage> {
    let cmd = Command::DlqList {
        queue,
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(100),
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::DeadLetters { total, messages } => Ok(Json(w::DlqPage {
            total,
            messages: messages.iter().map(dead_letter).collect(),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/dlq/retry`.
pub(crate) async fn dlq_retry(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::DlqRetryRequest>,
) -> ApiResult<w::Retried> {
    let message_ids = body
        .message_ids
        .map(|ids| ids.iter().map(|i| parse_message_id(i)).collect())
        .transpose()?;
    match s
        .engine
        .call_as(&who, Command::DlqRetry { queue, message_ids })
        .await?
    {
        Reply::Redriven { retried } => Ok(Json(w::Retried { retried })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/dlq/purge`.
pub(crate) async fn dlq_purge(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::Purged> {
    purged(&s, &who, Command::DlqPurge { queue }).await
}

/// `POST /queue/{name}/purge`.
pub(crate) async fn purge(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::Purged> {
    purged(&s, &who, Command::Purge { queue }).await
}

async fn purged(s: &AppState, who: &Principal, cmd: Command) -> ApiResult<w::Purged> {
    match s.engine.call_as(who, cmd).await? {
        Reply::Purged { purged } => Ok(Json(w::Purged { purged })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/{name}/messages/{id}`: a job as it is now.
pub(crate) async fn job(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> ApiResult<w::Job> {
    synap_core::validate_queue_name(&name)?;
    let cmd = Command::GetJob {
        queue: name,
        message_id: parse_message_id(&id)?,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::Job(j) => Ok(Json(job_of(&j))),
        other => Err(unexpected(&other)),
    }
}

/// Longest a job wait holds when the request names no `timeout`, in seconds.
const DEFAULT_JOB_WAIT_SECS: f64 = 30.0;

/// `GET /queue/{name}/messages/{id}/wait?timeout=`: the job once it is finished (completed,
/// dead-lettered or cancelled), or as it is when the wait ends.
pub(crate) async fn wait_job(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath((name, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<w::WaitQuery>,
) -> ApiResult<w::Job> {
    synap_core::validate_queue_name(&name)?;
    let cmd = Command::WaitJob {
        queue: name,
        message_id: parse_message_id(&id)?,
        wait_ms: crate::settings::secs_to_ms(
            "timeout",
            q.timeout.unwrap_or(DEFAULT_JOB_WAIT_SECS),
        )?,
    };
    match s.engine.wait_job_as(&who, cmd).await? {
        Reply::Job(j) => Ok(Json(job_of(&j))),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/progress`.
pub(crate) async fn progress(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::ProgressRequest>,
) -> ApiResult<w::Progressed> {
    let cmd = Command::Progress {
        queue,
        message_id: parse_message_id(&body.message_id)?,
        lease: body.lease.map(synap_core::LeaseToken),
        progress: synap_core::Json::from_value(&body.progress),
        extend_ms: super::wire::opt_ms("extend", body.extend)?,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::Progressed {
            cancelled,
            lease_deadline,
        } => Ok(Json(w::Progressed {
            success: true,
            cancelled,
            lease_deadline: lease_deadline.0,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/cancel`.
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<w::CancelRequest>,
) -> ApiResult<w::Cancelled> {
    let cmd = Command::Cancel {
        queue,
        message_id: parse_message_id(&body.message_id)?,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::Cancelled { state } => Ok(Json(w::Cancelled {
            success: true,
            state: job_state(state),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `PUT /queue/{name}/schedules/{id}`: create or replace a schedule.
pub(crate) async fn put_schedule(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath((name, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<w::ScheduleRequest>,
) -> ApiResult<w::ScheduleSet> {
    synap_core::validate_queue_name(&name)?;
    let cmd = Command::PutSchedule {
        queue: name,
        schedule_id: id,
        schedule: schedule_spec(body)?,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::ScheduleSet {
            schedule_id,
            next_run_at,
            created,
        } => Ok(Json(w::ScheduleSet {
            id: schedule_id,
            next_run_at: next_run_at.map(|t| t.0),
            created,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/{name}/schedules`.
pub(crate) async fn list_schedules(
    State(s): State<AppState>,
    Who(who): Who,
    QueueName(queue): QueueName,
) -> ApiResult<w::ScheduleList> {
    match s
        .engine
        .call_as(&who, Command::ListSchedules { queue })
        .await?
    {
        Reply::Schedules { schedules } => Ok(Json(w::ScheduleList {
            schedules: schedules.iter().map(schedule).collect(),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /queue/{name}/schedules/{id}`.
pub(crate) async fn delete_schedule(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> ApiResult<w::Deleted> {
    synap_core::validate_queue_name(&name)?;
    let cmd = Command::DeleteSchedule {
        queue: name,
        schedule_id: id,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::ScheduleDeleted { deleted } => Ok(Json(w::Deleted { deleted })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/schedules/{id}/run`: publish one run now.
pub(crate) async fn run_schedule(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> ApiResult<w::Published> {
    synap_core::validate_queue_name(&name)?;
    let cmd = Command::RunSchedule {
        queue: name,
        schedule_id: id,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::Published(p) => Ok(Json(published(&p))),
        other => Err(unexpected(&other)),
    }
}
