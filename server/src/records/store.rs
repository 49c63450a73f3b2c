//! Database access for sync: documents and their locks, the change log and its sequence
//! counter, held and quarantined changes, actor ownership.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::{
    DbConnection,
    schema::{actors, changes, documents, pending_changes, quarantine, sync_counter},
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = documents)]
pub struct DocumentRow {
    pub id: String,
    pub doc_type: String,
    pub province_code: Option<String>,
    pub cooperative_id: Option<String>,
    pub snapshot: Vec<u8>,
    pub heads: String,
    pub change_count: i64,
    pub last_seq: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// The device whose push created it (`None` when it was created before this was
    /// recorded; an update leaves it as it is).
    pub created_by_device: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = changes)]
pub struct ChangeRow {
    pub seq: i64,
    pub hash: String,
    pub document_id: String,
    pub actor: String,
    pub actor_seq: i64,
    pub device_id: String,
    pub user_id: String,
    pub received_at: NaiveDateTime,
    pub device_time: i64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pending_changes)]
pub struct PendingRow {
    pub hash: String,
    pub document_id: String,
    pub doc_type: String,
    pub device_id: String,
    pub user_id: String,
    pub received_at: NaiveDateTime,
    pub missing_deps: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = quarantine)]
pub struct NewQuarantine {
    pub received_at: NaiveDateTime,
    pub device_id: String,
    pub user_id: String,
    pub document_id: Option<String>,
    pub doc_type: Option<String>,
    pub hash: Option<String>,
    pub code: String,
    pub reason: String,
    pub bytes: Option<Vec<u8>>,
    /// Set when stored: the size and SHA-256 of the whole bytes (only a prefix is kept).
    pub original_size: Option<i64>,
    pub bytes_sha256: Option<String>,
}

/// Loads a document, holding its lock until the transaction ends. On PostgreSQL a
/// transaction-scoped advisory lock on the id serialises writers of a document that
/// does not exist yet too (a row lock needs a row); on SQLite the write transaction
/// already holds the database's write lock.
pub fn lock_document(conn: &mut DbConnection, id: &str) -> QueryResult<Option<DocumentRow>> {
    if let DbConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind::<diesel::sql_types::Text, _>(id)
            .execute(pg)?;
        diesel::sql_query("SELECT id FROM documents WHERE id = $1 FOR UPDATE")
            .bind::<diesel::sql_types::Text, _>(id)
            .execute(pg)?;
    }
    documents::table
        .find(id)
        .select(DocumentRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_document(conn: &mut DbConnection, id: &str) -> QueryResult<Option<DocumentRow>> {
    documents::table
        .find(id)
        .select(DocumentRow::as_select())
        .first(conn)
        .optional()
}

pub fn document_exists(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(documents::table.find(id))).get_result(conn)
}

/// Gives the members of `cooperative` its province as their scope, and returns the
/// members whose scope changed, each with the province it had before. A member pushed
/// before its cooperative (another batch of a long offline week) was stored without one,
/// and province-scoped devices and admins would never see it.
pub fn rescope_members(
    conn: &mut DbConnection,
    cooperative: &str,
    province: &str,
) -> QueryResult<Vec<(String, Option<String>)>> {
    let stale = documents::table
        .filter(documents::doc_type.eq("member"))
        .filter(documents::cooperative_id.eq(cooperative))
        .filter(
            documents::province_code
                .is_null()
                .or(documents::province_code.ne(province)),
        );
    let moved: Vec<(String, Option<String>)> = stale
        .select((documents::id, documents::province_code))
        .load(conn)?;
    if !moved.is_empty() {
        let ids: Vec<&String> = moved.iter().map(|(id, _)| id).collect();
        diesel::update(documents::table.filter(documents::id.eq_any(ids)))
            .set(documents::province_code.eq(province))
            .execute(conn)?;
    }
    Ok(moved)
}

pub fn save_document(conn: &mut DbConnection, row: &DocumentRow, exists: bool) -> QueryResult<()> {
    if exists {
        diesel::update(documents::table.find(&row.id))
            .set(row)
            .execute(conn)?;
    } else {
        diesel::insert_into(documents::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// Which of `hashes` are already in the change log.
pub fn known_hashes(
    conn: &mut DbConnection,
    hashes: &[String],
) -> QueryResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in hashes.chunks(500) {
        out.extend(
            changes::table
                .filter(changes::hash.eq_any(chunk))
                .select((changes::hash, changes::document_id))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(out)
}

/// Which of `hashes` are held as pending.
pub fn pending_hashes(
    conn: &mut DbConnection,
    hashes: &[String],
) -> QueryResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in hashes.chunks(500) {
        out.extend(
            pending_changes::table
                .filter(pending_changes::hash.eq_any(chunk))
                .select((pending_changes::hash, pending_changes::document_id))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(out)
}

/// Which of `hashes` are in quarantine (any document: a hash names one change).
pub fn quarantined_hashes(
    conn: &mut DbConnection,
    hashes: &[String],
) -> QueryResult<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for chunk in hashes.chunks(500) {
        out.extend(
            quarantine::table
                .filter(quarantine::hash.eq_any(chunk))
                .select(quarantine::hash)
                .load::<Option<String>>(conn)?
                .into_iter()
                .flatten(),
        );
    }
    Ok(out)
}

/// Documents with changes held under `marker` (a member waiting for its cooperative),
/// each with the user and device of its first held change.
pub fn pending_awaiting(
    conn: &mut DbConnection,
    marker: &str,
) -> QueryResult<Vec<(String, String, String)>> {
    let rows: Vec<(String, String, String)> = pending_changes::table
        .filter(pending_changes::missing_deps.eq(marker))
        .order((pending_changes::document_id, pending_changes::received_at))
        .select((
            pending_changes::document_id,
            pending_changes::user_id,
            pending_changes::device_id,
        ))
        .load(conn)?;
    let mut out: Vec<(String, String, String)> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|l| l.0 != row.0) {
            out.push(row);
        }
    }
    Ok(out)
}

/// Documents `device_id` created since `since`.
pub fn documents_created_by(
    conn: &mut DbConnection,
    device_id: &str,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    documents::table
        .filter(documents::created_by_device.eq(device_id))
        .filter(documents::created_at.gt(since))
        .count()
        .get_result(conn)
}

/// How many changes, and how many bytes, `device_id` has held as pending.
pub fn pending_of_device(conn: &mut DbConnection, device_id: &str) -> QueryResult<(i64, i64)> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let sql = match conn {
        DbConnection::Postgresql(_) => {
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(OCTET_LENGTH(bytes)), 0) AS BIGINT) AS bytes \
             FROM pending_changes WHERE device_id = $1"
        }
        DbConnection::Sqlite(_) => {
            "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(bytes)), 0) AS bytes \
             FROM pending_changes WHERE device_id = $1"
        }
    };
    let held: Held = diesel::sql_query(sql)
        .bind::<diesel::sql_types::Text, _>(device_id)
        .get_result(conn)?;
    Ok((held.n, held.bytes))
}

pub fn pending_for_document(conn: &mut DbConnection, doc_id: &str) -> QueryResult<Vec<PendingRow>> {
    pending_changes::table
        .filter(pending_changes::document_id.eq(doc_id))
        .order(pending_changes::received_at)
        .select(PendingRow::as_select())
        .load(conn)
}

pub fn delete_pending(conn: &mut DbConnection, hashes: &[String]) -> QueryResult<()> {
    for chunk in hashes.chunks(500) {
        diesel::delete(pending_changes::table.filter(pending_changes::hash.eq_any(chunk)))
            .execute(conn)?;
    }
    Ok(())
}

pub fn insert_pending(conn: &mut DbConnection, rows: &[PendingRow]) -> QueryResult<()> {
    for row in rows {
        diesel::insert_into(pending_changes::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// Device and user owning each of `actors`, for those already bound.
pub fn actor_owners(
    conn: &mut DbConnection,
    actor_ids: &[String],
) -> QueryResult<HashMap<String, (String, String)>> {
    let mut out = HashMap::new();
    for chunk in actor_ids.chunks(500) {
        out.extend(
            actors::table
                .filter(actors::actor.eq_any(chunk))
                .select((actors::actor, actors::device_id, actors::user_id))
                .load::<(String, String, String)>(conn)?
                .into_iter()
                .map(|(a, d, u)| (a, (d, u))),
        );
    }
    Ok(out)
}

pub fn bind_actor(
    conn: &mut DbConnection,
    actor: &str,
    device_id: &str,
    user_id: &str,
) -> QueryResult<()> {
    diesel::insert_into(actors::table)
        .values((
            actors::actor.eq(actor),
            actors::device_id.eq(device_id),
            actors::user_id.eq(user_id),
            actors::first_seen.eq(crate::db::now()),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Reserves `n` consecutive sequence numbers and returns the first. The counter row stays
/// locked until commit, so numbers become visible in the order they were given out.
pub fn allocate_seqs(conn: &mut DbConnection, n: i64) -> QueryResult<i64> {
    diesel::update(sync_counter::table.find("changes"))
        .set(sync_counter::value.eq(sync_counter::value + n))
        .execute(conn)?;
    let last: i64 = sync_counter::table
        .find("changes")
        .select(sync_counter::value)
        .first(conn)?;
    Ok(last - n + 1)
}

/// The highest sequence number committed so far.
pub fn current_seq(conn: &mut DbConnection) -> QueryResult<i64> {
    sync_counter::table
        .find("changes")
        .select(sync_counter::value)
        .first(conn)
}

/// Inserts `rows` into `table` 100 rows per statement. Multi-row inserts, which diesel's
/// multi-backend connection cannot express, go to the concrete connection.
macro_rules! insert_chunked {
    ($conn:expr, $table:expr, $rows:expr) => {{
        for chunk in $rows.chunks(100) {
            match &mut *$conn {
                $crate::db::DbConnection::Postgresql(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)?;
                }
                $crate::db::DbConnection::Sqlite(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)?;
                }
            }
        }
    }};
}
pub(crate) use insert_chunked;

pub fn insert_changes(conn: &mut DbConnection, rows: &[ChangeRow]) -> QueryResult<()> {
    insert_chunked!(conn, changes::table, rows);
    Ok(())
}

/// Who wrote a change: device, user and server receive time.
pub fn change_origins(
    conn: &mut DbConnection,
    hashes: &[String],
) -> QueryResult<HashMap<String, (String, String, NaiveDateTime)>> {
    let mut out = HashMap::new();
    for chunk in hashes.chunks(500) {
        for (hash, device, user, at) in changes::table
            .filter(changes::hash.eq_any(chunk))
            .select((
                changes::hash,
                changes::device_id,
                changes::user_id,
                changes::received_at,
            ))
            .load::<(String, String, String, NaiveDateTime)>(conn)?
        {
            out.insert(hash, (device, user, at));
        }
    }
    Ok(out)
}

/// All change bytes of a document, in log order (for rebuilds and full-history pulls).
pub fn document_changes(conn: &mut DbConnection, doc_id: &str) -> QueryResult<Vec<ChangeRow>> {
    changes::table
        .filter(changes::document_id.eq(doc_id))
        .order(changes::seq)
        .select(ChangeRow::as_select())
        .load(conn)
}
