//! Server changes: an admin's decision (a conflict resolution, a correction, a merge, a
//! walk-in's link) or an import written as an Automerge change by this process's own
//! actor id (random at start, so never shared between two processes: under the document
//! lock its sequence number follows its own earlier changes to that document), then
//! committed through the one write path (`records::commit`) with `Author::Server`, so it
//! is verified, logged, projected and pulled by every tablet like a tablet's change.

use automerge::{
    ActorId, Automerge, AutomergeError, ROOT, ReadDoc, ScalarValue,
    transaction::{CommitOptions, Transaction},
};
use sync_protocol::documents::DocType;

use super::{
    Author, Batch, CommitError, Committed, Outcome, commit, store,
    verify::{Candidate, stored_doc},
};
use crate::db::DbConnection;

/// The document as stored now (for reading before an edit; no lock).
pub fn current(conn: &mut DbConnection, doc_id: &str) -> Result<(DocType, Automerge), CommitError> {
    let row = store::find_document(conn, doc_id)?.ok_or(CommitError::NotFound)?;
    let doc_type = DocType::parse(&row.doc_type).ok_or(CommitError::NotFound)?;
    let doc = stored_doc(&row)?;
    Ok((doc_type, doc))
}

/// Makes one change to `doc_id` as the server, for the admin `admin_user_id`: `edit`
/// writes it in a transaction on the document as it is under the lock, so its
/// dependencies are the current heads and it supersedes every value it overwrites, on
/// every replica. Runs in the caller's transaction.
pub fn change(
    conn: &mut DbConnection,
    actor: &ActorId,
    admin_user_id: &str,
    doc_id: &str,
    edit: impl FnOnce(&mut Transaction<'_>, &Automerge) -> Result<(), AutomergeError>,
) -> Result<Committed, CommitError> {
    let row = store::lock_document(conn, doc_id)?.ok_or(CommitError::NotFound)?;
    let doc_type = DocType::parse(&row.doc_type).ok_or(CommitError::NotFound)?;
    let base = stored_doc(&row)?;
    store_server_change(conn, actor, admin_user_id, doc_id, doc_type, base, edit)
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

/// The shared half of `change` and `create`: the server's change on `base` (the stored
/// document, or an empty one), committed by the one write path like a tablet's (checked,
/// verified on a copy, stored). A server change that the write path refuses is a bug of
/// the edit, never quarantined: the caller's transaction is rolled back.
fn store_server_change(
    conn: &mut DbConnection,
    actor: &ActorId,
    admin_user_id: &str,
    doc_id: &str,
    doc_type: DocType,
    base: Automerge,
    edit: impl FnOnce(&mut Transaction<'_>, &Automerge) -> Result<(), AutomergeError>,
) -> Result<Committed, CommitError> {
    let mut scratch = base;
    scratch.set_actor(actor.clone());
    let before = scratch.clone();
    let mut tx = scratch.transaction();
    edit(&mut tx, &before)?;
    let seconds = chrono::Utc::now().timestamp();
    let (hash, _) = tx.commit_with(CommitOptions::default().with_time(seconds));
    let hash = hash.ok_or(CommitError::Unchanged)?;
    let change = scratch
        .get_change_by_hash(&hash)
        .ok_or_else(|| CommitError::Verify("the new change is missing".into()))?;
    let author = Author::Server { admin_user_id };
    let candidate = Candidate {
        // Some: the server's actor is bound on its first change, as a device's.
        index: Some(0),
        hash: hash.to_string(),
        bytes: change.raw_bytes().to_vec(),
        change,
        origin: author.origin(),
    };
    let mut out = Outcome::new(doc_id, doc_type.as_str());
    let mut batch = Batch::default();
    commit(
        conn,
        author,
        doc_id,
        doc_type,
        vec![candidate],
        &mut out,
        &mut batch,
    )?;
    if let Some(refused) = out.result.errors.first() {
        return Err(CommitError::Verify(format!(
            "{}: {}",
            refused.code, refused.message
        )));
    }
    if out.result.applied != 1 {
        return Err(CommitError::Verify("the change was not applied".into()));
    }
    batch.flush(conn)?;
    Ok(Committed {
        hash: hash.to_string(),
        doc_type,
        doc: scratch,
    })
}
