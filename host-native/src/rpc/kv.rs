//! KV commands (SYNAP_RPC.md §7): `SET`, `GET`, `DEL`, `EXISTS`, `INCR`/`DECR`,
//! `INCRBY`/`DECRBY`, `EXPIRE`, `PERSIST`, `TTL`, `KEYS`, `MGET`, `MSET`, `KVSTATS`, `DBSIZE`.
//!
//! Values: the store holds JSON. A `Str` (or UTF-8 `Bytes`) is stored as a JSON string, and
//! `Int`, `Float`, `Bool` and `Null` (which Synap's Rust SDK sends) as themselves; reads answer
//! `Bytes` holding a stored string's text, or any other value's compact JSON text, which is
//! what the SDKs decode. A TTL is `SET k v n` or `SET k v EX n` (seconds) or `PX n` (ms).

use synap_core::{Command, Json, KvEntry, Reply};

use synap_core::input::{negate, whole_ttl_ms, whole_ttl_secs_to_ms};

use super::conn::{Session, input_error, int_arg, text_arg};
use super::value::Value;
use super::{Answer, engine_error, odd};

/// Runs `command` if it is a KV command.
pub(super) async fn run(ctx: &Session, command: &str, args: &[Value]) -> Option<Answer> {
    Some(match command {
        "SET" => set(ctx, args).await,
        "GET" => get(ctx, args).await,
        "DEL" => del(ctx, args).await,
        "EXISTS" => keyed(ctx, args, |key| Command::KvExists { key }).await,
        "INCR" => keyed(ctx, args, |key| Command::KvIncr { key, by: 1 }).await,
        "DECR" => keyed(ctx, args, |key| Command::KvIncr { key, by: -1 }).await,
        "INCRBY" | "DECRBY" => {
            let by = int_arg(args, 1).and_then(|n| {
                if command == "DECRBY" {
                    negate("by", n).map_err(input_error)
                } else {
                    Ok(n)
                }
            });
            match by {
                Ok(by) => keyed(ctx, args, |key| Command::KvIncr { key, by }).await,
                Err(e) => Err(e),
            }
        }
        "EXPIRE" => match int_arg(args, 1)
            .and_then(|secs| whole_ttl_secs_to_ms("ttl", secs).map_err(input_error))
        {
            Ok(ttl_ms) => keyed(ctx, args, |key| Command::KvExpire { key, ttl_ms }).await,
            Err(e) => Err(e),
        },
        "PERSIST" => keyed(ctx, args, |key| Command::KvPersist { key }).await,
        "TTL" => ttl(ctx, args).await,
        "KEYS" => keys(ctx, args).await,
        "MGET" => mget(ctx, args).await,
        "MSET" => mset(ctx, args).await,
        "KVSTATS" | "DBSIZE" => stats(ctx, command == "DBSIZE").await,
        _ => return None,
    })
}

async fn call(ctx: &Session, cmd: Command) -> Result<Reply, String> {
    ctx.call(cmd).await
}

/// Runs a command on the key in argument 0 and shapes its reply.
async fn keyed(ctx: &Session, args: &[Value], make: impl FnOnce(String) -> Command) -> Answer {
    let key = text_arg(args, 0)?.to_owned();
    match call(ctx, make(key)).await? {
        Reply::KvExists { exists } => Ok(Value::Bool(exists)),
        Reply::KvUpdated { updated } => Ok(Value::Bool(updated)),
        Reply::KvInt { value } => Ok(Value::Int(value)),
        r => Err(odd(&r)),
    }
}

/// A value argument as the JSON the store keeps.
fn value_arg(args: &[Value], i: usize) -> Result<Json, String> {
    let json = match args.get(i) {
        None => return Err(format!("ERR missing argument {i}")),
        Some(v @ (Value::Str(_) | Value::Bytes(_))) => {
            let text = v
                .as_text()
                .ok_or_else(|| format!("ERR argument {i} must be UTF-8 text"))?;
            serde_json::Value::String(text.to_owned())
        }
        Some(Value::Int(n)) => serde_json::Value::from(*n),
        Some(Value::Float(f)) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("ERR argument {i} must be a finite number"))?,
        Some(Value::Bool(b)) => serde_json::Value::Bool(*b),
        Some(Value::Null) => serde_json::Value::Null,
        Some(_) => return Err(format!("ERR argument {i} must be bytes")),
    };
    Ok(Json::from_value(&json))
}

/// The TTL after a `SET`'s value: `n`, `EX n` (seconds) or `PX n` (milliseconds).
fn ttl_args(args: &[Value]) -> Result<Option<u64>, String> {
    let Some(first) = args.get(2) else {
        return Ok(None);
    };
    let (ms_per_unit, at) = match first.as_text().map(str::to_ascii_uppercase).as_deref() {
        Some("EX") => (1000, 3),
        Some("PX") => (1, 3),
        _ => (1000, 2),
    };
    let n = int_arg(args, at)?;
    // By the rule every transport shares: positive, at most 1e9 seconds.
    let ms = if ms_per_unit == 1 {
        whole_ttl_ms("ttl", n)
    } else {
        whole_ttl_secs_to_ms("ttl", n)
    };
    ms.map(Some).map_err(input_error)
}

async fn set(ctx: &Session, args: &[Value]) -> Answer {
    let key = text_arg(args, 0)?.to_owned();
    let value = value_arg(args, 1)?;
    let ttl_ms = ttl_args(args)?;
    match call(ctx, Command::KvSet { key, value, ttl_ms }).await? {
        Reply::KvOk => Ok(Value::str("OK")),
        r => Err(odd(&r)),
    }
}

/// A stored value as `GET` answers it.
fn read_value(value: Option<&Json>) -> Value {
    match value {
        None => Value::Null,
        Some(json) => match json.to_value() {
            serde_json::Value::String(text) => Value::Bytes(text.into_bytes()),
            _ => Value::Bytes(json.as_str().as_bytes().to_vec()),
        },
    }
}

async fn get(ctx: &Session, args: &[Value]) -> Answer {
    let key = text_arg(args, 0)?.to_owned();
    match call(ctx, Command::KvGet { key }).await? {
        Reply::KvValue(v) => Ok(read_value(v.value.as_ref().filter(|_| v.found))),
        r => Err(odd(&r)),
    }
}

/// `DEL key…` → how many existed. Arguments that are not text are skipped, as in Synap.
async fn del(ctx: &Session, args: &[Value]) -> Answer {
    let cmds: Vec<Command> = args
        .iter()
        .filter_map(Value::as_text)
        .map(|key| Command::KvDel {
            key: key.to_owned(),
        })
        .collect();
    if cmds.is_empty() {
        return Err("ERR missing argument 0".into());
    }
    for cmd in &cmds {
        ctx.check(cmd)?;
    }
    let replies = ctx
        .ctx
        .engine
        .call_many(cmds)
        .await
        .map_err(engine_error)?
        .wait()
        .await
        .map_err(engine_error)?;
    let mut deleted = 0;
    for r in replies {
        match r.map_err(engine_error)? {
            Reply::KvDeleted { deleted: true } => deleted += 1,
            Reply::KvDeleted { deleted: false } => {}
            r => return Err(odd(&r)),
        }
    }
    Ok(Value::Int(deleted))
}

async fn ttl(ctx: &Session, args: &[Value]) -> Answer {
    let key = text_arg(args, 0)?.to_owned();
    let cmd = Command::KvTtl { key };
    ctx.check(&cmd)?;
    match ctx.ctx.engine.call(cmd).await {
        Ok(Reply::KvTtl { ttl_ms }) => Ok(Value::Int(ttl_ms.map_or(-1, |ms| {
            i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
        }))),
        Ok(r) => Err(odd(&r)),
        Err(crate::handle::Failure::Core(synap_core::Error::KeyNotFound { .. })) => {
            Err("ERR key does not exist".into())
        }
        Err(e) => Err(engine_error(e)),
    }
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character), in
/// O(len(pattern) × len(text)): a failed match after a `*` retries one character further.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// `KEYS pattern`: the engine lists keys by the prefix before the first wildcard; the rest of
/// a glob pattern (`*`, `?`) is matched here.
async fn keys(ctx: &Session, args: &[Value]) -> Answer {
    let pattern = args.first().and_then(Value::as_text).unwrap_or("*");
    let prefix = pattern.split(['*', '?']).next().unwrap_or("").to_owned();
    let cmd = Command::KvKeys {
        prefix,
        limit: None,
    };
    let keys = match call(ctx, cmd).await? {
        Reply::KvKeys { keys } => keys,
        r => return Err(odd(&r)),
    };
    let pat: Vec<char> = pattern.chars().collect();
    let listed = keys
        .into_iter()
        .filter(|k| glob(&pat, &k.chars().collect::<Vec<_>>()))
        .map(Value::Str)
        .collect();
    Ok(Value::Array(listed))
}

async fn mget(ctx: &Session, args: &[Value]) -> Answer {
    let keys: Vec<String> = args
        .iter()
        .map(|k| k.as_text().map(String::from))
        .collect::<Option<_>>()
        .ok_or("ERR every argument of 'MGET' must be a string")?;
    match call(ctx, Command::KvMget { keys }).await? {
        Reply::KvValues { values } => Ok(Value::Array(
            values.iter().map(|v| read_value(v.as_ref())).collect(),
        )),
        r => Err(odd(&r)),
    }
}

/// `MSET k v [k v …]`: every pair validated first, then all set together.
async fn mset(ctx: &Session, args: &[Value]) -> Answer {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err("ERR wrong number of arguments for 'MSET'".into());
    }
    let mut entries = Vec::with_capacity(args.len() / 2);
    for i in (0..args.len()).step_by(2) {
        entries.push(KvEntry {
            key: text_arg(args, i)?.to_owned(),
            value: value_arg(args, i + 1)?,
            ttl_ms: None,
        });
    }
    match call(ctx, Command::KvMset { entries }).await? {
        Reply::KvOk => Ok(Value::str("OK")),
        r => Err(odd(&r)),
    }
}

async fn stats(ctx: &Session, size_only: bool) -> Answer {
    let st = match call(ctx, Command::KvStats).await? {
        Reply::KvStats(st) => st,
        r => return Err(odd(&r)),
    };
    if size_only {
        return Ok(Value::count(st.total_keys));
    }
    let reads = st.hits + st.misses;
    #[allow(clippy::cast_precision_loss)] // A ratio; exactness past 2^52 reads does not matter.
    let hit_rate = if reads == 0 {
        0.0
    } else {
        st.hits as f64 / reads as f64
    };
    Ok(Value::map([
        ("total_keys", Value::count(st.total_keys)),
        ("total_memory_bytes", Value::count(st.total_memory_bytes)),
        ("gets", Value::count(st.gets)),
        ("sets", Value::count(st.sets)),
        ("dels", Value::count(st.dels)),
        ("hits", Value::count(st.hits)),
        ("misses", Value::count(st.misses)),
        ("hit_rate", Value::Float(hit_rate)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &str, t: &str) -> bool {
        glob(
            &p.chars().collect::<Vec<_>>(),
            &t.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        assert!(matches("user:*:name", "user:7:name"));
        assert!(!matches("user:*:name", "user:7:mail"));
        assert!(matches("k?", "k1") && !matches("k?", "k12"));
        assert!(matches("*", "") && matches("a*", "a") && !matches("a", "ab"));
        assert!(!matches("*a*a*a*a*a*b", &"a".repeat(200)));
    }

    #[test]
    fn set_ttl_forms() {
        let base = [Value::str("k"), Value::str("v")];
        let with = |extra: &[Value]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            ttl_args(&a)
        };
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(with(&[Value::Int(5)]), Ok(Some(5000)));
        assert_eq!(with(&[Value::str("EX"), Value::Int(60)]), Ok(Some(60_000)));
        assert_eq!(with(&[Value::str("ex"), Value::str("2")]), Ok(Some(2000)));
        assert_eq!(with(&[Value::str("PX"), Value::Int(250)]), Ok(Some(250)));
        assert!(with(&[Value::str("EX")]).is_err());
        assert!(with(&[Value::Int(0)]).is_err());
    }
}
