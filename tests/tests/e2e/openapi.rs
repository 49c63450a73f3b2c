//! The OpenAPI document is generated from the code and locked by a snapshot; the server
//! serves exactly that document and a browsable UI without internet access.

use coopsync_tests::{Backend, TestApp};

#[test]
fn openapi_document_matches_the_snapshot() {
    let doc = serde_json::to_value(coopsync::api::openapi::document()).unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

#[test]
fn server_serves_the_document_and_the_docs_page() {
    let Some(app) = TestApp::spawn(Backend::Sqlite) else {
        return;
    };
    let served = app.get("/api/v1/openapi.json", None);
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body,
        serde_json::to_value(coopsync::api::openapi::document()).unwrap()
    );
    let page = app.get("/api/v1/docs/", None);
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.raw);
    assert!(html.contains("swagger-ui"), "{html}");
    // The UI's script comes from the binary, not a CDN.
    assert!(
        !html.contains("https://"),
        "docs page loads from the internet"
    );
    let js = app.get("/api/v1/docs/swagger-ui-bundle.js", None);
    assert_eq!(js.status, 200);
    assert!(js.raw.len() > 100_000);
}
