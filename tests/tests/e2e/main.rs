//! End-to-end tests: one binary, a real server on a loopback port per test, a fresh
//! SQLite file or PostgreSQL database per test. Each test runs on both backends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity,
    reason = "tests: a failed expectation is a failed test; rows read as tuples"
)]

mod auth;
mod authz;
mod backup;
mod cli;
mod convergence;
mod crash;
mod duplicates;
mod exports;
mod fuzz_fixtures;
mod health;
mod hostile;
mod hostile_battery;
mod hostile_shapes;
mod imports;
mod limits;
mod memory;
mod openapi;
mod outside_review;
mod replay;
mod reports;
mod review;
mod schema;
mod scope;
mod slowlink;
mod spreadsheets;
mod sync;
mod tokens;
mod walk_ins;
mod web_app;
