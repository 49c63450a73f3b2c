//! Sync, the protocol edge: decode and check pushed changes and commit them through the
//! one write path (`records::commit`), then serve pulls, all in one round trip
//! (`POST /api/v1/sync`).

pub mod ingest;
pub mod pull;
pub mod quarantine;

use sync_protocol::messages::{DocPushResult, SyncRequest, SyncResponse};

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
    // Refused before the push is committed, so that a 400 never hides a stored push.
    if request.need_full_history.len() > 1000
        || request
            .need_full_history
            .iter()
            .any(|d| sync_protocol::ids::canonical_id(d).is_none())
    {
        return Err(ApiError::bad_request(
            "invalid_document_id",
            "need_full_history must hold at most 1,000 lower-case hyphenated UUIDs",
        ));
    }
    let pushed: usize = request.push.iter().map(|g| g.changes.len()).sum();
    // The audit row of a sync with a push is written in the push's transaction, so a
    // committed push always has exactly one; the pull that follows is only a read.
    let push = if request.push.is_empty() {
        Vec::new()
    } else {
        with_retries(|| {
            write_transaction(conn, |conn| {
                let push = ingest::ingest(conn, principal, &request.push, request.encoding)?;
                audit_event(principal, pushed, &push, request.pull, None).record(conn)?;
                Ok(push)
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
    let pulled: usize = pull
        .as_ref()
        .map(|p| p.docs.iter().map(|d| d.changes.len()).sum())
        .unwrap_or(0);
    if request.push.is_empty() {
        write_transaction(conn, |conn| {
            audit_event(principal, 0, &push, request.pull, Some(pulled)).record(conn)
        })?;
    }
    let totals = Totals::of(&push);
    tracing::info!(
        device.id = %principal.device_id,
        sync.pushed = pushed,
        sync.applied = totals.applied,
        sync.duplicates = totals.duplicates,
        sync.pending = totals.pending,
        sync.quarantined = totals.quarantined,
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

#[derive(Debug, Default)]
struct Totals {
    applied: u32,
    duplicates: u32,
    pending: usize,
    quarantined: usize,
}

impl Totals {
    fn of(push: &[DocPushResult]) -> Self {
        push.iter().fold(Self::default(), |mut t, r| {
            t.applied += r.applied;
            t.duplicates += r.duplicates;
            t.pending += r.pending.len();
            t.quarantined += r.errors.len();
            t
        })
    }
}

/// The one audit row of a sync. `pulled` is `None` when the row is written with the
/// push, before the pull has run.
fn audit_event<'a>(
    principal: &'a Principal,
    pushed: usize,
    push: &[DocPushResult],
    pull: bool,
    pulled: Option<usize>,
) -> AuditEvent<'a> {
    let t = Totals::of(push);
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: "sync",
        target_type: Some("device"),
        target_id: Some(&principal.device_id),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        details: Some(serde_json::json!({
            "pushed": pushed, "applied": t.applied, "duplicates": t.duplicates,
            "pending": t.pending, "quarantined": t.quarantined, "pull": pull, "pulled": pulled,
        })),
    }
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
