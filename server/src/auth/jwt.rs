//! Access tokens: short-lived HS256 JWTs. The algorithm is pinned, `iss`, `aud`, `sub`,
//! `exp`, `iat` and `nbf` are required and checked, and the `at+jwt` header type plus a
//! `token_use` claim keep them apart from any other token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Header `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
const TOKEN_USE: &str = "access";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    /// The device the token was issued to.
    pub did: String,
    /// The device's token epoch at issue; revoking the device moves it on.
    pub dep: i64,
    pub token_use: String,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Tablet clocks are often wrong, but the server checks its own tokens against its
        // own clock: a few seconds cover several server processes whose clocks differ.
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn issue(&self, user_id: &str, device_id: &str, epoch: i64) -> Result<String, ApiError> {
        let now = unix_now();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            exp: now + self.ttl_secs,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            did: device_id.to_string(),
            dep: epoch,
            token_use: TOKEN_USE.to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_string());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// Checks signature, algorithm, type and claims; `TokenExpired` tells the client to
    /// refresh, every other failure is `InvalidToken`.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken)?;
        if header.alg != Algorithm::HS256 || header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(ApiError::InvalidToken);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                _ => ApiError::InvalidToken,
            })?;
        let claims = data.claims;
        if claims.token_use != TOKEN_USE || claims.iat > claims.exp {
            return Err(ApiError::InvalidToken);
        }
        Ok(claims)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            b"0123456789abcdef0123456789abcdef",
            "coopsync",
            "coopsync-api",
            900,
        )
    }

    #[test]
    fn issued_token_verifies_and_carries_device_and_epoch() {
        let k = keys();
        let token = k.issue("u1", "d1", 3).expect("issue");
        let claims = k.verify(&token).expect("verify");
        assert_eq!(
            (claims.sub.as_str(), claims.did.as_str(), claims.dep),
            ("u1", "d1", 3)
        );
    }

    #[test]
    fn token_from_another_key_or_audience_is_rejected() {
        let token = keys().issue("u1", "d1", 0).expect("issue");
        let other = JwtKeys::new(
            b"ffffffffffffffffffffffffffffffff",
            "coopsync",
            "coopsync-api",
            900,
        );
        assert!(matches!(other.verify(&token), Err(ApiError::InvalidToken)));
        let other_aud = JwtKeys::new(b"0123456789abcdef0123456789abcdef", "coopsync", "x", 900);
        assert!(matches!(
            other_aud.verify(&token),
            Err(ApiError::InvalidToken)
        ));
    }
}
