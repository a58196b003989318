//! Auth: API keys (`Authorization: Bearer <key>`, or `?api_key=<key>` on the WebSocket and SSE
//! routes only, since browser WebSocket and EventSource clients cannot set headers) and users
//! with passwords (`Authorization: Basic base64(user:password)`, on every route). `/health` and
//! `/health/leader` are always public. SynapRPC's `AUTH` checks the same keys and users (see `rpc`).
//!
//! The query key is refused elsewhere: URLs end up in logs, proxies and browser history, so a
//! key is only worth that risk where no header can carry it.
//!
//! Argon2 makes a password check slow on purpose, so it runs off the async workers, and
//! credentials that passed are remembered (as a keyed digest, never the password) so a client
//! sending Basic auth on every request pays for one check, not one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{self, AUTHORIZATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::AppState;
use super::error::ApiError;
use crate::permissions::{Caller, Principal};

/// The configured API keys and users; none of either means auth is off.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    /// Keys stored as they are, compared in constant time.
    plain: Vec<(String, Caller)>,
    /// Keys stored as Argon2 hashes (PHC strings).
    hashed: Vec<(String, Caller)>,
    users: Vec<User>,
    /// Digests of credentials that passed (see `digest`); `None` without OS randomness.
    passed: Option<Passed>,
}

/// Credentials that passed, as digests keyed by a per-process random key, with whom they
/// identify.
#[derive(Debug)]
struct Passed {
    key: [u8; 32],
    digests: Mutex<HashMap<[u8; 32], Caller>>,
}

/// Most remembered credentials; the memory is cleared when it is full.
const MAX_PASSED: usize = 1024;

/// Digest domains: a key and a user's password never share a digest.
const KEY_DIGEST: u8 = 1;
const USER_DIGEST: u8 = 2;

/// A user who signs in with a password (`Authorization: Basic`, SynapRPC `AUTH user pass`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    /// The user name.
    pub(crate) name: String,
    /// The password's Argon2 hash as a PHC string (`$argon2id$v=19$...`).
    pub(crate) password_hash: String,
    /// What the user may do.
    pub(crate) principal: Caller,
}

/// How an API key is stored in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Secret {
    /// The key itself.
    Plain(String),
    /// Its Argon2 hash as a PHC string (`synap-server hash-password`).
    Hash(String),
}

/// An API key and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiKey {
    /// The key, or its hash.
    pub(crate) secret: Secret,
    /// Its name and permissions.
    pub(crate) principal: Caller,
}

impl ApiKey {
    /// A plain key with full access (a `server.api_keys` string, `SYNAP_API_KEY`).
    pub(crate) fn full(key: String) -> Self {
        Self {
            secret: Secret::Plain(key),
            principal: Arc::new(Principal::full("api-key")),
        }
    }
}

impl Auth {
    /// Auth over `keys` and `users` (off when both are empty).
    pub(crate) fn new(keys: Vec<ApiKey>, users: Vec<User>) -> Self {
        let mut key = [0u8; 32];
        let passed = getrandom::fill(&mut key).ok().map(|()| Passed {
            key,
            digests: Mutex::new(HashMap::new()),
        });
        let (mut plain, mut hashed) = (Vec::new(), Vec::new());
        for k in keys {
            match k.secret {
                Secret::Plain(s) => plain.push((s, k.principal)),
                Secret::Hash(h) => hashed.push((h, k.principal)),
            }
        }
        Self {
            plain,
            hashed,
            users,
            passed,
        }
    }

    /// A remembered credential's caller.
    fn remembered(&self, digest: Option<&[u8; 32]>) -> Option<Caller> {
        let (p, d) = (self.passed.as_ref()?, digest?);
        p.digests.lock().expect("auth cache lock").get(d).cloned()
    }

    /// Remembers a credential that passed.
    fn remember(&self, digest: Option<[u8; 32]>, who: &Caller) {
        if let (Some(p), Some(d)) = (&self.passed, digest) {
            let mut map = p.digests.lock().expect("auth cache lock");
            if map.len() >= MAX_PASSED {
                map.clear();
            }
            map.insert(d, Arc::clone(who));
        }
    }

    /// Whom `name`/`password` identify, like `accepts_user`, but without blocking the async
    /// workers: a first check runs Argon2 on the blocking pool, and credentials that passed
    /// are remembered.
    pub(crate) async fn check_user(self: &Arc<Self>, name: &str, password: &str) -> Option<Caller> {
        if self.users.is_empty() {
            return None;
        }
        let digest = self
            .passed
            .as_ref()
            .map(|p| digest(&p.key, USER_DIGEST, name, password));
        if let Some(who) = self.remembered(digest.as_ref()) {
            return Some(who);
        }
        let (auth, n, pw) = (Arc::clone(self), name.to_owned(), password.to_owned());
        let who = tokio::task::spawn_blocking(move || auth.accepts_user(&n, &pw))
            .await
            .ok()
            .flatten()?;
        self.remember(digest, &who);
        Some(who)
    }

    /// Whom the API key `given` identifies: plain keys are compared in constant time (see
    /// `plain_key`); a key stored as a hash is verified by Argon2 once, off the async workers,
    /// then remembered as a keyed digest, so later requests cost a digest and a lookup.
    pub(crate) async fn check_key(self: &Arc<Self>, given: &str) -> Option<Caller> {
        if let Some(who) = self.plain_key(given) {
            return Some(who);
        }
        if self.hashed.is_empty() {
            return None;
        }
        let digest = self
            .passed
            .as_ref()
            .map(|p| digest(&p.key, KEY_DIGEST, "", given));
        if let Some(who) = self.remembered(digest.as_ref()) {
            return Some(who);
        }
        let (auth, key) = (Arc::clone(self), given.to_owned());
        let who = tokio::task::spawn_blocking(move || auth.hashed_key(&key))
            .await
            .ok()
            .flatten()?;
        self.remember(digest, &who);
        Some(who)
    }

    /// Whether any key or user is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.plain.is_empty() || !self.hashed.is_empty() || !self.users.is_empty()
    }

    /// Whom `name` and `password` identify. Every user name is compared in constant time, and
    /// the password is checked by Argon2 (whose verification compares in constant time), so
    /// timing reveals neither how much of a name matched nor which part of a password was
    /// right. An unknown name costs a verification too, against a fixed hash, so it takes as
    /// long as a wrong password.
    pub(crate) fn accepts_user(&self, name: &str, password: &str) -> Option<Caller> {
        let mut found: Option<&User> = None;
        for user in &self.users {
            if bool::from(user.name.as_bytes().ct_eq(name.as_bytes())) {
                found = Some(user);
            }
        }
        let hash = found.map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let ok = super::passwords::verify(password, hash);
        found.filter(|_| ok).map(|u| Arc::clone(&u.principal))
    }

    /// Whom a key stored as a hash identifies: every hash is verified (Argon2 compares in
    /// constant time), so timing does not reveal which one matched.
    fn hashed_key(&self, given: &str) -> Option<Caller> {
        let mut found = None;
        for (hash, who) in &self.hashed {
            if super::passwords::verify(given, hash) {
                found = Some(Arc::clone(who));
            }
        }
        found
    }

    /// Compares `given` with every plain key in constant time per key (no early exit on the
    /// first differing byte, and every key is compared), so response timing does not reveal
    /// how much of a key was right. Only the length may show, which reveals nothing useful.
    pub(crate) fn plain_key(&self, given: &str) -> Option<Caller> {
        let mut ok = subtle::Choice::from(0u8);
        let mut index = 0u32;
        for (i, (key, _)) in self.plain.iter().enumerate() {
            let hit = key.as_bytes().ct_eq(given.as_bytes());
            index.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), hit);
            ok |= hit;
        }
        if bool::from(ok) {
            self.plain
                .get(index as usize)
                .map(|(_, who)| Arc::clone(who))
        } else {
            None
        }
    }

    /// Whether `given` is a plain key (tests).
    #[cfg(test)]
    pub(crate) fn accepts(&self, given: &str) -> bool {
        self.plain_key(given).is_some()
    }
}

/// The caller of a request: set by the auth middleware; full access when auth is off.
pub(crate) struct Who(pub(crate) Caller);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<Caller>()
                .cloned()
                .unwrap_or_else(Principal::anonymous),
        ))
    }
}

/// `GET /auth/me`: `{name, full_access, permissions}` of the caller (`permissions` is `["*"]`
/// with full access), so a client (the web app) can hide what it may not do.
pub(crate) async fn me(State(s): State<AppState>, Who(who): Who) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": who.name,
        "full_access": who.full_access(),
        "permissions": who.permission_texts(),
        "auth_enabled": s.auth.enabled(),
    }))
}

/// A keyed BLAKE2b digest of a user's credentials: remembering it reveals nothing about the
/// password without the per-process key.
fn digest(key: &[u8; 32], domain: u8, name: &str, password: &str) -> [u8; 32] {
    use blake2::digest::{Mac, consts::U32};
    let mut mac = blake2::Blake2bMac::<U32>::new_from_slice(key).expect("a 32-byte key fits");
    mac.update(&[domain]);
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name.as_bytes());
    mac.update(password.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A valid hash no password is checked against successfully in practice (of a random
/// password), verified for unknown user names so they take as long as known ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3luYXAtdW5rbm93bi11c2Vy$0jHbJ1fJcDgFQkZQ5yQ5l6QpZ0lJm1oWm7z1o5Jk0pM";

/// Route templates where `?api_key=` is accepted (on GET): those of WebSocket and
/// EventSource clients.
const QUERY_KEY_ROUTES: [&str; 4] = ["/queue/{name}/ws", "/pubsub/ws", "/pubsub/sse", "/events"];

/// Whether `req` may carry its key in the query string.
fn query_key_allowed(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| QUERY_KEY_ROUTES.contains(&p.as_str()))
}

/// What a request presents.
enum Presented {
    /// An API key.
    Key(String),
    /// A user name and password.
    Basic(String, String),
}

/// `base64(user:password)` of a Basic header.
fn basic(encoded: &str) -> Option<Presented> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some(Presented::Basic(user.to_owned(), pass.to_owned()))
}

/// The credentials a request presents: the `Authorization` header (Bearer or Basic) first,
/// else (where allowed) the `api_key` query parameter.
fn presented(req: &Request) -> Option<Presented> {
    if let Some(h) = req.headers().get(AUTHORIZATION) {
        let text = h.to_str().ok()?;
        let (scheme, rest) = text.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Presented::Key(rest.trim().to_owned()));
        }
        return scheme
            .eq_ignore_ascii_case("basic")
            .then(|| basic(rest))
            .flatten();
    }
    if !query_key_allowed(req) {
        return None;
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "api_key").then(|| Presented::Key(percent_decode(v)))
    })
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Middleware: lets `/health` and `/health/leader` (what load balancers probe) through, and
/// everything else only with a valid key when keys are configured; the caller it identifies
/// goes with the request (see `Who`).
pub(crate) async fn require(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !s.auth.enabled() || path == "/health" || path == "/health/leader" {
        return next.run(req).await;
    }
    let who = match presented(&req) {
        Some(Presented::Key(key)) => s.auth.check_key(&key).await,
        Some(Presented::Basic(user, pass)) => s.auth.check_user(&user, &pass).await,
        None => None,
    };
    if let Some(who) = who {
        let mut req = req;
        req.extensions_mut().insert(who);
        return next.run(req).await;
    }
    let mut refused = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid credentials (use `Authorization: Bearer <key>`, or \
         `Authorization: Basic` for a configured user; `?api_key=` only on GET of the \
         WebSocket and SSE routes)",
    )
    .into_response();
    // The request body is left unread, so the connection cannot carry another request;
    // saying so lets clients open a new one instead of writing into a closed socket.
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly() {
        let keys = vec![ApiKey::full("alpha".into()), ApiKey::full("beta".into())];
        let auth = Auth::new(keys, Vec::new());
        assert!(auth.accepts("beta"));
        assert!(!auth.accepts("bet"));
        assert!(!auth.accepts("betaa"));
        assert!(!auth.accepts(""));
    }

    #[test]
    fn users_match_name_and_password() {
        let phc = super::super::passwords::hash("pw").unwrap();
        let user = User {
            name: "alice".into(),
            password_hash: phc,
            principal: Arc::new(Principal::full("alice")),
        };
        let auth = Auth::new(Vec::new(), vec![user]);
        assert!(auth.enabled());
        assert_eq!(auth.accepts_user("alice", "pw").unwrap().name, "alice");
        assert!(auth.accepts_user("alice", "pw2").is_none());
        assert!(auth.accepts_user("bob", "pw").is_none());
        assert!(!auth.accepts("pw"), "a password is not an API key");
        super::super::passwords::validate(DUMMY_HASH).expect("the stand-in hash parses");
    }

    #[tokio::test]
    async fn hashed_keys_identify_their_entry_and_are_remembered() {
        let hash = super::super::passwords::hash("sekrit").unwrap();
        let scoped = Principal::new("uploads", Some(&["queue:up-*:publish".to_owned()])).unwrap();
        let keys = vec![
            ApiKey::full("plain".into()),
            ApiKey {
                secret: Secret::Hash(hash),
                principal: Arc::new(scoped),
            },
        ];
        let auth = Arc::new(Auth::new(keys, Vec::new()));
        assert_eq!(auth.check_key("plain").await.unwrap().name, "api-key");
        let who = auth.check_key("sekrit").await.unwrap();
        assert_eq!(who.name, "uploads");
        assert!(!who.full_access());
        assert!(auth.check_key("sekrit2").await.is_none());
        assert!(!auth.accepts("sekrit"), "a hashed key is not a plain one");
        let remembered = auth.passed.as_ref().unwrap().digests.lock().unwrap().len();
        assert_eq!(remembered, 1);
        assert_eq!(auth.check_key("sekrit").await.unwrap().name, "uploads");
    }

    #[test]
    fn basic_credentials_decode() {
        // base64("alice:s3:cret")
        match basic("YWxpY2U6czM6Y3JldA==") {
            Some(Presented::Basic(u, p)) => {
                assert_eq!((u.as_str(), p.as_str()), ("alice", "s3:cret"))
            }
            _ => panic!("decoded"),
        }
        assert!(basic("!!!").is_none());
        assert!(basic("bm9jb2xvbg==").is_none(), "no colon");
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
