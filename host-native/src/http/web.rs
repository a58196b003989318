//! The web app (www/dist, built by www/build.sh) embedded in the binary and served at `/`:
//! `GET /` is its page and `GET /assets/{file}` its scripts, styles, icon and the engine's
//! WebAssembly. These routes are public (the page must load before anyone enters an API key)
//! and registered outside the auth layer; every API route the page calls still needs a key
//! when auth is on.
//!
//! Responses carry the asset's content type (`application/wasm` for the engine, which
//! browsers require for streaming compilation), an ETag (its SHA-256) so revalidation answers
//! 304, `Cache-Control: no-cache` (the file names carry no hash), `nosniff`, and a content
//! security policy that lets the page reach only the server that served it. Text and wasm
//! assets are sent gzipped to clients that accept it, compressed once on first request.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use super::AppState;
use super::error::ApiError;

#[derive(Embed)]
#[folder = "../www/dist/"]
struct Dist;

/// What the page may load and connect to: only its own origin. `wasm-unsafe-eval` allows
/// compiling the engine's WebAssembly (not `eval`).
const POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Assets smaller than this are sent as they are.
const MIN_GZIP_BYTES: usize = 1024;

/// The routes of the web app.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*file}", get(asset))
        .method_not_allowed_fallback(super::method_not_allowed)
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{file}"), &headers)
}

/// The content type of a file name.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn compressible(path: &str) -> bool {
    content_type(path) != "image/png" && content_type(path) != "application/octet-stream"
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let weight = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && weight > 0.0
        })
}

/// Gzipped copies of the assets, made on first request (at most one per embedded file).
fn gzipped(path: &str, bytes: &[u8]) -> Option<Bytes> {
    static CACHE: OnceLock<Mutex<HashMap<String, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok()?.get(path) {
        return Some(hit.clone());
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).ok()?;
    let out = Bytes::from(enc.finish().ok()?);
    cache.lock().ok()?.insert(path.to_owned(), out.clone());
    Some(out)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Dist::get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file in the web app",
        )
        .into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag: String = format!(
        "\"{}\"",
        hash[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut out = HeaderMap::new();
    let static_value = HeaderValue::from_static;
    out.insert(CONTENT_TYPE, static_value(content_type(path)));
    out.insert(CACHE_CONTROL, static_value("no-cache"));
    out.insert(X_CONTENT_TYPE_OPTIONS, static_value("nosniff"));
    out.insert(CONTENT_SECURITY_POLICY, static_value(POLICY));
    out.insert(VARY, static_value("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(ETAG, v);
    }
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let body = file.data;
    if body.len() >= MIN_GZIP_BYTES
        && compressible(path)
        && accepts_gzip(headers)
        && let Some(gz) = gzipped(path, &body)
    {
        out.insert(CONTENT_ENCODING, static_value("gzip"));
        return (out, gz).into_response();
    }
    (out, Body::from(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("assets/synap_wasm_bg.wasm"),
            "application/wasm"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("assets/icon.svg"), "image/svg+xml");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1.0, gzip;q=0.5"
        )])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "br")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_embedded_app_is_served_with_etags() {
        let page = serve("index.html", &HeaderMap::new());
        assert_eq!(page.status(), StatusCode::OK);
        let etag = page.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(
            page.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        assert_eq!(
            serve("index.html", &again).status(),
            StatusCode::NOT_MODIFIED
        );
        let wasm = serve(
            "assets/synap_wasm_bg.wasm",
            &headers(&[("accept-encoding", "gzip")]),
        );
        assert_eq!(wasm.headers()[CONTENT_TYPE], "application/wasm");
        assert_eq!(wasm.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(
            serve("assets/missing.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
