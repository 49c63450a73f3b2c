//! coopsync server: an actix-web API that takes Automerge change sets from offline
//! tablets, keeps every change, and projects the merged records into relational tables
//! on SQLite (default) or PostgreSQL.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod body;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod export;
pub mod import;
pub mod metrics;
pub mod records;
pub mod reports;
pub mod review;
pub mod startup;
pub mod state;
pub mod sync;
pub mod tabular;
pub mod telemetry;
pub mod web;
