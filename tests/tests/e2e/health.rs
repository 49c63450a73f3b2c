//! Probes and the error envelope for unknown routes.

use coopsync_tests::{TestApp, dual_backend_tests};

fn probes_answer(app: &TestApp) {
    let h = app.get("/healthz", None);
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "ok");
    let r = app.get("/readyz", None);
    assert_eq!(r.status, 200);
    let expected = match app.db.backend {
        coopsync_tests::Backend::Sqlite => "sqlite",
        coopsync_tests::Backend::Postgres => "postgresql",
    };
    assert_eq!(r.body["database"], expected);
    assert!(h.header("x-request-id").is_some_and(|v| !v.is_empty()));
}

fn unknown_route_gets_the_error_envelope(app: &TestApp) {
    let r = app.get("/api/v1/nothing-here", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    assert!(r.body["error"]["message"].is_string());
}

fn provinces_are_the_25_of_cambodia(app: &TestApp) {
    app.create_user("reader", "enumerator", &["07"], &[]);
    let s = app.login("reader");
    let r = app.get("/api/v1/provinces", Some(&s.access));
    assert_eq!(r.status, 200);
    let list = r.body["provinces"].as_array().unwrap();
    assert_eq!(list.len(), 25);
    let pp = list.iter().find(|p| p["code"] == "12").unwrap();
    assert_eq!(pp["name_latin"], "Phnom Penh");
    assert_eq!(pp["name_khmer"], "ភ្នំពេញ");
    assert_eq!(pp["kind"], "capital");
    assert_eq!(list.iter().filter(|p| p["kind"] == "capital").count(), 1);
    let codes: std::collections::BTreeSet<_> = list
        .iter()
        .map(|p| p["iso_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 25);
    // The same codes as sync-protocol's list, which the OpenAPI document offers for
    // assignments and the record rules check.
    let codes: Vec<&str> = list.iter().map(|p| p["code"].as_str().unwrap()).collect();
    assert_eq!(codes, sync_protocol::documents::PROVINCE_CODES);
}

dual_backend_tests!(
    probes_answer,
    unknown_route_gets_the_error_envelope,
    provinces_are_the_25_of_cambodia
);
