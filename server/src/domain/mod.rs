//! Pure rules (no actix, no diesel): roles, scopes, who may manage whom, and the statuses
//! of review items.

pub mod access;
pub mod scope;
pub mod status;
