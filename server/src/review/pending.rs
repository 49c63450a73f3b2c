//! The waiting-changes queue: changes stored but held for dependencies the server has
//! not seen (or for a member's cooperative), per device: how many, since when, which
//! hashes are missing, and whether any of them is quarantined (then only an admin's
//! release can unblock them). Waiting longer than `pending_stale_days` is shown as stale.
//! Nothing is dropped; each device holds at most `MAX_PENDING_PER_DEVICE`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Principal,
    db::{DbConnection, now, schema::pending_changes},
    domain::access::Role,
    error::ApiError,
    records::{commit::AWAITS_COOPERATIVE, store},
};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitingDocument {
    pub document_id: String,
    pub doc_type: String,
    pub held: usize,
    /// Hashes of the changes they wait for (at most 20 shown).
    pub missing: Vec<String>,
    /// Of `missing`, those the server quarantined: release them to unblock.
    pub quarantined: Vec<String>,
    /// A new member held until this cooperative reaches the server.
    pub waits_for_cooperative: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitingDevice {
    pub device_id: String,
    pub user_id: String,
    pub held: usize,
    pub oldest: DateTime<Utc>,
    pub newest: DateTime<Utc>,
    /// The oldest has waited longer than `pending_stale_days`.
    pub stale: bool,
    pub documents: Vec<WaitingDocument>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingResponse {
    pub devices: Vec<WaitingDevice>,
    /// Changes one device may hold at most (more: `too_many_pending`).
    pub cap_per_device: i64,
}

/// Per document: changes held, hashes they miss, the cooperative a member waits for.
type Held = (usize, BTreeSet<String>, Option<String>);

/// The waiting changes of the devices the admin may see: national admins all, provincial
/// admins those of accounts they manage.
pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    stale_days: u64,
) -> Result<PendingResponse, ApiError> {
    principal.require_admin()?;
    let rows: Vec<(String, String, String, String, NaiveDateTime, String)> = pending_changes::table
        .order(pending_changes::received_at)
        .select((
            pending_changes::device_id,
            pending_changes::user_id,
            pending_changes::document_id,
            pending_changes::doc_type,
            pending_changes::received_at,
            pending_changes::missing_deps,
        ))
        .load(conn)?;
    let stale_before = now() - chrono::Duration::days(stale_days as i64);
    let mut by_device: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
    for (device, user, doc, doc_type, at, missing) in rows {
        by_device
            .entry((device, user))
            .or_default()
            .push((doc, doc_type, at, missing));
    }
    let mut devices = Vec::new();
    for ((device_id, user_id), held) in by_device {
        if principal.role != Role::NationalAdmin
            && !crate::accounts::manages(conn, &principal.actor(), &user_id)?
        {
            continue;
        }
        let oldest = held.iter().map(|h| h.2).min().unwrap_or_else(now);
        let newest = held.iter().map(|h| h.2).max().unwrap_or_else(now);
        let mut docs: BTreeMap<(String, String), Held> = BTreeMap::new();
        for (doc, doc_type, _, missing) in &held {
            let entry = docs.entry((doc.clone(), doc_type.clone())).or_default();
            entry.0 += 1;
            match missing.strip_prefix(AWAITS_COOPERATIVE) {
                Some(coop) => entry.2 = Some(coop.to_string()),
                None => entry.1.extend(
                    missing
                        .split(',')
                        .filter(|h| !h.is_empty())
                        .map(str::to_string),
                ),
            }
        }
        let mut documents = Vec::new();
        for ((document_id, doc_type), (n, missing, coop)) in docs {
            let missing: Vec<String> = missing.into_iter().take(20).collect();
            let quarantined: Vec<String> = store::quarantined_hashes(conn, &missing)?
                .into_iter()
                .collect();
            documents.push(WaitingDocument {
                document_id,
                doc_type,
                held: n,
                missing,
                quarantined,
                waits_for_cooperative: coop,
            });
        }
        devices.push(WaitingDevice {
            device_id,
            user_id,
            held: held.len(),
            oldest: DateTime::from_naive_utc_and_offset(oldest, Utc),
            newest: DateTime::from_naive_utc_and_offset(newest, Utc),
            stale: oldest < stale_before,
            documents,
        });
    }
    Ok(PendingResponse {
        devices,
        cap_per_device: crate::records::commit::MAX_PENDING_PER_DEVICE,
    })
}
