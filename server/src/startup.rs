//! `Application::build(settings)`: opens the database, prepares keys and binds the
//! listener (port 0 in tests); `configure` holds the routes shared by main and tests.

use std::{net::TcpListener, time::Duration};

use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    http::StatusCode,
    middleware::{Compress, from_fn},
    web,
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    api,
    auth::{jwt::JwtKeys, password::Hasher, throttle::IpThrottle},
    config::Settings,
    db::{Database, DbSetupError, models::ServerKey},
    error::{ApiError, envelope},
    telemetry,
};

/// Shared by every worker.
pub struct AppState {
    pub settings: Settings,
    pub db: Database,
    pub jwt: JwtKeys,
    pub hasher: Hasher,
    pub ip_throttle: IpThrottle,
    pub body_budget: crate::body::BodyBudget,
    pub uploads: crate::body::UploadSlots,
    pub metrics: crate::metrics::Metrics,
    /// This process's own Automerge actor for server changes (`records::commit`): random
    /// at start, so two server processes never share one.
    pub server_actor: automerge::ActorId,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<ApiError> for StartupError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Internal(cause) => StartupError::Other(cause),
            ApiError::Database(cause) => StartupError::Other(cause.to_string()),
            other => StartupError::Other(other.to_string()),
        }
    }
}

/// Opens the database (running migrations) for `settings`.
pub fn open_database(settings: &Settings) -> Result<Database, DbSetupError> {
    Database::open(
        settings.database_url.expose(),
        settings.database_pool_size,
        Duration::from_secs(settings.database_timeout_secs),
    )
}

/// The access-token key: from the settings, or generated once and kept in the database so
/// restarts and other instances on the same database accept the same tokens.
fn jwt_secret(settings: &Settings, db: &Database) -> Result<Vec<u8>, ApiError> {
    if !settings.jwt_secret.is_empty() {
        return Ok(settings.jwt_secret.expose().as_bytes().to_vec());
    }
    let mut conn = db.get()?;
    let value = ServerKey::get_or_create(&mut conn, "jwt_hs256", || {
        let mut bytes = [0u8; 48];
        // An all-zero key would be guessable; fail the insert path loudly instead.
        if getrandom::fill(&mut bytes).is_err() {
            return String::new();
        }
        hex::encode(bytes)
    })?;
    if value.len() < 64 {
        return Err(ApiError::internal(
            "stored signing key is missing or too short",
        ));
    }
    Ok(value.into_bytes())
}

pub fn build_state(settings: Settings, db: Database) -> Result<AppState, StartupError> {
    let secret = jwt_secret(&settings, &db)?;
    let jwt = JwtKeys::new(
        &secret,
        &settings.jwt_issuer,
        &settings.jwt_audience,
        settings.access_token_ttl_secs,
    );
    let hasher = Hasher::new(
        settings.max_concurrent_password_hashes,
        Duration::from_secs(settings.password_hash_queue_timeout_secs),
    )?;
    let ip_throttle = IpThrottle::new(
        settings.login_max_failures_per_ip,
        Duration::from_secs(settings.login_failure_window_secs),
    );
    let body_budget = crate::body::BodyBudget::new(settings.body_memory_budget);
    let uploads =
        crate::body::UploadSlots::new(settings.uploads_per_account, settings.uploads_per_device);
    Ok(AppState {
        settings,
        db,
        jwt,
        hasher,
        ip_throttle,
        body_budget,
        uploads,
        metrics: crate::metrics::Metrics::default(),
        server_actor: automerge::ActorId::random(),
    })
}

/// Routes, extractor error handlers and the fallback, shared by the binary and tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request("invalid_query", format!("invalid query string: {err}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _| {
        ApiError::bad_request("invalid_path", format!("invalid path: {err}")).into()
    }))
    .service(api::health::healthz)
    .service(api::health::readyz)
    .service(api::health::metrics)
    // Before the /api/v1 scope, which would otherwise claim these paths.
    .service(
        SwaggerUi::new("/api/v1/docs/{_:.*}").url("/api/v1/openapi.json", api::openapi::document()),
    )
    .service(web::redirect("/api/v1/docs", "/api/v1/docs/"))
    .configure(api::v1::configure)
    .default_service(web::to(|| async {
        envelope(StatusCode::NOT_FOUND, "not_found", "no such route")
    }));
}

pub struct Application {
    server: Server,
    addr: std::net::SocketAddr,
}

impl Application {
    /// Opens the database, prepares state and binds `settings.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let db_settings = settings.clone();
        let db = web::block(move || open_database(&db_settings))
            .await
            .map_err(|e| StartupError::Other(e.to_string()))??;
        let listener = TcpListener::bind(&settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind.clone(),
            source,
        })?;
        Self::with_listener(settings, db, listener)
    }

    pub fn with_listener(
        settings: Settings,
        db: Database,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let addr = listener
            .local_addr()
            .map_err(|e| StartupError::Other(e.to_string()))?;
        let workers = settings.workers;
        let shutdown = settings.shutdown_timeout_secs;
        // Blocking work is database work (bounded by the pool) plus password hashing
        // (bounded by its semaphore): more threads than that only cost memory.
        let blocking_threads =
            settings.database_pool_size as usize + settings.max_concurrent_password_hashes + 2;
        let state = web::Data::new(build_state(settings, db)?);
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(Compress::default())
                .wrap(from_fn(telemetry::request_context))
                .configure(configure)
        })
        .shutdown_timeout(shutdown)
        .worker_max_blocking_threads(blocking_threads)
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5));
        if let Some(workers) = workers {
            server = server.workers(workers.max(1));
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: "listener".into(),
                source,
            })?
            .run();
        Ok(Self { server, addr })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (graceful: in-flight requests finish) or `handle.stop`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
