//! REST routes under `/queue/`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use synap_core::{Command, Reply};

use super::AppState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, QueueName};
use super::wire::{PublishBody, dead_letter_json, delivery_json, parse_message_id, published_json};
use crate::settings::{QueueSettings, secs_to_ms};

type ApiResult = Result<Json<Value>, ApiError>;

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
    QueueName(name): QueueName,
    ApiJson(settings): ApiJson<QueueSettings>,
) -> ApiResult {
    let cmd = if settings.is_empty() {
        Command::CreateQueue {
            queue: name.clone(),
            config: None,
        }
    } else {
        let config = settings.apply(&s.default_queue)?;
        Command::ConfigureQueue {
            queue: name.clone(),
            config,
        }
    };
    match s.engine.call(cmd).await? {
        Reply::QueueCreated { queue, created } => Ok(Json(
            json!({"success": true, "queue": queue, "created": created}),
        )),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/list`.
pub(crate) async fn list(State(s): State<AppState>) -> ApiResult {
    match s.engine.call(Command::ListQueues).await? {
        Reply::Queues { queues } => Ok(Json(json!({ "queues": queues }))),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /queue/{name}`.
pub(crate) async fn delete(State(s): State<AppState>, QueueName(queue): QueueName) -> ApiResult {
    match s.engine.call(Command::DeleteQueue { queue }).await? {
        Reply::QueueDeleted { deleted } => Ok(Json(json!({ "deleted": deleted }))),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/publish`.
pub(crate) async fn publish(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<PublishBody>,
) -> ApiResult {
    let message = body.into_message()?;
    match s.engine.call(Command::Publish { queue, message }).await? {
        Reply::Published(p) => Ok(Json(published_json(&p))),
        other => Err(unexpected(&other)),
    }
}

/// `{messages: [...]}` of a batch publish.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    messages: Vec<PublishBody>,
}

/// `POST /queue/{name}/publish_batch`: all messages are accepted or none.
pub(crate) async fn publish_batch(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<BatchBody>,
) -> ApiResult {
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.into_message()
                .map_err(|e| ApiError::bad(format!("messages[{i}]: {}", e.message())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match s
        .engine
        .call(Command::PublishBatch { queue, messages })
        .await?
    {
        Reply::PublishedBatch { messages } => {
            let list: Vec<Value> = messages.iter().map(published_json).collect();
            Ok(Json(json!({ "messages": list })))
        }
        other => Err(unexpected(&other)),
    }
}

/// Consume options, from a JSON body or a query string.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConsumeBody {
    /// Long-poll seconds (0 = answer at once).
    timeout: Option<f64>,
    /// Lease seconds; the queue's ack deadline when absent.
    ack_deadline: Option<f64>,
    /// 1..=100.
    max_messages: Option<u32>,
    /// The consumer.
    consumer_id: Option<String>,
}

impl ConsumeBody {
    fn into_command(self, queue: String) -> Result<Command, ApiError> {
        Ok(Command::Consume {
            queue,
            wait_ms: secs_to_ms("timeout", self.timeout.unwrap_or(0.0))?,
            lease_ms: self
                .ack_deadline
                .map(|d| secs_to_ms("ack_deadline", d))
                .transpose()?,
            max_messages: self.max_messages.unwrap_or(1),
            consumer_id: self.consumer_id,
        })
    }
}

async fn consume_with(s: &AppState, cmd: Command) -> ApiResult {
    let messages = s.engine.consume(cmd).await?;
    let list: Vec<Value> = messages.iter().map(delivery_json).collect();
    Ok(Json(json!({ "messages": list })))
}

/// `POST /queue/{name}/consume`.
pub(crate) async fn consume(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<ConsumeBody>,
) -> ApiResult {
    let cmd = body.into_command(queue)?;
    consume_with(&s, cmd).await
}

/// `GET /queue/{name}/consume/{consumer_id}` with the options in the query string.
pub(crate) async fn consume_get(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiPath(params): ApiPath<std::collections::HashMap<String, String>>,
    ApiQuery(mut body): ApiQuery<ConsumeBody>,
) -> ApiResult {
    body.consumer_id = params.get("consumer_id").cloned();
    let cmd = body.into_command(queue)?;
    consume_with(&s, cmd).await
}

/// An ack (one entry of `ack_batch` too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    message_id: String,
    #[serde(default)]
    lease: Option<u64>,
}

/// `POST /queue/{name}/ack`.
pub(crate) async fn ack(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<AckBody>,
) -> ApiResult {
    let message_id = parse_message_id(&body.message_id)?;
    let cmd = Command::Ack {
        queue,
        message_id,
        lease: body.lease,
    };
    match s.engine.call(cmd).await? {
        Reply::Acked => Ok(Json(json!({"success": true}))),
        other => Err(unexpected(&other)),
    }
}

/// `{acks: [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBatchBody {
    acks: Vec<AckBody>,
}

/// `POST /queue/{name}/ack_batch`: each ack succeeds or fails on its own.
pub(crate) async fn ack_batch(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<AckBatchBody>,
) -> ApiResult {
    if body.acks.len() > s.max_batch {
        return Err(ApiError::bad(format!(
            "acks: at most {} per batch",
            s.max_batch
        )));
    }
    let mut acked = 0u64;
    let mut failed = Vec::new();
    for a in body.acks {
        let Ok(message_id) = parse_message_id(&a.message_id) else {
            failed.push(json!({"message_id": a.message_id, "code": "invalid_argument"}));
            continue;
        };
        let cmd = Command::Ack {
            queue: queue.clone(),
            message_id,
            lease: a.lease,
        };
        match s.engine.call(cmd).await {
            Ok(_) => acked += 1,
            Err(crate::handle::Failure::Core(e)) => {
                failed.push(json!({"message_id": a.message_id, "code": e.code()}));
            }
            Err(f) => return Err(f.into()),
        }
    }
    Ok(Json(json!({"acked": acked, "failed": failed})))
}

/// A nack.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NackBody {
    message_id: String,
    #[serde(default)]
    requeue: Option<bool>,
    #[serde(default)]
    delay: Option<f64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    lease: Option<u64>,
}

/// `POST /queue/{name}/nack`.
pub(crate) async fn nack(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<NackBody>,
) -> ApiResult {
    let cmd = Command::Nack {
        queue,
        message_id: parse_message_id(&body.message_id)?,
        requeue: body.requeue.unwrap_or(true),
        delay_ms: body.delay.map(|d| secs_to_ms("delay", d)).transpose()?,
        error: body.error,
        lease: body.lease,
    };
    match s.engine.call(cmd).await? {
        Reply::Nacked { action } => Ok(Json(json!({"success": true, "action": action}))),
        other => Err(unexpected(&other)),
    }
}

/// A lease extension.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtendBody {
    message_id: String,
    ack_deadline: f64,
    #[serde(default)]
    lease: Option<u64>,
}

/// `POST /queue/{name}/extend`.
pub(crate) async fn extend(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<ExtendBody>,
) -> ApiResult {
    let cmd = Command::Extend {
        queue,
        message_id: parse_message_id(&body.message_id)?,
        lease_ms: secs_to_ms("ack_deadline", body.ack_deadline)?,
        lease: body.lease,
    };
    match s.engine.call(cmd).await? {
        Reply::Extended { lease_deadline } => Ok(Json(
            json!({"success": true, "lease_deadline": lease_deadline.0}),
        )),
        other => Err(unexpected(&other)),
    }
}

/// `GET /queue/{name}/stats`: the engine's stats (with `queue` and the config in ms).
pub(crate) async fn stats(State(s): State<AppState>, QueueName(queue): QueueName) -> ApiResult {
    match s.engine.call(Command::Stats { queue }).await? {
        Reply::Stats(st) => Ok(Json(serde_json::to_value(&*st).unwrap_or(Value::Null))),
        other => Err(unexpected(&other)),
    }
}

/// DLQ paging.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DlqQuery {
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// `GET /queue/{name}/dlq?offset=&limit=`.
pub(crate) async fn dlq(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiQuery(q): ApiQuery<DlqQuery>,
) -> ApiResult {
    let cmd = Command::DlqList {
        queue,
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(100),
    };
    match s.engine.call(cmd).await? {
        Reply::DeadLetters { total, messages } => {
            let list: Vec<Value> = messages.iter().map(dead_letter_json).collect();
            Ok(Json(json!({"total": total, "messages": list})))
        }
        other => Err(unexpected(&other)),
    }
}

/// Which DLQ entries to redrive.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DlqRetryBody {
    message_ids: Option<Vec<String>>,
}

/// `POST /queue/{name}/dlq/retry`.
pub(crate) async fn dlq_retry(
    State(s): State<AppState>,
    QueueName(queue): QueueName,
    ApiJson(body): ApiJson<DlqRetryBody>,
) -> ApiResult {
    let message_ids = body
        .message_ids
        .map(|ids| ids.iter().map(|i| parse_message_id(i)).collect())
        .transpose()?;
    match s
        .engine
        .call(Command::DlqRetry { queue, message_ids })
        .await?
    {
        Reply::Redriven { retried } => Ok(Json(json!({ "retried": retried }))),
        other => Err(unexpected(&other)),
    }
}

/// `POST /queue/{name}/dlq/purge`.
pub(crate) async fn dlq_purge(State(s): State<AppState>, QueueName(queue): QueueName) -> ApiResult {
    purged(&s, Command::DlqPurge { queue }).await
}

/// `POST /queue/{name}/purge`.
pub(crate) async fn purge(State(s): State<AppState>, QueueName(queue): QueueName) -> ApiResult {
    purged(&s, Command::Purge { queue }).await
}

async fn purged(s: &AppState, cmd: Command) -> ApiResult {
    match s.engine.call(cmd).await? {
        Reply::Purged { purged } => Ok(Json(json!({ "purged": purged }))),
        other => Err(unexpected(&other)),
    }
}
