//! `GET /debug/state_digest`: the engine's state digest, for restart and replay checks.
//!
//! `?at_ms=T` computes it on a copy of the engine whose timers ran up to `T` (Unix-epoch
//! milliseconds), so two servers (or one before and after a restart) that ran the same
//! commands give the same digest for the same `T`. Without it, the digest is of the state as
//! it is. Copying the engine costs time and memory in proportion to the state.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use synap_core::Millis;

use super::AppState;
use super::error::ApiError;
use crate::permissions::{Action, Kind};

/// The query of `GET /debug/state_digest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DigestQuery {
    at_ms: Option<u64>,
}

/// Answers `{"state_digest": "<16 hex digits>", "at_ms": <time it was taken at>}`.
pub(super) async fn state_digest(
    State(s): State<AppState>,
    super::auth::Who(who): super::auth::Who,
    Query(q): Query<DigestQuery>,
) -> Result<Json<Value>, ApiError> {
    // Server operations: full access or `server:debug:read`.
    who.require(Kind::Server, Action::Read, "debug")?;
    let (digest, at, applied) = s.engine.digest(q.at_ms.map(Millis)).await?;
    let mut body = json!({
        "state_digest": format!("{digest:016x}"),
        "at_ms": at.0,
    });
    if let Some(index) = applied {
        // A cluster node answers for its own replica: equal at equal applied index.
        body["applied_index"] = json!(index);
    }
    Ok(Json(body))
}
