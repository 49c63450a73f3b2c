//! The token battery: every forged, tampered, expired or misused token gets 401 on every
//! protected route listed in the OpenAPI document.

use coopsync_tests::{TEST_JWT_SECRET, TestApp, dual_backend_tests};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(user: &str, device: &str) -> Value {
    let n = now();
    json!({
        "iss": "coopsync", "aud": "coopsync-api", "sub": user,
        "exp": n + 600, "iat": n, "nbf": n, "jti": "t",
        "did": device, "dep": 0, "token_use": "access"
    })
}

fn forge(alg: Algorithm, typ: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.typ = typ.map(str::to_string);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// (method, path) of every route that requires a token, from the served OpenAPI document.
fn protected_routes(app: &TestApp, some_id: &str) -> Vec<(String, String)> {
    let doc = app.get("/api/v1/openapi.json", None).body;
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if op.get("security").is_some() {
                routes.push((method.to_uppercase(), path.replace("{id}", some_id)));
            }
        }
    }
    assert!(
        routes.len() >= 12,
        "too few protected routes found: {routes:?}"
    );
    routes
}

fn every_bad_token_gets_401_on_every_protected_route(app: &TestApp) {
    let user = app.create_user("nat", "national_admin", &[], &[]);
    let s = app.login("nat");
    let revoked = app.login("nat");
    let admin = app.login("nat");
    let r = app.post(
        &format!("/api/v1/devices/{}/revoke", revoked.device_id),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(r.status, 200);

    // A correctly forged token works: the battery below fails for the stated reason only.
    let good = forge(
        Algorithm::HS256,
        Some("at+jwt"),
        &claims(&user, &s.device_id),
    );
    assert_eq!(app.get("/api/v1/me", Some(&good)).status, 200);

    let base = claims(&user, &s.device_id);
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let mut tampered_sig = good.clone();
    let last = tampered_sig.pop().unwrap();
    tampered_sig.push(if last == 'A' { 'B' } else { 'A' });
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with("sub", json!("someone-else"))),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&base)
    );
    let n = now();
    let battery: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("alg none", Some(alg_none)),
        (
            "wrong algorithm HS512",
            Some(forge(Algorithm::HS512, Some("at+jwt"), &base)),
        ),
        (
            "wrong audience",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("aud", json!("other-api")),
            )),
        ),
        (
            "wrong issuer",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("iss", json!("evil")),
            )),
        ),
        (
            "expired",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("exp", json!(n - 300)),
            )),
        ),
        (
            "not yet valid",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("nbf", json!(n + 3600)),
            )),
        ),
        (
            "missing exp",
            Some(forge(Algorithm::HS256, Some("at+jwt"), &without("exp"))),
        ),
        (
            "missing iat",
            Some(forge(Algorithm::HS256, Some("at+jwt"), &without("iat"))),
        ),
        (
            "missing sub",
            Some(forge(Algorithm::HS256, Some("at+jwt"), &without("sub"))),
        ),
        (
            "plain JWT type",
            Some(forge(Algorithm::HS256, Some("JWT"), &base)),
        ),
        (
            "not an access token",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("token_use", json!("refresh")),
            )),
        ),
        ("tampered signature", Some(tampered_sig)),
        ("tampered payload", Some(tampered_payload)),
        ("refresh token as access token", Some(s.refresh.clone())),
        ("revoked device", Some(revoked.access.clone())),
        (
            "old device epoch",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("dep", json!(-1)),
            )),
        ),
        (
            "unknown user",
            Some(forge(
                Algorithm::HS256,
                Some("at+jwt"),
                &with("sub", json!("nobody")),
            )),
        ),
        ("garbage", Some("not.a.jwt".to_string())),
    ];
    let routes = protected_routes(app, &user);
    let mut failures = Vec::new();
    for (name, token) in &battery {
        for (method, path) in &routes {
            let r = app.send(method, path, token.as_deref(), &json!({}));
            if r.status != 401 || r.code().is_empty() {
                failures.push(format!(
                    "{name}: {method} {path} -> {} {}",
                    r.status, r.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Wrong scheme.
    let basic = app
        .agent
        .get(app.url("/api/v1/me"))
        .header("authorization", format!("Basic {}", s.access))
        .call()
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    // The real token still works after all that.
    assert_eq!(app.get("/api/v1/me", Some(&s.access)).status, 200);
}

fn expired_token_says_token_expired_so_the_client_refreshes(app: &TestApp) {
    let user = app.create_user("enum.e", "enumerator", &["07"], &[]);
    let s = app.login("enum.e");
    let mut c = claims(&user, &s.device_id);
    c["exp"] = json!(now() - 300);
    c["iat"] = json!(now() - 1200);
    c["nbf"] = json!(now() - 1200);
    let r = app.get(
        "/api/v1/me",
        Some(&forge(Algorithm::HS256, Some("at+jwt"), &c)),
    );
    assert_eq!((r.status, r.code()), (401, "token_expired"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // The documented tolerance is 5 s: a token 10 s past its expiry is refused (it was
    // accepted for ~30 s).
    c["exp"] = json!(now() - 10);
    let r = app.get(
        "/api/v1/me",
        Some(&forge(Algorithm::HS256, Some("at+jwt"), &c)),
    );
    assert_eq!((r.status, r.code()), (401, "token_expired"));
}

/// A tablet whose access token expired between syncs renews it with its refresh token
/// and carries on (the sync loop of docs/sync-protocol.md).
fn a_tablet_renews_an_expired_token_and_its_sync_completes(app: &TestApp) {
    let user = app.create_user("slow.tablet", "enumerator", &["07"], &[]);
    let mut t = coopsync_tests::tablet::Tablet::new(app, "slow.tablet");
    let coop = t.create_cooperative("07", "Expires");
    t.sync();
    let mut c = claims(&user, &t.session.device_id);
    c["exp"] = json!(now() - 300);
    c["iat"] = json!(now() - 1200);
    c["nbf"] = json!(now() - 1200);
    let expired = forge(Algorithm::HS256, Some("at+jwt"), &c);
    t.transport.token = expired.clone();
    t.set(&coop, "village", "Later");
    let report = t.sync();
    assert_eq!((report.pushed, report.rejected), (1, 0));
    assert_ne!(t.transport.token, expired, "the access token was renewed");
}

dual_backend_tests!(
    every_bad_token_gets_401_on_every_protected_route,
    expired_token_says_token_expired_so_the_client_refreshes,
    a_tablet_renews_an_expired_token_and_its_sync_completes,
);
