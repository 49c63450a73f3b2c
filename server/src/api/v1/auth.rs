//! Sign-in, token refresh, sign-out and "who am I".

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::{
        Principal,
        session::{self, LoginRequest, RefreshRequest, TokenResponse},
    },
    body::ApiJson,
    domain::access::Role,
    error::{ApiError, ErrorBody},
    state::AppState,
    telemetry::RequestId,
};

fn request_id(req: &HttpRequest) -> Option<String> {
    use actix_web::HttpMessage;
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

fn client_ip(req: &HttpRequest) -> std::net::IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// Sign in on a device. The device is registered (or re-bound) to the user; the refresh
/// token stays valid while used at least every `refresh_token_idle_days`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`, `account_disabled`, `device_revoked`"),
        (status = 409, body = ErrorBody, description = "`device_registered_to_another_account`: the device id was registered by another account; use a new device id for this account"),
        (status = 422, body = ErrorBody, description = "`validation_failed`"),
        (status = 429, body = ErrorBody, description = "`too_many_login_attempts`, with Retry-After"),
        (status = 503, body = ErrorBody, description = "`server_busy`: too many sign-ins at once")))]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = session::login(&state, body.parse()?, client_ip(&req), request_id(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(tokens))
}

/// Exchange a refresh token for a new pair. The old token is spent; if the response is
/// lost, retrying once with the same token within the retry window works. Any other
/// reuse revokes all of the device's tokens.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = ErrorBody, description = "`invalid_refresh_token`, `refresh_token_reused`, `device_revoked`, `account_disabled`")))]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = session::refresh(&state, body.parse()?, request_id(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(tokens))
}

/// Sign this device out: its refresh and access tokens stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    state
        .db
        .run(move |conn| {
            session::logout(
                conn,
                &principal.user_id,
                &principal.device_id,
                principal.request_id.as_deref(),
            )
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user_id: String,
    pub role: Role,
    pub device_id: String,
    pub provinces: Vec<String>,
    pub cooperatives: Vec<String>,
}

/// The signed-in user, device and scope.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
#[get("/me")]
pub async fn me(principal: Principal) -> HttpResponse {
    HttpResponse::Ok().json(MeResponse {
        user_id: principal.user_id,
        role: principal.role,
        device_id: principal.device_id,
        provinces: principal.assignments.provinces.into_iter().collect(),
        cooperatives: principal.assignments.cooperatives.into_iter().collect(),
    })
}
