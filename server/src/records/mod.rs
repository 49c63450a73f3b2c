//! Records: the one write path for every change that becomes part of a record (a
//! tablet's push, an admin's resolution or correction, a merge, an import, a released
//! quarantined change), and the admin services that read and correct records.
//!
//! `commit::commit` is the entry point: under the document's lock it checks the author's
//! scope, the document's type and actor ownership, verifies the changes on a copy
//! (`verify`), holds what waits for dependencies and stores what applies: change log,
//! snapshot (`store`), scope moves (`moves`), projection (`projection`, with duplicate
//! and walk-in detection), conflicts (`conflicts`) and the cache (`doc_cache`). Only the
//! author differs: a device (`Author::Device`) or the server acting for an admin
//! (`Author::Server`, written by `server`). Nothing here imports `api` or `sync`: the
//! protocol edge (`sync::ingest`) decodes and calls in.

pub mod changed;
pub mod commit;
pub mod conflicts;
pub mod doc_cache;
pub mod duplicates;
pub mod edit;
pub mod history;
pub mod moves;
pub mod projection;
pub mod read;
pub mod server;
pub mod shape;
pub mod store;
pub mod verify;
pub mod walk_ins;

use automerge::{Automerge, AutomergeError};
use sync_protocol::documents::DocType;

pub use commit::{Author, Batch, Outcome, commit};
pub use server::{change, create, current};

/// The device name server changes are recorded under.
pub const SERVER_DEVICE: &str = "server";

/// Who sent a change and when the server got it (a device, or the server for an admin).
#[derive(Debug, Clone)]
pub struct Origin {
    pub device_id: String,
    pub user_id: String,
    pub received_at: chrono::NaiveDateTime,
}

/// Why the write path could not do what it was asked. `error.rs` alone maps these to
/// HTTP; a change a device sent that fails a check is not an error but a quarantined
/// change in the `Outcome`.
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
    /// Stored data the server itself wrote does not read back (a bug or corruption,
    /// never something a client can cause).
    #[error("stored data is inconsistent: {0}")]
    Internal(String),
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
