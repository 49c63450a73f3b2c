//! The write path for changes the server makes for an admin (a conflict resolution, a
//! correction): the same commit as a tablet's push (lock the document, verify on a copy
//! that the result saves and loads, log with a sequence number, snapshot, project,
//! conflicts, scope moves, cache: `sync::ingest::store_applied` and `Batch::flush`), with
//! the server as the author. A server change is made by this process's own actor id
//! (random at start, so never shared between two processes: under the document lock its
//! sequence number follows its own earlier changes to that document), recorded with the
//! admin's user id and the device name `server`, and reaches every tablet by the
//! ordinary pull.

use std::collections::HashMap;

use automerge::{
    ActorId, Automerge, AutomergeError, ObjType, ROOT, ReadDoc, ScalarValue, Value,
    transaction::{CommitOptions, Transaction},
};
use chrono::Utc;
use serde_json::Value as Json;
use sync_protocol::{
    documents::{Cooperative, DocType, Finding, Member, TrainingSession},
    messages::ChangeEncoding,
};

use crate::{
    db::{DbConnection, now},
    error::ApiError,
    sync::{
        doc_cache,
        ingest::{self, Applier, Batch, Candidate, Origin},
        store,
    },
};

pub mod edit;
pub mod history;
pub mod read;

/// The device name server changes are recorded under.
pub const SERVER_DEVICE: &str = "server";

/// Why a server change was not made.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("no such record")]
    NotFound,
    #[error("the record exists already")]
    Exists,
    #[error("the edit changes nothing")]
    Unchanged,
    #[error("the edit cannot be written: {0}")]
    Edit(#[from] AutomergeError),
    #[error("the result does not verify: {0}")]
    Verify(String),
    #[error(transparent)]
    Store(#[from] ApiError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// A change the server committed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub hash: String,
    pub doc_type: DocType,
    /// The document with the change, as stored: callers validate it without reading the
    /// snapshot back.
    pub doc: Automerge,
}

/// The document as stored now (for reading before an edit; no lock).
pub fn current(conn: &mut DbConnection, doc_id: &str) -> Result<(DocType, Automerge), CommitError> {
    let row = store::find_document(conn, doc_id)?.ok_or(CommitError::NotFound)?;
    let doc_type = DocType::parse(&row.doc_type).ok_or(CommitError::NotFound)?;
    let doc = match doc_cache::get(doc_id, &row.heads) {
        Some(doc) => doc,
        None => ingest::load_snapshot(&row.snapshot)?,
    };
    Ok((doc_type, doc))
}

/// Makes one change to `doc_id` as the server, for the admin `admin_user_id`: `edit`
/// writes it in a transaction on the document as it is under the lock, so its
/// dependencies are the current heads and it supersedes every value it overwrites, on
/// every replica. Runs in the caller's transaction.
pub fn commit(
    conn: &mut DbConnection,
    actor: &ActorId,
    admin_user_id: &str,
    doc_id: &str,
    edit: impl FnOnce(&mut Transaction<'_>, &Automerge) -> Result<(), AutomergeError>,
) -> Result<Committed, CommitError> {
    let row = store::lock_document(conn, doc_id)?.ok_or(CommitError::NotFound)?;
    let doc_type = DocType::parse(&row.doc_type).ok_or(CommitError::NotFound)?;
    let base = match doc_cache::get(doc_id, &row.heads) {
        Some(doc) => doc,
        None => ingest::load_snapshot(&row.snapshot)?,
    };
    store_server_change(
        conn,
        actor,
        admin_user_id,
        doc_id,
        doc_type,
        Some(&row),
        base,
        edit,
    )
}

/// Creates the document `doc_id` as the server, for the admin `admin_user_id` (an import):
/// `write` writes its first change into an empty document (with the document's `id` at
/// the root, as a tablet's first change has it), committed like any other
/// (verified, logged, projected) so tablets pull it. A document that exists already is
/// `CommitError::Exists`, and is left as it is: ids derived from a natural key make a
/// second import of the same row create nothing. Runs in the caller's transaction.
pub fn create(
    conn: &mut DbConnection,
    actor: &ActorId,
    admin_user_id: &str,
    doc_id: &str,
    doc_type: DocType,
    write: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
) -> Result<Committed, CommitError> {
    // The lock is taken for a document that does not exist yet too (PostgreSQL's
    // advisory lock on the id), so two imports of one row cannot both create it.
    if store::lock_document(conn, doc_id)?.is_some() {
        return Err(CommitError::Exists);
    }
    store_server_change(
        conn,
        actor,
        admin_user_id,
        doc_id,
        doc_type,
        None,
        Automerge::new(),
        // The document's own id at the root, as every tablet writes it in a first change
        // (docs/sync-protocol.md, "Document schemas").
        |tx, _| {
            automerge::transaction::Transactable::put(
                tx,
                ROOT,
                "id",
                ScalarValue::Str(doc_id.into()),
            )?;
            write(tx)
        },
    )
}

/// The shared half of `commit` and `create`: the server's change on `base` (the stored
/// document, or an empty one), verified like a tablet's and stored by the one write path.
#[allow(clippy::too_many_arguments, reason = "the parts of one commit, named")]
fn store_server_change(
    conn: &mut DbConnection,
    actor: &ActorId,
    admin_user_id: &str,
    doc_id: &str,
    doc_type: DocType,
    row: Option<&store::DocumentRow>,
    base: Automerge,
    edit: impl FnOnce(&mut Transaction<'_>, &Automerge) -> Result<(), AutomergeError>,
) -> Result<Committed, CommitError> {
    let mut scratch = base.clone();
    scratch.set_actor(actor.clone());
    let mut tx = scratch.transaction();
    edit(&mut tx, &base)?;
    let seconds = chrono::Utc::now().timestamp();
    let (hash, _) = tx.commit_with(CommitOptions::default().with_time(seconds));
    let hash = hash.ok_or(CommitError::Unchanged)?;
    let change = scratch
        .get_change_by_hash(&hash)
        .ok_or_else(|| CommitError::Verify("the new change is missing".into()))?;
    // Verified like a tablet's change: applied to a copy of the stored document, saved and
    // loaded back with the same heads.
    let (doc, saved) =
        ingest::try_apply(&base, vec![change.clone()]).map_err(CommitError::Verify)?;
    let who = Applier {
        device_id: SERVER_DEVICE,
        user_id: admin_user_id,
    };
    let candidate = Candidate {
        // Some: bind the server's actor on its first change, as a device's.
        index: Some(0),
        hash: hash.to_string(),
        bytes: change.raw_bytes().to_vec(),
        change,
        origin: Origin {
            device_id: SERVER_DEVICE.to_string(),
            user_id: admin_user_id.to_string(),
            received_at: now(),
        },
    };
    let mut owners: HashMap<String, (String, String)> =
        store::actor_owners(conn, &[actor.to_hex_string()])?;
    let mut batch = Batch::default();
    let stored = doc.clone();
    ingest::store_applied(
        conn,
        who,
        doc_id,
        doc_type,
        row,
        doc,
        Some(saved),
        std::slice::from_ref(&candidate),
        None,
        &mut owners,
        ChangeEncoding::Base64,
        &mut batch,
    )?;
    batch.flush(conn)?;
    Ok(Committed {
        hash: candidate.hash,
        doc_type,
        doc: stored,
    })
}

/// The JSON value as the canonical Automerge scalar of the schemas (strings as Str,
/// whole numbers as Int, others as F64).
pub fn scalar(value: &Json) -> Result<ScalarValue, ApiError> {
    Ok(match value {
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) if n.is_i64() => ScalarValue::Int(n.as_i64().unwrap_or_default()),
        Json::Number(n) => ScalarValue::F64(n.as_f64().unwrap_or_default()),
        Json::Null => ScalarValue::Null,
        _ => {
            return Err(ApiError::validation(
                "value",
                "invalid",
                "a resolution is a string, a number, true/false or null",
            ));
        }
    })
}

/// The object and key of a conflict's field: a field of the record (`village`) or of an
/// attendance entry (`attendance.<participant>.hours`).
pub fn locate(doc: &Automerge, field: &str) -> Result<(automerge::ObjId, String), ApiError> {
    let unsupported = || {
        ApiError::bad_request(
            "unsupported_conflict",
            "only conflicts on a field of a record or of an attendance entry can be resolved here",
        )
    };
    match field.split_once('.') {
        None => Ok((ROOT, field.to_string())),
        Some(("attendance", rest)) => {
            let (pid, key) = rest.rsplit_once('.').ok_or_else(unsupported)?;
            let att = match doc.get(ROOT, "attendance") {
                Ok(Some((Value::Object(ObjType::Map), id))) => id,
                _ => return Err(unsupported()),
            };
            match doc.get(&att, pid) {
                Ok(Some((Value::Object(ObjType::Map), entry))) => Ok((entry, key.to_string())),
                _ => Err(unsupported()),
            }
        }
        Some(_) => Err(unsupported()),
    }
}

pub fn findings(doc_type: DocType, doc: &Automerge) -> Vec<Finding> {
    let year = chrono::Datelike::year(&Utc::now()) as i64;
    match doc_type {
        DocType::Cooperative => {
            let (c, mut f) = Cooperative::read(doc);
            f.extend(c.validate());
            f
        }
        DocType::Member => {
            let (m, mut f) = Member::read(doc);
            f.extend(m.validate(year));
            f
        }
        DocType::TrainingSession => {
            let (s, mut f) = TrainingSession::read(doc);
            f.extend(s.validate());
            f
        }
    }
}
