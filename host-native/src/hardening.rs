//! Settings of the server's armour, read from flags and the config file: connection timeouts
//! and cap, API keys (an empty one is a start-up error, not auth turned off), and the browser
//! origins allowed.

use std::time::Duration;

use crate::listen;

/// Default SynapRPC idle timeout: SDK connections are kept open between commands.
pub(crate) const DEFAULT_RPC_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Timeouts and cap as given (seconds), before defaults.
pub(crate) struct NetSettings {
    pub(crate) header_timeout: Option<f64>,
    pub(crate) body_timeout: Option<f64>,
    pub(crate) idle_timeout: Option<f64>,
    pub(crate) rpc_idle_timeout: Option<f64>,
    pub(crate) max_connections: Option<usize>,
}

impl NetSettings {
    /// The HTTP listener's limits and the SynapRPC idle timeout, with defaults; a timeout
    /// must be between 1 ms and a day.
    pub(crate) fn resolve(&self) -> Result<(listen::Limits, Duration), String> {
        let d = listen::Limits::default();
        let http = listen::Limits {
            header_timeout: timeout("header_timeout", self.header_timeout, d.header_timeout)?,
            body_timeout: timeout("body_timeout", self.body_timeout, d.body_timeout)?,
            idle_timeout: timeout("idle_timeout", self.idle_timeout, d.idle_timeout)?,
            max_connections: match self.max_connections {
                Some(0) => return Err("max_connections must be positive".into()),
                Some(n) => n,
                None => d.max_connections,
            },
        };
        let rpc = timeout(
            "rpc_idle_timeout",
            self.rpc_idle_timeout,
            DEFAULT_RPC_IDLE_TIMEOUT,
        )?;
        Ok((http, rpc))
    }
}

/// A duration in seconds from the flags or the config file, between 1 ms and a day.
pub(crate) fn timeout(
    name: &str,
    secs: Option<f64>,
    default: Duration,
) -> Result<Duration, String> {
    let Some(secs) = secs else {
        return Ok(default);
    };
    if !secs.is_finite() || !(0.001..=86_400.0).contains(&secs) {
        return Err(format!("{name} must be between 0.001 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The API keys of the config file and of `SYNAP_API_KEY` (comma-separated). An empty key is
/// an error: `SYNAP_API_KEY=""` must not quietly run the server without auth.
pub(crate) fn api_keys(file: Vec<String>, env: Option<&str>) -> Result<Vec<String>, String> {
    if file.iter().any(|k| k.trim().is_empty()) {
        return Err("server.api_keys holds an empty key".into());
    }
    let mut keys = file;
    if let Some(env) = env {
        let listed: Vec<&str> = env.split(',').map(str::trim).collect();
        if listed.iter().any(|k| k.is_empty()) {
            return Err(
                "SYNAP_API_KEY is set but holds an empty key (unset it to run without auth)".into(),
            );
        }
        keys.extend(listed.into_iter().map(String::from));
    }
    Ok(keys)
}

/// Checks allowed origins: `scheme://host[:port]`, no path, as browsers send `Origin`.
pub(crate) fn origins(list: Vec<String>) -> Result<Vec<String>, String> {
    for o in &list {
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"));
        let ok = rest.is_some_and(|r| {
            !r.is_empty() && !r.contains(['/', '?', '#', ' ']) && !synap_core::input::has_control(r)
        });
        if !ok {
            return Err(format!(
                "allowed origin {o:?} is not of the form http(s)://host[:port]"
            ));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_key_is_refused() {
        assert!(api_keys(vec![], Some("")).is_err());
        assert!(api_keys(vec![], Some("a,,b")).is_err());
        assert!(api_keys(vec![String::new()], None).is_err());
        assert_eq!(
            api_keys(vec!["x".into()], Some("a, b")).unwrap(),
            ["x", "a", "b"]
        );
        assert!(api_keys(vec![], None).unwrap().is_empty());
    }

    #[test]
    fn timeouts_have_defaults_and_bounds() {
        let none = NetSettings {
            header_timeout: None,
            body_timeout: None,
            idle_timeout: None,
            rpc_idle_timeout: None,
            max_connections: None,
        };
        let (http, rpc) = none.resolve().unwrap();
        assert_eq!(http.header_timeout, listen::DEFAULT_HEADER_TIMEOUT);
        assert_eq!(rpc, DEFAULT_RPC_IDLE_TIMEOUT);
        let bad = NetSettings {
            header_timeout: Some(-1.0),
            ..none
        };
        assert!(bad.resolve().is_err());
        let zero = NetSettings {
            max_connections: Some(0),
            header_timeout: None,
            ..bad
        };
        assert!(zero.resolve().is_err());
    }

    #[test]
    fn origins_are_scheme_and_host() {
        assert!(origins(vec!["http://localhost:3000".into()]).is_ok());
        assert!(origins(vec!["https://app.example".into()]).is_ok());
        assert!(origins(vec!["localhost:3000".into()]).is_err());
        assert!(origins(vec!["http://a/b".into()]).is_err());
        assert!(origins(vec!["*".into()]).is_err());
    }
}
