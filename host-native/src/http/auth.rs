//! Auth: API keys (`Authorization: Bearer <key>`, or `?api_key=<key>` on the WebSocket and SSE
//! routes only, since browser WebSocket and EventSource clients cannot set headers) and users
//! with passwords (`Authorization: Basic base64(user:password)`, on every route). `/health` is
//! always public. SynapRPC's `AUTH` checks the same keys and users (see `rpc`).
//!
//! The query key is refused elsewhere: URLs end up in logs, proxies and browser history, so a
//! key is only worth that risk where no header can carry it.
//!
//! Argon2 makes a password check slow on purpose, so it runs off the async workers, and
//! credentials that passed are remembered (as a keyed digest, never the password) so a client
//! sending Basic auth on every request pays for one check, not one per request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{self, AUTHORIZATION};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// The configured API keys and users; none of either means auth is off.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    keys: Vec<String>,
    users: Vec<User>,
    /// Digests of user credentials that passed (see `digest`); `None` without OS randomness.
    passed: Option<Passed>,
}

/// Credentials that passed, as digests keyed by a per-process random key.
#[derive(Debug)]
struct Passed {
    key: [u8; 32],
    digests: Mutex<HashSet<[u8; 32]>>,
}

/// Most remembered credentials; the memory is cleared when it is full.
const MAX_PASSED: usize = 1024;

/// A user who signs in with a password (`Authorization: Basic`, SynapRPC `AUTH user pass`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    /// The user name.
    pub(crate) name: String,
    /// The password's Argon2 hash as a PHC string (`$argon2id$v=19$...`).
    pub(crate) password_hash: String,
}

impl Auth {
    /// Auth over `keys` and `users` (off when both are empty).
    pub(crate) fn new(keys: Vec<String>, users: Vec<User>) -> Self {
        let mut key = [0u8; 32];
        let passed = getrandom::fill(&mut key).ok().map(|()| Passed {
            key,
            digests: Mutex::new(HashSet::new()),
        });
        Self {
            keys,
            users,
            passed,
        }
    }

    /// Whether `name`/`password` are a user's, like `accepts_user`, but without blocking the
    /// async workers: a first check runs Argon2 on the blocking pool, and credentials that
    /// passed are remembered.
    pub(crate) async fn check_user(self: &Arc<Self>, name: &str, password: &str) -> bool {
        if self.users.is_empty() {
            return false;
        }
        let digest = self.passed.as_ref().map(|p| digest(&p.key, name, password));
        if let (Some(p), Some(d)) = (&self.passed, &digest)
            && p.digests.lock().expect("auth cache lock").contains(d)
        {
            return true;
        }
        let (auth, n, pw) = (Arc::clone(self), name.to_owned(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || auth.accepts_user(&n, &pw))
            .await
            .unwrap_or(false);
        if let (true, Some(p), Some(d)) = (ok, &self.passed, digest) {
            let mut set = p.digests.lock().expect("auth cache lock");
            if set.len() >= MAX_PASSED {
                set.clear();
            }
            set.insert(d);
        }
        ok
    }

    /// Whether any key or user is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.keys.is_empty() || !self.users.is_empty()
    }

    /// Whether `name` is a user whose password is `password`. Every user name is compared in
    /// constant time, and the password is checked by Argon2 (whose verification compares in
    /// constant time), so timing reveals neither how much of a name matched nor which part of
    /// a password was right. An unknown name costs a verification too, against a fixed hash,
    /// so it takes as long as a wrong password.
    pub(crate) fn accepts_user(&self, name: &str, password: &str) -> bool {
        let mut found: Option<&User> = None;
        for user in &self.users {
            if bool::from(user.name.as_bytes().ct_eq(name.as_bytes())) {
                found = Some(user);
            }
        }
        let hash = found.map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        super::passwords::verify(password, hash) && found.is_some()
    }

    /// Compares `given` with every key in constant time per key (no early exit on the first
    /// differing byte, and every key is compared), so response timing does not reveal how much
    /// of a key was right. Only the length may show, which reveals nothing useful.
    pub(crate) fn accepts(&self, given: &str) -> bool {
        let mut ok = subtle::Choice::from(0u8);
        for key in &self.keys {
            ok |= key.as_bytes().ct_eq(given.as_bytes());
        }
        ok.into()
    }
}

/// A keyed BLAKE2b digest of a user's credentials: remembering it reveals nothing about the
/// password without the per-process key.
fn digest(key: &[u8; 32], name: &str, password: &str) -> [u8; 32] {
    use blake2::digest::{Mac, consts::U32};
    let mut mac = blake2::Blake2bMac::<U32>::new_from_slice(key).expect("a 32-byte key fits");
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

/// Middleware: lets `/health` through, and everything else only with a valid key when keys
/// are configured.
pub(crate) async fn require(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.auth.enabled() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let ok = match presented(&req) {
        Some(Presented::Key(key)) => s.auth.accepts(&key),
        Some(Presented::Basic(user, pass)) => s.auth.check_user(&user, &pass).await,
        None => false,
    };
    if ok {
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
        let auth = Auth::new(vec!["alpha".into(), "beta".into()], Vec::new());
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
        };
        let auth = Auth::new(Vec::new(), vec![user]);
        assert!(auth.enabled());
        assert!(auth.accepts_user("alice", "pw"));
        assert!(!auth.accepts_user("alice", "pw2"));
        assert!(!auth.accepts_user("bob", "pw"));
        assert!(!auth.accepts("pw"), "a password is not an API key");
        super::super::passwords::validate(DUMMY_HASH).expect("the stand-in hash parses");
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
