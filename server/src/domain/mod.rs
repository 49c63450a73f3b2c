//! Pure rules (no actix, no diesel): roles, scopes, who may manage whom, the statuses
//! of review items, and whether two person records may be the same farmer.

pub mod access;
pub mod matching;
pub mod scope;
pub mod status;
