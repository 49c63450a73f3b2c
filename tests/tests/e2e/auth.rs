//! Sign-in, refresh rotation with one lost-response retry, sign-out, deactivation,
//! device revocation, throttling, and a login flood that must not starve other requests.

use coopsync_tests::{PASSWORD, TestApp, dual_backend_tests};
use diesel::{QueryDsl, RunQueryDsl};
use serde_json::json;

fn login_body(username: &str, password: &str, device: &str) -> serde_json::Value {
    json!({"username": username, "password": password, "device_id": device, "device_name": "tab"})
}

fn refresh(app: &TestApp, token: &str) -> coopsync_tests::Resp {
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": token }),
    )
}

fn login_gives_a_token_pair_that_identifies_user_and_device(app: &TestApp) {
    let id = app.create_user("sokha", "enumerator", &["07"], &[]);
    let device = uuid::Uuid::new_v4().to_string();
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &login_body("sokha", PASSWORD, &device),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert!(r.str("refresh_token").starts_with("csr_"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let me = app.get("/api/v1/me", Some(&r.str("access_token")));
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user_id"], id.as_str());
    assert_eq!(me.body["device_id"], device.as_str());
    assert_eq!(me.body["provinces"], json!(["07"]));
}

fn wrong_password_and_unknown_user_get_the_same_answer(app: &TestApp) {
    app.create_user("dara", "enumerator", &["07"], &[]);
    let device = uuid::Uuid::new_v4().to_string();
    let wrong = app.post(
        "/api/v1/auth/login",
        None,
        &login_body("dara", "not-the-password", &device),
    );
    let unknown = app.post(
        "/api/v1/auth/login",
        None,
        &login_body("nobody", PASSWORD, &device),
    );
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    assert_eq!(
        (unknown.status, unknown.code()),
        (401, "invalid_credentials")
    );
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );
}

fn login_input_is_validated_field_by_field(app: &TestApp) {
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "", "password": "x", "device_id": "not-a-uuid", "device_name": ""}),
    );
    assert_eq!((r.status, r.code()), (422, "validation_failed"));
    let fields: Vec<&str> = r.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "device_id", "device_name"]);
    let missing = app.post("/api/v1/auth/login", None, &json!({"username": "a"}));
    assert_eq!((missing.status, missing.code()), (400, "invalid_json"));
}

fn refresh_rotates_allows_one_lost_response_retry_and_revokes_on_reuse(app: &TestApp) {
    app.create_user("bopha", "enumerator", &["07"], &[]);
    let s = app.login("bopha");
    let r0 = s.refresh.clone();
    // Normal rotation.
    let first = refresh(app, &r0);
    assert_eq!(first.status, 200, "{}", first.body);
    let r1 = first.str("refresh_token");
    assert_ne!(r1, r0);
    // The response carrying r1 was lost: the tablet retries with r0, once.
    let retry = refresh(app, &r0);
    assert_eq!(retry.status, 200, "lost-response retry: {}", retry.body);
    let r2 = retry.str("refresh_token");
    assert_ne!(r2, r1);
    let third = refresh(app, &r2);
    assert_eq!(third.status, 200);
    let r3 = third.str("refresh_token");
    let a3 = third.str("access_token");
    assert_eq!(app.get("/api/v1/me", Some(&a3)).status, 200);
    // A later reuse of r0 is theft or a bug: every token of the device dies.
    let reuse = refresh(app, &r0);
    assert_eq!((reuse.status, reuse.code()), (401, "refresh_token_reused"));
    assert_eq!(refresh(app, &r3).code(), "invalid_refresh_token");
    let me = app.get("/api/v1/me", Some(&a3));
    assert_eq!((me.status, me.code()), (401, "token_revoked"));
    // Signing in again works: the device is not revoked, only its tokens.
    let again = app.login_on("bopha", &s.device_id);
    assert_eq!(app.get("/api/v1/me", Some(&again.access)).status, 200);

    // A thief retries a spent token inside the retry window and gets a pair; when the
    // real device then uses the token the retry retired, two lineages are alive: every
    // token of the device dies, the thief's included.
    let real = refresh(app, &again.refresh);
    assert_eq!(real.status, 200);
    let real_next = real.str("refresh_token");
    let thief = refresh(app, &again.refresh);
    assert_eq!(thief.status, 200, "{}", thief.body);
    let stolen = thief.str("refresh_token");
    let stolen_access = thief.str("access_token");
    let r = refresh(app, &real_next);
    assert_eq!((r.status, r.code()), (401, "refresh_token_reused"));
    assert_eq!(refresh(app, &stolen).code(), "invalid_refresh_token");
    assert_eq!(
        app.get("/api/v1/me", Some(&stolen_access)).code(),
        "token_revoked"
    );
}

fn retry_outside_the_window_counts_as_reuse() {
    let Some(app) = TestApp::spawn_with(coopsync_tests::Backend::Sqlite, |s| {
        s.refresh_retry_window_secs = 0
    }) else {
        return;
    };
    app.create_user("vanna", "enumerator", &["07"], &[]);
    let s = app.login("vanna");
    assert_eq!(refresh(&app, &s.refresh).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(refresh(&app, &s.refresh).code(), "refresh_token_reused");
}

#[test]
fn sqlite_retry_outside_the_window_counts_as_reuse() {
    retry_outside_the_window_counts_as_reuse();
}

fn logout_ends_the_device_session(app: &TestApp) {
    app.create_user("kosal", "enumerator", &["07"], &[]);
    let s = app.login("kosal");
    let other = app.login("kosal");
    let r = app.post("/api/v1/auth/logout", Some(&s.access), &json!({}));
    assert_eq!(r.status, 204);
    assert_eq!(
        app.get("/api/v1/me", Some(&s.access)).code(),
        "token_revoked"
    );
    assert_eq!(refresh(app, &s.refresh).code(), "invalid_refresh_token");
    // Another device of the same user is untouched.
    assert_eq!(app.get("/api/v1/me", Some(&other.access)).status, 200);
}

fn deactivation_and_device_revocation_take_effect_at_once(app: &TestApp) {
    app.create_user("boss", "national_admin", &[], &[]);
    let target = app.create_user("chanthy", "enumerator", &["07"], &[]);
    let admin = app.login("boss");
    let t1 = app.login("chanthy");
    let t2 = app.login("chanthy");
    // Revoke one lost tablet.
    let r = app.post(
        &format!("/api/v1/devices/{}/revoke", t1.device_id),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["revoked_at"].is_string());
    assert_eq!(
        app.get("/api/v1/me", Some(&t1.access)).code(),
        "device_revoked"
    );
    assert_eq!(refresh(app, &t1.refresh).code(), "device_revoked");
    let relogin = app.post(
        "/api/v1/auth/login",
        None,
        &login_body("chanthy", PASSWORD, &t1.device_id),
    );
    assert_eq!((relogin.status, relogin.code()), (401, "device_revoked"));
    assert_eq!(app.get("/api/v1/me", Some(&t2.access)).status, 200);
    // Deactivate the account: every device stops.
    let r = app.send(
        "PATCH",
        &format!("/api/v1/users/{target}"),
        Some(&admin.access),
        &json!({"active": false}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    let me = app.get("/api/v1/me", Some(&t2.access));
    assert_eq!(me.status, 401);
    assert!(
        ["account_disabled", "token_revoked"].contains(&me.code()),
        "{}",
        me.body
    );
    let login = app.post(
        "/api/v1/auth/login",
        None,
        &login_body("chanthy", PASSWORD, &uuid::Uuid::new_v4().to_string()),
    );
    assert_eq!((login.status, login.code()), (401, "account_disabled"));
}

fn password_reset_signs_the_user_out_and_the_new_password_works(app: &TestApp) {
    app.create_user("boss", "national_admin", &[], &[]);
    let id = app.create_user("sophea", "enumerator", &["07"], &[]);
    let admin = app.login("boss");
    let t = app.login("sophea");
    let short = app.post(
        &format!("/api/v1/users/{id}/password"),
        Some(&admin.access),
        &json!({"password": "short"}),
    );
    assert_eq!((short.status, short.code()), (422, "validation_failed"));
    let r = app.post(
        &format!("/api/v1/users/{id}/password"),
        Some(&admin.access),
        &json!({"password": "a-brand-new-secret"}),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        app.get("/api/v1/me", Some(&t.access)).code(),
        "token_revoked"
    );
    let device = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        app.post(
            "/api/v1/auth/login",
            None,
            &login_body("sophea", PASSWORD, &device)
        )
        .status,
        401
    );
    assert_eq!(
        app.post(
            "/api/v1/auth/login",
            None,
            &login_body("sophea", "a-brand-new-secret", &device)
        )
        .status,
        200
    );
}

fn sign_ins_and_admin_actions_are_audited(app: &TestApp) {
    use coopsync::db::schema::audit_log;
    app.create_user("boss", "national_admin", &[], &[]);
    let admin = app.login("boss");
    let device = uuid::Uuid::new_v4().to_string();
    app.post(
        "/api/v1/auth/login",
        None,
        &login_body("boss", "wrong-password!", &device),
    );
    let r = app.post(
        "/api/v1/users",
        Some(&admin.access),
        &json!({"username": "new.enum", "password": PASSWORD, "role": "enumerator", "provinces": ["07"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut conn = app.db.connect();
    let rows: Vec<(String, String)> = audit_log::table
        .select((audit_log::action, audit_log::outcome))
        .order(audit_log::id)
        .load(&mut conn)
        .unwrap();
    let logins_ok = rows
        .iter()
        .filter(|r| r.0 == "auth.login" && r.1 == "success")
        .count();
    let logins_failed = rows
        .iter()
        .filter(|r| r.0 == "auth.login" && r.1 == "failure")
        .count();
    let creates = rows.iter().filter(|r| r.0 == "user.create").count();
    // The harness creates "boss" directly (one user.create), the API creates one more.
    assert_eq!((logins_ok, logins_failed, creates), (1, 1, 2), "{rows:?}");
    let listed = app.get("/api/v1/audit?limit=2", Some(&admin.access));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(listed.body["entries"][0]["action"], "user.create");
    assert!(listed.body["next_cursor"].is_string());
}

fn account_throttle_blocks_even_the_right_password_then_says_when() {
    for backend in [
        coopsync_tests::Backend::Sqlite,
        coopsync_tests::Backend::Postgres,
    ] {
        let Some(app) = TestApp::spawn_with(backend, |s| s.login_max_failures_per_account = 3)
        else {
            continue;
        };
        app.create_user("target", "enumerator", &["07"], &[]);
        app.create_user("bystander", "enumerator", &["07"], &[]);
        let device = uuid::Uuid::new_v4().to_string();
        for _ in 0..3 {
            let r = app.post(
                "/api/v1/auth/login",
                None,
                &login_body("target", "guess-guess-guess", &device),
            );
            assert_eq!(r.status, 401);
        }
        let r = app.post(
            "/api/v1/auth/login",
            None,
            &login_body("target", PASSWORD, &device),
        );
        assert_eq!((r.status, r.code()), (429, "too_many_login_attempts"));
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(retry > 3000 && retry <= 3600, "{retry}");
        // Another account from the same address is not affected.
        app.login("bystander");
    }
}

#[test]
fn both_account_throttle_blocks_even_the_right_password_then_says_when() {
    account_throttle_blocks_even_the_right_password_then_says_when();
}

#[test]
/// Issue 11: 400 concurrent wrong passwords were all hashed against a limit of 100 (the
/// count was read before hashing and written after). Each attempt is now reserved under
/// a lock before its password is checked.
fn the_account_limit_holds_under_400_concurrent_attempts() {
    for backend in [
        coopsync_tests::Backend::Sqlite,
        coopsync_tests::Backend::Postgres,
    ] {
        let Some(app) = TestApp::spawn_with(backend, |s| s.login_max_failures_per_account = 20)
        else {
            continue;
        };
        app.create_user("target", "enumerator", &["07"], &[]);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..40)
                .map(|_| {
                    let app = &app;
                    s.spawn(move || {
                        (0..10)
                            .map(|_| {
                                let device = uuid::Uuid::new_v4().to_string();
                                app.post(
                                    "/api/v1/auth/login",
                                    None,
                                    &login_body("target", "guess-guess-guess", &device),
                                )
                                .status
                            })
                            .collect::<Vec<u16>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
        coopsync_tests::notice(&format!(
            "{backend:?}: 400 concurrent wrong passwords, limit 20: {} checked (401), {} throttled (429), {} busy (503)",
            count(401),
            count(429),
            count(503)
        ));
        assert!(count(401) <= 20 && count(401) > 0, "{statuses:?}");
        assert_eq!(count(401) + count(429) + count(503), 400, "{statuses:?}");
    }
}

#[test]
fn address_throttle_blocks_a_password_spray() {
    let Some(app) = TestApp::spawn_with(coopsync_tests::Backend::Sqlite, |s| {
        s.login_max_failures_per_ip = 4
    }) else {
        return;
    };
    app.create_user("real", "enumerator", &["07"], &[]);
    let device = uuid::Uuid::new_v4().to_string();
    for i in 0..4 {
        let r = app.post(
            "/api/v1/auth/login",
            None,
            &login_body(&format!("user{i}"), "spray-spray-spray", &device),
        );
        assert_eq!(r.status, 401);
    }
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &login_body("real", PASSWORD, &device),
    );
    assert_eq!((r.status, r.code()), (429, "too_many_login_attempts"));
    assert!(r.header("retry-after").is_some());
}

/// With one hashing slot, a burst of sign-ins queues behind it while health checks and
/// token-authenticated reads keep being answered: every read finishes before the flood.
#[test]
fn login_flood_does_not_starve_other_requests() {
    let Some(app) = TestApp::spawn_with(coopsync_tests::Backend::Sqlite, |s| {
        s.max_concurrent_password_hashes = 1;
        s.workers = Some(2);
    }) else {
        return;
    };
    app.create_user("flooded", "enumerator", &["07"], &[]);
    let s = app.login("flooded");
    let app = std::sync::Arc::new(app);
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..24)
        .map(|i| {
            let app = app.clone();
            let finished = finished.clone();
            std::thread::spawn(move || {
                let r = app.post(
                    "/api/v1/auth/login",
                    None,
                    &login_body(
                        &format!("nobody{i}"),
                        "flood-flood-flood",
                        &uuid::Uuid::new_v4().to_string(),
                    ),
                );
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r.status
            })
        })
        .collect();
    let mut reads_before_flood_done = 0;
    for _ in 0..10 {
        assert_eq!(app.get("/readyz", None).status, 200);
        assert_eq!(app.get("/api/v1/me", Some(&s.access)).status, 200);
        if finished.load(std::sync::atomic::Ordering::SeqCst) < 24 {
            reads_before_flood_done += 1;
        }
    }
    let statuses: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        reads_before_flood_done >= 5,
        "reads were starved: {reads_before_flood_done}/10"
    );
}

dual_backend_tests!(
    login_gives_a_token_pair_that_identifies_user_and_device,
    wrong_password_and_unknown_user_get_the_same_answer,
    login_input_is_validated_field_by_field,
    refresh_rotates_allows_one_lost_response_retry_and_revokes_on_reuse,
    logout_ends_the_device_session,
    deactivation_and_device_revocation_take_effect_at_once,
    password_reset_signs_the_user_out_and_the_new_password_works,
    sign_ins_and_admin_actions_are_audited,
);
