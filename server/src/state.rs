//! `AppState`: what every worker shares (settings, database pool, keys, hashing, limits,
//! metrics, the server's actor), and its construction. Out of `startup.rs` so that
//! handlers and services importing it do not import the server's start-up too.

use std::time::Duration;

use crate::{
    auth::{jwt::JwtKeys, password::Hasher, throttle::IpThrottle},
    config::Settings,
    db::{Database, models::ServerKey},
    error::ApiError,
};

/// Shared by every worker.
pub struct AppState {
    pub settings: Settings,
    pub db: Database,
    pub jwt: JwtKeys,
    pub hasher: Hasher,
    pub ip_throttle: IpThrottle,
    pub body_budget: crate::body::BodyBudget,
    pub uploads: crate::body::UploadSlots,
    pub metrics: crate::metrics::Metrics,
    /// This process's own Automerge actor for server changes (`records::commit`): random
    /// at start, so two server processes never share one.
    pub server_actor: automerge::ActorId,
    /// The dashboard's figures, per state of the change log.
    pub figures: crate::reports::FiguresCache,
}

/// The access-token key: from the settings, or generated once and kept in the database so
/// restarts and other instances on the same database accept the same tokens.
fn jwt_secret(settings: &Settings, db: &Database) -> Result<Vec<u8>, ApiError> {
    if !settings.jwt_secret.is_empty() {
        return Ok(settings.jwt_secret.expose().as_bytes().to_vec());
    }
    let mut conn = db.get()?;
    let value = ServerKey::get_or_create(&mut conn, "jwt_hs256", || {
        let mut bytes = [0u8; 48];
        // An all-zero key would be guessable; fail the insert path loudly instead.
        if getrandom::fill(&mut bytes).is_err() {
            return String::new();
        }
        hex::encode(bytes)
    })?;
    if value.len() < 64 {
        return Err(ApiError::internal(
            "stored signing key is missing or too short",
        ));
    }
    Ok(value.into_bytes())
}

pub fn build_state(settings: Settings, db: Database) -> Result<AppState, ApiError> {
    let secret = jwt_secret(&settings, &db)?;
    let jwt = JwtKeys::new(
        &secret,
        &settings.jwt_issuer,
        &settings.jwt_audience,
        settings.access_token_ttl_secs,
    );
    let hasher = Hasher::new(
        settings.max_concurrent_password_hashes,
        Duration::from_secs(settings.password_hash_queue_timeout_secs),
    )?;
    let ip_throttle = IpThrottle::new(
        settings.login_max_failures_per_ip,
        Duration::from_secs(settings.login_failure_window_secs),
    );
    crate::records::duplicates::set_enabled(settings.duplicate_detection);
    let body_budget = crate::body::BodyBudget::new(settings.body_memory_budget);
    let uploads =
        crate::body::UploadSlots::new(settings.uploads_per_account, settings.uploads_per_device);
    Ok(AppState {
        settings,
        db,
        jwt,
        hasher,
        ip_throttle,
        body_budget,
        uploads,
        metrics: crate::metrics::Metrics::default(),
        server_actor: automerge::ActorId::random(),
        figures: crate::reports::FiguresCache::default(),
    })
}
