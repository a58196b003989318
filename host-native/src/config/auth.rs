//! The config file's credentials: `server.api_keys` (plain strings or named entries with a key
//! or its hash and permissions) and `server.users`, checked at start.

use serde::Deserialize;

/// A `server.users` entry of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserSection {
    pub(super) name: String,
    /// Argon2 PHC string, from `synap-server hash-password`.
    pub(super) password_hash: String,
    /// `kind:pattern:action` permissions (DESIGN.md §15); full access when absent.
    #[serde(default)]
    pub(super) permissions: Option<Vec<String>>,
}

/// A `server.api_keys` entry: a plain string (full access) or a named key with permissions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum KeySection {
    /// A key with full access.
    Plain(String),
    /// A named key, stored as is or as an Argon2 hash.
    Entry(KeyEntry),
}

/// The object form of a `server.api_keys` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyEntry {
    name: String,
    #[serde(default)]
    key: Option<String>,
    /// Argon2 PHC string, from `synap-server hash-password`.
    #[serde(default)]
    key_hash: Option<String>,
    /// `kind:pattern:action` permissions; full access when absent.
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

/// Reads `server.api_keys` and `SYNAP_API_KEY`: strings are keys with full access; entries
/// have a name, exactly one of `key` and `key_hash`, and valid permissions. An entry that is
/// wrong is a start-up error naming it.
pub(super) fn load_keys(
    section: Vec<KeySection>,
    env_keys: Option<&str>,
) -> Result<Vec<crate::http::ApiKey>, String> {
    use crate::http::{ApiKey, Secret};
    let mut plain = Vec::new();
    let mut entries = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, k) in section.into_iter().enumerate() {
        let e = match k {
            KeySection::Plain(key) => {
                plain.push(key);
                continue;
            }
            KeySection::Entry(e) => e,
        };
        let what = format!("server.api_keys[{i}] ({:?})", e.name);
        if e.name.is_empty() {
            return Err(format!("server.api_keys[{i}]: the name is empty"));
        }
        if names.contains(&e.name) {
            return Err(format!("{what}: the name is listed twice"));
        }
        names.push(e.name.clone());
        let secret = match (e.key, e.key_hash) {
            (Some(k), None) if !k.trim().is_empty() => Secret::Plain(k),
            (Some(_), None) => return Err(format!("{what}: the key is empty")),
            (None, Some(h)) => {
                crate::http::passwords::validate(&h)
                    .map_err(|e| format!("{what}: key_hash: {e}"))?;
                Secret::Hash(h)
            }
            _ => return Err(format!("{what}: give exactly one of `key` and `key_hash`")),
        };
        let principal = crate::permissions::Principal::new(&e.name, e.permissions.as_deref())
            .map_err(|err| format!("{what}: {err}"))?;
        entries.push(ApiKey {
            secret,
            principal: std::sync::Arc::new(principal),
        });
    }
    let mut keys: Vec<ApiKey> = crate::hardening::api_keys(plain, env_keys)?
        .into_iter()
        .map(ApiKey::full)
        .collect();
    keys.extend(entries);
    Ok(keys)
}

/// Checks the users: names non-empty, without `:` (Basic auth's separator) and distinct, and
/// every hash a PHC string the server can verify.
pub(super) fn load_users(section: Vec<UserSection>) -> Result<Vec<crate::http::User>, String> {
    let mut users: Vec<crate::http::User> = Vec::with_capacity(section.len());
    for u in section {
        if u.name.is_empty() || u.name.contains(':') {
            return Err(format!(
                "server.users: invalid user name {:?} (non-empty, no ':')",
                u.name
            ));
        }
        if users.iter().any(|known| known.name == u.name) {
            return Err(format!("server.users: user {:?} is listed twice", u.name));
        }
        crate::http::passwords::validate(&u.password_hash)
            .map_err(|e| format!("server.users: user {:?}: {e}", u.name))?;
        let principal = crate::permissions::Principal::new(&u.name, u.permissions.as_deref())
            .map_err(|e| format!("server.users: user {:?}: {e}", u.name))?;
        users.push(crate::http::User {
            name: u.name,
            password_hash: u.password_hash,
            principal: std::sync::Arc::new(principal),
        });
    }
    Ok(users)
}
