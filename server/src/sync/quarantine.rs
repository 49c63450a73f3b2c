//! Storing refused changes, bounded: a push of crafted bytes once made 100,000
//! quarantine rows, as many audit rows and 120 MB of database from 5.5 KB of gzip. A
//! request stores at most `MAX_ROWS_PER_REQUEST` rows, a device at most
//! `MAX_ROWS_PER_DEVICE_PER_DAY`, each row at most `MAX_STORED_BYTES` of a change's bytes
//! (with the whole size and SHA-256); what is over is summed up in one row per request
//! with its count and codes, and the request writes one audit row. The response still
//! names every refused change, so the tablet knows each one.

use std::collections::BTreeMap;

use chrono::Duration;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::records::store::NewQuarantine;
use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{DbConnection, now, schema::quarantine},
    error::ApiError,
};

/// Rows one request may store.
pub const MAX_ROWS_PER_REQUEST: usize = 256;
/// Rows one device may store in 24 hours.
pub const MAX_ROWS_PER_DEVICE_PER_DAY: i64 = 10_000;
/// Bytes of one refused change kept (a real change is a few KiB; 1 MiB is the cap).
pub const MAX_STORED_BYTES: usize = 64 * 1024;

/// Stores what this request refused, within the bounds, and writes its one audit row.
pub fn store(
    conn: &mut DbConnection,
    principal: &Principal,
    rows: Vec<NewQuarantine>,
) -> Result<(), ApiError> {
    if rows.is_empty() {
        return Ok(());
    }
    let since = now() - Duration::hours(24);
    let today: i64 = quarantine::table
        .filter(quarantine::device_id.eq(&principal.device_id))
        .filter(quarantine::received_at.gt(since))
        .count()
        .get_result(conn)?;
    let room = usize::try_from((MAX_ROWS_PER_DEVICE_PER_DAY - today).max(0))
        .unwrap_or(0)
        .min(MAX_ROWS_PER_REQUEST);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *codes.entry(r.code.clone()).or_default() += 1;
    }
    let total = rows.len();
    let mut rows = rows;
    let over = rows.split_off(room.min(total));
    for mut row in rows {
        if let Some(bytes) = row.bytes.as_mut() {
            row.original_size = Some(bytes.len() as i64);
            row.bytes_sha256 = Some(hex::encode(Sha256::digest(&bytes[..])));
            bytes.truncate(MAX_STORED_BYTES);
        }
        diesel::insert_into(quarantine::table)
            .values(&row)
            .execute(conn)?;
    }
    if let Some(first) = over.first() {
        let mut over_codes: BTreeMap<&str, usize> = BTreeMap::new();
        let mut digest = Sha256::new();
        let mut size = 0i64;
        for r in &over {
            *over_codes.entry(r.code.as_str()).or_default() += 1;
            if let Some(b) = &r.bytes {
                digest.update(b);
                size += b.len() as i64;
            }
        }
        let summary = NewQuarantine {
            received_at: first.received_at,
            device_id: principal.device_id.clone(),
            user_id: principal.user_id.clone(),
            document_id: None,
            doc_type: None,
            hash: None,
            code: "quarantine_overflow".into(),
            reason: format!(
                "{} more refused changes of this request were not stored (over the \
                 quarantine bounds); codes: {}",
                over.len(),
                over_codes
                    .iter()
                    .map(|(c, n)| format!("{c} x{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            bytes: None,
            original_size: Some(size),
            bytes_sha256: Some(hex::encode(digest.finalize())),
        };
        diesel::insert_into(quarantine::table)
            .values(&summary)
            .execute(conn)?;
    }
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action: "sync.quarantine",
        target_type: Some("device"),
        target_id: Some(&principal.device_id),
        outcome: "failure",
        request_id: principal.request_id.as_deref(),
        details: Some(serde_json::json!({
            "refused": total, "stored": total - over.len(), "not_stored": over.len(),
            "codes": codes,
        })),
    }
    .record(conn)?;
    Ok(())
}
