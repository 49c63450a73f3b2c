//! Test harness: a real coopsync server on a loopback port (port 0), backed by a fresh
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support code: a failed expectation is a failed test"
)]
//! SQLite file or a fresh PostgreSQL database per test, and a small HTTP client.
//!
//! PostgreSQL comes from `COOPSYNC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432`). When it is unreachable the PostgreSQL half of
//! each test is skipped with a printed notice, unless `COOPSYNC_REQUIRE_POSTGRES=1`
//! (set by CI whenever it started PostgreSQL), in which case the test fails.

use std::{
    io::Write,
    net::TcpListener,
    path::PathBuf,
    sync::{OnceLock, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use coopsync::{
    config::{Secret, Settings},
    db::{Database, DbConnection},
    startup::Application,
};
use diesel::{Connection, RunQueryDsl, pg::PgConnection};
use serde_json::Value;

pub use coopsync;

pub mod admin_bench;
pub mod bench;
pub mod browser;
pub mod dedup_eval;
pub mod process;
pub mod sim;
pub mod slowlink;
pub mod tablet;
pub mod workload;

/// Signing key used by test servers, so the token battery can forge tokens with it.
pub const TEST_JWT_SECRET: &str = "test-only-signing-key-0123456789abcdef0123456789";
/// Every account the harness creates has this password.
pub const PASSWORD: &str = "correct-horse-battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn pg_base_url() -> String {
    std::env::var("COOPSYNC_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Writes straight to stderr: libtest captures `eprintln!` of passing tests, and a
/// skipped backend must never be silent.
pub fn notice(message: &str) {
    let _ = writeln!(std::io::stderr(), "NOTICE: {message}");
}

fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let ok = PgConnection::establish(&format!("{}/postgres?connect_timeout=3", pg_base_url()))
            .is_ok();
        if !ok {
            if std::env::var("COOPSYNC_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "PostgreSQL at {} is required but unreachable",
                    pg_base_url()
                );
            }
            notice(&format!(
                "PostgreSQL at {} is unreachable: the PostgreSQL half of the tests is SKIPPED",
                pg_base_url()
            ));
        }
        ok
    })
}

/// A database that exists for one test and is removed after it.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// `None` when the backend is unavailable (PostgreSQL down; a notice is printed).
    pub fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = TempDir::new();
                let url = dir.path.join("coopsync-test.db").display().to_string();
                Some(TestDb {
                    backend,
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                if !postgres_available() {
                    return None;
                }
                let name = format!("coopsync_t_{}", uuid::Uuid::new_v4().simple());
                let mut admin = PgConnection::establish(&format!("{}/postgres", pg_base_url()))
                    .expect("connect to PostgreSQL");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create test database");
                Some(TestDb {
                    backend,
                    url: format!("{}/{name}", pg_base_url()),
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }

    /// A direct connection, for assertions that look at the tables.
    pub fn connect(&self) -> DbConnection {
        coopsync::db::ConnectionFactory::new(&self.url)
            .connect()
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = &self.pg_name else { return };
        if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", pg_base_url())) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("coopsync-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Settings for a test server: loopback port 0, two workers, the test signing key.
pub fn test_settings(url: &str) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        database_url: Secret::new(url),
        database_pool_size: 4,
        jwt_secret: Secret::new(TEST_JWT_SECRET),
        workers: Some(2),
        shutdown_timeout_secs: 2,
        log_filter: std::env::var("COOPSYNC_TEST_LOG").unwrap_or_else(|_| "off".into()),
        ..Settings::default()
    }
}

/// A running server and its database.
pub struct TestApp {
    pub db: TestDb,
    pub settings: Settings,
    pub addr: String,
    pub agent: ureq::Agent,
    pub database: Database,
    server: Option<actix_web::dev::ServerHandle>,
    thread: Option<JoinHandle<()>>,
}

impl TestApp {
    pub fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {})
    }

    /// Like `spawn`, with a chance to change the settings first.
    pub fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
        let db = TestDb::create(backend)?;
        let mut settings = test_settings(&db.url);
        tweak(&mut settings);
        coopsync::telemetry::init(settings.log_format, &settings.log_filter);
        let database = coopsync::startup::open_database(&settings).expect("open database");
        let (addr, server, thread) = start_server(&settings, &database);
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        Some(TestApp {
            db,
            settings,
            addr,
            agent,
            database,
            server: Some(server),
            thread: Some(thread),
        })
    }

    /// Stops the server and starts a new one on the same database (a new pool and a new
    /// loopback port), as after a restart of the process.
    pub fn restart(&mut self) {
        self.stop();
        self.database = coopsync::startup::open_database(&self.settings).expect("reopen database");
        let (addr, server, thread) = start_server(&self.settings, &self.database);
        self.addr = addr;
        self.server = Some(server);
        self.thread = Some(thread);
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            // The stop command is sent at once; the returned future only reports completion.
            drop(server.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.agent.get(self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        Resp::from(req.call())
    }

    /// POSTs raw bytes with the given headers, for bodies the JSON helpers cannot make.
    pub fn post_bytes(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = self.agent.post(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Resp::from(req.send(body))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.send("POST", path, token, body)
    }

    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let url = self.url(path);
        let auth = token.map(|t| format!("Bearer {t}"));
        let bytes = serde_json::to_vec(body).expect("serialize body");
        let result = match method {
            "POST" => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(&bytes[..])
            }
            "PUT" => {
                let mut r = self
                    .agent
                    .put(&url)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(&bytes[..])
            }
            "PATCH" => {
                let mut r = self
                    .agent
                    .patch(&url)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send(&bytes[..])
            }
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            other => panic!("unsupported method {other}"),
        };
        Resp::from(result)
    }

    /// Creates an account directly through the service layer (as `coopsync user add` does).
    pub fn create_user(
        &self,
        username: &str,
        role: &str,
        provinces: &[&str],
        coops: &[&str],
    ) -> String {
        use coopsync::{
            accounts::{CreateUserRequest, create_user},
            domain::access::{Actor, Assignments, Role},
        };
        let hash = coopsync::auth::password::hash_blocking(PASSWORD).expect("hash");
        let req = CreateUserRequest {
            username: username.into(),
            password: String::new(),
            role: Role::parse(role).expect("role"),
            full_name: None,
            provinces: provinces.iter().map(|s| s.to_string()).collect(),
            cooperatives: coops.iter().map(|s| s.to_string()).collect(),
        };
        let actor = Actor {
            user_id: "test-harness".into(),
            role: Role::NationalAdmin,
            assignments: Assignments::default(),
        };
        let mut conn = self.database.get().expect("connection");
        create_user(&mut conn, &actor, &req, &hash, None)
            .expect("create user")
            .user
            .id
    }

    /// Signs in on a new device; returns the token response.
    pub fn login(&self, username: &str) -> Session {
        self.login_on(username, &uuid::Uuid::new_v4().to_string())
    }

    pub fn login_on(&self, username: &str, device_id: &str) -> Session {
        let r = self.post(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({
                "username": username, "password": PASSWORD,
                "device_id": device_id, "device_name": "test tablet"
            }),
        );
        assert_eq!(r.status, 200, "login {username}: {}", r.body);
        Session {
            access: r.str("access_token"),
            refresh: r.str("refresh_token"),
            user_id: r.str("user_id"),
            device_id: r.str("device_id"),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `database` on a fresh loopback port in a thread of its own.
fn start_server(
    settings: &Settings,
    database: &Database,
) -> (String, actix_web::dev::ServerHandle, JoinHandle<()>) {
    // Bound here, before the server starts: connections wait in the backlog, so no
    // test ever sleeps for readiness.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = mpsc::channel();
    let server_settings = settings.clone();
    let server_db = database.clone();
    let thread = std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        let result = system.block_on(async move {
            let app = match Application::with_listener(server_settings, server_db, listener) {
                Ok(app) => app,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok(app.handle()));
            app.run_until_stopped().await.map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            let _ = writeln!(std::io::stderr(), "test server failed: {e}");
        }
    });
    let server = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server thread started")
        .unwrap_or_else(|e: String| panic!("server failed to start: {e}"));
    (addr, server, thread)
}

/// Tokens and ids of a signed-in device.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    pub device_id: String,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Resp {
    fn from(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        let response = result.expect("HTTP request failed (connection dropped?)");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let raw = response
            .into_body()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .expect("read body");
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            raw,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("missing `{field}` in {}", self.body))
            .to_string()
    }

    /// The error code of an error envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Runs a test body against a fresh app on `backend`, skipping (with a notice) when the
/// backend is unavailable.
pub fn run_on(backend: Backend, test: fn(&TestApp)) {
    match TestApp::spawn(backend) {
        Some(app) => test(&app),
        None => notice("test skipped: backend unavailable"),
    }
}

/// Declares each listed `fn(&TestApp)` as two tests, `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! dual_backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { $crate::run_on($crate::Backend::Sqlite, super::$name) } )*
        }
        mod postgres {
            $( #[test] fn $name() { $crate::run_on($crate::Backend::Postgres, super::$name) } )*
        }
    };
}
