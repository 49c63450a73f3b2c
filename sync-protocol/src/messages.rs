//! The body of `POST /api/v1/sync`: one round trip that pushes changes and pulls what the
//! device lacks. JSON; change bytes are standard base64 of raw, uncompressed Automerge
//! change chunks. Compress the whole body with gzip (`Content-Encoding: gzip`).

use serde::{Deserialize, Serialize};

/// Default bound on one request's pushed change bytes and one response's pulled bytes.
pub const DEFAULT_BATCH_BYTES: usize = 256 * 1024;

fn yes() -> bool {
    true
}

/// How change bytes are written as JSON strings. `hex` compresses better under gzip:
/// base64 maps 3 bytes to 4 characters, so a repeated byte run shows up as a repeated
/// string only one time in three, while hex keeps every repeat visible (measured: ~98
/// instead of ~131 gzip bytes per attendance record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeEncoding {
    /// Standard base64 with padding (the default).
    #[default]
    Base64,
    /// Lower-case hexadecimal.
    Hex,
}

impl ChangeEncoding {
    pub fn encode(self, bytes: &[u8]) -> String {
        use base64::Engine as _;
        match self {
            ChangeEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            ChangeEncoding::Hex => hex::encode(bytes),
        }
    }

    /// `None` when the text is not valid in this encoding.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        match self {
            ChangeEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
            ChangeEncoding::Hex => hex::decode(text).ok(),
        }
    }

    fn is_default(&self) -> bool {
        *self == ChangeEncoding::Base64
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncRequest {
    pub protocol_version: u32,
    /// Encoding of the change strings in this request and in its response.
    #[serde(default, skip_serializing_if = "ChangeEncoding::is_default")]
    pub encoding: ChangeEncoding,
    /// The `cursor` of the previous response; absent on a device's first sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Changes the server may lack, grouped by document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<DocChanges>,
    /// Whether to pull (default true).
    #[serde(default = "yes")]
    pub pull: bool,
    /// Upper bound on pulled change bytes in the response (the server may send less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pull_bytes: Option<usize>,
    /// Documents whose whole history the device wants again (it received changes it
    /// cannot apply, or lost its copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub need_full_history: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocChanges {
    /// The document's UUID.
    pub doc_id: String,
    /// `cooperative`, `member` or `training_session`.
    pub doc_type: String,
    /// Change chunks, in the request's `encoding` (base64 unless stated).
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncResponse {
    pub protocol_version: u32,
    /// The server's clock (RFC 3339), for display; never use it to order changes.
    pub server_time: String,
    /// One entry per pushed document, in request order.
    #[serde(default)]
    pub push: Vec<DocPushResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullResult>,
}

/// What happened to one document's pushed changes. Every change not listed in `errors`
/// is durably stored: applied now, already known, or held as pending until its
/// dependencies arrive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocPushResult {
    pub doc_id: String,
    /// Changes newly applied (including held changes this push unblocked).
    pub applied: u32,
    /// Changes the server already had.
    pub duplicates: u32,
    /// Hashes of changes stored but waiting for dependencies the server lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Changes that were quarantined, by index in the request's `changes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ChangeErrorReport>,
    /// Held changes (also in `pending`) that wait on a change the server quarantined,
    /// directly or through other held changes: they apply only if an admin releases it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockedChange>,
}

/// A held change that cannot apply until a quarantined change is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockedChange {
    pub hash: String,
    /// Hashes of the quarantined changes it waits on.
    pub quarantined: Vec<String>,
    /// Always `dependency_quarantined`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeErrorReport {
    pub index: usize,
    /// The change hash, when the bytes were readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullResult {
    /// Changes the device lacks, grouped by document, in server order.
    pub docs: Vec<DocChanges>,
    /// Documents that left the device's scope: delete the local copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Send this back as `cursor` next time.
    pub cursor: String,
    /// More changes are waiting: sync again.
    pub more: bool,
    /// The server's history is not the one the cursor came from (it was restored from a
    /// backup): treat every local change as undelivered and push them all again; this
    /// pull started from the beginning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}
