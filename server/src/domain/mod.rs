//! Pure rules (no actix, no diesel): roles, scopes and who may manage whom.

pub mod access;
