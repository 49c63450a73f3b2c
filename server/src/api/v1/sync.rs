//! `POST /api/v1/sync`: push changes and pull what the device lacks, in one round trip.

use actix_web::{HttpRequest, HttpResponse, post, web};
use sync_protocol::messages::{SyncRequest, SyncResponse};

use crate::{
    auth::Principal,
    body::{BodyLimits, read_body},
    error::{ApiError, ErrorBody},
    state::AppState,
};

/// One sync round trip. The body is JSON (gzip recommended, `Content-Encoding: gzip`);
/// see docs/sync-protocol.md. A 200 means every change not listed in `errors` is durably
/// stored. Malformed or unauthorised changes are quarantined and reported per change;
/// the rest of the request is still applied.
#[utoipa::path(post, path = "/api/v1/sync", tag = "sync", request_body = SyncRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = SyncResponse),
        (status = 400, body = ErrorBody, description = "`invalid_json`, `invalid_cursor`, `invalid_document_id` (in `need_full_history`), `unsupported_protocol_version`"),
        (status = 401, body = ErrorBody),
        (status = 408, body = ErrorBody, description = "`request_timeout`: the body did not arrive within the read timeout, or arrived slower than the minimum rate"),
        (status = 413, body = ErrorBody, description = "`payload_too_large` (wire or decompressed size)"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`"),
        (status = 429, body = ErrorBody, description = "`too_many_uploads`: this account or device had its share of uploads in flight for 10 s (retry after `Retry-After`)"),
        (status = 503, body = ErrorBody, description = "`database_unavailable`, or `server_busy` when the bodies being read fill the body memory budget (retry after `Retry-After`)")))]
#[post("/sync")]
pub async fn sync(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings;
    if !crate::body::is_json(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "the sync request must be JSON (Content-Type: application/json)".into(),
        ));
    }
    // Held until the push is done, like the body's share of the budget.
    let slot = state
        .uploads
        .take(&principal.user_id, &principal.device_id)
        .await?;
    let body = read_body(
        &req,
        &mut payload,
        BodyLimits {
            wire: settings.sync_body_limit,
            decoded: settings.sync_decompressed_limit,
            timeout: settings.body_read_timeout(),
            min_rate: settings.body_min_rate_bytes_per_sec,
            grace: std::time::Duration::from_secs(settings.body_min_rate_grace_secs),
        },
        &state.body_budget,
    )
    .await?;
    // The parsed request is about as large as the body: it keeps the body's share of
    // the budget until the push is done, and the raw bytes go at once.
    let (bytes, reservation) = body.into_parts();
    let bytes_in = bytes.len();
    let request: SyncRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the sync request is invalid: {e}"))
    })?;
    drop(bytes);
    let response = state
        .db
        .run(move |conn| crate::sync::handle(conn, &principal, request))
        .await?;
    drop(reservation);
    drop(slot);
    let json = serde_json::to_vec(&response).map_err(ApiError::internal)?;
    state.metrics.sync(&response.push, bytes_in, json.len());
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}
