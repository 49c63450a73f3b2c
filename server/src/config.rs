//! Settings: a value loaded once in `main` (defaults, then an optional TOML file, then
//! `COOPSYNC_*` environment variables) and passed to `Application::build`.

use std::{fmt, path::Path, time::Duration};

use serde::Deserialize;

/// A secret string: never printed by `Debug`, so settings can be logged safely.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"[redacted]\"")
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// `postgres://…` for PostgreSQL; anything else is a SQLite file path (`sqlite://` optional).
    pub database_url: Secret,
    pub database_pool_size: u32,
    /// Seconds a request waits for a database connection before answering 503.
    pub database_timeout_secs: u64,
    /// HMAC key for access tokens. Empty: a random key is generated once and kept in the database.
    pub jwt_secret: Secret,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: u64,
    /// A refresh token unused for this long expires; every use rotates it and restarts the clock.
    pub refresh_token_idle_days: u64,
    /// How long after a rotation the previous refresh token may be retried once (lost response).
    pub refresh_retry_window_secs: u64,
    pub login_max_failures_per_account: u32,
    pub login_max_failures_per_ip: u32,
    /// Window over which login failures are counted.
    pub login_failure_window_secs: u64,
    /// Password hashes computed at once; the rest wait, then get 503.
    pub max_concurrent_password_hashes: usize,
    pub password_hash_queue_timeout_secs: u64,
    /// A request body must arrive completely within this many seconds.
    pub body_read_timeout_secs: u64,
    /// Largest JSON body for the account and admin routes, in bytes.
    pub json_body_limit: usize,
    /// Largest registry file an import upload may be, in bytes.
    pub import_file_limit: usize,
    /// Largest sync request body on the wire (possibly compressed), in bytes.
    pub sync_body_limit: usize,
    /// Largest sync request body after decompression, in bytes.
    pub sync_decompressed_limit: usize,
    /// Bytes all request bodies being read and parsed may hold at once; requests beyond
    /// it wait (up to 10 s, then 503 `server_busy`). Bounds memory under many uploads.
    pub body_memory_budget: usize,
    /// Sync uploads one account may have in flight at once (the rest: 429), so that one
    /// account cannot fill the body budget for everyone.
    pub uploads_per_account: usize,
    /// Sync uploads one device may have in flight at once.
    pub uploads_per_device: usize,
    /// A body must average at least this many bytes per second once
    /// `body_min_rate_grace_secs` have passed, else 408 (a trickle holds its share of
    /// the budget for nothing). 2G/EDGE links manage several KB/s.
    pub body_min_rate_bytes_per_sec: usize,
    pub body_min_rate_grace_secs: u64,
    /// Changes held for missing dependencies longer than this are shown as stale in the
    /// waiting-changes queue (never dropped).
    pub pending_stale_days: u64,
    /// Look for possible duplicate members as records arrive (docs/duplicates.md). Off:
    /// nothing is proposed until `coopsync duplicates rescan`.
    pub duplicate_detection: bool,
    /// A web app session unused for this many minutes ends (the next page asks to sign in).
    pub web_session_idle_mins: u64,
    /// A web app session ends this many hours after sign-in, however busy.
    pub web_session_max_hours: u64,
    pub workers: Option<usize>,
    pub shutdown_timeout_secs: u64,
    pub log_format: LogFormat,
    /// `tracing` filter, e.g. `info` or `coopsync=debug,info`.
    pub log_filter: String,
    /// Bearer token that opens `GET /metrics` (Prometheus). Empty: the route answers 404.
    pub metrics_token: Secret,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            database_url: Secret::new("coopsync.db"),
            database_pool_size: 8,
            database_timeout_secs: 10,
            jwt_secret: Secret::default(),
            jwt_issuer: "coopsync".into(),
            jwt_audience: "coopsync-api".into(),
            access_token_ttl_secs: 900,
            refresh_token_idle_days: 120,
            refresh_retry_window_secs: 600,
            login_max_failures_per_account: 100,
            login_max_failures_per_ip: 1000,
            login_failure_window_secs: 3600,
            max_concurrent_password_hashes: 1,
            password_hash_queue_timeout_secs: 10,
            body_read_timeout_secs: 60,
            json_body_limit: 64 * 1024,
            import_file_limit: 32 * 1024 * 1024,
            sync_body_limit: 4 * 1024 * 1024,
            sync_decompressed_limit: 16 * 1024 * 1024,
            body_memory_budget: 64 * 1024 * 1024,
            uploads_per_account: 4,
            uploads_per_device: 2,
            body_min_rate_bytes_per_sec: 256,
            body_min_rate_grace_secs: 15,
            pending_stale_days: 7,
            duplicate_detection: true,
            web_session_idle_mins: 30,
            web_session_max_hours: 12,
            workers: None,
            shutdown_timeout_secs: 30,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            metrics_token: Secret::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid value for {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then the TOML file at `path` if given, then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut settings = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source,
                })?
            }
            None => Settings::default(),
        };
        settings.apply_env(std::env::vars())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Applies `COOPSYNC_<FIELD>` variables (and the conventional `DATABASE_URL`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut database_url = None;
        let mut coopsync_database_url = None;
        for (name, value) in vars {
            if name == "DATABASE_URL" {
                database_url = Some(value);
                continue;
            }
            let Some(key) = name.strip_prefix("COOPSYNC_") else {
                continue;
            };
            let err = |message: &str| ConfigError::Env {
                name: name.clone(),
                message: message.to_string(),
            };
            let num = |v: &str| v.parse::<u64>().map_err(|_| err("expected a whole number"));
            match key {
                "BIND" => self.bind = value,
                "DATABASE_URL" => coopsync_database_url = Some(value),
                "DATABASE_POOL_SIZE" => {
                    self.database_pool_size =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "DATABASE_TIMEOUT_SECS" => self.database_timeout_secs = num(&value)?,
                "JWT_SECRET" => self.jwt_secret = Secret::new(value),
                "JWT_ISSUER" => self.jwt_issuer = value,
                "JWT_AUDIENCE" => self.jwt_audience = value,
                "ACCESS_TOKEN_TTL_SECS" => self.access_token_ttl_secs = num(&value)?,
                "REFRESH_TOKEN_IDLE_DAYS" => self.refresh_token_idle_days = num(&value)?,
                "REFRESH_RETRY_WINDOW_SECS" => self.refresh_retry_window_secs = num(&value)?,
                "LOGIN_MAX_FAILURES_PER_ACCOUNT" => {
                    self.login_max_failures_per_account =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "LOGIN_MAX_FAILURES_PER_IP" => {
                    self.login_max_failures_per_ip =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "LOGIN_FAILURE_WINDOW_SECS" => self.login_failure_window_secs = num(&value)?,
                "MAX_CONCURRENT_PASSWORD_HASHES" => {
                    self.max_concurrent_password_hashes =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "PASSWORD_HASH_QUEUE_TIMEOUT_SECS" => {
                    self.password_hash_queue_timeout_secs = num(&value)?
                }
                "BODY_READ_TIMEOUT_SECS" => self.body_read_timeout_secs = num(&value)?,
                "UPLOADS_PER_ACCOUNT" => {
                    self.uploads_per_account =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "UPLOADS_PER_DEVICE" => {
                    self.uploads_per_device =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "BODY_MIN_RATE_BYTES_PER_SEC" => {
                    self.body_min_rate_bytes_per_sec =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "BODY_MIN_RATE_GRACE_SECS" => self.body_min_rate_grace_secs = num(&value)?,
                "PENDING_STALE_DAYS" => self.pending_stale_days = num(&value)?,
                "DUPLICATE_DETECTION" => {
                    self.duplicate_detection = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(err("expected true or false")),
                    }
                }
                "WEB_SESSION_IDLE_MINS" => self.web_session_idle_mins = num(&value)?,
                "WEB_SESSION_MAX_HOURS" => self.web_session_max_hours = num(&value)?,
                "METRICS_TOKEN" => self.metrics_token = Secret::new(value),
                "JSON_BODY_LIMIT" => {
                    self.json_body_limit = num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "IMPORT_FILE_LIMIT" => {
                    self.import_file_limit =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "SYNC_BODY_LIMIT" => {
                    self.sync_body_limit = num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "SYNC_DECOMPRESSED_LIMIT" => {
                    self.sync_decompressed_limit =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "BODY_MEMORY_BUDGET" => {
                    self.body_memory_budget =
                        num(&value)?.try_into().map_err(|_| err("too large"))?
                }
                "WORKERS" => {
                    self.workers = Some(num(&value)?.try_into().map_err(|_| err("too large"))?)
                }
                "SHUTDOWN_TIMEOUT_SECS" => self.shutdown_timeout_secs = num(&value)?,
                "LOG_FORMAT" => {
                    self.log_format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => return Err(err("expected `text` or `json`")),
                    }
                }
                "LOG" | "LOG_FILTER" => self.log_filter = value,
                // COOPSYNC_CONFIG names the file itself; test-only variables are not settings.
                _ => {}
            }
        }
        // COOPSYNC_DATABASE_URL wins over the conventional DATABASE_URL.
        if let Some(url) = coopsync_database_url.or(database_url) {
            self.database_url = Secret::new(url);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.access_token_ttl_secs == 0 || self.access_token_ttl_secs > 900 {
            return invalid("access_token_ttl_secs must be between 1 and 900 (15 minutes)");
        }
        if self.refresh_token_idle_days == 0 {
            return invalid("refresh_token_idle_days must be at least 1");
        }
        if self.database_pool_size == 0 {
            return invalid("database_pool_size must be at least 1");
        }
        if self.max_concurrent_password_hashes == 0 {
            return invalid("max_concurrent_password_hashes must be at least 1");
        }
        if !self.jwt_secret.is_empty() && self.jwt_secret.expose().len() < 32 {
            return invalid("jwt_secret must be at least 32 characters");
        }
        if !self.metrics_token.is_empty() && self.metrics_token.expose().len() < 24 {
            return invalid("metrics_token must be at least 24 characters");
        }
        if self.web_session_idle_mins == 0 || self.web_session_max_hours == 0 {
            return invalid("web_session_idle_mins and web_session_max_hours must be at least 1");
        }
        if self.uploads_per_account == 0 || self.uploads_per_device == 0 {
            return invalid("uploads_per_account and uploads_per_device must be at least 1");
        }
        if self.sync_decompressed_limit < self.sync_body_limit {
            return invalid("sync_decompressed_limit must not be below sync_body_limit");
        }
        if self.body_memory_budget < self.sync_body_limit + self.sync_decompressed_limit {
            return invalid(
                "body_memory_budget must hold at least one largest sync body \
                 (sync_body_limit + sync_decompressed_limit)",
            );
        }
        Ok(())
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_coopsync_database_url_wins() {
        let mut s = Settings::default();
        s.apply_env([
            ("DATABASE_URL".to_string(), "postgres://a/b".to_string()),
            ("COOPSYNC_DATABASE_URL".to_string(), "x.db".to_string()),
            ("COOPSYNC_BIND".to_string(), "0.0.0.0:9".to_string()),
            (
                "COOPSYNC_ACCESS_TOKEN_TTL_SECS".to_string(),
                "60".to_string(),
            ),
        ])
        .expect("valid env");
        assert_eq!(s.database_url.expose(), "x.db");
        assert_eq!(s.bind, "0.0.0.0:9");
        assert_eq!(s.access_token_ttl_secs, 60);
    }

    #[test]
    fn bad_number_is_a_clear_error() {
        let mut s = Settings::default();
        let err = s
            .apply_env([("COOPSYNC_WORKERS".to_string(), "many".to_string())])
            .expect_err("must fail");
        assert!(err.to_string().contains("COOPSYNC_WORKERS"));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Settings {
            jwt_secret: Secret::new("super-secret-value-that-is-long-enough"),
            database_url: Secret::new("postgres://user:pw@host/db"),
            ..Settings::default()
        };
        let text = format!("{s:?}");
        assert!(!text.contains("super-secret"));
        assert!(!text.contains("pw@host"));
    }

    #[test]
    fn access_tokens_cannot_outlive_fifteen_minutes() {
        let s = Settings {
            access_token_ttl_secs: 3600,
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn the_body_budget_must_hold_one_largest_sync_body() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        s.apply_env([(
            "COOPSYNC_BODY_MEMORY_BUDGET".to_string(),
            (8 * 1024 * 1024).to_string(),
        )])
        .expect("a number");
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("body_memory_budget")
        );
    }
}
