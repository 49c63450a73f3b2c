//! Backups: an online, consistent copy of a SQLite database (`VACUUM INTO`, which reads
//! one snapshot while tablets keep syncing), given a history epoch of its own; and the
//! step that marks a restored PostgreSQL database the same way. A server restored from a
//! backup lacks what was acknowledged after it was taken: the new epoch makes every
//! tablet's cursor foreign, so each tablet is told to push all its changes again
//! (`pull.resync`, docs/sync-protocol.md) and nothing acknowledged is lost.

use std::path::Path;

use diesel::prelude::*;

use crate::{
    db::{Backend, ConnectionFactory, DbConnection, schema::server_keys},
    sync::pull::EPOCH_KEY,
};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "coopsync backup copies SQLite databases; for PostgreSQL use pg_dump (docs/operations.md, Backups), then run `coopsync restored` on the restored database"
    )]
    Postgres,
    #[error("{0} exists already; choose a new file")]
    Exists(String),
    #[error("the backup path must be valid UTF-8")]
    Path,
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("cannot open the backup: {0}")]
    Connection(#[from] diesel::ConnectionError),
}

/// Writes a consistent copy of the SQLite database at `url` to `out`, and gives the copy a
/// new history epoch. Returns the size of the copy.
pub fn backup_sqlite(url: &str, out: &Path) -> Result<u64, BackupError> {
    if Backend::of_url(url) == Backend::Postgres {
        return Err(BackupError::Postgres);
    }
    if out.exists() {
        return Err(BackupError::Exists(out.display().to_string()));
    }
    let target = out.to_str().ok_or(BackupError::Path)?;
    let mut conn = ConnectionFactory::new(url).connect()?;
    // One read transaction: the copy is the database as of one moment, taken while
    // writers go on (WAL).
    diesel::sql_query(format!("VACUUM INTO '{}'", target.replace('\'', "''")))
        .execute(&mut conn)?;
    let mut copy = ConnectionFactory::new(target).connect()?;
    new_epoch(&mut copy)?;
    Ok(std::fs::metadata(out).map(|m| m.len()).unwrap_or(0))
}

/// Gives the database a new history epoch: run on a database restored from a backup, so
/// that tablets holding cursors of the replaced server push everything again.
pub fn new_epoch(conn: &mut DbConnection) -> Result<String, BackupError> {
    let epoch = uuid::Uuid::new_v4().simple().to_string();
    diesel::delete(server_keys::table.find(EPOCH_KEY)).execute(conn)?;
    diesel::insert_into(server_keys::table)
        .values((
            server_keys::name.eq(EPOCH_KEY),
            server_keys::value.eq(&epoch),
            server_keys::created_at.eq(crate::db::now()),
        ))
        .execute(conn)?;
    Ok(epoch)
}
