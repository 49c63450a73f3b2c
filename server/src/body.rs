//! Request bodies read with an explicit size limit, a deadline, and bounded gzip
//! decompression; actix has no body read timeout and `web::Payload` has no limit.

use std::{future::Future, io::Read, pin::Pin, time::Duration};

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE},
    web,
};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::{error::ApiError, startup::AppState};

/// Limits for one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes on the wire.
    pub wire: usize,
    /// Bytes after decompression.
    pub decoded: usize,
    /// The whole body must arrive within this time.
    pub timeout: Duration,
}

/// Reads the whole body, enforcing the limits, and decompresses `Content-Encoding: gzip`.
pub async fn read_body<S, E>(
    req: &HttpRequest,
    payload: &mut S,
    limits: BodyLimits,
) -> Result<Vec<u8>, ApiError>
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
    let collect = async {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
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
        return Ok(body);
    }
    let mut decoded = Vec::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .take(limits.decoded as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|_| ApiError::bad_request("invalid_body", "the gzip body is corrupt"))?;
    if decoded.len() > limits.decoded {
        return Err(ApiError::PayloadTooLarge {
            limit: limits.decoded,
        });
    }
    Ok(decoded)
}

fn is_json(req: &HttpRequest) -> bool {
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
                },
            )
            .await?;
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("the JSON body is invalid: {e}"))
            })
        }
    }
}
