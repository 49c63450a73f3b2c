//! The OpenAPI document, generated from the handlers and types, and the bundled
//! Swagger UI (vendored: served by the binary with no internet access).

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
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
        v1::exports::export_dataset,
        v1::sync::sync,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "auth", description = "Sign-in, token refresh, sign-out"),
        (name = "users", description = "Account administration"),
        (name = "devices", description = "Registered tablets"),
        (name = "reference", description = "Reference data"),
        (name = "audit", description = "Audit log"),
        (name = "exports", description = "CSV exports of the projected tables"),
        (name = "sync", description = "Push and pull Automerge changes"),
    )
)]
pub struct ApiDoc;

/// The document as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
