//! Pull: the changes in the device's scope that it lacks, by an opaque cursor (the last
//! server sequence number it has seen), paged by a byte budget, without echoing the
//! device's own changes. When the device's scope grows, the newly visible documents'
//! whole history is sent (a per-device backfill list), as it is when a document enters
//! the scope of devices that already pulled past its changes; when the device's scope
//! shrinks, or a document is moved out of it, the device is told which documents left.

use std::collections::BTreeSet;

use base64::Engine as _;
use diesel::prelude::*;
use sync_protocol::messages::{ChangeEncoding, DEFAULT_BATCH_BYTES, DocChanges, PullResult};

use super::MAX_PULL_BYTES;
use crate::{
    auth::Principal,
    db::{
        DbConnection, now,
        schema::{changes, device_sync_state, documents},
        write_transaction,
    },
    error::ApiError,
    records::{
        moves::{decode_list, decode_scope, store_lists},
        store,
    },
};

const PAGE_ROWS: i64 = 1000;

/// Cursors name the database they came from (its epoch) and a sequence number in it.
const CURSOR_PREFIX: &str = "c2_";
/// Cursors of the first version: a sequence number only (still accepted).
const CURSOR_PREFIX_V1: &str = "c1_";
/// The `server_keys` entry naming this database's history. A backup gets a new one
/// (`coopsync backup`), so a server restored from it knows the cursors of the server it
/// replaces: they may count changes it never had.
pub const EPOCH_KEY: &str = "database_epoch";

pub fn encode_cursor(epoch: &str, seq: i64) -> String {
    format!(
        "{CURSOR_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{epoch}.{seq}"))
    )
}

/// The epoch a cursor names (`None` for a first-version cursor) and its sequence number.
pub fn decode_cursor(cursor: Option<&str>) -> Result<(Option<String>, i64), ApiError> {
    let Some(cursor) = cursor else {
        return Ok((None, 0));
    };
    let bad =
        || ApiError::bad_request("invalid_cursor", "the cursor was not issued by this server");
    let (v2, raw) = match (
        cursor.strip_prefix(CURSOR_PREFIX),
        cursor.strip_prefix(CURSOR_PREFIX_V1),
    ) {
        (Some(raw), _) => (true, raw),
        (None, Some(raw)) => (false, raw),
        (None, None) => return Err(bad()),
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let (epoch, seq) = if v2 {
        let (e, s) = text.rsplit_once('.').ok_or_else(bad)?;
        (Some(e.to_string()), s)
    } else {
        (None, text)
    };
    let seq: i64 = seq.parse().map_err(|_| bad())?;
    if seq < 0 || epoch.as_ref().is_some_and(|e| e.is_empty() || e.len() > 64) {
        return Err(bad());
    }
    Ok((epoch, seq))
}

/// This database's epoch (made on first use).
pub fn epoch(conn: &mut DbConnection) -> Result<String, ApiError> {
    Ok(crate::db::models::ServerKey::get_or_create(
        conn,
        EPOCH_KEY,
        || uuid::Uuid::new_v4().simple().to_string(),
    )?)
}

/// What a device is allowed to see, as stored between pulls: the one scope rule.
pub use crate::domain::scope::Scope;

/// The stored scope of a principal.
fn scope_of(principal: &Principal) -> Scope {
    Scope::of(principal.role, &principal.assignments)
}

use crate::db::scoped;

/// The documents in `scope` (the SQL form of the rule).
pub fn docs_in(conn: &mut DbConnection, scope: &Scope) -> QueryResult<BTreeSet<String>> {
    let query = scoped!(documents::table.select(documents::id).into_boxed(), scope);
    Ok(query.load::<String>(conn)?.into_iter().collect())
}

fn in_scope(
    conn: &mut DbConnection,
    scope: &Scope,
    ids: &[String],
) -> QueryResult<BTreeSet<String>> {
    let query = scoped!(
        documents::table
            .select(documents::id)
            .filter(documents::id.eq_any(ids.to_vec()))
            .into_boxed(),
        scope
    );
    Ok(query.load::<String>(conn)?.into_iter().collect())
}

/// What `reconcile_scope` found for a pull.
struct Reconciled {
    /// Documents that left the device's scope: its own scope shrank, or they were moved
    /// out of it (`record_moves`).
    removed: Vec<String>,
    /// Documents whose whole history the device is owed.
    backfill: Vec<String>,
    /// The part of `removed` that came from the departed list (taken off once served).
    departed: Vec<String>,
}

/// Compares the scope last served to the device with its scope now; records the
/// documents to backfill and returns the documents that left.
fn reconcile_scope(
    conn: &mut DbConnection,
    device_id: &str,
    scope: &Scope,
    cursor: i64,
) -> Result<Reconciled, ApiError> {
    // Almost every pull finds the scope unchanged: answer that with a plain read, so a
    // pull does not take SQLite's write lock. A change is re-read inside the write.
    let stored: Option<(String, String, String)> = device_sync_state::table
        .find(device_id)
        .select((
            device_sync_state::scope,
            device_sync_state::backfill,
            device_sync_state::departed,
        ))
        .first(conn)
        .optional()?;
    if let Some((s, b, d)) = &stored
        && serde_json::from_str::<Scope>(s).ok().as_ref() == Some(scope)
    {
        let departed: Vec<String> = decode_list(d)?;
        return Ok(Reconciled {
            removed: departed.clone(),
            backfill: decode_list(b)?,
            departed,
        });
    }
    write_transaction(conn, |conn| {
        let row: Option<(String, String, String)> = device_sync_state::table
            .find(device_id)
            .select((
                device_sync_state::scope,
                device_sync_state::backfill,
                device_sync_state::departed,
            ))
            .first(conn)
            .optional()?;
        let (old, mut backfill, departed): (Option<Scope>, Vec<String>, Vec<String>) = match &row {
            Some((s, b, d)) => (Some(decode_scope(s)?), decode_list(b)?, decode_list(d)?),
            None => (None, Vec::new(), Vec::new()),
        };
        let mut removed = Vec::new();
        let changed = old.as_ref() != Some(scope);
        if changed {
            // A device starting from cursor 0 gets everything in its scope now by the
            // normal path: nothing is owed to it from an earlier scope.
            if cursor == 0 {
                backfill.clear();
            }
            if let (Some(old), true) = (&old, cursor > 0) {
                let before = docs_in(conn, old)?;
                let after = docs_in(conn, scope)?;
                removed = before.difference(&after).cloned().collect();
                let mut set: BTreeSet<String> = backfill.into_iter().collect();
                set.extend(after.difference(&before).cloned());
                set.retain(|d| !removed.contains(d));
                backfill = set.into_iter().collect();
            }
            let scope_json = serde_json::to_string(scope).map_err(ApiError::internal)?;
            let backfill_json = serde_json::to_string(&backfill).map_err(ApiError::internal)?;
            if row.is_some() {
                diesel::update(device_sync_state::table.find(device_id))
                    .set((
                        device_sync_state::scope.eq(&scope_json),
                        device_sync_state::backfill.eq(&backfill_json),
                        device_sync_state::updated_at.eq(now()),
                    ))
                    .execute(conn)?;
            } else {
                diesel::insert_into(device_sync_state::table)
                    .values((
                        device_sync_state::device_id.eq(device_id),
                        device_sync_state::scope.eq(&scope_json),
                        device_sync_state::backfill.eq(&backfill_json),
                        device_sync_state::updated_at.eq(now()),
                    ))
                    .execute(conn)?;
            }
        }
        let mut all_removed: BTreeSet<String> = removed.into_iter().collect();
        all_removed.extend(departed.iter().cloned());
        Ok(Reconciled {
            removed: all_removed.into_iter().collect(),
            backfill,
            departed,
        })
    })
}

/// Takes the documents just sent off the device's backfill list, and the departures just
/// announced off its departed list. Read again inside the write: a push may have added
/// documents since this pull read the lists.
fn take_served(
    conn: &mut DbConnection,
    device_id: &str,
    served: &BTreeSet<String>,
    announced: &[String],
) -> Result<(), ApiError> {
    write_transaction(conn, |conn| {
        let stored: Option<(String, String)> = device_sync_state::table
            .find(device_id)
            .select((device_sync_state::backfill, device_sync_state::departed))
            .first(conn)
            .optional()?;
        let Some((backfill, departed)) = stored else {
            return Ok(());
        };
        let mut backfill: Vec<String> = decode_list(&backfill)?;
        backfill.retain(|d| !served.contains(d));
        let mut departed: Vec<String> = decode_list(&departed)?;
        departed.retain(|d| !announced.contains(d));
        Ok(store_lists(conn, device_id, &backfill, &departed)?)
    })
}

struct Page {
    docs: Vec<DocChanges>,
    bytes: usize,
    encoding: ChangeEncoding,
}

impl Page {
    fn add(&mut self, doc_id: &str, doc_type: &str, bytes: &[u8]) {
        let encoded = self.encoding.encode(bytes);
        self.bytes += bytes.len();
        match self.docs.last_mut() {
            Some(last) if last.doc_id == doc_id => last.changes.push(encoded),
            _ => match self.docs.iter_mut().find(|d| d.doc_id == doc_id) {
                Some(d) => d.changes.push(encoded),
                None => self.docs.push(DocChanges {
                    doc_id: doc_id.to_string(),
                    doc_type: doc_type.to_string(),
                    changes: vec![encoded],
                }),
            },
        }
    }
}

pub fn pull(
    conn: &mut DbConnection,
    principal: &Principal,
    cursor: Option<&str>,
    max_bytes: Option<usize>,
    need_full_history: &[String],
    encoding: ChangeEncoding,
) -> Result<PullResult, ApiError> {
    let (cursor_epoch, since) = decode_cursor(cursor)?;
    let epoch = epoch(conn)?;
    // A cursor of another history (the server was restored from a backup): its number
    // may count changes this database never had. Everything in scope is served again and
    // the device is told to push all its changes again (`resync`).
    let resync = cursor_epoch.is_some_and(|e| e != epoch);
    let since = if resync { 0 } else { since };
    let scope = scope_of(principal);
    let budget = max_bytes
        .unwrap_or(DEFAULT_BATCH_BYTES)
        .clamp(1024, MAX_PULL_BYTES);
    let Reconciled {
        removed,
        mut backfill,
        departed,
    } = reconcile_scope(conn, &principal.device_id, &scope, since)?;
    let mut page = Page {
        docs: Vec::new(),
        bytes: 0,
        encoding,
    };

    // Whole histories first: documents the device asked for, then the backfill.
    // Checked before the push (`sync::handle`): every entry is a canonical id here.
    let mut wanted: Vec<String> = need_full_history
        .iter()
        .filter_map(|d| sync_protocol::ids::canonical_id(d))
        .collect();
    wanted.truncate(1000);
    let allowed = in_scope(conn, &scope, &wanted)?;
    wanted.retain(|d| allowed.contains(d));
    let requested: Vec<String> = wanted.clone();
    wanted.extend(backfill.iter().cloned());
    let mut served = BTreeSet::new();
    for doc_id in wanted {
        if page.bytes >= budget && !page.docs.is_empty() {
            break;
        }
        if served.contains(&doc_id) {
            continue;
        }
        let Some(doc) = store::find_document(conn, &doc_id)? else {
            served.insert(doc_id);
            continue;
        };
        // Every document served passes the scope rule now, whatever a list said when it
        // was written: an owed document that left the scope since is dropped, not sent.
        if !scope.sees(doc.province_code.as_deref(), doc.cooperative_id.as_deref()) {
            served.insert(doc_id);
            continue;
        }
        let rows = store::document_changes(conn, &doc_id)?;
        let size: usize = rows.iter().map(|r| r.bytes.len()).sum();
        // Whole histories page within the byte budget too; one larger than the budget is
        // sent alone.
        if !page.docs.is_empty() && page.bytes + size > budget {
            break;
        }
        served.insert(doc_id.clone());
        for row in rows {
            page.add(&doc_id, &doc.doc_type, &row.bytes);
        }
    }
    if !departed.is_empty() || backfill.iter().any(|d| served.contains(d)) {
        take_served(conn, &principal.device_id, &served, &departed)?;
    }
    backfill.retain(|d| !served.contains(d));
    // Documents asked for that did not fit this page: the device asks again.
    let requested_left = requested.iter().any(|d| !served.contains(d));

    // Then new changes, in server order.
    let (next_cursor, more_changes) = conn.transaction::<_, ApiError, _>(|conn| {
        let high = store::current_seq(conn)?;
        if page.bytes >= budget {
            return Ok((since, high > since));
        }
        let query = scoped!(
            changes::table
                .inner_join(documents::table)
                .filter(changes::seq.gt(since))
                .filter(changes::device_id.ne(&principal.device_id))
                .order(changes::seq)
                .limit(PAGE_ROWS)
                .select((
                    changes::seq,
                    changes::document_id,
                    documents::doc_type,
                    changes::bytes
                ))
                .into_boxed(),
            &scope
        );
        let rows: Vec<(i64, String, String, Vec<u8>)> = query.load(conn)?;
        let full_page = rows.len() as i64 == PAGE_ROWS;
        let mut last = since;
        for (seq, doc_id, doc_type, bytes) in &rows {
            if page.bytes + bytes.len() > budget && !page.docs.is_empty() {
                return Ok((last, true));
            }
            page.add(doc_id, doc_type, bytes);
            last = *seq;
        }
        if full_page {
            Ok((last, true))
        } else {
            Ok((last.max(high), false))
        }
    })?;
    Ok(PullResult {
        docs: page.docs,
        removed,
        cursor: encode_cursor(&epoch, next_cursor),
        resync,
        more: more_changes || !backfill.is_empty() || requested_left,
    })
}
