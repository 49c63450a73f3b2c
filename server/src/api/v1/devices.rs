//! Registered devices: list, and revoke a lost one.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    accounts,
    api::utc,
    auth::Principal,
    db::models::Device,
    error::{ApiError, ErrorBody},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceResponse {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

impl From<Device> for DeviceResponse {
    fn from(d: Device) -> Self {
        Self {
            id: d.id,
            user_id: d.user_id,
            name: d.name,
            created_at: utc(d.created_at),
            last_seen_at: utc(d.last_seen_at),
            revoked_at: d.revoked_at.map(utc),
            revoked_by: d.revoked_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceListResponse {
    pub devices: Vec<DeviceResponse>,
}

/// The caller's devices and those of the users they manage.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DeviceListResponse), (status = 401, body = ErrorBody)))]
#[get("/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let actor = principal.actor();
    let devices = state
        .db
        .run(move |conn| accounts::list_devices(conn, &actor))
        .await?;
    Ok(HttpResponse::Ok().json(DeviceListResponse {
        devices: devices.into_iter().map(DeviceResponse::from).collect(),
    }))
}

/// Revoke a device: its tokens stop working at once and it cannot sign in again.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceResponse), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
#[post("/devices/{id}/revoke")]
pub async fn revoke_device(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = principal.actor();
    let rid = principal.request_id.clone();
    let device = state
        .db
        .run(move |conn| accounts::revoke_device(conn, &actor, &id, rid.as_deref()))
        .await?;
    Ok(HttpResponse::Ok().json(DeviceResponse::from(device)))
}
