//! User administration: national admins manage everyone, provincial admins the
//! enumerators of their provinces, enumerators nobody.

use actix_web::{HttpResponse, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    accounts::{
        self, AssignmentsRequest, CreateUserRequest, ResetPasswordRequest, UpdateUserRequest,
        UserView,
    },
    api::utc,
    auth::{Principal, password},
    body::ApiJson,
    domain::access::Role,
    error::{ApiError, ErrorBody},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: String,
    pub username: String,
    pub full_name: Option<String>,
    pub role: Role,
    pub active: bool,
    pub provinces: Vec<String>,
    pub cooperatives: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserView> for UserResponse {
    fn from(v: UserView) -> Self {
        Self {
            id: v.user.id,
            username: v.user.username,
            full_name: v.user.full_name,
            role: v.role,
            active: v.user.active,
            provinces: v.assignments.provinces.into_iter().collect(),
            cooperatives: v.assignments.cooperatives.into_iter().collect(),
            created_at: utc(v.user.created_at),
            updated_at: utc(v.user.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserListResponse {
    pub users: Vec<UserResponse>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<usize>,
}

/// Users the caller may see: themselves and the accounts they manage.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserQuery),
    security(("bearer" = [])),
    responses((status = 200, body = UserListResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let limit = super::page_size(query.limit);
    let cursor = query.cursor.clone();
    let actor = principal.actor();
    let (views, next_cursor) = state
        .db
        .run(move |conn| accounts::list_users(conn, &actor, cursor, limit))
        .await?;
    Ok(HttpResponse::Ok().json(UserListResponse {
        users: views.into_iter().map(UserResponse::from).collect(),
        next_cursor,
    }))
}

/// Create an account with its role and assignments.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUserRequest,
    security(("bearer" = [])),
    responses((status = 201, body = UserResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "`username_taken`"),
              (status = 422, body = ErrorBody)))]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    principal: Principal,
    body: ApiJson<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let req = body.parse()?;
    password::check_policy(&req.password)?;
    let hash = state.hasher.hash(req.password.clone()).await?;
    let actor = principal.actor();
    let rid = principal.request_id.clone();
    let view = state
        .db
        .run(move |conn| accounts::create_user(conn, &actor, &req, &hash, rid.as_deref()))
        .await?;
    Ok(HttpResponse::Created().json(UserResponse::from(view)))
}

/// One user the caller may see.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let actor = principal.actor();
    let view = state
        .db
        .run(move |conn| accounts::get_user(conn, &actor, &id))
        .await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(view)))
}

/// Change name, role or active flag. Deactivating signs the user out everywhere.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = UpdateUserRequest,
    security(("bearer" = [])), params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let req = body.parse()?;
    let actor = principal.actor();
    let rid = principal.request_id.clone();
    let view = state
        .db
        .run(move |conn| accounts::update_user(conn, &actor, &id, &req, rid.as_deref()))
        .await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(view)))
}

/// Replace a user's province and cooperative assignments.
#[utoipa::path(put, path = "/api/v1/users/{id}/assignments", tag = "users",
    request_body = AssignmentsRequest, security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[put("/users/{id}/assignments")]
pub async fn set_assignments(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<AssignmentsRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let req = body.parse()?;
    let actor = principal.actor();
    let rid = principal.request_id.clone();
    let view = state
        .db
        .run(move |conn| accounts::set_assignments(conn, &actor, &id, &req, rid.as_deref()))
        .await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(view)))
}

/// Set a new password for a user; all their devices are signed out.
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users",
    request_body = ResetPasswordRequest, security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/users/{id}/password")]
pub async fn reset_password(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: ApiJson<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let id = id.into_inner();
    let actor = principal.actor();
    // Authorize before spending a hash on it.
    {
        let (actor, id) = (actor.clone(), id.clone());
        state
            .db
            .run(move |conn| accounts::check_can_reset(conn, &actor, &id))
            .await?;
    }
    let req = body.parse()?;
    password::check_policy(&req.password)?;
    let hash = state.hasher.hash(req.password).await?;
    let rid = principal.request_id.clone();
    state
        .db
        .run(move |conn| accounts::reset_password(conn, &actor, &id, &hash, rid.as_deref()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
