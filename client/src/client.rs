//! The client handle: base URL(s), API key and the HTTP plumbing every call shares.
//!
//! A client made with [`SynapClient::new_many`] or [`SynapClient::connect_many`] knows several
//! nodes of a cluster and fails over between them; failover.rs holds how.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, SynapError};
use crate::failover::{Call, FAILOVER_DEADLINE, Sent, retry_safe};

/// Time allowed for an ordinary request. Long-polls get their wait on top of it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An async handle to one Synap server, or to the nodes of a cluster. Cheap to clone: clones
/// share the connection pool and, for a cluster, the node requests go to.
#[derive(Clone, Debug)]
pub struct SynapClient {
    pub(crate) http: reqwest::Client,
    pub(crate) nodes: Arc<Nodes>,
    /// How long a call keeps trying other nodes after its first failure; zero: never.
    pub(crate) failover: Duration,
    /// Whether a publish without an idempotency key gets one from the client (failover only).
    pub(crate) generate_keys: bool,
    api_key: Option<Arc<str>>,
}

/// The base URLs given, and the one requests go to now.
#[derive(Debug)]
pub(crate) struct Nodes {
    /// In the order given; request URLs are built on the first and rebased on the node used.
    pub(crate) bases: Vec<Url>,
    /// One of `bases`, or a leader a node named.
    current: Mutex<Url>,
}

impl Nodes {
    /// The node requests go to now.
    pub(crate) fn current(&self) -> Url {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves from `from` to `to`, unless another call moved on from `from` already (then its
    /// choice stands).
    pub(crate) fn move_on(&self, from: &Url, to: Url) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == *from {
            *current = to;
        }
    }
}

/// Parses and checks one base URL.
fn parse_base(url: &str) -> Result<Url> {
    let base = Url::parse(url).map_err(|e| SynapError::InvalidUrl(format!("{url}: {e}")))?;
    if base.scheme() != "http" || base.cannot_be_a_base() {
        return Err(SynapError::InvalidUrl(format!(
            "{url}: only http:// URLs are supported"
        )));
    }
    Ok(base)
}

impl SynapClient {
    /// Connects to the server at `url` (e.g. `http://127.0.0.1:15500`) and checks that it
    /// answers `GET /health`, so a wrong address fails here rather than at the first task.
    ///
    /// # Errors
    /// [`SynapError::InvalidUrl`] for a URL that is not `http://`, a transport or server error
    /// when the health check fails.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = Self::new(url)?;
        client.health().await?;
        Ok(client)
    }

    /// [`connect`](Self::connect) with an API key sent as `Authorization: Bearer <key>`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with_key(url: &str, api_key: &str) -> Result<Self> {
        Ok(Self::connect(url).await?.with_api_key(api_key))
    }

    /// [`new_many`](Self::new_many), then checks that one of the nodes answers `GET /health`.
    ///
    /// # Errors
    /// As [`new_many`](Self::new_many), or [`SynapError::Failover`] when no node answers
    /// within the failover deadline.
    pub async fn connect_many<I, S>(urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let client = Self::new_many(urls)?;
        client.health().await?;
        Ok(client)
    }

    /// A client for the nodes of a cluster at `urls` (their HTTP addresses, in any order),
    /// without contacting them. Calls go to one node at a time, the first at the start. On a
    /// connection error, a timeout, or a 503 `not_leader` / `no_leader`, a call moves to the
    /// leader the answer names, else to the next URL, and is sent again, for up to 10 s after
    /// its first failure ([`with_failover_deadline`](Self::with_failover_deadline)) with short
    /// pauses (25 ms doubling to 0.5 s after each round over the nodes). A call whose first
    /// attempt may have taken effect is sent again only when that is safe: publishes (the
    /// client gives each one without an idempotency key a random one), reads, consumes, acks,
    /// nacks and extends with a lease; docs/clients.md ("Several servers") lists them. One URL
    /// works too: the client then retries that node and follows the leader it names.
    ///
    /// # Errors
    /// [`SynapError::InvalidUrl`] for an empty list or a URL that is not `http://`.
    pub fn new_many<I, S>(urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let bases = urls
            .into_iter()
            .map(|u| parse_base(u.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = bases.first().cloned() else {
            return Err(SynapError::InvalidUrl("no URL given".into()));
        };
        // A node that does not answer should cost little of the failover deadline.
        Ok(Self::build(bases, first, Duration::from_secs(2))?
            .with_failover_deadline(FAILOVER_DEADLINE))
    }

    /// A client for `url` without contacting the server.
    ///
    /// # Errors
    /// [`SynapError::InvalidUrl`] for a URL that is not `http://` (TLS is not built in: put
    /// Synap behind a local proxy or a private network).
    pub fn new(url: &str) -> Result<Self> {
        let base = parse_base(url)?;
        Self::build(vec![base.clone()], base, Duration::from_secs(10))
    }

    fn build(bases: Vec<Url>, first: Url, connect_timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            // Synap runs next to its workers; a proxy from the environment would only get in
            // the way of loopback and private addresses.
            .no_proxy()
            .connect_timeout(connect_timeout)
            .build()?;
        Ok(Self {
            http,
            nodes: Arc::new(Nodes {
                bases,
                current: Mutex::new(first),
            }),
            failover: Duration::ZERO,
            generate_keys: true,
            api_key: None,
        })
    }

    /// The same client sending `key` as `Authorization: Bearer <key>` on every request.
    #[must_use]
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(Arc::from(key));
        self
    }

    /// The same client trying other nodes for up to `deadline` after a call's first failure
    /// (10 s by default for [`new_many`](Self::new_many)); [`SynapError::Failover`] after
    /// that. Zero turns failover off: every call is sent once, as with [`new`](Self::new).
    #[must_use]
    pub fn with_failover_deadline(mut self, deadline: Duration) -> Self {
        self.failover = deadline;
        self
    }

    /// Whether a publish without an idempotency key gets a random one from the client when
    /// failover is on (the default), so that resending it cannot make a second task. Each key
    /// is held by the server for its idempotency window (300 s) and counts against its
    /// `limits.max_idempotency_keys`; with `false`, a keyless publish is sent again only when
    /// it surely never reached a node.
    #[must_use]
    pub fn with_generated_keys(mut self, on: bool) -> Self {
        self.generate_keys = on;
        self
    }

    /// The server's base URL (the first one given).
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.nodes.bases[0]
    }

    /// The base URLs given, in order.
    #[must_use]
    pub fn urls(&self) -> &[Url] {
        &self.nodes.bases
    }

    /// The base URL calls go to now: after a failover, the leader's (or the next URL's).
    #[must_use]
    pub fn current_url(&self) -> Url {
        self.nodes.current()
    }

    /// Whether calls are sent again to other nodes when they fail.
    pub(crate) fn fails_over(&self) -> bool {
        !self.failover.is_zero()
    }

    /// `GET /health`: the server's self-description (public even when keys are required).
    ///
    /// # Errors
    /// A transport error, or a server error if it is unhealthy.
    pub async fn health(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, &["health"], None::<&()>).await
    }

    /// The API key, if one is set.
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The base URL with `segments` appended, each percent-encoded as one path segment (so a
    /// KV key with `/` or `?` in it cannot change the route). Built on the first base URL;
    /// requests are rebased on the node they go to.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.nodes.bases[0].clone();
        {
            // `parse_base` rejected cannot-be-a-base URLs, so this cannot fail.
            let mut path = url
                .path_segments_mut()
                .expect("http URLs always have a path");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// `url` (built by [`url`](Self::url)) moved onto the base URL `to`.
    pub(crate) fn rebase(&self, url: &Url, to: &Url) -> Url {
        let prefix = self.nodes.bases[0].path().trim_end_matches('/');
        let rest = url.path().strip_prefix(prefix).unwrap_or(url.path());
        let mut out = to.clone();
        out.set_path(&format!("{}{rest}", to.path().trim_end_matches('/')));
        out.set_query(url.query());
        out
    }

    /// Sends a JSON request to `segments` and decodes a JSON reply. Whether it may be sent
    /// again after an unknown outcome follows from the route ([`retry_safe`]).
    pub(crate) async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<R> {
        let safe = retry_safe(&method, segments);
        self.call_tracked(method, segments, body, safe).await.result
    }

    /// [`call`](Self::call) with the resend rule given, answering whether the call was sent
    /// again after an attempt whose outcome is unknown.
    pub(crate) async fn call_tracked<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        safe: bool,
    ) -> Sent<R> {
        let body = match body.map(serde_json::to_vec).transpose() {
            Ok(b) => b,
            Err(e) => return Sent::new(Err(e.into())),
        };
        self.execute(Call {
            method,
            url: self.url(segments),
            body,
            timeout: REQUEST_TIMEOUT,
            safe,
        })
        .await
    }

    /// Like [`call`](Self::call) for a POST that the server may hold open for `wait` (a
    /// long-poll), so the client's own timeout must outlast it.
    pub(crate) async fn call_long<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
        wait: Duration,
    ) -> Result<R> {
        let body = serde_json::to_vec(body)?;
        self.execute(Call {
            method: Method::POST,
            url: self.url(segments),
            body: Some(body),
            timeout: REQUEST_TIMEOUT + wait,
            safe: retry_safe(&Method::POST, segments),
        })
        .await
        .result
    }

    /// Sends a GET built elsewhere (e.g. with a query string).
    pub(crate) async fn send_get<R: DeserializeOwned>(&self, url: Url) -> Result<R> {
        self.send_get_long(url, Duration::ZERO).await
    }

    /// A GET built elsewhere that the server may hold open for `wait` (a long-poll).
    pub(crate) async fn send_get_long<R: DeserializeOwned>(
        &self,
        url: Url,
        wait: Duration,
    ) -> Result<R> {
        self.execute(Call {
            method: Method::GET,
            url,
            body: None,
            timeout: REQUEST_TIMEOUT + wait,
            safe: true,
        })
        .await
        .result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        let c = SynapClient::new("http://127.0.0.1:15500/").unwrap();
        let url = c.url(&["kv", "get", "a/b?c#d"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:15500/kv/get/a%2Fb%3Fc%23d");
        let c = SynapClient::new("http://h:1/prefix").unwrap();
        assert_eq!(c.url(&["health"]).as_str(), "http://h:1/prefix/health");
    }

    #[test]
    fn rejects_non_http_urls() {
        assert!(matches!(
            SynapClient::new("https://example.invalid"),
            Err(SynapError::InvalidUrl(_))
        ));
        assert!(matches!(
            SynapClient::new("not a url"),
            Err(SynapError::InvalidUrl(_))
        ));
        assert!(matches!(
            SynapClient::new_many(["http://a:1", "ftp://b:2"]),
            Err(SynapError::InvalidUrl(_))
        ));
        assert!(matches!(
            SynapClient::new_many(Vec::<String>::new()),
            Err(SynapError::InvalidUrl(_))
        ));
    }

    #[test]
    fn one_url_does_not_fail_over_and_many_do() {
        let one = SynapClient::new("http://a:1").unwrap();
        assert!(!one.fails_over());
        let many = SynapClient::new_many(["http://a:1", "http://b:2/"]).unwrap();
        assert!(many.fails_over());
        assert_eq!(many.urls().len(), 2);
        assert_eq!(many.current_url().as_str(), "http://a:1/");
        assert!(!many.with_failover_deadline(Duration::ZERO).fails_over());
    }

    #[test]
    fn requests_are_rebased_on_the_node_used() {
        let c = SynapClient::new_many(["http://a:1/p/", "http://b:2"]).unwrap();
        let mut url = c.url(&["kv", "keys"]);
        url.query_pairs_mut().append_pair("prefix", "x");
        assert_eq!(url.as_str(), "http://a:1/p/kv/keys?prefix=x");
        let to: Url = "http://b:2".parse().unwrap();
        assert_eq!(c.rebase(&url, &to).as_str(), "http://b:2/kv/keys?prefix=x");
        let back: Url = "http://a:1/p/".parse().unwrap();
        assert_eq!(c.rebase(&url, &back), url);
    }
}
