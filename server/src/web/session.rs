//! Web app sessions: sign-in through the API's own `auth::session::login` (the same
//! throttling, audit and device rules), a random cookie whose hash is a `web_sessions` row,
//! idle and absolute expiry, a CSRF token per session, and the `WebUser` extractor that
//! turns a cookie into the same `Principal` the API's handlers get.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use base64::Engine as _;
use chrono::Duration;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::{WebError, i18n::Lang};
use crate::{
    audit::AuditEvent,
    auth::{
        Principal,
        extract::principal_of,
        session::{self, LoginRequest},
    },
    db::{
        DbConnection,
        models::{Device, User},
        now,
        schema::{web_preferences, web_sessions},
        write_transaction,
    },
    error::ApiError,
    state::AppState,
    telemetry::RequestId,
};

/// The session cookie: a random token; the server keeps only its SHA-256.
pub const SESSION_COOKIE: &str = "coopsync_session";
/// This browser's device id (a UUID), so that its sign-ins reuse one `devices` row.
pub const BROWSER_COOKIE: &str = "coopsync_browser";
/// The language chosen before signing in.
pub const LANG_COOKIE: &str = "coopsync_lang";
/// Double-submit token of the sign-in form (there is no session to hold it yet).
pub const LOGIN_CSRF_COOKIE: &str = "coopsync_login";
/// The name every form's CSRF field has.
pub const CSRF_FIELD: &str = "_csrf";
/// `last_seen_at` is written at most this often, so reading pages does not write a row
/// each time (the idle expiry is minutes, this is seconds).
const TOUCH_EVERY_SECS: i64 = 60;

/// A signed-in admin behind a page request.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub principal: Principal,
    pub username: String,
    pub csrf: String,
    pub lang: Lang,
    session_id: String,
}

impl WebUser {
    /// Refuses a form whose CSRF field is not this session's token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), WebError> {
        if constant_time_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(WebError::Csrf(self.lang))
        }
    }
}

pub fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the browser reached us over TLS (directly or through a proxy that says so):
/// then cookies are `Secure`.
pub fn over_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// A `Set-Cookie` value: always `HttpOnly`, `SameSite=Strict`, `Path=/`; `Secure` over TLS.
/// `max_age: None` is a browser-session cookie; `Some(0)` deletes it.
pub fn set_cookie(req: &HttpRequest, name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if over_tls(req) {
        c.push_str("; Secure");
    }
    c
}

/// The language for a request with no signed-in user: the cookie, else the browser's.
pub fn anonymous_lang(req: &HttpRequest) -> Lang {
    cookie(req, LANG_COOKIE)
        .and_then(|l| Lang::parse(&l))
        .unwrap_or_else(|| {
            Lang::from_accept_language(
                req.headers()
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            )
        })
}

fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

fn client_ip(req: &HttpRequest) -> std::net::IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// A new session for `username`, or the sign-in's error (`invalid_credentials`,
/// `too_many_login_attempts`, …, exactly as the API answers them). Returns the session
/// cookie's token and the browser's device id.
pub async fn sign_in(
    state: &AppState,
    req: &HttpRequest,
    username: &str,
    password: String,
) -> Result<(String, String), ApiError> {
    let username = username.trim().to_string();
    // Reuse this browser's device unless it belongs to another account or was revoked:
    // a browser shared by two admins gets a device per account, as a shared tablet does.
    let known = cookie(req, BROWSER_COOKIE).filter(|d| uuid::Uuid::parse_str(d).is_ok());
    let name = username.clone();
    let device_id = state
        .db
        .run(move |conn| {
            let Some(id) = known else {
                return Ok(None);
            };
            let owner = User::find_by_username(conn, &name)?.map(|u| u.id);
            Ok(match Device::find(conn, &id)? {
                // Unknown to the server: a new device under the id the browser has.
                None => Some(id),
                Some(d) if d.revoked_at.is_none() && Some(&d.user_id) == owner.as_ref() => {
                    Some(d.id)
                }
                Some(_) => None,
            })
        })
        .await?
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let tokens = session::login(
        state,
        LoginRequest {
            username,
            password,
            device_id: device_id.clone(),
            device_name: "Web browser".into(),
        },
        client_ip(req),
        request_id(req),
    )
    .await?;
    let token = random_token()?;
    let csrf = random_token()?;
    let (id, user_id, device) = (hash(&token), tokens.user_id, tokens.device_id);
    state
        .db
        .run(move |conn| {
            let at = now();
            diesel::insert_into(web_sessions::table)
                .values((
                    web_sessions::id.eq(&id),
                    web_sessions::user_id.eq(&user_id),
                    web_sessions::device_id.eq(&device),
                    web_sessions::csrf_token.eq(&csrf),
                    web_sessions::created_at.eq(at),
                    web_sessions::last_seen_at.eq(at),
                ))
                .execute(conn)?;
            Ok(())
        })
        .await?;
    Ok((token, device_id))
}

/// Ends the session (the device stays registered; revoking it is a separate action).
pub async fn sign_out(state: &AppState, user: &WebUser) -> Result<(), ApiError> {
    let (id, uid, did, rid) = (
        user.session_id.clone(),
        user.principal.user_id.clone(),
        user.principal.device_id.clone(),
        user.principal.request_id.clone(),
    );
    state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                diesel::update(web_sessions::table.find(&id))
                    .set(web_sessions::ended_at.eq(now()))
                    .execute(conn)?;
                AuditEvent {
                    actor_user_id: Some(&uid),
                    device_id: Some(&did),
                    action: "auth.logout",
                    target_type: Some("device"),
                    target_id: Some(&did),
                    outcome: "success",
                    request_id: rid.as_deref(),
                    details: Some(serde_json::json!({"via": "web"})),
                }
                .record(conn)?;
                Ok::<_, ApiError>(())
            })
        })
        .await
}

/// Remembers `lang` for the user (every later page, on any browser, is in it).
pub fn set_language(conn: &mut DbConnection, user_id: &str, lang: Lang) -> Result<(), ApiError> {
    write_transaction(conn, |conn| {
        diesel::delete(web_preferences::table.find(user_id)).execute(conn)?;
        diesel::insert_into(web_preferences::table)
            .values((
                web_preferences::user_id.eq(user_id),
                web_preferences::language.eq(lang.code()),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// A live session: its principal, CSRF token, username and chosen language.
type Loaded = (Principal, String, String, Option<Lang>);

/// The session of `token` if it is live: not ended, used within the idle limit, younger
/// than the absolute limit, its user active and its device neither revoked nor re-bound.
fn load(
    conn: &mut DbConnection,
    token: &str,
    idle: Duration,
    max_age: Duration,
) -> Result<Option<Loaded>, ApiError> {
    let id = hash(token);
    let row = web_sessions::table
        .find(&id)
        .select((
            web_sessions::user_id,
            web_sessions::device_id,
            web_sessions::csrf_token,
            web_sessions::created_at,
            web_sessions::last_seen_at,
            web_sessions::ended_at,
        ))
        .first::<(
            String,
            String,
            String,
            chrono::NaiveDateTime,
            chrono::NaiveDateTime,
            Option<chrono::NaiveDateTime>,
        )>(conn)
        .optional()?;
    let Some((user_id, device_id, csrf, created, seen, ended)) = row else {
        return Ok(None);
    };
    let at = now();
    if ended.is_some() || at - seen > idle || at - created > max_age {
        return Ok(None);
    }
    let Some(principal) = principal_of(conn, &user_id, &device_id)? else {
        return Ok(None);
    };
    if (at - seen).num_seconds() >= TOUCH_EVERY_SECS {
        diesel::update(web_sessions::table.find(&id))
            .set(web_sessions::last_seen_at.eq(at))
            .execute(conn)?;
    }
    let username = User::find(conn, &user_id)?
        .map(|u| u.username)
        .unwrap_or_default();
    let lang = web_preferences::table
        .find(&user_id)
        .select(web_preferences::language)
        .first::<String>(conn)
        .optional()?
        .and_then(|l| Lang::parse(&l));
    Ok(Some((principal, csrf, username, lang)))
}

impl FromRequest for WebUser {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = cookie(req, SESSION_COOKIE);
        let fallback = anonymous_lang(req);
        let rid = request_id(req);
        // After signing in, back to the page asked for; a form's target is not a page.
        let next = match req.method() {
            &actix_web::http::Method::GET => req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            _ => "/dashboard".into(),
        };
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                WebError::Api(ApiError::internal("application state missing"), fallback)
            })?;
            let Some(token) = token else {
                return Err(WebError::SignIn(next));
            };
            let idle = Duration::minutes(state.settings.web_session_idle_mins as i64);
            let max_age = Duration::hours(state.settings.web_session_max_hours as i64);
            let session_id = hash(&token);
            let loaded = state
                .db
                .run(move |conn| load(conn, &token, idle, max_age))
                .await
                .map_err(|e| WebError::Api(e, fallback))?;
            let Some((mut principal, csrf, username, lang)) = loaded else {
                return Err(WebError::SignIn(next));
            };
            principal.request_id = rid;
            let lang = lang.unwrap_or(fallback);
            // The web app is for admins; enumerators work in the tablet app.
            principal
                .require_admin()
                .map_err(|e| WebError::Api(e, lang))?;
            tracing::Span::current().record("user.id", principal.user_id.as_str());
            Ok(WebUser {
                principal,
                username,
                csrf,
                lang,
                session_id,
            })
        })
    }
}

impl WebUser {
    /// An API error drawn as a page in this user's language.
    pub fn fail(&self, e: ApiError) -> WebError {
        WebError::Api(e, self.lang)
    }

    /// Runs `f` on a pooled connection (as the API's handlers do), errors as pages.
    pub async fn run<T, F>(&self, state: &AppState, f: F) -> Result<T, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        state.db.run(f).await.map_err(|e| self.fail(e))
    }
}

impl WebUser {
    /// A form's action: its CSRF token checked first, then `f` (the service its API twin
    /// calls) in a write transaction, then back to `to` saying `what` was done.
    pub async fn act<T, F>(
        &self,
        state: &AppState,
        csrf: &str,
        to: &str,
        what: &str,
        f: F,
    ) -> Result<actix_web::HttpResponse, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &Principal, &automerge::ActorId) -> Result<T, ApiError>
            + Send
            + 'static,
    {
        self.check_csrf(csrf)?;
        let (p, actor) = (self.principal.clone(), state.server_actor.clone());
        self.run(state, move |conn| {
            write_transaction(conn, |conn| f(conn, &p, &actor))
        })
        .await?;
        Ok(super::done(to, what))
    }
}
