//! `kv.*` commands of the envelope (SYNAP_WIRE.md §7).
//!
//! Value encoding: a JSON string is kept as that string, any other JSON value as itself; `kv.get`
//! answers the bare value as a string (a stored string as is, anything else as its compact JSON
//! text), which is what the SDKs decode; `kv.mget` answers the stored values themselves, as
//! Synap does. TTLs are whole seconds, read only as non-negative integers.

use serde_json::{Value, json};
use synap_core::{Command, Json as CoreJson, KvEntry, Reply};

use super::envelope::Env;
use super::envelope::{Fields, Outcome, Refusal, call, odd};
use super::kv::hit_rate;
use crate::handle::Failure;

/// Runs `kv.<op>`; `None` for an unknown op.
pub(super) async fn run(s: &Env<'_>, op: &str, f: &Fields<'_>) -> Option<Outcome> {
    Some(match op {
        "set" => set(s, f).await,
        "get" => get(s, f).await,
        "del" | "delete" => keyed(s, f, |key| Command::KvDel { key }).await,
        "exists" => keyed(s, f, |key| Command::KvExists { key }).await,
        "ttl" => keyed(s, f, |key| Command::KvTtl { key }).await,
        "persist" => keyed(s, f, |key| Command::KvPersist { key }).await,
        "expire" => match f.ttl_ms("ttl") {
            Ok(Some(ms)) => keyed(s, f, |key| Command::KvExpire { key, ttl_ms: ms }).await,
            Ok(None) => Err("Invalid request: Missing 'ttl' field".into()),
            Err(e) => Err(e.into()),
        },
        "incr" | "decr" => match amount(f, op == "decr") {
            Ok(by) => keyed(s, f, |key| Command::KvIncr { key, by }).await,
            Err(e) => Err(e.into()),
        },
        "keys" | "scan" => keys(s, f).await,
        "mget" => mget(s, f).await,
        "mset" => mset(s, f).await,
        "mdel" => mdel(s, f).await,
        "dbsize" => match call(s, Command::KvStats).await {
            Ok(Reply::KvStats(st)) => Ok(json!({ "size": st.total_keys })),
            Ok(r) => Err(odd(&r)),
            Err(e) => Err(e),
        },
        "stats" => stats(s).await,
        _ => return None,
    })
}

/// The amount of `kv.incr`/`kv.decr` (`amount`, `by` or `delta`; 1 when absent), negated
/// for a decrement; a non-integer, or a decrement by -2^63, is an error.
fn amount(f: &Fields<'_>, decr: bool) -> Result<i64, String> {
    let key = ["amount", "by", "delta"]
        .into_iter()
        .find(|k| f.get(k).is_some())
        .unwrap_or("amount");
    let by = f.int(key)?.unwrap_or(1);
    if decr {
        synap_core::input::negate(key, by).map_err(|e| super::envelope::wire_error(e.into()))
    } else {
        Ok(by)
    }
}

/// Runs a command on the required `key` and shapes its reply.
async fn keyed(s: &Env<'_>, f: &Fields<'_>, make: impl FnOnce(String) -> Command) -> Outcome {
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

async fn set(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let key = f.need("key")?;
    let value = f
        .get("value")
        .ok_or("Invalid request: Missing 'value' field")?;
    let cmd = Command::KvSet {
        key: key.to_owned(),
        value: CoreJson::from_value(value),
        ttl_ms: f.ttl_ms("ttl")?,
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

async fn get(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let key = f.need("key")?;
    match call(s, Command::KvGet { key: key.into() }).await? {
        Reply::KvValue(v) => Ok(bare(v.value.as_ref().filter(|_| v.found))),
        r => Err(odd(&r)),
    }
}

/// `{prefix}` (Rust) or `{pattern}` (Python, TS): a glob pattern is read as the prefix before
/// its first wildcard, so `user:*` lists keys starting with `user:`.
async fn keys(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
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

/// The string keys of the required `keys` array (at most `max_batch`).
fn key_list(s: &Env<'_>, f: &Fields<'_>) -> Result<Vec<String>, String> {
    let keys: Vec<String> = f
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("Invalid request: Missing 'keys' field")?
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    if keys.len() > s.max_batch {
        return Err(format!(
            "Invalid value: keys: at most {} keys per command",
            s.max_batch
        ));
    }
    Ok(keys)
}

/// `{keys}` → `{values}`: each stored value as itself (a string, number, object…), or `null`.
async fn mget(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let keys = key_list(s, f)?;
    match call(s, Command::KvMget { keys }).await? {
        Reply::KvValues { values } => {
            let list: Vec<Value> = values
                .iter()
                .map(|v| v.as_ref().map_or(Value::Null, CoreJson::to_value))
                .collect();
            Ok(json!({ "values": list }))
        }
        r => Err(odd(&r)),
    }
}

/// One `kv.mset` entry: `{key, value, ttl?}` or `[key, value]`.
fn entry(item: &Value) -> Result<KvEntry, String> {
    let bad = || "Invalid value: pairs: each entry is {key, value} or [key, value]".to_owned();
    let (key, value, ttl) = match item {
        Value::Object(m) => (
            m.get("key").and_then(Value::as_str),
            m.get("value").filter(|v| !v.is_null()),
            Fields(item).ttl_ms("ttl")?,
        ),
        Value::Array(pair) if pair.len() == 2 => (pair[0].as_str(), Some(&pair[1]), None),
        _ => return Err(bad()),
    };
    match (key, value) {
        (Some(key), Some(value)) => Ok(KvEntry {
            key: key.to_owned(),
            value: CoreJson::from_value(value),
            ttl_ms: ttl,
        }),
        _ => Err(bad()),
    }
}

/// `{pairs: [{key, value}…]}` (also `[key, value]` pairs, or `entries` as the list or as an
/// object of key → value): every entry is validated, then all are set together.
async fn mset(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let list = f.get("pairs").or_else(|| f.get("entries"));
    let entries: Vec<KvEntry> = match list {
        Some(Value::Array(items)) => items.iter().map(entry).collect::<Result<_, _>>()?,
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| KvEntry {
                key: k.clone(),
                value: CoreJson::from_value(v),
                ttl_ms: None,
            })
            .collect(),
        _ => return Err("Invalid request: Missing 'pairs' field".into()),
    };
    if entries.len() > s.max_batch {
        return Err(format!(
            "Invalid value: pairs: at most {} entries per command",
            s.max_batch
        )
        .into());
    }
    let count = entries.len();
    match call(s, Command::KvMset { entries }).await? {
        Reply::KvOk => Ok(json!({"success": true, "count": count})),
        r => Err(odd(&r)),
    }
}

/// `{keys}` → `{deleted: n}`, how many of them existed.
async fn mdel(s: &Env<'_>, f: &Fields<'_>) -> Outcome {
    let cmds: Vec<Command> = key_list(s, f)?
        .into_iter()
        .map(|key| Command::KvDel { key })
        .collect();
    for cmd in &cmds {
        s.who
            .check(cmd)
            .map_err(|d| Refusal::from(Failure::Forbidden(d)))?;
    }
    let replies = s
        .engine
        .call_many(cmds)
        .await
        .map_err(Refusal::from)?
        .wait()
        .await
        .map_err(Refusal::from)?;
    let mut deleted = 0u64;
    for r in replies {
        match r.map_err(Refusal::from)? {
            Reply::KvDeleted { deleted: true } => deleted += 1,
            Reply::KvDeleted { deleted: false } => {}
            r => return Err(odd(&r)),
        }
    }
    Ok(json!({ "deleted": deleted }))
}

async fn stats(s: &Env<'_>) -> Outcome {
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
