//! The audit log, for national admins.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    api::utc,
    auth::Principal,
    db::models::AuditEntry,
    error::{ApiError, ErrorBody},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryResponse {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_user_id: Option<String>,
    pub device_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditListResponse {
    pub entries: Vec<AuditEntryResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// Newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditListResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
#[get("/audit")]
pub async fn list_audit(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_national_admin()?;
    let before = match &query.cursor {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "the cursor is invalid"))?,
        ),
        None => None,
    };
    let limit = super::page_size(query.limit) as i64;
    let entries = state
        .db
        .run(move |conn| Ok(AuditEntry::page(conn, before, limit)?))
        .await?;
    let next_cursor = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(AuditListResponse {
        entries: entries
            .into_iter()
            .map(|e| AuditEntryResponse {
                id: e.id,
                occurred_at: utc(e.occurred_at),
                actor_user_id: e.actor_user_id,
                device_id: e.device_id,
                action: e.action,
                target_type: e.target_type,
                target_id: e.target_id,
                outcome: e.outcome,
                request_id: e.request_id,
                details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
        next_cursor,
    }))
}
