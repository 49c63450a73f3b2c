//! Sync: ingest pushed changes (verify, apply, store, project) and serve pulls, all in
//! one round trip (`POST /api/v1/sync`).

pub mod conflicts;
pub mod ingest;
pub mod projection;
pub mod pull;
pub mod store;

use sync_protocol::messages::{SyncRequest, SyncResponse};

use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{DbConnection, write_transaction},
    error::ApiError,
};

/// Server-side bounds on one response.
pub const MAX_PULL_BYTES: usize = 1024 * 1024;

/// Handles one sync request: the push is committed in one transaction (so a 2xx means
/// every accepted change is durable), then the pull is read.
pub fn handle(
    conn: &mut DbConnection,
    principal: &Principal,
    request: SyncRequest,
) -> Result<SyncResponse, ApiError> {
    if !sync_protocol::version::is_supported(request.protocol_version) {
        return Err(ApiError::bad_request(
            "unsupported_protocol_version",
            format!(
                "protocol version {} is not supported; this server speaks {} to {}",
                request.protocol_version,
                sync_protocol::version::MIN_SUPPORTED_VERSION,
                sync_protocol::PROTOCOL_VERSION
            ),
        ));
    }
    let pushed: usize = request.push.iter().map(|g| g.changes.len()).sum();
    let push = if request.push.is_empty() {
        Vec::new()
    } else {
        with_retries(|| {
            write_transaction(conn, |conn| {
                ingest::ingest(conn, principal, &request.push, request.encoding)
            })
        })?
    };
    let pull = if request.pull {
        Some(pull::pull(
            conn,
            principal,
            request.cursor.as_deref(),
            request.max_pull_bytes,
            &request.need_full_history,
            request.encoding,
        )?)
    } else {
        None
    };
    let (mut applied, mut duplicates, mut pending, mut quarantined) = (0u32, 0u32, 0usize, 0usize);
    for r in &push {
        applied += r.applied;
        duplicates += r.duplicates;
        pending += r.pending.len();
        quarantined += r.errors.len();
    }
    let pulled: usize = pull
        .as_ref()
        .map(|p| p.docs.iter().map(|d| d.changes.len()).sum())
        .unwrap_or(0);
    write_transaction(conn, |conn| {
        AuditEvent {
            actor_user_id: Some(&principal.user_id),
            device_id: Some(&principal.device_id),
            action: "sync",
            target_type: Some("device"),
            target_id: Some(&principal.device_id),
            outcome: "success",
            request_id: principal.request_id.as_deref(),
            details: Some(serde_json::json!({
                "pushed": pushed, "applied": applied, "duplicates": duplicates,
                "pending": pending, "quarantined": quarantined, "pulled": pulled,
            })),
        }
        .record(conn)
    })?;
    tracing::info!(
        device.id = %principal.device_id,
        sync.pushed = pushed,
        sync.applied = applied,
        sync.duplicates = duplicates,
        sync.pending = pending,
        sync.quarantined = quarantined,
        sync.pulled = pulled,
        "sync"
    );
    Ok(SyncResponse {
        protocol_version: request.protocol_version,
        server_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        push,
        pull,
    })
}

/// Two requests creating the same new document race on its primary key (PostgreSQL);
/// the loser retries and then finds the row. Other errors pass through.
fn with_retries<T>(mut f: impl FnMut() -> Result<T, ApiError>) -> Result<T, ApiError> {
    use diesel::result::{DatabaseErrorKind, Error};
    let mut attempt = 0;
    loop {
        match f() {
            Err(ApiError::Database(Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure,
                _,
            ))) if attempt < 4 => {
                attempt += 1;
                tracing::debug!(attempt, "ingest retried after a concurrent insert");
            }
            other => return other,
        }
    }
}
