//! Request bodies read with an explicit size limit, a deadline, bounded gzip
//! decompression and a server-wide memory budget; actix has no body read timeout and
//! `web::Payload` has no limit.

use std::{future::Future, io::Read, ops::Deref, pin::Pin, sync::Arc, time::Duration};

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE},
    web,
};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{error::ApiError, state::AppState};

/// Limits for one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes on the wire.
    pub wire: usize,
    /// Bytes after decompression.
    pub decoded: usize,
    /// The whole body must arrive within this time.
    pub timeout: Duration,
    /// After `grace`, the body must have averaged at least this many bytes a second.
    pub min_rate: usize,
    pub grace: Duration,
}

/// How long a request waits for room in the body budget before it gets 503.
const BUDGET_WAIT: Duration = Duration::from_secs(10);
/// What a gzip body is first assumed to inflate to, per compressed byte; more is taken
/// from the budget without waiting, if it is there.
const GZIP_FIRST_GUESS: usize = 8;
const MIN_RESERVATION: usize = 64 * 1024;

/// The bytes all request bodies being read or parsed may hold at once. Each request
/// reserves what it can need before reading (its Content-Length, the wire limit when
/// chunked, a guess for gzip), waiting in line if the budget is spent, and gives it back
/// when the parsed request is dropped. A gzip body that inflates past its guess doubles
/// its reservation step by step; when a step is not free it drops what it inflated,
/// gives back that share and waits in line for the doubled one (keeping only its wire
/// bytes), so requests cannot wait on each other holding inflated bytes.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    /// The whole budget, in bytes.
    capacity: usize,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            kib: Arc::new(Semaphore::new(kib(bytes) as usize)),
            capacity: kib(bytes) as usize * 1024,
        }
    }

    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        tokio::time::timeout(BUDGET_WAIT, self.kib.clone().acquire_many_owned(kib(bytes)))
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(ApiError::ServerBusy {
                retry_after_secs: 5,
            })
    }

    /// Takes `bytes` more for a body that inflated past its reservation, if they are free
    /// now. Never waits: see `read_body` for what happens when they are not.
    fn try_grow(&self, reserved: &mut OwnedSemaphorePermit, bytes: usize) -> bool {
        match self.kib.clone().try_acquire_many_owned(kib(bytes)) {
            Ok(more) => {
                reserved.merge(more);
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back all of `reserved` above `keep` bytes, then waits in line for `more`
    /// bytes like a first reservation. What it keeps is a body's wire bytes: small next
    /// to the budget, and bounded by the wait.
    async fn regrow(
        &self,
        mut reserved: OwnedSemaphorePermit,
        keep: usize,
        more: usize,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        if keep + more > self.capacity {
            return Err(ApiError::ServerBusy {
                retry_after_secs: 5,
            });
        }
        let surplus = reserved.num_permits().saturating_sub(kib(keep) as usize);
        drop(reserved.split(surplus));
        let extra = self.reserve(more).await?;
        reserved.merge(extra);
        Ok(reserved)
    }

    /// The whole budget, in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes free right now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.kib.available_permits() * 1024
    }
}

/// Sync uploads in flight per account and per device. One account's uploads take at most
/// `per_account` shares of the body budget, so slow or hostile uploads from one account
/// (17 trickling 4 MiB bodies once filled the whole budget) leave room for everyone else.
#[derive(Debug, Clone)]
pub struct UploadSlots {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    per_account: usize,
    per_device: usize,
}

/// A held upload slot, given back when dropped.
#[derive(Debug)]
pub struct UploadSlot {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    keys: [String; 2],
}

impl UploadSlots {
    pub fn new(per_account: usize, per_device: usize) -> Self {
        Self {
            inner: Arc::default(),
            per_account,
            per_device,
        }
    }

    /// A slot for one upload of `user_id` on `device_id`, waiting up to `BUDGET_WAIT` for
    /// one of the account's or device's own uploads to finish (a tablet re-sending a batch
    /// whose answer was slow), then `too_many_uploads` (429). A waiting request holds
    /// nothing of the budget.
    pub async fn take(&self, user_id: &str, device_id: &str) -> Result<UploadSlot, ApiError> {
        let deadline = tokio::time::Instant::now() + BUDGET_WAIT;
        loop {
            match self.try_take(user_id, device_id) {
                Err(ApiError::TooManyUploads { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    fn try_take(&self, user_id: &str, device_id: &str) -> Result<UploadSlot, ApiError> {
        let keys = [format!("u:{user_id}"), format!("d:{device_id}")];
        let mut map = self
            .inner
            .lock()
            .map_err(|_| ApiError::internal("upload slots poisoned"))?;
        let full = map.get(&keys[0]).copied().unwrap_or(0) >= self.per_account
            || map.get(&keys[1]).copied().unwrap_or(0) >= self.per_device;
        if full {
            return Err(ApiError::TooManyUploads {
                retry_after_secs: 5,
            });
        }
        for k in &keys {
            *map.entry(k.clone()).or_default() += 1;
        }
        drop(map);
        Ok(UploadSlot {
            inner: self.inner.clone(),
            keys,
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inner.lock() {
            for k in &self.keys {
                if let Some(n) = map.get_mut(k) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        map.remove(k);
                    }
                }
            }
        }
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// A body read whole, with its share of the budget: drop it once parsed.
#[derive(Debug)]
pub struct Body {
    bytes: Vec<u8>,
    _reserved: OwnedSemaphorePermit,
}

/// A share of the body budget, given back when dropped.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit);

impl Body {
    /// The bytes, and the reservation to keep while what was parsed from them lives.
    pub fn into_parts(self) -> (Vec<u8>, Reservation) {
        (self.bytes, Reservation(self._reserved))
    }
}

impl Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads the whole body, enforcing the limits and the budget, and decompresses
/// `Content-Encoding: gzip`.
pub async fn read_body<S, E>(
    req: &HttpRequest,
    payload: &mut S,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<Body, ApiError>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.wire as u64) {
        return Err(ApiError::PayloadTooLarge { limit: limits.wire });
    }
    let gzip = match req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("invalid").trim().to_ascii_lowercase())
    {
        None => false,
        Some(enc) if enc.is_empty() || enc == "identity" => false,
        Some(enc) if enc == "gzip" || enc == "x-gzip" => true,
        Some(enc) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content encoding `{enc}` is not supported; use gzip or none"
            )));
        }
    };
    let wire = declared.map_or(limits.wire, |len| len as usize);
    let first = if gzip {
        wire + (wire * GZIP_FIRST_GUESS).clamp(MIN_RESERVATION, limits.decoded)
    } else {
        wire
    };
    let mut reserved = budget.reserve(first).await?;
    let started = tokio::time::Instant::now();
    let collect = async {
        let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize));
        loop {
            // The next chunk must come soon enough to keep the average rate: a trickle
            // (one byte a second) is cut off once the grace period is over.
            let elapsed = started.elapsed();
            let wait = if elapsed < limits.grace {
                limits.grace - elapsed
            } else {
                let owed = (elapsed.as_secs_f64() * limits.min_rate as f64) as usize;
                if body.len() < owed {
                    return Err(ApiError::RequestTimeout);
                }
                // Until the bytes so far no longer cover the rate (never negative: float
                // rounding at the boundary must not make `Duration` panic).
                let covered =
                    (body.len() as f64 / limits.min_rate.max(1) as f64) - elapsed.as_secs_f64();
                Duration::try_from_secs_f64(covered.max(0.0))
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(100))
            };
            let next = match tokio::time::timeout(wait, payload.next()).await {
                Ok(next) => next,
                Err(_) => continue,
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("invalid_body", format!("the body could not be read: {e}"))
            })?;
            if body.len() + chunk.len() > limits.wire {
                return Err(ApiError::PayloadTooLarge { limit: limits.wire });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(limits.timeout, collect)
        .await
        .map_err(|_| ApiError::RequestTimeout)??;
    if !gzip {
        return Ok(Body {
            bytes: body,
            _reserved: reserved,
        });
    }
    let corrupt = |_| ApiError::bad_request("invalid_body", "the gzip body is corrupt");
    let mut guess = first - wire;
    let mut decoder = flate2::read::MultiGzDecoder::new(&body[..]);
    let mut decoded = Vec::new();
    loop {
        // Read up to one byte past the reservation, to learn whether there is more.
        let room = (guess + 1).saturating_sub(decoded.len());
        (&mut decoder)
            .take(room as u64)
            .read_to_end(&mut decoded)
            .map_err(corrupt)?;
        if decoded.len() <= guess {
            break;
        }
        if guess >= limits.decoded {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.decoded,
            });
        }
        // Double the reservation: the budget bounds memory, not how many compressed
        // bodies are read at once. When the step is not free, the inflated bytes are
        // dropped with their share, the request waits in line for the doubled share and
        // inflates again from the start: no request waits while holding inflated bytes,
        // so requests cannot wait on each other and the budget still counts every
        // inflated byte.
        let next = guess.saturating_mul(2).min(limits.decoded);
        if !budget.try_grow(&mut reserved, next - guess) {
            decoded = Vec::new();
            reserved = budget.regrow(reserved, wire, next).await?;
            decoder = flate2::read::MultiGzDecoder::new(&body[..]);
        }
        guess = next;
    }
    Ok(Body {
        bytes: decoded,
        _reserved: reserved,
    })
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
pub fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// A JSON body read with the application's JSON limit and read timeout. Extraction itself
/// never fails: actix polls all extractors of a handler together, and a malformed body must
/// not answer 400 before authentication has had its say. The handler calls `parse()` after
/// its `Principal`, and gets `ApiError`s with their own codes.
#[derive(Debug)]
pub struct ApiJson<T>(Result<T, ApiError>);

impl<T> ApiJson<T> {
    pub fn parse(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move { Ok(ApiJson(read_json(req, &mut payload).await)) })
    }
}

async fn read_json<T: DeserializeOwned>(
    req: HttpRequest,
    payload: &mut Payload,
) -> Result<T, ApiError> {
    {
        {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::internal("application state missing"))?;
            if !is_json(&req) {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be JSON (Content-Type: application/json)".into(),
                ));
            }
            let limit = state.settings.json_body_limit;
            let body = read_body(
                &req,
                payload,
                BodyLimits {
                    wire: limit,
                    decoded: limit,
                    timeout: state.settings.body_read_timeout(),
                    min_rate: state.settings.body_min_rate_bytes_per_sec,
                    grace: Duration::from_secs(state.settings.body_min_rate_grace_secs),
                },
                &state.body_budget,
            )
            .await?;
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("the JSON body is invalid: {e}"))
            })
        }
    }
}
