//! HTTP surface: health probes, the versioned API, the OpenAPI document and its browser.

pub mod download;
pub mod health;
pub mod openapi;
pub mod v1;

pub use crate::db::utc;
