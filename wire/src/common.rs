//! Small bodies shared by several routes.

use serde::{Deserialize, Serialize};

/// An error answer: `{"error": "<message>", "code": "<machine code>"}` (docs/api.md, Errors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A human-readable message.
    pub error: String,
    /// The machine code, e.g. `queue_not_found`.
    pub code: String,
}

/// `{success: true}`: an ack, a KV set or mset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Success {
    /// Always true in a 200 answer.
    pub success: bool,
}

impl Success {
    /// `{success: true}`.
    pub const OK: Self = Self { success: true };
}

/// `{deleted}`: a queue or key delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// False if there was nothing to delete.
    pub deleted: bool,
}

/// `{purged}`: messages or DLQ entries removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// How many.
    pub purged: u64,
}

/// An empty JSON object, the body of POST routes that take no options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `GET /health`: `{status, service, version}`, plus `error` and `code` when unhealthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `healthy` (200) or `unhealthy` (503).
    pub status: String,
    /// Always `synap`.
    pub service: String,
    /// The server's version.
    pub version: String,
    /// Why the server is unhealthy; absent when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `unavailable` when unhealthy; absent when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}
