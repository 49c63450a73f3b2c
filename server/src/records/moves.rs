//! Scope moves: when a write changes which province or cooperative a record belongs to,
//! every device it entered is owed its whole history (backfill list) and every device it
//! left is told to drop it (departed list). Part of the write path; pull serves the lists.

use std::collections::BTreeSet;

use diesel::prelude::*;
use serde::Serialize;

use super::CommitError;
use crate::{
    db::{DbConnection, now, schema::device_sync_state},
    domain::scope::Scope,
};

/// A device's stored backfill or departed list. A row that does not decode is corruption
/// and an error, never "nothing owed to this device".
pub fn decode_list(json: &str) -> Result<Vec<String>, CommitError> {
    serde_json::from_str(json)
        .map_err(|e| CommitError::Internal(format!("device_sync_state list does not decode: {e}")))
}

pub fn decode_scope(json: &str) -> Result<Scope, CommitError> {
    serde_json::from_str(json)
        .map_err(|e| CommitError::Internal(format!("device_sync_state scope does not decode: {e}")))
}

/// Stores a device's backfill and departed lists (JSON arrays of document ids).
pub fn store_lists(
    conn: &mut DbConnection,
    device_id: &str,
    backfill: &impl Serialize,
    departed: &impl Serialize,
) -> Result<(), CommitError> {
    diesel::update(device_sync_state::table.find(device_id))
        .set((
            device_sync_state::backfill.eq(serde_json::to_string(backfill)
                .map_err(|e| CommitError::Internal(e.to_string()))?),
            device_sync_state::departed.eq(serde_json::to_string(departed)
                .map_err(|e| CommitError::Internal(e.to_string()))?),
            device_sync_state::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// A document whose scope columns (province, cooperative) changed in a push.
#[derive(Debug)]
pub struct ScopeMove {
    pub doc_id: String,
    pub before: (Option<String>, Option<String>),
    pub after: (Option<String>, Option<String>),
}

fn sees(scope: &Scope, (province, cooperative): &(Option<String>, Option<String>)) -> bool {
    scope.sees(province.as_deref(), cooperative.as_deref())
}

/// Records each moved document for every device it entered or left: entered, its whole
/// history goes on the device's backfill list (a member that arrived before its
/// cooperative, a record edited into another province); left, it goes on the device's
/// departed list and the next pull names it in `removed`, so the device deletes its copy
/// (a record edited into a province the device does not cover). Runs in the push's
/// transaction; moves are rare, so reading every device's pull state is affordable.
pub fn record_moves(conn: &mut DbConnection, moves: &[ScopeMove]) -> Result<(), CommitError> {
    if moves.is_empty() {
        return Ok(());
    }
    let devices: Vec<(String, String, String, String)> = device_sync_state::table
        .select((
            device_sync_state::device_id,
            device_sync_state::scope,
            device_sync_state::backfill,
            device_sync_state::departed,
        ))
        .load(conn)?;
    let list = |json: &str| -> Result<BTreeSet<String>, CommitError> {
        Ok(decode_list(json)?.into_iter().collect())
    };
    for (device_id, scope, backfill_json, departed_json) in devices {
        let scope = decode_scope(&scope)?;
        let (mut backfill, mut departed) = (list(&backfill_json)?, list(&departed_json)?);
        let (old_backfill, old_departed) = (backfill.clone(), departed.clone());
        for m in moves {
            match (sees(&scope, &m.before), sees(&scope, &m.after)) {
                (false, true) => {
                    backfill.insert(m.doc_id.clone());
                    departed.remove(&m.doc_id);
                }
                (true, false) => {
                    backfill.remove(&m.doc_id);
                    departed.insert(m.doc_id.clone());
                }
                _ => {}
            }
        }
        if backfill == old_backfill && departed == old_departed {
            continue;
        }
        store_lists(conn, &device_id, &backfill, &departed)?;
    }
    Ok(())
}
