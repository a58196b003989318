//! `kv.*` commands of the envelope (SYNAP_WIRE.md §7).
//!
//! Value encoding: a JSON string is kept as that string, any other JSON value as itself; `kv.get`
//! answers the bare value as a string (a stored string as is, anything else as its compact JSON
//! text), which is what the SDKs decode. TTLs are whole seconds, read only as non-negative
//! integers.

use serde_json::{Value, json};
use synap_core::{Command, Json as CoreJson, Reply};

use super::AppState;
use super::envelope::{Fields, Outcome, call, odd};
use super::kv::hit_rate;

/// Runs `kv.<op>`; `None` for an unknown op.
pub(super) async fn run(s: &AppState, op: &str, f: &Fields<'_>) -> Option<Outcome> {
    Some(match op {
        "set" => set(s, f).await,
        "get" => get(s, f).await,
        "del" | "delete" => keyed(s, f, |key| Command::KvDel { key }).await,
        "exists" => keyed(s, f, |key| Command::KvExists { key }).await,
        "ttl" => keyed(s, f, |key| Command::KvTtl { key }).await,
        "persist" => keyed(s, f, |key| Command::KvPersist { key }).await,
        "expire" => match f.uint("ttl") {
            Some(ttl) => {
                let ms = ttl.saturating_mul(1000);
                keyed(s, f, |key| Command::KvExpire { key, ttl_ms: ms }).await
            }
            None => Err("Invalid request: Missing 'ttl' field".into()),
        },
        "incr" | "decr" => {
            let by = f
                .get("amount")
                .or_else(|| f.get("by"))
                .or_else(|| f.get("delta"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let by = if op == "decr" {
                by.saturating_neg()
            } else {
                by
            };
            keyed(s, f, |key| Command::KvIncr { key, by }).await
        }
        "keys" | "scan" => keys(s, f).await,
        "mget" => mget(s, f).await,
        "stats" => stats(s).await,
        _ => return None,
    })
}

/// Runs a command on the required `key` and shapes its reply.
async fn keyed(s: &AppState, f: &Fields<'_>, make: impl FnOnce(String) -> Command) -> Outcome {
    let key = f.need("key")?;
    shape(call(s, make(key.to_owned())).await?)
}

fn shape(reply: Reply) -> Outcome {
    Ok(match reply {
        Reply::KvOk => json!({"success": true}),
        Reply::KvDeleted { deleted } => json!({ "deleted": deleted }),
        Reply::KvExists { exists } => json!({ "exists": exists }),
        Reply::KvTtl { ttl_ms } => json!({"ttl": ttl_ms.map(|ms| ms / 1000)}),
        Reply::KvUpdated { updated } => json!({ "result": updated }),
        Reply::KvInt { value } => json!({ "value": value }),
        r => return Err(odd(&r)),
    })
}

async fn set(s: &AppState, f: &Fields<'_>) -> Outcome {
    let key = f.need("key")?;
    let value = f
        .get("value")
        .ok_or("Invalid request: Missing 'value' field")?;
    let cmd = Command::KvSet {
        key: key.to_owned(),
        value: CoreJson::from_value(value),
        ttl_ms: f.uint("ttl").map(|t| t.saturating_mul(1000)),
    };
    shape(call(s, cmd).await?)
}

/// The value as the SDKs read it: a string, or null when missing.
fn bare(value: Option<&CoreJson>) -> Value {
    match value.map(CoreJson::to_value) {
        Some(Value::String(text)) => Value::String(text),
        Some(_) => Value::String(value.map(|v| v.as_str().to_owned()).unwrap_or_default()),
        None => Value::Null,
    }
}

async fn get(s: &AppState, f: &Fields<'_>) -> Outcome {
    let key = f.need("key")?;
    match call(s, Command::KvGet { key: key.into() }).await? {
        Reply::KvValue(v) => Ok(bare(v.value.as_ref().filter(|_| v.found))),
        r => Err(odd(&r)),
    }
}

/// `{prefix}` (Rust) or `{pattern}` (Python, TS): a glob pattern is read as the prefix before
/// its first wildcard, so `user:*` lists keys starting with `user:`.
async fn keys(s: &AppState, f: &Fields<'_>) -> Outcome {
    let raw = f.str("prefix").or_else(|| f.str("pattern")).unwrap_or("");
    let prefix = raw.split(['*', '?', '[']).next().unwrap_or("");
    let cmd = Command::KvKeys {
        prefix: prefix.to_owned(),
        limit: f.uint("limit"),
    };
    match call(s, cmd).await? {
        Reply::KvKeys { keys } => Ok(json!({"count": keys.len(), "keys": keys})),
        r => Err(odd(&r)),
    }
}

async fn mget(s: &AppState, f: &Fields<'_>) -> Outcome {
    let keys: Vec<String> = f
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("Invalid request: Missing 'keys' field")?
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    match call(s, Command::KvMget { keys }).await? {
        Reply::KvValues { values } => {
            let list: Vec<Value> = values.iter().map(|v| bare(v.as_ref())).collect();
            Ok(json!({ "values": list }))
        }
        r => Err(odd(&r)),
    }
}

async fn stats(s: &AppState) -> Outcome {
    match call(s, Command::KvStats).await? {
        Reply::KvStats(st) => Ok(json!({
            "total_keys": st.total_keys,
            "total_memory_bytes": st.total_memory_bytes,
            "operations": {
                "gets": st.gets, "sets": st.sets, "dels": st.dels,
                "hits": st.hits, "misses": st.misses,
            },
            "hit_rate": hit_rate(st.hits, st.misses),
        })),
        r => Err(odd(&r)),
    }
}
