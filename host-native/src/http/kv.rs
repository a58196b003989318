//! REST routes under `/kv/`. Values are any JSON; TTLs are seconds (fractions allowed).

use axum::Json;
use axum::extract::State;
use synap_core::{Command, Json as CoreJson, KvEntry, Reply};
use synap_wire as w;

use super::AppState;
use super::auth::Who;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::queue::unexpected;
use super::wire::{ms_to_secs, opt_ms};
use crate::settings::secs_to_ms;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The engine's form of a set (one entry of `mset` too); a missing or `null` value is refused.
fn entry(body: w::SetRequest) -> Result<KvEntry, ApiError> {
    let value = body
        .value
        .ok_or_else(|| ApiError::bad("missing `value` (any JSON but null)"))?;
    Ok(KvEntry {
        key: body.key,
        value: CoreJson::from_value(&value),
        ttl_ms: opt_ms("ttl", body.ttl)?,
    })
}

/// `POST /kv/set`.
pub(crate) async fn set(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::SetRequest>,
) -> ApiResult<w::Success> {
    let KvEntry { key, value, ttl_ms } = entry(body)?;
    match s
        .engine
        .call_as(&who, Command::KvSet { key, value, ttl_ms })
        .await?
    {
        Reply::KvOk => Ok(Json(w::Success::OK)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/get/{key}`: `{found: true, value, ttl}` (ttl in seconds or null) or `{found: false}`.
pub(crate) async fn get(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<w::KvGet> {
    match s.engine.call_as(&who, Command::KvGet { key }).await? {
        Reply::KvValue(v) => Ok(Json(match v.value {
            Some(value) if v.found => w::KvGet::Found {
                value: value.to_value(),
                ttl: v.ttl_ms.map(ms_to_secs),
            },
            _ => w::KvGet::Missing,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /kv/del/{key}`.
pub(crate) async fn del(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<w::Deleted> {
    match s.engine.call_as(&who, Command::KvDel { key }).await? {
        Reply::KvDeleted { deleted } => Ok(Json(w::Deleted { deleted })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/exists/{key}`.
pub(crate) async fn exists(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<w::Exists> {
    match s.engine.call_as(&who, Command::KvExists { key }).await? {
        Reply::KvExists { exists } => Ok(Json(w::Exists { exists })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /kv/expire`: `{updated}` is false for a missing key.
pub(crate) async fn expire(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::ExpireRequest>,
) -> ApiResult<w::Updated> {
    let cmd = Command::KvExpire {
        key: body.key,
        ttl_ms: secs_to_ms("ttl", body.ttl)?,
    };
    updated(&s, &who, cmd).await
}

/// `POST /kv/persist`: removes a key's TTL.
pub(crate) async fn persist(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::KeyRequest>,
) -> ApiResult<w::Updated> {
    updated(&s, &who, Command::KvPersist { key: body.key }).await
}

async fn updated(
    s: &AppState,
    who: &crate::permissions::Principal,
    cmd: Command,
) -> ApiResult<w::Updated> {
    match s.engine.call_as(who, cmd).await? {
        Reply::KvUpdated { updated } => Ok(Json(w::Updated { updated })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/ttl/{key}`: `{ttl}` in seconds, null without expiry; 404 for a missing key.
pub(crate) async fn ttl(
    State(s): State<AppState>,
    Who(who): Who,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<w::KvTtl> {
    match s.engine.call_as(&who, Command::KvTtl { key }).await? {
        Reply::KvTtl { ttl_ms } => Ok(Json(w::KvTtl {
            ttl: ttl_ms.map(ms_to_secs),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /kv/incr`: `{value}` after adding `by` (default 1).
pub(crate) async fn incr(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::IncrRequest>,
) -> ApiResult<w::IntValue> {
    let cmd = Command::KvIncr {
        key: body.key,
        by: body.by.unwrap_or(1),
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::KvInt { value } => Ok(Json(w::IntValue { value })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/keys?prefix=&limit=`: `{keys, count}`, sorted.
pub(crate) async fn keys(
    State(s): State<AppState>,
    Who(who): Who,
    ApiQuery(q): ApiQuery<w::KeysQuery>,
) -> ApiResult<w::KeysResponse> {
    let cmd = Command::KvKeys {
        prefix: q.prefix.unwrap_or_default(),
        limit: q.limit,
    };
    match s.engine.call_as(&who, cmd).await? {
        Reply::KvKeys { keys } => Ok(Json(w::KeysResponse {
            count: keys.len() as u64,
            keys,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /kv/mget`: `{values}` in the order asked, null for missing keys.
pub(crate) async fn mget(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::MgetRequest>,
) -> ApiResult<w::MgetResponse> {
    if body.keys.len() > s.max_batch {
        return Err(ApiError::bad(format!("keys: at most {}", s.max_batch)));
    }
    match s
        .engine
        .call_as(&who, Command::KvMget { keys: body.keys })
        .await?
    {
        Reply::KvValues { values } => Ok(Json(w::MgetResponse {
            values: values
                .into_iter()
                .map(|v| v.map(|j| j.to_value()))
                .collect(),
        })),
        other => Err(unexpected(&other)),
    }
}

/// `POST /kv/mset`: all entries are validated before any is written.
pub(crate) async fn mset(
    State(s): State<AppState>,
    Who(who): Who,
    ApiJson(body): ApiJson<w::MsetRequest>,
) -> ApiResult<w::Success> {
    let entries = body
        .entries
        .into_iter()
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    match s.engine.call_as(&who, Command::KvMset { entries }).await? {
        Reply::KvOk => Ok(Json(w::Success::OK)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /kv/stats`: the engine's counters plus `hit_rate`.
pub(crate) async fn stats(State(s): State<AppState>, Who(who): Who) -> ApiResult<w::KvStats> {
    match s.engine.call_as(&who, Command::KvStats).await? {
        Reply::KvStats(st) => Ok(Json(w::KvStats {
            total_keys: st.total_keys,
            total_memory_bytes: st.total_memory_bytes,
            gets: st.gets,
            sets: st.sets,
            dels: st.dels,
            hits: st.hits,
            misses: st.misses,
            expired: st.expired,
            hit_rate: hit_rate(st.hits, st.misses),
        })),
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
