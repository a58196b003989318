//! Failover between the nodes of a cluster (DESIGN.md §11, docs/clients.md "Several servers").
//!
//! A call goes to the node the client uses now. When that node cannot serve it — the
//! connection is refused or drops, the request times out, or it answers 503 `not_leader`,
//! `no_leader`, `unavailable` or `shutting_down` — the client moves to the leader the answer
//! names, else to the next URL given, and sends the call again. It pauses after each round over
//! the nodes (25 ms doubling to 0.5 s; a `Retry-After` counts up to 0.5 s) and gives up
//! [`FAILOVER_DEADLINE`] after the call's first failure with [`SynapError::Failover`].
//!
//! A refused connection means the request never left, so any call may go elsewhere. Any other
//! failure leaves its outcome unknown (a 503 `not_leader` is also the answer to a request whose
//! entry was lost in a leader change), so the call is sent again only when that is safe
//! ([`Call::safe`]); the caller learns that it was ([`Sent::resent`]) to read the answer.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};

/// How long a call keeps trying other nodes after its first failure, by default.
pub(crate) const FAILOVER_DEADLINE: Duration = Duration::from_secs(10);

/// The first pause between two rounds over the nodes; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(25);

/// The longest pause between two attempts (a server's `Retry-After` is honoured up to this).
const MAX_DELAY: Duration = Duration::from_millis(500);

/// The 503 codes that send a call to another node.
pub(crate) const MOVE_ON: [&str; 4] = ["not_leader", "no_leader", "unavailable", "shutting_down"];

/// Whether a request can be sent again after its outcome became unknown (it may have been
/// applied), judged by its route: reads (`GET`), `PUT` and `DELETE` (a repeated delete may
/// answer `false`), queue create (applies the same settings), `kv/set`, consume (a lease
/// granted to a lost answer runs out and the message is delivered again), ack and ack_batch
/// (a repeat of one that landed answers `message_not_found`), extend, progress, cancel, pause
/// and resume (a repeat leaves the queue as the first did) and a worker's rate limit (a
/// repeat holds deliveries back from its own arrival: at most the failover's delay longer).
/// Publishes and nacks are judged by their body where they are sent (a key; a lease). Not
/// safe: `kv/incr`, pub/sub publish, purge, DLQ retry and purge, a schedule's run now, and
/// adding a flow (`POST /flows` takes no idempotency key: a repeat adds a second flow).
pub(crate) fn retry_safe(method: &Method, segments: &[&str]) -> bool {
    if *method != Method::POST {
        return true;
    }
    match segments {
        ["kv", "set"] | ["queue", _] => true,
        ["queue", _, op] => matches!(
            *op,
            "consume"
                | "ack"
                | "ack_batch"
                | "extend"
                | "progress"
                | "cancel"
                | "pause"
                | "resume"
                | "rate_limit"
        ),
        _ => false,
    }
}

/// A fresh idempotency key: 128 bits from the OS's random source in the UUID v4 layout.
pub(crate) fn random_key() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// One request, kept so it can be sent again to another node.
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Built on the first base URL; rebased on the node each attempt goes to.
    pub(crate) url: Url,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) timeout: Duration,
    /// May be sent again after an attempt whose outcome is unknown.
    pub(crate) safe: bool,
}

/// A call's answer, and whether it was sent again after an attempt whose outcome is unknown:
/// then an error may be the trace of that attempt having taken effect.
pub(crate) struct Sent<R> {
    pub(crate) result: Result<R>,
    pub(crate) resent: bool,
}

impl<R> Sent<R> {
    pub(crate) fn new(result: Result<R>) -> Self {
        Self {
            result,
            resent: false,
        }
    }
}

/// How one attempt ended.
enum Attempt<R> {
    Done(Result<R>),
    /// Worth sending to another node.
    Again(Failure),
}

/// A failed attempt: its error, what it says about where to go, and whether the request may
/// have been applied.
pub(crate) struct Failure {
    pub(crate) err: SynapError,
    /// The leader the node named.
    pub(crate) leader: Option<Url>,
    /// The node's `Retry-After`.
    pub(crate) retry_after: Option<Duration>,
    /// The request may have been applied.
    pub(crate) unknown: bool,
}

impl Failure {
    /// A failure that says nothing about the leader.
    pub(crate) fn plain(err: SynapError, unknown: bool) -> Self {
        Self {
            err,
            leader: None,
            retry_after: None,
            unknown,
        }
    }
}

/// The pacing of one call across the nodes: where to go after a failure, how long to pause,
/// and when to give up.
pub(crate) struct Pacer {
    deadline: Option<Instant>,
    delay: Duration,
    attempts: u32,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        Self {
            deadline: None,
            delay: FIRST_DELAY,
            attempts: 0,
        }
    }

    /// After an attempt on `base` failed: moves the client to the leader named, else to the
    /// next URL, pauses when due, and answers `Ok` to try again or the error to return (the
    /// failure's own on a client without failover, [`SynapError::Failover`] past the
    /// deadline).
    pub(crate) async fn again(
        &mut self,
        client: &SynapClient,
        base: &Url,
        failure: Failure,
    ) -> Result<()> {
        self.attempts += 1;
        if !client.fails_over() {
            return Err(failure.err);
        }
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + client.failover);
        let bases = &client.nodes.bases;
        let leader = failure.leader.filter(|l| l != base);
        let named = leader.is_some();
        let next = leader.or_else(|| {
            (bases.len() > 1).then(|| {
                let i = bases.iter().position(|b| b == base);
                bases[i.map_or(0, |i| (i + 1) % bases.len())].clone()
            })
        });
        if let Some(next) = &next {
            client.nodes.move_on(base, next.clone());
        }
        // A named leader is tried at once; otherwise pause after each round over the nodes,
        // when told to wait, or when there is no other node.
        let round = (self.attempts as usize).is_multiple_of(bases.len());
        let mut pause = Duration::ZERO;
        if !named && (failure.retry_after.is_some() || next.is_none() || round) {
            pause = failure
                .retry_after
                .unwrap_or(self.delay)
                .clamp(FIRST_DELAY, MAX_DELAY);
            self.delay = (self.delay * 2).min(MAX_DELAY);
        }
        if now + pause >= deadline {
            return Err(SynapError::Failover {
                attempts: self.attempts,
                last: Box::new(failure.err),
            });
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

impl SynapClient {
    /// Sends `call`, and on a client with failover sends it again (to the leader, else the
    /// next node) while that is safe and the deadline allows.
    pub(crate) async fn execute<R: DeserializeOwned>(&self, call: Call) -> Sent<R> {
        let mut pacer = Pacer::new();
        let mut resent = false;
        loop {
            let base = self.nodes.current();
            let failure = match self.attempt(&call, &base).await {
                Attempt::Done(result) => return Sent { result, resent },
                Attempt::Again(f) => f,
            };
            if failure.unknown && !call.safe {
                return Sent {
                    result: Err(failure.err),
                    resent,
                };
            }
            resent |= failure.unknown;
            if let Err(e) = pacer.again(self, &base, failure).await {
                return Sent {
                    result: Err(e),
                    resent,
                };
            }
        }
    }

    /// One attempt of `call` on `base`.
    async fn attempt<R: DeserializeOwned>(&self, call: &Call, base: &Url) -> Attempt<R> {
        let mut req = self
            .http
            .request(call.method.clone(), self.rebase(&call.url, base))
            .timeout(call.timeout);
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
        }
        if let Some(key) = self.api_key() {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // A refused connection never carried the request; anything else may have.
            Err(e) => {
                let unknown = !e.is_connect();
                return Attempt::Again(Failure::plain(e.into(), unknown));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Again(Failure::plain(e.into(), true)),
        };
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes);
            let err = SynapError::from_response(
                status.as_u16(),
                status.canonical_reason().unwrap_or("error"),
                &body,
            );
            if status.as_u16() == 503 && err.code().is_some_and(|c| MOVE_ON.contains(&c)) {
                let leader = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["leader"]["http"].as_str().map(str::to_owned))
                    .and_then(|h| self.leader_base(&h));
                return Attempt::Again(Failure {
                    err,
                    leader,
                    retry_after,
                    unknown: true,
                });
            }
            return Attempt::Done(Err(err));
        }
        Attempt::Done(serde_json::from_slice(&bytes).map_err(|e| {
            SynapError::Decode(format!(
                "unexpected response ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        }))
    }

    /// The base URL for a leader a node named (`http://host:port`): the URL given for that
    /// host and port when there is one, else the address as named with the first URL's path.
    pub(crate) fn leader_base(&self, http: &str) -> Option<Url> {
        let named = Url::parse(http).ok()?;
        if named.scheme() != "http" || named.cannot_be_a_base() {
            return None;
        }
        let same = |b: &&Url| {
            b.host_str() == named.host_str()
                && b.port_or_known_default() == named.port_or_known_default()
        };
        if let Some(b) = self.nodes.bases.iter().find(same) {
            return Some(b.clone());
        }
        let mut out = named;
        out.set_path(self.nodes.bases[0].path());
        Some(out)
    }

    /// The leader that node `base` knows of (`GET /cluster`), for refusals that do not name
    /// it (an error frame on a WebSocket).
    pub(crate) async fn leader_of(&self, base: &Url) -> Option<Url> {
        let v = self.cluster_view(base).await?;
        self.leader_base(v["leader"]["http"].as_str()?)
    }

    /// The role node `base` has in its cluster (`leader`, `follower`, …) and the leader it
    /// knows of; `None` when it does not say (a single server, or it did not answer).
    pub(crate) async fn role_of(&self, base: &Url) -> Option<(String, Option<Url>)> {
        let v = self.cluster_view(base).await?;
        let role = v["role"].as_str()?.to_owned();
        let leader = v["leader"]["http"]
            .as_str()
            .and_then(|h| self.leader_base(h));
        Some((role, leader))
    }

    /// `GET /cluster` of node `base`, answered by that node itself.
    async fn cluster_view(&self, base: &Url) -> Option<serde_json::Value> {
        let url = self.rebase(&self.url(&["cluster"]), base);
        let mut req = self.http.get(url).timeout(Duration::from_secs(2));
        if let Some(key) = self.api_key() {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;
