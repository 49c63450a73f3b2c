//! The `Principal` extractor: a verified access token whose user is active and whose
//! device is neither revoked nor signed out. Checked against the database on every
//! request so that revocation takes effect at once.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use diesel::QueryResult;

use crate::{
    db::models::{Device, User},
    domain::access::{Actor, Assignments, Role},
    error::ApiError,
    state::AppState,
    telemetry::RequestId,
};

/// The signed-in user and device behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    pub device_id: String,
    pub assignments: Assignments,
    pub request_id: Option<String>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user_id.clone(),
            role: self.role,
            assignments: self.assignments.clone(),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this action needs an admin account"))
        }
    }

    pub fn require_national_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::NationalAdmin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this action needs a national admin account",
            ))
        }
    }
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated)?
        .to_str()
        .map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::InvalidToken);
    }
    Ok(token.trim().to_string())
}

/// The principal of `user` on `device_id`, with the user's role and assignments now.
/// The principal of an account on a device; `None` if the stored role is not one the
/// rules know (corruption: the caller decides what that means for it).
fn principal_for(
    conn: &mut crate::db::DbConnection,
    user: User,
    device_id: String,
) -> QueryResult<Option<Principal>> {
    let Some(role) = Role::parse(&user.role) else {
        return Ok(None);
    };
    let assignments = Assignments {
        provinces: User::provinces(conn, &user.id)?.into_iter().collect(),
        cooperatives: User::cooperatives(conn, &user.id)?.into_iter().collect(),
    };
    Ok(Some(Principal {
        user_id: user.id,
        role,
        device_id,
        assignments,
        request_id: None,
    }))
}

/// The principal who sent something earlier (a held change), as the rules see them now:
/// `None` if the account is deactivated or gone (or has a role the rules do not know), or
/// the device revoked or gone.
pub fn principal_of(
    conn: &mut crate::db::DbConnection,
    user_id: &str,
    device_id: &str,
) -> QueryResult<Option<Principal>> {
    let Some(user) = User::find(conn, user_id)?.filter(|u| u.active) else {
        return Ok(None);
    };
    match Device::find(conn, device_id)? {
        Some(d) if d.revoked_at.is_none() && d.user_id == user.id => {
            principal_for(conn, user, d.id)
        }
        _ => Ok(None),
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let claims = state.jwt.verify(&token?)?;
            let mut principal = state
                .db
                .run(move |conn| {
                    let user = User::find(conn, &claims.sub)?.ok_or(ApiError::InvalidToken)?;
                    let device = Device::find(conn, &claims.did)?.ok_or(ApiError::InvalidToken)?;
                    if device.user_id != user.id {
                        return Err(ApiError::TokenRevoked);
                    }
                    if device.revoked_at.is_some() {
                        return Err(ApiError::DeviceRevoked);
                    }
                    if device.token_epoch != claims.dep {
                        return Err(ApiError::TokenRevoked);
                    }
                    if !user.active {
                        return Err(ApiError::AccountDisabled);
                    }
                    principal_for(conn, user, device.id)?
                        .ok_or_else(|| ApiError::internal("unknown role in database"))
                })
                .await?;
            tracing::Span::current().record("user.id", principal.user_id.as_str());
            principal.request_id = request_id;
            Ok(principal)
        })
    }
}
