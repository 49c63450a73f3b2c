//! The OpenAPI document, generated from the handlers and types, and the bundled
//! Swagger UI (vendored: served by the binary with no internet access).

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, RefOr, ResponseBuilder,
        path::{Operation, ParameterIn},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{health, v1};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Adds the errors any operation can answer, from the shared body reader, the query
/// parser and the database layer, so the document lists every status the server sends.
struct CommonErrors;

impl CommonErrors {
    fn add(op: &mut Operation, status: &str, description: &str) {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let has_query = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query));
                if op.request_body.is_some() {
                    Self::add(
                        op,
                        "400",
                        "the body is not valid JSON for this operation (`invalid_json`)",
                    );
                    Self::add(
                        op,
                        "408",
                        "the body did not arrive in time (`request_timeout`)",
                    );
                    Self::add(
                        op,
                        "413",
                        "the body is larger than the limit (`payload_too_large`)",
                    );
                    Self::add(
                        op,
                        "415",
                        "the body is not JSON, or is compressed with an unsupported encoding (`unsupported_media_type`)",
                    );
                } else if has_query {
                    Self::add(op, "400", "the query string is invalid (`invalid_query`)");
                }
                if op.security.is_some() {
                    Self::add(
                        op,
                        "401",
                        "no valid access token (`unauthenticated`, `invalid_token`, `token_expired`, ...)",
                    );
                }
                Self::add(
                    op,
                    "503",
                    "the database is unavailable or the server is busy; retry after `Retry-After` seconds",
                );
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "coopsync API",
        description = "Offline-first sync and administration API for agricultural cooperative \
                       training records. Every error body is `{\"error\": {\"code\", \"message\"}}`; \
                       the codes are listed in docs/api.md.",
        license(name = "Apache-2.0")
    ),
    paths(
        health::healthz,
        health::readyz,
        v1::auth::login,
        v1::auth::refresh,
        v1::auth::logout,
        v1::auth::me,
        v1::users::list_users,
        v1::users::create_user,
        v1::users::get_user,
        v1::users::update_user,
        v1::users::set_assignments,
        v1::users::reset_password,
        v1::devices::list_devices,
        v1::devices::revoke_device,
        v1::provinces::list_provinces,
        v1::audit::list_audit,
        v1::conflicts::list_conflicts,
        v1::conflicts::get_conflict,
        v1::conflicts::resolve_conflict,
        v1::flags::list_flags,
        v1::flags::get_flag,
        v1::flags::accept_flag,
        v1::flags::correct_flag,
        v1::quarantine::list_quarantine,
        v1::quarantine::get_quarantined,
        v1::quarantine::get_quarantined_bytes,
        v1::quarantine::release_quarantined,
        v1::quarantine::dismiss_quarantined,
        v1::quarantine::list_pending,
        v1::duplicates::list_duplicates,
        v1::duplicates::get_duplicate,
        v1::duplicates::merge_duplicate,
        v1::duplicates::not_same_duplicate,
        v1::duplicates::undo_merge,
        v1::walk_ins::list_walk_ins,
        v1::walk_ins::get_walk_in,
        v1::walk_ins::link_walk_in,
        v1::walk_ins::promote_walk_in,
        v1::walk_ins::undo_walk_in,
        v1::records::list_records,
        v1::records::get_record,
        v1::records::edit_record,
        v1::records::record_history,
        v1::exports::export_dataset,
        v1::imports::upload_import,
        v1::imports::list_imports,
        v1::imports::get_import,
        v1::imports::apply_import,
        v1::imports::import_template,
        v1::reports::list_reports,
        v1::reports::get_report,
        v1::sync::sync,
    ),
    modifiers(&BearerAuth, &CommonErrors),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "auth", description = "Sign-in, token refresh, sign-out"),
        (name = "users", description = "Account administration"),
        (name = "devices", description = "Registered tablets"),
        (name = "reference", description = "Reference data"),
        (name = "audit", description = "Audit log"),
        (name = "review", description = "Review queues: conflicts, validation flags, quarantine, waiting changes, possible duplicates and walk-ins, record corrections and history; each decision is audited and, where data changes, a server change that tablets pull"),
        (name = "exports", description = "CSV and XLSX exports of the projected tables, streamed"),
        (name = "imports", description = "Bulk import of the cooperative registry: upload, dry-run report, apply"),
        (name = "reports", description = "Programme figures: people trained, sessions and hours, cooperatives reached, age bands"),
        (name = "sync", description = "Push and pull Automerge changes"),
    )
)]
pub struct ApiDoc;

/// The document as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
