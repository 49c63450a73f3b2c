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

pub use crate::state::AppState;
use crate::{
    api,
    config::Settings,
    db::{Database, DbSetupError},
    error::{ApiError, envelope},
    state::build_state,
    telemetry,
};

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
    .configure(crate::web::configure)
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
                .wrap(from_fn(crate::web::security_headers))
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

    /// [`run_until_stopped`](Self::run_until_stopped), calling `started` once the workers
    /// run and the SIGTERM/SIGINT handlers are installed. The server's first poll does
    /// both; before it a SIGTERM is the default kill, so a "listening" line printed
    /// earlier let a supervisor's prompt stop kill instead of drain.
    pub async fn serve(self, started: impl FnOnce(std::net::SocketAddr)) -> std::io::Result<()> {
        let addr = self.addr;
        let mut server = self.server;
        let mut started = Some(started);
        std::future::poll_fn(move |cx| {
            let polled = std::pin::Pin::new(&mut server).poll(cx);
            if polled.is_pending()
                && let Some(f) = started.take()
            {
                f(addr);
            }
            polled
        })
        .await
    }
}
