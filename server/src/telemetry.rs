//! Logging setup and the request middleware: a request id on every request and log line,
//! one access-log line per request, and panics turned into a 500 envelope instead of a
//! dropped connection. Bodies, tokens, names and phone numbers are never logged.

use std::{panic::AssertUnwindSafe, time::Instant};

use actix_web::{
    HttpMessage,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::HeaderValue,
    middleware::Next,
};
use futures_util::FutureExt;
use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt};

use crate::{config::LogFormat, error::ApiError};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request, also returned in the `X-Request-Id` header.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log redirected to a file or a pipe (journald, a
    // container's collector) must not carry ANSI escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Replaces the panic hook of the server process. Panics inside automerge on hostile
/// input are caught and answered per change, but the default hook would print their
/// messages, which may quote document content (names, phone numbers): only the
/// location is logged. Not used in tests, whose assertion messages must stay visible.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic.location = %location, "panic (message withheld: it may quote record content)");
    }));
}

/// A client-supplied id is kept only if it is short and plain, so it cannot inject
/// anything into logs.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request.id = %id,
        http.method = %req.method(),
        http.path = %req.path(),
        user.id = tracing::field::Empty,
    );
    let started = Instant::now();
    // The request cannot be cloned before routing (actix needs it uniquely owned), so
    // a panic is returned as an error, which actix turns into the error's response.
    let outcome = AssertUnwindSafe(next.call(req).instrument(span.clone()))
        .catch_unwind()
        .await;
    let mut response = match outcome {
        Ok(Ok(res)) => res.map_into_boxed_body(),
        Ok(Err(err)) => {
            let status = err.as_response_error().status_code().as_u16();
            span.in_scope(|| tracing::info!(http.status = status, "request failed"));
            return Err(err);
        }
        Err(_) => {
            span.in_scope(|| tracing::error!(http.status = 500, "handler panicked"));
            return Err(ApiError::internal("handler panicked").into());
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(REQUEST_ID_HEADER),
            value,
        );
    }
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(state) = response
        .request()
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
    {
        state.metrics.observe(
            response
                .request()
                .match_pattern()
                .as_deref()
                .unwrap_or("unmatched"),
            response.request().method().as_str(),
            status,
            elapsed_ms / 1000.0,
        );
    }
    // Server time, so clients and benchmarks can tell it from network time.
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={elapsed_ms:.1}")) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("server-timing"),
            value,
        );
    }
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(http.status = status, elapsed_ms, "request finished");
        } else {
            tracing::info!(http.status = status, elapsed_ms, "request finished");
        }
    });
    Ok(response)
}
