//! HTTP surface: health probes, the versioned API, the OpenAPI document and its browser.

pub mod health;
pub mod openapi;
pub mod v1;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Stored UTC timestamps, shown as RFC 3339.
pub fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    DateTime::from_naive_utc_and_offset(t, Utc)
}
