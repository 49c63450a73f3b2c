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
    ActorId, Automerge, AutomergeError, ReadDoc,
    transaction::{CommitOptions, Transaction},
};
use sync_protocol::{documents::DocType, messages::ChangeEncoding};

use crate::{
    db::{DbConnection, now},
    error::ApiError,
    sync::{
        doc_cache,
        ingest::{self, Applier, Batch, Candidate, Origin},
        store,
    },
};

/// The device name server changes are recorded under.
pub const SERVER_DEVICE: &str = "server";

/// Why a server change was not made.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("no such record")]
    NotFound,
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
    ingest::store_applied(
        conn,
        who,
        doc_id,
        doc_type,
        Some(&row),
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
    })
}
