//! REST routes under `/kv/`. Values are any JSON; TTLs are seconds (fractions allowed).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use synap_core::{Command, Json as CoreJson, KvEntry, Reply};

use super::AppState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::queue::unexpected;
use super::wire::ms_to_secs;
use crate::settings::secs_to_ms;

type ApiResult = Result<Json<Value>, ApiError>;

fn ttl_ms(ttl: Option<f64>) -> Result<Option<u64>, ApiError> {
    Ok(ttl.map(|t| secs_to_ms("ttl", t)).transpose()?)
}

/// A key with a value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetBody {
    key: String,
    value: Option<Value>,
    #[serde(default)]
    ttl: Option<f64>,
}

impl SetBody {
    fn into_entry(self) -> Result<KvEntry, ApiError> {
        let value = self
            .value
            .ok_or_else(|| ApiError::bad("missing `value` (any JSON but null)"))?;
        Ok(KvEntry {
            key: self.key,
            value: CoreJson::from_value(&value),
            ttl_ms: ttl_ms(self.ttl)?,
        })
    }
}

/// `POST /kv/set`.
pub(crate) async fn set(State(s): State<AppState>, ApiJson(body): ApiJson<SetBody>) -> ApiResult {
    let KvEntry { key, value, ttl_ms } = body.into_entry()?;
    match s.engine.call(Command::KvSet { key, value, ttl_ms }).await? {
        Reply::KvOk => Ok(Json(json!({"success": true}))),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/get/{key}`: `{found: true, value, ttl}` (ttl in seconds or null) or `{found: false}`.
pub(crate) async fn get(State(s): State<AppState>, ApiPath(key): ApiPath<String>) -> ApiResult {
    match s.engine.call(Command::KvGet { key }).await? {
        Reply::KvValue(v) if v.found => Ok(Json(json!({
            "found": true,
            "value": v.value.map(|j| j.to_value()),
            "ttl": v.ttl_ms.map(ms_to_secs),
        }))),
        Reply::KvValue(_) => Ok(Json(json!({"found": false}))),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /kv/del/{key}`.
pub(crate) async fn del(State(s): State<AppState>, ApiPath(key): ApiPath<String>) -> ApiResult {
    match s.engine.call(Command::KvDel { key }).await? {
        Reply::KvDeleted { deleted } => Ok(Json(json!({ "deleted": deleted }))),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/exists/{key}`.
pub(crate) async fn exists(State(s): State<AppState>, ApiPath(key): ApiPath<String>) -> ApiResult {
    match s.engine.call(Command::KvExists { key }).await? {
        Reply::KvExists { exists } => Ok(Json(json!({ "exists": exists }))),
        other => Err(unexpected(&other)),
    }
}

/// `{key, ttl}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpireBody {
    key: String,
    ttl: f64,
}

/// `POST /kv/expire`: `{updated}` is false for a missing key.
pub(crate) async fn expire(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<ExpireBody>,
) -> ApiResult {
    let cmd = Command::KvExpire {
        key: body.key,
        ttl_ms: secs_to_ms("ttl", body.ttl)?,
    };
    updated(&s, cmd).await
}

/// `{key}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBody {
    key: String,
}

/// `POST /kv/persist`: removes a key's TTL.
pub(crate) async fn persist(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<KeyBody>,
) -> ApiResult {
    updated(&s, Command::KvPersist { key: body.key }).await
}

async fn updated(s: &AppState, cmd: Command) -> ApiResult {
    match s.engine.call(cmd).await? {
        Reply::KvUpdated { updated } => Ok(Json(json!({ "updated": updated }))),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/ttl/{key}`: `{ttl}` in seconds, null without expiry; 404 for a missing key.
pub(crate) async fn ttl(State(s): State<AppState>, ApiPath(key): ApiPath<String>) -> ApiResult {
    match s.engine.call(Command::KvTtl { key }).await? {
        Reply::KvTtl { ttl_ms } => Ok(Json(json!({"ttl": ttl_ms.map(ms_to_secs)}))),
        other => Err(unexpected(&other)),
    }
}

/// `{key, by?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncrBody {
    key: String,
    #[serde(default)]
    by: Option<i64>,
}

/// `POST /kv/incr`: `{value}` after adding `by` (default 1).
pub(crate) async fn incr(State(s): State<AppState>, ApiJson(body): ApiJson<IncrBody>) -> ApiResult {
    let cmd = Command::KvIncr {
        key: body.key,
        by: body.by.unwrap_or(1),
    };
    match s.engine.call(cmd).await? {
        Reply::KvInt { value } => Ok(Json(json!({ "value": value }))),
        other => Err(unexpected(&other)),
    }
}

/// `?prefix=&limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysQuery {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[allow(dead_code)]
    #[serde(default)]
    api_key: Option<String>,
}

/// `GET /kv/keys?prefix=&limit=`: `{keys, count}`, sorted.
pub(crate) async fn keys(State(s): State<AppState>, ApiQuery(q): ApiQuery<KeysQuery>) -> ApiResult {
    let cmd = Command::KvKeys {
        prefix: q.prefix.unwrap_or_default(),
        limit: q.limit,
    };
    match s.engine.call(cmd).await? {
        Reply::KvKeys { keys } => Ok(Json(json!({"count": keys.len(), "keys": keys}))),
        other => Err(unexpected(&other)),
    }
}

/// `{keys: [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MgetBody {
    keys: Vec<String>,
}

/// `POST /kv/mget`: `{values}` in the order asked, null for missing keys.
pub(crate) async fn mget(State(s): State<AppState>, ApiJson(body): ApiJson<MgetBody>) -> ApiResult {
    if body.keys.len() > s.max_batch {
        return Err(ApiError::bad(format!("keys: at most {}", s.max_batch)));
    }
    match s.engine.call(Command::KvMget { keys: body.keys }).await? {
        Reply::KvValues { values } => {
            let list: Vec<Value> = values
                .into_iter()
                .map(|v| v.map_or(Value::Null, |j| j.to_value()))
                .collect();
            Ok(Json(json!({ "values": list })))
        }
        other => Err(unexpected(&other)),
    }
}

/// `{entries: [{key, value, ttl?}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MsetBody {
    entries: Vec<SetBody>,
}

/// `POST /kv/mset`: all entries are validated before any is written.
pub(crate) async fn mset(State(s): State<AppState>, ApiJson(body): ApiJson<MsetBody>) -> ApiResult {
    let entries = body
        .entries
        .into_iter()
        .map(SetBody::into_entry)
        .collect::<Result<Vec<_>, _>>()?;
    match s.engine.call(Command::KvMset { entries }).await? {
        Reply::KvOk => Ok(Json(json!({"success": true}))),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/stats`: the engine's counters plus `hit_rate`.
pub(crate) async fn stats(State(s): State<AppState>) -> ApiResult {
    match s.engine.call(Command::KvStats).await? {
        Reply::KvStats(st) => {
            let mut v = serde_json::to_value(&st).unwrap_or(Value::Null);
            v["hit_rate"] = json!(hit_rate(st.hits, st.misses));
            Ok(Json(v))
        }
        other => Err(unexpected(&other)),
    }
}

/// Hits over reads, 0 before any read.
#[allow(clippy::cast_precision_loss)] // Counters far below 2^52.
pub(crate) fn hit_rate(hits: u64, misses: u64) -> f64 {
    let reads = hits + misses;
    if reads == 0 {
        0.0
    } else {
        hits as f64 / reads as f64
    }
}
