//! Sessions: sign-in, refresh-token rotation with one lost-response retry, sign-out, and
//! device revocation.

use base64::Engine as _;
use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{
    audit::AuditEvent,
    db::{
        DbConnection,
        models::{Device, LoginFailure, RefreshToken, User},
        now,
        schema::{devices, refresh_tokens},
        write_transaction,
    },
    error::ApiError,
    state::AppState,
};

const REFRESH_PREFIX: &str = "csr_";
/// Failures of one account from all addresses together that throttle it, as a multiple
/// of `login_max_failures_per_account` (which counts one address).
const ACCOUNT_WIDE_FACTOR: i64 = 10;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// A UUID the tablet made once; it names this installation of the app.
    #[schema(format = Uuid)]
    pub device_id: String,
    /// Shown to admins, e.g. "Kampot tablet 3" (1 to 100 characters).
    #[schema(min_length = 1, max_length = 100)]
    pub device_name: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Opaque; keep it in secure storage. Every use returns a new one.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user_id: String,
    pub device_id: String,
}

/// What a sign-in or refresh produced, before the access token is minted.
struct Issued {
    user_id: String,
    device_id: String,
    epoch: i64,
    refresh_token: String,
}

fn new_refresh_token() -> Result<(String, String), ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    let token = format!(
        "{REFRESH_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}

/// Refresh tokens are stored only as this hash.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn insert_refresh_token(
    conn: &mut DbConnection,
    device_id: &str,
    user_id: &str,
    parent_id: Option<String>,
    idle_days: u64,
) -> Result<String, ApiError> {
    let (token, hash) = new_refresh_token()?;
    let created = now();
    diesel::insert_into(refresh_tokens::table)
        .values(RefreshToken {
            id: uuid::Uuid::new_v4().to_string(),
            device_id: device_id.to_string(),
            user_id: user_id.to_string(),
            token_hash: hash,
            parent_id,
            status: "active".into(),
            created_at: created,
            expires_at: created + ChronoDuration::days(idle_days as i64),
            superseded_at: None,
            retry_used: false,
        })
        .execute(conn)?;
    Ok(token)
}

fn validate_login(req: &LoginRequest) -> Result<uuid::Uuid, ApiError> {
    let mut fields = Vec::new();
    if req.username.trim().is_empty() || req.username.len() > 64 {
        fields.push(crate::error::FieldError::new(
            "username",
            "invalid",
            "the username must have 1 to 64 characters",
        ));
    }
    if req.password.is_empty() || req.password.len() > 1024 {
        fields.push(crate::error::FieldError::new(
            "password",
            "invalid",
            "the password must have 1 to 1024 bytes",
        ));
    }
    let device = uuid::Uuid::parse_str(&req.device_id);
    if device.is_err() {
        fields.push(crate::error::FieldError::new(
            "device_id",
            "invalid_uuid",
            "device_id must be a UUID made on the device",
        ));
    }
    if req.device_name.trim().is_empty() || req.device_name.chars().count() > 100 {
        fields.push(crate::error::FieldError::new(
            "device_name",
            "invalid",
            "device_name must have 1 to 100 characters",
        ));
    }
    match device {
        Ok(d) if fields.is_empty() => Ok(d),
        _ => Err(ApiError::Validation(fields)),
    }
}

fn retry_after_secs(oldest: Option<NaiveDateTime>, window_secs: u64) -> u64 {
    let Some(oldest) = oldest else {
        return window_secs.max(1);
    };
    let until = oldest + ChronoDuration::seconds(window_secs as i64);
    (until - now()).num_seconds().max(1) as u64
}

pub async fn login(
    state: &AppState,
    req: LoginRequest,
    client_ip: std::net::IpAddr,
    request_id: Option<String>,
) -> Result<TokenResponse, ApiError> {
    let device_uuid = validate_login(&req)?;
    let device_id = device_uuid.to_string();
    let settings = &state.settings;
    if let Some(retry_after_secs) = state.ip_throttle.check(client_ip) {
        return Err(ApiError::TooManyLoginAttempts { retry_after_secs });
    }
    let username = req.username.trim().to_string();
    let window = settings.login_failure_window_secs;
    let max_failures = i64::from(settings.login_max_failures_per_account);
    let lookup_name = username.clone();
    let reserve_ip = client_ip.to_string();
    // The attempt is counted before its password is checked, under a lock on the
    // username, so concurrent attempts cannot all pass a count read before any of them
    // was written. The limit counts an account's failures from one address (someone
    // guessing elsewhere cannot lock the owner out), and ten times as many from all
    // addresses together (a guess spread over many addresses).
    let (user, attempt) = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                if let DbConnection::Postgresql(pg) = conn {
                    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 11))")
                        .bind::<diesel::sql_types::Text, _>(&lookup_name)
                        .execute(pg)?;
                }
                let since = now() - ChronoDuration::seconds(window as i64);
                let (here, oldest_here) =
                    LoginFailure::recent(conn, &lookup_name, Some(&reserve_ip), since)?;
                let (everywhere, oldest) = LoginFailure::recent(conn, &lookup_name, None, since)?;
                if here >= max_failures {
                    return Err(ApiError::TooManyLoginAttempts {
                        retry_after_secs: retry_after_secs(oldest_here, window),
                    });
                }
                if everywhere >= max_failures.saturating_mul(ACCOUNT_WIDE_FACTOR) {
                    return Err(ApiError::TooManyLoginAttempts {
                        retry_after_secs: retry_after_secs(oldest, window),
                    });
                }
                let attempt = LoginFailure::reserve(conn, &lookup_name, &reserve_ip)?;
                Ok((User::find_by_username(conn, &lookup_name)?, attempt))
            })
        })
        .await?;
    let ok = state
        .hasher
        .verify(req.password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        state.ip_throttle.record_failure(client_ip);
        let rid = request_id.clone();
        state
            .db
            .run(move |conn| {
                write_transaction(conn, |conn| {
                    // The failure was counted when the attempt was reserved.
                    let user_id = User::find_by_username(conn, &username)?.map(|u| u.id);
                    AuditEvent {
                        actor_user_id: user_id.as_deref(),
                        device_id: None,
                        action: "auth.login",
                        target_type: Some("device"),
                        target_id: Some(&device_id),
                        outcome: "failure",
                        request_id: rid.as_deref(),
                        details: Some(serde_json::json!({"reason": "invalid_credentials"})),
                    }
                    .record(conn)?;
                    Ok::<_, ApiError>(())
                })
            })
            .await?;
        return Err(ApiError::InvalidCredentials);
    };
    if !user.active {
        return Err(ApiError::AccountDisabled);
    }
    let idle_days = settings.refresh_token_idle_days;
    let device_name = req.device_name.trim().to_string();
    let issued = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let at = now();
                LoginFailure::forget(conn, attempt)?;
                match Device::find(conn, &device_id)? {
                    Some(device) if device.revoked_at.is_some() => {
                        return Err(ApiError::DeviceRevoked);
                    }
                    Some(device) if device.user_id != user.id => {
                        // A device id belongs to the account that registered it: signing
                        // in with someone else's would sign them out and let this account
                        // push under their Automerge actor. A shared tablet makes a new
                        // device id for each account (docs/api.md).
                        return Err(ApiError::Conflict {
                            code: "device_registered_to_another_account",
                            message: "this device id is registered to another account; \
                                      an app signing in a different account must use a new \
                                      device id"
                                .into(),
                        });
                    }
                    Some(device) => {
                        diesel::update(devices::table.find(&device.id))
                            .set((
                                devices::user_id.eq(&user.id),
                                devices::name.eq(&device_name),
                                devices::last_seen_at.eq(at),
                            ))
                            .execute(conn)?;
                    }
                    None => {
                        diesel::insert_into(devices::table)
                            .values(Device {
                                id: device_id.clone(),
                                user_id: user.id.clone(),
                                name: device_name.clone(),
                                created_at: at,
                                last_seen_at: at,
                                revoked_at: None,
                                revoked_by: None,
                                token_epoch: 0,
                            })
                            .execute(conn)?;
                    }
                }
                let device = Device::find(conn, &device_id)?
                    .ok_or_else(|| ApiError::internal("device vanished"))?;
                let refresh_token =
                    insert_refresh_token(conn, &device_id, &user.id, None, idle_days)?;
                AuditEvent {
                    actor_user_id: Some(&user.id),
                    device_id: Some(&device_id),
                    action: "auth.login",
                    target_type: Some("device"),
                    target_id: Some(&device_id),
                    outcome: "success",
                    request_id: request_id.as_deref(),
                    details: None,
                }
                .record(conn)?;
                Ok(Issued {
                    user_id: user.id.clone(),
                    device_id: device.id,
                    epoch: device.token_epoch,
                    refresh_token,
                })
            })
        })
        .await?;
    token_response(state, issued)
}

fn token_response(state: &AppState, issued: Issued) -> Result<TokenResponse, ApiError> {
    let access_token = state
        .jwt
        .issue(&issued.user_id, &issued.device_id, issued.epoch)?;
    Ok(TokenResponse {
        access_token,
        refresh_token: issued.refresh_token,
        token_type: "Bearer".into(),
        expires_in: state.jwt.ttl_secs(),
        user_id: issued.user_id,
        device_id: issued.device_id,
    })
}

enum RefreshOutcome {
    Issued(Issued),
    Reused,
}

pub async fn refresh(
    state: &AppState,
    req: RefreshRequest,
    request_id: Option<String>,
) -> Result<TokenResponse, ApiError> {
    if !req.refresh_token.starts_with(REFRESH_PREFIX) || req.refresh_token.len() > 128 {
        return Err(ApiError::InvalidRefreshToken);
    }
    let hash = hash_refresh_token(&req.refresh_token);
    let idle_days = state.settings.refresh_token_idle_days;
    let retry_window = ChronoDuration::seconds(state.settings.refresh_retry_window_secs as i64);
    let outcome = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let token = RefreshToken::find_by_hash(conn, &hash)?
                    .ok_or(ApiError::InvalidRefreshToken)?;
                let device =
                    Device::find(conn, &token.device_id)?.ok_or(ApiError::InvalidRefreshToken)?;
                if device.revoked_at.is_some() {
                    return Err(ApiError::DeviceRevoked);
                }
                if device.user_id != token.user_id {
                    return Err(ApiError::InvalidRefreshToken);
                }
                let user =
                    User::find(conn, &token.user_id)?.ok_or(ApiError::InvalidRefreshToken)?;
                if !user.active {
                    return Err(ApiError::AccountDisabled);
                }
                let at = now();
                let audit = |conn: &mut DbConnection, outcome: &str, kind: &str| {
                    AuditEvent {
                        actor_user_id: Some(&user.id),
                        device_id: Some(&device.id),
                        action: "auth.refresh",
                        target_type: Some("device"),
                        target_id: Some(&device.id),
                        outcome,
                        request_id: request_id.as_deref(),
                        details: Some(serde_json::json!({ "kind": kind })),
                    }
                    .record(conn)
                };
                let parent = match token.status.as_str() {
                    "active" if token.expires_at > at => token.id.clone(),
                    "superseded" => {
                        let child = RefreshToken::child_of(conn, &token.id)?;
                        let retry_allowed = !token.retry_used
                            && token.superseded_at.is_some_and(|t| at - t <= retry_window)
                            && child.as_ref().is_some_and(|c| c.status == "active");
                        if !retry_allowed {
                            Device::revoke_tokens(conn, &device.id)?;
                            audit(conn, "failure", "reuse_detected")?;
                            return Ok(RefreshOutcome::Reused);
                        }
                        // The response that carried the child was probably lost on the
                        // way to the tablet: retire the child and issue a new one, once.
                        // `retired`, not `revoked`: if the child turns up later, two
                        // holders had the same token (the retry was a thief's, or the
                        // thief holds the child), and both lineages end (reuse).
                        if let Some(child) = child {
                            diesel::update(refresh_tokens::table.find(&child.id))
                                .set(refresh_tokens::status.eq("retired"))
                                .execute(conn)?;
                        }
                        diesel::update(refresh_tokens::table.find(&token.id))
                            .set(refresh_tokens::retry_used.eq(true))
                            .execute(conn)?;
                        audit(conn, "success", "lost_response_retry")?;
                        let refresh_token = insert_refresh_token(
                            conn,
                            &device.id,
                            &user.id,
                            Some(token.id.clone()),
                            idle_days,
                        )?;
                        touch_device(conn, &device.id)?;
                        return Ok(RefreshOutcome::Issued(Issued {
                            user_id: user.id.clone(),
                            device_id: device.id.clone(),
                            epoch: device.token_epoch,
                            refresh_token,
                        }));
                    }
                    // A token retired by a lost-response retry used after all: two
                    // lineages of this device's tokens are alive (OAuth 2.0 security
                    // BCP reuse detection).
                    "retired" => {
                        Device::revoke_tokens(conn, &device.id)?;
                        audit(conn, "failure", "reuse_detected")?;
                        return Ok(RefreshOutcome::Reused);
                    }
                    _ => return Err(ApiError::InvalidRefreshToken),
                };
                diesel::update(refresh_tokens::table.find(&token.id))
                    .set((
                        refresh_tokens::status.eq("superseded"),
                        refresh_tokens::superseded_at.eq(at),
                    ))
                    .execute(conn)?;
                let refresh_token =
                    insert_refresh_token(conn, &device.id, &user.id, Some(parent), idle_days)?;
                touch_device(conn, &device.id)?;
                audit(conn, "success", "rotation")?;
                Ok(RefreshOutcome::Issued(Issued {
                    user_id: user.id.clone(),
                    device_id: device.id.clone(),
                    epoch: device.token_epoch,
                    refresh_token,
                }))
            })
        })
        .await?;
    match outcome {
        RefreshOutcome::Issued(issued) => token_response(state, issued),
        RefreshOutcome::Reused => Err(ApiError::RefreshTokenReused),
    }
}

fn touch_device(conn: &mut DbConnection, device_id: &str) -> QueryResult<()> {
    diesel::update(devices::table.find(device_id))
        .set(devices::last_seen_at.eq(now()))
        .execute(conn)
        .map(|_| ())
}

/// Signs the device out: its refresh tokens are revoked and its access tokens stop working.
pub fn logout(
    conn: &mut DbConnection,
    user_id: &str,
    device_id: &str,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    write_transaction(conn, |conn| {
        Device::revoke_tokens(conn, device_id)?;
        AuditEvent {
            actor_user_id: Some(user_id),
            device_id: Some(device_id),
            action: "auth.logout",
            target_type: Some("device"),
            target_id: Some(device_id),
            outcome: "success",
            request_id,
            details: None,
        }
        .record(conn)?;
        Ok(())
    })
}
