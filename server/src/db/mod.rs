//! Database access: one connection type over PostgreSQL and SQLite, the pool, embedded
//! migrations, and the write-transaction helper that takes SQLite's write lock up front.

pub mod models;
pub mod schema;
pub mod sql;
mod write_gate;

use std::time::Duration;

use diesel::{
    connection::{AnsiTransactionManager, SimpleConnection, TransactionManager},
    pg::PgConnection,
    prelude::*,
    r2d2::{self, ManageConnection},
    sqlite::SqliteConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::ApiError;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// How long a SQLite writer waits for the write lock, in this process's queue and then
/// for other processes, before the request is answered `503 server_busy`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// The backend type of `DbConnection`, for boxed queries named in signatures.
pub type DbBackend = MultiBackend;

/// Which database engine a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Opens connections for the pool. The backend is chosen from the URL scheme, never by
/// trial: a PostgreSQL server that is down must be an error, not a new SQLite file.
#[derive(Debug, Clone)]
pub struct ConnectionFactory {
    backend: Backend,
    url: String,
}

impl ConnectionFactory {
    pub fn new(url: &str) -> Self {
        let backend = Backend::of_url(url);
        let url = match backend {
            Backend::Postgres => url.to_string(),
            Backend::Sqlite => url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url)
                .to_string(),
        };
        Self { backend, url }
    }

    pub fn connect(&self) -> ConnectionResult<DbConnection> {
        match self.backend {
            Backend::Postgres => Ok(DbConnection::Postgresql(PgConnection::establish(
                &self.url,
            )?)),
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url)?;
                // WAL lets readers run beside the writer; FULL makes every commit durable
                // across power loss, which a laptop in a provincial office will see.
                for pragma in [
                    &format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis()),
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = FULL",
                    "PRAGMA foreign_keys = ON",
                ] {
                    conn.batch_execute(pragma)
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for ConnectionFactory {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        ConnectionFactory::connect(self).map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

pub type Pool = r2d2::Pool<ConnectionFactory>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionFactory>;

/// The database handle held by the application: a pool plus the backend it talks to.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    backend: Backend,
    waits: std::sync::Arc<PoolWaits>,
}

/// How long requests waited for a pooled connection, for `/metrics`.
#[derive(Debug, Default)]
pub struct PoolWaits {
    pub count: std::sync::atomic::AtomicU64,
    pub micros: std::sync::atomic::AtomicU64,
    /// Waits of 10 ms or more: the pool was the bottleneck.
    pub slow: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

/// The pool's state: (connections open, idle, max size).
#[derive(Debug, Clone, Copy)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot connect to the {backend} database: {source}")]
    Connect {
        backend: &'static str,
        source: diesel::ConnectionError,
    },
    #[error("cannot create the connection pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("migrations failed: {0}")]
    Migrations(String),
}

impl Database {
    /// Connects, runs pending migrations, and builds the pool.
    pub fn open(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, DbSetupError> {
        let factory = ConnectionFactory::new(url);
        let backend = factory.backend;
        let mut conn = factory.connect().map_err(|source| DbSetupError::Connect {
            backend: backend.name(),
            source,
        })?;
        run_migrations(&mut conn)?;
        drop(conn);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(timeout)
            .test_on_check_out(false)
            .build(factory)?;
        Ok(Self {
            pool,
            backend,
            waits: std::sync::Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for synchronous code (CLI commands, blocking tasks).
    pub fn get(&self) -> Result<PooledConnection, ApiError> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let got = self.pool.get();
        let waited = started.elapsed();
        self.waits.count.fetch_add(1, Relaxed);
        self.waits.micros.fetch_add(
            u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
        if waited >= Duration::from_millis(10) {
            self.waits.slow.fetch_add(1, Relaxed);
        }
        got.map_err(|e| {
            self.waits.failed.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "no database connection available");
            ApiError::DatabaseUnavailable
        })
    }

    /// Connection waits so far.
    pub fn waits(&self) -> &PoolWaits {
        &self.waits
    }

    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool.max_size(),
        }
    }

    /// Runs `f` with a connection on the blocking thread pool, off the async workers.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        let db = self.clone();
        actix_web::web::block(move || {
            let mut conn = db.get()?;
            f(&mut conn)
        })
        .await?
    }
}

/// Returns the migration versions applied by this call.
pub fn run_migrations(conn: &mut DbConnection) -> Result<Vec<String>, DbSetupError> {
    let applied = match conn {
        DbConnection::Postgresql(c) => c.run_pending_migrations(PG_MIGRATIONS),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
    }
    .map_err(|e| DbSetupError::Migrations(e.to_string()))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
}

/// Reverts every migration (each `down.sql`), newest first. Used by the tests that prove
/// the down migrations work; nothing in the server calls it.
pub fn revert_all_migrations(conn: &mut DbConnection) -> Result<usize, DbSetupError> {
    let reverted = match conn {
        DbConnection::Postgresql(c) => c.revert_all_migrations(PG_MIGRATIONS),
        DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE_MIGRATIONS),
    }
    .map_err(|e| DbSetupError::Migrations(e.to_string()))?;
    Ok(reverted.len())
}

/// Runs `f` in a write transaction. On SQLite it begins with `BEGIN IMMEDIATE`, so the
/// write lock is taken (waiting up to the busy timeout) before any read: a deferred
/// transaction that reads first and upgrades later fails at once with SQLITE_BUSY. Before
/// that, writers of this process wait their turn in arrival order (`write_gate`).
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    // Dropped after commit or rollback, letting the next writer in line go.
    let mut _turn = None;
    match conn {
        DbConnection::Sqlite(c) => {
            if let Some(file) = sqlite_file(c)? {
                _turn = Some(
                    write_gate::gate_for(&file)
                        .enter(SQLITE_BUSY_TIMEOUT)
                        .ok_or_else(locked)?,
                );
            }
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
        }
        DbConnection::Postgresql(c) => {
            <AnsiTransactionManager as TransactionManager<PgConnection>>::begin_transaction(c)?;
        }
    }
    match f(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            // The caller's error is the one worth reporting; a failed rollback leaves the
            // connection marked broken and the pool discards it.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(error)
        }
    }
}

/// The file behind a SQLite connection; `None` for an in-memory database, which no other
/// connection shares.
fn sqlite_file(c: &mut SqliteConnection) -> Result<Option<String>, diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Attached {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        file: String,
    }
    let attached: Vec<Attached> = diesel::sql_query("PRAGMA database_list").load(c)?;
    Ok(attached
        .into_iter()
        .find(|a| a.name == "main" && !a.file.is_empty())
        .map(|a| a.file))
}

/// The error SQLite gives when its own wait for the write lock runs out; the same
/// stable answer (`503 server_busy`) for a wait that ran out in this process's queue.
fn locked() -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::Unknown,
        Box::new("database is locked (write queue)".to_string()),
    )
}

/// The scope rule (`domain::scope::Scope`) as a condition on `documents`, for a scope
/// that is not `all`: the one SQL form of the rule.
///
/// An empty list is bound as `IN (NULL)`, which matches no row, not left empty: diesel
/// writes an empty `IN` as `1=0`, and SQLite then reads `1=0 OR cooperative_id IN (…)`
/// as no index condition at all — the pull of an enumerator assigned cooperatives only
/// walked the whole change log since its cursor by `seq`, every document of the
/// country, instead of its cooperatives' documents. `e2e::scope` pins that the condition
/// still selects exactly what the rule sees, empty lists included, on both backends.
macro_rules! scope_condition {
    ($scope:expr) => {{
        let scope: &$crate::domain::scope::Scope = $scope;
        let list = |set: &std::collections::BTreeSet<String>| -> Vec<Option<String>> {
            if set.is_empty() {
                vec![None]
            } else {
                set.iter().cloned().map(Some).collect()
            }
        };
        let provinces = list(&scope.provinces);
        let coops = list(&scope.cooperatives);
        $crate::db::schema::documents::province_code
            .eq_any(provinces)
            .or($crate::db::schema::documents::cooperative_id.eq_any(coops))
    }};
}
pub(crate) use scope_condition;

/// Adds `scope_condition!` to a boxed query that includes the `documents` table (none for
/// `all`): used by the pull, the review queues and, as a sub-query, exports and search.
macro_rules! scoped {
    ($query:expr, $scope:expr) => {{
        let scope: &$crate::domain::scope::Scope = $scope;
        if scope.all {
            $query
        } else {
            $query.filter($crate::db::scope_condition!(scope))
        }
    }};
}
pub(crate) use scoped;

/// A stored timestamp (UTC without a zone) as a UTC time, shown as RFC 3339. Here, below
/// every layer that reads the database, so none of them imports `api` for it.
pub fn utc(t: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_naive_utc_and_offset(t, chrono::Utc)
}

/// UTC now without a zone, the form every timestamp column stores, at microsecond
/// precision: what PostgreSQL keeps, so that both backends store (and export) the same value.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let t = chrono::Utc::now().naive_utc();
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
