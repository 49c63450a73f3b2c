//! The quarantine queue: changes the server refused, with their bytes. An admin inspects
//! one (what was wrong, the decoded header), **releases** it (every check runs again
//! against the current state, under its original device and user as they are now: if it
//! passes it is committed through the same write path as a push, and changes held behind
//! it apply with it), or **dismisses** it with a reason. The row and its bytes always stay.

use automerge::Change;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sync_protocol::messages::{ChangeEncoding, DocChanges};
use utoipa::ToSchema;

use super::utc;
use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{
        DbConnection, now,
        schema::{documents, quarantine},
    },
    domain::access::Role,
    error::ApiError,
};

pub use crate::domain::status::QuarantineStatus;

/// The header of a quarantined change, decoded where its bytes parse.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeHeader {
    pub actor: String,
    pub seq: u64,
    pub start_op: u64,
    pub operations: usize,
    pub deps: Vec<String>,
    /// The device's clock, as the change says (informative only).
    pub time: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuarantineResponse {
    pub id: i64,
    pub status: QuarantineStatus,
    pub received_at: DateTime<Utc>,
    pub device_id: String,
    pub user_id: String,
    pub document_id: Option<String>,
    pub doc_type: Option<String>,
    pub hash: Option<String>,
    /// Why it was refused: a per-change error code (docs/sync-protocol.md).
    pub code: String,
    pub reason: String,
    /// Size of the refused bytes; only the first 64 KiB are kept.
    pub original_size: Option<i64>,
    pub bytes_sha256: Option<String>,
    /// Decoded when the kept bytes are a whole change that parses.
    pub header: Option<ChangeHeader>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineListResponse {
    pub items: Vec<QuarantineResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineQuery {
    /// `open` (default), `released`, `dismissed` or `all`.
    pub status: Option<String>,
    /// A per-change error code, e.g. `out_of_scope`.
    pub code: Option<String>,
    pub document_id: Option<String>,
    pub device_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DismissRequest {
    /// Why (1 to 500 characters); kept with the row.
    pub reason: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = quarantine)]
struct Row {
    id: i64,
    received_at: NaiveDateTime,
    device_id: String,
    user_id: String,
    document_id: Option<String>,
    doc_type: Option<String>,
    hash: Option<String>,
    code: String,
    reason: String,
    bytes: Option<Vec<u8>>,
    original_size: Option<i64>,
    bytes_sha256: Option<String>,
    status: String,
    decided_by: Option<String>,
    decided_at: Option<NaiveDateTime>,
    decision_note: Option<String>,
}

fn header(bytes: &[u8]) -> Option<ChangeHeader> {
    let change = std::panic::catch_unwind(|| Change::try_from(bytes).ok())
        .ok()
        .flatten()?;
    Some(ChangeHeader {
        actor: change.actor_id().to_hex_string(),
        seq: change.seq(),
        start_op: change.start_op().get(),
        operations: change.len(),
        deps: change.deps().iter().map(|d| d.to_string()).collect(),
        time: change.timestamp(),
    })
}

fn response(r: Row) -> Result<QuarantineResponse, ApiError> {
    Ok(QuarantineResponse {
        id: r.id,
        status: QuarantineStatus::parse(&r.status)
            .ok_or_else(|| ApiError::internal("unknown quarantine status"))?,
        received_at: utc(r.received_at),
        header: r.bytes.as_deref().and_then(header),
        device_id: r.device_id,
        user_id: r.user_id,
        document_id: r.document_id,
        doc_type: r.doc_type,
        hash: r.hash,
        code: r.code,
        reason: r.reason,
        original_size: r.original_size,
        bytes_sha256: r.bytes_sha256,
        decided_by: r.decided_by,
        decided_at: r.decided_at.map(utc),
        decision_note: r.decision_note,
    })
}

/// Whether the admin may see a quarantined change: national admins all; provincial admins
/// those of records in their provinces, and those sent by accounts they manage (a
/// record that was never stored has no province of its own).
fn visible(conn: &mut DbConnection, principal: &Principal, r: &Row) -> Result<bool, ApiError> {
    if principal.role == Role::NationalAdmin {
        return Ok(true);
    }
    if let Some(doc) = &r.document_id {
        let place: Option<(Option<String>, Option<String>)> = documents::table
            .find(doc)
            .select((documents::province_code, documents::cooperative_id))
            .first(conn)
            .optional()?;
        if let Some((p, c)) = place {
            return Ok(principal.actor().sees(p.as_deref(), c.as_deref()));
        }
    }
    crate::accounts::manages(conn, &principal.actor(), &r.user_id)
}

pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &QuarantineQuery,
) -> Result<QuarantineListResponse, ApiError> {
    principal.require_admin()?;
    let limit = crate::api::v1::page_size(q.limit) as i64;
    let mut query = quarantine::table
        .select(Row::as_select())
        .order(quarantine::id.desc())
        .limit(limit)
        .into_boxed();
    match q.status.as_deref() {
        None | Some("open") => {
            query = query.filter(quarantine::status.eq(QuarantineStatus::Open.as_str()))
        }
        Some("all") => {}
        Some(s) => {
            let s = QuarantineStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "status must be open, released, dismissed or all",
                )
            })?;
            query = query.filter(quarantine::status.eq(s.as_str()));
        }
    }
    if let Some(c) = &q.code {
        query = query.filter(quarantine::code.eq(c.clone()));
    }
    if let Some(d) = &q.document_id {
        query = query.filter(quarantine::document_id.eq(d.to_ascii_lowercase()));
    }
    if let Some(d) = &q.device_id {
        query = query.filter(quarantine::device_id.eq(d.clone()));
    }
    if let Some(before) = super::before_cursor(q.cursor.as_deref())? {
        query = query.filter(quarantine::id.lt(before));
    }
    let rows: Vec<Row> = query.load(conn)?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let mut items = Vec::new();
    for r in rows {
        if visible(conn, principal, &r)? {
            items.push(response(r)?);
        }
    }
    Ok(QuarantineListResponse { items, next_cursor })
}

fn load(conn: &mut DbConnection, principal: &Principal, id: i64) -> Result<Row, ApiError> {
    principal.require_admin()?;
    let row: Option<Row> = quarantine::table
        .find(id)
        .select(Row::as_select())
        .first(conn)
        .optional()?;
    match row {
        Some(r) if visible(conn, principal, &r)? => Ok(r),
        _ => Err(ApiError::NotFound("quarantined change")),
    }
}

pub fn get(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
) -> Result<QuarantineResponse, ApiError> {
    response(load(conn, principal, id)?)
}

/// The kept bytes, for download.
pub fn bytes(conn: &mut DbConnection, principal: &Principal, id: i64) -> Result<Vec<u8>, ApiError> {
    Ok(load(conn, principal, id)?.bytes.unwrap_or_default())
}

fn not_open(r: &Row) -> ApiError {
    ApiError::Conflict {
        code: "quarantine_decided",
        message: format!("this change was {} already", r.status),
    }
}

fn decide(
    conn: &mut DbConnection,
    principal: &Principal,
    r: &Row,
    status: QuarantineStatus,
    note: &str,
) -> Result<(), ApiError> {
    diesel::update(quarantine::table.find(r.id))
        .set((
            quarantine::status.eq(status.as_str()),
            quarantine::decided_by.eq(&principal.user_id),
            quarantine::decided_at.eq(now()),
            quarantine::decision_note.eq(note),
        ))
        .execute(conn)?;
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: if status == QuarantineStatus::Released {
            "quarantine.release"
        } else {
            "quarantine.dismiss"
        },
        target_type: Some("quarantine"),
        target_id: Some(&r.id.to_string()),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        details: Some(
            serde_json::json!({"document_id": r.document_id, "code": r.code, "hash": r.hash}),
        ),
    }
    .record(conn)?;
    Ok(())
}

/// Releases a quarantined change: every check runs again, now, under its original device
/// and user. If it passes it is committed like a push (changes held behind it apply with
/// it); if not, nothing changes and the answer says why (`422 still_refused`). Runs in
/// the caller's transaction.
pub fn release(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
) -> Result<QuarantineResponse, ApiError> {
    let r = load(conn, principal, id)?;
    if r.status != QuarantineStatus::Open.as_str() {
        return Err(not_open(&r));
    }
    let (Some(doc_id), Some(doc_type), Some(bytes)) = (&r.document_id, &r.doc_type, &r.bytes)
    else {
        return Err(ApiError::Validation(vec![crate::error::FieldError::new(
            "id",
            "not_releasable",
            "this row holds no whole change of a record (a summary, or bytes not kept)",
        )]));
    };
    if r.original_size.is_some_and(|n| n as usize > bytes.len()) {
        return Err(ApiError::Validation(vec![crate::error::FieldError::new(
            "id",
            "not_releasable",
            "only the first 64 KiB of this change were kept",
        )]));
    }
    let Some(author) = crate::auth::principal_of(conn, &r.user_id, &r.device_id)? else {
        return Err(ApiError::Validation(vec![crate::error::FieldError::new(
            "id",
            "not_releasable",
            "the account or device that sent it is deactivated or revoked",
        )]));
    };
    let group = DocChanges {
        doc_id: doc_id.clone(),
        doc_type: doc_type.clone(),
        changes: vec![base64::engine::general_purpose::STANDARD.encode(bytes)],
    };
    // In a savepoint: a change that is still refused must leave nothing behind (no second
    // quarantine row, no audit row).
    let outcome = conn.transaction::<_, ApiError, _>(|conn| {
        let result = crate::sync::ingest::ingest(conn, &author, &[group], ChangeEncoding::Base64)?;
        let result = result
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("no result"))?;
        match result.errors.first() {
            Some(e) => Err(ApiError::Validation(vec![crate::error::FieldError::new(
                "id",
                "still_refused",
                format!("{}: {}", e.code, e.message),
            )])),
            None => Ok(result),
        }
    })?;
    let note = if outcome.pending.is_empty() {
        "applied".to_string()
    } else {
        "held: it waits for changes it depends on".to_string()
    };
    decide(conn, principal, &r, QuarantineStatus::Released, &note)?;
    get(conn, principal, id)
}

/// Dismisses a quarantined change with a reason; it stays, with its bytes.
pub fn dismiss(
    conn: &mut DbConnection,
    principal: &Principal,
    id: i64,
    req: &DismissRequest,
) -> Result<QuarantineResponse, ApiError> {
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::validation(
            "reason",
            "invalid",
            "the reason must have 1 to 500 characters",
        ));
    }
    let r = load(conn, principal, id)?;
    if r.status != QuarantineStatus::Open.as_str() {
        return Err(not_open(&r));
    }
    decide(conn, principal, &r, QuarantineStatus::Dismissed, reason)?;
    get(conn, principal, id)
}
