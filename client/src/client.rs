//! The client handle: base URL, API key and the HTTP plumbing every call shares.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, SynapError};

/// Time allowed for an ordinary request. Long-polls get their wait on top of it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An async handle to one Synap server. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct SynapClient {
    http: reqwest::Client,
    base: Url,
    api_key: Option<Arc<str>>,
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

    /// A client for `url` without contacting the server.
    ///
    /// # Errors
    /// [`SynapError::InvalidUrl`] for a URL that is not `http://` (TLS is not built in: put
    /// Synap behind a local proxy or a private network).
    pub fn new(url: &str) -> Result<Self> {
        let base = Url::parse(url).map_err(|e| SynapError::InvalidUrl(format!("{url}: {e}")))?;
        if base.scheme() != "http" || base.cannot_be_a_base() {
            return Err(SynapError::InvalidUrl(format!(
                "{url}: only http:// URLs are supported"
            )));
        }
        let http = reqwest::Client::builder()
            // Synap runs next to its workers; a proxy from the environment would only get in
            // the way of loopback and private addresses.
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base,
            api_key: None,
        })
    }

    /// The same client sending `key` as `Authorization: Bearer <key>` on every request.
    #[must_use]
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(Arc::from(key));
        self
    }

    /// The server's base URL.
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.base
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
    /// KV key with `/` or `?` in it cannot change the route).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            // `new` rejected cannot-be-a-base URLs, so this cannot fail.
            let mut path = url
                .path_segments_mut()
                .expect("http URLs always have a path");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// Sends a JSON request to `segments` and decodes a JSON reply.
    pub(crate) async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<R> {
        let req = self.http.request(method, self.url(segments));
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        self.send(req, REQUEST_TIMEOUT).await
    }

    /// Like [`call`](Self::call) for a request that may be held open by the server for
    /// `wait` (a long-poll), so the client's own timeout must outlast it.
    pub(crate) async fn call_long<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
        wait: Duration,
    ) -> Result<R> {
        let req = self.http.post(self.url(segments)).json(body);
        self.send(req, REQUEST_TIMEOUT + wait).await
    }

    /// Sends a request built elsewhere (e.g. with a query string).
    pub(crate) async fn send_get<R: DeserializeOwned>(&self, url: Url) -> Result<R> {
        self.send(self.http.get(url), REQUEST_TIMEOUT).await
    }

    /// A GET built elsewhere that the server may hold open for `wait` (a long-poll).
    pub(crate) async fn send_get_long<R: DeserializeOwned>(
        &self,
        url: Url,
        wait: Duration,
    ) -> Result<R> {
        self.send(self.http.get(url), REQUEST_TIMEOUT + wait).await
    }

    async fn send<R: DeserializeOwned>(&self, req: RequestBuilder, timeout: Duration) -> Result<R> {
        let req = match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        };
        let resp = req.timeout(timeout).send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes);
            return Err(SynapError::from_response(
                status.as_u16(),
                status.canonical_reason().unwrap_or("error"),
                &body,
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            SynapError::Decode(format!(
                "unexpected response ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        })
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
    }
}
