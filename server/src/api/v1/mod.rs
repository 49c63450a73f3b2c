//! `/api/v1`: one module per resource; handlers extract, authorize, call a service and
//! map the result to a response type.

pub mod audit;
pub mod auth;
pub mod conflicts;
pub mod devices;
pub mod duplicates;
pub mod exports;
pub mod flags;
pub mod imports;
pub mod provinces;
pub mod quarantine;
pub mod records;
pub mod reports;
pub mod sync;
pub mod users;
pub mod walk_ins;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .service(auth::login)
            .service(auth::refresh)
            .service(auth::logout)
            .service(auth::me)
            .service(users::list_users)
            .service(users::create_user)
            .service(users::get_user)
            .service(users::update_user)
            .service(users::set_assignments)
            .service(users::reset_password)
            .service(devices::list_devices)
            .service(devices::revoke_device)
            .service(provinces::list_provinces)
            .service(audit::list_audit)
            .service(conflicts::list_conflicts)
            .service(conflicts::get_conflict)
            .service(conflicts::resolve_conflict)
            .service(flags::list_flags)
            .service(flags::get_flag)
            .service(flags::accept_flag)
            .service(flags::correct_flag)
            .service(quarantine::list_quarantine)
            .service(quarantine::get_quarantined_bytes)
            .service(quarantine::get_quarantined)
            .service(quarantine::release_quarantined)
            .service(quarantine::dismiss_quarantined)
            .service(quarantine::list_pending)
            .service(duplicates::list_duplicates)
            .service(duplicates::get_duplicate)
            .service(duplicates::merge_duplicate)
            .service(duplicates::not_same_duplicate)
            .service(duplicates::undo_merge)
            .service(walk_ins::list_walk_ins)
            .service(walk_ins::get_walk_in)
            .service(walk_ins::link_walk_in)
            .service(walk_ins::promote_walk_in)
            .service(walk_ins::undo_walk_in)
            .service(records::list_records)
            .service(records::edit_record)
            .service(records::get_record)
            .service(records::record_history)
            .service(exports::export_dataset)
            .service(imports::list_imports)
            .service(imports::import_template)
            .service(imports::get_import)
            .service(imports::apply_import)
            .service(imports::upload_import)
            .service(reports::list_reports)
            .service(reports::get_report)
            .service(sync::sync),
    );
}

/// A numeric id from the path, read after authentication (a path extractor would answer
/// 400 before the token is checked); one that is not a number names nothing.
pub fn numeric_id(raw: &str, what: &'static str) -> Result<i64, crate::error::ApiError> {
    raw.parse()
        .map_err(|_| crate::error::ApiError::NotFound(what))
}

/// Page size bounds shared by list endpoints.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}
