//! Key-value store with TTL, for task progress and worker heartbeats.
//!
//! An expired key is never returned: reads check the expiry themselves (lazy expiry), and a
//! `KeyTtl` timer removes the key at its deadline and emits `Event::KeyExpired`. Each write gets
//! a new version so a timer set for an older write leaves a rewritten key alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::{Event, KvEntry, KvStats, KvValue};
use crate::ctx::Ctx;
use crate::json::Json;
use crate::time::Millis;
use crate::timers::TimerKind;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(with = "crate::json::as_text")]
    value: Json,
    expires_at: Option<Millis>,
    version: u64,
}

impl Entry {
    fn live(&self, now: Millis) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Kv {
    map: BTreeMap<String, Entry>,
    next_version: u64,
    bytes: u64,
    /// Write counters (sets, dels, expired) are state: replaying the log rebuilds them.
    stats: KvStats,
    /// Read counters are not state: reads need not be logged, so these count since start.
    #[serde(skip)]
    reads: Reads,
}

#[derive(Clone, Debug, Default)]
struct Reads {
    gets: u64,
    hits: u64,
    misses: u64,
}

impl Kv {
    fn check_key(ctx: &Ctx, key: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        if key.len() > ctx.limits.max_key_bytes {
            return Err(Error::too_large("key", key.len(), ctx.limits.max_key_bytes));
        }
        Ok(())
    }

    fn check_entry(&self, ctx: &Ctx, e: &KvEntry) -> Result<(), Error> {
        Self::check_key(ctx, &e.key)?;
        if e.value.len() > ctx.limits.max_value_bytes {
            return Err(Error::too_large(
                "value",
                e.value.len(),
                ctx.limits.max_value_bytes,
            ));
        }
        if let Some(ttl) = e.ttl_ms {
            check_ttl(ctx, ttl)?;
        }
        Ok(())
    }

    fn live(&self, now: Millis, key: &str) -> Option<&Entry> {
        self.map.get(key).filter(|e| e.live(now))
    }

    pub(crate) fn set(&mut self, ctx: &mut Ctx, entry: KvEntry) -> Result<(), Error> {
        self.set_all(ctx, vec![entry])
    }

    /// Validates every entry (and the key limit) before writing any.
    pub(crate) fn set_all(&mut self, ctx: &mut Ctx, entries: Vec<KvEntry>) -> Result<(), Error> {
        for e in &entries {
            self.check_entry(ctx, e)?;
        }
        let new_keys = entries
            .iter()
            .map(|e| e.key.as_str())
            .filter(|k| !self.map.contains_key(*k))
            .collect::<std::collections::BTreeSet<&str>>()
            .len();
        if self.map.len() + new_keys > ctx.limits.max_kv_keys {
            return Err(Error::limit("kv keys", ctx.limits.max_kv_keys as u64));
        }
        for e in entries {
            let expires_at = e.ttl_ms.map(|t| ctx.now.add_ms(t));
            self.write(ctx, e.key, e.value, expires_at);
            self.stats.sets += 1;
        }
        Ok(())
    }

    fn write(&mut self, ctx: &mut Ctx, key: String, value: Json, expires_at: Option<Millis>) {
        self.remove(ctx, &key);
        self.next_version += 1;
        let version = self.next_version;
        if let Some(at) = expires_at {
            ctx.timers.add(
                at,
                TimerKind::KeyTtl {
                    key: key.clone(),
                    version,
                },
            );
        }
        self.bytes += (key.len() + value.len()) as u64;
        self.map.insert(
            key,
            Entry {
                value,
                expires_at,
                version,
            },
        );
    }

    /// Removes a key (live or expired) with its timer; returns whether it was live.
    fn remove(&mut self, ctx: &mut Ctx, key: &str) -> bool {
        let Some(e) = self.map.remove(key) else {
            return false;
        };
        self.bytes -= (key.len() + e.value.len()) as u64;
        if let Some(at) = e.expires_at {
            ctx.timers.remove(
                at,
                TimerKind::KeyTtl {
                    key: key.to_owned(),
                    version: e.version,
                },
            );
        }
        e.live(ctx.now)
    }

    pub(crate) fn get(&mut self, ctx: &Ctx, key: &str) -> Result<KvValue, Error> {
        Self::check_key(ctx, key)?;
        self.reads.gets += 1;
        let now = ctx.now;
        match self.map.get(key).filter(|e| e.live(now)) {
            Some(e) => {
                self.reads.hits += 1;
                Ok(KvValue {
                    found: true,
                    value: Some(e.value.clone()),
                    ttl_ms: e.expires_at.map(|at| at.since(now)),
                })
            }
            None => {
                self.reads.misses += 1;
                Ok(KvValue {
                    found: false,
                    value: None,
                    ttl_ms: None,
                })
            }
        }
    }

    pub(crate) fn del(&mut self, ctx: &mut Ctx, key: &str) -> Result<bool, Error> {
        Self::check_key(ctx, key)?;
        self.stats.dels += 1;
        Ok(self.remove(ctx, key))
    }

    pub(crate) fn exists(&self, ctx: &Ctx, key: &str) -> Result<bool, Error> {
        Self::check_key(ctx, key)?;
        Ok(self.live(ctx.now, key).is_some())
    }

    /// Sets (`Some`) or removes (`None`) a live key's TTL; false if there is no live key.
    pub(crate) fn expire(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        ttl_ms: Option<u64>,
    ) -> Result<bool, Error> {
        Self::check_key(ctx, key)?;
        if let Some(ttl) = ttl_ms {
            check_ttl(ctx, ttl)?;
        }
        let Some(e) = self.live(ctx.now, key) else {
            return Ok(false);
        };
        if ttl_ms.is_none() && e.expires_at.is_none() {
            return Ok(false);
        }
        let value = e.value.clone();
        self.write(
            ctx,
            key.to_owned(),
            value,
            ttl_ms.map(|t| ctx.now.add_ms(t)),
        );
        Ok(true)
    }

    pub(crate) fn ttl(&self, ctx: &Ctx, key: &str) -> Result<Option<u64>, Error> {
        Self::check_key(ctx, key)?;
        let e = self.live(ctx.now, key).ok_or_else(|| Error::KeyNotFound {
            key: key.to_owned(),
        })?;
        Ok(e.expires_at.map(|at| at.since(ctx.now)))
    }

    pub(crate) fn incr(&mut self, ctx: &mut Ctx, key: &str, by: i64) -> Result<i64, Error> {
        Self::check_key(ctx, key)?;
        let (current, expires_at) = match self.live(ctx.now, key) {
            Some(e) => {
                let n = integer_of(&e.value).ok_or_else(|| Error::NotAnInteger {
                    key: key.to_owned(),
                })?;
                (n, e.expires_at)
            }
            None => {
                if !self.map.contains_key(key) && self.map.len() >= ctx.limits.max_kv_keys {
                    return Err(Error::limit("kv keys", ctx.limits.max_kv_keys as u64));
                }
                (0, None)
            }
        };
        let next = current.checked_add(by).ok_or_else(|| {
            Error::invalid("by", "the result does not fit in a 64-bit signed integer")
        })?;
        self.write(
            ctx,
            key.to_owned(),
            Json::from_trusted_text(next.to_string()),
            expires_at,
        );
        self.stats.sets += 1;
        Ok(next)
    }

    pub(crate) fn keys(&self, ctx: &Ctx, prefix: &str, limit: Option<u64>) -> Vec<String> {
        let max = ctx.limits.max_keys_listed;
        let limit = limit.unwrap_or(max).min(max) as usize;
        let now = ctx.now;
        self.map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.live(now))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(crate) fn mget(&mut self, ctx: &Ctx, keys: &[String]) -> Result<Vec<Option<Json>>, Error> {
        if keys.len() > ctx.limits.max_batch {
            return Err(Error::limit("keys per mget", ctx.limits.max_batch as u64));
        }
        keys.iter()
            .map(|k| self.get(ctx, k).map(|v| v.value))
            .collect()
    }

    /// A `KeyTtl` timer fired.
    pub(crate) fn on_ttl(&mut self, ctx: &mut Ctx, key: &str, version: u64) {
        if self.map.get(key).is_some_and(|e| e.version == version) {
            self.remove(ctx, key);
            self.stats.expired += 1;
            ctx.events.push_back(Event::KeyExpired {
                key: key.to_owned(),
                at: ctx.now,
            });
        }
    }

    pub(crate) fn stats(&self) -> KvStats {
        KvStats {
            total_keys: self.map.len() as u64,
            total_memory_bytes: self.bytes,
            gets: self.reads.gets,
            hits: self.reads.hits,
            misses: self.reads.misses,
            ..self.stats.clone()
        }
    }

    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn check(&self, ctx: &Ctx) {
        let bytes: u64 = self
            .map
            .iter()
            .map(|(k, e)| (k.len() + e.value.len()) as u64)
            .sum();
        assert_eq!(bytes, self.bytes, "kv byte count drifted");
        for (k, e) in &self.map {
            if let Some(at) = e.expires_at {
                let timer = TimerKind::KeyTtl {
                    key: k.clone(),
                    version: e.version,
                };
                assert!(ctx.timers.contains(at, &timer), "key {k} has no TTL timer");
            }
        }
    }
}

/// The integer a value holds: a JSON integer, or a JSON string of one (Synap's SDKs store
/// numbers as text, as Redis does).
fn integer_of(value: &Json) -> Option<i64> {
    let text = value.as_str();
    text.parse::<i64>().ok().or_else(|| {
        let inner: String = serde_json::from_str(text).ok()?;
        inner.parse::<i64>().ok()
    })
}

/// A TTL is 1 ms to `max_ttl_ms`: 0 is refused (never "expire at once"), as for messages.
fn check_ttl(ctx: &Ctx, ttl: u64) -> Result<(), Error> {
    if ttl == 0 || ttl > ctx.limits.max_ttl_ms {
        return Err(Error::invalid(
            "ttl_ms",
            format!("must be between 1 and {} ms", ctx.limits.max_ttl_ms),
        ));
    }
    Ok(())
}
