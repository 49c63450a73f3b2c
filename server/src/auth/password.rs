//! Argon2id password hashing off the async threads, with a cap on concurrent hashes so a
//! login flood cannot starve sync, and equal work for unknown usernames.

use std::{sync::Arc, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::SaltString,
};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Passwords shorter than this are refused when set.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longer ones are refused too: hashing cost grows with length.
pub const MAX_PASSWORD_LEN: usize = 256;

fn argon2() -> Argon2<'static> {
    // OWASP: m = 19 MiB, t = 2, p = 1. The values are valid constants, so the fallback
    // to the crate default (which is the same set today) never happens in practice.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (blocking; CPU-bound).
pub fn hash_blocking(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(ApiError::internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Verifies a password against a PHC string (blocking; CPU-bound). A malformed stored
/// hash is an internal error, never a successful login.
pub fn verify_blocking(password: &str, phc: &str) -> Result<bool, ApiError> {
    let parsed = PasswordHash::new(phc).map_err(ApiError::internal)?;
    match argon2().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Runs hashes on the blocking pool, at most `permits` at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A real hash of a random password, verified against when the username is unknown.
    dummy: Arc<String>,
}

impl Hasher {
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Result<Self, ApiError> {
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(ApiError::internal)?;
        let dummy = hash_blocking(&hex::encode(random))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            queue_timeout,
            dummy: Arc::new(dummy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let busy = ApiError::ServerBusy {
            retry_after_secs: 5,
        };
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy)?
            .map_err(ApiError::internal)?;
        let result = actix_web::web::block(f).await?;
        drop(permit);
        result
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || hash_blocking(&password)).await
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no
    /// account, so both cases cost the same.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.as_str().to_owned());
        let ok = self.run(move || verify_blocking(&password, &phc)).await?;
        Ok(known && ok)
    }
}

/// Checks a new password against the policy.
pub fn check_policy(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(ApiError::validation(
            "password",
            "too_short",
            format!("the password must have at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if chars > MAX_PASSWORD_LEN {
        return Err(ApiError::validation(
            "password",
            "too_long",
            format!("the password must have at most {MAX_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_with_owasp_parameters_and_verify() {
        let phc = hash_blocking("correct horse battery").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_blocking("correct horse battery", &phc).expect("verify"));
        assert!(!verify_blocking("wrong horse battery", &phc).expect("verify"));
    }

    #[test]
    fn malformed_stored_hash_is_an_error_not_a_login() {
        assert!(verify_blocking("x", "not-a-phc-string").is_err());
    }
}
